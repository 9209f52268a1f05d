//! The sensor message as a `#[derive(Serialize)]` struct through `to_pickle`.
#![no_std]
#![no_main]

use dmapickle_core::ser::{to_pickle, NdArray};
use dmapickle_core::Descriptor;
use dmapickle_size::{drive, ADC, SHAPE};

#[path = "../../../../core/examples/common/sensor.rs"]
mod sensor;
use sensor::Sensor;

#[no_mangle]
pub extern "C" fn _start() -> ! {
    drive(|seq, t_ns, gain, offset, out| {
        let msg = Sensor {
            seq,
            t_ns,
            adc: NdArray::new(Descriptor { offset, ..ADC }, &SHAPE),
            gain,
        };
        match to_pickle(&msg, out) {
            Ok(encoded) => core::hint::black_box(encoded).pickle.len(),
            Err(_) => 0,
        }
    })
}
