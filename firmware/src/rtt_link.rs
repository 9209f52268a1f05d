//! The data link of a real board through a debug probe: an RTT up channel (feature `rtt`).
//!
//! `probe-rs` (the host's `rtt://` source) reads the channel named `dmapickle` out of the
//! target's RAM while the core runs. The channel blocks when full, so no frame byte is lost; a
//! separate channel carries defmt.

use core::convert::Infallible;
use core::sync::atomic::{compiler_fence, Ordering};

use dmapickle_hal::{Link, Transfer};
use embedded_dma::ReadBuffer;
use rtt_target::UpChannel;

/// An RTT up channel as a [`Link`].
pub struct RttLink(pub UpChannel);

/// A transfer that completed before [`Link::transfer`] returned (RTT is a memory copy).
pub struct Copied<B>(B);

impl<B> Transfer<B> for Copied<B> {
    type Error = Infallible;

    fn is_done(&mut self) -> bool {
        true
    }

    fn wait(self) -> (B, Result<(), Infallible>) {
        (self.0, Ok(()))
    }
}

impl RttLink {
    fn write_all(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self.0.write(bytes);
            bytes = bytes.get(n..).unwrap_or(&[]);
        }
    }
}

impl Link for RttLink {
    type Error = Infallible;
    type Transfer<'a, B>
        = Copied<B>
    where
        Self: 'a,
        B: ReadBuffer<Word = u8> + 'static;

    fn write(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        self.write_all(bytes);
        Ok(())
    }

    fn transfer<B>(&mut self, buffer: B) -> Copied<B>
    where
        B: ReadBuffer<Word = u8> + 'static,
    {
        compiler_fence(Ordering::Release);
        // SAFETY: `ReadBuffer` promises `(ptr, len)` is valid, initialised memory that nothing
        // writes while `buffer` is alive; the slice is not used after `buffer` moves.
        let bytes = unsafe {
            let (ptr, len) = buffer.read_buffer();
            core::slice::from_raw_parts(ptr, len)
        };
        self.write_all(bytes);
        compiler_fence(Ordering::Acquire);
        Copied(buffer)
    }
}
