//! `tcp://HOST:PORT`: a TCP connection to a device or a serial-to-TCP bridge (QEMU's
//! `-serial tcp:`). Reconnects.

use std::fmt;
use std::io;
use std::net::TcpStream;

use super::{fd, Connection, Scheme};
use crate::source::SourceOptions;

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
        let s = TcpStream::connect(&self.addr)?;
        s.set_nodelay(true)?;
        fd(s)
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
