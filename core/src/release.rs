//! The release ring of a shared region: how the host hands shared buffers back to the device.
//!
//! A shared region starts with a control block the device initialises and both sides then use
//! through single-writer `u32` counters (`docs/wire-format.md`, "Release ring"):
//!
//! ```text
//! 0  magic "DPRL" | 4 version u16 | 6 capacity u16 (power of two)
//! 8  head u32  (releases posted, written by the host only)
//! 12 tail u32  (releases consumed, written by the device only)
//! 16 entries[capacity] of { offset u32, len u32 }
//! ```
//!
//! The host writes entry `head % capacity`, then publishes it by storing `head + 1` with release
//! ordering; the device loads `head` with acquire ordering, consumes entries `tail..head`, then
//! stores `tail` with release ordering. Both counters run freely and wrap at 2^32; the ring is full
//! when `head - tail == capacity`. This module holds the layout only (this crate has no `unsafe`);
//! the memory accesses (atomics on mapped memory) are `dmapickle-hal`'s `ring` module, one half
//! per end: `ring::DeviceEnd` (held by the device's `SharedRegion`) and `ring::HostEnd` (used by
//! `dmapickle-host` on the region it maps).

use crate::{Error, Result};

/// The control block's first four bytes.
pub const MAGIC: [u8; 4] = *b"DPRL";
/// Control block layout version.
pub const VERSION: u16 = 1;
/// Byte offset of the host-written `head` counter.
pub const HEAD_OFFSET: usize = 8;
/// Byte offset of the device-written `tail` counter.
pub const TAIL_OFFSET: usize = 12;
/// Byte offset of entry 0.
pub const ENTRIES_OFFSET: usize = 16;
/// Length of one release entry.
pub const ENTRY_LEN: usize = 8;
/// Largest ring capacity.
pub const MAX_CAPACITY: u16 = 1024;
/// Alignment of the control block's end: buffers start on a fresh cache line.
pub const CONTROL_ALIGN: usize = 64;

/// Bytes the control block occupies at the start of the region (buffers start at or after this).
///
/// ```
/// use dmapickle_core::release::control_len;
/// assert_eq!(control_len(4), 64);   // 16 + 4 * 8 = 48, rounded up to 64
/// assert_eq!(control_len(64), 576); // 16 + 512 = 528, rounded up to 576
/// ```
pub const fn control_len(capacity: u16) -> usize {
    let raw = ENTRIES_OFFSET + capacity as usize * ENTRY_LEN;
    raw.div_ceil(CONTROL_ALIGN) * CONTROL_ALIGN
}

/// The first 8 bytes of a control block for a ring of `capacity` entries.
///
/// ```
/// use dmapickle_core::release::preamble;
/// assert_eq!(preamble(4), Ok([0x44, 0x50, 0x52, 0x4C, 0x01, 0x00, 0x04, 0x00]));
/// assert!(preamble(3).is_err());
/// ```
pub fn preamble(capacity: u16) -> Result<[u8; 8]> {
    check_capacity(capacity)?;
    let [m0, m1, m2, m3] = MAGIC;
    let [v0, v1] = VERSION.to_le_bytes();
    let [c0, c1] = capacity.to_le_bytes();
    Ok([m0, m1, m2, m3, v0, v1, c0, c1])
}

/// Check a control block's first 8 bytes and return its capacity.
///
/// ```
/// use dmapickle_core::{Error, release::parse_preamble};
/// assert_eq!(parse_preamble(&[0x44, 0x50, 0x52, 0x4C, 1, 0, 4, 0]), Ok(4));
/// assert_eq!(parse_preamble(&[0; 8]), Err(Error::ReleaseRing));
/// ```
pub fn parse_preamble(bytes: &[u8; 8]) -> Result<u16> {
    let [m0, m1, m2, m3, v0, v1, c0, c1] = *bytes;
    if [m0, m1, m2, m3] != MAGIC || u16::from_le_bytes([v0, v1]) != VERSION {
        return Err(Error::ReleaseRing);
    }
    let capacity = u16::from_le_bytes([c0, c1]);
    check_capacity(capacity)?;
    Ok(capacity)
}

fn check_capacity(capacity: u16) -> Result<()> {
    if capacity == 0 || capacity > MAX_CAPACITY || !capacity.is_power_of_two() {
        return Err(Error::ReleaseRing);
    }
    Ok(())
}

/// Byte offset, inside the region, of the entry that counter value `counter` uses.
///
/// ```
/// use dmapickle_core::release::entry_offset;
/// assert_eq!(entry_offset(0, 4), 16);
/// assert_eq!(entry_offset(5, 4), 16 + 8);          // 5 % 4 == 1
/// assert_eq!(entry_offset(u32::MAX, 4), 16 + 24);  // wraps cleanly: 2^32 is a multiple of 4
/// ```
pub const fn entry_offset(counter: u32, capacity: u16) -> usize {
    let mask = (capacity as u32).wrapping_sub(1);
    ENTRIES_OFFSET + (counter & mask) as usize * ENTRY_LEN
}

/// Releases posted but not yet consumed: `head - tail`, wrapping.
pub const fn pending(head: u32, tail: u32) -> u32 {
    head.wrapping_sub(tail)
}

/// One release: the shared buffer at `offset` of `len` bytes is the device's again.
///
/// ```
/// use dmapickle_core::release::Release;
/// let r = Release { offset: 0x40, len: 16 };
/// assert_eq!(r.encode(), [0x40, 0, 0, 0, 0x10, 0, 0, 0]);
/// assert_eq!(Release::decode(&r.encode()), r);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Release {
    /// Offset of the released buffer in its region, as its descriptor named it.
    pub offset: u32,
    /// Length of the released buffer, as its descriptor named it.
    pub len: u32,
}

impl Release {
    /// The entry's 8 bytes.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let [o0, o1, o2, o3] = self.offset.to_le_bytes();
        let [l0, l1, l2, l3] = self.len.to_le_bytes();
        [o0, o1, o2, o3, l0, l1, l2, l3]
    }

    /// Parse an entry.
    pub fn decode(bytes: &[u8; ENTRY_LEN]) -> Self {
        let [o0, o1, o2, o3, l0, l1, l2, l3] = *bytes;
        Release {
            offset: u32::from_le_bytes([o0, o1, o2, o3]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
        }
    }
}
