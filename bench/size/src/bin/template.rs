//! The sensor message from a template linked in as constants (built on the host by the
//! `TemplateBuilder`; `sensor_template.rs`): `from_parts` once, then copy and patch per message.
#![no_std]
#![no_main]

use dmapickle_core::template::{BufferSlot, FloatSlot, IntSlot, Template};
use dmapickle_core::Descriptor;
use dmapickle_size::sensor_template::{DESCRIPTORS, PICKLE, SLOTS};
use dmapickle_size::{drive, ADC};

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let Ok(template) = Template::<'_, 1, 4>::from_parts(PICKLE, DESCRIPTORS, SLOTS) else {
        loop {
            core::hint::spin_loop();
        }
    };
    drive(|seq, t_ns, gain, offset, out| {
        let Ok(mut msg) = template.emit(out) else {
            return 0;
        };
        let patched = msg
            .set_int(IntSlot(0), seq)
            .and(msg.set_int(IntSlot(1), t_ns))
            .and(msg.set_buffer(BufferSlot(2), Descriptor { offset, ..ADC }))
            .and(msg.set_f32(FloatSlot(3), gain));
        match patched {
            Ok(()) => core::hint::black_box(msg.finish()).pickle.len(),
            Err(_) => 0,
        }
    })
}
