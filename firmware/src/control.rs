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

use dmapickle_core::control::{CommandError, Info, LinkKind, Refusal, Reply, Request, Stats};

use crate::config::{BootConfig, MAX_BLOCK, MAX_RATE_HZ};
use crate::waveform::{block_time_us, CHANNELS};

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
        if self.skew_ppm == 0 {
            // The same value without the 128-bit division (a thousand instructions on the M4).
            return nominal;
        }
        (i128::from(nominal) * i128::from(1_000_000 + self.skew_ppm) / 1_000_000) as u64
    }
}

/// Where the board's blocks live, as `GetInfo` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// How the arrays travel.
    pub link: LinkKind,
    /// Region id of the block buffers.
    pub region: u16,
    /// Bytes the region spans.
    pub region_len: u32,
    /// Block buffers.
    pub slots: u16,
}

/// The board's counters when a command arrives: what `GetStats`, `GetInfo` and `Ping` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The block layout.
    pub layout: Layout,
    /// The seq of the next block to publish (the blocks published so far).
    pub next_seq: u32,
    /// Blocks `drop=` left out.
    pub dropped: u32,
    /// ADC ticks without a free buffer.
    pub adc_stalls: u32,
    /// ADC ring overflows.
    pub overflows: u32,
    /// Shared buffers lent to the host now.
    pub lent: u16,
    /// Down-link bytes that were not part of a command.
    pub bytes_skipped: u32,
    /// Commands answered from the reply cache.
    pub repeats: u32,
    /// The device clock (the log timestamps'), in us.
    pub now_us: u64,
}

/// What to do with one command: answer it now, or apply a change between two blocks and then
/// answer `Reply::Applied { at_seq }` (see [`Acquisition::apply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The reply, nothing changes.
    Reply(Reply),
    /// The change to apply.
    Change(Change),
}

/// The firmware's command handling, shared by the blocking (UART) and the Embassy (Ethernet)
/// builds: the settings, the commands counted, and the answer to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controls {
    /// The acquisition's settings now.
    pub acq: Acquisition,
    /// Commands answered (not counting repeats answered from the cache).
    pub commands: u32,
}

impl Controls {
    /// The boot settings, no command yet.
    pub fn new(cfg: &BootConfig) -> Self {
        Controls {
            acq: Acquisition::new(cfg),
            commands: 0,
        }
    }

    /// Counts a new command and says what to do with it, the board's state being `report`.
    pub fn answer(&mut self, request: Result<Request, CommandError>, report: &Report) -> Answer {
        self.commands = self.commands.wrapping_add(1);
        let acq = &self.acq;
        Answer::Reply(match request {
            Err(e) => Reply::Error(e),
            Ok(Request::GetInfo) => Reply::Info(info(acq, &report.layout, report.next_seq)),
            Ok(Request::GetStats) => Reply::Stats(Stats {
                published: report.next_seq,
                adc_stalls: report.adc_stalls,
                overflows: report.overflows,
                lent: report.lent,
                dropped: report.dropped,
                commands: self.commands,
                bytes_skipped: report.bytes_skipped,
                repeats: report.repeats,
            }),
            Ok(Request::Ping { host_ns }) => Reply::Pong {
                host_ns,
                device_us: report.now_us,
            },
            Ok(req) => match acq.plan(req) {
                Err(e) => Reply::Error(e),
                Ok(change) => return Answer::Change(change),
            },
        })
    }

    /// Applies `change` from block `at_seq` on (every block before it went out with the old
    /// setting) and returns the reply that says so.
    pub fn applied(&mut self, change: Change, at_seq: u32) -> Reply {
        self.acq.apply(change, at_seq);
        Reply::Applied { at_seq }
    }
}

/// What `GetInfo` answers for settings `acq` on a board with `layout`.
pub fn info(acq: &Acquisition, layout: &Layout, next_seq: u32) -> Info {
    let v = |s: &str| s.parse::<u8>().unwrap_or(0);
    Info {
        firmware: [
            v(env!("CARGO_PKG_VERSION_MAJOR")),
            v(env!("CARGO_PKG_VERSION_MINOR")),
            v(env!("CARGO_PKG_VERSION_PATCH")),
        ],
        wire_version: dmapickle_core::frame::VERSION,
        control_version: dmapickle_core::control::VERSION,
        link: layout.link,
        region: layout.region,
        region_len: layout.region_len,
        slots: layout.slots,
        block_rows: acq.block,
        max_block_rows: MAX_BLOCK,
        channels: CHANNELS as u8,
        rate_hz: acq.rate_hz,
        max_rate_hz: MAX_RATE_HZ,
        running: acq.running,
        next_seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_answered_and_changes_planned() {
        let mut c = Controls::new(&BootConfig::parse("n=64 rate=8000").unwrap());
        let layout = Layout {
            link: LinkKind::Inline,
            region: 1,
            region_len: 4096,
            slots: 8,
        };
        let report = Report {
            layout,
            next_seq: 9,
            dropped: 1,
            adc_stalls: 2,
            overflows: 0,
            lent: 0,
            bytes_skipped: 3,
            repeats: 4,
            now_us: 77,
        };
        let Answer::Reply(Reply::Info(i)) = c.answer(Ok(Request::GetInfo), &report) else {
            panic!("GetInfo")
        };
        assert_eq!(
            (i.block_rows, i.rate_hz, i.next_seq, i.slots),
            (64, 8000, 9, 8)
        );
        assert_eq!(
            c.answer(Ok(Request::Ping { host_ns: 5 }), &report),
            Answer::Reply(Reply::Pong {
                host_ns: 5,
                device_us: 77
            })
        );
        let req = Ok(Request::SetBlockRows { rows: 16 });
        assert_eq!(c.answer(req, &report), Answer::Change(Change::Rows(16)));
        assert_eq!(c.applied(Change::Rows(16), 9), Reply::Applied { at_seq: 9 });
        let Answer::Reply(Reply::Stats(s)) = c.answer(Ok(Request::GetStats), &report) else {
            panic!("GetStats")
        };
        assert_eq!(
            (s.commands, s.published, s.repeats, s.bytes_skipped),
            (4, 9, 4, 3)
        );
        assert_eq!(c.acq.block, 16);
        assert_eq!(
            c.answer(Err(CommandError::Unknown), &report),
            Answer::Reply(Reply::Error(CommandError::Unknown))
        );
    }

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
