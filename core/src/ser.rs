//! `#[derive(Serialize)]` messages: a `serde::Serializer` over the [`Pickler`] (feature `serde`).
//!
//! [`to_pickle`] pickles any `Serialize` value into a caller's buffer, without allocating;
//! [`Pickler::serialize`] writes one inside a message built by hand. Large arrays stay
//! out-of-band: a field of type [`NdArray`] becomes `NEXT_BUFFER` + `numpy.ndarray`, one of type
//! [`OobBytes`] a `PickleBuffer`, and only their [`Descriptor`] is recorded. A plain `&[i16]`
//! field is an ordinary sequence and is copied in-band as a list.
//!
//! # The serde data model in Python
//!
//! | serde | Python |
//! |---|---|
//! | `bool`, integers up to `i128`/`u128`, `f32`/`f64` | `bool`, `int`, `float` (as [`Pickler`] writes them) |
//! | `char`, `str`, `collect_str` | `str` |
//! | bytes (`serde_bytes`) | `bytes` |
//! | `None`, `()`, unit struct | `None` |
//! | `Some(v)`, newtype struct | `v` (transparent) |
//! | sequence (`Vec`, slice, `heapless::Vec`) | `list` |
//! | tuple, tuple struct, array `[T; N]` (serde writes these as tuples) | `tuple` |
//! | map, struct | `dict` (struct fields as `str` keys, in declaration order) |
//! | unit variant `E::A` | `"A"` |
//! | newtype variant `E::B(v)` | `{"B": v}` |
//! | tuple variant `E::C(x, y)` | `{"C": (x, y)}` |
//! | struct variant `E::D { f }` | `{"D": {"f": f}}` |
//!
//! Enums are "externally tagged", as `serde_json` writes them; `#[serde(tag = "...")]`,
//! `#[serde(untagged)]`, `#[serde(rename)]` and `skip_serializing_if` work as serde defines them.
//! Sequences and maps of unknown length need no buffering: containers are opened and closed
//! around their items (a list or dict of one item is shortened afterwards, as CPython writes it).
//!
//! ```
//! use dmapickle_core::ser::{to_pickle, NdArray};
//! use dmapickle_core::Descriptor;
//! use serde_derive::Serialize;
//!
//! #[derive(Serialize)]
//! struct Sample<'a> {
//!     seq: u32,
//!     adc: NdArray<'a, i16>,
//! }
//!
//! let mut buf = [0u8; 96];
//! let sample = Sample { seq: 7, adc: NdArray::new(Descriptor::new(1, 0, 16), &[2, 4]) };
//! let encoded = to_pickle(&sample, &mut buf)?;
//! assert_eq!(encoded.pickle, &b"\x80\x05}(\x8c\x03seqK\x07\x8c\x03adc\
//!     \x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x04\x86\x8c\x03<i2\x97K\x00N\x8c\x01Ct\x81u."[..]);
//! assert_eq!(encoded.descriptors.as_slice(), &[Descriptor::new(1, 0, 16)]);
//! # Ok::<(), dmapickle_core::EncodeError>(())
//! ```
//!
//! # Errors
//! Every error is an [`EncodeError`]: the pickler's own ([`EncodeError::BufferFull`], ...), and
//! [`EncodeError::SerdeCustom`] when a `Serialize` impl fails. [`Pickler::serialize`] and
//! [`to_pickle`] are all-or-nothing, like every [`Pickler`] method.

use core::fmt::Display;

use serde::ser::{self, Impossible, Serialize};

use crate::ndarray::{ByteOrder, DType, Element, Order, Scalar};
use crate::pickler::{Container, DEFAULT_BUFFERS, DEFAULT_DEPTH};
use crate::{Descriptor, EncodeError, EncodeResult as Result, Encoded, Pickler};

/// Most dimensions an [`NdArray`] may have when written through serde: the crate's one
/// [`MAX_NDIM`](crate::ndarray::MAX_NDIM).
pub const MAX_DIMS: usize = crate::ndarray::MAX_NDIM;

/// Newtype-struct names that only this module's types use: the serializer recognizes them and
/// writes an out-of-band buffer instead of the packed descriptor they wrap (as `serde_json`'s
/// `RawValue` does). Other serializers see the packed bytes.
const NDARRAY_MARKER: &str = "\0dmapickle::ser::NdArray";
const OOB_MARKER: &str = "\0dmapickle::ser::OobBytes";

/// Packed descriptor: region (2), offset (4), len (4), readonly (1), little-endian.
const DESC_BYTES: usize = 11;
/// Packed array: descriptor, scalar, byte order, order, ndim, then `ndim` dims of 8 bytes.
const ARRAY_HEAD: usize = DESC_BYTES + 4;
const ARRAY_BYTES: usize = ARRAY_HEAD + 8 * MAX_DIMS;

/// Pickles `value` into `buf`: `to_pickle(v, buf)` is [`Pickler::serialize`] then
/// [`finish`](Pickler::finish), with [`DEFAULT_BUFFERS`] out-of-band buffers and
/// [`DEFAULT_DEPTH`] nested containers.
///
/// ```
/// use dmapickle_core::ser::to_pickle;
/// let mut buf = [0u8; 32];
/// assert_eq!(to_pickle(&(1u8, "a", [true]), &mut buf)?.pickle, b"\x80\x05K\x01\x8c\x01a\x88\x85\x87.");
/// # Ok::<(), dmapickle_core::EncodeError>(())
/// ```
pub fn to_pickle<'a, T: Serialize + ?Sized>(
    value: &T,
    buf: &'a mut [u8],
) -> Result<Encoded<'a, DEFAULT_BUFFERS>> {
    let mut p: Pickler<'a, DEFAULT_BUFFERS, DEFAULT_DEPTH> = Pickler::with_limits(buf);
    p.serialize(value)?;
    p.finish()
}

impl<const N: usize, const D: usize> Pickler<'_, N, D> {
    /// Writes one `Serialize` value, as the [module docs](crate::ser) describe; all-or-nothing.
    ///
    /// ```
    /// use dmapickle_core::Pickler;
    /// use serde_derive::Serialize;
    ///
    /// #[derive(Serialize)]
    /// enum Mode { Idle, Scan { from: u8, to: u8 } }
    ///
    /// let mut buf = [0u8; 64];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_list()?;
    /// p.serialize(&Mode::Idle)?;
    /// p.serialize(&Mode::Scan { from: 1, to: 2 })?;
    /// p.end_list()?;
    /// assert_eq!(p.finish()?.pickle, &b"\x80\x05](\x8c\x04Idle\
    ///     }\x8c\x04Scan}(\x8c\x04fromK\x01\x8c\x02toK\x02use."[..]);
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn serialize<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.all_or_nothing(|p| value.serialize(p))
    }
}

// ---- out-of-band field types ---------------------------------------------------------------------

/// A numpy array field whose bytes stay where they are: `len` bytes of `T` elements in a DMA
/// region, written as `NEXT_BUFFER` + `numpy.ndarray` (zero-copy on the Python side).
///
/// The dtype comes from `T` ([`Element`]), in the target's byte order. The shape times the item
/// size must equal the descriptor's length ([`EncodeError::ArraySizeMismatch`] otherwise), and the
/// array may have at most [`MAX_DIMS`] dimensions ([`EncodeError::TooManyDims`]).
///
/// ```
/// use dmapickle_core::ser::{to_pickle, NdArray};
/// use dmapickle_core::{Descriptor, EncodeError};
/// let mut buf = [0u8; 96];
/// let adc = NdArray::<u16>::new(Descriptor::new(0, 0, 8), &[4]);
/// assert_eq!(to_pickle(&adc, &mut buf)?.pickle, &b"\x80\x05\x8c\x05numpy\x8c\x07ndarray\x93\x94\
///     (K\x04\x85\x8c\x03<u2\x97K\x00N\x8c\x01Ct\x81."[..]);
/// let wrong = NdArray::<u16>::new(Descriptor::new(0, 0, 8), &[5]);
/// assert_eq!(to_pickle(&wrong, &mut buf).unwrap_err(), EncodeError::ArraySizeMismatch);
/// # Ok::<(), dmapickle_core::EncodeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdArray<'a, T: Element> {
    /// Where the array's bytes are.
    pub desc: Descriptor,
    /// The dimensions.
    pub shape: &'a [usize],
    /// C (row-major) or Fortran (column-major) layout.
    pub order: Order,
    element: core::marker::PhantomData<T>,
}

impl<'a, T: Element> NdArray<'a, T> {
    /// A C-ordered array of `shape` whose bytes are `desc`.
    pub const fn new(desc: Descriptor, shape: &'a [usize]) -> Self {
        Self::with_order(desc, shape, Order::C)
    }

    /// An array of `shape` in `order` whose bytes are `desc`.
    pub const fn with_order(desc: Descriptor, shape: &'a [usize], order: Order) -> Self {
        NdArray {
            desc,
            shape,
            order,
            element: core::marker::PhantomData,
        }
    }
}

impl<T: Element> Serialize for NdArray<'_, T> {
    #[inline]
    fn serialize<S: ser::Serializer>(
        &self,
        serializer: S,
    ) -> core::result::Result<S::Ok, S::Error> {
        let mut packed = [0u8; ARRAY_BYTES];
        let len = pack_array(&mut packed, self.desc, T::DTYPE, self.shape, self.order);
        let bytes = packed.get(..len).unwrap_or_default();
        serializer.serialize_newtype_struct(NDARRAY_MARKER, &Packed(bytes))
    }
}

/// Out-of-band bytes: a `PickleBuffer` (`NEXT_BUFFER`) on the Python side, read-only if the
/// descriptor is. The bytes are never read.
///
/// ```
/// use dmapickle_core::ser::{to_pickle, OobBytes};
/// use dmapickle_core::Descriptor;
/// let mut buf = [0u8; 16];
/// let raw = OobBytes(Descriptor::new(2, 64, 4096).read_only());
/// let encoded = to_pickle(&(raw, 5u8), &mut buf)?;
/// assert_eq!(encoded.pickle, b"\x80\x05\x97\x98K\x05\x86.");
/// assert_eq!(encoded.descriptors[0].offset, 64);
/// # Ok::<(), dmapickle_core::EncodeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OobBytes(pub Descriptor);

impl Serialize for OobBytes {
    #[inline]
    fn serialize<S: ser::Serializer>(
        &self,
        serializer: S,
    ) -> core::result::Result<S::Ok, S::Error> {
        let mut packed = [0u8; DESC_BYTES];
        pack_descriptor(&mut packed, self.0);
        serializer.serialize_newtype_struct(OOB_MARKER, &Packed(&packed))
    }
}

/// Packed descriptor bytes, serialized as serde bytes.
struct Packed<'b>(&'b [u8]);

impl Serialize for Packed<'_> {
    #[inline]
    fn serialize<S: ser::Serializer>(
        &self,
        serializer: S,
    ) -> core::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

fn pack_descriptor(out: &mut [u8; DESC_BYTES], desc: Descriptor) {
    let [r0, r1] = desc.region.to_le_bytes();
    let [o0, o1, o2, o3] = desc.offset.to_le_bytes();
    let [l0, l1, l2, l3] = desc.len.to_le_bytes();
    *out = [
        r0,
        r1,
        o0,
        o1,
        o2,
        o3,
        l0,
        l1,
        l2,
        l3,
        u8::from(desc.readonly),
    ];
}

fn unpack_descriptor(bytes: &[u8]) -> Option<Descriptor> {
    let (&[r0, r1, o0, o1, o2, o3, l0, l1, l2, l3, ro], _) =
        bytes.split_first_chunk::<DESC_BYTES>()?;
    let desc = Descriptor::new(
        u16::from_le_bytes([r0, r1]),
        u32::from_le_bytes([o0, o1, o2, o3]),
        u32::from_le_bytes([l0, l1, l2, l3]),
    );
    match ro {
        0 => Some(desc),
        1 => Some(desc.read_only()),
        _ => None,
    }
}

/// Packs an array description; returns the length used. More than [`MAX_DIMS`] dimensions are
/// recorded as such (the dims are not), for the serializer to refuse.
fn pack_array(
    out: &mut [u8; ARRAY_BYTES],
    desc: Descriptor,
    dtype: DType,
    shape: &[usize],
    order: Order,
) -> usize {
    let mut head = [0u8; DESC_BYTES];
    pack_descriptor(&mut head, desc);
    let scalar = Scalar::ALL
        .iter()
        .position(|&s| s == dtype.scalar())
        .unwrap_or_default() as u8;
    let byte_order = u8::from(dtype.byte_order() == ByteOrder::Big);
    let order = u8::from(order == Order::Fortran);
    let ndim = u8::try_from(shape.len()).unwrap_or(u8::MAX);
    let (head_out, dims_out) = out.split_at_mut(ARRAY_HEAD);
    for (dst, src) in head_out
        .iter_mut()
        .zip(head.into_iter().chain([scalar, byte_order, order, ndim]))
    {
        *dst = src;
    }
    if shape.len() > MAX_DIMS {
        return ARRAY_HEAD;
    }
    for (dst, &dim) in dims_out.chunks_exact_mut(8).zip(shape) {
        dst.copy_from_slice(&(dim as u64).to_le_bytes());
    }
    ARRAY_HEAD + 8 * shape.len()
}

/// Writes the array a packed description names.
fn write_array<const N: usize, const D: usize>(
    p: &mut Pickler<'_, N, D>,
    bytes: &[u8],
) -> Result<()> {
    let bad = EncodeError::SerdeCustom;
    let desc = unpack_descriptor(bytes).ok_or(bad)?;
    let &[scalar, byte_order, order, ndim] = bytes.get(DESC_BYTES..ARRAY_HEAD).ok_or(bad)? else {
        return Err(bad);
    };
    let scalar = *Scalar::ALL.get(usize::from(scalar)).ok_or(bad)?;
    let byte_order = if byte_order == 0 {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
    let order = if order == 0 { Order::C } else { Order::Fortran };
    let ndim = usize::from(ndim);
    if ndim > MAX_DIMS {
        return Err(EncodeError::TooManyDims);
    }
    let packed_dims = bytes.get(ARRAY_HEAD..).ok_or(bad)?;
    if packed_dims.len() != 8 * ndim {
        return Err(bad);
    }
    let mut dims = [0usize; MAX_DIMS];
    for (dst, src) in dims.iter_mut().zip(packed_dims.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(src);
        *dst =
            usize::try_from(u64::from_le_bytes(le)).map_err(|_| EncodeError::ArraySizeMismatch)?;
    }
    let shape = dims.get(..ndim).ok_or(bad)?;
    p.ndarray(desc, DType::new(scalar, byte_order), shape, order)
}

/// Serializer for the inside of a marker newtype: accepts only the packed bytes, and writes
/// the buffer or array they describe.
struct Capture<'p, 'a, const N: usize, const D: usize> {
    p: &'p mut Pickler<'a, N, D>,
    array: bool,
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*) -> $ok:ty;)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<$ok> { Err(EncodeError::SerdeCustom) })*
    };
}

impl<const N: usize, const D: usize> ser::Serializer for Capture<'_, '_, N, D> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Impossible<(), EncodeError>;
    type SerializeTuple = Impossible<(), EncodeError>;
    type SerializeTupleStruct = Impossible<(), EncodeError>;
    type SerializeTupleVariant = Impossible<(), EncodeError>;
    type SerializeMap = Impossible<(), EncodeError>;
    type SerializeStruct = Impossible<(), EncodeError>;
    type SerializeStructVariant = Impossible<(), EncodeError>;

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        if self.array {
            write_array(self.p, v)
        } else {
            match unpack_descriptor(v) {
                Some(desc) if v.len() == DESC_BYTES => self.p.buffer(desc),
                _ => Err(EncodeError::SerdeCustom),
            }
        }
    }

    refuse! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<()> {
        Err(EncodeError::SerdeCustom)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result<()> {
        Err(EncodeError::SerdeCustom)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<()> {
        Err(EncodeError::SerdeCustom)
    }

    fn collect_str<T: Display + ?Sized>(self, _: &T) -> Result<()> {
        Err(EncodeError::SerdeCustom)
    }
}

// ---- the serializer --------------------------------------------------------------------------------

impl ser::Error for EncodeError {
    fn custom<T: Display>(_msg: T) -> Self {
        EncodeError::SerdeCustom
    }
}

// serde requires its error types to implement `EncodeError` (`core::error::Error` on Rust >= 1.81);
// with feature `std`, error.rs implements it already.
#[cfg(not(feature = "std"))]
impl ser::StdError for EncodeError {}

/// A sequence, tuple, map, struct or variant being written by [`Pickler`]'s serializer.
///
/// For a tuple or struct variant (`{"Name": ...}`), `ending` also closes the enclosing dict.
#[derive(Debug)]
pub struct Compound<'p, 'a, const N: usize, const D: usize> {
    p: &'p mut Pickler<'a, N, D>,
    kind: Container,
    variant: bool,
}

impl<'p, 'a, const N: usize, const D: usize> Compound<'p, 'a, N, D> {
    #[inline]
    fn open(
        p: &'p mut Pickler<'a, N, D>,
        kind: Container,
        variant: Option<&'static str>,
    ) -> Result<Self> {
        if let Some(name) = variant {
            p.begin_dict()?;
            p.str(name)?;
        }
        p.begin(kind)?;
        Ok(Compound {
            p,
            kind,
            variant: variant.is_some(),
        })
    }

    #[inline]
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.p)
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.p.str(key)?;
        value.serialize(&mut *self.p)
    }

    #[inline]
    fn close(self) -> Result<()> {
        self.p.end(self.kind)?;
        if self.variant {
            self.p.end_dict()?;
        }
        Ok(())
    }
}

impl<const N: usize, const D: usize> ser::SerializeSeq for Compound<'_, '_, N, D> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.item(value)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close()
    }
}

impl<const N: usize, const D: usize> ser::SerializeTuple for Compound<'_, '_, N, D> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.item(value)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close()
    }
}

impl<const N: usize, const D: usize> ser::SerializeTupleStruct for Compound<'_, '_, N, D> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.item(value)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close()
    }
}

impl<const N: usize, const D: usize> ser::SerializeTupleVariant for Compound<'_, '_, N, D> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.item(value)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close()
    }
}

impl<const N: usize, const D: usize> ser::SerializeMap for Compound<'_, '_, N, D> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.item(key)
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.item(value)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close()
    }
}

impl<const N: usize, const D: usize> ser::SerializeStruct for Compound<'_, '_, N, D> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close()
    }
}

impl<const N: usize, const D: usize> ser::SerializeStructVariant for Compound<'_, '_, N, D> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    #[inline]
    fn end(self) -> Result<()> {
        self.close()
    }
}

/// `value.serialize(&mut pickler)` writes one value; prefer [`Pickler::serialize`], which is
/// all-or-nothing (this is not: after an error, drop the pickler).
impl<'p, 'a, const N: usize, const D: usize> ser::Serializer for &'p mut Pickler<'a, N, D> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Compound<'p, 'a, N, D>;
    type SerializeTuple = Compound<'p, 'a, N, D>;
    type SerializeTupleStruct = Compound<'p, 'a, N, D>;
    type SerializeTupleVariant = Compound<'p, 'a, N, D>;
    type SerializeMap = Compound<'p, 'a, N, D>;
    type SerializeStruct = Compound<'p, 'a, N, D>;
    type SerializeStructVariant = Compound<'p, 'a, N, D>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.bool(v)
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<()> {
        self.int(v)
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.f32(v)
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.f64(v)
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<()> {
        self.str(v.encode_utf8(&mut [0u8; 4]))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.str(v)
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.bytes(v)
    }
    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.none()
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<()> {
        self.none()
    }
    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.none()
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        self.str(variant)
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        let array = match name {
            NDARRAY_MARKER => true,
            OOB_MARKER => false,
            _ => return value.serialize(self),
        };
        value.serialize(Capture { p: self, array })
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.begin_dict()?;
        self.str(variant)?;
        value.serialize(&mut *self)?;
        self.end_dict()
    }
    #[inline]
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Compound::open(self, Container::List, None)
    }
    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        Compound::open(self, Container::Tuple, None)
    }
    #[inline]
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Compound::open(self, Container::Tuple, None)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Compound::open(self, Container::Tuple, Some(variant))
    }
    #[inline]
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Compound::open(self, Container::Dict, None)
    }
    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Compound::open(self, Container::Dict, None)
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Compound::open(self, Container::Dict, Some(variant))
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<()> {
        self.str_display(value)
    }
}

#[cfg(test)]
mod tests {
    //! Exact bytes of each serde shape; the CPython round trips are in `core/tests/serde_python.rs`.
    extern crate std;
    use std::vec::Vec;

    use serde_derive::Serialize;

    use super::*;

    fn pickle<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut buf = std::vec![0u8; 4096];
        to_pickle(value, &mut buf).unwrap().pickle.to_vec()
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(u8);

    #[derive(Serialize)]
    struct Pair(u8, bool);

    #[derive(Serialize)]
    enum E {
        A,
        B(u8),
        C(u8, u8),
        D { x: u8 },
    }

    #[test]
    fn every_shape_writes_the_documented_opcodes() {
        assert_eq!(pickle(&()), b"\x80\x05N.");
        assert_eq!(pickle(&Unit), b"\x80\x05N.");
        assert_eq!(pickle(&Newtype(3)), b"\x80\x05K\x03.");
        assert_eq!(pickle(&Pair(3, true)), b"\x80\x05K\x03\x88\x86.");
        assert_eq!(pickle(&None::<u8>), b"\x80\x05N.");
        assert_eq!(pickle(&Some(1u8)), b"\x80\x05K\x01.");
        assert_eq!(pickle(&'é'), b"\x80\x05\x8c\x02\xc3\xa9.");
        assert_eq!(pickle(&E::A), b"\x80\x05\x8c\x01A.");
        assert_eq!(pickle(&E::B(1)), b"\x80\x05}\x8c\x01BK\x01s.");
        assert_eq!(pickle(&E::C(1, 2)), b"\x80\x05}\x8c\x01CK\x01K\x02\x86s.");
        assert_eq!(
            pickle(&E::D { x: 1 }),
            b"\x80\x05}\x8c\x01D}\x8c\x01xK\x01ss."
        );
        assert_eq!(pickle(&[1u8, 2][..]), b"\x80\x05](K\x01K\x02e.");
        assert_eq!(pickle(&[1u8, 2]), b"\x80\x05K\x01K\x02\x86.");
        assert_eq!(pickle(serde_bytes::Bytes::new(b"ab")), b"\x80\x05C\x02ab.");
        assert_eq!(
            pickle(&u128::MAX),
            b"\x80\x05\x8a\x11\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00."
        );
    }

    struct Shown<'s>(&'s str);
    impl Serialize for Shown<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("<{}>", self.0))
        }
    }

    #[test]
    fn collect_str_streams_display_output() {
        assert_eq!(pickle(&Shown("ab")), b"\x80\x05\x8c\x04<ab>.");
        let long = "x".repeat(300);
        let bytes = pickle(&Shown(&long));
        assert_eq!(&bytes[..7], b"\x80\x05X\x2e\x01\x00\x00");
        assert_eq!(bytes.len(), 2 + 5 + 302 + 1);
    }

    /// A `Display` that prints more the second time it is asked.
    struct Growing(core::cell::Cell<usize>);
    impl Display for Growing {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            self.0.set(self.0.get() + 1);
            (0..self.0.get()).try_for_each(|_| f.write_str("a"))
        }
    }
    impl Serialize for Growing {
        fn serialize<S: ser::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    #[test]
    fn display_that_changes_between_passes_is_an_error() {
        let mut buf = [0u8; 64];
        let value = Growing(core::cell::Cell::new(0));
        assert_eq!(to_pickle(&value, &mut buf), Err(EncodeError::SerdeCustom));
    }

    #[test]
    fn marker_newtypes_refuse_forged_contents() {
        #[derive(Serialize)]
        #[serde(rename = "\0dmapickle::ser::NdArray")]
        struct Forged(u8);
        #[derive(Serialize)]
        #[serde(rename = "\0dmapickle::ser::OobBytes")]
        struct Short(#[serde(with = "serde_bytes")] Vec<u8>);
        let mut buf = [0u8; 64];
        assert_eq!(
            to_pickle(&Forged(1), &mut buf),
            Err(EncodeError::SerdeCustom)
        );
        assert_eq!(
            to_pickle(&Short(std::vec![0; 10]), &mut buf),
            Err(EncodeError::SerdeCustom)
        );
        assert_eq!(
            to_pickle(&Short(std::vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]), &mut buf),
            Err(EncodeError::SerdeCustom)
        );
    }

    #[test]
    fn arrays_with_too_many_dims_are_refused() {
        let shape = [1usize; MAX_DIMS + 1];
        let mut buf = [0u8; 256];
        let desc = Descriptor::new(0, 0, 2);
        assert_eq!(
            to_pickle(&NdArray::<i16>::new(desc, &shape), &mut buf),
            Err(EncodeError::TooManyDims)
        );
        let ok = to_pickle(&NdArray::<i16>::new(desc, &shape[..MAX_DIMS]), &mut buf).unwrap();
        assert_eq!(ok.descriptors.len(), 1);
    }

    #[test]
    fn serialize_is_all_or_nothing() {
        #[derive(Serialize)]
        struct Big<'a> {
            a: &'a str,
            b: [u8; 3],
        }
        let mut buf = [0u8; 24];
        let mut p = Pickler::new(&mut buf);
        p.begin_list().unwrap();
        let before = p.len();
        let big = Big {
            a: "0123456789",
            b: [1, 2, 3],
        };
        assert_eq!(p.serialize(&big), Err(EncodeError::BufferFull));
        assert_eq!((p.len(), p.depth()), (before, 1));
        p.serialize(&7u8).unwrap();
        p.end_list().unwrap();
        assert_eq!(p.finish().unwrap().pickle, b"\x80\x05]K\x07a.");
    }
}
