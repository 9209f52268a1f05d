//! The data CRC of large frames on a second core: while the frame reader reads the next piece
//! of a payload from the source, a helper thread folds the pieces already read into the CRC.
//!
//! The reader hands over a piece only after the kernel has written it and never writes it
//! again; it waits for the helper's result before the piece's memory can be touched, freed or
//! reused (a [`Frame`] waits in `finish` and, on every early return, in `Drop`), and only then
//! compares the CRC. A helper that died is noticed by its closed channel: the reader then
//! computes the CRC of the pieces itself.

use std::ops::Range;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

/// CRC-32C of `bytes` appended to `crc` (the CRC of what came before): the same value as
/// `crc32c::crc32c_append`, computed with the fastest instructions the CPU has (on x86-64 with
/// AVX-512 VPCLMULQDQ, about twice the speed of the SSE 4.2 `crc32` instruction the `crc32c`
/// crate uses), so the reader spends less of its time on the data CRC.
pub(crate) fn append(crc: u32, bytes: &[u8]) -> u32 {
    let mut digest =
        crc_fast::Digest::new_with_init_state(crc_fast::CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    digest.update(bytes);
    digest.finalize() as u32
}

/// A piece of a payload for the helper. The pointer is valid for reads of `len` bytes, and the
/// bytes do not change, until the helper has answered the frame's last piece.
struct Piece {
    ptr: *const u8,
    len: usize,
    /// The CRC so far, for a frame's first piece.
    seed: Option<u32>,
    /// The frame's last piece: answer with the CRC.
    last: bool,
}

// SAFETY: a `Piece` is read-only access to bytes the sending thread does not write (and keeps
// alive) until the helper has answered the frame, see the module docs; `Frame` enforces it.
unsafe impl Send for Piece {}

/// The helper thread, started on first use.
#[derive(Debug, Default)]
pub(crate) struct CrcHelper {
    link: Option<(Sender<Piece>, Receiver<u32>, JoinHandle<()>)>,
}

fn run_helper(pieces: Receiver<Piece>, answers: Sender<u32>) {
    let mut crc = 0u32;
    for p in pieces {
        if let Some(seed) = p.seed {
            crc = seed;
        }
        // SAFETY: see `Piece`: the bytes are alive and unchanged until we answer.
        let bytes = unsafe { std::slice::from_raw_parts(p.ptr, p.len) };
        crc = append(crc, bytes);
        if p.last && answers.send(crc).is_err() {
            return;
        }
    }
}

impl CrcHelper {
    /// Whether a second core is there to use (else the reader folds the CRC itself).
    pub(crate) fn available() -> bool {
        std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
    }

    /// Starts the CRC of one payload read into `dst`, continuing from `seed`.
    pub(crate) fn frame<'h>(&'h mut self, dst: &'h mut [u8], seed: u32) -> Frame<'h> {
        if self.link.is_none() {
            let (tx, rx) = channel();
            let (atx, arx) = channel();
            let spawned = std::thread::Builder::new()
                .name("dmapickle-crc".into())
                .spawn(move || run_helper(rx, atx));
            if let Ok(handle) = spawned {
                self.link = Some((tx, arx, handle));
            }
        }
        let base = dst.as_mut_ptr();
        Frame {
            helper: self,
            base,
            cap: dst.len(),
            _dst: std::marker::PhantomData,
            seed,
            handed: 0,
            read: 0,
            pending: false,
            local: None,
        }
    }
}

/// Pieces handed over at least this large: fewer wake-ups of the helper.
const HANDOFF: usize = 128 << 10;

/// One payload's CRC in progress. Reads go through [`unread`](Self::unread); every byte read is
/// reported with [`read`](Self::read).
pub(crate) struct Frame<'h> {
    helper: &'h mut CrcHelper,
    /// The payload's memory (borrowed mutably for `'h` through `_dst`); all access goes through
    /// this pointer so that the helper's reads and the source's writes never overlap.
    base: *mut u8,
    cap: usize,
    _dst: std::marker::PhantomData<&'h mut [u8]>,
    seed: u32,
    /// Bytes handed to the helper, and bytes read.
    handed: usize,
    read: usize,
    /// Pieces of this frame the helper has not answered yet.
    pending: bool,
    /// The CRC folded here instead, once the helper is gone.
    local: Option<u32>,
}

impl Frame<'_> {
    /// The part of the payload not read yet, for the next read from the source.
    pub(crate) fn unread(&mut self) -> &mut [u8] {
        // SAFETY: `read..cap` lies inside the borrowed payload; the helper only reads
        // `..handed` and `handed <= read`, so this range is not shared with it.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(self.read), self.cap - self.read) }
    }

    /// The bytes read so far (for the restart scan); the helper may be reading them too.
    pub(crate) fn bytes(&self, range: Range<usize>) -> &[u8] {
        let range = range.start.min(self.read)..range.end.min(self.read);
        // SAFETY: inside the payload and already read: nobody writes these bytes any more.
        unsafe { std::slice::from_raw_parts(self.base.add(range.start), range.len()) }
    }

    /// `n` more bytes were read into the start of [`unread`](Self::unread).
    pub(crate) fn read(&mut self, n: usize) {
        self.read = (self.read + n).min(self.cap);
        if self.read - self.handed >= HANDOFF {
            self.hand(false);
        }
    }

    fn hand(&mut self, last: bool) {
        let range = self.handed..self.read;
        self.handed = self.read;
        if let Some(crc) = self.local {
            self.local = Some(append(crc, self.bytes(range)));
            return;
        }
        let seed = (!self.pending).then_some(self.seed);
        let sent = match &self.helper.link {
            Some((tx, _, _)) => tx
                .send(Piece {
                    // SAFETY: `range` lies inside the payload.
                    ptr: unsafe { self.base.add(range.start) },
                    len: range.len(),
                    seed,
                    last,
                })
                .is_ok(),
            None => false,
        };
        if sent {
            self.pending = true;
        } else {
            // No helper: fold everything handed so far here.
            self.fall_back(range.end);
        }
    }

    /// Computes the CRC of `..end` on this thread (the helper is gone or never started).
    fn fall_back(&mut self, end: usize) {
        self.helper.link = None;
        self.pending = false;
        self.local = Some(append(self.seed, self.bytes(0..end)));
    }

    /// Waits for the helper's answer to the pieces handed over.
    fn wait(&mut self) {
        if !self.pending {
            return;
        }
        let answer = self.helper.link.as_ref().map(|(_, rx, _)| rx.recv());
        match answer {
            Some(Ok(crc)) => {
                self.pending = false;
                self.local = Some(crc);
            }
            // The helper ended (it panicked): it reads nothing any more.
            _ => self.fall_back(self.handed),
        }
    }

    /// The CRC of the seed and every byte read.
    pub(crate) fn finish(mut self) -> u32 {
        if self.handed < self.read || self.pending {
            self.hand(true);
        }
        if self.pending {
            self.wait();
        }
        self.local.unwrap_or(self.seed)
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        // An early return (a read error): the helper must be done before the memory goes.
        if self.pending {
            self.hand(true);
            self.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of every size through the helper give the CRC of the whole payload, from any
    /// seed; a frame dropped half-read waits for the helper and leaves it usable.
    /// `append` is `crc32c_append` at every length and alignment, from any seed.
    #[test]
    fn append_is_crc32c() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
            .collect();
        for start in [0, 1, 3, 63] {
            for len in [0, 1, 7, 15, 16, 31, 64, 255, 256, 4097, 65_536, 69_000] {
                let bytes = &data[start..start + len];
                for seed in [0, 1, 0xdead_beef, u32::MAX] {
                    assert_eq!(append(seed, bytes), crc32c::crc32c_append(seed, bytes));
                }
            }
        }
    }

    #[test]
    fn the_helper_folds_what_was_read() {
        let payload: Vec<u8> = (0..3_000_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) as u8)
            .collect();
        let mut helper = CrcHelper::default();
        for (seed, piece) in [(0, 1), (7, 4096), (0xdead_beef, 100_000), (1, 2_000_000)] {
            let mut dst = vec![0u8; payload.len()];
            let mut frame = helper.frame(&mut dst, seed);
            let mut at = 0;
            while at < payload.len() {
                let n = piece.min(payload.len() - at);
                frame.unread()[..n].copy_from_slice(&payload[at..at + n]);
                frame.read(n);
                at += n;
            }
            assert_eq!(frame.finish(), crc32c::crc32c_append(seed, &payload));
            let mut frame = helper.frame(&mut dst, seed);
            frame.unread()[..HANDOFF * 3].copy_from_slice(&payload[..HANDOFF * 3]);
            frame.read(HANDOFF * 3);
            drop(frame);
        }
    }
}
