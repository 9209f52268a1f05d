//! `dmapickle record SOURCE OUT`: write the raw link stream to OUT, exactly the bytes read, so
//! every tool (and `replay`) reads the recording like the live source. Progress (bytes,
//! messages, rate) goes to stderr every second; Ctrl-C stops after writing everything received.
//!
//! Exit codes: 0 the source ended or Ctrl-C, 2 usage or I/O error.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use super::live::{self, SourceArgs};

/// Arguments of `dmapickle record`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// The recording to write (truncated), or `-` for stdout.
    #[arg(value_name = "OUT")]
    out: PathBuf,
}

/// Copies every byte read from `R` to `W` before handing it on.
struct Tee<R, W> {
    src: R,
    out: W,
    error: Arc<Mutex<Option<io::Error>>>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            // Stop reading: what was received is not being kept.
            *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            return Ok(0);
        }
        Ok(n)
    }
}

pub(crate) fn run(args: Args) -> ExitCode {
    let stop = live::stop_on_ctrl_c();
    let out: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(io::stdout())
    } else {
        match File::create(&args.out) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(&format!("cannot create {}: {e}", args.out.display())),
        }
    };
    let src = match live::open_source(&args.source, stop) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    // Unbuffered: the frame reader reads in 64 KiB chunks (or whole large buffers), and every
    // byte is in the file as soon as it was read, whatever ends the program.
    let error = Arc::new(Mutex::new(None));
    let tee = Tee {
        src,
        out,
        error: error.clone(),
    };
    let mut reader = match live::reader(&args.source, tee) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    // Refused frames are recorded too: a recording is the raw stream.
    let (code, stats) = live::drive(&mut reader, &args.source.source, "recording", drop);
    let counters = reader.counters();
    drop(reader);
    let _ = io::stdout().flush();
    if let Some(e) = error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return fail(&format!("writing {}: {e}", args.out.display()));
    }
    let reason = if live::stopped() {
        "interrupted"
    } else {
        "source ended"
    };
    println!(
        "recorded {} B to {} ({reason}): {}",
        counters.bytes_read,
        args.out.display(),
        stats.line(&counters)
    );
    code
}

fn fail(e: &str) -> ExitCode {
    eprintln!("dmapickle: {e}");
    ExitCode::from(2)
}
