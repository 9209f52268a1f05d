//! Host reassembly throughput next to the raw read throughput of the same channel, in the same
//! run: a writer thread pushes the same frame bytes through an AF_UNIX socketpair; the reader
//! either only `read`s them into a 1 MiB buffer (raw), or runs the `FrameReader` (three CRCs,
//! header/table decode, pooled zero-copy views, message built and dropped).
//!
//! `cargo bench -p dmapickle-host --bench reassembly` prints a markdown table
//! (docs/performance.md, "Link and reassembly"). `-- --quick` runs a smaller volume.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use dmapickle_core::frame::{write_frame, Entry, Header, FLAG_SEQ_RESTART, HEADER_LEN};
use dmapickle_core::Descriptor;
use dmapickle_host::FrameReader;

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
    let flags = if seq == 0 { FLAG_SEQ_RESTART } else { 0 };
    let n = write_frame(&mut out, flags, seq, pickle, entries, &inline).unwrap();
    out.truncate(n);
    out
}

/// Writer thread: the frames of `count` messages. Large frames go out as their 24-byte header
/// (patched with the sequence number) followed by the unchanging rest of the frame; tiny frames
/// are batched into writes of about 1 MiB.
fn spawn_writer(mut tx: UnixStream, buf_len: usize, count: u32) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let template = frame(1, buf_len);
        let base = Header::decode(template[..HEADER_LEN].try_into().unwrap()).unwrap();
        let header = |seq: u32| {
            let flags = if seq == 0 { FLAG_SEQ_RESTART } else { 0 };
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
}

fn raw(buf_len: usize, count: u32) -> (Duration, u64) {
    let (mut rx, tx) = UnixStream::pair().unwrap();
    let w = spawn_writer(tx, buf_len, count);
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        match rx.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("{e}"),
        }
    }
    let t = start.elapsed();
    w.join().unwrap();
    (t, total)
}

fn reassemble(buf_len: usize, count: u32) -> (Duration, u64) {
    let (rx, tx) = UnixStream::pair().unwrap();
    let w = spawn_writer(tx, buf_len, count);
    let mut reader = FrameReader::new(rx);
    let start = Instant::now();
    let mut n = 0u32;
    let mut payload = 0u64;
    while let Some(m) = reader.next_message().unwrap() {
        assert_eq!(m.seq, n);
        payload += m.buffers.iter().map(|b| b.data.len() as u64).sum::<u64>();
        n += 1;
    }
    let t = start.elapsed();
    w.join().unwrap();
    assert_eq!(n, count);
    assert_eq!(payload, u64::from(count) * buf_len as u64);
    let c = reader.counters();
    if buf_len > 0 {
        COPIED.with(|x| x.set(c.payload_copied as f64 / payload as f64));
    }
    (t, c.bytes_read)
}

thread_local! {
    static COPIED: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let volume: u64 = if quick { 128 << 20 } else { 1 << 30 };
    let reps = if quick { 2 } else { 5 };
    println!("| message | frame bytes | raw read | reassembly | ratio | payload copied |");
    println!("|---|---|---|---|---|---|");
    for buf_len in [64 << 10, 256 << 10, 1 << 20] {
        let count = (volume / frame(1, buf_len).len() as u64) as u32;
        // Interleaved, best of `reps` each: both see the same machine load.
        let (mut tr, mut ta) = (Duration::MAX, Duration::MAX);
        let mut bytes = 0;
        for _ in 0..reps {
            let (t, br) = raw(buf_len, count);
            let (u, ba) = reassemble(buf_len, count);
            assert_eq!(br, ba);
            (tr, ta, bytes) = (tr.min(t), ta.min(u), br);
        }
        let gr = bytes as f64 / tr.as_secs_f64() / 1e9;
        let ga = bytes as f64 / ta.as_secs_f64() / 1e9;
        println!(
            "| 1 inline buffer of {} KiB | {} | {gr:.2} GB/s | {ga:.2} GB/s | {:.0}% | {:.2}% |",
            buf_len >> 10,
            frame(1, buf_len).len(),
            100.0 * ga / gr,
            100.0 * COPIED.with(|x| x.get())
        );
    }
    for buf_len in [0usize, 16] {
        let count: u32 = if quick { 200_000 } else { 1_000_000 };
        let (mut tr, mut ta) = (Duration::MAX, Duration::MAX);
        for _ in 0..reps {
            tr = tr.min(raw(buf_len, count).0);
            ta = ta.min(reassemble(buf_len, count).0);
        }
        let mr = f64::from(count) / tr.as_secs_f64() / 1e6;
        let ma = f64::from(count) / ta.as_secs_f64() / 1e6;
        let what = if buf_len == 0 {
            "no buffer".to_string()
        } else {
            format!("1 inline buffer of {buf_len} B")
        };
        println!(
            "| tiny: pickle only, {what} | {} | {mr:.2} M msg/s | {ma:.2} M msg/s | {:.0}% | staged |",
            frame(1, buf_len).len(),
            100.0 * ma / mr
        );
    }
}
