//! The message the firmware publishes for each ADC block:
//! `{"seq": int, "t_us": int, "rate_hz": int, "adc": numpy.ndarray int16 (N, 4)}`.
//!
//! The array's bytes never pass through the encoder: `adc` is a `NEXT_BUFFER` plus
//! `READONLY_BUFFER` naming the block buffer's [`Descriptor`], and the publisher sends (inline)
//! or lends (shared region) the buffer itself. The dtype is `<i2` whatever the device's byte
//! order, because [`crate::waveform::fill_rows`] writes little-endian bytes.
//!
//! The pickle is a multiple of 4 bytes long ([`Pickler::align_to`]: up to three of the keys are
//! written as `BINUNICODE` instead of `SHORT_BINUNICODE`), so every frame (`32 + P + 12` bytes and the
//! block) is whole words, and every frame after it on a stream starts at a word offset: the
//! Embassy build's copies into and out of the TCP send ring then stay on the M4's aligned word
//! path whatever the stream has reached (docs/performance.md, "Links in QEMU").

use dmapickle_core::ndarray::{ByteOrder, DType, Order, Scalar};
use dmapickle_core::pickler::Encoded;
use dmapickle_core::{Descriptor, EncodeResult, Pickler};

use crate::waveform::{block_time_us, CHANNELS};

/// Bytes of pickle buffer [`encode`] needs at most (the largest integers and a 16-bit region).
pub const MAX_PICKLE: usize = 160;

/// The `adc` array's element type: little-endian int16.
pub const DTYPE: DType = DType::new(Scalar::I16, ByteOrder::Little);

/// Encodes the message of block `seq` (of `block` rows sampled at `rate_hz`) whose samples are
/// the buffer `buffer`, into `out`. The array is marked read-only for Python.
///
/// ```
/// use dmapickle_core::Descriptor;
/// use dmapickle_firmware::message::{encode, MAX_PICKLE};
/// let mut out = [0u8; MAX_PICKLE];
/// let msg = encode(&mut out, 3, 256, 64_000, Descriptor::new(1, 0, 2048)).unwrap();
/// assert_eq!(msg.descriptors.as_slice(), &[Descriptor::new(1, 0, 2048).read_only()]);
/// assert!(msg.pickle.starts_with(b"\x80\x05}"));
/// ```
pub fn encode(
    out: &mut [u8],
    seq: u32,
    block: u32,
    rate_hz: u32,
    buffer: Descriptor,
) -> EncodeResult<Encoded<'_, 1>> {
    encode_at(
        out,
        seq,
        block_time_us(seq, block, rate_hz),
        block,
        rate_hz,
        buffer,
    )
}

/// [`encode`] with the device clock's `t_us` given (e.g. [`crate::config::BootConfig::t_us`],
/// which applies `skew_ppm=`) instead of the nominal sample time.
pub fn encode_at(
    out: &mut [u8],
    seq: u32,
    t_us: u64,
    block: u32,
    rate_hz: u32,
    buffer: Descriptor,
) -> EncodeResult<Encoded<'_, 1>> {
    let mut p = Pickler::<1>::with_limits(out);
    p.dict(|p| {
        p.str("seq")?;
        p.int(seq)?;
        p.str("t_us")?;
        p.int(t_us)?;
        p.str("rate_hz")?;
        p.int(rate_hz)?;
        p.str("adc")?;
        p.ndarray(
            buffer.read_only(),
            DTYPE,
            &[block as usize, CHANNELS],
            Order::C,
        )
    })?;
    p.align_to(4)?;
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes_of_a_message() {
        let mut out = [0u8; MAX_PICKLE];
        let msg = encode(&mut out, 1, 256, 64_000, Descriptor::new(1, 0x800, 2048)).unwrap();
        // 79 bytes with short keys; the first three keys widened to BINUNICODE make it 88.
        let want: &[u8] = b"\x80\x05}(X\x03\0\0\0seqK\x01X\x04\0\0\0t_usM\xa0\x0fX\x07\0\0\0rate_hzM\x00\xfa\
\x8c\x03adc\x8c\x05numpy\x8c\x07ndarray\x93\x94(M\x00\x01K\x04\x86\x8c\x03<i2\x97\x98K\x00N\x8c\x01Ct\x81u.";
        assert_eq!(msg.pickle, want);
        assert_eq!(
            msg.descriptors.as_slice(),
            &[Descriptor::new(1, 0x800, 2048).read_only()]
        );
    }

    #[test]
    fn every_message_is_whole_words() {
        let mut out = [0u8; MAX_PICKLE];
        for (seq, t_us, block, rate) in [
            (0, 0, 1, 1),
            (255, 255, 256, 255),
            (256, 65_535, 1024, 65_536),
            (70_000, 1 << 31, 4096, 1_000_000),
            (u32::MAX, u64::MAX, 65_535, u32::MAX),
        ] {
            for bump in 0..4 {
                let d = Descriptor::new(1, 0, block * 8);
                let msg = encode_at(&mut out, seq - bump.min(seq), t_us, block, rate, d).unwrap();
                assert_eq!(
                    msg.pickle.len() % 4,
                    0,
                    "seq {seq} t_us {t_us} block {block}"
                );
            }
        }
    }

    #[test]
    fn largest_values_fit_in_max_pickle() {
        let mut out = [0u8; MAX_PICKLE];
        let d = Descriptor::new(u16::MAX, u32::MAX, 1024 * 8);
        let msg = encode(&mut out, u32::MAX, 1024, 1, d).unwrap();
        assert!(msg.pickle.len() <= MAX_PICKLE);
    }

    #[test]
    fn a_short_buffer_is_an_error_not_a_panic() {
        let mut out = [0u8; 40];
        assert!(encode(&mut out, 0, 256, 64_000, Descriptor::new(1, 0, 2048)).is_err());
    }

    #[test]
    fn a_descriptor_of_the_wrong_length_is_refused() {
        let mut out = [0u8; MAX_PICKLE];
        assert!(encode(&mut out, 0, 256, 64_000, Descriptor::new(1, 0, 2047)).is_err());
    }
}
