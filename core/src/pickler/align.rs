//! [`Pickler::align_to`]: a finished pickle made a whole number of words long.

use super::Pickler;
use crate::opcode as op;
use crate::{EncodeError, EncodeResult as Result};

impl<const N: usize, const D: usize> Pickler<'_, N, D> {
    /// Makes the finished pickle (its `STOP` included) a multiple of `multiple` bytes long (1, 2,
    /// 4 or 8) by widening some of its short strings or bytes: `SHORT_BINUNICODE` becomes
    /// `BINUNICODE` and `SHORT_BINBYTES` becomes `BINBYTES`, 3 bytes longer each (up to three for
    /// a multiple of 4, the first ones in the pickle). The pickle loads to the same value;
    /// only the bytes differ from CPython's own.
    ///
    /// Why: a frame is `32 + P + 12N + I` bytes (docs/wire-format.md), so with a pickle of a
    /// multiple of 4 bytes and arrays of whole words every frame, and so every part of every
    /// frame after it on a stream, starts at a word offset: a DMA engine or a copy into a
    /// socket's ring takes its aligned path.
    ///
    /// Call it when the value is complete, just before [`finish`](Pickler::finish). Fails with
    /// [`EncodeError::UnclosedContainer`] or [`EncodeError::NotOneValue`] as `finish` does, and
    /// with [`EncodeError::CannotAlign`] for another multiple, too few short strings or bytes,
    /// or no room for 3 more bytes each; the pickle is then unchanged.
    ///
    /// ```
    /// use dmapickle_core::{EncodeError, Pickler};
    /// let mut buf = [0u8; 32];
    /// let mut p = Pickler::new(&mut buf);
    /// p.list(|p| {
    ///     p.str("ab")?;
    ///     p.str("c")
    /// })?;
    /// assert_eq!(p.len() + 1, 13); // b"\x80\x05](\x8c\x02ab\x8c\x01ce."
    /// p.align_to(4)?;
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05](X\x02\x00\x00\x00ab\x8c\x01ce.");
    ///
    /// let mut p = Pickler::new(&mut buf);
    /// p.str("a")?; // 7 bytes: needs three strings widened, has one
    /// assert_eq!(p.align_to(4), Err(EncodeError::CannotAlign));
    /// assert_eq!(p.finish()?.pickle, b"\x80\x05\x8c\x01a.");
    /// # Ok::<(), dmapickle_core::EncodeError>(())
    /// ```
    pub fn align_to(&mut self, multiple: usize) -> Result<()> {
        if self.depth != 0 {
            return Err(EncodeError::UnclosedContainer);
        }
        if !self.done {
            return Err(EncodeError::NotOneValue);
        }
        if !matches!(multiple, 1 | 2 | 4 | 8) {
            return Err(EncodeError::CannotAlign);
        }
        let len = self.pos + 1;
        // Each widening adds 3 bytes, and 3 is its own inverse modulo 2, 4 and 8.
        let widen = (multiple - len % multiple) % multiple * 3 % multiple;
        if widen == 0 {
            return Ok(());
        }
        let grown = self.pos + 3 * widen;
        if grown >= self.buf.len() {
            return Err(EncodeError::CannotAlign);
        }
        let mut at = [0usize; 7];
        let mut found = 0;
        let pickle = self.buf.get(..self.pos).ok_or(EncodeError::CannotAlign)?;
        for op in crate::reader::Reader::new(pickle) {
            let Some(slot) = at.get_mut(found).filter(|_| found < widen) else {
                break;
            };
            let op = op.map_err(|_| EncodeError::CannotAlign)?;
            if matches!(
                op.opcode,
                crate::opcode::Opcode::ShortBinunicode | crate::opcode::Opcode::ShortBinbytes
            ) {
                *slot = op.offset;
                found += 1;
            }
        }
        if found < widen {
            return Err(EncodeError::CannotAlign);
        }
        // One move per byte: from the last widened opcode back, the bytes after opcode `j` move
        // 3 * (j + 1) further on and its 5-byte header lands 3 * j further on; a header ends
        // where its bytes now begin, and every move is forward over bytes already moved.
        let mut tail = self.pos;
        for j in (0..widen).rev() {
            let a = *at.get(j).ok_or(EncodeError::CannotAlign)?;
            let (Some(&short), Some(&n)) = (self.buf.get(a), self.buf.get(a + 1)) else {
                return Err(EncodeError::CannotAlign);
            };
            self.buf.copy_within(a + 2..tail, a + 2 + 3 * (j + 1));
            let wide = if short == op::SHORT_BINUNICODE {
                op::BINUNICODE
            } else {
                op::BINBYTES
            };
            let [n0, n1, n2, n3] = u32::from(n).to_le_bytes();
            self.buf
                .get_mut(a + 3 * j..a + 3 * j + 5)
                .ok_or(EncodeError::CannotAlign)?
                .copy_from_slice(&[wide, n0, n1, n2, n3]);
            tail = a;
        }
        self.pos = grown;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// `pickle` with every opcode decoded, widened strings and bytes read as their short forms.
    fn ops_narrowed(pickle: &[u8]) -> Vec<(crate::opcode::Opcode, std::string::String)> {
        use crate::opcode::Opcode;
        crate::reader::Reader::new(pickle)
            .map(|op| {
                let op = op.unwrap();
                let code = match op.opcode {
                    Opcode::Binunicode => Opcode::ShortBinunicode,
                    Opcode::Binbytes => Opcode::ShortBinbytes,
                    other => other,
                };
                (code, std::format!("{:?}", op.arg))
            })
            .collect()
    }

    #[test]
    fn align_to_widens_the_first_short_strings_and_changes_nothing_else() {
        for multiple in [1, 2, 4, 8] {
            for filler in 0..40usize {
                let write = |p: &mut Pickler<'_>| {
                    p.dict(|p| {
                        for key in ["a", "bc", "def", "ghij"] {
                            p.str(key)?;
                            p.bytes(b"xy")?;
                        }
                        p.str("filler")?;
                        p.bytes(&[7; 64][..filler])?;
                        p.str(&"z".repeat(300))?; // already long: never widened
                        p.int(filler)
                    })
                };
                let plain = super::super::tests::encode(write);
                let mut buf = std::vec![0u8; 1 << 12];
                let mut p = Pickler::new(&mut buf);
                write(&mut p).unwrap();
                p.align_to(multiple).unwrap();
                let aligned = p.finish().unwrap().pickle.to_vec();
                assert_eq!(aligned.len() % multiple, 0, "{multiple} {filler}");
                let widened = (aligned.len() - plain.len()) / 3;
                assert!(widened < multiple && aligned.len() - plain.len() == 3 * widened);
                assert_eq!(ops_narrowed(&aligned), ops_narrowed(&plain));
                // The first `widened` short strings or bytes, and only they.
                let long = |b: &[u8]| {
                    crate::reader::Reader::new(b)
                        .map(|op| op.unwrap().opcode)
                        .filter(|o| {
                            matches!(
                                o,
                                crate::opcode::Opcode::Binunicode | crate::opcode::Opcode::Binbytes
                            )
                        })
                        .count()
                };
                assert_eq!(long(&aligned), widened + long(&plain));
            }
        }
    }

    #[test]
    fn align_to_refuses_what_it_cannot_do_and_leaves_the_pickle() {
        let mut buf = [0u8; 64];
        let mut p = Pickler::new(&mut buf);
        p.begin_list().unwrap();
        assert_eq!(p.align_to(4), Err(EncodeError::UnclosedContainer));
        p.str("ab").unwrap();
        p.end_list().unwrap();
        for bad in [0, 3, 16] {
            assert_eq!(p.align_to(bad), Err(EncodeError::CannotAlign));
        }
        // 9 bytes: a multiple of 8 needs five strings widened (24), and there is one.
        assert_eq!(p.len() + 1, 9); // \x80\x05]\x8c\x02aba.
        assert_eq!(p.align_to(8), Err(EncodeError::CannotAlign));
        assert_eq!(p.len() + 1, 9);
        p.align_to(1).unwrap();
        assert_eq!(p.len() + 1, 9);
        p.align_to(2).unwrap(); // one widening: 12
        p.align_to(4).unwrap(); // 12 already
        assert_eq!(p.finish().unwrap().pickle, b"\x80\x05]X\x02\0\0\0aba.");
        // No room for the three more bytes.
        let mut buf = [0u8; 10];
        let mut p = Pickler::new(&mut buf);
        p.str("abcd").unwrap(); // \x80\x05\x8c\x04abcd. is 9: needs 3 more for 12
        assert_eq!(p.align_to(4), Err(EncodeError::CannotAlign));
        assert_eq!(p.finish().unwrap().pickle, b"\x80\x05\x8c\x04abcd.");
        let mut buf = [0u8; 8];
        assert_eq!(
            Pickler::new(&mut buf).align_to(4),
            Err(EncodeError::NotOneValue)
        );
    }
}
