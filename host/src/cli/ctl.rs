//! `dmapickle ctl SOURCE info|stats|set KEY=VALUE...|start|stop|ping`: one command to the device
//! over its own link (`docs/wire-format.md`, "Control"), the reply on stdout as `key=value`
//! words. Retries with the same request id when no reply comes within `--timeout-ms`, so a
//! setting is applied once however many replies were lost.
//!
//! `set` takes `rate=HZ` and `rows=N` (rows per block); each is one command, sent in the order
//! given, and prints the first seq with the new setting (`at_seq=`).
//!
//! Exit codes: 0 done, 1 the device refused (nothing applied), 2 usage, I/O error or no reply.

use std::process::ExitCode;
use std::time::Duration;

use dmapickle_core::control::Request;
use dmapickle_host::control::{describe, ControlError, Session, RETRIES};

/// Arguments of `dmapickle ctl`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The device's link: tcp://HOST:PORT, unix:///PATH or serial:///dev/ttyX?baud=N.
    source: String,
    /// What to ask.
    #[arg(value_enum)]
    action: Action,
    /// For `set`: `rate=HZ`, `rows=N`.
    settings: Vec<String>,
    /// How long to wait for each reply, in milliseconds.
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
    /// Sends after the first when no reply comes (same request id).
    #[arg(long, default_value_t = RETRIES)]
    retries: u32,
}

/// The commands of `dmapickle ctl`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Action {
    /// Firmware and wire versions, region, block layout, rate, running or not.
    Info,
    /// ADC stalls, overflows, lent buffers, drops, commands.
    Stats,
    /// Change settings between two blocks: rate=HZ rows=N.
    Set,
    /// Resume acquisition.
    Start,
    /// Pause acquisition.
    Stop,
    /// The device's clock against the host's.
    Ping,
}

fn requests(args: &Args) -> Result<Vec<Request>, String> {
    requests_for(args.action, &args.settings)
}

/// The requests of a `ctl` command line given as words (`info`, `set rate=32000 rows=128`):
/// what `dmapickle bridge --allow-control` takes from a ZeroMQ client.
#[cfg_attr(not(feature = "zmq"), allow(dead_code))]
pub(crate) fn parse_words(words: &[&str]) -> Result<Vec<Request>, String> {
    let Some((first, settings)) = words.split_first() else {
        return Err("empty command (info, stats, set rate=HZ rows=N, start, stop, ping)".into());
    };
    let action = <Action as clap::ValueEnum>::from_str(first, false).map_err(|_| {
        format!("unknown command `{first}` (info, stats, set rate=HZ rows=N, start, stop, ping)")
    })?;
    let settings: Vec<String> = settings.iter().map(|w| w.to_string()).collect();
    requests_for(action, &settings)
}

fn requests_for(action: Action, settings: &[String]) -> Result<Vec<Request>, String> {
    let simple = match action {
        Action::Info => Some(Request::GetInfo),
        Action::Stats => Some(Request::GetStats),
        Action::Start => Some(Request::Start),
        Action::Stop => Some(Request::Stop),
        Action::Ping => Some(Request::Ping {
            host_ns: dmapickle_host::stream::monotonic_ns(),
        }),
        Action::Set => None,
    };
    if let Some(r) = simple {
        if !settings.is_empty() {
            return Err(format!("{action:?} takes no settings").to_lowercase());
        }
        return Ok(vec![r]);
    }
    if settings.is_empty() {
        return Err("set needs rate=HZ and/or rows=N".into());
    }
    settings
        .iter()
        .map(|word| {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("`{word}`: expected KEY=VALUE (rate=HZ, rows=N)"))?;
            let v: u32 = value
                .parse()
                .map_err(|_| format!("`{word}`: {value} is not a number"))?;
            match key {
                "rate" | "rate_hz" => Ok(Request::SetRate { rate_hz: v }),
                "rows" | "block_rows" => Ok(Request::SetBlockRows { rows: v }),
                _ => Err(format!("`{word}`: unknown setting (rate=HZ, rows=N)")),
            }
        })
        .collect()
}

pub(crate) fn run(args: Args) -> ExitCode {
    let reqs = match requests(&args) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let mut session = match Session::open(&args.source) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    session.controller.timeout = Duration::from_millis(args.timeout_ms);
    session.controller.retries = args.retries;
    for req in reqs {
        match session.controller.call(req) {
            Ok(reply) => println!("{}", describe(&reply)),
            Err(e @ ControlError::Device(_)) => {
                eprintln!("dmapickle: {e}");
                return ExitCode::from(1);
            }
            Err(e) => return fail(&e.to_string()),
        }
    }
    ExitCode::SUCCESS
}

fn fail(e: &str) -> ExitCode {
    eprintln!("dmapickle: {e}");
    ExitCode::from(2)
}
