//! The `embassy-time` driver for mps2-an386: the two CMSDK APB timers at 25 MHz (PCLK).
//!
//! TIMER0 (0x4000_0000, IRQ 8) counts down from `u32::MAX` forever; its wrap interrupt counts
//! periods of 2^32 cycles (172 s), so `now` is a 64-bit cycle count, divided by 25 for the
//! 1 MHz tick embassy-time runs at. TIMER1 (0x4000_1000, IRQ 9) is the alarm: loaded with the
//! cycles until the earliest expiration of the timer queue, its interrupt wakes what is due.
//!
//! | offset | CMSDK timer register |
//! |---|---|
//! | 0x00 | CTRL: bit 0 enable, bit 3 interrupt enable |
//! | 0x04 | VALUE: the current count (counts down, reloads from RELOAD at 0) |
//! | 0x08 | RELOAD |
//! | 0x0C | INTSTATUS (read) / INTCLEAR (write 1) |

use core::cell::{Cell, RefCell};
use core::ptr::{read_volatile, write_volatile};
use core::task::Waker;

use critical_section::{CriticalSection, Mutex};
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

const TIMER0: usize = 0x4000_0000;
const TIMER1: usize = 0x4000_1000;
const CTRL: usize = 0x00;
const VALUE: usize = 0x04;
const RELOAD: usize = 0x08;
const INTSTATUS: usize = 0x0C;
const CTRL_ENABLE: u32 = 1 << 0;
const CTRL_IRQ: u32 = 1 << 3;
/// PCLK cycles per embassy-time tick (25 MHz / 1 MHz).
const CYCLES_PER_TICK: u64 = 25;
/// NVIC interrupt numbers of the two timers on mps2-an386.
pub const TIMER0_IRQ: u16 = 8;
/// See [`TIMER0_IRQ`].
pub const TIMER1_IRQ: u16 = 9;

fn write(base: usize, offset: usize, value: u32) {
    // SAFETY: `base + offset` is an aligned register of one of the CMSDK timers of this board
    // (mps2.c maps them at 0x4000_0000 and 0x4000_1000); only this driver touches them.
    unsafe { write_volatile((base + offset) as *mut u32, value) }
}

fn read(base: usize, offset: usize) -> u32 {
    // SAFETY: as in `write`.
    unsafe { read_volatile((base + offset) as *const u32) }
}

/// The driver's state: TIMER0's periods, the queue of wakers and when TIMER1 fires.
pub struct CmsdkTime {
    periods: Mutex<Cell<u32>>,
    queue: Mutex<RefCell<Queue>>,
    /// The tick TIMER1 is armed for (`u64::MAX`: not armed). A wake due at or after it needs
    /// no new alarm: [`on_timer1`] finds it in the queue then.
    alarm: Mutex<Cell<u64>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: CmsdkTime = CmsdkTime {
    periods: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
    alarm: Mutex::new(Cell::new(u64::MAX)),
});

/// Starts TIMER0 free-running; TIMER1 stays off until something waits. Call before any
/// embassy-time use, then unmask both IRQs.
pub fn init() {
    write(TIMER0, CTRL, 0);
    write(TIMER0, RELOAD, u32::MAX);
    write(TIMER0, VALUE, u32::MAX);
    write(TIMER0, INTSTATUS, 1);
    write(TIMER0, CTRL, CTRL_ENABLE | CTRL_IRQ);
    write(TIMER1, CTRL, 0);
    write(TIMER1, INTSTATUS, 1);
}

/// TIMER0's wrap interrupt.
pub fn on_timer0() {
    critical_section::with(|cs| {
        if read(TIMER0, INTSTATUS) & 1 != 0 {
            write(TIMER0, INTSTATUS, 1);
            let p = DRIVER.periods.borrow(cs);
            p.set(p.get().wrapping_add(1));
        }
    });
}

/// TIMER1's alarm interrupt: wake what is due, arm the next alarm.
pub fn on_timer1() {
    critical_section::with(|cs| {
        write(TIMER1, CTRL, 0);
        write(TIMER1, INTSTATUS, 1);
        DRIVER.alarm.borrow(cs).set(u64::MAX);
        DRIVER.rearm(cs);
    });
}

impl CmsdkTime {
    fn cycles(&self, cs: CriticalSection) -> u64 {
        let mut periods = self.periods.borrow(cs).get();
        let mut value = read(TIMER0, VALUE);
        if read(TIMER0, INTSTATUS) & 1 != 0 {
            // Wrapped, interrupt not handled yet (we are inside a critical section).
            periods = periods.wrapping_add(1);
            value = read(TIMER0, VALUE);
        }
        (u64::from(periods) << 32) | u64::from(u32::MAX - value)
    }

    /// Wakes every expired waker and arms TIMER1 for the next expiration (until none is left
    /// that is already due).
    fn rearm(&self, cs: CriticalSection) {
        let mut queue = self.queue.borrow_ref_mut(cs);
        loop {
            let now = self.cycles(cs) / CYCLES_PER_TICK;
            let next = queue.next_expiration(now);
            if next == u64::MAX {
                return;
            }
            let ticks = next.saturating_sub(now);
            if ticks == 0 {
                continue;
            }
            let cycles = (ticks * CYCLES_PER_TICK).min(u64::from(u32::MAX)) as u32;
            self.alarm
                .borrow(cs)
                .set(now + u64::from(cycles) / CYCLES_PER_TICK);
            write(TIMER1, CTRL, 0);
            write(TIMER1, RELOAD, cycles);
            write(TIMER1, VALUE, cycles);
            write(TIMER1, INTSTATUS, 1);
            write(TIMER1, CTRL, CTRL_ENABLE | CTRL_IRQ);
            return;
        }
    }
}

impl Driver for CmsdkTime {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.cycles(cs)) / CYCLES_PER_TICK
    }

    /// Arms TIMER1 only for a wake due before the alarm already armed. The queue asks for a
    /// new alarm whenever a task's wake is not later than the one it holds, so without this a
    /// task that polls a fresh `Timer` for the same instant (the ADC task, each time a buffer
    /// comes back) reprogrammed TIMER1 every time: five register writes, and under QEMU a
    /// timer update that can wake its I/O thread. Streaming (256, 4) blocks over Ethernet,
    /// that was 0.40 alarms per message; 0.24 now (the ADC's wake every millisecond, and
    /// embassy-net's polls that are due at once).
    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            if self.queue.borrow_ref_mut(cs).schedule_wake(at, waker)
                && at < self.alarm.borrow(cs).get()
            {
                self.rearm(cs);
            }
        });
    }
}
