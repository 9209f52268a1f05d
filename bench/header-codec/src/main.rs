//! Host timing of the four functions in lib.rs (ns per header + 4 entries).
use std::hint::black_box;
use std::time::Instant;

use dmapickle_core::frame::{BufferKind, Entry, Header, ENTRY_LEN, HEADER_LEN};
use dmapickle_core::Descriptor;
use header_codec::*;

fn time<F: FnMut()>(mut f: F) -> f64 {
    let n = 2_000_000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / n as f64);
    }
    best
}

fn main() {
    let h = Header {
        flags: 0,
        buffers: N as u16,
        seq: 123_456,
        pickle_len: 180,
        inline_len: 3 << 16,
    };
    let e = [0u32, 1, 2, 3].map(|i| Entry {
        descriptor: Descriptor::new(1, i << 16, 1 << 16),
        kind: BufferKind::Inline,
    });
    let p = PMeta {
        header: PHeader {
            sync: 0x054B_50F1,
            version: 1,
            flags: 0,
            buffers: 4,
            seq: 123_456,
            pickle_len: 180,
            inline_len: 3 << 16,
        },
        entries: [0u32, 1, 2, 3].map(|i| PEntry {
            region: 1,
            flags: 0,
            offset: i << 16,
            len: 1 << 16,
        }),
    };
    let mut fixed = [0u8; HEADER_LEN + N * ENTRY_LEN];
    let mut pc = [0u8; 96];
    fixed_encode(&h, &e, &mut fixed);
    let plen = postcard_encode(&p, &mut pc);
    assert_eq!(fixed_decode(&fixed), Some((h, e)));
    assert_eq!(postcard_decode(&pc[..plen]), Some(p));
    let fe = time(|| fixed_encode(black_box(&h), black_box(&e), black_box(&mut fixed)));
    let fd = time(|| {
        black_box(fixed_decode(black_box(&fixed)));
    });
    let pe = time(|| {
        black_box(postcard_encode(black_box(&p), black_box(&mut pc)));
    });
    let pd = time(|| {
        black_box(postcard_decode(black_box(&pc[..plen])));
    });
    println!("| codec | bytes (header + 4 entries) | encode | decode |");
    println!("|---|---|---|---|");
    println!(
        "| fixed layout (header CRC-32C included) | {} | {fe:.1} ns | {fd:.1} ns |",
        fixed.len()
    );
    println!("| postcard, no CRC | {plen} | {pe:.1} ns | {pd:.1} ns |");
}
