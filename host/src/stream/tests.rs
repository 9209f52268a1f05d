//! The batch pass against the general path alone: the same outcomes (messages byte for byte,
//! refusals by kind and offset) and the same counters, whatever the reads' sizes, the batch
//! sizes and the corruption.

use std::io::{self, Read};

use dmapickle_core::frame::{write_frame, Entry, FLAG_NO_DATA_CRC, FLAG_SEQ_RESTART, HEADER_LEN};
use dmapickle_core::{Descriptor, Profile};

use super::{Batch, Counters, FrameReader, ReaderConfig};
use crate::validation::Checker;
use crate::Message;

/// A pickle the strict validator accepts with one 16-byte buffer (an `<i2` array of shape
/// (2, 4)), and refuses with any other buffer list.
const PICKLE: &[u8] = b"\x80\x05}(\x8c\x03seqK\x07\x8c\x03adc\x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x04\x86\x8c\x03<i2\x97K\x00N\x8c\x01Ct\x81u.";

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn frame(flags: u8, seq: u32, pickle: &[u8], bufs: &[Vec<u8>], shared: bool) -> Vec<u8> {
    let mut entries: Vec<Entry> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| Entry::inline(Descriptor::new(1, 64 * i as u32, b.len() as u32)))
        .collect();
    if shared {
        entries.push(Entry::shared(Descriptor::new(7, 0, 8)));
    }
    let inline: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
    let len: usize = bufs.iter().map(Vec::len).sum();
    let mut out = vec![0u8; 64 + pickle.len() + 12 * entries.len() + len];
    let n = write_frame(&mut out, flags, seq, pickle, &entries, &inline).expect("frame fits");
    out.truncate(n);
    out
}

/// A stream of mostly tiny frames with large ones, several buffers, `NO_DATA_CRC`, restarts,
/// sequence gaps and jumps, shared buffers, garbage and (if `damage`) corrupted bytes and a
/// frame cut off by a rebooted device.
fn stream(seed: u64, count: u32, damage: bool) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    let mut seq = 0u32;
    let mut reboot = false;
    for i in 0..count {
        let mut flags = if i == 0 || reboot {
            FLAG_SEQ_RESTART
        } else {
            0
        };
        if reboot {
            seq = 0;
        }
        reboot = false;
        let bufs: Vec<Vec<u8>> = match rng.below(20) {
            0 => vec![vec![7; 40_000]],
            1 => vec![vec![3; 3000], vec![4; 16]],
            2 => vec![vec![5; 5000]],
            3..=9 => vec![],
            10 => vec![vec![9; 1], vec![8; 100], vec![0xF1; 30]],
            // A buffer holding a rebooted device's first frame: all CRCs match, yet the frame
            // is counted corrupt and the one inside it found.
            11 => vec![frame(FLAG_SEQ_RESTART, 0, PICKLE, &[], false)],
            _ => vec![(0..16).map(|k| (k * 13 + i) as u8).collect()],
        };
        if rng.below(15) == 0 {
            flags |= FLAG_NO_DATA_CRC;
        }
        match rng.below(40) {
            _ if flags & FLAG_SEQ_RESTART != 0 => {}
            0 => seq = seq.wrapping_add(3),          // two lost
            1 => seq = seq.wrapping_sub(5),          // a jump back
            2 if i > 0 => flags |= FLAG_SEQ_RESTART, // a reboot
            _ => seq = seq.wrapping_add(1),
        }
        let shared = rng.below(50) == 0;
        let mut f = frame(flags, seq, PICKLE, &bufs, shared);
        if damage {
            match rng.below(30) {
                0 => {
                    // A flipped byte anywhere in the frame.
                    let at = rng.below(f.len() as u64) as usize;
                    f[at] ^= 1 << rng.below(8);
                }
                1 => {
                    // Cut off by a reboot: the rest of the frame never comes.
                    let keep = 1 + rng.below(f.len() as u64 - 1) as usize;
                    f.truncate(keep);
                    reboot = true;
                }
                2 => {
                    // Garbage before the frame, once with a sync word in it.
                    out.extend_from_slice(&[0xF1, 0x50, 0x4B, 0x05, 0, 1, 2]);
                }
                _ => {}
            }
        }
        out.extend_from_slice(&f);
    }
    out
}

/// A source that returns reads of the sizes `sizes` gives, in turn.
struct Pieces<'a> {
    bytes: &'a [u8],
    sizes: Box<dyn FnMut() -> usize + 'a>,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.sizes)().max(1).min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// What a reader delivered and refused, in order, and its counters.
#[derive(Debug, PartialEq)]
struct Outcomes {
    list: Vec<String>,
    counters: Counters,
}

fn describe(m: &Message) -> String {
    let bufs: Vec<String> = m
        .buffers
        .iter()
        .map(|b| {
            assert_eq!(
                b.data.as_ptr() as usize % 64,
                0,
                "inline buffer not aligned"
            );
            format!("{:?}/{:?}/{:?}", b.kind, b.descriptor, &b.data[..])
        })
        .collect();
    format!(
        "msg seq {} restart {} at {} pickle {:?} bufs [{}]",
        m.seq,
        m.restart,
        m.stream_offset,
        &m.pickle[..],
        bufs.join(", ")
    )
}

fn refusal(e: &super::ReadError) -> String {
    format!("refused {} at {:?}", e.kind(), e.offset())
}

#[derive(Clone, Copy, Debug)]
enum How {
    /// The general path only, one frame per call (the reader before batches).
    General,
    /// `next_message`.
    Message,
    /// `next_batch` with this limit, messages borrowed (checked against `to_message`).
    Batch(usize),
    /// `next_batch` with this limit, taken out with `drain`.
    Drain(usize),
}

fn read(
    bytes: &[u8],
    sizes: Box<dyn FnMut() -> usize + '_>,
    cfg: &ReaderConfig,
    check: bool,
    how: How,
) -> Outcomes {
    let src = Pieces { bytes, sizes };
    let mut r = FrameReader::with_config(src, cfg.clone());
    if check {
        r = r.with_checker(Checker::new(Profile::Strict));
    }
    let mut list = Vec::new();
    match how {
        How::General | How::Message => {
            r.batch_pass = !matches!(how, How::General);
            loop {
                match r.next_message() {
                    Ok(Some(m)) => list.push(describe(&m)),
                    Ok(None) => break,
                    Err(e) => {
                        assert!(!e.is_fatal(), "{e}");
                        list.push(refusal(&e));
                    }
                }
            }
        }
        How::Batch(max) | How::Drain(max) => {
            let mut batch = Batch::new();
            loop {
                let more = r.next_batch(&mut batch, max).expect("memory source");
                assert!(batch.len() <= max.max(1), "batch over its limit");
                if let How::Drain(_) = how {
                    for o in batch.drain() {
                        list.push(match o {
                            Ok(m) => describe(&m),
                            Err(e) => refusal(&e),
                        });
                    }
                    assert!(batch.is_empty());
                } else {
                    for o in batch.iter() {
                        list.push(match o {
                            Ok(m) => {
                                let owned = m.to_message();
                                assert_eq!(m.pickle(), &owned.pickle[..]);
                                assert_eq!(m.seq(), owned.seq);
                                assert_eq!(m.restart(), owned.restart);
                                assert_eq!(m.stream_offset(), owned.stream_offset);
                                assert_eq!(m.host_ns(), owned.host_ns);
                                assert_eq!(m.buffer_count(), owned.buffers.len());
                                for (b, o) in m.buffers().zip(&owned.buffers) {
                                    assert_eq!(b.data, &o.data[..]);
                                    assert_eq!(b.data.as_ptr(), o.data.as_ptr(), "not a view");
                                    assert_eq!((b.descriptor, b.kind), (o.descriptor, o.kind));
                                }
                                describe(&owned)
                            }
                            Err(e) => refusal(e),
                        });
                    }
                }
                if !more {
                    break;
                }
            }
        }
    }
    Outcomes {
        list,
        counters: r.counters(),
    }
}

fn configs() -> Vec<(ReaderConfig, bool)> {
    let trusted = ReaderConfig {
        trust_link: true,
        ..ReaderConfig::default()
    };
    let tight = ReaderConfig {
        max_frame: 4000,
        max_buffers: 2,
        max_pickle: 200,
        read_chunk: 4096,
        direct_threshold: 1024,
        ..ReaderConfig::default()
    };
    vec![
        (ReaderConfig::default(), false),
        (trusted.clone(), false),
        (trusted, true),
        (tight, false),
    ]
}

fn every_way_agrees(bytes: &[u8], sizes: impl Fn() -> Box<dyn FnMut() -> usize>, label: &str) {
    for (cfg, check) in configs() {
        let want = read(bytes, sizes(), &cfg, check, How::General);
        assert!(want.counters.frames_ok > 0, "{label}: nothing delivered");
        for how in [
            How::Message,
            How::Batch(1),
            How::Batch(3),
            How::Batch(256),
            How::Drain(7),
            How::Drain(4096),
        ] {
            let got = read(bytes, sizes(), &cfg, check, how);
            if got != want {
                let at = got
                    .list
                    .iter()
                    .zip(&want.list)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.list.len().min(want.list.len()));
                panic!(
                    "{label}, {how:?}, check {check}, {cfg:?}: differs at outcome {at}:\n got  {:?}\n want {:?}\n counters got {:?}\n want {:?}",
                    got.list.get(at),
                    want.list.get(at),
                    got.counters,
                    want.counters
                );
            }
            // Every byte read is in a consumed frame or counted skipped.
            assert_eq!(got.counters.bytes_read, bytes.len() as u64, "{label}");
        }
    }
}

#[test]
fn clean_mixed_stream_same_as_the_general_path() {
    let bytes = stream(1, 600, false);
    every_way_agrees(&bytes, || Box::new(|| 64 << 10), "clean, 64 KiB reads");
    every_way_agrees(&bytes, || Box::new(|| usize::MAX), "clean, whole reads");
}

#[test]
fn corruption_inside_batches_same_as_the_general_path() {
    for seed in 1..=6u64 {
        let bytes = stream(seed * 7919, 500, true);
        let mut rng = Rng(seed);
        let sizes: Vec<usize> = (0..4000).map(|_| 1 + rng.below(9000) as usize).collect();
        every_way_agrees(
            &bytes,
            || {
                let sizes = sizes.clone();
                let mut i = 0;
                Box::new(move || {
                    i += 1;
                    sizes[i % sizes.len()]
                })
            },
            &format!("damaged, seed {seed}, random reads"),
        );
        every_way_agrees(
            &bytes,
            || Box::new(|| 64 << 10),
            &format!("damaged, seed {seed}"),
        );
    }
}

/// Tiny frames around a 3000-byte one and one with three buffers (about 4 KiB in all).
fn small_stream() -> Vec<u8> {
    let tiny = vec![(0..16).collect::<Vec<u8>>()];
    let mut out = Vec::new();
    let mut seq = 0;
    let mut push = |flags: u8, bufs: &[Vec<u8>]| {
        out.extend_from_slice(&frame(flags, seq, PICKLE, bufs, false));
        seq += 1;
    };
    push(FLAG_SEQ_RESTART, &[]);
    for _ in 0..4 {
        push(0, &[]);
    }
    push(0, &tiny);
    push(FLAG_NO_DATA_CRC, &tiny);
    push(0, &[vec![1; 3000]]);
    for _ in 0..3 {
        push(0, &tiny);
    }
    push(0, &[vec![9; 1], vec![8; 100], vec![0xF1; 30]]);
    push(0, &[]);
    push(0, &tiny);
    out
}

#[test]
fn a_read_boundary_at_every_byte_offset() {
    // The first read ends at every offset, the next reads are small, so frames split across
    // reads (and batches end) everywhere.
    let bytes = small_stream();
    for first in 1..bytes.len() {
        for rest in [7usize, 4096] {
            every_way_agrees_quick(&bytes, first, rest);
        }
    }
}

/// [`every_way_agrees`] for one read pattern, default configuration, with and without the
/// validator.
fn every_way_agrees_quick(bytes: &[u8], first: usize, rest: usize) {
    let sizes = || {
        let mut done = false;
        Box::new(move || {
            if done {
                rest
            } else {
                done = true;
                first
            }
        }) as Box<dyn FnMut() -> usize>
    };
    for check in [false, true] {
        let cfg = ReaderConfig {
            trust_link: true,
            direct_threshold: 1024,
            ..ReaderConfig::default()
        };
        let want = read(bytes, sizes(), &cfg, check, How::General);
        for how in [How::Message, How::Batch(2), How::Batch(256)] {
            let got = read(bytes, sizes(), &cfg, check, how);
            assert_eq!(
                got, want,
                "first read {first}, then {rest}, {how:?}, check {check}"
            );
        }
    }
}

#[test]
fn a_corrupt_frame_at_every_position_of_a_batch() {
    // Twenty tiny frames staged in one read; each byte of the stream flipped in turn: the
    // corrupt frame is counted, every other one delivered exactly once.
    let clean = small_stream();
    let cfg = ReaderConfig {
        trust_link: true,
        ..ReaderConfig::default()
    };
    for at in 0..clean.len() {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x20;
        let want = read(&bytes, Box::new(|| usize::MAX), &cfg, false, How::General);
        for how in [How::Message, How::Batch(5), How::Batch(256)] {
            let got = read(&bytes, Box::new(|| usize::MAX), &cfg, false, how);
            assert_eq!(got, want, "byte {at} flipped, {how:?}");
        }
    }
}

#[test]
fn next_message_then_next_batch_lose_nothing() {
    let bytes = stream(11, 300, true);
    let cfg = ReaderConfig::default();
    let want = read(&bytes, Box::new(|| 64 << 10), &cfg, false, How::General);
    let src = Pieces {
        bytes: &bytes,
        sizes: Box::new(|| 64 << 10),
    };
    let mut r = FrameReader::with_config(src, cfg);
    let mut list = Vec::new();
    let mut batch = Batch::new();
    let mut turn = 0u32;
    loop {
        turn += 1;
        if turn.is_multiple_of(3) {
            let more = r.next_batch(&mut batch, 10).expect("memory");
            for o in batch.drain() {
                list.push(match o {
                    Ok(m) => describe(&m),
                    Err(e) => refusal(&e),
                });
            }
            if !more {
                break;
            }
        } else {
            match r.next_message() {
                Ok(Some(m)) => list.push(describe(&m)),
                Ok(None) => break,
                Err(e) => list.push(refusal(&e)),
            }
        }
    }
    // Whatever `next_message` checked ahead is still returned, in order.
    while let Ok(Some(m)) = r.next_message() {
        list.push(describe(&m));
    }
    assert_eq!(list, want.list);
    assert_eq!(r.counters(), want.counters);
}

#[test]
fn a_rebooted_header_at_every_place_of_a_staged_run() {
    // The batch pass looks for a rebooted device's header with one scan over the staged run
    // (64-byte groups shared by neighbouring frames): put one inside a frame of a run of tiny
    // frames at every offset against the groups (garbage before the run shifts it), inside the
    // frame's inline bytes at several places, and one frame that only ends with the header's
    // first bytes; every path must agree.
    let restart = frame(FLAG_SEQ_RESTART, 0, PICKLE, &[], false);
    for shift in 0..64usize {
        let mut bytes = vec![0u8; shift];
        let mut seq = 0;
        let mut push = |bytes: &mut Vec<u8>, bufs: &[Vec<u8>]| {
            bytes.extend_from_slice(&frame(0, seq, PICKLE, bufs, false));
            seq += 1;
        };
        for _ in 0..3 {
            push(&mut bytes, &[]);
        }
        let at = shift % 29;
        let mut inside = vec![0x5A; at];
        inside.extend_from_slice(&restart[..HEADER_LEN]);
        inside.extend(std::iter::repeat_n(0xF1, shift % 5));
        push(&mut bytes, &[inside]);
        push(&mut bytes, &[]);
        // The header's first 23 bytes end the frame's inline bytes: not wholly inside it.
        push(&mut bytes, &[restart[..HEADER_LEN - 1].to_vec()]);
        for _ in 0..3 {
            push(&mut bytes, &[]);
        }
        bytes.extend_from_slice(&restart);
        push(&mut bytes, &[]);
        for rest in [4096, 64 << 10] {
            every_way_agrees_quick(&bytes, usize::MAX, rest);
        }
    }
}
