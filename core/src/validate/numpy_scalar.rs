//! numpy scalars (`np.float64(1.5)`, `np.int64(7)`): what one made from its dtype and bytes
//! hashes to. numpy hashes a scalar exactly as the Python bool, int, float or complex of the
//! same value (checked against numpy 1.26 and 2.4 over every integer edge and random bit
//! patterns of every float type), so a dict keyed by them is counted like one keyed by numbers.

use super::*;

/// A numpy scalar of an allowed dtype: an immutable copy of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NumpyScalar {
    pub(super) dtype: DType,
    /// Its hash; [`Hash::Opaque`] when its bytes are not in the pickle as they are
    /// (protocol 2 spells them as `_codecs.encode` of non-ASCII text).
    pub(super) hash: Hash,
    /// An int that hashes to itself ([`hash::is_unique_int`]), or a bool: never counted.
    pub(super) unique: bool,
}

impl NumpyScalar {
    /// The scalar numpy makes of `dtype` and `bytes` (exactly its itemsize, when known).
    pub(super) fn new(dtype: DType, bytes: Option<&[u8]>) -> Self {
        let opaque = NumpyScalar {
            dtype,
            hash: Hash::Opaque,
            unique: false,
        };
        let Some(bytes) = bytes.filter(|b| b.len() == dtype.itemsize()) else {
            return opaque;
        };
        let big = dtype.byte_order() == ByteOrder::Big;
        let word = |b: &[u8]| -> u64 {
            let fold = |v: u64, x: &u8| v << 8 | u64::from(*x);
            if big {
                b.iter().fold(0, fold)
            } else {
                b.iter().rev().fold(0, fold)
            }
        };
        let int = |v: i64| NumpyScalar {
            dtype,
            hash: Hash::Known(hash::int(v)),
            unique: hash::is_unique_int(v),
        };
        let number = |h: Option<i64>| NumpyScalar {
            dtype,
            hash: h.map_or(Hash::Random, Hash::Known),
            unique: false,
        };
        let raw = word(bytes);
        let bits = 8 * bytes.len() as u32;
        match dtype.scalar() {
            // numpy makes `np.True_` of any nonzero byte.
            Scalar::Bool => int(i64::from(raw != 0)),
            Scalar::I8 | Scalar::I16 | Scalar::I32 | Scalar::I64 => {
                let shift = 64 - bits;
                int(((raw << shift) as i64) >> shift)
            }
            Scalar::U8 | Scalar::U16 | Scalar::U32 => int(raw as i64),
            Scalar::U64 => match i64::try_from(raw) {
                Ok(v) => int(v),
                Err(_) => number(Some(hash::uint(raw))),
            },
            Scalar::F16 => number(hash::float(half(raw as u16))),
            Scalar::F32 => number(hash::float(f64::from(f32::from_bits(raw as u32)))),
            Scalar::F64 => number(hash::float(f64::from_bits(raw))),
            Scalar::C64 | Scalar::C128 => {
                let (re, im) = bytes.split_at(bytes.len() / 2);
                let part = |b: &[u8]| {
                    let w = word(b);
                    hash::float(if b.len() == 4 {
                        f64::from(f32::from_bits(w as u32))
                    } else {
                        f64::from_bits(w)
                    })
                };
                number(match (part(re), part(im)) {
                    (Some(re), Some(im)) => Some(hash::complex(re, im)),
                    _ => None,
                })
            }
        }
    }
}

/// An IEEE 754 half's value, exactly (every half is a double).
fn half(h: u16) -> f64 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = i32::from((h >> 10) & 0x1f);
    let fraction = f64::from(h & 0x3ff);
    // 2**e for the exponents a half has, built from its bits (no libm in no_std).
    let pow2 = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    match exponent {
        0 => sign * fraction * pow2(-24),
        31 if fraction == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1024.0 + fraction) * pow2(e - 25),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(code: &str, bytes: &[u8]) -> (Hash, bool) {
        let s = NumpyScalar::new(DType::parse(code).unwrap(), Some(bytes));
        (s.hash, s.unique)
    }

    // Values printed by CPython 3.11 with numpy 2.4 and 1.26: `hash(np.<type>(...))`.
    #[test]
    fn hashes_as_numpy_does() {
        assert_eq!(hash_of("|b1", &[2]), (Hash::Known(1), true));
        assert_eq!(hash_of("|i1", &[0xff]), (Hash::Known(-2), false));
        assert_eq!(hash_of(">i2", &[0xff, 0xfe]), (Hash::Known(-2), false));
        assert_eq!(hash_of(">i2", &[0x01, 0x02]), (Hash::Known(258), true));
        assert_eq!(
            hash_of("<i8", &[0, 0, 0, 0, 0, 0, 0, 0x80]),
            (Hash::Known(-4), false)
        );
        assert_eq!(hash_of("<u8", &[0xff; 8]), (Hash::Known(7), false)); // 2**64 - 1
        assert_eq!(
            hash_of(">u8", &[0x80, 0, 0, 0, 0, 0, 0, 0]),
            (Hash::Known(4), false)
        );
        assert_eq!(hash_of("<u4", &[0xff; 4]), (Hash::Known(0xffff_ffff), true));
        assert_eq!(
            hash_of("<f2", &0x7bffu16.to_le_bytes()),
            (Hash::Known(65504), false)
        );
        assert_eq!(
            hash_of("<f2", &[1, 0]),
            (Hash::Known(137_438_953_472), false)
        );
        assert_eq!(
            hash_of("<f2", &0x7e00u16.to_le_bytes()),
            (Hash::Random, false)
        ); // NaN
        assert_eq!(
            hash_of(">f4", &1.5f32.to_be_bytes()),
            (Hash::Known(1_152_921_504_606_846_977), false)
        );
        let c = [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat();
        assert_eq!(
            hash_of("<c8", &c),
            (Hash::Known(1_152_921_504_604_846_971), false)
        );
        let nan = [0.0f64.to_le_bytes(), f64::NAN.to_le_bytes()].concat();
        assert_eq!(hash_of("<c16", &nan).0, Hash::Random);
        assert_eq!(
            NumpyScalar::new(DType::parse("<f8").unwrap(), None).hash,
            Hash::Opaque
        );
    }

    #[test]
    fn halves_are_exact() {
        assert_eq!(half(0x3c00), 1.0);
        assert_eq!(half(0xc000), -2.0);
        assert_eq!(half(0x0001), 2f64.powi(-24));
        assert_eq!(half(0x03ff), 1023.0 * 2f64.powi(-24));
        assert_eq!(half(0x0400), 2f64.powi(-14));
        assert_eq!(half(0x7c00), f64::INFINITY);
        assert!(half(0x7c01).is_nan());
        assert_eq!(half(0x8000).to_bits(), (-0.0f64).to_bits());
    }
}
