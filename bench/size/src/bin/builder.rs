//! The sensor message built with the `Pickler` API.
#![no_std]
#![no_main]

use dmapickle_core::{Descriptor, Pickler};
use dmapickle_size::{drive, ADC, SHAPE};

#[no_mangle]
pub extern "C" fn _start() -> ! {
    drive(|seq, t_ns, gain, offset, out| {
        let mut p = Pickler::new(out);
        let built = p.dict(|p| {
            p.str("seq")?;
            p.int(seq)?;
            p.str("t_ns")?;
            p.int(t_ns)?;
            p.str("adc")?;
            p.array::<i16>(Descriptor { offset, ..ADC }, &SHAPE)?;
            p.str("gain")?;
            p.f32(gain)
        });
        match built.and_then(|()| p.finish()) {
            Ok(encoded) => core::hint::black_box(encoded).pickle.len(),
            Err(_) => 0,
        }
    })
}
