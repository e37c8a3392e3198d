//! Address and alignment arithmetic.

use std::sync::OnceLock;

/// The operating system's page size in bytes (a power of two).
pub fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(rustix::param::page_size)
}

/// Rounds `value` up to a multiple of `align`, which must be a power of two.
///
/// Returns `None` if the result does not fit in a `usize`.
#[inline(always)]
pub const fn checked_align_up(value: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Rounds `value` up to a multiple of `align`, which must be a power of two.
///
/// # Panics
/// If the result overflows a `usize`.
#[inline(always)]
pub const fn align_up(value: usize, align: usize) -> usize {
    match checked_align_up(value, align) {
        Some(v) => v,
        None => panic!("align_up overflowed usize"),
    }
}

/// Rounds `value` down to a multiple of `align`, which must be a power of two.
#[inline(always)]
pub const fn align_down(value: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    value & !(align - 1)
}

/// Whether `value` is a multiple of `align`, which must be a power of two.
#[inline(always)]
pub const fn is_aligned(value: usize, align: usize) -> bool {
    debug_assert!(align.is_power_of_two());
    value & (align - 1) == 0
}

/// How far past the bump pointer [`prefetch_ahead`] reaches, in bytes.
pub const PREFETCH_DISTANCE: usize = 512;

/// Asks the CPU to start fetching, for writing, the cache line
/// [`PREFETCH_DISTANCE`] bytes past `top`: what every bump-pointer fast path
/// (bump, TLAB, arena) does after an allocation (HotSpot's "allocation
/// prefetch"). Bump allocation writes memory in address order and, beyond
/// the caches, each new line stalls the writing thread; fetching it a few
/// objects ahead hides that latency.
///
/// A prefetch is only a hint: it never faults and changes no memory, so any
/// address will do, even past the end of a buffer. A no-op on targets other
/// than x86-64.
#[inline(always)]
pub fn prefetch_ahead(top: *const u8) {
    prefetch::<true>(top.wrapping_add(PREFETCH_DISTANCE).addr());
}

/// Asks the CPU to start fetching the cache line of `addr` for reading: a
/// tracing collector issues it a few objects before it scans one. Only a
/// hint, as for [`prefetch_ahead`]; a no-op on targets other than x86-64.
#[inline(always)]
pub fn prefetch_read(addr: usize) {
    prefetch::<false>(addr);
}

/// Asks the CPU to start fetching the cache line of `addr` for writing: a
/// copying collector's hint for a header it is about to overwrite with a
/// forwarding address. Like [`prefetch_read`], only a hint: any address
/// will do.
#[inline(always)]
pub fn prefetch_write(addr: usize) {
    prefetch::<true>(addr);
}

/// The prefetch instruction, for writing (`prefetchw`) or for reading.
#[inline(always)]
fn prefetch<const WRITE: bool>(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_ET0, _MM_HINT_T0, _mm_prefetch};
        let at = std::ptr::without_provenance::<i8>(addr);
        // SAFETY: a prefetch cannot fault and writes nothing, whatever the
        // address; SSE, which it needs, is part of the x86-64 baseline.
        unsafe {
            if WRITE {
                _mm_prefetch::<_MM_HINT_ET0>(at);
            } else {
                _mm_prefetch::<_MM_HINT_T0>(at);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(align_up(0, 8), 0);
        assert_eq!(align_up(1, 8), 8);
        assert_eq!(align_up(8, 8), 8);
        assert_eq!(align_down(15, 8), 8);
        assert!(is_aligned(4096, 4096));
        assert!(!is_aligned(4097, 4096));
        assert_eq!(checked_align_up(usize::MAX, 16), None);
        assert!(page_size().is_power_of_two());
    }
}
