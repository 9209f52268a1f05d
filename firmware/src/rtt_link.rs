//! The data link of a real board through a debug probe: an RTT up channel (feature `rtt`).
//!
//! `probe-rs` (the host's `rtt://` source) reads the channel named `dmapickle` out of the
//! target's RAM while the core runs. The channel blocks when full, so no frame byte is lost; a
//! separate channel carries defmt.

use core::convert::Infallible;

use dmapickle_hal::embedded_io::{ErrorType, Write};
use rtt_target::UpChannel;

/// An RTT up channel as an `embedded_io::Write`; `dmapickle_hal::WriteLink` makes it the link
/// (RTT is a memory copy into the channel's ring: a transfer is done when it returns).
pub struct RttWriter(pub UpChannel);

impl ErrorType for RttWriter {
    type Error = Infallible;
}

impl Write for RttWriter {
    /// Writes what the channel takes, at least one byte: a full `BlockIfFull` channel waits for
    /// the probe to read.
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Infallible> {
        if bytes.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.0.write(bytes);
            if n > 0 {
                return Ok(n);
            }
        }
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
