//! `dmapickle replay FILE --to SINK`: send a recording (the raw link stream) to a sink, as the
//! device would: `-` (stdout), a path or `file://PATH`, `tcp://HOST:PORT` (connect),
//! `tcp-listen://HOST:PORT` (wait for one reader, e.g. `dmapickle listen`), `unix:///PATH`
//! (connect), `serial:///dev/ttyX?baud=N`. `--rate BYTES_PER_S` paces it like a slow link.
//!
//! Exit codes: 0 everything sent, 2 usage or I/O error.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dmapickle_host::source::SourceSpec;

use super::live;
use crate::progress::{Progress, Unit};

/// Arguments of `dmapickle replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A recording made by `dmapickle record` (or any raw link stream).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to send it.
    #[arg(long = "to", value_name = "SINK", default_value = "-")]
    to: String,
    /// Pace the replay to this many bytes per second (default: as fast as the sink takes it).
    #[arg(long, value_name = "BYTES_PER_S")]
    rate: Option<u64>,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Every sink `--to` takes, for error messages.
const SINKS: &str =
    "-, a path, file://PATH, tcp://HOST:PORT, tcp-listen://HOST:PORT, unix:///PATH \
                     or serial:///DEV?baud=N";

/// What `open_sink` returns when Ctrl-C ended the wait for a reader (not an error: exit 0).
const INTERRUPTED: &str = "interrupted before a reader connected";

fn open_sink(to: &str) -> Result<Box<dyn Write>, String> {
    let err = |e: io::Error| format!("cannot open sink {to}: {e}");
    if to == "-" {
        return Ok(Box::new(io::stdout()));
    }
    if let Some(addr) = to.strip_prefix("tcp-listen://") {
        let l = TcpListener::bind(addr.trim_end_matches('/')).map_err(err)?;
        eprintln!(
            "dmapickle: replay: waiting for a reader on tcp://{}",
            l.local_addr().map_err(err)?
        );
        // Poll, so that Ctrl-C ends the wait (the handler only sets a flag, and accept()
        // would restart after it).
        l.set_nonblocking(true).map_err(err)?;
        loop {
            match l.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).map_err(err)?;
                    return Ok(Box::new(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if super::live::stopped() {
                        return Err(INTERRUPTED.to_owned());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(err(e)),
            }
        }
    }
    let bad = |reason: &str| format!("bad sink `{to}`: {reason}");
    if let Some((scheme, _)) = to.split_once("://") {
        if !["tcp", "unix", "file", "serial"].contains(&scheme) {
            return Err(bad(&format!("unknown sink scheme; use {SINKS}")));
        }
    }
    // `tcp-listen:H:P` and the like get the URI they should be, never a file of that name.
    let spec = to.parse::<SourceSpec>().map_err(|e| bad(&e.reason))?;
    match spec {
        SourceSpec::Tcp(tcp) => Ok(Box::new(TcpStream::connect(tcp.addr).map_err(err)?)),
        SourceSpec::Unix(unix) => Ok(Box::new(UnixStream::connect(unix.path).map_err(err)?)),
        SourceSpec::File(file) => Ok(Box::new(File::create(file.path).map_err(err)?)),
        SourceSpec::Serial(serial) => {
            let path = serial.path.to_string_lossy().into_owned();
            let port = serialport::new(path, serial.baud)
                .timeout(Duration::from_secs(5))
                .open_native()
                .map_err(|e| format!("cannot open sink {to}: {e}"))?;
            Ok(Box::new(port))
        }
        // Standard input, rtt:// and any other source scheme are sources only.
        _ => Err(bad(&format!("not a sink; use {SINKS}"))),
    }
}

pub(crate) fn run(args: Args) -> ExitCode {
    let _ = live::stop_on_ctrl_c();
    let mut file = match File::open(&args.file) {
        Ok(f) => f,
        Err(e) => {
            return fail(&format!(
                "cannot open {}: {e}; check the path",
                args.file.display()
            ))
        }
    };
    let mut sink = match open_sink(&args.to) {
        Ok(s) => s,
        Err(e) if e == INTERRUPTED => {
            eprintln!("dmapickle: replay: {e}, nothing sent");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    let size = crate::progress::file_size(&args.file);
    let mut progress = Progress::new("replay", size, Unit::Bytes, args.quiet);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if live::stopped() {
            break;
        }
        let chunk = match args.rate {
            Some(r) => buf.len().min((r / 20).max(1) as usize),
            None => buf.len(),
        };
        let n = match file.read(&mut buf[..chunk]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return fail(&format!("reading {}: {e}", args.file.display())),
        };
        if let Err(e) = sink.write_all(&buf[..n]) {
            return fail(&format!(
                "writing to {}: {e}; did the reader go away?",
                args.to
            ));
        }
        sent += n as u64;
        progress.set(sent);
        if let Some(r) = args.rate {
            let due = Duration::from_secs_f64(sent as f64 / r.max(1) as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    drop(progress);
    if let Err(e) = sink.flush() {
        return fail(&format!("writing to {}: {e}", args.to));
    }
    eprintln!(
        "dmapickle: replayed {sent} B from {} to {} in {:.2} s",
        args.file.display(),
        args.to,
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn fail(e: &str) -> ExitCode {
    eprintln!("dmapickle: {e}");
    ExitCode::from(2)
}
