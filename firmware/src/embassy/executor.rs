//! Thread-mode executor for QEMU: embassy-executor's raw executor, sleeping with `WFI`.
//!
//! embassy-executor's own cortex-m thread executor sleeps with `WFE` and is woken by `SEV`.
//! QEMU implements `WFE` as a yield, not a sleep, so that executor spins at 100% of a host core
//! whenever it is idle (waiting for the network, the timer, a free buffer), taking that core
//! from QEMU's I/O thread and the host reading the link. `WFI` halts the emulated CPU until an
//! interrupt is pending, as on silicon; this is the "raw executor with custom behaviour" the
//! embassy docs point to for such chips. The pender sets a flag; the loop checks it with
//! interrupts masked before `WFI` (which still wakes on a masked pending interrupt), so a wake
//! between the check and the sleep is never lost.

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{raw, Spawner};

/// Set when a task was woken since the last poll.
static PENDED: AtomicBool = AtomicBool::new(true);

/// Called by embassy-executor (from tasks or interrupt handlers) when a task was woken.
#[export_name = "__pender"]
fn pender(_context: *mut ()) {
    PENDED.store(true, Ordering::Release);
}

/// Runs `executor` in thread mode forever; `init` spawns the first tasks.
pub fn run(executor: &'static raw::Executor, init: impl FnOnce(Spawner)) -> ! {
    init(executor.spawner());
    loop {
        PENDED.store(false, Ordering::Relaxed);
        // SAFETY: this loop is the only caller of `poll` on this executor, and `pender` never
        // calls it, so `poll` is never reentered.
        unsafe { executor.poll() };
        cortex_m::interrupt::disable();
        if !PENDED.load(Ordering::Acquire) {
            cortex_m::asm::wfi();
        }
        // SAFETY: interrupts were enabled before this check (thread mode runs with them on), and
        // nothing here relies on them staying masked.
        unsafe { cortex_m::interrupt::enable() };
    }
}
