//! A simulated shared region over a file mapping (`std`): the device code's [`SharedRegion`] on a
//! file the host maps too, e.g. in `/dev/shm`, just like QEMU's file-backed PSRAM.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

use memmap2::MmapMut;

use crate::SharedRegion;

/// A [`SharedRegion`] over a shared, writable mapping of a file.
#[derive(Debug)]
pub struct FileRegion {
    // Declared before `map` so it is dropped first: it points into the mapping.
    region: SharedRegion,
    // Never dereferenced as a slice while the region lives: SharedBufs hold `&mut` into it.
    _map: MmapMut,
    len: usize,
}

impl FileRegion {
    /// Create (or truncate) `path` to `len` bytes, map it shared, and initialise a region with
    /// id `id` (see [`SharedRegion::new`] for `slot_len` and `ring_capacity`).
    pub fn create(
        path: &Path,
        id: u16,
        len: usize,
        slot_len: usize,
        ring_capacity: u16,
    ) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len as u64)?;
        // SAFETY: the file was just created for this region; the only other user is the host
        // process, which follows the release-ring protocol (it writes only the ring's head and
        // entries, and reads only lent slots). Truncation by another process would be a bug
        // outside this program, as for any shared mapping.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        let base = map.as_mut_ptr();
        // SAFETY: the mapping is page-aligned, `len` bytes long, and lives in `self._map` for as
        // long as `self.region` (dropped first); nothing else in this program touches it.
        let region =
            unsafe { SharedRegion::from_raw_parts(id, base, len, slot_len, ring_capacity) }
                .map_err(io::Error::other)?;
        Ok(FileRegion {
            region,
            _map: map,
            len,
        })
    }

    /// The region (device side).
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a valid region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
