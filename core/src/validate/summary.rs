//! The one-line summary of an accepted pickle (`dict{seq:int, adc:ndarray<i2>(1024,4) <- ...}`),
//! written by a second, tracing run of the machine.

use super::*;

pub(super) const MAX_SUMMARY_ITEMS: usize = 32;

// ------------------------------------------------------------------------------------------------
// Summary

pub(super) struct Tracer<'o> {
    pub(super) out: &'o mut dyn fmt::Write,
    pub(super) target: u64,
    pub(super) items: usize,
    pub(super) failed: bool,
}

impl Tracer<'_> {
    pub(super) fn write(&mut self, f: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) {
        if !self.failed && f(self.out).is_err() {
            self.failed = true;
        }
    }

    pub(super) fn item(&mut self, pickle: &[u8], key: Option<&Kind>, value: &Kind) {
        self.items += 1;
        if self.items > MAX_SUMMARY_ITEMS {
            return;
        }
        let first = self.items == 1;
        self.write(|w| {
            if !first {
                w.write_str(", ")?;
            }
            if let Some(key) = key {
                match key {
                    Kind::Str(s) => {
                        for c in s.str(pickle).chars() {
                            write!(w, "{}", c.escape_debug())?;
                        }
                    }
                    Kind::Int(Some(v)) => write!(w, "{v}")?,
                    other => describe(w, pickle, other)?,
                }
                w.write_char(':')?;
            }
            describe(w, pickle, value)
        });
    }
}

pub(super) fn describe(w: &mut dyn fmt::Write, _pickle: &[u8], kind: &Kind) -> fmt::Result {
    match kind {
        Kind::None => w.write_str("None"),
        Kind::Bool(_) => w.write_str("bool"),
        Kind::Int(_) | Kind::BigInt(_) => w.write_str("int"),
        Kind::Float(_) => w.write_str("float"),
        Kind::Complex(_) => w.write_str("complex"),
        Kind::Str(_) => w.write_str("str"),
        Kind::Bytes { len, .. } => write!(w, "bytes ({len} B)"),
        Kind::ByteArray { len } => write!(w, "bytearray ({len} B)"),
        Kind::Buffer {
            index,
            len,
            readonly,
        } => {
            write!(w, "buffer {index} ({len} B")?;
            w.write_str(if *readonly { ", read-only)" } else { ")" })
        }
        Kind::Tuple(t) => write!(w, "tuple({})", t.len),
        Kind::List { .. } => w.write_str("list"),
        Kind::Dict => w.write_str("dict"),
        Kind::Set => w.write_str("set"),
        Kind::FrozenSet => w.write_str("frozenset"),
        Kind::Array(a) => describe_array(w, a),
        Kind::NumpyScalar(s) => write!(w, "numpy scalar <{}>", s.dtype.scalar().code()),
        Kind::Object => w.write_str("object"),
        _ => w.write_str("?"),
    }
}

pub(super) fn describe_array(w: &mut dyn fmt::Write, a: &ArrayInfo) -> fmt::Result {
    write!(w, "ndarray<{}", a.dtype.scalar().code())?;
    if a.dtype.byte_order() == ByteOrder::Big && a.dtype.itemsize() > 1 {
        w.write_str(", big-endian")?;
    }
    w.write_str(">(")?;
    for (i, d) in a.shape.as_slice().iter().enumerate() {
        if i > 0 {
            w.write_char(',')?;
        }
        write!(w, "{d}")?;
    }
    w.write_char(')')?;
    if a.fortran {
        w.write_str(" F-order")?;
    }
    if a.strided {
        w.write_str(" strided")?;
    }
    w.write_str(" <- ")?;
    match a.source {
        Source::Buffer {
            index,
            len,
            readonly,
        } => {
            write!(w, "buffer {index}")?;
            if a.offset != 0 {
                write!(w, " at offset {}", a.offset)?;
            }
            write!(w, " ({len} B")?;
            w.write_str(if readonly { ", read-only)" } else { ")" })
        }
        Source::Bytes { len } => write!(w, "in-band bytes ({len} B)"),
        Source::ByteArray { len } => write!(w, "in-band bytearray ({len} B)"),
    }
}
