//! The one error type of `dmapickle-hal`.

use core::fmt;

/// Everything that can go wrong in `dmapickle-hal` apart from the link's own I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The frame layout refused something (see `dmapickle_core::Error`).
    Frame(dmapickle_core::Error),
    /// The number of buffers given differs from the number of descriptors.
    BufferCount {
        /// Descriptors in the pickle.
        descriptors: usize,
        /// Buffers handed to the publisher.
        buffers: usize,
    },
    /// Buffer `index` does not match its descriptor (length, or region and offset of a shared
    /// buffer).
    DescriptorMismatch {
        /// Position of the buffer in the message.
        index: usize,
    },
    /// The link failed while sending; the link's own error is returned alongside.
    Link,
    /// A length beyond a buffer's capacity, an array shape that does not fit it, or filled
    /// bytes that are not a whole number of elements.
    BufferLength,
    /// A typed view of memory that is not aligned for the element type (a [`crate::DmaBuf`]
    /// over plain bytes; one over [`crate::Block`]s is always aligned).
    BufferAlignment,
    /// A shared region is too small for its control block and one slot, or has more slots than
    /// [`crate::shared::MAX_SLOTS`].
    RegionSize,
    /// A shared region's memory is not 64-byte aligned.
    RegionAlignment,
}

impl From<dmapickle_core::Error> for Error {
    fn from(e: dmapickle_core::Error) -> Self {
        Error::Frame(e)
    }
}

/// So a `Pickler` closure (or `?` on an encoder call) can return this crate's `Result`.
impl From<dmapickle_core::EncodeError> for Error {
    fn from(e: dmapickle_core::EncodeError) -> Self {
        Error::Frame(e.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Frame(e) => write!(f, "frame: {e}"),
            Error::BufferCount {
                descriptors,
                buffers,
            } => write!(f, "{descriptors} descriptors but {buffers} buffers"),
            Error::DescriptorMismatch { index } => {
                write!(f, "buffer {index} does not match its descriptor")
            }
            Error::Link => f.write_str("link write or transfer failed"),
            Error::BufferLength => f.write_str("length beyond the buffer's capacity"),
            Error::BufferAlignment => {
                f.write_str("buffer memory not aligned for the element type (use a Block)")
            }
            Error::RegionSize => f.write_str("shared region too small or too many slots"),
            Error::RegionAlignment => f.write_str("shared region not 64-byte aligned"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
