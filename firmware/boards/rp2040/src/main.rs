//! The dmapickle instrument on a real Embassy chip: a Raspberry Pi Pico (RP2040), publishing
//! over UART0 (GP0 = TX, 921,600 baud) with DMA.
//!
//! The same message and exact-sample waveform as the QEMU builds (`dmapickle_firmware`'s
//! `adc`, `message` and `waveform` modules), the same `dmapickle-hal` ring of `DmaBuf`s. An
//! `adc` task plays the ADC; `main` publishes each block with `Publisher::publish_async`. The
//! UART's DMA reads the block buffer itself (the future borrows it), so the array is never
//! copied on the device; embassy-rp stops the DMA if the future is dropped.
//!
//! Build: `cargo build --release` here (thumbv6m-none-eabi); flash: `cargo run --release` with a
//! probe, or `elf2uf2-rs`. Host: a USB-serial adapter on GP0, then
//! `dmapickle.open("serial:///dev/ttyUSB0?baud=921600")` in Python.
#![no_std]
#![no_main]

use dmapickle_firmware::adc::Adc;
use dmapickle_firmware::message::{self, MAX_PICKLE};
use dmapickle_firmware::waveform::ROW_BYTES;
use dmapickle_hal::{BufferRing, DmaBuf, Outgoing, Publisher};
use embassy_executor::Spawner;
use embassy_rp::peripherals::DMA_CH0;
use embassy_rp::uart::{self, Async, UartTx};
use embassy_rp::{bind_interrupts, dma};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{Duration, Ticker};
use panic_halt as _;
use static_cell::ConstStaticCell;

/// Rows per block: `(256, 4)` int16 arrays.
const BLOCK: u32 = 256;
/// Simulated sample rate: 8 kHz x 4 channels x 2 bytes = 64 kB/s, within 921,600 baud (92 kB/s).
const RATE_HZ: u32 = 8_000;
/// Rows the ADC delivers per wake.
const ROWS_PER_WAKE: u32 = 32;
const SLOTS: usize = 4;
const BLOCK_BYTES: usize = BLOCK as usize * ROW_BYTES;

static RING: BufferRing<SLOTS> = BufferRing::new();
static BLOCKS: ConstStaticCell<[[u8; BLOCK_BYTES]; SLOTS]> =
    ConstStaticCell::new([[0; BLOCK_BYTES]; SLOTS]);
static READY: Signal<CriticalSectionRawMutex, ()> = Signal::new();

bind_interrupts!(struct Irqs {
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>;
});

/// The UART's DMA transmitter as an `embedded_io_async::Write`: all a link needs.
struct DmaUart<'d>(UartTx<'d, Async>);

/// A UART transmit error (the RP2040's UART reports none on transmit).
#[derive(Debug)]
struct UartError(uart::Error);

impl core::fmt::Display for UartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "UART: {:?}", self.0)
    }
}

impl core::error::Error for UartError {}

impl embedded_io_async::Error for UartError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        embedded_io_async::ErrorKind::Other
    }
}

impl embedded_io_async::ErrorType for DmaUart<'_> {
    type Error = UartError;
}

impl embedded_io_async::Write for DmaUart<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, UartError> {
        self.0.write(bytes).await.map_err(UartError)?;
        Ok(bytes.len())
    }

    async fn flush(&mut self) -> Result<(), UartError> {
        Ok(())
    }
}

/// The simulated ADC: `ROWS_PER_WAKE` rows at `RATE_HZ`, into the ring's free buffers; it
/// stalls (counted by `Adc`) when the UART has every buffer.
#[embassy_executor::task]
async fn adc() {
    let mut adc = Adc::<DmaBuf>::new(BLOCK);
    let mut ticker = Ticker::every(Duration::from_micros(
        u64::from(ROWS_PER_WAKE) * 1_000_000 / u64::from(RATE_HZ),
    ));
    loop {
        ticker.next().await;
        if adc.tick(&RING, ROWS_PER_WAKE) {
            READY.signal(());
        }
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    let mut config = uart::Config::default();
    config.baudrate = 921_600;
    let mut link = DmaUart(UartTx::new(p.UART0, p.PIN_0, p.DMA_CH0, Irqs, config));
    for (i, mem) in BLOCKS.take().iter_mut().enumerate() {
        // The ring has room for all SLOTS buffers.
        let _ = RING.give(DmaBuf::new(1, (i * BLOCK_BYTES) as u32, mem));
    }
    spawner.spawn(adc().expect("one adc task"));

    let publisher = Publisher::new();
    let mut seq: u32 = 0;
    loop {
        let buf = loop {
            if let Some(buf) = RING.pop_ready() {
                break buf;
            }
            READY.wait().await;
        };
        let mut out = [0u8; MAX_PICKLE];
        if let Ok(msg) = message::encode(&mut out, seq, BLOCK, RATE_HZ, buf.descriptor()) {
            let sent = publisher.publish_async(
                &mut link,
                msg.pickle,
                &msg.descriptors,
                [Outgoing::Inline(&buf)],
            );
            // A failed frame is cut on the wire; the host resynchronises on the next one.
            let _ = sent.await.map(|_| ());
        }
        let _ = RING.give(buf);
        seq = seq.wrapping_add(1);
    }
}
