//! `dmapickle listen SOURCE`: one line per validated message (seq, sizes, what it builds) on
//! stdout, a running stats line every second on stderr, and the final stats on stdout when the
//! source ends or on Ctrl-C. `--quiet`: stats only.
//!
//! Exit codes: 0 the source ended or Ctrl-C, 2 usage or I/O error.

use std::io::Write;
use std::process::ExitCode;

use super::live::{self, SourceArgs};

/// Arguments of `dmapickle listen`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// Print only the stats lines, not one line per message.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let mut reader = match live::open_reader(&args.source) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let mut checker = args.source.validation.checker();
    let stdout = std::io::stdout();
    let (code, stats) = live::drive(&mut reader, &args.source.source, "stats", |m| {
        if !args.quiet {
            let mut out = stdout.lock();
            let written = writeln!(out, "{}", live::message_line(&m, &mut checker))
                .and_then(|()| out.flush());
            // `listen ... | head -1`: the reader has gone; end as `cat` does (SIGPIPE status).
            if matches!(&written, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) {
                std::process::exit(141);
            }
        }
    });
    let reason = live::end_reason();
    let mut out = stdout.lock();
    let _ = writeln!(out, "final ({reason}): {}", stats.line(&reader.counters()));
    let _ = out.flush();
    code
}

fn fail(e: &str) -> ExitCode {
    eprintln!("dmapickle: {e}");
    ExitCode::from(2)
}
