//! The kinds of source: one file per scheme, one line per scheme in the table at the end.
//!
//! A scheme is a type implementing [`Scheme`]: how the part after `NAME://` reads, how it is
//! shown, and how one connection is made. Everything else is shared: the URI grammar
//! ([`super::uri`]: `-`, plain paths, query strings, hints for QEMU spellings, the list of
//! schemes in error messages) and reconnecting with backoff ([`super::Source`]) go through
//! the table, so adding a scheme is one new file here and one line in the `schemes!` table
//! (docs/extending.md, "A source scheme").

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::SourceOptions;

/// One kind of source, named by the scheme of its URI.
pub trait Scheme: Sized + Clone + fmt::Debug + fmt::Display + PartialEq + Eq {
    /// The URI scheme, the part before `://` (e.g. `tcp`); empty for a source with no scheme
    /// of its own (standard input, written `-`).
    const NAME: &'static str;

    /// Parses what follows `NAME://` ([`split_query`](super::uri::split_query) splits off
    /// `?key=value&...` parameters). `Err`: what is wrong and what would be right, as one line
    /// (e.g. `expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000`).
    fn parse(rest: &str) -> Result<Self, String>;

    /// Makes one connection (or opens the file). An error of kind
    /// [`io::ErrorKind::Unsupported`] is final; any other is retried with backoff when the
    /// source reconnects.
    fn connect(&self, opts: &SourceOptions) -> io::Result<Box<dyn Connection>>;

    /// Whether this is finite data (a file, a FIFO, stdin) rather than a connection to a
    /// device: never reported as connected, never reopened, its end is the source's end.
    fn is_finite(&self) -> bool {
        false
    }

    /// `Err(Unsupported)` if this build cannot open the source at all (checked at open,
    /// whether or not the source reconnects).
    fn supported(&self) -> io::Result<()> {
        Ok(())
    }

    /// Whether the device can be sent commands over this source's connection
    /// ([`Source::down_link`](super::Source::down_link), `crate::control`): sockets, serial
    /// ports and RTT (a down channel) can, files and stdin cannot.
    const DOWN_LINK: bool = false;

    /// What to check when connecting failed with `kind`, if this scheme knows better than the
    /// generic hints ("check the path", "check permissions", "check the source URI").
    fn hint(&self, kind: io::ErrorKind) -> Option<&'static str> {
        let _ = kind;
        None
    }
}

/// The hint for a refused connection to a socket.
pub(crate) const LISTENING: &str = "is the device (or QEMU) listening there?";

/// One open connection of any kind: reads what arrives within a poll interval.
pub trait Connection: Send {
    /// Reads into `buf` (not empty), waiting at most `timeout` for bytes: `Ok(0)` is the end
    /// of the connection, `WouldBlock` (or `TimedOut`, `Interrupted`) that nothing came.
    fn read_within(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;

    /// [`read_within`](Self::read_within) into `bufs` in order, as `Read::read_vectored`; by
    /// default into the first non-empty one.
    fn read_vectored_within(
        &mut self,
        bufs: &mut [io::IoSliceMut<'_>],
        timeout: Duration,
    ) -> io::Result<usize> {
        match bufs.iter_mut().find(|b| !b.is_empty()) {
            Some(buf) => self.read_within(buf, timeout),
            None => Ok(0),
        }
    }

    /// A writer to the device on this connection (for [`Scheme::DOWN_LINK`] schemes).
    fn down_link(&self) -> io::Result<Box<dyn io::Write + Send>> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A connection over a readable file descriptor (socket, file, pipe, serial port): waits for
/// it with `poll(2)`, then reads once.
pub struct Fd<T>(pub T);

impl<T: Read + AsRawFd + Send> Connection for Fd<T> {
    fn read_within(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if wait_readable(self.0.as_raw_fd(), timeout)? {
            self.0.read(buf)
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    /// One `readv(2)` (for sockets, files and pipes): the frame reader's payload, its data
    /// CRC and the next frame's header arrive in one read.
    fn read_vectored_within(
        &mut self,
        bufs: &mut [io::IoSliceMut<'_>],
        timeout: Duration,
    ) -> io::Result<usize> {
        if wait_readable(self.0.as_raw_fd(), timeout)? {
            self.0.read_vectored(bufs)
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    fn down_link(&self) -> io::Result<Box<dyn io::Write + Send>> {
        // SAFETY: the fd belongs to the open connection `self.0`, alive for this borrow;
        // `BorrowedFd` only lends it to `try_clone_to_owned`, which dups it.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0.as_raw_fd()) };
        Ok(Box::new(std::fs::File::from(fd.try_clone_to_owned()?)))
    }
}

/// `Ok(Box::new(Fd(t)))`: the connection of a scheme whose reader is a file descriptor.
pub fn fd<T: Read + AsRawFd + Send + 'static>(t: T) -> io::Result<Box<dyn Connection>> {
    Ok(Box::new(Fd(t)))
}

/// Waits until `fd` is readable or `timeout` passes. True if readable (or hung up).
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

/// The table: `Variant(module::Type)` per scheme, in the order error messages list them.
/// Generates the module declarations, [`SourceSpec`] and its dispatch.
macro_rules! schemes {
    ($($(#[$doc:meta])* $variant:ident($module:ident::$ty:ident),)+) => {
        $(pub mod $module;)+

        /// A parsed source URI: one variant per scheme (see [`scheme`](self)).
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum SourceSpec {
            $($(#[$doc])* $variant($module::$ty),)+
        }

        /// Every scheme's `NAME`, in table order (empty for one without a scheme).
        pub(crate) const NAMES: &[&str] = &[$(<$module::$ty as Scheme>::NAME),+];

        impl SourceSpec {
            /// Parses `rest` as the rest of a URI of scheme `name`; `None`: no such scheme.
            pub(crate) fn parse_scheme(name: &str, rest: &str) -> Option<Result<SourceSpec, String>> {
                $(if !<$module::$ty as Scheme>::NAME.is_empty()
                    && name == <$module::$ty as Scheme>::NAME
                {
                    return Some(<$module::$ty as Scheme>::parse(rest).map(SourceSpec::$variant));
                })+
                None
            }

            /// Makes one connection.
            pub(crate) fn connect(&self, opts: &SourceOptions) -> io::Result<Box<dyn Connection>> {
                match self { $(SourceSpec::$variant(s) => s.connect(opts),)+ }
            }

            /// Whether the source is finite data (a file, a FIFO or stdin) rather than a
            /// connection to a device: it is never reported as "connected" and never reopened.
            pub fn is_finite(&self) -> bool {
                match self { $(SourceSpec::$variant(s) => s.is_finite(),)+ }
            }

            pub(crate) fn supported(&self) -> io::Result<()> {
                match self { $(SourceSpec::$variant(s) => s.supported(),)+ }
            }

            pub(crate) fn has_down_link(&self) -> bool {
                match self { $(SourceSpec::$variant(_) => <$module::$ty as Scheme>::DOWN_LINK,)+ }
            }

            pub(crate) fn hint(&self, kind: io::ErrorKind) -> Option<&'static str> {
                match self { $(SourceSpec::$variant(s) => s.hint(kind),)+ }
            }
        }

        impl fmt::Display for SourceSpec {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $(SourceSpec::$variant(s) => s.fmt(f),)+ }
            }
        }
    };
}

schemes! {
    /// `tcp://HOST:PORT`: a TCP connection to a device or a serial-to-TCP bridge.
    Tcp(tcp::Tcp),
    /// `unix:///PATH`: a Unix stream socket (QEMU's `-chardev socket,path=`).
    Unix(unix::Unix),
    /// `serial:///dev/ttyXXX?baud=N`: a serial port, raw 8N1.
    Serial(serial::Serial),
    /// `file://PATH` or a plain path: a recording or a FIFO.
    File(file::File),
    /// `rtt://CHIP?probe=VID:PID&channel=N`: an RTT up channel through a debug probe.
    Rtt(rtt::Rtt),
    /// `-`: standard input.
    Stdin(stdin::Stdin),
}
