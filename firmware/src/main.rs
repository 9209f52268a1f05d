//! dmapickle instrument firmware for QEMU `mps2-an386` (Cortex-M4F).
//!
//! A simulated ADC (the SysTick interrupt) fills 4-channel int16 blocks into `dmapickle-hal`
//! buffers; the main loop publishes each block as `{"seq", "t_us", "rate_hz", "adc": ndarray
//! (N, 4)}` through the hal's `Publisher`, with the array either inline after the frame (buffers
//! in RAM) or left in PSRAM for the host to map, lent until the host releases it (boot parameter
//! `mode=`, see `dmapickle_firmware::config`).
//!
//! Two boards: feature `board` (default) is QEMU with semihosting (defmt logs, boot parameters,
//! exit status) and the data link on CMSDK UART0; feature `rtt` is a real Cortex-M4 under a debug
//! probe, with defmt and the data link on RTT channels (`probe-rs`).
//! A panic or HardFault is logged through defmt and ends the run with a failure status.
#![no_std]
#![no_main]

#[cfg(all(feature = "board", feature = "rtt"))]
compile_error!("features `board` (QEMU) and `rtt` (probe) are exclusive: use --no-default-features --features rtt");

mod paint;
#[cfg(feature = "board")]
mod uart;

use core::cell::{Cell, RefCell};
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use critical_section::Mutex;
use dmapickle_core::control::LinkKind;
use dmapickle_core::release::control_len;
use dmapickle_hal::control::{Command, CommandReader, ReplyCache};
use dmapickle_hal::pool::{Pool, SharedPool};
use dmapickle_hal::{BufferRing, DmaBuf, Outgoing, Publisher, SharedBuf, SharedRegion, WriteLink};

use dmapickle_firmware::adc::Adc;
use dmapickle_firmware::config::{BootConfig, Fault, Placement, MAX_BLOCK};
use dmapickle_firmware::control::{Acquisition, Answer, Change, Controls, Layout, Report};
use dmapickle_firmware::message::{self, MAX_PICKLE};
use dmapickle_firmware::sample_clock::SampleClock;
use dmapickle_firmware::waveform::ROW_BYTES;
use paint::{paint_stack, stack_high_water};

/// Core clock of mps2-an386 (SYSCLK), which drives SysTick.
const CORE_HZ: u32 = 25_000_000;
/// Rows the simulated ADC delivers per SysTick interrupt (a DMA half-transfer, say).
const ROWS_PER_TICK: u32 = 32;
/// Most ADC periods one SysTick interrupt delivers when the sample clock says some were missed.
const MAX_CATCH_UP: u32 = 256;
/// Block buffers in RAM for the inline link.
const SLOTS: usize = 8;
/// Slots of the PSRAM shared region: more than in RAM, because the host holds lent buffers for as
/// long as Python keeps views of them (the region supports up to 32).
const SHARED_SLOTS: usize = 32;
/// Bytes of one block buffer.
const BLOCK_BYTES: usize = MAX_BLOCK as usize * ROW_BYTES;
/// Region id of the RAM buffers (inline link; diagnostics only for the host).
const RAM_REGION: u16 = 1;
/// Region id of the PSRAM shared region; the host maps the PSRAM file under this id.
const PSRAM_REGION: u16 = 2;
/// Release-ring entries of the shared region (a power of two, at least `SHARED_SLOTS`).
const RING_CAPACITY: u16 = 32;
/// Bytes of PSRAM the shared region spans (the ring's control block, then the slots).
const PSRAM_REGION_LEN: usize = control_len(RING_CAPACITY) + SHARED_SLOTS * BLOCK_BYTES;
/// Seconds (of SysTick time) to wait at the end for the host to release lent buffers.
const DRAIN_SECONDS: u32 = 10;

/// Exit status for unusable boot parameters.
const EXIT_CONFIG: i32 = 2;
/// Exit status when a message cannot be encoded or published.
const EXIT_PUBLISH: i32 = 3;
/// Exit status for a panic.
const EXIT_PANIC: i32 = 101;
/// Exit status for a HardFault.
const EXIT_HARDFAULT: i32 = 102;

const MODE_IDLE: u8 = 0;
const MODE_INLINE: u8 = 1;
const MODE_SHARED: u8 = 2;

/// Block buffers of the inline link, in main RAM.
static mut BLOCKS_RAM: [[u8; BLOCK_BYTES]; SLOTS] = [[0; BLOCK_BYTES]; SLOTS];
/// The shared region in PSRAM (QEMU backs it with the host's file; see memory.x). 64-byte
/// aligned as the region's control block requires.
#[link_section = ".psram.region"]
static mut PSRAM: Aligned64<[u8; PSRAM_REGION_LEN]> = Aligned64([0; PSRAM_REGION_LEN]);

#[repr(C, align(64))]
struct Aligned64<T>(T);

/// Free and ready queues of the inline link's buffers.
static RING: BufferRing<SLOTS> = BufferRing::new();
/// The ISR's state for the inline link.
static ADC_INLINE: Mutex<RefCell<Adc<DmaBuf>>> = Mutex::new(RefCell::new(Adc::new(256)));
/// The shared-region pool, once created at boot.
static POOL: Mutex<Cell<Option<&'static SharedPool<SHARED_SLOTS>>>> = Mutex::new(Cell::new(None));
/// The ISR's state for the shared-region link.
static ADC_SHARED: Mutex<RefCell<Adc<SharedBuf<'static>>>> =
    Mutex::new(RefCell::new(Adc::new(256)));
/// Which of the two the ISR feeds (`MODE_*`).
static MODE: AtomicU8 = AtomicU8::new(MODE_IDLE);
/// Marks `BOOTS` as written by this firmware (RAM holds garbage after a power-on).
const BOOT_MAGIC: u32 = 0xB007_C0DE;

/// `[BOOT_MAGIC, resets done]`, in `.uninit`: the startup code leaves it alone, so it survives
/// the SYSRESETREQ of `reboot=`.
#[link_section = ".uninit.BOOTS"]
static mut BOOTS: MaybeUninit<[u32; 2]> = MaybeUninit::uninit();

/// SysTick interrupts since boot.
static TICKS: AtomicU32 = AtomicU32::new(0);
/// SysTick reload value once the ADC runs (0 before): the log timestamp's clock.
static RELOAD: AtomicU32 = AtomicU32::new(0);
/// Core clock cycles of the SysTick periods completed (each at the reload of its time, so the
/// clock stays continuous when `SetRate` changes the reload).
static CYCLES: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
/// The ADC's sample clock and the free-running counter it reads (`board::sample_counter`),
/// set before SysTick starts (and again by `SetRate`); `None` on a board without one.
type Counter = fn() -> u32;
static SAMPLE_CLOCK: Mutex<Cell<Option<(SampleClock, Counter)>>> = Mutex::new(Cell::new(None));

// defmt log lines carry the device's time since the ADC started, in microseconds (SysTick ticks
// plus the current count; 0 before SysTick runs).
defmt::timestamp!("{=u64:us}", now_us());

#[entry]
fn main() -> ! {
    let painted = paint_stack();
    let resets = resets_so_far();
    let (mut link, rx, cfg) = board::start();
    defmt::info!("dmapickle firmware (boot {=u32}): {}", resets, cfg);

    let Some(mut core) = cortex_m::Peripherals::take() else {
        defmt::error!("core peripherals already taken");
        board::exit(EXIT_CONFIG);
    };
    match cfg.placement {
        Placement::Inline => init_inline(cfg.block),
        Placement::Shared => init_shared(cfg.block),
    }
    core.SYST.set_clock_source(SystClkSource::Core);
    let (rows_per_tick, tick_hz, reload) = set_tick(&mut core.SYST, cfg.rate_hz, cfg.block);
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();
    defmt::info!(
        "ADC: {=u32} rows/tick at {=u32} Hz (reload {=u32}), blocks of {=u32} rows",
        rows_per_tick,
        tick_hz,
        reload,
        cfg.block
    );

    let publisher = Publisher::new();
    let mut ctl = Control {
        rx,
        reader: CommandReader::new(),
        cache: ReplyCache::new(),
        controls: Controls::new(&cfg),
    };
    let syst = &mut core.SYST;
    let published = match cfg.placement {
        Placement::Inline => run(
            &cfg,
            tick_hz,
            &publisher,
            &mut link,
            &mut ctl,
            syst,
            &RING,
            Outgoing::Inline,
        ),
        Placement::Shared => {
            let pool = shared_pool();
            run(
                &cfg,
                tick_hz,
                &publisher,
                &mut link,
                &mut ctl,
                syst,
                pool,
                Outgoing::<DmaBuf>::Shared,
            )
        }
    };
    MODE.store(MODE_IDLE, Ordering::Release);

    let (stalls, overflows) = adc_counters(cfg.placement);
    if cfg.placement == Placement::Shared {
        drain_releases(
            shared_pool().region(),
            tick_hz.saturating_mul(DRAIN_SECONDS),
        );
    }
    let used = stack_high_water(painted);
    defmt::info!(
        "done: {=u32} messages, {=u32} ADC stalls, {=u32} overflows, stack high water {=usize} bytes",
        published,
        stalls,
        overflows,
        used
    );
    if resets < cfg.reboot {
        defmt::info!("rebooting ({=u32} of {=u32})", resets + 1, cfg.reboot);
        set_resets(resets + 1);
        cortex_m::peripheral::SCB::sys_reset();
    }
    set_resets(0);
    match cfg.fault_at(published) {
        Fault::None => board::exit(0),
        Fault::Panic => panic!("deliberate panic (boot parameter fault=panic)"),
        Fault::HardFault => cortex_m::asm::udf(),
    }
}

/// Publishes ready blocks from `pool` until `cfg.messages()` went out (forever if `None`),
/// answering the host's commands from `ctl` between blocks. Returns the number published. If the
/// ADC has had no free buffer for a second (`tick_hz` ticks), says once what it waits for.
#[allow(clippy::too_many_arguments)]
fn run<P, W, R, B>(
    cfg: &BootConfig,
    tick_hz: u32,
    publisher: &Publisher,
    link: &mut WriteLink<W>,
    ctl: &mut Control<R>,
    syst: &mut cortex_m::peripheral::SYST,
    pool: &P,
    outgoing: impl Fn(P::Buf) -> Outgoing<'static, B>,
) -> u32
where
    P: Pool,
    P::Buf: Describe,
    W: dmapickle_hal::embedded_io::Write,
    R: dmapickle_hal::embedded_io::Read + dmapickle_hal::embedded_io::ReadReady,
    B: embedded_dma::ReadBuffer<Word = u8> + 'static + GiveBack,
{
    let mut out = Out {
        cfg,
        publisher,
        link,
        seq: 0,
        dropped: 0,
    };
    let limit = cfg.messages();
    let mut warned = false;
    while limit.is_none_or(|n| out.seq < n) {
        if let Ok(Some(cmd)) = ctl.reader.poll_read(&mut ctl.rx) {
            command(cmd, cfg, ctl, &mut out, syst, pool, &outgoing);
        }
        let Some(buf) = pool.pop_ready() else {
            if !warned && ctl.controls.acq.running && stall_streak(cfg.placement) >= tick_hz {
                warned = true;
                warn_stalled(cfg.placement, out.seq);
            }
            cortex_m::asm::wfi();
            continue;
        };
        out.block(buf, &ctl.controls.acq, pool, &outgoing);
    }
    out.seq
}

/// Where blocks go: the link, and the count of blocks sent or dropped.
struct Out<'a, W> {
    cfg: &'a BootConfig,
    publisher: &'a Publisher,
    link: &'a mut WriteLink<W>,
    /// The seq of the next block.
    seq: u32,
    /// Blocks `drop=` left out.
    dropped: u32,
}

impl<W: dmapickle_hal::embedded_io::Write> Out<'_, W> {
    /// Publishes one full block as message `seq` with the settings `acq` (those it was acquired
    /// with: a change is applied only after every block of the old setting went out).
    fn block<P: Pool, B>(
        &mut self,
        buf: P::Buf,
        acq: &Acquisition,
        pool: &P,
        outgoing: &impl Fn(P::Buf) -> Outgoing<'static, B>,
    ) where
        P::Buf: Describe,
        B: embedded_dma::ReadBuffer<Word = u8> + 'static + GiveBack,
    {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        if self.cfg.drops(seq) {
            // `drop=`: the block goes back to the pool and its frame number is used up on a link
            // to nowhere, so the host sees a gap in the frames' seq.
            pool.recycle(buf);
            self.dropped = self.dropped.wrapping_add(1);
            let _ = self
                .publisher
                .publish_pickle(&mut WriteLink::new(Discard), b"\x80\x05N.");
            return;
        }
        let mut pickle = [0u8; MAX_PICKLE];
        let (t_us, descriptor) = (acq.t_us(seq), buf.descriptor());
        let msg =
            match message::encode_at(&mut pickle, seq, t_us, acq.block, acq.rate_hz, descriptor) {
                Ok(msg) => msg,
                Err(e) => {
                    defmt::error!("encoding message {=u32}: {}", seq, e);
                    board::exit(EXIT_PUBLISH);
                }
            };
        match self
            .publisher
            .publish(self.link, msg.pickle, &msg.descriptors, [outgoing(buf)])
        {
            Ok(sent) => sent.inline.into_iter().for_each(GiveBack::give_back),
            Err(e) => {
                defmt::error!("publishing message {=u32}: {}", seq, e.error);
                board::exit(EXIT_PUBLISH);
            }
        }
        if seq.is_multiple_of(256) {
            defmt::info!("published seq {=u32}", seq);
        }
    }
}

/// The down link and what the firmware keeps for it.
struct Control<R> {
    rx: R,
    reader: CommandReader,
    cache: ReplyCache,
    controls: Controls,
}

/// Answers one command (from the reply cache if its id is the last one answered) and writes
/// the reply between two frames. A change waits for the ADC to reach a block boundary and for
/// every block of the old setting to go out, then applies from the next seq.
fn command<P, W, R, B>(
    cmd: Command,
    cfg: &BootConfig,
    ctl: &mut Control<R>,
    out: &mut Out<'_, W>,
    syst: &mut cortex_m::peripheral::SYST,
    pool: &P,
    outgoing: &impl Fn(P::Buf) -> Outgoing<'static, B>,
) where
    P: Pool,
    P::Buf: Describe,
    W: dmapickle_hal::embedded_io::Write,
    B: embedded_dma::ReadBuffer<Word = u8> + 'static + GiveBack,
{
    let report = report(cfg.placement, out, &ctl.reader, &ctl.cache);
    let controls = &mut ctl.controls;
    let (frame, fresh) = ctl.cache.answer(&cmd, |request| {
        let reply = match controls.answer(request, &report) {
            Answer::Reply(reply) => reply,
            Answer::Change(change) => {
                pause_between_blocks(cfg.placement, out, &controls.acq, pool, outgoing);
                let reply = controls.applied(change, out.seq);
                if let Change::Rate(rate) = change {
                    set_tick(syst, rate, controls.acq.block);
                }
                if controls.acq.running {
                    adc_resume(cfg.placement, controls.acq.block);
                }
                reply
            }
        };
        defmt::info!("command {=u32}: {} -> {}", cmd.id, cmd.request, reply);
        reply
    });
    if !fresh {
        defmt::info!(
            "command {=u32} repeated: reply sent again, not applied",
            cmd.id
        );
    }
    let _ = out.link.get_mut().write_all(frame);
}

/// The board's state for the answer to a command.
fn report<W>(
    mode: Placement,
    out: &Out<'_, W>,
    reader: &CommandReader,
    cache: &ReplyCache,
) -> Report {
    let (adc_stalls, overflows) = adc_counters(mode);
    Report {
        layout: layout(mode),
        next_seq: out.seq,
        dropped: out.dropped,
        adc_stalls,
        overflows,
        lent: lent(mode),
        bytes_skipped: reader.bytes_skipped(),
        repeats: cache.repeats(),
        now_us: now_us(),
    }
}

/// Asks the ADC to pause at its next block boundary, publishing the blocks that complete
/// meanwhile, until it has paused and every block it acquired went out.
fn pause_between_blocks<P, W, B>(
    mode: Placement,
    out: &mut Out<'_, W>,
    acq: &Acquisition,
    pool: &P,
    outgoing: &impl Fn(P::Buf) -> Outgoing<'static, B>,
) where
    P: Pool,
    P::Buf: Describe,
    W: dmapickle_hal::embedded_io::Write,
    B: embedded_dma::ReadBuffer<Word = u8> + 'static + GiveBack,
{
    on_adc!(mode, |adc| adc.pause());
    loop {
        match pool.pop_ready() {
            Some(buf) => out.block(buf, acq, pool, outgoing),
            None if on_adc!(mode, |adc| adc.paused()) => break,
            None => cortex_m::asm::wfi(),
        }
    }
}

/// Where this build's blocks live, for `GetInfo`.
fn layout(mode: Placement) -> Layout {
    match mode {
        Placement::Inline => Layout {
            link: LinkKind::Inline,
            region: RAM_REGION,
            region_len: (SLOTS * BLOCK_BYTES) as u32,
            slots: SLOTS as u16,
        },
        Placement::Shared => Layout {
            link: LinkKind::Shared,
            region: PSRAM_REGION,
            region_len: PSRAM_REGION_LEN as u32,
            slots: SHARED_SLOTS as u16,
        },
    }
}

/// Sets SysTick for `rate_hz` rows per second in blocks of `block` rows; returns
/// `(rows per tick, tick rate, reload)`.
fn set_tick(syst: &mut cortex_m::peripheral::SYST, rate_hz: u32, block: u32) -> (u32, u32, u32) {
    let rows_per_tick = ROWS_PER_TICK.min(block);
    let tick_hz = (rate_hz / rows_per_tick).max(1);
    let reload = (CORE_HZ / tick_hz).clamp(2, 1 << 24) - 1;
    syst.set_reload(reload);
    syst.clear_current();
    RELOAD.store(reload, Ordering::Relaxed);
    // The sample clock counts periods of the new length from now.
    if let Some(counter) = board::sample_counter() {
        let clock = SampleClock::new(counter(), reload + 1);
        critical_section::with(|cs| SAMPLE_CLOCK.borrow(cs).set(Some((clock, counter))));
    }
    (rows_per_tick, tick_hz, reload)
}

/// Runs `$body` with `$adc` the ISR's ADC state of link mode `$mode`, in a critical section.
macro_rules! on_adc {
    ($mode:expr, |$adc:ident| $body:expr) => {
        critical_section::with(|cs| match $mode {
            Placement::Inline => {
                let $adc = &mut *ADC_INLINE.borrow_ref_mut(cs);
                $body
            }
            Placement::Shared => {
                let $adc = &mut *ADC_SHARED.borrow_ref_mut(cs);
                $body
            }
        })
    };
}
use on_adc;

fn adc_resume(mode: Placement, block: u32) {
    on_adc!(mode, |adc| adc.resume(block));
}

/// `(stalls, overflows)` of the ADC.
fn adc_counters(mode: Placement) -> (u32, u32) {
    on_adc!(mode, |adc| (adc.stalls(), adc.overflows()))
}

/// Shared-region buffers lent to the host now (0 for the inline link).
fn lent(mode: Placement) -> u16 {
    match mode {
        Placement::Inline => 0,
        Placement::Shared => shared_pool().region().lent() as u16,
    }
}

/// The device clock of the log timestamps: us since the ADC started (SysTick ticks plus the
/// current count, at the current reload).
fn now_us() -> u64 {
    let reload = RELOAD.load(Ordering::Relaxed);
    if reload == 0 {
        return 0;
    }
    let cycles = critical_section::with(|cs| CYCLES.borrow(cs).get());
    let into_tick = reload - cortex_m::peripheral::SYST::get_current().min(reload);
    (cycles + u64::from(into_tick)) / u64::from(CORE_HZ / 1_000_000)
}

/// A link to nowhere, for the frames `drop=` numbers but never sends.
struct Discard;

impl dmapickle_hal::embedded_io::ErrorType for Discard {
    type Error = core::convert::Infallible;
}

impl dmapickle_hal::embedded_io::Write for Discard {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Ticks in a row the ISR has found no free buffer.
fn stall_streak(mode: Placement) -> u32 {
    on_adc!(mode, |adc| adc.stall_streak())
}

/// What a stalled ADC waits for, logged once.
fn warn_stalled(mode: Placement, published: u32) {
    match mode {
        Placement::Shared => defmt::warn!(
            "all {=usize} slots lent after {=u32} messages, waiting for the host to release one (is a host reading the frames and mapping the PSRAM region? see README, troubleshooting)",
            SHARED_SLOTS,
            published
        ),
        Placement::Inline => defmt::warn!(
            "no free buffer for 1 s after {=u32} messages, waiting for the link to complete a transfer",
            published
        ),
    }
}

/// The descriptor of a filled block buffer.
trait Describe {
    fn descriptor(&self) -> dmapickle_core::Descriptor;
}

impl Describe for DmaBuf {
    fn descriptor(&self) -> dmapickle_core::Descriptor {
        DmaBuf::descriptor(self)
    }
}

impl Describe for SharedBuf<'static> {
    fn descriptor(&self) -> dmapickle_core::Descriptor {
        SharedBuf::descriptor(self)
    }
}

/// What happens to an inline buffer once its transfer completed: back to the free queue.
trait GiveBack {
    fn give_back(self);
}

impl GiveBack for DmaBuf {
    fn give_back(self) {
        // The ring held this buffer before, so it has room for it again.
        let _ = RING.give(self);
    }
}

/// The RAM buffers go to the inline ring; the ISR fills them.
fn init_inline(block: u32) {
    // SAFETY: runs once, before SysTick is enabled: this is the only reference to BLOCKS_RAM
    // ever made, and it is split into disjoint `'static` buffers owned by the ring from now on.
    let blocks: &'static mut [[u8; BLOCK_BYTES]; SLOTS] = unsafe { &mut *addr_of_mut!(BLOCKS_RAM) };
    for (i, mem) in blocks.iter_mut().enumerate() {
        let _ = RING.give(DmaBuf::new(RAM_REGION, (i * BLOCK_BYTES) as u32, mem));
    }
    critical_section::with(|cs| *ADC_INLINE.borrow_ref_mut(cs) = Adc::new(block));
    MODE.store(MODE_INLINE, Ordering::Release);
}

/// The PSRAM becomes a shared region (control block + slots) the host maps as region 2.
fn init_shared(block: u32) {
    // SAFETY: runs once, before SysTick is enabled: this is the only reference to PSRAM ever
    // made, and it moves into the region (which the host accesses only through the release-ring
    // protocol).
    let mem: &'static mut [u8] = unsafe { &mut (*addr_of_mut!(PSRAM)).0 };
    let base = mem.as_ptr() as usize;
    let region = match SharedRegion::new(PSRAM_REGION, mem, BLOCK_BYTES, RING_CAPACITY) {
        Ok(region) => region,
        Err(e) => {
            defmt::error!("shared region: {}", e);
            board::exit(EXIT_CONFIG);
        }
    };
    let Some(region) = cortex_m::singleton!(: SharedRegion = region) else {
        board::exit(EXIT_CONFIG);
    };
    let region: &'static SharedRegion = region;
    let Some(pool) = cortex_m::singleton!(: SharedPool<SHARED_SLOTS> = SharedPool::new(region))
    else {
        board::exit(EXIT_CONFIG);
    };
    let pool: &'static SharedPool<SHARED_SLOTS> = pool;
    defmt::info!(
        "shared region {=u16} at {=usize:#010x}: {=usize} slots of {=usize} bytes",
        region.id(),
        base,
        region.slots(),
        region.slot_len()
    );
    critical_section::with(|cs| {
        POOL.borrow(cs).set(Some(pool));
        *ADC_SHARED.borrow_ref_mut(cs) = Adc::new(block);
    });
    MODE.store(MODE_SHARED, Ordering::Release);
}

fn shared_pool() -> &'static SharedPool<SHARED_SLOTS> {
    match critical_section::with(|cs| POOL.borrow(cs).get()) {
        Some(pool) => pool,
        None => board::exit(EXIT_CONFIG),
    }
}

/// Waits (bounded) for the host to release every lent buffer, so a run ends with nothing on loan.
fn drain_releases(region: &SharedRegion, max_ticks: u32) {
    let start = TICKS.load(Ordering::Relaxed);
    loop {
        region.poll_releases();
        if region.lent() == 0 || TICKS.load(Ordering::Relaxed).wrapping_sub(start) > max_ticks {
            break;
        }
        cortex_m::asm::wfi();
    }
    defmt::info!(
        "shared region: {=usize} buffers still lent, {=u32} stray releases",
        region.lent(),
        region.stray_releases()
    );
}

/// SysTick: the simulated ADC delivers `ROWS_PER_TICK` rows into the block being filled, for
/// every period that passed on the sample clock (usually one; more after a lost interrupt).
#[exception]
fn SysTick() {
    let due = critical_section::with(|cs| {
        let cell = SAMPLE_CLOCK.borrow(cs);
        let Some((mut clock, counter)) = cell.get() else {
            return 1; // no free-running timer: one period per interrupt
        };
        let due = clock.due(counter());
        cell.set(Some((clock, counter)));
        // Bounded, so a core that stalled for long cannot turn one interrupt into thousands of
        // ticks; periods beyond are dropped, as interrupts were before.
        due.min(MAX_CATCH_UP)
    });
    TICKS.fetch_add(due, Ordering::Relaxed);
    let period = u64::from(RELOAD.load(Ordering::Relaxed)) + 1;
    critical_section::with(|cs| {
        let c = CYCLES.borrow(cs);
        c.set(c.get() + period * u64::from(due));
    });
    for _ in 0..due {
        match MODE.load(Ordering::Acquire) {
            MODE_INLINE => critical_section::with(|cs| {
                ADC_INLINE.borrow_ref_mut(cs).tick(&RING, ROWS_PER_TICK);
            }),
            MODE_SHARED => critical_section::with(|cs| {
                if let Some(pool) = POOL.borrow(cs).get() {
                    ADC_SHARED.borrow_ref_mut(cs).tick(pool, ROWS_PER_TICK);
                }
            }),
            _ => {}
        }
    }
}

/// Resets done since power-on (0 unless `reboot=` asked for some).
fn resets_so_far() -> u32 {
    // SAFETY: BOOTS is only accessed here and in `set_resets`, from the main thread, before and
    // after interrupts are used; any bit pattern is a valid `[u32; 2]`, garbage is caught by the
    // magic word.
    let [magic, resets] = unsafe { addr_of_mut!(BOOTS).cast::<[u32; 2]>().read_volatile() };
    if magic == BOOT_MAGIC {
        resets
    } else {
        set_resets(0);
        0
    }
}

fn set_resets(resets: u32) {
    // SAFETY: as in `resets_so_far`; a volatile write so it reaches RAM before the reset.
    unsafe {
        addr_of_mut!(BOOTS)
            .cast::<[u32; 2]>()
            .write_volatile([BOOT_MAGIC, resets])
    };
}

/// QEMU: semihosting for logs, boot parameters and the exit status; UART0 for data.
#[cfg(feature = "board")]
mod board {
    use defmt_semihosting as _;
    use dmapickle_firmware::config::BootConfig;

    use super::EXIT_CONFIG;
    use crate::uart::{Uart, UartRx};
    use dmapickle_hal::WriteLink;

    /// The data link, its down direction (the host's commands) and the boot parameters.
    pub fn start() -> (WriteLink<Uart>, UartRx, BootConfig) {
        let uart = Uart::uart0(16);
        let rx = uart.receiver();
        (WriteLink::new(uart), rx, boot_config())
    }

    /// Reads the boot parameters from the semihosting command line; defaults if there is none.
    fn boot_config() -> BootConfig {
        let mut cfg = BootConfig::default();
        let Ok(args) = semihosting::experimental::env::args::<512>() else {
            defmt::warn!("no semihosting command line: default boot parameters");
            return cfg;
        };
        for (i, arg) in (&args).enumerate() {
            let Ok(word) = arg else {
                defmt::error!("boot parameter {=usize} is not UTF-8", i);
                exit(EXIT_CONFIG);
            };
            if i == 0 && !word.contains('=') {
                continue;
            }
            if let Err(e) = cfg.apply(word) {
                defmt::error!("{}", defmt::Display2Format(&e));
                exit(EXIT_CONFIG);
            }
        }
        cfg
    }

    /// mps2-an386's CMSDK APB TIMER0: CTRL, VALUE and RELOAD at +0, +4, +8.
    const TIMER0: usize = 0x4000_0000;

    /// Starts TIMER0 counting down from `u32::MAX` at PCLK (25 MHz, SysTick's clock), wrapping,
    /// without an interrupt: the ADC's sample clock (`SampleClock`); returns its reader.
    pub fn sample_counter() -> Option<super::Counter> {
        // SAFETY: TIMER0's RELOAD, VALUE and CTRL registers on mps2-an386 (QEMU's
        // cmsdk-apb-timer); nothing else in this binary uses TIMER0 (the Embassy build, which
        // does, is another binary).
        unsafe {
            let base = TIMER0 as *mut u32;
            base.add(2).write_volatile(u32::MAX);
            base.add(1).write_volatile(u32::MAX);
            base.write_volatile(1); // enable
        }
        fn read() -> u32 {
            // SAFETY: TIMER0's VALUE register (a read has no side effect).
            unsafe { (TIMER0 as *const u32).add(1).read_volatile() }
        }
        Some(read)
    }

    /// Ends the QEMU run with `code` (semihosting SYS_EXIT_EXTENDED).
    pub fn exit(code: i32) -> ! {
        semihosting::process::exit(code)
    }
}

/// A real board under a debug probe: RTT channel 0 carries defmt, channel 1 (`dmapickle`) the
/// frames; boot parameters are the defaults (inline link, endless).
#[cfg(feature = "rtt")]
mod board {
    use dmapickle_firmware::config::BootConfig;
    use rtt_target::ChannelMode::NoBlockSkip;

    use dmapickle_firmware::rtt_link::{RttReader, RttWriter};
    use dmapickle_hal::WriteLink;

    /// The data link, its down direction (the host's commands on RTT down channel 0) and the
    /// boot parameters.
    pub fn start() -> (WriteLink<RttWriter>, RttReader, BootConfig) {
        let channels = rtt_target::rtt_init! {
            up: {
                0: { size: 1024, mode: NoBlockSkip, name: "defmt" }
                // Non-blocking until the host attaches and sets BlockIfFull (rtt_link's docs).
                1: { size: 16384, mode: NoBlockSkip, name: "dmapickle" }
            }
            down: {
                // Commands: a few frames of at most MAX_FRAME (78) bytes.
                0: { size: 256, name: "dmapickle" }
            }
        };
        rtt_target::set_defmt_channel(channels.up.0);
        let frames = RttWriter::new(channels.up.1, 1).expect("rtt_init! made up channel 1");
        let commands = RttReader::new(channels.down.0, 0).expect("rtt_init! made down channel 0");
        (WriteLink::new(frames), commands, BootConfig::default())
    }

    /// No free-running timer known on an unknown chip: one ADC period per SysTick.
    pub fn sample_counter() -> Option<super::Counter> {
        None
    }

    /// Stops at a breakpoint (the probe sees the halt); `code` was logged.
    pub fn exit(code: i32) -> ! {
        defmt::info!("exit status {=i32}", code);
        loop {
            cortex_m::asm::bkpt();
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    defmt::error!("panic: {}", defmt::Display2Format(info));
    board::exit(EXIT_PANIC)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    // SAFETY: HFSR and CFSR are always-readable System Control Block registers.
    let (hfsr, cfsr) = unsafe {
        (
            core::ptr::read_volatile(0xE000_ED2C as *const u32),
            core::ptr::read_volatile(0xE000_ED28 as *const u32),
        )
    };
    defmt::error!(
        "HardFault: pc={=u32:#010x} lr={=u32:#010x} xpsr={=u32:#010x} hfsr={=u32:#010x} cfsr={=u32:#010x}",
        frame.pc(),
        frame.lr(),
        frame.xpsr(),
        hfsr,
        cfsr
    );
    board::exit(EXIT_HARDFAULT)
}
