//! A layout match must give exactly the full validator's verdict: every seed pickle (encoder
//! messages, hand-written ones with numbers as keys, in tuples, in lists, memoized, the hostile
//! vectors) is proved into a layout, then every mutant of it is validated both ways.

extern crate std;
use super::*;
use crate::{Descriptor, Pickler};
use std::vec;
use std::vec::Vec;

/// The typical sensor message, as the encoder writes it.
fn sensor(seq: u32, t_ns: u64, gain: f32) -> (Vec<u8>, Vec<usize>) {
    let mut buf = [0u8; 256];
    let mut p = Pickler::new(&mut buf);
    p.dict(|p| {
        p.str("seq")?;
        p.int(seq)?;
        p.str("t_ns")?;
        p.int(t_ns)?;
        p.str("adc")?;
        p.array::<i16>(Descriptor::new(1, 0, 8192), &[1024, 4])?;
        p.str("gain")?;
        p.f32(gain)
    })
    .unwrap();
    let e = p.finish().unwrap();
    let lens = e.descriptors.iter().map(|d| d.len as usize).collect();
    (e.pickle.to_vec(), lens)
}

fn seeds() -> Vec<(Vec<u8>, Vec<usize>)> {
    let mut s = vec![
        sensor(41, 1_700_000_000_123_456_789, 0.5),
        sensor(7, 3, -1.0),
        sensor(70_000, u64::MAX, f32::NAN),
        // {'seq': 7} with BININT2 5, BININT -1, LONG1 of 3 bytes as values
        (b"\x80\x05}(\x8c\x01aM\x05\x00\x8c\x01bJ\xff\xff\xff\xff\x8c\x01c\x8a\x03\x01\x02\x03u.".to_vec(), vec![]),
        // ints and floats as dict keys: their hashes count
        (b"\x80\x05}(K\x01K\x02G?\xf0\x00\x00\x00\x00\x00\x00K\x03u.".to_vec(), vec![]),
        // a shape tuple (2, 2): the array's bounds depend on it
        (b"\x80\x05}(\x8c\x03seqK\x07\x8c\x03adc\x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x02\x86\x8c\x03<i2\x97\x98K\x00N\x8c\x01Ct\x81u.".to_vec(), vec![8]),
        // list items, set items, frozenset items
        (b"\x80\x05](K\x01K\x02M\x00\x01e.".to_vec(), vec![]),
        (b"\x80\x05\x8f(K\x01K\x02\x90.".to_vec(), vec![]),
        (b"\x80\x05(K\x01K\x02\x91.".to_vec(), vec![]),
        // a dict inside a dict, and a tuple as a value
        (b"\x80\x05}(\x8c\x01a}\x8c\x01bK\x05s\x8c\x01cK\x01K\x02\x86u.".to_vec(), vec![]),
        // general: an int memoized, then used as a key through BINGET
        (b"\x80\x05}(\x8c\x01aK\x07\x94h\x00K\x01u.".to_vec(), vec![]),
        (b"\x80\x02}q\x00(U\x01aK\x07q\x01U\x01bh\x01u.".to_vec(), vec![]),
        // a dict value then popped back out by POP_MARK-free tricks: SETITEM then APPEND target
        (b"\x80\x05]}\x8c\x01aK\x05sa.".to_vec(), vec![]),
        // complex(re, im) from two ints
        (b"\x80\x05}\x8c\x01a\x8c\x08builtins\x8c\x07complex\x93K\x01K\x02\x86Rs.".to_vec(), vec![]),
    ];
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/hostile");
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files {
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.len() <= LAYOUT_MAX_LEN {
                    s.push((bytes, vec![]));
                }
            }
        }
    }
    s
}

/// Every single-byte mutant of `p`, and a few random multi-byte ones.
fn mutants(p: &[u8], rng: &mut u64) -> Vec<Vec<u8>> {
    let mut out = vec![p.to_vec()];
    for i in 0..p.len() {
        let b = p[i];
        for x in [b ^ 1, b ^ 0x80, 0, 0xff, b.wrapping_add(1), 0x7f, 0x80] {
            let mut m = p.to_vec();
            m[i] = x;
            out.push(m);
        }
    }
    for _ in 0..200 {
        let mut m = p.to_vec();
        for _ in 0..1 + (*rng % 4) {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let i = (*rng as usize >> 8) % m.len().max(1);
            if let Some(b) = m.get_mut(i) {
                *b = (*rng >> 32) as u8;
            }
        }
        out.push(m);
    }
    out.extend((0..p.len()).map(|cut| p[..cut].to_vec()));
    out
}

fn full(v: &Validator<'_>, p: &[u8], lens: &[usize]) -> Result<Validated> {
    let (mut stack, mut memo) = (vec![Slot::EMPTY; 64], vec![Slot::EMPTY; 64]);
    let mut keys = vec![KeySlot::EMPTY; 64];
    let mut ws = Workspace::with_keys(&mut stack, &mut memo, &mut keys);
    v.validate(p, lens, &mut ws)
}

#[test]
fn a_match_gives_exactly_the_full_verdict_on_every_mutant() {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let (mut hits, mut accepted_hits, mut compared) = (0, 0, 0);
    let (mut stack, mut memo) = (vec![Slot::EMPTY; 64], vec![Slot::EMPTY; 64]);
    let mut keys = vec![KeySlot::EMPTY; 64];
    let mut layout = Layout::new();
    for (seed, lens) in seeds() {
        for profile in [Profile::Strict, Profile::General] {
            let base = Validator::new(profile);
            let Ok(proved) = full(&base, &seed, &lens) else {
                continue;
            };
            // The default limits, and an allocation bound the seed meets exactly (so a number
            // that costs more tips a mutant over it).
            let tight = base.with_limits(Limits {
                max_alloc: proved.alloc,
                ..Limits::DEFAULT
            });
            for v in [base, tight] {
                for m in mutants(&seed, &mut rng) {
                    // Re-prove the seed, then validate the mutant through the layout.
                    let mut ws = Workspace::with_keys(&mut stack, &mut memo, &mut keys)
                        .with_layout(&mut layout);
                    assert_eq!(v.validate(&seed, &lens, &mut ws), Ok(proved));
                    let caps = ws.capacities();
                    let matched = layout.matches(&v, &m, &lens, caps);
                    let mut ws = Workspace::with_keys(&mut stack, &mut memo, &mut keys)
                        .with_layout(&mut layout);
                    let through_layout = v.validate(&m, &lens, &mut ws);
                    let expected = full(&v, &m, &lens);
                    assert_eq!(
                        through_layout, expected,
                        "{profile:?} seed {seed:x?} mutant {m:x?}"
                    );
                    if let Some(ok) = matched {
                        hits += 1;
                        assert_eq!(Ok(ok), expected, "match of {m:x?}");
                        if m != seed {
                            accepted_hits += 1;
                        }
                    }
                    compared += 1;
                }
            }
        }
    }
    // The fast path really ran, on changed bytes too.
    assert!(
        compared > 10_000 && hits > 1000 && accepted_hits > 500,
        "{compared} {hits} {accepted_hits}"
    );
}

#[test]
fn only_numbers_stored_as_dict_values_are_free() {
    let (mut stack, mut memo) = (vec![Slot::EMPTY; 64], vec![Slot::EMPTY; 64]);
    let v = Validator::new(Profile::General);
    let free = |p: &[u8], lens: &[usize], stack: &mut [Slot], memo: &mut [Slot]| {
        let mut layout = Layout::new();
        let mut ws = Workspace::new(stack, memo).with_layout(&mut layout);
        v.validate(p, lens, &mut ws).unwrap();
        layout.free_slots()
    };
    let (msg, lens) = sensor(41, 1_700_000_000_123_456_789, 0.5);
    // seq, t_ns and gain; not the array's shape
    assert_eq!(free(&msg, &lens, &mut stack, &mut memo), 3);
    // keys, list items, memoized values, tuple items are not free; the values beside them are
    for (p, n) in [
        (
            &b"\x80\x05}(K\x01K\x02G?\xf0\x00\x00\x00\x00\x00\x00K\x03u."[..],
            2,
        ),
        (b"\x80\x05](K\x01K\x02M\x00\x01e.", 0),
        (b"\x80\x05}(\x8c\x01aK\x07\x94h\x00K\x01u.", 1),
        (b"\x80\x05}\x8c\x01aK\x01K\x02\x86s.", 0),
    ] {
        assert_eq!(free(p, &[], &mut stack, &mut memo), n, "{p:x?}");
    }
}

#[test]
fn a_layout_is_kept_across_a_rejection_and_bound_to_its_settings() {
    let (mut stack, mut memo) = (vec![Slot::EMPTY; 64], vec![Slot::EMPTY; 64]);
    let mut layout = Layout::new();
    let (msg, lens) = sensor(41, 5, 0.5);
    let (next, _) = sensor(42, 6, 0.25);
    let strict = Validator::new(Profile::Strict);
    let mut ws = Workspace::new(&mut stack, &mut memo).with_layout(&mut layout);
    let proved = strict.validate(&msg, &lens, &mut ws).unwrap();
    assert!(strict
        .validate(&msg[..msg.len() - 1], &lens, &mut ws)
        .is_err());
    let caps = ws.capacities();
    assert_eq!(layout.matches(&strict, &next, &lens, caps), Some(proved));
    // other buffer lengths, limits, profile, capacities or extra globals: no match
    assert_eq!(layout.matches(&strict, &next, &[8190], caps), None);
    assert_eq!(
        layout.matches(&strict.with_max_len(1000), &next, &lens, caps),
        None
    );
    assert_eq!(
        layout.matches(&Validator::new(Profile::General), &next, &lens, caps),
        None
    );
    assert_eq!(layout.matches(&strict, &next, &lens, [64, 63, 0]), None);
    let extra = [("m", "f")];
    assert_eq!(
        layout.matches(&strict.with_allowed(&extra), &next, &lens, caps),
        None
    );
}
