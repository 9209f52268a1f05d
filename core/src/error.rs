//! The one error type of `dmapickle-core`.

use core::fmt;

/// Everything that can go wrong in `dmapickle-core`: encoding, reading and validating pickles.
///
/// No function of this crate panics on any input or buffer size; each failure is one of these.
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
    // ---- reader and validator: variants below are added by the reader/validator --------------
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
        }
    }
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
