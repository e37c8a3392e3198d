//! Instruction-cache maintenance after writing code.
//!
//! x86_64 keeps instruction and data caches coherent: nothing to do. aarch64
//! does not: the written lines are cleaned to the point of unification through
//! the writable view, the instruction cache lines of the executable view are
//! invalidated, and barriers order both before the code runs.

/// Makes `len` bytes just written at `written` (the writable alias) visible to
/// instruction fetch at `exec` (the executable address of the same bytes).
#[cfg(not(target_arch = "aarch64"))]
#[inline]
pub(crate) fn flush(_written: *const u8, _exec: usize, _len: usize) {}

/// Makes `len` bytes just written at `written` (the writable alias) visible to
/// instruction fetch at `exec` (the executable address of the same bytes).
#[cfg(target_arch = "aarch64")]
pub(crate) fn flush(written: *const u8, exec: usize, len: usize) {
    use std::arch::asm;
    if len == 0 {
        return;
    }
    let ctr: u64;
    // SAFETY: reading CTR_EL0 is allowed at EL0 on Linux and has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let dline = 4usize << ((ctr >> 16) & 0xF);
    let iline = 4usize << (ctr & 0xF);
    let start = written as usize & !(dline - 1);
    let end = written as usize + len;
    let mut a = start;
    while a < end {
        // SAFETY: cleaning a data-cache line of memory we just wrote is side-effect free.
        unsafe { asm!("dc cvau, {}", in(reg) a, options(nostack)) };
        a += dline;
    }
    // SAFETY: a barrier instruction.
    unsafe { asm!("dsb ish", options(nostack)) };
    let mut a = exec & !(iline - 1);
    while a < exec + len {
        // SAFETY: invalidating instruction-cache lines is always allowed at EL0 on Linux.
        unsafe { asm!("ic ivau, {}", in(reg) a, options(nostack)) };
        a += iline;
    }
    // SAFETY: barrier instructions.
    unsafe { asm!("dsb ish", "isb", options(nostack)) };
}
