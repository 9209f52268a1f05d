//! Receive memory: pooled blocks for large frames, a shared arena for small ones.

use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};

use super::BUFFER_ALIGN;

pub(super) fn align(n: usize) -> usize {
    n.div_ceil(BUFFER_ALIGN) * BUFFER_ALIGN
}

/// Receive blocks come back here when their last view is dropped, so steady-state reading
/// allocates (and page-faults) nothing.
#[derive(Debug, Default)]
pub(super) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

const POOL_KEEP: usize = 8;

impl Pool {
    pub(super) fn take(self: &Arc<Self>, size: usize) -> Block {
        let want = size + BUFFER_ALIGN - 1;
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let i = free.iter().position(|v| v.capacity() >= want);
            i.map(|i| free.swap_remove(i))
        };
        let mut buf = reused.unwrap_or_default();
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let start = buf
            .as_ptr()
            .align_offset(BUFFER_ALIGN)
            .min(BUFFER_ALIGN - 1);
        Block {
            buf,
            start,
            len: size,
            pool: Arc::clone(self),
        }
    }
}

/// Receive blocks of at most this many bytes are cut from the reader's [`Arena`].
pub(super) const ARENA_MAX: usize = 4 << 10;
/// Size of one arena allocation: a message kept alive keeps at most this much memory with it.
pub(super) const ARENA_SIZE: usize = 64 << 10;

/// Receive memory for small frames: many frames' blocks cut one after another from one
/// allocation, so a small frame costs no allocation and no lock, only the reference counts of
/// its views. Once the allocation is used up it is kept aside, and the next one is one of those
/// kept aside that every message cut from it has left (taken back whole, nothing zeroed), else a
/// new one. A batch of messages holds the allocation it was cut from while the next is in use,
/// so two or three take turns; at most [`ARENA_SPARES`] wait, older ones are freed with their
/// last view.
#[derive(Debug, Default)]
pub(super) struct Arena {
    /// The unused rest of the current allocation: zeroed, starting at a [`BUFFER_ALIGN`]
    /// boundary, its length a multiple of it.
    rest: BytesMut,
    /// Used-up allocations (each an empty handle on one), oldest first.
    spares: Vec<BytesMut>,
}

/// Used-up arena allocations kept for reuse: a message kept alive keeps at most its own with it,
/// the arena at most this many more.
const ARENA_SPARES: usize = 3;

impl Arena {
    /// `size` (at most [`ARENA_MAX`]) bytes starting at a [`BUFFER_ALIGN`] boundary.
    pub(super) fn take(&mut self, size: usize) -> BytesMut {
        let whole = align(size);
        self.room(whole);
        let mut block = self.cut(whole);
        block.truncate(size);
        block
    }

    /// The unused rest of the current allocation, at least `min` (at most [`ARENA_MAX`]) bytes
    /// (a fresh allocation if fewer are left), starting at a [`BUFFER_ALIGN`] boundary: a batch
    /// writes many frames' bytes here, then [`cut`](Self::cut)s them off in one block.
    pub(super) fn room(&mut self, min: usize) -> &mut [u8] {
        if self.rest.len() < min {
            self.renew();
        }
        &mut self.rest
    }

    /// The first `n` bytes of [`room`](Self::room) (`n` a multiple of [`BUFFER_ALIGN`], so the
    /// rest stays aligned), as a block of their own.
    pub(super) fn cut(&mut self, n: usize) -> BytesMut {
        debug_assert_eq!(n % BUFFER_ALIGN, 0);
        self.rest.split_to(n)
    }

    /// A fresh allocation: a used-up one no view is left of, taken back whole (no allocation,
    /// no zeroing), else a new, zeroed one.
    #[cold]
    fn renew(&mut self) {
        let mut old = std::mem::take(&mut self.rest);
        old.clear();
        self.spares.push(old);
        let free = self
            .spares
            .iter_mut()
            .position(|b| b.try_reclaim(ARENA_SIZE + BUFFER_ALIGN));
        if let Some(i) = free {
            self.rest = self.spares.remove(i);
            // SAFETY: `try_reclaim` made `rest` the whole allocation again, from its start to
            // its capacity; every byte of it was initialized (zeroed) when it was allocated
            // below, and has only been written with initialized bytes since.
            unsafe { self.rest.set_len(self.rest.capacity()) };
        } else {
            if self.spares.len() > ARENA_SPARES {
                self.spares.remove(0);
            }
            self.rest = BytesMut::zeroed(ARENA_SIZE + BUFFER_ALIGN);
            // All of it zeroed (its capacity may exceed what was asked): reclaiming relies on it.
            let cap = self.rest.capacity();
            self.rest.resize(cap, 0);
        }
        let pad = self
            .rest
            .as_ptr()
            .align_offset(BUFFER_ALIGN)
            .min(BUFFER_ALIGN);
        self.rest.advance(pad);
        self.rest
            .truncate(self.rest.len() / BUFFER_ALIGN * BUFFER_ALIGN);
    }
}

/// One frame's receive memory: cut from the arena, or a pooled block for a large frame.
pub(super) enum RecvBlock {
    Arena(BytesMut),
    Pooled(Block),
}

impl RecvBlock {
    /// The message's views share this.
    pub(super) fn freeze(self) -> Bytes {
        match self {
            RecvBlock::Arena(b) => b.freeze(),
            RecvBlock::Pooled(b) => Bytes::from_owner(b),
        }
    }
}

impl AsRef<[u8]> for RecvBlock {
    fn as_ref(&self) -> &[u8] {
        match self {
            RecvBlock::Arena(b) => b,
            RecvBlock::Pooled(b) => b.as_ref(),
        }
    }
}

impl AsMut<[u8]> for RecvBlock {
    fn as_mut(&mut self) -> &mut [u8] {
        match self {
            RecvBlock::Arena(b) => b,
            RecvBlock::Pooled(b) => b.as_mut(),
        }
    }
}

/// One frame's receive memory: the owner behind the message's `Bytes` views.
pub(super) struct Block {
    buf: Vec<u8>,
    start: usize,
    len: usize,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl AsMut<[u8]> for Block {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut free = self.pool.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOL_KEEP {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Arena, ARENA_MAX, ARENA_SIZE};
    use crate::stream::BUFFER_ALIGN;

    #[test]
    fn arena_blocks_are_aligned_and_survive_its_reuse() {
        let mut arena = Arena::default();
        let mut kept = Vec::new();
        for i in 0..3 * ARENA_SIZE / 64 {
            let size = 1 + i % 200;
            let mut b = arena.take(size);
            assert_eq!(b.len(), size);
            assert_eq!(
                b.as_ptr() as usize % BUFFER_ALIGN,
                0,
                "block {i} not aligned"
            );
            b.iter_mut().for_each(|x| *x = i as u8);
            let b = b.freeze();
            // Every other block is kept: the arena must not reuse memory still viewed.
            if i % 2 == 0 {
                kept.push((i as u8, b));
            }
        }
        for (v, b) in &kept {
            assert!(b.iter().all(|x| x == v));
        }
        // Nothing kept: the allocation is taken back, zeroing nothing, and still hands out
        // whole, aligned blocks.
        drop(kept);
        for _ in 0..3 * ARENA_SIZE / 64 {
            let b = arena.take(100);
            assert_eq!(b.len(), 100);
            assert_eq!(b.as_ptr() as usize % BUFFER_ALIGN, 0);
        }
    }

    #[test]
    fn a_batch_holding_the_last_allocation_does_not_force_a_new_one() {
        // Batches cut whole runs from the arena; the batch being filled holds the previous
        // allocation's last block when the arena renews. Two allocations take turns.
        let mut arena = Arena::default();
        let mut held = Vec::new();
        let mut bases = Vec::new();
        for _ in 0..8 {
            // A fresh allocation: where it starts.
            bases.push(arena.room(ARENA_MAX).as_ptr() as usize);
            // Use it up, holding its last block (the batch), dropping the rest.
            let mut last = None;
            while arena.room(0).len() >= ARENA_MAX {
                last = Some(arena.cut(ARENA_MAX).freeze());
            }
            held.push(last.expect("a block"));
            // The batch before the previous one is gone now.
            if held.len() > 1 {
                held.remove(0);
            }
        }
        let distinct: std::collections::BTreeSet<_> = bases.iter().collect();
        assert!(distinct.len() <= 3, "allocations not reused: {bases:x?}");
    }
}
