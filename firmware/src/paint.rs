//! Stack painting for the board binaries (`src/main.rs`, `src/embassy/main.rs`): paint the
//! unused stack at boot, measure the high-water mark at the end (`dmapickle_firmware::stack`
//! holds the scan, unit-tested on the host).

use core::ptr::addr_of_mut;

use dmapickle_firmware::stack;

extern "C" {
    /// Lowest address of the stack area (cortex-m-rt's `link.x`).
    static mut _stack_end: u32;
    /// Initial stack pointer, one past the highest stack address.
    static mut _stack_start: u32;
}

/// Paints the unused stack with `stack::PAINT`, from its lowest address up to 256 bytes below
/// the current stack pointer. Returns the painted range as (lowest address, words).
pub fn paint_stack() -> (*mut u32, usize) {
    let low = addr_of_mut!(_stack_end);
    let sp = cortex_m::register::msp::read() as usize;
    let words = (sp.saturating_sub(256)).saturating_sub(low as usize) / 4;
    for i in 0..words {
        // SAFETY: [low, sp - 256) is the stack area below the live frames (link.x puts it between
        // the end of .uninit and the initial stack pointer); nothing else lives there and
        // interrupts are not enabled yet.
        unsafe { low.add(i).write_volatile(stack::PAINT) };
    }
    (low, words)
}

/// Bytes of the stack that were ever used, measured from the top of the stack.
pub fn stack_high_water((low, words): (*mut u32, usize)) -> usize {
    let untouched = stack::untouched_words(words, |i| {
        // SAFETY: i < words: inside the range `paint_stack` painted, which is stack memory that
        // stays mapped; a volatile u32 read, no reference is formed.
        unsafe { low.add(i).read_volatile() }
    });
    let top = addr_of_mut!(_stack_start) as usize;
    top - (low as usize + untouched * 4)
}
