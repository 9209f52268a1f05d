#![doc = include_str!("../README.md")]
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "async")]
pub mod asynch;
pub mod buffer;
#[cfg(feature = "control")]
pub mod control;
pub mod error;
#[cfg(feature = "std")]
pub mod file_region;
pub mod io;
pub mod link;
pub mod pool;
pub mod publisher;
pub mod ring;
pub mod shared;
pub mod view;

pub use buffer::{BufferRing, DmaBuf, Either};
/// What a [`Link`] implementation names: `ReadBuffer<Word = u8> + 'static` is a buffer a
/// transfer may read (re-exported, so a link needs no `embedded-dma` dependency of its own).
pub use embedded_dma::ReadBuffer;
/// The `embedded-io` version [`WriteLink`] adapts: implement `embedded_io::Write` through this
/// path and the versions always match.
pub use embedded_io;
pub use error::Error;
pub use io::WriteLink;
pub use link::{send_blocking, Completed, Link, Transfer};
pub use publisher::{Outgoing, PublishError, Publisher, Sent};
pub use shared::{SharedBuf, SharedRegion};
pub use view::{Block, Pod};
