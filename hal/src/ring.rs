//! The release ring in shared memory: both halves of the protocol of `docs/wire-format.md`
//! ("Shared regions and the release ring"), on raw memory the device and the host both see.
//!
//! Each end holds its own half, and each half writes only its own counter: the device's
//! [`DeviceEnd`] [`init`](DeviceEnd::init)s the control block and
//! [`consume`](DeviceEnd::consume)s releases (it writes `tail`); the host's [`HostEnd`]
//! [`attach`](HostEnd::attach)es and [`post`](HostEnd::post)s them (it writes `head`).
//! `dmapickle-host` maps the region and uses `HostEnd`; a device's `SharedRegion` holds the
//! `DeviceEnd`. The layout is `dmapickle_core::release`; this module is the memory access, the
//! one place with `unsafe` for it. Counters are `AtomicU32`s (load/store only, so it works on
//! `thumbv6m` too), entries are volatile accesses ordered by the counters' release/acquire pairs.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use dmapickle_core::release::{
    self, control_len, entry_offset, parse_preamble, preamble, Release, HEAD_OFFSET, TAIL_OFFSET,
};

use crate::Error;

/// A release ring's control block in memory shared with another bus master or process: what both
/// ends read.
#[derive(Debug)]
struct Control {
    base: NonNull<u8>,
    capacity: u16,
}

/// The device's end of a release ring: it initialises the control block and consumes the host's
/// releases (the only writer of `tail`).
///
/// `Send` but not `Sync`: one writer of its counter, so it is used from one thread (or inside a
/// critical section) at a time.
#[derive(Debug)]
pub struct DeviceEnd(Control);

/// The host's end of a release ring: it attaches to the control block a device initialised and
/// posts releases (the only writer of `head`). `Send`, not `Sync`, as [`DeviceEnd`].
#[derive(Debug)]
pub struct HostEnd(Control);

// SAFETY: an end only holds a pointer to memory its creator promised stays valid; moving it to
// another thread moves the single-writer role with it (it is not `Sync`).
unsafe impl Send for DeviceEnd {}
// SAFETY: as for `DeviceEnd`.
unsafe impl Send for HostEnd {}

fn check(base: *mut u8, len: usize, capacity: u16) -> Result<NonNull<u8>, Error> {
    let base = NonNull::new(base).ok_or(Error::RegionAlignment)?;
    if !(base.as_ptr() as usize).is_multiple_of(4) {
        return Err(Error::RegionAlignment);
    }
    if len < control_len(capacity) {
        return Err(Error::RegionSize);
    }
    Ok(base)
}

impl DeviceEnd {
    /// Write a fresh control block for `capacity` entries at `base` (head = tail =
    /// 0, entries zeroed).
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of `len` bytes for as long as the returned ring
    /// (and any ring attached to the same memory) is used, and nothing but release rings may
    /// access the first `control_len(capacity)` bytes meanwhile.
    pub unsafe fn init(base: *mut u8, len: usize, capacity: u16) -> Result<Self, Error> {
        let head = preamble(capacity)?;
        let base = check(base, len, capacity)?;
        for (i, b) in head.iter().enumerate() {
            // SAFETY: i < 8 <= control_len(capacity) <= len, checked above.
            unsafe { base.as_ptr().add(i).write_volatile(*b) };
        }
        for i in 8..control_len(capacity) {
            // SAFETY: i < control_len(capacity) <= len.
            unsafe { base.as_ptr().add(i).write_volatile(0) };
        }
        let ring = Control { base, capacity };
        ring.counter(HEAD_OFFSET).store(0, Ordering::Release);
        ring.counter(TAIL_OFFSET).store(0, Ordering::Release);
        Ok(DeviceEnd(ring))
    }

    /// Hand every posted release to `f`, oldest first; returns how many.
    ///
    /// A host that claims more than `capacity` pending entries (a corrupted counter) has only the
    /// last `capacity` of them read; each entry is read exactly once per counter value.
    pub fn consume(&self, mut f: impl FnMut(Release)) -> u32 {
        let ring = &self.0;
        let head = ring.head();
        let mut tail = ring.counter(TAIL_OFFSET).load(Ordering::Relaxed);
        let pending = release::pending(head, tail);
        if pending > u32::from(ring.capacity) {
            tail = head.wrapping_sub(u32::from(ring.capacity));
        }
        let mut n = 0;
        while tail != head {
            let at = entry_offset(tail, ring.capacity);
            let mut e = [0u8; release::ENTRY_LEN];
            for (i, b) in e.iter_mut().enumerate() {
                // SAFETY: at + 8 <= control_len(capacity) <= len.
                *b = unsafe { ring.base.as_ptr().add(at + i).read_volatile() };
            }
            f(Release::decode(&e));
            tail = tail.wrapping_add(1);
            n += 1;
        }
        ring.counter(TAIL_OFFSET).store(tail, Ordering::Release);
        n
    }
}

impl HostEnd {
    /// Use the control block a device initialised at `base`.
    ///
    /// # Safety
    /// As for [`DeviceEnd::init`].
    pub unsafe fn attach(base: *mut u8, len: usize) -> Result<Self, Error> {
        let base = check(base, len, 1)?;
        let mut head = [0u8; 8];
        for (i, b) in head.iter_mut().enumerate() {
            // SAFETY: i < 8 <= control_len(1) <= len, checked above.
            *b = unsafe { base.as_ptr().add(i).read_volatile() };
        }
        let capacity = parse_preamble(&head)?;
        check(base.as_ptr(), len, capacity)?;
        Ok(HostEnd(Control { base, capacity }))
    }

    /// Post one release. Hands it back when the ring is full.
    pub fn post(&self, r: Release) -> Result<(), Release> {
        let ring = &self.0;
        let head = ring.counter(HEAD_OFFSET).load(Ordering::Relaxed);
        if release::pending(head, ring.tail()) >= u32::from(ring.capacity) {
            return Err(r);
        }
        let at = entry_offset(head, ring.capacity);
        for (i, b) in r.encode().iter().enumerate() {
            // SAFETY: at + 8 <= control_len(capacity) <= len (entry_offset masks the counter).
            unsafe { ring.base.as_ptr().add(at + i).write_volatile(*b) };
        }
        ring.counter(HEAD_OFFSET)
            .store(head.wrapping_add(1), Ordering::Release);
        Ok(())
    }
}

/// What both ends read: the ring's geometry and its two counters.
macro_rules! counters {
    ($end:ty) => {
        impl $end {
            /// Entries in the ring.
            pub fn capacity(&self) -> u16 {
                self.0.capacity
            }

            /// Releases posted so far (free-running), with acquire ordering.
            pub fn head(&self) -> u32 {
                self.0.head()
            }

            /// Releases consumed so far (free-running), with acquire ordering.
            pub fn tail(&self) -> u32 {
                self.0.tail()
            }
        }
    };
}
counters!(DeviceEnd);
counters!(HostEnd);

impl Control {
    fn counter(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: offset is HEAD_OFFSET or TAIL_OFFSET (< 16 <= control_len), the base is 4-byte
        // aligned (checked at construction) so the u32 is too, the memory is valid for the
        // ring's lifetime (constructor contract), and every access to it is atomic.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast::<u32>()) }
    }

    fn head(&self) -> u32 {
        self.counter(HEAD_OFFSET).load(Ordering::Acquire)
    }

    fn tail(&self) -> u32 {
        self.counter(TAIL_OFFSET).load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(64))]
    struct Mem([u8; 128]);

    #[test]
    fn post_consume_wraps_around_u32() {
        let mut mem = Mem([0xAA; 128]);
        let p = mem.0.as_mut_ptr();
        // SAFETY: `mem` outlives both rings and is used only through them.
        let dev = unsafe { DeviceEnd::init(p, 128, 4) }.unwrap();
        // SAFETY: as above.
        let host = unsafe { HostEnd::attach(p, 128) }.unwrap();
        assert_eq!(host.capacity(), 4);
        // Start both counters just below the wrap.
        dev.0
            .counter(HEAD_OFFSET)
            .store(u32::MAX - 2, Ordering::Release);
        dev.0
            .counter(TAIL_OFFSET)
            .store(u32::MAX - 2, Ordering::Release);
        let mut next = 0u32;
        let mut seen = 0u32;
        for round in 0..10 {
            for _ in 0..(round % 4 + 1) {
                host.post(Release {
                    offset: next,
                    len: 1,
                })
                .unwrap();
                next += 1;
            }
            if round % 4 == 3 {
                assert!(
                    host.post(Release { offset: 99, len: 1 }).is_err(),
                    "ring full"
                );
            }
            dev.consume(|r| {
                assert_eq!(r.offset, seen);
                seen += 1;
            });
        }
        assert_eq!(seen, next);
        assert_eq!(dev.head(), (u32::MAX - 2).wrapping_add(next));
        assert_eq!(dev.tail(), dev.head());
    }

    #[test]
    fn attach_refuses_garbage_and_bad_geometry() {
        let mut mem = Mem([0; 128]);
        let p = mem.0.as_mut_ptr();
        // SAFETY: `mem` outlives the calls.
        unsafe {
            assert_eq!(
                HostEnd::attach(p, 128).unwrap_err(),
                Error::Frame(dmapickle_core::Error::ReleaseRing)
            );
            assert_eq!(DeviceEnd::init(p, 40, 4).unwrap_err(), Error::RegionSize);
            assert_eq!(
                DeviceEnd::init(p.add(1), 120, 4).unwrap_err(),
                Error::RegionAlignment
            );
            assert!(DeviceEnd::init(p, 128, 3).is_err());
        }
    }
}
