//! Proves, before Python sees a byte, that a pickle can only build plain data and numpy arrays
//! over the buffers that came with it.
//!
//! [`Validator`] runs the pickle on an abstract stack machine: instead of objects, the stack and
//! the memo hold the *kind* of each value (int, str with its text, tuple of ints with their
//! values, list, dict, out-of-band buffer `i` of `n` bytes, numpy array with dtype, shape and
//! source, an allowed callable, ...). Every opcode is checked against what it would do in
//! CPython's unpickler: a call (`REDUCE`, `NEWOBJ`, `BUILD`) must name an allowed callable and
//! pass it arguments of the form that callable is known to accept safely; container opcodes
//! must hit the right container kind (so they never call an arbitrary `append`/`extend`/`add`);
//! globals must be exact `(module, name)` pairs from the allowlist; numpy arrays must have an
//! allowlisted dtype, a non-negative offset and shape/strides that keep every element inside
//! their buffer. Anything else is an [`Error::Rejected`] with the byte offset, the opcode and a
//! [`Reason`].
//!
//! No allocation: the caller lends the stack and memo as slices of [`Slot`] (their lengths are
//! the depth and memo limits), and chooses the maximum pickle length.
//!
//! Two [`Profile`]s:
//! - [`Profile::Strict`] accepts exactly the grammar `dmapickle`'s encoder writes (`PROTO 5`, no
//!   FRAME, memo only for globals, `builtins.complex` and `numpy.ndarray` as the only globals,
//!   arrays as `numpy.ndarray` NEWOBJ over an out-of-band buffer at offset 0).
//! - [`Profile::General`] also accepts what CPython and numpy (1.x and 2.x) write for the same
//!   data with protocols 2 to 5: frames, `BINPUT`/`MEMOIZE`/`BINGET`, `GLOBAL`,
//!   `numpy.core.numeric._frombuffer` / `numpy._core.numeric._frombuffer`, `numpy.dtype` +
//!   `BUILD`, `_reconstruct` + `BUILD` arrays, `builtins.complex/set/frozenset/bytes/bytearray`,
//!   `_codecs.encode(str, 'latin1')`.
//!
//! Globals the caller adds with [`Validator::with_allowed`] are trusted: they may be called by
//! `REDUCE`/`NEWOBJ` with plain-data arguments, and the resulting object may take a `BUILD`.
//!
//! # What loading an accepted pickle costs
//!
//! Acceptance also means that loading the pickle with CPython (and numpy 1.26 or 2.x) cannot
//! crash the interpreter, allocate more than a stated budget, or take time worse than linear in
//! the pickle's length. [`Limits`] (see [`limits`] for the defaults and the cost model) bounds:
//! - the **nesting depth** of every value built (tuples, lists, dicts, sets, frozensets and what
//!   they contain, through the memo too), far below what CPython's unguarded C recursion
//!   (`hash()` of nested tuples) survives;
//! - an **allocation bound** computed before loading: every object the load creates, each copy
//!   counted (`bytearray`, `_codecs.encode`, `set(list)`, `_reconstruct` data), out-of-band
//!   buffers excluded;
//! - **hash collisions**: keys whose CPython hash is deterministic (ints, floats, complex, tuples
//!   of those, frozensets) are hashed here exactly as CPython does ([`hash`]), and no dict or set
//!   may hold more than [`Limits::max_collisions`] keys with one hash, so no insert probes more
//!   than that many slots;
//! - numpy arrays' **logical size** (elements x itemsize, a stride-0 view counts each element) and
//!   their offset for every size, empty arrays included;
//! - the **pickle length**.
//!
//! Known limits, all on the side of data rather than code:
//! - `STACK_GLOBAL` in the general profile also takes its module/name from the memo (numpy's
//!   protocol-4 arrays fetch `'numpy'` with `BINGET`); the text is still the exact literal that
//!   was memoized, so the allowlist sees what Python will import. Strict requires both literals
//!   right before `STACK_GLOBAL`.
//! - Depth is exact for every value built on the stack and for lists, dicts and sets mutated
//!   through a memo reference (the memo copy is kept current). A mutable container that was put
//!   inside another one *before* its own items were added (CPython writes this only for
//!   self-referencing data such as `l = [1]; l.append(l)`) keeps its old depth inside that
//!   container. Paths through such a list or dict are only recursed by CPython code that raises
//!   `RecursionError` (`repr`, `==`, `copy.deepcopy`, `pickle.dumps`, `json`), never by the
//!   unguarded `hash()` of tuples: a tuple is built once from finished items.
//! - Collisions are counted per (container, hash) for every insertion, so a hand-made pickle that
//!   sets one float key many times is refused although CPython would only overwrite it (CPython
//!   never writes a key twice). `set(list)`/`frozenset(list)` count the list's items the same
//!   way. The hash of `str` and `bytes` is assumed random (CPython's default; a consumer run with
//!   `PYTHONHASHSEED=0` loses that protection for str keys).
//! - The allocation bound covers CPython 3.11 to 3.13 on 64-bit platforms with pymalloc; objects
//!   of caller-allowed globals and first imports are not counted.
//! - Arrays have at most [`MAX_NDIM`] dimensions (the same bound the encoder has).
//!
//! ```
//! use dmapickle_core::validate::{Profile, Slot, Validator, Workspace};
//! // {'seq': 7} written by CPython with protocol 5
//! let pickle = b"\x80\x05\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x03seq\x94K\x07s.";
//! let (mut stack, mut memo) = ([Slot::EMPTY; 16], [Slot::EMPTY; 16]);
//! let mut ws = Workspace::new(&mut stack, &mut memo);
//! let ok = Validator::new(Profile::General).validate(pickle, &[], &mut ws).unwrap();
//! assert_eq!((ok.protocol, ok.buffers), (5, 0));
//! // the same value as `os.system('id')` is refused, with where and why
//! let evil = b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";
//! let err = Validator::new(Profile::General).validate(evil, &[], &mut ws).unwrap_err();
//! assert_eq!(err.to_string(), "byte 14, STACK_GLOBAL: global not in the allowlist");
//! ```

use core::fmt;

use crate::error::{Error, Result};
use crate::opcode::Opcode;
use crate::reader::{Argument, Op, Reader};
use crate::reason::Reason;

pub mod hash;
pub mod limits;

use hash::Hash;
pub use limits::{Limit, Limits};

/// Most dimensions an array (or a shape/strides tuple) may have: the encoder's bound too.
pub use crate::ndarray::MAX_NDIM;

/// Which grammar the validator accepts. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Profile {
    /// Exactly what `dmapickle`'s encoder writes.
    Strict,
    /// Also what CPython and numpy write for the same data (protocols 2 to 5).
    General,
}

/// What a successful validation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Validated {
    /// The protocol named by `PROTO`.
    pub protocol: u8,
    /// Out-of-band buffers used (equal to the number given).
    pub buffers: usize,
    /// numpy arrays built.
    pub arrays: usize,
    /// Opcodes read, `STOP` included.
    pub opcodes: usize,
    /// Deepest nesting of any value built (a scalar is 0, `[]` is 1).
    pub depth: u32,
    /// Upper bound of the bytes `pickle.loads` allocates (see [`limits`]).
    pub alloc: u64,
}

/// One stack or memo entry of the abstract machine. Opaque: lend the validator slices of
/// `Slot::EMPTY` through a [`Workspace`].
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    kind: Kind,
    id: u64,
    depth: u32,
    /// For a list, dict or set: 1 + the memo index it was first stored at (0: never), so that
    /// every copy of it can find the current state.
    memo: u32,
    /// Expanded size: the value's nodes counted with multiplicity (a tuple holding one
    /// memoized tuple twice counts it twice), what `hash()`, `repr()` or `==` walk.
    size: u64,
}

impl Slot {
    /// An unused slot.
    pub const EMPTY: Slot = Slot {
        kind: Kind::Empty,
        id: 0,
        depth: 0,
        memo: 0,
        size: 0,
    };
}

/// One entry of the key table: how many keys of one container share one hash. Opaque: lend the
/// validator a slice of `KeySlot::EMPTY` through [`Workspace::with_keys`].
#[derive(Debug, Clone, Copy)]
pub struct KeySlot {
    id: u64,
    hash: i64,
    count: u32,
    epoch: u32,
}

impl KeySlot {
    /// An unused entry.
    pub const EMPTY: KeySlot = KeySlot {
        id: 0,
        hash: 0,
        count: 0,
        epoch: 0,
    };
}

/// The stack, memo and key table the caller lends the validator. The stack and memo lengths
/// are limits: a pickle that needs a deeper stack is rejected with [`Reason::StackTooDeep`], one
/// that uses a memo index at or past `memo.len()` with [`Reason::MemoTooLarge`]. The key table
/// is only used by pickles with more than [`Limits::max_collisions`] keys whose hash they choose
/// (floats, tuples of ints, ...): each such key takes one entry, and a table with too few gives
/// a [`Limit::KeyTable`] rejection.
#[derive(Debug)]
pub struct Workspace<'w> {
    stack: &'w mut [Slot],
    memo: &'w mut [Slot],
    /// Entry 0 holds the epoch (in `count`); the rest is the table.
    keys: &'w mut [KeySlot],
    /// The (module, name) byte ranges of the last global refused, for the caller's message.
    refused: Option<[usize; 4]>,
}

impl<'w> Workspace<'w> {
    /// A workspace over the caller's slices, with no key table. Their contents do not matter:
    /// the memo is cleared here (O(memo length)); every validation then leaves it clear, so keep
    /// one `Workspace` for many pickles, or use an `OwnedWorkspace` (feature `std`).
    pub fn new(stack: &'w mut [Slot], memo: &'w mut [Slot]) -> Self {
        Self::with_keys(stack, memo, &mut [])
    }

    /// A workspace with a key table of `keys.len() - 1` entries (cleared here once; later
    /// validations never clear it in full).
    pub fn with_keys(stack: &'w mut [Slot], memo: &'w mut [Slot], keys: &'w mut [KeySlot]) -> Self {
        memo.iter_mut().for_each(|s| *s = Slot::EMPTY);
        keys.iter_mut().for_each(|s| *s = KeySlot::EMPTY);
        Workspace {
            stack,
            memo,
            keys,
            refused: None,
        }
    }

    /// After a rejection for [`Reason::GlobalNotAllowed`]: the `(module, name)` that was refused,
    /// read from `pickle` (the same bytes), so that a message can say what to allow.
    pub fn refused_global<'p>(&self, pickle: &'p [u8]) -> Option<(&'p str, &'p str)> {
        let (module, name) = self.refused_at()?;
        let text = |r: core::ops::Range<usize>| core::str::from_utf8(pickle.get(r)?).ok();
        Some((text(module)?, text(name)?))
    }

    /// After a rejection for [`Reason::GlobalNotAllowed`]: where the refused module and name
    /// are in the pickle (byte ranges).
    pub fn refused_at(&self) -> Option<(core::ops::Range<usize>, core::ops::Range<usize>)> {
        let [ms, ml, ns, nl] = self.refused?;
        Some((ms..ms.checked_add(ml)?, ns..ns.checked_add(nl)?))
    }
}

/// A heap-allocated stack, memo and key table that stay clean between validations, so reusing
/// them costs nothing per message (a [`Workspace::new`] over borrowed slices clears the whole
/// memo first). With the `std` feature.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct OwnedWorkspace {
    stack: std::vec::Vec<Slot>,
    memo: std::vec::Vec<Slot>,
    keys: std::vec::Vec<KeySlot>,
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl OwnedWorkspace {
    /// A workspace whose stack holds `stack` entries and memo `memo` entries, with a small key
    /// table (grow it with [`set_keys`](Self::set_keys)).
    pub fn new(stack: usize, memo: usize) -> Self {
        OwnedWorkspace {
            stack: std::vec![Slot::EMPTY; stack],
            memo: std::vec![Slot::EMPTY; memo],
            keys: std::vec![KeySlot::EMPTY; 1024 + 1],
        }
    }

    /// Entries in the memo.
    pub fn memo(&self) -> usize {
        self.memo.len()
    }

    /// Replaces the memo with an empty one of `entries` entries.
    pub fn set_memo(&mut self, entries: usize) {
        self.memo = std::vec![Slot::EMPTY; entries];
    }

    /// Entries in the key table.
    pub fn keys(&self) -> usize {
        self.keys.len().saturating_sub(1)
    }

    /// Replaces the key table with an empty one of `entries` entries.
    pub fn set_keys(&mut self, entries: usize) {
        self.keys = std::vec![KeySlot::EMPTY; entries.saturating_add(1)];
    }

    /// The workspace to validate with. No clearing: the memo starts empty and only validators
    /// touch it, and every validation leaves it empty again (it clears what it wrote); the key
    /// table's entries of earlier validations are stale by their epoch.
    pub fn workspace(&mut self) -> Workspace<'_> {
        Workspace {
            stack: &mut self.stack,
            memo: &mut self.memo,
            keys: &mut self.keys,
            refused: None,
        }
    }
}

/// Checks pickles against a [`Profile`], an allowlist and [`Limits`]. Cheap to build and `Copy`.
#[derive(Debug, Clone, Copy)]
pub struct Validator<'g> {
    profile: Profile,
    extra: &'g [(&'g str, &'g str)],
    limits: Limits,
}

impl<'g> Validator<'g> {
    /// A validator for `profile` with the built-in allowlist and [`Limits::DEFAULT`].
    pub const fn new(profile: Profile) -> Self {
        Validator {
            profile,
            extra: &[],
            limits: Limits::DEFAULT,
        }
    }

    /// Also allows these `(module, name)` globals (trusted callables, see the module docs).
    pub const fn with_allowed(self, extra: &'g [(&'g str, &'g str)]) -> Self {
        Validator { extra, ..self }
    }

    /// Rejects pickles longer than `max_len` bytes (shorthand for [`with_limits`](Self::with_limits)).
    pub const fn with_max_len(self, max_len: usize) -> Self {
        let mut limits = self.limits;
        limits.max_len = max_len;
        Validator { limits, ..self }
    }

    /// Enforces these limits.
    pub const fn with_limits(self, limits: Limits) -> Self {
        Validator { limits, ..self }
    }

    /// The profile.
    pub const fn profile(&self) -> Profile {
        self.profile
    }

    /// The limits.
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// Validates `pickle` with out-of-band buffers of the given byte lengths, in order.
    pub fn validate(
        &self,
        pickle: &[u8],
        buffers: &[usize],
        ws: &mut Workspace<'_>,
    ) -> Result<Validated> {
        self.run(pickle, buffers, ws)
    }

    /// Runs the machine, a second time with the key table if the first run saw more keys with
    /// a chosen hash than one hash may have (the common message has none, and pays nothing).
    fn run(&self, pickle: &[u8], buffers: &[usize], ws: &mut Workspace<'_>) -> Result<Validated> {
        match Machine::new(self, pickle, buffers, ws, None, Keys::Off).run()? {
            Run::Done(validated) => Ok(validated),
            Run::NeedKeys { lists } => {
                match Machine::new(self, pickle, buffers, ws, None, Keys::On { lists }).run()? {
                    Run::Done(validated) => Ok(validated),
                    Run::NeedKeys { .. } => Err(Error::Rejected {
                        at: 0,
                        opcode: pickle.first().copied().unwrap_or(0),
                        reason: Reason::Limit {
                            limit: Limit::KeyTable,
                            found: 0,
                            max: 0,
                        },
                    }),
                }
            }
        }
    }

    /// Validates like [`validate`](Self::validate) and, if the pickle is accepted, writes a
    /// one-line summary of what it builds to `out`, e.g.
    /// `dict{seq:int, adc:ndarray<i2>(1024,4) <- buffer 0 (8192 B, read-only)}`.
    /// Top-level containers list up to 32 items. If `out` fails the summary is cut short.
    pub fn summarize(
        &self,
        pickle: &[u8],
        buffers: &[usize],
        ws: &mut Workspace<'_>,
        out: &mut dyn fmt::Write,
    ) -> Result<Validated> {
        let validated = self.run(pickle, buffers, ws)?;
        // An accepted pickle leaves its one value at the bottom of the stack.
        let top = ws.stack.first().copied().unwrap_or(Slot::EMPTY);
        let mut tracer = Tracer {
            out,
            target: top.id,
            items: 0,
            failed: false,
        };
        let open = match top.kind {
            Kind::Dict => Some("dict{"),
            Kind::List { .. } => Some("list["),
            Kind::Set => Some("set{"),
            Kind::FrozenSet => Some("frozenset{"),
            Kind::Tuple(_) => Some("tuple("),
            _ => None,
        };
        match open {
            Some(open) => {
                tracer.write(|w| w.write_str(open));
                // The pickle is valid: this run only traces the top value's items. It needs no
                // key table (only collisions would differ), so it ends Done or NeedKeys.
                Machine::new(self, pickle, buffers, ws, Some(&mut tracer), Keys::Off).run()?;
                if tracer.items > MAX_SUMMARY_ITEMS {
                    let more = tracer.items - MAX_SUMMARY_ITEMS;
                    tracer.write(|w| write!(w, ", ... {more} more"));
                }
                let close = match top.kind {
                    Kind::Dict | Kind::Set | Kind::FrozenSet => "}",
                    Kind::List { .. } => "]",
                    _ => ")",
                };
                tracer.write(|w| w.write_str(close));
            }
            None => tracer.write(|w| describe(w, pickle, &top.kind)),
        }
        Ok(validated)
    }
}

/// How one run of the machine ended, if not with a rejection (the value built is left at the
/// bottom of the stack).
enum Run {
    Done(Validated),
    /// More keys with a chosen hash than `max_collisions`: run again with the key table (and
    /// count list items too if a list went to `set()`).
    NeedKeys {
        lists: bool,
    },
}

/// Whether a run counts collisions in the key table.
#[derive(Clone, Copy)]
enum Keys {
    Off,
    On { lists: bool },
}

const MAX_SUMMARY_ITEMS: usize = 32;

/// What every pickle may expand to beyond `max_expansion` x its length.
const EXPANSION_SLACK: u64 = 1 << 16;

/// The collision class of keys whose hash is deterministic but not computed here.
const OPAQUE_HASH: i64 = 0x4f50_4151_5545_0001;

// ------------------------------------------------------------------------------------------------
// Kinds

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    len: usize,
    /// For text: 1 + its length in chars if latin-1 can encode it (every char below U+0100),
    /// else 0; worked out once when the str is read, so `_codecs.encode` of a memoized str
    /// costs nothing per call.
    latin1: u64,
}

/// [`Span::latin1`] of UTF-8 `text`: every byte below `C4` means every char below U+0100.
fn latin1_chars(text: &[u8]) -> u64 {
    if text.iter().any(|b| *b >= 0xc4) {
        return 0;
    }
    1 + text.iter().filter(|b| *b & 0xc0 != 0x80).count() as u64
}

impl Span {
    fn bytes<'p>(&self, pickle: &'p [u8]) -> &'p [u8] {
        pickle
            .get(self.start..self.start.saturating_add(self.len))
            .unwrap_or(&[])
    }
    fn str<'p>(&self, pickle: &'p [u8]) -> &'p str {
        core::str::from_utf8(self.bytes(pickle)).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    List,
    Dict,
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callee {
    Complex,
    Set,
    FrozenSet,
    Bytes,
    ByteArray,
    CodecsEncode,
    Dtype,
    FromBuffer,
    Reconstruct,
    Ndarray,
    Custom,
}

/// numpy scalar types the validator allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    B1,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    F2,
    F4,
    F8,
    C8,
    C16,
}

const CODES: [(&str, Code, u64); 14] = [
    ("b1", Code::B1, 1),
    ("i1", Code::I1, 1),
    ("i2", Code::I2, 2),
    ("i4", Code::I4, 4),
    ("i8", Code::I8, 8),
    ("u1", Code::U1, 1),
    ("u2", Code::U2, 2),
    ("u4", Code::U4, 4),
    ("u8", Code::U8, 8),
    ("f2", Code::F2, 2),
    ("f4", Code::F4, 4),
    ("f8", Code::F8, 8),
    ("c8", Code::C8, 8),
    ("c16", Code::C16, 16),
];

impl Code {
    fn parse(s: &str) -> Option<Code> {
        CODES.iter().find(|(n, _, _)| *n == s).map(|(_, c, _)| *c)
    }
    fn name(self) -> &'static str {
        CODES
            .iter()
            .find(|(_, c, _)| *c == self)
            .map_or("?", |(n, _, _)| n)
    }
    fn itemsize(self) -> u64 {
        CODES
            .iter()
            .find(|(_, c, _)| *c == self)
            .map_or(1, |(_, _, s)| *s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dtype {
    code: Code,
    big_endian: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    len: u8,
    v: [i64; MAX_NDIM],
}

impl Dims {
    fn as_slice(&self) -> &[i64] {
        self.v.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
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
    fn len(&self) -> u64 {
        match *self {
            Source::Buffer { len, .. } | Source::Bytes { len } | Source::ByteArray { len } => len,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArrayInfo {
    dtype: Dtype,
    shape: Dims,
    fortran: bool,
    source: Source,
    offset: u64,
    strided: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
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
    DtypeArgs(core::result::Result<Code, Reason>),
    /// `(3, byteorder, None, None, None, -1, -1, 0)`: a dtype's `BUILD` state; big-endian?
    DtypeState(core::result::Result<Option<bool>, Reason>),
    /// `(str, 'latin1')`: `_codecs.encode` arguments; the str's span.
    EncodeArgs(Span),
    /// `(numpy.ndarray, (0,), b'b')`: `_reconstruct` arguments.
    ReconstructArgs,
    /// `(buffer, dtype, shape, order)`: `_frombuffer` arguments.
    FromBufferArgs(core::result::Result<ArrayInfo, Reason>),
    /// `(1, shape, dtype, is_fortran, rawdata)`: a `_reconstruct`ed array's `BUILD` state.
    ArrayState(core::result::Result<ArrayInfo, Reason>),
    /// `(shape, dtype_str, buffer[, offset[, strides[, order]]])`: `numpy.ndarray` arguments.
    NdarrayArgs(core::result::Result<ArrayInfo, Reason>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuple {
    len: usize,
    hashable: bool,
    hash: Hash,
    class: Class,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
        code: Code,
        memo: Option<usize>,
    },
    Dtype(Dtype),
    /// A `_reconstruct`ed array awaiting its `BUILD`; where it was memoized.
    ArrayNew {
        memo: Option<usize>,
    },
    Array(ArrayInfo),
    /// An object made by a caller-allowed global.
    Object,
}

impl Kind {
    fn hashable(&self) -> bool {
        match self {
            Kind::None
            | Kind::Bool(_)
            | Kind::Int(_)
            | Kind::BigInt(_)
            | Kind::Float(_)
            | Kind::Complex(_)
            | Kind::Str(_)
            | Kind::Bytes { .. }
            | Kind::FrozenSet => true,
            Kind::Tuple(t) => t.hashable,
            _ => false,
        }
    }

    /// What is known of CPython's `hash()` of this value.
    fn hash(&self) -> Hash {
        match self {
            Kind::Bool(b) => Hash::Known(i64::from(*b)),
            Kind::Int(Some(v)) => Hash::Known(hash::int(*v)),
            Kind::BigInt(h) => Hash::Known(*h),
            Kind::Int(None) | Kind::FrozenSet => Hash::Opaque,
            Kind::Float(bits) => {
                hash::float(f64::from_bits(*bits)).map_or(Hash::Random, Hash::Known)
            }
            Kind::Complex(h) => *h,
            Kind::Tuple(t) => t.hash,
            _ => Hash::Random,
        }
    }

    /// The hash to count collisions under, if this key's hash is the pickle's choice (an int
    /// below 2**61 - 2 in magnitude hashes to itself: no two distinct ones collide, so at most
    /// one of them joins a class of counted keys, and a class holds at most
    /// `max_collisions + 1` keys).
    fn chosen_hash(&self) -> Option<i64> {
        match self {
            Kind::Bool(_) => None,
            Kind::Int(Some(v)) if hash::is_unique_int(*v) => None,
            _ => match self.hash() {
                Hash::Random => None,
                Hash::Known(h) => Some(h),
                // Opaque hashes are counted as one class per container.
                Hash::Opaque => Some(OPAQUE_HASH),
            },
        }
    }

    /// Whether this may be stored in a container, passed as an argument or returned.
    fn check_value(&self) -> core::result::Result<(), Reason> {
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
                class: Class::FromBufferArgs(_) | Class::ArrayState(_),
                ..
            }) => Err(Reason::DtypeAsValue),
            _ => Ok(()),
        }
    }

    fn is_mutable_container(&self) -> bool {
        matches!(self, Kind::List { .. } | Kind::Dict | Kind::Set)
    }

    fn is_number(&self) -> bool {
        matches!(
            self,
            Kind::Int(_) | Kind::BigInt(_) | Kind::Float(_) | Kind::Bool(_)
        )
    }
}

// ------------------------------------------------------------------------------------------------
// The allowlist

const GLOBALS: [(&str, &str, Callee, bool); 17] = [
    ("builtins", "complex", Callee::Complex, true),
    ("numpy", "ndarray", Callee::Ndarray, true),
    ("__builtin__", "complex", Callee::Complex, false),
    ("builtins", "set", Callee::Set, false),
    ("__builtin__", "set", Callee::Set, false),
    ("builtins", "frozenset", Callee::FrozenSet, false),
    ("__builtin__", "frozenset", Callee::FrozenSet, false),
    ("builtins", "bytes", Callee::Bytes, false),
    ("__builtin__", "bytes", Callee::Bytes, false),
    ("builtins", "bytearray", Callee::ByteArray, false),
    ("__builtin__", "bytearray", Callee::ByteArray, false),
    ("_codecs", "encode", Callee::CodecsEncode, false),
    ("numpy", "dtype", Callee::Dtype, false),
    (
        "numpy.core.numeric",
        "_frombuffer",
        Callee::FromBuffer,
        false,
    ),
    (
        "numpy._core.numeric",
        "_frombuffer",
        Callee::FromBuffer,
        false,
    ),
    (
        "numpy.core.multiarray",
        "_reconstruct",
        Callee::Reconstruct,
        false,
    ),
    (
        "numpy._core.multiarray",
        "_reconstruct",
        Callee::Reconstruct,
        false,
    ),
];

// ------------------------------------------------------------------------------------------------
// Summary

struct Tracer<'o> {
    out: &'o mut dyn fmt::Write,
    target: u64,
    items: usize,
    failed: bool,
}

impl Tracer<'_> {
    fn write(&mut self, f: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) {
        if !self.failed && f(self.out).is_err() {
            self.failed = true;
        }
    }

    fn item(&mut self, pickle: &[u8], key: Option<&Kind>, value: &Kind) {
        self.items += 1;
        if self.items > MAX_SUMMARY_ITEMS {
            return;
        }
        let first = self.items == 1;
        self.write(|w| {
            if !first {
                w.write_str(", ")?;
            }
            if let Some(key) = key {
                match key {
                    Kind::Str(s) => {
                        for c in s.str(pickle).chars() {
                            write!(w, "{}", c.escape_debug())?;
                        }
                    }
                    Kind::Int(Some(v)) => write!(w, "{v}")?,
                    other => describe(w, pickle, other)?,
                }
                w.write_char(':')?;
            }
            describe(w, pickle, value)
        });
    }
}

fn describe(w: &mut dyn fmt::Write, _pickle: &[u8], kind: &Kind) -> fmt::Result {
    match kind {
        Kind::None => w.write_str("None"),
        Kind::Bool(_) => w.write_str("bool"),
        Kind::Int(_) | Kind::BigInt(_) => w.write_str("int"),
        Kind::Float(_) => w.write_str("float"),
        Kind::Complex(_) => w.write_str("complex"),
        Kind::Str(_) => w.write_str("str"),
        Kind::Bytes { len, .. } => write!(w, "bytes ({len} B)"),
        Kind::ByteArray { len } => write!(w, "bytearray ({len} B)"),
        Kind::Buffer {
            index,
            len,
            readonly,
        } => {
            write!(w, "buffer {index} ({len} B")?;
            w.write_str(if *readonly { ", read-only)" } else { ")" })
        }
        Kind::Tuple(t) => write!(w, "tuple({})", t.len),
        Kind::List { .. } => w.write_str("list"),
        Kind::Dict => w.write_str("dict"),
        Kind::Set => w.write_str("set"),
        Kind::FrozenSet => w.write_str("frozenset"),
        Kind::Array(a) => describe_array(w, a),
        Kind::Object => w.write_str("object"),
        _ => w.write_str("?"),
    }
}

fn describe_array(w: &mut dyn fmt::Write, a: &ArrayInfo) -> fmt::Result {
    write!(w, "ndarray<{}", a.dtype.code.name())?;
    if a.dtype.big_endian && a.dtype.code.itemsize() > 1 {
        w.write_str(", big-endian")?;
    }
    w.write_str(">(")?;
    for (i, d) in a.shape.as_slice().iter().enumerate() {
        if i > 0 {
            w.write_char(',')?;
        }
        write!(w, "{d}")?;
    }
    w.write_char(')')?;
    if a.fortran {
        w.write_str(" F-order")?;
    }
    if a.strided {
        w.write_str(" strided")?;
    }
    w.write_str(" <- ")?;
    match a.source {
        Source::Buffer {
            index,
            len,
            readonly,
        } => {
            write!(w, "buffer {index}")?;
            if a.offset != 0 {
                write!(w, " at offset {}", a.offset)?;
            }
            write!(w, " ({len} B")?;
            w.write_str(if readonly { ", read-only)" } else { ")" })
        }
        Source::Bytes { len } => write!(w, "in-band bytes ({len} B)"),
        Source::ByteArray { len } => write!(w, "in-band bytearray ({len} B)"),
    }
}

// ------------------------------------------------------------------------------------------------
// The machine

struct Machine<'v, 'p, 'w, 't, 'o> {
    v: &'v Validator<'v>,
    pickle: &'p [u8],
    buffers: &'p [usize],
    stack: &'w mut [Slot],
    sp: usize,
    stack_high: usize,
    memo: &'w mut [Slot],
    memo_len: usize,
    memo_high: usize,
    keys: &'w mut [KeySlot],
    refused: &'w mut Option<[usize; 4]>,
    /// Whether this run counts collisions in the key table (the second run, if any).
    use_keys: bool,
    /// ... and list items too (the first run saw a `set(list)`).
    count_lists: bool,
    epoch: u32,
    keys_used: usize,
    /// Insertions of keys with a chosen hash into dicts, sets and frozensets.
    chosen_keys: u64,
    /// Items with a chosen hash appended to lists, and whether any list went to `set()`.
    chosen_list_items: u64,
    set_of_list: bool,
    used_buffers: usize,
    arrays: usize,
    protocol: Option<u8>,
    frame_end: usize,
    next_id: u64,
    depth: u32,
    alloc: u64,
    /// The expansion budget, and the hash work done so far (the expanded sizes of every key
    /// hashed).
    budget: u64,
    hash_work: u64,
    prev: [Option<Opcode>; 2],
    tracer: Option<&'t mut Tracer<'o>>,
    at: usize,
    op: u8,
}

/// Shorthand for the validator's internal results: a reason, turned into an error with the
/// opcode's offset at the top of the loop.
type Check<T> = core::result::Result<T, Reason>;

impl<'v, 'p, 'w, 't, 'o> Machine<'v, 'p, 'w, 't, 'o> {
    fn new(
        v: &'v Validator<'v>,
        pickle: &'p [u8],
        buffers: &'p [usize],
        ws: &'w mut Workspace<'_>,
        tracer: Option<&'t mut Tracer<'o>>,
        keys: Keys,
    ) -> Self {
        let (use_keys, count_lists) = match keys {
            Keys::Off => (false, false),
            Keys::On { lists } => (true, lists),
        };
        let mut epoch = 0;
        if use_keys {
            // A new epoch makes every entry of earlier runs stale; on wrap-around, clear.
            if let Some(header) = ws.keys.first_mut() {
                header.count = header.count.wrapping_add(1);
                if header.count == 0 {
                    ws.keys.iter_mut().for_each(|k| *k = KeySlot::EMPTY);
                    if let Some(header) = ws.keys.first_mut() {
                        header.count = 1;
                    }
                }
                epoch = ws.keys.first().map_or(1, |h| h.count);
            }
        }
        Machine {
            v,
            pickle,
            buffers,
            stack: &mut *ws.stack,
            sp: 0,
            stack_high: 0,
            memo: &mut *ws.memo,
            memo_len: 0,
            memo_high: 0,
            keys: &mut *ws.keys,
            refused: {
                ws.refused = None;
                &mut ws.refused
            },
            use_keys,
            count_lists,
            epoch,
            keys_used: 0,
            chosen_keys: 0,
            chosen_list_items: 0,
            set_of_list: false,
            used_buffers: 0,
            arrays: 0,
            protocol: None,
            frame_end: 0,
            next_id: 1,
            depth: 0,
            alloc: 0,
            budget: (pickle.len() as u64)
                .saturating_mul(u64::from(v.limits.max_expansion))
                .saturating_add(EXPANSION_SLACK),
            hash_work: 0,
            prev: [None, None],
            tracer,
            at: 0,
            op: 0,
        }
    }

    fn strict(&self) -> bool {
        self.v.profile == Profile::Strict
    }

    fn limits(&self) -> &Limits {
        &self.v.limits
    }

    fn reject(&self, reason: Reason) -> Error {
        Error::Rejected {
            at: self.at,
            opcode: self.op,
            reason,
        }
    }

    fn run(mut self) -> Result<Run> {
        let result = self.run_inner();
        // Leave the memo empty for the next run (only the part this run touched).
        for slot in self.memo.iter_mut().take(self.memo_high) {
            *slot = Slot::EMPTY;
        }
        result
    }

    fn run_inner(&mut self) -> Result<Run> {
        let max_len = self.limits().max_len;
        if self.pickle.len() > max_len {
            self.op = self.pickle.first().copied().unwrap_or(0);
            return Err(self.reject(Reason::Limit {
                limit: Limit::Length,
                found: self.pickle.len() as u64,
                max: max_len as u64,
            }));
        }
        self.charge(limits::cost::LOAD)
            .map_err(|r| self.reject(r))?;
        let mut reader = Reader::new(self.pickle);
        let mut opcodes = 0usize;
        while let Some(op) = reader.read_op() {
            let op = op?;
            opcodes += 1;
            self.at = op.offset;
            self.op = op.opcode.byte();
            if op.opcode == Opcode::Stop {
                self.stop(&op).map_err(|r| self.reject(r))?;
                let max = u64::from(self.limits().max_collisions);
                let chosen = self.chosen_keys
                    + if self.set_of_list {
                        self.chosen_list_items
                    } else {
                        0
                    };
                if !self.use_keys && chosen > max {
                    return Ok(Run::NeedKeys {
                        lists: self.set_of_list,
                    });
                }
                let validated = Validated {
                    protocol: self.protocol.unwrap_or(0),
                    buffers: self.used_buffers,
                    arrays: self.arrays,
                    opcodes,
                    depth: self.depth,
                    alloc: self.alloc,
                };
                return Ok(Run::Done(validated));
            }
            self.step(&op).map_err(|r| self.reject(r))?;
            self.prev = [self.prev[1], Some(op.opcode)];
        }
        self.at = self.pickle.len();
        self.op = 0;
        Err(self.reject(Reason::NoStop))
    }

    // ---- costs -----------------------------------------------------------------------------------

    /// Adds `bytes` to the allocation bound.
    fn charge(&mut self, bytes: u64) -> Check<()> {
        self.alloc = self.alloc.saturating_add(bytes);
        let max = self.limits().max_alloc;
        if self.alloc > max {
            return Err(Reason::Limit {
                limit: Limit::Alloc,
                found: self.alloc,
                max,
            });
        }
        Ok(())
    }

    /// Checks a new value's nesting depth.
    fn nest(&mut self, depth: u32) -> Check<u32> {
        let max = self.limits().max_depth;
        if depth > max {
            return Err(Reason::Limit {
                limit: Limit::Depth,
                found: u64::from(depth),
                max: u64::from(max),
            });
        }
        self.depth = self.depth.max(depth);
        Ok(depth)
    }

    /// Counts one key with a chosen hash going into container `id`; returns how many keys of
    /// that container now share its hash (in the first run: 0, nothing is counted per class).
    fn count_key(&mut self, id: u64, hash: i64) -> Check<u32> {
        if !self.use_keys {
            return Ok(0);
        }
        let table = self.keys.get_mut(1..).unwrap_or(&mut []);
        let capacity = table.len();
        if capacity == 0 {
            return Err(Reason::Limit {
                limit: Limit::KeyTable,
                found: 1,
                max: 0,
            });
        }
        let mixed = (hash as u64 ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let mut i = (mixed >> 17) as usize % capacity;
        for _ in 0..capacity {
            let Some(slot) = table.get_mut(i) else { break };
            if slot.epoch != self.epoch {
                // Keep the table at most 7/8 full so probes stay short.
                if (self.keys_used + 1) * 8 > capacity * 7 {
                    return Err(Reason::Limit {
                        limit: Limit::KeyTable,
                        found: self.keys_used as u64 + 1,
                        max: capacity as u64,
                    });
                }
                *slot = KeySlot {
                    id,
                    hash,
                    count: 1,
                    epoch: self.epoch,
                };
                self.keys_used += 1;
                return Ok(1);
            }
            if slot.id == id && slot.hash == hash {
                slot.count = slot.count.saturating_add(1);
                return Ok(slot.count);
            }
            i = if i + 1 == capacity { 0 } else { i + 1 };
        }
        Err(Reason::Limit {
            limit: Limit::KeyTable,
            found: self.keys_used as u64 + 1,
            max: capacity as u64,
        })
    }

    /// Adds the work of hashing a value of expanded size `size` (CPython caches no tuple hash).
    fn hash(&mut self, size: u64) -> Check<()> {
        self.hash_work = self.hash_work.saturating_add(size);
        if self.hash_work > self.budget {
            return Err(Reason::Limit {
                limit: Limit::Expansion,
                found: self.hash_work,
                max: self.budget,
            });
        }
        Ok(())
    }

    fn collisions(&self, count: u32) -> Check<()> {
        let max = self.limits().max_collisions;
        if count > max {
            return Err(Reason::Limit {
                limit: Limit::Collisions,
                found: u64::from(count),
                max: u64::from(max),
            });
        }
        Ok(())
    }

    // ---- stack ---------------------------------------------------------------------------------

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    #[inline(always)]
    fn push(&mut self, kind: Kind) -> Check<()> {
        let id = self.new_id();
        let depth = match kind {
            Kind::List { .. } | Kind::Dict | Kind::Set | Kind::Array(_) | Kind::Object => 1,
            _ => 0,
        };
        let size = match kind {
            // hashing a big int walks its digits every time (CPython caches no int hash)
            Kind::BigInt(_) => 2,
            _ => 1,
        };
        self.push_slot(Slot {
            kind,
            id,
            depth,
            memo: 0,
            size,
        })
    }

    #[inline(always)]
    fn push_slot(&mut self, slot: Slot) -> Check<()> {
        let s = self.stack.get_mut(self.sp).ok_or(Reason::StackTooDeep)?;
        *s = slot;
        self.sp += 1;
        if self.sp > self.stack_high {
            self.stack_high = self.sp;
            self.charge(limits::cost::STACK_SLOT)?;
        }
        Ok(())
    }

    fn top(&self) -> Check<&Slot> {
        let slot = self
            .sp
            .checked_sub(1)
            .and_then(|i| self.stack.get(i))
            .ok_or(Reason::StackUnderflow)?;
        if matches!(slot.kind, Kind::Mark) {
            return Err(Reason::MarkAsValue);
        }
        Ok(slot)
    }

    fn top_mut(&mut self) -> Check<&mut Slot> {
        self.top()?;
        self.sp
            .checked_sub(1)
            .and_then(|i| self.stack.get_mut(i))
            .ok_or(Reason::StackUnderflow)
    }

    fn pop(&mut self) -> Check<Slot> {
        let slot = *self.current(self.top()?);
        self.sp -= 1;
        Ok(slot)
    }

    /// A list, dict or set as its memo copy knows it now (every mutation through any copy is
    /// written back there), so a stale copy on the stack does not hide items added elsewhere.
    #[inline]
    fn current<'s>(&'s self, slot: &'s Slot) -> &'s Slot {
        if slot.memo == 0 {
            return slot;
        }
        // The memo copy carries the same link (`put` writes it there).
        match self.memo.get(slot.memo as usize - 1) {
            Some(m) if m.id == slot.id => m,
            _ => slot,
        }
    }

    /// Index of the topmost MARK.
    fn mark(&self) -> Check<usize> {
        self.stack
            .get(..self.sp)
            .unwrap_or(&[])
            .iter()
            .rposition(|s| matches!(s.kind, Kind::Mark))
            .ok_or(Reason::NoMark)
    }

    /// Range of the top `n` values (none of them a MARK).
    fn top_n(&self, n: usize) -> Check<core::ops::Range<usize>> {
        let start = self.sp.checked_sub(n).ok_or(Reason::StackUnderflow)?;
        let items = self.stack.get(start..self.sp).unwrap_or(&[]);
        if items.iter().any(|s| matches!(s.kind, Kind::Mark)) {
            return Err(Reason::MarkAsValue);
        }
        Ok(start..self.sp)
    }

    fn items(&self, range: core::ops::Range<usize>) -> &[Slot] {
        self.stack.get(range).unwrap_or(&[])
    }

    /// The deepest of these items and their summed expanded size, each as current as the memo
    /// knows it.
    fn items_depth(&self, range: core::ops::Range<usize>) -> (u32, u64) {
        self.items(range).iter().fold((0, 0), |(d, n), s| {
            let s = self.current(s);
            (d.max(s.depth), n.saturating_add(s.size))
        })
    }

    /// Checks a value's expanded size against the budget (`max_expansion` x pickle length +
    /// 65,536): shared references may repeat a value, but the walk over the result stays
    /// linear in the pickle.
    fn expand(&self, size: u64) -> Check<u64> {
        if size > self.budget {
            return Err(Reason::Limit {
                limit: Limit::Expansion,
                found: size,
                max: self.budget,
            });
        }
        Ok(size)
    }

    // ---- opcodes -------------------------------------------------------------------------------

    fn allowed(&self, op: Opcode) -> bool {
        use Opcode::*;
        let strict = matches!(
            op,
            Proto
                | Stop
                | None
                | Newtrue
                | Newfalse
                | Binint
                | Binint1
                | Binint2
                | Long1
                | Binfloat
                | ShortBinunicode
                | Binunicode
                | Binunicode8
                | ShortBinbytes
                | Binbytes
                | Binbytes8
                | Bytearray8
                | EmptyTuple
                | Tuple1
                | Tuple2
                | Tuple3
                | Mark
                | Tuple
                | EmptyList
                | Append
                | Appends
                | EmptyDict
                | Setitem
                | Setitems
                | EmptySet
                | Additems
                | Frozenset
                | StackGlobal
                | Memoize
                | Binget
                | Reduce
                | Newobj
                | NextBuffer
                | ReadonlyBuffer
        );
        let general = matches!(
            op,
            Frame | Binput | LongBinput | LongBinget | Global | Build | Long4 | Pop | PopMark
        );
        strict || (general && !self.strict())
    }

    fn step(&mut self, op: &Op<'p>) -> Check<()> {
        // Protocol and frames.
        if op.opcode == Opcode::Proto {
            let Argument::Int(n) = op.arg else {
                return Err(Reason::BadProto);
            };
            let ok = if self.strict() {
                n == 5
            } else {
                (2..=5).contains(&n)
            };
            if op.offset != 0 || !ok {
                return Err(Reason::BadProto);
            }
            self.protocol = u8::try_from(n).ok();
            return Ok(());
        }
        let Some(protocol) = self.protocol else {
            return Err(Reason::BadProto);
        };
        if op.offset < self.frame_end && op.end > self.frame_end {
            return Err(Reason::BadFrame);
        }
        if !self.allowed(op.opcode) {
            if let (Opcode::Inst, Argument::Global { module, name }) = (op.opcode, op.arg) {
                self.resolve(module, name)?;
            }
            return Err(Reason::OpcodeNotAllowed);
        }
        if op.opcode.protocol() > protocol {
            return Err(Reason::OpcodeAboveProtocol);
        }
        let literal = |s: &str| Span {
            start: op.end - s.len(),
            len: s.len(),
            latin1: latin1_chars(s.as_bytes()),
        };
        match (op.opcode, op.arg) {
            (Opcode::Frame, Argument::Uint(n)) => {
                let left = (self.pickle.len() - op.end) as u64;
                if op.offset < self.frame_end || n > left {
                    return Err(Reason::BadFrame);
                }
                self.frame_end = op.end + n as usize;
            }
            // ---- scalars
            (Opcode::None, _) => self.push(Kind::None)?,
            (Opcode::Newtrue, _) => self.push(Kind::Bool(true))?,
            (Opcode::Newfalse, _) => self.push(Kind::Bool(false))?,
            (Opcode::Binint | Opcode::Binint1 | Opcode::Binint2, Argument::Int(v)) => {
                self.charge(limits::cost::int_small(v))?;
                self.push(Kind::Int(Some(v)))?
            }
            (Opcode::Long1 | Opcode::Long4, Argument::Long(b)) => {
                let value = (b.len() <= 8).then(|| {
                    let fill = if b.last().is_some_and(|x| x & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
                    let mut w = [fill; 8];
                    w.iter_mut().zip(b).for_each(|(w, b)| *w = *b);
                    i64::from_le_bytes(w)
                });
                match value {
                    Some(v) => {
                        self.charge(limits::cost::int_small(v))?;
                        self.push(Kind::Int(Some(v)))?
                    }
                    None => {
                        self.charge(limits::cost::int_bytes(b.len() as u64))?;
                        self.push(Kind::BigInt(hash::long(b)))?
                    }
                }
            }
            (Opcode::Binfloat, Argument::Float(f)) => {
                self.charge(limits::cost::FLOAT)?;
                self.push(Kind::Float(f.to_bits()))?
            }
            (_, Argument::Str(s)) => {
                self.charge(limits::cost::str(s.len() as u64, s.is_ascii()))?;
                self.push(Kind::Str(literal(s)))?
            }
            (_, Argument::StrWithSurrogates(b)) => {
                self.charge(limits::cost::str(b.len() as u64, false))?;
                self.push(Kind::Str(Span {
                    start: op.end - b.len(),
                    len: b.len(),
                    latin1: 0,
                }))?
            }
            (_, Argument::Bytes(b)) => {
                let span = Some(Span {
                    start: op.end - b.len(),
                    len: b.len(),
                    latin1: 0,
                });
                self.charge(limits::cost::bytes(b.len() as u64))?;
                self.push(Kind::Bytes {
                    len: b.len() as u64,
                    span,
                })?
            }
            (_, Argument::ByteArray(b)) => {
                self.charge(limits::cost::bytearray(b.len() as u64))?;
                self.push(Kind::ByteArray {
                    len: b.len() as u64,
                })?
            }
            (Opcode::NextBuffer, _) => {
                let len = *self
                    .buffers
                    .get(self.used_buffers)
                    .ok_or(Reason::TooManyBuffers)?;
                let index = u32::try_from(self.used_buffers).map_err(|_| Reason::TooManyBuffers)?;
                self.used_buffers += 1;
                self.push(Kind::Buffer {
                    index,
                    len: len as u64,
                    readonly: false,
                })?
            }
            (Opcode::ReadonlyBuffer, _) => {
                if self.strict() && self.prev[1] != Some(Opcode::NextBuffer) {
                    return Err(Reason::ReadonlyOnNonBuffer);
                }
                match &mut self.top_mut()?.kind {
                    Kind::Buffer { readonly, .. } => *readonly = true,
                    _ => return Err(Reason::ReadonlyOnNonBuffer),
                }
                self.charge(limits::cost::MEMORYVIEW)?;
            }
            // ---- stack
            (Opcode::Mark, _) => self.push(Kind::Mark)?,
            (Opcode::Pop, _) => {
                let i = self.sp.checked_sub(1).ok_or(Reason::StackUnderflow)?;
                self.sp = i;
            }
            (Opcode::PopMark, _) => self.sp = self.mark()?,
            // ---- containers
            (Opcode::EmptyTuple, _) => self.tuple(self.sp..self.sp, self.sp)?,
            (Opcode::Tuple1 | Opcode::Tuple2 | Opcode::Tuple3, _) => {
                let n = usize::from(op.opcode.byte() - Opcode::Tuple1.byte()) + 1;
                let range = self.top_n(n)?;
                self.tuple(range.clone(), range.start)?
            }
            (Opcode::Tuple, _) => {
                let mark = self.mark()?;
                self.tuple(mark + 1..self.sp, mark)?
            }
            (Opcode::Frozenset, _) => {
                let mark = self.mark()?;
                let range = mark + 1..self.sp;
                let id = self.new_id();
                let n = range.len() as u64;
                self.charge(
                    limits::cost::tuple(n)
                        .saturating_add(limits::cost::SET)
                        .saturating_add(n.saturating_mul(limits::cost::SET_ITEM)),
                )?;
                for i in range.clone() {
                    let (chosen, size) = match self.stack.get(i) {
                        Some(s) => {
                            s.kind.check_value()?;
                            if !s.kind.hashable() {
                                return Err(Reason::Unhashable);
                            }
                            (s.kind.chosen_hash(), s.size)
                        }
                        None => return Err(Reason::StackUnderflow),
                    };
                    self.key(id, chosen, size)?;
                }
                let (depth, size) = self.items_depth(range.clone());
                let depth = self.nest(depth + 1)?;
                let size = self.expand(size.saturating_add(1))?;
                self.trace_items(id, range, false);
                self.sp = mark;
                self.push_slot(Slot {
                    kind: Kind::FrozenSet,
                    id,
                    depth,
                    memo: 0,
                    size,
                })?
            }
            (Opcode::EmptyList, _) => {
                self.charge(limits::cost::LIST)?;
                self.push(Kind::List {
                    hashable_items: true,
                    len: 0,
                    max_class: 0,
                })?
            }
            (Opcode::EmptyDict, _) => {
                self.charge(limits::cost::DICT)?;
                self.push(Kind::Dict)?
            }
            (Opcode::EmptySet, _) => {
                self.charge(limits::cost::SET)?;
                self.push(Kind::Set)?
            }
            (Opcode::Append | Opcode::Setitem, _) => {
                let (n, want) = if op.opcode == Opcode::Append {
                    (1, Want::List)
                } else {
                    (2, Want::Dict)
                };
                let range = self.top_n(n)?;
                let container = range.start.checked_sub(1).ok_or(Reason::StackUnderflow)?;
                self.add_items(range, container, want)?;
            }
            (Opcode::Appends | Opcode::Setitems | Opcode::Additems, _) => {
                let want = match op.opcode {
                    Opcode::Appends => Want::List,
                    Opcode::Setitems => Want::Dict,
                    _ => Want::Set,
                };
                let mark = self.mark()?;
                let container = mark.checked_sub(1).ok_or(Reason::StackUnderflow)?;
                self.add_items(mark + 1..self.sp, container, want)?;
            }
            // ---- memo
            (Opcode::Memoize, _) => self.put(self.memo_len)?,
            (Opcode::Binput | Opcode::LongBinput, Argument::Int(i)) => {
                self.put(usize::try_from(i).map_err(|_| Reason::MemoTooLarge)?)?
            }
            (Opcode::Binget | Opcode::LongBinget, Argument::Int(i)) => {
                let i = usize::try_from(i).map_err(|_| Reason::MemoTooLarge)?;
                let slot = *self.memo.get(i).ok_or(Reason::MemoTooLarge)?;
                match slot.kind {
                    Kind::Empty => return Err(Reason::MemoMissing),
                    Kind::DtypeNew { .. } | Kind::ArrayNew { .. } => {
                        return Err(Reason::MemoAliasing)
                    }
                    Kind::Global(_) => {}
                    _ if self.strict() => return Err(Reason::OpcodeNotAllowed),
                    _ => {}
                }
                let slot = *self.current(&slot);
                self.push_slot(slot)?
            }
            // ---- globals and calls
            (Opcode::Global, Argument::Global { module, name }) => {
                let callee = self.resolve(module, name)?;
                self.push(Kind::Global(callee))?
            }
            (Opcode::StackGlobal, _) => {
                let range = self.top_n(2)?;
                let [Slot {
                    kind: Kind::Str(module),
                    ..
                }, Slot {
                    kind: Kind::Str(name),
                    ..
                }] = self.items(range.clone())
                else {
                    return Err(Reason::GlobalNotLiteral);
                };
                let (module, name) = (*module, *name);
                let is_literal = |o: Option<Opcode>| {
                    matches!(
                        o,
                        Some(Opcode::ShortBinunicode | Opcode::Binunicode | Opcode::Binunicode8)
                    )
                };
                if self.strict() && !(is_literal(self.prev[0]) && is_literal(self.prev[1])) {
                    return Err(Reason::GlobalNotLiteral);
                }
                let callee = self.resolve(module.str(self.pickle), name.str(self.pickle))?;
                self.sp = range.start;
                self.push(Kind::Global(callee))?
            }
            (Opcode::Reduce, _) => {
                let args = self.pop()?;
                // set(list): the list's depth is the set's (its items are the set's).
                let args_depth = args.depth.saturating_sub(1);
                let args_size = args.size.saturating_sub(1);
                let callable = self.pop()?;
                let Kind::Tuple(args) = args.kind else {
                    return Err(Reason::BadCallArguments);
                };
                let Kind::Global(callee) = callable.kind else {
                    return Err(Reason::NotCallable);
                };
                let kind = self.call(callee, &args)?;
                match args.class {
                    // set(list) keeps the list's id so the summary lists the list's items, and
                    // the collision counts of its items go on in the set.
                    Class::ListArg(_, id, _, _) if matches!(kind, Kind::Set | Kind::FrozenSet) => {
                        // every item of the list is hashed into the set
                        self.hash(args_size.saturating_sub(1))?;
                        self.push_slot(Slot {
                            kind,
                            id,
                            depth: args_depth.max(1),
                            memo: 0,
                            size: args_size.max(1),
                        })?
                    }
                    _ => {
                        let depth = match kind {
                            Kind::Array(_) | Kind::Object | Kind::Set | Kind::FrozenSet => 1,
                            _ => 0,
                        };
                        let id = self.new_id();
                        self.push_slot(Slot {
                            kind,
                            id,
                            depth,
                            memo: 0,
                            size: 1,
                        })?
                    }
                }
            }
            (Opcode::Newobj, _) => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let Kind::Tuple(args) = args.kind else {
                    return Err(Reason::BadCallArguments);
                };
                let kind = match (cls.kind, args.class) {
                    (Kind::Global(Callee::Ndarray), Class::NdarrayArgs(info)) => {
                        let info = info?;
                        self.arrays += 1;
                        self.charge(
                            limits::cost::array(u64::from(info.shape.len))
                                .saturating_add(limits::cost::DTYPE),
                        )?;
                        Kind::Array(info)
                    }
                    (Kind::Global(Callee::Custom), _) => Kind::Object,
                    (Kind::Global(_), _) => return Err(Reason::BadCallArguments),
                    _ => return Err(Reason::NotCallable),
                };
                self.push(kind)?
            }
            (Opcode::Build, _) => {
                let state = self.pop()?;
                let target = *self.top()?;
                let built = match (target.kind, state.kind) {
                    (
                        Kind::DtypeNew { code, .. },
                        Kind::Tuple(Tuple {
                            class: Class::DtypeState(order),
                            ..
                        }),
                    ) => {
                        let order = order?;
                        let big_endian = match order {
                            Some(big) if code.itemsize() > 1 => big,
                            None if code.itemsize() == 1 => false,
                            _ => return Err(Reason::DtypeNotAllowed),
                        };
                        Kind::Dtype(Dtype { code, big_endian })
                    }
                    (
                        Kind::ArrayNew { .. },
                        Kind::Tuple(Tuple {
                            class: Class::ArrayState(info),
                            ..
                        }),
                    ) => {
                        let info = info?;
                        self.arrays += 1;
                        // array_setstate copies (and byte-swaps) the bytes.
                        self.charge(nbytes(&info.dtype, &info.shape)?)?;
                        Kind::Array(info)
                    }
                    (Kind::Object, k) => {
                        k.check_value()?;
                        Kind::Object
                    }
                    _ => return Err(Reason::BadBuild),
                };
                if let Kind::DtypeNew { memo: Some(m), .. } | Kind::ArrayNew { memo: Some(m) } =
                    target.kind
                {
                    if let Some(slot) = self.memo.get_mut(m) {
                        if slot.id == target.id {
                            slot.kind = built;
                        }
                    }
                }
                self.top_mut()?.kind = built;
            }
            _ => return Err(Reason::OpcodeNotAllowed),
        }
        Ok(())
    }

    fn stop(&mut self, op: &Op<'p>) -> Check<()> {
        if self.protocol.is_none() {
            return Err(Reason::BadProto);
        }
        if self.sp != 1 {
            return Err(Reason::NotOneValue);
        }
        self.top()
            .map_err(|_| Reason::NotOneValue)?
            .kind
            .check_value()?;
        if op.end != self.pickle.len() {
            return Err(Reason::TrailingData);
        }
        if self.used_buffers != self.buffers.len() {
            return Err(Reason::UnusedBuffers);
        }
        Ok(())
    }

    fn resolve(&mut self, module: &str, name: &str) -> Check<Callee> {
        let builtin = GLOBALS
            .iter()
            .find(|(m, n, _, strict)| *m == module && *n == name && (*strict || !self.strict()));
        if let Some((_, _, callee, _)) = builtin {
            return Ok(*callee);
        }
        if self.v.extra.iter().any(|(m, n)| *m == module && *n == name) {
            return Ok(Callee::Custom);
        }
        // Both texts are slices of the pickle: remember where, for the caller's message.
        let at = |s: &str| (s.as_ptr() as usize).wrapping_sub(self.pickle.as_ptr() as usize);
        *self.refused = Some([at(module), module.len(), at(name), name.len()]);
        Err(Reason::GlobalNotAllowed)
    }

    fn put(&mut self, index: usize) -> Check<()> {
        let top = *self.current(self.top()?);
        if index >= self.memo.len() {
            return Err(Reason::MemoTooLarge);
        }
        let mut kind = top.kind;
        if self.strict() && !matches!(kind, Kind::Global(_)) {
            return Err(Reason::OpcodeNotAllowed);
        }
        match &mut kind {
            Kind::DtypeNew { memo, .. } | Kind::ArrayNew { memo } => {
                if memo.is_some() {
                    return Err(Reason::MemoAliasing);
                }
                *memo = Some(index);
                self.top_mut()?.kind = kind;
            }
            _ => {}
        }
        // A list, dict or set is linked to its first memo entry: every copy of it writes its
        // mutations back there and reads them from there.
        let mut link = top.memo;
        if link == 0 && kind.is_mutable_container() {
            link = u32::try_from(index + 1).map_err(|_| Reason::MemoTooLarge)?;
            self.top_mut()?.memo = link;
        }
        let slot = self.memo.get_mut(index).ok_or(Reason::MemoTooLarge)?;
        if matches!(slot.kind, Kind::Empty) {
            self.memo_len += 1;
        }
        *slot = Slot {
            kind,
            memo: link,
            ..top
        };
        if index + 1 > self.memo_high {
            let grown = (index + 1 - self.memo_high) as u64;
            self.memo_high = index + 1;
            self.charge(grown.saturating_mul(limits::cost::MEMO_SLOT))?;
        }
        Ok(())
    }

    fn trace_items(&mut self, target: u64, range: core::ops::Range<usize>, pairs: bool) {
        let Some(tracer) = self.tracer.as_deref_mut() else {
            return;
        };
        if tracer.target != target {
            return;
        }
        let items = self.stack.get(range).unwrap_or(&[]);
        if pairs {
            for pair in items.chunks(2) {
                if let [k, v] = pair {
                    tracer.item(self.pickle, Some(&k.kind), &v.kind);
                }
            }
        } else {
            for s in items {
                tracer.item(self.pickle, None, &s.kind);
            }
        }
    }

    /// Counts the hash work of a dict key or set item of expanded size `size` going into
    /// container `id`, and its collisions if its hash is chosen.
    fn key(&mut self, id: u64, chosen: Option<i64>, size: u64) -> Check<u32> {
        self.hash(size)?;
        let Some(hash) = chosen else {
            return Ok(0);
        };
        self.chosen_keys += 1;
        let count = self.count_key(id, hash)?;
        self.collisions(count)?;
        Ok(count)
    }

    /// APPEND(S), SETITEM(S), ADDITEMS: the items are `range`, the container is at
    /// `container` (right below them, or below their MARK). Leaves the container on top.
    fn add_items(
        &mut self,
        range: core::ops::Range<usize>,
        container_at: usize,
        want: Want,
    ) -> Check<()> {
        let on_stack = *self.stack.get(container_at).ok_or(Reason::StackUnderflow)?;
        let mut container = *self.current(&on_stack);
        let pairs = want == Want::Dict;
        let n = range.len() as u64;
        if pairs && n % 2 != 0 {
            return Err(Reason::OddItems);
        }
        match (container.kind, want) {
            (Kind::List { .. }, Want::List) | (Kind::Dict, Want::Dict) | (Kind::Set, Want::Set) => {
            }
            (Kind::Mark, _) => return Err(Reason::MarkAsValue),
            _ => return Err(Reason::WrongContainer),
        }
        self.charge(match want {
            Want::List => n.saturating_mul(limits::cost::LIST_ITEM),
            Want::Dict => (n / 2).saturating_mul(limits::cost::DICT_ITEM),
            Want::Set => n
                .saturating_mul(limits::cost::SET_ITEM)
                .saturating_add(limits::cost::tuple(n)),
        })?;
        let mut hashable_all = true;
        let mut max_class = 0;
        for i in range.clone() {
            let (hashable, chosen, size) = match self.stack.get(i) {
                Some(s) => {
                    s.kind.check_value()?;
                    (s.kind.hashable(), s.kind.chosen_hash(), s.size)
                }
                None => return Err(Reason::StackUnderflow),
            };
            let key = want == Want::Set || (pairs && (i - range.start) % 2 == 0);
            if key {
                if !hashable {
                    return Err(Reason::Unhashable);
                }
                self.key(container.id, chosen, size)?;
            }
            if want == Want::List {
                hashable_all &= hashable;
                if let Some(hash) = chosen {
                    self.chosen_list_items += 1;
                    if self.use_keys && self.count_lists {
                        max_class = max_class.max(self.count_key(container.id, hash)?);
                    }
                }
            }
        }
        if let Kind::List {
            hashable_items,
            len,
            max_class: m,
        } = container.kind
        {
            container.kind = Kind::List {
                hashable_items: hashable_items && hashable_all,
                len: len.saturating_add(n),
                max_class: m.max(max_class),
            };
        }
        if n > 0 {
            let (depth, size) = self.items_depth(range.clone());
            container.depth = self.nest(container.depth.max(depth.saturating_add(1)))?;
            container.size = self.expand(container.size.saturating_add(size))?;
        }
        self.trace_items(container.id, range, pairs);
        if let Some(s) = self.stack.get_mut(container_at) {
            *s = Slot {
                memo: on_stack.memo,
                ..container
            };
        }
        if container.memo != 0 {
            if let Some(m) = self.memo.get_mut(container.memo as usize - 1) {
                if m.id == container.id {
                    *m = container;
                }
            }
        }
        self.sp = container_at + 1;
        Ok(())
    }

    fn tuple(&mut self, range: core::ops::Range<usize>, new_sp: usize) -> Check<()> {
        let items = self.items(range.clone());
        let class = classify(self, items);
        // Only the argument tuples of numpy's constructors may hold a global or a dtype, and
        // only where those constructors take them.
        let special = match class {
            Class::ReconstructArgs => Some(0),
            Class::FromBufferArgs(_) => Some(1),
            Class::ArrayState(_) => Some(2),
            _ => None,
        };
        let mut hasher = hash::TupleHasher::new();
        let mut hashable = true;
        for (i, s) in items.iter().enumerate() {
            if Some(i) != special {
                s.kind.check_value()?;
            }
            hashable &= s.kind.hashable();
            hasher.item(s.kind.hash());
        }
        let tuple = Tuple {
            len: items.len(),
            hashable,
            hash: if hashable {
                hasher.finish()
            } else {
                Hash::Random
            },
            class,
        };
        let (depth, size) = self.items_depth(range.clone());
        let depth = if range.is_empty() {
            0
        } else {
            self.nest(depth.saturating_add(1))?
        };
        let size = self.expand(size.saturating_add(1))?;
        self.charge(limits::cost::tuple(range.len() as u64))?;
        let id = self.new_id();
        self.trace_items(id, range, false);
        self.sp = new_sp;
        self.push_slot(Slot {
            kind: Kind::Tuple(tuple),
            id,
            depth,
            memo: 0,
            size,
        })
    }

    fn call(&mut self, callee: Callee, args: &Tuple) -> Check<Kind> {
        use limits::cost;
        Ok(match (callee, args.class) {
            (Callee::Complex, Class::Numbers(h)) => {
                self.charge(cost::COMPLEX)?;
                Kind::Complex(h?)
            }
            (Callee::Complex, Class::Ints(d)) if (1..=2).contains(&d.len) => {
                self.charge(cost::COMPLEX)?;
                let part = |v: Option<&i64>| hash::float(v.map_or(0.0, |v| *v as f64));
                let s = d.as_slice();
                Kind::Complex(match (part(s.first()), part(s.get(1))) {
                    (Some(re), Some(im)) => Hash::Known(hash::complex(re, im)),
                    _ => Hash::Random,
                })
            }
            (Callee::Set | Callee::FrozenSet, Class::ListArg(hashable, _, len, max_class)) => {
                if !hashable {
                    return Err(Reason::Unhashable);
                }
                self.set_of_list = true;
                self.collisions(max_class)?;
                self.charge(cost::SET.saturating_add(len.saturating_mul(cost::SET_ITEM)))?;
                if callee == Callee::Set {
                    Kind::Set
                } else {
                    Kind::FrozenSet
                }
            }
            (Callee::Set, _) if args.len == 0 => {
                self.charge(cost::SET)?;
                Kind::Set
            }
            (Callee::FrozenSet, _) if args.len == 0 => Kind::FrozenSet,
            (Callee::Bytes, _) if args.len == 0 => Kind::Bytes { len: 0, span: None },
            (Callee::ByteArray, _) if args.len == 0 => {
                self.charge(cost::bytearray(0))?;
                Kind::ByteArray { len: 0 }
            }
            (Callee::ByteArray, Class::BytesArg(len)) => {
                self.charge(cost::bytearray(len))?;
                Kind::ByteArray { len }
            }
            (Callee::CodecsEncode, Class::EncodeArgs(span)) => {
                // Only text that latin-1 can encode (else UnicodeEncodeError); a str with
                // lone surrogates is never latin-1.
                let len = span.latin1.checked_sub(1).ok_or(Reason::BadCallArguments)?;
                self.charge(cost::bytes(len))?;
                // ASCII text is its own latin-1 bytes: the span stays usable as bytes.
                let ascii = len == span.len as u64;
                Kind::Bytes {
                    len,
                    span: ascii.then_some(Span { latin1: 0, ..span }),
                }
            }
            (Callee::Dtype, Class::DtypeArgs(code)) => {
                self.charge(cost::DTYPE)?;
                Kind::DtypeNew {
                    code: code?,
                    memo: None,
                }
            }
            (Callee::FromBuffer, Class::FromBufferArgs(info)) => {
                let info = info?;
                self.arrays += 1;
                // frombuffer(...) and its .reshape(...): two array objects.
                self.charge(cost::array(u64::from(info.shape.len)).saturating_mul(2))?;
                Kind::Array(info)
            }
            (Callee::Reconstruct, Class::ReconstructArgs) => {
                self.charge(cost::array(1))?;
                Kind::ArrayNew { memo: None }
            }
            (Callee::Custom, _) => Kind::Object,
            (Callee::Dtype, _) => return Err(Reason::DtypeNotAllowed),
            _ => return Err(Reason::BadCallArguments),
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Tuple classification and array checks

fn str_of<'p>(m: &Machine<'_, 'p, '_, '_, '_>, k: &Kind) -> Option<&'p str> {
    match k {
        Kind::Str(s) => Some(s.str(m.pickle)),
        _ => None,
    }
}

fn ints(items: &[Slot]) -> Option<Dims> {
    if items.len() > MAX_NDIM {
        return None;
    }
    let mut d = Dims {
        len: items.len() as u8,
        v: [0; MAX_NDIM],
    };
    for (slot, out) in items.iter().zip(d.v.iter_mut()) {
        match slot.kind {
            Kind::Int(Some(v)) => *out = v,
            _ => return None,
        }
    }
    Some(d)
}

fn shape_of(k: &Kind) -> Check<Dims> {
    match k {
        Kind::Tuple(Tuple {
            class: Class::Ints(d),
            ..
        }) if d.as_slice().iter().all(|v| *v >= 0) => Ok(*d),
        _ => Err(Reason::BadShape),
    }
}

fn source_of(k: &Kind) -> Check<Source> {
    match *k {
        Kind::Buffer {
            index,
            len,
            readonly,
        } => Ok(Source::Buffer {
            index,
            len,
            readonly,
        }),
        Kind::Bytes { len, .. } => Ok(Source::Bytes { len }),
        Kind::ByteArray { len } => Ok(Source::ByteArray { len }),
        _ => Err(Reason::BadArrayData),
    }
}

fn order_of(s: Option<&str>) -> Check<bool> {
    match s {
        Some("C") => Ok(false),
        Some("F") => Ok(true),
        _ => Err(Reason::BadOrder),
    }
}

/// Parses a numpy dtype string such as `<i2`, `|u1`, `>f8` (general also: `i2`, `=i2`).
fn dtype_str(s: &str, strict: bool) -> Check<Dtype> {
    let (prefix, code) = match s.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => (s.get(..1), s.get(1..).unwrap_or("")),
        _ => (None, s),
    };
    let code = Code::parse(code).ok_or(Reason::DtypeNotAllowed)?;
    let one = code.itemsize() == 1;
    let big_endian = match prefix {
        Some(">") if !one || !strict => true,
        Some("<") if !one || !strict => false,
        Some("|") if one || !strict => false,
        Some("=") | None if !strict => false,
        _ => return Err(Reason::DtypeNotAllowed),
    };
    Ok(Dtype { code, big_endian })
}

/// nbytes of an array, or the reason it overflows.
fn nbytes(dtype: &Dtype, shape: &Dims) -> Check<u64> {
    shape
        .as_slice()
        .iter()
        .try_fold(dtype.code.itemsize(), |acc, d| {
            acc.checked_mul(u64::try_from(*d).map_err(|_| Reason::BadShape)?)
                .filter(|n| *n <= i64::MAX as u64)
                .ok_or(Reason::ShapeOverflow)
        })
}

/// Checks that the array's bytes lie inside its source. `exact`: the array must cover its
/// source exactly (what `_frombuffer`, `_reconstruct` and strict `ndarray` require).
fn place(
    dtype: Dtype,
    shape: Dims,
    fortran: bool,
    source: Source,
    offset: i64,
    strides: Option<Dims>,
    exact: bool,
) -> Check<ArrayInfo> {
    let size = nbytes(&dtype, &shape)?;
    let offset = u64::try_from(offset).map_err(|_| Reason::NegativeOffset)?;
    let len = source.len();
    // The offset lies inside (or at the end of) the buffer for every size, empty arrays too.
    if offset > len {
        return Err(Reason::ArrayOutsideBuffer);
    }
    match strides {
        None => {
            let end = offset.checked_add(size).ok_or(Reason::ArrayOutsideBuffer)?;
            if end > len || (exact && (offset != 0 || end != len)) {
                return Err(Reason::ArrayOutsideBuffer);
            }
        }
        Some(strides) => {
            if strides.len != shape.len || exact {
                return Err(Reason::BadStrides);
            }
            if size != 0 {
                let (mut lo, mut hi) = (i128::from(offset), i128::from(offset));
                for (d, s) in shape.as_slice().iter().zip(strides.as_slice()) {
                    let reach = i128::from(*s)
                        .checked_mul(i128::from(*d) - 1)
                        .ok_or(Reason::BadStrides)?;
                    let side = if reach < 0 { &mut lo } else { &mut hi };
                    *side = side.checked_add(reach).ok_or(Reason::BadStrides)?;
                }
                hi = hi
                    .checked_add(i128::from(dtype.code.itemsize()))
                    .ok_or(Reason::BadStrides)?;
                if lo < 0 || hi > i128::from(len) {
                    return Err(Reason::BadStrides);
                }
            }
        }
    }
    Ok(ArrayInfo {
        dtype,
        shape,
        fortran,
        source,
        offset,
        strided: strides.is_some(),
    })
}

/// `hash(complex(a[, b]))` for number arguments, or why `complex()` would fail (an int too
/// large for a float raises `OverflowError`).
fn complex_hash(a: Option<&Kind>, b: Option<&Kind>) -> Check<Hash> {
    let part = |k: Option<&Kind>| -> Check<Option<i64>> {
        Ok(match k {
            None => Some(0),
            Some(Kind::Bool(b)) => Some(i64::from(*b)),
            Some(Kind::Int(Some(v))) => hash::float(*v as f64),
            Some(Kind::Float(bits)) => hash::float(f64::from_bits(*bits)),
            _ => return Err(Reason::BadCallArguments),
        })
    };
    Ok(match (part(a)?, part(b)?) {
        (Some(re), Some(im)) => Hash::Known(hash::complex(re, im)),
        _ => Hash::Random,
    })
}

/// Checks an array's logical size: what `a + 1` or `a.copy()` allocates, whatever the strides
/// (a stride-0 view of 8 bytes may claim 8 TiB).
fn logical(info: ArrayInfo, max_bytes: u64) -> Check<ArrayInfo> {
    let size = nbytes(&info.dtype, &info.shape)?;
    if size > max_bytes {
        return Err(Reason::Limit {
            limit: Limit::ArrayBytes,
            found: size,
            max: max_bytes,
        });
    }
    Ok(info)
}

fn classify(m: &Machine<'_, '_, '_, '_, '_>, items: &[Slot]) -> Class {
    let k = |i: usize| items.get(i).map(|s| &s.kind);
    let strict = m.strict();
    let max_bytes = m.limits().max_array_bytes;
    if let Some(d) = ints(items) {
        return Class::Ints(d);
    }
    match items.len() {
        1 | 2 if items.iter().all(|s| s.kind.is_number()) => {
            return Class::Numbers(complex_hash(k(0), k(1)));
        }
        _ => {}
    }
    match (items.len(), items.first().map(|s| *m.current(s))) {
        (
            1,
            Some(Slot {
                kind:
                    Kind::List {
                        hashable_items,
                        len,
                        max_class,
                    },
                id,
                ..
            }),
        ) => {
            return Class::ListArg(hashable_items, id, len, max_class);
        }
        (
            1,
            Some(Slot {
                kind: Kind::Bytes { len, .. },
                ..
            }),
        ) => return Class::BytesArg(len),
        _ => {}
    }
    // numpy.dtype(code, False, True)
    if let (3, Some(Kind::Str(code)), Some(Kind::Bool(false)), Some(Kind::Bool(true))) =
        (items.len(), k(0), k(1), k(2))
    {
        return Class::DtypeArgs(Code::parse(code.str(m.pickle)).ok_or(Reason::DtypeNotAllowed));
    }
    // dtype state (3, byteorder, None, None, None, -1, -1, 0)
    if let (8, Some(Kind::Int(Some(3))), Some(Kind::Str(order))) = (items.len(), k(0), k(1)) {
        let tail = [k(2), k(3), k(4), k(5), k(6), k(7)];
        let plain = tail
            == [
                Some(&Kind::None),
                Some(&Kind::None),
                Some(&Kind::None),
                Some(&Kind::Int(Some(-1))),
                Some(&Kind::Int(Some(-1))),
                Some(&Kind::Int(Some(0))),
            ];
        let order = match (plain, order.str(m.pickle)) {
            (true, "<") => Ok(Some(false)),
            (true, ">") => Ok(Some(true)),
            (true, "|") => Ok(None),
            _ => Err(Reason::DtypeNotAllowed),
        };
        return Class::DtypeState(order);
    }
    // _codecs.encode(str, 'latin1')
    if let (2, Some(Kind::Str(text)), Some(Kind::Str(enc))) = (items.len(), k(0), k(1)) {
        if enc.str(m.pickle) == "latin1" {
            return Class::EncodeArgs(*text);
        }
    }
    // _reconstruct(numpy.ndarray, (0,), b'b')
    if let (
        3,
        Some(Kind::Global(Callee::Ndarray)),
        Some(Kind::Tuple(shape)),
        Some(Kind::Bytes { span: Some(b), .. }),
    ) = (items.len(), k(0), k(1), k(2))
    {
        let zero = matches!(shape.class, Class::Ints(d) if d.as_slice() == [0]);
        if zero && b.bytes(m.pickle) == b"b" {
            return Class::ReconstructArgs;
        }
        return Class::Plain;
    }
    // _frombuffer(buffer, dtype, shape, order)
    if let (4, Some(Kind::Dtype(dtype))) = (items.len(), k(1)) {
        let info = (|| {
            let source = source_of(k(0).unwrap_or(&Kind::None))?;
            let shape = shape_of(k(2).unwrap_or(&Kind::None))?;
            let fortran = order_of(k(3).and_then(|s| str_of(m, s)))?;
            logical(
                place(*dtype, shape, fortran, source, 0, None, true)?,
                max_bytes,
            )
        })();
        return Class::FromBufferArgs(info);
    }
    // _reconstruct state (1, shape, dtype, is_fortran, rawdata)
    if let (5, Some(Kind::Int(Some(1))), Some(Kind::Dtype(dtype))) = (items.len(), k(0), k(2)) {
        let info = (|| {
            let shape = shape_of(k(1).unwrap_or(&Kind::None))?;
            let Some(Kind::Bool(fortran)) = k(3) else {
                return Err(Reason::BadOrder);
            };
            let source = match k(4) {
                Some(Kind::Bytes { len, .. }) => Source::Bytes { len: *len },
                _ => return Err(Reason::BadArrayData),
            };
            logical(
                place(*dtype, shape, *fortran, source, 0, None, true)?,
                max_bytes,
            )
        })();
        return Class::ArrayState(info);
    }
    // numpy.ndarray(shape, dtype_str, buffer[, offset[, strides[, order]]])
    if let (3..=6, Some(Kind::Tuple(_)), Some(Kind::Str(dtype))) = (items.len(), k(0), k(1)) {
        let info = (|| {
            if strict && items.len() != 6 {
                return Err(Reason::BadCallArguments);
            }
            let shape = shape_of(k(0).unwrap_or(&Kind::None))?;
            let dtype = dtype_str(dtype.str(m.pickle), strict)?;
            let source = source_of(k(2).unwrap_or(&Kind::None))?;
            if strict && !matches!(source, Source::Buffer { .. }) {
                return Err(Reason::BadArrayData);
            }
            let offset = match k(3) {
                None => 0,
                Some(Kind::Int(Some(o))) => *o,
                Some(Kind::Int(None) | Kind::BigInt(_)) => return Err(Reason::ArrayOutsideBuffer),
                _ => return Err(Reason::BadCallArguments),
            };
            let strides = match k(4) {
                None | Some(Kind::None) => None,
                Some(Kind::Tuple(Tuple {
                    class: Class::Ints(d),
                    ..
                })) if !strict => Some(*d),
                _ => return Err(Reason::BadStrides),
            };
            let fortran = match k(5) {
                None => false,
                Some(s) => order_of(str_of(m, s))?,
            };
            if offset < 0 {
                return Err(Reason::NegativeOffset);
            }
            logical(
                place(dtype, shape, fortran, source, offset, strides, strict)?,
                max_bytes,
            )
        })();
        return Class::NdarrayArgs(info);
    }
    Class::Plain
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    /// numpy 2.4 `pickle.dumps({'seq': 41, 't_ns': ..., 'adc': int16 (16, 4)}, protocol=5,
    /// buffer_callback=...)`: one out-of-band buffer of 128 bytes.
    const CPYTHON_MESSAGE: &[u8] = b"\x80\x05\x95\x90\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x28\x8c\x03\x73\x65\x71\x94\x4b\x29\x8c\x04\x74\x5f\x6e\x73\x94\x8a\x08\x15\xcd\x85\x3d\xfe\x9c\x97\x17\x8c\x03\x61\x64\x63\x94\x8c\x13\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6e\x75\x6d\x65\x72\x69\x63\x94\x8c\x0b\x5f\x66\x72\x6f\x6d\x62\x75\x66\x66\x65\x72\x94\x93\x94\x28\x97\x8c\x05\x6e\x75\x6d\x70\x79\x94\x8c\x05\x64\x74\x79\x70\x65\x94\x93\x94\x8c\x02\x69\x32\x94\x89\x88\x87\x94\x52\x94\x28\x4b\x03\x8c\x01\x3c\x94\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x94\x62\x4b\x10\x4b\x04\x86\x94\x8c\x01\x43\x94\x74\x94\x52\x94\x75\x2e";

    /// What dmapickle's encoder writes for `{'seq': 7, 'adc': int16 (2, 2) read-only}`.
    const STRICT_MESSAGE: &[u8] = b"\x80\x05}(\x8c\x03seqK\x07\x8c\x03adc\x8c\x05numpy\x8c\x07ndarray\x93\x94(K\x02K\x02\x86\x8c\x03<i2\x97\x98K\x00N\x8c\x01Ct\x81u.";

    fn run(profile: Profile, pickle: &[u8], buffers: &[usize]) -> Result<Validated> {
        let mut stack = vec![Slot::EMPTY; 256];
        let mut memo = vec![Slot::EMPTY; 256];
        let mut ws = Workspace::new(&mut stack, &mut memo);
        Validator::new(profile).validate(pickle, buffers, &mut ws)
    }

    fn reason(profile: Profile, pickle: &[u8], buffers: &[usize]) -> Reason {
        match run(profile, pickle, buffers) {
            Err(Error::Rejected { reason, .. }) => reason,
            other => panic!("expected a rejection of {pickle:?}, got {other:?}"),
        }
    }

    fn su(s: &str) -> Vec<u8> {
        let mut v = vec![0x8c, s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn sg(module: &str, name: &str) -> Vec<u8> {
        cat(&[&su(module), &su(name), b"\x93"])
    }

    /// `numpy.ndarray(shape, dtype, NEXT_BUFFER, offset, strides, order)` in protocol 5.
    fn ndarray(shape: &[u8], dtype: &str, offset: &[u8], strides: &[u8], order: &str) -> Vec<u8> {
        cat(&[
            b"\x80\x05",
            &sg("numpy", "ndarray"),
            b"(",
            shape,
            &su(dtype),
            b"\x97",
            offset,
            strides,
            &su(order),
            b"t\x81.",
        ])
    }

    #[test]
    fn accepts_cpython_and_encoder_messages() {
        let v = run(Profile::General, CPYTHON_MESSAGE, &[128]).unwrap();
        assert_eq!((v.protocol, v.buffers, v.arrays), (5, 1, 1));
        let v = run(Profile::Strict, STRICT_MESSAGE, &[8]).unwrap();
        assert_eq!((v.protocol, v.buffers, v.arrays), (5, 1, 1));
        run(Profile::General, STRICT_MESSAGE, &[8]).unwrap();
        // CPython's frames and memo are outside the strict grammar.
        assert_eq!(
            reason(Profile::Strict, CPYTHON_MESSAGE, &[128]),
            Reason::OpcodeNotAllowed
        );
    }

    #[test]
    fn summary_names_keys_dtypes_shapes_and_buffers() {
        let mut stack = vec![Slot::EMPTY; 64];
        let mut memo = vec![Slot::EMPTY; 64];
        let mut ws = Workspace::new(&mut stack, &mut memo);
        let mut out = String::new();
        Validator::new(Profile::General)
            .summarize(CPYTHON_MESSAGE, &[128], &mut ws, &mut out)
            .unwrap();
        assert_eq!(
            out,
            "dict{seq:int, t_ns:int, adc:ndarray<i2>(16,4) <- buffer 0 (128 B)}"
        );
        out.clear();
        Validator::new(Profile::Strict)
            .summarize(STRICT_MESSAGE, &[8], &mut ws, &mut out)
            .unwrap();
        assert_eq!(
            out,
            "dict{seq:int, adc:ndarray<i2>(2,2) <- buffer 0 (8 B, read-only)}"
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        for cut in 0..CPYTHON_MESSAGE.len() {
            assert!(run(Profile::General, &CPYTHON_MESSAGE[..cut], &[128]).is_err());
        }
        for cut in 0..STRICT_MESSAGE.len() {
            assert!(run(Profile::Strict, &STRICT_MESSAGE[..cut], &[8]).is_err());
        }
    }

    #[test]
    fn workspace_is_reusable_and_memo_does_not_leak_between_pickles() {
        let mut stack = vec![Slot::EMPTY; 64];
        let mut memo = vec![Slot::EMPTY; 64];
        let mut ws = Workspace::new(&mut stack, &mut memo);
        let v = Validator::new(Profile::General);
        v.validate(CPYTHON_MESSAGE, &[128], &mut ws).unwrap();
        // BINGET 0 of a memo slot the previous pickle wrote
        let err = v.validate(b"\x80\x05h\x00.", &[], &mut ws).unwrap_err();
        assert!(matches!(
            err,
            Error::Rejected {
                reason: Reason::MemoMissing,
                ..
            }
        ));
    }

    #[cfg(feature = "std")]
    #[test]
    fn owned_workspace_is_left_clean_after_success_and_failure() {
        let mut owned = OwnedWorkspace::new(64, 1 << 16);
        let v = Validator::new(Profile::General);
        let binget0 = b"\x80\x05h\x00.";
        for pickle in [CPYTHON_MESSAGE, &CPYTHON_MESSAGE[..120]] {
            let _ = v.validate(pickle, &[128], &mut owned.workspace());
            let err = v
                .validate(binget0, &[], &mut owned.workspace())
                .unwrap_err();
            assert!(matches!(
                err,
                Error::Rejected {
                    reason: Reason::MemoMissing,
                    ..
                }
            ));
        }
        // a memo entry written far out is cleared too
        let far = b"\x80\x05Nr\x00\xf0\x00\x00.";
        assert!(v.validate(far, &[], &mut owned.workspace()).is_ok());
        let get_far = b"\x80\x05j\x00\xf0\x00\x00.";
        assert!(v.validate(get_far, &[], &mut owned.workspace()).is_err());
    }

    #[test]
    fn caller_allowed_globals_are_callable() {
        let pickle = cat(&[b"\x80\x04", &sg("mypkg", "Reading"), b"K\x01\x85R}b."]);
        assert_eq!(
            reason(Profile::General, &pickle, &[]),
            Reason::GlobalNotAllowed
        );
        let mut stack = vec![Slot::EMPTY; 16];
        let mut memo = vec![Slot::EMPTY; 16];
        let mut ws = Workspace::new(&mut stack, &mut memo);
        Validator::new(Profile::General)
            .with_allowed(&[("mypkg", "Reading")])
            .validate(&pickle, &[], &mut ws)
            .unwrap();
    }

    #[test]
    fn strided_arrays_inside_their_buffer_are_accepted() {
        // shape (2, 2) int32, strides (4, 8): a transposed view of 16 bytes
        let p = ndarray(b"K\x02K\x02\x86", "<i4", b"K\x00", b"K\x04K\x08\x86", "C");
        run(Profile::General, &p, &[16]).unwrap();
        assert_eq!(reason(Profile::Strict, &p, &[16]), Reason::BadStrides);
        // offset 4 with 12 bytes of array in a 16-byte buffer
        let p = ndarray(b"K\x03\x85", "<i4", b"K\x04", b"N", "C");
        run(Profile::General, &p, &[16]).unwrap();
        assert_eq!(
            reason(Profile::Strict, &p, &[16]),
            Reason::ArrayOutsideBuffer
        );
    }

    /// One pickle per reason the validator (not the reader) gives.
    #[test]
    fn each_reason() {
        use Profile::{General as G, Strict as S};
        let dtype = |code: &str, order: &str| {
            cat(&[
                &sg("numpy", "dtype"),
                b"(",
                &su(code),
                b"\x89\x88t",
                b"R(K\x03",
                &su(order),
                b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
            ])
        };
        let frombuffer = |shape: &[u8], dt: &[u8]| {
            cat(&[
                b"\x80\x05",
                &sg("numpy._core.numeric", "_frombuffer"),
                b"(\x97",
                dt,
                shape,
                &su("C"),
                b"tR.",
            ])
        };
        let cases: Vec<(Profile, Vec<u8>, Vec<usize>, Reason)> = vec![
            (G, vec![b'N'; 10], vec![], Reason::BadProto),
            (G, b"\x80\x05N\x80\x05.".to_vec(), vec![], Reason::BadProto),
            (S, b"\x80\x04N.".to_vec(), vec![], Reason::BadProto),
            (G, b"\x80\x05N.N".to_vec(), vec![], Reason::TrailingData),
            (G, b"\x80\x05NN.".to_vec(), vec![], Reason::NotOneValue),
            (G, b"\x80\x05.".to_vec(), vec![], Reason::NotOneValue),
            (G, b"\x80\x05N".to_vec(), vec![], Reason::NoStop),
            (G, b"\x80\x05\x82\x01.".to_vec(), vec![], Reason::OpcodeNotAllowed),
            (S, b"\x80\x05N\x94.".to_vec(), vec![], Reason::OpcodeNotAllowed),
            (G, b"\x80\x02\x97.".to_vec(), vec![4], Reason::OpcodeAboveProtocol),
            (G, b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00N.".to_vec(), vec![], Reason::BadFrame),
            (G, b"\x80\x05((((N.".to_vec(), vec![], Reason::StackTooDeep),
            (G, b"\x80\x05N\x86.".to_vec(), vec![], Reason::StackUnderflow),
            (G, b"\x80\x05Nt.".to_vec(), vec![], Reason::NoMark),
            (G, b"\x80\x05(\x85.".to_vec(), vec![], Reason::MarkAsValue),
            (G, b"\x80\x05Nr\x00\x01\x00\x00.".to_vec(), vec![], Reason::MemoTooLarge),
            (G, b"\x80\x05h\x03.".to_vec(), vec![], Reason::MemoMissing),
            (G, cat(&[b"\x80\x05", &sg("numpy", "dtype"), b"(", &su("i2"), b"\x89\x88tR\x94h\x00."]), vec![], Reason::MemoAliasing),
            (G, b"\x80\x05\x97.".to_vec(), vec![], Reason::TooManyBuffers),
            (G, b"\x80\x05N.".to_vec(), vec![4], Reason::UnusedBuffers),
            (G, b"\x80\x05N\x98.".to_vec(), vec![], Reason::ReadonlyOnNonBuffer),
            (G, cat(&[b"\x80\x05", &sg("os", "system"), b"."]), vec![], Reason::GlobalNotAllowed),
            (S, cat(&[b"\x80\x05", &sg("numpy", "dtype"), b"."]), vec![], Reason::GlobalNotAllowed),
            (G, b"\x80\x05K\x01K\x02\x93.".to_vec(), vec![], Reason::GlobalNotLiteral),
            (S, cat(&[b"\x80\x05", &su("numpy"), &su("ndarray"), b"\x940\x93."]), vec![], Reason::OpcodeNotAllowed),
            (G, cat(&[b"\x80\x05]", &sg("builtins", "complex"), b"a."]), vec![], Reason::GlobalAsValue),
            (G, b"\x80\x05N)R.".to_vec(), vec![], Reason::NotCallable),
            (G, cat(&[b"\x80\x05", &sg("builtins", "complex"), b"\x8c\x01x\x85R."]), vec![], Reason::BadCallArguments),
            (G, b"\x80\x05}}b.".to_vec(), vec![], Reason::BadBuild),
            (G, cat(&[b"\x80\x05]", &sg("numpy", "dtype"), b"(", &su("i2"), b"\x89\x88tRa."]), vec![], Reason::Unbuilt),
            (G, b"\x80\x05}(K\x01e.".to_vec(), vec![], Reason::WrongContainer),
            (G, b"\x80\x05}(K\x01u.".to_vec(), vec![], Reason::OddItems),
            (G, b"\x80\x05\x8f(]\x90.".to_vec(), vec![], Reason::Unhashable),
            (G, cat(&[b"\x80\x05}", &su("k"), &dtype("i2", "<"), b"s."]), vec![], Reason::DtypeAsValue),
            (G, ndarray(b"K\x02\x85", "|O8", b"K\x00", b"N", "C"), vec![16], Reason::DtypeNotAllowed),
            (G, cat(&[b"\x80\x05", &dtype("i2", "|"), b"."]), vec![], Reason::DtypeNotAllowed),
            (G, ndarray(b"J\xff\xff\xff\xff\x85", "<i4", b"K\x00", b"N", "C"), vec![16], Reason::BadShape),
            (G, ndarray(b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40\x86", "<i4", b"K\x00", b"N", "C"), vec![16], Reason::ShapeOverflow),
            (G, ndarray(b"K\x02\x85", "<i4", b"J\xc0\xff\xff\xff", b"N", "C"), vec![64], Reason::NegativeOffset),
            (G, ndarray(b"K\x04\x85", "<i4", b"K\x00", b"K\x08\x85", "C"), vec![16], Reason::BadStrides),
            (G, ndarray(b"K\x05\x85", "<i4", b"K\x00", b"N", "C"), vec![16], Reason::ArrayOutsideBuffer),
            (G, ndarray(b"K\x04\x85", "<i4", b"K\x00", b"N", "K"), vec![16], Reason::BadOrder),
            (G, frombuffer(b"K\x08\x85", &cat(&[&sg("numpy", "dtype"), b"(", &su("i2"), b"\x89\x88tR"])), vec![16], Reason::Unbuilt),
            (G, frombuffer(b"K\x09\x85", &cat(&[&dtype("i2", "<")])), vec![16], Reason::ArrayOutsideBuffer),
        ];
        let mut tiny_stack = [Slot::EMPTY; 4];
        let mut memo = [Slot::EMPTY; 64];
        for (profile, pickle, buffers, want) in cases {
            let got = if want == Reason::StackTooDeep {
                let mut ws = Workspace::new(&mut tiny_stack, &mut memo);
                match Validator::new(profile).validate(&pickle, &buffers, &mut ws) {
                    Err(Error::Rejected { reason, .. }) => reason,
                    other => panic!("{other:?}"),
                }
            } else {
                reason(profile, &pickle, &buffers)
            };
            assert_eq!(got, want, "{pickle:?}");
        }
        let data_not_buffer = cat(&[
            b"\x80\x05",
            &sg("numpy", "ndarray"),
            b"(K\x04\x85",
            &su("<i4"),
            &su("not a buffer"),
            b"K\x00N",
            &su("C"),
            b"t\x81.",
        ]);
        assert_eq!(reason(G, &data_not_buffer, &[]), Reason::BadArrayData);
        // a FRAME starting inside another frame
        let nested =
            b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x95\x01\x00\x00\x00\x00\x00\x00\x00N.";
        assert_eq!(reason(G, nested, &[]), Reason::BadFrame);
        let long = [b"\x80\x05N.".as_slice()].concat();
        let mut stack = [Slot::EMPTY; 4];
        let mut ws = Workspace::new(&mut stack, &mut memo);
        let err = Validator::new(G)
            .with_max_len(3)
            .validate(&long, &[], &mut ws);
        assert!(matches!(
            err,
            Err(Error::Rejected {
                reason: Reason::Limit {
                    limit: Limit::Length,
                    found: 4,
                    max: 3
                },
                ..
            })
        ));
    }

    fn run_limits(pickle: &[u8], buffers: &[usize], limits: Limits) -> Result<Validated> {
        let mut stack = vec![Slot::EMPTY; 4096];
        let mut memo = vec![Slot::EMPTY; 256];
        let mut keys = vec![KeySlot::EMPTY; 4096];
        let mut ws = Workspace::with_keys(&mut stack, &mut memo, &mut keys);
        Validator::new(Profile::General)
            .with_limits(limits)
            .validate(pickle, buffers, &mut ws)
    }

    fn limit_of(r: Result<Validated>) -> (Limit, u64, u64) {
        match r {
            Err(Error::Rejected {
                reason: Reason::Limit { limit, found, max },
                ..
            }) => (limit, found, max),
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    fn long1(v: i128) -> Vec<u8> {
        let b = v.to_le_bytes();
        let mut n = 16;
        while n > 1
            && ((b[n - 1] == 0 && b[n - 2] & 0x80 == 0)
                || (b[n - 1] == 0xff && b[n - 2] & 0x80 != 0))
        {
            n -= 1;
        }
        cat(&[&[0x8a, n as u8], &b[..n]])
    }

    #[test]
    fn nesting_depth_is_bounded_on_the_stack_and_through_the_memo() {
        let d = Limits::DEFAULT;
        let chain = |n: usize| cat(&[b"\x80\x05)", &vec![0x85u8; n], b"."]);
        assert_eq!(run_limits(&chain(100), &[], d).unwrap().depth, 100);
        assert_eq!(
            limit_of(run_limits(&chain(101), &[], d)),
            (Limit::Depth, 101, 100)
        );
        assert_eq!(
            limit_of(run_limits(&chain(300_000), &[], d)).0,
            Limit::Depth
        );
        // TUPLE2 chains keep the stack at depth 2 too
        let pairs = cat(&[b"\x80\x05N", &b"N\x86".repeat(101), b"."]);
        assert_eq!(limit_of(run_limits(&pairs, &[], d)).0, Limit::Depth);
        // lists nested through the memo at a constant stack depth: ] h0 a q0 POP ...
        let memo_chain = cat(&[b"\x80\x05]q\x00", &b"]h\x00aq\x000".repeat(120), b"."]);
        assert_eq!(
            limit_of(run_limits(&memo_chain, &[], d)),
            (Limit::Depth, 101, 100)
        );
        // a deep tuple appended through a memo alias deepens the list its other copies see
        let deep = cat(&[b"\x80\x05]q\x00h\x00)", &[0x85u8; 99], b"a0]h\x00a."]);
        assert_eq!(
            limit_of(run_limits(&deep, &[], d)),
            (Limit::Depth, 101, 100)
        );
        // CPython's own recursive list still loads: l = [1]; l.append(l)
        run_limits(b"\x80\x05]q\x00(K\x01h\x00e.", &[], d).unwrap();
    }

    #[test]
    fn keys_sharing_one_cpython_hash_are_bounded() {
        let d = Limits::DEFAULT;
        let m = (1i128 << 61) - 1;
        let dict = |n: i128| {
            // from 1: the int 0 hashes to itself (0, as i * m does) and is never counted
            let items: Vec<u8> = (1..=n).flat_map(|i| cat(&[&long1(i * m), b"N"])).collect();
            cat(&[b"\x80\x05}(", &items, b"u."])
        };
        run_limits(&dict(32), &[], d).unwrap();
        assert_eq!(
            limit_of(run_limits(&dict(33), &[], d)),
            (Limit::Collisions, 33, 32)
        );
        // ints 0..1500 hash to themselves: never counted
        let plain: Vec<u8> = (0..1500u16)
            .flat_map(|i| cat(&[b"M", &i.to_le_bytes(), b"N"]))
            .collect();
        run_limits(&cat(&[b"\x80\x05}(", &plain, b"u."]), &[], d).unwrap();
        // floats x * 2**(61k) share x's hash
        let floats: Vec<u8> = (-16..=16)
            .flat_map(|k| {
                let x = 1.5 * 2f64.powi(61 * k);
                assert_eq!(hash::float(x), hash::float(1.5));
                cat(&[b"G", &x.to_be_bytes(), b"N"])
            })
            .collect();
        assert_eq!(
            limit_of(run_limits(&cat(&[b"\x80\x05}(", &floats, b"u."]), &[], d)).0,
            Limit::Collisions
        );
        // ... and 1000 distinct sensor floats do not
        let sensor: Vec<u8> = (0..1000)
            .flat_map(|i| cat(&[b"G", &(20.0 + f64::from(i) * 0.01).to_be_bytes(), b"N"]))
            .collect();
        run_limits(&cat(&[b"\x80\x05}(", &sensor, b"u."]), &[], d).unwrap();
        // set(list) of colliding ints (protocol 2's spelling of a set)
        let items: Vec<u8> = (0..40).flat_map(|i| long1(i * m)).collect();
        let set = cat(&[b"\x80\x02c__builtin__\nset\n](", &items, b"e\x85R."]);
        assert_eq!(limit_of(run_limits(&set, &[], d)).0, Limit::Collisions);
        // the same list as plain data is fine: lists may repeat values
        run_limits(&cat(&[b"\x80\x02](", &items, b"e."]), &[], d).unwrap();
        // a workspace without a key table refuses what it cannot check
        let mut stack = [Slot::EMPTY; 128];
        let mut memo = [Slot::EMPTY; 4];
        let mut ws = Workspace::new(&mut stack, &mut memo);
        let err = Validator::new(Profile::General).validate(&dict(33), &[], &mut ws);
        assert_eq!(limit_of(err).0, Limit::KeyTable);
    }

    #[test]
    fn allocation_is_bounded_with_every_copy_counted() {
        let small = Limits {
            max_alloc: 1 << 20,
            ..Limits::DEFAULT
        };
        // 64 KiB of bytes, memoized once, then bytearray(GET) 20 times
        let blob = cat(&[b"B", &65536u32.to_le_bytes(), &vec![b'x'; 65536], b"q\x00"]);
        let copy = cat(&[b"h\x01h\x00\x85Ra"]);
        let p = cat(&[
            b"\x80\x05",
            &blob,
            b"0",
            &sg("builtins", "bytearray"),
            b"q\x010]",
            &copy.repeat(20),
            b".",
        ]);
        let (limit, found, max) = limit_of(run_limits(&p, &[], small));
        assert_eq!((limit, max), (Limit::Alloc, 1 << 20));
        assert!(found > 1 << 20);
        let p = cat(&[
            b"\x80\x05",
            &blob,
            b"0",
            &sg("builtins", "bytearray"),
            b"q\x010]",
            &copy.repeat(10),
            b".",
        ]);
        let v = run_limits(&p, &[], small).unwrap();
        assert!(v.alloc > 10 * 65536 && v.alloc < 1 << 20, "{}", v.alloc);
        // EMPTY_SET appended over and over: 224+ bytes each
        let sets = cat(&[b"\x80\x05]", &b"\x8fa".repeat(5000), b"."]);
        assert_eq!(limit_of(run_limits(&sets, &[], small)).0, Limit::Alloc);
        // out-of-band buffers cost nothing
        let big = run(Profile::Strict, STRICT_MESSAGE, &[8]).unwrap();
        assert!(big.alloc < 16 << 10, "{}", big.alloc);
    }

    #[test]
    fn arrays_are_bounded_in_logical_size_and_placed_for_every_size() {
        let d = Limits::DEFAULT;
        // shape (2**40,) stride 0 over 8 bytes
        let p = ndarray(
            b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85",
            "<i8",
            b"K\x00",
            b"K\x00\x85",
            "C",
        );
        assert_eq!(
            limit_of(run_limits(&p, &[8], d)),
            (Limit::ArrayBytes, 8 << 40, 1 << 30)
        );
        // a zero-size array still needs its offset inside the buffer
        let p = ndarray(
            b"K\x00\x85",
            "<i8",
            b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x10",
            b"K\x08\x85",
            "C",
        );
        assert_eq!(
            reason(Profile::General, &p, &[8]),
            Reason::ArrayOutsideBuffer
        );
        let p = ndarray(b"K\x00\x85", "<i8", b"K\x08", b"K\x08\x85", "C");
        run(Profile::General, &p, &[8]).unwrap();
        // the encoder's MAX_NDIM validates under strict
        let shape = cat(&[b"(", &b"K\x01".repeat(MAX_NDIM), b"t"]);
        let strict = cat(&[
            b"\x80\x05",
            &sg("numpy", "ndarray"),
            b"(",
            &shape,
            &su("<i2"),
            b"\x97K\x00N",
            &su("C"),
            b"t\x81.",
        ]);
        run(Profile::Strict, &strict, &[2]).unwrap();
    }

    #[test]
    fn calls_that_would_raise_are_refused() {
        let complex = |args: &[u8]| cat(&[b"\x80\x05", &sg("builtins", "complex"), args, b"R."]);
        run(
            Profile::General,
            &complex(b"G?\xf8\x00\x00\x00\x00\x00\x00K\x02\x86"),
            &[],
        )
        .unwrap();
        // complex(10**400): OverflowError in CPython
        let huge = cat(&[b"\x8b", &167u32.to_le_bytes(), &[0x11; 167], b"\x85"]);
        assert_eq!(
            reason(Profile::General, &complex(&huge), &[]),
            Reason::BadCallArguments
        );
        let encode = |text: &str| {
            cat(&[
                b"\x80\x05",
                &sg("_codecs", "encode"),
                &su(text),
                &su("latin1"),
                b"\x86R.",
            ])
        };
        run(Profile::General, &encode("caf\u{e9}"), &[]).unwrap();
        assert_eq!(
            reason(Profile::General, &encode("\u{20ac}"), &[]),
            Reason::BadCallArguments
        );
    }

    #[test]
    fn lone_surrogates_are_text_as_cpython_writes_them() {
        // pickle.dumps('a\ud800b', protocol=5)
        let p = b"\x80\x05\x8c\x05a\xed\xa0\x80b\x94.";
        run(Profile::General, p, &[]).unwrap();
        run(Profile::General, b"\x80\x05\x8c\x05a\xed\xa0\x80b.", &[]).unwrap();
        assert_eq!(
            reason(Profile::General, b"\x80\x05\x8c\x02\xed\xa0.", &[]),
            Reason::BadUtf8
        );
        assert_eq!(
            reason(Profile::General, b"\x80\x05\x8c\x03\xc0\x80x.", &[]),
            Reason::BadUtf8
        );
    }

    #[test]
    fn length_limit_names_itself() {
        let r = run_limits(
            b"\x80\x05N.",
            &[],
            Limits {
                max_len: 3,
                ..Limits::DEFAULT
            },
        );
        assert_eq!(limit_of(r), (Limit::Length, 4, 3));
        let e = run_limits(
            b"\x80\x05N.",
            &[],
            Limits {
                max_len: 3,
                ..Limits::DEFAULT
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "byte 0, PROTO: pickle length 4 B exceeds the limit 3 B (--max-len)"
        );
    }

    #[test]
    fn shared_references_cannot_expand_past_the_budget() {
        let d = Limits::DEFAULT;
        // t = (None,); t = (t, t) forty times: 2**41 nodes in 300 bytes. As a dict key, CPython
        // hashes all of them (no tuple caches its hash): the load never returns.
        let dag = |n: usize| {
            cat(&[
                b"\x80\x05N\x85q\x000",
                &b"h\x00h\x00\x86q\x000".repeat(n),
                b"}h\x00Ns.",
            ])
        };
        run_limits(&dag(10), &[], d).unwrap();
        let (limit, found, max) = limit_of(run_limits(&dag(40), &[], d));
        assert_eq!(limit, Limit::Expansion);
        assert!(found > max && max < 100_000, "{found} {max}");
        // the same shape with lists: loads at once, but repr() walks 2**40 nodes
        let lists = cat(&[
            b"\x80\x05]q\x000",
            &b"](h\x00h\x00eq\x000".repeat(40),
            b"h\x00.",
        ]);
        assert_eq!(limit_of(run_limits(&lists, &[], d)).0, Limit::Expansion);
        // one shared tuple used as the key of many dicts: every insert hashes it again
        let t = cat(&[b"(", &b"K\x01".repeat(1000), b"tq\x00"]);
        let many = cat(&[b"\x80\x05", &t, b"0]", &b"}h\x00Nsa".repeat(2000), b"."]);
        assert_eq!(limit_of(run_limits(&many, &[], d)).0, Limit::Expansion);
        // CPython's own sharing stays well inside: ['shared'] * 3 and a recursive list
        run_limits(b"\x80\x05]q\x00(\x8c\x06sharedq\x01h\x01h\x01e.", &[], d).unwrap();
    }

    #[test]
    fn a_refused_global_is_named() {
        let mut stack = [Slot::EMPTY; 16];
        let mut memo = [Slot::EMPTY; 16];
        let mut ws = Workspace::new(&mut stack, &mut memo);
        let v = Validator::new(Profile::General);
        for pickle in [
            &b"\x80\x05\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R."[..],
            &b"\x80\x02cos\nsystem\n."[..],
        ] {
            assert!(v.validate(pickle, &[], &mut ws).is_err());
            assert_eq!(ws.refused_global(pickle), Some(("os", "system")));
        }
        // a rejection for another reason names no global
        assert!(v.validate(b"\x80\x05N", &[], &mut ws).is_err());
        assert_eq!(ws.refused_global(b"\x80\x05N"), None);
    }
}
