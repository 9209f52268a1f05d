//! The one error type of `dmapickle-core`.

use core::fmt;

/// Everything that can go wrong in `dmapickle-core`: encoding, reading and validating pickles.
///
/// No function of this crate panics on any input or buffer size; each failure is one of these.
///
/// # What each caller can get
/// One flat enum (postcard's shape), its variants in groups; a caller needs to match only its
/// group (and `_`, the enum is `#[non_exhaustive]`):
///
/// | caller | variants |
/// |---|---|
/// | `Pickler` (`pickler`, `ndarray`) | `BufferFull`, `TooManyBuffers`, `TooDeep`, `ContainerMismatch`, `UnclosedContainer`, `DictKeyWithoutValue`, `NotOneValue`, `ArraySizeMismatch`, `TooManyDims` |
/// | the serde serializer (`ser`) | the `Pickler`'s, and `SerdeCustom` |
/// | `Template` (`template`) | the `Pickler`'s (a template is written by one), and `SlotOverflow`, `SlotMismatch`, `BadTemplate`, `TooManySlots` |
/// | the reader and the validator (`reader`, `validate`) | `Rejected` only |
/// | frames (`frame`) | `BufferFull` (encoding), `FrameSync`, `HeaderCrc`, `UnsupportedVersion`, `UnknownFrameFlags`, `UnknownEntryFlags`, `BodyCrc`, `FrameLength`, `InlineLength` (`DataCrc` is declared for readers of inline data; no function of this crate returns it) |
/// | the release ring (`release`) | `ReleaseRing` only |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    // ---- encoder -------------------------------------------------------------------------------
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
    // ---- serde serializer and templates (core/src/ser.rs, core/src/template.rs) ---------------
    /// A `Serialize` impl reported an error (`serde::ser::Error::custom`), or a `Display` value
    /// given to `collect_str` failed or printed differently twice. The message is dropped: this
    /// crate does not allocate.
    SerdeCustom,
    /// An array (`Pickler::ndarray`, an `NdArray` given to the serde serializer, a template's
    /// array slot) has more dimensions than `ndarray::MAX_NDIM`.
    TooManyDims,
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferFull => f.write_str("output buffer full"),
            Error::TooManyBuffers => {
                f.write_str("too many out-of-band buffers for the descriptor table")
            }
            Error::TooDeep => f.write_str("containers nested too deep"),
            Error::ContainerMismatch => f.write_str("container ended that was not open"),
            Error::UnclosedContainer => f.write_str("container left open at finish"),
            Error::DictKeyWithoutValue => f.write_str("dict key without a value"),
            Error::NotOneValue => f.write_str("a pickle holds exactly one top-level value"),
            Error::ArraySizeMismatch => {
                f.write_str("array shape x item size does not equal the descriptor length")
            }
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
            Error::SerdeCustom => f.write_str("a Serialize impl or Display value failed"),
            Error::TooManyDims => f.write_str("array has more dimensions than ndarray::MAX_NDIM"),
            Error::SlotOverflow => f.write_str("value does not fit its template slot"),
            Error::SlotMismatch => {
                f.write_str("slot is not of that kind in this template, or read-only differs")
            }
            Error::BadTemplate => f.write_str("template slots do not match its pickle"),
            Error::TooManySlots => f.write_str("too many slots for the template's slot table"),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
