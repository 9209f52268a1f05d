//! Bookkeeping of the simulated ADC's block buffers: which buffer the acquisition ISR fills,
//! which are ready to publish, which are in flight (being sent, or held by the host).
//!
//! This is only the state machine, over slot numbers; the board code owns the buffers
//! themselves and uses [`BlockRing`] inside a critical section to decide who may touch which
//! buffer. A slot moves `Free -> Filling -> Ready -> InFlight -> Free`:
//!
//! - the ISR ([`BlockRing::acquire`]) writes rows only into the one `Filling` slot, and marks it
//!   `Ready` with the next sequence number when the block is complete;
//! - the main loop ([`BlockRing::take_ready`]) takes the oldest `Ready` slot, publishes it, and
//!   frees it with [`BlockRing::release`] once its transfer completed (inline) or the host
//!   released it (shared region).
//!
//! When no slot is free the ISR *stalls*: it acquires nothing and counts the tick in
//! [`BlockRing::stalls`]. A real ADC would overrun and lose samples; the simulation instead keeps
//! the signal continuous, so sequence numbers never skip and the host's checks stay exact.

/// What one slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Slot {
    /// Nobody uses the buffer.
    Free,
    /// The ISR is writing rows `0..rows_done` of block `seq` into it.
    Filling {
        /// Block sequence number.
        seq: u32,
        /// Rows written so far.
        rows_done: u32,
    },
    /// Block `seq` is complete and waits to be published.
    Ready {
        /// Block sequence number.
        seq: u32,
    },
    /// Block `seq` was handed to the link; the buffer is read-only until released.
    InFlight {
        /// Block sequence number.
        seq: u32,
    },
}

/// Rows the ISR should write now: `rows` rows of block `seq` starting at row `first`, into the
/// buffer of `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquire {
    /// Which buffer.
    pub slot: usize,
    /// Block sequence number (the message's `seq`).
    pub seq: u32,
    /// First row to write.
    pub first: u32,
    /// Number of rows to write.
    pub rows: u32,
    /// Whether these rows complete the block (the slot becomes `Ready`).
    pub completes: bool,
}

/// A ring of `S` block buffers shared by an acquisition ISR and the publishing main loop.
#[derive(Debug)]
pub struct BlockRing<const S: usize> {
    slots: [Slot; S],
    block: u32,
    next_seq: u32,
    next_fill: usize,
    next_publish: usize,
    stalls: u32,
}

impl<const S: usize> BlockRing<S> {
    /// A ring of empty slots for blocks of `block` rows (at least 1), starting at sequence 0.
    pub const fn new(block: u32) -> Self {
        BlockRing {
            slots: [Slot::Free; S],
            block: if block == 0 { 1 } else { block },
            next_seq: 0,
            next_fill: 0,
            next_publish: 0,
            stalls: 0,
        }
    }

    /// Rows per block.
    pub const fn block(&self) -> u32 {
        self.block
    }

    /// The state of every slot.
    pub fn slots(&self) -> &[Slot; S] {
        &self.slots
    }

    /// Ticks on which the ISR found no free slot.
    pub const fn stalls(&self) -> u32 {
        self.stalls
    }

    /// ISR side: claims up to `rows` rows of the block being filled (starting a new block in the
    /// next free slot if needed) and records them as written; the caller must then write exactly
    /// those rows. `None` when every slot is busy (a stall) or `S == 0`.
    pub fn acquire(&mut self, rows: u32) -> Option<Acquire> {
        let slot = self.next_fill;
        let (seq, first) = match *self.slots.get(slot)? {
            Slot::Filling { seq, rows_done } => (seq, rows_done),
            Slot::Free => {
                let seq = self.next_seq;
                self.next_seq = seq.wrapping_add(1);
                (seq, 0)
            }
            Slot::Ready { .. } | Slot::InFlight { .. } => {
                self.stalls = self.stalls.wrapping_add(1);
                return None;
            }
        };
        let rows = rows.clamp(1, self.block - first);
        let rows_done = first + rows;
        let completes = rows_done == self.block;
        let state = if completes {
            self.next_fill = (slot + 1) % S;
            Slot::Ready { seq }
        } else {
            Slot::Filling { seq, rows_done }
        };
        if let Some(s) = self.slots.get_mut(slot) {
            *s = state;
        }
        Some(Acquire {
            slot,
            seq,
            first,
            rows,
            completes,
        })
    }

    /// Main-loop side: the oldest complete block, now `InFlight`, as `(slot, seq)`.
    pub fn take_ready(&mut self) -> Option<(usize, u32)> {
        let slot = self.next_publish;
        let s = self.slots.get_mut(slot)?;
        let Slot::Ready { seq } = *s else {
            return None;
        };
        *s = Slot::InFlight { seq };
        self.next_publish = (slot + 1) % S;
        Some((slot, seq))
    }

    /// Main-loop side: frees an `InFlight` slot. Returns `false` (and changes nothing) if the
    /// slot is not in flight.
    pub fn release(&mut self, slot: usize) -> bool {
        match self.slots.get_mut(slot) {
            Some(s @ Slot::InFlight { .. }) => {
                *s = Slot::Free;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_chunks_then_publishes_in_order() {
        let mut ring = BlockRing::<2>::new(10);
        let a = ring.acquire(4).unwrap();
        assert_eq!(
            (a.slot, a.seq, a.first, a.rows, a.completes),
            (0, 0, 0, 4, false)
        );
        assert_eq!(ring.take_ready(), None);
        let a = ring.acquire(4).unwrap();
        assert_eq!((a.first, a.rows), (4, 4));
        let a = ring.acquire(4).unwrap();
        assert_eq!((a.first, a.rows, a.completes), (8, 2, true));
        let a = ring.acquire(4).unwrap();
        assert_eq!((a.slot, a.seq, a.first), (1, 1, 0));
        assert_eq!(ring.take_ready(), Some((0, 0)));
        assert_eq!(ring.take_ready(), None);
        assert_eq!(ring.slots()[0], Slot::InFlight { seq: 0 });
    }

    #[test]
    fn stalls_instead_of_overwriting_in_flight_buffers() {
        let mut ring = BlockRing::<2>::new(1);
        assert!(ring.acquire(1).unwrap().completes); // seq 0 in slot 0
        assert!(ring.acquire(1).unwrap().completes); // seq 1 in slot 1
        assert_eq!(ring.acquire(1), None);
        assert_eq!(ring.stalls(), 1);
        assert_eq!(ring.take_ready(), Some((0, 0)));
        assert_eq!(ring.acquire(1), None, "slot 0 is in flight");
        assert!(ring.release(0));
        assert!(!ring.release(0), "double release is refused");
        let a = ring.acquire(1).unwrap();
        assert_eq!((a.slot, a.seq), (0, 2), "no sequence number was skipped");
        assert_eq!(ring.stalls(), 2);
    }

    #[test]
    fn many_blocks_keep_sequence_and_slot_order() {
        let mut ring = BlockRing::<3>::new(5);
        let mut published = std::vec::Vec::new();
        for _ in 0..1000 {
            ring.acquire(2);
            if let Some((slot, seq)) = ring.take_ready() {
                published.push(seq);
                assert_eq!(slot, seq as usize % 3);
                assert!(ring.release(slot));
            }
        }
        // Chunks of 2 rows never straddle a block: 2 + 2 + 1 rows, three ticks per block.
        assert_eq!(published.len(), 1000 / 3);
        assert!(published.iter().enumerate().all(|(i, s)| *s == i as u32));
        assert_eq!(ring.stalls(), 0);
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let mut ring = BlockRing::<0>::new(4);
        assert_eq!(ring.acquire(1), None);
        assert_eq!(ring.take_ready(), None);
        assert!(!ring.release(0));
        let mut ring = BlockRing::<1>::new(0);
        assert_eq!(ring.block(), 1);
        assert!(ring.acquire(0).unwrap().completes);
        assert!(!ring.release(7));
    }
}
