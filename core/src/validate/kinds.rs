//! What the abstract machine tracks instead of objects: the kind of each stack and memo
//! entry (an int with its value, a str with its span, a tuple with its class and hash, an array
//! with dtype, shape and source, ...), and numpy's scalar codes.

use super::*;

/// The chosen hash of keys whose hash is deterministic but not computed here: the key table
/// counts them against every class of their container (`keys.rs`). A key whose known hash is
/// this value is counted the same way, which only counts more.
pub(super) const OPAQUE_HASH: i64 = 0x4f50_4151_5545_0001;

// ------------------------------------------------------------------------------------------------
// Kinds

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) len: usize,
    /// For text: 1 + its length in chars if latin-1 can encode it (every char below U+0100),
    /// else 0; worked out once when the str is read, so `_codecs.encode` of a memoized str
    /// costs nothing per call.
    pub(super) latin1: u64,
    /// For non-ASCII text: the stand-in of its hash as a tuple's item, over CPython's form of
    /// it ([`hash::stand_in_text`]), worked out once when the str is read (a long memoized str
    /// costs nothing more in every tuple it is put in); 0 otherwise.
    pub(super) seed: i64,
}

/// [`Span::latin1`] of UTF-8 `text`: every byte below `C4` means every char below U+0100.
/// `ascii`: whether `text` is ASCII (the caller knows it already), one char per byte.
#[inline]
pub(super) fn latin1_chars(text: &[u8], ascii: bool) -> u64 {
    if ascii {
        return 1 + text.len() as u64;
    }
    latin1_chars_slow(text)
}

#[inline(never)]
fn latin1_chars_slow(text: &[u8]) -> u64 {
    if text.iter().any(|b| *b >= 0xc4) {
        return 0;
    }
    1 + text.iter().filter(|b| *b & 0xc0 != 0x80).count() as u64
}

impl Span {
    pub(super) fn bytes<'p>(&self, pickle: &'p [u8]) -> &'p [u8] {
        pickle
            .get(self.start..self.start.saturating_add(self.len))
            .unwrap_or(&[])
    }
    pub(super) fn str<'p>(&self, pickle: &'p [u8]) -> &'p str {
        core::str::from_utf8(self.bytes(pickle)).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    List,
    Dict,
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Callee {
    Complex,
    Set,
    FrozenSet,
    Bytes,
    ByteArray,
    CodecsEncode,
    Dtype,
    FromBuffer,
    Reconstruct,
    /// `numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`: a numpy scalar
    /// (`np.float64(1.5)`) from its dtype and its bytes.
    Scalar,
    Ndarray,
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dims {
    pub(super) len: u8,
    pub(super) v: [i64; MAX_NDIM],
}

impl Dims {
    pub(super) fn as_slice(&self) -> &[i64] {
        self.v.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Buffer {
        index: u32,
        len: u64,
        readonly: bool,
    },
    Bytes {
        len: u64,
    },
    ByteArray {
        len: u64,
    },
}

impl Source {
    pub(super) fn len(&self) -> u64 {
        match *self {
            Source::Buffer { len, .. } | Source::Bytes { len } | Source::ByteArray { len } => len,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ArrayInfo {
    pub(super) dtype: DType,
    pub(super) shape: Dims,
    pub(super) fortran: bool,
    pub(super) source: Source,
    pub(super) offset: u64,
    pub(super) strided: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Nothing the validator calls with.
    Plain,
    /// Only small ints (a shape or strides).
    Ints(Dims),
    /// One or two numbers (`complex` arguments): the complex's hash, or why `complex()` would
    /// fail.
    Numbers(core::result::Result<Hash, Reason>),
    /// `(list,)` (`set`/`frozenset` arguments): whether its items are hashable, the list's id,
    /// its length and the most of its items with one chosen hash.
    ListArg(bool, u64, u64, u32),
    /// `(bytes,)` (`bytearray` arguments): their length.
    BytesArg(u64),
    /// `(code, False, True)`: `numpy.dtype` arguments.
    DtypeArgs(core::result::Result<Scalar, Reason>),
    /// `(3, byteorder, None, None, None, -1, -1, 0)`: a dtype's `BUILD` state; big-endian?
    DtypeState(core::result::Result<Option<bool>, Reason>),
    /// `(str, 'latin1')`: `_codecs.encode` arguments; the str's span.
    EncodeArgs(Span),
    /// `(numpy.ndarray, (0,), b'b')`: `_reconstruct` arguments.
    ReconstructArgs,
    /// `(buffer, dtype, shape, order)`: `_frombuffer` arguments.
    FromBufferArgs(core::result::Result<ArrayInfo, Reason>),
    /// `(dtype, bytes)`: numpy `scalar` arguments, the bytes exactly the dtype's itemsize.
    ScalarArgs(core::result::Result<NumpyScalar, Reason>),
    /// `(1, shape, dtype, is_fortran, rawdata)`: a `_reconstruct`ed array's `BUILD` state.
    ArrayState(core::result::Result<ArrayInfo, Reason>),
    /// `(shape, dtype_str, buffer[, offset[, strides[, order]]])`: `numpy.ndarray` arguments.
    NdarrayArgs(core::result::Result<ArrayInfo, Reason>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tuple {
    pub(super) len: usize,
    pub(super) hashable: bool,
    pub(super) hash: Hash,
    pub(super) class: Class,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Empty,
    Mark,
    None,
    Bool(bool),
    /// An int that fits an i64 (`None` is not written any more; kept for matching).
    Int(Option<i64>),
    /// An int that does not fit an i64; its CPython hash.
    BigInt(i64),
    /// A float, its bits.
    Float(u64),
    /// A complex; its hash.
    Complex(Hash),
    Str(Span),
    /// Bytes; their span in the pickle when known (literal or ASCII `_codecs.encode`).
    Bytes {
        len: u64,
        span: Option<Span>,
    },
    ByteArray {
        len: u64,
    },
    Buffer {
        index: u32,
        len: u64,
        readonly: bool,
    },
    Tuple(Tuple),
    List {
        hashable_items: bool,
        /// Items appended (through every copy of the list that the memo links).
        len: u64,
        /// Most items seen with one chosen hash (only counted when a `set(list)` needs it).
        max_class: u32,
    },
    Dict,
    Set,
    FrozenSet,
    Global(Callee),
    /// A `numpy.dtype` awaiting its `BUILD`; where it was memoized.
    DtypeNew {
        code: Scalar,
        memo: Option<usize>,
    },
    Dtype(DType),
    /// A `_reconstruct`ed array awaiting its `BUILD`; where it was memoized.
    ArrayNew {
        memo: Option<usize>,
    },
    Array(ArrayInfo),
    /// A numpy scalar (`np.float64`, `np.int32`, ...) of an allowed dtype: an immutable copy
    /// of its bytes, hashing as the Python number of its value.
    NumpyScalar(NumpyScalar),
    /// An object made by a caller-allowed global.
    Object,
}

impl Kind {
    pub(super) fn hashable(&self) -> bool {
        match self {
            Kind::None
            | Kind::Bool(_)
            | Kind::Int(_)
            | Kind::BigInt(_)
            | Kind::Float(_)
            | Kind::Complex(_)
            | Kind::Str(_)
            | Kind::Bytes { .. }
            | Kind::NumpyScalar(_)
            | Kind::FrozenSet => true,
            Kind::Tuple(t) => t.hashable,
            _ => false,
        }
    }

    /// What is known of CPython's `hash()` of this value.
    pub(super) fn hash(&self) -> Hash {
        match self {
            Kind::Bool(b) => Hash::Known(i64::from(*b)),
            Kind::Int(Some(v)) => Hash::Known(hash::int(*v)),
            Kind::BigInt(h) => Hash::Known(*h),
            Kind::NumpyScalar(s) => s.hash,
            Kind::Int(None) | Kind::FrozenSet => Hash::Opaque,
            Kind::Float(bits) => {
                hash::float(f64::from_bits(*bits)).map_or(Hash::Random, Hash::Known)
            }
            Kind::Complex(h) => *h,
            Kind::Tuple(t) => t.hash,
            // CPython hashes an empty str or bytes to 0, unseeded.
            Kind::Str(s) if s.len == 0 => Hash::Known(0),
            Kind::Bytes { len: 0, .. } => Hash::Known(0),
            Kind::None => Hash::Known(hash::NONE),
            _ => Hash::Random,
        }
    }

    /// What a tuple holding this value hashes it as ([`hash::TupleHasher::item`]): its hash,
    /// or for a value of random hash a stand-in equal for equal values ([`Hash::Seeded`]): for
    /// text, over the form CPython hashes (its latin-1, UCS-2 or UCS-4 code units, which bytes
    /// of the same content hash alike); bytes whose content is not at hand (`_codecs.encode` of
    /// non-ASCII text) are opaque.
    pub(super) fn lane(&self, pickle: &[u8]) -> Hash {
        match (self.hash(), self) {
            (Hash::Random, Kind::Str(s)) if s.latin1 == s.len as u64 + 1 => {
                Hash::Seeded(hash::stand_in(s.bytes(pickle)))
            }
            (Hash::Random, Kind::Str(s)) => Hash::Seeded(s.seed),
            (Hash::Random, Kind::Bytes { span: Some(s), .. }) => {
                Hash::Seeded(hash::stand_in(s.bytes(pickle)))
            }
            (Hash::Random, Kind::Bytes { .. }) => Hash::Opaque,
            (Hash::Random, Kind::Float(_) | Kind::Complex(_) | Kind::NumpyScalar(_)) => {
                Hash::Seeded(hash::NAN_STAND_IN)
            }
            (h, _) => h,
        }
    }

    /// The hash to count collisions under, if this key's hash is the pickle's choice (an int
    /// below 2**61 - 2 in magnitude hashes to itself: no two distinct ones collide, so at most
    /// one of them joins a class of counted keys, and a class holds at most
    /// `max_collisions + 1` keys).
    pub(super) fn chosen_hash(&self) -> Option<i64> {
        match self {
            Kind::Bool(_) => None,
            Kind::Int(Some(v)) if hash::is_unique_int(*v) => None,
            Kind::NumpyScalar(s) if s.unique => None,
            _ => match self.hash() {
                Hash::Random => None,
                Hash::Known(h) | Hash::Seeded(h) => Some(h),
                // Opaque hashes may be any hash: counted against every class.
                Hash::Opaque => Some(OPAQUE_HASH),
            },
        }
    }

    /// Whether this may be stored in a container, passed as an argument or returned.
    pub(super) fn check_value(&self) -> core::result::Result<(), Reason> {
        match self {
            Kind::Mark | Kind::Empty => Err(Reason::MarkAsValue),
            Kind::Global(_) => Err(Reason::GlobalAsValue),
            Kind::Dtype(_) => Err(Reason::DtypeAsValue),
            Kind::DtypeNew { .. } | Kind::ArrayNew { .. } => Err(Reason::Unbuilt),
            Kind::Tuple(Tuple {
                class: Class::ReconstructArgs,
                ..
            }) => Err(Reason::GlobalAsValue),
            Kind::Tuple(Tuple {
                class: Class::FromBufferArgs(_) | Class::ArrayState(_) | Class::ScalarArgs(_),
                ..
            }) => Err(Reason::DtypeAsValue),
            _ => Ok(()),
        }
    }

    pub(super) fn is_mutable_container(&self) -> bool {
        matches!(self, Kind::List { .. } | Kind::Dict | Kind::Set)
    }

    pub(super) fn is_number(&self) -> bool {
        matches!(
            self,
            Kind::Int(_) | Kind::BigInt(_) | Kind::Float(_) | Kind::Bool(_)
        )
    }
}
