//! `dmapickle check [--profile strict|general] [--allow MODULE:NAME]... FILE...`
//!
//! Prints one line per file, `FILE: ok` or `FILE: rejected: REASON`; exits 0 if every file is
//! accepted, 1 if any is rejected, 2 on a usage or I/O error.

use std::path::PathBuf;
use std::process::ExitCode;

use dmapickle_host::validation::Checker;

use super::{parse_global, PickleFiles, ProfileArg};

/// Arguments of `dmapickle check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Grammar to accept.
    #[arg(long, value_enum, default_value = "general")]
    profile: ProfileArg,
    /// Also allow this global (repeatable), e.g. `--allow mypkg.types:Reading`.
    #[arg(long = "allow", value_name = "MODULE:NAME", value_parser = parse_global)]
    allow: Vec<(String, String)>,
    /// Pickle files; `x.pkl` takes `x.buf0`, `x.buf1`, ... beside it as its buffers.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let mut checker = Checker::new(args.profile.into());
    for (module, name) in &args.allow {
        checker.allow(module, name);
    }
    let (mut rejected, mut io_error) = (false, false);
    for path in &args.files {
        match PickleFiles::read(path) {
            Ok(files) => match checker.check(&files.pickle, &files.buffer_lens()) {
                Ok(_) => println!("{}: ok", path.display()),
                Err(e) => {
                    rejected = true;
                    println!("{}: rejected: {e}", path.display());
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
