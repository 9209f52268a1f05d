//! Host reassembly throughput next to the raw read throughput of the same channel, in the same
//! run: a writer thread pushes the same frame bytes through an AF_UNIX socketpair; the reader
//! either only `read`s them into a 1 MiB buffer (raw), or runs the `FrameReader` (three CRCs,
//! header/table decode, pooled zero-copy views, message built and dropped). Tiny frames are
//! measured twice: one `next_message` call per message, and `next_batch` (every frame already
//! staged per call, the `Batch` reused, its messages borrowed).
//!
//! `cargo bench -p dmapickle-host --bench reassembly` prints a markdown table
//! (docs/performance.md, "Link and reassembly"). `-- --quick` runs a smaller volume.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dmapickle_core::frame::{
    write_frame, Entry, Header, FLAG_NO_DATA_CRC, FLAG_SEQ_RESTART, HEADER_LEN,
};
use dmapickle_core::Descriptor;
use dmapickle_host::FrameReader;
use dmapickle_host::ReaderConfig;

/// Whether the frames of the current row carry `FLAG_NO_DATA_CRC` (and the reader trusts them).
static NO_CRC: AtomicBool = AtomicBool::new(false);
/// Whether the reader of the current row takes messages with `next_batch`.
static BATCH: AtomicBool = AtomicBool::new(false);

/// One frame carrying `buf_len` inline bytes (or none), with a realistic numpy pickle.
fn frame(seq: u32, buf_len: usize) -> Vec<u8> {
    let pickle: &[u8] = b"\x80\x05}(\x8c\x03seqK\x07\x8c\x03adc\x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x04\x86\x8c\x03<i2\x97K\x00N\x8c\x01Ct\x81u.";
    let payload: Vec<u8> = (0..buf_len).map(|i| (i * 7) as u8).collect();
    let entries = [Entry::inline(Descriptor::new(1, 0, buf_len as u32))];
    let (entries, inline): (&[Entry], Vec<&[u8]>) = if buf_len == 0 {
        (&[], vec![])
    } else {
        (&entries, vec![&payload])
    };
    let mut out = vec![0u8; buf_len + 256];
    let mut flags = if seq == 0 { FLAG_SEQ_RESTART } else { 0 };
    if NO_CRC.load(Ordering::Relaxed) {
        flags |= FLAG_NO_DATA_CRC;
    }
    let n = write_frame(&mut out, flags, seq, pickle, entries, &inline).unwrap();
    out.truncate(n);
    out
}

/// Writer thread: the frames of `count` messages. Large frames go out as their 24-byte header
/// (patched with the sequence number) followed by the unchanging rest of the frame; tiny frames
/// are batched into writes of about 1 MiB.
fn spawn_writer(mut tx: UnixStream, buf_len: usize, count: u32) -> std::thread::JoinHandle<()> {
    let writer = std::thread::Builder::new().name("writer".into());
    writer
        .spawn(move || {
            let template = frame(1, buf_len);
            let base = Header::decode(template[..HEADER_LEN].try_into().unwrap()).unwrap();
            let header = |seq: u32| {
                let restart = if seq == 0 { FLAG_SEQ_RESTART } else { 0 };
                let flags = (base.flags & FLAG_NO_DATA_CRC) | restart;
                Header { seq, flags, ..base }.encode()
            };
            let rest = &template[HEADER_LEN..];
            if buf_len >= 4096 {
                for seq in 0..count {
                    if tx.write_all(&header(seq)).is_err() || tx.write_all(rest).is_err() {
                        return;
                    }
                }
                return;
            }
            let batch = ((1usize << 20) / template.len()).max(1) as u32;
            let mut chunk = Vec::with_capacity(template.len() * batch as usize);
            let mut i = 0u32;
            while i < count {
                chunk.clear();
                let end = (i + batch).min(count);
                for seq in i..end {
                    chunk.extend_from_slice(&header(seq));
                    chunk.extend_from_slice(rest);
                }
                if tx.write_all(&chunk).is_err() {
                    return;
                }
                i = end;
            }
        })
        .unwrap()
}

/// CPU time consumed by the calling thread (the reader), so the comparison holds on a machine
/// shared with other jobs.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall time, reader CPU time, bytes read.
type Run = (Duration, Duration, u64);

/// What the reading thread used: user and system (kernel) CPU time, minor page faults.
#[derive(Clone, Copy, Default)]
struct Usage {
    user: Duration,
    sys: Duration,
    faults: u64,
}

fn thread_usage() -> Usage {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_THREAD exists on Linux.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        faults: ru.ru_minflt as u64,
    }
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, o: Usage) -> Usage {
        Usage {
            user: self.user - o.user,
            sys: self.sys - o.sys,
            faults: self.faults - o.faults,
        }
    }
}

/// The socket, counting the reader's `read` calls.
struct Counted {
    rx: UnixStream,
    reads: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads += 1;
        self.rx.read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
        self.reads += 1;
        self.rx.read_vectored(bufs)
    }
}

/// The raw read: everything into one 1 MiB buffer; the bytes read.
fn drain(src: &mut impl Read) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match src.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Every message of the stream, in order, each with one `buf_len` buffer; the payload bytes.
fn read_all<R: Read>(reader: &mut FrameReader<R>, buf_len: usize, count: u32) -> u64 {
    let mut n = 0u32;
    let mut payload = 0u64;
    if BATCH.load(Ordering::Relaxed) {
        // `next_batch`, at most 256 messages per call (as the Python reader thread asks), each
        // message borrowed from the batch.
        let mut batch = dmapickle_host::stream::Batch::new();
        loop {
            let more = reader.next_batch(&mut batch, 256).unwrap();
            for m in batch.iter() {
                let m = m.unwrap();
                assert_eq!(m.seq(), n);
                payload += m.buffers().map(|b| b.data.len() as u64).sum::<u64>();
                n += 1;
            }
            if !more {
                break;
            }
        }
    } else {
        while let Some(m) = reader.next_message().unwrap() {
            assert_eq!(m.seq, n);
            payload += m.buffers.iter().map(|b| b.data.len() as u64).sum::<u64>();
            n += 1;
        }
    }
    assert_eq!(n, count);
    assert_eq!(payload, u64::from(count) * buf_len as u64);
    payload
}

/// How the large rows are read.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `read` into one 1 MiB buffer, nothing else.
    Raw,
    /// The frame reader, the data CRC folded on the reading thread piece by piece.
    Here,
    /// The frame reader, the data CRC of every direct read on the helper thread.
    Helper,
    /// The frame reader as configured by default.
    Default,
}

/// One measured pass over `count` frames: wall, reader CPU, reader usage, reads, bytes read,
/// payload bytes copied.
struct Pass {
    wall: Duration,
    cpu: Duration,
    usage: Usage,
    reads: u64,
    bytes: u64,
    copied: u64,
}

fn pass(buf_len: usize, count: u32, mode: Mode) -> Pass {
    let (rx, tx) = UnixStream::pair().unwrap();
    let w = spawn_writer(tx, buf_len, count);
    let mut src = Counted { rx, reads: 0 };
    let u0 = thread_usage();
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let (bytes, copied, reads) = if mode == Mode::Raw {
        (drain(&mut src), 0, src.reads)
    } else {
        let config = ReaderConfig {
            trust_link: NO_CRC.load(Ordering::Relaxed),
            ..ReaderConfig::default()
        };
        let mut reader = FrameReader::with_config(src, config);
        reader = match mode {
            Mode::Here => reader.with_crc_helper_min(usize::MAX),
            Mode::Helper => reader.with_crc_helper_min(0),
            _ => reader,
        };
        read_all(&mut reader, buf_len, count);
        let c = reader.counters();
        (c.bytes_read, c.payload_copied, reader.get_ref().reads)
    };
    let wall = start.elapsed();
    let cpu = thread_cpu() - cpu0;
    let usage = thread_usage() - u0;
    w.join().unwrap();
    Pass {
        wall,
        cpu,
        usage,
        reads,
        bytes,
        copied,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The large rows: per round, each size read raw, with the CRC on the reader, on the helper
/// for every direct read and as configured by default (one after the other, so all see the
/// same load), then the same 1 MiB frames without a data CRC.
fn large_rows(volume: u64, rounds: usize) {
    println!("| round | message | read by | wall | per reader CPU s | CPU ratio | wall ratio | reader user us/MiB | reader sys us/MiB | faults/frame | reads/frame | copied | load |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let rows = [
        (64usize << 10, false),
        (256 << 10, false),
        (1 << 20, false),
        (16 << 20, false),
        (1 << 20, true),
    ];
    for round in 1..=rounds {
        for (buf_len, no_crc) in rows {
            NO_CRC.store(no_crc, Ordering::Relaxed);
            let flen = frame(1, buf_len).len();
            let count = (volume / flen as u64) as u32;
            let modes: &[Mode] = if no_crc {
                &[Mode::Raw, Mode::Default]
            } else {
                &[Mode::Raw, Mode::Here, Mode::Helper, Mode::Default]
            };
            let mut raw: Option<Pass> = None;
            for &mode in modes {
                let p = pass(buf_len, count, mode);
                let mib = p.bytes as f64 / f64::from(1 << 20);
                let gbs = |d: Duration| p.bytes as f64 / d.as_secs_f64() / 1e9;
                let (cpu_ratio, wall_ratio) = match &raw {
                    Some(r) => (
                        format!("{:.0}%", 100.0 * r.cpu.as_secs_f64() / p.cpu.as_secs_f64()),
                        format!(
                            "{:.0}%",
                            100.0 * r.wall.as_secs_f64() / p.wall.as_secs_f64()
                        ),
                    ),
                    None => (String::new(), String::new()),
                };
                let what = if no_crc {
                    format!("{} KiB, `NO_DATA_CRC`", buf_len >> 10)
                } else {
                    format!("{} KiB", buf_len >> 10)
                };
                let by = match mode {
                    Mode::Raw => "raw read",
                    Mode::Here => "CRC on the reader",
                    Mode::Helper => "CRC helper, every direct read",
                    Mode::Default => "default",
                };
                println!(
                    "| {round} | {what} | {by} | {:.2} GB/s | {:.2} GB/s | {cpu_ratio} | {wall_ratio} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2}% | {} |",
                    gbs(p.wall),
                    gbs(p.cpu),
                    p.usage.user.as_secs_f64() * 1e6 / mib,
                    p.usage.sys.as_secs_f64() * 1e6 / mib,
                    p.usage.faults as f64 / f64::from(count),
                    p.reads as f64 / f64::from(count),
                    100.0 * p.copied as f64 / (f64::from(count) * buf_len as f64),
                    load_average(),
                );
                if mode == Mode::Raw {
                    raw = Some(p);
                }
            }
        }
    }
}

fn raw(buf_len: usize, count: u32) -> Run {
    let (mut rx, tx) = UnixStream::pair().unwrap();
    let w = spawn_writer(tx, buf_len, count);
    let start = Instant::now();
    let cpu = thread_cpu();
    let total = drain(&mut rx);
    let t = start.elapsed();
    let cpu = thread_cpu() - cpu;
    w.join().unwrap();
    (t, cpu, total)
}

fn reassemble(buf_len: usize, count: u32) -> Run {
    let (rx, tx) = UnixStream::pair().unwrap();
    let w = spawn_writer(tx, buf_len, count);
    let config = ReaderConfig {
        trust_link: NO_CRC.load(Ordering::Relaxed),
        ..ReaderConfig::default()
    };
    let mut reader = FrameReader::with_config(rx, config);
    let start = Instant::now();
    let cpu = thread_cpu();
    let payload = read_all(&mut reader, buf_len, count);
    let t = start.elapsed();
    let cpu = thread_cpu() - cpu;
    w.join().unwrap();
    let c = reader.counters();
    if buf_len > 0 {
        COPIED.with(|x| x.set(c.payload_copied as f64 / payload as f64));
    }
    (t, cpu, c.bytes_read)
}

thread_local! {
    static COPIED: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `-- --only large|tiny` runs only the rows with (or without) an inline buffer of 64 KiB+.
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let volume: u64 = if quick { 128 << 20 } else { 1 << 30 };
    let reps = if quick { 2 } else { 5 };
    if only.as_deref() != Some("tiny") {
        large_rows(volume, if quick { 1 } else { 3 });
        if only.as_deref() == Some("large") {
            return;
        }
        println!();
    }
    println!("| message | frame bytes | raw read | reassembly | ratio | raw read, per reader CPU s | reassembly, per reader CPU s | CPU ratio | payload copied |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let tiny = if quick { 200_000 } else { 1_000_000 };
    let rows: [(usize, u32, bool, bool); 4] = [
        (0, tiny, false, false),
        (0, tiny, false, true),
        (16, tiny, false, false),
        (16, tiny, false, true),
    ];
    for (buf_len, tiny_count, no_crc, batch) in rows {
        NO_CRC.store(no_crc, Ordering::Relaxed);
        BATCH.store(batch, Ordering::Relaxed);
        let flen = frame(1, buf_len).len();
        let count = if tiny_count > 0 {
            tiny_count
        } else {
            (volume / flen as u64) as u32
        };
        // Interleaved, best of `reps` each: both see the same machine load.
        let best = |a: Run, b: Run| (a.0.min(b.0), a.1.min(b.1), b.2);
        let mut r = (Duration::MAX, Duration::MAX, 0);
        let mut a = r;
        for _ in 0..reps {
            r = best(r, raw(buf_len, count));
            a = best(a, reassemble(buf_len, count));
        }
        assert_eq!(r.2, a.2);
        let rate = |d: Duration| {
            if tiny_count > 0 {
                format!("{:.2} M msg/s", f64::from(count) / d.as_secs_f64() / 1e6)
            } else {
                format!("{:.2} GB/s", r.2 as f64 / d.as_secs_f64() / 1e9)
            }
        };
        let call = if batch {
            ", `next_batch`"
        } else {
            ", `next_message`"
        };
        let what = match (buf_len, tiny_count) {
            (0, _) => format!("tiny: pickle only, no buffer{call}"),
            (n, t) if t > 0 => format!("tiny: pickle + 1 inline buffer of {n} B{call}"),
            (n, _) if no_crc => format!("1 inline buffer of {} KiB, `NO_DATA_CRC`", n >> 10),
            (n, _) => format!("1 inline buffer of {} KiB", n >> 10),
        };
        let copied = if tiny_count > 0 {
            "staged".to_string()
        } else {
            format!("{:.2}%", 100.0 * COPIED.with(|x| x.get()))
        };
        println!(
            "| {what} | {flen} | {} | {} | {:.0}% | {} | {} | {:.0}% | {copied} |",
            rate(r.0),
            rate(a.0),
            100.0 * r.0.as_secs_f64() / a.0.as_secs_f64(),
            rate(r.1),
            rate(a.1),
            100.0 * r.1.as_secs_f64() / a.1.as_secs_f64(),
        );
    }
}
