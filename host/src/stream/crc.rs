//! The CRC-32C of the short inputs (headers, tiny bodies) the reader checks per frame.

/// CRC-32C of `b`: for the short inputs of a header or a tiny frame's body, the SSE 4.2
/// instruction inline (the `crc32c` crate's entry costs about 100 instructions of set-up per
/// call, more than a 20-byte CRC itself); otherwise, and without SSE 4.2, the `crc32c` crate.
pub(super) fn small_crc(b: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if b.len() <= 256 && std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2 (checked just above), all `sse42_crc` needs.
        return unsafe { sse42_crc(b) };
    }
    crc32c::crc32c(b)
}

/// [`small_crc`] with the CPU's features looked up once (for a pass over many frames): the
/// SSE 4.2 instruction at every length if the CPU has it, else the `crc32c` crate.
#[derive(Debug, Clone, Copy)]
pub(super) struct SmallCrc {
    /// Only true if the CPU has SSE 4.2 ([`SmallCrc::detect`] is the only constructor).
    sse42: bool,
}

impl SmallCrc {
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let sse42 = std::is_x86_feature_detected!("sse4.2");
        #[cfg(not(target_arch = "x86_64"))]
        let sse42 = false;
        SmallCrc { sse42 }
    }

    /// Whether the CPU has SSE 4.2 (so [`sse42_crc`] may run).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn sse42(self) -> bool {
        self.sse42
    }

    /// CRC-32C of `b`.
    #[inline]
    pub(super) fn crc(self, b: &[u8]) -> u32 {
        #[cfg(target_arch = "x86_64")]
        if self.sse42 {
            // SAFETY: `sse42` is only true when the CPU has SSE 4.2 (`detect`), all
            // `sse42_crc` needs.
            return unsafe { sse42_crc(b) };
        }
        crc32c::crc32c(b)
    }
}

/// CRC-32C of `b` with the SSE 4.2 `crc32` instruction, 8 bytes at a time.
///
/// # Safety
/// The CPU must have SSE 4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
#[inline]
pub(super) unsafe fn sse42_crc(b: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut crc = u64::from(u32::MAX);
    let mut rest = b;
    while let Some((word, r)) = rest.split_first_chunk::<8>() {
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(*word));
        rest = r;
    }
    // The last 0-7 bytes: 4, 2 and 1 at a time (a header's CRC covers 2 words and 4 bytes).
    let mut c = crc as u32;
    if let Some((four, r)) = rest.split_first_chunk::<4>() {
        c = _mm_crc32_u32(c, u32::from_le_bytes(*four));
        rest = r;
    }
    if let Some((two, r)) = rest.split_first_chunk::<2>() {
        c = _mm_crc32_u16(c, u16::from_le_bytes(*two));
        rest = r;
    }
    if let Some(&byte) = rest.first() {
        c = _mm_crc32_u8(c, byte);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::small_crc;

    #[test]
    fn the_detected_crc_is_crc32c_at_every_length() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 11 + i / 5) as u8).collect();
        let unit = super::SmallCrc::detect();
        for len in (0..300).chain([511, 512, 4095, 5000]) {
            assert_eq!(
                unit.crc(&data[..len]),
                crc32c::crc32c(&data[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn small_crc_is_crc32c_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for start in 0..9 {
            for len in 0..=300 {
                let b = &data[start..start + len];
                assert_eq!(small_crc(b), crc32c::crc32c(b), "start {start} len {len}");
            }
        }
    }
}
