//! `dmapickle check [--profile strict|general] [--allow MODULE:NAME]... [LIMITS] [--bounds] FILE...`
//!
//! Prints one line per file, `FILE: ok` or `FILE: rejected: REASON`; exits 0 if every file is
//! accepted, 1 if any is rejected, 2 on a usage or I/O error. With `--bounds`, an accepted file's
//! line is `FILE: ok (depth D, alloc N B)`: the nesting depth and the allocation bound the
//! validator proved.

use std::path::PathBuf;
use std::process::ExitCode;

use super::validation::ValidationArgs;
use super::PickleFiles;
use crate::progress::{Progress, Unit};

/// Arguments of `dmapickle check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    validation: ValidationArgs,
    /// Print the proved nesting depth and allocation bound of each accepted file.
    #[arg(long)]
    bounds: bool,
    /// No progress on stderr (shown for more than one file when stdout is not the terminal).
    #[arg(long, short)]
    quiet: bool,
    /// Pickle files; `x.pkl` takes `x.buf0`, `x.buf1`, ... beside it as its buffers.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let mut checker = args.validation.checker();
    let (mut rejected, mut io_error) = (false, false);
    let many = Some(args.files.len() as u64).filter(|&n| n > 1);
    let mut progress =
        Progress::new("check", many, Unit::Files, args.quiet).unless_stdout_terminal();
    for path in &args.files {
        progress.inc(1);
        match PickleFiles::read(path) {
            Ok(files) => match checker.check(&files.pickle, &files.buffer_lens()) {
                Ok(v) if args.bounds => println!(
                    "{}: ok (depth {}, alloc {} B)",
                    path.display(),
                    v.depth,
                    v.alloc
                ),
                Ok(_) => println!("{}: ok", path.display()),
                Err(e) => {
                    rejected = true;
                    let mut line = e.to_string();
                    if e.reason() == Some(dmapickle_core::Reason::TooManyBuffers) {
                        // Say which file is missing: a pickle with out-of-band buffers needs
                        // them beside it.
                        let next = files.buffers.len();
                        line.push_str(&format!(
                            " ({} not found beside it)",
                            super::buffer_path(path, next).display()
                        ));
                    }
                    println!("{}: rejected: {line}", path.display());
                }
            },
            Err(e) => {
                io_error = true;
                eprintln!("dmapickle check: {e}");
            }
        }
    }
    if io_error {
        ExitCode::from(2)
    } else if rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
