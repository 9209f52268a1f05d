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

use super::live::{self, LinkArgs, SourceArgs};
use super::validation::ValidationArgs;
use super::PickleFiles;

/// Arguments of `dmapickle inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    validation: ValidationArgs,
    /// Pickle file; `x.pkl` takes `x.buf0`, `x.buf1`, ... beside it as its buffers. A recording
    /// (a file starting with the frame sync word, or one taken mid-stream: not starting with a
    /// pickle's PROTO and holding the sync word in its first MiB), a source URI or `-`: every
    /// message in it.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// For recordings and sources: shared regions, trust in the link, limits.
    #[command(flatten)]
    link: LinkArgs,
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
    // Recordings and live sources (URIs, `-`): every message, see `inspect_stream`.
    if let Some(code) = inspect_stream(&args.file, &args.validation, &args.link, args.quiet) {
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
    let mut checker = args.validation.checker();
    let lens = files.buffer_lens();
    let (line, code) = match checker.summarize(&files.pickle, &lens) {
        Ok((v, summary)) => (
            format!(
                "summary: {summary}\nprotocol {}, {} opcodes, {} out-of-band buffers, {} arrays",
                v.protocol, v.opcodes, v.buffers, v.arrays
            ),
            ExitCode::SUCCESS,
        ),
        Err(e) => (format!("rejected: {e}"), ExitCode::from(1)),
    };
    match writeln!(out, "{line}") {
        Ok(()) => code,
        Err(_) => ExitCode::from(2),
    }
}

/// Whether `file` is a recording: it starts with the frame sync word, or (a recording taken
/// mid-stream begins inside a frame, which the reader then skips and counts) it does not start
/// with `PROTO` (0x80, how every protocol 2+ pickle starts) and holds the sync word in its first
/// MiB. A protocol 0/1 pickle (no `PROTO`) is taken for a recording only if it holds those four
/// bytes, which such a pickle's opcodes and ASCII arguments never spell.
fn is_recording(file: &std::path::Path) -> bool {
    use std::io::Read;
    let sync = dmapickle_core::frame::SYNC;
    let mut head = Vec::new();
    let read = std::fs::File::open(file).and_then(|f| f.take(1 << 20).read_to_end(&mut head));
    read.is_ok()
        && (head.starts_with(&sync)
            || (head.first() != Some(&dmapickle_core::opcode::PROTO)
                && head.windows(sync.len()).any(|w| w == sync)))
}

/// `dmapickle inspect` on a recording or live source: whether `file` names one (a URI, `-`, or a
/// file that starts with the frame sync word). If so, disassemble and summarize every message
/// (the same output as for a pickle file, after a `message seq=N ...` line) and return the exit
/// code: 0 if every message validated, 1 if one was rejected, 2 on I/O error.
fn inspect_stream(
    file: &std::path::Path,
    validation: &ValidationArgs,
    link: &LinkArgs,
    quiet: bool,
) -> Option<ExitCode> {
    let name = file.to_string_lossy();
    let is_stream = name == "-" || name.contains("://") || is_recording(file);
    if !is_stream {
        return None;
    }
    let args = SourceArgs {
        source: name.into_owned(),
        link: link.clone(),
        no_reconnect: true,
        validation: validation.clone(),
    };
    let src = match live::open_source(&args, live::stop_on_ctrl_c()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dmapickle inspect: {e}");
            return Some(ExitCode::from(2));
        }
    };
    // No validator in the reader: hostile pickles are disassembled too, then reported rejected.
    let mut reader = match link.reader(src) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dmapickle inspect: {e}");
            return Some(ExitCode::from(2));
        }
    };
    let mut c = validation.checker();
    // A recording of known size shows how far it is (on stderr; not while stdout, where the
    // disassembly goes, is the same terminal).
    let size = crate::progress::file_size(file);
    let mut progress = crate::progress::Progress::new(
        "inspect",
        size,
        crate::progress::Unit::Bytes,
        quiet || size.is_none(),
    )
    .unless_stdout_terminal();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut code = ExitCode::SUCCESS;
    loop {
        progress.set(reader.counters().bytes_read);
        let m = match reader.next_message() {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) if e.is_fatal() => {
                eprintln!("dmapickle inspect: {}: {e}", args.source);
                return Some(ExitCode::from(2));
            }
            Err(e) => {
                let _ = writeln!(out, "frame refused: {e}");
                code = ExitCode::from(1);
                continue;
            }
        };
        let lens: Vec<usize> = m.buffers.iter().map(|b| b.data.len()).collect();
        let _ = writeln!(
            out,
            "message seq={} (pickle {} B, buffers {lens:?})",
            m.seq,
            m.pickle.len()
        );
        if disassemble(&mut out, &m.pickle).is_err() {
            return Some(ExitCode::from(2));
        }
        let line = match c.summarize(&m.pickle, &lens) {
            Ok((_, summary)) => format!("summary: {summary}"),
            Err(e) => {
                code = ExitCode::from(1);
                format!("rejected: {e}")
            }
        };
        let _ = writeln!(out, "{line}");
    }
    drop(progress);
    let c = reader.counters();
    let _ = writeln!(
        out,
        "stream: {} delivered, corrupt {}, lost {}, refused {}, restarts {}, seq jumps {}, skipped {} B, read {} B",
        c.frames_ok, c.corrupt, c.lost, c.refused, c.restarts, c.seq_jumps, c.bytes_skipped, c.bytes_read
    );
    Some(code)
}
