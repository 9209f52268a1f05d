//! The built-in allowlist: the opcodes each profile may run, the exact `(module, name)` globals
//! each profile may name, and what each one is (the validator knows how each may be called).

use super::*;

pub(super) const GLOBALS: [(&str, &str, Callee, bool); 17] = [
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

impl Machine<'_, '_, '_, '_, '_> {
    /// Whether this profile runs `op` (strict: what the encoder writes, general: also what
    /// CPython's own pickler writes).
    pub(super) fn allowed(&self, op: Opcode) -> bool {
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
}
