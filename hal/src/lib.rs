//! DMA regions, buffer ownership while in flight, links and the frame publisher for dmapickle
//! devices.
//!
//! - [`link`]: the [`Link`] trait (blocking bytes out + a DMA transfer that owns its buffer until
//!   it completes), implemented for `&mut T`; with the `std` feature, `io::IoLink` over `std::io::Write`.
//! - [`buffer`]: [`DmaBuf`] (a `'static` DMA buffer) and [`BufferRing`], the free/ready queues an
//!   acquisition ISR and the main loop share, so one buffer fills while another is in flight.
//! - [`shared`]: [`SharedRegion`], memory the host maps; a [`SharedBuf`] handed to a frame is the
//!   host's until the host releases it through the region's release ring ([`ring`]).
//! - [`publisher`]: [`Publisher`] frames one message (pickle + descriptors + buffers) per
//!   `docs/wire-format.md` and puts it on a link.
//!
//! Ownership is the safety story: a buffer given to a transfer or a frame is moved, so writing it
//! while the DMA engine reads it, or while the host may still read it, does not compile
//! (`hal/tests/cfail/`).
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "async")]
pub mod asynch;
pub mod buffer;
pub mod error;
#[cfg(feature = "std")]
pub mod file_region;
#[cfg(feature = "std")]
pub mod io;
pub mod link;
pub mod publisher;
pub mod ring;
pub mod shared;

pub use buffer::{BufferRing, DmaBuf};
pub use error::Error;
pub use link::{send_blocking, Completed, Link, Transfer};
pub use publisher::{Outgoing, PublishError, Publisher};
pub use shared::{SharedBuf, SharedRegion};
