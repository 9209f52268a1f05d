//! Host side of dmapickle: reassembles frames from byte sources and shared regions, validates
//! them, and hands `(pickle, buffers)` to Python.
#![deny(missing_docs)]

// Sources, live delivery and the Python module (source/, delivery.rs, python/).
pub mod delivery;
#[cfg(feature = "python")]
mod python;
pub mod source;

// Host -> device control: commands down the link, replies found among the data (control/).
pub mod control;

// Validation: a reusable checker over core's validator (the `dmapickle check` engine).
pub mod validation;

// The link: frame reader, messages and shared regions (docs/wire-format.md).
pub mod message;
pub mod region;
pub mod stream;

pub use message::{Buffer, Message};
pub use stream::{Counters, FrameReader, ReadError, ReaderConfig};
