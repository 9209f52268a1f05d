//! The machine's opcode loop and its decoder. The commonest opcodes (no argument, fixed-width
//! ints and floats, `LONG1`, and `SHORT_BINUNICODE` with ASCII text) are decoded here straight
//! from the pickle, but only where the [`Reader`] would decode them without an error, into
//! exactly what it would return; every other opcode, and every one the reader would refuse, is
//! read by the reader itself, so errors keep its offsets, opcodes and reasons.

use super::*;
use crate::opcode::Arg;

/// One opcode, decoded.
pub(super) enum Decoded<'p> {
    /// What the reader returns for it.
    Op(Op<'p>),
    /// A `SHORT_BINUNICODE` at `offset` whose `len` bytes of text are ASCII: the reader would
    /// return them as an `Argument::Str` (ASCII is UTF-8), which is all the machine needs to
    /// know of them; it takes the span without proving UTF-8 a second time.
    Ascii { offset: usize, len: usize },
    /// One for the reader to read (it may refuse it).
    Reader,
    /// The end of the pickle.
    End,
}

/// The opcode at `pos` if it is one of the commonest and the reader would read it without
/// error, else [`Decoded::Reader`] (or [`Decoded::End`]).
#[inline(always)]
pub(super) fn decode(pickle: &[u8], pos: usize) -> Decoded<'_> {
    let Some(&byte) = pickle.get(pos) else {
        return Decoded::End;
    };
    let Some(opcode) = Opcode::from_byte(byte) else {
        return Decoded::Reader;
    };
    let after = pos + 1;
    let op = |arg, end| {
        Decoded::Op(Op {
            offset: pos,
            opcode,
            arg,
            end,
        })
    };
    let fixed = |n: usize| pickle.get(after..after + n);
    match opcode.arg() {
        Arg::None => op(Argument::None, after),
        Arg::Uint1 => match fixed(1) {
            Some(&[b]) => op(Argument::Int(i64::from(b)), after + 1),
            _ => Decoded::Reader,
        },
        Arg::Uint2 => match fixed(2) {
            Some(&[a, b]) => op(
                Argument::Int(i64::from(u16::from_le_bytes([a, b]))),
                after + 2,
            ),
            _ => Decoded::Reader,
        },
        Arg::Int4 => match fixed(4) {
            Some(&[a, b, c, d]) => op(
                Argument::Int(i64::from(i32::from_le_bytes([a, b, c, d]))),
                after + 4,
            ),
            _ => Decoded::Reader,
        },
        Arg::Float8 => match fixed(8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => op(Argument::Float(f64::from_be_bytes(b)), after + 8),
            None => Decoded::Reader,
        },
        Arg::Long1 => match counted(pickle, after) {
            Some((bytes, end)) => op(Argument::Long(bytes), end),
            None => Decoded::Reader,
        },
        Arg::UnicodeString1 => match counted(pickle, after) {
            Some((text, _)) if text.iter().all(u8::is_ascii) => Decoded::Ascii {
                offset: pos,
                len: text.len(),
            },
            _ => Decoded::Reader,
        },
        _ => Decoded::Reader,
    }
}

/// A one-byte length at `at` and that many bytes after it, with the offset past them, if all
/// are in the pickle.
#[inline(always)]
fn counted(pickle: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let n = usize::from(*pickle.get(at)?);
    let bytes = pickle.get(at + 1..at + 1 + n)?;
    Some((bytes, at + 1 + n))
}

/// The reader's decoding of the opcode at `pos` (its result or its error; `pos` is inside the
/// pickle).
#[inline(never)]
fn by_reader(pickle: &[u8], pos: usize) -> Result<Op<'_>> {
    match Reader::at(pickle, pos).read_op() {
        Some(result) => result,
        // Not reached: `pos` is inside the pickle, where the reader always answers.
        None => Err(Error::Rejected {
            at: pos,
            opcode: 0,
            reason: Reason::Truncated,
        }),
    }
}

impl<'p> Machine<'_, 'p, '_, '_, '_> {
    pub(super) fn run_inner(&mut self) -> Result<Run> {
        let max_len = self.limits().max_len;
        if self.pickle.len() > max_len {
            self.op = self.pickle.first().copied().unwrap_or(0);
            return Err(self.reject(Reason::Limit {
                limit: Limit::Length,
                found: self.pickle.len() as u64,
                max: max_len as u64,
            }));
        }
        self.charge(limits::cost::LOAD)
            .map_err(|r| self.reject(r))?;
        let mut pos = 0;
        let mut opcodes = 0usize;
        loop {
            let op = match decode(self.pickle, pos) {
                Decoded::Op(op) => op,
                Decoded::Reader => by_reader(self.pickle, pos)?,
                Decoded::End => break,
                Decoded::Ascii { offset, len } => {
                    opcodes += 1;
                    let opcode = Opcode::ShortBinunicode;
                    let end = offset + 2 + len;
                    self.at = offset;
                    self.op = opcode.byte();
                    self.admit(opcode, offset, end)
                        .and_then(|()| self.text(end - len, len, true))
                        .map_err(|r| self.reject(r))?;
                    self.prev = [self.prev[1], Some(opcode)];
                    pos = end;
                    continue;
                }
            };
            pos = op.end;
            opcodes += 1;
            self.at = op.offset;
            self.op = op.opcode.byte();
            if op.opcode == Opcode::Stop {
                self.stop(&op).map_err(|r| self.reject(r))?;
                let max = u64::from(self.limits().max_collisions);
                let chosen = self.chosen_keys
                    + if self.set_of_list {
                        self.chosen_list_items
                    } else {
                        0
                    };
                if !self.use_keys && chosen > max {
                    return Ok(Run::NeedKeys {
                        lists: self.set_of_list,
                    });
                }
                let validated = Validated {
                    protocol: self.protocol.unwrap_or(0),
                    buffers: self.used_buffers,
                    arrays: self.arrays,
                    opcodes,
                    depth: self.depth,
                    alloc: self.alloc,
                };
                return Ok(Run::Done(validated));
            }
            self.step(&op).map_err(|r| self.reject(r))?;
            self.prev = [self.prev[1], Some(op.opcode)];
        }
        self.at = self.pickle.len();
        self.op = 0;
        Err(self.reject(Reason::NoStop))
    }

    /// The checks every opcode but `PROTO` passes before it runs: a protocol was named, the
    /// opcode does not straddle a frame's end, this profile allows it and its protocol is not
    /// above the pickle's.
    #[inline(always)]
    pub(super) fn admit(&mut self, opcode: Opcode, offset: usize, end: usize) -> Check<()> {
        let Some(protocol) = self.protocol else {
            return Err(Reason::BadProto);
        };
        if offset < self.frame_end && end > self.frame_end {
            return Err(Reason::BadFrame);
        }
        match self.level(opcode) {
            Level::NotRun => Err(Reason::OpcodeNotAllowed),
            Level::From(level) if level > protocol => Err(Reason::OpcodeAboveProtocol),
            Level::From(_) => Ok(()),
        }
    }

    /// A str literal of `len` bytes at `start` (UTF-8 the reader proved, `ascii` if it is).
    #[inline(always)]
    pub(super) fn text(&mut self, start: usize, len: usize, ascii: bool) -> Check<()> {
        let text = self.pickle.get(start..start + len).unwrap_or(&[]);
        let latin1 = latin1_chars(text, ascii);
        let seed = if ascii { 0 } else { hash::stand_in_text(text) };
        self.charge(limits::cost::str(len as u64, ascii))?;
        self.push(Kind::Str(Span {
            start,
            len,
            latin1,
            seed,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An op with a float argument as its bits (NaN is not equal to itself).
    fn bits(op: Op<'_>) -> Op<'_> {
        match op.arg {
            Argument::Float(f) => Op {
                arg: Argument::Uint(f.to_bits()),
                ..op
            },
            _ => op,
        }
    }

    /// What the reader alone returns at `pos`, with an ASCII `SHORT_BINUNICODE` as the
    /// decoder reports it.
    fn reader_view(pickle: &[u8], pos: usize) -> Option<Result<(usize, Option<Op<'_>>)>> {
        Reader::at(pickle, pos).read_op().map(|r| {
            r.map(|op| match op.arg {
                Argument::Str(s) if op.opcode == Opcode::ShortBinunicode && s.is_ascii() => {
                    (op.end, None)
                }
                _ => (op.end, Some(bits(op))),
            })
        })
    }

    fn decoder_view(pickle: &[u8], pos: usize) -> Option<Result<(usize, Option<Op<'_>>)>> {
        Some(Ok(match decode(pickle, pos) {
            Decoded::End => return None,
            Decoded::Reader => match by_reader(pickle, pos) {
                Ok(op) => (op.end, Some(bits(op))),
                Err(e) => return Some(Err(e)),
            },
            Decoded::Op(op) => (op.end, Some(bits(op))),
            Decoded::Ascii { offset, len } => {
                // The span really is the text the reader reads, and it is ASCII.
                let text = &pickle[offset + 2..offset + 2 + len];
                assert_eq!(usize::from(pickle[offset + 1]), len);
                assert!(text.is_ascii());
                (offset + 2 + len, None)
            }
        }))
    }

    #[test]
    fn the_decoder_returns_exactly_what_the_reader_returns() {
        // Every opcode byte, followed by tails that make its argument short, exact, long,
        // ASCII, non-ASCII UTF-8, surrogates, invalid UTF-8, NaN floats and negative ints.
        let tails: [&[u8]; 16] = [
            b"",
            b"\x00",
            b"\x01",
            b"\x01a",
            b"\x02ab",
            b"\x03abc",
            b"\x03ab",
            b"\x02\xc3\xa9",
            b"\x03\xed\xa0\x80",
            b"\x02\xff\xfe",
            b"\x05\x80\x81\x82\x83\x84\x85\x86\x87",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x7f\xf8\x00\x00\x00\x00\x00\x00",
            b"\x08\x01\x02\x03\x04\x05\x06\x07\x08",
            b"\x00\x00\x00\x80\x00",
            b"1\n2\n",
        ];
        let mut buf = [0u8; 32];
        let mut checked = 0;
        for byte in 0..=255u8 {
            for tail in tails {
                for lead in 0..2 {
                    let pickle = &mut buf[..lead + 1 + tail.len()];
                    pickle[..lead].fill(b'(');
                    pickle[lead] = byte;
                    pickle[lead + 1..].copy_from_slice(tail);
                    let pickle = &*pickle;
                    for cut in lead..=pickle.len() {
                        let p = &pickle[..cut];
                        assert_eq!(
                            decoder_view(p, lead),
                            reader_view(p, lead),
                            "{p:02x?} at {lead}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50_000);
    }
}
