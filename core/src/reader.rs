//! Streaming, allocation-free reader of pickle opcodes (protocols 0 to 5).
//!
//! [`Reader`] walks a `&[u8]` and yields one [`Op`] per opcode: its byte offset, the [`Opcode`] and
//! its decoded [`Argument`], borrowed from the input. It never allocates, never panics and never
//! reads past the end: a length prefix that claims more than is left, a missing newline, bad UTF-8
//! or a bad decimal is an [`Error::Rejected`] naming the offset, and ends the stream.
//!
//! Arguments are decoded to what `pickletools.dis` shows: `INT 01` is `True`, `LONG 12L` is `12`,
//! `GLOBAL` gives module and name, `FLOAT` text becomes an `f64`. The reader does not stop at
//! `STOP`; it yields whatever follows (the validator rejects trailing data).
//!
//! ```
//! use dmapickle_core::reader::{Argument, Reader};
//! use dmapickle_core::opcode::Opcode;
//! // pickle.dumps(300, protocol=5): PROTO 5, BININT2 300, STOP
//! let ops: Vec<_> = Reader::new(b"\x80\x05M\x2c\x01.").map(|op| op.unwrap()).collect();
//! assert_eq!(ops[1].offset, 2);
//! assert_eq!(ops[1].opcode, Opcode::Binint2);
//! assert_eq!(ops[1].arg, Argument::Int(300));
//! assert_eq!(ops[2].opcode, Opcode::Stop);
//! ```

use core::fmt;

use crate::error::{Error, Result};
use crate::opcode::{Arg, Opcode};
use crate::reason::Reason;

/// An opcode's argument, decoded and borrowed from the pickle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Argument<'a> {
    /// The opcode takes no argument.
    None,
    /// A fixed-width integer (`BININT*`, memo indices, `PROTO`, `EXT*`) or a decimal one
    /// (`INT`, `LONG`, `GET`, `PUT`) that fits an `i64`.
    Int(i64),
    /// `FRAME`'s unsigned 8-byte length.
    Uint(u64),
    /// `INT` with the text `00` or `01`, which protocol 0 uses for `False`/`True`.
    Bool(bool),
    /// A decimal `INT`/`LONG` that does not fit an `i64`: an optional sign and ASCII digits.
    BigDecimal(&'a str),
    /// `LONG1`/`LONG4`: a little-endian two's-complement integer (empty means 0).
    Long(&'a [u8]),
    /// `FLOAT`/`BINFLOAT`.
    Float(f64),
    /// A UTF-8 string (`SHORT_BINUNICODE`, `BINUNICODE`, `BINUNICODE8`).
    Str(&'a str),
    /// A string with lone surrogates (`'a\ud800b'`), which CPython writes with the
    /// `surrogatepass` error handler: UTF-8 except that U+D800-U+DFFF are encoded as three bytes
    /// each. [`surrogatepass_code_points`] decodes it.
    StrWithSurrogates(&'a [u8]),
    /// `UNICODE`: raw-unicode-escape text; [`raw_unicode_chars`] decodes it.
    RawUnicode(&'a [u8]),
    /// `BINSTRING`/`SHORT_BINSTRING`: bytes that `pickletools` shows as a latin-1 str.
    String(&'a [u8]),
    /// `STRING`: the text between the quotes, still backslash-escaped; [`escaped_bytes`]
    /// decodes it.
    QuotedString(&'a [u8]),
    /// `SHORT_BINBYTES`, `BINBYTES`, `BINBYTES8`.
    Bytes(&'a [u8]),
    /// `BYTEARRAY8`.
    ByteArray(&'a [u8]),
    /// `GLOBAL`/`INST`: module and name.
    Global {
        /// Module, e.g. `"numpy"`.
        module: &'a str,
        /// Attribute name, e.g. `"ndarray"`.
        name: &'a str,
    },
    /// `PERSID`: the persistent id text.
    Text(&'a str),
}

/// One opcode of the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Op<'a> {
    /// Byte offset of the opcode byte.
    pub offset: usize,
    /// The opcode.
    pub opcode: Opcode,
    /// Its argument.
    pub arg: Argument<'a>,
    /// Offset just past the argument (where the next opcode starts).
    pub end: usize,
}

/// Streams the opcodes of a pickle. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

fn rejected(at: usize, opcode: u8, reason: Reason) -> Error {
    Error::Rejected { at, opcode, reason }
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub const fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            failed: false,
        }
    }

    /// A reader at offset `pos` of `data` (the validator reads the commonest opcodes itself
    /// and hands the rest here).
    pub(crate) const fn at(data: &'a [u8], pos: usize) -> Self {
        Reader {
            data,
            pos,
            failed: false,
        }
    }

    /// Offset of the next opcode to read.
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Reads the next opcode, `None` at the end of the data or after an error.
    #[inline]
    pub fn read_op(&mut self) -> Option<Result<Op<'a>>> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let r = self.read_inner();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }

    #[inline]
    fn read_inner(&mut self) -> Result<Op<'a>> {
        let offset = self.pos;
        let byte = *self
            .data
            .get(offset)
            .ok_or_else(|| rejected(offset, 0, Reason::Truncated))?;
        let opcode =
            Opcode::from_byte(byte).ok_or_else(|| rejected(offset, byte, Reason::UnknownOpcode))?;
        let mut cur = Cursor {
            data: self.data,
            pos: offset + 1,
            at: offset,
            op: byte,
        };
        let arg = cur.argument(opcode.arg())?;
        self.pos = cur.pos;
        Ok(Op {
            offset,
            opcode,
            arg,
            end: cur.pos,
        })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Op<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.read_op()
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    at: usize,
    op: u8,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: Reason) -> Error {
        rejected(self.at, self.op, reason)
    }

    fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self
            .pos
            .checked_add(N)
            .ok_or_else(|| self.err(Reason::Truncated))?;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| self.err(Reason::Truncated))?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        self.pos = end;
        Ok(out)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8]> {
        let left = self.left();
        let n = usize::try_from(len)
            .ok()
            .filter(|n| *n <= left)
            .ok_or_else(|| {
                self.err(Reason::LengthBeyondEnd {
                    declared: len,
                    left: left as u64,
                })
            })?;
        let bytes = self
            .data
            .get(self.pos..self.pos + n)
            .ok_or_else(|| self.err(Reason::Truncated))?;
        self.pos += n;
        Ok(bytes)
    }

    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let n = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| self.err(Reason::NoNewline))?;
        let line = rest.get(..n).ok_or_else(|| self.err(Reason::NoNewline))?;
        self.pos += n + 1;
        Ok(line)
    }

    fn utf8(&self, bytes: &'a [u8]) -> Result<&'a str> {
        core::str::from_utf8(bytes).map_err(|_| self.err(Reason::BadUtf8))
    }

    /// A `BINUNICODE*` argument: text as CPython decodes it (`'utf-8', 'surrogatepass'`).
    #[inline]
    fn text(&self, bytes: &'a [u8]) -> Result<Argument<'a>> {
        match core::str::from_utf8(bytes) {
            Ok(s) => Ok(Argument::Str(s)),
            Err(_) => self.surrogate_text(bytes),
        }
    }

    #[cold]
    fn surrogate_text(&self, bytes: &'a [u8]) -> Result<Argument<'a>> {
        if is_surrogatepass_utf8(bytes) {
            Ok(Argument::StrWithSurrogates(bytes))
        } else {
            Err(self.err(Reason::BadUtf8))
        }
    }

    fn decimal(&self, text: &'a [u8]) -> Result<Argument<'a>> {
        let s = self.utf8(text)?;
        let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.err(Reason::BadDecimal));
        }
        Ok(match s.parse::<i64>() {
            Ok(v) => Argument::Int(v),
            Err(_) => Argument::BigDecimal(s),
        })
    }

    #[inline]
    fn argument(&mut self, kind: Arg) -> Result<Argument<'a>> {
        Ok(match kind {
            Arg::None => Argument::None,
            Arg::Uint1 => Argument::Int(i64::from(self.fixed::<1>()?[0])),
            Arg::Uint2 => Argument::Int(i64::from(u16::from_le_bytes(self.fixed()?))),
            Arg::Uint4 => Argument::Int(i64::from(u32::from_le_bytes(self.fixed()?))),
            Arg::Int4 => Argument::Int(i64::from(i32::from_le_bytes(self.fixed()?))),
            Arg::Uint8 => Argument::Uint(u64::from_le_bytes(self.fixed()?)),
            Arg::DecimalNlShort => {
                let line = self.line()?;
                match line {
                    b"00" => Argument::Bool(false),
                    b"01" => Argument::Bool(true),
                    _ => self.decimal(line)?,
                }
            }
            Arg::DecimalNlLong => {
                let line = self.line()?;
                let line = line.strip_suffix(b"L").unwrap_or(line);
                self.decimal(line)?
            }
            Arg::Long1 => {
                let n = self.fixed::<1>()?[0];
                Argument::Long(self.take(u64::from(n))?)
            }
            Arg::Long4 => {
                let n = i32::from_le_bytes(self.fixed()?);
                let n = u64::try_from(n).map_err(|_| self.err(Reason::NegativeLength))?;
                Argument::Long(self.take(n)?)
            }
            Arg::String1 => {
                let n = self.fixed::<1>()?[0];
                Argument::String(self.take(u64::from(n))?)
            }
            Arg::String4 => {
                let n = i32::from_le_bytes(self.fixed()?);
                let n = u64::try_from(n).map_err(|_| self.err(Reason::NegativeLength))?;
                Argument::String(self.take(n)?)
            }
            Arg::Bytes1 => {
                let n = self.fixed::<1>()?[0];
                Argument::Bytes(self.take(u64::from(n))?)
            }
            Arg::Bytes4 => {
                let n = u32::from_le_bytes(self.fixed()?);
                Argument::Bytes(self.take(u64::from(n))?)
            }
            Arg::Bytes8 => {
                let n = u64::from_le_bytes(self.fixed()?);
                Argument::Bytes(self.take(n)?)
            }
            Arg::Bytearray8 => {
                let n = u64::from_le_bytes(self.fixed()?);
                Argument::ByteArray(self.take(n)?)
            }
            Arg::UnicodeString1 => {
                let n = self.fixed::<1>()?[0];
                let b = self.take(u64::from(n))?;
                self.text(b)?
            }
            Arg::UnicodeString4 => {
                let n = u32::from_le_bytes(self.fixed()?);
                let b = self.take(u64::from(n))?;
                self.text(b)?
            }
            Arg::UnicodeString8 => {
                let n = u64::from_le_bytes(self.fixed()?);
                let b = self.take(n)?;
                self.text(b)?
            }
            Arg::UnicodeStringNl => {
                let line = self.line()?;
                if raw_unicode_code_points(line).any(|c| c.is_none()) {
                    return Err(self.err(Reason::BadUnicodeEscape));
                }
                Argument::RawUnicode(line)
            }
            Arg::StringNl => {
                let line = self.line()?;
                let inner = match line {
                    [q @ (b'\'' | b'"'), inner @ .., last] if last == q => inner,
                    _ => return Err(self.err(Reason::BadQuotedString)),
                };
                if escaped_bytes(inner).any(|b| b.is_none()) {
                    return Err(self.err(Reason::BadQuotedString));
                }
                Argument::QuotedString(inner)
            }
            Arg::FloatNl => {
                let line = self.line()?;
                let s = self.utf8(line)?;
                Argument::Float(
                    s.trim()
                        .parse::<f64>()
                        .map_err(|_| self.err(Reason::BadFloat))?,
                )
            }
            Arg::Float8 => Argument::Float(f64::from_be_bytes(self.fixed()?)),
            Arg::StringNlNoescapePair => {
                let module = self.line()?;
                let name = self.line()?;
                Argument::Global {
                    module: self.utf8(module)?,
                    name: self.utf8(name)?,
                }
            }
            Arg::StringNlNoescape => {
                let line = self.line()?;
                Argument::Text(self.utf8(line)?)
            }
        })
    }
}

/// Decodes the backslash escapes of a `STRING` argument (Python's `codecs.escape_decode`):
/// yields each byte, or `None` once at a bad escape (the reader has already rejected those).
pub fn escaped_bytes(text: &[u8]) -> impl Iterator<Item = Option<u8>> + Clone + '_ {
    let mut i = 0usize;
    let mut failed = false;
    core::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        let b = *text.get(i)?;
        i += 1;
        if b != b'\\' {
            return Some(Some(b));
        }
        let Some(&e) = text.get(i) else {
            failed = true;
            return Some(None);
        };
        i += 1;
        let out = match e {
            b'\n' => continue,
            b'\\' => b'\\',
            b'\'' => b'\'',
            b'"' => b'"',
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 11,
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match text.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (v & 0xff) as u8
            }
            b'x' => {
                let hi = text.get(i).and_then(|d| (*d as char).to_digit(16));
                let lo = text.get(i + 1).and_then(|d| (*d as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        i += 2;
                        (h * 16 + l) as u8
                    }
                    _ => {
                        failed = true;
                        return Some(None);
                    }
                }
            }
            _ => {
                // Unknown escapes keep the backslash; the escaped byte comes next.
                i -= 1;
                b'\\'
            }
        };
        return Some(Some(out));
    })
}

/// Decodes a `UNICODE` argument (Python's `raw-unicode-escape`): bytes are latin-1 characters
/// except `\uXXXX` and `\UXXXXXXXX`. Yields `None` once at a bad escape.
pub fn raw_unicode_chars(text: &[u8]) -> impl Iterator<Item = Option<char>> + Clone + '_ {
    raw_unicode_code_points(text).map(|c| c.map(|c| char::from_u32(c).unwrap_or('\u{fffd}')))
}

/// Whether `bytes` is what CPython's `'utf-8', 'surrogatepass'` decoder accepts: UTF-8 in
/// which code points U+D800-U+DFFF may also appear, each as its own three bytes `ED A0-BF 80-BF`.
pub fn is_surrogatepass_utf8(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    loop {
        match core::str::from_utf8(rest) {
            Ok(_) => return true,
            Err(e) => {
                let bad = rest.get(e.valid_up_to()..).unwrap_or(&[]);
                match bad {
                    [0xed, 0xa0..=0xbf, 0x80..=0xbf, tail @ ..] => rest = tail,
                    _ => return false,
                }
            }
        }
    }
}

/// The code points of a [`StrWithSurrogates`](Argument::StrWithSurrogates) argument (any
/// surrogatepass UTF-8; yields nothing past an invalid byte).
pub fn surrogatepass_code_points(bytes: &[u8]) -> impl Iterator<Item = u32> + Clone + '_ {
    let mut i = 0usize;
    core::iter::from_fn(move || {
        let b0 = u32::from(*bytes.get(i)?);
        let cont = |k: usize| bytes.get(i + k).map(|b| u32::from(b & 0x3f));
        let (cp, n) = match b0 {
            0x00..=0x7f => (b0, 1),
            0xc0..=0xdf => ((b0 & 0x1f) << 6 | cont(1)?, 2),
            0xe0..=0xef => ((b0 & 0x0f) << 12 | cont(1)? << 6 | cont(2)?, 3),
            _ => (
                (b0 & 0x07) << 18 | cont(1)? << 12 | cont(2)? << 6 | cont(3)?,
                4,
            ),
        };
        i += n;
        Some(cp)
    })
}

/// Like [`raw_unicode_chars`], but yields code points, so that the surrogate escapes
/// (`\ud800`) that CPython writes for lone surrogates are kept.
pub fn raw_unicode_code_points(text: &[u8]) -> impl Iterator<Item = Option<u32>> + Clone + '_ {
    let mut i = 0usize;
    let mut failed = false;
    core::iter::from_fn(move || {
        if failed {
            return None;
        }
        let b = *text.get(i)?;
        i += 1;
        if b != b'\\' {
            return Some(Some(u32::from(b)));
        }
        let digits = match text.get(i) {
            Some(b'u') => 4,
            Some(b'U') => 8,
            _ => return Some(Some(u32::from(b'\\'))),
        };
        i += 1;
        let mut v: u32 = 0;
        for _ in 0..digits {
            match text.get(i).and_then(|d| (*d as char).to_digit(16)) {
                Some(d) => {
                    v = v.wrapping_mul(16).wrapping_add(d);
                    i += 1;
                }
                None => {
                    failed = true;
                    return Some(None);
                }
            }
        }
        if v > 0x10_ffff {
            failed = true;
            return Some(None);
        }
        Some(Some(v))
    })
}

/// Writes code points as [`write_py_str`] does, lone surrogates as `\udXXX` (as `repr` does).
pub fn write_py_code_points<I: Iterator<Item = u32> + Clone>(
    f: &mut dyn fmt::Write,
    code_points: I,
) -> fmt::Result {
    // Surrogates become U+FFFF placeholders for the quoting decision, then their escape.
    let chars = code_points
        .clone()
        .map(|c| char::from_u32(c).unwrap_or('\u{ffff}'));
    let has_single = chars.clone().any(|c| c == '\'');
    let has_double = chars.clone().any(|c| c == '"');
    let quote = if has_single && !has_double { '"' } else { '\'' };
    f.write_char(quote)?;
    for c in code_points {
        match char::from_u32(c) {
            Some(c) => write_py_char(f, c, quote)?,
            None => write!(f, "\\u{c:04x}")?,
        }
    }
    f.write_char(quote)
}

/// Writes `chars` as a Python str literal (`'...'`, escaping quotes, backslashes and control
/// characters) so that `ast.literal_eval` gives back the same string.
pub fn write_py_str<I: Iterator<Item = char> + Clone>(
    f: &mut dyn fmt::Write,
    chars: I,
) -> fmt::Result {
    let has_single = chars.clone().any(|c| c == '\'');
    let has_double = chars.clone().any(|c| c == '"');
    let quote = if has_single && !has_double { '"' } else { '\'' };
    f.write_char(quote)?;
    for c in chars {
        write_py_char(f, c, quote)?;
    }
    f.write_char(quote)
}

fn write_py_char(f: &mut dyn fmt::Write, c: char, quote: char) -> fmt::Result {
    match c {
        '\\' => f.write_str("\\\\"),
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c if c == quote => {
            f.write_char('\\')?;
            f.write_char(c)
        }
        c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) || c == '\u{ad}' => {
            write!(f, "\\x{:02x}", c as u32)
        }
        c if c.is_whitespace() && c != ' ' => write!(f, "\\u{:04x}", c as u32),
        c => f.write_char(c),
    }
}

/// Writes `bytes` as a Python bytes literal, exactly as Python's `repr` does.
pub fn write_py_bytes(f: &mut dyn fmt::Write, bytes: &[u8]) -> fmt::Result {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    f.write_char('b')?;
    f.write_char(quote)?;
    for &b in bytes {
        match b {
            b'\\' => f.write_str("\\\\")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            b if char::from(b) == quote => {
                f.write_char('\\')?;
                f.write_char(quote)?;
            }
            0x20..=0x7e => f.write_char(char::from(b))?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_char(quote)
}

/// Writes a little-endian two's-complement integer (a `LONG1`/`LONG4` argument) in decimal.
/// Integers over 1024 bytes (beyond what Python itself prints by default) are written as
/// `<N-byte int>`.
pub fn write_long(f: &mut dyn fmt::Write, bytes: &[u8]) -> fmt::Result {
    const LIMBS: usize = 256;
    if bytes.len() > LIMBS * 4 {
        return write!(f, "<{}-byte int>", bytes.len());
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    // Magnitude as base-2^32 limbs, least significant first.
    let mut limbs = [0u32; LIMBS];
    let mut n = 0usize;
    let mut carry = 1u64;
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let mut word = [if negative { 0xff } else { 0 }; 4];
        word.iter_mut().zip(chunk).for_each(|(w, b)| *w = *b);
        let mut v = u32::from_le_bytes(word);
        if negative {
            let s = u64::from(!v) + carry;
            v = s as u32;
            carry = s >> 32;
        }
        if let Some(l) = limbs.get_mut(i) {
            *l = v;
        }
        n = i + 1;
    }
    while n > 0 && limbs.get(n - 1) == Some(&0) {
        n -= 1;
    }
    if n == 0 {
        return f.write_str("0");
    }
    // Repeated division by 10^9 gives base-10^9 digits, least significant first.
    let mut chunks = [0u32; LIMBS * 10 / 9 + 2];
    let mut c = 0usize;
    while n > 0 {
        let mut rem = 0u64;
        for l in limbs.iter_mut().take(n).rev() {
            let cur = (rem << 32) | u64::from(*l);
            *l = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        if let Some(slot) = chunks.get_mut(c) {
            *slot = rem as u32;
        }
        c += 1;
        while n > 0 && limbs.get(n - 1) == Some(&0) {
            n -= 1;
        }
    }
    if negative {
        f.write_char('-')?;
    }
    let mut first = true;
    for chunk in chunks.iter().take(c).rev() {
        if first {
            write!(f, "{chunk}")?;
            first = false;
        } else {
            write!(f, "{chunk:09}")?;
        }
    }
    Ok(())
}

fn write_py_float(f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
    if v.is_nan() {
        f.write_str("nan")
    } else {
        write!(f, "{v:?}")
    }
}

/// Displays the argument as `pickletools.dis` does: Python literals for strings, bytes and
/// numbers, `'module name'` for globals.
impl fmt::Display for Argument<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Argument::None => Ok(()),
            Argument::Int(v) => write!(f, "{v}"),
            Argument::Uint(v) => write!(f, "{v}"),
            Argument::Bool(b) => f.write_str(if b { "True" } else { "False" }),
            Argument::BigDecimal(s) => {
                let (neg, digits) = match s.as_bytes().first() {
                    Some(b'-') => (true, s.get(1..).unwrap_or("")),
                    Some(b'+') => (false, s.get(1..).unwrap_or("")),
                    _ => (false, s),
                };
                let digits = digits.trim_start_matches('0');
                if digits.is_empty() {
                    f.write_str("0")
                } else {
                    if neg {
                        f.write_char('-')?;
                    }
                    f.write_str(digits)
                }
            }
            Argument::Long(b) => write_long(f, b),
            Argument::Float(v) => write_py_float(f, v),
            Argument::Str(s) => write_py_str(f, s.chars()),
            Argument::Text(s) => write_py_str(f, s.chars()),
            Argument::RawUnicode(b) => {
                write_py_code_points(f, raw_unicode_code_points(b).map_while(|c| c))
            }
            Argument::StrWithSurrogates(b) => write_py_code_points(f, surrogatepass_code_points(b)),
            Argument::String(b) => write_py_str(f, b.iter().map(|b| char::from(*b))),
            Argument::QuotedString(b) => {
                write_py_str(f, escaped_bytes(b).map_while(|b| b.map(char::from)))
            }
            Argument::Bytes(b) => write_py_bytes(f, b),
            Argument::ByteArray(b) => {
                f.write_str("bytearray(")?;
                write_py_bytes(f, b)?;
                f.write_char(')')
            }
            Argument::Global { module, name } => write_py_str(
                f,
                module
                    .chars()
                    .chain(core::iter::once(' '))
                    .chain(name.chars()),
            ),
        }
    }
}

use core::fmt::Write as _;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    fn ops(data: &[u8]) -> Vec<Result<Op<'_>>> {
        Reader::new(data).collect()
    }

    fn reason(data: &[u8]) -> Reason {
        match ops(data).into_iter().find_map(|r| r.err()) {
            Some(Error::Rejected { reason, .. }) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn fixed_width_arguments() {
        let data = b"\x80\x05K\xffM\x01\x02J\xfe\xff\xff\xffh\x07j\x01\x00\x00\x00\x95\x01\x00\x00\x00\x00\x00\x00\x00.";
        let args: Vec<_> = ops(data).into_iter().map(|o| o.unwrap().arg).collect();
        assert_eq!(
            args,
            [
                Argument::Int(5),
                Argument::Int(255),
                Argument::Int(0x0201),
                Argument::Int(-2),
                Argument::Int(7),
                Argument::Int(1),
                Argument::Uint(1),
                Argument::None
            ]
        );
    }

    #[test]
    fn text_arguments_as_pickletools_shows_them() {
        let data = b"I01\nI00\nI-12\nL123L\nI99999999999999999999\nF1.5\ncos\nsystem\nS'a\\x41\\n'\nVa\\u00e9b\n.";
        let args: Vec<_> = ops(data).into_iter().map(|o| o.unwrap().arg).collect();
        assert_eq!(args[0], Argument::Bool(true));
        assert_eq!(args[1], Argument::Bool(false));
        assert_eq!(args[2], Argument::Int(-12));
        assert_eq!(args[3], Argument::Int(123));
        assert_eq!(args[4], Argument::BigDecimal("99999999999999999999"));
        assert_eq!(args[5], Argument::Float(1.5));
        assert_eq!(
            args[6],
            Argument::Global {
                module: "os",
                name: "system"
            }
        );
        assert_eq!(format!("{}", args[7]), "'aA\\n'");
        assert_eq!(format!("{}", args[8]), "'aéb'");
        assert_eq!(format!("{}", args[6]), "'os system'");
    }

    #[test]
    fn huge_declared_length_is_rejected_not_allocated() {
        // BINBYTES8 claiming 2^62 bytes with 6 bytes behind it.
        let data = b"\x80\x05\x8e\x00\x00\x00\x00\x00\x00\x00\x40short.";
        assert_eq!(
            reason(data),
            Reason::LengthBeyondEnd {
                declared: 1 << 62,
                left: 6
            }
        );
        assert_eq!(reason(b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff"), {
            Reason::LengthBeyondEnd {
                declared: u64::MAX,
                left: 0,
            }
        });
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let data = b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x03abcX\x01\x00\x00\x00xG\x3f\xf8\x00\x00\x00\x00\x00\x00\x8a\x02\x01\x02cos\nsystem\n.";
        assert!(ops(data).iter().all(|r| r.is_ok()));
        for cut in 0..data.len() {
            let all = ops(&data[..cut]);
            let n_ok = all.iter().filter(|r| r.is_ok()).count();
            // Either every opcode up to the cut was whole, or the last one is an error.
            if let Some(Err(e)) = all.last() {
                assert!(matches!(e, Error::Rejected { .. }), "{e:?}");
            } else {
                assert!(n_ok < 9);
            }
        }
    }

    #[test]
    fn reader_reasons() {
        assert_eq!(reason(b"\xff"), Reason::UnknownOpcode);
        assert_eq!(reason(b"J\x01\x02"), Reason::Truncated);
        assert_eq!(reason(b"T\xff\xff\xff\xff"), Reason::NegativeLength);
        assert_eq!(reason(b"\x8b\xff\xff\xff\xff"), Reason::NegativeLength);
        assert_eq!(reason(b"I12"), Reason::NoNewline);
        assert_eq!(reason(b"I1x\n"), Reason::BadDecimal);
        assert_eq!(reason(b"Fabc\n"), Reason::BadFloat);
        assert_eq!(reason(b"Sabc\n"), Reason::BadQuotedString);
        assert_eq!(reason(b"S'\\x4'\n"), Reason::BadQuotedString);
        assert_eq!(reason(b"V\\u12\n"), Reason::BadUnicodeEscape);
        assert_eq!(reason(b"\x8c\x02\xff\xfe"), Reason::BadUtf8);
    }

    #[test]
    fn long_in_decimal() {
        let show = |b: &[u8]| {
            let mut s = String::new();
            write_long(&mut s, b).unwrap();
            s
        };
        assert_eq!(show(&[]), "0");
        assert_eq!(show(&[0xff]), "-1");
        assert_eq!(show(&[0x00, 0x80]), "-32768");
        // 2**100 and -(2**100), as CPython writes them in LONG1.
        let mut p = [0u8; 13];
        p[12] = 0x10;
        assert_eq!(show(&p), "1267650600228229401496703205376");
        let mut n = [0u8; 13];
        n[12] = 0xf0;
        assert_eq!(show(&n), "-1267650600228229401496703205376");
        assert_eq!(
            show(&[0x15, 0x81, 0xe9, 0x7d, 0xf4, 0x10, 0x22, 0x11]),
            "1234567890123456789"
        );
    }

    #[test]
    fn python_literals() {
        let mut s = String::new();
        write_py_bytes(&mut s, b"a'\x00\\\xff").unwrap();
        assert_eq!(s, "b\"a'\\x00\\\\\\xff\"");
        let mut s = String::new();
        write_py_str(&mut s, "it's \"q\"\n".chars()).unwrap();
        assert_eq!(s, "'it\\'s \"q\"\\n'");
    }
}
