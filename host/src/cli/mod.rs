//! Subcommands of the `dmapickle` binary. Add a subcommand as a new file here, a variant of
//! [`Command`] and an arm in [`main`].
//!
//! Exit codes (all subcommands): 0 success, 1 a pickle was rejected, 2 usage or I/O error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bridge;
mod check;
mod ctl;
mod export;
mod import;
mod inspect;
mod listen;
mod live;
mod record;
mod replay;
mod validation;

/// dmapickle: validate and inspect pickle protocol 5 messages from embedded controllers.
#[derive(Debug, Parser)]
#[command(name = "dmapickle", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prove that pickles only build plain data and numpy arrays over their buffers.
    Check(check::Args),
    /// Disassemble a pickle (like `python -m pickletools`) and summarize what it builds.
    Inspect(inspect::Args),
    /// Show each message from a live source or recording, with running stats.
    Listen(listen::Args),
    /// Save the raw link stream of a source to a file (a recording).
    Record(record::Args),
    /// Send a recording to a sink (stdout, file, socket, serial port) as the device would.
    Replay(replay::Args),
    /// Publish validated messages on ZeroMQ as multipart [pickle, buf0, buf1, ...].
    Bridge(bridge::Args),
    /// Export a recording or source to HDF5 (OUT.h5), Zarr v3 (OUT.zarr) or plain pickles
    /// (DIR --pickle), through the Python package (`pip install './host[export]'`).
    Export(export::Args),
    /// Send one command to the device (info, stats, set rate=HZ rows=N, start, stop, ping).
    Ctl(ctl::Args),
    /// Make a recording from a directory of pickles (validated), e.g. from `export --pickle`.
    Import(import::Args),
}

/// A pickle file and its out-of-band buffers: for `x.pkl`, the files `x.buf0`, `x.buf1`, ...
/// beside it, in order, up to the first one missing.
pub(crate) struct PickleFiles {
    pub pickle: Vec<u8>,
    pub buffers: Vec<Vec<u8>>,
}

/// The file of out-of-band buffer `i` of the pickle file `path`: `x.pkl` -> `x.buf{i}`.
pub(crate) fn buffer_path(path: &Path, i: usize) -> PathBuf {
    let stem: PathBuf = if path.extension().is_some_and(|e| e == "pkl") {
        path.with_extension("")
    } else {
        path.to_path_buf()
    };
    let mut name = stem.into_os_string();
    name.push(format!(".buf{i}"));
    PathBuf::from(name)
}

impl PickleFiles {
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let pickle = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut buffers = Vec::new();
        loop {
            let buf_path = buffer_path(path, buffers.len());
            match std::fs::read(&buf_path) {
                Ok(b) => buffers.push(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(format!("{}: {e}", buf_path.display())),
            }
        }
        Ok(PickleFiles { pickle, buffers })
    }

    pub(crate) fn buffer_lens(&self) -> Vec<usize> {
        self.buffers.iter().map(Vec::len).collect()
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Record(args) => record::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Bridge(args) => bridge::run(args),
        Command::Export(args) => export::run(args),
        Command::Import(args) => import::run(args),
    }
}
