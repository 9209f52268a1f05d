//! Stack high-water mark: the stack is painted with [`PAINT`] at boot and read back later.
//!
//! The board code paints every word between the end of `.bss`/`.uninit` and a little below the
//! stack pointer at the start of `main`; [`high_water`] then finds how deep the stack ever
//! reached. Only the scan is here, so it is unit-tested on the host.

/// The word written over the unused stack at boot.
pub const PAINT: u32 = 0xDEAD_C0DE;

/// Bytes of the painted area that were written since painting, given the painted words from the
/// lowest address up (the stack grows down, so it eats the area from the top end).
///
/// ```
/// use dmapickle_firmware::stack::{high_water, PAINT};
/// assert_eq!(high_water(&[PAINT, PAINT, 7, PAINT]), 8);
/// assert_eq!(high_water(&[PAINT; 4]), 0);
/// ```
pub fn high_water(painted_low_to_high: &[u32]) -> usize {
    let untouched = untouched_words(painted_low_to_high.len(), |i| {
        painted_low_to_high.get(i).copied().unwrap_or(0)
    });
    (painted_low_to_high.len() - untouched) * 4
}

/// Words still holding [`PAINT`] at the bottom of a painted area of `len` words, reading word
/// `i` (from the lowest address up) with `read`. The board passes a volatile read: the area is
/// live stack, which an interrupt may be using, so it is never borrowed as a slice.
///
/// ```
/// use dmapickle_firmware::stack::{untouched_words, PAINT};
/// let words = [PAINT, PAINT, 1, PAINT];
/// assert_eq!(untouched_words(words.len(), |i| words[i]), 2);
/// ```
pub fn untouched_words(len: usize, mut read: impl FnMut(usize) -> u32) -> usize {
    (0..len).take_while(|&i| read(i) == PAINT).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_from_the_bottom() {
        assert_eq!(high_water(&[]), 0);
        assert_eq!(high_water(&[1, 2, 3]), 12);
        // A word that happens to equal the paint above the deepest write does not hide it.
        assert_eq!(high_water(&[PAINT, 5, PAINT, PAINT]), 12);
    }
}
