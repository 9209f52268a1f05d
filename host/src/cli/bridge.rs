//! `dmapickle bridge SOURCE --zmq-pub tcp://127.0.0.1:5556`: publish every validated message as
//! one ZeroMQ multipart message `[pickle, buf0, buf1, ...]`, so any process with stock pyzmq
//! does `pickle.loads(frames[0], buffers=frames[1:])` (see the README for plain pyzmq and Dask).
//!
//! ZeroMQ is libzmq through the `zmq` crate (feature `zmq`): it is the same library pyzmq
//! ships, so PUB/SUB framing, high-water marks and reconnects behave exactly as pyzmq users
//! expect. Slow subscribers lose messages at the high-water mark (`--hwm`), never block the
//! bridge. Stats on stderr every second; final stats on stdout.
//!
//! PUB/SUB drops everything sent before a subscriber's subscription reached the bridge (ZeroMQ's
//! "slow joiner"): a recording bridged at full speed is gone before a subscriber started a moment
//! later connects. `--wait-subscribers N` makes the socket an XPUB (still PUB to subscribers) and
//! reads the source only once N subscriptions arrived.
//!
//! Exit codes: 0 the source ended or Ctrl-C, 2 usage or I/O error.

use std::process::ExitCode;

use super::live::SourceArgs;

/// Arguments of `dmapickle bridge`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// ZeroMQ endpoint to bind a PUB socket to, e.g. tcp://127.0.0.1:5556 or ipc:///tmp/dm.
    #[arg(long = "zmq-pub", value_name = "ENDPOINT")]
    zmq_pub: String,
    /// Messages queued per subscriber before ZeroMQ drops for that subscriber.
    #[arg(long, default_value_t = 1000)]
    hwm: i32,
    /// Read the source only once N subscribers subscribed (nothing is published to nobody).
    #[arg(long, value_name = "N", default_value_t = 0)]
    wait_subscribers: u32,
}

#[cfg(not(feature = "zmq"))]
pub(crate) fn run(_args: Args) -> ExitCode {
    eprintln!(
        "dmapickle: bridge needs ZeroMQ; rebuild with `cargo install --path host --features zmq` (needs libzmq3-dev)"
    );
    ExitCode::from(2)
}

#[cfg(feature = "zmq")]
pub(crate) fn run(args: Args) -> ExitCode {
    use super::live;
    let fail = |e: &str| {
        eprintln!("dmapickle: {e}");
        ExitCode::from(2)
    };
    let ctx = zmq::Context::new();
    let kind = if args.wait_subscribers > 0 {
        zmq::XPUB
    } else {
        zmq::PUB
    };
    let socket = match ctx.socket(kind) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot create a ZeroMQ PUB socket: {e}")),
    };
    let _ = socket.set_sndhwm(args.hwm);
    let _ = socket.set_linger(1000);
    if let Err(e) = socket.bind(&args.zmq_pub) {
        return fail(&format!(
            "cannot bind ZeroMQ PUB to {}: {e}; is the port in use or the endpoint malformed?",
            args.zmq_pub
        ));
    }
    eprintln!("dmapickle: bridge: publishing on {}", args.zmq_pub);
    if let Err(e) = wait_subscribers(&socket, args.wait_subscribers) {
        return fail(&format!("waiting for subscribers on {}: {e}", args.zmq_pub));
    }
    if live::stopped() {
        println!("final (interrupted): published 0, waited for subscribers");
        return ExitCode::SUCCESS;
    }
    let mut reader = match live::open_reader(&args.source) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let mut published: u64 = 0;
    let (code, stats) = live::drive(&mut reader, &args.source.source, "stats", |m| {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + m.buffers.len());
        parts.push(&m.pickle);
        parts.extend(m.buffers.iter().map(|b| &b.data[..]));
        match socket.send_multipart(parts, 0) {
            Ok(()) => published += 1,
            Err(e) => eprintln!("dmapickle: bridge: sending message {}: {e}", m.seq),
        }
    });
    let reason = live::end_reason();
    println!(
        "final ({reason}): published {published}, {}",
        stats.line(&reader.counters())
    );
    code
}

/// Blocks until `n` subscriptions arrived on the XPUB `socket` (each subscriber's, with
/// XPUB_VERBOSE) or Ctrl-C.
#[cfg(feature = "zmq")]
fn wait_subscribers(socket: &zmq::Socket, n: u32) -> Result<(), zmq::Error> {
    if n == 0 {
        return Ok(());
    }
    socket.set_xpub_verbose(true)?;
    super::live::stop_on_ctrl_c();
    eprintln!("dmapickle: bridge: waiting for {n} subscriber(s) before reading the source");
    let mut joined = 0;
    while joined < n && !super::live::stopped() {
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
