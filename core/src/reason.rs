//! Why the reader or the validator refused a pickle: the `reason` of
//! [`Error::Rejected`](crate::Error::Rejected).
//!
//! Every reason is one line of English when displayed; the error that carries it adds the byte
//! offset and the opcode, e.g. `byte 36, NEWOBJ: numpy.ndarray offset is negative`.

use core::fmt;

/// Why a pickle was refused. Displayed as one short English phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Reason {
    // ---- reader: the bytes are not a well-formed opcode stream ----------------------------------
    /// The byte is not an opcode of any protocol from 0 to 5.
    UnknownOpcode,
    /// The pickle ends inside this opcode's argument.
    Truncated,
    /// A length prefix claims more bytes than are left in the pickle.
    LengthBeyondEnd {
        /// The length the opcode declares.
        declared: u64,
        /// The bytes left after the length prefix.
        left: u64,
    },
    /// A length prefix is negative (`BINSTRING`, `LONG4`).
    NegativeLength,
    /// A newline-terminated argument has no newline.
    NoNewline,
    /// A decimal argument (`INT`, `LONG`, `GET`, `PUT`) is not an optional sign followed by digits.
    BadDecimal,
    /// A `FLOAT` argument is not a decimal float.
    BadFloat,
    /// A `STRING` argument is not quoted, or has a bad backslash escape.
    BadQuotedString,
    /// A `UNICODE` argument has a bad `\u`/`\U` escape.
    BadUnicodeEscape,
    /// A text argument is not valid UTF-8.
    BadUtf8,
    /// The pickle has no `STOP` opcode.
    NoStop,

    // ---- validator: structure ------------------------------------------------------------------
    /// A bound of [`Limits`](crate::validate::Limits) is exceeded: which one, the value found
    /// (at least; the validator stops at the first excess) and the limit.
    Limit {
        /// Which limit.
        limit: crate::validate::Limit,
        /// The value found (a lower bound of the pickle's real need).
        found: u64,
        /// The configured limit.
        max: u64,
    },
    /// Bytes follow the `STOP` opcode.
    TrailingData,
    /// `STOP` with a stack that does not hold exactly one value (or holds an open MARK).
    NotOneValue,
    /// The opcode is not part of the accepted grammar of the selected profile.
    OpcodeNotAllowed,
    /// The opcode belongs to a newer protocol than the pickle's `PROTO`.
    OpcodeAboveProtocol,
    /// `PROTO` is missing at the start, repeated, or names an unsupported protocol.
    BadProto,
    /// A `FRAME` is longer than the rest of the pickle, starts inside another frame, or an opcode
    /// crosses the end of a frame.
    BadFrame,
    /// The abstract stack would grow past the caller's stack capacity (nesting bomb).
    StackTooDeep,
    /// An opcode pops more values than the stack holds above the last MARK.
    StackUnderflow,
    /// An opcode that needs a MARK found none.
    NoMark,
    /// A MARK was consumed as if it were a value.
    MarkAsValue,
    /// A memo index at or past the caller's memo capacity (memo bomb).
    MemoTooLarge,
    /// A memo read of an index that was never written.
    MemoMissing,
    /// An object was memoized twice or fetched from the memo before its state was set.
    MemoAliasing,
    /// A `PUT` over the memo entry of a list, dict or set: the copies fetched from it earlier
    /// could no longer find its current state. CPython never reuses a memo index.
    MemoOverwritten,
    /// More `NEXT_BUFFER` opcodes than out-of-band buffers arrived.
    TooManyBuffers,
    /// Fewer `NEXT_BUFFER` opcodes than out-of-band buffers arrived.
    UnusedBuffers,
    /// `READONLY_BUFFER` on something that is not an out-of-band buffer.
    ReadonlyOnNonBuffer,

    // ---- validator: calls and globals ---------------------------------------------------------
    /// `GLOBAL`/`STACK_GLOBAL`/`INST` names a (module, name) pair outside the allowlist.
    GlobalNotAllowed,
    /// An allowlisted Python 2 module name (`__builtin__`) in a protocol 3+ pickle. CPython maps
    /// Python 2 names to Python 3 ones only below protocol 3; above, it would search
    /// `sys.path` for a module of that name and import it.
    Python2Global,
    /// `STACK_GLOBAL` arguments are not two str literals pushed right before it.
    GlobalNotLiteral,
    /// A global (a callable or class) is used as a plain value instead of being called.
    GlobalAsValue,
    /// `REDUCE`/`NEWOBJ` on something that is not an allowed callable.
    NotCallable,
    /// An allowed callable is called with arguments outside what it accepts.
    BadCallArguments,
    /// `BUILD` on an object that takes no state, or state of the wrong form.
    BadBuild,
    /// An object awaiting its `BUILD` state is used as a value.
    Unbuilt,
    /// `APPEND(S)` on a non-list, `SETITEM(S)` on a non-dict, `ADDITEMS` on a non-set.
    WrongContainer,
    /// `APPEND(S)`, `SETITEM(S)` or `ADDITEMS` on a list, dict or set that was already put
    /// inside another value (fetched again from the memo): the values holding it would not
    /// count what was added. CPython writes this only for data that refers back to itself
    /// through another container.
    ChangedAfterShared,
    /// A value holds references back to two different lists, dicts or sets that were not
    /// finished yet (or a longer chain of them than the validator follows): how much they add
    /// to it is not tracked.
    TangledReferences,
    /// `SETITEMS` with an odd number of items (a key without a value).
    OddItems,
    /// An unhashable value (list, dict, set, array, buffer, bytearray) as a dict key or set item.
    Unhashable,
    /// A numpy dtype (or a dtype used before its state was set) outside an array constructor.
    DtypeAsValue,

    // ---- validator: numpy arrays --------------------------------------------------------------
    /// A dtype outside the allowlist (bool, ints, uints, f2/f4/f8, c8/c16): object, void,
    /// structured, string, datetime, or unknown.
    DtypeNotAllowed,
    /// The shape is not a tuple of non-negative ints (at most `MAX_NDIM` of them).
    BadShape,
    /// shape x itemsize overflows.
    ShapeOverflow,
    /// The array's offset is negative.
    NegativeOffset,
    /// Strides are neither None nor a tuple of ints, one per dimension, keeping every element
    /// inside the buffer.
    BadStrides,
    /// `offset + nbytes` exceeds the buffer (or, where it must, does not equal it).
    ArrayOutsideBuffer,
    /// The array's memory order is not `'C'` or `'F'`.
    BadOrder,
    /// The array's data is not an out-of-band buffer, bytes or bytearray.
    BadArrayData,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Reason::UnknownOpcode => "unknown opcode",
            Reason::Truncated => "pickle truncated inside this opcode",
            Reason::LengthBeyondEnd { declared, left } => {
                return write!(
                    f,
                    "declared length {declared} exceeds the {left} bytes left"
                );
            }
            Reason::NegativeLength => "negative length",
            Reason::NoNewline => "no newline after a text argument",
            Reason::BadDecimal => "bad decimal integer argument",
            Reason::BadFloat => "bad decimal float argument",
            Reason::BadQuotedString => "bad quoted string argument",
            Reason::BadUnicodeEscape => "bad \\u escape in UNICODE argument",
            Reason::BadUtf8 => "text argument is not valid UTF-8",
            Reason::NoStop => "pickle has no STOP",
            Reason::Limit { limit, found, max } => {
                use crate::validate::Limit;
                let flag = limit.flag();
                return match limit {
                    Limit::Length => write!(
                        f,
                        "pickle length {found} B exceeds the limit {max} B ({flag})"
                    ),
                    Limit::Depth => {
                        write!(f, "nesting depth {found} exceeds the limit {max} ({flag})")
                    }
                    Limit::Alloc => write!(
                        f,
                        "allocation bound {found} B exceeds the limit {max} B ({flag})"
                    ),
                    Limit::Collisions => write!(
                        f,
                        "{found} dict/set keys with one hash exceed the limit {max} ({flag})"
                    ),
                    Limit::ArrayBytes => write!(
                        f,
                        "array logical size {found} B exceeds the limit {max} B ({flag})"
                    ),
                    Limit::Expansion => write!(
                        f,
                        "expanded size {found} exceeds the limit {max} ({flag}: shared \
                         references repeat a value more than the pickle's length allows)"
                    ),
                    Limit::KeyTable => write!(
                        f,
                        "{found} hash-checked keys exceed the key table's {max} entries ({flag})"
                    ),
                };
            }
            Reason::TrailingData => "data after STOP",
            Reason::NotOneValue => "STOP needs exactly one value on the stack",
            Reason::OpcodeNotAllowed => "opcode not allowed in this profile",
            Reason::OpcodeAboveProtocol => "opcode newer than the pickle's protocol",
            Reason::BadProto => "PROTO missing, repeated or unsupported",
            Reason::BadFrame => "bad FRAME",
            Reason::StackTooDeep => "stack deeper than the limit",
            Reason::StackUnderflow => "stack underflow",
            Reason::NoMark => "no MARK to pop to",
            Reason::MarkAsValue => "MARK used as a value",
            Reason::MemoTooLarge => "memo index beyond the memo limit",
            Reason::MemoMissing => "memo read of an empty slot",
            Reason::MemoAliasing => "object memoized twice or fetched before its BUILD",
            Reason::MemoOverwritten => "memo entry of a list, dict or set overwritten",
            Reason::TooManyBuffers => "more NEXT_BUFFER than out-of-band buffers",
            Reason::UnusedBuffers => "fewer NEXT_BUFFER than out-of-band buffers",
            Reason::ReadonlyOnNonBuffer => "READONLY_BUFFER on a value that is not a buffer",
            Reason::GlobalNotAllowed => "global not in the allowlist",
            Reason::Python2Global => {
                "Python 2 module name in a protocol 3+ pickle (CPython would import it)"
            }
            Reason::GlobalNotLiteral => "STACK_GLOBAL arguments are not str literals pushed here",
            Reason::GlobalAsValue => "global used as a value instead of being called",
            Reason::NotCallable => "call of something that is not an allowed callable",
            Reason::BadCallArguments => "arguments not accepted by the allowed callable",
            Reason::BadBuild => "BUILD on an object that takes no such state",
            Reason::Unbuilt => "object used before its BUILD state was set",
            Reason::WrongContainer => "items added to the wrong kind of container",
            Reason::TangledReferences => {
                "value refers back to more than one unfinished list, dict or set"
            }
            Reason::ChangedAfterShared => {
                "list, dict or set changed after it was put inside another value"
            }
            Reason::OddItems => "SETITEMS with a key but no value",
            Reason::Unhashable => "unhashable value as a dict key or set item",
            Reason::DtypeAsValue => "numpy dtype outside an array constructor",
            Reason::DtypeNotAllowed => "numpy dtype not in the allowlist",
            Reason::BadShape => "array shape is not a tuple of non-negative ints",
            Reason::ShapeOverflow => "array shape x itemsize overflows",
            Reason::NegativeOffset => "array offset is negative",
            Reason::BadStrides => {
                "array strides reach outside the buffer or do not match the shape"
            }
            Reason::ArrayOutsideBuffer => "array bytes do not fit its buffer",
            Reason::BadOrder => "array order is not 'C' or 'F'",
            Reason::BadArrayData => "array data is not a buffer, bytes or bytearray",
        };
        f.write_str(s)
    }
}
