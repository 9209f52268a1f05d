//! The protocol-5 encoder: values in, pickle bytes and out-of-band buffer descriptors out.
//!
//! [`Pickler`] writes into a caller's `&mut [u8]` and records one [`Descriptor`] per out-of-band
//! buffer in a fixed-capacity table. It allocates nothing, never panics and never reads the bytes
//! of an out-of-band buffer.
//!
//! # Encodings
//! Each value gets the opcode CPython 3.11's C pickler picks for it at protocol 5, so a pickle of
//! plain values is CPython's own output minus two things CPython adds: no `FRAME` (frames are
//! optional and our pickles are small) and no `MEMOIZE`/`BINPUT` after strings, tuples and
//! containers (we never refer back to them). Only globals (`numpy.ndarray`, `builtins.complex`)
//! are memoized, once per pickle, and fetched again with `BINGET`.
//!
//! | value | opcodes |
//! |---|---|
//! | `None`, `True`, `False` | `NONE`, `NEWTRUE`, `NEWFALSE` |
//! | int in `0..=0xff`, `0..=0xffff`, `i32` range, wider | `BININT1`, `BININT2`, `BININT`, `LONG1` (shortest two's complement) |
//! | float (`f32` widened) | `BINFLOAT` (8 bytes big-endian) |
//! | complex | `builtins.complex` `STACK_GLOBAL`, two `BINFLOAT`, `TUPLE2`, `REDUCE` |
//! | str (UTF-8), < 256 / < 4 GiB / larger | `SHORT_BINUNICODE`, `BINUNICODE`, `BINUNICODE8` |
//! | bytes, < 256 / < 4 GiB / larger | `SHORT_BINBYTES`, `BINBYTES`, `BINBYTES8` |
//! | bytearray | `BYTEARRAY8` |
//! | tuple of 0, 1-3, more | `EMPTY_TUPLE`, `TUPLE1`-`TUPLE3`, `MARK` ... `TUPLE` |
//! | list | `EMPTY_LIST`, then `APPEND` for one item, else `MARK` ... `APPENDS` per 1000 |
//! | dict | `EMPTY_DICT`, then `SETITEM` for one pair, else `MARK` ... `SETITEMS` per 1000 |
//! | set | `EMPTY_SET`, then `MARK` ... `ADDITEMS` per 1000 |
//! | frozenset | `MARK` ... `FROZENSET` |
//! | out-of-band buffer | `NEXT_BUFFER` (+ `READONLY_BUFFER`) |
//! | numpy array | `numpy.ndarray` `STACK_GLOBAL`, `MARK` shape dtype buffer `0` `None` order `TUPLE`, `NEWOBJ` |
//!
//! One difference in batching: for a dict or set of exactly a multiple of 1000 items CPython
//! ends with an empty `MARK SETITEMS` / `MARK ADDITEMS` batch; we do not.
//!
//! # Errors
//! Every method is all-or-nothing: when it returns `Err`, the pickler is exactly as it was before
//! the call (bytes written, open containers, descriptor table, memo), so the caller may write a
//! smaller value, close the open containers and [`finish`](Pickler::finish), or drop the pickler
//! and encode again into a larger buffer. The closure helpers ([`dict`](Pickler::dict) and
//! friends) roll back the whole container when the closure fails. Bytes of the output buffer
//! beyond [`len`](Pickler::len) may have been overwritten; they are not part of the pickle.
//!
//! Room is held in reserve so that a `BufferFull` never strands the caller: one byte for the
//! final `STOP` and one per open container for its closing opcode. After any error the caller can
//! always [`end`](Pickler::end) every open container and [`finish`](Pickler::finish). The
//! price: a message needs up to one byte per nesting level (and one for `STOP`) more room than its
//! final length while it is being written. A container must also begin within the first 4 GiB of
//! the output (its position is kept in 32 bits); beyond that, beginning one is `BufferFull`.
//!
//! # Closures and `?`
//! The closure helpers are generic over the closure's error type `E` (any `From<EncodeError>`), so a
//! closure may also `?` its own errors (a hal `Error`, an application enum). Rust infers `E` from
//! the closure's last expression: end it with the last write, whose type is
//! [`EncodeResult<()>`](crate::EncodeResult), and nothing needs naming:
//!
//! ```
//! # use dmapickle_core::Pickler;
//! # let mut out = [0u8; 64];
//! let mut p = Pickler::new(&mut out);
//! p.dict(|p| {
//!     p.str("seq")?;
//!     p.int(7u8)?;
//!     p.str("ok")?;
//!     p.bool(true) // the last write is the closure's value: E = dmapickle_core::EncodeError
//! })?;
//! # Ok::<(), dmapickle_core::EncodeError>(())
//! ```
//!
//! A closure that ends in `Ok(())` (after a loop, say) does not say which `E`. In a function
//! whose error type converts from more than one type (`dmapickle_hal::Error`, your own enum),
//! `rustc` then stops with `E0283 type annotations needed`, and its suggestion, `Ok::<(), E>`,
//! names no real type. Give the closure a return type; `E` is then whatever it names:
//!
//! ```
//! # use dmapickle_core::Pickler;
//! # let mut out = [0u8; 64];
//! let mut p = Pickler::new(&mut out);
//! p.dict(|p| -> dmapickle_core::EncodeResult<()> {
//!     for (i, key) in ["a", "b"].into_iter().enumerate() {
//!         p.str(key)?;
//!         p.int(i)?;
//!     }
//!     Ok(())
//! })?;
//! # Ok::<(), dmapickle_core::EncodeError>(())
//! ```
//!
//! ```compile_fail,E0283
//! # use dmapickle_core::Pickler;
//! enum AppError {
//!     Encode(dmapickle_core::EncodeError),
//!     Sensor,
//! }
//! impl From<dmapickle_core::EncodeError> for AppError {
//!     fn from(e: dmapickle_core::EncodeError) -> Self {
//!         AppError::Encode(e)
//!     }
//! }
//! fn encode(out: &mut [u8]) -> Result<usize, AppError> {
//!     let mut p = Pickler::new(out);
//!     p.dict(|p| {
//!         p.str("a")?;
//!         p.int(1u8)?;
//!         Ok(()) // E0283: AppError or EncodeError? `|p| -> dmapickle_core::EncodeResult<()>`
//!     })?;
//!     Ok(p.finish()?.pickle.len())
//! }
//! ```

use heapless::Vec;

use crate::ndarray::{byte_len, DType, Element, Order};
use crate::opcode as op;
use crate::{Descriptor, EncodeError, EncodeResult as Result};

mod align;

/// CPython's batch size for `APPENDS`, `SETITEMS` and `ADDITEMS`.
const BATCH: u16 = 1000;

/// Default capacity of the out-of-band descriptor table.
pub const DEFAULT_BUFFERS: usize = 8;

/// Default number of containers that can be open at once (nesting depth).
pub const DEFAULT_DEPTH: usize = 32;

/// A container kind, for [`Pickler::begin`] and [`Pickler::end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Container {
    /// A Python `tuple`.
    Tuple,
    /// A Python `list`.
    List,
    /// A Python `dict`: write key, value, key, value, ...
    Dict,
    /// A Python `set` (items must be hashable on the Python side).
    Set,
    /// A Python `frozenset` (items must be hashable on the Python side).
    FrozenSet,
}

impl Container {
    /// Values per `MARK` batch, or `None` for containers built in one go.
    const fn batch_limit(self) -> Option<u16> {
        match self {
            Container::List | Container::Set => Some(BATCH),
            Container::Dict => Some(2 * BATCH),
            Container::Tuple | Container::FrozenSet => None,
        }
    }

    /// The opcode that closes one `MARK` batch of a batched container.
    const fn batch_closer(self) -> u8 {
        match self {
            Container::List => op::APPENDS,
            Container::Dict => op::SETITEMS,
            Container::Set => op::ADDITEMS,
            Container::Tuple => op::TUPLE,
            Container::FrozenSet => op::FROZENSET,
        }
    }
}

/// One open container: 8 bytes, so a deep stack stays cheap to create.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Position of the container's current `MARK` in the output.
    mark: u32,
    /// Values written since the current `MARK` (its parity is the dict's key/value parity:
    /// batches hold whole pairs).
    batch: u16,
    /// Values written directly inside, saturating: only 0 to 3 change the encoding.
    items: u8,
    kind: Container,
}

impl Open {
    const UNUSED: Open = Open {
        kind: Container::Tuple,
        mark: 0,
        items: 0,
        batch: 0,
    };
}

/// The globals a pickle may refer to, each memoized on first use.
#[derive(Debug, Clone, Copy)]
enum Global {
    Ndarray,
    Complex,
}

impl Global {
    /// Module and name, `STACK_GLOBAL`, `MEMOIZE`.
    const fn definition(self) -> &'static [u8] {
        match self {
            Global::Ndarray => b"\x8c\x05numpy\x8c\x07ndarray\x93\x94",
            Global::Complex => b"\x8c\x08builtins\x8c\x07complex\x93\x94",
        }
    }
}

/// Memo indices of the globals written so far, one nibble per global (index + 1, 0 = not yet).
///
/// One byte, written and read whole: cheap to snapshot.
#[derive(Debug, Clone, Copy, Default)]
struct Memo(u8);

impl Memo {
    const fn shift(global: Global) -> u32 {
        match global {
            Global::Ndarray => 0,
            Global::Complex => 4,
        }
    }

    fn get(self, global: Global) -> Option<u8> {
        ((self.0 >> Self::shift(global)) & 0xf).checked_sub(1)
    }

    /// Memoizes `global` at the next free index (one per global memoized so far).
    fn add(&mut self, global: Global) -> u8 {
        let next = u8::from(self.0 & 0xf != 0) + u8::from(self.0 >> 4 != 0);
        self.0 |= (next + 1) << Self::shift(global);
        next
    }
}

/// Everything an all-or-nothing call restores on error.
///
/// The open container's counters change only once a value is complete, so they need no copy;
/// its `MARK` position changes only when a new batch starts, which `restore` detects.
#[derive(Clone, Copy)]
struct Snapshot {
    pos: usize,
    depth: usize,
    done: bool,
    memo: Memo,
    descriptors: usize,
}

/// A finished pickle: the bytes and the out-of-band buffers its `NEXT_BUFFER` opcodes refer to,
/// in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Encoded<'a, const N: usize = DEFAULT_BUFFERS> {
    /// The protocol-5 pickle, from `PROTO 5` to `STOP`.
    pub pickle: &'a [u8],
    /// One descriptor per `NEXT_BUFFER`, in pickle order (Python's `buffers=` list).
    pub descriptors: Vec<Descriptor, N>,
}

/// Integer types the [`Pickler`] writes: every primitive integer up to 128 bits.
///
/// Sealed: the encoding is chosen from the value, as CPython's `save_long` does.
pub trait Integer: Copy + sealed::Sealed {
    /// The value, if it lies in `i32`'s range (the `BININT*` opcodes).
    #[doc(hidden)]
    fn small(self) -> Option<i32>;
    /// The value as 17 bytes of little-endian two's complement (room for `u128::MAX`), and how
    /// many of them the shortest two's complement needs.
    #[doc(hidden)]
    fn wide(self) -> ([u8; 17], usize);
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! integer {
    ($wide:ty, $v:ident => sign $sign:expr, magnitude $magnitude:expr; $($t:ty),*) => {
        $(
            impl sealed::Sealed for $t {}
            impl Integer for $t {
                #[inline]
                fn small(self) -> Option<i32> {
                    i32::try_from(self).ok()
                }
                #[inline]
                #[allow(clippy::unnecessary_cast)]
                fn wide(self) -> ([u8; 17], usize) {
                    let $v = self as $wide;
                    let mut out = [$sign; 17];
                    for (dst, src) in out.iter_mut().zip($v.to_le_bytes()) {
                        *dst = src;
                    }
                    // The magnitude's bits (of `!v` for negatives) plus a sign bit, in bytes:
                    // what CPython's `save_long` computes.
                    let bits = 128 - ($magnitude as u128).leading_zeros() as usize;
                    (out, bits / 8 + 1)
                }
            }
        )*
    };
}

integer!(i128, v => sign if v < 0 { 0xff } else { 0 }, magnitude if v < 0 { !v } else { v }; i8, i16, i32, i64, i128, isize);
integer!(u128, v => sign 0, magnitude v; u8, u16, u32, u64, u128, usize);

/// Writes one protocol-5 pickle into a caller's buffer.
///
/// `N` is the capacity of the out-of-band descriptor table, `D` the number of containers that
/// may be open at once. Write exactly one top-level value (usually a dict), then call
/// [`finish`](Pickler::finish). See the [module docs](self) for the encodings and the state
/// after an error.
///
/// ```
/// use dmapickle_core::{Descriptor, Pickler};
/// let mut buf = [0u8; 128];
/// let mut p = Pickler::new(&mut buf);
/// p.dict(|p| {
///     p.str("seq")?;
///     p.int(7u32)?;
///     p.str("adc")?;
///     p.array::<i16>(Descriptor::new(1, 0, 16), &[2, 4])
/// })?;
/// let encoded = p.finish()?;
/// assert_eq!(encoded.descriptors.as_slice(), &[Descriptor::new(1, 0, 16)]);
/// assert_eq!(encoded.pickle, &b"\x80\x05}(\x8c\x03seqK\x07\x8c\x03adc\
///     \x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x04\x86\x8c\x03<i2\x97K\x00N\x8c\x01Ct\x81u."[..]);
/// # Ok::<(), dmapickle_core::EncodeError>(())
/// ```
#[derive(Debug)]
pub struct Pickler<'a, const N: usize = DEFAULT_BUFFERS, const D: usize = DEFAULT_DEPTH> {
    buf: &'a mut [u8],
    pos: usize,
    /// `buf.len() - 1`: the last byte is kept for `STOP` (and one more per open container for
    /// its closing opcode).
    limit: usize,
    descriptors: Vec<Descriptor, N>,
    open: [Open; D],
    depth: usize,
    /// The top-level value is complete.
    done: bool,
    memo: Memo,
    /// Containers at or below this depth belong to an enclosing closure helper: `end` refuses
    /// them, so a closure cannot close (and so change bytes before its own start) what it did
    /// not open.
    floor: usize,
}

impl<'a> Pickler<'a> {
    /// A pickler writing into `buf`, with room for [`DEFAULT_BUFFERS`] out-of-band buffers and
    /// [`DEFAULT_DEPTH`] nested containers. Other limits: [`with_limits`](Pickler::with_limits).
    ///
    /// ```
    /// use dmapickle_core::Pickler;
    /// let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.none()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05N.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self::with_limits(buf)
    }
}

impl<'a, const N: usize, const D: usize> Pickler<'a, N, D> {
    /// A pickler writing into `buf` with room for `N` out-of-band buffers and `D` nested
    /// containers.
    ///
    /// ```
    /// use dmapickle_core::{Descriptor, EncodeError, Pickler};
    /// let mut buf = [0u8; 32];
    /// let mut p = Pickler::<'_, 1, 4>::with_limits(&mut buf);
    /// p.begin_list()?;
    /// p.buffer(Descriptor::new(0, 0, 4))?;
    /// assert_eq!(p.buffer(Descriptor::new(0, 4, 4)), Err(EncodeError::TooManyBuffers));
    /// p.end_list()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05]\x97a.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    #[inline]
    pub fn with_limits(buf: &'a mut [u8]) -> Self {
        let limit = buf.len().saturating_sub(1);
        Pickler {
            buf,
            pos: 0,
            limit,
            descriptors: Vec::new(),
            open: [Open::UNUSED; D],
            depth: 0,
            done: false,
            memo: Memo::default(),
            floor: 0,
        }
    }

    /// Bytes of pickle written so far (without the `STOP` that [`finish`](Pickler::finish) adds).
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// assert_eq!(p.len(), 0);
    /// p.int(1000u16)?; // PROTO 5, BININT2 e8 03
    /// assert_eq!(p.len(), 5);
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing has been written yet (a failed first value leaves the pickler empty).
    ///
    /// ```
    /// # use dmapickle_core::{EncodeError, Pickler};
    /// let mut buf = [0u8; 4];
    /// let mut p = Pickler::new(&mut buf);
    /// assert_eq!(p.str("too long"), Err(EncodeError::BufferFull));
    /// assert!(p.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// The out-of-band buffers recorded so far, in pickle order.
    ///
    /// ```
    /// # use dmapickle_core::{Descriptor, Pickler};
    /// let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_tuple()?;
    /// p.buffer(Descriptor::new(0, 0, 64))?;
    /// assert_eq!(p.descriptors(), &[Descriptor::new(0, 0, 64)]);
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }

    /// How many containers are open.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_list()?;
    /// p.begin_dict()?;
    /// assert_eq!(p.depth(), 2);
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Ends the pickle with `STOP` and returns it with its descriptors.
    ///
    /// Fails with [`EncodeError::UnclosedContainer`] if a container is open and with
    /// [`EncodeError::NotOneValue`] if no value was written.
    ///
    /// ```
    /// use dmapickle_core::{EncodeError, Pickler};
    /// let mut buf = [0u8; 8];
    /// assert_eq!(Pickler::new(&mut buf).finish(), Err(EncodeError::NotOneValue));
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_tuple()?;
    /// assert_eq!(p.finish(), Err(EncodeError::UnclosedContainer));
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    #[inline]
    pub fn finish(self) -> Result<Encoded<'a, N>> {
        if self.depth != 0 {
            return Err(EncodeError::UnclosedContainer);
        }
        if !self.done {
            return Err(EncodeError::NotOneValue);
        }
        let Pickler {
            buf,
            pos,
            descriptors,
            ..
        } = self;
        let end = pos.checked_add(1).ok_or(EncodeError::BufferFull)?;
        *buf.get_mut(pos).ok_or(EncodeError::BufferFull)? = op::STOP;
        let buf: &'a [u8] = buf;
        let pickle = buf.get(..end).ok_or(EncodeError::BufferFull)?;
        Ok(Encoded {
            pickle,
            descriptors,
        })
    }

    // ---- scalars --------------------------------------------------------------------------------

    /// Writes `None`: `NONE`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.none()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05N.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn none(&mut self) -> Result<()> {
        self.value(|p| p.put(&[op::NONE]))
    }

    /// Writes `True` or `False`: `NEWTRUE` / `NEWFALSE`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.bool(true)?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05\x88.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn bool(&mut self, value: bool) -> Result<()> {
        self.value(|p| p.put(&[if value { op::NEWTRUE } else { op::NEWFALSE }]))
    }

    /// Writes an int of any primitive integer type, as CPython's `save_long` does: `BININT1` for
    /// `0..=0xff`, `BININT2` for `0..=0xffff`, `BININT` for the rest of `i32`'s range, else
    /// `LONG1` with the shortest little-endian two's complement.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// fn int(v: impl dmapickle_core::pickler::Integer) -> Vec<u8> {
    ///     let mut buf = [0u8; 32];
    ///     let mut p = Pickler::new(&mut buf);
    ///     p.int(v).unwrap();
    ///     p.finish().unwrap().pickle.to_vec()
    /// }
    /// assert_eq!(int(5u8), b"\x80\x05K\x05.");
    /// assert_eq!(int(1000i16), b"\x80\x05M\xe8\x03.");
    /// assert_eq!(int(-1i64), b"\x80\x05J\xff\xff\xff\xff.");
    /// assert_eq!(int(1u64 << 31), b"\x80\x05\x8a\x05\x00\x00\x00\x80\x00.");
    /// assert_eq!(int(i128::MIN), [&b"\x80\x05\x8a\x10"[..], &[0; 15], b"\x80."].concat());
    /// ```
    pub fn int<T: Integer>(&mut self, value: T) -> Result<()> {
        self.value(|p| p.put_int(value))
    }

    /// Writes a float: `BINFLOAT` and the value's 8 bytes, big-endian.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.f64(1.5)?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05G?\xf8\x00\x00\x00\x00\x00\x00.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn f64(&mut self, value: f64) -> Result<()> {
        self.value(|p| p.put_f64(value))
    }

    /// Writes an `f32` as a Python float (widened exactly to `f64`).
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.f32(-2.0)?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05G\xc0\x00\x00\x00\x00\x00\x00\x00.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn f32(&mut self, value: f32) -> Result<()> {
        self.f64(f64::from(value))
    }

    /// Writes `complex(re, im)` as CPython does: `builtins.complex`, `(re, im)`, `REDUCE`.
    /// The global is memoized on first use and fetched with `BINGET` later.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 64];
    /// let mut p = Pickler::new(&mut buf);
    /// p.complex(1.0, 2.0)?;
    /// assert_eq!(p.finish()?.pickle, &b"\x80\x05\x8c\x08builtins\x8c\x07complex\x93\x94\
    ///     G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86R."[..]);
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn complex(&mut self, re: f64, im: f64) -> Result<()> {
        self.value(|p| {
            p.put_global(Global::Complex)?;
            p.put_f64(re)?;
            p.put_f64(im)?;
            p.put(&[op::TUPLE2, op::REDUCE])
        })
    }

    /// Writes a str: `SHORT_BINUNICODE` (< 256 bytes of UTF-8), `BINUNICODE` or `BINUNICODE8`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.str("µs")?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05\x8c\x03\xc2\xb5s.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn str(&mut self, value: &str) -> Result<()> {
        self.value(|p| p.put_str(value))
    }

    /// Writes bytes in-band: `SHORT_BINBYTES` (< 256), `BINBYTES` or `BINBYTES8`. For large data
    /// use [`buffer`](Pickler::buffer), which does not copy.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.bytes(b"ok")?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05C\x02ok.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn bytes(&mut self, value: &[u8]) -> Result<()> {
        self.value(|p| {
            let len = value.len();
            if let Ok(n) = u8::try_from(len) {
                p.put_parts(&[&[op::SHORT_BINBYTES, n], value])
            } else if let Ok(n) = u32::try_from(len) {
                p.put_parts(&[&[op::BINBYTES], &n.to_le_bytes(), value])
            } else {
                p.put_parts(&[&[op::BINBYTES8], &(len as u64).to_le_bytes(), value])
            }
        })
    }

    /// Writes a bytearray in-band: `BYTEARRAY8`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.bytearray(b"ok")?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ok.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn bytearray(&mut self, value: &[u8]) -> Result<()> {
        self.value(|p| {
            let len = (value.len() as u64).to_le_bytes();
            p.put_parts(&[&[op::BYTEARRAY8], &len, value])
        })
    }

    // ---- out-of-band ----------------------------------------------------------------------------

    /// Writes an out-of-band buffer (a `PickleBuffer` on the Python side): `NEXT_BUFFER`, plus
    /// `READONLY_BUFFER` if `desc.readonly`, and records `desc`. The bytes are not read.
    ///
    /// ```
    /// # use dmapickle_core::{Descriptor, Pickler};
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.buffer(Descriptor::new(3, 0, 4096).read_only())?;
    /// let encoded = p.finish()?;
    /// assert_eq!(encoded.pickle, b"\x80\x05\x97\x98.");
    /// assert_eq!(encoded.descriptors[0].region, 3);
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn buffer(&mut self, desc: Descriptor) -> Result<()> {
        self.value(|p| p.put_buffer(desc))
    }

    /// Writes a numpy array whose bytes are the out-of-band buffer `desc`:
    /// `numpy.ndarray(shape, dtype.str(), buffer, 0, None, order)` through `NEWOBJ`. It loads
    /// without a copy on numpy 1.26 and 2.x; it is writable in Python unless `desc.readonly`.
    /// `numpy.ndarray` is memoized on first use and fetched with `BINGET` later.
    ///
    /// Fails with [`EncodeError::TooManyDims`] for more than [`MAX_NDIM`](crate::ndarray::MAX_NDIM)
    /// dimensions, and with [`EncodeError::ArraySizeMismatch`] unless the product of `shape` times the item size
    /// equals `desc.len` (a 0-d array, `shape == []`, holds one element).
    ///
    /// ```
    /// use dmapickle_core::ndarray::{ByteOrder, DType, Order, Scalar};
    /// use dmapickle_core::{Descriptor, EncodeError, Pickler};
    /// let mut buf = [0u8; 96];
    /// let mut p = Pickler::new(&mut buf);
    /// let f64_be = DType::new(Scalar::F64, ByteOrder::Big);
    /// let desc = Descriptor::new(0, 0, 48).read_only();
    /// assert_eq!(p.ndarray(desc, f64_be, &[3, 3], Order::C), Err(EncodeError::ArraySizeMismatch));
    /// p.begin_tuple()?;
    /// p.ndarray(desc, f64_be, &[2, 3], Order::Fortran)?;
    /// p.ndarray(Descriptor::new(0, 48, 1), DType::of::<u8>(), &[], Order::C)?;
    /// p.end_tuple()?;
    /// assert_eq!(p.finish()?.pickle, &b"\x80\x05\
    ///     \x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x03\x86\x8c\x03>f8\x97\x98K\x00N\x8c\x01Ft\x81\
    ///     h\x00()\x8c\x03|u1\x97K\x00N\x8c\x01Ct\x81\x86."[..]);
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn ndarray(
        &mut self,
        desc: Descriptor,
        dtype: DType,
        shape: &[usize],
        order: Order,
    ) -> Result<()> {
        if shape.len() > crate::ndarray::MAX_NDIM {
            return Err(EncodeError::TooManyDims);
        }
        let size = byte_len(shape, dtype.itemsize()).ok_or(EncodeError::ArraySizeMismatch)?;
        // numpy dimensions are `npy_intp`: refuse what no 64-bit host can take either.
        let dims_fit = shape.iter().all(|&dim| i64::try_from(dim).is_ok());
        if !dims_fit || u32::try_from(size) != Ok(desc.len) {
            return Err(EncodeError::ArraySizeMismatch);
        }
        self.value(|p| {
            p.put_global(Global::Ndarray)?;
            p.put(&[op::MARK])?;
            p.put_shape(shape)?;
            p.put_str(dtype.str())?;
            p.put_buffer(desc)?;
            let order = match order {
                Order::C => b'C',
                Order::Fortran => b'F',
            };
            // offset 0, strides None, order; close the argument tuple; NEWOBJ.
            p.put(&[
                op::BININT1,
                0,
                op::NONE,
                op::SHORT_BINUNICODE,
                1,
                order,
                op::TUPLE,
                op::NEWOBJ,
            ])
        })
    }

    /// Writes a C-ordered numpy array of `T` elements: [`ndarray`](Pickler::ndarray) with
    /// `DType::of::<T>()`.
    ///
    /// ```
    /// # use dmapickle_core::{Descriptor, Pickler};
    /// # let mut buf = [0u8; 64];
    /// let mut p = Pickler::new(&mut buf);
    /// p.array::<u16>(Descriptor::new(0, 0, 8), &[4])?;
    /// assert_eq!(p.finish()?.pickle, &b"\x80\x05\x8c\x05numpy\x8c\x07ndarray\x93\x94\
    ///     (K\x04\x85\x8c\x03<u2\x97K\x00N\x8c\x01Ct\x81."[..]);
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn array<T: Element>(&mut self, desc: Descriptor, shape: &[usize]) -> Result<()> {
        self.ndarray(desc, T::DTYPE, shape, Order::C)
    }

    // ---- containers -----------------------------------------------------------------------------

    /// Opens a container; write its items, then [`end`](Pickler::end) it with the same kind.
    ///
    /// Fails with [`EncodeError::TooDeep`] when `D` containers are already open.
    ///
    /// ```
    /// use dmapickle_core::{pickler::Container, Pickler};
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin(Container::Set)?;
    /// p.int(1u8)?;
    /// p.int(2u8)?;
    /// p.end(Container::Set)?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05\x8f(K\x01K\x02\x90.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn begin(&mut self, kind: Container) -> Result<()> {
        self.atomic(|p| {
            if p.depth >= D {
                return Err(EncodeError::TooDeep);
            }
            p.start_value()?;
            // Count the container as open first, so its closing byte is held in reserve while
            // the opener is written.
            *p.open.get_mut(p.depth).ok_or(EncodeError::TooDeep)? = Open {
                kind,
                mark: 0,
                items: 0,
                batch: 0,
            };
            p.depth += 1;
            match kind {
                Container::Tuple | Container::FrozenSet => p.put(&[op::MARK])?,
                Container::List => p.put(&[op::EMPTY_LIST, op::MARK])?,
                Container::Dict => p.put(&[op::EMPTY_DICT, op::MARK])?,
                Container::Set => p.put(&[op::EMPTY_SET, op::MARK])?,
            }
            // A container's MARK must lie in the first 4 GiB of the output.
            let mark =
                u32::try_from(p.pos.saturating_sub(1)).map_err(|_| EncodeError::BufferFull)?;
            if let Some(top) = p.top_mut() {
                top.mark = mark;
            }
            Ok(())
        })
    }

    /// Closes the innermost open container, which must be of kind `kind`.
    ///
    /// Fails with [`EncodeError::ContainerMismatch`] if no container is open or the innermost is of
    /// another kind, and with [`EncodeError::DictKeyWithoutValue`] for a dict with an odd number of
    /// items.
    ///
    /// ```
    /// use dmapickle_core::{pickler::Container, EncodeError, Pickler};
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin(Container::Dict)?;
    /// p.str("a")?;
    /// assert_eq!(p.end(Container::List), Err(EncodeError::ContainerMismatch));
    /// assert_eq!(p.end(Container::Dict), Err(EncodeError::DictKeyWithoutValue));
    /// p.none()?;
    /// p.end(Container::Dict)?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05}\x8c\x01aNs.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    #[inline]
    pub fn end(&mut self, kind: Container) -> Result<()> {
        let top = self
            .depth
            .checked_sub(1)
            .and_then(|i| self.open.get(i))
            .copied()
            .filter(|top| top.kind == kind && self.depth > self.floor)
            .ok_or(EncodeError::ContainerMismatch)?;
        let replace_mark = match (kind, top.items) {
            (Container::Dict, _) if top.batch % 2 == 1 => {
                return Err(EncodeError::DictKeyWithoutValue)
            }
            (Container::Tuple, 0) => Some(op::EMPTY_TUPLE),
            (Container::Tuple, 1) => Some(op::TUPLE1),
            (Container::Tuple, 2) => Some(op::TUPLE2),
            (Container::Tuple, 3) => Some(op::TUPLE3),
            (Container::List | Container::Dict | Container::Set, 0) => None,
            (Container::List, 1) => Some(op::APPEND),
            (Container::Dict, 2) => Some(op::SETITEM),
            _ => {
                // The `MARK` stays; the closing opcode takes the byte held in reserve.
                self.depth -= 1;
                if let Err(error) = self.put(&[kind.batch_closer()]) {
                    self.depth += 1;
                    return Err(error);
                }
                self.end_value();
                return Ok(());
            }
        };
        // Drop the `MARK` (shift the items left by one) and put the short form's opcode, if any,
        // in the byte that frees.
        let items = self
            .buf
            .get_mut(top.mark as usize..self.pos)
            .unwrap_or_default();
        if !items.is_empty() {
            items.rotate_left(1);
            self.pos -= 1;
        }
        self.depth -= 1;
        if let Some(opcode) = replace_mark {
            self.put(&[opcode])?;
        }
        self.end_value();
        Ok(())
    }

    /// Writes a tuple whose items `f` writes; on error the whole tuple is rolled back.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.tuple(|p| { p.int(1u8)?; p.none() })?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05K\x01N\x86.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn tuple<E: From<EncodeError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        self.container(Container::Tuple, f)
    }

    /// Writes a list whose items `f` writes; on error the whole list is rolled back.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.list(|p| (0u8..3).try_for_each(|i| p.int(i)))?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05](K\x00K\x01K\x02e.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn list<E: From<EncodeError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        self.container(Container::List, f)
    }

    /// Writes a dict whose keys and values `f` writes, alternately; on error the whole dict is
    /// rolled back. A closure ending in `Ok(())` needs a return type:
    /// `|p| -> dmapickle_core::EncodeResult<()> { ...; Ok(()) }` ([module docs](self#closures-and-)).
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 32];
    /// let mut p = Pickler::new(&mut buf);
    /// p.dict(|p| {
    ///     p.str("seq")?;
    ///     p.int(5u8)?;
    ///     p.str("ok")?;
    ///     p.bool(true)
    /// })?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05}(\x8c\x03seqK\x05\x8c\x02ok\x88u.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn dict<E: From<EncodeError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        self.container(Container::Dict, f)
    }

    /// Writes a set whose items `f` writes; on error the whole set is rolled back.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.set(|p| p.str("x"))?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05\x8f(\x8c\x01x\x90.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn set<E: From<EncodeError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        self.container(Container::Set, f)
    }

    /// Writes a frozenset whose items `f` writes; on error the whole frozenset is rolled back.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.frozenset(|p| p.int(7u8))?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05(K\x07\x91.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn frozenset<E: From<EncodeError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        self.container(Container::FrozenSet, f)
    }

    /// [`begin`](Pickler::begin) a tuple.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_tuple()?;
    /// p.end_tuple()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05).");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn begin_tuple(&mut self) -> Result<()> {
        self.begin(Container::Tuple)
    }

    /// [`end`](Pickler::end) a tuple: `EMPTY_TUPLE`, `TUPLE1`-`TUPLE3` or `MARK` ... `TUPLE`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_tuple()?;
    /// for _ in 0..4 { p.none()?; }
    /// p.end_tuple()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05(NNNNt.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn end_tuple(&mut self) -> Result<()> {
        self.end(Container::Tuple)
    }

    /// [`begin`](Pickler::begin) a list.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_list()?;
    /// p.end_list()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05].");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn begin_list(&mut self) -> Result<()> {
        self.begin(Container::List)
    }

    /// [`end`](Pickler::end) a list: nothing more for `[]`, `APPEND` for one item, else `APPENDS`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_list()?;
    /// p.none()?;
    /// p.end_list()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05]Na.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn end_list(&mut self) -> Result<()> {
        self.end(Container::List)
    }

    /// [`begin`](Pickler::begin) a dict.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_dict()?;
    /// p.end_dict()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05}.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn begin_dict(&mut self) -> Result<()> {
        self.begin(Container::Dict)
    }

    /// [`end`](Pickler::end) a dict: nothing more for `{}`, `SETITEM` for one pair, else
    /// `SETITEMS`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 16];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_dict()?;
    /// p.int(1u8)?;
    /// p.int(2u8)?;
    /// p.end_dict()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05}K\x01K\x02s.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn end_dict(&mut self) -> Result<()> {
        self.end(Container::Dict)
    }

    /// [`begin`](Pickler::begin) a set.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_set()?;
    /// p.end_set()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05\x8f.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn begin_set(&mut self) -> Result<()> {
        self.begin(Container::Set)
    }

    /// [`end`](Pickler::end) a set: nothing more for an empty set, else `ADDITEMS`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_set()?;
    /// p.none()?;
    /// p.end_set()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05\x8f(N\x90.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn end_set(&mut self) -> Result<()> {
        self.end(Container::Set)
    }

    /// [`begin`](Pickler::begin) a frozenset.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_frozenset()?;
    /// p.end_frozenset()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05(\x91.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn begin_frozenset(&mut self) -> Result<()> {
        self.begin(Container::FrozenSet)
    }

    /// [`end`](Pickler::end) a frozenset: `FROZENSET`.
    ///
    /// ```
    /// # use dmapickle_core::Pickler;
    /// # let mut buf = [0u8; 8];
    /// let mut p = Pickler::new(&mut buf);
    /// p.begin_frozenset()?;
    /// p.bool(false)?;
    /// p.end_frozenset()?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05(\x89\x91.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn end_frozenset(&mut self) -> Result<()> {
        self.end(Container::FrozenSet)
    }

    // ---- bookkeeping ----------------------------------------------------------------------------

    fn container<E: From<EncodeError>>(
        &mut self,
        kind: Container,
        f: impl FnOnce(&mut Self) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        let snapshot = self.snapshot();
        let floor = self.floor;
        let result = self.begin(kind).map_err(E::from).and_then(|()| {
            let depth = self.depth;
            self.floor = depth;
            let inner = f(self);
            self.floor = floor;
            inner?;
            if self.depth != depth {
                return Err(EncodeError::UnclosedContainer.into());
            }
            self.end(kind).map_err(E::from)
        });
        if result.is_err() {
            self.restore(snapshot);
        }
        result
    }

    /// Writes one value with `write`, all-or-nothing.
    #[inline(always)]
    fn value(&mut self, write: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.atomic(|p| {
            p.start_value()?;
            write(p)?;
            p.end_value();
            Ok(())
        })
    }

    /// Runs `f`; if it fails, restores the state from before.
    #[inline(always)]
    fn atomic(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let snapshot = self.snapshot();
        let result = f(self);
        if result.is_err() {
            self.restore(snapshot);
        }
        result
    }

    #[inline]
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            pos: self.pos,
            depth: self.depth,
            done: self.done,
            memo: self.memo,
            descriptors: self.descriptors.len(),
        }
    }

    #[cold]
    #[inline(never)]
    fn restore(&mut self, snapshot: Snapshot) {
        self.pos = snapshot.pos;
        self.depth = snapshot.depth;
        self.done = snapshot.done;
        self.memo = snapshot.memo;
        self.descriptors.truncate(snapshot.descriptors);
        // A batch boundary (`APPENDS MARK` ...) written since the snapshot is undone: its `MARK`
        // lay at or after the snapshot's end. The batch is full again, so the next value writes
        // the boundary anew (the old mark is not needed: a container that crossed a boundary
        // never drops its `MARK`).
        if let Some(top) = self.top_mut() {
            if top.mark as usize >= snapshot.pos {
                if let Some(limit) = top.kind.batch_limit() {
                    top.batch = limit;
                }
            }
        }
    }

    fn top(&self) -> Option<&Open> {
        self.depth.checked_sub(1).and_then(|i| self.open.get(i))
    }

    fn top_mut(&mut self) -> Option<&mut Open> {
        self.depth.checked_sub(1).and_then(|i| self.open.get_mut(i))
    }

    /// Before a value: the protocol header before the first, one value at top level, and a new
    /// `MARK` batch when the current one of a list, dict or set is full.
    #[inline(always)]
    fn start_value(&mut self) -> Result<()> {
        match self.top() {
            Some(top) if top.kind.batch_limit() != Some(top.batch) => Ok(()),
            _ => self.start_value_slow(),
        }
    }

    #[cold]
    #[inline(never)]
    fn start_value_slow(&mut self) -> Result<()> {
        let Some(top) = self.top().copied() else {
            if self.done {
                return Err(EncodeError::NotOneValue);
            }
            if self.pos == 0 {
                self.put(&[op::PROTO, 5])?;
            }
            return Ok(());
        };
        if top.kind.batch_limit() == Some(top.batch) {
            self.put(&[top.kind.batch_closer(), op::MARK])?;
            let mark =
                u32::try_from(self.pos.saturating_sub(1)).map_err(|_| EncodeError::BufferFull)?;
            if let Some(top) = self.top_mut() {
                top.mark = mark;
                top.batch = 0;
            }
        }
        Ok(())
    }

    /// After a value: count it in its container, or mark the pickle's one value done.
    #[inline]
    fn end_value(&mut self) {
        match self.top_mut() {
            Some(top) => {
                top.items = top.items.saturating_add(1);
                top.batch = top.batch.saturating_add(1);
            }
            None => self.done = true,
        }
    }

    // ---- raw writers: opcodes without value bookkeeping ------------------------------------

    /// Appends `bytes`, or nothing if they do not fit.
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.reserve(bytes.len())?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferFull)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Appends `head` then `data`, or nothing if both do not fit.
    #[inline]
    fn put2(&mut self, head: &[u8], data: &[u8]) -> Result<()> {
        let len = head
            .len()
            .checked_add(data.len())
            .ok_or(EncodeError::BufferFull)?;
        let end = self.reserve(len)?;
        let out = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferFull)?;
        let (out_head, out_data) = out
            .split_at_mut_checked(head.len())
            .ok_or(EncodeError::BufferFull)?;
        out_head.copy_from_slice(head);
        out_data.copy_from_slice(data);
        self.pos = end;
        Ok(())
    }

    /// The end of `len` more bytes, if they fit. Each open container holds one byte in reserve
    /// for its closing opcode (and the last byte of the buffer is kept for `STOP`).
    #[inline]
    fn reserve(&self, len: usize) -> Result<usize> {
        let limit = self.limit.saturating_sub(self.depth);
        self.pos
            .checked_add(len)
            .filter(|&end| end <= limit)
            .ok_or(EncodeError::BufferFull)
    }

    /// Appends the concatenation of `parts`, or nothing if it does not fit.
    fn put_parts(&mut self, parts: &[&[u8]]) -> Result<()> {
        let total = parts
            .iter()
            .try_fold(0usize, |sum, part| sum.checked_add(part.len()))
            .ok_or(EncodeError::BufferFull)?;
        let end = self.reserve(total)?;
        let mut out = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferFull)?;
        for part in parts {
            let (head, rest) = out
                .split_at_mut_checked(part.len())
                .ok_or(EncodeError::BufferFull)?;
            head.copy_from_slice(part);
            out = rest;
        }
        self.pos = end;
        Ok(())
    }

    /// An int: the generic part only widens; the writers are shared by every integer type.
    #[inline]
    fn put_int<T: Integer>(&mut self, value: T) -> Result<()> {
        match value.small() {
            Some(v) => self.put_small_int(v),
            None => {
                let (wide, len) = value.wide();
                self.put_long1(&wide, len)
            }
        }
    }

    fn put_small_int(&mut self, v: i32) -> Result<()> {
        if let Ok(v) = u8::try_from(v) {
            self.put(&[op::BININT1, v])
        } else if let Ok(v) = u16::try_from(v) {
            let [lo, hi] = v.to_le_bytes();
            self.put(&[op::BININT2, lo, hi])
        } else {
            let [a, b, c, d] = v.to_le_bytes();
            self.put(&[op::BININT, a, b, c, d])
        }
    }

    fn put_long1(&mut self, wide: &[u8; 17], len: usize) -> Result<()> {
        let bytes = wide.get(..len).ok_or(EncodeError::BufferFull)?;
        // At most 17 bytes, so the length fits LONG1's one-byte count.
        self.put2(&[op::LONG1, len as u8], bytes)
    }

    fn put_f64(&mut self, value: f64) -> Result<()> {
        let [a, b, c, d, e, f, g, h] = value.to_be_bytes();
        self.put(&[op::BINFLOAT, a, b, c, d, e, f, g, h])
    }

    #[inline]
    fn put_str(&mut self, value: &str) -> Result<()> {
        let bytes = value.as_bytes();
        if let Ok(n) = u8::try_from(bytes.len()) {
            self.put2(&[op::SHORT_BINUNICODE, n], bytes)
        } else if let Ok(n) = u32::try_from(bytes.len()) {
            self.put_parts(&[&[op::BINUNICODE], &n.to_le_bytes(), bytes])
        } else {
            let n = bytes.len() as u64;
            self.put_parts(&[&[op::BINUNICODE8], &n.to_le_bytes(), bytes])
        }
    }

    fn put_buffer(&mut self, desc: Descriptor) -> Result<()> {
        if desc.readonly {
            self.put(&[op::NEXT_BUFFER, op::READONLY_BUFFER])?;
        } else {
            self.put(&[op::NEXT_BUFFER])?;
        }
        self.descriptors
            .push(desc)
            .map_err(|_| EncodeError::TooManyBuffers)
    }

    /// A shape tuple: `EMPTY_TUPLE`, `TUPLE1`-`TUPLE3` or `MARK` ... `TUPLE`.
    fn put_shape(&mut self, shape: &[usize]) -> Result<()> {
        let long = shape.len() > 3;
        if long {
            self.put(&[op::MARK])?;
        }
        for &dim in shape {
            self.put_int(dim)?;
        }
        self.put(&[match shape.len() {
            0 => op::EMPTY_TUPLE,
            1 => op::TUPLE1,
            2 => op::TUPLE2,
            3 => op::TUPLE3,
            _ => op::TUPLE,
        }])
    }

    /// A global: `STACK_GLOBAL` and `MEMOIZE` the first time, `BINGET` after.
    fn put_global(&mut self, global: Global) -> Result<()> {
        match self.memo.get(global) {
            Some(index) => self.put(&[op::BINGET, index]),
            None => {
                self.put(global.definition())?;
                self.memo.add(global);
                Ok(())
            }
        }
    }
}

// ---- crate-private hooks for `template` and `ser` (added by the serde/template work) ------------
impl<'a, const N: usize, const D: usize> Pickler<'a, N, D> {
    /// Writes one value given as its raw opcode bytes, which must push exactly one object
    /// (`template` writes fixed-width ints this way). All-or-nothing, with the usual bookkeeping.
    pub(crate) fn raw_value(&mut self, opcodes: &[u8]) -> Result<()> {
        self.value(|p| p.put(opcodes))
    }

    /// Runs `f` all-or-nothing: on error the pickler is as before (`ser`'s `serialize`).
    #[cfg(feature = "serde")]
    pub(crate) fn all_or_nothing(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.atomic(f)
    }

    /// Writes a str from `value`'s `Display` output, without an intermediate buffer: one pass
    /// counts the bytes, the second writes them. Output that differs between the two passes is
    /// [`EncodeError::SerdeCustom`].
    #[cfg(feature = "serde")]
    pub(crate) fn str_display<T: core::fmt::Display + ?Sized>(&mut self, value: &T) -> Result<()> {
        use core::fmt::Write as _;
        struct Count(usize);
        impl core::fmt::Write for Count {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0 = self.0.checked_add(s.len()).ok_or(core::fmt::Error)?;
                Ok(())
            }
        }
        struct Out<'q, 'a, const N: usize, const D: usize> {
            p: &'q mut Pickler<'a, N, D>,
            left: usize,
            error: Option<EncodeError>,
        }
        impl<const N: usize, const D: usize> core::fmt::Write for Out<'_, '_, N, D> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                let Some(left) = self.left.checked_sub(s.len()) else {
                    self.error = Some(EncodeError::SerdeCustom);
                    return Err(core::fmt::Error);
                };
                self.left = left;
                self.p.put(s.as_bytes()).map_err(|e| {
                    self.error = Some(e);
                    core::fmt::Error
                })
            }
        }
        let mut count = Count(0);
        write!(count, "{value}").map_err(|_| EncodeError::SerdeCustom)?;
        let len = count.0;
        self.value(|p| {
            if let Ok(n) = u8::try_from(len) {
                p.put(&[op::SHORT_BINUNICODE, n])?;
            } else if let Ok(n) = u32::try_from(len) {
                p.put_parts(&[&[op::BINUNICODE], &n.to_le_bytes()])?;
            } else {
                p.put_parts(&[&[op::BINUNICODE8], &(len as u64).to_le_bytes()])?;
            }
            let mut out = Out {
                p,
                left: len,
                error: None,
            };
            match write!(out, "{value}") {
                Ok(()) if out.left == 0 => Ok(()),
                Ok(()) => Err(EncodeError::SerdeCustom),
                Err(_) => Err(out.error.unwrap_or(EncodeError::SerdeCustom)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    //! Exact bytes. Where CPython writes the same value, the expected bytes are CPython 3.11's
    //! `pickle.dumps(value, 5)` with its `FRAME` and `MEMOIZE` opcodes removed.
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::ndarray::{ByteOrder, Scalar};

    pub(super) fn encode(write: impl FnOnce(&mut Pickler<'_>) -> Result<()>) -> Vec<u8> {
        let mut buf = std::vec![0u8; 1 << 16];
        let mut p = Pickler::new(&mut buf);
        write(&mut p).unwrap();
        p.finish().unwrap().pickle.to_vec()
    }

    #[test]
    fn ints_match_cpython_at_every_width_edge() {
        let signed: &[(i128, &[u8])] = &[
            (0, b"\x80\x05K\x00."),
            (255, b"\x80\x05K\xff."),
            (256, b"\x80\x05M\x00\x01."),
            (65535, b"\x80\x05M\xff\xff."),
            (65536, b"\x80\x05J\x00\x00\x01\x00."),
            (-1, b"\x80\x05J\xff\xff\xff\xff."),
            (-128, b"\x80\x05J\x80\xff\xff\xff."),
            (-256, b"\x80\x05J\x00\xff\xff\xff."),
            (2147483647, b"\x80\x05J\xff\xff\xff\x7f."),
            (-2147483648, b"\x80\x05J\x00\x00\x00\x80."),
            (2147483648, b"\x80\x05\x8a\x05\x00\x00\x00\x80\x00."),
            (-2147483649, b"\x80\x05\x8a\x05\xff\xff\xff\x7f\xff."),
            (-549755813888, b"\x80\x05\x8a\x05\x00\x00\x00\x00\x80."),
            (549755813888, b"\x80\x05\x8a\x06\x00\x00\x00\x00\x80\x00."),
            (i64::MAX as i128, b"\x80\x05\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f."),
            (i64::MIN as i128, b"\x80\x05\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."),
            (1 << 63, b"\x80\x05\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."),
            (
                i128::MAX,
                b"\x80\x05\x8a\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f.",
            ),
            (
                i128::MIN,
                b"\x80\x05\x8a\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80.",
            ),
        ];
        for &(value, expected) in signed {
            assert_eq!(encode(|p| p.int(value)), expected, "{value}");
            if let Ok(v) = i64::try_from(value) {
                assert_eq!(encode(|p| p.int(v)), expected, "{value} as i64");
            }
            if let Ok(v) = u64::try_from(value) {
                assert_eq!(encode(|p| p.int(v)), expected, "{value} as u64");
                assert_eq!(encode(|p| p.int(v as u128)), expected, "{value} as u128");
            }
            if let Ok(v) = i16::try_from(value) {
                assert_eq!(encode(|p| p.int(v)), expected, "{value} as i16");
            }
            if let Ok(v) = isize::try_from(value) {
                assert_eq!(encode(|p| p.int(v)), expected, "{value} as isize");
            }
        }
        assert_eq!(
            encode(|p| p.int(u64::MAX)),
            b"\x80\x05\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x00."
        );
        assert_eq!(
            encode(|p| p.int(u128::MAX)),
            b"\x80\x05\x8a\x11\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00."
        );
        assert_eq!(encode(|p| p.int(i8::MIN)), b"\x80\x05J\x80\xff\xff\xff.");
        assert_eq!(
            encode(|p| p.int(u32::MAX)),
            b"\x80\x05\x8a\x05\xff\xff\xff\xff\x00."
        );
    }

    #[test]
    fn floats_match_cpython() {
        let cases: &[(f64, &[u8])] = &[
            (0.0, b"\x80\x05G\x00\x00\x00\x00\x00\x00\x00\x00."),
            (-0.0, b"\x80\x05G\x80\x00\x00\x00\x00\x00\x00\x00."),
            (f64::INFINITY, b"\x80\x05G\x7f\xf0\x00\x00\x00\x00\x00\x00."),
            (
                f64::NEG_INFINITY,
                b"\x80\x05G\xff\xf0\x00\x00\x00\x00\x00\x00.",
            ),
            (f64::NAN, b"\x80\x05G\x7f\xf8\x00\x00\x00\x00\x00\x00."),
            (1e300, b"\x80\x05G~7\xe4<\x88\x00u\x9c."),
            (0.1, b"\x80\x05G?\xb9\x99\x99\x99\x99\x99\x9a."),
        ];
        for &(value, expected) in cases {
            assert_eq!(encode(|p| p.f64(value)), expected, "{value}");
        }
        assert_eq!(encode(|p| p.f32(f32::NEG_INFINITY)), cases[3].1);
        assert_eq!(encode(|p| p.f32(0.1)), encode(|p| p.f64(f64::from(0.1f32))));
    }

    #[test]
    fn str_and_bytes_switch_opcodes_at_256() {
        let a255 = "a".repeat(255);
        let mut expected = b"\x80\x05\x8c\xff".to_vec();
        expected.extend_from_slice(a255.as_bytes());
        expected.push(b'.');
        assert_eq!(encode(|p| p.str(&a255)), expected);
        let b256 = "b".repeat(256);
        let mut expected = b"\x80\x05X\x00\x01\x00\x00".to_vec();
        expected.extend_from_slice(b256.as_bytes());
        expected.push(b'.');
        assert_eq!(encode(|p| p.str(&b256)), expected);
        assert_eq!(encode(|p| p.str("")), b"\x80\x05\x8c\x00.");
        assert_eq!(encode(|p| p.bytes(b"")), b"\x80\x05C\x00.");
        let y256 = [b'y'; 256];
        let mut expected = b"\x80\x05B\x00\x01\x00\x00".to_vec();
        expected.extend_from_slice(&y256);
        expected.push(b'.');
        assert_eq!(encode(|p| p.bytes(&y256)), expected);
        let mut expected = b"\x80\x05C\xff".to_vec();
        expected.extend_from_slice(&y256[..255]);
        expected.push(b'.');
        assert_eq!(encode(|p| p.bytes(&y256[..255])), expected);
        assert_eq!(
            encode(|p| p.bytearray(b"z")),
            b"\x80\x05\x96\x01\x00\x00\x00\x00\x00\x00\x00z."
        );
    }

    #[test]
    fn containers_match_cpython() {
        let ints = |n: u8| move |p: &mut Pickler<'_>| (1..=n).try_for_each(|i| p.int(i));
        assert_eq!(encode(|p| p.tuple(ints(0))), b"\x80\x05).");
        assert_eq!(encode(|p| p.tuple(ints(1))), b"\x80\x05K\x01\x85.");
        assert_eq!(encode(|p| p.tuple(ints(2))), b"\x80\x05K\x01K\x02\x86.");
        assert_eq!(
            encode(|p| p.tuple(ints(3))),
            b"\x80\x05K\x01K\x02K\x03\x87."
        );
        assert_eq!(
            encode(|p| p.tuple(ints(4))),
            b"\x80\x05(K\x01K\x02K\x03K\x04t."
        );
        assert_eq!(encode(|p| p.list(ints(0))), b"\x80\x05].");
        assert_eq!(encode(|p| p.list(ints(1))), b"\x80\x05]K\x01a.");
        assert_eq!(encode(|p| p.list(ints(2))), b"\x80\x05](K\x01K\x02e.");
        assert_eq!(encode(|p| p.dict(ints(0))), b"\x80\x05}.");
        assert_eq!(encode(|p| p.dict(ints(2))), b"\x80\x05}K\x01K\x02s.");
        assert_eq!(
            encode(|p| p.dict(ints(4))),
            b"\x80\x05}(K\x01K\x02K\x03K\x04u."
        );
        assert_eq!(encode(|p| p.set(ints(0))), b"\x80\x05\x8f.");
        assert_eq!(encode(|p| p.set(ints(1))), b"\x80\x05\x8f(K\x01\x90.");
        assert_eq!(encode(|p| p.frozenset(ints(0))), b"\x80\x05(\x91.");
        assert_eq!(encode(|p| p.frozenset(ints(1))), b"\x80\x05(K\x01\x91.");
        // [[[]]] and {'a': [(), ()]}
        assert_eq!(
            encode(|p| p.list(|p| p.list(|p| p.list(|_| Ok(()))))),
            b"\x80\x05]]]aa."
        );
        assert_eq!(
            encode(|p| p.dict(|p| {
                p.str("a")?;
                p.list(|p| {
                    p.tuple(|_| Ok(()))?;
                    p.tuple(|_| Ok(()))
                })
            })),
            b"\x80\x05}\x8c\x01a]())es."
        );
    }

    #[test]
    fn long_lists_dicts_and_sets_batch_by_1000_like_cpython() {
        let list = encode(|p| p.list(|p| (0..1001u32).try_for_each(|i| p.int(i))));
        let mut expected = b"\x80\x05](".to_vec();
        let put = |expected: &mut Vec<u8>, i: u32| {
            let mut buf = [0u8; 16];
            let mut q = Pickler::new(&mut buf);
            q.int(i).unwrap();
            let one = q.finish().unwrap().pickle;
            expected.extend_from_slice(&one[2..one.len() - 1]);
        };
        (0..1000).for_each(|i| put(&mut expected, i));
        expected.extend_from_slice(b"e(");
        put(&mut expected, 1000);
        expected.extend_from_slice(b"e.");
        assert_eq!(list, expected);

        // Only one-byte items, so opcode bytes can be counted.
        let dict = encode(|p| p.dict(|p| (0..1001).try_for_each(|_| p.none().and(p.none()))));
        let mut expected = b"\x80\x05}(".to_vec();
        expected.extend_from_slice(&[b'N'; 2000]);
        expected.extend_from_slice(b"u(NNu.");
        assert_eq!(dict, expected);
        let set = encode(|p| p.set(|p| (0..2000).try_for_each(|_| p.none())));
        let mut expected = b"\x80\x05\x8f(".to_vec();
        expected.extend_from_slice(&[b'N'; 1000]);
        expected.extend_from_slice(b"\x90(");
        expected.extend_from_slice(&[b'N'; 1000]);
        expected.extend_from_slice(b"\x90.");
        assert_eq!(set, expected);
    }

    #[test]
    fn globals_are_memoized_once_and_fetched_with_binget() {
        let desc = Descriptor::new(0, 0, 2);
        let bytes = encode(|p| {
            p.tuple(|p| {
                p.complex(0.0, 1.0)?;
                p.array::<i16>(desc, &[1])?;
                p.array::<i16>(desc, &[1])?;
                p.complex(0.0, 1.0)
            })
        });
        let find = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(find(b"\x8c\x08builtins\x8c\x07complex\x93\x94"), 1);
        assert_eq!(find(b"\x8c\x05numpy\x8c\x07ndarray\x93\x94"), 1);
        assert_eq!(find(b"h\x00G"), 1); // complex again: memo 0
        assert_eq!(find(b"h\x01("), 1); // ndarray again: memo 1
        assert_eq!(bytes.iter().filter(|&&b| b == op::MEMOIZE).count(), 2);
    }

    #[test]
    fn ndarray_writes_newobj_with_every_argument() {
        let dtype = DType::new(Scalar::C128, ByteOrder::Big);
        let bytes =
            encode(|p| p.ndarray(Descriptor::new(0, 0, 16 * 24), dtype, &[2, 3, 4], Order::C));
        assert_eq!(
            bytes,
            b"\x80\x05\x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x03K\x04\x87\x8c\x04>c16\x97K\x00N\x8c\x01Ct\x81."
        );
        let bytes = encode(|p| p.array::<u8>(Descriptor::new(0, 0, 0), &[0, 1, 2, 3, 4]));
        let shape = b"(K\x00K\x01K\x02K\x03K\x04t";
        assert!(bytes.windows(shape.len()).any(|w| w == shape));
    }

    #[test]
    fn ndarray_refuses_sizes_that_do_not_match() {
        let mut buf = [0u8; 256];
        let mut p = Pickler::new(&mut buf);
        let i32s = DType::of::<i32>();
        for (shape, len) in [
            (&[2usize, 2][..], 15u32),
            (&[2, 2], 17),
            (&[], 0),
            (&[usize::MAX, 2], 0),
            (&[1 << 40, 1 << 40], 0),
        ] {
            let desc = Descriptor::new(0, 0, len);
            assert_eq!(
                p.ndarray(desc, i32s, shape, Order::C),
                Err(EncodeError::ArraySizeMismatch)
            );
        }
        assert!(p.is_empty());
        p.ndarray(Descriptor::new(0, 0, 0), i32s, &[0, usize::MAX], Order::C)
            .unwrap_err();
        p.ndarray(Descriptor::new(0, 0, 4), i32s, &[], Order::C)
            .unwrap();
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut buf = [0u8; 64];
        let mut p = Pickler::new(&mut buf);
        assert_eq!(p.end(Container::List), Err(EncodeError::ContainerMismatch));
        p.begin_list().unwrap();
        assert_eq!(p.end_tuple(), Err(EncodeError::ContainerMismatch));
        p.end_list().unwrap();
        assert_eq!(p.none(), Err(EncodeError::NotOneValue));
        assert_eq!(p.begin_dict(), Err(EncodeError::NotOneValue));
        assert_eq!(p.finish().unwrap().pickle, b"\x80\x05].");

        // A closure that leaves a container open, or tries to close its parent, is rolled back.
        let mut p = Pickler::new(&mut buf);
        p.begin_tuple().unwrap();
        assert_eq!(
            p.list(|p| p.begin_dict()),
            Err(EncodeError::UnclosedContainer)
        );
        assert_eq!(
            p.list(|p| p.end_tuple()),
            Err(EncodeError::ContainerMismatch)
        );
        assert_eq!((p.len(), p.depth()), (3, 1));
        p.none().unwrap();
        p.end_tuple().unwrap();
        assert_eq!(p.finish().unwrap().pickle, b"\x80\x05N\x85.");
    }

    #[test]
    fn too_deep_is_an_error_at_the_limit() {
        let mut buf = [0u8; 64];
        let mut p = Pickler::<'_, 1, 3>::with_limits(&mut buf);
        for _ in 0..3 {
            p.begin_list().unwrap();
        }
        assert_eq!(p.begin_tuple(), Err(EncodeError::TooDeep));
        assert_eq!(p.tuple(|_| Ok(())), Err(EncodeError::TooDeep));
        for _ in 0..3 {
            p.end_list().unwrap();
        }
        assert_eq!(p.finish().unwrap().pickle, b"\x80\x05]]]aa.");
    }

    #[test]
    fn too_many_buffers_rolls_back_the_value() {
        let mut buf = [0u8; 128];
        let mut p = Pickler::<'_, 2>::with_limits(&mut buf);
        p.begin_list().unwrap();
        p.array::<f32>(Descriptor::new(0, 0, 4), &[1]).unwrap();
        p.buffer(Descriptor::new(0, 4, 4)).unwrap();
        let len = p.len();
        assert_eq!(
            p.array::<f32>(Descriptor::new(0, 8, 4), &[1]),
            Err(EncodeError::TooManyBuffers)
        );
        assert_eq!(
            p.buffer(Descriptor::new(0, 8, 4)),
            Err(EncodeError::TooManyBuffers)
        );
        assert_eq!(p.len(), len);
        p.end_list().unwrap();
        assert_eq!(p.finish().unwrap().descriptors.len(), 2);
    }

    #[test]
    fn a_failure_right_at_a_batch_boundary_is_rolled_back() {
        let batch = |n: usize| std::iter::repeat_n(b'N', n);
        // 2 (PROTO) + 2 (`](`) + 1000 items, then `e(` + item needs 3 more; STOP and the list's
        // closer are held in reserve.
        let mut buf = [0u8; 1008];
        let mut p = Pickler::new(&mut buf);
        p.begin_list().unwrap();
        (0..1000).for_each(|_| p.none().unwrap());
        assert_eq!(p.none(), Err(EncodeError::BufferFull));
        p.end_list().unwrap();
        let expected: Vec<u8> = b"\x80\x05]("
            .iter()
            .copied()
            .chain(batch(1000))
            .chain(*b"e.")
            .collect();
        assert_eq!(p.finish().unwrap().pickle, &expected[..]);

        // Room for the boundary and a None, not for a float: the float fails, the None then
        // writes the boundary again.
        let mut buf = [0u8; 1009];
        let mut p = Pickler::new(&mut buf);
        p.begin_list().unwrap();
        (0..1000).for_each(|_| p.none().unwrap());
        assert_eq!(p.f64(1.0), Err(EncodeError::BufferFull));
        p.none().unwrap();
        p.end_list().unwrap();
        let expected: Vec<u8> = b"\x80\x05]("
            .iter()
            .copied()
            .chain(batch(1000))
            .chain(*b"e(Ne.")
            .collect();
        assert_eq!(p.finish().unwrap().pickle, &expected[..]);
    }

    /// The typical sensor message.
    fn sensor<const N: usize, const D: usize>(p: &mut Pickler<'_, N, D>) -> Result<()> {
        p.dict(|p| {
            p.str("seq")?;
            p.int(41u32)?;
            p.str("t_ns")?;
            p.int(1_700_000_000_123_456_789u64)?;
            p.str("adc")?;
            p.array::<i16>(Descriptor::new(1, 0, 8192).read_only(), &[1024, 4])?;
            p.str("gain")?;
            p.f32(0.5)?;
            p.str("flags")?;
            p.set(|p| p.str("ok"))?;
            p.str("cal")?;
            p.tuple(|p| p.complex(1.0, -1.0))
        })
    }

    #[test]
    fn buffer_full_at_every_truncation_of_a_typical_message() {
        let full = encode(sensor);
        // While written, the message holds one byte per open container (at most 2 here) in
        // reserve, so it may need up to 2 bytes more than its final length.
        let mut needed = None;
        for size in 0..full.len() + 4 {
            let mut buf = std::vec![0u8; size];
            let mut p = Pickler::new(&mut buf);
            match sensor(&mut p) {
                Ok(()) => {
                    needed.get_or_insert(size);
                    assert_eq!(p.finish().unwrap().pickle, &full[..]);
                }
                Err(error) => {
                    assert_eq!(error, EncodeError::BufferFull, "size {size}");
                    assert_eq!(needed, None, "size {size} fails after a smaller one worked");
                    // All-or-nothing: the failed dict left nothing behind but the header.
                    assert!(p.len() <= 2, "size {size}");
                    assert_eq!(p.depth(), 0);
                    assert!(p.descriptors().is_empty());
                    assert_eq!(p.finish(), Err(EncodeError::NotOneValue));
                }
            }
        }
        let needed = needed.unwrap();
        assert!((full.len()..=full.len() + 2).contains(&needed), "{needed}");
    }

    #[test]
    fn buffer_full_with_begin_end_pairs_can_be_recovered_from() {
        // Write items until the buffer is full, then close the list and finish: a valid pickle
        // of the items that fitted, whatever the buffer size.
        for size in 8..64 {
            let mut buf = std::vec![0u8; size];
            let mut p = Pickler::new(&mut buf);
            p.begin_list().unwrap();
            let mut written = 0u32;
            while p.f64(1.0).is_ok() {
                written += 1;
            }
            // The closing byte was held in reserve.
            p.end_list().unwrap();
            let pickle = p.finish().unwrap().pickle;
            assert!(pickle.len() <= size);
            assert_eq!(pickle.last(), Some(&op::STOP));
            let items = pickle.iter().filter(|&&b| b == op::BINFLOAT).count() as u32;
            assert_eq!(items, written);
        }
    }
}
