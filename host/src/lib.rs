//! Host side of dmapickle: reassembles frames from byte sources and shared regions, validates
//! them, and hands `(pickle, buffers)` to Python.
#![deny(missing_docs)]

// Sources and the Python module (source/, python/).
#[cfg(feature = "python")]
mod python;
pub mod source;

// Host -> device control: commands down the link, replies found among the data (control/).
pub mod control;

// Validation: the one checker over core's validator every path uses (CLI, readers, Python).
pub mod validation;

// The link: frame reader, messages and shared regions (docs/wire-format.md), and the data
// CRC of large payloads on a second core (data_crc.rs).
mod data_crc;
pub mod message;
pub mod region;
pub mod stream;

pub use message::{Buffer, Message};
pub use stream::{Counters, FrameReader, ReadError, ReaderConfig};
