//! Buffer pools: where an acquisition interrupt gets an empty buffer and puts a full one, and
//! where the main loop takes it to publish.
//!
//! [`Pool`] is the one interface; the crate gives it for both placements of a message's buffers:
//! a [`BufferRing`] of [`DmaBuf`]s (the buffers go out over the link, and come back when their
//! transfer completes) and a [`SharedPool`] over a [`SharedRegion`] (the buffers stay in memory
//! the host maps, and come back when the host releases them). [`Fill`] is what a producer does
//! with the buffer it holds. A producer written against `Pool` (an ADC interrupt, a sensor task)
//! runs over either placement unchanged.
//!
//! ```
//! use dmapickle_hal::pool::{Fill, Pool};
//! use dmapickle_hal::{BufferRing, DmaBuf};
//!
//! fn produce<P: Pool>(pool: &P, byte: u8) -> bool {
//!     let Some(mut buf) = pool.take_free() else { return false }; // all in flight: stall
//!     buf.as_mut_slice()[..4].fill(byte);
//!     assert!(buf.set_len(4));
//!     pool.push_ready(buf).is_ok()
//! }
//!
//! let mem: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
//! let (a, b) = mem.split_at_mut(32);
//! let ring: BufferRing<2> = BufferRing::new();
//! ring.give(DmaBuf::new(0, 0, a)).unwrap();
//! ring.give(DmaBuf::new(0, 32, b)).unwrap();
//! assert!(produce(&ring, 7) && produce(&ring, 8));
//! assert!(!produce(&ring, 9)); // both buffers are full and queued
//! assert_eq!(Pool::pop_ready(&ring).unwrap().filled(), [7; 4]);
//! ```

use core::cell::RefCell;

use critical_section::Mutex;
use heapless::Deque;

use crate::{BufferRing, DmaBuf, SharedBuf, SharedRegion};

/// A buffer a producer fills in place: [`DmaBuf`] and [`SharedBuf`].
pub trait Fill {
    /// The whole buffer, to write into.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// Marks the first `len` bytes filled; `false` (and nothing changed) if that exceeds the
    /// buffer.
    fn set_len(&mut self, len: usize) -> bool;
}

impl Fill for DmaBuf {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        DmaBuf::as_mut_slice(self)
    }
    fn set_len(&mut self, len: usize) -> bool {
        DmaBuf::set_len(self, len).is_ok()
    }
}

impl Fill for SharedBuf<'_> {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        SharedBuf::as_mut_slice(self)
    }
    fn set_len(&mut self, len: usize) -> bool {
        SharedBuf::set_len(self, len).is_ok()
    }
}

/// Where a producer gets empty buffers and puts full ones, and the consumer takes them. Every
/// method takes `&self` and is safe to call from an interrupt (each is one critical section).
pub trait Pool {
    /// The buffer type.
    type Buf: Fill;
    /// An empty buffer, or `None` if all are full, in flight or lent to the host.
    fn take_free(&self) -> Option<Self::Buf>;
    /// Gives back a buffer that will not be published (too small, dropped on purpose), so it is
    /// free again.
    fn recycle(&self, buf: Self::Buf);
    /// Queues a full buffer for the consumer; hands it back if the queue is full.
    fn push_ready(&self, buf: Self::Buf) -> Result<(), Self::Buf>;
    /// The oldest full buffer.
    fn pop_ready(&self) -> Option<Self::Buf>;
}

impl<const N: usize> Pool for BufferRing<N> {
    type Buf = DmaBuf;
    fn take_free(&self) -> Option<DmaBuf> {
        BufferRing::take_free(self)
    }
    fn recycle(&self, buf: DmaBuf) {
        // The ring had room for this buffer when it was taken, so it has room now.
        let _ = self.give(buf);
    }
    fn push_ready(&self, buf: DmaBuf) -> Result<(), DmaBuf> {
        BufferRing::push_ready(self, buf)
    }
    fn pop_ready(&self) -> Option<DmaBuf> {
        BufferRing::pop_ready(self)
    }
}

/// A shared region's slots as a [`Pool`]: free slots come from the region (after it polled the
/// host's releases), full ones wait in a queue of up to `N`. A [`SharedBuf`] is the only handle
/// to its slot, and `Send`, so it can sit in a queue the interrupt and the main loop share.
pub struct SharedPool<const N: usize> {
    region: &'static SharedRegion,
    ready: Mutex<RefCell<Deque<SharedBuf<'static>, N>>>,
}

impl<const N: usize> SharedPool<N> {
    /// A pool over `region`.
    pub const fn new(region: &'static SharedRegion) -> Self {
        SharedPool {
            region,
            ready: Mutex::new(RefCell::new(Deque::new())),
        }
    }

    /// The region.
    pub fn region(&self) -> &'static SharedRegion {
        self.region
    }
}

impl<const N: usize> Pool for SharedPool<N> {
    type Buf = SharedBuf<'static>;
    fn take_free(&self) -> Option<SharedBuf<'static>> {
        self.region.acquire()
    }
    fn recycle(&self, buf: SharedBuf<'static>) {
        // Dropping an unpublished `SharedBuf` frees its slot.
        drop(buf);
    }
    fn push_ready(&self, buf: SharedBuf<'static>) -> Result<(), SharedBuf<'static>> {
        critical_section::with(|cs| self.ready.borrow_ref_mut(cs).push_back(buf))
    }
    fn pop_ready(&self) -> Option<SharedBuf<'static>> {
        critical_section::with(|cs| self.ready.borrow_ref_mut(cs).pop_front())
    }
}
