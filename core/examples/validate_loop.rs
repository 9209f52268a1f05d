//! Validates the typical sensor message N times (default 100,000), for instruction counts that
//! do not depend on the machine's load: `valgrind --tool=callgrind` on this binary with N and
//! 2N gives the instructions per message as the difference divided by N (`bench/validate.sh`).
//!
//! `cargo run --release -p dmapickle-core --example validate_loop -- [strict|general] [N]`

use dmapickle_core::validate::{Slot, Workspace};
use dmapickle_core::{Profile, Validator};

#[path = "../benches/support/sensor_message.rs"]
mod sensor_message;
use sensor_message::{encoder_message, CPYTHON};

fn main() {
    let mut args = std::env::args().skip(1);
    let profile = args.next().unwrap_or_else(|| "strict".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut buf = [0u8; 256];
    let (len, lens) = encoder_message(&mut buf);
    let (pickle, profile) = match profile.as_str() {
        "general" => (CPYTHON, Profile::General),
        _ => (&buf[..len], Profile::Strict),
    };
    let mut stack = [Slot::EMPTY; 64];
    let mut memo = [Slot::EMPTY; 64];
    let mut ws = Workspace::new(&mut stack, &mut memo);
    let v = Validator::new(profile);
    let mut opcodes = 0;
    for _ in 0..n {
        let ok = v
            .validate(std::hint::black_box(pickle), &lens, &mut ws)
            .expect("valid");
        opcodes += ok.opcodes;
    }
    println!("{n} validations, {opcodes} opcodes");
}
