//! Async publishing (feature `async`): any [`embedded_io_async::Write`] is a link.
//!
//! [`Publisher::publish_async`] writes the same frame bytes as [`Publisher::publish`], with the
//! same [`Publisher`] (one sequence counter for both paths), to an `embedded-io-async` writer:
//! an embassy-net `TcpSocket`, an embassy UART with DMA, a USB CDC class.
//!
//! # Ownership
//! - Inline buffers are **borrowed** by the future (`Outgoing::Inline(&buf)`): while it exists
//!   they cannot be written (`hal/tests/cfail/async_*.rs`); the writer either copies their bytes
//!   (a socket's buffer) or holds the borrow while its DMA runs. Once the future is gone they are
//!   the caller's, whether it completed, failed or was dropped, so no buffer is ever lost.
//! - Shared buffers are **moved** (`Outgoing::Shared(buf)`) and lent to the host, exactly as in
//!   the blocking path: they come back through the release ring, never from this call.
//!
//! # Cancellation
//! Dropping the future before it completes (a `select` with a timeout, a closed connection the
//! task gives up on) is defined:
//! - before the first byte of the frame: nothing was written; the sequence number is spent, so
//!   the host counts one lost frame at the next one;
//! - mid-frame: the link holds a frame cut after some prefix. The host finds it corrupt (its
//!   claimed length is not honoured, or a CRC fails on the bytes that follow) and re-scans from
//!   the byte after its sync word, so the next frame, which [`Publisher::publish_async`] always
//!   starts from its first byte, is found and delivered (`docs/wire-format.md`, "Hunting");
//! - shared buffers already lent stay lent until the host releases them (as after a link error).
//!
//! ```
//! # #[cfg(feature = "std")]
//! # fn main() {
//! use dmapickle_core::frame::{Header, HEADER_LEN};
//! use dmapickle_hal::{DmaBuf, Outgoing, Publisher};
//! let publisher = Publisher::new();
//! let mut buf = DmaBuf::new(1, 0x100, Box::leak(Box::new([0u8; 16])));
//! buf.fill_from(&[1, 2, 3, 4]).unwrap();
//! let descriptors = [buf.descriptor()];
//! let pickle = [0x80, 0x05, 0x97, 0x2E]; // NEXT_BUFFER: loads as the buffer itself
//! let mut wire: Vec<u8> = Vec::new(); // `Vec<u8>` is an embedded-io-async writer (feature std)
//! let seq = embassy_futures::block_on(publisher.publish_async(
//!     &mut wire,
//!     &pickle,
//!     &descriptors,
//!     [Outgoing::Inline(&buf)],
//! ))
//! .unwrap()
//! .seq;
//! assert_eq!(seq, 0);
//! assert!(Header::decode(wire[..HEADER_LEN].try_into().unwrap()).unwrap().seq_restart());
//! assert_eq!(&wire[wire.len() - 8..wire.len() - 4], &[1, 2, 3, 4]);
//! buf.fill_from(&[5]).unwrap(); // the future is gone: the buffer is ours to refill
//! # }
//! # #[cfg(not(feature = "std"))]
//! # fn main() {}
//! ```

use dmapickle_core::frame::Crc32c;
use dmapickle_core::Descriptor;
use embedded_dma::ReadBuffer;
use embedded_io_async::Write;
use heapless::Vec;

use crate::publisher::{link_failed, Frame, PublishError, Sent};
use crate::{Error, Outgoing, Publisher};

impl Publisher {
    /// Publish a message without out-of-band buffers on an async link.
    pub async fn publish_pickle_async<W: Write>(
        &self,
        link: &mut W,
        pickle: &[u8],
    ) -> Result<u32, Error> {
        self.publish_async::<W, &'static [u8], 0>(link, pickle, &[], [])
            .await
            .map(|s| s.seq)
            .map_err(|e| e.error)
    }

    /// [`Publisher::publish`] on an [`embedded_io_async::Write`]: frame `pickle` with its
    /// `descriptors` and the matching `buffers` (inline ones borrowed, shared ones moved; see
    /// the module docs for ownership and cancellation) and write it with `write_all`: header,
    /// pickle, descriptor table, body CRC, each inline buffer, data CRC. Mismatched buffers are
    /// refused before anything is written. The writer is not flushed.
    pub async fn publish_async<'b, W, B, const N: usize>(
        &self,
        link: &mut W,
        pickle: &[u8],
        descriptors: &[Descriptor],
        buffers: [Outgoing<'_, &'b B>; N],
    ) -> Result<Sent<&'b B, N>, PublishError<W::Error, &'b B, N>>
    where
        W: Write,
        B: ReadBuffer<Word = u8>,
    {
        // Cannot overflow: N items into a Vec of capacity N.
        let buffers: Vec<Outgoing<'_, &'b B>, N> = buffers.into_iter().collect();
        let Frame {
            header,
            entries,
            inline: pending,
        } = self.prepare(pickle, descriptors, buffers, |b| bytes_of(*b).len())?;
        let mut crc = Crc32c::new();
        crc.update(pickle);
        for e in &entries {
            crc.update(&e.encode());
        }
        let meta = async {
            link.write_all(&header.encode()).await?;
            link.write_all(pickle).await?;
            for e in &entries {
                link.write_all(&e.encode()).await?;
            }
            link.write_all(&crc.finish().to_le_bytes()).await
        };
        if let Err(e) = meta.await {
            return Err(link_failed(e, Vec::new(), pending));
        }
        let mut data_crc = Crc32c::new();
        for b in pending.clone() {
            let bytes = bytes_of(b);
            if self.data_crc() {
                data_crc.update(bytes);
            }
            if let Err(e) = link.write_all(bytes).await {
                return Err(link_failed(e, Vec::new(), pending));
            }
        }
        let data_crc = if self.data_crc() {
            data_crc.finish()
        } else {
            0
        };
        if let Err(e) = link.write_all(&data_crc.to_le_bytes()).await {
            return Err(link_failed(e, Vec::new(), pending));
        }
        Ok(Sent {
            seq: header.seq,
            inline: pending,
        })
    }
}

/// The bytes of a borrowed buffer, for as long as the borrow.
fn bytes_of<B: ReadBuffer<Word = u8>>(buffer: &B) -> &[u8] {
    // SAFETY: `ReadBuffer` promises that `(ptr, len)` is valid, initialised memory that nothing
    // writes while the buffer lives and is not mutated; `buffer` is borrowed shared for the
    // slice's whole lifetime, so it can neither move, be mutated nor be dropped meanwhile.
    unsafe {
        let (ptr, len) = buffer.read_buffer();
        core::slice::from_raw_parts(ptr, len)
    }
}
