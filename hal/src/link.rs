//! The link: a byte channel to the host with blocking writes and DMA transfers.

use embedded_dma::ReadBuffer;

/// A byte link to the host (UART, USB, SPI, a socket in tests).
///
/// Small parts of a frame (header, pickle, descriptor table, CRCs) go out with [`Link::write`];
/// buffers go out with [`Link::transfer`], which takes ownership of the buffer for as long as the
/// DMA engine reads it and gives it back from [`Transfer::wait`]. The buffer must be `'static`
/// (embedonomicon DMA rules): if a transfer is leaked with `mem::forget`, its memory is still
/// valid, and nothing else can write it because the only handle was moved into the transfer.
///
/// Implemented for `&mut T` so drivers compose (a publisher can borrow a link).
///
/// # Contract
/// - `write` returns when all bytes are queued on the link, in order, or with an error; after an
///   error the frame on the wire is cut off, which the host detects by CRC and resynchronises.
/// - While a [`Transfer`] exists it borrows the link mutably, so no other bytes interleave with
///   the buffer's.
/// - Implementations issue a `compiler_fence(Release)` (or a DMA barrier) before starting the
///   DMA engine and a `compiler_fence(Acquire)` after it completes.
pub trait Link {
    /// The link's I/O error.
    type Error: core::fmt::Debug;
    /// An in-flight DMA transfer of buffer `B`.
    type Transfer<'a, B>: Transfer<B, Error = Self::Error>
    where
        Self: 'a,
        B: ReadBuffer<Word = u8> + 'static;

    /// Blocking write of all of `bytes`.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Start sending `buffer` by DMA. The buffer is the transfer's until [`Transfer::wait`].
    fn transfer<B>(&mut self, buffer: B) -> Self::Transfer<'_, B>
    where
        B: ReadBuffer<Word = u8> + 'static;
}

/// A DMA transfer in flight; it owns its buffer.
///
/// Implementations for real DMA engines must, when dropped before completion, stop the engine or
/// block until it is done (embedonomicon "DMA" chapter), so dropping a transfer never hands its
/// memory back while the engine still reads it; leaking one with `mem::forget` is memory-safe
/// because the buffer is `'static` and its only handle is inside the leaked transfer.
pub trait Transfer<B> {
    /// The link's I/O error.
    type Error;

    /// Whether the DMA engine is done with the buffer (non-blocking).
    fn is_done(&mut self) -> bool;

    /// Block until the transfer completes; give the buffer back with the transfer's outcome.
    fn wait(self) -> (B, Result<(), Self::Error>);
}

impl<T: Link + ?Sized> Link for &mut T {
    type Error = T::Error;
    type Transfer<'a, B>
        = T::Transfer<'a, B>
    where
        Self: 'a,
        B: ReadBuffer<Word = u8> + 'static;

    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        T::write(self, bytes)
    }

    fn transfer<B>(&mut self, buffer: B) -> Self::Transfer<'_, B>
    where
        B: ReadBuffer<Word = u8> + 'static,
    {
        T::transfer(self, buffer)
    }
}
