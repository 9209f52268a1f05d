//! `unix:///PATH`: a Unix stream socket (QEMU's `-chardev socket,path=`). Reconnects.

use std::fmt;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::{fd, Connection, Scheme};
use crate::source::SourceOptions;

/// `unix:///PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unix {
    /// The socket's absolute path.
    pub path: PathBuf,
}

impl Scheme for Unix {
    const NAME: &'static str = "unix";
    const DOWN_LINK: bool = true;

    fn parse(path: &str) -> Result<Self, String> {
        if path.starts_with('/') {
            Ok(Unix { path: path.into() })
        } else {
            Err("expected an absolute path, e.g. unix:///tmp/qemu.sock".into())
        }
    }

    fn connect(&self, _opts: &SourceOptions) -> io::Result<Box<dyn Connection>> {
        fd(UnixStream::connect(&self.path)?)
    }

    fn hint(&self, kind: io::ErrorKind) -> Option<&'static str> {
        (kind == io::ErrorKind::ConnectionRefused).then_some(super::LISTENING)
    }
}

impl fmt::Display for Unix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix://{}", self.path.display())
    }
}
