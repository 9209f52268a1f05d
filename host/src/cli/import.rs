//! `dmapickle import DIR OUT`: a recording (the raw link stream `replay` sends and every reader
//! takes) from a directory of pickles, the reverse of `dmapickle export DIR --pickle`. The
//! `*.pkl` files are taken in name order; `x.pkl` takes `x.buf0`, `x.buf1`, ... beside it as its
//! out-of-band buffers (sent inline). Every pickle is validated first (`--profile`, `--allow`
//! and the limits of `dmapickle check`); one rejected pickle and OUT is not written. Frame `i`
//! gets sequence number `--first-seq + i`, the first one flagged SEQ_RESTART.
//!
//! Exit codes: 0 written, 1 a pickle rejected, 2 usage or I/O error.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dmapickle_core::frame::{write_frame, Entry, ENTRY_LEN, FLAG_SEQ_RESTART, MIN_FRAME_LEN};
use dmapickle_core::Descriptor;
use dmapickle_host::validation::Checker;
use dmapickle_host::ReaderConfig;

use super::validation::ValidationArgs;
use super::PickleFiles;
use crate::progress::{Progress, Unit};

/// Arguments of `dmapickle import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A directory of `*.pkl` files (with `x.buf0`, ... for out-of-band buffers).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The recording to write.
    #[arg(value_name = "OUT")]
    out: PathBuf,
    /// Replace an existing OUT.
    #[arg(long)]
    force: bool,
    /// Sequence number of the first frame.
    #[arg(long, value_name = "N", default_value_t = 0)]
    first_seq: u32,
    /// Mark the out-of-band buffers read-only (arrays over them cannot be written).
    #[arg(long)]
    readonly: bool,
    #[command(flatten)]
    validation: ValidationArgs,
    /// No progress.
    #[arg(long, short)]
    quiet: bool,
}

/// The `*.pkl` files of `dir`, in name order.
fn pickles(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for e in entries {
        let path = e
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|x| x == "pkl") && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// One frame carrying `files` (buffers inline, in order).
fn frame(files: &PickleFiles, flags: u8, seq: u32, readonly: bool) -> Result<Vec<u8>, String> {
    let mut entries = Vec::with_capacity(files.buffers.len());
    for b in &files.buffers {
        let len = u32::try_from(b.len()).map_err(|_| "a buffer over 4 GiB".to_string())?;
        let d = Descriptor::new(0, 0, len);
        entries.push(Entry::inline(if readonly { d.read_only() } else { d }));
    }
    let inline: Vec<&[u8]> = files.buffers.iter().map(Vec::as_slice).collect();
    let len = MIN_FRAME_LEN
        + files.pickle.len()
        + ENTRY_LEN * entries.len()
        + inline.iter().map(|b| b.len()).sum::<usize>();
    let mut out = vec![0u8; len];
    write_frame(&mut out, flags, seq, &files.pickle, &entries, &inline)
        .map_err(|e| format!("cannot frame it: {e:?}"))?;
    Ok(out)
}

pub(crate) fn run(args: Args) -> ExitCode {
    match import(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dmapickle import: {e}");
            ExitCode::from(2)
        }
    }
}

fn import(args: &Args) -> Result<ExitCode, String> {
    if !args.force && args.out.exists() {
        return Err(format!(
            "{} exists: pass --force to replace it",
            args.out.display()
        ));
    }
    let paths = pickles(&args.dir)?;
    if paths.is_empty() {
        return Err(format!("no *.pkl files in {}", args.dir.display()));
    }
    let mut checker = args.validation.checker();
    // Written beside OUT and renamed at the end: a rejected pickle leaves OUT as it was.
    let name = args
        .out
        .file_name()
        .unwrap_or(args.out.as_os_str())
        .to_string_lossy();
    let tmp = args
        .out
        .with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let result = write_all(args, &paths, &mut checker, BufWriter::new(file));
    match result {
        Ok(Ok((bytes, largest))) => {
            std::fs::rename(&tmp, &args.out).map_err(|e| {
                format!(
                    "cannot rename {} to {}: {e}",
                    tmp.display(),
                    args.out.display()
                )
            })?;
            println!(
                "imported {} pickles ({bytes} B of frames) to {}",
                paths.len(),
                args.out.display()
            );
            let limit = ReaderConfig::default().max_pickle;
            if largest > u64::from(limit) {
                eprintln!(
                    "dmapickle import: note: the largest pickle is {largest} B, over the readers' default \
                     limit of {limit} B: read {} with --max-pickle {largest} (dmapickle.open(..., max_pickle={largest}))",
                    args.out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(rejected)) => {
            let _ = std::fs::remove_file(&tmp);
            println!("{rejected}");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Validates and writes every pickle: `Ok(Ok((bytes, largest pickle)))`, or `Ok(Err(line))` for
/// the first rejected one.
fn write_all(
    args: &Args,
    paths: &[PathBuf],
    checker: &mut Checker,
    mut out: impl Write,
) -> Result<Result<(u64, u64), String>, String> {
    let mut progress = Progress::new("import", Some(paths.len() as u64), Unit::Files, args.quiet);
    let (mut bytes, mut largest) = (0u64, 0u64);
    for (i, path) in paths.iter().enumerate() {
        let files = PickleFiles::read(path)?;
        if let Err(e) = checker.check(&files.pickle, &files.buffer_lens()) {
            return Ok(Err(format!("{}: rejected: {e}", path.display())));
        }
        let flags = if i == 0 { FLAG_SEQ_RESTART } else { 0 };
        let seq = args.first_seq.wrapping_add(i as u32);
        let f = frame(&files, flags, seq, args.readonly)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out.write_all(&f)
            .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
        bytes += f.len() as u64;
        largest = largest.max(files.pickle.len() as u64);
        progress.inc(1);
    }
    out.flush()
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    Ok(Ok((bytes, largest)))
}
