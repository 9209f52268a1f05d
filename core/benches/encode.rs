//! Encoding cost of one typical sensor message:
//! `{"seq": u32, "t_ns": u64, "adc": int16 array (rows, 4) out-of-band, "gain": f32}`.
//!
//! Two array sizes, (1024, 4) and (1 << 20, 4): the array is a descriptor, never read, so the cost
//! must not grow with it. `bench/encode.sh` runs this next to CPython's `pickle.dumps` of the same
//! message (`bench/cpython_dumps.py`) and prints the ratio.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dmapickle_core::{Descriptor, Pickler};

fn sensor_message(out: &mut [u8], seq: u32, rows: usize) -> usize {
    let mut p = Pickler::new(out);
    p.dict(|p| {
        p.str("seq")?;
        p.int(seq)?;
        p.str("t_ns")?;
        p.int(1_700_000_000_000_000_000u64 + u64::from(seq))?;
        p.str("adc")?;
        let len = (rows * 4 * 2) as u32;
        p.array::<i16>(Descriptor::new(1, 0, len).read_only(), &[rows, 4])?;
        p.str("gain")?;
        p.f32(0.5)
    })
    .unwrap();
    let encoded = p.finish().unwrap();
    black_box(&encoded.descriptors);
    encoded.pickle.len()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("sensor_message");
    for (name, rows) in [("adc_1024x4", 1024usize), ("adc_1048576x4", 1 << 20)] {
        let mut out = [0u8; 256];
        let mut seq = 0u32;
        group.bench_function(name, |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                black_box(sensor_message(
                    black_box(&mut out),
                    black_box(seq),
                    black_box(rows),
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
