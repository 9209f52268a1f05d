//! A dmapickle instrument from the `dmapickle-hal` guide only: SysTick fills a ring of 4 int16
//! (128, 4) blocks, main publishes `{"seq", "temp_c", "samples"}` on UART0, exits after MESSAGES.
#![no_std]
#![no_main]

mod uart;

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use dmapickle_core::Pickler;
use dmapickle_hal::{Block, BufferRing, DmaBuf, Error, Link, Outgoing, Publisher, WriteLink};
use static_cell::ConstStaticCell;

const SHAPE: [usize; 2] = [128, 4];
const MESSAGES: u32 = 200;
/// One message's pickle is 78 bytes (sized as the guide shows), plus room to spare.
const MAX_PICKLE: usize = 128;

static BLOCKS: ConstStaticCell<[Block<1024>; 4]> = ConstStaticCell::new([Block::ZERO; 4]);
static RING: BufferRing<4> = BufferRing::new();
static PUBLISHER: Publisher = Publisher::new();
static BLOCKS_FILLED: AtomicU32 = AtomicU32::new(0);

#[entry]
fn main() -> ! {
    for buf in DmaBuf::split(1, BLOCKS.take()) {
        let _ = RING.give(buf); // the ring has room for all 4
    }
    let mut syst = cortex_m::Peripherals::take().unwrap().SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(25_000_000 / 1000 - 1); // 1 kHz at mps2-an386's 25 MHz
    syst.enable_interrupt();
    syst.enable_counter();

    let mut link = WriteLink::new(uart::Uart0::new());
    for seq in 0..MESSAGES {
        while RING.ready_len() == 0 {
            cortex_m::asm::wfi();
        }
        let buf = RING.pop_ready().expect("a ready block"); // only main pops
        send(&mut link, seq, buf).expect("publishing"); // a panic exits QEMU with status 101
    }
    semihosting::process::exit(0)
}

/// Publishes block `seq` from `buf`, then gives the buffer back to the ring.
fn send(link: &mut impl Link, seq: u32, mut buf: DmaBuf) -> Result<(), Error> {
    let samples = buf.array_descriptor::<i16>(&SHAPE)?.read_only();
    let mut out = [0u8; MAX_PICKLE];
    let mut p = Pickler::new(&mut out);
    p.dict(|p| {
        p.str("seq")?;
        p.int(seq)?;
        p.str("temp_c")?;
        p.f32(20.0 + (seq % 16) as f32 * 0.25)?;
        p.str("samples")?;
        p.array::<i16>(samples, &SHAPE)
    })?;
    let msg = p.finish()?;
    let sent = PUBLISHER.publish(link, msg.pickle, &msg.descriptors, [Outgoing::Inline(buf)])?;
    for buf in sent.inline {
        let _ = RING.give(buf);
    }
    Ok(())
}

/// The simulated ADC: block `n`, sample `i` is `n * 1000 + 7 * i` as i16 (skipped if no buffer).
#[exception]
fn SysTick() {
    if let Some(mut buf) = RING.take_free() {
        let n = BLOCKS_FILLED.fetch_add(1, Ordering::Relaxed) as usize;
        let samples = buf.as_mut_slice_of::<i16>().unwrap_or_default(); // a Block: always aligned
        for (i, s) in samples.iter_mut().enumerate() {
            *s = (n * 1000 + 7 * i) as i16;
        }
        let _ = RING.push_ready(buf);
    }
}
