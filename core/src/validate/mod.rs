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
//!   `BUILD`, `_reconstruct` + `BUILD` arrays, numpy scalars (`numpy.core.multiarray.scalar` /
//!   `numpy._core.multiarray.scalar` of an allowed dtype and exactly its itemsize of bytes:
//!   `np.float64(1.5)`, hashed as numpy hashes them: as the Python number of their value),
//!   `builtins.complex/set/frozenset/bytes/bytearray`, `_codecs.encode(str, 'latin1')`.
//!
//! The commonest message, a dict of str keys whose values are numbers, `None`, bools, str,
//! buffers and arrays exactly as the encoder writes them (a *flat record*), is proved in one
//! pass over its bytes with the machine's own checks and charges on plain counters, in either
//! profile (`record.rs`: about a quarter of the machine's instructions); anything else, and
//! every refusal, is the machine's.
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
//! - Depth and expanded size are upper bounds for every value, lists, dicts and sets changed
//!   through a memo reference included (each is memoized once, its memo entry is never
//!   overwritten, and every copy reads and writes its state there). A list, dict or set may not
//!   change once its own stack entry was put inside another value or popped: whatever holds it
//!   recorded its depth and size then (CPython adds every item before that; the differential
//!   fuzzer found a pickle that grew one afterwards, 8 deep where the validator had said 6, and
//!   the same trick made a 48 KB pickle whose `repr` is 120 MB). References fetched from the memo
//!   while one is unfinished (CPython's self-referencing data: `l.append(l)`,
//!   `t = (l,); l.append(t)`, parent pointers) are owed its final depth and size, added where the
//!   holding value is counted in full (`STOP`); inside the container itself they add nothing,
//!   because every walk that reaches them (`repr`, `==`, `copy.deepcopy`, `pickle.dumps`,
//!   `json`) has the container on its path already and stops there or raises `RecursionError`.
//!   A value referring back to two unfinished containers at once is refused.
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
use crate::ndarray::{ByteOrder, DType, Scalar};
use crate::opcode::Opcode;
use crate::reader::{Argument, Op, Reader};
use crate::reason::Reason;

pub mod hash;
pub mod layout;
pub mod limits;

use hash::Hash;
pub use layout::Layout;
use layout::Recorder;
pub use limits::{Limit, Limits};

mod allowlist;
mod arrays;
mod decode;
mod keys;
mod kinds;
mod machine;
mod numpy_scalar;
mod record;
mod sharing;
mod summary;
#[cfg(test)]
mod tests;

use allowlist::*;
use arrays::*;
use kinds::*;
use machine::*;
use numpy_scalar::NumpyScalar;
use summary::*;

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
    /// For a memoized list, dict or set (kept in its memo entry): finished. Its own stack entry
    /// was put inside another value (CPython adds every item before that), or a value holding a
    /// reference to it was counted in full; either recorded its depth and size as they were
    /// then, so it may not change any more.
    shared: bool,
    /// Pushed by `BINGET`: another reference to a value whose own entry may still be on the
    /// stack (for a list, dict or set not finished yet: a reference back to it).
    copy: bool,
    /// The memo link of an unfinished list, dict or set this value holds references to (0:
    /// none), and how many, counted with multiplicity. Its depth and size left that container
    /// out (it could still grow); they are added where the value is counted in full: at
    /// `STOP`, and never inside that container itself, where every walk meets it on its path
    /// (`l = []; t = (l,); l.append(t)`).
    back: u32,
    refs: u64,
}

impl Slot {
    /// An unused slot.
    pub const EMPTY: Slot = Slot {
        kind: Kind::Empty,
        id: 0,
        depth: 0,
        memo: 0,
        size: 0,
        shared: false,
        copy: false,
        back: 0,
        refs: 0,
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
    /// The last layout proved, if the caller lent one.
    layout: Option<&'w mut Layout>,
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
            layout: None,
        }
    }

    /// Remembers the last pickle accepted in `layout`, so that the next ones that differ from it
    /// only in the numbers it stores as dict values are validated by a comparison (see
    /// [`layout`]).
    pub fn with_layout(self, layout: &'w mut Layout) -> Self {
        Workspace {
            layout: Some(layout),
            ..self
        }
    }

    /// Stack, memo and key table capacities (part of what a layout was proved with).
    fn capacities(&self) -> [usize; 3] {
        [self.stack.len(), self.memo.len(), self.keys.len()]
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
    layout: std::boxed::Box<Layout>,
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
            layout: std::boxed::Box::new(Layout::new()),
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
            layout: Some(&mut self.layout),
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
        let capacities = ws.capacities();
        if let Some(layout) = ws.layout.as_deref() {
            if let Some(validated) = layout.matches(self, pickle, buffers, capacities) {
                ws.refused = None;
                return Ok(validated);
            }
        }
        if ws.layout.is_none() || !Layout::eligible(self, pickle, buffers) {
            if let Some(validated) = record::prove(self, pickle, buffers, capacities, None) {
                ws.refused = None;
                return Ok(validated);
            }
            return self.run(pickle, buffers, ws, None);
        }
        let mut recorder = Recorder::new();
        let result = match record::prove(self, pickle, buffers, capacities, Some(&mut recorder)) {
            Some(validated) => {
                ws.refused = None;
                Ok(validated)
            }
            None => self.run(pickle, buffers, ws, Some(&mut recorder)),
        };
        if let (Ok(validated), Some(layout)) = (&result, ws.layout.as_deref_mut()) {
            layout.remember(self, pickle, buffers, capacities, *validated, &recorder);
        }
        result
    }

    /// Runs the machine, a second time with the key table if the first run saw more keys with
    /// a chosen hash than one hash may have (the common message has none, and pays nothing).
    fn run(
        &self,
        pickle: &[u8],
        buffers: &[usize],
        ws: &mut Workspace<'_>,
        mut recorder: Option<&mut Recorder>,
    ) -> Result<Validated> {
        let first = Machine::new(
            self,
            pickle,
            buffers,
            ws,
            None,
            recorder.as_deref_mut(),
            Keys::Off,
        );
        match first.run()? {
            Run::Done(validated) => Ok(validated),
            Run::NeedKeys { lists } => {
                let keys = Keys::On { lists };
                match Machine::new(self, pickle, buffers, ws, None, recorder, keys).run()? {
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
        let validated = self.run(pickle, buffers, ws, None)?;
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
                Machine::new(
                    self,
                    pickle,
                    buffers,
                    ws,
                    Some(&mut tracer),
                    None,
                    Keys::Off,
                )
                .run()?;
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
