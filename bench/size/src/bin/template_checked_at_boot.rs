//! The sensor message from a template linked in as constants and checked at boot with
//! `Template::from_parts` (instead of at compile time), then copy and patch per message.
#![no_std]
#![no_main]

use dmapickle_core::template::{BufferSlot, FloatSlot, IntSlot, Template};
use dmapickle_size::sensor_template::{DESCRIPTORS, PICKLE, SLOTS};
use dmapickle_size::{drive, patch};

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let Ok(template) = Template::<'_, 1, 4>::from_parts(PICKLE, DESCRIPTORS, SLOTS) else {
        loop {
            core::hint::spin_loop();
        }
    };
    let slots = (IntSlot(0), IntSlot(1), BufferSlot(2), FloatSlot(3));
    drive(|seq, t_ns, gain, offset, out| {
        patch(template.emit(out), slots, (seq, t_ns, gain, offset))
    })
}
