//! `dmapickle record SOURCE OUT`: write the raw link stream to OUT, exactly the bytes read, so
//! every tool (and `replay`) reads the recording like the live source. Progress (bytes,
//! messages, rate) goes to stderr every second; Ctrl-C stops after writing everything received.
//!
//! OUT is never touched before the source delivered its first bytes: an existing OUT is refused
//! unless `--force` (replace) or `--append` is given; the recording is written to a temporary
//! file beside OUT, which replaces OUT (one rename) when the first bytes arrive, so a source that
//! fails or never delivers leaves OUT exactly as it was.
//!
//! Exit codes: 0 the source ended or Ctrl-C, 2 usage or I/O error.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use super::live::{self, SourceArgs};

/// Arguments of `dmapickle record`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// The recording to write, or `-` for stdout. An existing file is refused without
    /// `--force` or `--append`.
    #[arg(value_name = "OUT")]
    out: PathBuf,
    /// Replace an existing OUT (only once the source delivered its first bytes).
    #[arg(long, conflicts_with = "append")]
    force: bool,
    /// Add to the end of an existing OUT (opened once the source delivered its first bytes).
    #[arg(long)]
    append: bool,
}

/// Where the recording goes: OUT is opened, or replaced, only when the first bytes arrived.
enum Output {
    Stdout(io::Stdout),
    /// Written to `tmp` (beside `path`), renamed over `path` at the first bytes.
    Replace {
        file: File,
        tmp: PathBuf,
        path: PathBuf,
        renamed: bool,
    },
    /// Appended to `path`, opened at the first bytes.
    Append {
        file: Option<File>,
        path: PathBuf,
    },
}

impl Output {
    fn open(path: &Path, append: bool) -> Result<Output, String> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout(io::stdout()));
        }
        if append {
            return Ok(Output::Append {
                file: None,
                path: path.to_path_buf(),
            });
        }
        let name = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        Ok(Output::Replace {
            file,
            tmp,
            path: path.to_path_buf(),
            renamed: false,
        })
    }

    /// Removes the temporary file if nothing was recorded (OUT stays as it was).
    fn discard_if_unused(&self) {
        if let Output::Replace {
            tmp,
            renamed: false,
            ..
        } = self
        {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self {
            Output::Stdout(out) => out.write(buf),
            Output::Replace {
                file,
                tmp,
                path,
                renamed,
            } => {
                if !*renamed {
                    // The source is good: the recording now replaces OUT (the open file stays).
                    std::fs::rename(&*tmp, &*path)?;
                    *renamed = true;
                }
                file.write(buf)
            }
            Output::Append { file, path } => {
                if file.is_none() {
                    *file = Some(OpenOptions::new().append(true).create(true).open(&*path)?);
                }
                file.as_mut().map_or(Ok(0), |f| f.write(buf))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush(),
            Output::Replace { file, .. } => file.flush(),
            Output::Append { file, .. } => file.as_mut().map_or(Ok(()), |f| f.flush()),
        }
    }
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
    if args.out.as_os_str() != "-" && !args.force && !args.append {
        if let Ok(meta) = std::fs::metadata(&args.out) {
            return fail(&format!(
                "{} exists ({} B): pass --force to replace it (once the source delivers) or --append to add to it",
                args.out.display(),
                meta.len()
            ));
        }
    }
    // The source first: a source that cannot be opened leaves OUT untouched.
    let src = match live::open_source(&args.source, stop) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let out = match Output::open(&args.out, args.append) {
        Ok(out) => out,
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
    reader.get_ref().out.discard_if_unused();
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
    let line = if counters.bytes_read == 0 && args.out.as_os_str() != "-" {
        format!(
            "recorded nothing ({reason}): {} not written",
            args.out.display()
        )
    } else {
        format!(
            "recorded {} B to {} ({reason}): {}",
            counters.bytes_read,
            args.out.display(),
            stats.line(&counters)
        )
    };
    if args.out.as_os_str() == "-" {
        // stdout is the recording: the summary must not end up in it.
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    code
}

fn fail(e: &str) -> ExitCode {
    eprintln!("dmapickle: {e}");
    ExitCode::from(2)
}
