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
//! Commands (`dmapickle ctl`, `stream.device`) go down RTT down channel `down` (default 0,
//! where the dmapickle firmware's `rtt_link::RttReader` reads them); their replies come up
//! between the frames of the up channel, as on every other link. The reader and the command
//! writer share the one probe session, each holding it only for one channel access.
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
    /// RTT down channel the device reads commands from (default 0).
    pub down: usize,
}

impl Scheme for Rtt {
    const NAME: &'static str = "rtt";
    const DOWN_LINK: bool = true;

    fn parse(rest: &str) -> Result<Self, String> {
        let (path, query) = split_query(rest);
        let chip = path.trim_end_matches('/');
        if chip.is_empty() {
            return Err("expected rtt://CHIP, e.g. rtt://STM32F407VGTx".into());
        }
        let (mut probe, mut channel, mut down) = (None, 0, 0);
        for (k, v) in query {
            match k {
                "probe" => probe = Some(v.to_string()),
                "channel" => {
                    channel = v
                        .parse()
                        .map_err(|_| "channel must be a non-negative integer")?
                }
                "down" => {
                    down = v
                        .parse()
                        .map_err(|_| "down must be a non-negative integer")?
                }
                _ => {
                    return Err(
                        "unknown parameter; rtt takes probe=VID:PID, channel=N and down=N".into(),
                    )
                }
            }
        }
        Ok(Rtt {
            chip: chip.to_string(),
            probe,
            channel,
            down,
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
            self.down,
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
        if self.down != 0 {
            write!(f, "&down={}", self.down)?;
        }
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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use probe_rs::probe::list::Lister;
use probe_rs::probe::DebugProbeSelector;
use probe_rs::rtt::{ChannelMode, Rtt};
use probe_rs::{Core, Permissions, Session, SessionConfig};

/// An attached probe session and the RTT control block found in the target's RAM, shared by
/// the reader of the up channel and the writer of the down channel.
struct Attached {
    session: Session,
    rtt: Rtt,
}

/// Locks the shared session (a panicked holder left it usable: every access is one probe
/// transaction).
fn lock(a: &Mutex<Attached>) -> MutexGuard<'_, Attached> {
    a.lock().unwrap_or_else(|e| e.into_inner())
}

/// The connection: the up channel `channel` read, the down channel `down` written.
pub(crate) struct RttConn {
    attached: Arc<Mutex<Attached>>,
    channel: usize,
    down: usize,
}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// How long polling waits between empty reads, or for room in a full down channel.
const POLL: Duration = Duration::from_millis(1);
/// A command that does not fit the down channel within this fails (the device is not reading
/// it); the controller then retries with the same request id.
const DOWN_TIMEOUT: Duration = Duration::from_millis(200);

impl RttConn {
    /// Attach to `chip` through `probe` (first probe found when `None`) and locate RTT.
    pub(crate) fn attach(
        chip: &str,
        probe: Option<&str>,
        channel: usize,
        down: usize,
    ) -> io::Result<Self> {
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
        let mut rtt = {
            let mut core = session.core(0).map_err(|e| other("core 0", e))?;
            Rtt::attach(&mut core).map_err(|e| other("finding the RTT control block", e))?
        };
        if rtt.up_channel(channel).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("the target has no RTT up channel {channel}"),
            ));
        }
        let conn = RttConn {
            attached: Arc::new(Mutex::new(Attached { session, rtt })),
            channel,
            down,
        };
        conn.set_mode(ChannelMode::BlockIfFull)?;
        Ok(conn)
    }

    /// Writes the up channel's mode flags in the target's RAM (the device reads them per frame).
    fn set_mode(&self, mode: ChannelMode) -> io::Result<()> {
        let channel = self.channel;
        access(&self.attached, |rtt, core| {
            let ch = rtt
                .up_channel(channel)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            ch.set_mode(core, mode)
                .map_err(|e| other("setting the RTT channel mode", e))
        })
    }

    /// Poll the channel until bytes arrive or `timeout` passes (`WouldBlock`).
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let channel = self.channel;
        poll(timeout, || {
            access(&self.attached, |rtt, core| {
                let ch = rtt
                    .up_channel(channel)
                    .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
                ch.read(core, buf).map_err(|e| other("reading RTT", e))
            })
        })?
        .ok_or_else(|| io::ErrorKind::WouldBlock.into())
    }
}

/// Runs `f` on the RTT control block with core 0, holding the shared session for that one access.
fn access<T>(
    attached: &Mutex<Attached>,
    f: impl FnOnce(&mut Rtt, &mut Core<'_>) -> io::Result<T>,
) -> io::Result<T> {
    let mut a = lock(attached);
    let Attached { session, rtt } = &mut *a;
    let mut core = session.core(0).map_err(|e| other("core 0", e))?;
    f(rtt, &mut core)
}

/// Repeats `attempt` (one channel access moving some bytes) every [`POLL`] until it moves at
/// least one, or `timeout` passes (`None`).
fn poll(
    timeout: Duration,
    mut attempt: impl FnMut() -> io::Result<usize>,
) -> io::Result<Option<usize>> {
    let start = Instant::now();
    loop {
        let n = attempt()?;
        if n > 0 {
            return Ok(Some(n));
        }
        if start.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(POLL);
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

    fn down_link(&self) -> io::Result<Box<dyn io::Write + Send>> {
        let mut a = lock(&self.attached);
        if a.rtt.down_channel(self.down).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("the target has no RTT down channel {}", self.down),
            ));
        }
        Ok(Box::new(DownChannel {
            attached: self.attached.clone(),
            down: self.down,
        }))
    }
}

/// Commands into RTT down channel `down`, through the connection's shared session.
struct DownChannel {
    attached: Arc<Mutex<Attached>>,
    down: usize,
}

impl io::Write for DownChannel {
    /// Writes what fits in the channel's ring now, waiting up to [`DOWN_TIMEOUT`] for room
    /// (`TimedOut`: the device is not reading commands).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let down = self.down;
        poll(DOWN_TIMEOUT, || {
            access(&self.attached, |rtt, core| {
                let ch = rtt
                    .down_channel(down)
                    .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
                ch.write(core, buf).map_err(|e| other("writing RTT", e))
            })
        })?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the RTT down channel stays full: is the firmware reading commands?",
            )
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
}
