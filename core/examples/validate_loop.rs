//! Validates the typical sensor message N times (default 100,000), for instruction counts that
//! do not depend on the machine's load: `valgrind --tool=callgrind` on this binary with N and
//! 2N gives the instructions per message as the difference divided by N (`bench/validate.sh`).
//!
//! `cargo run --release -p dmapickle-core --example validate_loop -- [strict|general][-layout] [N]`
//! (or `general-encoder`: the encoder's bytes in the general profile)
//!
//! With `-layout` the workspace remembers the layout proved (`validate::Layout`) and every
//! message gets a new `seq` and `t_ns`, as a stream's messages do.

use dmapickle_core::validate::{Layout, Slot, Workspace};
use dmapickle_core::{Profile, Validator};

#[path = "../benches/support/sensor_message.rs"]
mod sensor_message;
use sensor_message::{encoder_message, number_slots, CPYTHON};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "strict".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut buf = [0u8; 256];
    let (len, lens) = encoder_message(&mut buf);
    let (mut pickle, profile) = match mode.as_str() {
        "general" | "general-layout" => (CPYTHON.to_vec(), Profile::General),
        // the encoder's bytes in the general profile (the host's default)
        "general-encoder" => (buf[..len].to_vec(), Profile::General),
        _ => (buf[..len].to_vec(), Profile::Strict),
    };
    let (seq_at, t_at) = number_slots(&pickle);
    let mut stack = [Slot::EMPTY; 64];
    let mut memo = [Slot::EMPTY; 64];
    let mut layout = Layout::new();
    let mut ws = Workspace::new(&mut stack, &mut memo);
    let stream = mode.ends_with("-layout");
    if stream {
        ws = ws.with_layout(&mut layout);
    }
    let v = Validator::new(profile);
    let mut opcodes = 0;
    for i in 0..n {
        if stream {
            pickle[seq_at] = i as u8;
            pickle[t_at] = (i >> 8) as u8;
        }
        let ok = v
            .validate(std::hint::black_box(&pickle), &lens, &mut ws)
            .expect("valid");
        opcodes += ok.opcodes;
    }
    println!("{n} validations, {opcodes} opcodes");
}
