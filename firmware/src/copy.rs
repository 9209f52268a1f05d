//! A byte copy for buffers whose addresses differ in word alignment.
//!
//! The Embassy build writes each block into the TCP socket's send buffer at whatever offset
//! the stream has reached, so the block (word aligned) and its place in the ring differ in
//! alignment three times in four. `compiler_builtins`' `memcpy` then takes its portable
//! shift-and-merge path (about 3.5 instructions per byte on the Cortex-M4, a seventh of the
//! firmware's work per streamed byte); the M4 loads and stores whole words at any address
//! (`LDR`/`STR`, not `LDM`/`LDRD`), so [`copy`] moves 16 bytes in four word loads and four
//! word stores.
//!
//! ```
//! use dmapickle_firmware::copy::copy;
//! let src: [u8; 37] = core::array::from_fn(|i| i as u8);
//! let mut dst = [0u8; 40];
//! copy(&mut dst[3..], &src);
//! assert_eq!(&dst[3..], &src[..]);
//! assert_eq!(dst[..3], [0, 0, 0]);
//! ```

/// Copies `src` into the start of `dst`, `min(dst.len(), src.len())` bytes; returns that count.
pub fn copy(dst: &mut [u8], src: &[u8]) -> usize {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    let (blocks, dst_tail) = dst.as_chunks_mut::<16>();
    let (src_blocks, src_tail) = src.as_chunks::<16>();
    for (d, s) in blocks.iter_mut().zip(src_blocks) {
        // Four word loads, then four word stores: each store strides 16 bytes, so the compiler
        // does not see a memcpy to call instead (the very routine this avoids).
        let w = [word(s, 0), word(s, 4), word(s, 8), word(s, 12)];
        if let [d0, d1, d2, d3] = d.as_chunks_mut::<4>().0 {
            *d0 = w[0].to_ne_bytes();
            *d1 = w[1].to_ne_bytes();
            *d2 = w[2].to_ne_bytes();
            *d3 = w[3].to_ne_bytes();
        }
    }
    dst_tail.copy_from_slice(src_tail);
    n
}

/// The native-endian word at byte `i` (a constant, at most 12) of a 16-byte block.
#[inline(always)]
fn word(b: &[u8; 16], i: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(i..i + 4) {
        w.copy_from_slice(s);
    }
    u32::from_ne_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_at_every_alignment() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for so in 0..4 {
            for d_off in 0..4 {
                for len in 0..=150 {
                    let mut dst = [0xAAu8; 160];
                    let n = copy(&mut dst[d_off..d_off + len + 2], &src[so..so + len]);
                    assert_eq!(n, len);
                    assert_eq!(&dst[d_off..d_off + len], &src[so..so + len]);
                    assert!(dst[..d_off].iter().all(|&b| b == 0xAA));
                    assert!(dst[d_off + len..].iter().all(|&b| b == 0xAA));
                }
            }
        }
    }

    #[test]
    fn copies_the_shorter_of_the_two() {
        let mut dst = [0u8; 20];
        assert_eq!(copy(&mut dst, &[1; 30]), 20);
        assert_eq!(dst, [1; 20]);
        let mut dst = [0u8; 20];
        assert_eq!(copy(&mut dst, &[2; 17]), 17);
        assert_eq!(dst[..17], [2; 17]);
        assert_eq!(dst[17..], [0; 3]);
    }
}
