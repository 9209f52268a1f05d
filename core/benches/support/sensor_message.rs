//! The typical sensor message of the validation benchmarks, in both spellings: shared by
//! `benches/validate.rs` (criterion) and `examples/validate_loop.rs` (instruction counts).

use dmapickle_core::{Descriptor, Pickler};

/// CPython 3.11.7 + numpy 2.4.6 output for the same message (172 bytes).
pub const CPYTHON: &[u8] = b"\x80\x05\x95\xa1\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x28\x8c\x03\x73\x65\x71\x94\x4b\x29\x8c\x04\x74\x5f\x6e\x73\x94\x8a\x08\x15\xcd\x85\x3d\xfe\x9c\x97\x17\x8c\x03\x61\x64\x63\x94\x8c\x13\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6e\x75\x6d\x65\x72\x69\x63\x94\x8c\x0b\x5f\x66\x72\x6f\x6d\x62\x75\x66\x66\x65\x72\x94\x93\x94\x28\x97\x8c\x05\x6e\x75\x6d\x70\x79\x94\x8c\x05\x64\x74\x79\x70\x65\x94\x93\x94\x8c\x02\x69\x32\x94\x89\x88\x87\x94\x52\x94\x28\x4b\x03\x8c\x01\x3c\x94\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x94\x62\x4d\x00\x04\x4b\x04\x86\x94\x8c\x01\x43\x94\x74\x94\x52\x94\x8c\x04\x67\x61\x69\x6e\x94\x47\x3f\xe0\x00\x00\x00\x00\x00\x00\x75\x2e";

/// Writes the message as dmapickle's encoder does into `out`: its length and buffer lengths.
pub fn encoder_message(out: &mut [u8]) -> (usize, Vec<usize>) {
    let mut p = Pickler::new(out);
    p.dict(|p| {
        p.str("seq")?;
        p.int(41u32)?;
        p.str("t_ns")?;
        p.int(1_700_000_000_123_456_789u64)?;
        p.str("adc")?;
        p.array::<i16>(Descriptor::new(1, 0, 8192), &[1024, 4])?;
        p.str("gain")?;
        p.f32(0.5)
    })
    .unwrap();
    let encoded = p.finish().unwrap();
    let lens = encoded.descriptors.iter().map(|d| d.len as usize).collect();
    (encoded.pickle.len(), lens)
}

/// Where the `seq` value byte (`BININT1`) and the low byte of `t_ns` (`LONG1`) are in either
/// spelling, so that a benchmark can give every message new numbers as a stream would.
#[allow(dead_code)]
pub fn number_slots(pickle: &[u8]) -> (usize, usize) {
    let after = |key: &[u8]| {
        pickle
            .windows(key.len())
            .position(|w| w == key)
            .map(|i| i + key.len())
            .expect("key in the message")
    };
    let seq = after(b"seq");
    let seq = if pickle[seq] == 0x94 { seq + 1 } else { seq }; // CPython memoizes the key
    let t = after(b"t_ns");
    let t = if pickle[t] == 0x94 { t + 1 } else { t };
    assert_eq!(
        (pickle[seq], pickle[t]),
        (b'K', 0x8a),
        "BININT1 seq, LONG1 t_ns"
    );
    (seq + 1, t + 2)
}
