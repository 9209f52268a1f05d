//! `rtt://` sources: the link stream from a SEGGER RTT up channel, read through a debug probe
//! with `probe-rs` (feature `probe-rs`).
//!
//! On a real board (for example an nRF52840-DK with its on-board J-Link, or an STM32 with an
//! ST-Link), the firmware writes frames to an RTT up channel instead of a UART, and
//!
//! ```text
//! dmapickle listen 'rtt://nRF52840_xxAA?channel=1'
//! dmapickle listen 'rtt://STM32F407VGTx?probe=0483:374b&channel=0'
//! ```
//!
//! attaches to the first probe (or the one named by `VID:PID[:SERIAL]`), finds the RTT control
//! block in RAM and polls the channel. The chip name is probe-rs's (`probe-rs chip list`).
//!
//! Flow control: the dmapickle firmware starts its frame channel non-blocking (frames that do not
//! fit are skipped whole and show here as lost seqs). Attaching sets the channel to
//! `BlockIfFull`, so the device waits for this reader instead of skipping; dropping the
//! connection sets `NoBlockSkip` again, so a board left running without a host never stalls.
//!
//! Without the `probe-rs` feature the URI still parses, and opening it fails at once saying
//! which feature to build with.

use std::fmt;
use std::io;

use crate::source::uri::split_query;
use super::{Connection, Scheme};
use crate::source::SourceOptions;

/// `rtt://CHIP?probe=VID:PID&channel=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtt {
    /// probe-rs chip name, e.g. `STM32F407VGTx`.
    pub chip: String,
    /// `VID:PID[:SERIAL]` of the probe; the first probe found when absent.
    pub probe: Option<String>,
    /// RTT up channel carrying the link (default 0).
    pub channel: usize,
}

impl Scheme for Rtt {
    const NAME: &'static str = "rtt";

    fn parse(rest: &str) -> Result<Self, String> {
        let (path, query) = split_query(rest);
        let chip = path.trim_end_matches('/');
        if chip.is_empty() {
            return Err("expected rtt://CHIP, e.g. rtt://STM32F407VGTx".into());
        }
        let (mut probe, mut channel) = (None, 0);
        for (k, v) in query {
            match k {
                "probe" => probe = Some(v.to_string()),
                "channel" => {
                    channel = v
                        .parse()
                        .map_err(|_| "channel must be a non-negative integer")?
                }
                _ => return Err("unknown parameter; rtt takes probe=VID:PID and channel=N".into()),
            }
        }
        Ok(Rtt {
            chip: chip.to_string(),
            probe,
            channel,
        })
    }

    #[cfg(not(feature = "probe-rs"))]
    fn supported(&self) -> io::Result<()> {
        Err(unsupported())
    }

    #[cfg(not(feature = "probe-rs"))]
    fn connect(&self, _opts: &SourceOptions) -> io::Result<Box<dyn Connection>> {
        Err(unsupported())
    }

    #[cfg(feature = "probe-rs")]
    fn connect(&self, _opts: &SourceOptions) -> io::Result<Box<dyn Connection>> {
        Ok(Box::new(probe::RttConn::attach(
            &self.chip,
            self.probe.as_deref(),
            self.channel,
        )?))
    }

    fn hint(&self, kind: io::ErrorKind) -> Option<&'static str> {
        match kind {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => None,
            _ => Some("check the probe connection and the chip name"),
        }
    }
}

impl fmt::Display for Rtt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtt://{}?channel={}", self.chip, self.channel)?;
        match &self.probe {
            Some(p) => write!(f, "&probe={p}"),
            None => Ok(()),
        }
    }
}

/// Why this build cannot open `rtt://`.
#[cfg(not(feature = "probe-rs"))]
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "rtt:// needs dmapickle-host built with the `probe-rs` feature \
         (cargo install --path host --features probe-rs)",
    )
}

/// The probe session (feature `probe-rs`).
#[cfg(feature = "probe-rs")]
mod probe {
use std::io;
use std::time::{Duration, Instant};

use probe_rs::probe::list::Lister;
use probe_rs::probe::DebugProbeSelector;
use probe_rs::rtt::{ChannelMode, Rtt};
use probe_rs::{Permissions, Session, SessionConfig};

/// An attached probe session and the RTT control block found in the target's RAM.
pub(crate) struct RttConn {
    session: Session,
    rtt: Rtt,
    channel: usize,
}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

impl RttConn {
    /// Attach to `chip` through `probe` (first probe found when `None`) and locate RTT.
    pub(crate) fn attach(chip: &str, probe: Option<&str>, channel: usize) -> io::Result<Self> {
        let mut session = match probe {
            Some(sel) => {
                let sel: DebugProbeSelector = sel
                    .parse()
                    .map_err(|e| other("probe selector (VID:PID[:SERIAL])", e))?;
                Lister::new()
                    .open(sel)
                    .map_err(|e| other("opening the probe", e))?
                    .attach(chip, Permissions::default())
                    .map_err(|e| other("attaching to the chip", e))?
            }
            None => Session::auto_attach(chip, SessionConfig::default())
                .map_err(|e| other("attaching to the chip", e))?,
        };
        let rtt = {
            let mut core = session.core(0).map_err(|e| other("core 0", e))?;
            Rtt::attach(&mut core).map_err(|e| other("finding the RTT control block", e))?
        };
        let mut conn = RttConn {
            session,
            rtt,
            channel,
        };
        if conn.rtt.up_channel(channel).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("the target has no RTT up channel {channel}"),
            ));
        }
        conn.channel = channel;
        conn.set_mode(ChannelMode::BlockIfFull)?;
        Ok(conn)
    }

    /// Writes the up channel's mode flags in the target's RAM (the device reads them per frame).
    fn set_mode(&mut self, mode: ChannelMode) -> io::Result<()> {
        let mut core = self.session.core(0).map_err(|e| other("core 0", e))?;
        let ch = self
            .rtt
            .up_channel(self.channel)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        ch.set_mode(&mut core, mode)
            .map_err(|e| other("setting the RTT channel mode", e))
    }

    /// Poll the channel until bytes arrive or `timeout` passes (`WouldBlock`).
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            let mut core = self.session.core(0).map_err(|e| other("core 0", e))?;
            let ch = self
                .rtt
                .up_channel(self.channel)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            let n = ch
                .read(&mut core, buf)
                .map_err(|e| other("reading RTT", e))?;
            if n > 0 {
                return Ok(n);
            }
            if start.elapsed() >= timeout {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            drop(core);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for RttConn {
    /// Non-blocking again, so the board does not stall once no one reads (best effort: the
    /// probe may be gone).
    fn drop(&mut self) {
        let _ = self.set_mode(ChannelMode::NoBlockSkip);
    }
}

impl super::Connection for RttConn {
    fn read_within(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.read(buf, timeout)
    }
}
}
