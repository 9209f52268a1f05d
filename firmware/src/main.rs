//! dmapickle instrument firmware for QEMU `mps2-an386` (Cortex-M4F).
//!
//! A simulated ADC (the SysTick interrupt) fills 4-channel int16 blocks into a ring of buffers;
//! the main loop publishes each block as `{"seq", "t_us", "rate_hz", "adc": ndarray (N, 4)}`
//! through `dmapickle-hal` over CMSDK UART0, with the array either inline after the frame or left
//! in PSRAM for the host to map (boot parameter `mode=`, see `dmapickle_firmware::config`).
//! Logs are defmt over semihosting; a panic or HardFault is logged and ends QEMU with a non-zero
//! status.
#![no_std]
#![no_main]

mod uart;

use core::cell::RefCell;
use core::ptr::addr_of_mut;
use core::sync::atomic::{compiler_fence, AtomicPtr, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use critical_section::Mutex;
use defmt_semihosting as _;

use dmapickle_firmware::adc::BlockRing;
use dmapickle_firmware::config::{BootConfig, Fault, LinkMode, MAX_BLOCK};
use dmapickle_firmware::stack;
use dmapickle_firmware::waveform::{fill_rows, CHANNELS};

/// Core clock of mps2-an386 (SYSCLK), which drives SysTick.
const CORE_HZ: u32 = 25_000_000;
/// Rows the simulated ADC delivers per SysTick interrupt (a DMA half-transfer, say).
const ROWS_PER_TICK: u32 = 32;
/// Block buffers in the ring.
const SLOTS: usize = 8;
/// Exit status for a panic.
const EXIT_PANIC: i32 = 101;
/// Exit status for a HardFault.
const EXIT_HARDFAULT: i32 = 102;
/// Exit status for unusable boot parameters.
const EXIT_CONFIG: i32 = 2;

/// One block buffer: up to `MAX_BLOCK` rows of `CHANNELS` int16 samples, C order.
type Block = [[i16; CHANNELS]; MAX_BLOCK as usize];

/// Block buffers for the inline link, in main RAM.
static mut BLOCKS_RAM: [Block; SLOTS] = [[[0; CHANNELS]; MAX_BLOCK as usize]; SLOTS];
/// Block buffers for the shared-region link, in PSRAM (the host maps it; see memory.x).
#[link_section = ".psram.blocks"]
static mut BLOCKS_PSRAM: [Block; SLOTS] = [[[0; CHANNELS]; MAX_BLOCK as usize]; SLOTS];

/// The buffers the ISR fills: `BLOCKS_RAM` or `BLOCKS_PSRAM`, chosen at boot.
static BLOCKS: AtomicPtr<Block> = AtomicPtr::new(core::ptr::null_mut());
/// Who may touch which buffer (see `dmapickle_firmware::adc`).
static RING: Mutex<RefCell<BlockRing<SLOTS>>> = Mutex::new(RefCell::new(BlockRing::new(256)));

extern "C" {
    /// Lowest address of the stack area (cortex-m-rt's `link.x`).
    static mut _stack_end: u32;
    /// Initial stack pointer, one past the highest stack address.
    static mut _stack_start: u32;
}

#[entry]
fn main() -> ! {
    let painted = paint_stack();
    let cfg = boot_config();
    defmt::info!("dmapickle firmware: {}", cfg);

    let blocks = match cfg.mode {
        LinkMode::Inline => addr_of_mut!(BLOCKS_RAM).cast::<Block>(),
        LinkMode::Shared => addr_of_mut!(BLOCKS_PSRAM).cast::<Block>(),
    };
    BLOCKS.store(blocks, Ordering::Release);
    critical_section::with(|cs| *RING.borrow_ref_mut(cs) = BlockRing::new(cfg.block));

    let mut uart = uart::Uart::uart0(16);
    let Some(mut core) = cortex_m::Peripherals::take() else {
        defmt::error!("core peripherals already taken");
        exit(EXIT_CONFIG);
    };
    let rows_per_tick = ROWS_PER_TICK.min(cfg.block);
    let tick_hz = (cfg.rate_hz / rows_per_tick).max(1);
    let reload = (CORE_HZ / tick_hz).clamp(2, 1 << 24) - 1;
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(reload);
    core.SYST.clear_current();
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();
    defmt::info!(
        "ADC: {=u32} rows/tick at {=u32} Hz (reload {=u32}), {=usize} slots",
        rows_per_tick,
        tick_hz,
        reload,
        SLOTS
    );

    let mut published: u32 = 0;
    while cfg.count == 0 || published < cfg.count {
        let next = critical_section::with(|cs| RING.borrow_ref_mut(cs).take_ready());
        let Some((slot, seq)) = next else {
            cortex_m::asm::wfi();
            continue;
        };
        compiler_fence(Ordering::Acquire);
        // SAFETY: `take_ready` moved `slot` to InFlight, so the ISR no longer writes it and main
        // is its only user until `release`; `slot < SLOTS` is the ring's invariant.
        let block: &Block = unsafe { &*blocks.add(slot) };
        let rows = block.get(..cfg.block as usize).unwrap_or(block);
        for row in rows {
            for v in row {
                uart.write_all(&v.to_le_bytes());
            }
        }
        critical_section::with(|cs| RING.borrow_ref_mut(cs).release(slot));
        published += 1;
        if seq % 256 == 0 {
            defmt::info!("published seq {=u32}", seq);
        }
    }

    core.SYST.disable_interrupt();
    let stalls = critical_section::with(|cs| RING.borrow_ref(cs).stalls());
    let used = stack_high_water(painted);
    defmt::info!(
        "done: {=u32} messages, {=u64} UART bytes, {=u32} ADC stalls, stack high water {=usize} bytes",
        published,
        uart.bytes_sent(),
        stalls,
        used
    );
    match cfg.fault {
        Fault::None => exit(0),
        Fault::Panic => panic!("deliberate panic (boot parameter fault=panic)"),
        Fault::HardFault => cortex_m::asm::udf(),
    }
}

/// SysTick: the simulated ADC delivers `ROWS_PER_TICK` rows into the block being filled.
#[exception]
fn SysTick() {
    let claim = critical_section::with(|cs| {
        let mut ring = RING.borrow_ref_mut(cs);
        ring.acquire(ROWS_PER_TICK).map(|a| (a, ring.block()))
    });
    let Some((a, block_rows)) = claim else {
        return;
    };
    let blocks = BLOCKS.load(Ordering::Acquire);
    if blocks.is_null() {
        return;
    }
    // SAFETY: `acquire` gave this ISR the slot in state Filling: main never reads a Filling slot,
    // and main cannot run until this handler returns (single core, SysTick preempts main), so
    // this is the only reference. `a.slot < SLOTS` is the ring's invariant.
    let buffer: &mut Block = unsafe { &mut *blocks.add(a.slot) };
    let range = a.first as usize..(a.first + a.rows) as usize;
    if let Some(rows) = buffer.get_mut(range) {
        fill_rows(rows, a.seq, a.first, block_rows);
    }
    compiler_fence(Ordering::Release);
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

/// Paints the unused stack with `stack::PAINT`, from its lowest address up to 256 bytes below
/// the current stack pointer. Returns the painted range as (lowest address, words).
fn paint_stack() -> (*mut u32, usize) {
    let low = addr_of_mut!(_stack_end);
    let sp = cortex_m::register::msp::read() as usize;
    let words = (sp.saturating_sub(256)).saturating_sub(low as usize) / 4;
    for i in 0..words {
        // SAFETY: [low, sp - 256) is the stack area below the live frames (link.x puts it between
        // the end of .uninit and the initial stack pointer); nothing else lives there and
        // interrupts are not enabled yet.
        unsafe { low.add(i).write_volatile(stack::PAINT) };
    }
    (low, words)
}

/// Bytes of the stack that were ever used, measured from the top of the stack.
fn stack_high_water((low, words): (*mut u32, usize)) -> usize {
    // SAFETY: the same painted range as in `paint_stack`; reading it while the stack is still in
    // use above is harmless (words are plain u32s, read volatile one by one below).
    let mut untouched = 0;
    while untouched < words && unsafe { low.add(untouched).read_volatile() } == stack::PAINT {
        untouched += 1;
    }
    let top = addr_of_mut!(_stack_start) as usize;
    top - (low as usize + untouched * 4)
}

/// Ends the QEMU run with `code` (semihosting SYS_EXIT_EXTENDED).
fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
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
        "HardFault: pc={=u32:#010x} lr={=u32:#010x} xpsr={=u32:#010x} hfsr={=u32:#010x} cfsr={=u32:#010x}",
        frame.pc(),
        frame.lr(),
        frame.xpsr(),
        // SAFETY: HFSR and CFSR are always-readable System Control Block registers.
        unsafe { core::ptr::read_volatile(0xE000_ED2C as *const u32) },
        unsafe { core::ptr::read_volatile(0xE000_ED28 as *const u32) }
    );
    exit(EXIT_HARDFAULT)
}
