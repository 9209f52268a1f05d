//! The worked examples of docs/wire-format.md, decoded from the exact bytes of its `hex` blocks
//! (parsed out of the markdown, so the document and the code cannot drift), and re-encoded by
//! the core frame writer to the same bytes.

use std::collections::HashMap;
use std::io::Cursor;

use dmapickle_core::frame::{write_frame, BufferKind, Entry, FLAG_SEQ_RESTART};
use dmapickle_core::Descriptor;
use dmapickle_hal::file_region::FileRegion;
use dmapickle_host::region::RegionMap;
use dmapickle_host::{FrameReader, ReaderConfig};

mod common;

fn examples() -> HashMap<String, Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire-format.md");
    let doc = std::fs::read_to_string(path).expect("docs/wire-format.md");
    let mut out = HashMap::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for line in doc.lines() {
        if let Some((name, bytes)) = current.as_mut() {
            if line.trim_start().starts_with("```") {
                out.insert(name.clone(), std::mem::take(bytes));
                current = None;
                continue;
            }
            let data = line.split('#').next().unwrap_or("");
            for tok in data.split_whitespace() {
                bytes.push(
                    u8::from_str_radix(tok, 16)
                        .unwrap_or_else(|_| panic!("{name}: bad hex {tok:?}")),
                );
            }
        } else if let Some(name) = line.trim().strip_prefix("```hex ") {
            current = Some((name.trim().to_string(), Vec::new()));
        }
    }
    assert!(current.is_none(), "unterminated hex block");
    out
}

fn encode(flags: u8, seq: u32, pickle: &[u8], entries: &[Entry], inline: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let n = write_frame(&mut out, flags, seq, pickle, entries, inline).unwrap();
    out.truncate(n);
    out
}

#[test]
fn example_1_message_without_buffers() {
    let ex = &examples()["example-1"];
    let mut r = FrameReader::new(Cursor::new(ex.clone()));
    let m = r.next_message().unwrap().unwrap();
    assert_eq!((m.seq, m.restart), (0, true));
    assert_eq!(&m.pickle[..], b"\x80\x05K\x2a.");
    assert!(m.buffers.is_empty());
    assert!(r.next_message().unwrap().is_none());
    assert_eq!(r.counters().frames_ok, 1);
    assert_eq!(r.counters().bytes_skipped, 0);
    assert_eq!(
        &encode(FLAG_SEQ_RESTART, 0, b"\x80\x05K\x2a.", &[], &[]),
        ex
    );
}

#[test]
fn example_2_one_inline_buffer() {
    let ex = &examples()["example-2"];
    let m = FrameReader::new(Cursor::new(ex.clone()))
        .next_message()
        .unwrap()
        .unwrap();
    assert_eq!(m.seq, 1);
    assert!(!m.restart);
    assert_eq!(&m.pickle[..], b"\x80\x05\x97.");
    assert_eq!(m.buffers.len(), 1);
    let b = &m.buffers[0];
    assert_eq!(b.kind, BufferKind::Inline);
    assert_eq!(b.descriptor, Descriptor::new(1, 0x100, 4));
    assert_eq!(&b.data[..], &[1, 2, 3, 4]);
    assert_eq!(
        b.data.as_ptr() as usize % 64,
        0,
        "inline buffers are 64-byte aligned"
    );
    let entries = [Entry::inline(Descriptor::new(1, 0x100, 4))];
    assert_eq!(
        &encode(0, 1, b"\x80\x05\x97.", &entries, &[&[1, 2, 3, 4]]),
        ex
    );
}

#[test]
fn examples_3_and_5_shared_buffer_and_its_release() {
    let ex3 = &examples()["example-3"];
    let ex5 = &examples()["example-5"];
    let entries = [Entry::shared(Descriptor::new(2, 0x40, 16).read_only())];
    assert_eq!(&encode(0, 2, b"\x80\x05\x97\x98.", &entries, &[]), ex3);

    // The device's region 2: a control block with K = 4, so buffers start at 0x40.
    let path = std::env::temp_dir().join(format!("dmapickle-wire-ex3-{}", std::process::id()));
    let device = FileRegion::create(&path, 2, 64 + 64, 16, 4).unwrap();
    let mut slot = device.region().acquire().unwrap();
    slot.fill_from(&[0xAB; 16]).unwrap();
    assert_eq!(slot.descriptor(), Descriptor::new(2, 0x40, 16));

    let mut regions = RegionMap::new();
    let region = regions.open(2, &path).unwrap();
    let mut reader = FrameReader::new(Cursor::new(ex3.clone())).with_regions(regions);
    let m = reader.next_message().unwrap().unwrap();
    assert_eq!(m.seq, 2);
    let b = &m.buffers[0];
    assert_eq!((b.kind, b.readonly()), (BufferKind::Shared, true));
    assert_eq!(&b.data[..], &[0xAB; 16], "a view of the region itself");
    assert_eq!(region.stats().outstanding, 1);
    let before = std::fs::read(&path).unwrap();
    assert_eq!(
        &before[8..12],
        &[0, 0, 0, 0],
        "nothing released while the view lives"
    );
    drop(m);
    // Dropping the last view wrote the release: the control block is exactly example 5.
    let after = std::fs::read(&path).unwrap();
    assert_eq!(&after[..64], &ex5[..]);
    assert_eq!(region.stats().posted, 1);
    drop(slot);
    drop(device);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn example_4_resynchronises_after_garbage() {
    let ex = &examples()["example-4"];
    let mut r = FrameReader::new(Cursor::new(ex.clone()));
    let m = r.next_message().unwrap().unwrap();
    assert_eq!(&m.pickle[..], b"\x80\x05K\x2a.");
    assert_eq!(m.stream_offset, 4);
    assert_eq!(r.counters().bytes_skipped, 4);
    assert_eq!(&ex[4..], &examples()["example-1"][..]);
}

#[test]
fn example_6_a_frame_hidden_in_a_refused_frame_is_not_delivered() {
    let ex = examples()["example-6"].clone();
    let mut r = FrameReader::new(Cursor::new(ex.clone()));
    match r.next_message() {
        Err(e) => assert_eq!((e.kind(), e.offset()), ("UnknownEntryFlags", Some(0))),
        other => panic!("not refused: {other:?}"),
    }
    assert!(r.next_message().unwrap().is_none());
    let c = r.counters();
    assert_eq!(
        (c.refused, c.frames_ok, c.corrupt, c.bytes_skipped),
        (1, 0, 0, 0)
    );
    // The inline bytes are a complete frame of their own (seq 4), delivered when read alone.
    let inner = FrameReader::new(&ex[44..81])
        .next_message()
        .unwrap()
        .unwrap();
    assert_eq!(inner.seq, 4);
}

/// Every rule of "Reading a stream" over its byte-exact stream: the messages, refusals (kind and
/// offset) and counters, read in one go, in 1..7-byte pieces and with tiny staging.
#[test]
fn every_reading_rule_over_its_stream() {
    use common::streams::{cases, read_all, reader, Trickle};
    use rand::SeedableRng;
    let dir = std::env::temp_dir().join(format!("dmapickle-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for case in cases() {
        let region = case.region.as_ref().map(|bytes| {
            let p = dir.join(case.name);
            std::fs::write(&p, bytes).unwrap();
            p
        });
        let region = region.as_deref();
        let (got, lines) = read_all(reader(&case.bytes[..], &case.config, region));
        assert_eq!(got, case.expect, "{}", case.name);
        // Every byte read is in a consumed frame or skipped, exactly once.
        let c = lines.last().unwrap();
        assert!(
            c.contains(&format!("bytes_read={}", case.bytes.len())),
            "{}: {c}",
            case.name
        );
        let trickle = Trickle {
            bytes: &case.bytes,
            rng: rand::rngs::SmallRng::seed_from_u64(7),
            max: 7,
        };
        let tiny = ReaderConfig {
            read_chunk: 16,
            direct_threshold: 8,
            ..case.config.clone()
        };
        for (how, r) in [
            ("trickle", read_all(reader(trickle, &case.config, region))),
            (
                "tiny staging",
                read_all(reader(&case.bytes[..], &tiny, region)),
            ),
        ] {
            assert_eq!(r.1, lines, "{} read {how}", case.name);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn example_7_a_command() {
    use dmapickle_core::control::{encode_request, parse, Direction, Parsed, Request};
    let ex = &examples()["example-7"];
    let Parsed::Frame {
        version,
        id,
        payload,
        len,
    } = parse(Direction::Down, ex)
    else {
        panic!("example-7 is not a command frame");
    };
    assert_eq!((version, id, len), (1, 7, ex.len()));
    let req = Request::decode(payload).unwrap();
    assert_eq!(req, Request::SetRate { rate_hz: 32_000 });
    let mut out = [0u8; 32];
    assert_eq!(encode_request(7, &req, &mut out).unwrap(), &ex[..]);
    // A reply reader does not take a command for a reply.
    assert_eq!(parse(Direction::Up, ex), Parsed::Skip(ex.len()));
}

#[test]
fn example_8_a_reply_among_data_frames() {
    use dmapickle_core::control::{encode_reply, Reply};
    use dmapickle_host::control::ReplyScanner;
    let ex = examples()["example-8"].clone();
    let mut r = FrameReader::new(Cursor::new(ex.clone()));
    let m = r.next_message().unwrap().unwrap();
    assert_eq!((m.seq, &m.pickle[..]), (0, &b"\x80\x05K\x2a."[..]));
    assert!(r.next_message().unwrap().is_none());
    let c = r.counters();
    assert_eq!((c.frames_ok, c.corrupt, c.refused, c.lost), (1, 0, 0, 0));
    assert_eq!(c.bytes_skipped, 17);
    // The reply is exactly the skipped bytes, and the control client finds it there.
    let mut scan = ReplyScanner::default();
    scan.feed(&ex[..17]);
    assert_eq!(scan.take(7), Some(Reply::Applied { at_seq: 300 }));
    let mut out = [0u8; 32];
    assert_eq!(
        encode_reply(7, &Reply::Applied { at_seq: 300 }, &mut out).unwrap(),
        &ex[..17]
    );
}
