//! What the firmware does with a host command: which change it asks for, checked against the
//! limits, and the sample-time bookkeeping that keeps `t_us` exact across changes.
//!
//! The board (`src/main.rs`) reads commands with `dmapickle_hal::control::CommandReader` between
//! blocks, asks [`Acquisition::plan`] what to do, and applies a [`Change`] only after the
//! blocks already acquired went out with the old setting: every block before the reply's
//! `at_seq` has the old setting, every block from `at_seq` on the new one, and seq keeps
//! counting (`docs/wire-format.md`, "What the data stream shows").
//!
//! ```
//! use dmapickle_core::control::{CommandError, Request};
//! use dmapickle_firmware::config::BootConfig;
//! use dmapickle_firmware::control::{Acquisition, Change};
//! let mut acq = Acquisition::new(&BootConfig::parse("n=256 rate=64000").unwrap());
//! assert_eq!(acq.plan(Request::SetRate { rate_hz: 32_000 }), Ok(Change::Rate(32_000)));
//! assert_eq!(acq.t_us(10), 40_000);
//! acq.apply(Change::Rate(32_000), 10); // from block 10 on, blocks take twice as long
//! assert_eq!(acq.t_us(11), 40_000 + 8_000);
//! assert_eq!(
//!     acq.plan(Request::SetBlockRows { rows: 0 }),
//!     Err(CommandError::Invalid { min: 1, max: 1024 })
//! );
//! ```

use dmapickle_core::control::{CommandError, Refusal, Request};

use crate::config::{BootConfig, MAX_BLOCK, MAX_RATE_HZ};
use crate::waveform::block_time_us;

/// A change of the acquisition, applied between two blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Change {
    /// New sample rate in Hz.
    Rate(u32),
    /// New rows per block.
    Rows(u32),
    /// Resume acquisition.
    Start,
    /// Pause acquisition.
    Stop,
}

/// The acquisition's settings now and the sample time of the last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Acquisition {
    /// Rows per block.
    pub block: u32,
    /// Sample rate in Hz.
    pub rate_hz: u32,
    /// Acquisition runs (no `Stop` pending).
    pub running: bool,
    /// The first seq of the current setting.
    since_seq: u32,
    /// Nominal (unskewed) sample time of block `since_seq`, in us.
    since_us: u64,
    skew_ppm: i32,
}

impl Acquisition {
    /// The boot settings, running.
    pub fn new(cfg: &BootConfig) -> Self {
        Acquisition {
            block: cfg.block,
            rate_hz: cfg.rate_hz,
            running: true,
            since_seq: 0,
            since_us: 0,
            skew_ppm: cfg.skew_ppm,
        }
    }

    /// What setting `req` changes (queries are answered by the board and plan to `Unknown`),
    /// or the error to answer with (nothing changes).
    pub fn plan(&self, req: Request) -> Result<Change, CommandError> {
        let check = |v: u32, max: u32| {
            if (1..=max).contains(&v) {
                Ok(v)
            } else {
                Err(CommandError::Invalid { min: 1, max })
            }
        };
        match req {
            Request::SetRate { rate_hz } => check(rate_hz, MAX_RATE_HZ).map(Change::Rate),
            Request::SetBlockRows { rows } => check(rows, MAX_BLOCK).map(Change::Rows),
            Request::Start if self.running => Err(CommandError::Refused {
                reason: Refusal::AlreadyRunning,
            }),
            Request::Start => Ok(Change::Start),
            Request::Stop if !self.running => Err(CommandError::Refused {
                reason: Refusal::AlreadyStopped,
            }),
            Request::Stop => Ok(Change::Stop),
            // Queries change nothing; the board answers them itself.
            Request::GetInfo | Request::GetStats | Request::Ping { .. } => {
                Err(CommandError::Unknown)
            }
        }
    }

    /// Applies `change` from block `at_seq` on (the next block to be acquired).
    pub fn apply(&mut self, change: Change, at_seq: u32) {
        self.since_us = self.nominal_us(at_seq);
        self.since_seq = at_seq;
        match change {
            Change::Rate(r) => self.rate_hz = r,
            Change::Rows(n) => self.block = n,
            Change::Start => self.running = true,
            Change::Stop => self.running = false,
        }
    }

    fn nominal_us(&self, seq: u32) -> u64 {
        self.since_us + block_time_us(seq.wrapping_sub(self.since_seq), self.block, self.rate_hz)
    }

    /// The `t_us` of block `seq` (at or after the last change): the sample time of its first
    /// row, counted over every setting since boot, run `skew_ppm` fast like
    /// [`BootConfig::t_us`] (which it equals while nothing changed).
    pub fn t_us(&self, seq: u32) -> u64 {
        let nominal = self.nominal_us(seq);
        (i128::from(nominal) * i128::from(1_000_000 + self.skew_ppm) / 1_000_000) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_it_is_the_boot_clock() {
        let cfg = BootConfig::parse("n=100 rate=7000 skew_ppm=-300").unwrap();
        let acq = Acquisition::new(&cfg);
        for seq in [0, 1, 7, 1000, u32::MAX] {
            assert_eq!(acq.t_us(seq), cfg.t_us(seq));
        }
    }

    #[test]
    fn a_row_change_keeps_time_continuous() {
        let mut acq = Acquisition::new(&BootConfig::parse("n=256 rate=64000").unwrap());
        let before = acq.t_us(5);
        acq.apply(Change::Rows(64), 5);
        assert_eq!(acq.t_us(5), before);
        assert_eq!(acq.t_us(6), before + 1_000);
    }

    #[test]
    fn stop_and_start_are_refused_twice() {
        let mut acq = Acquisition::new(&BootConfig::default());
        assert_eq!(
            acq.plan(Request::Start),
            Err(CommandError::Refused {
                reason: Refusal::AlreadyRunning
            })
        );
        acq.apply(Change::Stop, 3);
        assert!(!acq.running);
        assert_eq!(
            acq.plan(Request::Stop),
            Err(CommandError::Refused {
                reason: Refusal::AlreadyStopped
            })
        );
        assert_eq!(acq.plan(Request::Start), Ok(Change::Start));
        assert_eq!(
            acq.plan(Request::SetRate {
                rate_hz: MAX_RATE_HZ + 1
            }),
            Err(CommandError::Invalid {
                min: 1,
                max: MAX_RATE_HZ
            })
        );
    }
}
