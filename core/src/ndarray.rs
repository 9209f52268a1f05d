//! numpy array descriptions: element types, byte orders and memory orders.
//!
//! The [`Pickler`](crate::Pickler) writes an array as `numpy.ndarray(shape, dtype_str, buffer, 0,
//! None, order)` through `NEWOBJ`, with the buffer out-of-band. This module names the `dtype_str`
//! and the order; the bytes themselves never pass through the encoder.

/// The element type of an array, independent of byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scalar {
    /// `bool`, one byte (numpy `b1`).
    Bool,
    /// `int8` (numpy `i1`).
    I8,
    /// `int16` (numpy `i2`).
    I16,
    /// `int32` (numpy `i4`).
    I32,
    /// `int64` (numpy `i8`).
    I64,
    /// `uint8` (numpy `u1`).
    U8,
    /// `uint16` (numpy `u2`).
    U16,
    /// `uint32` (numpy `u4`).
    U32,
    /// `uint64` (numpy `u8`).
    U64,
    /// IEEE 754 half precision (numpy `f2`).
    F16,
    /// IEEE 754 single precision (numpy `f4`).
    F32,
    /// IEEE 754 double precision (numpy `f8`).
    F64,
    /// Complex of two `f32` (numpy `c8`, `complex64`).
    C64,
    /// Complex of two `f64` (numpy `c16`, `complex128`).
    C128,
}

impl Scalar {
    /// Every element type, in declaration order.
    pub const ALL: [Scalar; 14] = [
        Scalar::Bool,
        Scalar::I8,
        Scalar::I16,
        Scalar::I32,
        Scalar::I64,
        Scalar::U8,
        Scalar::U16,
        Scalar::U32,
        Scalar::U64,
        Scalar::F16,
        Scalar::F32,
        Scalar::F64,
        Scalar::C64,
        Scalar::C128,
    ];

    /// numpy's type code, without a byte order: `"b1"`, `"i2"`, `"c16"`.
    ///
    /// ```
    /// use dmapickle_core::ndarray::Scalar;
    /// assert_eq!(Scalar::C128.code(), "c16");
    /// assert_eq!(Scalar::from_code("f2"), Some(Scalar::F16));
    /// assert_eq!(Scalar::from_code("O"), None);
    /// ```
    pub const fn code(self) -> &'static str {
        match self {
            Scalar::Bool => "b1",
            Scalar::I8 => "i1",
            Scalar::I16 => "i2",
            Scalar::I32 => "i4",
            Scalar::I64 => "i8",
            Scalar::U8 => "u1",
            Scalar::U16 => "u2",
            Scalar::U32 => "u4",
            Scalar::U64 => "u8",
            Scalar::F16 => "f2",
            Scalar::F32 => "f4",
            Scalar::F64 => "f8",
            Scalar::C64 => "c8",
            Scalar::C128 => "c16",
        }
    }

    /// The element type whose [`code`](Scalar::code) is exactly `s` (what the validator allows
    /// in `numpy.dtype(code, False, True)`), or `None`.
    pub fn from_code(s: &str) -> Option<Scalar> {
        Scalar::from_code_bytes(s.as_bytes())
    }

    /// [`from_code`](Scalar::from_code) of a code's bytes (no scan of the table's strings).
    pub(crate) fn from_code_bytes(s: &[u8]) -> Option<Scalar> {
        Some(match s {
            b"b1" => Scalar::Bool,
            b"i1" => Scalar::I8,
            b"i2" => Scalar::I16,
            b"i4" => Scalar::I32,
            b"i8" => Scalar::I64,
            b"u1" => Scalar::U8,
            b"u2" => Scalar::U16,
            b"u4" => Scalar::U32,
            b"u8" => Scalar::U64,
            b"f2" => Scalar::F16,
            b"f4" => Scalar::F32,
            b"f8" => Scalar::F64,
            b"c8" => Scalar::C64,
            b"c16" => Scalar::C128,
            _ => return None,
        })
    }

    /// Bytes per element.
    ///
    /// ```
    /// use dmapickle_core::ndarray::Scalar;
    /// assert_eq!(Scalar::C128.itemsize(), 16);
    /// ```
    pub const fn itemsize(self) -> usize {
        match self {
            Scalar::Bool | Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 | Scalar::F16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::I64 | Scalar::U64 | Scalar::F64 | Scalar::C64 => 8,
            Scalar::C128 => 16,
        }
    }
}

/// Byte order of multi-byte elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ByteOrder {
    /// Least significant byte first (numpy `<`).
    Little,
    /// Most significant byte first (numpy `>`).
    Big,
}

impl ByteOrder {
    /// The byte order of the target this code is compiled for.
    #[cfg(target_endian = "little")]
    pub const NATIVE: ByteOrder = ByteOrder::Little;
    /// The byte order of the target this code is compiled for.
    #[cfg(target_endian = "big")]
    pub const NATIVE: ByteOrder = ByteOrder::Big;
}

/// How the elements of a multi-dimensional array are laid out in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Order {
    /// Row-major: the last index varies fastest (numpy `'C'`).
    #[default]
    C,
    /// Column-major: the first index varies fastest (numpy `'F'`).
    Fortran,
}

impl Order {
    /// The order argument numpy takes: `"C"` or `"F"`.
    ///
    /// ```
    /// use dmapickle_core::ndarray::Order;
    /// assert_eq!((Order::C.str(), Order::Fortran.str()), ("C", "F"));
    /// ```
    pub const fn str(self) -> &'static str {
        match self {
            Order::C => "C",
            Order::Fortran => "F",
        }
    }
}

/// A numpy dtype: element type and byte order.
///
/// One-byte types have no byte order; their string starts with `|` and two such dtypes compare
/// equal whatever order they were built with.
///
/// ```
/// use dmapickle_core::ndarray::{ByteOrder, DType, Scalar};
/// assert_eq!(DType::new(Scalar::I16, ByteOrder::Little).str(), "<i2");
/// assert_eq!(DType::new(Scalar::F64, ByteOrder::Big).str(), ">f8");
/// assert_eq!(DType::new(Scalar::U8, ByteOrder::Big).str(), "|u1");
/// assert_eq!(DType::of::<i16>(), DType::new(Scalar::I16, ByteOrder::NATIVE));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DType {
    scalar: Scalar,
    byte_order: ByteOrder,
}

impl DType {
    /// A dtype of `scalar` elements in `byte_order` (ignored for one-byte types).
    pub const fn new(scalar: Scalar, byte_order: ByteOrder) -> Self {
        let byte_order = if scalar.itemsize() == 1 {
            ByteOrder::Little
        } else {
            byte_order
        };
        DType { scalar, byte_order }
    }

    /// A dtype of `scalar` elements in this target's byte order.
    ///
    /// ```
    /// use dmapickle_core::ndarray::{ByteOrder, DType, Scalar};
    /// assert_eq!(DType::native(Scalar::F16).byte_order(), ByteOrder::NATIVE);
    /// ```
    pub const fn native(scalar: Scalar) -> Self {
        DType::new(scalar, ByteOrder::NATIVE)
    }

    /// The dtype of the Rust element type `T` on this target.
    ///
    /// ```
    /// use dmapickle_core::ndarray::{DType, Scalar};
    /// assert_eq!(DType::of::<u64>().scalar(), Scalar::U64);
    /// assert_eq!(DType::of::<f32>().itemsize(), 4);
    /// ```
    pub const fn of<T: Element>() -> Self {
        T::DTYPE
    }

    /// The element type.
    pub const fn scalar(self) -> Scalar {
        self.scalar
    }

    /// The byte order (`Little` for one-byte types).
    pub const fn byte_order(self) -> ByteOrder {
        self.byte_order
    }

    /// Bytes per element.
    pub const fn itemsize(self) -> usize {
        self.scalar.itemsize()
    }

    /// numpy's dtype string, as `np.dtype(...).str` prints it: `"<i2"`, `">c16"`, `"|b1"`.
    pub const fn str(self) -> &'static str {
        let big = matches!(self.byte_order, ByteOrder::Big);
        match (self.scalar, big) {
            (Scalar::Bool, _) => "|b1",
            (Scalar::I8, _) => "|i1",
            (Scalar::U8, _) => "|u1",
            (Scalar::I16, false) => "<i2",
            (Scalar::I16, true) => ">i2",
            (Scalar::I32, false) => "<i4",
            (Scalar::I32, true) => ">i4",
            (Scalar::I64, false) => "<i8",
            (Scalar::I64, true) => ">i8",
            (Scalar::U16, false) => "<u2",
            (Scalar::U16, true) => ">u2",
            (Scalar::U32, false) => "<u4",
            (Scalar::U32, true) => ">u4",
            (Scalar::U64, false) => "<u8",
            (Scalar::U64, true) => ">u8",
            (Scalar::F16, false) => "<f2",
            (Scalar::F16, true) => ">f2",
            (Scalar::F32, false) => "<f4",
            (Scalar::F32, true) => ">f4",
            (Scalar::F64, false) => "<f8",
            (Scalar::F64, true) => ">f8",
            (Scalar::C64, false) => "<c8",
            (Scalar::C64, true) => ">c8",
            (Scalar::C128, false) => "<c16",
            (Scalar::C128, true) => ">c16",
        }
    }

    /// The dtype whose [`str`](DType::str) is `s`, or `None` if `s` is not one of them.
    ///
    /// Only the exact strings this crate writes are accepted (so a validator can use it to
    /// refuse every other dtype, object dtypes included).
    ///
    /// ```
    /// use dmapickle_core::ndarray::{ByteOrder, DType, Scalar};
    /// assert_eq!(DType::parse(">u4"), Some(DType::new(Scalar::U32, ByteOrder::Big)));
    /// assert_eq!(DType::parse("|O"), None);
    /// ```
    pub fn parse(s: &str) -> Option<DType> {
        Scalar::ALL
            .iter()
            .flat_map(|&scalar| {
                [ByteOrder::Little, ByteOrder::Big].map(|order| DType::new(scalar, order))
            })
            .find(|dtype| dtype.str() == s)
    }
}

/// A Rust element type with a numpy dtype: `i16` is `"<i2"` on a little-endian target.
///
/// Implemented for `bool`, the fixed-width integers up to 64 bits, `f32` and `f64`. Half
/// precision and complex elements have no Rust primitive; name them with [`DType::new`].
pub trait Element: Copy {
    /// The dtype of this type in the target's byte order.
    const DTYPE: DType;
}

macro_rules! element {
    ($($t:ty => $s:ident),* $(,)?) => {
        $(impl Element for $t {
            const DTYPE: DType = DType::native(Scalar::$s);
        })*
    };
}

element!(
    bool => Bool, i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, f32 => F32, f64 => F64,
);

/// Most dimensions an array may have: the encoder ([`Pickler::ndarray`](crate::Pickler::ndarray),
/// the serde path, templates) refuses more ([`EncodeError::TooManyDims`](crate::EncodeError::TooManyDims)),
/// and the validator accepts up to this many, so everything the encoder writes validates.
/// numpy 1.x takes 32 and numpy 2.x 64.
pub const MAX_NDIM: usize = 16;

/// Bytes an array of `shape` with items of `itemsize` bytes occupies, or `None` on overflow.
///
/// ```
/// use dmapickle_core::ndarray::byte_len;
/// assert_eq!(byte_len(&[1024, 4], 2), Some(8192));
/// assert_eq!(byte_len(&[], 8), Some(8)); // a 0-d array holds one element
/// assert_eq!(byte_len(&[usize::MAX, 2], 1), None);
/// ```
#[inline]
pub fn byte_len(shape: &[usize], itemsize: usize) -> Option<usize> {
    shape
        .iter()
        .try_fold(itemsize, |acc, &dim| acc.checked_mul(dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_string_round_trips() {
        for scalar in Scalar::ALL {
            for order in [ByteOrder::Little, ByteOrder::Big] {
                let dtype = DType::new(scalar, order);
                assert_eq!(DType::parse(dtype.str()), Some(dtype));
                let digits: usize = dtype.str()[2..].parse().unwrap();
                assert_eq!(digits, dtype.itemsize());
            }
        }
    }

    #[test]
    fn from_code_knows_exactly_the_codes() {
        for scalar in Scalar::ALL {
            assert_eq!(Scalar::from_code(scalar.code()), Some(scalar));
        }
        // Every other string of up to three bytes from the codes' alphabet, and more.
        let alphabet = b"biufc012468<|O";
        let mut known = 0;
        for a in alphabet {
            for b in alphabet {
                for c in alphabet.iter().map(Some).chain([None]) {
                    let mut s = [*a, *b, 0];
                    let n = if let Some(c) = c {
                        s[2] = *c;
                        3
                    } else {
                        2
                    };
                    let text = core::str::from_utf8(&s[..n]).unwrap();
                    let expect = Scalar::ALL.into_iter().find(|x| x.code() == text);
                    known += usize::from(expect.is_some());
                    assert_eq!(Scalar::from_code(text), expect, "{text}");
                }
            }
        }
        assert_eq!(known, Scalar::ALL.len());
        assert_eq!(Scalar::from_code(""), None);
        assert_eq!(Scalar::from_code("i"), None);
    }

    #[test]
    fn one_byte_types_have_no_byte_order() {
        assert_eq!(
            DType::new(Scalar::I8, ByteOrder::Big),
            DType::new(Scalar::I8, ByteOrder::Little)
        );
        assert_eq!(DType::of::<bool>().str(), "|b1");
    }

    #[test]
    fn byte_len_overflow_is_none_even_after_a_zero() {
        assert_eq!(byte_len(&[0, 5], 4), Some(0));
        assert_eq!(byte_len(&[usize::MAX, usize::MAX, 0], 4), None);
    }
}
