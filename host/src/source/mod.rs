//! Where link bytes come from: one URI names a source for the CLI and for Python.
//!
//! The schemes are [`SourceSpec`]'s variants, one per line of the table in [`scheme`]; a plain
//! path is a file and `-` standard input. README.md's "CLI" section shows each with an example.
//!
//! A [`Source`] is a [`Read`](std::io::Read) that never blocks for longer than its poll interval
//! without looking at its stop flag, so Ctrl-C (CLI) or `close()` (Python) ends a read promptly
//! and nothing already received is lost: the stop shows up as the end of the stream. A
//! connection that drops, or cannot be made, is retried with exponential backoff (50 ms
//! doubling to 2 s) unless reconnecting is turned off; the first failed attempt is reported as
//! a [`SourceEvent::Waiting`] (not every retry), a dropped connection as a
//! [`SourceEvent::Disconnected`].
//!
//! Files and standard input are finite: their end is the end of the source, for good. A source
//! that has ended (a file or stdin at its end, a connection dropped without reconnect, the stop
//! flag) keeps returning end of stream; it is never opened again, so a reader re-scanning bytes
//! after a cut-off last frame can never read a recording twice.
//!
//! The module has one file per job:
//! - [`uri`]: the URI grammar (`-`, plain paths, `NAME://`, hints for QEMU spellings);
//! - [`scheme`]: one file per scheme (how its URI reads, how it connects) and the table of
//!   schemes, the one place a new scheme is added (docs/extending.md);
//! - [`reconnect`]: [`Source`], which connects on demand and reconnects with backoff.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub mod reconnect;
pub mod scheme;
pub mod uri;

pub use reconnect::{OpenError, Source, MAX_BACKOFF, MIN_BACKOFF};
pub use scheme::serial::DEFAULT_BAUD;
pub use scheme::SourceSpec;
pub use uri::{uri_hint, BadUri};

impl SourceSpec {
    /// Whether a dropped connection can be made again (sockets, serial ports, probes). Files
    /// and stdin cannot: their end is final.
    pub fn can_reconnect(&self) -> bool {
        !self.is_finite()
    }
}

/// Something that happened to a source's connection, for the CLI's log line or Python's counters.
/// Files and stdin have no events: they are not connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// Connected (or reconnected, when `attempt > 0`).
    Connected {
        /// Failed attempts before this one.
        attempt: u32,
    },
    /// Connecting failed and is being retried with backoff. Reported once when a wait begins
    /// (and again only if the reason changes), not once per attempt.
    Waiting {
        /// Why the last attempt failed, as one line (e.g. `connection refused`).
        reason: String,
    },
    /// The connection ended or failed; a reconnect follows after `retry_in` (None: the source ends).
    Disconnected {
        /// Why, as one line.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Option<Duration>,
    },
}

impl fmt::Display for SourceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceEvent::Connected { attempt: 0 } => f.write_str("connected"),
            SourceEvent::Connected { attempt } => {
                write!(f, "connected after {attempt} failed attempts")
            }
            SourceEvent::Waiting { reason } => write!(f, "waiting ({reason}), retrying"),
            SourceEvent::Disconnected {
                reason,
                retry_in: Some(d),
            } => write!(
                f,
                "disconnected ({reason}); retrying in {} ms",
                d.as_millis()
            ),
            SourceEvent::Disconnected {
                reason,
                retry_in: None,
            } => write!(f, "disconnected ({reason}); not reconnecting"),
        }
    }
}

/// Receives a source's [`SourceEvent`]s as they happen (from the reading thread).
pub type EventSink = Arc<dyn Fn(&SourceEvent) + Send + Sync>;

/// How a [`Source`] behaves.
#[derive(Clone)]
pub struct SourceOptions {
    /// Reconnect dropped connections with backoff (for sources that can).
    pub reconnect: bool,
    /// Set to end the source: the next read returns end of stream.
    pub stop: Arc<AtomicBool>,
    /// Longest time a read waits before it looks at `stop`.
    pub poll: Duration,
    /// Where events go; without a sink they queue for [`Source::take_events`].
    pub on_event: Option<EventSink>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            reconnect: true,
            stop: Arc::new(AtomicBool::new(false)),
            poll: Duration::from_millis(100),
            on_event: None,
        }
    }
}

impl fmt::Debug for SourceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceOptions")
            .field("reconnect", &self.reconnect)
            .field("stopped", &self.stop.load(Ordering::Relaxed))
            .field("poll", &self.poll)
            .finish()
    }
}
