//! The built-in allowlist: the opcodes each profile may run, the exact `(module, name)` globals
//! each profile may name, and what each one is (the validator knows how each may be called).

use super::*;

/// The Python 2 module names among [`GLOBALS`]: CPython's unpickler maps them to their Python 3
/// modules (`_compat_pickle`) only for protocols below 3, which is the only place they may be.
pub(super) const PYTHON2_MODULES: [&str; 1] = ["__builtin__"];

pub(super) const GLOBALS: [(&str, &str, Callee, bool); 19] = [
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
    ("numpy.core.multiarray", "scalar", Callee::Scalar, false),
    ("numpy._core.multiarray", "scalar", Callee::Scalar, false),
];

/// Whether a profile runs `op` (strict: what the encoder writes, general: also what CPython's
/// own pickler writes).
const fn runs(op: Opcode, strict: bool) -> bool {
    use Opcode::*;
    let strict_ops = matches!(
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
    let general_ops = matches!(
        op,
        Frame | Binput | LongBinput | LongBinget | Global | Build | Long4 | Pop | PopMark
    );
    strict_ops || (general_ops && !strict)
}

/// [`Level::NotRun`] as a table entry.
const NOT_RUN: u8 = u8::MAX;

/// Per profile (0: strict, 1: general) and opcode byte: the opcode's protocol if the profile
/// runs it, else [`NOT_RUN`]; built at compile time from [`runs`] and `Opcode::protocol`, so
/// that the check before every opcode is one load.
#[allow(clippy::indexing_slicing)] // i < 256
const RUNS: [[u8; 256]; 2] = {
    let mut table = [[NOT_RUN; 256]; 2];
    let mut i = 0;
    while i < 256 {
        if let Some(op) = Opcode::from_byte(i as u8) {
            if runs(op, true) {
                table[0][i] = op.protocol();
            }
            if runs(op, false) {
                table[1][i] = op.protocol();
            }
        }
        i += 1;
    }
    table
};

/// What a profile says of an opcode.
pub(super) enum Level {
    /// The profile does not run it.
    NotRun,
    /// It runs from this protocol on.
    From(u8),
}

impl Machine<'_, '_, '_, '_, '_> {
    /// Whether this profile runs `op`, and from which protocol.
    #[inline(always)]
    pub(super) fn level(&self, op: Opcode) -> Level {
        let table = if self.strict() { &RUNS[0] } else { &RUNS[1] };
        #[allow(clippy::indexing_slicing)] // a u8 indexes 256 entries
        match table[usize::from(op.byte())] {
            NOT_RUN => Level::NotRun,
            protocol => Level::From(protocol),
        }
    }
}
