//! Host side of host -> device control: send a command down the link, find its reply among the
//! data frames coming up, retry on a timeout with the same request id.
//!
//! The frames and messages are `dmapickle_core::control`'s (`docs/wire-format.md`, "Control").
//! Replies travel up interleaved with the data frames; the data reader passes over them as
//! skipped bytes, and [`FrameReader::with_skip_tap`](crate::FrameReader::with_skip_tap) hands
//! exactly those bytes to a [`Replies`], where [`Controller::call`] waits for its reply. The
//! down direction is a duplicate of the source's file descriptor
//! ([`Source::down_link`](crate::source::Source::down_link)), so the reader thread keeps reading
//! while commands are written.

mod client;
#[cfg(feature = "python")]
pub(crate) mod py;
mod scan;
mod session;

pub use client::{describe, ControlError, Controller, DownSlot, RETRIES, TIMEOUT};
pub use scan::{Replies, ReplyScanner};
pub use session::{attach, Session};
