//! Validates the typical sensor message N times (default 100,000), for instruction counts that
//! do not depend on the machine's load: `valgrind --tool=callgrind` on this binary with N and
//! 2N gives the instructions per message as the difference divided by N (`bench/validate.sh`).
//!
//! `cargo run --release -p dmapickle-core --example validate_loop -- [strict|general] [N]`

use dmapickle_core::validate::{Slot, Workspace};
use dmapickle_core::{Descriptor, Pickler, Profile, Validator};

/// CPython 3.11.7 + numpy 2.4.6 output for the same message (172 bytes), as in
/// `core/benches/validate.rs`.
const CPYTHON: &[u8] = b"\x80\x05\x95\xa1\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x28\x8c\x03\x73\x65\x71\x94\x4b\x29\x8c\x04\x74\x5f\x6e\x73\x94\x8a\x08\x15\xcd\x85\x3d\xfe\x9c\x97\x17\x8c\x03\x61\x64\x63\x94\x8c\x13\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6e\x75\x6d\x65\x72\x69\x63\x94\x8c\x0b\x5f\x66\x72\x6f\x6d\x62\x75\x66\x66\x65\x72\x94\x93\x94\x28\x97\x8c\x05\x6e\x75\x6d\x70\x79\x94\x8c\x05\x64\x74\x79\x70\x65\x94\x93\x94\x8c\x02\x69\x32\x94\x89\x88\x87\x94\x52\x94\x28\x4b\x03\x8c\x01\x3c\x94\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x94\x62\x4d\x00\x04\x4b\x04\x86\x94\x8c\x01\x43\x94\x74\x94\x52\x94\x8c\x04\x67\x61\x69\x6e\x94\x47\x3f\xe0\x00\x00\x00\x00\x00\x00\x75\x2e";

fn main() {
    let mut args = std::env::args().skip(1);
    let profile = args.next().unwrap_or_else(|| "strict".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut buf = [0u8; 256];
    let mut p = Pickler::new(&mut buf);
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
    .expect("message fits");
    let encoded = p.finish().expect("one value");
    let lens = [8192usize];
    let (pickle, profile) = match profile.as_str() {
        "general" => (CPYTHON, Profile::General),
        _ => (encoded.pickle, Profile::Strict),
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
