//! `dmapickle bridge SOURCE... --zmq-pub tcp://127.0.0.1:5556` (or `--zmq-push`): send every
//! validated message of one or several sources as one ZeroMQ multipart message
//! `[header, pickle, buf0, buf1, ...]`, so any process with stock pyzmq does
//! `pickle.loads(frames[1], buffers=frames[2:])` (README, "ZeroMQ"; `dmapickle.zmq` decodes
//! the header and counts gaps).
//!
//! The header frame starts with the topic `KIND/NAME/` (`data/dev0/`, `stats/dev0/`), so
//! ZeroMQ's own prefix subscription filters by message kind and source; after a 0x00 byte come
//! 40 fixed bytes: version, kind, flags, the device seq, the bridge's seq per topic, the bridge's
//! receive time and the link's loss counters (docs/bridge.md has every byte). A `stats` message
//! per source every `--stats-interval` seconds and one with the `final` flag when the source
//! ends carry the bridge's own counts as JSON, so a subscriber knows what was published.
//!
//! ZeroMQ is libzmq through the `zmq` crate (feature `zmq`): the same library pyzmq ships.
//! `--zmq-pub`: slow subscribers lose messages at the high-water mark (`--hwm`), never block the
//! bridge; the bridge seq shows each subscriber how many. `--zmq-push`: messages are shared out
//! among the connected PULL consumers, and when all of them are `--hwm` messages behind the
//! bridge waits, stops reading its sources, and the loss (if the device cannot wait) happens on
//! the device link, where the reader counts it (`lost`, also in every header).
//!
//! PUB/SUB drops everything sent before a subscriber's subscription reached the bridge (ZeroMQ's
//! "slow joiner"). `--wait-subscribers N` makes the socket an XPUB (still PUB to subscribers) and
//! reads the sources only once N subscriptions arrived. PUSH holds messages until a consumer
//! connects.
//!
//! Each source is read on its own thread; a bounded channel hands messages to the one thread
//! that owns the socket, so a socket that waits makes every reader wait. Stats per source on
//! stderr every second; final stats on stdout, one line per source.
//!
//! No command reaches a device unless asked: `--allow-control ENDPOINT` binds a ZeroMQ REP
//! socket whose requests (one frame of text: the words of `dmapickle ctl`, `info`, `stats`,
//! `set rate=HZ rows=N`, `start`, `stop`, `ping`, optionally `@NAME` first for a source other
//! than the first) the bridge sends to the device on its own link, with the same request ids,
//! timeouts and retries as `dmapickle ctl`, and answers with one frame of text: a line
//! `ok KEY=VALUE...` per command (what `ctl` prints), or as the last line `refused MESSAGE` (the
//! device refused: nothing applied), `timeout MESSAGE` or `error MESSAGE` (a malformed request:
//! nothing sent). `dmapickle.bridge_control(endpoint)` is the Python client (README, "Why the
//! ZeroMQ bridge does not forward commands" says why this is opt-in).
//!
//! Exit codes: 0 every source ended or Ctrl-C, 2 usage or I/O error (or a source failed).

use super::live::SourceArgs;

/// Arguments of `dmapickle bridge`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// More sources, read at the same time as the first (each with its own topics and stats).
    #[arg(value_name = "SOURCE")]
    more: Vec<String>,
    /// Topic name of each source, in the order given (repeatable; default dev0, dev1, ...):
    /// letters, digits and `_.:-`, at most 64.
    #[arg(long = "name", value_name = "NAME", value_parser = parse_name)]
    names: Vec<String>,
    /// ZeroMQ endpoint to bind a PUB socket to, e.g. tcp://127.0.0.1:5556 or ipc:///tmp/dm:
    /// every subscriber gets every message it keeps up with; slow ones lose (counted).
    #[arg(
        long = "zmq-pub",
        value_name = "ENDPOINT",
        required_unless_present = "zmq_push"
    )]
    zmq_pub: Option<String>,
    /// ZeroMQ endpoint to bind a PUSH socket to: each message goes to one PULL consumer; when
    /// they all fall behind, the bridge stops reading (backpressure, no drop).
    #[arg(long = "zmq-push", value_name = "ENDPOINT", conflicts_with_all = ["zmq_pub", "wait_subscribers"])]
    zmq_push: Option<String>,
    /// Messages queued per subscriber (PUB: then dropped for it) or consumer (PUSH: then the
    /// bridge waits).
    #[arg(long, default_value_t = 1000)]
    hwm: i32,
    /// Read the sources only once N subscribers subscribed (nothing is published to nobody).
    #[arg(long, value_name = "N", default_value_t = 0)]
    wait_subscribers: u32,
    /// Seconds between the `stats/NAME/` messages of each source (0: only the final one).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    stats_interval: f64,
    /// ZeroMQ endpoint to bind a REP socket to that forwards commands to the devices (off by
    /// default: whoever reaches this endpoint can reconfigure or stop the instrument for every
    /// subscriber). Requests are the words of `dmapickle ctl` (`set rate=32000`), `@NAME` first
    /// for another source than the first; replies `ok ...`, `refused ...`, `timeout ...` or
    /// `error ...`.
    #[arg(long = "allow-control", value_name = "ENDPOINT")]
    allow_control: Option<String>,
}

fn parse_name(s: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_.:-".contains(c);
    if !s.is_empty() && s.len() <= 64 && s.chars().all(ok) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "a source name is 1 to 64 letters, digits or `_.:-` (it is a topic), got {s:?}"
        ))
    }
}

#[cfg(not(feature = "zmq"))]
pub(crate) fn run(_args: Args) -> std::process::ExitCode {
    eprintln!(
        "dmapickle: bridge needs ZeroMQ; rebuild with `cargo install --path host --features zmq` (needs libzmq3-dev)"
    );
    std::process::ExitCode::from(2)
}

/// The header frame (docs/bridge.md): `KIND/NAME/`, 0x00, then [`header::LEN`] bytes.
#[cfg(feature = "zmq")]
mod header {
    /// Version of the fixed part.
    pub const VERSION: u8 = 1;
    /// Bytes after the topic's 0x00.
    pub const LEN: usize = 40;
    /// `kind` of a message carrying a pickle and its buffers (topic `data/NAME/`).
    pub const DATA: u8 = 0;
    /// `kind` of a message carrying the bridge's counts for a source as JSON (`stats/NAME/`).
    pub const STATS: u8 = 1;
    /// `flags` bit: the device (re)started its sequence counter with this message.
    pub const RESTART: u16 = 1;
    /// `flags` bit: the last stats message of this source (it ended).
    pub const FINAL: u16 = 2;

    /// The fields of one header.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Fields {
        pub kind: u8,
        pub flags: u16,
        pub device_seq: u32,
        pub bridge_seq: u64,
        pub recv_ns: u64,
        pub link_lost: u64,
        pub refused: u64,
    }

    /// The topic of `kind` messages from source `name`.
    pub fn topic(kind: u8, name: &str) -> String {
        let word = if kind == DATA { "data" } else { "stats" };
        format!("{word}/{name}/")
    }

    /// The whole header frame: `topic`, 0x00, then the fixed little-endian fields.
    pub fn encode(topic: &str, f: &Fields) -> Vec<u8> {
        let mut out = Vec::with_capacity(topic.len() + 1 + LEN);
        out.extend_from_slice(topic.as_bytes());
        out.push(0);
        out.push(VERSION);
        out.push(f.kind);
        out.extend_from_slice(&f.flags.to_le_bytes());
        out.extend_from_slice(&f.device_seq.to_le_bytes());
        for v in [f.bridge_seq, f.recv_ns, f.link_lost, f.refused] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }
}

#[cfg(feature = "zmq")]
mod run_zmq {
    use std::process::ExitCode;
    use std::sync::mpsc;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use dmapickle_host::control::{self, describe, ControlError, Controller, DownSlot};
    use dmapickle_host::stream::Counters;
    use dmapickle_host::Message;

    use super::header::{self, Fields};
    use super::Args;
    use crate::cli::live::{self, SourceArgs};

    /// What a source's reader thread hands to the socket's thread.
    enum Event {
        Message {
            src: usize,
            msg: Message,
            recv_ns: u64,
            counters: Counters,
        },
        Ended {
            src: usize,
            failed: bool,
            line: String,
            counters: Counters,
        },
    }

    /// One source as the socket's thread sees it.
    struct Source {
        name: String,
        uri: String,
        data_topic: String,
        stats_topic: String,
        /// Data messages sent (the next data header's bridge seq).
        published: u64,
        /// Stats messages sent (the next stats header's bridge seq).
        stats_sent: u64,
        /// Messages not sent because Ctrl-C came while the socket waited.
        abandoned: u64,
        last_seq: u32,
        counters: Counters,
        /// The final stats line, once the source ended.
        line: Option<String>,
    }

    fn now_ns() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    /// `s` as a JSON string.
    fn json_str(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    impl Source {
        fn stats_json(&self, last: bool) -> String {
            let c = &self.counters;
            format!(
                "{{\"source\": {}, \"uri\": {}, \"final\": {last}, \"published\": {}, \"abandoned\": {}, \
                 \"delivered\": {}, \"corrupt\": {}, \"lost\": {}, \"refused\": {}, \"restarts\": {}, \
                 \"seq_jumps\": {}, \"bytes_skipped\": {}, \"bytes_read\": {}}}",
                json_str(&self.name),
                json_str(&self.uri),
                self.published,
                self.abandoned,
                c.frames_ok,
                c.corrupt,
                c.lost,
                c.refused,
                c.restarts,
                c.seq_jumps,
                c.bytes_skipped,
                c.bytes_read
            )
        }

        fn fields(&self, kind: u8, flags: u16, bridge_seq: u64, recv_ns: u64) -> Fields {
            Fields {
                kind,
                flags,
                device_seq: self.last_seq,
                bridge_seq,
                recv_ns,
                link_lost: self.counters.lost,
                refused: self.counters.refused,
            }
        }
    }

    /// Send `parts` as one multipart message. A socket that cannot take it (PUSH with every
    /// consumer at its high-water mark) is retried every `SNDTIMEO` until it can, or until
    /// Ctrl-C: then `Ok(false)`. libzmq takes a multipart message whole once it took its first
    /// part.
    fn send(socket: &zmq::Socket, parts: &[&[u8]]) -> Result<bool, zmq::Error> {
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let flags = if i < last { zmq::SNDMORE } else { 0 };
            loop {
                match socket.send(*part, flags) {
                    Ok(()) => break,
                    // EINTR: Ctrl-C came while libzmq waited.
                    Err(zmq::Error::EAGAIN | zmq::Error::EINTR) if i == 0 && live::stopped() => {
                        return Ok(false)
                    }
                    Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }

    /// The per-source arguments: the first source's options with each URI.
    fn source_args(args: &Args) -> Vec<SourceArgs> {
        std::iter::once(args.source.source.clone())
            .chain(args.more.iter().cloned())
            .map(|uri| SourceArgs {
                source: uri,
                link: args.source.link.clone(),
                no_reconnect: args.source.no_reconnect,
                validation: args.source.validation.clone(),
            })
            .collect()
    }

    fn names(args: &Args, n: usize) -> Result<Vec<String>, String> {
        if args.names.len() > n {
            return Err(format!(
                "{} --name for {n} source(s): one name per SOURCE, in order",
                args.names.len()
            ));
        }
        let names: Vec<String> = (0..n)
            .map(|i| args.names.get(i).cloned().unwrap_or(format!("dev{i}")))
            .collect();
        for (i, a) in names.iter().enumerate() {
            if names[..i].contains(a) {
                return Err(format!("two sources named {a}: give each its own --name"));
            }
        }
        Ok(names)
    }

    pub(crate) fn run(args: Args) -> ExitCode {
        let fail = |e: &str| {
            eprintln!("dmapickle: {e}");
            ExitCode::from(2)
        };
        let per_source = source_args(&args);
        let names = match names(&args, per_source.len()) {
            Ok(n) => n,
            Err(e) => return fail(&e),
        };
        let (endpoint, kind, what) = match (&args.zmq_push, &args.zmq_pub) {
            (Some(e), _) => (e.clone(), zmq::PUSH, "PUSH"),
            (None, Some(e)) if args.wait_subscribers > 0 => (e.clone(), zmq::XPUB, "PUB"),
            (None, Some(e)) => (e.clone(), zmq::PUB, "PUB"),
            (None, None) => return fail("bridge needs --zmq-pub or --zmq-push ENDPOINT"),
        };
        let ctx = zmq::Context::new();
        let socket = match ctx.socket(kind) {
            Ok(s) => s,
            Err(e) => return fail(&format!("cannot create a ZeroMQ {what} socket: {e}")),
        };
        let _ = socket.set_sndhwm(args.hwm);
        let _ = socket.set_linger(1000);
        let _ = socket.set_sndtimeo(100);
        if let Err(e) = socket.bind(&endpoint) {
            return fail(&format!(
                "cannot bind ZeroMQ {what} to {endpoint}: {e}; is the port in use or the endpoint malformed?"
            ));
        }
        let verb = if kind == zmq::PUSH {
            "pushing to"
        } else {
            "publishing on"
        };
        eprintln!("dmapickle: bridge: {verb} {endpoint}");
        if let Err(e) = wait_subscribers(&socket, args.wait_subscribers) {
            return fail(&format!("waiting for subscribers on {endpoint}: {e}"));
        }
        if live::stopped() {
            println!("final (interrupted): published 0, waited for subscribers");
            return ExitCode::SUCCESS;
        }
        let rep = match args.allow_control.as_deref().map(|e| bind_control(&ctx, e)) {
            Some(Ok(rep)) => Some(rep),
            Some(Err(e)) => return fail(&e),
            None => None,
        };
        let stop = live::stop_on_ctrl_c();
        let (tx, rx) = mpsc::sync_channel::<Event>(2 * per_source.len());
        let mut sources = Vec::new();
        let mut threads = Vec::new();
        let mut controllers = Vec::new();
        for (src, (a, name)) in per_source.into_iter().zip(names).enumerate() {
            let source = match live::open_source(&a, stop.clone()) {
                Ok(s) => s,
                Err(e) => return fail(&e),
            };
            // The command path exists only when asked for (--allow-control).
            let down = DownSlot::default();
            let attached = args
                .allow_control
                .is_some()
                .then(|| control::attach(&source, down.clone()))
                .flatten();
            let mut reader = match live::reader(&a, source) {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            let down = match attached {
                Some((controller, replies)) => {
                    reader = reader.with_skip_tap(Box::new(move |b| replies.feed(b)));
                    controllers.push((name.clone(), Some(controller)));
                    Some(down)
                }
                None => {
                    controllers.push((name.clone(), None));
                    None
                }
            };
            sources.push(Source {
                data_topic: header::topic(header::DATA, &name),
                stats_topic: header::topic(header::STATS, &name),
                name: name.clone(),
                uri: a.source.clone(),
                published: 0,
                stats_sent: 0,
                abandoned: 0,
                last_seq: 0,
                counters: Counters::default(),
                line: None,
            });
            let tx = tx.clone();
            let label = if src == 0 && args.more.is_empty() {
                "stats".to_string()
            } else {
                format!("stats {name}")
            };
            threads.push(std::thread::spawn(move || {
                let (code, stats) =
                    live::drive_counted(&mut reader, &a.source, &label, |msg, r| {
                        // A reconnecting source has a new connection, so a new down link.
                        if let Some(down) = &down {
                            down.refresh(r.get_ref());
                        }
                        let counters = r.counters();
                        let recv_ns = now_ns();
                        let _ = tx.send(Event::Message {
                            src,
                            msg,
                            recv_ns,
                            counters,
                        });
                    });
                if let Some(down) = &down {
                    down.clear(); // the connection closes with its reader
                }
                let counters = reader.counters();
                let _ = tx.send(Event::Ended {
                    src,
                    failed: code != ExitCode::SUCCESS,
                    line: stats.line(&counters),
                    counters,
                });
            }));
        }
        drop(tx);
        let done = Arc::new(AtomicBool::new(false));
        let commands = match rep.map(|rep| serve_control(rep, controllers, done.clone())) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => return fail(&e),
            None => None,
        };
        let result = pump(&socket, &rx, &mut sources, args.stats_interval);
        done.store(true, Ordering::Relaxed);
        if let Some(t) = commands {
            let _ = t.join();
        }
        drop(rx); // after a send error, readers still sending end instead of waiting
        for t in threads {
            let _ = t.join();
        }
        let reason = live::end_reason();
        for s in &sources {
            let who = if sources.len() > 1 {
                format!(" {}", s.name)
            } else {
                String::new()
            };
            let abandoned = if s.abandoned > 0 {
                format!(
                    " ({} not sent: interrupted while the socket waited)",
                    s.abandoned
                )
            } else {
                String::new()
            };
            println!(
                "final ({reason}){who}: published {}{abandoned}, {}",
                s.published,
                s.line.as_deref().unwrap_or("")
            );
        }
        if kind == zmq::PUSH && !live::stopped() {
            // No drop: wait until the consumers took what is queued (a second Ctrl-C leaves).
            let _ = socket.set_linger(-1);
        }
        match result {
            Ok(false) => ExitCode::SUCCESS,
            Ok(true) => ExitCode::from(2),
            Err(e) => fail(&format!("sending on {endpoint}: {e}")),
        }
    }

    /// The `--allow-control` REP socket, bound to `endpoint`.
    fn bind_control(ctx: &zmq::Context, endpoint: &str) -> Result<zmq::Socket, String> {
        let rep = ctx
            .socket(zmq::REP)
            .map_err(|e| format!("cannot create the ZeroMQ REP socket for --allow-control: {e}"))?;
        let _ = rep.set_linger(0);
        rep.bind(endpoint).map_err(|e| {
            format!(
                "cannot bind --allow-control to {endpoint}: {e}; is the port in use or the \
                 endpoint malformed?"
            )
        })?;
        eprintln!("dmapickle: bridge: commands accepted on {endpoint} (--allow-control)");
        Ok(rep)
    }

    /// Answers the requests on `rep` on a thread of its own until `done` (or Ctrl-C): each one
    /// sent to its source's device with that source's [`Controller`] (its own link, its
    /// retries), the reader threads reading meanwhile.
    fn serve_control(
        rep: zmq::Socket,
        mut controllers: Vec<(String, Option<Controller>)>,
        done: Arc<AtomicBool>,
    ) -> Result<std::thread::JoinHandle<()>, String> {
        std::thread::Builder::new()
            .name("dmapickle-bridge-control".into())
            .spawn(move || {
                while !done.load(Ordering::Relaxed) && !live::stopped() {
                    match rep.poll(zmq::POLLIN, 100) {
                        Ok(0) => continue,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    let Ok(request) = rep.recv_bytes(0) else {
                        continue;
                    };
                    let mut frames = 1;
                    while rep.get_rcvmore().unwrap_or(false) {
                        let _ = rep.recv_bytes(0);
                        frames += 1;
                    }
                    let reply = if frames > 1 {
                        format!("error a command is one frame of text, got {frames} frames")
                    } else {
                        answer(&request, &mut controllers)
                    };
                    let what = String::from_utf8_lossy(&request);
                    let first = reply.lines().last().unwrap_or_default();
                    eprintln!("dmapickle: bridge: command {what:?}: {first}");
                    let _ = rep.send(reply.as_bytes(), 0);
                }
            })
            .map_err(|e| format!("cannot start the --allow-control thread: {e}"))
    }

    /// The reply to one `--allow-control` request (see the module docs for both forms).
    fn answer(request: &[u8], controllers: &mut [(String, Option<Controller>)]) -> String {
        let Ok(text) = std::str::from_utf8(request) else {
            return "error the request is not UTF-8 text: send the words of `dmapickle ctl`, \
                    e.g. `info` or `set rate=32000`"
                .into();
        };
        let mut words: Vec<&str> = text.split_whitespace().collect();
        let mut at = 0;
        if let Some(name) = words.first().and_then(|w| w.strip_prefix('@')) {
            let Some(i) = controllers.iter().position(|(n, _)| n == name) else {
                let known: Vec<&str> = controllers.iter().map(|(n, _)| n.as_str()).collect();
                return format!(
                    "error no source named {name} (sources: {})",
                    known.join(", ")
                );
            };
            at = i;
            words.remove(0);
        }
        let requests = match crate::cli::ctl::parse_words(&words) {
            Ok(r) => r,
            Err(e) => return format!("error {e}"),
        };
        let (name, controller) = &mut controllers[at];
        let Some(controller) = controller else {
            return format!(
                "error source {name} cannot take commands (tcp://, unix:// and serial:// can)"
            );
        };
        let mut lines = Vec::new();
        for request in requests {
            match controller.call(request) {
                Ok(reply) => lines.push(format!("ok {}", describe(&reply))),
                Err(e) => {
                    let kind = match e {
                        ControlError::Device(_) => "refused",
                        ControlError::Timeout { .. } => "timeout",
                        _ => "error",
                    };
                    lines.push(format!("{kind} {e}"));
                    break;
                }
            }
        }
        lines.join("\n")
    }

    /// Send what the readers hand over until every source ended; `Ok(true)` if one failed.
    fn pump(
        socket: &zmq::Socket,
        rx: &mpsc::Receiver<Event>,
        sources: &mut [Source],
        interval: f64,
    ) -> Result<bool, zmq::Error> {
        let interval = (interval > 0.0).then(|| Duration::from_secs_f64(interval));
        let mut last_stats = Instant::now();
        let mut failed = false;
        let mut running = sources.len();
        while running > 0 {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Event::Message {
                    src,
                    msg,
                    recv_ns,
                    counters,
                }) => {
                    let s = &mut sources[src];
                    s.last_seq = msg.seq;
                    s.counters = counters;
                    let flags = if msg.restart { header::RESTART } else { 0 };
                    let head = header::encode(
                        &s.data_topic,
                        &s.fields(header::DATA, flags, s.published, recv_ns),
                    );
                    let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + msg.buffers.len());
                    parts.push(&head);
                    parts.push(&msg.pickle);
                    parts.extend(msg.buffer_bytes());
                    if send(socket, &parts)? {
                        s.published += 1;
                    } else {
                        s.abandoned += 1;
                    }
                }
                Ok(Event::Ended {
                    src,
                    failed: f,
                    line,
                    counters,
                }) => {
                    failed |= f;
                    running -= 1;
                    let s = &mut sources[src];
                    s.counters = counters;
                    s.line = Some(line);
                    send_stats(socket, s, true)?;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if interval.is_some_and(|i| last_stats.elapsed() >= i) {
                last_stats = Instant::now();
                for s in sources.iter_mut().filter(|s| s.line.is_none()) {
                    send_stats(socket, s, false)?;
                }
            }
        }
        Ok(failed)
    }

    fn send_stats(socket: &zmq::Socket, s: &mut Source, last: bool) -> Result<(), zmq::Error> {
        let flags = if last { header::FINAL } else { 0 };
        let head = header::encode(
            &s.stats_topic,
            &s.fields(header::STATS, flags, s.stats_sent, now_ns()),
        );
        let body = s.stats_json(last);
        if send(socket, &[&head, body.as_bytes()])? {
            s.stats_sent += 1;
        }
        Ok(())
    }

    /// Blocks until `n` subscriptions arrived on the XPUB `socket` (each subscriber's, with
    /// XPUB_VERBOSE) or Ctrl-C.
    fn wait_subscribers(socket: &zmq::Socket, n: u32) -> Result<(), zmq::Error> {
        if n == 0 {
            return Ok(());
        }
        socket.set_xpub_verbose(true)?;
        live::stop_on_ctrl_c();
        eprintln!("dmapickle: bridge: waiting for {n} subscriber(s) before reading the source");
        let mut joined = 0;
        while joined < n && !live::stopped() {
            if socket.poll(zmq::POLLIN, 100)? == 0 {
                continue;
            }
            // A subscription message is 0x01 + topic; 0x00 + topic is an unsubscribe.
            if socket.recv_bytes(0)?.first() == Some(&1) {
                joined += 1;
                eprintln!("dmapickle: bridge: subscriber {joined} of {n} joined");
            }
        }
        Ok(())
    }
}

#[cfg(feature = "zmq")]
pub(crate) use run_zmq::run;

#[cfg(all(test, feature = "zmq"))]
mod tests {
    use super::header::{encode, topic, Fields, DATA, RESTART, STATS};

    #[test]
    fn header_bytes_are_the_documented_ones() {
        // docs/bridge.md, "Header frame": the example bytes.
        let f = Fields {
            kind: DATA,
            flags: RESTART,
            device_seq: 7,
            bridge_seq: 5,
            recv_ns: 1_700_000_000_123_456_789,
            link_lost: 2,
            refused: 1,
        };
        let got = encode(&topic(DATA, "dev0"), &f);
        let want = "646174612f646576302f00 01 00 0100 07000000 0500000000000000 \
                    15cd853dfe9c9717 0200000000000000 0100000000000000";
        let want: Vec<u8> = (0..want.replace(' ', "").len() / 2)
            .map(|i| u8::from_str_radix(&want.replace(' ', "")[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(topic(STATS, "a.b:c-1"), "stats/a.b:c-1/");
    }

    #[test]
    fn names_are_topic_safe() {
        assert!(super::parse_name("dev0").is_ok());
        assert!(super::parse_name("a/b").is_err());
        assert!(super::parse_name("").is_err());
        assert!(super::parse_name(&"x".repeat(65)).is_err());
    }
}
