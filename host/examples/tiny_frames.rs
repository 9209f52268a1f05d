//! Instruction counts of tiny-frame reassembly, for callgrind (wall time on a shared machine is
//! too noisy for a few hundred instructions per message):
//!
//! ```sh
//! cargo build --release -p dmapickle-host --example tiny_frames
//! valgrind --tool=callgrind --toggle-collect='tiny_frames::consume*' \
//!     target/release/examples/tiny_frames batch 0 200000
//! ```
//!
//! Arguments: `message` (one `next_message` call per message), `batch` (`next_batch`, at most
//! 256 per call, messages borrowed) or `raw` (only the reads, the peer); the inline buffer's
//! length (0: pickle only, the 88-byte frame of `benches/reassembly.rs`); how many messages.
//! The frames come from memory in reads of at most 64 KiB (a socket's), so the counts are the
//! reader's user-space instructions; divide the collected total by the count.

use std::io::Read;

use dmapickle_core::frame::{write_frame, Entry, FLAG_SEQ_RESTART};
use dmapickle_core::Descriptor;
use dmapickle_host::stream::Batch;
use dmapickle_host::FrameReader;

/// The frames of `benches/reassembly.rs`: a realistic numpy pickle, `buf_len` inline bytes.
fn frames(buf_len: usize, count: u32) -> Vec<u8> {
    let pickle: &[u8] = b"\x80\x05}(\x8c\x03seqK\x07\x8c\x03adc\x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x04\x86\x8c\x03<i2\x97K\x00N\x8c\x01Ct\x81u.";
    let payload: Vec<u8> = (0..buf_len).map(|i| (i * 7) as u8).collect();
    let entry = [Entry::inline(Descriptor::new(1, 0, buf_len as u32))];
    let (entries, inline): (&[Entry], Vec<&[u8]>) = if buf_len == 0 {
        (&[], vec![])
    } else {
        (&entry, vec![&payload])
    };
    let mut out = Vec::new();
    let mut frame = vec![0u8; buf_len + 256];
    for seq in 0..count {
        let flags = if seq == 0 { FLAG_SEQ_RESTART } else { 0 };
        let n = write_frame(&mut frame, flags, seq, pickle, entries, &inline).expect("frame fits");
        out.extend_from_slice(&frame[..n]);
    }
    out
}

/// A socket-like source: reads of at most 64 KiB.
struct Chunked<'a>(&'a [u8]);

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(64 << 10);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// What callgrind counts: every message read (or, raw, every byte).
#[inline(never)]
fn consume(mode: &str, bytes: &[u8]) -> (u64, u64) {
    let mut src = Chunked(bytes);
    let (mut n, mut payload) = (0u64, 0u64);
    match mode {
        "raw" => {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match src.read(&mut buf).expect("memory") {
                    0 => break,
                    k => payload += k as u64,
                }
            }
        }
        "message" => {
            let mut reader = FrameReader::new(src);
            while let Some(m) = reader.next_message().expect("clean frames") {
                assert_eq!(u64::from(m.seq), n);
                payload += m.buffers.iter().map(|b| b.data.len() as u64).sum::<u64>();
                n += 1;
            }
        }
        _ => {
            let mut reader = FrameReader::new(src);
            let mut batch = Batch::new();
            loop {
                let more = reader.next_batch(&mut batch, 256).expect("clean frames");
                for m in batch.messages() {
                    assert_eq!(u64::from(m.seq()), n);
                    payload += m.buffers().map(|b| b.data.len() as u64).sum::<u64>();
                    n += 1;
                }
                if !more {
                    break;
                }
            }
        }
    }
    (n, payload)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("batch", String::as_str);
    let buf_len: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let count: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let bytes = frames(buf_len, count);
    let t0 = std::time::Instant::now();
    let (n, payload) = consume(mode, &bytes);
    let dt = t0.elapsed();
    println!(
        "{mode}: {n} messages, {payload} payload bytes, {} stream bytes, {:.1} ns per message",
        bytes.len(),
        dt.as_nanos() as f64 / n.max(1) as f64
    );
}
