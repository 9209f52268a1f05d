//! `dmapickle-hil-feeder`: the host side of the hardware-in-the-loop tests (`tests/hil/`).
//!
//! Connects to the firmware's UART (QEMU's unix socket chardev), reassembles frames with
//! `dmapickle_host::FrameReader` (mapping the PSRAM file as shared region 2 in shared mode),
//! validates each pickle with the strict profile, and writes every delivered message to stdout for the Python checks, which run as its parent:
//!
//! ```text
//! record  = "MSG1" seq:u32 restart:u8 pickle_len:u32 nbufs:u16 nbufs*entry pickle inline-bytes
//! entry   = kind:u8 (0 inline, 1 shared) readonly:u8 region:u16 offset:u32 len:u32
//! end     = "END1" frames_ok corrupt lost bytes_skipped restarts refused bytes_read (u64 each)
//! ```
//!
//! (little-endian). Inline buffers' bytes follow the pickle; shared buffers stay in the region,
//! which Python maps itself. The feeder keeps its zero-copy view of each shared buffer until
//! Python writes `R <seq>` on stdin: dropping the view is what posts the release to the device,
//! so the device may reuse a buffer only after Python let go of it. `Q` (or stdin closing)
//! drops every view still held and ends the feeder once the stream has ended.
//!
//! Usage: `dmapickle-hil-feeder UNIX_SOCKET [REGION_ID=PSRAM_FILE]`

use std::collections::HashMap;
use std::io::{self, BufRead, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;
use dmapickle_core::frame::BufferKind;
use dmapickle_core::Profile;
use dmapickle_host::region::RegionMap;
use dmapickle_host::validation::Checker;
use dmapickle_host::{FrameReader, Message};

/// Shared-buffer views held for Python, by message seq.
type Held = Arc<Mutex<HashMap<u32, Vec<Bytes>>>>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmapickle-hil-feeder: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let socket = args
        .next()
        .ok_or("usage: dmapickle-hil-feeder UNIX_SOCKET [REGION_ID=PSRAM_FILE]")?;
    let mut regions = RegionMap::new();
    for spec in args {
        let (id, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("region `{spec}`: expected ID=PATH"))?;
        let id: u16 = id
            .parse()
            .map_err(|_| format!("region id `{id}` is not a u16"))?;
        regions
            .open(id, Path::new(path))
            .map_err(|e| format!("mapping region {id} from {path}: {e}"))?;
    }
    let stream = UnixStream::connect(&socket).map_err(|e| format!("connecting {socket}: {e}"))?;
    // Every pickle is proven to build only plain data and numpy arrays before Python sees it.
    let mut reader = FrameReader::new(stream)
        .with_regions(regions)
        .with_checker(Checker::new(Profile::Strict));

    let held: Held = Arc::default();
    let releaser = {
        let held = Arc::clone(&held);
        thread::spawn(move || serve_releases(&held))
    };

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    loop {
        match reader.next_message() {
            Ok(Some(msg)) => {
                // Held before Python can see the record, so its release always finds the views.
                hold(&held, &msg);
                write_record(&mut out, &msg).map_err(|e| format!("writing to Python: {e}"))?;
                drop(msg);
                // Python batches; it sees each record as soon as the socket has no more bytes.
                out.flush().map_err(|e| format!("writing to Python: {e}"))?;
            }
            Ok(None) => break,
            Err(e) if e.is_fatal() => return Err(format!("reading frames: {e:?}")),
            Err(e) => eprintln!("dmapickle-hil-feeder: refused frame: {e:?}"),
        }
    }
    let c = reader.counters();
    out.write_all(b"END1")
        .and_then(|()| {
            for v in [
                c.frames_ok,
                c.corrupt,
                c.lost,
                c.bytes_skipped,
                c.restarts,
                c.refused,
                c.bytes_read,
            ] {
                out.write_all(&v.to_le_bytes())?;
            }
            out.flush()
        })
        .map_err(|e| format!("writing to Python: {e}"))?;
    drop(out);
    releaser
        .join()
        .map_err(|_| "release thread panicked".to_string())?;
    Ok(())
}

/// Keeps the shared buffers' views of `msg` until Python releases its seq.
fn hold(held: &Held, msg: &Message) {
    let views: Vec<Bytes> = msg
        .buffers
        .iter()
        .filter(|b| b.kind == BufferKind::Shared)
        .map(|b| b.data.clone())
        .collect();
    if !views.is_empty() {
        lock(held).insert(msg.seq, views);
    }
}

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<u32, Vec<Bytes>>> {
    held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads `R <seq>` / `Q` lines from stdin; dropping a view posts its release to the device.
fn serve_releases(held: &Held) {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line == "Q" {
            break;
        }
        let Some(seq) = line.strip_prefix("R ").and_then(|s| s.parse::<u32>().ok()) else {
            eprintln!("dmapickle-hil-feeder: ignoring command `{line}`");
            continue;
        };
        if lock(held).remove(&seq).is_none() {
            eprintln!("dmapickle-hil-feeder: release of seq {seq}, which holds no shared buffer");
        }
    }
    lock(held).clear();
}

fn write_record(out: &mut impl Write, msg: &Message) -> io::Result<()> {
    let pickle_len = u32::try_from(msg.pickle.len()).map_err(io::Error::other)?;
    let nbufs = u16::try_from(msg.buffers.len()).map_err(io::Error::other)?;
    out.write_all(b"MSG1")?;
    out.write_all(&msg.seq.to_le_bytes())?;
    out.write_all(&[u8::from(msg.restart)])?;
    out.write_all(&pickle_len.to_le_bytes())?;
    out.write_all(&nbufs.to_le_bytes())?;
    for b in &msg.buffers {
        let kind = match b.kind {
            BufferKind::Inline => 0u8,
            BufferKind::Shared => 1u8,
        };
        out.write_all(&[kind, u8::from(b.readonly())])?;
        out.write_all(&b.descriptor.region.to_le_bytes())?;
        out.write_all(&b.descriptor.offset.to_le_bytes())?;
        out.write_all(&b.descriptor.len.to_le_bytes())?;
    }
    out.write_all(&msg.pickle)?;
    for b in msg.buffers.iter().filter(|b| b.kind == BufferKind::Inline) {
        out.write_all(&b.data)?;
    }
    Ok(())
}
