//! The sensor message from a template linked in as constants (built on the host by the
//! `TemplateBuilder`; `sensor_template.rs`) and checked at compile time (`StaticTemplate`): per
//! message, copy and patch.
#![no_std]
#![no_main]

use dmapickle_core::template::{BufferSlot, FloatSlot, IntSlot, StaticTemplate};
use dmapickle_size::sensor_template::{DESCRIPTORS, PICKLE, SLOTS};
use dmapickle_size::{drive, patch};

const TEMPLATE: StaticTemplate<'static> = match StaticTemplate::new(PICKLE, DESCRIPTORS, SLOTS) {
    Ok(template) => template,
    Err(_) => panic!("sensor_template.rs is not a valid template"),
};

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let slots = (IntSlot(0), IntSlot(1), BufferSlot(2), FloatSlot(3));
    drive(|seq, t_ns, gain, offset, out| {
        patch(TEMPLATE.emit(out), slots, (seq, t_ns, gain, offset))
    })
}
