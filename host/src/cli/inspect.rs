//! `dmapickle inspect FILE`: a disassembly equivalent to `python -m pickletools FILE` (same
//! opcode names, arguments and offsets), then, if the pickle validates under the general
//! profile, `summary: ...`, else `rejected: REASON`.
//!
//! Exit codes: 0 valid, 1 rejected, 2 usage or I/O error.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use dmapickle_core::opcode::Opcode;
use dmapickle_core::reader::{Argument, Reader};
use dmapickle_host::validation::Checker;

use super::{parse_global, PickleFiles, ProfileArg};

/// Arguments of `dmapickle inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Grammar the summary is validated against.
    #[arg(long, value_enum, default_value = "general")]
    profile: ProfileArg,
    /// Also allow this global (repeatable).
    #[arg(long = "allow", value_name = "MODULE:NAME", value_parser = parse_global)]
    allow: Vec<(String, String)>,
    /// Pickle file; `x.pkl` takes `x.buf0`, `x.buf1`, ... beside it as its buffers. A recording
    /// (a file starting with the frame sync word), a source URI or `-`: every message in it.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// For recordings and sources: shared regions, trust in the link, limits.
    #[command(flatten)]
    link: super::live::LinkArgs,
    #[command(flatten)]
    limits: super::check::LimitArgs,
    /// For recordings: no progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Writes the disassembly of `pickle` in the layout of `pickletools.dis`: offset, indented
/// opcode name, argument, and the memo/MARK notes. Stops after STOP or at a reader error.
pub(crate) fn disassemble(out: &mut impl Write, pickle: &[u8]) -> std::io::Result<()> {
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashSet<i64> = HashSet::new();
    for op in Reader::new(pickle) {
        let op = match op {
            Ok(op) => op,
            Err(e) => {
                writeln!(out, "error: {e}")?;
                return Ok(());
            }
        };
        let pops_mark = matches!(
            op.opcode,
            Opcode::Tuple
                | Opcode::List
                | Opcode::Dict
                | Opcode::Appends
                | Opcode::Setitems
                | Opcode::Additems
                | Opcode::Frozenset
                | Opcode::PopMark
                | Opcode::Inst
                | Opcode::Obj
        );
        let mark_at = if pops_mark { marks.pop() } else { None };
        let indent = "    ".repeat(marks.len());
        let mut line = format!("{:>6}: {indent}{:<16}", op.offset, op.opcode.name());
        match op.arg {
            Argument::None => {}
            arg => line.push_str(&format!(" {arg}")),
        }
        match (op.opcode, op.arg) {
            (Opcode::Memoize, _) => {
                let n = memo.len() as i64;
                memo.insert(n);
                line.push_str(&format!(" (as {n})"));
            }
            (Opcode::Put | Opcode::Binput | Opcode::LongBinput, Argument::Int(i)) => {
                memo.insert(i);
            }
            _ => {}
        }
        if let Some(m) = mark_at {
            line.push_str(&format!(" (MARK at {m})"));
        }
        writeln!(out, "{}", line.trim_end())?;
        if op.opcode == Opcode::Mark {
            marks.push(op.offset);
        }
        if op.opcode == Opcode::Stop {
            break;
        }
    }
    Ok(())
}

pub(crate) fn run(args: Args) -> ExitCode {
    // Recordings and live sources (URIs, `-`): every message, see `live::inspect_stream`.
    if let Some(code) = super::live::inspect_stream(
        &args.file,
        args.profile,
        &args.allow,
        &args.link,
        &args.limits,
        args.quiet,
    ) {
        return code;
    }
    let files = match PickleFiles::read(&args.file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("dmapickle inspect: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if disassemble(&mut out, &files.pickle).is_err() {
        return ExitCode::from(2);
    }
    let mut checker = Checker::new(args.profile.into());
    checker.limits(args.limits.limits());
    for (module, name) in &args.allow {
        checker.allow(module, name);
    }
    let lens = files.buffer_lens();
    let (line, code) = match checker.summarize(&files.pickle, &lens) {
        Ok((v, summary)) => (
            format!(
                "summary: {summary}\nprotocol {}, {} opcodes, {} out-of-band buffers, {} arrays",
                v.protocol, v.opcodes, v.buffers, v.arrays
            ),
            ExitCode::SUCCESS,
        ),
        Err(e) => (
            format!("rejected: {}", checker.explain(&e, &files.pickle)),
            ExitCode::from(1),
        ),
    };
    match writeln!(out, "{line}") {
        Ok(()) => code,
        Err(_) => ExitCode::from(2),
    }
}
