//! `-`: standard input. Finite, like a file.

use std::fmt;
use std::io;
use std::os::fd::AsFd;

use super::{fd, Connection, Scheme};
use crate::source::SourceOptions;

/// `-`: standard input (no URI scheme of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stdin;

impl Scheme for Stdin {
    const NAME: &'static str = "";

    fn parse(_rest: &str) -> Result<Self, String> {
        Ok(Stdin)
    }

    fn connect(&self, _opts: &SourceOptions) -> io::Result<Box<dyn Connection>> {
        // Unbuffered, on a duplicate of fd 0: `io::stdin()` buffers internally, and bytes held
        // in that buffer would be invisible to the readiness poll.
        fd(std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?))
    }

    fn is_finite(&self) -> bool {
        true
    }
}

impl fmt::Display for Stdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdin")
    }
}
