//! Recognising a layout already proved: a stream's messages are one pickle with new numbers in
//! the same places (the encoder writes the same bytes for the same message, a [`Template`] patches
//! fixed slots), so after one full proof the validator only compares the constant bytes and
//! re-checks the numbers that changed.
//!
//! # Why a match accepts exactly what the full validator accepts
//!
//! While the machine proves a pickle it notes every int literal (`BININT1`, `BININT2`,
//! `BININT`, `LONG1` of at most 8 bytes) and float literal (`BINFLOAT`) it pushes, and keeps
//! as *free* only those whose value went straight into a dict as a value (`SETITEM(S)`, odd
//! positions) and was never memoized (`MEMOIZE`/`BINPUT`, the only way to copy a value on the
//! machine). Such a value's number is read by the machine in exactly one place: the allocation
//! charge of the int (0 bytes for CPython's cached `-5..=256`, else 32). Its kind, depth (0) and
//! expanded size (1) do not depend on it, a dict value is never hashed, and no check after the
//! `SETITEM(S)` can see it. The free bytes are the argument bytes only: opcodes and length
//! bytes are constant, so every opcode boundary, frame, offset and previous-opcode check is the
//! same.
//!
//! A later pickle *matches* if it has the same length, the same out-of-band buffer lengths,
//! the same validator settings (profile, limits, no extra globals) and workspace capacities,
//! and the same bytes outside the free slots. The full machine would then run the same steps
//! with the same results, except for the int charges: it accepts iff the allocation bound with
//! the new charges is within `max_alloc` (charges only add up, so the running checks pass iff
//! the final one does), and returns the same [`Validated`] with that bound. The match checks
//! exactly that, and anything that does not match runs the full validator (which proves and
//! remembers the new layout if it accepts it).
//!
//! [`Template`]: crate::Template

use super::*;

/// Longest pickle a [`Layout`] remembers.
pub const LAYOUT_MAX_LEN: usize = 256;
/// Most out-of-band buffers a remembered pickle may have.
const MAX_BUFFERS: usize = 8;
/// Most free slots a layout remembers (literals past these stay constant bytes).
const MAX_SLOTS: usize = 16;

/// How a free slot's bytes encode its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    /// `BININT1`: u8.
    U8,
    /// `BININT2`: u16, little-endian.
    U16,
    /// `BININT`: i32, little-endian.
    I32,
    /// `LONG1` of 1 to 8 bytes: two's complement, little-endian.
    Long,
    /// `BINFLOAT`: its charge does not depend on the value.
    Float,
}

impl Number {
    /// The allocation the machine charges for this literal's value (see `Machine::step`).
    fn charge(self, b: &[u8]) -> u64 {
        let v = match (self, b) {
            (Number::U8, [x]) => i64::from(*x),
            (Number::U16, [a, b]) => i64::from(u16::from_le_bytes([*a, *b])),
            (Number::I32, [a, b, c, d]) => i64::from(i32::from_le_bytes([*a, *b, *c, *d])),
            (Number::Long, b) => match long_small(b) {
                Some(v) => v,
                // Unreachable for a slot of at most 8 bytes; charge as the big int it would be.
                None => return limits::cost::int_bytes(b.len() as u64),
            },
            (Number::Float, _) => return limits::cost::FLOAT,
            _ => return limits::cost::int_bytes(b.len() as u64),
        };
        limits::cost::int_small(v)
    }
}

/// One remembered free slot: the argument bytes `at..at + len` of a literal.
#[derive(Debug, Clone, Copy)]
struct FreeSlot {
    at: u16,
    len: u8,
    number: Number,
}

impl FreeSlot {
    const NONE: FreeSlot = FreeSlot {
        at: 0,
        len: 0,
        number: Number::Float,
    };
    fn range(&self) -> core::ops::Range<usize> {
        usize::from(self.at)..usize::from(self.at) + usize::from(self.len)
    }
}

/// A candidate noted during a proof: a literal pushed with stack id `id`.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: u64,
    slot: FreeSlot,
    free: bool,
    memoized: bool,
}

/// What a proving run notes about its literals (lives only for one validation).
#[derive(Debug)]
pub(super) struct Recorder {
    n: usize,
    candidates: [Candidate; MAX_SLOTS],
}

impl Recorder {
    pub(super) const fn new() -> Self {
        Recorder {
            n: 0,
            candidates: [Candidate {
                id: 0,
                slot: FreeSlot::NONE,
                free: false,
                memoized: false,
            }; MAX_SLOTS],
        }
    }

    /// A number literal `op` was just pushed with stack id `id`.
    pub(super) fn literal(&mut self, op: &Op<'_>, id: u64) {
        let (number, skip) = match op.opcode {
            Opcode::Binint1 => (Number::U8, 1),
            Opcode::Binint2 => (Number::U16, 1),
            Opcode::Binint => (Number::I32, 1),
            Opcode::Long1 => (Number::Long, 2),
            Opcode::Binfloat => (Number::Float, 1),
            _ => return,
        };
        let start = op.offset + skip;
        let (Ok(at), Ok(len)) = (u16::try_from(start), u8::try_from(op.end - start)) else {
            return;
        };
        if len == 0 || len > 8 {
            return;
        }
        if let Some(c) = self.candidates.get_mut(self.n) {
            *c = Candidate {
                id,
                slot: FreeSlot { at, len, number },
                free: false,
                memoized: false,
            };
            self.n += 1;
        }
    }

    /// The slots a layout would leave free, in order (for the tests that compare provers).
    #[cfg(test)]
    pub(super) fn free(&self) -> impl Iterator<Item = (u16, u8, bool)> + '_ {
        self.candidates
            .get(..self.n)
            .unwrap_or(&[])
            .iter()
            .filter(|c| c.free && !c.memoized)
            .map(|c| (c.slot.at, c.slot.len, c.slot.number == Number::Float))
    }

    fn find(&mut self, id: u64) -> Option<&mut Candidate> {
        self.candidates
            .get_mut(..self.n)
            .unwrap_or(&mut [])
            .iter_mut()
            .find(|c| c.id == id)
    }

    /// The value with stack id `id` went into a dict as a value.
    pub(super) fn dict_value(&mut self, id: u64) {
        if let Some(c) = self.find(id) {
            c.free = true;
        }
    }

    /// The value with stack id `id` was memoized (so copies of it may be used anywhere).
    pub(super) fn memoized(&mut self, id: u64) {
        if let Some(c) = self.find(id) {
            c.memoized = true;
        }
    }
}

/// A pickle the validator has proved, with the slots whose numbers may change: see the
/// [module docs](self). Lend one to a [`Workspace`] with [`Workspace::with_layout`] (an
/// `OwnedWorkspace` has its own), and a stream of messages that differ only in those numbers is
/// validated by a comparison.
///
/// ```
/// use dmapickle_core::validate::{Layout, Profile, Slot, Validator, Workspace};
/// // {'seq': 7} and {'seq': 8} in the strict profile
/// let first = b"\x80\x05}\x8c\x03seqK\x07s.";
/// let next = b"\x80\x05}\x8c\x03seqK\x08s.";
/// let (mut stack, mut memo) = ([Slot::EMPTY; 16], [Slot::EMPTY; 16]);
/// let mut layout = Layout::new();
/// let mut ws = Workspace::new(&mut stack, &mut memo).with_layout(&mut layout);
/// let v = Validator::new(Profile::Strict);
/// let full = v.validate(first, &[], &mut ws).unwrap();
/// assert_eq!(v.validate(next, &[], &mut ws).unwrap(), full);
/// assert_eq!(layout.free_slots(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Layout {
    len: usize,
    bytes: [u8; LAYOUT_MAX_LEN],
    buffers: [usize; MAX_BUFFERS],
    n_buffers: usize,
    profile: Profile,
    limits: Limits,
    /// Stack, memo and key table capacities of the workspace that proved it.
    capacities: [usize; 3],
    validated: Validated,
    /// `validated.alloc` without the free slots' charges.
    base_alloc: u64,
    slots: [FreeSlot; MAX_SLOTS],
    n_slots: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    /// No layout yet.
    pub const fn new() -> Self {
        Layout {
            len: usize::MAX,
            bytes: [0; LAYOUT_MAX_LEN],
            buffers: [0; MAX_BUFFERS],
            n_buffers: 0,
            profile: Profile::Strict,
            limits: Limits::DEFAULT,
            capacities: [0; 3],
            validated: Validated {
                protocol: 0,
                buffers: 0,
                arrays: 0,
                opcodes: 0,
                depth: 0,
                alloc: 0,
            },
            base_alloc: 0,
            slots: [FreeSlot::NONE; MAX_SLOTS],
            n_slots: 0,
        }
    }

    /// Forgets the layout.
    pub fn clear(&mut self) {
        self.len = usize::MAX;
    }

    /// Free slots of the layout remembered (0 if none is).
    pub fn free_slots(&self) -> usize {
        if self.len == usize::MAX {
            0
        } else {
            self.n_slots
        }
    }

    /// Whether a validation of `pickle` by `v` could be proved or matched (the extra globals
    /// are not remembered, so a validator with any is never matched).
    pub(super) fn eligible(v: &Validator<'_>, pickle: &[u8], buffers: &[usize]) -> bool {
        v.extra.is_empty() && pickle.len() <= LAYOUT_MAX_LEN && buffers.len() <= MAX_BUFFERS
    }

    fn slots(&self) -> &[FreeSlot] {
        self.slots.get(..self.n_slots).unwrap_or(&[])
    }

    /// What the full validator would return for `pickle`, if it matches this layout.
    #[inline]
    pub(super) fn matches(
        &self,
        v: &Validator<'_>,
        pickle: &[u8],
        buffers: &[usize],
        capacities: [usize; 3],
    ) -> Option<Validated> {
        if pickle.len() != self.len
            || self.buffers.get(..self.n_buffers)? != buffers
            || v.profile != self.profile
            || v.limits != self.limits
            || capacities != self.capacities
            || !v.extra.is_empty()
        {
            return None;
        }
        let mut alloc = self.base_alloc;
        let mut from = 0;
        for slot in self.slots() {
            let range = slot.range();
            if pickle.get(from..range.start)? != self.bytes.get(from..range.start)? {
                return None;
            }
            alloc = alloc.saturating_add(slot.number.charge(pickle.get(range.clone())?));
            from = range.end;
        }
        if pickle.get(from..)? != self.bytes.get(from..self.len)? || alloc > self.limits.max_alloc {
            return None;
        }
        Some(Validated {
            alloc,
            ..self.validated
        })
    }

    /// Remembers `pickle`, just accepted by `v` as `validated`, with the free slots `recorder`
    /// found.
    pub(super) fn remember(
        &mut self,
        v: &Validator<'_>,
        pickle: &[u8],
        buffers: &[usize],
        capacities: [usize; 3],
        validated: Validated,
        recorder: &Recorder,
    ) {
        let (Some(bytes), Some(lens)) = (
            self.bytes.get_mut(..pickle.len()),
            self.buffers.get_mut(..buffers.len()),
        ) else {
            self.clear();
            return;
        };
        bytes.copy_from_slice(pickle);
        lens.copy_from_slice(buffers);
        self.n_buffers = buffers.len();
        self.profile = v.profile;
        self.limits = v.limits;
        self.capacities = capacities;
        self.validated = validated;
        let mut alloc = validated.alloc;
        self.n_slots = 0;
        let noted = recorder.candidates.get(..recorder.n).unwrap_or(&[]);
        for c in noted.iter().filter(|c| c.free && !c.memoized) {
            let Some(b) = pickle.get(c.slot.range()) else {
                continue;
            };
            let Some(out) = self.slots.get_mut(self.n_slots) else {
                break;
            };
            *out = c.slot;
            self.n_slots += 1;
            alloc = alloc.saturating_sub(c.slot.number.charge(b));
        }
        self.base_alloc = alloc;
        self.len = pickle.len();
    }
}

#[cfg(test)]
mod tests;
