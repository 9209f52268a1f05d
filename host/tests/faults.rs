//! Fault injection: the device's stream through a corrupting channel (bit flips, dropped bytes,
//! inserted garbage, truncation at random points, garbage between frames; seeded), then through
//! a socketpair in random-size writes. Every frame that arrived intact is delivered exactly
//! once, no damaged frame is ever delivered, and every loss is counted. Run with the default
//! reader and with tiny staging/direct-read sizes, so both the staged and the direct paths
//! rescan.

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::{check_message, spec, Device};
use dmapickle_hal::io::IoLink;
use dmapickle_host::{FrameReader, ReaderConfig};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

const SEED: u64 = 0xFA_0175;
const COUNT: u32 = 3_000;

#[derive(Debug, Default)]
struct Damage {
    flipped: u32,
    dropped: u32,
    inserted: u32,
    truncated: u32,
    garbage_between: u32,
}

/// The clean stream and each frame's byte range in it.
fn clean_stream() -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut device = Device::new();
    let mut link = IoLink::new(Vec::new());
    let mut frames = Vec::new();
    for i in 0..COUNT {
        let start = link.get_mut().len();
        device.publish(&mut link, i, &spec(SEED, i, 100));
        frames.push(start..link.get_mut().len());
    }
    (link.into_inner(), frames)
}

/// Damage about 40% of the frames; returns the corrupted stream and the set of intact frames.
fn corrupt(
    clean: &[u8],
    frames: &[std::ops::Range<usize>],
    seed: u64,
) -> (Vec<u8>, BTreeSet<u32>, Damage) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(clean.len() + clean.len() / 8);
    let mut intact = BTreeSet::new();
    let mut d = Damage::default();
    let last = frames.len() - 1;
    for (i, r) in frames.iter().enumerate() {
        let mut f = clean[r.clone()].to_vec();
        let roll = if i == 0 || i == last {
            0
        } else {
            rng.random_range(0..100)
        };
        let garbage = |n: usize, rng: &mut SmallRng| {
            let mut g = vec![0u8; n];
            rng.fill_bytes(&mut g);
            g
        };
        match roll {
            60..=67 => {
                let at = rng.random_range(0..f.len());
                f[at] ^= 1 << rng.random_range(0..8);
                d.flipped += 1;
            }
            68..=75 => {
                let at = rng.random_range(0..f.len());
                let n = rng.random_range(1..=8).min(f.len() - at);
                f.drain(at..at + n);
                d.dropped += 1;
            }
            76..=83 => {
                let at = rng.random_range(1..f.len());
                let n = rng.random_range(1..=64);
                let g = garbage(n, &mut rng);
                f.splice(at..at, g);
                d.inserted += 1;
            }
            84..=91 => {
                f.truncate(rng.random_range(0..f.len()));
                d.truncated += 1;
            }
            92..=99 => {
                let n = rng.random_range(1..=300);
                out.extend(garbage(n, &mut rng));
                intact.insert(i as u32);
                d.garbage_between += 1;
            }
            _ => {
                intact.insert(i as u32);
            }
        }
        out.extend_from_slice(&f);
    }
    (out, intact, d)
}

fn run(config: ReaderConfig, label: &str, seed: u64) {
    let (clean, frames) = clean_stream();
    let (stream, intact, damage) = corrupt(&clean, &frames, seed);
    let (rx, mut tx) = std::os::unix::net::UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        let mut rng = SmallRng::seed_from_u64(seed ^ 1);
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = rng.random_range(1..=70_000).min(rest.len());
            tx.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
    });
    let mut reader = FrameReader::with_config(rx, config);
    let mut delivered = Vec::new();
    while let Some(m) = reader.next_message().transpose() {
        let m = m.unwrap_or_else(|e| panic!("{label}: {e}"));
        // Byte-identical to what the device sent: a damaged frame is never delivered.
        check_message(&m, m.seq, &spec(SEED, m.seq, 100));
        delivered.push(m.seq);
    }
    writer.join().unwrap();
    let c = reader.counters();
    let sent = u64::from(COUNT);
    println!(
        "{label}: sent {sent}, intact {}, delivered {}, damage {damage:?}\n{label}: counters {c:?}",
        intact.len(),
        delivered.len()
    );
    let got: BTreeSet<u32> = delivered.iter().copied().collect();
    assert_eq!(
        got.len(),
        delivered.len(),
        "{label}: a frame was delivered twice"
    );
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "{label}: out of order"
    );
    let missed: Vec<_> = intact.difference(&got).collect();
    assert!(
        missed.is_empty(),
        "{label}: intact frames not delivered: {missed:?}"
    );
    let bogus: Vec<_> = got.difference(&intact).collect();
    assert!(
        bogus.is_empty(),
        "{label}: damaged frames delivered: {bogus:?}"
    );
    // Every loss is counted: first and last frames are intact, so the gaps add up exactly.
    assert_eq!(c.frames_ok, delivered.len() as u64);
    assert_eq!(
        c.lost,
        sent - c.frames_ok,
        "{label}: lost frames by sequence gaps"
    );
    assert_eq!(c.refused, 0);
    assert!(c.bytes_skipped > 0 && c.corrupt > 0);
}

#[test]
fn corrupted_stream_default_reader() {
    run(ReaderConfig::default(), "faults/default", SEED);
}

#[test]
fn corrupted_stream_tiny_staging() {
    let config = ReaderConfig {
        read_chunk: 64,
        direct_threshold: 256,
        ..ReaderConfig::default()
    };
    run(config, "faults/tiny", SEED ^ 0xABCD);
}

#[test]
fn a_header_claiming_gigabytes_is_refused_not_allocated() {
    use dmapickle_core::frame::Header;
    // A valid header (its CRC matches) claiming 4 GiB of inline bytes and a 4 GiB pickle,
    // followed by a good frame: the reader refuses the first without allocating and goes on.
    let liar = Header {
        flags: 0,
        buffers: u16::MAX,
        seq: 5,
        pickle_len: u32::MAX,
        inline_len: u32::MAX,
    };
    let mut stream = liar.encode().to_vec();
    let mut out = vec![0u8; 64];
    let n = dmapickle_core::frame::write_frame(&mut out, 0, 6, b"\x80\x05N.", &[], &[]).unwrap();
    stream.extend_from_slice(&out[..n]);
    let mut reader = FrameReader::new(&stream[..]);
    match reader.next_message() {
        Err(e @ dmapickle_host::ReadError::TooLarge { .. }) => println!("refused: {e}"),
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(reader.next_message().unwrap().unwrap().seq, 6);
    assert_eq!(reader.counters().refused, 1);
}

#[test]
fn frames_without_data_crc_need_a_trusted_link() {
    use dmapickle_core::frame::{write_frame, Entry, FLAG_NO_DATA_CRC};
    use dmapickle_hal::{DmaBuf, Outgoing, Publisher};
    // The device side: a publisher that skips the data CRC.
    let publisher = Publisher::new().without_data_crc();
    let mut link = IoLink::new(Vec::new());
    let mut buf = DmaBuf::new(1, 0, Box::leak(Box::new([0u8; 4])));
    buf.fill_from(&[9, 8, 7, 6]).unwrap();
    let d = [buf.descriptor()];
    publisher
        .publish(&mut link, b"\x80\x05\x97.", &d, [Outgoing::Inline(buf)])
        .unwrap();
    let stream = link.into_inner();
    assert_eq!(&stream[stream.len() - 4..], &[0, 0, 0, 0]);
    let mut same = vec![0u8; stream.len()];
    let entries = [Entry::inline(d[0])];
    let flags = FLAG_NO_DATA_CRC | dmapickle_core::frame::FLAG_SEQ_RESTART;
    write_frame(
        &mut same,
        flags,
        0,
        b"\x80\x05\x97.",
        &entries,
        &[&[9, 8, 7, 6]],
    )
    .unwrap();
    assert_eq!(same, stream, "publisher and reference encoder agree");
    // Refused by default...
    let mut reader = FrameReader::new(&stream[..]);
    match reader.next_message() {
        Err(e @ dmapickle_host::ReadError::UncheckedData { .. }) => println!("refused: {e}"),
        other => panic!("not refused: {other:?}"),
    }
    // ...delivered when the link is trusted.
    let config = ReaderConfig {
        trust_link: true,
        ..ReaderConfig::default()
    };
    let m = FrameReader::with_config(&stream[..], config)
        .next_message()
        .unwrap()
        .unwrap();
    assert_eq!(&m.buffers[0].data[..], &[9, 8, 7, 6]);
}
