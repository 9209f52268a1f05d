//! The sensor message in-band with postcard (`to_slice`): the samples are copied into the
//! message as zig-zag varints.
#![no_std]
#![no_main]

use dmapickle_size::drive;
use serde_derive::Serialize;

#[derive(Serialize)]
struct Sensor<'a> {
    seq: u32,
    t_ns: u64,
    adc: &'a [i16],
    gain: f32,
}

static SAMPLES: [i16; 4096] = [0; 4096];

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let mut big = [0u8; 12 << 10];
    drive(|seq, t_ns, gain, _, _| {
        let msg = Sensor {
            seq,
            t_ns,
            adc: core::hint::black_box(&SAMPLES[..]),
            gain,
        };
        match postcard::to_slice(&msg, &mut big) {
            Ok(bytes) => core::hint::black_box(bytes).len(),
            Err(_) => 0,
        }
    })
}
