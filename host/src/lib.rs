//! Host side of dmapickle: reassembles frames from byte sources and shared regions, validates
//! them, and hands `(pickle, buffers)` to Python.
#![deny(missing_docs)]
