//! The simulated ADC's deterministic waveform.
//!
//! Every sample is a pure function of `(seq, channel, index)` and the block size, in wrapping
//! 32-bit integer arithmetic only, so the HIL test recomputes every value exactly in Python
//! (`tests/hil/waveform.py` holds the same formula in numpy).
//!
//! With `t = seq * block + index` (the sample's time in sample periods, wrapping at 2^32):
//!
//! ```text
//! period = 64 << channel                       (64, 128, 256, 512 samples)
//! p      = t mod period
//! tri    = min(p, period - p)                  (0 ..= period / 2)
//! h      = (t * 0x9E3779B1) xor (channel * 0x85EBCA77)   (mod 2^32)
//! h      = h xor (h >> 15)
//! value  = (tri << (10 - channel)) - 16384 + (h and 0x3FFF) - 8192
//! ```
//!
//! so each channel is a triangle of a different period spanning -16384..=16384, plus dither in
//! -8192..=8191 that differs per channel and per sample: a misplaced, stale or swapped sample
//! is caught with near certainty.
//!
//! ```
//! use dmapickle_firmware::waveform::sample;
//! assert_eq!(sample(0, 0, 0, 256), -16384 + 0 - 8192);
//! assert_eq!(sample(1, 0, 0, 256), sample(0, 0, 256, 256));
//! ```

/// Channels per sample row: the `4` of the `(N, 4)` arrays.
pub const CHANNELS: usize = 4;

/// The value of channel `channel` at row `index` of block `seq`, for blocks of `block` rows.
///
/// Channels above 3 wrap onto 0..=3 for the triangle's period.
pub const fn sample(seq: u32, channel: u32, index: u32, block: u32) -> i16 {
    at(seq.wrapping_mul(block).wrapping_add(index), channel)
}

/// The value of channel `channel` at time `t` (in sample periods): the formula above, as
/// written; [`fill_rows`] computes the same values in parts (`half`).
const fn at(t: u32, channel: u32) -> i16 {
    let c = channel & 3;
    let period = 64u32 << c;
    let p = t & (period - 1);
    let tri = if p < period / 2 { p } else { period - p };
    let mut h = t.wrapping_mul(0x9E37_79B1) ^ channel.wrapping_mul(0x85EB_CA77);
    h ^= h >> 15;
    let value = ((tri << (10 - c)) as i32) - 16384 + ((h & 0x3FFF) as i32) - 8192;
    // value is in -24576..=24575 by construction, so the cast is exact.
    value as i16
}

/// Bytes per row: `CHANNELS` little-endian int16 samples (numpy dtype `<i2`, C order).
pub const ROW_BYTES: usize = CHANNELS * 2;

/// Writes rows `first..` of block `seq` into `bytes` as little-endian int16, [`ROW_BYTES`] per
/// row, as many whole rows as fit; returns the number of rows written.
///
/// The ISR calls this for a slice of a block at a time; `block` is the full block length.
///
/// ```
/// use dmapickle_firmware::waveform::{fill_rows, sample};
/// let mut bytes = [0u8; 16];
/// assert_eq!(fill_rows(&mut bytes, 2, 10, 256), 2);
/// assert_eq!(i16::from_le_bytes([bytes[10], bytes[11]]), sample(2, 1, 11, 256));
/// ```
pub fn fill_rows(bytes: &mut [u8], seq: u32, first: u32, block: u32) -> u32 {
    // One row per iteration, its four channels written out and stored as two little-endian
    // words: the Embassy build produces tens of MB/s of samples under QEMU, where a loop over
    // channels (its branches, the per-channel period and shift computed at run time) cost
    // about twice the instructions, and eight byte stores about 1.3x these.
    let mut t = seq.wrapping_mul(block).wrapping_add(first);
    let (rows, _) = bytes.as_chunks_mut::<ROW_BYTES>();
    for row in rows.iter_mut() {
        let d = shared_dither(t);
        let w0 = half(t, d, 0) | (half(t, d, 1) << 16);
        let w1 = half(t, d, 2) | (half(t, d, 3) << 16);
        let (lo, hi) = row.split_at_mut(4);
        lo.copy_from_slice(&w0.to_le_bytes());
        hi.copy_from_slice(&w1.to_le_bytes());
        t = t.wrapping_add(1);
    }
    rows.len() as u32
}

/// The part of the dither every channel of row `t` shares. A shift and a mask distribute over
/// xor, so with `m = t * 0x9E3779B1` and `k = channel * 0x85EBCA77`:
/// `(m ^ k ^ ((m ^ k) >> 15)) & 0x3FFF == ((m ^ (m >> 15)) & 0x3FFF) ^ ((k ^ (k >> 15)) & 0x3FFF)`,
/// the first part per row, the second a constant per channel ([`dither_key`]).
#[inline(always)]
const fn shared_dither(t: u32) -> u32 {
    let m = t.wrapping_mul(0x9E37_79B1);
    (m ^ (m >> 15)) & 0x3FFF
}

/// Channel `channel`'s constant part of the dither (see [`shared_dither`]).
const fn dither_key(channel: u32) -> u32 {
    let k = channel.wrapping_mul(0x85EB_CA77);
    (k ^ (k >> 15)) & 0x3FFF
}

/// [`at`]`(t, channel)` as a `u16` in a `u32`, from the row's [`shared_dither`] `d`; `channel`
/// is 0..=3 and a constant at every call, so the period, the shift and the key fold away.
#[inline(always)]
const fn half(t: u32, d: u32, channel: u32) -> u32 {
    let period = 64u32 << channel;
    let p = t & (period - 1);
    let tri = if p < period / 2 { p } else { period - p };
    ((tri << (10 - channel)) + (d ^ dither_key(channel))).wrapping_sub(24576) & 0xFFFF
}

/// Time of the first sample of block `seq`, in microseconds from the first block, at `rate_hz`
/// samples per second: `floor(seq * block * 10^6 / rate_hz)`, what the message's `t_us` holds.
///
/// Exact integer arithmetic; the result wraps at 2^64 us (half a million years). A rate of 0
/// gives 0.
pub const fn block_time_us(seq: u32, block: u32, rate_hz: u32) -> u64 {
    if rate_hz == 0 {
        return 0;
    }
    let samples = (seq as u64) * (block as u64);
    let rate = rate_hz as u64;
    let whole_seconds = samples / rate;
    // rem < 2^32, so rem * 10^6 < 2^52: no overflow in the fractional part.
    let rem = samples % rate;
    whole_seconds
        .wrapping_mul(1_000_000)
        .wrapping_add(rem * 1_000_000 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_values_are_pinned() {
        // Pinned so a change of formula here fails before the Python copy silently diverges.
        let got: [i16; 8] = [
            sample(0, 0, 0, 256),
            sample(0, 1, 0, 256),
            sample(0, 2, 0, 256),
            sample(0, 3, 0, 256),
            sample(0, 0, 1, 256),
            sample(3, 2, 17, 256),
            sample(u32::MAX, 3, 255, 256),
            sample(1000, 1, 100, 64),
        ];
        assert_eq!(
            got,
            [-24576, -24160, -23743, -8989, -22049, -6728, -9795, -4224]
        );
    }

    #[test]
    fn range_is_within_i16_and_covers_both_signs() {
        let (mut lo, mut hi) = (i16::MAX, i16::MIN);
        for seq in 0..64 {
            for c in 0..4 {
                for i in 0..256 {
                    let v = sample(seq, c, i, 256);
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        assert!((-24576..-20000).contains(&lo), "{lo}");
        assert!((20001..=24575).contains(&hi), "{hi}");
    }

    #[test]
    fn blocks_are_one_continuous_signal() {
        for c in 0..4 {
            assert_eq!(sample(5, c, 0, 128), sample(4, c, 128, 128));
        }
    }

    #[test]
    fn fill_rows_matches_sample() {
        let mut bytes = [0u8; 32 * ROW_BYTES + 3];
        assert_eq!(fill_rows(&mut bytes, 9, 64, 256), 32);
        for (i, row) in bytes.chunks_exact(ROW_BYTES).enumerate() {
            for (c, v) in row.chunks_exact(2).enumerate() {
                let v = i16::from_le_bytes([v[0], v[1]]);
                assert_eq!(v, sample(9, c as u32, 64 + i as u32, 256));
            }
        }
        assert_eq!(
            &bytes[32 * ROW_BYTES..],
            &[0, 0, 0],
            "a partial row is left alone"
        );
    }

    #[test]
    fn fill_rows_matches_sample_across_wrapping_times() {
        // The unrolled rows against the formula, where `seq * block + index` wraps at 2^32 and
        // at the blocks and offsets the ISR and the Embassy ADC task use.
        let mut bytes = [0u8; 64 * ROW_BYTES];
        for (seq, first, block) in [
            (0, 0, 64),
            (7, 3, 256),
            (u32::MAX, 250, 256),
            (0x0100_0000, 1000, 1024),
            (u32::MAX / 3, 1, 4096),
        ] {
            assert_eq!(fill_rows(&mut bytes, seq, first, block), 64);
            for (i, row) in bytes.chunks_exact(ROW_BYTES).enumerate() {
                for (c, v) in row.chunks_exact(2).enumerate() {
                    let index = first.wrapping_add(i as u32);
                    assert_eq!(
                        i16::from_le_bytes([v[0], v[1]]),
                        sample(seq, c as u32, index, block),
                        "seq {seq} channel {c} index {index} block {block}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_split_dither_is_the_formula() {
        // `half` against `at` for every channel over 2^20 consecutive times and around 2^32.
        for c in 0..4 {
            for t in (0..1u32 << 20).chain(u32::MAX - 4096..=u32::MAX) {
                assert_eq!(
                    half(t, shared_dither(t), c) as u16,
                    at(t, c) as u16,
                    "t {t} channel {c}"
                );
            }
        }
    }

    #[test]
    fn block_time() {
        assert_eq!(block_time_us(0, 256, 64_000), 0);
        assert_eq!(block_time_us(1, 256, 64_000), 4_000);
        assert_eq!(block_time_us(3, 100, 3), 100_000_000);
        assert_eq!(block_time_us(1000, 256, 48_000), 5_333_333);
        let big = (u128::from(u32::MAX) * u128::from(u32::MAX) * 1_000_000 / 7) as u64;
        assert_eq!(block_time_us(u32::MAX, u32::MAX, 7), big);
        assert_eq!(block_time_us(7, 256, 0), 0);
    }
}
