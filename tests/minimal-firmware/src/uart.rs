//! UART0 of mps2-an386 (an Arm CMSDK APB UART at 0x4000_4000), transmit side, as an
//! `embedded_io::Write`. On a real chip its HAL provides this; the hal's `WriteLink` makes it a
//! dmapickle link.

use core::convert::Infallible;
use dmapickle_hal::embedded_io::{ErrorType, Write};

const DATA: *mut u32 = 0x4000_4000 as *mut u32;
const STATE: *const u32 = 0x4000_4004 as *const u32; // bit 0: TX buffer full
const CTRL: *mut u32 = 0x4000_4008 as *mut u32; // bit 0: TX enable
const BAUDDIV: *mut u32 = 0x4000_4010 as *mut u32; // at least 16

/// The one handle to UART0's transmitter.
pub struct Uart0(());

impl Uart0 {
    /// Enables the transmitter. Call once.
    pub fn new() -> Self {
        // SAFETY: BAUDDIV and CTRL are UART0's aligned, always-mapped registers; only this
        // handle touches UART0.
        unsafe {
            BAUDDIV.write_volatile(16);
            CTRL.write_volatile(1);
        }
        Uart0(())
    }
}

impl ErrorType for Uart0 {
    type Error = Infallible;
}

impl Write for Uart0 {
    /// Sends the first byte, waiting while the TX buffer is full (QEMU holds it full while the
    /// host is not reading, so nothing is lost).
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Infallible> {
        let Some(&byte) = bytes.first() else {
            return Ok(0);
        };
        // SAFETY: STATE and DATA are UART0's aligned, always-mapped registers.
        unsafe {
            while STATE.read_volatile() & 1 != 0 {}
            DATA.write_volatile(u32::from(byte));
        }
        Ok(1)
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
