// The sensor message's template, `{"seq": u32 slot, "t_ns": u64 slot, "adc": int16 (1024, 4)
// array slot, "gain": float slot}`, as the `TemplateBuilder` makes it on the host.
// core/tests/template_image.rs checks these constants against the builder (and prints new ones
// if they are stale).

use dmapickle_core::template::{Slot, SlotKind};
use dmapickle_core::Descriptor;

/// The pre-encoded pickle.
pub const PICKLE: &[u8] = b"\x80\x05}(\x8c\x03seq\x8a\x05\x00\x00\x00\x00\x00\
    \x8c\x04t_ns\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\
    \x8c\x03adc\x8c\x05numpy\x8c\x07ndarray\x93\x94(M\x00\x04K\x04\x86\x8c\x03<i2\x97\x98K\x00N\x8c\x01Ct\x81\
    \x8c\x04gainG\x00\x00\x00\x00\x00\x00\x00\x00u.";

/// seq, t_ns, adc, gain.
pub const SLOTS: &[Slot] = &[
    Slot {
        kind: SlotKind::Long(5),
        at: 9,
    },
    Slot {
        kind: SlotKind::Long(9),
        at: 22,
    },
    Slot {
        kind: SlotKind::Array,
        at: 0,
    },
    Slot {
        kind: SlotKind::Float,
        at: 84,
    },
];

/// The ADC block's initial descriptor.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    region: 1,
    offset: 0,
    len: 8192,
    readonly: true,
}];
