//! What every size binary shares: the panic handler, the entry loop and the sensor message's
//! fixed data. The loop gets its inputs and hands its output through `black_box`, so nothing is
//! constant-folded away; the `baseline` binary is this loop alone, and each path's size is its
//! binary's `.text` minus the baseline's.
#![no_std]

use core::hint::black_box;

use dmapickle_core::template::{BufferSlot, FloatSlot, IntSlot, Message};
use dmapickle_core::Descriptor;

pub mod sensor_template;

/// The ADC block: int16 (1024, 4), read-only, out-of-band.
pub const ADC: Descriptor = Descriptor::new(1, 0, 8192).read_only();
/// Its shape.
pub const SHAPE: [usize; 2] = [1024, 4];

/// Runs `encode(seq, t_ns, gain, adc offset, out) -> (pickle length, descriptors)` forever.
pub fn drive(mut encode: impl FnMut(u32, u64, f32, u32, &mut [u8]) -> usize) -> ! {
    let mut out = [0u8; 160];
    let mut seq = 0u32;
    loop {
        seq = seq.wrapping_add(1);
        let t_ns = black_box(1_700_000_000_000_000_000u64);
        let gain = black_box(0.5f32);
        let offset = black_box(0u32);
        let len = encode(seq, t_ns, gain, offset, black_box(&mut out));
        black_box((&out, len));
    }
}

/// The sensor template's slots: seq, t_ns, adc, gain.
pub type Slots = (IntSlot, IntSlot, BufferSlot, FloatSlot);

/// Patches one message emitted from the sensor template and hands it out; returns the pickle's
/// length (0 if a slot refused its value or the template did not fit `out`).
pub fn patch(
    msg: dmapickle_core::EncodeResult<Message<'_, '_, 1>>,
    (seq_slot, t_ns_slot, adc_slot, gain_slot): Slots,
    (seq, t_ns, gain, offset): (u32, u64, f32, u32),
) -> usize {
    let Ok(mut msg) = msg else {
        return 0;
    };
    let patched = msg
        .set_int(seq_slot, seq)
        .and(msg.set_int(t_ns_slot, t_ns))
        .and(msg.set_buffer(adc_slot, Descriptor { offset, ..ADC }))
        .and(msg.set_f32(gain_slot, gain));
    match patched {
        Ok(()) => black_box(msg.finish()).pickle.len(),
        Err(_) => 0,
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
