//! Validation cost of one typical sensor message:
//! `{"seq", "t_ns", "adc": int16 array (1024, 4) out-of-band, "gain"}`, in two spellings:
//! as dmapickle's encoder writes it (strict profile) and as CPython 3.11 + numpy 2.4 write it
//! (`pickle.dumps(msg, protocol=5, buffer_callback=...)`, general profile: frames, memo,
//! `_frombuffer`, `numpy.dtype` + BUILD). Reports pickle bytes/s and messages/s.
//! `bench/validate.sh` runs this next to CPython's `pickletools.dis` and a restricted
//! `Unpickler` on the same bytes (`bench/validate_cpython.py`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dmapickle_core::validate::{Layout, Slot, Workspace};
use dmapickle_core::{Profile, Validator};

#[path = "support/sensor_message.rs"]
mod sensor_message;
use sensor_message::{encoder_message, number_slots, CPYTHON};

fn validate(c: &mut Criterion) {
    let mut buf = [0u8; 256];
    let (n, lens) = encoder_message(&mut buf);
    let ours = buf[..n].to_vec();
    let mut stack = [Slot::EMPTY; 64];
    let mut memo = [Slot::EMPTY; 64];
    let mut ws = Workspace::new(&mut stack, &mut memo);
    let mut group = c.benchmark_group("validate_sensor_message");
    for (name, profile, pickle) in [
        ("encoder_strict", Profile::Strict, &ours[..]),
        ("cpython_general", Profile::General, CPYTHON),
    ] {
        let v = Validator::new(profile);
        v.validate(pickle, &lens, &mut ws).unwrap();
        group.throughput(Throughput::Bytes(pickle.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    v.validate(black_box(pickle), black_box(&lens), &mut ws)
                        .unwrap(),
                )
            })
        });
    }
    // A stream of the same message with new numbers, through a workspace that remembers the
    // layout proved (`validate::Layout`): the first message is proved, the rest matched.
    for (name, profile, pickle) in [
        ("encoder_strict_layout", Profile::Strict, &ours[..]),
        ("cpython_general_layout", Profile::General, CPYTHON),
    ] {
        let v = Validator::new(profile);
        let mut pickle = pickle.to_vec();
        let (seq_at, t_at) = number_slots(&pickle);
        let mut layout = Layout::new();
        let mut ws = Workspace::new(&mut stack, &mut memo).with_layout(&mut layout);
        let mut i = 0u32;
        group.throughput(Throughput::Bytes(pickle.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                pickle[seq_at] = i as u8;
                pickle[t_at] = (i >> 8) as u8;
                black_box(
                    v.validate(black_box(&pickle), black_box(&lens), &mut ws)
                        .unwrap(),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
