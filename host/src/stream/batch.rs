//! Batches: many staged frames checked in one pass, their messages views of one shared block.
//!
//! When the staging buffer holds whole frames back to back (tiny frames: hundreds per read),
//! [`FrameReader::take_staged`] checks them one after another without the per-frame state of
//! the general path (no restart-scan state, no per-frame tables, no arena cut per frame): header
//! decode and CRC, limits, body CRC and table, data CRC, a rebooted device's header inside the
//! frame, the validator, then sequence accounting. Each frame's pickle and inline buffers are
//! copied to their 64-byte aligned places in one piece of arena memory that all the frames of
//! the run share, frozen once: a [`MessageRef`] borrows it (no reference count per message),
//! [`MessageRef::to_message`] makes an owned [`Message`] of views of it (one count per view).
//!
//! The pass takes a frame only when the general path would deliver it (or refuse it for its
//! pickle) with no read and no resynchronisation: every other frame (a bad CRC, a header
//! refused, a shared buffer, a frame not wholly staged, a large one) ends the pass and the
//! general path takes it from the same position, with the same counters, so a frame is never
//! judged twice and the counters are the same whichever path took it.

use std::ops::Range;

use bytes::Bytes;
use dmapickle_core::frame::{Body, BufferKind, Header, HEADER_LEN};
use dmapickle_core::Descriptor;

use super::crc::SmallCrc;
use super::memory::{align, ARENA_MAX};
use super::restart::restart_header;
use super::{FrameReader, ReadError, BUFFER_ALIGN};
use crate::message::{Buffer, Message};

/// The outcomes of one [`FrameReader::next_batch`] call, in stream order: messages and non-fatal
/// refusals. Reuse one `Batch` from call to call: its lists keep their capacity, so a batch of
/// tiny frames allocates nothing in steady state.
#[derive(Debug, Default)]
pub struct Batch {
    /// The shared receive memory of the staged messages: one block per pass.
    blocks: Vec<Bytes>,
    slots: Vec<Slot>,
    /// The inline buffers of the staged messages, in order.
    pieces: Vec<Piece>,
    /// What the general path produced: a message with views of its own, or a refusal (`None`
    /// once taken out).
    others: Vec<Option<Result<Message, ReadError>>>,
    /// The first slot not taken out yet.
    start: usize,
}

#[derive(Debug)]
enum Slot {
    Staged(Staged),
    /// An index into `others`.
    Other(usize),
}

/// A message checked by the batch pass: where its bytes are in its block.
#[derive(Debug)]
struct Staged {
    seq: u32,
    restart: bool,
    block: u32,
    pickle_at: u32,
    pickle_len: u32,
    /// Its inline buffers: `pieces[pieces_at..pieces_at + buffers]`.
    pieces_at: u32,
    buffers: u16,
    stream_offset: u64,
    host_ns: u64,
}

/// An inline buffer of a staged message: where it starts in its block, and its descriptor (the
/// length is the descriptor's).
#[derive(Debug, Clone, Copy)]
struct Piece {
    at: u32,
    descriptor: Descriptor,
}

impl Piece {
    fn range(&self) -> Range<usize> {
        self.at as usize..self.at as usize + self.descriptor.len as usize
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Outcomes in the batch (messages and refusals).
    pub fn len(&self) -> usize {
        self.slots.len() - self.start
    }

    /// Whether the batch holds no outcome.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget every outcome (capacity kept). The shared blocks are released here: messages made
    /// with [`MessageRef::to_message`] keep their own views.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.slots.clear();
        self.pieces.clear();
        self.others.clear();
        self.start = 0;
    }

    /// The outcomes, in stream order, borrowed: a message as a [`MessageRef`] (views of the
    /// batch's shared memory, no reference count), a refusal as the [`ReadError`] the reader
    /// counted in `refused`.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = Result<MessageRef<'_>, &ReadError>> + '_ {
        self.slots[self.start..].iter().filter_map(|s| match s {
            Slot::Staged(m) => Some(Ok(self.staged(m))),
            Slot::Other(i) => match self.others[*i].as_ref()? {
                Ok(m) => Some(Ok(MessageRef(Ref::Read(m)))),
                Err(e) => Some(Err(e)),
            },
        })
    }

    /// The messages only, in stream order.
    #[inline]
    pub fn messages(&self) -> impl Iterator<Item = MessageRef<'_>> + '_ {
        self.iter().filter_map(Result::ok)
    }

    /// Take every outcome out as owned values (what crosses a thread): a message with views of
    /// its own (one reference count per view), a refusal as is.
    pub fn drain(&mut self) -> Drain<'_> {
        Drain { batch: self }
    }

    /// Take the first outcome out.
    pub(super) fn pop_front(&mut self) -> Option<Result<Message, ReadError>> {
        loop {
            let slot = self.slots.get(self.start)?;
            self.start += 1;
            let out = match slot {
                Slot::Staged(m) => Some(Ok(self.staged(m).to_message())),
                Slot::Other(i) => self.others[*i].take(),
            };
            if self.start == self.slots.len() {
                // Everything taken: drop the shared blocks now, not at the next fill.
                self.clear();
            }
            if out.is_some() {
                return out;
            }
        }
    }

    /// The first outcome as an owned message if the batch pass staged it (the common case,
    /// without moving an `Option<Result<..>>` through memory), else `None` (the batch is empty
    /// or its first outcome came from the general path: [`pop_front`](Self::pop_front)).
    #[inline]
    pub(super) fn pop_staged(&mut self) -> Option<Message> {
        let Some(Slot::Staged(m)) = self.slots.get(self.start) else {
            return None;
        };
        let pieces = m.pieces_at as usize;
        let message = owned(
            &self.blocks[m.block as usize],
            m,
            &self.pieces[pieces..pieces + usize::from(m.buffers)],
        );
        self.start += 1;
        if self.start == self.slots.len() {
            self.clear();
        }
        Some(message)
    }

    pub(super) fn push_other(&mut self, outcome: Result<Message, ReadError>) {
        self.slots.push(Slot::Other(self.others.len()));
        self.others.push(Some(outcome));
    }

    #[inline]
    fn staged<'a>(&'a self, m: &'a Staged) -> MessageRef<'a> {
        let pieces = m.pieces_at as usize;
        MessageRef(Ref::Staged {
            block: &self.blocks[m.block as usize],
            m,
            pieces: &self.pieces[pieces..pieces + usize::from(m.buffers)],
        })
    }
}

/// [`Batch::drain`]'s iterator.
#[derive(Debug)]
pub struct Drain<'a> {
    batch: &'a mut Batch,
}

impl Iterator for Drain<'_> {
    type Item = Result<Message, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batch.pop_front()
    }
}

/// A message of a [`Batch`], borrowed: the same fields as [`Message`], its pickle and buffers
/// slices of the batch's memory.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a>(Ref<'a>);

#[derive(Debug, Clone, Copy)]
enum Ref<'a> {
    Staged {
        block: &'a Bytes,
        m: &'a Staged,
        pieces: &'a [Piece],
    },
    Read(&'a Message),
}

/// An out-of-band buffer of a [`MessageRef`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct BufferRef<'a> {
    /// The bytes (64-byte aligned when inline).
    pub data: &'a [u8],
    /// The descriptor as the frame carried it.
    pub descriptor: Descriptor,
    /// Whether the bytes came inline or stayed in a shared region.
    pub kind: BufferKind,
}

impl<'a> MessageRef<'a> {
    /// The frame's sequence number.
    #[inline]
    pub fn seq(&self) -> u32 {
        match self.0 {
            Ref::Staged { m, .. } => m.seq,
            Ref::Read(m) => m.seq,
        }
    }

    /// The device (re)started its sequence counter with this frame.
    #[inline]
    pub fn restart(&self) -> bool {
        match self.0 {
            Ref::Staged { m, .. } => m.restart,
            Ref::Read(m) => m.restart,
        }
    }

    /// Byte offset of the frame's header in the stream.
    #[inline]
    pub fn stream_offset(&self) -> u64 {
        match self.0 {
            Ref::Staged { m, .. } => m.stream_offset,
            Ref::Read(m) => m.stream_offset,
        }
    }

    /// When the frame's last byte was read ([`Message::host_ns`]).
    #[inline]
    pub fn host_ns(&self) -> u64 {
        match self.0 {
            Ref::Staged { m, .. } => m.host_ns,
            Ref::Read(m) => m.host_ns,
        }
    }

    /// The protocol-5 pickle.
    #[inline]
    pub fn pickle(&self) -> &'a [u8] {
        match self.0 {
            Ref::Staged { block, m, .. } => {
                &block[m.pickle_at as usize..(m.pickle_at + m.pickle_len) as usize]
            }
            Ref::Read(m) => &m.pickle,
        }
    }

    /// Number of out-of-band buffers.
    #[inline]
    pub fn buffer_count(&self) -> usize {
        match self.0 {
            Ref::Staged { pieces, .. } => pieces.len(),
            Ref::Read(m) => m.buffers.len(),
        }
    }

    /// Buffer `i` (in `NEXT_BUFFER` order), if there is one.
    #[inline]
    pub fn buffer(&self, i: usize) -> Option<BufferRef<'a>> {
        match self.0 {
            Ref::Staged { block, pieces, .. } => pieces.get(i).map(|p| BufferRef {
                data: &block[p.range()],
                descriptor: p.descriptor,
                kind: BufferKind::Inline,
            }),
            Ref::Read(m) => m.buffers.get(i).map(|b| BufferRef {
                data: &b.data,
                descriptor: b.descriptor,
                kind: b.kind,
            }),
        }
    }

    /// The buffers, in `NEXT_BUFFER` order.
    #[inline]
    pub fn buffers(&self) -> impl ExactSizeIterator<Item = BufferRef<'a>> + 'a {
        let this = *self;
        (0..self.buffer_count()).map(move |i| this.buffer(i).expect("i < buffer_count"))
    }

    /// An owned [`Message`]: views of the same memory (a reference count per view, a `Vec` for
    /// the buffers if there are any).
    pub fn to_message(&self) -> Message {
        match self.0 {
            Ref::Staged { block, m, pieces } => owned(block, m, pieces),
            Ref::Read(m) => m.clone(),
        }
    }
}

/// A staged message as an owned [`Message`]: views of `block` (a reference count per view) and
/// a `Vec` for its buffers if there are any.
#[inline]
fn owned(block: &Bytes, m: &Staged, pieces: &[Piece]) -> Message {
    Message {
        seq: m.seq,
        restart: m.restart,
        pickle: block.slice(m.pickle_at as usize..(m.pickle_at + m.pickle_len) as usize),
        buffers: if pieces.is_empty() {
            Vec::new()
        } else {
            pieces
                .iter()
                .map(|p| Buffer {
                    data: block.slice(p.range()),
                    descriptor: p.descriptor,
                    kind: BufferKind::Inline,
                })
                .collect()
        },
        stream_offset: m.stream_offset,
        host_ns: m.host_ns,
    }
}

/// Why [`FrameReader::take_staged`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The batch is full.
    Full,
    /// The shared block is full: a new pass takes the next frame.
    Room,
    /// The next frame is not for this pass (not wholly staged, not a clean frame, not small):
    /// the general path takes it.
    General,
}

impl<R> FrameReader<R> {
    /// Take the frames staged whole at `stage[pos..]`, one after another, into `out` (at most
    /// `max` outcomes in all). See the [module docs](self).
    pub(super) fn take_staged(&mut self, out: &mut Batch, max: usize) -> Stop {
        if !self.batch_pass {
            return Stop::General;
        }
        #[cfg(target_arch = "x86_64")]
        if SmallCrc::detect().sse42() {
            // SAFETY: the CPU has SSE 4.2 (checked just above), all `take_staged_sse42` needs.
            return unsafe { self.take_staged_sse42(out, max) };
        }
        let unit = SmallCrc::detect();
        self.pass(out, max, |b| unit.crc(b))
    }

    /// [`take_staged`](Self::take_staged) compiled for SSE 4.2: the pass, and the `crc32`
    /// instructions of its header and body CRCs, in one function (no call per CRC).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse4.2")]
    unsafe fn take_staged_sse42(&mut self, out: &mut Batch, max: usize) -> Stop {
        // SAFETY: this function only runs on a CPU with SSE 4.2 (its one caller checks).
        self.pass(out, max, |b| unsafe { super::crc::sse42_crc(b) })
    }

    /// The pass of [`take_staged`](Self::take_staged), `crc` the CRC-32C of a short input.
    #[inline(always)]
    fn pass(&mut self, out: &mut Batch, max: usize, crc: impl Fn(&[u8]) -> u32 + Copy) -> Stop {
        let FrameReader {
            stage,
            pos,
            len,
            offset,
            counters,
            last_seq,
            regions,
            checker,
            cfg,
            arena,
            scratch,
            last_read_ns,
            ..
        } = self;
        let room = arena.room(ARENA_MAX);
        let block = out.blocks.len() as u32;
        let mut used = 0usize;
        let lens = &mut scratch.lens;
        // The staged bytes do not change during the pass: one scan for sync bytes serves all
        // its frames' restart checks.
        let staged = &stage[..*len];
        let mut hits = SyncHits::new();
        let stop = loop {
            if out.slots.len() - out.start >= max {
                break Stop::Full;
            }
            let start = *pos;
            let Some(head) = staged
                .get(start..)
                .and_then(<[u8]>::first_chunk::<HEADER_LEN>)
            else {
                break Stop::General;
            };
            // Checks in the order of docs/wire-format.md, "Reading a stream"; any failure leaves
            // the frame to the general path, which judges and counts it.
            let Ok(h) = Header::decode_with(head, crc) else {
                break Stop::General;
            };
            if !super::within_limits(cfg, &h) {
                break Stop::General;
            }
            let flen = h.frame_len();
            if flen > (staged.len() - start) as u64 {
                break Stop::General;
            }
            let end = start + flen as usize;
            let checked = h.has_data_crc();
            if !checked && !cfg.trust_link {
                break Stop::General;
            }
            let body_end = start + HEADER_LEN + h.body_len() as usize;
            // The receive layout of `read_frame_bytes`: pickle at 0, each inline buffer at the
            // next aligned offset, relative to this frame's place in the shared block. The
            // table is decoded once, by the core's check of it.
            let pickle_len = h.pickle_len as usize;
            let pieces_at = out.pieces.len();
            let mut size = align(pickle_len);
            let mut shared = false;
            let parsed =
                Body::parse_each_with(&h, &staged[start + HEADER_LEN..body_end], crc, |e| {
                    if e.kind == BufferKind::Inline {
                        out.pieces.push(Piece {
                            at: (used + size) as u32,
                            descriptor: e.descriptor,
                        });
                        size = align(size + e.descriptor.len as usize);
                    } else {
                        shared = true;
                    }
                });
            let Ok(body) = parsed else {
                out.pieces.truncate(pieces_at);
                break Stop::General;
            };
            if shared || size > ARENA_MAX {
                out.pieces.truncate(pieces_at);
                break Stop::General;
            }
            if used + size > room.len() {
                out.pieces.truncate(pieces_at);
                break Stop::Room;
            }
            let inline = &staged[body_end..end - 4];
            let field = u32::from_le_bytes(staged[end - 4..end].try_into().unwrap_or([0; 4]));
            // No inline bytes: the CRC-32C of nothing is 0, the field's value either way.
            let want = if !checked || inline.is_empty() {
                0
            } else if inline.len() <= 256 {
                crc(inline)
            } else {
                crate::data_crc::append(0, inline)
            };
            // A rebooted device's header inside the frame (after its first byte, wholly within
            // its length) cuts it: the general path counts it corrupt and rescans.
            if field != want || hits.restart_inside(staged, start, end, crc) {
                out.pieces.truncate(pieces_at);
                break Stop::General;
            }
            // The frame is consumed whole: it counts for the sequence, delivered or refused.
            let at = *offset;
            *pos = end;
            *offset += flen;
            counters.payload_copied += inline.len() as u64;
            super::account_seq(counters, last_seq, regions, &h);
            if let Some(checker) = checker.as_mut() {
                // `scratch` is empty between frames (the general path's invariant).
                lens.extend(
                    out.pieces[pieces_at..]
                        .iter()
                        .map(|p| p.descriptor.len as usize),
                );
                let checked = checker.check(body.pickle, lens);
                lens.clear();
                if let Err(rejected) = checked {
                    out.pieces.truncate(pieces_at);
                    counters.refused += 1;
                    out.push_other(Err(ReadError::Invalid {
                        offset: at,
                        seq: h.seq,
                        rejected,
                    }));
                    continue;
                }
            }
            // The pickle and each inline buffer to their aligned places.
            copy_padded(
                &mut room[used..used + align(pickle_len)],
                stage,
                start + HEADER_LEN,
                pickle_len,
            );
            let mut from = body_end;
            for p in &out.pieces[pieces_at..] {
                let n = p.descriptor.len as usize;
                let dst = p.at as usize..p.at as usize + align(n);
                copy_padded(&mut room[dst], stage, from, n);
                from += n;
            }
            out.slots.push(Slot::Staged(Staged {
                seq: h.seq,
                restart: h.seq_restart(),
                block,
                pickle_at: used as u32,
                pickle_len: pickle_len as u32,
                pieces_at: pieces_at as u32,
                buffers: (out.pieces.len() - pieces_at) as u16,
                stream_offset: at,
                // No read happened since the one that brought the frame's last byte.
                host_ns: *last_read_ns,
            }));
            counters.frames_ok += 1;
            used += size;
        };
        if used > 0 {
            out.blocks.push(arena.cut(used).freeze());
        }
        stop
    }
}

/// Copy `stage[from..from + n]` to the start of `dst` (`n` rounded up to [`BUFFER_ALIGN`]
/// bytes, the place of a piece in the shared block): 64 bytes at a time where the staging
/// buffer reaches that far (the bytes after the piece land in its padding, which no view
/// covers), so a tiny pickle's copy is two or four vector moves instead of a call to `memcpy`.
fn copy_padded(dst: &mut [u8], stage: &[u8], from: usize, n: usize) {
    match stage.get(from..from + dst.len()) {
        Some(src) => {
            for (d, s) in dst
                .chunks_exact_mut(BUFFER_ALIGN)
                .zip(src.chunks_exact(BUFFER_ALIGN))
            {
                d.copy_from_slice(s);
            }
        }
        None => dst[..n].copy_from_slice(&stage[from..from + n]),
    }
}

/// Where the sync word's first byte occurs in the staged bytes of a pass, found 64 bytes at a
/// time as the pass walks forward: the restart check of back-to-back frames looks at each
/// staged byte about once (the search that passes one frame's end finds the next frame's
/// first byte and stops), instead of scanning each frame on its own.
#[derive(Debug)]
struct SyncHits {
    /// The 64-byte group `bits` describes (a multiple of 64; `usize::MAX`: none yet).
    base: usize,
    /// Bit `i` set if `staged[base + i]` is the sync word's first byte (bits past the staged
    /// bytes are clear).
    bits: u64,
    /// The first sync byte at or after the last place searched from (`usize::MAX`: none in
    /// the staged bytes): no byte between that place and `next` is one.
    next: usize,
}

impl SyncHits {
    fn new() -> Self {
        SyncHits {
            base: usize::MAX,
            bits: 0,
            next: 0,
        }
    }

    /// The first sync byte at or after `from` (`usize::MAX`: none).
    #[inline]
    fn find(&mut self, staged: &[u8], mut from: usize) -> usize {
        while from < staged.len() {
            let group = from & !63;
            if group != self.base {
                self.base = group;
                self.bits = group_hits(staged, group);
            }
            let hits = self.bits & (u64::MAX << (from - group));
            if hits != 0 {
                return group + hits.trailing_zeros() as usize;
            }
            from = group + 64;
        }
        usize::MAX
    }

    /// Whether a rebooted device's first header ([`restart_header`]) lies inside the frame at
    /// `staged[start..end]`: starting after its first byte, all 24 bytes within its length (what
    /// [`super::restart::RestartScan`] finds in a frame fed whole). Calls must come with
    /// `start` never decreasing.
    #[inline]
    fn restart_inside(
        &mut self,
        staged: &[u8],
        start: usize,
        end: usize,
        crc: impl Fn(&[u8]) -> u32,
    ) -> bool {
        // Candidate starts are `start + 1..last`.
        let last = (end + 1).saturating_sub(HEADER_LEN);
        if self.next <= start {
            self.next = self.find(staged, start + 1);
        }
        while self.next < last {
            let i = self.next;
            if staged
                .get(i..i + HEADER_LEN)
                .is_some_and(|h| restart_header(h, &crc))
            {
                return true;
            }
            self.next = self.find(staged, i + 1);
        }
        false
    }
}

/// [`SyncHits::bits`] of `staged[group..group + 64]` (clear past the end of `staged`).
#[inline]
fn group_hits(staged: &[u8], group: usize) -> u64 {
    match staged.get(group..group + 64) {
        Some(g) => {
            let (a, b) = g.split_at(32);
            let (lo, hi) = (
                u64::from(sync_bytes(&a[..16]) | sync_bytes(&a[16..]) << 16),
                u64::from(sync_bytes(&b[..16]) | sync_bytes(&b[16..]) << 16),
            );
            lo | hi << 32
        }
        None => {
            let first = dmapickle_core::frame::SYNC[0];
            staged
                .get(group..)
                .unwrap_or(&[])
                .iter()
                .enumerate()
                .fold(0, |m, (i, &b)| m | (u64::from(b == first) << i))
        }
    }
}

/// Bit `i` set for each `group[i]` (16 bytes) that is the sync word's first byte.
#[inline]
fn sync_bytes(group: &[u8]) -> u32 {
    let first = dmapickle_core::frame::SYNC[0];
    #[cfg(target_arch = "x86_64")]
    if let Ok(group) = <&[u8; 16]>::try_from(group) {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of every x86_64 CPU; the load reads the 16 bytes of `group`
        // (unaligned loads are allowed).
        return unsafe {
            let v = _mm_loadu_si128(group.as_ptr().cast::<__m128i>());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(first as i8))) as u32
        };
    }
    group
        .iter()
        .take(16)
        .enumerate()
        .fold(0, |m, (i, &b)| m | (u32::from(b == first) << i))
}
