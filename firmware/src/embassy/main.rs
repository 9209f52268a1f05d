//! dmapickle instrument firmware on Embassy, for QEMU `mps2-an386` (Cortex-M4F), over Ethernet.
//!
//! The same instrument as `src/main.rs` (the same `{"seq", "t_us", "rate_hz", "adc": (N, 4)
//! int16}` message and exact-sample waveform, the same `dmapickle-hal` buffers and ring), as two
//! async tasks on `embassy-executor` in thread mode (its raw executor, sleeping with WFI:
//! [`executor`]):
//! - `adc`: the simulated ADC, woken by an `embassy-time` ticker (CMSDK timers,
//!   [`time_driver`]), fills block buffers and signals each complete block;
//! - `publisher`: serves one TCP client at a time on `port=` (default 4000) through
//!   `embassy-net` on the LAN9118 ([`lan9118`]), publishing each block with
//!   `Publisher::publish_async` straight from its buffer into the socket.
//!
//! Host -> device control (`dmapickle_core::control`): the publisher also reads commands on the
//! data connection, and on a second connection to the same port that a host opens while a reader
//! holds the first (`dmapickle ctl`; commands and replies only, never frames), and answers each
//! between two frames with the UART build's command handling (`dmapickle_firmware::control`): a
//! change pauses the ADC at a block boundary, publishes every block of the old setting, applies
//! from the next seq and restarts the ADC's clock (`RESTART`). A connection made while no reader
//! is connected is the data connection (smoltcp offers it to the first listening socket, and the
//! data socket is created first); a data connection that ends closes the control one too.
//!
//! While no client is connected the ring fills and the ADC stalls (counted), so no block is
//! skipped; a frame cut by a dropped connection is the only loss (besides `drop=`), and the host
//! sees it as one lost sequence number. Network: QEMU's user network, static 10.0.2.15/24, gateway 10.0.2.2;
//! `-nic user,model=lan9118,hostfwd=tcp:127.0.0.1:HOSTPORT-:4000` (firmware/qemu.sh `--nic`).
//!
//! Boot parameters: as in `dmapickle_firmware::config` (`n=`, `count=`, `rate=`, `skew_ppm=`,
//! `drop=`; `mode=inline` only), plus `port=P`, `sink=null` (no network: the device's own
//! rate), `crc=off` (frames without the data CRC, for a host that trusts TCP) and `cut=K` (cut
//! frame K+1 of the first connection in the middle, by dropping the `publish_async` future,
//! then abort the connection: the host's reconnect and resynchronisation test).
#![no_std]
#![no_main]

mod executor;
mod lan9118;
#[path = "../paint.rs"]
mod paint;
mod tcp_link;
mod time_driver;

use core::cell::RefCell;
use core::ptr::addr_of_mut;

use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use critical_section::Mutex;
use defmt_semihosting as _;
use dmapickle_core::control::LinkKind;
use dmapickle_hal::control::{Command, CommandReader, ReplyCache};
use dmapickle_hal::{BufferRing, DmaBuf, Outgoing, Publisher};
use embassy_executor::{raw, Spawner};
use embassy_futures::select::{select, select3, Either, Either3};
use embassy_net::tcp::{State, TcpSocket};
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{Duration, Instant, Timer};
use embedded_io_async::Write;
use static_cell::{ConstStaticCell, StaticCell};

use dmapickle_firmware::adc::Adc;
use dmapickle_firmware::config::{BootConfig, Placement, MAX_BLOCK};
use dmapickle_firmware::control::{Acquisition, Answer, Controls, Layout, Report};
use dmapickle_firmware::message::{self, MAX_PICKLE};
use dmapickle_firmware::waveform::ROW_BYTES;

use lan9118::Lan9118;
use paint::{paint_stack, stack_high_water};
use tcp_link::TcpLink;

/// Block buffers in RAM.
const SLOTS: usize = 8;
const BLOCK_BYTES: usize = MAX_BLOCK as usize * ROW_BYTES;
/// Region id of the RAM buffers (inline only; diagnostics for the host).
const RAM_REGION: u16 = 1;
/// TCP send buffer: what may be in flight unacknowledged.
const TCP_TX: usize = 64 * 1024;
const TCP_RX: usize = 1024;
/// The control connection's buffers: commands down, replies up (both under 100 bytes).
const CTL_RX: usize = 512;
const CTL_TX: usize = 512;
const EXIT_CONFIG: i32 = 2;
const EXIT_PUBLISH: i32 = 3;
const EXIT_PANIC: i32 = 101;
const EXIT_HARDFAULT: i32 = 102;

static mut BLOCKS_RAM: [[u8; BLOCK_BYTES]; SLOTS] = [[0; BLOCK_BYTES]; SLOTS];
static RING: BufferRing<SLOTS> = BufferRing::new();
static ADC: Mutex<RefCell<Adc<DmaBuf>>> = Mutex::new(RefCell::new(Adc::new(256)));
/// Raised by the ADC task when a block is on the ready queue.
static READY: Signal<CriticalSectionRawMutex, ()> = Signal::new();
/// Raised by the publisher when it gave a buffer back to the free queue.
static FREED: Signal<CriticalSectionRawMutex, ()> = Signal::new();
static TCP_TX_BUF: ConstStaticCell<Aligned<TCP_TX>> = ConstStaticCell::new(Aligned([0; TCP_TX]));
static TCP_RX_BUF: ConstStaticCell<[u8; TCP_RX]> = ConstStaticCell::new([0; TCP_RX]);
/// A word-aligned byte buffer. The TCP send buffer is one: full segments then start at word
/// offsets in it (1460-byte payloads), as they do in the LAN9118 driver's frame buffer, so the
/// copy of each segment's payload runs word by word (`lan9118::TX_OFFSET`).
#[repr(C, align(4))]
struct Aligned<const N: usize>([u8; N]);
static CTL_RX_BUF: ConstStaticCell<[u8; CTL_RX]> = ConstStaticCell::new([0; CTL_RX]);
static CTL_TX_BUF: ConstStaticCell<[u8; CTL_TX]> = ConstStaticCell::new([0; CTL_TX]);
/// Raised by the publisher when a command changed the acquisition: the ADC's new `(rate_hz,
/// block rows)`, from a block boundary (the ADC is paused there until then).
static RESTART: Signal<CriticalSectionRawMutex, (u32, u32)> = Signal::new();
static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
static NIC: StaticCell<Lan9118> = StaticCell::new();

defmt::timestamp!("{=u64:us}", Instant::now().as_micros());

/// What the Ethernet build adds to the boot parameters.
#[derive(Clone, Copy, defmt::Format)]
struct NetParams {
    port: u16,
    cut_after: Option<u32>,
    /// `crc=off`: frames with `NO_DATA_CRC` (TCP checks the payload; the host must trust the
    /// link), which saves the CPU a pass over every array byte.
    data_crc: bool,
    /// `sink=null`: publish into a writer that drops the bytes (see [`Null`]), then exit.
    null_sink: bool,
}

#[entry]
fn main() -> ! {
    let painted = paint_stack();
    time_driver::init();
    let (cfg, net) = boot_config();
    defmt::info!("dmapickle firmware (embassy, ethernet): {} {}", cfg, net);
    if cfg.placement != Placement::Inline {
        defmt::error!(
            "mode=shared is the UART build's (PSRAM file); the Ethernet build sends arrays inline"
        );
        exit(EXIT_CONFIG);
    }
    let nic = match Lan9118::take() {
        Ok(nic) => NIC.init(nic),
        Err(e) => {
            defmt::error!("LAN9118: {} (start QEMU with firmware/qemu.sh --nic)", e);
            exit(EXIT_CONFIG)
        }
    };
    // SAFETY: runs once, before any interrupt is unmasked: the only reference to BLOCKS_RAM ever
    // made, split into disjoint `'static` buffers the ring owns from now on.
    let blocks: &'static mut [[u8; BLOCK_BYTES]; SLOTS] = unsafe { &mut *addr_of_mut!(BLOCKS_RAM) };
    for (i, mem) in blocks.iter_mut().enumerate() {
        let _ = RING.give(DmaBuf::new(RAM_REGION, (i * BLOCK_BYTES) as u32, mem));
    }
    critical_section::with(|cs| *ADC.borrow_ref_mut(cs) = Adc::new(cfg.block));
    for irq in [
        time_driver::TIMER0_IRQ,
        time_driver::TIMER1_IRQ,
        lan9118::IRQ,
    ] {
        // SAFETY: the handlers (DefaultHandler below) only touch state behind critical sections
        // or atomics, so unmasking cannot break a critical section in progress.
        unsafe { NVIC::unmask(Irq(irq)) };
    }
    let executor = EXECUTOR.init(raw::Executor::new(core::ptr::null_mut()));
    executor::run(executor, move |spawner: Spawner| {
        let mac = nic.mac();
        let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
            gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
            dns_servers: heapless::Vec::new(),
        });
        let resources = RESOURCES.init(StackResources::new());
        // QEMU is deterministic; so is this seed (TCP initial sequence numbers, ports).
        let seed = u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0x13, 0x5e]);
        let (stack, runner) = embassy_net::new(nic, config, resources, seed);
        spawner.spawn(net_task(runner).expect("one net task"));
        spawner.spawn(adc_task(cfg.block, cfg.rate_hz).expect("one adc task"));
        spawner.spawn(publisher_task(stack, cfg, net, painted).expect("one publisher task"));
    })
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, &'static mut Lan9118>) -> ! {
    runner.run().await
}

/// The simulated ADC: it wakes about every millisecond (a DMA half transfer, say) and delivers
/// the rows due since the last wake, block after block. When no buffer is free it stalls
/// (counted) and keeps what is due, up to a ring's worth, for when the publisher gives a buffer
/// back (`FREED`), so a slow wake never idles the link; the signal stays continuous and no
/// block is skipped. A command's change (`RESTART`, sent once the ADC paused at a block
/// boundary) restarts its clock with the new rate and block rows from that boundary.
#[embassy_executor::task]
async fn adc_task(mut block: u32, mut rate_hz: u32) {
    loop {
        let (rate, rows) = acquire(block, rate_hz).await;
        (rate_hz, block) = (rate, rows);
    }
}

/// [`adc_task`] at one setting, until `RESTART` brings the next one.
async fn acquire(block: u32, rate_hz: u32) -> (u32, u32) {
    let rows = (rate_hz / 1000).max(1);
    let period = Duration::from_micros((u64::from(rows) * 1_000_000 / u64::from(rate_hz)).max(1));
    defmt::info!(
        "ADC: {=u32} rows per wake every {=u64} us, blocks of {=u32} rows",
        rows,
        period.as_micros(),
        block
    );
    let most = block * SLOTS as u32;
    // Each wake is due at its exact time, start + ceil(k * rows / rate), not every `period`:
    // that is rounded down to whole microseconds (1562 for 1562.5 at 640 Hz), and a ticker on it
    // ran the sample clock about 320 ppm fast. A late wake fires at once, so none is lost.
    let start = Instant::now();
    let mut wakes: u64 = 0;
    let (mut done, mut due) = (0, 0); // rows of the block being filled; rows due
    loop {
        let at_us = ((wakes + 1) * u64::from(rows) * 1_000_000).div_ceil(u64::from(rate_hz));
        let wake = Timer::at(start + Duration::from_micros(at_us));
        // The restart first: once it is signalled no row of the old setting is acquired.
        match select3(RESTART.wait(), wake, FREED.wait()).await {
            Either3::First(next) => return next,
            Either3::Second(()) => {
                wakes += 1;
                due = (due + rows).min(most.max(rows));
            }
            Either3::Third(()) => {}
        }
        while due > 0 {
            let step = due.min(block - done);
            let (complete, stalled) = critical_section::with(|cs| {
                let mut adc = ADC.borrow_ref_mut(cs);
                let stalls = adc.stalls();
                // Paused (a command waits for the block boundary): nothing is acquired, and
                // what falls due meanwhile is not owed (t_us continues from the boundary).
                if adc.paused() {
                    return (false, true);
                }
                (adc.tick(&RING, step), adc.stalls() != stalls)
            });
            if stalled {
                break;
            }
            due -= step;
            done = (done + step) % block;
            if complete {
                READY.signal(());
            }
        }
    }
}

/// Gives a published block's buffer back to the ADC.
fn give_back(buf: DmaBuf) {
    // The ring held this buffer before, so it has room for it again.
    let _ = RING.give(buf);
    FREED.signal(());
}

/// The next complete block.
async fn next_block() -> DmaBuf {
    loop {
        if let Some(buf) = RING.pop_ready() {
            return buf;
        }
        READY.wait().await;
    }
}

/// An `embedded-io-async` writer that passes `budget` bytes on, then never completes: how the
/// `cut=` test cuts a frame in the middle (the future is then dropped).
struct Cut<'a, W> {
    inner: &'a mut W,
    budget: usize,
}

impl<W: Write> embedded_io_async::ErrorType for Cut<'_, W> {
    type Error = W::Error;
}

impl<W: Write> Write for Cut<'_, W> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, W::Error> {
        if self.budget == 0 && !bytes.is_empty() {
            core::future::pending::<()>().await;
        }
        let n = self
            .inner
            .write(&bytes[..bytes.len().min(self.budget)])
            .await?;
        self.budget -= n;
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), W::Error> {
        self.inner.flush().await
    }
}

/// Why serving one data connection ended.
enum Ended {
    /// `count=` messages went out.
    Done,
    /// A write failed at this seq (the host went away).
    Failed(dmapickle_hal::Error),
    /// `cut=` cut this frame in the middle.
    Cut,
}

/// The instrument's state across connections: the settings, the reply cache, the seq.
struct Device<'a> {
    cfg: &'a BootConfig,
    publisher: &'a Publisher,
    controls: Controls,
    cache: ReplyCache,
    /// The seq of the next block.
    seq: u32,
    /// Blocks `drop=` left out.
    dropped: u32,
    /// Blocks acquired with an old setting that a failed connection could not take while a
    /// change waited for them (published to nowhere, so the host counts them as lost).
    orphaned: u32,
}

impl Device<'_> {
    /// Publishes `buf` as block `self.seq` with the settings in force (`drop=` sends it to
    /// nowhere), gives the buffer back and counts the seq.
    async fn block<W: Write>(
        &mut self,
        link: &mut W,
        buf: DmaBuf,
    ) -> Result<(), dmapickle_hal::Error> {
        let seq = self.seq;
        let acq = &self.controls.acq;
        let result = if self.cfg.drops(seq) {
            // `drop=` (as in the UART build): the frame number is used up on a link to
            // nowhere, so the host sees a gap.
            self.dropped = self.dropped.wrapping_add(1);
            publish_block(self.publisher, &mut Null, seq, acq, &buf).await
        } else {
            publish_block(self.publisher, link, seq, acq, &buf).await
        };
        self.sent(buf);
        result
    }

    /// `buf`, block `self.seq`, went out (or was cut): back to the ADC, next seq.
    fn sent(&mut self, buf: DmaBuf) {
        // The future is gone: the buffer is ours again, back to the ADC.
        give_back(buf);
        if self.seq.is_multiple_of(256) {
            defmt::info!("published seq {=u32}", self.seq);
        }
        self.seq = self.seq.wrapping_add(1);
    }

    /// Answers `cmd` (from the reply cache if its id is the last one answered) and returns the
    /// reply frame, for the caller to write between two frames on the connection the command
    /// came on. A change pauses the ADC at its next block boundary, publishes every block of the
    /// old setting on `data`, then applies from the next seq, exactly as the UART build does.
    async fn command(&mut self, cmd: Command, data: &mut TcpSocket<'_>, skipped: u32) -> &[u8] {
        if self.cache.repeat(&cmd) {
            defmt::info!(
                "command {=u32} repeated: reply sent again, not applied",
                cmd.id
            );
            return self.cache.last();
        }
        let (adc_stalls, overflows) = adc_counters();
        let report = Report {
            layout: Layout {
                link: LinkKind::Inline,
                region: RAM_REGION,
                region_len: (SLOTS * BLOCK_BYTES) as u32,
                slots: SLOTS as u16,
            },
            next_seq: self.seq,
            dropped: self.dropped,
            adc_stalls,
            overflows,
            lent: 0,
            bytes_skipped: skipped,
            repeats: self.cache.repeats(),
            now_us: Instant::now().as_micros(),
        };
        let reply = match self.controls.answer(cmd.request, &report) {
            Answer::Reply(reply) => reply,
            Answer::Change(change) => {
                self.pause_between_blocks(data).await;
                let reply = self.controls.applied(change, self.seq);
                let acq = self.controls.acq;
                if acq.running {
                    critical_section::with(|cs| ADC.borrow_ref_mut(cs).resume(acq.block));
                    RESTART.signal((acq.rate_hz, acq.block));
                }
                reply
            }
        };
        defmt::info!("command {=u32}: {} -> {}", cmd.id, cmd.request, reply);
        self.cache.record(cmd.id, &reply)
    }

    /// Asks the ADC to pause at its next block boundary and publishes the blocks that complete
    /// meanwhile on `data`, until it has paused and every block it acquired went out. If `data`
    /// fails meanwhile, the rest of the old blocks go to nowhere (lost, as a cut frame is), so
    /// none is ever sent with the new setting's metadata.
    async fn pause_between_blocks(&mut self, data: &mut TcpSocket<'_>) {
        critical_section::with(|cs| ADC.borrow_ref_mut(cs).pause());
        let mut failed = false;
        loop {
            if let Some(buf) = RING.pop_ready() {
                if failed {
                    self.orphaned = self.orphaned.wrapping_add(1);
                    let _ = self.block(&mut Null, buf).await;
                } else if self.block(&mut TcpLink(data), buf).await.is_err() {
                    failed = true;
                    data.abort();
                }
                continue;
            }
            if critical_section::with(|cs| ADC.borrow_ref(cs).paused()) {
                return;
            }
            let _ = select(READY.wait(), Timer::after_millis(1)).await;
        }
    }

    /// Serves one data connection on `socket` (and commands on it and on `ctl`) until it ends.
    async fn serve(
        &mut self,
        socket: &mut TcpSocket<'_>,
        ctl: &mut CtlLink<'_>,
        data: &mut DownLink,
        net: &NetParams,
        cut: bool,
    ) -> Ended {
        let limit = self.cfg.messages();
        let mut on_this = 0u32;
        loop {
            if limit.is_some_and(|n| self.seq >= n) {
                return Ended::Done;
            }
            // Commands first: a backlog of blocks must not starve them.
            let next = select3(data.next(socket), ctl.next(net.port), next_block()).await;
            let buf = match next {
                Either3::First(cmd) => {
                    let skipped = data.skipped() + ctl.skipped();
                    let frame = self.command(cmd, socket, skipped).await;
                    if socket.write_all(frame).await.is_err() {
                        return Ended::Failed(dmapickle_hal::Error::Link);
                    }
                    continue;
                }
                Either3::Second(cmd) => {
                    let skipped = data.skipped() + ctl.skipped();
                    let frame = self.command(cmd, socket, skipped).await;
                    ctl.reply(frame).await;
                    continue;
                }
                Either3::Third(buf) => buf,
            };
            if cut && net.cut_after == Some(on_this) {
                let budget = buf.len() / 2;
                let mut cut = Cut {
                    inner: &mut *socket,
                    budget,
                };
                let publishing =
                    publish_block(self.publisher, &mut cut, self.seq, &self.controls.acq, &buf);
                if let Either::First(_) = select(publishing, Timer::after_millis(200)).await {
                    defmt::panic!("the cut link cannot complete a frame");
                }
                self.sent(buf);
                return Ended::Cut;
            }
            if let Err(e) = self.block(&mut TcpLink(socket), buf).await {
                return Ended::Failed(e);
            }
            on_this += 1;
        }
    }
}

/// A connection's down direction: the command reader, and whether the host still sends.
struct DownLink {
    reader: CommandReader,
    open: bool,
    /// Bytes skipped on earlier connections.
    skipped_before: u32,
}

impl DownLink {
    const fn new() -> Self {
        DownLink {
            reader: CommandReader::new(),
            open: false,
            skipped_before: 0,
        }
    }

    /// A new connection: nothing held from the last one.
    fn reset(&mut self) {
        self.skipped_before = self.skipped();
        self.reader = CommandReader::new();
        self.open = true;
    }

    fn skipped(&self) -> u32 {
        self.skipped_before
            .wrapping_add(self.reader.bytes_skipped())
    }

    /// The next command from `socket`, or `None` once the host closed its sending half or the
    /// read failed. Cancel-safe: bytes read stay held.
    async fn next_or_end(&mut self, socket: &mut TcpSocket<'_>) -> Option<Command> {
        if self.open {
            match self.reader.read_async(socket).await {
                Ok(Some(cmd)) => return Some(cmd),
                Ok(None) | Err(_) => self.open = false,
            }
        }
        None
    }

    /// The next command from the data connection `socket`; never, once it ended (a failed
    /// connection shows itself on the next frame's write). Cancel-safe.
    async fn next(&mut self, socket: &mut TcpSocket<'_>) -> Command {
        match self.next_or_end(socket).await {
            Some(cmd) => cmd,
            None => core::future::pending().await,
        }
    }
}

/// The second connection on the data port, for commands only (`dmapickle ctl` while a reader
/// holds the data connection): replies go up on it, frames never do. It is served while a data
/// connection is up; a connection made while none is becomes the data connection instead.
struct CtlLink<'a> {
    socket: TcpSocket<'a>,
    down: DownLink,
    up: bool,
    connections: u32,
    /// When the last connection was closed (its RST is waited for until 100 ms after).
    closed_at: Instant,
}

impl CtlLink<'_> {
    fn skipped(&self) -> u32 {
        self.down.skipped()
    }

    /// The next command on the control connection, accepting one first if needed.
    ///
    /// Cancel-safe, which it must be: the serve loop drops this future whenever a block is
    /// ready (every few milliseconds). Every step after an `await` is decided by the socket's
    /// state, not by where the last call stopped, so an interrupted accept, reset or read
    /// resumes on the next call (and a read keeps what it got).
    async fn next(&mut self, port: u16) -> Command {
        loop {
            if !self.up {
                self.connected(port).await;
                self.up = true;
                self.connections += 1;
                self.down.reset();
                defmt::info!(
                    "control connection {=u32} from {}",
                    self.connections,
                    self.socket.remote_endpoint()
                );
            }
            match self.down.next_or_end(&mut self.socket).await {
                Some(cmd) => return cmd,
                None => {
                    defmt::info!("control connection {=u32} closed", self.connections);
                    self.close();
                }
            }
        }
    }

    /// Returns once a command connection is established, listening for one if the socket is
    /// idle. A reset still to be sent goes out first (listening again would forget it, and the
    /// host would keep the old connection open); a handshake under way is waited for, not
    /// restarted (`accept` on a socket in SYN-RECEIVED fails, and aborting it would refuse
    /// the host's connection).
    async fn connected(&mut self, port: u16) {
        loop {
            match self.socket.state() {
                State::Established | State::CloseWait => return,
                // Waited for at most 100 ms after the close (no link: then it is forgotten).
                State::Closed
                    if self.socket.remote_endpoint().is_some()
                        && Instant::now() < self.closed_at + Duration::from_millis(100) =>
                {
                    let deadline = self.closed_at + Duration::from_millis(100);
                    let _ = select(self.socket.flush(), Timer::at(deadline)).await;
                }
                State::Closed | State::Listen => {
                    if let Err(e) = self.socket.accept(port).await {
                        defmt::warn!("control accept: {}", e);
                        self.socket.abort();
                        Timer::after_millis(10).await;
                    }
                }
                State::SynReceived | State::SynSent => Timer::after_millis(1).await,
                // Closing states (this side only ever aborts, so a stray one): start again.
                _ => self.socket.abort(),
            }
        }
    }

    /// Writes a reply on the control connection; a failure closes it.
    async fn reply(&mut self, frame: &[u8]) {
        if self.socket.write_all(frame).await.is_err() {
            self.close();
        }
    }

    /// Ends the control connection: an RST, which [`CtlLink::connected`] sends before the
    /// socket listens again. Synchronous, so no interruption can leave `up` stale.
    fn close(&mut self) {
        self.socket.abort();
        self.up = false;
        self.closed_at = Instant::now();
    }

    /// [`CtlLink::close`], then waits (up to 100 ms) until the RST went out, for the places
    /// that are not interrupted: the end of a data connection, and of the run.
    async fn close_and_flush(&mut self) {
        self.close();
        let _ = select(self.socket.flush(), Timer::after_millis(100)).await;
    }
}

#[embassy_executor::task]
async fn publisher_task(
    stack: Stack<'static>,
    cfg: BootConfig,
    net: NetParams,
    painted: (*mut u32, usize),
) {
    // The data socket first: smoltcp offers a connection to the first listening socket, so a
    // connection made while no reader is connected is always the data connection.
    let mut socket = TcpSocket::new(stack, TCP_RX_BUF.take(), &mut TCP_TX_BUF.take().0);
    let mut ctl = CtlLink {
        socket: TcpSocket::new(stack, CTL_RX_BUF.take(), CTL_TX_BUF.take()),
        down: DownLink::new(),
        up: false,
        connections: 0,
        closed_at: Instant::from_ticks(0),
    };
    let publisher = if net.data_crc {
        Publisher::new()
    } else {
        Publisher::new().without_data_crc()
    };
    let mut dev = Device {
        cfg: &cfg,
        publisher: &publisher,
        controls: Controls::new(&cfg),
        cache: ReplyCache::new(),
        seq: 0,
        dropped: 0,
        orphaned: 0,
    };
    let mut data = DownLink::new();
    let mut connections = 0u32;
    if net.null_sink {
        dev.seq = null_sink_run(&publisher, &cfg).await;
    }
    stack.wait_config_up().await;
    while cfg.messages().is_none_or(|n| dev.seq < n) {
        defmt::info!("listening on tcp port {=u16}", net.port);
        if let Err(e) = socket.accept(net.port).await {
            defmt::warn!("accept: {}", e);
            socket.abort();
            continue;
        }
        connections += 1;
        data.reset();
        defmt::info!(
            "connection {=u32} from {}",
            connections,
            socket.remote_endpoint()
        );
        let ended = dev
            .serve(&mut socket, &mut ctl, &mut data, &net, connections == 1)
            .await;
        match ended {
            Ended::Done => break,
            Ended::Failed(e) => defmt::warn!(
                "connection {=u32} failed at seq {=u32}: {}",
                connections,
                dev.seq - 1,
                e
            ),
            Ended::Cut => defmt::info!(
                "dropped connection {=u32} in the middle of seq {=u32}",
                connections,
                dev.seq - 1
            ),
        }
        // No data connection: the control connection goes too (its changes need a link for the
        // blocks of the old setting), and it stops listening so the next connection is data.
        ctl.close_and_flush().await;
        socket.abort();
        let _ = socket.flush().await;
    }
    ctl.close_and_flush().await;
    let _ = socket.flush().await;
    socket.close();
    let _ = select(socket.flush(), Timer::after_secs(2)).await;
    Timer::after_millis(100).await;
    let (stalls, overflows) = adc_counters();
    defmt::info!(
        "done: {=u32} messages, {=u32} ADC stalls, {=u32} overflows, stack high water {=usize} bytes",
        dev.seq,
        stalls,
        overflows,
        stack_high_water(painted)
    );
    defmt::info!(
        "ethernet: {=u32} connections, {=u32} control connections, {=u32} commands, {=u32} blocks orphaned",
        connections,
        ctl.connections,
        dev.controls.commands,
        dev.orphaned
    );
    exit(0)
}

/// `(stalls, overflows)` of the ADC.
fn adc_counters() -> (u32, u32) {
    critical_section::with(|cs| {
        let adc = ADC.borrow_ref(cs);
        (adc.stalls(), adc.overflows())
    })
}

/// Encodes block `seq` (in `buf`) with the settings `acq` and publishes it on `link`, `buf`
/// borrowed for the call.
async fn publish_block<W: Write>(
    publisher: &Publisher,
    link: &mut W,
    seq: u32,
    acq: &Acquisition,
    buf: &DmaBuf,
) -> Result<(), dmapickle_hal::Error> {
    let mut out = [0u8; MAX_PICKLE];
    let t_us = acq.t_us(seq);
    let msg = match message::encode_at(
        &mut out,
        seq,
        t_us,
        acq.block,
        acq.rate_hz,
        buf.descriptor(),
    ) {
        Ok(msg) => msg,
        Err(e) => {
            defmt::error!("encoding message {=u32}: {}", seq, e);
            exit(EXIT_PUBLISH);
        }
    };
    let inline = [Outgoing::Inline(buf)];
    let sent = publisher.publish_async(link, msg.pickle, &msg.descriptors, inline);
    // The outcome without the buffer references it carries.
    sent.await.map(|_| ()).map_err(|e| e.error)
}

/// An `embedded-io-async` writer that drops every byte: `sink=null` measures what the device
/// alone (ADC, encoding, CRC, framing) can produce, without the network.
struct Null;

impl embedded_io_async::ErrorType for Null {
    type Error = core::convert::Infallible;
}

impl Write for Null {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Self::Error> {
        Ok(bytes.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// `sink=null`: publish `count` messages into [`Null`] and log the rate; returns the count.
async fn null_sink_run(publisher: &Publisher, cfg: &BootConfig) -> u32 {
    let count = cfg.messages().unwrap_or(1000);
    let acq = Acquisition::new(cfg);
    let start = Instant::now();
    for seq in 0..count {
        let buf = next_block().await;
        let _ = publish_block(publisher, &mut Null, seq, &acq, &buf).await;
        give_back(buf);
    }
    let us = start.elapsed().as_micros().max(1);
    let reads = 200_000;
    let mmio = Instant::now();
    lan9118::read_byte_test(reads);
    defmt::info!(
        "LAN9118 register access: {=u64} ns",
        mmio.elapsed().as_micros() * 1000 / u64::from(reads)
    );
    defmt::info!(
        "null sink: {=u32} messages of {=u32} rows in {=u64} us: {=u64} messages/s, {=u64} kB/s of arrays",
        count,
        cfg.block,
        us,
        u64::from(count) * 1_000_000 / us,
        u64::from(count) * u64::from(cfg.block) * 8 * 1000 / us
    );
    count
}

/// Boot parameters from the semihosting command line: `port=`, `cut=`, `crc=` and `sink=` here,
/// the rest as in the UART build.
fn boot_config() -> (BootConfig, NetParams) {
    let mut cfg = BootConfig::default();
    let mut net = NetParams {
        port: 4000,
        cut_after: None,
        data_crc: true,
        null_sink: false,
    };
    let Ok(args) = semihosting::experimental::env::args::<512>() else {
        return (cfg, net);
    };
    for (i, arg) in (&args).enumerate() {
        let Ok(word) = arg else {
            defmt::error!("boot parameter {=usize} is not UTF-8", i);
            exit(EXIT_CONFIG);
        };
        if i == 0 && !word.contains('=') {
            continue;
        }
        let number = |v: &str| v.parse::<u32>().ok();
        match word.split_once('=') {
            Some(("port", v)) => match v.parse::<u16>() {
                Ok(p) if p > 0 => net.port = p,
                _ => {
                    defmt::error!(
                        "bad value in boot parameter `{=str}`: port takes 1..=65535",
                        word
                    );
                    exit(EXIT_CONFIG);
                }
            },
            Some(("cut", v)) => match number(v) {
                Some(k) => net.cut_after = Some(k),
                None => {
                    defmt::error!(
                        "bad value in boot parameter `{=str}`: cut takes a message count",
                        word
                    );
                    exit(EXIT_CONFIG);
                }
            },
            Some(("crc", "on" | "off")) => net.data_crc = word == "crc=on",
            Some(("sink", "null" | "tcp")) => net.null_sink = word == "sink=null",
            _ => {
                if let Err(e) = cfg.apply(word) {
                    defmt::error!("{}", defmt::Display2Format(&e));
                    exit(EXIT_CONFIG);
                }
            }
        }
    }
    (cfg, net)
}

fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

/// An external interrupt line of this board.
#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: the numbers used are the board's interrupt lines (mps2.c: timers 8 and 9, LAN9118 13),
// all below the 32 lines the AN386 NVIC has.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// No device crate, so cortex-m-rt routes every interrupt here; dispatch by number.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    match irqn {
        8 => time_driver::on_timer0(),
        9 => time_driver::on_timer1(),
        13 => Lan9118::on_interrupt(),
        _ => {}
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    defmt::error!("panic: {}", defmt::Display2Format(info));
    exit(EXIT_PANIC)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!(
        "HardFault: pc={=u32:#010x} lr={=u32:#010x}",
        frame.pc(),
        frame.lr()
    );
    exit(EXIT_HARDFAULT)
}
