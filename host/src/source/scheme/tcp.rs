//! `tcp://HOST:PORT`: a TCP connection to a device or a serial-to-TCP bridge (QEMU's
//! `-serial tcp:`). Reconnects.
//!
//! A connection attempt gives up after [`CONNECT_TIMEOUT`] per address `HOST` resolves to: a
//! device that vanished from the network answers nothing, and the system's own SYN retries
//! (about two minutes on Linux) would hold a reader, or `dmapickle ctl`, that long.

use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::{fd, Connection, Scheme};
use crate::source::SourceOptions;

/// How long one connection attempt to one address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `tcp://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// `HOST:PORT`, as given.
    pub addr: String,
}

impl Scheme for Tcp {
    const NAME: &'static str = "tcp";
    const DOWN_LINK: bool = true;

    fn parse(path: &str) -> Result<Self, String> {
        let addr = path.trim_end_matches('/');
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Tcp {
                addr: addr.to_string(),
            }),
            _ => Err("expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000".into()),
        }
    }

    fn connect(&self, _opts: &SourceOptions) -> io::Result<Box<dyn Connection>> {
        let mut last = None;
        for addr in self.addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return fd(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the host name resolves to no address")
        }))
    }

    fn hint(&self, kind: io::ErrorKind) -> Option<&'static str> {
        (kind == io::ErrorKind::ConnectionRefused).then_some(super::LISTENING)
    }
}

impl fmt::Display for Tcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp://{}", self.addr)
    }
}
