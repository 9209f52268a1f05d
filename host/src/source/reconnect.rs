//! Reading a source: connecting on demand, reconnecting with backoff, ending on the stop flag.
//!
//! A connection that drops, or cannot be made, is retried with exponential backoff
//! ([`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`]) unless reconnecting is turned off; the first
//! failed attempt is reported as a [`SourceEvent::Waiting`] (not every retry), a dropped
//! connection as a [`SourceEvent::Disconnected`]. Nothing here knows one scheme from another:
//! it asks the [`SourceSpec`] to connect and the [`Connection`] to read.

use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::scheme::Connection;
use super::{SourceEvent, SourceOptions, SourceSpec};

/// First reconnect delay; doubles per failed attempt up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A byte source named by a URI. See the [module docs](self).
pub struct Source {
    spec: SourceSpec,
    opts: SourceOptions,
    conn: Option<Box<dyn Connection>>,
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
        let kind = self.error.kind();
        let hint = self.source.hint(kind).unwrap_or(match kind {
            io::ErrorKind::NotFound => "check the path",
            io::ErrorKind::PermissionDenied => "check permissions (dialout group for serial ports)",
            _ => "check the source URI",
        });
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
        if let Err(error) = source.spec.supported() {
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

    /// A writer to the device on the current connection (a duplicate of its file descriptor,
    /// or RTT's down channel), for commands (`crate::control`). Fails when not connected or
    /// when the source has no down direction (files, stdin).
    pub fn down_link(&self) -> io::Result<Box<dyn io::Write + Send>> {
        match &self.conn {
            Some(conn) if self.spec.has_down_link() => conn.down_link(),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the source is not connected yet",
            )),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this source has no way to send commands (use tcp://, unix://, serial:// or rtt://)",
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

    fn connect(&self) -> io::Result<Box<dyn Connection>> {
        self.spec.connect(&self.opts)
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

impl Read for Source {
    /// Reads bytes; `Ok(0)` is the end of the source: end of a file or stdin, a dropped
    /// connection without reconnect, or the stop flag.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_with(|conn, poll| conn.read_within(buf, poll))
    }

    /// As [`read`](Self::read), into `bufs` in order with one read of the connection where it
    /// has a vectored read (file descriptors: `readv(2)`).
    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        self.read_with(|conn, poll| conn.read_vectored_within(bufs, poll))
    }
}

impl Source {
    /// The read loop of `read` and `read_vectored`: `read` (not empty) on the connection,
    /// reconnecting, waiting and ending as the source's kind says.
    fn read_with(
        &mut self,
        mut read: impl FnMut(&mut Box<dyn Connection>, Duration) -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            // Checked before every read, not only when idle: a source that never pauses must
            // still end promptly on Ctrl-C or close(). Bytes already returned are kept.
            if self.ended || self.stopped() || !self.ensure_connected()? {
                return Ok(0);
            }
            let poll = self.opts.poll;
            let result = match &mut self.conn {
                Some(conn) => read(conn, poll),
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
    use std::os::unix::net::UnixStream;

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
    fn a_vectored_read_fills_every_buffer_in_one_read() {
        // What the frame reader relies on to bring a payload's end, its data CRC and the next
        // header in one read: one readv, not one read per buffer.
        let path = std::env::temp_dir().join(format!("dmapickle-src-vec-{}", std::process::id()));
        std::fs::write(&path, b"0123456789ab").unwrap();
        let mut src = Source::open_uri(path.to_str().unwrap(), SourceOptions::default()).unwrap();
        let (mut a, mut b) = ([0u8; 4], [0u8; 8]);
        let mut bufs = [io::IoSliceMut::new(&mut a), io::IoSliceMut::new(&mut b)];
        assert_eq!(src.read_vectored(&mut bufs).unwrap(), 12);
        assert_eq!(src.read_vectored(&mut bufs).unwrap(), 0);
        assert_eq!((&a, &b, Source::bytes(&src)), (b"0123", b"456789ab", 12));
        std::fs::remove_file(&path).unwrap();
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
            spec: SourceSpec::Unix(crate::source::scheme::unix::Unix {
                path: "/pair".into(),
            }),
            opts,
            conn: Some(Box::new(crate::source::scheme::Fd(a))),
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
