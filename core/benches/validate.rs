//! Validation cost of one typical sensor message:
//! `{"seq", "t_ns", "adc": int16 array (1024, 4) out-of-band, "gain"}`, in two spellings:
//! as dmapickle's encoder writes it (strict profile) and as CPython 3.11 + numpy 2.4 write it
//! (`pickle.dumps(msg, protocol=5, buffer_callback=...)`, general profile: frames, memo,
//! `_frombuffer`, `numpy.dtype` + BUILD). Reports pickle bytes/s and messages/s.
//! `bench/validate.sh` runs this next to CPython's `pickletools.dis` and a restricted
//! `Unpickler` on the same bytes (`bench/validate_cpython.py`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dmapickle_core::validate::{Slot, Workspace};
use dmapickle_core::{Descriptor, Pickler, Profile, Validator};

/// CPython 3.11.7 + numpy 2.4.6 output for the same message (172 bytes).
const CPYTHON: &[u8] = b"\x80\x05\x95\xa1\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x28\x8c\x03\x73\x65\x71\x94\x4b\x29\x8c\x04\x74\x5f\x6e\x73\x94\x8a\x08\x15\xcd\x85\x3d\xfe\x9c\x97\x17\x8c\x03\x61\x64\x63\x94\x8c\x13\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6e\x75\x6d\x65\x72\x69\x63\x94\x8c\x0b\x5f\x66\x72\x6f\x6d\x62\x75\x66\x66\x65\x72\x94\x93\x94\x28\x97\x8c\x05\x6e\x75\x6d\x70\x79\x94\x8c\x05\x64\x74\x79\x70\x65\x94\x93\x94\x8c\x02\x69\x32\x94\x89\x88\x87\x94\x52\x94\x28\x4b\x03\x8c\x01\x3c\x94\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x94\x62\x4d\x00\x04\x4b\x04\x86\x94\x8c\x01\x43\x94\x74\x94\x52\x94\x8c\x04\x67\x61\x69\x6e\x94\x47\x3f\xe0\x00\x00\x00\x00\x00\x00\x75\x2e";

fn encoder_message(out: &mut [u8]) -> (usize, Vec<usize>) {
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
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
