//! The built-in allowlist: the exact `(module, name)` globals each profile may name, and what
//! each one is (the validator knows how each may be called).

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
