//! Hash collisions: the dict keys and set items whose hash the pickle chooses, counted per
//! container and hash in the key table the caller lends ([`Workspace::with_keys`]), against
//! [`Limits::max_collisions`].

use super::*;

/// The key table's tallies of a container: its keys of opaque hash, and its largest class of
/// keys with a known hash.
const TALLY_OPAQUE: i64 = 0;
const TALLY_LARGEST: i64 = 1;

impl Machine<'_, '_, '_, '_, '_> {
    /// Counts the hash work of a dict key or set item of expanded size `size` going into
    /// container `id`, and its collisions if its hash is chosen.
    pub(super) fn key(&mut self, id: u64, chosen: Option<i64>, size: u64) -> Check<u32> {
        self.hash(size)?;
        let Some(hash) = chosen else {
            return Ok(0);
        };
        self.chosen_keys += 1;
        let count = self.count_key(id, hash)?;
        self.collisions(count)?;
        Ok(count)
    }

    /// Counts one key with a chosen hash going into container `id`; returns how many keys of
    /// that container may now share its hash (in the first run: 0, nothing is counted per
    /// class). A key of opaque hash ([`OPAQUE_HASH`]) may share any hash: a class's count is its
    /// own keys and every opaque key of the container, an opaque key's is every opaque key and
    /// the largest class.
    pub(super) fn count_key(&mut self, id: u64, hash: i64) -> Check<u32> {
        if !self.use_keys {
            return Ok(0);
        }
        // The container's two tallies, under an id no container has (ids count up from 1).
        let tally = id | 1 << 63;
        if hash == OPAQUE_HASH {
            let opaque = self.key_entry(tally, TALLY_OPAQUE, |c| c.saturating_add(1))?;
            let largest = self.key_entry(tally, TALLY_LARGEST, |c| c)?;
            return Ok(opaque.saturating_add(largest));
        }
        let own = self.key_entry(id, hash, |c| c.saturating_add(1))?;
        self.key_entry(tally, TALLY_LARGEST, |c| c.max(own))?;
        let opaque = self.key_entry(tally, TALLY_OPAQUE, |c| c)?;
        Ok(own.saturating_add(opaque))
    }

    /// Sets the key table's count for (`id`, `hash`) (0 if absent) to `update(count)` and
    /// returns it; an entry is made only for a count above 0.
    fn key_entry(&mut self, id: u64, hash: i64, update: impl Fn(u32) -> u32) -> Check<u32> {
        let table = self.keys.get_mut(1..).unwrap_or(&mut []);
        let capacity = table.len();
        let full = |used: usize| Reason::Limit {
            limit: Limit::KeyTable,
            found: used as u64 + 1,
            max: capacity as u64,
        };
        if capacity == 0 {
            return Err(full(0));
        }
        let mixed = (hash as u64 ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let mut i = (mixed >> 17) as usize % capacity;
        for _ in 0..capacity {
            let Some(slot) = table.get_mut(i) else { break };
            if slot.epoch != self.epoch {
                let count = update(0);
                if count == 0 {
                    return Ok(0);
                }
                // Keep the table at most 7/8 full so probes stay short.
                if (self.keys_used + 1) * 8 > capacity * 7 {
                    return Err(full(self.keys_used));
                }
                *slot = KeySlot {
                    id,
                    hash,
                    count,
                    epoch: self.epoch,
                };
                self.keys_used += 1;
                return Ok(count);
            }
            if slot.id == id && slot.hash == hash {
                slot.count = update(slot.count);
                return Ok(slot.count);
            }
            i = if i + 1 == capacity { 0 } else { i + 1 };
        }
        Err(full(self.keys_used))
    }

    /// Refuses a class of more than `max_collisions` keys.
    pub(super) fn collisions(&self, count: u32) -> Check<()> {
        let max = self.limits().max_collisions;
        if count > max {
            return Err(Reason::Limit {
                limit: Limit::Collisions,
                found: u64::from(count),
                max: u64::from(max),
            });
        }
        Ok(())
    }
}
