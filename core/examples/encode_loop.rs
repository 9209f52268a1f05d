//! Encodes the typical sensor message N times (default 100,000) with the builder, for
//! instruction counts that do not depend on the machine's load: `valgrind --tool=callgrind` on
//! this binary with N and 2N gives the instructions per message as the difference divided by N.
//!
//! `cargo run --release -p dmapickle-core --example encode_loop -- [N]`

use std::hint::black_box;

use dmapickle_core::{Descriptor, Pickler};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut out = [0u8; 256];
    let (mut bytes, mut failed) = (0usize, 0u32);
    for seq in 0..n {
        let mut p = Pickler::new(black_box(&mut out[..]));
        let written = p.dict(|p| {
            p.str("seq")?;
            p.int(black_box(seq))?;
            p.str("t_ns")?;
            p.int(1_700_000_000_123_456_789u64 + u64::from(seq))?;
            p.str("adc")?;
            p.array::<i16>(Descriptor::new(1, 0, 8192), &[1024, 4])?;
            p.str("gain")?;
            p.f32(0.5)
        });
        match written.and_then(|()| p.finish()) {
            Ok(encoded) => bytes += black_box(encoded.pickle.len()),
            Err(_) => failed += 1,
        }
    }
    println!("{n} messages, {bytes} bytes, {failed} failed");
}
