//! Shared regions on the host: a map `region id -> mapped file`, zero-copy views of lent buffers,
//! and the release hook that hands each buffer back to the device when its last view is dropped.
//!
//! The device side is `dmapickle_hal::SharedRegion`; the protocol is `docs/wire-format.md`,
//! "Shared regions and the release ring". The memory accesses to the ring are
//! `dmapickle_hal::ring::HostEnd`, the host's half of the code the device runs (`DeviceEnd`).

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use dmapickle_core::release::{control_len, Release};
use dmapickle_core::Descriptor;
use dmapickle_hal::ring::HostEnd;
use memmap2::MmapRaw;

/// One mapped shared region.
#[derive(Debug)]
pub struct Region {
    id: u16,
    map: MmapRaw,
    ring: Mutex<RingState>,
}

#[derive(Debug, Default)]
struct RingState {
    ring: Option<HostEnd>,
    /// Releases the ring had no room for yet, oldest first.
    pending: VecDeque<Release>,
    /// Bumped when the device restarts: views of an older epoch release nothing.
    epoch: u64,
    posted: u64,
    outstanding: u64,
}

/// Counters of one region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// Releases written to the ring.
    pub posted: u64,
    /// Views handed out whose buffer is not released yet.
    pub outstanding: u64,
    /// Releases waiting for room in the ring.
    pub pending: usize,
}

impl Region {
    /// Map `path` (shared, read-write) as region `id`. The device initialises the control block;
    /// the ring is attached when the first frame naming the region arrives.
    pub fn open(id: u16, path: &Path) -> io::Result<Arc<Self>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let map = MmapRaw::map_raw(&file)?;
        if map.len() < control_len(1) || u32::try_from(map.len()).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("region {id}: {} bytes is not a shared region", map.len()),
            ));
        }
        Ok(Arc::new(Region {
            id,
            map,
            ring: Mutex::new(RingState::default()),
        }))
    }

    /// The region id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never: `open` refuses that).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    fn state(&self) -> MutexGuard<'_, RingState> {
        // A panic while holding this lock cannot leave the state inconsistent (plain counters).
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn attach<'s>(&self, slot: &'s mut Option<HostEnd>) -> Result<&'s HostEnd, RegionError> {
        if slot.is_none() {
            // SAFETY: the mapping lives as long as `self`, which owns the ring state; the device
            // initialised the control block before sending a frame naming this region, and only
            // ring code touches the control block.
            let ring =
                unsafe { HostEnd::attach(self.map.as_mut_ptr(), self.map.len()) }.map_err(|e| {
                    RegionError::Ring {
                        region: self.id,
                        error: e,
                    }
                })?;
            *slot = Some(ring);
        }
        slot.as_ref()
            .ok_or(RegionError::Unmapped { region: self.id })
    }

    /// The device restarted: forget the ring (it is re-initialised) and the releases owed for
    /// buffers of the previous session.
    pub fn restart(&self) {
        let mut st = self.state();
        st.ring = None;
        st.pending.clear();
        st.outstanding = 0;
        st.epoch += 1;
    }

    /// A zero-copy view of the shared buffer `d`; its bytes go back to the device (a release
    /// entry in the ring) when the last clone of the returned `Bytes` is dropped.
    pub fn view(self: &Arc<Self>, d: &Descriptor) -> Result<Bytes, RegionError> {
        let mut st = self.state();
        let ring = self.attach(&mut st.ring)?;
        let data_start = control_len(ring.capacity());
        let end = d.end().ok_or(RegionError::OutOfBounds {
            region: self.id,
            offset: d.offset,
            len: d.len,
        })?;
        if (d.offset as usize) < data_start || end as usize > self.map.len() {
            return Err(RegionError::OutOfBounds {
                region: self.id,
                offset: d.offset,
                len: d.len,
            });
        }
        st.outstanding += 1;
        let epoch = st.epoch;
        drop(st);
        Ok(Bytes::from_owner(SharedView {
            region: Arc::clone(self),
            offset: d.offset as usize,
            len: d.len as usize,
            epoch,
        }))
    }

    fn release(&self, r: Release, epoch: u64) {
        let mut st = self.state();
        if st.epoch != epoch {
            return; // the device restarted since: it owns this memory again
        }
        st.outstanding = st.outstanding.saturating_sub(1);
        st.pending.push_back(r);
        self.flush_locked(&mut st);
    }

    /// Post releases that waited for room in the ring. The reader calls this once per frame.
    pub fn flush(&self) {
        let mut st = self.state();
        self.flush_locked(&mut st);
    }

    fn flush_locked(&self, st: &mut RingState) {
        let RingState {
            ring,
            pending,
            posted,
            ..
        } = st;
        let Ok(ring) = self.attach(ring) else { return };
        while let Some(r) = pending.front().copied() {
            if ring.post(r).is_err() {
                break; // full: the rest waits for the device to consume
            }
            pending.pop_front();
            *posted += 1;
        }
    }

    /// The region's counters.
    pub fn stats(&self) -> RegionStats {
        let st = self.state();
        RegionStats {
            posted: st.posted,
            outstanding: st.outstanding,
            pending: st.pending.len(),
        }
    }
}

/// Owner of a shared-buffer view: keeps the mapping alive, releases the buffer on drop.
struct SharedView {
    region: Arc<Region>,
    offset: usize,
    len: usize,
    epoch: u64,
}

impl AsRef<[u8]> for SharedView {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `offset + len <= map.len()` was checked in `Region::view`; the mapping lives as
        // long as `self.region`; the device does not write a lent buffer before its release,
        // which is only posted when this view is dropped (release-ring protocol).
        unsafe { std::slice::from_raw_parts(self.region.map.as_ptr().add(self.offset), self.len) }
    }
}

impl Drop for SharedView {
    fn drop(&mut self) {
        let r = Release {
            offset: self.offset as u32,
            len: self.len as u32,
        };
        self.region.release(r, self.epoch);
    }
}

/// Why a shared buffer cannot be viewed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegionError {
    /// The frame names a region the reader has no mapping for.
    Unmapped {
        /// The region id.
        region: u16,
    },
    /// The buffer lies outside the region or over its control block.
    OutOfBounds {
        /// The region id.
        region: u16,
        /// The descriptor's offset.
        offset: u32,
        /// The descriptor's length.
        len: u32,
    },
    /// The region has no valid release ring (the device has not initialised it).
    Ring {
        /// The region id.
        region: u16,
        /// What the ring check said.
        error: dmapickle_hal::Error,
    },
}

impl std::fmt::Display for RegionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegionError::Unmapped { region } => write!(f, "frame names unmapped region {region}"),
            RegionError::OutOfBounds {
                region,
                offset,
                len,
            } => write!(
                f,
                "shared buffer {offset:#x}+{len} outside region {region} or over its control block"
            ),
            RegionError::Ring { region, error } => {
                write!(f, "region {region} has no valid release ring: {error}")
            }
        }
    }
}

impl std::error::Error for RegionError {}

/// The regions a reader resolves shared descriptors against: `region id -> mapped file`.
#[derive(Debug, Default, Clone)]
pub struct RegionMap {
    regions: HashMap<u16, Arc<Region>>,
}

impl RegionMap {
    /// No regions (every shared descriptor is refused).
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `path` as region `id`.
    pub fn open(&mut self, id: u16, path: &Path) -> io::Result<Arc<Region>> {
        let r = Region::open(id, path)?;
        self.regions.insert(id, Arc::clone(&r));
        Ok(r)
    }

    /// Add an already mapped region.
    pub fn insert(&mut self, region: Arc<Region>) {
        self.regions.insert(region.id(), region);
    }

    /// The region with id `id`.
    pub fn get(&self, id: u16) -> Option<&Arc<Region>> {
        self.regions.get(&id)
    }

    /// Whether no region is mapped.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// A view of shared buffer `d`.
    pub fn view(&self, d: &Descriptor) -> Result<Bytes, RegionError> {
        self.regions
            .get(&d.region)
            .ok_or(RegionError::Unmapped { region: d.region })?
            .view(d)
    }

    /// The device restarted: every region forgets its ring and owed releases.
    pub fn restart(&self) {
        self.regions.values().for_each(|r| r.restart());
    }

    /// Retry releases that waited for room.
    pub fn flush(&self) {
        self.regions.values().for_each(|r| r.flush());
    }
}
