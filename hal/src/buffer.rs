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
//! push or pop, O(1)).

use core::cell::RefCell;
use critical_section::Mutex;
use dmapickle_core::Descriptor;
use embedded_dma::ReadBuffer;
use heapless::Deque;

use crate::Error;

/// A DMA buffer: `'static` memory, the length filled so far, and where it lives (region id and
/// offset, for its [`Descriptor`]).
///
/// ```
/// use dmapickle_hal::DmaBuf;
/// let mut buf = DmaBuf::new(1, 0x100, Box::leak(Box::new([0u8; 8])));
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

    /// The descriptor of the filled bytes, for the encoder's `NEXT_BUFFER`.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.region, self.offset, self.len as u32)
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

/// Free and ready queues of up to `N` [`DmaBuf`]s, shared by an acquisition ISR and the main loop
/// (double buffering with `N = 2`, a ring with more).
///
/// ```
/// use dmapickle_hal::{BufferRing, DmaBuf};
/// static RING: BufferRing<2> = BufferRing::new();
/// RING.give(DmaBuf::new(1, 0, Box::leak(Box::new([0u8; 4])))).unwrap();
/// RING.give(DmaBuf::new(1, 4, Box::leak(Box::new([0u8; 4])))).unwrap();
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
