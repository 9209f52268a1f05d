//! `dmapickle check [--profile strict|general] [--allow MODULE:NAME]... [LIMITS] [--bounds] FILE...`
//!
//! Prints one line per file, `FILE: ok` or `FILE: rejected: REASON`; exits 0 if every file is
//! accepted, 1 if any is rejected, 2 on a usage or I/O error. With `--bounds`, an accepted file's
//! line is `FILE: ok (depth D, alloc N B)`: the nesting depth and the allocation bound the
//! validator proved.

use std::path::PathBuf;
use std::process::ExitCode;

use dmapickle_core::validate::Limits;
use dmapickle_host::validation::Checker;

use super::{parse_global, PickleFiles, ProfileArg};
use crate::progress::{Progress, Unit};

/// Arguments of `dmapickle check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Grammar to accept.
    #[arg(long, value_enum, default_value = "general")]
    profile: ProfileArg,
    /// Also allow this global (repeatable), e.g. `--allow mypkg.types:Reading`.
    #[arg(long = "allow", value_name = "MODULE:NAME", value_parser = parse_global)]
    allow: Vec<(String, String)>,
    #[command(flatten)]
    limits: LimitArgs,
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

/// The validator's limits as command-line flags (sizes take a K, M or G suffix: KiB, MiB, GiB).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LimitArgs {
    /// Longest pickle accepted, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "64M")]
    max_len: u64,
    /// Deepest nesting of containers in any value built.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_depth)]
    max_depth: u32,
    /// Largest allocation bound of a load, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "256M")]
    max_alloc: u64,
    /// Most keys of one dict or set that may share one CPython hash.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_collisions)]
    max_collisions: u32,
    /// Largest logical size (elements x itemsize) of one numpy array, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "1G")]
    max_array_bytes: u64,
    /// How many times its length a pickle may expand through shared references (the expanded
    /// size of any value, and of all keys hashed, at most this x length + 65536).
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_expansion)]
    max_expansion: u32,
}

impl LimitArgs {
    /// The limits these flags set.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_len: usize::try_from(self.max_len).unwrap_or(usize::MAX),
            max_depth: self.max_depth,
            max_alloc: self.max_alloc,
            max_collisions: self.max_collisions,
            max_array_bytes: self.max_array_bytes,
            max_expansion: self.max_expansion,
        }
    }
}

/// `4096`, `64K`, `64M`, `1G` (powers of 1024; `KiB`/`MiB`/`GiB` and a trailing `B` also).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 4096, 64K, 256M, 1G)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

pub(crate) fn run(args: Args) -> ExitCode {
    let mut checker = Checker::new(args.profile.into());
    checker.limits(args.limits.limits());
    for (module, name) in &args.allow {
        checker.allow(module, name);
    }
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
                    let mut line = checker.explain(&e, &files.pickle);
                    if let dmapickle_core::Error::Rejected {
                        reason: dmapickle_core::Reason::TooManyBuffers,
                        ..
                    } = e
                    {
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
