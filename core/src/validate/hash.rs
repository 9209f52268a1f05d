//! CPython's hash of the values whose hash an attacker can choose.
//!
//! CPython's `hash()` of `str` and `bytes` is SipHash with a per-process random key, but the hash
//! of ints, floats, complex numbers and tuples of them is a documented, deterministic function
//! (`Python/pyhash.c`, `Objects/longobject.c`, `Objects/tupleobject.c`; the numeric part is
//! stated in the language reference, "Hashing of numeric types"). A pickle can therefore hold
//! thousands of distinct dict keys with one hash, and CPython's dict and set then probe the same
//! slots for every insert: quadratic load time from plain data. The validator computes these
//! hashes exactly (64-bit CPython 3.11 and later; unchanged up to 3.13) and bounds how many keys
//! of one container share one.

/// `sys.hash_info.modulus` on 64-bit builds: the Mersenne prime 2**61 - 1.
pub const MODULUS: u64 = (1 << 61) - 1;
const BITS: u32 = 61;
/// `sys.hash_info.inf`.
const INF: i64 = 314_159;
/// `sys.hash_info.imag`.
const IMAG: u64 = 1_000_003;

const XXPRIME_1: u64 = 11_400_714_785_074_694_791;
const XXPRIME_2: u64 = 14_029_467_366_897_019_727;
const XXPRIME_5: u64 = 2_870_177_450_012_600_261;

/// What the validator knows of a value's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// Not chosen by the pickle: a non-empty `str`/`bytes` (SipHash with a random key), NaN
    /// (the object's address), or a value that is not hashable at all. Two such keys that are
    /// not equal do not share a hash but by chance; as a tuple's item it is [`Hash::Seeded`].
    Random,
    /// Exactly CPython's `hash()`.
    Known(i64),
    /// A tuple holding an item of [`Hash::Random`] hash: its hash is fixed within the process
    /// but not known here. The value is a stand-in, the tuple hash of its items with each such
    /// item replaced by a stand-in of its own (equal for equal items: a str's by its bytes,
    /// every NaN's the same), so tuples that differ only in items whose hashes collide (`("a",
    /// 0)` and `("a", 2**61 - 1)`) share it, as their CPython hashes do. Counted as a chosen hash.
    Seeded(i64),
    /// Deterministic, but not computed here (a frozenset, a float made from a huge int): such
    /// keys are counted as if they shared a hash with every other key of their container.
    Opaque,
}

/// `hash(None)` in CPython 3.12 and later (3.11 hashes its address, which is fixed within a
/// process: as a tuple's item any one value stands in for it).
pub const NONE: i64 = 0xFCA8_6420;

/// A stand-in for the seeded hash of a `str` or `bytes` as a tuple's item: equal for equal
/// bytes (an ASCII str and the bytes of its text hash alike in CPython, and here), from the
/// length and at most the first and last 32 bytes, so a long memoized str costs the same in
/// every tuple it is put in.
pub fn stand_in(bytes: &[u8]) -> i64 {
    let n = bytes.len();
    let (head, tail) = match (bytes.get(..32), bytes.get(n.saturating_sub(32)..)) {
        (Some(head), Some(tail)) if n > 64 => (head, tail),
        _ => (bytes, &[][..]),
    };
    let mut h = StandIn::new(n);
    head.iter().chain(tail).for_each(|b| h.byte(*b));
    h.finish()
}

/// [`stand_in`] of the form CPython hashes a str in: its code points as 1, 2 or 4 bytes each
/// (little-endian), by the largest (below U+0100, U+10000, or not), so that a str and the bytes
/// CPython hashes alike with it (`hash('é') == hash(b'\xe9')`) have one stand-in. `text` is
/// UTF-8, or the `surrogatepass` UTF-8 of a str with lone surrogates (three bytes each). O(its
/// length): worked out once per str read.
///
/// ```
/// use dmapickle_core::validate::hash::{stand_in, stand_in_text};
/// assert_eq!(stand_in_text("é".as_bytes()), stand_in(b"\xe9"));
/// assert_eq!(stand_in_text("Ā".as_bytes()), stand_in(b"\x00\x01"));
/// assert_eq!(stand_in_text("a".as_bytes()), stand_in(b"a"));
/// ```
pub fn stand_in_text(text: &[u8]) -> i64 {
    // The widest code point from the largest byte (a lead byte below C4 starts a code point
    // below U+0100, from F0 one above U+FFFF), the count from the bytes that start one: two
    // scans that vectorise.
    let top = text.iter().copied().max().unwrap_or(0);
    let width = match top {
        0..=0xc3 => 1,
        0xc4..=0xef => 2,
        _ => 4,
    };
    let chars = text.iter().filter(|b| **b & 0xc0 != 0x80).count();
    let n = chars * width;
    let mut h = StandIn::new(n);
    let mut feed = |part: &[u8], take: usize| {
        for c in code_points(part).take(take) {
            c.to_le_bytes()
                .into_iter()
                .take(width)
                .for_each(|b| h.byte(b));
        }
    };
    if n <= 64 {
        feed(text, chars);
    } else {
        // the first and last 32 bytes of the form: as many code points from either end
        let k = 32 / width;
        feed(text, k);
        let mut start = text.len();
        let mut seen = 0;
        while seen < k && start > 0 {
            start -= 1;
            if text.get(start).is_some_and(|b| b & 0xc0 != 0x80) {
                seen += 1;
            }
        }
        feed(text.get(start..).unwrap_or(&[]), k);
    }
    h.finish()
}

/// The code points of UTF-8 `text` (three-byte surrogates too; the reader proved the form).
fn code_points(text: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut i = 0;
    core::iter::from_fn(move || {
        let lead = *text.get(i)?;
        let (len, init) = match lead {
            0..=0x7f => (1, u32::from(lead)),
            0xc0..=0xdf => (2, u32::from(lead & 0x1f)),
            0xe0..=0xef => (3, u32::from(lead & 0x0f)),
            _ => (4, u32::from(lead & 0x07)),
        };
        let c = text
            .get(i + 1..i + len)
            .unwrap_or(&[])
            .iter()
            .fold(init, |c, b| c << 6 | u32::from(b & 0x3f));
        i += len;
        Some(c)
    })
}

/// The stand-in's hasher: the length, then the bytes taken.
struct StandIn(u64);

impl StandIn {
    fn new(n: usize) -> Self {
        StandIn((n as u64 ^ 0x5eed_0000_0000_0000).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    fn byte(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    fn finish(self) -> i64 {
        fix((self.0 ^ (self.0 >> 29)) as i64)
    }
}

/// The stand-in of a NaN (a float, complex or numpy scalar with a NaN part) as a tuple's item:
/// CPython hashes the object's address, so one object memoized and put in many tuples hashes
/// alike in each; one value stands in for every NaN.
pub const NAN_STAND_IN: i64 = 0x4e61_4e00_5eed_0001;

/// `-1` is CPython's error return; a hash that would be `-1` is `-2`.
fn fix(h: i64) -> i64 {
    if h == -1 {
        -2
    } else {
        h
    }
}

/// `hash(v)` for an int that fits an `i64`.
///
/// ```
/// use dmapickle_core::validate::hash;
/// assert_eq!(hash::int(-1), -2);
/// assert_eq!(hash::int(2_i64.pow(61) - 1), 0); // the modulus hashes like 0
/// assert_eq!(hash::float(1.5), Some(1152921504606846977));
/// ```
pub fn int(v: i64) -> i64 {
    let a = v.unsigned_abs();
    let m = if a < MODULUS { a } else { a % MODULUS };
    // m < 2**61, so it fits an i64 with its sign.
    let m = m as i64;
    fix(if v < 0 { -m } else { m })
}

/// `hash(v)` for an int that fits a `u64`.
///
/// ```
/// use dmapickle_core::validate::hash;
/// assert_eq!(hash::uint(u64::MAX), 7); // hash(2**64 - 1)
/// ```
pub fn uint(v: u64) -> i64 {
    // v mod P < 2**61: never -1.
    (v % MODULUS) as i64
}

/// `hash(v)` for a little-endian two's-complement int of any length (`LONG1`/`LONG4`).
pub fn long(bytes: &[u8]) -> i64 {
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    // U mod P, U the bytes read as unsigned, most significant byte first.
    let unsigned = bytes.iter().rev().fold(0u64, |acc, b| {
        ((u128::from(acc) << 8 | u128::from(*b)) % u128::from(MODULUS)) as u64
    });
    if !negative {
        return fix(unsigned as i64);
    }
    // |x| = 2**(8n) - U, and 2**61 = 1 (mod P), so 2**(8n) = 2**(8n mod 61).
    let bits = ((bytes.len() as u64 * 8) % u64::from(BITS)) as u32;
    let power = 1u64 << bits;
    let magnitude = (power + MODULUS - unsigned) % MODULUS;
    fix(-(magnitude as i64))
}

/// `x * 2**e (mod 2**61 - 1)` for `x < 2**61`: a 61-bit rotation.
fn times_power_of_two(x: u64, e: i32) -> u64 {
    let r = e.rem_euclid(BITS as i32) as u32;
    if r == 0 {
        return x;
    }
    ((x << r) & MODULUS) | (x >> (BITS - r))
}

/// `hash(v)` for a float (`_Py_HashDouble`); `None` for NaN, whose hash is its address.
pub fn float(v: f64) -> Option<i64> {
    if v.is_nan() {
        return None;
    }
    if v.is_infinite() {
        return Some(if v > 0.0 { INF } else { -INF });
    }
    let bits = v.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    // v = mantissa * 2**power exactly, mantissa < 2**53 < P.
    let (mantissa, power) = if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), exponent - 1075)
    };
    let x = times_power_of_two(mantissa % MODULUS, power) as i64;
    Some(fix(if bits >> 63 == 1 { -x } else { x }))
}

/// `hash(complex(re, im))` from the hashes of its parts.
pub fn complex(re: i64, im: i64) -> i64 {
    fix((re as u64).wrapping_add(IMAG.wrapping_mul(im as u64)) as i64)
}

/// CPython's tuple hash (xxHash-based, 3.8 and later), fed one item hash at a time.
///
/// ```
/// use dmapickle_core::validate::hash::{Hash, TupleHasher};
/// let mut t = TupleHasher::new();
/// t.item(Hash::Known(1));
/// t.item(Hash::Known(2));
/// assert_eq!(t.finish(), Hash::Known(-3550055125485641917)); // hash((1, 2))
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TupleHasher {
    acc: u64,
    len: u64,
    state: Hash,
}

impl Default for TupleHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl TupleHasher {
    /// The hasher of an empty tuple.
    pub const fn new() -> Self {
        TupleHasher {
            acc: XXPRIME_5,
            len: 0,
            state: Hash::Known(0),
        }
    }

    /// Feeds the next item's hash.
    ///
    /// Give an item of [`Hash::Random`] hash as [`Hash::Seeded`] with its stand-in; a
    /// [`Hash::Random`] item makes the tuple's hash random (an object of a caller-allowed
    /// global: trusted, not counted).
    pub fn item(&mut self, h: Hash) {
        self.len += 1;
        let lane = match (self.state, h) {
            (Hash::Random, _) | (_, Hash::Random) => {
                self.state = Hash::Random;
                return;
            }
            (Hash::Opaque, _) | (_, Hash::Opaque) => {
                self.state = Hash::Opaque;
                return;
            }
            (Hash::Known(_), Hash::Known(lane)) => lane,
            (_, Hash::Seeded(lane)) | (Hash::Seeded(_), Hash::Known(lane)) => {
                self.state = Hash::Seeded(0);
                lane
            }
        };
        self.acc = self.acc.wrapping_add((lane as u64).wrapping_mul(XXPRIME_2));
        self.acc = self.acc.rotate_left(31);
        self.acc = self.acc.wrapping_mul(XXPRIME_1);
    }

    /// The tuple's hash.
    pub fn finish(self) -> Hash {
        let acc = self.acc.wrapping_add(self.len ^ (XXPRIME_5 ^ 3_527_539));
        let h = if acc == u64::MAX {
            1_546_275_796
        } else {
            acc as i64
        };
        match self.state {
            Hash::Known(_) => Hash::Known(h),
            Hash::Seeded(_) => Hash::Seeded(h),
            other => other,
        }
    }
}

/// Whether keys with this hash need counting: ints of magnitude below 2**61 - 2 have a hash
/// equal to their value, so two distinct ones never share a hash (and at most one of them can
/// share a float's or tuple's hash).
pub fn is_unique_int(v: i64) -> bool {
    v.unsigned_abs() < MODULUS - 1 && v != -1 && v != -2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A str's stand-in is its CPython form's: every width, surrogates, short and long texts,
    /// the head/tail boundary of a long one on every alignment.
    #[test]
    fn the_stand_in_of_text_is_that_of_the_form_cpython_hashes() {
        extern crate std;
        use std::vec::Vec;
        let pieces: [u32; 8] = [0x41, 0xe9, 0xff, 0x100, 0xd800, 0xffff, 0x1f600, 0x10ffff];
        let mut seed = 0x243f_6a88_85a3_08d3u64;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 90) as usize;
            let chars: Vec<u32> = (0..n)
                .map(|i| {
                    pieces[((seed >> (i % 60)) as usize + i)
                        % pieces.len()
                        % (1 + (seed % 8) as usize)]
                })
                .collect();
            // UTF-8, surrogates as three bytes (surrogatepass)
            let mut text = Vec::new();
            for &c in &chars {
                match c {
                    0..=0x7f => text.push(c as u8),
                    0x80..=0x7ff => text.extend([0xc0 | (c >> 6) as u8, 0x80 | (c & 0x3f) as u8]),
                    0x800..=0xffff => text.extend([
                        0xe0 | (c >> 12) as u8,
                        0x80 | ((c >> 6) & 0x3f) as u8,
                        0x80 | (c & 0x3f) as u8,
                    ]),
                    _ => text.extend([
                        0xf0 | (c >> 18) as u8,
                        0x80 | ((c >> 12) & 0x3f) as u8,
                        0x80 | ((c >> 6) & 0x3f) as u8,
                        0x80 | (c & 0x3f) as u8,
                    ]),
                }
            }
            let max = chars.iter().copied().max().unwrap_or(0);
            let width = if max < 0x100 {
                1
            } else if max < 0x10000 {
                2
            } else {
                4
            };
            let form: Vec<u8> = chars
                .iter()
                .flat_map(|c| c.to_le_bytes().into_iter().take(width))
                .collect();
            assert_eq!(stand_in_text(&text), stand_in(&form), "{chars:x?}");
        }
    }

    // Values printed by CPython 3.11 (`hash(...)`).
    #[test]
    fn matches_cpython() {
        assert_eq!(int(0), 0);
        assert_eq!(int(-1), -2);
        assert_eq!(int(-2), -2);
        assert_eq!(int((1 << 61) - 1), 0);
        assert_eq!(int(i64::MAX), 3);
        assert_eq!(int(i64::MIN), -4);
        assert_eq!(long(&[0x01]), 1);
        assert_eq!(long(&[0xff]), -2); // -1
                                       // 2**64 -> 8; -(2**64) -> -8
        assert_eq!(long(&[0, 0, 0, 0, 0, 0, 0, 0, 1]), 8);
        assert_eq!(long(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff]), -8);
        assert_eq!(float(1.5), Some(1_152_921_504_606_846_977));
        assert_eq!(float(-1.5), Some(-1_152_921_504_606_846_977));
        assert_eq!(float(0.1), Some(230_584_300_921_369_408));
        assert_eq!(float(3.0), Some(3));
        assert_eq!(float(-1.0), Some(-2));
        assert_eq!(float(f64::INFINITY), Some(314_159));
        assert_eq!(float(5e-324), Some(16_777_216));
        assert_eq!(float(1.5 * 2f64.powi(61)), float(1.5));
        assert_eq!(float(f64::NAN), None);
        assert_eq!(
            complex(float(1.5).unwrap(), float(-2.0).unwrap()),
            1_152_921_504_604_846_971
        );
        let mut t = TupleHasher::new();
        t.item(Hash::Known(1));
        t.item(Hash::Known(2));
        assert_eq!(t.finish(), Hash::Known(-3_550_055_125_485_641_917));
        assert_eq!(
            TupleHasher::new().finish(),
            Hash::Known(5_740_354_900_026_072_187)
        );
    }
}
