//! Tuple classification (which callable's arguments a tuple can be) and the numpy checks: dtype
//! strings, shapes, strides, offsets and where an array's bytes lie.

use super::*;

/// A str's UTF-8 bytes (the reader proved them; comparing bytes checks nothing twice).
pub(super) fn str_of<'p>(m: &Machine<'_, 'p, '_, '_, '_>, k: &Kind) -> Option<&'p [u8]> {
    match k {
        Kind::Str(s) => Some(s.bytes(m.pickle)),
        _ => None,
    }
}

pub(super) fn ints(items: &[Slot]) -> Option<Dims> {
    if items.len() > MAX_NDIM || !items.iter().all(|s| matches!(s.kind, Kind::Int(Some(_)))) {
        return None;
    }
    let mut d = Dims {
        len: items.len() as u8,
        v: [0; MAX_NDIM],
    };
    for (slot, out) in items.iter().zip(d.v.iter_mut()) {
        match slot.kind {
            Kind::Int(Some(v)) => *out = v,
            _ => return None,
        }
    }
    Some(d)
}

pub(super) fn shape_of(k: &Kind) -> Check<&Dims> {
    match k {
        Kind::Tuple(Tuple {
            class: Class::Ints(d),
            ..
        }) if d.as_slice().iter().all(|v| *v >= 0) => Ok(d),
        _ => Err(Reason::BadShape),
    }
}

pub(super) fn source_of(k: &Kind) -> Check<Source> {
    match *k {
        Kind::Buffer {
            index,
            len,
            readonly,
        } => Ok(Source::Buffer {
            index,
            len,
            readonly,
        }),
        Kind::Bytes { len, .. } => Ok(Source::Bytes { len }),
        Kind::ByteArray { len } => Ok(Source::ByteArray { len }),
        _ => Err(Reason::BadArrayData),
    }
}

pub(super) fn order_of(s: Option<&[u8]>) -> Check<bool> {
    match s {
        Some(b"C") => Ok(false),
        Some(b"F") => Ok(true),
        _ => Err(Reason::BadOrder),
    }
}

/// Parses a numpy dtype string such as `<i2`, `|u1`, `>f8` (general also: `i2`, `=i2`).
/// `s` is the str's UTF-8 bytes (the reader proved them).
pub(super) fn dtype_str(s: &[u8], strict: bool) -> Check<DType> {
    let (prefix, code) = match s.split_first() {
        Some((p @ (b'<' | b'>' | b'|' | b'='), rest)) => (Some(*p), rest),
        _ => (None, s),
    };
    let code = Scalar::from_code_bytes(code).ok_or(Reason::DtypeNotAllowed)?;
    let one = code.itemsize() == 1;
    let order = match prefix {
        Some(b'>') if !one || !strict => ByteOrder::Big,
        Some(b'<') if !one || !strict => ByteOrder::Little,
        Some(b'|') if one || !strict => ByteOrder::Little,
        Some(b'=') | None if !strict => ByteOrder::Little,
        _ => return Err(Reason::DtypeNotAllowed),
    };
    // One-byte types have no byte order: `DType::new` keeps them `Little`, as this did before.
    Ok(DType::new(code, order))
}

/// nbytes of an array, or the reason it overflows.
pub(super) fn nbytes(dtype: &DType, shape: &Dims) -> Check<u64> {
    shape
        .as_slice()
        .iter()
        .try_fold(dtype.itemsize() as u64, |acc, d| {
            acc.checked_mul(u64::try_from(*d).map_err(|_| Reason::BadShape)?)
                .filter(|n| *n <= i64::MAX as u64)
                .ok_or(Reason::ShapeOverflow)
        })
}

/// Where an array's bytes come from and how they are laid out.
pub(super) struct Placement<'d> {
    pub(super) dtype: DType,
    pub(super) shape: &'d Dims,
    pub(super) fortran: bool,
    pub(super) source: Source,
    pub(super) offset: i64,
    pub(super) strides: Option<&'d Dims>,
    /// The array must cover its source exactly (what `_frombuffer`, `_reconstruct` and strict
    /// `ndarray` require).
    pub(super) exact: bool,
}

/// The array of this placement: checks that its bytes lie inside its source ([`place`]), then
/// its logical size ([`logical`]), and builds its info once.
pub(super) fn array(p: Placement<'_>, max_bytes: u64) -> Check<ArrayInfo> {
    let offset = place(&p)?;
    logical(&p.dtype, p.shape, max_bytes)?;
    Ok(ArrayInfo {
        dtype: p.dtype,
        shape: *p.shape,
        fortran: p.fortran,
        source: p.source,
        offset,
        strided: p.strides.is_some(),
    })
}

/// [`array()`] of C- or Fortran-ordered data that covers its source exactly, from offset 0 (what
/// `_frombuffer` and `_reconstruct` build).
pub(super) fn exact_array(
    dtype: DType,
    shape: &Dims,
    fortran: bool,
    source: Source,
    max_bytes: u64,
) -> Check<ArrayInfo> {
    let placement = Placement {
        dtype,
        shape,
        fortran,
        source,
        offset: 0,
        strides: None,
        exact: true,
    };
    array(placement, max_bytes)
}

/// Checks that the array's bytes lie inside its source; the offset.
pub(super) fn place(p: &Placement<'_>) -> Check<u64> {
    let Placement {
        dtype,
        shape,
        source,
        offset,
        strides,
        exact,
        ..
    } = *p;
    let size = nbytes(&dtype, shape)?;
    let offset = u64::try_from(offset).map_err(|_| Reason::NegativeOffset)?;
    let len = source.len();
    // The offset lies inside (or at the end of) the buffer for every size, empty arrays too.
    if offset > len {
        return Err(Reason::ArrayOutsideBuffer);
    }
    match strides {
        None => {
            let end = offset.checked_add(size).ok_or(Reason::ArrayOutsideBuffer)?;
            if end > len || (exact && (offset != 0 || end != len)) {
                return Err(Reason::ArrayOutsideBuffer);
            }
        }
        Some(strides) => {
            if strides.len != shape.len || exact {
                return Err(Reason::BadStrides);
            }
            if size != 0 {
                let (mut lo, mut hi) = (i128::from(offset), i128::from(offset));
                for (d, s) in shape.as_slice().iter().zip(strides.as_slice()) {
                    let reach = i128::from(*s)
                        .checked_mul(i128::from(*d) - 1)
                        .ok_or(Reason::BadStrides)?;
                    let side = if reach < 0 { &mut lo } else { &mut hi };
                    *side = side.checked_add(reach).ok_or(Reason::BadStrides)?;
                }
                hi = hi
                    .checked_add(dtype.itemsize() as i128)
                    .ok_or(Reason::BadStrides)?;
                if lo < 0 || hi > i128::from(len) {
                    return Err(Reason::BadStrides);
                }
            }
        }
    }
    Ok(offset)
}

/// `hash(complex(a[, b]))` for number arguments, or why `complex()` would fail (an int too
/// large for a float raises `OverflowError`).
pub(super) fn complex_hash(a: Option<&Kind>, b: Option<&Kind>) -> Check<Hash> {
    let part = |k: Option<&Kind>| -> Check<Option<i64>> {
        Ok(match k {
            None => Some(0),
            Some(Kind::Bool(b)) => Some(i64::from(*b)),
            Some(Kind::Int(Some(v))) => hash::float(*v as f64),
            Some(Kind::Float(bits)) => hash::float(f64::from_bits(*bits)),
            _ => return Err(Reason::BadCallArguments),
        })
    };
    Ok(match (part(a)?, part(b)?) {
        (Some(re), Some(im)) => Hash::Known(hash::complex(re, im)),
        _ => Hash::Random,
    })
}

/// Checks an array's logical size: what `a + 1` or `a.copy()` allocates, whatever the strides
/// (a stride-0 view of 8 bytes may claim 8 TiB).
pub(super) fn logical(dtype: &DType, shape: &Dims, max_bytes: u64) -> Check<()> {
    let size = nbytes(dtype, shape)?;
    if size > max_bytes {
        return Err(Reason::Limit {
            limit: Limit::ArrayBytes,
            found: size,
            max: max_bytes,
        });
    }
    Ok(())
}

pub(super) fn classify(m: &Machine<'_, '_, '_, '_, '_>, items: &[Slot]) -> Class {
    let k = |i: usize| items.get(i).map(|s| &s.kind);
    let strict = m.strict();
    let max_bytes = m.limits().max_array_bytes;
    if let Some(d) = ints(items) {
        return Class::Ints(d);
    }
    match items.len() {
        1 | 2 if items.iter().all(|s| s.kind.is_number()) => {
            return Class::Numbers(complex_hash(k(0), k(1)));
        }
        _ => {}
    }
    match (items.len(), items.first().map(|s| m.current(s))) {
        (
            1,
            Some(&Slot {
                kind:
                    Kind::List {
                        hashable_items,
                        len,
                        max_class,
                    },
                id,
                ..
            }),
        ) => {
            return Class::ListArg(hashable_items, id, len, max_class);
        }
        (
            1,
            Some(&Slot {
                kind: Kind::Bytes { len, .. },
                ..
            }),
        ) => return Class::BytesArg(len),
        _ => {}
    }
    // numpy.dtype(code, False, True)
    if let (3, Some(Kind::Str(code)), Some(Kind::Bool(false)), Some(Kind::Bool(true))) =
        (items.len(), k(0), k(1), k(2))
    {
        return Class::DtypeArgs(
            Scalar::from_code_bytes(code.bytes(m.pickle)).ok_or(Reason::DtypeNotAllowed),
        );
    }
    // dtype state (3, byteorder, None, None, None, -1, -1, 0)
    if let (8, Some(Kind::Int(Some(3))), Some(Kind::Str(order))) = (items.len(), k(0), k(1)) {
        let tail = [k(2), k(3), k(4), k(5), k(6), k(7)];
        let plain = tail
            == [
                Some(&Kind::None),
                Some(&Kind::None),
                Some(&Kind::None),
                Some(&Kind::Int(Some(-1))),
                Some(&Kind::Int(Some(-1))),
                Some(&Kind::Int(Some(0))),
            ];
        let order = match (plain, order.bytes(m.pickle)) {
            (true, b"<") => Ok(Some(false)),
            (true, b">") => Ok(Some(true)),
            (true, b"|") => Ok(None),
            _ => Err(Reason::DtypeNotAllowed),
        };
        return Class::DtypeState(order);
    }
    // _codecs.encode(str, 'latin1')
    if let (2, Some(Kind::Str(text)), Some(Kind::Str(enc))) = (items.len(), k(0), k(1)) {
        if enc.bytes(m.pickle) == b"latin1" {
            return Class::EncodeArgs(*text);
        }
    }
    // _reconstruct(numpy.ndarray, (0,), b'b')
    if let (
        3,
        Some(Kind::Global(Callee::Ndarray)),
        Some(Kind::Tuple(shape)),
        Some(Kind::Bytes { span: Some(b), .. }),
    ) = (items.len(), k(0), k(1), k(2))
    {
        let zero = matches!(shape.class, Class::Ints(d) if d.as_slice() == [0]);
        if zero && b.bytes(m.pickle) == b"b" {
            return Class::ReconstructArgs;
        }
        return Class::Plain;
    }
    // numpy scalar(dtype, bytes): numpy copies itemsize bytes (fewer raise, more are ignored;
    // CPython's pickler writes exactly itemsize)
    if let (2, Some(Kind::Dtype(dtype))) = (items.len(), k(0)) {
        return Class::ScalarArgs(match k(1) {
            Some(Kind::Bytes { len, span }) if *len == dtype.itemsize() as u64 => {
                Ok(NumpyScalar::new(*dtype, span.map(|s| s.bytes(m.pickle))))
            }
            _ => Err(Reason::BadCallArguments),
        });
    }
    // _frombuffer(buffer, dtype, shape, order)
    if let (4, Some(Kind::Dtype(dtype))) = (items.len(), k(1)) {
        let info = (|| {
            let source = source_of(k(0).unwrap_or(&Kind::None))?;
            let shape = shape_of(k(2).unwrap_or(&Kind::None))?;
            let fortran = order_of(k(3).and_then(|s| str_of(m, s)))?;
            exact_array(*dtype, shape, fortran, source, max_bytes)
        })();
        return Class::FromBufferArgs(info);
    }
    // _reconstruct state (1, shape, dtype, is_fortran, rawdata)
    if let (5, Some(Kind::Int(Some(1))), Some(Kind::Dtype(dtype))) = (items.len(), k(0), k(2)) {
        let info = (|| {
            let shape = shape_of(k(1).unwrap_or(&Kind::None))?;
            let Some(Kind::Bool(fortran)) = k(3) else {
                return Err(Reason::BadOrder);
            };
            let source = match k(4) {
                Some(Kind::Bytes { len, .. }) => Source::Bytes { len: *len },
                _ => return Err(Reason::BadArrayData),
            };
            exact_array(*dtype, shape, *fortran, source, max_bytes)
        })();
        return Class::ArrayState(info);
    }
    // numpy.ndarray(shape, dtype_str, buffer[, offset[, strides[, order]]])
    if let (3..=6, Some(Kind::Tuple(_)), Some(Kind::Str(dtype))) = (items.len(), k(0), k(1)) {
        let info = (|| {
            if strict && items.len() != 6 {
                return Err(Reason::BadCallArguments);
            }
            let shape = shape_of(k(0).unwrap_or(&Kind::None))?;
            let dtype = dtype_str(dtype.bytes(m.pickle), strict)?;
            let source = source_of(k(2).unwrap_or(&Kind::None))?;
            if strict && !matches!(source, Source::Buffer { .. }) {
                return Err(Reason::BadArrayData);
            }
            let offset = match k(3) {
                None => 0,
                Some(Kind::Int(Some(o))) => *o,
                Some(Kind::Int(None) | Kind::BigInt(_)) => return Err(Reason::ArrayOutsideBuffer),
                _ => return Err(Reason::BadCallArguments),
            };
            let strides = match k(4) {
                None | Some(Kind::None) => None,
                Some(Kind::Tuple(Tuple {
                    class: Class::Ints(d),
                    ..
                })) if !strict => Some(d),
                _ => return Err(Reason::BadStrides),
            };
            let fortran = match k(5) {
                None => false,
                Some(s) => order_of(str_of(m, s))?,
            };
            if offset < 0 {
                return Err(Reason::NegativeOffset);
            }
            let exact = strict;
            array(
                Placement {
                    dtype,
                    shape,
                    fortran,
                    source,
                    offset,
                    strides,
                    exact,
                },
                max_bytes,
            )
        })();
        return Class::NdarrayArgs(info);
    }
    Class::Plain
}
