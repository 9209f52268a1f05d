//! The simulated ADC: what the acquisition ISR does on each tick.
//!
//! The buffers and their queues are `dmapickle-hal`'s [`Pool`]s: a `BufferRing` of `DmaBuf`s
//! when the arrays go inline, or a `SharedPool` over the shared region's slots when they stay
//! there. On each tick the ISR writes the next rows of the current block into the buffer it holds (taking a free
//! one from the ring when it starts a block) and, when the block is complete, pushes it to the
//! ring's ready queue. The main loop pops ready buffers, publishes them and, once their transfer
//! completed (inline) or the host released them (shared region), gives them back to the free
//! queue. Block `k` (counting from 0) is always the `k`-th buffer on the ready queue, so the main
//! loop knows each block's `seq` by counting.
//!
//! When no buffer is free the ISR *stalls*: it acquires nothing and counts the tick in
//! [`Adc::stalls`]. A real ADC would overrun and lose samples; the simulation instead keeps the
//! signal continuous, so sequence numbers never skip and the host's checks stay exact.

use dmapickle_hal::pool::{Fill, Pool};

use crate::waveform::{fill_rows, ROW_BYTES};

/// The ISR's state: the block being filled and the counters.
#[derive(Debug)]
pub struct Adc<B> {
    filling: Option<B>,
    block: u32,
    seq: u32,
    rows_done: u32,
    stalls: u32,
    streak: u32,
    overflows: u32,
    /// Pause at the next block boundary ([`Adc::pause`]).
    pausing: bool,
    /// Paused at a block boundary: ticks acquire nothing.
    paused: bool,
}

impl<B: Fill> Adc<B> {
    /// Blocks of `block` rows (at least 1), starting at sequence 0.
    pub const fn new(block: u32) -> Self {
        Adc {
            filling: None,
            block: if block == 0 { 1 } else { block },
            seq: 0,
            rows_done: 0,
            stalls: 0,
            streak: 0,
            overflows: 0,
            pausing: false,
            paused: false,
        }
    }

    /// Rows per block.
    pub const fn block(&self) -> u32 {
        self.block
    }

    /// Bytes per block.
    pub const fn block_bytes(&self) -> usize {
        self.block as usize * ROW_BYTES
    }

    /// Ticks on which no free buffer was available.
    pub const fn stalls(&self) -> u32 {
        self.stalls
    }

    /// Ticks in a row, up to now, on which no free buffer was available (0 once one was): how
    /// long the ADC has been waiting for the link or the host.
    pub const fn stall_streak(&self) -> u32 {
        self.streak
    }

    /// Free buffers too small for a block, and complete blocks the ready queue could not take
    /// (both mean the ring was set up wrongly; the buffer goes back to the free queue).
    pub const fn overflows(&self) -> u32 {
        self.overflows
    }

    /// Sequence number of the next block to complete.
    pub const fn next_seq(&self) -> u32 {
        self.seq
    }

    /// Pauses acquisition at the next block boundary: now if no block is being filled, else
    /// once the block being filled is complete (so no block is torn or mixes two settings).
    pub fn pause(&mut self) {
        self.pausing = true;
        self.paused = self.filling.is_none();
    }

    /// Paused at a block boundary (after [`Adc::pause`]): the next block starts from row 0.
    pub const fn paused(&self) -> bool {
        self.paused
    }

    /// Resumes after [`Adc::pause`] with blocks of `block` rows (at least 1) from
    /// [`Adc::next_seq`] on.
    pub fn resume(&mut self, block: u32) {
        self.block = if block == 0 { 1 } else { block };
        self.pausing = false;
        self.paused = false;
    }

    /// One ISR tick: acquire up to `rows` rows (never past the end of the block). Returns `true`
    /// if a block was completed and queued as ready.
    pub fn tick<P: Pool<Buf = B>>(&mut self, pool: &P, rows: u32) -> bool {
        if self.paused || (self.pausing && self.filling.is_none()) {
            self.paused = true;
            return false;
        }
        let mut buf = match self.filling.take() {
            Some(buf) => buf,
            None => {
                let Some(mut buf) = pool.take_free() else {
                    self.stalls = self.stalls.wrapping_add(1);
                    self.streak = self.streak.saturating_add(1);
                    return false;
                };
                self.streak = 0;
                if buf.as_mut_slice().len() < self.block_bytes() {
                    self.overflows = self.overflows.wrapping_add(1);
                    pool.recycle(buf);
                    return false;
                }
                buf
            }
        };
        let first = self.rows_done;
        let rows = rows.clamp(1, self.block - first);
        let start = first as usize * ROW_BYTES;
        let end = start + rows as usize * ROW_BYTES;
        if let Some(bytes) = buf.as_mut_slice().get_mut(start..end) {
            fill_rows(bytes, self.seq, first, self.block);
        }
        self.rows_done = first + rows;
        if self.rows_done < self.block {
            self.filling = Some(buf);
            return false;
        }
        self.rows_done = 0;
        self.seq = self.seq.wrapping_add(1);
        self.paused = self.pausing;
        // Capacity was checked when the buffer was taken, so this cannot fail.
        let _ = buf.set_len(self.block_bytes());
        match pool.push_ready(buf) {
            Ok(()) => true,
            Err(buf) => {
                self.overflows = self.overflows.wrapping_add(1);
                pool.recycle(buf);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waveform::sample;
    use dmapickle_hal::pool::SharedPool;
    use dmapickle_hal::{BufferRing, DmaBuf, SharedBuf, SharedRegion};
    use std::boxed::Box;

    fn ring_of<const N: usize>(bytes: usize) -> &'static BufferRing<N> {
        let ring: &'static BufferRing<N> = Box::leak(Box::new(BufferRing::new()));
        for i in 0..N {
            let mem: &'static mut [u8] = Box::leak(std::vec![0u8; bytes].into_boxed_slice());
            ring.give(DmaBuf::new(1, (i * bytes) as u32, mem)).unwrap();
        }
        ring
    }

    fn check_block(buf: &DmaBuf, seq: u32, block: u32) {
        assert_eq!(buf.len(), block as usize * ROW_BYTES);
        for (i, row) in buf.filled().chunks_exact(ROW_BYTES).enumerate() {
            for (c, v) in row.chunks_exact(2).enumerate() {
                let v = i16::from_le_bytes([v[0], v[1]]);
                assert_eq!(
                    v,
                    sample(seq, c as u32, i as u32, block),
                    "seq {seq} row {i}"
                );
            }
        }
    }

    #[test]
    fn a_pause_waits_for_the_block_boundary_and_resumes_with_the_new_layout() {
        let ring = ring_of::<4>(256 * ROW_BYTES);
        let mut adc = Adc::<DmaBuf>::new(64);
        adc.tick(ring, 32);
        adc.pause();
        assert!(!adc.paused(), "half a block is being filled");
        assert!(
            adc.tick(ring, 32),
            "the block completes with the old layout"
        );
        assert!(adc.paused());
        assert!(!adc.tick(ring, 32), "paused: nothing acquired");
        check_block(&ring.pop_ready().unwrap(), 0, 64);
        assert!(ring.pop_ready().is_none());
        adc.resume(16);
        assert!(adc.tick(ring, 32));
        check_block(&ring.pop_ready().unwrap(), 1, 16);
        // Paused between blocks: at once.
        adc.pause();
        assert!(adc.paused());
    }

    #[test]
    fn fills_blocks_in_chunks_and_queues_them_in_order() {
        let ring = ring_of::<2>(10 * ROW_BYTES);
        let mut adc = Adc::<DmaBuf>::new(10);
        assert!(!adc.tick(ring, 4));
        assert!(!adc.tick(ring, 4));
        assert_eq!(ring.ready_len(), 0);
        assert!(adc.tick(ring, 4), "rows 8..10 complete block 0");
        assert!(!adc.tick(ring, 4));
        let b = ring.pop_ready().unwrap();
        check_block(&b, 0, 10);
        ring.give(b).unwrap();
        assert_eq!(adc.next_seq(), 1);
    }

    #[test]
    fn stalls_instead_of_overwriting_buffers_in_flight() {
        let ring = ring_of::<2>(ROW_BYTES);
        let mut adc = Adc::<DmaBuf>::new(1);
        assert!(adc.tick(ring, 1));
        assert!(adc.tick(ring, 1));
        let in_flight = ring.pop_ready().unwrap();
        assert!(!adc.tick(ring, 1), "no free buffer");
        assert!(!adc.tick(ring, 1), "still none");
        assert_eq!((adc.stalls(), adc.stall_streak()), (2, 2));
        check_block(&in_flight, 0, 1);
        ring.give(in_flight).unwrap();
        assert!(adc.tick(ring, 1));
        assert_eq!(
            (adc.stalls(), adc.stall_streak()),
            (2, 0),
            "the streak ends"
        );
        ring.pop_ready().unwrap();
        let b = ring.pop_ready().unwrap();
        check_block(&b, 2, 1);
        assert_eq!(adc.next_seq(), 3, "a stall skips no sequence number");
    }

    #[test]
    fn a_long_run_is_one_continuous_signal() {
        let ring = ring_of::<3>(5 * ROW_BYTES);
        let mut adc = Adc::<DmaBuf>::new(5);
        let mut seq = 0;
        for _ in 0..1000 {
            adc.tick(ring, 2);
            if let Some(b) = ring.pop_ready() {
                check_block(&b, seq, 5);
                seq += 1;
                ring.give(b).unwrap();
            }
        }
        // Chunks of 2 rows never straddle a block: 2 + 2 + 1 rows, three ticks per block.
        assert_eq!(seq, 1000 / 3);
        assert_eq!((adc.stalls(), adc.overflows()), (0, 0));
    }

    #[test]
    fn a_buffer_too_small_is_counted_not_overrun() {
        let ring = ring_of::<1>(3);
        let mut adc = Adc::<DmaBuf>::new(1);
        assert!(!adc.tick(ring, 1));
        assert_eq!(adc.overflows(), 1);
        assert_eq!(ring.free_len(), 1);
        let mut adc = Adc::<DmaBuf>::new(0);
        assert_eq!(adc.block(), 1);
        assert!(!adc.tick(ring, 0));
    }

    #[test]
    fn shared_slots_are_reused_only_after_the_host_releases_them() {
        use dmapickle_core::release::Release;
        use dmapickle_hal::ring::HostEnd;
        let block = 4u32;
        let len = 64 + 2 * 64;
        let mem: &'static mut [u8] = Box::leak(std::vec![0u8; len + 64].into_boxed_slice());
        let skip = (64 - mem.as_ptr() as usize % 64) % 64;
        let mem = &mut mem[skip..skip + len];
        let base = mem.as_mut_ptr();
        let region: &'static SharedRegion =
            Box::leak(Box::new(SharedRegion::new(2, mem, 64, 2).unwrap()));
        let pool: &'static SharedPool<2> = Box::leak(Box::new(SharedPool::new(region)));
        let mut adc = Adc::<SharedBuf<'static>>::new(block);
        assert!(adc.tick(pool, block));
        assert!(adc.tick(pool, block));
        assert!(!adc.tick(pool, block), "both slots are full: stall");
        let a = pool.pop_ready().unwrap();
        let b = pool.pop_ready().unwrap();
        let (da, db) = (a.descriptor(), b.descriptor());
        assert_eq!((da.region, da.offset, da.len), (2, 64, 32));
        // Publishing lends the slots to the host.
        let publisher = dmapickle_hal::Publisher::new();
        let mut link = dmapickle_hal::io::IoLink::new(std::vec::Vec::new());
        let pickle = [0x80, 0x05, 0x97, 0x2E];
        for (buf, d) in [(a, da), (b, db)] {
            let out = dmapickle_hal::Outgoing::<DmaBuf>::Shared(buf);
            publisher.publish(&mut link, &pickle, &[d], [out]).unwrap();
        }
        assert!(!adc.tick(pool, block), "lent slots are not reused");
        assert_eq!(adc.stalls(), 2);
        // The host releases the first slot through the ring in the region's control block.
        // SAFETY: test memory, valid for the whole test; device and host roles in one thread.
        #[allow(unsafe_code)]
        let host = unsafe { HostEnd::attach(base, len).unwrap() };
        host.post(Release {
            offset: da.offset,
            len: da.len,
        })
        .unwrap();
        assert!(adc.tick(pool, block));
        let c = pool.pop_ready().unwrap();
        assert_eq!(
            c.descriptor().offset,
            da.offset,
            "the released slot is the one reused"
        );
        assert_ne!(db.offset, da.offset);
    }
}
