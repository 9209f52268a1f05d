//! The flat record, proved in one pass: the message instruments send most (a dict of str keys
//! whose values are numbers, `None`, bools, str, out-of-band buffers and `numpy.ndarray` arrays
//! over them), checked without the abstract machine's slots.
//!
//! # Why a proof here is the machine's proof
//!
//! [`prove`] recognises the strict profile's encoding of such a dict byte by byte and runs, for
//! each opcode it accepts, the machine's own checks and charges on a state of plain counters:
//! the stack height and its high-water mark (what `push_slot` charges and the workspace's stack
//! holds), the memo entries (all `numpy.ndarray`, the only global it takes, so a `BINGET` needs
//! only its index), the allocation charges of every literal, container and call, the nesting
//! depth and expanded sizes (fixed by the grammar: 2 with an array, else 1; at most
//! `1 + 2 x pairs`), and the keys hashed (str keys: no chosen hash, no collision to count). An
//! array takes the machine's own `dtype_str`, `nbytes` and logical-size checks and the strict
//! placement (offset 0, exactly the buffer's length). The layout recorder is told the same
//! literals, in the same order, with the same dict values, as the machine tells it.
//!
//! Anything else (another opcode, a key that is not ASCII str, a number the machine would
//! charge or classify differently, a check that fails, a limit that would be exceeded, a
//! workspace too small) returns `None` *before anything is accepted*, and the caller runs the
//! machine, which gives the verdict and, for a refusal, its offset, opcode and reason. So this
//! path only ever accepts, and what it accepts, with the [`Validated`] it returns, is exactly
//! what the machine accepts and returns: `tests.rs` checks that on every generated record and
//! hundreds of thousands of mutants of them, under tight limits and small workspaces, and the
//! `record` fuzz target does it coverage-guided.

use super::*;
use limits::cost;

#[cfg(test)]
mod tests;

/// The strict encoding of the `numpy.ndarray` global and its memoization (the encoder's
/// definition of it).
const NDARRAY: &[u8] = b"\x8c\x05numpy\x8c\x07ndarray\x93\x94";

/// The counters the machine would keep for this pickle.
struct Record<'p, 'r> {
    pickle: &'p [u8],
    buffers: &'p [usize],
    recorder: Option<&'r mut Recorder>,
    pos: usize,
    opcodes: usize,
    sp: usize,
    high: usize,
    memo: usize,
    memo_capacity: usize,
    alloc: u64,
    arrays: usize,
    used_buffers: usize,
    /// The largest expanded size of a tuple built (a shape, an argument tuple).
    tuple_size: u64,
    next_id: u64,
    max_array_bytes: u64,
}

/// What the machine returns for `pickle` if it is a flat record it accepts, or `None` to let the
/// machine decide. No extra globals only. Either profile: the general one accepts everything
/// the strict one does, with the same [`Validated`] (the `validate` fuzz target asserts that
/// on every input), and for these bytes runs the same checks; the strict-only ones (`PROTO 5`,
/// both literals right before `STACK_GLOBAL`, `READONLY_BUFFER` right after `NEXT_BUFFER`, a
/// memo only for globals, an array covering its buffer exactly) hold by construction here.
pub(super) fn prove(
    v: &Validator<'_>,
    pickle: &[u8],
    buffers: &[usize],
    capacities: [usize; 3],
    recorder: Option<&mut Recorder>,
) -> Option<Validated> {
    let limits = &v.limits;
    if !v.extra.is_empty() || pickle.len() > limits.max_len {
        return None;
    }
    // PROTO 5, EMPTY_DICT
    if pickle.get(..3)? != b"\x80\x05}" {
        return None;
    }
    let mut r = Record {
        pickle,
        buffers,
        recorder,
        pos: 3,
        opcodes: 2,
        sp: 0,
        high: 0,
        memo: 0,
        memo_capacity: capacities[1],
        alloc: cost::LOAD.saturating_add(cost::DICT),
        arrays: 0,
        used_buffers: 0,
        tuple_size: 0,
        next_id: 0,
        max_array_bytes: limits.max_array_bytes,
    };
    r.push();
    let mut pairs = 0u64;
    loop {
        match r.byte()? {
            b'.' => {
                r.op(1);
                break;
            }
            // MARK (key value)* SETITEMS
            b'(' => {
                r.op(1);
                r.push();
                let mut n = 0u64;
                while r.byte()? != b'u' {
                    r.pair()?;
                    n += 1;
                }
                r.op(1);
                r.charge(n.saturating_mul(cost::DICT_ITEM));
                r.sp = 1;
                pairs += n;
            }
            // key value SETITEM
            _ => {
                r.pair()?;
                if r.byte()? != b's' {
                    return None;
                }
                r.op(1);
                r.charge(cost::DICT_ITEM);
                r.sp = 1;
                pairs += 1;
            }
        }
    }
    if r.pos != pickle.len() || r.used_buffers != buffers.len() || r.high > capacities[0] {
        return None;
    }
    r.charge((r.high as u64).saturating_mul(cost::STACK_SLOT));
    r.charge((r.memo as u64).saturating_mul(cost::MEMO_SLOT));
    // Every value's nesting: the dict 1, an array in it 2 (its argument tuple is 2 as well).
    let depth = if r.arrays > 0 { 2 } else { 1 };
    let budget = (pickle.len() as u64)
        .saturating_mul(u64::from(limits.max_expansion))
        .saturating_add(EXPANSION_SLACK);
    // The dict's expanded size; the keys hashed (1 each, the machine's hash work) are fewer.
    let dict_size = 1 + 2 * pairs;
    if r.alloc > limits.max_alloc
        || depth > limits.max_depth
        || dict_size.max(r.tuple_size) > budget
    {
        return None;
    }
    Some(Validated {
        protocol: 5,
        buffers: r.used_buffers,
        arrays: r.arrays,
        opcodes: r.opcodes,
        depth,
        alloc: r.alloc,
    })
}

impl Record<'_, '_> {
    fn byte(&self) -> Option<u8> {
        self.pickle.get(self.pos).copied()
    }

    /// One opcode of `len` bytes read.
    fn op(&mut self, len: usize) {
        self.pos += len;
        self.opcodes += 1;
    }

    fn push(&mut self) {
        self.sp += 1;
        self.high = self.high.max(self.sp);
    }

    fn charge(&mut self, bytes: u64) {
        self.alloc = self.alloc.saturating_add(bytes);
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A `SHORT_BINUNICODE` of ASCII text at `pos`: pushed and charged; its text.
    fn ascii(&mut self) -> Option<&[u8]> {
        if self.byte()? != 0x8c {
            return None;
        }
        let n = usize::from(*self.pickle.get(self.pos + 1)?);
        let start = self.pos + 2;
        let pickle = self.pickle;
        let text = pickle.get(start..start + n)?;
        if !text.is_ascii() {
            return None;
        }
        self.op(2 + n);
        self.charge(cost::str(n as u64, true));
        self.push();
        Some(text)
    }

    /// A number literal the machine pushes as `Int(Some(_))` or `Float` (`BININT1`, `BININT2`,
    /// `BININT`, `LONG1` that fits an i64, `BINFLOAT`): pushed, charged and told to the
    /// recorder; its int value (`None` for a float) and its id.
    fn number(&mut self) -> Option<(Option<i64>, u64)> {
        let at = self.pos;
        let byte = self.byte()?;
        let opcode = Opcode::from_byte(byte)?;
        let arg = |n: usize| self.pickle.get(at + 1..at + 1 + n);
        let (value, len) = match opcode {
            Opcode::Binint1 => (Some(i64::from(*arg(1)?.first()?)), 2),
            Opcode::Binint2 => match arg(2)? {
                &[a, b] => (Some(i64::from(u16::from_le_bytes([a, b]))), 3),
                _ => return None,
            },
            Opcode::Binint => match arg(4)? {
                &[a, b, c, d] => (Some(i64::from(i32::from_le_bytes([a, b, c, d]))), 5),
                _ => return None,
            },
            Opcode::Long1 => {
                let n = usize::from(*arg(1)?.first()?);
                let bytes = self.pickle.get(at + 2..at + 2 + n)?;
                (Some(long_small(bytes)?), 2 + n)
            }
            Opcode::Binfloat => {
                arg(8)?;
                (None, 9)
            }
            _ => return None,
        };
        self.op(len);
        self.charge(value.map_or(cost::FLOAT, cost::int_small));
        self.push();
        let id = self.new_id();
        if let Some(r) = self.recorder.as_deref_mut() {
            let op = Op {
                offset: at,
                opcode,
                arg: Argument::None,
                end: at + len,
            };
            r.literal(&op, id);
        }
        Some((value, id))
    }

    /// `NEXT_BUFFER [READONLY_BUFFER]`: the buffer's length.
    fn buffer(&mut self) -> Option<u64> {
        if self.byte()? != 0x97 {
            return None;
        }
        let len = *self.buffers.get(self.used_buffers)?;
        self.used_buffers += 1;
        self.op(1);
        self.push();
        if self.byte() == Some(0x98) {
            self.op(1);
            self.charge(cost::MEMORYVIEW);
        }
        Some(len as u64)
    }

    /// One key (ASCII str) and its value, left on the stack.
    fn pair(&mut self) -> Option<()> {
        self.ascii()?;
        match self.byte()? {
            b'N' | 0x88 | 0x89 => {
                self.op(1);
                self.push();
            }
            b'K' | b'M' | b'J' | 0x8a | b'G' => {
                let (_, id) = self.number()?;
                if let Some(r) = self.recorder.as_deref_mut() {
                    r.dict_value(id);
                }
            }
            0x97 => {
                self.buffer()?;
            }
            0x8c if self.pickle.get(self.pos..self.pos + NDARRAY.len()) == Some(NDARRAY) => {
                self.array(true)?
            }
            0x8c => {
                self.ascii()?;
            }
            b'h' => self.array(false)?,
            _ => return None,
        }
        Some(())
    }

    /// `numpy.ndarray` (defined and memoized, or `BINGET` of it), then `MARK shape dtype
    /// NEXT_BUFFER [READONLY_BUFFER] 0 None order TUPLE NEWOBJ`.
    /// `defined`: the caller saw [`NDARRAY`] at `pos`.
    fn array(&mut self, defined: bool) -> Option<()> {
        let base = self.sp;
        if defined {
            // 'numpy' 'ndarray' STACK_GLOBAL MEMOIZE
            self.ascii()?;
            self.ascii()?;
            self.op(1);
            self.sp = base;
            self.push();
            if self.memo >= self.memo_capacity {
                return None;
            }
            self.memo += 1;
            self.op(1);
        } else if self.byte()? == b'h' {
            let index = usize::from(*self.pickle.get(self.pos + 1)?);
            if index >= self.memo {
                return None;
            }
            self.op(2);
            self.push();
        } else {
            return None;
        }
        if self.byte()? != b'(' {
            return None;
        }
        self.op(1);
        self.push();
        // The shape: EMPTY_TUPLE, 1 to 3 ints and TUPLE1-3, or MARK ints TUPLE.
        let mut shape = Dims {
            len: 0,
            v: [0; MAX_NDIM],
        };
        let marked = self.byte()? == b'(';
        if marked {
            self.op(1);
            self.push();
        }
        let mut n = 0usize;
        if !marked && self.byte()? == b')' {
            self.op(1);
        } else {
            while matches!(self.byte()?, b'K' | b'M' | b'J' | 0x8a) {
                let (Some(dim), _) = self.number()? else {
                    return None;
                };
                // `shape_of`: no negative dimension; `ints`: at most MAX_NDIM of them.
                if dim < 0 {
                    return None;
                }
                *shape.v.get_mut(n)? = dim;
                n += 1;
            }
            match (marked, self.byte()?) {
                (true, b't') => {}
                (false, b @ 0x85..=0x87) if usize::from(b - 0x84) == n => {}
                _ => return None,
            }
            self.op(1);
        }
        // The tuple replaces its items (and MARK) on the stack.
        self.sp = base + 2;
        self.push();
        shape.len = n as u8;
        self.charge(cost::tuple(n as u64));
        self.tuple_size = self.tuple_size.max(1 + n as u64);
        let ndim = u64::from(shape.len);
        // The dtype string, as strict reads it.
        let dtype = dtype_str(self.ascii()?, true).ok()?;
        let len = self.buffer()?;
        // offset 0, strides None, order 'C' or 'F'
        if self.pickle.get(self.pos..self.pos + 3)? != b"K\x00N" {
            return None;
        }
        self.number()?;
        self.op(1);
        self.push();
        match self.ascii()? {
            b"C" | b"F" => {}
            _ => return None,
        }
        // TUPLE of the six arguments, then NEWOBJ.
        if self.pickle.get(self.pos..self.pos + 2)? != b"t\x81" {
            return None;
        }
        self.op(1);
        self.sp = base + 1;
        self.push();
        self.charge(cost::tuple(6));
        self.tuple_size = self.tuple_size.max(7 + ndim);
        self.op(1);
        self.sp = base;
        self.push();
        // The strict placement: the array covers its buffer exactly, from offset 0.
        // (`logical`: the same size against `max_array_bytes`)
        let size = nbytes(&dtype, &shape).ok()?;
        if size != len || size > self.max_array_bytes {
            return None;
        }
        self.charge(cost::array(ndim).saturating_add(cost::DTYPE));
        self.arrays += 1;
        Some(())
    }
}
