//! The worked examples of docs/pickle-profile.md: each `hex NAME` block is exactly what the
//! encoder writes for the value the test builds here (parsed out of the markdown, so the
//! document and the encoder cannot drift), and the strict profile accepts it; each
//! `hex reject-NAME` block is refused by the strict profile with the reason the document gives.

use std::collections::HashMap;

use dmapickle_core::validate::{Slot, Workspace};
use dmapickle_core::{DType, Descriptor, EncodeError, Error, Order, Pickler, Profile, Validator};

/// `(name, bytes, the line after the block: "reason: ..." for reject blocks)`.
fn blocks() -> HashMap<String, (Vec<u8>, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/pickle-profile.md");
    let doc = std::fs::read_to_string(path).expect("docs/pickle-profile.md");
    let mut out = HashMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex ") else {
            continue;
        };
        let mut bytes = Vec::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            for tok in l.split('#').next().unwrap_or("").split_whitespace() {
                bytes.push(u8::from_str_radix(tok, 16).unwrap_or_else(|_| panic!("{name}: {tok}")));
            }
        }
        let after = lines.next().unwrap_or("").trim().to_string();
        out.insert(name.trim().to_string(), (bytes, after));
    }
    out
}

fn encode(f: impl FnOnce(&mut Pickler<'_>) -> dmapickle_core::EncodeResult<()>) -> Encoded {
    let mut buf = [0u8; 512];
    let mut p = Pickler::new(&mut buf);
    f(&mut p).unwrap();
    let e = p.finish().unwrap();
    (
        e.pickle.to_vec(),
        e.descriptors.iter().map(|d| d.len as usize).collect(),
    )
}

fn strict(pickle: &[u8], lens: &[usize]) -> Result<(), Error> {
    let mut stack = [Slot::EMPTY; 64];
    let mut memo = [Slot::EMPTY; 16];
    let mut ws = Workspace::new(&mut stack, &mut memo);
    Validator::new(Profile::Strict)
        .validate(pickle, lens, &mut ws)
        .map(|_| ())
}

/// The value each accept block shows, built with the public encoder API.
/// A pickle and the lengths of its out-of-band buffers.
type Encoded = (Vec<u8>, Vec<usize>);

fn values() -> Vec<(&'static str, Encoded)> {
    vec![
        ("none", encode(|p| p.none())),
        (
            "bools",
            encode(|p| {
                p.tuple(|p| {
                    p.bool(true)?;
                    p.bool(false)
                })
            }),
        ),
        (
            "ints",
            encode(|p| {
                p.list(|p| {
                    for v in [
                        0i64,
                        255,
                        256,
                        65535,
                        65536,
                        -1,
                        2_147_483_647,
                        2_147_483_648,
                        -9_223_372_036_854_775_808,
                    ] {
                        p.int(v)?;
                    }
                    Ok::<(), EncodeError>(())
                })
            }),
        ),
        (
            "floats",
            encode(|p| {
                p.tuple(|p| {
                    p.f64(1.5)?;
                    p.f32(0.1)
                })
            }),
        ),
        ("complex", encode(|p| p.complex(1.5, -2.0))),
        (
            "text-and-bytes",
            encode(|p| {
                p.tuple(|p| {
                    p.str("µs")?;
                    p.bytes(b"\x00\xff")?;
                    p.bytearray(b"ab")
                })
            }),
        ),
        (
            "containers",
            encode(|p| {
                p.dict(|p| {
                    p.str("l")?;
                    p.list(|p| {
                        p.int(1u8)?;
                        p.int(2u8)
                    })?;
                    p.str("s")?;
                    p.set(|p| p.int(3u8))?;
                    p.str("f")?;
                    p.frozenset(|p| p.int(4u8))?;
                    p.str("t")?;
                    p.tuple(|_| Ok::<(), EncodeError>(()))
                })
            }),
        ),
        (
            "buffer",
            encode(|p| p.buffer(Descriptor::new(1, 0, 16).read_only())),
        ),
        (
            "array",
            encode(|p| p.array::<i16>(Descriptor::new(1, 0, 16), &[2, 4])),
        ),
        (
            "arrays",
            encode(|p| {
                p.list(|p| {
                    p.ndarray(
                        Descriptor::new(1, 0, 24),
                        DType::of::<f64>(),
                        &[3],
                        Order::C,
                    )?;
                    p.ndarray(
                        Descriptor::new(1, 24, 4),
                        DType::of::<u8>(),
                        &[2, 2],
                        Order::Fortran,
                    )
                })
            }),
        ),
    ]
}

#[test]
fn every_accept_example_is_what_the_encoder_writes_and_strict_accepts() {
    let doc = blocks();
    if std::env::var_os("DMAPICKLE_PRINT_PROFILE").is_some() {
        for (name, (bytes, lens)) in values() {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("{name} {lens:?}\n{}", hex.join(" "));
        }
    }
    for (name, (bytes, lens)) in values() {
        let (want, _) = doc
            .get(name)
            .unwrap_or_else(|| panic!("docs/pickle-profile.md has no `hex {name}` block"));
        assert_eq!(
            &bytes, want,
            "{name}: the encoder writes other bytes than the document shows"
        );
        strict(&bytes, &lens).unwrap_or_else(|e| panic!("{name}: strict refuses it: {e}"));
    }
}

#[test]
fn every_reject_example_is_refused_with_the_documented_reason() {
    let doc = blocks();
    let mut n = 0;
    for (name, (bytes, after)) in &doc {
        if !name.starts_with("reject-") {
            continue;
        }
        n += 1;
        let reason = after
            .strip_prefix("reason: ")
            .unwrap_or_else(|| panic!("{name}: no `reason:` line after the block"));
        let lens: Vec<usize> = if bytes.contains(&0x97) {
            vec![16]
        } else {
            vec![]
        };
        match strict(bytes, &lens) {
            Err(e) => assert!(
                e.to_string().contains(reason.trim_matches('`')),
                "{name}: {e} (want {reason})"
            ),
            Ok(()) => panic!("{name}: strict accepts it"),
        }
    }
    assert!(n >= 5, "only {n} reject examples");
}
