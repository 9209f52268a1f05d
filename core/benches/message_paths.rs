//! One typical sensor message, `{"seq": u32, "t_ns": u64, "adc": int16 (1024, 4), "gain": f32}`,
//! built five ways in one run:
//!
//! * `builder`: the `Pickler` API, the array out-of-band;
//! * `serde`: `#[derive(Serialize)]` with an `NdArray` field, through `to_pickle`;
//! * `template_patch`: copy a pre-encoded template and patch its four slots;
//! * `serde_pickle`: the `serde-pickle` crate, which has no out-of-band buffers and so copies the
//!   array in-band (as a list of 4096 ints), into a reused `Vec`;
//! * `postcard`: the same message in-band with `postcard::to_slice`.
//!
//! Results go to docs/performance.md, `## Message paths`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dmapickle_core::ser::{to_pickle, NdArray};
use dmapickle_core::{Descriptor, Pickler, TemplateBuilder};
use serde_derive::Serialize;

const ROWS: usize = 1024;
const ADC: Descriptor = Descriptor::new(1, 0, (ROWS * 4 * 2) as u32).read_only();

#[path = "../examples/common/sensor.rs"]
mod sensor;
use sensor::Sensor;

/// The same message with the samples in-band, for serializers without out-of-band buffers.
#[derive(Serialize)]
struct SensorInBand<'a> {
    seq: u32,
    t_ns: u64,
    adc: &'a [i16],
    gain: f32,
}

fn t_ns(seq: u32) -> u64 {
    1_700_000_000_000_000_000 + u64::from(seq)
}

fn in_band(seq: u32, samples: &[i16]) -> SensorInBand<'_> {
    SensorInBand {
        seq,
        t_ns: t_ns(seq),
        adc: samples,
        gain: 0.5,
    }
}

fn paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("message_paths");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut out = [0u8; 256];

    let mut seq = 0u32;
    group.bench_function("builder", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let mut p = Pickler::new(black_box(&mut out));
            p.dict(|p| {
                p.str("seq")?;
                p.int(seq)?;
                p.str("t_ns")?;
                p.int(t_ns(seq))?;
                p.str("adc")?;
                p.array::<i16>(ADC, &[ROWS, 4])?;
                p.str("gain")?;
                p.f32(0.5)
            })
            .unwrap();
            let encoded = p.finish().unwrap();
            black_box(&encoded.descriptors);
            encoded.pickle.len()
        })
    });

    group.bench_function("serde", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let msg = Sensor {
                seq,
                t_ns: t_ns(seq),
                adc: NdArray::new(ADC, &[ROWS, 4]),
                gain: 0.5,
            };
            let encoded = to_pickle(black_box(&msg), black_box(&mut out)).unwrap();
            black_box(&encoded.descriptors);
            encoded.pickle.len()
        })
    });

    let mut storage = [0u8; 256];
    let mut t = TemplateBuilder::new(&mut storage);
    t.begin_dict().unwrap();
    t.str("seq").unwrap();
    let seq_slot = t.int_slot(0u32).unwrap();
    t.str("t_ns").unwrap();
    let t_ns_slot = t.int_slot(0u64).unwrap();
    t.str("adc").unwrap();
    let adc_slot = t.array_slot::<i16>(ADC, &[ROWS, 4]).unwrap();
    t.str("gain").unwrap();
    let gain_slot = t.f32_slot(0.0).unwrap();
    t.end_dict().unwrap();
    let template = t.finish().unwrap();
    group.bench_function("template_patch", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let mut msg = template.emit(black_box(&mut out)).unwrap();
            msg.set_int(seq_slot, seq).unwrap();
            msg.set_int(t_ns_slot, t_ns(seq)).unwrap();
            msg.set_buffer(adc_slot, ADC).unwrap();
            msg.set_f32(gain_slot, 0.5).unwrap();
            let encoded = msg.finish();
            black_box(&encoded.descriptors);
            encoded.pickle.len()
        })
    });

    let samples: Vec<i16> = (0..ROWS * 4).map(|i| (i as i16).wrapping_mul(37)).collect();
    let mut vec_out = Vec::with_capacity(64 << 10);
    group.bench_function("serde_pickle_in_band", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let msg = in_band(seq, &samples);
            vec_out.clear();
            serde_pickle::to_writer(&mut vec_out, black_box(&msg), Default::default()).unwrap();
            black_box(&vec_out).len()
        })
    });

    let mut postcard_out = vec![0u8; 16 << 10];
    group.bench_function("postcard_in_band", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let msg = in_band(seq, &samples);
            postcard::to_slice(black_box(&msg), black_box(&mut postcard_out))
                .unwrap()
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, paths);
criterion_main!(benches);
