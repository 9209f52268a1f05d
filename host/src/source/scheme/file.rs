//! `file://PATH` or a plain path: a recording (the raw link stream) or a FIFO. Finite: its
//! end is the end of the source, and it is never opened again.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::{fd, Connection, Scheme};
use crate::source::SourceOptions;

/// `file://PATH` or a plain path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The file's path.
    pub path: PathBuf,
}

impl Scheme for File {
    const NAME: &'static str = "file";

    fn parse(path: &str) -> Result<Self, String> {
        if path.is_empty() {
            Err("expected file://PATH".into())
        } else {
            Ok(File { path: path.into() })
        }
    }

    fn connect(&self, _opts: &SourceOptions) -> io::Result<Box<dyn Connection>> {
        fd(std::fs::File::open(&self.path)?)
    }

    fn is_finite(&self) -> bool {
        true
    }
}

impl fmt::Display for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}
