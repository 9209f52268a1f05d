//! Fault injection: the device's stream through a corrupting channel (bit flips, dropped bytes,
//! inserted garbage, truncation at random points, garbage between frames; seeded), then through
//! a socketpair in random-size writes. Every frame that arrived intact is delivered exactly
//! once, no damaged frame is ever delivered, and every loss is counted. Run with the default
//! reader and with tiny staging/direct-read sizes, so both the staged and the direct paths
//! rescan.

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::faults::{clean_stream, corrupt};
use common::{check_message, spec};
use dmapickle_hal::io::IoLink;
use dmapickle_host::{FrameReader, ReaderConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Seed of the device's messages (`common::spec`).
pub const SEED: u64 = 0xFA_0175;
const COUNT: u32 = 3_000;

fn run(config: ReaderConfig, label: &str, seed: u64) {
    run_with(config, label, seed, false)
}

/// `batch`: take the messages with `next_batch` (the reader's batch path) instead of
/// `next_message`; the same frames must come out, counted the same way.
fn run_with(config: ReaderConfig, label: &str, seed: u64, batch: bool) {
    let (clean, frames) = clean_stream(SEED, COUNT);
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
    let mut take = |m: dmapickle_host::Message| {
        // Byte-identical to what the device sent: a damaged frame is never delivered.
        check_message(&m, m.seq, &spec(SEED, m.seq, 100));
        delivered.push(m.seq);
    };
    if batch {
        let mut out = dmapickle_host::stream::Batch::new();
        let mut batches = 0u32;
        loop {
            let more = reader
                .next_batch(&mut out, 64)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert!(out.len() <= 64, "{label}: a batch over its limit");
            batches += 1;
            for m in out.iter() {
                let m = m.unwrap_or_else(|e| panic!("{label}: {e}"));
                // The borrowed view and the owned message agree.
                let owned = m.to_message();
                assert_eq!(m.pickle(), &owned.pickle[..]);
                assert!(m.buffers().map(|b| b.data).eq(owned.buffer_bytes()));
                take(owned);
            }
            if !more {
                break;
            }
        }
        assert!(batches > 1, "{label}: one batch for the whole stream");
    } else {
        while let Some(m) = reader.next_message().transpose() {
            take(m.unwrap_or_else(|e| panic!("{label}: {e}")));
        }
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
fn corrupted_stream_in_batches() {
    run_with(ReaderConfig::default(), "faults/batch", SEED ^ 0x5EED, true);
    let config = ReaderConfig {
        read_chunk: 64,
        direct_threshold: 256,
        ..ReaderConfig::default()
    };
    run_with(config, "faults/batch-tiny", SEED ^ 0xBA7C, true);
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

/// Each corruption kind alone, on every fifth frame of a clean stream: the counters are exact.
/// `lost` = damaged frames, `corrupt` = damaged frames whose header survived, `bytes_skipped` =
/// every byte not in a delivered frame (the damaged frames and the garbage).
#[test]
fn each_corruption_kind_counts_exactly() {
    let (clean, frames) = clean_stream(SEED, 200);
    type Damage = fn(&mut Vec<u8>, &mut SmallRng);
    let kinds: [(&str, Damage, bool); 5] = [
        (
            "bit flip in the header",
            |f, rng| {
                let at = rng.random_range(0..24);
                f[at] ^= 1 << rng.random_range(0..8);
            },
            false,
        ),
        (
            "bit flip after the header",
            |f, rng| {
                let at = rng.random_range(24..f.len());
                f[at] ^= 1 << rng.random_range(0..8);
            },
            true,
        ),
        (
            "a byte dropped after the header",
            |f, rng| {
                let at = rng.random_range(24..f.len());
                f.remove(at);
            },
            true,
        ),
        (
            "cut off after the header",
            |f, rng| {
                let at = rng.random_range(24..f.len());
                f.truncate(at);
            },
            true,
        ),
        (
            "cut off inside the header",
            |f, rng| {
                let at = rng.random_range(1..24);
                f.truncate(at);
            },
            false,
        ),
    ];
    for (kind, damage, header_survives) in kinds {
        let mut rng = SmallRng::seed_from_u64(0xD0);
        let (mut stream, mut damaged, mut garbage) = (Vec::new(), 0u64, 0u64);
        let mut delivered_bytes = 0u64;
        for (i, r) in frames.iter().enumerate() {
            let mut f = clean[r.clone()].to_vec();
            if i % 5 == 2 {
                damage(&mut f, &mut rng);
                damaged += 1;
            } else {
                delivered_bytes += f.len() as u64;
            }
            if i % 7 == 3 {
                // Garbage between frames (no sync word in it).
                let g: Vec<u8> = (0..rng.random_range(1..100))
                    .map(|k| k as u8 & 0x7F)
                    .collect();
                garbage += g.len() as u64;
                stream.extend_from_slice(&g);
            }
            stream.extend_from_slice(&f);
        }
        let mut reader = FrameReader::new(&stream[..]);
        let mut ok = 0u64;
        while let Some(m) = reader.next_message().transpose() {
            let m = m.unwrap_or_else(|e| panic!("{kind}: {e}"));
            check_message(&m, m.seq, &spec(SEED, m.seq, 100));
            ok += 1;
        }
        let c = reader.counters();
        assert_eq!(ok, 200 - damaged, "{kind}");
        assert_eq!(c.lost, damaged, "{kind}: lost");
        assert_eq!(c.refused, 0, "{kind}: refused");
        let corrupt = if header_survives { damaged } else { 0 };
        assert_eq!(c.corrupt, corrupt, "{kind}: corrupt");
        assert_eq!(c.bytes_read, stream.len() as u64);
        assert_eq!(
            c.bytes_skipped,
            stream.len() as u64 - delivered_bytes,
            "{kind}: skipped (garbage {garbage} B)"
        );
    }
}

/// A device reset in the middle of a large frame: the rebooted device's first frame (with
/// `SEQ_RESTART`) arrives inside the cut-off frame's claimed length. The reader must deliver it
/// as soon as its bytes are in, not after the claimed 4 MiB (which never come: the link stays
/// open and silent).
#[test]
fn a_reboot_header_ends_the_wait_for_a_cut_off_frame() {
    use common::streams::{f, fi, NONE};
    use dmapickle_core::frame::FLAG_SEQ_RESTART;
    use dmapickle_core::Descriptor;
    use std::sync::mpsc;
    use std::time::Duration;
    let big = vec![0x5A; 4 << 20];
    let cut = fi(
        0,
        41,
        b"\x80\x05\x97.",
        &[(Descriptor::new(1, 0, big.len() as u32), &big)],
    );
    let mut stream = cut[..5000].to_vec();
    stream.extend_from_slice(&f(FLAG_SEQ_RESTART, 0, NONE));
    stream.extend_from_slice(&f(0, 1, NONE));
    for config in [
        ReaderConfig::default(),
        ReaderConfig {
            read_chunk: 64,
            direct_threshold: 256,
            ..ReaderConfig::default()
        },
    ] {
        let (rx, mut tx) = std::os::unix::net::UnixStream::pair().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let bytes = stream.clone();
        let writer = std::thread::spawn(move || {
            for piece in bytes.chunks(999) {
                tx.write_all(piece).unwrap();
            }
            // Keep the link open (a live device) until the reader has what it needs.
            let _ = done_rx.recv_timeout(Duration::from_secs(20));
        });
        let (got_tx, got_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut r = FrameReader::with_config(rx, config);
            for _ in 0..2 {
                let m = r.next_message().unwrap().unwrap();
                got_tx.send((m.seq, m.restart, r.counters())).unwrap();
            }
        });
        let first = got_rx.recv_timeout(Duration::from_secs(5));
        let second = got_rx.recv_timeout(Duration::from_secs(5));
        done_tx.send(()).unwrap();
        writer.join().unwrap();
        reader.join().unwrap();
        let (seq, restart, c) = first.expect("the reboot frame waited for the cut-off frame");
        assert_eq!((seq, restart), (0, true));
        assert_eq!((c.corrupt, c.restarts, c.bytes_skipped), (1, 1, 5000));
        assert_eq!(second.expect("the frame after the reboot").0, 1);
    }
}

/// Large frames back to back through a socketpair, so each direct payload read also brings
/// the data CRC and the next header and body (one vectored read), with the data CRC on the
/// reader and on the helper thread: a frame whose payload has one flipped byte is reported
/// (counted corrupt, its first byte skipped) and every other frame is delivered, byte-exact,
/// once; every byte is counted once.
#[test]
fn a_bad_data_crc_between_direct_reads_loses_only_its_frame() {
    use common::streams::fi;
    use dmapickle_core::frame::FLAG_SEQ_RESTART;
    use dmapickle_core::Descriptor;
    let frames: Vec<Vec<u8>> = (0..12u32)
        .map(|seq| {
            let len = [20_000usize, 70_000, 300_000, 1 << 20][seq as usize % 4];
            let data: Vec<u8> = (0..len).map(|i| (i as u32 ^ seq) as u8).collect();
            let flags = if seq == 0 { FLAG_SEQ_RESTART } else { 0 };
            let d = Descriptor::new(1, 0, len as u32);
            fi(flags, seq, b"\x80\x05\x97.", &[(d, &data)])
        })
        .collect();
    let mut stream = Vec::new();
    for (seq, frame) in frames.iter().enumerate() {
        let start = stream.len();
        stream.extend_from_slice(frame);
        if seq == 6 {
            // A payload byte near the end: the CRC is checked after the last direct read.
            let at = start + frame.len() - 100;
            stream[at] ^= 0x10;
        }
    }
    for helper_min in [usize::MAX, 0] {
        let (rx, mut tx) = std::os::unix::net::UnixStream::pair().unwrap();
        let bytes = stream.clone();
        let writer = std::thread::spawn(move || tx.write_all(&bytes).unwrap());
        let mut reader =
            FrameReader::with_config(rx, ReaderConfig::default()).with_crc_helper_min(helper_min);
        let mut seqs = Vec::new();
        while let Some(m) = reader.next_message().unwrap() {
            let len = m.buffers[0].data.len();
            let want: Vec<u8> = (0..len).map(|i| (i as u32 ^ m.seq) as u8).collect();
            assert!(m.buffers[0].data[..] == want[..], "frame {} changed", m.seq);
            seqs.push(m.seq);
        }
        writer.join().unwrap();
        let c = reader.counters();
        let want: Vec<u32> = (0..12).filter(|&s| s != 6).collect();
        assert_eq!(seqs, want, "helper from {helper_min}");
        assert_eq!((c.frames_ok, c.corrupt, c.lost), (11, 1, 1));
        assert_eq!(c.bytes_read, stream.len() as u64);
        let delivered: usize = frames
            .iter()
            .enumerate()
            .filter(|(s, _)| *s != 6)
            .map(|(_, f)| f.len())
            .sum();
        assert_eq!(c.bytes_skipped, (stream.len() - delivered) as u64);
        // The payloads were read straight into place (a few staged pieces: the first frame's,
        // and the bytes after the corrupt frame, hunted again from the stage).
        assert!(c.payload_copied < stream.len() as u64 / 20, "{c:?}");
    }
}
