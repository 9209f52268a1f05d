//! The sensor message from a template the firmware builds itself at boot with the
//! `TemplateBuilder` (so the `Pickler` is linked in too), then copy and patch per message.
#![no_std]
#![no_main]

use dmapickle_core::template::Template;
use dmapickle_core::{EncodeResult as Result, TemplateBuilder};
use dmapickle_size::{drive, patch, Slots, ADC, SHAPE};

fn build(storage: &mut [u8]) -> Result<(Template<'_, 1, 4>, Slots)> {
    let mut b = TemplateBuilder::<'_, 1, 4, 2>::with_limits(storage);
    b.begin_dict()?;
    b.str("seq")?;
    let seq = b.int_slot(0u32)?;
    b.str("t_ns")?;
    let t_ns = b.int_slot(0u64)?;
    b.str("adc")?;
    let adc = b.array_slot::<i16>(ADC, &SHAPE)?;
    b.str("gain")?;
    let gain = b.f32_slot(0.0)?;
    b.end_dict()?;
    Ok((b.finish()?, (seq, t_ns, adc, gain)))
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let mut storage = [0u8; 128];
    let Ok((template, slots)) = build(&mut storage) else {
        loop {
            core::hint::spin_loop();
        }
    };
    drive(|seq, t_ns, gain, offset, out| {
        patch(template.emit(out), slots, (seq, t_ns, gain, offset))
    })
}
