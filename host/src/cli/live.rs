//! What `listen`, `record`, `bridge` and `inspect` share for live sources and recordings: the
//! source arguments, Ctrl-C handling, opening a validating frame reader, and the stats line.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmapickle_host::region::RegionMap;
use dmapickle_host::source::{Source, SourceEvent, SourceOptions, SourceSpec};
use dmapickle_host::stream::{Counters, FrameReader, ReaderConfig};
use dmapickle_host::validation::Checker;
use dmapickle_host::Message;

use super::validation::ValidationArgs;

/// Where messages come from and how they are checked.
#[derive(Debug, clap::Args)]
pub(crate) struct SourceArgs {
    /// tcp://HOST:PORT, unix:///PATH, serial:///dev/ttyX?baud=N, file://PATH or a path, `-`
    /// (stdin), rtt://CHIP?probe=VID:PID&channel=N (feature probe-rs).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    #[command(flatten)]
    pub link: LinkArgs,
    /// End when a socket or serial connection drops, instead of reconnecting with backoff.
    #[arg(long)]
    pub no_reconnect: bool,
    #[command(flatten)]
    pub validation: ValidationArgs,
}

/// How frames are read (docs/wire-format.md, "Reading a stream"): shared regions, the trust in
/// the link and the limits.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LinkArgs {
    /// Map a shared region: frames naming region ID read their buffers from PATH (repeatable).
    #[arg(long = "region", value_name = "ID=PATH", value_parser = parse_region)]
    pub regions: Vec<(u16, PathBuf)>,
    /// Accept frames without a data CRC (NO_DATA_CRC), for links that check their own payload
    /// (TCP, USB, PCIe); without it they are refused.
    #[arg(long)]
    pub trust_link: bool,
    /// Largest whole frame accepted, in bytes (inclusive).
    #[arg(long, value_name = "BYTES", default_value_t = ReaderConfig::default().max_frame)]
    pub max_frame: u64,
    /// Largest pickle accepted, in bytes (inclusive).
    #[arg(long, value_name = "BYTES", default_value_t = ReaderConfig::default().max_pickle)]
    pub max_pickle: u32,
    /// Most buffers per message (inclusive).
    #[arg(long, value_name = "N", default_value_t = ReaderConfig::default().max_buffers)]
    pub max_buffers: u16,
}

impl LinkArgs {
    /// The reader configuration these options ask for.
    pub(crate) fn config(&self) -> ReaderConfig {
        ReaderConfig {
            max_frame: self.max_frame,
            max_pickle: self.max_pickle,
            max_buffers: self.max_buffers,
            trust_link: self.trust_link,
            ..ReaderConfig::default()
        }
    }

    /// A frame reader over `src` with these options (no validator).
    pub(crate) fn reader<R: io::Read>(&self, src: R) -> Result<FrameReader<R>, String> {
        let mut map = RegionMap::new();
        for (id, path) in &self.regions {
            map.open(*id, path).map_err(|e| {
                format!(
                    "cannot map shared region {id} from {}: {e}; check --region ID=PATH",
                    path.display()
                )
            })?;
        }
        Ok(FrameReader::with_config(src, self.config()).with_regions(map))
    }
}

fn parse_region(s: &str) -> Result<(u16, PathBuf), String> {
    match s.split_once('=') {
        Some((id, path)) if !path.is_empty() => id
            .parse::<u16>()
            .map(|id| (id, PathBuf::from(path)))
            .map_err(|_| format!("region id must be 0..65535, got {id:?}")),
        _ => Err(format!("expected ID=PATH, got {s:?}")),
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // A second Ctrl-C: the user insists.
        // SAFETY: `_exit` is async-signal-safe and takes no pointers.
        unsafe { libc::_exit(130) };
    }
}

/// A stop flag set by the first SIGINT (Ctrl-C) or SIGTERM; reads end, stats get printed.
pub(crate) fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let handler = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_sigint` only touches an atomic and calls `_exit`, both async-signal-safe;
        // `signal` has no memory-safety preconditions beyond a valid handler.
        unsafe { libc::signal(sig, handler) };
    }
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || loop {
        if STOP.load(Ordering::SeqCst) {
            f.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    });
    flag
}

/// Whether the user asked to stop.
pub(crate) fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Open `args.source`, reporting connection events as `dmapickle: SOURCE: EVENT` on stderr.
pub(crate) fn open_source(args: &SourceArgs, stop: Arc<AtomicBool>) -> Result<Source, String> {
    let spec: SourceSpec = args.source.parse().map_err(|e| format!("{e}"))?;
    let name = spec.to_string();
    let opts = SourceOptions {
        reconnect: !args.no_reconnect,
        stop,
        poll: Duration::from_millis(50),
        on_event: Some(Arc::new(move |e| match e {
            SourceEvent::Waiting { reason } => {
                eprintln!("dmapickle: waiting for {name} ({reason}), retrying")
            }
            e => eprintln!("dmapickle: {name}: {e}"),
        })),
    };
    Source::open(spec, opts).map_err(|e| e.to_string())
}

/// Ctrl-C handling, the source and a validating reader over it, for `listen` and `bridge`.
pub(crate) fn open_reader(args: &SourceArgs) -> Result<FrameReader<Source>, String> {
    let stop = stop_on_ctrl_c();
    let src = open_source(args, stop)?;
    reader(args, src)
}

/// A validating frame reader over `src` with `args`' regions, trust and limits.
pub(crate) fn reader<R: io::Read>(args: &SourceArgs, src: R) -> Result<FrameReader<R>, String> {
    Ok(args
        .link
        .reader(src)?
        .with_checker(args.validation.checker()))
}

/// Read messages until the source ends or Ctrl-C: each one is counted and goes to `each`,
/// refused frames are reported on stderr, and every second `LABEL: STATS` goes to stderr.
/// Returns exit code 0 (or 2 when the source failed, or when a file or stdin held no dmapickle
/// frame at all) and the totals.
pub(crate) fn drive<R: io::Read>(
    reader: &mut FrameReader<R>,
    source: &str,
    label: &str,
    mut each: impl FnMut(Message),
) -> (ExitCode, Stats) {
    drive_counted(reader, source, label, |m, _| each(m))
}

/// [`drive`], with the reader as it stands after each message (for `bridge`, whose header frame
/// carries the link's loss count, and whose command path takes the source's down link after a
/// reconnect).
pub(crate) fn drive_counted<R: io::Read>(
    reader: &mut FrameReader<R>,
    source: &str,
    label: &str,
    mut each: impl FnMut(Message, &FrameReader<R>),
) -> (ExitCode, Stats) {
    let mut stats = Stats::new();
    let code = loop {
        match reader.next_message() {
            Ok(Some(m)) => {
                stats.add(&m);
                each(m, reader);
            }
            Ok(None) => break ExitCode::SUCCESS,
            Err(e) if e.is_fatal() => {
                eprintln!("dmapickle: {source}: {e}");
                break ExitCode::from(2);
            }
            Err(e) => eprintln!("dmapickle: refused: {e}"),
        }
        if stats.due() {
            eprintln!("{label}: {}", stats.line(&reader.counters()));
        }
    };
    let c = reader.counters();
    let finite = source.parse::<SourceSpec>().is_ok_and(|s| s.is_finite());
    if finite && !stopped() && c.frames_ok + c.corrupt + c.refused == 0 {
        eprintln!(
            "dmapickle: {source}: no dmapickle frames found ({} B read, none of them a frame \
             header); is it a recording of a dmapickle link?",
            c.bytes_read
        );
        return (ExitCode::from(2), stats);
    }
    (code, stats)
}

/// Why reading ended, for the final line.
pub(crate) fn end_reason() -> &'static str {
    if stopped() {
        "interrupted"
    } else {
        "source ended"
    }
}

/// Running totals for the stats line.
pub(crate) struct Stats {
    start: Instant,
    last_print: Instant,
    pub messages: u64,
    pub payload: u64,
}

impl Stats {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Stats {
            start: now,
            last_print: now,
            messages: 0,
            payload: 0,
        }
    }

    pub(crate) fn add(&mut self, m: &Message) {
        self.messages += 1;
        self.payload +=
            m.pickle.len() as u64 + m.buffers.iter().map(|b| b.data.len() as u64).sum::<u64>();
    }

    /// True once per second.
    pub(crate) fn due(&mut self) -> bool {
        if self.last_print.elapsed() >= Duration::from_secs(1) {
            self.last_print = Instant::now();
            true
        } else {
            false
        }
    }

    /// `120 msgs, 59.8 msg/s, 0.49 MB/s, corrupt 0, lost 0, refused 2, restarts 1, seq jumps 0,
    /// skipped 0 B, read 61440 B in 2.0 s` (counters: docs/wire-format.md, "Counters").
    pub(crate) fn line(&self, c: &Counters) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        format!(
            "{} msgs, {:.1} msg/s, {:.2} MB/s, corrupt {}, lost {}, refused {}, restarts {}, seq jumps {}, skipped {} B, read {} B in {:.1} s",
            self.messages,
            self.messages as f64 / secs,
            self.payload as f64 / secs / 1e6,
            c.corrupt,
            c.lost,
            c.refused,
            c.restarts,
            c.seq_jumps,
            c.bytes_skipped,
            c.bytes_read,
            secs
        )
    }
}

/// `seq=7 pickle=95 B buffers=[2048 B ro] dict{...}`: one line per message.
pub(crate) fn message_line(m: &Message, checker: &mut Checker) -> String {
    let bufs: Vec<String> = m
        .buffers
        .iter()
        .map(|b| {
            let mut s = format!("{} B", b.data.len());
            if b.readonly() {
                s.push_str(" ro");
            }
            if matches!(b.kind, dmapickle_core::frame::BufferKind::Shared) {
                s.push_str(" shared");
            }
            s
        })
        .collect();
    let lens: Vec<usize> = m.buffers.iter().map(|b| b.data.len()).collect();
    let summary = match checker.summarize(&m.pickle, &lens) {
        Ok((_, s)) => s,
        Err(e) => format!("(summary failed: {e})"),
    };
    format!(
        "seq={} pickle={} B buffers=[{}] {summary}",
        m.seq,
        m.pickle.len(),
        bufs.join(", ")
    )
}
