#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "control")]
pub mod control;
pub mod descriptor;
pub mod error;
pub mod frame;
pub mod ndarray;
pub mod opcode;
pub mod pickler;
pub mod reader;
pub mod reason;
pub mod release;
#[cfg(feature = "serde")]
pub mod ser;
pub mod template;
pub mod validate;

pub use descriptor::Descriptor;
pub use error::{EncodeError, EncodeResult, Error, Result};
pub use ndarray::{DType, Element, Order};
pub use pickler::{Container, Encoded, Pickler};
pub use reason::Reason;
#[cfg(feature = "serde")]
pub use ser::{to_pickle, NdArray, OobBytes};
pub use template::{Template, TemplateBuilder};
pub use validate::{Profile, Validator};
