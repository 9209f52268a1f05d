//! The link: a byte channel to the host with blocking writes and DMA transfers.

use core::sync::atomic::{compiler_fence, Ordering};
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
/// A link the CPU feeds (a UART FIFO, an RTT channel, a socket) needs no `Link` impl of its own:
/// implement `embedded_io::Write` (or take your HAL's) and wrap it in
/// [`WriteLink`](crate::WriteLink). Implement `Link` for a real DMA engine, whose transfer runs
/// while the CPU does other work. Repeat the associated type's `where` clause exactly: without
/// it, rustc asks for `stable_deref_trait::StableDeref` on `B`, a bound of `embedded-dma`'s
/// blanket `ReadBuffer` impl.
///
/// ```
/// use dmapickle_hal::{send_blocking, Completed, Link, ReadBuffer};
///
/// struct Uart; // a register-level UART; `write_all` feeds its FIFO
/// impl Uart {
///     fn write_all(&mut self, _bytes: &[u8]) {}
/// }
///
/// impl Link for Uart {
///     type Error = core::convert::Infallible;
///     type Transfer<'a, B>
///         = Completed<B, Self::Error>
///     where
///         Self: 'a,
///         B: ReadBuffer<Word = u8> + 'static; // this clause is required
///
///     fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
///         self.write_all(bytes);
///         Ok(())
///     }
///
///     fn transfer<B>(&mut self, buffer: B) -> Self::Transfer<'_, B>
///     where
///         B: ReadBuffer<Word = u8> + 'static,
///     {
///         send_blocking(&buffer, |bytes| self.write_all(bytes));
///         Completed::new(buffer, Ok(()))
///     }
/// }
/// ```
///
/// # Contract
/// - `write` returns when all bytes are queued on the link, in order, or with an error; after an
///   error the frame on the wire is cut off, which the host detects by CRC and resynchronises.
/// - While a [`Transfer`] exists it borrows the link mutably, so no other bytes interleave with
///   the buffer's.
/// - Implementations issue a `compiler_fence(Release)` (or a DMA barrier) before starting the
///   DMA engine and a `compiler_fence(Acquire)` after it completes.
pub trait Link {
    /// The link's I/O error. It is an [`embedded_io::Error`], so whatever the link, a caller
    /// asks `e.kind()` for an [`embedded_io::ErrorKind`] (embedded-hal's pattern): a UART's or
    /// socket's own error type keeps its detail, and generic code still tells "the host went
    /// away" (`BrokenPipe`, `ConnectionReset`) from "try again" (`Interrupted`, `TimedOut`).
    /// `core::convert::Infallible` is one, for links that cannot fail.
    type Error: embedded_io::Error;
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

/// Sends the bytes of `buffer` with `send`, the CPU copying them out, between the fences the
/// [`Link`] contract asks for. This is the whole of [`Link::transfer`] for a link without a DMA
/// engine (a UART FIFO, an RTT channel, a `std::io::Write`), so such links never handle the raw
/// pointer a [`ReadBuffer`] gives: the slice lives only inside `send`, while `buffer` is borrowed.
///
/// ```
/// use dmapickle_hal::link::send_blocking;
/// let buffer: &'static [u8] = &[1, 2, 3];
/// let mut wire = Vec::new();
/// send_blocking(&buffer, |bytes| wire.extend_from_slice(bytes));
/// assert_eq!(wire, [1, 2, 3]);
/// ```
pub fn send_blocking<B, R>(buffer: &B, send: impl FnOnce(&[u8]) -> R) -> R
where
    B: ReadBuffer<Word = u8>,
{
    compiler_fence(Ordering::Release);
    // SAFETY: `ReadBuffer` promises that `(ptr, len)` is valid, initialised memory that nothing
    // writes for as long as the buffer lives and is not mutated. `buffer` is borrowed shared for
    // this whole call, so it can neither move nor be mutated, and the slice does not outlive it.
    let bytes = unsafe {
        let (ptr, len) = buffer.read_buffer();
        core::slice::from_raw_parts(ptr, len)
    };
    let result = send(bytes);
    compiler_fence(Ordering::Acquire);
    result
}

/// The transfer of a link whose transfers complete before [`Link::transfer`] returns (see
/// [`send_blocking`]): it holds the buffer and the outcome until [`Transfer::wait`].
#[derive(Debug)]
pub struct Completed<B, E> {
    buffer: B,
    result: Result<(), E>,
}

impl<B, E> Completed<B, E> {
    /// A finished transfer of `buffer` with its outcome.
    pub fn new(buffer: B, result: Result<(), E>) -> Self {
        Completed { buffer, result }
    }
}

impl<B, E> Transfer<B> for Completed<B, E> {
    type Error = E;

    fn is_done(&mut self) -> bool {
        true
    }

    fn wait(self) -> (B, Result<(), E>) {
        (self.buffer, self.result)
    }
}
