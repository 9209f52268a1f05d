//! CMSDK APB UART (UART0 of mps2-an386 at 0x4000_4000), transmit side, polled.
//!
//! | offset | register | bits used |
//! |---|---|---|
//! | 0x00 | DATA | write: byte to send |
//! | 0x04 | STATE | bit 0: TX buffer full |
//! | 0x08 | CTRL | bit 0: TX enable |
//! | 0x10 | BAUDDIV | divider, must be >= 16 |
//!
//! QEMU keeps STATE.TXFULL set while its character backend (a TCP or unix socket) is not
//! accepting bytes, so a slow host throttles the firmware instead of losing bytes.

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

use dmapickle_hal::embedded_io::{ErrorType, Write};

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const CTRL_TX_ENABLE: u32 = 1 << 0;

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
        uart.write_reg(CTRL, CTRL_TX_ENABLE);
        uart
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

    /// Sends one byte, waiting while the transmit buffer is full.
    #[inline]
    pub fn write_byte(&mut self, byte: u8) {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
        self.write_reg(DATA, u32::from(byte));
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
