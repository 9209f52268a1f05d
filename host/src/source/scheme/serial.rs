//! `serial:///dev/ttyXXX?baud=N`: a serial port, raw 8N1 (default [`DEFAULT_BAUD`]).
//! Reconnects.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::source::uri::split_query;
use super::{fd, Connection, Scheme};
use crate::source::SourceOptions;

/// Default serial baud rate when the URI does not say.
pub const DEFAULT_BAUD: u32 = 115_200;

/// `serial:///dev/ttyXXX?baud=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial {
    /// Device path.
    pub path: PathBuf,
    /// Baud rate.
    pub baud: u32,
}

impl Scheme for Serial {
    const NAME: &'static str = "serial";
    const DOWN_LINK: bool = true;

    fn parse(rest: &str) -> Result<Self, String> {
        let (path, query) = split_query(rest);
        if !path.starts_with('/') {
            return Err("expected serial:///dev/ttyXXX?baud=N".into());
        }
        let mut baud = DEFAULT_BAUD;
        for (k, v) in query {
            match k {
                "baud" => {
                    baud = v
                        .parse()
                        .ok()
                        .filter(|b| *b > 0)
                        .ok_or("baud must be a positive integer")?
                }
                _ => return Err("unknown parameter; serial takes only baud=N".into()),
            }
        }
        Ok(Serial {
            path: path.into(),
            baud,
        })
    }

    fn connect(&self, opts: &SourceOptions) -> io::Result<Box<dyn Connection>> {
        let path = self.path.to_str().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "serial path is not UTF-8")
        })?;
        let port = serialport::new(path, self.baud)
            .timeout(opts.poll)
            .open_native()
            .map_err(io::Error::from)?;
        fd(port)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "serial://{}?baud={}", self.path.display(), self.baud)
    }
}
