//! CMSDK APB UART (UART0 of mps2-an386 at 0x4000_4000), polled: transmit for the frames,
//! receive for the host's commands.
//!
//! | offset | register | bits used |
//! |---|---|---|
//! | 0x00 | DATA | write: byte to send; read: byte received (clears STATE.RXFULL) |
//! | 0x04 | STATE | bit 0: TX buffer full; bit 1: RX buffer full |
//! | 0x08 | CTRL | bit 0: TX enable; bit 1: RX enable |
//! | 0x10 | BAUDDIV | divider, must be >= 16 |
//!
//! QEMU keeps STATE.TXFULL set while its character backend (a TCP or unix socket) is not
//! accepting bytes, so a slow host throttles the firmware instead of losing bytes. The other
//! way, QEMU takes a byte from the backend only while RXFULL is clear (`uart_can_receive` in
//! `hw/char/cmsdk-apb-uart.c`), so commands wait in the socket until the firmware polls: none
//! is lost however rarely it does. The receive buffer holds one byte, so the transmit path takes
//! received bytes into [`RX_QUEUE`] while it sends (each byte it writes, and while it waits for
//! TX space): a command arrives at the pace of the frames going out, not one byte per main-loop
//! pass.

use core::cell::RefCell;
use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

use critical_section::Mutex;
use heapless::Deque;

use dmapickle_hal::embedded_io::{ErrorType, Write};

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_ENABLE: u32 = 1 << 0;
const CTRL_RX_ENABLE: u32 = 1 << 1;

/// Bytes received and not yet read through [`UartRx`] (main thread only; the critical section
/// makes the static safe to share).
pub static RX_QUEUE: Mutex<RefCell<Deque<u8, 256>>> = Mutex::new(RefCell::new(Deque::new()));

/// Base address of UART0 on mps2-an385/an386.
pub const UART0_BASE: usize = 0x4000_4000;

/// The transmit half of one CMSDK UART. Only one value exists per UART (see [`Uart::uart0`]).
///
/// An `embedded_io::Write`, so `dmapickle_hal::WriteLink` makes it the data link. The CMSDK UART
/// has no DMA request line, so a "DMA" transfer is programmed I/O: the CPU feeds the buffer to
/// the UART, throttled by TX-full; the acquisition ISR keeps preempting it, so the next block
/// still fills while this one is sent.
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Takes UART0 and enables its transmitter with `bauddiv` (clamped to the minimum 16).
    ///
    /// Call once: `main` owns the returned value and no other code touches UART0.
    pub fn uart0(bauddiv: u32) -> Uart {
        let uart = Uart { base: UART0_BASE };
        uart.write_reg(BAUDDIV, bauddiv.max(16));
        uart.write_reg(CTRL, CTRL_TX_ENABLE | CTRL_RX_ENABLE);
        uart
    }

    /// The receive half of the same UART (enabled by [`Uart::uart0`]). Call once: only the
    /// returned value reads DATA.
    pub fn receiver(&self) -> UartRx {
        UartRx(Uart { base: self.base })
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: `base + offset` is a 4-byte aligned CMSDK UART register on this board (memory map
        // in memory.x and the module table); volatile access is how MMIO is read and written, and
        // only this value touches UART0.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: as in `write_reg`: an aligned, always-mapped UART register.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    /// Sends one byte, waiting while the transmit buffer is full (and taking received bytes
    /// meanwhile).
    #[inline]
    pub fn write_byte(&mut self, byte: u8) {
        self.take_received();
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {
            self.take_received();
        }
        self.write_reg(DATA, u32::from(byte));
    }

    /// Moves a received byte into [`RX_QUEUE`] if one is waiting and the queue has room (if not,
    /// the byte stays in the UART and QEMU holds the rest in its backend: nothing is lost).
    #[inline]
    fn take_received(&self) {
        if self.read_reg(STATE) & STATE_RX_FULL == 0 {
            return;
        }
        critical_section::with(|cs| {
            let mut q = RX_QUEUE.borrow_ref_mut(cs);
            if !q.is_full() {
                let _ = q.push_back(self.read_reg(DATA) as u8);
            }
        });
    }

    /// Sends every byte of `bytes`, in order, blocking until the last one is in the UART.
    pub fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}

impl ErrorType for Uart {
    type Error = Infallible;
}

impl Write for Uart {
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Infallible> {
        self.write_all(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// The receive half of a CMSDK UART: an `embedded_io::Read` + `ReadReady` that never blocks
/// when asked whether a byte is ready, for `dmapickle_hal::control::CommandReader::poll_read`.
pub struct UartRx(Uart);

impl ErrorType for UartRx {
    type Error = Infallible;
}

impl dmapickle_hal::embedded_io::ReadReady for UartRx {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        self.0.take_received();
        Ok(critical_section::with(|cs| {
            !RX_QUEUE.borrow_ref(cs).is_empty()
        }))
    }
}

impl dmapickle_hal::embedded_io::Read for UartRx {
    /// Reads the bytes received so far (at least one: waits for the first).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            self.0.take_received();
            let n = critical_section::with(|cs| {
                let mut q = RX_QUEUE.borrow_ref_mut(cs);
                let mut n = 0;
                while let (Some(slot), Some(b)) = (buf.get_mut(n), q.front().copied()) {
                    *slot = b;
                    q.pop_front();
                    n += 1;
                }
                n
            });
            if n > 0 {
                return Ok(n);
            }
        }
    }
}
