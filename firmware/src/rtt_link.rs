//! The data link of a real board through a debug probe: an RTT up channel (feature `rtt`).
//!
//! `probe-rs` (the host's `rtt://` source) reads the channel named `dmapickle` out of the
//! target's RAM while the core runs. The channel blocks when full, so no frame byte is lost; a
//! separate channel carries defmt.

use core::convert::Infallible;

use dmapickle_hal::{send_blocking, Completed, Link};
use embedded_dma::ReadBuffer;
use rtt_target::UpChannel;

/// An RTT up channel as a [`Link`].
pub struct RttLink(pub UpChannel);

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
        = Completed<B, Infallible>
    where
        Self: 'a,
        B: ReadBuffer<Word = u8> + 'static;

    fn write(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        self.write_all(bytes);
        Ok(())
    }

    /// RTT is a memory copy into the channel's ring: done when this returns.
    fn transfer<B>(&mut self, buffer: B) -> Self::Transfer<'_, B>
    where
        B: ReadBuffer<Word = u8> + 'static,
    {
        send_blocking(&buffer, |bytes| self.write_all(bytes));
        Completed::new(buffer, Ok(()))
    }
}
