//! Shared regions: memory the host maps, lent to it one buffer at a time.
//!
//! A [`SharedRegion`] starts with a release-ring control block ([`crate::ring`]), then
//! `slots` buffers of `slot_len` bytes, each at a 64-byte aligned offset. A slot is in exactly
//! one state:
//!
//! ```text
//! free --acquire--> writing (one SharedBuf owns it) --Publisher::publish--> lent (the host's)
//!   ^                    |  drop unpublished                                  |
//!   +--------------------+                 release ring entry naming it ------+
//! ```
//!
//! Only a [`SharedBuf`] can write a slot, and publishing moves the `SharedBuf` away, so the
//! device cannot write a buffer the host has not released (`hal/tests/cfail/`). The ring has at
//! least as many entries as the region has slots, so the host's ring can never be full.

use core::cell::Cell;
use core::ptr::NonNull;
use critical_section::Mutex;
use dmapickle_core::{release::control_len, Descriptor};

use crate::ring::DeviceEnd;
use crate::view::{self, Pod};
use crate::Error;

/// Most slots one region manages (one bit each in a `u32`).
pub const MAX_SLOTS: usize = 32;
const ALIGN: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
struct Slots {
    writing: u32,
    lent: u32,
}

/// A shared region on the device side.
///
/// ```
/// use dmapickle_hal::SharedRegion;
/// let mem: &'static mut [u8] = Box::leak(vec![0u8; 4096 + 64].into_boxed_slice());
/// # let mem = { let a = mem.as_ptr() as usize % 64; &mut mem[(64 - a) % 64..][..4096] };
/// let region = SharedRegion::new(2, mem, 1024, 4).unwrap();
/// assert_eq!(region.slots(), 3); // 4096 - 64 (control block) leaves room for 3 slots of 1 KiB
/// let mut a = region.acquire().unwrap();
/// a.fill_from(&[1, 2, 3]).unwrap();
/// assert_eq!(a.descriptor(), dmapickle_core::Descriptor::new(2, 64, 3));
/// drop(a); // not published: the slot is free again
/// assert_eq!(region.free(), 3);
/// ```
#[derive(Debug)]
pub struct SharedRegion {
    id: u16,
    base: NonNull<u8>,
    slot_len: usize,
    stride: usize,
    data_start: usize,
    slots: usize,
    ring: Mutex<DeviceEnd>,
    state: Mutex<Cell<Slots>>,
    stray: Mutex<Cell<u32>>,
}

// SAFETY: the raw base pointer is only dereferenced for slots that the `state` bitmask, updated
// in critical sections, grants to exactly one `SharedBuf`; the ring is only touched inside
// critical sections. So sharing `&SharedRegion` between the main loop and ISRs (or threads) is
// as safe as the critical-section implementation.
unsafe impl Sync for SharedRegion {}
// SAFETY: as above; the region owns no thread-bound state.
unsafe impl Send for SharedRegion {}

impl SharedRegion {
    /// A region over `mem` (64-byte aligned), with id `id`, buffers of `slot_len` bytes and a
    /// release ring of `ring_capacity` entries (a power of two, at least the number of slots).
    /// Writes a fresh control block; do this before the first frame that names the region.
    pub fn new(
        id: u16,
        mem: &'static mut [u8],
        slot_len: usize,
        ring_capacity: u16,
    ) -> Result<Self, Error> {
        let len = mem.len();
        // SAFETY: `mem` is borrowed exclusively for `'static`, so it stays valid and nothing
        // else in this program accesses it.
        unsafe { Self::from_raw_parts(id, mem.as_mut_ptr(), len, slot_len, ring_capacity) }
    }

    /// As [`SharedRegion::new`], over raw memory (e.g. PSRAM at a fixed address, a file mapping).
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of `len` bytes for the region's lifetime, and
    /// be accessed by nothing else in this program meanwhile (the host, another bus master or
    /// process, follows the release-ring protocol).
    pub unsafe fn from_raw_parts(
        id: u16,
        base: *mut u8,
        len: usize,
        slot_len: usize,
        ring_capacity: u16,
    ) -> Result<Self, Error> {
        if !(base as usize).is_multiple_of(ALIGN) {
            return Err(Error::RegionAlignment);
        }
        let data_start = control_len(ring_capacity);
        let stride = slot_len.div_ceil(ALIGN).saturating_mul(ALIGN);
        if slot_len == 0 || len < data_start || u32::try_from(len).is_err() {
            return Err(Error::RegionSize);
        }
        let slots = ((len - data_start) / stride).min(MAX_SLOTS);
        if slots == 0 || slots > usize::from(ring_capacity) {
            return Err(Error::RegionSize);
        }
        // SAFETY: forwarded from this function's contract; the control block lies inside `len`.
        let ring = unsafe { DeviceEnd::init(base, len, ring_capacity)? };
        Ok(SharedRegion {
            id,
            base: NonNull::new(base).ok_or(Error::RegionAlignment)?,
            slot_len,
            stride,
            data_start,
            slots,
            ring: Mutex::new(ring),
            state: Mutex::new(Cell::new(Slots::default())),
            stray: Mutex::new(Cell::new(0)),
        })
    }

    /// The region id descriptors name.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Capacity of each slot in bytes.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    fn slot_offset(&self, slot: usize) -> usize {
        self.data_start + slot * self.stride
    }

    /// Consume the host's releases: each lent slot named by one becomes free. Returns how many
    /// entries were read. Entries naming no lent slot are counted in
    /// [`SharedRegion::stray_releases`] and otherwise ignored.
    pub fn poll_releases(&self) -> u32 {
        critical_section::with(|cs| {
            let ring = self.ring.borrow(cs);
            let state = self.state.borrow(cs);
            let stray = self.stray.borrow(cs);
            ring.consume(|r| {
                let mut s = state.get();
                let hit = (0..self.slots).find(|&i| {
                    self.slot_offset(i) == r.offset as usize
                        && r.len as usize <= self.slot_len
                        && s.lent & (1 << i) != 0
                });
                match hit {
                    Some(i) => s.lent &= !(1 << i),
                    None => stray.set(stray.get().wrapping_add(1)),
                }
                state.set(s);
            })
        })
    }

    /// A free slot to write, after polling releases; `None` while every slot is being written or
    /// lent to the host.
    pub fn acquire(&self) -> Option<SharedBuf<'_>> {
        self.poll_releases();
        let slot = critical_section::with(|cs| {
            let state = self.state.borrow(cs);
            let mut s = state.get();
            let busy = s.writing | s.lent;
            let i = (0..self.slots).find(|&i| busy & (1 << i) == 0)?;
            s.writing |= 1 << i;
            state.set(s);
            Some(i)
        })?;
        let offset = self.slot_offset(slot);
        // SAFETY: offset + slot_len <= len (slots were sized to fit), so the pointer stays in
        // the region.
        let ptr = unsafe { self.base.as_ptr().add(offset) };
        Some(SharedBuf {
            region: self,
            slot,
            ptr: NonNull::new(ptr)?,
            offset: offset as u32,
            len: 0,
        })
    }

    /// Slots neither being written nor lent (releases not yet polled count as lent).
    pub fn free(&self) -> usize {
        critical_section::with(|cs| {
            let s = self.state.borrow(cs).get();
            self.slots - (s.writing | s.lent).count_ones() as usize
        })
    }

    /// Slots lent to the host and not yet released.
    pub fn lent(&self) -> usize {
        critical_section::with(|cs| self.state.borrow(cs).get().lent.count_ones() as usize)
    }

    /// Release entries that named no lent slot (a host bug or a corrupted ring).
    pub fn stray_releases(&self) -> u32 {
        critical_section::with(|cs| self.stray.borrow(cs).get())
    }

    fn finish_writing(&self, slot: usize, lend: bool) {
        critical_section::with(|cs| {
            let state = self.state.borrow(cs);
            let mut s = state.get();
            s.writing &= !(1 << slot);
            if lend {
                s.lent |= 1 << slot;
            }
            state.set(s);
        });
    }
}

/// One slot of a [`SharedRegion`], writable by its owner until it is published.
///
/// Dropping it unpublished frees the slot. [`crate::Publisher::publish`] takes it by value and
/// lends the slot to the host; there is no way back to a writable handle except a fresh
/// [`SharedRegion::acquire`] after the host released it.
#[derive(Debug)]
pub struct SharedBuf<'r> {
    region: &'r SharedRegion,
    slot: usize,
    ptr: NonNull<u8>,
    offset: u32,
    len: usize,
}

// SAFETY: a `SharedBuf` is the only handle to its slot (the region's state, changed only inside
// critical sections, hands each slot to one `SharedBuf` at a time), `ptr` points into the region's
// memory, which outlives `'r`, and `&SharedRegion` is `Send` because `SharedRegion` is `Sync`.
// Moving it to another thread, or between an ISR and the main loop, moves that exclusive access.
unsafe impl Send for SharedBuf<'_> {}

impl SharedBuf<'_> {
    /// The whole slot, to fill in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the slot's `writing` bit is set for this SharedBuf only (set in `acquire`,
        // cleared in drop/lend), the slot lies inside the region's valid memory, and `&mut self`
        // makes the returned borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.region.slot_len) }
    }

    /// The filled bytes.
    pub fn filled(&self) -> &[u8] {
        // SAFETY: as in `as_mut_slice`; `len <= slot_len` always holds.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Mark the first `len` bytes filled; over the slot length is [`Error::BufferLength`].
    pub fn set_len(&mut self, len: usize) -> Result<(), Error> {
        if len > self.region.slot_len {
            return Err(Error::BufferLength);
        }
        self.len = len;
        Ok(())
    }

    /// Copy `bytes` in and mark them filled.
    pub fn fill_from(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.set_len(bytes.len())?;
        self.as_mut_slice()
            .get_mut(..bytes.len())
            .ok_or(Error::BufferLength)?
            .copy_from_slice(bytes);
        Ok(())
    }

    /// Bytes filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor of the filled bytes: `(region id, offset in region, len)`.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.region.id, self.offset, self.len as u32)
    }

    /// The whole slot as `T`s, to fill in place. Slots start 64-byte aligned, so this never
    /// fails for alignment (see [`DmaBuf::as_mut_slice_of`](crate::DmaBuf::as_mut_slice_of)).
    pub fn as_mut_slice_of<T: Pod>(&mut self) -> Result<&mut [T], Error> {
        view::view_mut(self.as_mut_slice())
    }

    /// The filled bytes as `T`s ([`Error::BufferLength`] if they are not a whole number of `T`s).
    pub fn filled_of<T: Pod>(&self) -> Result<&[T], Error> {
        view::view(self.filled())
    }

    /// Mark as filled exactly the bytes an array of `T` with `shape` takes and return their
    /// descriptor (see [`DmaBuf::array_descriptor`](crate::DmaBuf::array_descriptor)).
    pub fn array_descriptor<T: Pod>(&mut self, shape: &[usize]) -> Result<Descriptor, Error> {
        self.len = view::shaped_len::<T>(shape, self.region.slot_len)?;
        Ok(self.descriptor())
    }

    /// Hand the slot to the host (publisher only): the `SharedBuf` is consumed.
    pub(crate) fn lend(self) {
        let me = core::mem::ManuallyDrop::new(self);
        me.region.finish_writing(me.slot, true);
    }
}

impl Drop for SharedBuf<'_> {
    fn drop(&mut self) {
        self.region.finish_writing(self.slot, false);
    }
}
