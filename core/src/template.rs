//! Pre-encoded messages: encode a message's shape once, then emit each message by copying the
//! template and patching its slots.
//!
//! Sensor firmware sends the same message shape millions of times. A [`TemplateBuilder`] writes
//! the message once with the ordinary [`Pickler`] (it derefs to one for the parts that never
//! change) and, for each part that does, a *slot* of fixed width:
//!
//! | slot | opcode | width | values |
//! |---|---|---|---|
//! | [`SlotKind::Int32`] | `BININT` | 4 bytes | any int in `i32`'s range |
//! | [`SlotKind::Long`]`(n)` | `LONG1 n` | `n` bytes, 5..=17 | any int of `n` bytes of two's complement |
//! | [`SlotKind::Float`] | `BINFLOAT` | 8 bytes | any `f64` (an `f32` widened) |
//! | [`SlotKind::Bool`] | `NEWTRUE`/`NEWFALSE` | 1 byte | `true`, `false` |
//! | [`SlotKind::Array`] | `NEXT_BUFFER` of a `numpy.ndarray` | descriptor | same length and read-only flag |
//! | [`SlotKind::Buffer`] | `NEXT_BUFFER` | descriptor | any length, same read-only flag |
//!
//! [`TemplateBuilder::int_slot`] picks the narrowest width that holds every value of the Rust
//! type (`u8`..`i32`, `u16`: `BININT`; `u32`: 5 bytes; `i64`: 8; `u64`: 9; `i128`: 16; `u128`: 17).
//! A value that does not fit its slot is refused with [`EncodeError::SlotOverflow`] when it is set, and
//! the slot keeps its previous value: a patched message is always a valid pickle, and it loads to
//! the value a fresh [`Pickler`] encoding of the same values loads to (its int opcodes may be
//! wider than CPython's shortest form).
//!
//! ```
//! use dmapickle_core::{Descriptor, TemplateBuilder};
//!
//! // Once, at start-up:
//! let mut storage = [0u8; 128];
//! let mut b = TemplateBuilder::new(&mut storage);
//! b.begin_dict()?;
//! b.str("seq")?;
//! let seq = b.int_slot(0u32)?;
//! b.str("adc")?;
//! let adc = b.array_slot::<i16>(Descriptor::new(1, 0, 16).read_only(), &[2, 4])?;
//! b.str("gain")?;
//! let gain = b.f32_slot(1.0)?;
//! b.end_dict()?;
//! let template = b.finish()?;
//!
//! // Per message: copy and patch.
//! let mut out = [0u8; 128];
//! let mut msg = template.emit(&mut out)?;
//! msg.set_int(seq, 7u32)?;
//! msg.set_f32(gain, 0.5)?;
//! msg.set_buffer(adc, Descriptor::new(1, 16, 16).read_only())?;
//! let encoded = msg.finish();
//! assert_eq!(encoded.pickle, &b"\x80\x05}(\x8c\x03seq\x8a\x05\x07\x00\x00\x00\x00\
//!     \x8c\x03adc\x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x04\x86\x8c\x03<i2\x97\x98K\x00N\
//!     \x8c\x01Ct\x81\x8c\x04gainG?\xe0\x00\x00\x00\x00\x00\x00u."[..]);
//! assert_eq!(encoded.descriptors[0].offset, 16);
//! # Ok::<(), dmapickle_core::EncodeError>(())
//! ```
//!
//! A template can also be built on the host and linked into firmware as constants: keep
//! [`Template::pickle`], [`Template::descriptors`] and [`Template::slots`], and rebuild it with
//! [`Template::from_parts`], which checks every slot against the bytes (the firmware then needs
//! neither the builder nor the [`Pickler`]).

use core::ops::{Deref, DerefMut};

use heapless::Vec;

use crate::ndarray::{DType, Element, Order};
use crate::opcode as op;
use crate::pickler::{Container, DEFAULT_BUFFERS, DEFAULT_DEPTH};
use crate::{Descriptor, EncodeError, EncodeResult as Result, Encoded, Pickler};

/// Default capacity of a template's slot table.
pub const DEFAULT_SLOTS: usize = 8;

/// What a slot holds and how it is encoded. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SlotKind {
    /// An int as `BININT`: 4 bytes, `i32`'s range.
    Int32,
    /// An int as `LONG1` with this many bytes (5..=17) of little-endian two's complement.
    Long(u8),
    /// A float as `BINFLOAT`: 8 bytes, big-endian.
    Float,
    /// A bool as `NEWTRUE` or `NEWFALSE`.
    Bool,
    /// The descriptor of an out-of-band buffer (`PickleBuffer`): any length.
    Buffer,
    /// The descriptor of a numpy array's buffer: the template's length (the shape is fixed).
    Array,
}

/// One slot of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Slot {
    /// What the slot holds.
    pub kind: SlotKind,
    /// For ints, floats and bools: byte offset of the slot's opcode in the pickle. For buffers
    /// and arrays: index of the descriptor in the template's descriptor table.
    pub at: u32,
}

/// Handle of an int slot: its index in the template's slot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IntSlot(pub u8);

/// Handle of a float slot: its index in the template's slot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FloatSlot(pub u8);

/// Handle of a bool slot: its index in the template's slot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BoolSlot(pub u8);

/// Handle of a buffer or array slot: its index in the template's slot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferSlot(pub u8);

/// Integer types a slot takes: every primitive integer up to 128 bits.
pub trait SlotInt: Copy {
    /// The narrowest slot that holds every value of the type.
    const KIND: SlotKind;
    /// Writes the value into all of `dst` as little-endian two's complement, if it fits in
    /// `dst.len()` bytes; returns whether it did (`dst` is untouched if not).
    #[doc(hidden)]
    fn write_le(self, dst: &mut [u8]) -> bool;
}

// Up to 64 bits, the range check and the bytes use 64-bit arithmetic (cheap on 32-bit cores).
macro_rules! slot_int {
    ($wide:ty, $fill:expr; $($t:ty => $kind:expr),*) => {
        $(impl SlotInt for $t {
            const KIND: SlotKind = $kind;
            #[inline]
            #[allow(clippy::unnecessary_cast, unused_comparisons)]
            fn write_le(self, dst: &mut [u8]) -> bool {
                let v = self as $wide;
                let fill: u8 = $fill(v);
                // Fits iff every bit from 8n-1 up equals the sign (0 for unsigned types).
                let Some(top) = (dst.len() as u32).checked_mul(8).and_then(|b| b.checked_sub(1)) else {
                    return false;
                };
                let rest = v.checked_shr(top).unwrap_or(0);
                if rest != 0 && (fill == 0 || rest != !0) {
                    return false;
                }
                // The type's own bytes, sign-extended (a slot at least as wide as the type is
                // the usual case: a fixed-size store and a byte or two of fill).
                let bytes = self.to_le_bytes();
                match dst.split_first_chunk_mut() {
                    Some((head, tail)) => {
                        *head = bytes;
                        match tail {
                            [] => {}
                            // The usual case (u32 in 5 bytes, u64 in 9): no memset call.
                            [out] => *out = fill,
                            _ => tail.iter_mut().for_each(|out| *out = fill),
                        }
                    }
                    None => {
                        for (out, byte) in dst.iter_mut().zip(bytes) {
                            *out = byte;
                        }
                    }
                }
                true
            }
        })*
    };
}

slot_int!(i64, |v: i64| if v < 0 { 0xff } else { 0 };
    i8 => SlotKind::Int32, i16 => SlotKind::Int32, i32 => SlotKind::Int32,
    i64 => SlotKind::Long(8), isize => SlotKind::Long(8));
slot_int!(u64, |_| 0;
    u8 => SlotKind::Int32, u16 => SlotKind::Int32, u32 => SlotKind::Long(5),
    u64 => SlotKind::Long(9), usize => SlotKind::Long(9));
slot_int!(i128, |v: i128| if v < 0 { 0xff } else { 0 }; i128 => SlotKind::Long(16));
slot_int!(u128, |_| 0; u128 => SlotKind::Long(17));

/// The payload width of an int slot of `kind`: 4 for `BININT`, `n` for `LONG1 n`.
fn int_width(kind: SlotKind) -> Result<u8> {
    match kind {
        SlotKind::Int32 => Ok(4),
        SlotKind::Long(n @ 5..=17) => Ok(n),
        _ => Err(EncodeError::SlotMismatch),
    }
}

/// Checks that each slot points at an opcode of its kind, that value slots are in pickle order
/// without overlapping, and that the pickle is framed by `PROTO 5` and `STOP`. A `const fn`, so
/// that a [`StaticTemplate`] is checked at compile time.
// Every index is checked against the length first (slice `get` is not usable in a `const fn`).
#[allow(clippy::indexing_slicing)]
const fn check(pickle: &[u8], descriptors: usize, slots: &[Slot]) -> Result<()> {
    let len = pickle.len();
    if len < 3 || pickle[0] != op::PROTO || pickle[1] != 5 || pickle[len - 1] != op::STOP {
        return Err(EncodeError::BadTemplate);
    }
    // Value slots come in pickle order, so "no overlap" is "each starts after the last ended".
    let mut free_from = 2;
    let mut i = 0;
    while i < slots.len() {
        let slot = slots[i];
        i += 1;
        let at = slot.at as usize;
        let (opcode, width) = match slot.kind {
            SlotKind::Int32 => (op::BININT, 5),
            SlotKind::Long(n @ 5..=17) => (op::LONG1, 2 + n as usize),
            SlotKind::Float => (op::BINFLOAT, 9),
            SlotKind::Bool if at < len && matches!(pickle[at], op::NEWTRUE | op::NEWFALSE) => {
                (pickle[at], 1)
            }
            SlotKind::Buffer | SlotKind::Array if at < descriptors => continue,
            _ => return Err(EncodeError::BadTemplate),
        };
        // The last byte is STOP, never a slot's: `at + width < len`.
        if at < free_from || at >= len || width >= len - at || pickle[at] != opcode {
            return Err(EncodeError::BadTemplate);
        }
        if let SlotKind::Long(n) = slot.kind {
            if pickle[at + 1] != n {
                return Err(EncodeError::BadTemplate);
            }
        }
        free_from = at + width;
    }
    Ok(())
}

/// Copies `pickle` into `out` and returns the message to patch.
#[inline]
fn emit<'o, 'm, const N: usize>(
    pickle: &[u8],
    descriptors: &'m [Descriptor],
    slots: &'m [Slot],
    out: &'o mut [u8],
) -> Result<Message<'o, 'm, N>> {
    let out = out.get_mut(..pickle.len()).ok_or(EncodeError::BufferFull)?;
    out.copy_from_slice(pickle);
    Ok(Message {
        out,
        descriptors: Vec::from_slice(descriptors).map_err(|_| EncodeError::TooManyBuffers)?,
        slots,
        originals: descriptors,
    })
}

/// A template whose parts are constants (made by a [`TemplateBuilder`] on the host), checked when
/// the constant is evaluated, at compile time: the firmware links only the copy and the patches.
///
/// ```
/// use dmapickle_core::template::{IntSlot, Slot, SlotKind, StaticTemplate};
/// const TEMPLATE: StaticTemplate<'static> = match StaticTemplate::new(
///     b"\x80\x05J\x00\x00\x00\x00.",
///     &[],
///     &[Slot { kind: SlotKind::Int32, at: 2 }],
/// ) {
///     Ok(template) => template,
///     Err(_) => panic!("not a template"), // a compile error, not a run-time panic
/// };
/// let mut out = [0u8; 8];
/// let mut msg = TEMPLATE.emit::<1>(&mut out)?;
/// msg.set_int(IntSlot(0), 300u16)?;
/// assert_eq!(msg.finish().pickle, b"\x80\x05J\x2c\x01\x00\x00.");
/// # Ok::<(), dmapickle_core::EncodeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticTemplate<'t> {
    pickle: &'t [u8],
    descriptors: &'t [Descriptor],
    slots: &'t [Slot],
}

impl<'t> StaticTemplate<'t> {
    /// The template, if its parts agree: the same checks as [`Template::from_parts`], in a
    /// `const fn`.
    pub const fn new(
        pickle: &'t [u8],
        descriptors: &'t [Descriptor],
        slots: &'t [Slot],
    ) -> Result<Self> {
        match check(pickle, descriptors.len(), slots) {
            Ok(()) => Ok(StaticTemplate {
                pickle,
                descriptors,
                slots,
            }),
            Err(error) => Err(error),
        }
    }

    /// The pre-encoded pickle, with the slots' initial values.
    pub const fn pickle(&self) -> &'t [u8] {
        self.pickle
    }

    /// The out-of-band buffers, with the slots' initial descriptors.
    pub const fn descriptors(&self) -> &'t [Descriptor] {
        self.descriptors
    }

    /// The slot table; a handle's number is its index here.
    pub const fn slots(&self) -> &'t [Slot] {
        self.slots
    }

    /// As [`Template::emit`], into a message with room for `N` descriptors
    /// ([`EncodeError::TooManyBuffers`] if the template has more).
    #[inline]
    pub fn emit<'o, const N: usize>(&self, out: &'o mut [u8]) -> Result<Message<'o, 't, N>> {
        emit(self.pickle, self.descriptors, self.slots, out)
    }
}

/// A pre-encoded message: pickle bytes, descriptors and slots. Emit messages with
/// [`emit`](Template::emit).
///
/// `N` is the capacity of the descriptor table, `S` of the slot table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<'t, const N: usize = DEFAULT_BUFFERS, const S: usize = DEFAULT_SLOTS> {
    pickle: &'t [u8],
    descriptors: Vec<Descriptor, N>,
    slots: Vec<Slot, S>,
}

impl<'t, const N: usize, const S: usize> Template<'t, N, S> {
    /// A template from its parts, as [`pickle`](Template::pickle),
    /// [`descriptors`](Template::descriptors) and [`slots`](Template::slots) returned them
    /// (for templates built on the host and linked into firmware as constants).
    ///
    /// Fails with [`EncodeError::BadTemplate`] unless every slot points at an opcode of its kind (or a
    /// descriptor the table holds), value slots are in pickle order without overlapping (as the
    /// builder makes them), and the pickle starts with
    /// `PROTO 5` and ends with `STOP`; with [`EncodeError::TooManyBuffers`] or
    /// [`EncodeError::TooManySlots`] if a table does not fit. It does not re-validate the rest of the
    /// pickle: give it what a [`TemplateBuilder`] made.
    ///
    /// ```
    /// use dmapickle_core::template::{Slot, SlotKind, Template};
    /// use dmapickle_core::EncodeError;
    /// let pickle = b"\x80\x05J\x00\x00\x00\x00.";
    /// let ok = [Slot { kind: SlotKind::Int32, at: 2 }];
    /// let t = Template::<'_, 1, 1>::from_parts(pickle, &[], &ok)?;
    /// let mut out = [0u8; 8];
    /// let mut msg = t.emit(&mut out)?;
    /// msg.set_int(dmapickle_core::template::IntSlot(0), -2i8)?;
    /// assert_eq!(msg.finish().pickle, b"\x80\x05J\xfe\xff\xff\xff.");
    /// let bad = [Slot { kind: SlotKind::Float, at: 2 }];
    /// assert_eq!(Template::<'_, 1, 1>::from_parts(pickle, &[], &bad), Err(EncodeError::BadTemplate));
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn from_parts(
        pickle: &'t [u8],
        descriptors: &[Descriptor],
        slots: &[Slot],
    ) -> Result<Self> {
        check(pickle, descriptors.len(), slots)?;
        Ok(Template {
            pickle,
            descriptors: Vec::from_slice(descriptors).map_err(|_| EncodeError::TooManyBuffers)?,
            slots: Vec::from_slice(slots).map_err(|_| EncodeError::TooManySlots)?,
        })
    }

    /// The pre-encoded pickle, with the slots' initial values.
    pub fn pickle(&self) -> &'t [u8] {
        self.pickle
    }

    /// The out-of-band buffers, with the slots' initial descriptors.
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }

    /// The slot table; a handle's number is its index here.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Copies the template into `out` and returns the message, ready to patch; the slots hold
    /// the template's values until set. Fails with [`EncodeError::BufferFull`] if `out` is shorter than
    /// [`pickle`](Template::pickle).
    #[inline]
    pub fn emit<'o>(&self, out: &'o mut [u8]) -> Result<Message<'o, '_, N>> {
        emit(self.pickle, &self.descriptors, &self.slots, out)
    }
}

/// One message being emitted from a [`Template`]: set its slots, then
/// [`finish`](Message::finish). Each setter is all-or-nothing: on error the slot keeps its value.
#[derive(Debug)]
pub struct Message<'o, 'm, const N: usize = DEFAULT_BUFFERS> {
    out: &'o mut [u8],
    descriptors: Vec<Descriptor, N>,
    slots: &'m [Slot],
    originals: &'m [Descriptor],
}

impl<'o, const N: usize> Message<'o, '_, N> {
    #[inline]
    fn slot(&self, index: u8) -> Result<Slot> {
        self.slots
            .get(usize::from(index))
            .copied()
            .ok_or(EncodeError::SlotMismatch)
    }

    #[inline]
    fn bytes(&mut self, at: u32, len: usize) -> Result<&mut [u8]> {
        let at = usize::try_from(at).map_err(|_| EncodeError::BadTemplate)?;
        let end = at.checked_add(len).ok_or(EncodeError::BadTemplate)?;
        self.out.get_mut(at..end).ok_or(EncodeError::BadTemplate)
    }

    /// Sets an int slot. Fails with [`EncodeError::SlotOverflow`] if `value` does not fit the slot's
    /// width, and with [`EncodeError::SlotMismatch`] if `slot` is not an int slot of this template.
    ///
    /// ```
    /// use dmapickle_core::{EncodeError, TemplateBuilder};
    /// let mut storage = [0u8; 32];
    /// let mut b = TemplateBuilder::new(&mut storage);
    /// let small = b.int_slot(0i16)?;
    /// let t = b.finish()?;
    /// let mut out = [0u8; 32];
    /// let mut msg = t.emit(&mut out)?;
    /// assert_eq!(msg.set_int(small, 1u64 << 40), Err(EncodeError::SlotOverflow));
    /// msg.set_int(small, i32::MIN)?; // a BININT slot takes all of i32
    /// assert_eq!(msg.finish().pickle, b"\x80\x05J\x00\x00\x00\x80.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    #[inline]
    pub fn set_int<T: SlotInt>(&mut self, slot: IntSlot, value: T) -> Result<()> {
        let dst = self.int_payload(slot)?;
        if value.write_le(dst) {
            Ok(())
        } else {
            Err(EncodeError::SlotOverflow)
        }
    }

    /// The payload bytes of int slot `slot` (the type-independent part of `set_int`).
    fn int_payload(&mut self, slot: IntSlot) -> Result<&mut [u8]> {
        let slot = self.slot(slot.0)?;
        let n = usize::from(int_width(slot.kind)?);
        let skip = if slot.kind == SlotKind::Int32 { 1 } else { 2 };
        let dst = self.bytes(slot.at, skip + n)?;
        dst.get_mut(skip..).ok_or(EncodeError::BadTemplate)
    }

    /// Sets a float slot.
    #[inline]
    pub fn set_f64(&mut self, slot: FloatSlot, value: f64) -> Result<()> {
        let slot = self.slot(slot.0)?;
        if slot.kind != SlotKind::Float {
            return Err(EncodeError::SlotMismatch);
        }
        let dst = self.bytes(slot.at, 9)?;
        dst.get_mut(1..)
            .ok_or(EncodeError::BadTemplate)?
            .copy_from_slice(&value.to_be_bytes());
        Ok(())
    }

    /// Sets a float slot to an `f32`, widened exactly, as [`Pickler::f32`] writes it.
    #[inline]
    pub fn set_f32(&mut self, slot: FloatSlot, value: f32) -> Result<()> {
        self.set_f64(slot, f64::from(value))
    }

    /// Sets a bool slot.
    #[inline]
    pub fn set_bool(&mut self, slot: BoolSlot, value: bool) -> Result<()> {
        let slot = self.slot(slot.0)?;
        if slot.kind != SlotKind::Bool {
            return Err(EncodeError::SlotMismatch);
        }
        let dst = self.bytes(slot.at, 1)?;
        dst.copy_from_slice(&[if value { op::NEWTRUE } else { op::NEWFALSE }]);
        Ok(())
    }

    /// Sets the descriptor of a buffer or array slot: region and offset freely, the length
    /// freely for a plain buffer and only to the template's length for an array
    /// ([`EncodeError::ArraySizeMismatch`]), the read-only flag only to the template's
    /// ([`EncodeError::SlotMismatch`]).
    #[inline]
    pub fn set_buffer(&mut self, slot: BufferSlot, desc: Descriptor) -> Result<()> {
        let slot = self.slot(slot.0)?;
        if !matches!(slot.kind, SlotKind::Array | SlotKind::Buffer) {
            return Err(EncodeError::SlotMismatch);
        }
        let index = usize::try_from(slot.at).map_err(|_| EncodeError::BadTemplate)?;
        let original = self.originals.get(index).ok_or(EncodeError::BadTemplate)?;
        match slot.kind {
            SlotKind::Array if desc.len != original.len => {
                return Err(EncodeError::ArraySizeMismatch)
            }
            SlotKind::Array | SlotKind::Buffer if desc.readonly == original.readonly => {}
            _ => return Err(EncodeError::SlotMismatch),
        }
        *self
            .descriptors
            .get_mut(index)
            .ok_or(EncodeError::BadTemplate)? = desc;
        Ok(())
    }

    /// The message: the patched pickle and its descriptors.
    #[inline]
    pub fn finish(self) -> Encoded<'o, N> {
        Encoded {
            pickle: self.out,
            descriptors: self.descriptors,
        }
    }
}

/// Builds a [`Template`]: write the message as with a [`Pickler`] (this derefs to one), with
/// slots where values change. Open containers that may hold slots with this builder's
/// [`begin`](TemplateBuilder::begin)/[`end`](TemplateBuilder::end) (or
/// [`dict`](TemplateBuilder::dict), [`list`](TemplateBuilder::list),
/// [`tuple`](TemplateBuilder::tuple)), not the [`Pickler`]'s: a slot written inside a container
/// the builder did not open is [`EncodeError::ContainerMismatch`].
///
/// `N`: descriptors, `S`: slots (at most 256), `D`: nesting depth.
#[derive(Debug)]
pub struct TemplateBuilder<
    't,
    const N: usize = DEFAULT_BUFFERS,
    const S: usize = DEFAULT_SLOTS,
    const D: usize = DEFAULT_DEPTH,
> {
    p: Pickler<'t, N, D>,
    slots: Vec<Slot, S>,
    /// Position of the `MARK` of each container opened through the builder.
    marks: Vec<usize, D>,
}

impl<'t, const N: usize, const S: usize, const D: usize> Deref for TemplateBuilder<'t, N, S, D> {
    type Target = Pickler<'t, N, D>;
    fn deref(&self) -> &Self::Target {
        &self.p
    }
}

impl<const N: usize, const S: usize, const D: usize> DerefMut for TemplateBuilder<'_, N, S, D> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.p
    }
}

impl<'t> TemplateBuilder<'t> {
    /// A builder writing the template's pickle into `storage`, which the template then borrows,
    /// with room for [`DEFAULT_BUFFERS`] descriptors, [`DEFAULT_SLOTS`] slots and
    /// [`DEFAULT_DEPTH`] nested containers. Other limits:
    /// [`with_limits`](TemplateBuilder::with_limits).
    pub fn new(storage: &'t mut [u8]) -> Self {
        Self::with_limits(storage)
    }
}

impl<'t, const N: usize, const S: usize, const D: usize> TemplateBuilder<'t, N, S, D> {
    /// A builder writing the template's pickle into `storage`, which the template then borrows.
    pub fn with_limits(storage: &'t mut [u8]) -> Self {
        TemplateBuilder {
            p: Pickler::with_limits(storage),
            slots: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// Containers opened through the pickler directly would move bytes under slots.
    fn in_step(&self) -> Result<()> {
        if self.p.depth() == self.marks.len() {
            Ok(())
        } else {
            Err(EncodeError::ContainerMismatch)
        }
    }

    fn push(&mut self, kind: SlotKind, at: usize) -> Result<u8> {
        let index = u8::try_from(self.slots.len()).map_err(|_| EncodeError::TooManySlots)?;
        let at = u32::try_from(at).map_err(|_| EncodeError::BufferFull)?;
        self.slots
            .push(Slot { kind, at })
            .map_err(|_| EncodeError::TooManySlots)?;
        Ok(index)
    }

    /// Opens a container that may hold slots (see [`Pickler::begin`]).
    pub fn begin(&mut self, kind: Container) -> Result<()> {
        self.in_step()?;
        self.p.begin(kind)?;
        // `begin` ends with the container's MARK.
        let mark = self.p.len().saturating_sub(1);
        self.marks.push(mark).map_err(|_| EncodeError::TooDeep)
    }

    /// Closes the innermost container opened with [`begin`](TemplateBuilder::begin).
    pub fn end(&mut self, kind: Container) -> Result<()> {
        self.in_step()?;
        let mark = *self.marks.last().ok_or(EncodeError::ContainerMismatch)?;
        let before = self.p.len();
        self.p.end(kind)?;
        self.marks.pop();
        // A short form (TUPLE1-3, APPEND, SETITEM, ...) drops the MARK and moves the items one
        // byte left; a batch closer is appended and moves nothing.
        if self.p.len() != before + 1 {
            for slot in self.slots.iter_mut() {
                let moved = !matches!(slot.kind, SlotKind::Buffer | SlotKind::Array)
                    && usize::try_from(slot.at).is_ok_and(|at| at > mark);
                if moved {
                    slot.at -= 1;
                }
            }
        }
        Ok(())
    }

    /// [`begin`](TemplateBuilder::begin) a dict.
    pub fn begin_dict(&mut self) -> Result<()> {
        self.begin(Container::Dict)
    }

    /// [`end`](TemplateBuilder::end) a dict.
    pub fn end_dict(&mut self) -> Result<()> {
        self.end(Container::Dict)
    }

    /// [`begin`](TemplateBuilder::begin) a list.
    pub fn begin_list(&mut self) -> Result<()> {
        self.begin(Container::List)
    }

    /// [`end`](TemplateBuilder::end) a list.
    pub fn end_list(&mut self) -> Result<()> {
        self.end(Container::List)
    }

    /// [`begin`](TemplateBuilder::begin) a tuple.
    pub fn begin_tuple(&mut self) -> Result<()> {
        self.begin(Container::Tuple)
    }

    /// [`end`](TemplateBuilder::end) a tuple.
    pub fn end_tuple(&mut self) -> Result<()> {
        self.end(Container::Tuple)
    }

    fn container(
        &mut self,
        kind: Container,
        f: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        self.begin(kind)?;
        f(self)?;
        self.end(kind)
    }

    /// A dict whose keys and values `f` writes (slots allowed).
    pub fn dict(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.container(Container::Dict, f)
    }

    /// A list whose items `f` writes (slots allowed).
    pub fn list(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.container(Container::List, f)
    }

    /// A tuple whose items `f` writes (slots allowed).
    pub fn tuple(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.container(Container::Tuple, f)
    }

    /// An int slot of the narrowest width that holds every `T` (see the [module docs](self)),
    /// holding `initial`.
    pub fn int_slot<T: SlotInt>(&mut self, initial: T) -> Result<IntSlot> {
        self.int_slot_of(T::KIND, initial)
    }

    /// An int slot of `kind` ([`SlotKind::Int32`] or [`SlotKind::Long`] of 5..=17 bytes),
    /// holding `initial`; [`EncodeError::SlotOverflow`] if it does not fit, [`EncodeError::SlotMismatch`] for
    /// another kind.
    ///
    /// ```
    /// use dmapickle_core::template::SlotKind;
    /// use dmapickle_core::TemplateBuilder;
    /// let mut storage = [0u8; 32];
    /// let mut b = TemplateBuilder::new(&mut storage);
    /// b.int_slot_of(SlotKind::Long(6), -1i64)?;
    /// assert_eq!(b.finish()?.pickle(), b"\x80\x05\x8a\x06\xff\xff\xff\xff\xff\xff.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn int_slot_of<T: SlotInt>(&mut self, kind: SlotKind, initial: T) -> Result<IntSlot> {
        self.in_step()?;
        let n = usize::from(int_width(kind)?);
        let mut raw = [0u8; 19];
        let head = match kind {
            SlotKind::Int32 => [op::BININT].as_slice(),
            _ => &[op::LONG1, n as u8],
        };
        let used = head.len() + n;
        let (opcode, payload) = raw.split_at_mut(head.len());
        opcode.copy_from_slice(head);
        let payload = payload.get_mut(..n).ok_or(EncodeError::SlotMismatch)?;
        if !initial.write_le(payload) {
            return Err(EncodeError::SlotOverflow);
        }
        self.p
            .raw_value(raw.get(..used).ok_or(EncodeError::SlotMismatch)?)?;
        let at = self.p.len() - used;
        self.push(kind, at).map(IntSlot)
    }

    /// A float slot holding `initial`.
    pub fn f64_slot(&mut self, initial: f64) -> Result<FloatSlot> {
        self.in_step()?;
        self.p.f64(initial)?;
        let at = self.p.len() - 9;
        self.push(SlotKind::Float, at).map(FloatSlot)
    }

    /// A float slot holding `initial`, widened exactly.
    pub fn f32_slot(&mut self, initial: f32) -> Result<FloatSlot> {
        self.f64_slot(f64::from(initial))
    }

    /// A bool slot holding `initial`.
    pub fn bool_slot(&mut self, initial: bool) -> Result<BoolSlot> {
        self.in_step()?;
        self.p.bool(initial)?;
        let at = self.p.len() - 1;
        self.push(SlotKind::Bool, at).map(BoolSlot)
    }

    /// A plain out-of-band buffer whose descriptor is a slot (see [`Pickler::buffer`]).
    pub fn buffer_slot(&mut self, initial: Descriptor) -> Result<BufferSlot> {
        self.in_step()?;
        self.p.buffer(initial)?;
        let index = self.p.descriptors().len() - 1;
        self.push(SlotKind::Buffer, index).map(BufferSlot)
    }

    /// A numpy array of fixed dtype, shape and order whose descriptor is a slot (see
    /// [`Pickler::ndarray`]).
    pub fn ndarray_slot(
        &mut self,
        initial: Descriptor,
        dtype: DType,
        shape: &[usize],
        order: Order,
    ) -> Result<BufferSlot> {
        self.in_step()?;
        self.p.ndarray(initial, dtype, shape, order)?;
        let index = self.p.descriptors().len() - 1;
        self.push(SlotKind::Array, index).map(BufferSlot)
    }

    /// A C-ordered array of `T` whose descriptor is a slot (see [`Pickler::array`]).
    pub fn array_slot<T: Element>(
        &mut self,
        initial: Descriptor,
        shape: &[usize],
    ) -> Result<BufferSlot> {
        self.ndarray_slot(initial, T::DTYPE, shape, Order::C)
    }

    /// The template. Fails as [`Pickler::finish`] does, or with [`EncodeError::ContainerMismatch`] if
    /// a container opened through the pickler is still open.
    pub fn finish(self) -> Result<Template<'t, N, S>> {
        self.in_step()?;
        let encoded = self.p.finish()?;
        check(encoded.pickle, encoded.descriptors.len(), &self.slots)?;
        Ok(Template {
            pickle: encoded.pickle,
            descriptors: encoded.descriptors,
            slots: self.slots,
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    #[test]
    fn slots_survive_the_short_forms_that_drop_a_mark() {
        // A one-pair dict, a 3-tuple and a 1-item list all drop their MARK on `end`.
        let mut storage = [0u8; 128];
        let mut b = TemplateBuilder::new(&mut storage);
        let (mut a, mut c, mut d) = (None, None, None);
        b.dict(|b| {
            b.str("k")?;
            b.tuple(|b| {
                a = Some(b.int_slot(0u8)?);
                b.list(|b| {
                    c = Some(b.bool_slot(false)?);
                    Ok(())
                })?;
                d = Some(b.f64_slot(0.0)?);
                Ok(())
            })
        })
        .unwrap();
        let t = b.finish().unwrap();
        assert_eq!(
            t.pickle(),
            b"\x80\x05}\x8c\x01kJ\x00\x00\x00\x00]\x89aG\x00\x00\x00\x00\x00\x00\x00\x00\x87s."
        );
        let mut out = [0u8; 128];
        let mut m = t.emit(&mut out).unwrap();
        m.set_int(a.unwrap(), -1i64).unwrap();
        m.set_bool(c.unwrap(), true).unwrap();
        m.set_f64(d.unwrap(), 1.5).unwrap();
        assert_eq!(
            m.finish().pickle,
            b"\x80\x05}\x8c\x01kJ\xff\xff\xff\xff]\x88aG?\xf8\x00\x00\x00\x00\x00\x00\x87s."
        );
    }

    #[test]
    fn every_int_width_takes_exactly_its_range() {
        for n in 5u8..=17 {
            let mut storage = [0u8; 32];
            let mut b = TemplateBuilder::new(&mut storage);
            let slot = b.int_slot_of(SlotKind::Long(n), 0u8).unwrap();
            let t = b.finish().unwrap();
            let mut out = [0u8; 32];
            let mut m = t.emit(&mut out).unwrap();
            let bits = 8 * u32::from(n);
            if bits <= 128 {
                let max = if bits == 128 {
                    i128::MAX
                } else {
                    (1i128 << (bits - 1)) - 1
                };
                let min = if bits == 128 {
                    i128::MIN
                } else {
                    -(1i128 << (bits - 1))
                };
                m.set_int(slot, max).unwrap();
                m.set_int(slot, min).unwrap();
                if bits < 128 {
                    assert_eq!(
                        m.set_int(slot, max + 1),
                        Err(EncodeError::SlotOverflow),
                        "{n}"
                    );
                    assert_eq!(
                        m.set_int(slot, min - 1),
                        Err(EncodeError::SlotOverflow),
                        "{n}"
                    );
                }
            } else {
                m.set_int(slot, u128::MAX).unwrap();
            }
            // A failed set leaves the slot as it was.
            if n == 5 {
                m.set_int(slot, 7u8).unwrap();
                assert_eq!(m.set_int(slot, u64::MAX), Err(EncodeError::SlotOverflow));
                assert_eq!(m.finish().pickle, b"\x80\x05\x8a\x05\x07\x00\x00\x00\x00.");
            }
        }
        let mut storage = [0u8; 32];
        let mut b = TemplateBuilder::new(&mut storage);
        for kind in [SlotKind::Long(4), SlotKind::Long(18), SlotKind::Float] {
            assert!(b.int_slot_of(kind, 0u8).is_err());
        }
        assert_eq!(
            b.int_slot_of(SlotKind::Int32, u32::MAX),
            Err(EncodeError::SlotOverflow)
        );
    }

    /// Reference: does `v` fit `n` bytes of two's complement, and its first `n` bytes.
    fn reference(v: i128, above_i128: bool, n: usize) -> Option<Vec<u8>> {
        let fits = if above_i128 {
            n == 17
        } else if n >= 16 {
            true
        } else {
            let half = 1i128 << (8 * n - 1);
            (-half..half).contains(&v)
        };
        let mut bytes = v.to_le_bytes().to_vec();
        bytes.push(if v < 0 && !above_i128 { 0xff } else { 0 });
        fits.then(|| bytes[..n].to_vec())
    }

    fn check_type<T: SlotInt + Copy + core::fmt::Debug>(
        values: &[T],
        wide: impl Fn(T) -> (i128, bool),
    ) {
        for &value in values {
            for n in 4..=17 {
                let mut dst = std::vec![0xa5u8; n];
                let wrote = value.write_le(&mut dst);
                let (v, above) = wide(value);
                match reference(v, above, n) {
                    Some(bytes) => assert!(wrote && dst == bytes, "{value:?} in {n}: {dst:?}"),
                    None => assert!(!wrote && dst.iter().all(|&b| b == 0xa5), "{value:?} in {n}"),
                }
            }
        }
    }

    #[test]
    fn every_int_type_writes_two_s_complement_or_refuses() {
        macro_rules! signed {
            ($($t:ty),*) => {$(
                let edges = [<$t>::MIN, <$t>::MIN + 1, -1, 0, 1, <$t>::MAX - 1, <$t>::MAX, 127, -128, 255, -32768];
                check_type::<$t>(&edges, |v| (v as i128, false));
            )*};
        }
        macro_rules! unsigned {
            ($($t:ty),*) => {$(
                let edges = [0, 1, 127, 128, 255, <$t>::MAX / 2, <$t>::MAX / 2 + 1, <$t>::MAX];
                check_type::<$t>(&edges, |v| (v as i128, (v as u128) > i128::MAX as u128));
            )*};
        }
        signed!(i16, i32, i64, isize, i128);
        unsigned!(u16, u32, u64, usize, u128);
        check_type::<i8>(&[i8::MIN, -1, 0, i8::MAX], |v| (i128::from(v), false));
        check_type::<u8>(&[0, 1, u8::MAX], |v| (i128::from(v), false));
        for shift in 0..127 {
            let values = [
                (1i128 << shift) - 1,
                1i128 << shift,
                -(1i128 << shift),
                -(1i128 << shift) - 1,
            ];
            check_type::<i128>(&values, |v| (v, false));
            let big = [
                (1u128 << shift) << 1,
                ((1u128 << shift) << 1).wrapping_sub(1),
            ];
            check_type::<u128>(&big, |v| (v as i128, v > i128::MAX as u128));
        }
    }

    #[test]
    fn wrong_handles_and_descriptors_are_errors() {
        let mut storage = [0u8; 128];
        let mut b = TemplateBuilder::new(&mut storage);
        b.begin_list().unwrap();
        let int = b.int_slot(0u16).unwrap();
        let arr = b
            .array_slot::<i16>(Descriptor::new(0, 0, 8).read_only(), &[4])
            .unwrap();
        let raw = b.buffer_slot(Descriptor::new(0, 8, 8)).unwrap();
        b.end_list().unwrap();
        let t = b.finish().unwrap();
        let mut out = [0u8; 128];
        let mut m = t.emit(&mut out).unwrap();
        assert_eq!(
            m.set_f64(FloatSlot(int.0), 1.0),
            Err(EncodeError::SlotMismatch)
        );
        assert_eq!(m.set_int(IntSlot(9), 1u8), Err(EncodeError::SlotMismatch));
        assert_eq!(
            m.set_buffer(BufferSlot(int.0), Descriptor::new(0, 0, 8)),
            Err(EncodeError::SlotMismatch)
        );
        assert_eq!(
            m.set_buffer(arr, Descriptor::new(0, 0, 10).read_only()),
            Err(EncodeError::ArraySizeMismatch)
        );
        assert_eq!(
            m.set_buffer(arr, Descriptor::new(0, 0, 8)),
            Err(EncodeError::SlotMismatch)
        );
        assert_eq!(
            m.set_buffer(raw, Descriptor::new(0, 0, 8).read_only()),
            Err(EncodeError::SlotMismatch)
        );
        m.set_buffer(raw, Descriptor::new(3, 100, 1000)).unwrap();
        m.set_buffer(arr, Descriptor::new(2, 16, 8).read_only())
            .unwrap();
        let e = m.finish();
        assert_eq!(
            e.descriptors.as_slice(),
            &[
                Descriptor::new(2, 16, 8).read_only(),
                Descriptor::new(3, 100, 1000)
            ]
        );
        let mut small = [0u8; 8];
        assert_eq!(t.emit(&mut small).err(), Some(EncodeError::BufferFull));
    }

    #[test]
    fn slots_inside_containers_the_builder_did_not_open_are_refused() {
        let mut storage = [0u8; 64];
        let mut b = TemplateBuilder::new(&mut storage);
        b.begin_list().unwrap();
        b.p.begin_tuple().unwrap();
        assert_eq!(b.int_slot(1u8), Err(EncodeError::ContainerMismatch));
        assert_eq!(b.end_list(), Err(EncodeError::ContainerMismatch));
        b.p.end_tuple().unwrap();
        b.end_list().unwrap();
        b.finish().unwrap();
    }

    #[test]
    fn from_parts_checks_every_slot() {
        let mut storage = [0u8; 64];
        let mut b = TemplateBuilder::new(&mut storage);
        b.begin_tuple().unwrap();
        b.int_slot(0u32).unwrap();
        b.bool_slot(true).unwrap();
        b.buffer_slot(Descriptor::new(0, 0, 1)).unwrap();
        b.end_tuple().unwrap();
        let t = b.finish().unwrap();
        let again =
            Template::<'_, 8, 8>::from_parts(t.pickle(), t.descriptors(), t.slots()).unwrap();
        assert_eq!(again, t);
        let slot = |kind, at| Slot { kind, at };
        let bad: &[&[Slot]] = &[
            &[slot(SlotKind::Long(5), 3)],
            &[slot(SlotKind::Long(6), 2)],
            &[slot(SlotKind::Int32, 2)],
            &[slot(SlotKind::Bool, 0)],
            &[slot(SlotKind::Bool, 9), slot(SlotKind::Bool, 9)],
            &[slot(SlotKind::Buffer, 1)],
            &[slot(SlotKind::Float, u32::MAX)],
        ];
        for slots in bad {
            assert_eq!(
                Template::<'_, 8, 8>::from_parts(t.pickle(), t.descriptors(), slots),
                Err(EncodeError::BadTemplate),
                "{slots:?}"
            );
        }
        let pickle = t.pickle();
        assert_eq!(
            Template::<'_, 8, 8>::from_parts(&pickle[..pickle.len() - 1], &[], &[]),
            Err(EncodeError::BadTemplate)
        );
        let many: Vec<Slot> = (0..9).map(|_| slot(SlotKind::Buffer, 0)).collect();
        assert_eq!(
            Template::<'_, 8, 8>::from_parts(pickle, t.descriptors(), &many),
            Err(EncodeError::TooManySlots)
        );
    }

    #[test]
    fn building_into_a_short_buffer_is_an_error_at_every_size() {
        for size in 0..80 {
            let mut storage = std::vec![0u8; size];
            let mut b = TemplateBuilder::new(&mut storage);
            let built = (|| {
                b.begin_dict()?;
                b.str("seq")?;
                b.int_slot(0u64)?;
                b.str("adc")?;
                b.array_slot::<i16>(Descriptor::new(1, 0, 8), &[4])?;
                b.end_dict()?;
                Ok::<(), EncodeError>(())
            })();
            match built.and_then(|()| b.finish().map(|_| ())) {
                Ok(()) => assert!(size >= 60, "{size}"),
                Err(e) => assert_eq!(e, EncodeError::BufferFull, "{size}"),
            }
        }
    }
}
