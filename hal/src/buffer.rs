//! `'static` DMA buffers and the ring an acquisition ISR and the main loop share.
//!
//! The life of a [`DmaBuf`] in a [`BufferRing`]:
//!
//! ```text
//! free --take_free (ISR)--> filling --push_ready (ISR)--> ready --pop_ready (main)-->
//!   in flight (moved into a Transfer / Publisher) --wait--> main --give--> free
//! ```
//!
//! Every state is a different owner of the one `DmaBuf` value, so a buffer is never written while
//! the DMA engine reads it: the ISR only ever gets buffers from the free queue. Queues live in
//! `critical_section::Mutex`es; each operation is one short critical section (a `heapless::Deque`
//! push or pop, O(1)), so the firmware links a `critical-section` implementation (the crate
//! docs, "Critical section", say which one).
//!
//! A `DmaBuf` is bytes; [`DmaBuf::as_mut_slice_of`] views them as samples (`i16`, `f32`, ...)
//! and [`DmaBuf::array_descriptor`] sets the filled length from the array's shape. [`Either`]
//! lets buffers of two types go out in one `publish` call.

use core::cell::RefCell;
use critical_section::Mutex;
use dmapickle_core::Descriptor;
use embedded_dma::ReadBuffer;
use heapless::Deque;

use crate::view::{self, Block, Pod};
use crate::Error;

/// A DMA buffer: `'static` memory, the length filled so far, and where it lives (region id and
/// offset, for its [`Descriptor`]).
///
/// For an inline buffer (sent after the frame on the link) `region` and `offset` only tell the
/// host where the device took the bytes from (diagnostics, `docs/wire-format.md`); the host
/// uses the length. Pick a region id per memory (say 1 for SRAM) and the buffer's byte offset in
/// it, as [`DmaBuf::split`] does. Shared-region buffers are [`SharedBuf`](crate::SharedBuf)s,
/// whose region and offset the host does map.
///
/// ```
/// use dmapickle_hal::DmaBuf;
/// # let mem: &'static mut [u8; 8] = Box::leak(Box::new([0; 8])); // any `&'static mut [u8]`
/// let mut buf = DmaBuf::new(1, 0x100, mem);
/// buf.fill_from(&[1, 2, 3]).unwrap();
/// assert_eq!(buf.filled(), &[1, 2, 3]);
/// assert_eq!(buf.descriptor(), dmapickle_core::Descriptor::new(1, 0x100, 3));
/// assert!(buf.fill_from(&[0; 9]).is_err()); // longer than the buffer: an error, no panic
/// ```
#[derive(Debug)]
pub struct DmaBuf {
    mem: &'static mut [u8],
    len: usize,
    region: u16,
    offset: u32,
}

impl DmaBuf {
    /// A buffer over `mem` (empty), at `offset` in region `region`.
    pub fn new(region: u16, offset: u32, mem: &'static mut [u8]) -> Self {
        DmaBuf {
            mem,
            len: 0,
            region,
            offset,
        }
    }

    /// A buffer over one [`Block`] (8-byte aligned, so every typed view works).
    pub fn from_block<const L: usize>(
        region: u16,
        offset: u32,
        block: &'static mut Block<L>,
    ) -> Self {
        Self::new(region, offset, &mut block.0)
    }

    /// One buffer per element of `blocks`, all in region `region`, at offsets `i * size_of::<M>()`
    /// (the element's position in the array): how one `static` array becomes a ring's buffers.
    /// With `M = Block<L>` every typed view works; `[u8; L]` elements have no alignment
    /// guarantee.
    ///
    /// No `alloc`, no `unsafe`: `static_cell::ConstStaticCell` (or `cortex_m::singleton!`)
    /// hands out the `&'static mut` array once.
    ///
    /// ```
    /// use dmapickle_hal::{Block, BufferRing, DmaBuf};
    /// use static_cell::ConstStaticCell;
    ///
    /// static BLOCKS: ConstStaticCell<[Block<1024>; 4]> = ConstStaticCell::new([Block::ZERO; 4]);
    /// static RING: BufferRing<4> = BufferRing::new();
    ///
    /// let bufs = DmaBuf::split(1, BLOCKS.take()); // at boot; a second take() panics
    /// assert_eq!(bufs[3].descriptor(), dmapickle_core::Descriptor::new(1, 3072, 0));
    /// for buf in bufs {
    ///     RING.give(buf).unwrap(); // room for 4
    /// }
    /// assert_eq!(RING.free_len(), 4);
    /// ```
    pub fn split<M: AsMut<[u8]>, const N: usize>(
        region: u16,
        blocks: &'static mut [M; N],
    ) -> [DmaBuf; N] {
        let stride = core::mem::size_of::<M>();
        let mut i = 0usize;
        blocks.each_mut().map(|m| {
            let offset = u32::try_from(i.saturating_mul(stride)).unwrap_or(u32::MAX);
            i += 1;
            DmaBuf::new(region, offset, m.as_mut())
        })
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.mem.len()
    }

    /// Bytes filled (what a transfer sends).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole memory, to fill in place (e.g. by a peripheral-to-memory DMA or an ISR).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.mem
    }

    /// Mark the first `len` bytes as filled; over the capacity is [`Error::BufferLength`].
    pub fn set_len(&mut self, len: usize) -> Result<(), Error> {
        if len > self.mem.len() {
            return Err(Error::BufferLength);
        }
        self.len = len;
        Ok(())
    }

    /// Copy `bytes` in and mark them filled.
    pub fn fill_from(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let dst = self.mem.get_mut(..bytes.len()).ok_or(Error::BufferLength)?;
        dst.copy_from_slice(bytes);
        self.len = bytes.len();
        Ok(())
    }

    /// The filled bytes.
    pub fn filled(&self) -> &[u8] {
        self.mem.get(..self.len).unwrap_or(&[])
    }

    /// The descriptor of the filled bytes, for the encoder's `NEXT_BUFFER`. For an array, prefer
    /// [`DmaBuf::array_descriptor`], which sets the length from the shape.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.region, self.offset, self.len as u32)
    }

    /// The whole memory as `T`s, to fill in place (a trailing part that makes no whole `T` is
    /// left out). [`Error::BufferAlignment`] only for memory that is not aligned for `T`, which a
    /// buffer over [`Block`]s never is.
    ///
    /// ```
    /// use dmapickle_core::{Descriptor, Pickler};
    /// use dmapickle_hal::{Block, DmaBuf};
    /// use static_cell::ConstStaticCell;
    ///
    /// static BLOCK: ConstStaticCell<Block<1024>> = ConstStaticCell::new(Block::ZERO);
    /// let mut buf = DmaBuf::from_block(1, 0, BLOCK.take());
    /// let samples = buf.as_mut_slice_of::<i16>()?; // 512 samples: 128 rows x 4 channels
    /// for (i, s) in samples.iter_mut().enumerate() {
    ///     *s = i as i16 - 256;
    /// }
    /// let desc = buf.array_descriptor::<i16>(&[128, 4])?; // filled: 1024 bytes
    /// assert_eq!(desc, Descriptor::new(1, 0, 1024));
    /// assert_eq!(buf.filled_of::<i16>()?[..2], [-256, -255]);
    ///
    /// let mut out = [0u8; 64];
    /// let mut p = Pickler::new(&mut out);
    /// p.array::<i16>(desc, &[128, 4])?; // numpy int16 (128, 4) in native byte order
    /// # Ok::<(), dmapickle_hal::Error>(())
    /// ```
    pub fn as_mut_slice_of<T: Pod>(&mut self) -> Result<&mut [T], Error> {
        view::view_mut(self.mem)
    }

    /// The filled bytes as `T`s ([`Error::BufferLength`] if they are not a whole number of `T`s).
    pub fn filled_of<T: Pod>(&self) -> Result<&[T], Error> {
        view::view(self.filled())
    }

    /// Mark as filled exactly the bytes an array of `T` with `shape` takes (its item count times
    /// `size_of::<T>()`) and return their descriptor. [`Error::BufferLength`] if the array does
    /// not fit the buffer. Whatever `set_len` was (never called, or stale from the last message),
    /// the descriptor matches the shape, so `Pickler::array::<T>(desc, shape)` accepts it and
    /// the publisher sends exactly those bytes.
    pub fn array_descriptor<T: Pod>(&mut self, shape: &[usize]) -> Result<Descriptor, Error> {
        self.len = view::shaped_len::<T>(shape, self.mem.len())?;
        Ok(self.descriptor())
    }
}

// SAFETY: the pointer is into `'static` memory that this `DmaBuf` borrows exclusively, so it
// stays valid and does not move when the `DmaBuf` value moves; `len <= mem.len()` always holds
// (`set_len`/`fill_from` check it); and no `&self` method writes the memory.
unsafe impl ReadBuffer for DmaBuf {
    type Word = u8;

    unsafe fn read_buffer(&self) -> (*const u8, usize) {
        (self.mem.as_ptr(), self.len)
    }
}

/// One of two buffer types, so buffers of different types go out in one
/// [`Publisher::publish`](crate::Publisher::publish) call (nest it for three).
///
/// ```
/// use dmapickle_hal::{DmaBuf, Either, Outgoing, Publisher, WriteLink};
/// # fn main() -> Result<(), dmapickle_hal::Error> {
/// # let mut wire = [0u8; 128];
/// # let mut link = WriteLink::new(&mut wire[..]);
/// # let mem: &'static mut [u8; 8] = Box::leak(Box::new([0; 8]));
/// static CALIBRATION: [u8; 4] = [1, 2, 3, 4]; // a constant table, sent as it is
/// let mut samples = DmaBuf::new(1, 0, mem);
/// samples.fill_from(&[9; 8])?;
/// let descriptors = [samples.descriptor(), dmapickle_core::Descriptor::new(0, 0, 4).read_only()];
/// let sent = Publisher::new().publish(
///     &mut link,
///     b"\x80\x05\x97\x97\x98\x86.", // (buffer, read-only buffer)
///     &descriptors,
///     [
///         Outgoing::Inline(Either::Left(samples)),
///         Outgoing::Inline(Either::Right(&CALIBRATION[..])),
///     ],
/// )?;
/// let samples = sent.inline.into_iter().find_map(Either::left).unwrap(); // back to refill
/// # let _ = samples; Ok(()) }
/// ```
#[derive(Debug)]
pub enum Either<A, B> {
    /// A buffer of the first type.
    Left(A),
    /// A buffer of the second type.
    Right(B),
}

impl<A, B> Either<A, B> {
    /// The first type's buffer, if it is one.
    pub fn left(self) -> Option<A> {
        match self {
            Either::Left(a) => Some(a),
            Either::Right(_) => None,
        }
    }

    /// The second type's buffer, if it is one.
    pub fn right(self) -> Option<B> {
        match self {
            Either::Left(_) => None,
            Either::Right(b) => Some(b),
        }
    }
}

// SAFETY: each variant is a `ReadBuffer` that upholds the contract itself; `read_buffer` returns
// exactly what the contained buffer returns, and an `Either` has no `&mut self` method that
// could change it, so the pointer and length stay the same while the buffer is read.
unsafe impl<A, B> ReadBuffer for Either<A, B>
where
    A: ReadBuffer<Word = u8>,
    B: ReadBuffer<Word = u8>,
{
    type Word = u8;

    unsafe fn read_buffer(&self) -> (*const u8, usize) {
        match self {
            // SAFETY: forwarded; the caller upholds `read_buffer`'s contract for `self`, so
            // for the buffer inside it.
            Either::Left(a) => unsafe { a.read_buffer() },
            // SAFETY: as above.
            Either::Right(b) => unsafe { b.read_buffer() },
        }
    }
}

/// Free and ready queues of up to `N` [`DmaBuf`]s, shared by an acquisition ISR and the main loop
/// (double buffering with `N = 2`, a ring with more).
///
/// ```
/// use dmapickle_hal::{Block, BufferRing, DmaBuf};
/// use static_cell::ConstStaticCell;
/// static BLOCKS: ConstStaticCell<[Block<4>; 2]> = ConstStaticCell::new([Block::ZERO; 2]);
/// static RING: BufferRing<2> = BufferRing::new();
/// for buf in DmaBuf::split(1, BLOCKS.take()) {
///     RING.give(buf).unwrap();
/// }
/// // ISR: fill a free buffer, queue it.
/// let mut b = RING.take_free().unwrap();
/// b.fill_from(&[1, 2, 3, 4]).unwrap();
/// RING.push_ready(b).unwrap();
/// // Main loop: send it (here: just look), then give it back.
/// let b = RING.pop_ready().unwrap();
/// assert_eq!(b.filled(), &[1, 2, 3, 4]);
/// RING.give(b).unwrap();
/// assert_eq!(RING.free_len(), 2);
/// ```
pub struct BufferRing<const N: usize> {
    free: Mutex<RefCell<Deque<DmaBuf, N>>>,
    ready: Mutex<RefCell<Deque<DmaBuf, N>>>,
}

impl<const N: usize> BufferRing<N> {
    /// An empty ring; [`BufferRing::give`] it its buffers.
    pub const fn new() -> Self {
        BufferRing {
            free: Mutex::new(RefCell::new(Deque::new())),
            ready: Mutex::new(RefCell::new(Deque::new())),
        }
    }

    /// Put `buf` (emptied) on the free queue; hands it back if the queue is full.
    pub fn give(&self, mut buf: DmaBuf) -> Result<(), DmaBuf> {
        buf.len = 0;
        critical_section::with(|cs| self.free.borrow_ref_mut(cs).push_back(buf))
    }

    /// Take a free buffer to fill (ISR side), or `None` if all are ready or in flight.
    pub fn take_free(&self) -> Option<DmaBuf> {
        critical_section::with(|cs| self.free.borrow_ref_mut(cs).pop_front())
    }

    /// Queue a filled buffer for sending (ISR side); hands it back if the queue is full.
    pub fn push_ready(&self, buf: DmaBuf) -> Result<(), DmaBuf> {
        critical_section::with(|cs| self.ready.borrow_ref_mut(cs).push_back(buf))
    }

    /// The oldest filled buffer (main-loop side).
    pub fn pop_ready(&self) -> Option<DmaBuf> {
        critical_section::with(|cs| self.ready.borrow_ref_mut(cs).pop_front())
    }

    /// Buffers on the free queue.
    pub fn free_len(&self) -> usize {
        critical_section::with(|cs| self.free.borrow_ref(cs).len())
    }

    /// Buffers on the ready queue.
    pub fn ready_len(&self) -> usize {
        critical_section::with(|cs| self.ready.borrow_ref(cs).len())
    }
}

impl<const N: usize> Default for BufferRing<N> {
    fn default() -> Self {
        Self::new()
    }
}
