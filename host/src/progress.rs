//! Progress of long commands that read input of known size (`replay`, `check` of many files,
//! `import`; `export` has the same in Python): a bar with rate and ETA (indicatif) when stderr is
//! a terminal, a plain line every [`PLAIN_EVERY`] otherwise (logs, CI), nothing with `--quiet`.
//!
//! Commands whose stdout carries one line per item (`check`) ask for no bar when stdout is that
//! same terminal ([`Progress::unless_stdout_terminal`]): the lines scrolling by are the progress,
//! and a bar redrawn between them would garble both.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
pub(crate) const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// What the position counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Bytes (shown as KiB, MiB, ...).
    Bytes,
    /// Files.
    Files,
}

enum Mode {
    Off,
    Bar(ProgressBar),
    Plain { last: Instant },
}

/// Progress of one command on stderr; see the module docs.
pub(crate) struct Progress {
    mode: Mode,
    label: &'static str,
    total: u64,
    unit: Unit,
    pos: u64,
    start: Instant,
}

impl Progress {
    /// Progress towards `total` (`None`, or 0: unknown, nothing is shown), labelled `label`.
    pub(crate) fn new(label: &'static str, total: Option<u64>, unit: Unit, quiet: bool) -> Self {
        let total = total.unwrap_or(0);
        let mode = if quiet || total == 0 {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(bar(label, total, unit))
        } else {
            Mode::Plain {
                last: Instant::now(),
            }
        };
        Progress {
            mode,
            label,
            total,
            unit,
            pos: 0,
            start: Instant::now(),
        }
    }

    /// No bar when stdout is the terminal stderr draws on (plain lines stay for logs).
    pub(crate) fn unless_stdout_terminal(mut self) -> Self {
        if matches!(self.mode, Mode::Bar(_)) && std::io::stdout().is_terminal() {
            self.mode = Mode::Off;
        }
        self
    }

    /// Sets the position (bytes or items done).
    pub(crate) fn set(&mut self, pos: u64) {
        self.pos = pos;
        match &mut self.mode {
            Mode::Off => {}
            Mode::Bar(b) => b.set_position(pos),
            Mode::Plain { last } => {
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    eprintln!(
                        "{}",
                        plain_line(self.label, pos, self.total, self.unit, self.start.elapsed())
                    );
                }
            }
        }
    }

    /// Adds `n` to the position.
    pub(crate) fn inc(&mut self, n: u64) {
        self.set(self.pos + n);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Mode::Bar(b) = &self.mode {
            // The command's own final line follows; the bar must not stay above it.
            b.finish_and_clear();
        }
    }
}

fn bar(label: &'static str, total: u64, unit: Unit) -> ProgressBar {
    let template = match unit {
        Unit::Bytes => "{prefix}: [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes}, {binary_bytes_per_sec}, ETA {eta}",
        Unit::Files => "{prefix}: [{bar:30}] {pos}/{len} files, {per_sec}, ETA {eta}",
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>.");
    let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
    b.set_style(style);
    b.set_prefix(label);
    b
}

/// `replay: 45% 12.3 MiB of 27.0 MiB, 5.1 MiB/s, ETA 0:03` (or `450 of 1000 files, ...`).
pub(crate) fn plain_line(
    label: &str,
    pos: u64,
    total: u64,
    unit: Unit,
    elapsed: Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = pos as f64 / secs;
    let eta = if rate > 0.0 {
        format_duration(total.saturating_sub(pos) as f64 / rate)
    } else {
        "?".into()
    };
    let pct = if total > 0 {
        pos as f64 * 100.0 / total as f64
    } else {
        0.0
    };
    match unit {
        Unit::Bytes => format!(
            "{label}: {pct:.0}% {} of {}, {}/s, ETA {eta}",
            format_bytes(pos as f64),
            format_bytes(total as f64),
            format_bytes(rate)
        ),
        Unit::Files => {
            format!("{label}: {pct:.0}% {pos} of {total} files, {rate:.0} files/s, ETA {eta}")
        }
    }
}

fn format_bytes(mut n: f64) -> String {
    if n < 1024.0 {
        return format!("{n:.0} B");
    }
    for unit in ["KiB", "MiB", "GiB"] {
        n /= 1024.0;
        if n < 1024.0 || unit == "GiB" {
            return format!("{n:.1} {unit}");
        }
    }
    unreachable!("the loop returns at GiB")
}

fn format_duration(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The size of `path` when it is a regular file (not a FIFO, a device or stdin).
pub(crate) fn file_size(path: &std::path::Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_percent_size_rate_and_eta() {
        let l = plain_line(
            "replay",
            3 << 20,
            12 << 20,
            Unit::Bytes,
            Duration::from_secs(3),
        );
        assert_eq!(l, "replay: 25% 3.0 MiB of 12.0 MiB, 1.0 MiB/s, ETA 0:09");
        let l = plain_line("check", 450, 1000, Unit::Files, Duration::from_secs(9));
        assert_eq!(l, "check: 45% 450 of 1000 files, 50 files/s, ETA 0:11");
        let l = plain_line("import", 0, 10, Unit::Files, Duration::from_secs(1));
        assert!(l.ends_with("ETA ?"), "{l}");
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_duration(3725.0), "1:02:05");
    }

    #[test]
    fn quiet_or_unknown_size_shows_nothing() {
        assert!(matches!(
            Progress::new("x", Some(10), Unit::Bytes, true).mode,
            Mode::Off
        ));
        assert!(matches!(
            Progress::new("x", None, Unit::Bytes, false).mode,
            Mode::Off
        ));
        assert!(matches!(
            Progress::new("x", Some(0), Unit::Bytes, false).mode,
            Mode::Off
        ));
    }
}
