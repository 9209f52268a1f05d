//! The errors of `dmapickle-core`: [`EncodeError`] for the encoder's callers, [`Error`] for the
//! crate as a whole.

use core::fmt;

/// Everything that can go wrong in `dmapickle-core`: encoding, reading and validating pickles.
///
/// No function of this crate panics on any input or buffer size; each failure is one of these.
///
/// # What each caller can get
/// The encoder's side has its own one-byte enum, [`EncodeError`], which it returns directly: a
/// device's encoder `Result` stays in registers, and its caller never matches frame or validator
/// errors. Everything else is a variant of this enum, in groups; a caller matches only its group
/// (and `_`: the enum is `#[non_exhaustive]`). `?` turns an `EncodeError` into
/// [`Error::Encode`].
///
/// | caller | returns |
/// |---|---|
/// | `Pickler` (`pickler`, `ndarray`) | [`EncodeError`]: `BufferFull`, `TooManyBuffers`, `TooDeep`, `ContainerMismatch`, `UnclosedContainer`, `DictKeyWithoutValue`, `NotOneValue`, `ArraySizeMismatch`, `TooManyDims`, `CannotAlign` |
/// | the serde serializer (`ser`) | [`EncodeError`]: the `Pickler`'s, and `SerdeCustom` |
/// | `Template` (`template`) | [`EncodeError`]: the `Pickler`'s (a template is written by one), and `SlotOverflow`, `SlotMismatch`, `BadTemplate`, `TooManySlots` |
/// | the reader and the validator (`reader`, `validate`) | `Error::Rejected` only |
/// | frames (`frame`) | `Error::Encode(EncodeError::BufferFull)` (encoding), `FrameSync`, `HeaderCrc`, `UnsupportedVersion`, `UnknownFrameFlags`, `UnknownEntryFlags`, `BodyCrc`, `FrameLength`, `InlineLength` (`DataCrc` is declared for readers of inline data; no function of this crate returns it) |
/// | the release ring (`release`) | `Error::ReleaseRing` only |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    // ---- encoder (core/src/pickler.rs, ser.rs, template.rs) ----------------------------------
    /// The encoder failed: what [`Pickler`](crate::Pickler), the serde serializer and
    /// [`Template`](crate::template) return on their own, as an [`EncodeError`]; also a frame
    /// encoder's `BufferFull`.
    Encode(EncodeError),
    // ---- reader and validator (core/src/reader.rs, core/src/validate.rs) -----------------------
    /// The reader or validator refused the pickle: where, at which opcode, and why.
    Rejected {
        /// Byte offset of the opcode in the pickle.
        at: usize,
        /// The opcode byte at `at` (any byte for [`UnknownOpcode`](crate::Reason::UnknownOpcode)).
        opcode: u8,
        /// Why.
        reason: crate::reason::Reason,
    },
    // ---- link: frame and release ring (core/src/frame.rs, core/src/release.rs) ----------------
    /// A frame header does not start with the sync word `F1 50 4B 05`.
    FrameSync,
    /// A frame header's CRC-32C does not match its first 20 bytes.
    HeaderCrc,
    /// A frame header with a valid CRC names a format version this crate does not read.
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// A frame header sets flag bits version 1 does not define.
    UnknownFrameFlags {
        /// The flags byte found.
        flags: u8,
    },
    /// A descriptor table entry sets unknown flag bits or a non-zero reserved byte.
    UnknownEntryFlags {
        /// The entry's flags byte.
        flags: u8,
        /// The entry's reserved byte (must be zero).
        reserved: u8,
    },
    /// A frame body's CRC-32C (pickle and descriptor table) does not match.
    BodyCrc,
    /// A frame's data CRC-32C (its inline buffers) does not match.
    DataCrc,
    /// A frame part is not as long as its header says, or a length does not fit its field.
    FrameLength,
    /// The inline entries' lengths do not add up to the header's inline length, or the inline
    /// buffers given do not match the inline entries.
    InlineLength,
    /// A shared region's control block is not a release ring (bad magic, version or capacity).
    ReleaseRing,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Encode(e) => fmt::Display::fmt(e, f),
            Error::Rejected { at, opcode, reason } => {
                match crate::opcode::Opcode::from_byte(*opcode) {
                    Some(op) => write!(f, "byte {at}, {}: {reason}", op.name()),
                    None => write!(f, "byte {at}, byte {opcode:#04x}: {reason}"),
                }
            }
            Error::FrameSync => f.write_str("frame header does not start with the sync word"),
            Error::HeaderCrc => f.write_str("frame header CRC-32C mismatch"),
            Error::UnsupportedVersion { found } => {
                write!(
                    f,
                    "unsupported frame format version {found} (this build reads 1)"
                )
            }
            Error::UnknownFrameFlags { flags } => {
                write!(f, "unknown frame header flags {flags:#04x}")
            }
            Error::UnknownEntryFlags { flags, reserved } => write!(
                f,
                "unknown descriptor entry flags {flags:#04x} or reserved byte {reserved:#04x}"
            ),
            Error::BodyCrc => {
                f.write_str("frame body CRC-32C mismatch (pickle or descriptor table)")
            }
            Error::DataCrc => f.write_str("frame data CRC-32C mismatch (inline buffers)"),
            Error::FrameLength => f.write_str("frame part length does not match its header"),
            Error::InlineLength => {
                f.write_str("inline buffer lengths do not match the descriptor table")
            }
            Error::ReleaseRing => {
                f.write_str("shared region has no valid release ring control block")
            }
        }
    }
}

/// What the encoder can fail with: [`Pickler`](crate::Pickler), the serde serializer
/// (`to_pickle`, feature `serde`) and [`Template`](crate::template). One byte; `?` turns it into
/// [`Error::Encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The caller's output buffer has no room for the next opcode. The bytes written so far are
    /// unchanged; encode again into a larger buffer.
    BufferFull,
    /// More out-of-band buffers than the descriptor table holds.
    TooManyBuffers,
    /// Containers nested deeper than the encoder tracks.
    TooDeep,
    /// A container was ended that was not open, or was ended with the wrong kind of end.
    ContainerMismatch,
    /// `finish` was called with a container still open.
    UnclosedContainer,
    /// A dict was ended after a key with no value.
    DictKeyWithoutValue,
    /// `finish` was called with no value, or a second top-level value was written.
    NotOneValue,
    /// An array's shape times its item size overflows, or does not equal its descriptor length.
    ArraySizeMismatch,
    /// An array (`Pickler::ndarray`, an `NdArray` given to the serde serializer, a template's
    /// array slot) has more dimensions than `ndarray::MAX_NDIM`.
    TooManyDims,
    /// A `Serialize` impl reported an error (`serde::ser::Error::custom`), or a `Display` value
    /// given to `collect_str` failed or printed differently twice. The message is dropped: this
    /// crate does not allocate.
    SerdeCustom,
    /// A template slot was given a value that does not fit its fixed width. Nothing was written:
    /// the slot keeps its previous value.
    SlotOverflow,
    /// A slot handle that is not a slot of that kind in this template, or a buffer descriptor
    /// whose read-only flag differs from the template's (the flag is an opcode, not a slot).
    SlotMismatch,
    /// `Template::from_parts`: a slot does not point at an opcode of its kind, or names a
    /// descriptor the table does not hold, or the pickle does not end with `STOP`.
    BadTemplate,
    /// More slots than the template's slot table holds (at most 256).
    TooManySlots,
    /// `Pickler::align_to`: the multiple is not 1, 2, 4 or 8, or the pickle has too few short
    /// strings or bytes to widen to reach it (at most 7 are needed, 3 for a multiple of 4), or
    /// no room for the wider ones. Nothing was changed: `finish` still ends the same pickle.
    CannotAlign,
}

impl From<EncodeError> for Error {
    fn from(e: EncodeError) -> Self {
        Error::Encode(e)
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferFull => f.write_str("output buffer full"),
            EncodeError::TooManyBuffers => {
                f.write_str("too many out-of-band buffers for the descriptor table")
            }
            EncodeError::TooDeep => f.write_str("containers nested too deep"),
            EncodeError::ContainerMismatch => f.write_str("container ended that was not open"),
            EncodeError::UnclosedContainer => f.write_str("container left open at finish"),
            EncodeError::DictKeyWithoutValue => f.write_str("dict key without a value"),
            EncodeError::NotOneValue => f.write_str("a pickle holds exactly one top-level value"),
            EncodeError::ArraySizeMismatch => {
                f.write_str("array shape x item size does not equal the descriptor length")
            }
            EncodeError::SerdeCustom => f.write_str("a Serialize impl or Display value failed"),
            EncodeError::TooManyDims => {
                f.write_str("array has more dimensions than ndarray::MAX_NDIM")
            }
            EncodeError::SlotOverflow => f.write_str("value does not fit its template slot"),
            EncodeError::SlotMismatch => {
                f.write_str("slot is not of that kind in this template, or read-only differs")
            }
            EncodeError::BadTemplate => f.write_str("template slots do not match its pickle"),
            EncodeError::TooManySlots => {
                f.write_str("too many slots for the template's slot table")
            }
            EncodeError::CannotAlign => f.write_str(
                "pickle cannot be padded to that multiple (1, 2, 4 or 8; too few short strings)",
            ),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// Result of the encoder: [`EncodeError`].
pub type EncodeResult<T> = core::result::Result<T, EncodeError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoder_error_is_one_byte_and_keeps_its_name_and_text() {
        assert_eq!(core::mem::size_of::<EncodeError>(), 1);
        assert_eq!(core::mem::size_of::<EncodeResult<()>>(), 1);
        assert_eq!(
            Error::from(EncodeError::SlotOverflow),
            Error::Encode(EncodeError::SlotOverflow)
        );
        extern crate std;
        use std::string::ToString;
        let full = Error::from(EncodeError::BufferFull);
        assert_eq!(full.to_string(), "output buffer full");
        assert_eq!(full.to_string(), EncodeError::BufferFull.to_string());
    }
}
