//! The simulated ADC's sample clock: how many SysTick periods have really passed, from a
//! free-running down-counter, so an interrupt that was lost costs no samples.
//!
//! SysTick's exception is a pending bit: when the emulator (QEMU on a loaded host) runs the
//! core late, two expiries can fall on one pending exception, and an ADC that counts
//! interrupts then falls behind real time for good (a clock 2 % slow was measured at load 8 on
//! 2 cores, with no ADC stall). A real ADC's sample clock is a hardware timer that never skips; here the board's
//! free-running timer (mps2-an386's CMSDK TIMER0, at the SysTick clock's 25 MHz) plays that
//! part: each SysTick handler delivers the rows of every period elapsed since the last one.
//!
//! ```
//! use dmapickle_firmware::sample_clock::SampleClock;
//! let mut clock = SampleClock::new(u32::MAX, 1000); // counter value at start, period in cycles
//! assert_eq!(clock.due(u32::MAX - 1000), 1); // one period: one tick
//! assert_eq!(clock.due(u32::MAX - 3500), 2); // the next interrupt came 2.5 periods later
//! assert_eq!(clock.due(u32::MAX - 4000), 1); // ... the one after completes the fourth
//! ```

/// Periods of a fixed length elapsed on a 32-bit down-counter that wraps (read at least once
/// per wrap: at 25 MHz every 171 s, far longer than a SysTick period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleClock {
    last: u32,
    cycles: u64,
    period: u32,
    ticks: u64,
}

impl SampleClock {
    /// Starts counting at counter value `now`, in periods of `period` cycles (at least 1).
    pub const fn new(now: u32, period: u32) -> Self {
        SampleClock {
            last: now,
            cycles: 0,
            period: if period == 0 { 1 } else { period },
            ticks: 0,
        }
    }

    /// The periods that ended since the previous call, given the counter's value `now`.
    pub fn due(&mut self, now: u32) -> u32 {
        self.cycles += u64::from(self.last.wrapping_sub(now));
        self.last = now;
        let total = self.cycles / u64::from(self.period);
        let due = total - self.ticks;
        self.ticks = total;
        u32::try_from(due).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::SampleClock;

    #[test]
    fn every_period_is_counted_once_across_late_calls_and_the_wrap() {
        let mut clock = SampleClock::new(100, 50);
        let mut now = 100u32;
        let mut total = 0;
        // Calls 0.4 to 3.6 periods apart, through the counter's wrap at 0.
        for step in [20u32, 30, 180, 60, 90, 25, 175, 50]
            .iter()
            .cycle()
            .take(400)
        {
            now = now.wrapping_sub(*step);
            total += clock.due(now);
        }
        let elapsed: u64 = [20u64, 30, 180, 60, 90, 25, 175, 50].iter().sum::<u64>() * 50;
        assert_eq!(u64::from(total), elapsed / 50);
    }

    #[test]
    fn a_call_inside_the_first_period_delivers_nothing() {
        let mut clock = SampleClock::new(1000, 100);
        assert_eq!(clock.due(950), 0);
        assert_eq!(clock.due(900), 1);
        assert_eq!(clock.due(0), 9);
        assert_eq!(SampleClock::new(0, 0).due(u32::MAX - 4), 5); // wrapped; period 0 counts as 1
    }
}
