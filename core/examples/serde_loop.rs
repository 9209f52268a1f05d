//! The serde twin of `encode_loop`: encodes the same sensor message N times (default 100,000)
//! through `to_pickle` of a `#[derive(Serialize)]` struct (the same bytes), for instruction
//! counts that do not depend on the machine's load: `valgrind --tool=callgrind` on this binary
//! with N and 2N gives the instructions per message as the difference divided by N. A binary of
//! its own: with both paths in one, the builder's code is inlined differently (931 instead of
//! 768 instructions per message on x86_64).
//!
//! `cargo run --release -p dmapickle-core --features serde --example serde_loop -- [N]`

use std::hint::black_box;

use dmapickle_core::ser::{to_pickle, NdArray};
use dmapickle_core::Descriptor;

#[path = "common/sensor.rs"]
mod sensor;
use sensor::Sensor;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut out = [0u8; 256];
    let (mut bytes, mut failed) = (0usize, 0u32);
    for seq in 0..n {
        let msg = Sensor {
            seq: black_box(seq),
            t_ns: 1_700_000_000_123_456_789u64 + u64::from(seq),
            adc: NdArray::new(Descriptor::new(1, 0, 8192), &[1024, 4]),
            gain: 0.5,
        };
        match to_pickle(black_box(&msg), black_box(&mut out[..])) {
            Ok(encoded) => bytes += black_box(encoded.pickle.len()),
            Err(_) => failed += 1,
        }
    }
    println!("{n} messages, {bytes} bytes, {failed} failed");
}
