//! Where link bytes come from: one URI names a source for the CLI and for Python.
//!
//! | URI | source | reconnects |
//! |---|---|---|
//! | `tcp://HOST:PORT` | a TCP connection to a device or a serial-to-TCP bridge (QEMU's `-serial tcp:`) | yes |
//! | `unix:///PATH` | a Unix stream socket (QEMU's `-chardev socket,path=`) | yes |
//! | `serial:///dev/ttyUSB0?baud=N` | a serial port, raw 8N1 (default 115200 baud) | yes |
//! | `file://PATH` or a plain path | a recording (the raw link stream) or a FIFO | no |
//! | `-` | standard input | no |
//! | `rtt://CHIP?probe=VID:PID&channel=N` | SEGGER RTT up channel through a debug probe (feature `probe-rs`) | yes |
//!
//! A [`Source`] is a [`Read`] that never blocks for longer than its poll interval without
//! looking at its stop flag, so Ctrl-C (CLI) or `close()` (Python) ends a read promptly and
//! nothing already received is lost: the stop shows up as the end of the stream. A connection
//! that drops, or cannot be made, is retried with exponential backoff (50 ms doubling to 2 s)
//! unless reconnecting is turned off; the first failed attempt is reported as a
//! [`SourceEvent::Waiting`] (not every retry), a dropped connection as a
//! [`SourceEvent::Disconnected`].
//!
//! Files and standard input are finite: their end is the end of the source, for good. A source
//! that has ended (a file or stdin at its end, a connection dropped without reconnect, the stop
//! flag) keeps returning end of stream; it is never opened again, so a reader re-scanning bytes
//! after a cut-off last frame can never read a recording twice.
//!
//! Spelled like QEMU (`tcp:HOST:PORT`, `unix:PATH`) or like a sink (`tcp-listen:`), a source is
//! refused with the URI it should be, rather than opened as a file of that name.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Default serial baud rate when the URI does not say.
pub const DEFAULT_BAUD: u32 = 115_200;
/// First reconnect delay; doubles per failed attempt up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A parsed source URI. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `tcp://HOST:PORT`.
    Tcp(String),
    /// `unix:///PATH`.
    Unix(PathBuf),
    /// `serial:///dev/ttyXXX?baud=N`.
    Serial {
        /// Device path.
        path: PathBuf,
        /// Baud rate.
        baud: u32,
    },
    /// `file://PATH` or a plain path.
    File(PathBuf),
    /// `-`.
    Stdin,
    /// `rtt://CHIP?probe=VID:PID&channel=N`.
    Rtt {
        /// probe-rs chip name, e.g. `STM32F407VGTx`.
        chip: String,
        /// `VID:PID[:SERIAL]` of the probe; the first probe found when absent.
        probe: Option<String>,
        /// RTT up channel carrying the link (default 0).
        channel: usize,
    },
}

/// A source URI that could not be parsed: the URI and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUri {
    /// The URI as given.
    pub uri: String,
    /// What is wrong, and what would be right.
    pub reason: String,
}

impl fmt::Display for BadUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad source `{}`: {}", self.uri, self.reason)
    }
}

impl std::error::Error for BadUri {}

fn split_query(rest: &str) -> (&str, Vec<(&str, &str)>) {
    match rest.split_once('?') {
        None => (rest, Vec::new()),
        Some((path, query)) => (
            path,
            query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .collect(),
        ),
    }
}

impl FromStr for SourceSpec {
    type Err = BadUri;

    fn from_str(uri: &str) -> Result<Self, BadUri> {
        let bad = |reason: &str| BadUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        if uri == "-" {
            return Ok(SourceSpec::Stdin);
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            if uri.is_empty() {
                return Err(bad("empty; give a path, `-`, tcp://HOST:PORT, unix:///PATH, serial:///DEV or rtt://CHIP"));
            }
            if let Some(hint) = uri_hint(uri) {
                return Err(bad(&hint));
            }
            return Ok(SourceSpec::File(PathBuf::from(uri)));
        };
        match scheme {
            "tcp" => {
                let addr = rest.trim_end_matches('/');
                match addr.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                        Ok(SourceSpec::Tcp(addr.to_string()))
                    }
                    _ => Err(bad("expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000")),
                }
            }
            "unix" if rest.starts_with('/') => Ok(SourceSpec::Unix(PathBuf::from(rest))),
            "unix" => Err(bad("expected an absolute path, e.g. unix:///tmp/qemu.sock")),
            "file" if !rest.is_empty() => Ok(SourceSpec::File(PathBuf::from(rest))),
            "file" => Err(bad("expected file://PATH")),
            "serial" => {
                let (path, query) = split_query(rest);
                if !path.starts_with('/') {
                    return Err(bad("expected serial:///dev/ttyXXX?baud=N"));
                }
                let mut baud = DEFAULT_BAUD;
                for (k, v) in query {
                    match k {
                        "baud" => {
                            baud = v
                                .parse()
                                .ok()
                                .filter(|b| *b > 0)
                                .ok_or_else(|| bad("baud must be a positive integer"))?
                        }
                        _ => return Err(bad("unknown parameter; serial takes only baud=N")),
                    }
                }
                Ok(SourceSpec::Serial {
                    path: PathBuf::from(path),
                    baud,
                })
            }
            "rtt" => {
                let (chip, query) = split_query(rest);
                let chip = chip.trim_end_matches('/');
                if chip.is_empty() {
                    return Err(bad("expected rtt://CHIP, e.g. rtt://STM32F407VGTx"));
                }
                let (mut probe, mut channel) = (None, 0);
                for (k, v) in query {
                    match k {
                        "probe" => probe = Some(v.to_string()),
                        "channel" => {
                            channel = v
                                .parse()
                                .map_err(|_| bad("channel must be a non-negative integer"))?
                        }
                        _ => {
                            return Err(bad(
                                "unknown parameter; rtt takes probe=VID:PID and channel=N",
                            ))
                        }
                    }
                }
                Ok(SourceSpec::Rtt {
                    chip: chip.to_string(),
                    probe,
                    channel,
                })
            }
            _ => Err(bad(
                "unknown scheme; use tcp://, unix://, serial://, file://, rtt://, a path or `-`",
            )),
        }
    }
}

/// Schemes a user may write as `SCHEME:REST` instead of `SCHEME://REST` (QEMU's `-serial tcp:`
/// spelling, the device simulator's old sink spelling).
const SCHEMES: [&str; 7] = [
    "tcp",
    "unix",
    "serial",
    "file",
    "rtt",
    "tcp-listen",
    "unix-listen",
];

/// For `tcp:127.0.0.1:4000` and the like (a known scheme without `//`): what to write instead.
/// `None` for anything else (a plain path). A file really named like that is `./tcp:...`.
pub fn uri_hint(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if !SCHEMES.contains(&scheme) || rest.starts_with("//") {
        return None;
    }
    // QEMU options (`,server=on,wait=off`) belong to QEMU, not to dmapickle.
    let rest = rest.split(',').next().unwrap_or(rest);
    Some(format!(
        "did you mean `{scheme}://{rest}`? dmapickle spells sources and sinks as URIs \
         (QEMU writes `tcp:HOST:PORT`); a file of that name is `./{uri}`"
    ))
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Tcp(addr) => write!(f, "tcp://{addr}"),
            SourceSpec::Unix(p) => write!(f, "unix://{}", p.display()),
            SourceSpec::Serial { path, baud } => {
                write!(f, "serial://{}?baud={baud}", path.display())
            }
            SourceSpec::File(p) => write!(f, "{}", p.display()),
            SourceSpec::Stdin => f.write_str("stdin"),
            SourceSpec::Rtt {
                chip,
                probe,
                channel,
            } => {
                write!(f, "rtt://{chip}?channel={channel}")?;
                match probe {
                    Some(p) => write!(f, "&probe={p}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl SourceSpec {
    /// Whether a dropped connection can be made again (sockets, serial ports, probes). Files
    /// and stdin cannot: their end is final.
    pub fn can_reconnect(&self) -> bool {
        !self.is_finite()
    }

    /// Whether the source is finite data (a file, a FIFO or stdin) rather than a connection to
    /// a device: it is never reported as "connected" and never reopened.
    pub fn is_finite(&self) -> bool {
        matches!(self, SourceSpec::File(_) | SourceSpec::Stdin)
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

/// One open connection of any kind.
enum Conn {
    Fd(Box<dyn FdRead>),
    #[cfg(feature = "probe-rs")]
    Rtt(Box<crate::rtt::RttConn>),
}

/// A readable file descriptor (sockets, files, pipes, serial ports).
trait FdRead: Read + Send {
    fn fd(&self) -> RawFd;
}

impl<T: Read + AsRawFd + Send> FdRead for T {
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

/// A byte source named by a URI. See the [module docs](self).
pub struct Source {
    spec: SourceSpec,
    opts: SourceOptions,
    conn: Option<Conn>,
    failures: u32,
    events: Vec<SourceEvent>,
    bytes: u64,
    /// The source ended for good (end of a file or stdin, a drop without reconnect, stop).
    ended: bool,
    /// The reason last reported by [`SourceEvent::Waiting`] in the current wait.
    waiting: Option<String>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("spec", &self.spec)
            .field("connected", &self.conn.is_some())
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// A source that cannot be opened: where, why, and what to do.
#[derive(Debug)]
pub struct OpenError {
    /// The source.
    pub source: SourceSpec,
    /// The error.
    pub error: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match (&self.source, self.error.kind()) {
            (SourceSpec::Tcp(_) | SourceSpec::Unix(_), io::ErrorKind::ConnectionRefused) => {
                "is the device (or QEMU) listening there?"
            }
            (_, io::ErrorKind::NotFound) => "check the path",
            (_, io::ErrorKind::PermissionDenied) => {
                "check permissions (dialout group for serial ports)"
            }
            (SourceSpec::Rtt { .. }, _) => "check the probe connection and the chip name",
            _ => "check the source URI",
        };
        write!(f, "cannot open {}: {}; {hint}", self.source, self.error)
    }
}

impl std::error::Error for OpenError {}

impl Source {
    /// Open `spec` now. With `opts.reconnect` and a source that can reconnect, a failed first
    /// connection is retried with backoff (each failure reported as an event) until it works
    /// or `opts.stop` is set; otherwise the error is returned.
    pub fn open(spec: SourceSpec, opts: SourceOptions) -> Result<Source, OpenError> {
        let mut source = Source {
            spec,
            opts,
            conn: None,
            failures: 0,
            events: Vec::new(),
            bytes: 0,
            ended: false,
            waiting: None,
        };
        // A source this build cannot open at all fails now, whatever `reconnect` says.
        if let Err(error) = source.supported() {
            return Err(OpenError {
                source: source.spec.clone(),
                error,
            });
        }
        if !source.reconnects() {
            let conn = source.connect().map_err(|error| OpenError {
                source: source.spec.clone(),
                error,
            })?;
            source.conn = Some(conn);
            if !source.spec.is_finite() {
                source.emit(SourceEvent::Connected { attempt: 0 });
            }
        }
        // Reconnecting sources connect on the first read, retrying with backoff.
        Ok(source)
    }

    /// Parse `uri` and [`open`](Self::open) it.
    pub fn open_uri(
        uri: &str,
        opts: SourceOptions,
    ) -> Result<Source, Box<dyn std::error::Error + Send + Sync>> {
        let spec: SourceSpec = uri.parse()?;
        Ok(Source::open(spec, opts)?)
    }

    /// What this source reads.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// Bytes read so far, over every connection.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn emit(&mut self, e: SourceEvent) {
        match &self.opts.on_event {
            Some(sink) => sink(&e),
            None if self.events.len() < 1024 => self.events.push(e),
            None => {}
        }
    }

    /// Connection events since the last call, oldest first (when no sink is set).
    pub fn take_events(&mut self) -> Vec<SourceEvent> {
        std::mem::take(&mut self.events)
    }

    /// A writer to the device on the current connection (a duplicate of its file descriptor),
    /// for commands (`crate::control`). Fails when not connected or when the source has no down
    /// direction (files, stdin, RTT).
    pub fn down_link(&self) -> io::Result<File> {
        match (&self.conn, &self.spec) {
            (
                Some(Conn::Fd(r)),
                SourceSpec::Tcp(_) | SourceSpec::Unix(_) | SourceSpec::Serial { .. },
            ) => {
                // SAFETY: the fd belongs to the open connection `r`, alive for this borrow;
                // `BorrowedFd` only lends it to `try_clone_to_owned`, which dups it.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(r.fd()) };
                Ok(File::from(fd.try_clone_to_owned()?))
            }
            (None, _) => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the source is not connected yet",
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this source has no way to send commands (use tcp://, unix:// or serial://)",
            )),
        }
    }

    /// The stop flag: set it (from any thread or a signal handler) to end the source.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.opts.stop.clone()
    }

    fn reconnects(&self) -> bool {
        self.opts.reconnect && self.spec.can_reconnect()
    }

    fn stopped(&self) -> bool {
        self.opts.stop.load(Ordering::Relaxed)
    }

    /// `Unsupported` if this build cannot open the source's kind (rtt:// without probe-rs).
    fn supported(&self) -> io::Result<()> {
        #[cfg(not(feature = "probe-rs"))]
        if let SourceSpec::Rtt { .. } = self.spec {
            return Err(rtt_unsupported());
        }
        Ok(())
    }

    fn connect(&self) -> io::Result<Conn> {
        let fd = |r: Box<dyn FdRead>| Ok(Conn::Fd(r));
        match &self.spec {
            SourceSpec::Tcp(addr) => {
                let s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                fd(Box::new(s))
            }
            SourceSpec::Unix(path) => fd(Box::new(UnixStream::connect(path)?)),
            SourceSpec::File(path) => fd(Box::new(File::open(path)?)),
            // Unbuffered, on a duplicate of fd 0: `io::stdin()` buffers internally, and bytes
            // held in that buffer would be invisible to the readiness poll.
            SourceSpec::Stdin => {
                use std::os::fd::AsFd;
                fd(Box::new(File::from(
                    io::stdin().as_fd().try_clone_to_owned()?,
                )))
            }
            SourceSpec::Serial { path, baud } => {
                let path = path.to_str().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "serial path is not UTF-8")
                })?;
                let port = serialport::new(path, *baud)
                    .timeout(self.opts.poll)
                    .open_native()
                    .map_err(io::Error::from)?;
                fd(Box::new(port))
            }
            #[cfg(feature = "probe-rs")]
            SourceSpec::Rtt {
                chip,
                probe,
                channel,
            } => Ok(Conn::Rtt(Box::new(crate::rtt::RttConn::attach(
                chip,
                probe.as_deref(),
                *channel,
            )?))),
            #[cfg(not(feature = "probe-rs"))]
            SourceSpec::Rtt { .. } => Err(rtt_unsupported()),
        }
    }

    /// Sleep up to `d`, waking early when stopped. Returns false if stopped.
    fn nap(&self, d: Duration) -> bool {
        let step = self.opts.poll.min(d).max(Duration::from_millis(1));
        let mut left = d;
        while !left.is_zero() {
            if self.stopped() {
                return false;
            }
            let s = step.min(left);
            std::thread::sleep(s);
            left -= s;
        }
        !self.stopped()
    }

    fn backoff(&self) -> Duration {
        let factor = 1u32 << self.failures.min(6);
        (MIN_BACKOFF * factor).min(MAX_BACKOFF)
    }

    /// Make sure there is a connection, retrying with backoff. `Ok(false)`: stopped.
    fn ensure_connected(&mut self) -> io::Result<bool> {
        while self.conn.is_none() {
            if self.stopped() {
                return Ok(false);
            }
            match self.connect() {
                Ok(conn) => {
                    self.emit(SourceEvent::Connected {
                        attempt: self.failures,
                    });
                    self.failures = 0;
                    self.waiting = None;
                    self.conn = Some(conn);
                }
                Err(e) if self.reconnects() && e.kind() != io::ErrorKind::Unsupported => {
                    let retry_in = self.backoff();
                    self.failures = self.failures.saturating_add(1);
                    let reason = e.to_string();
                    if self.waiting.as_ref() != Some(&reason) {
                        self.waiting = Some(reason.clone());
                        self.emit(SourceEvent::Waiting { reason });
                    }
                    if !self.nap(retry_in) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The connection ended (`reason`). Returns true if the caller should read again.
    fn dropped(&mut self, reason: String) -> bool {
        self.conn = None;
        if self.reconnects() && !self.stopped() {
            self.emit(SourceEvent::Disconnected {
                reason,
                retry_in: Some(MIN_BACKOFF),
            });
            self.nap(MIN_BACKOFF)
        } else {
            self.emit(SourceEvent::Disconnected {
                reason,
                retry_in: None,
            });
            self.ended = true;
            false
        }
    }
}

#[cfg(not(feature = "probe-rs"))]
fn rtt_unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "rtt:// needs dmapickle-host built with the `probe-rs` feature \
         (cargo install --path host --features probe-rs)",
    )
}

/// Wait until `fd` is readable or `timeout` passes. True if readable (or hung up).
fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `pfd` is a valid, exclusively borrowed pollfd array of length 1 for the duration
    // of the call; `fd` belongs to a connection the caller holds open (poll on a closed fd
    // would only report POLLNVAL, never touch memory).
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    match n {
        n if n < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

impl Read for Source {
    /// Reads bytes; `Ok(0)` is the end of the source: end of a file or stdin, a dropped
    /// connection without reconnect, or the stop flag.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            // Checked before every read, not only when idle: a source that never pauses must
            // still end promptly on Ctrl-C or close(). Bytes already returned are kept.
            if self.ended || self.stopped() || !self.ensure_connected()? {
                return Ok(0);
            }
            let poll = self.opts.poll;
            let result = match &mut self.conn {
                Some(Conn::Fd(r)) => match wait_readable(r.fd(), poll) {
                    Ok(true) => r.read(buf),
                    Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
                    Err(e) => Err(e),
                },
                #[cfg(feature = "probe-rs")]
                Some(Conn::Rtt(r)) => r.read(buf, poll),
                None => Ok(0),
            };
            match result {
                Ok(0) => {
                    if self.spec.is_finite() {
                        // The end of a file or stdin is final: never reopened.
                        self.conn = None;
                        self.ended = true;
                        return Ok(0);
                    }
                    if !self.dropped("connection closed by peer".into()) {
                        return Ok(0);
                    }
                }
                Ok(n) => {
                    self.bytes += n as u64;
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if self.stopped() {
                        return Ok(0);
                    }
                }
                Err(e) if self.spec.can_reconnect() => {
                    if !self.dropped(e.to_string()) {
                        return Ok(0);
                    }
                }
                Err(e) => {
                    self.ended = true;
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        let p = |s: &str| s.parse::<SourceSpec>().unwrap();
        assert_eq!(
            p("tcp://127.0.0.1:4000"),
            SourceSpec::Tcp("127.0.0.1:4000".into())
        );
        assert_eq!(
            p("unix:///tmp/x.sock"),
            SourceSpec::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            p("serial:///dev/ttyUSB0?baud=921600"),
            SourceSpec::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: 921_600
            }
        );
        assert_eq!(
            p("serial:///dev/ttyACM0"),
            SourceSpec::Serial {
                path: "/dev/ttyACM0".into(),
                baud: DEFAULT_BAUD
            }
        );
        assert_eq!(
            p("file:///tmp/a.rec"),
            SourceSpec::File("/tmp/a.rec".into())
        );
        assert_eq!(p("rec/a.rec"), SourceSpec::File("rec/a.rec".into()));
        assert_eq!(p("-"), SourceSpec::Stdin);
        assert_eq!(
            p("rtt://nRF52840_xxAA?probe=1366:1015&channel=1"),
            SourceSpec::Rtt {
                chip: "nRF52840_xxAA".into(),
                probe: Some("1366:1015".into()),
                channel: 1
            }
        );
    }

    #[test]
    fn bad_uris_say_what_is_expected() {
        for (uri, want) in [
            ("tcp://localhost", "tcp://HOST:PORT"),
            ("tcp://:80", "tcp://HOST:PORT"),
            ("unix://rel/path", "absolute path"),
            ("serial:///dev/ttyS0?baud=fast", "baud must be"),
            ("serial:///dev/ttyS0?parity=odd", "only baud"),
            ("http://x", "unknown scheme"),
            ("rtt://", "rtt://CHIP"),
            ("", "empty"),
        ] {
            let e = uri.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(e.contains(want), "{uri}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn a_refused_connection_without_reconnect_is_one_clear_line() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let opts = SourceOptions {
            reconnect: false,
            ..Default::default()
        };
        let e = Source::open_uri(&format!("tcp://{addr}"), opts)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("cannot open tcp://{addr}: ")), "{e}");
        assert!(e.contains("listening"), "{e}");
    }

    #[test]
    fn tcp_reconnects_and_loses_nothing() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for chunk in [&b"first "[..], &b"second"[..]] {
                let (mut s, _) = l.accept().unwrap();
                s.write_all(chunk).unwrap();
            }
        });
        let mut src = Source::open_uri(&format!("tcp://{addr}"), SourceOptions::default()).unwrap();
        let stop = src.stop_flag();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 12 {
            let n = src.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        server.join().unwrap();
        assert_eq!(got, b"first second");
        let ev = src.take_events();
        assert!(
            ev.iter().any(|e| matches!(
                e,
                SourceEvent::Disconnected {
                    retry_in: Some(_),
                    ..
                }
            )),
            "{ev:?}"
        );
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, SourceEvent::Connected { .. }))
                .count(),
            2
        );
        stop.store(true, Ordering::Relaxed);
        assert_eq!(src.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn stop_ends_a_silent_source() {
        let (a, _b) = UnixStream::pair().unwrap();
        let opts = SourceOptions {
            poll: Duration::from_millis(10),
            ..Default::default()
        };
        let stop = opts.stop.clone();
        let mut src = Source {
            spec: SourceSpec::Unix("/pair".into()),
            opts,
            conn: Some(Conn::Fd(Box::new(a))),
            failures: 0,
            events: Vec::new(),
            bytes: 0,
            ended: false,
            waiting: None,
        };
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            src.read(&mut buf).unwrap()
        });
        std::thread::sleep(Duration::from_millis(30));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(t.join().unwrap(), 0);
    }

    #[test]
    fn a_file_ends_for_good_and_is_never_reopened() {
        let path = std::env::temp_dir().join(format!("dmapickle-src-end-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let mut src = Source::open_uri(path.to_str().unwrap(), SourceOptions::default()).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(src.read(&mut buf).unwrap(), 3);
        for _ in 0..3 {
            assert_eq!(src.read(&mut buf).unwrap(), 0, "read again from offset 0");
        }
        assert_eq!(Source::bytes(&src), 3);
        assert!(src.take_events().is_empty(), "a file is not a connection");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_dropped_connection_without_reconnect_is_not_made_again() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"once").unwrap();
            drop(s);
            // A second connection would be accepted here; the source must not make one.
            l.set_nonblocking(true).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            l.accept().is_err()
        });
        let opts = SourceOptions {
            reconnect: false,
            ..Default::default()
        };
        let mut src = Source::open_uri(&format!("tcp://{addr}"), opts).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 8];
        loop {
            let n = src.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(src.read(&mut buf).unwrap(), 0);
        assert_eq!(got, b"once");
        assert!(server.join().unwrap(), "the source connected a second time");
    }

    #[test]
    fn qemu_and_sink_spellings_get_the_uri_they_should_be() {
        for (uri, want) in [
            ("tcp:127.0.0.1:4000", "`tcp://127.0.0.1:4000`"),
            (
                "tcp:127.0.0.1:4000,server=on,wait=off",
                "`tcp://127.0.0.1:4000`",
            ),
            ("tcp-listen:127.0.0.1:4009", "`tcp-listen://127.0.0.1:4009`"),
            ("unix:/tmp/q.sock", "`unix:///tmp/q.sock`"),
        ] {
            let e = uri.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(e.contains(want), "{uri}: {e}");
        }
        // Paths stay paths, a `./` prefix included.
        assert_eq!(
            "./tcp:1".parse::<SourceSpec>(),
            Ok(SourceSpec::File("./tcp:1".into()))
        );
        assert_eq!(
            "C:data.rec".parse::<SourceSpec>(),
            Ok(SourceSpec::File("C:data.rec".into()))
        );
    }

    #[cfg(not(feature = "probe-rs"))]
    #[test]
    fn rtt_without_probe_rs_fails_at_open_even_with_reconnect() {
        let e = Source::open_uri("rtt://STM32F407VGTx", SourceOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`probe-rs` feature"), "{e}");
    }

    #[test]
    fn a_refused_connect_is_reported_once_while_waiting() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let opts = SourceOptions {
            poll: Duration::from_millis(10),
            ..Default::default()
        };
        let stop = opts.stop.clone();
        let mut src = Source::open_uri(&format!("tcp://{addr}"), opts).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            let n = src.read(&mut buf).unwrap();
            (n, src.take_events())
        });
        // 50 + 100 + 200 + 400 ms of backoff: at least four attempts.
        std::thread::sleep(Duration::from_millis(900));
        stop.store(true, Ordering::Relaxed);
        let (n, events) = t.join().unwrap();
        assert_eq!(n, 0);
        assert_eq!(events.len(), 1, "{events:?}");
        let SourceEvent::Waiting { reason } = &events[0] else {
            panic!("{events:?}")
        };
        assert!(reason.contains("refused"), "{reason}");
        assert_eq!(
            events[0].to_string(),
            format!("waiting ({reason}), retrying")
        );
    }
}
