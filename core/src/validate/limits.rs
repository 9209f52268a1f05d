//! What loading an accepted pickle may cost: the [`Limits`] the validator enforces and the
//! allocation cost model behind [`Limits::max_alloc`].
//!
//! | limit | default | what it bounds | rejection |
//! |---|---|---|---|
//! | [`max_len`](Limits::max_len) | 64 MiB | pickle length in bytes (inclusive) | `pickle length N B exceeds the limit M B` |
//! | [`max_depth`](Limits::max_depth) | 100 | nesting depth of any value built (a scalar is 0, `[]` is 1, `[(1,)]` is 2) | `nesting depth N exceeds the limit M` |
//! | [`max_alloc`](Limits::max_alloc) | 256 MiB | upper bound of the bytes `pickle.loads` allocates | `allocation bound N B exceeds the limit M B` |
//! | [`max_collisions`](Limits::max_collisions) | 32 | keys of one dict/set (or items of one set) that share one CPython hash | `N dict/set keys with one hash exceed the limit M` |
//! | [`max_array_bytes`](Limits::max_array_bytes) | 1 GiB | an array's logical size, elements x itemsize (a stride-0 view counts every element) | `array logical size N B exceeds the limit M B` |
//! | [`max_expansion`](Limits::max_expansion) | 64 | expanded size of any value (nodes counted with multiplicity: `t = (t, t)` forty times is 2**41 nodes in 300 bytes) and the total expanded size of all keys hashed, both at most 64 x length + 65,536 | `expanded size N exceeds the limit M` |
//!
//! Every limit is inclusive: a value equal to the limit is accepted. Depth 100 is far below what
//! CPython's C code survives (its unguarded recursion, `hash()` of nested tuples, dies between
//! 100,000 and 300,000 levels on an 8 MiB stack, and thread stacks of 512 KiB still take about
//! 10,000), and below CPython's own recursion limit (1000), so `repr()`, `copy.deepcopy` and
//! `pickle.dumps` of an accepted value work too.
//!
//! # The allocation bound
//!
//! The validator adds, for every object the load creates, an upper bound of what CPython 3.11
//! (64-bit, pymalloc, 16-byte granularity) allocates for it, transient copies included; the
//! out-of-band buffers are the caller's and cost nothing (they are not copied); references
//! (`BINGET`, the memo, a memoized str used twice) cost only their pointer. The sum bounds
//! the peak memory of the load. Figures are `sys.getsizeof` plus the container growth CPython's
//! `list_resize`/`dictresize`/`set_table_resize` can leave, checked against `tracemalloc`'s peak
//! for each kind (the differential fuzzer in `tests/fuzz/` checks the bound on every accepted
//! mutant):
//!
//! | object | bytes charged | CPython source |
//! |---|---:|---|
//! | the load itself (unpickler, first stack and memo) | 4096 | `_pickle.c` `_Unpickler_New` |
//! | int -5..=256, `True`, `False`, `None`, `()`, `b''` | 0 | cached singletons |
//! | other int of `n` bytes | 32 + 4 x ceil(8n / 30), rounded up to 16 | `PyLongObject`, 30-bit digits |
//! | float / complex | 32 | `PyFloatObject` 24, `PyComplexObject` 32 |
//! | ASCII str of `n` bytes | 41 + n, rounded up to 16 | compact ASCII `PyUnicodeObject` |
//! | other str of `n` UTF-8 bytes | 120 + 8n | at most 4 bytes per char, plus the decoder's buffer |
//! | bytes of `n` | 33 + n, rounded up to 16 | `PyBytesObject` |
//! | bytearray of `n` | 64 + n + 1, rounded up to 16 | object + buffer |
//! | tuple of `n` | 48 + 8n | GC header + `PyTupleObject` |
//! | list | 96, and 40 per item | `list_resize` over-allocation and the popped batch |
//! | dict | 96, and 168 per item | keys table growth by doubling, old and new tables at once |
//! | set / frozenset | 256, and 224 per item | table growth x4 (x2 above 50,000) at 60 % fill |
//! | a stack slot / memo index, each new high-water mark | 24 / 16 | `Pdata` and memo arrays growth |
//! | numpy dtype (`numpy.dtype(...)`), `READONLY_BUFFER` memoryview | 512 / 256 | descriptor copy, `PyMemoryViewObject` |
//! | numpy array object (any constructor) | 2048 + 64 x ndim | `PyArrayObject`, dims and strides |
//! | array data `_reconstruct` + `BUILD` copies | nbytes | `array_setstate` copies (and byte-swaps) the bytes |
//! | `bytearray(b)` / `_codecs.encode(s, 'latin1')` | a new bytearray / bytes of that length | copies |
//! | `set(list)` / `frozenset(list)` | a new set of the list's length | |
//!
//! Not counted: importing an allowlisted module the first time (numpy itself), and what objects of
//! caller-allowed globals do in `__new__`/`__setstate__` (they are trusted, see the module docs).

/// The bounds a pickle must stay within to be accepted. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limits {
    /// Longest pickle accepted, in bytes.
    pub max_len: usize,
    /// Deepest nesting of containers in any value built.
    pub max_depth: u32,
    /// Largest allocation bound accepted, in bytes.
    pub max_alloc: u64,
    /// Most keys of one dict or set that may share one CPython hash.
    pub max_collisions: u32,
    /// Largest logical size (elements x itemsize) of one numpy array, in bytes.
    pub max_array_bytes: u64,
    /// How many times its own length a pickle may expand through shared references: every
    /// value's expanded size (its nodes counted with multiplicity, what `hash()`, `repr()` and
    /// `==` walk) and the total expanded size of all dict keys and set items hashed must stay
    /// at most `max_expansion` x pickle length + 65,536.
    pub max_expansion: u32,
}

impl Limits {
    /// The defaults: 64 MiB, depth 100, 256 MiB allocated, 32 keys per hash, 1 GiB arrays,
    /// expansion 64x.
    pub const DEFAULT: Limits = Limits {
        max_len: 64 << 20,
        max_depth: 100,
        max_alloc: 256 << 20,
        max_collisions: 32,
        max_array_bytes: 1 << 30,
        max_expansion: 64,
    };

    /// No bound at all except what the workspace holds (only for tests and trusted input: an
    /// accepted pickle may then crash or exhaust the process that loads it).
    pub const UNBOUNDED: Limits = Limits {
        max_len: usize::MAX,
        max_depth: u32::MAX,
        max_alloc: u64::MAX,
        max_collisions: u32::MAX,
        max_array_bytes: u64::MAX,
        max_expansion: u32::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Which bound of [`Limits`] a pickle exceeded (the `limit` of
/// [`Reason::Limit`](crate::Reason::Limit)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_len`].
    Length,
    /// [`Limits::max_depth`].
    Depth,
    /// [`Limits::max_alloc`].
    Alloc,
    /// [`Limits::max_collisions`].
    Collisions,
    /// [`Limits::max_array_bytes`].
    ArrayBytes,
    /// [`Limits::max_expansion`].
    Expansion,
    /// The workspace's key table (see `Workspace::with_keys`) is too small to check every key
    /// whose hash the pickle chooses.
    KeyTable,
}

impl Limit {
    /// The command-line flag that sets this limit (`dmapickle check`, `listen`, ...).
    pub const fn flag(self) -> &'static str {
        match self {
            Limit::Length => "--max-len",
            Limit::Depth => "--max-depth",
            Limit::Alloc => "--max-alloc",
            Limit::Collisions => "--max-collisions",
            Limit::ArrayBytes => "--max-array-bytes",
            Limit::Expansion => "--max-expansion",
            Limit::KeyTable => "--max-keys",
        }
    }
}

/// Allocation costs in bytes (see the table in the [module docs](self)).
pub(crate) mod cost {
    const fn round16(n: u64) -> u64 {
        n.saturating_add(15) & !15
    }
    pub(crate) const LOAD: u64 = 4096;
    pub(crate) const FLOAT: u64 = 32;
    pub(crate) const COMPLEX: u64 = 32;
    /// A numpy scalar object (`np.complex128` is the largest allowed: 48 bytes).
    pub(crate) const SCALAR: u64 = 64;
    pub(crate) const LIST: u64 = 96;
    pub(crate) const LIST_ITEM: u64 = 40;
    pub(crate) const DICT: u64 = 96;
    pub(crate) const DICT_ITEM: u64 = 168;
    pub(crate) const SET: u64 = 256;
    pub(crate) const SET_ITEM: u64 = 224;
    pub(crate) const STACK_SLOT: u64 = 24;
    pub(crate) const MEMO_SLOT: u64 = 16;
    pub(crate) const DTYPE: u64 = 512;
    pub(crate) const MEMORYVIEW: u64 = 256;

    pub(crate) fn int_small(v: i64) -> u64 {
        if (-5..=256).contains(&v) {
            0
        } else {
            32
        }
    }
    pub(crate) fn int_bytes(n: u64) -> u64 {
        round16(32 + 4 * (n.saturating_mul(8).div_ceil(30)))
    }
    pub(crate) fn str(n: u64, ascii: bool) -> u64 {
        if ascii {
            round16(41u64.saturating_add(n))
        } else {
            n.saturating_mul(8).saturating_add(120)
        }
    }
    pub(crate) fn bytes(n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            round16(33u64.saturating_add(n))
        }
    }
    pub(crate) fn bytearray(n: u64) -> u64 {
        64 + round16(n.saturating_add(1))
    }
    pub(crate) fn tuple(n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            n.saturating_mul(8).saturating_add(48)
        }
    }
    pub(crate) fn array(ndim: u64) -> u64 {
        2048 + 64 * ndim
    }
}
