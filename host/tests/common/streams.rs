//! Byte-exact streams, one per reading rule of docs/wire-format.md ("Reading a stream"), with
//! what the reader must report for each; and the canonical text lines in which the Rust reader
//! and the Python spec decoder (tests/wire/spec_decoder.py) both describe what they read.

use std::io::Read;
use std::path::Path;

use dmapickle_core::frame::{
    crc32c, write_frame, Entry, Header, FLAG_NO_DATA_CRC, FLAG_SEQ_RESTART, HEADER_LEN,
};
use dmapickle_core::release::{control_len, preamble};
use dmapickle_core::Descriptor;
use dmapickle_host::region::RegionMap;
use dmapickle_host::{FrameReader, ReaderConfig};

/// The pickle of `None`: every small frame below carries it (frame length 36).
pub const NONE: &[u8] = b"\x80\x05N.";

/// A frame without buffers.
pub fn f(flags: u8, seq: u32, pickle: &[u8]) -> Vec<u8> {
    fi(flags, seq, pickle, &[])
}

/// A frame with inline buffers `(descriptor, bytes)`.
pub fn fi(flags: u8, seq: u32, pickle: &[u8], bufs: &[(Descriptor, &[u8])]) -> Vec<u8> {
    let entries: Vec<Entry> = bufs.iter().map(|(d, _)| Entry::inline(*d)).collect();
    let inline: Vec<&[u8]> = bufs.iter().map(|(_, b)| *b).collect();
    let total: usize = inline.iter().map(|b| b.len()).sum();
    let mut out = vec![0u8; 64 + pickle.len() + 12 * entries.len() + total];
    let n = write_frame(&mut out, flags, seq, pickle, &entries, &inline).unwrap();
    out.truncate(n);
    out
}

/// A frame with any table bytes, inline length and data CRC field, every other CRC correct.
pub fn raw(
    flags: u8,
    seq: u32,
    pickle: &[u8],
    table: &[[u8; 12]],
    inline_len: u32,
    inline: &[u8],
    data_crc: u32,
) -> Vec<u8> {
    let h = Header {
        flags,
        buffers: table.len() as u16,
        seq,
        pickle_len: pickle.len() as u32,
        inline_len,
    };
    let mut out = h.encode().to_vec();
    let mut body = pickle.to_vec();
    table.iter().for_each(|e| body.extend_from_slice(e));
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32c(&body).to_le_bytes());
    out.extend_from_slice(inline);
    out.extend_from_slice(&data_crc.to_le_bytes());
    out
}

/// `frame` with its version byte set to `v` and the header CRC made valid again.
pub fn with_version(mut frame: Vec<u8>, v: u8) -> Vec<u8> {
    frame[4] = v;
    let crc = crc32c(&frame[..20]).to_le_bytes();
    frame[20..24].copy_from_slice(&crc);
    frame
}

/// `frame` with its header flags set to `flags` and the header CRC made valid again.
pub fn with_flags(mut frame: Vec<u8>, flags: u8) -> Vec<u8> {
    frame[5] = flags;
    let crc = crc32c(&frame[..20]).to_le_bytes();
    frame[20..24].copy_from_slice(&crc);
    frame
}

/// An entry's 12 bytes: region, flags, reserved, offset, len.
pub fn entry(region: u16, flags: u8, reserved: u8, offset: u32, len: u32) -> [u8; 12] {
    let mut e = [0u8; 12];
    e[..2].copy_from_slice(&region.to_le_bytes());
    e[2] = flags;
    e[3] = reserved;
    e[4..8].copy_from_slice(&offset.to_le_bytes());
    e[8..].copy_from_slice(&len.to_le_bytes());
    e
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A shared region file of `len` bytes with a valid control block of capacity 4 (buffers from
/// 0x40), the bytes at `0x40..0x50` set to `0xAB`.
pub fn region_file(len: usize) -> Vec<u8> {
    let mut r = vec![0u8; len];
    r[..8].copy_from_slice(&preamble(4).unwrap());
    r[control_len(4)..control_len(4) + 16].fill(0xAB);
    r
}

/// One rule's stream and what the reader must report.
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub config: ReaderConfig,
    /// Contents of shared region 2 (written to a file), if the case maps one.
    pub region: Option<Vec<u8>>,
    /// `seq N` per delivery, `KIND@OFFSET` per refusal, in order; then the counters as
    /// `ok corrupt refused lost restarts jumps skipped`.
    pub expect: &'static str,
}

fn case(name: &'static str, bytes: Vec<u8>, expect: &'static str) -> Case {
    Case {
        name,
        bytes,
        config: ReaderConfig::default(),
        region: None,
        expect,
    }
}

/// Every rule of "Reading a stream", as a stream.
pub fn cases() -> Vec<Case> {
    let d = |len: u32| Descriptor::new(1, 0, len);
    // A complete frame (seq 4, 36 bytes) to hide in other frames' payloads.
    let hidden = f(0, 4, NONE);
    let hidden_len = hidden.len() as u32;
    let mut out =
        vec![
        case(
            "garbage-before-a-frame",
            cat(&[&[0x00, 0xF1, 0x50, 0xFF], &f(FLAG_SEQ_RESTART, 0, NONE)]),
            "seq 0 | 1 0 0 0 1 0 4",
        ),
        case("header-crc-fails", {
            let mut bad = f(0, 1, NONE);
            bad[21] ^= 0x10;
            cat(&[&bad, &f(0, 2, NONE)])
        }, "seq 2 | 1 0 0 0 0 0 36"),
        case(
            "unsupported-version",
            cat(&[&with_version(f(0, 1, NONE), 2), &f(0, 2, NONE)]),
            "UnsupportedVersion@0 seq 2 | 1 0 1 0 0 0 36",
        ),
        case(
            "unknown-frame-flags",
            cat(&[&with_flags(f(0, 1, NONE), 0x80), &f(0, 2, NONE)]),
            "UnknownFrameFlags@0 seq 2 | 1 0 1 0 0 0 36",
        ),
        Case {
            config: ReaderConfig {
                max_frame: 36,
                ..ReaderConfig::default()
            },
            ..case(
                "max-frame-is-inclusive",
                cat(&[&f(0, 1, NONE), &f(0, 2, b"\x80\x05NN."), &f(0, 3, NONE)]),
                // The refused frame is not consumed: its seq 2 is a gap.
                "seq 1 TooLarge@36 seq 3 | 2 0 1 1 0 0 37",
            )
        },
        Case {
            config: ReaderConfig {
                max_pickle: 4,
                max_buffers: 1,
                ..ReaderConfig::default()
            },
            ..case(
                "max-pickle-and-max-buffers-are-inclusive",
                cat(&[
                    &fi(0, 1, b"\x80\x05\x97.", &[(d(2), b"ab")]),
                    &f(0, 2, b"\x80\x05NN."),
                    &fi(0, 3, NONE, &[(d(0), b""), (d(0), b"")]),
                ]),
                "seq 1 TooLarge@50 TooLarge@87 | 1 0 2 0 0 0 97",
            )
        },
        case(
            "hidden-frame-in-unknown-entry-flags",
            cat(&[
                &raw(0, 3, b"\x80\x05\x97.", &[entry(1, 0x04, 0, 0, hidden_len)], hidden_len,
                    &hidden, crc32c(&hidden)),
                &f(0, 4, NONE),
            ]),
            "UnknownEntryFlags@0 seq 4 | 1 0 1 0 0 0 0",
        ),
        case(
            "hidden-frame-in-reserved-byte",
            raw(0, 3, b"\x80\x05\x97.", &[entry(1, 0, 0x01, 0, hidden_len)], hidden_len, &hidden,
                crc32c(&hidden)),
            "UnknownEntryFlags@0 | 0 0 1 0 0 0 0",
        ),
        case("hidden-frame-in-inline-length-mismatch", {
            let inline = cat(&[&hidden, b"x"]);
            raw(0, 3, b"\x80\x05\x97.", &[entry(1, 0, 0, 0, hidden_len)], hidden_len + 1,
                &inline, crc32c(&inline))
        }, "InlineLength@0 | 0 0 1 0 0 0 0"),
        case(
            "hidden-frame-in-unchecked-data",
            cat(&[
                &fi(FLAG_NO_DATA_CRC, 3, b"\x80\x05\x97.", &[(d(hidden_len), &hidden)]),
                &f(0, 5, NONE),
            ]),
            "UncheckedData@0 seq 5 | 1 0 1 1 0 0 0",
        ),
        Case {
            config: ReaderConfig {
                trust_link: true,
                ..ReaderConfig::default()
            },
            ..case(
                "unchecked-data-on-a-trusted-link",
                fi(FLAG_NO_DATA_CRC, 3, b"\x80\x05\x97.", &[(d(hidden_len), &hidden)]),
                "seq 3 | 1 0 0 0 0 0 0",
            )
        },
        Case {
            config: ReaderConfig {
                trust_link: true,
                ..ReaderConfig::default()
            },
            ..case(
                // The field must be zero: this frame is corrupt, so its payload is re-scanned.
                "no-data-crc-with-a-nonzero-field",
                raw(FLAG_NO_DATA_CRC, 3, b"\x80\x05\x97.", &[entry(1, 0, 0, 0, hidden_len)],
                    hidden_len, &hidden, 1),
                "seq 4 | 1 1 0 0 0 0 48",
            )
        },
        case("body-crc-fails", {
            let mut bad = f(0, 1, NONE);
            bad[26] ^= 0x01;
            cat(&[&bad, &f(0, 2, NONE)])
        }, "seq 2 | 1 1 0 0 0 0 36"),
        case("data-crc-fails", {
            let mut bad = fi(0, 1, b"\x80\x05\x97.", &[(d(8), b"abcdefgh")]);
            bad[46] ^= 0x01;
            cat(&[&bad, &f(0, 2, NONE)])
        }, "seq 2 | 1 1 0 0 0 0 56"),
        case(
            "cut-off-frame-at-the-end",
            cat(&[&f(FLAG_SEQ_RESTART, 0, NONE), &f(0, 1, NONE)[..30]]),
            "seq 0 | 1 1 0 0 1 0 30",
        ),
        case(
            "partial-header-at-the-end",
            cat(&[&f(0, 0, NONE), &f(0, 1, NONE)[..10]]),
            "seq 0 | 1 0 0 0 0 0 10",
        ),
        case(
            "cut-off-frame-then-frames",
            cat(&[
                &f(0, 0, NONE),
                &fi(0, 1, NONE, &[(d(64), &[7u8; 64])])[..50],
                &f(0, 2, NONE),
                &f(0, 3, NONE),
            ]),
            "seq 0 seq 2 seq 3 | 3 1 0 1 0 0 50",
        ),
        case(
            // A reboot header inside a frame cuts it, even when its CRCs would match.
            "reboot-header-in-a-payload",
            {
                let reboot = f(FLAG_SEQ_RESTART, 0, NONE);
                fi(0, 9, b"\x80\x05\x97.", &[(d(36), &reboot)])
            },
            "seq 0 | 1 1 0 0 1 0 48",
        ),
        case(
            "sequence-gaps-jumps-restarts-and-wrap",
            cat(&[
                &f(FLAG_SEQ_RESTART, 10, NONE),
                &f(0, 11, NONE),
                &f(0, 14, NONE),
                &f(0, 12, NONE),
                &f(0, 13, NONE),
                &f(0, 13, NONE),
                &f(FLAG_SEQ_RESTART, 0, NONE),
                &f(0, u32::MAX, NONE),
                &f(0, 0, NONE),
            ]),
            "seq 10 seq 11 seq 14 seq 12 seq 13 seq 13 seq 0 seq 4294967295 seq 0 | 9 0 0 2 2 3 0",
        ),
        case(
            "the-first-frame-counts-no-loss",
            cat(&[&f(0, 100, NONE), &f(0, 101, NONE)]),
            "seq 100 seq 101 | 2 0 0 0 0 0 0",
        ),
        case(
            "zero-length-inline-buffer",
            fi(0, 1, b"\x80\x05\x97.", &[(d(0), b"")]),
            "seq 1 | 1 0 0 0 0 0 0",
        ),
        case(
            "shared-buffer-without-a-region",
            raw(0, 2, b"\x80\x05\x97.", &[entry(2, 0x03, 0, 0x40, 16)], 0, b"", 0),
            "Region@0 | 0 0 1 0 0 0 0",
        ),
        Case {
            region: Some(region_file(0x80)),
            ..case(
                "shared-buffers-in-a-region",
                cat(&[
                    &raw(0, 1, b"\x80\x05\x97.", &[entry(2, 0x03, 0, 0x40, 16)], 0, b"", 0),
                    // Zero length at the region's very end: accepted.
                    &raw(0, 2, b"\x80\x05\x97.", &[entry(2, 0x02, 0, 0x80, 0)], 0, b"", 0),
                    // Over the control block, then past the end: refused.
                    &raw(0, 3, b"\x80\x05\x97.", &[entry(2, 0x02, 0, 0x3F, 1)], 0, b"", 0),
                    &raw(0, 4, b"\x80\x05\x97.", &[entry(2, 0x02, 0, 0x70, 0x11)], 0, b"", 0),
                ]),
                "seq 1 seq 2 Region@96 Region@144 | 2 0 2 0 0 0 0",
            )
        },
        Case {
            region: Some(vec![0u8; 0x80]),
            ..case(
                "shared-buffer-in-a-region-without-a-ring",
                raw(0, 1, b"\x80\x05\x97.", &[entry(2, 0x02, 0, 0x40, 16)], 0, b"", 0),
                "Region@0 | 0 0 1 0 0 0 0",
            )
        },
    ];
    out.push(case(
        "example-6-of-the-document",
        example("example-6"),
        "UnknownEntryFlags@0 | 0 0 1 0 0 0 0",
    ));
    out
}

/// The bytes of a `hex` block of docs/wire-format.md.
pub fn example(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire-format.md");
    let doc = std::fs::read_to_string(path).expect("docs/wire-format.md");
    let start = format!("```hex {name}\n");
    let at = doc
        .find(&start)
        .unwrap_or_else(|| panic!("no hex block {name}"))
        + start.len();
    let end = at + doc[at..].find("```").expect("unterminated hex block");
    doc[at..end]
        .lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|_| panic!("{name}: bad hex {t:?}")))
        .collect()
}

/// A reader over `src` with `config`, and region 2 mapped from `region` when given.
pub fn reader<R: Read>(src: R, config: &ReaderConfig, region: Option<&Path>) -> FrameReader<R> {
    let mut map = RegionMap::new();
    if let Some(p) = region {
        map.open(2, p).unwrap();
    }
    FrameReader::with_config(src, config.clone()).with_regions(map)
}

/// Read everything: `(short summary as in Case::expect, canonical lines)`.
pub fn read_all<R: Read>(mut r: FrameReader<R>) -> (String, Vec<String>) {
    let mut short = Vec::new();
    let mut lines = Vec::new();
    loop {
        match r.next_message() {
            Ok(Some(m)) => {
                short.push(format!("seq {}", m.seq));
                let bufs: Vec<String> = m
                    .buffers
                    .iter()
                    .map(|b| {
                        let d = b.descriptor;
                        format!(
                            "{}:{}:{}:{}:{}:{:08x}",
                            match b.kind {
                                dmapickle_core::frame::BufferKind::Inline => "inline",
                                dmapickle_core::frame::BufferKind::Shared => "shared",
                            },
                            d.region,
                            d.offset,
                            d.len,
                            if d.readonly { "ro" } else { "rw" },
                            super::crc32_ieee(&b.data)
                        )
                    })
                    .collect();
                lines.push(format!(
                    "message {} seq={} restart={} pickle={}:{:08x} buffers={}",
                    m.stream_offset,
                    m.seq,
                    u8::from(m.restart),
                    m.pickle.len(),
                    super::crc32_ieee(&m.pickle),
                    bufs.join(",")
                ));
            }
            Ok(None) => break,
            Err(e) if e.is_fatal() => panic!("{e}"),
            Err(e) => {
                let at = e.offset().unwrap_or(0);
                short.push(format!("{}@{at}", e.kind()));
                lines.push(format!("refused {at} {}", e.kind()));
            }
        }
    }
    let c = r.counters();
    short.push(format!(
        "| {} {} {} {} {} {} {}",
        c.frames_ok, c.corrupt, c.refused, c.lost, c.restarts, c.seq_jumps, c.bytes_skipped
    ));
    lines.push(format!(
        "counters frames_ok={} corrupt={} refused={} lost={} restarts={} seq_jumps={} bytes_skipped={} bytes_read={}",
        c.frames_ok, c.corrupt, c.refused, c.lost, c.restarts, c.seq_jumps, c.bytes_skipped, c.bytes_read
    ));
    (short.join(" "), lines)
}

/// Reads its bytes back in pieces of 1 to `max` bytes (seeded), like a slow link.
pub struct Trickle<'a> {
    pub bytes: &'a [u8],
    pub rng: rand::rngs::SmallRng,
    pub max: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rand::Rng;
        let n = self
            .rng
            .random_range(1..=self.max)
            .min(buf.len())
            .min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// Header length, for tests that cut streams at a header boundary.
pub const HEADER: usize = HEADER_LEN;
