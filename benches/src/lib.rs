//! Workloads shared by the rtmem benchmarks and the fragmentation report.
//!
//! Each allocator under test is wrapped in an [`ObjectAlloc`] so that one
//! generic workload drives rtmem and its anchors (the system allocator,
//! mimalloc) through identical code: only the allocator differs.
//!
//! ```
//! use rtmem_benches::{Churn, SystemAlloc};
//!
//! let mut churn = Churn::new(SystemAlloc, 100, 7);
//! for _ in 0..1000 {
//!     churn.step();
//! }
//! assert_eq!(churn.live_objects(), 100);
//! churn.drain();
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{MemStatsSnapshot, SpaceType};
use rtmem_freelist::FreeListAllocator;
use rtmem_runslots::{LocalRuns, RunSlotsAllocator};

pub mod trees;

/// Objects allocated per iteration by the `bump`, `arena` and `small` groups.
pub const OBJECTS: usize = 100_000;
/// Object sizes of the `bump`, `arena` and `small` groups.
pub const SIZES: [usize; 3] = [16, 64, 256];
/// Smallest and largest object size of the `churn` workload.
pub const CHURN_SIZES: (usize, usize) = (16, 256);

/// A small, fast, deterministic random number generator (xorshift64*).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a seed (zero is replaced by a fixed constant).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random number in `0..n`.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// An allocator driven by the workloads: allocation of a size, free of a
/// pointer with the size it was allocated with.
pub trait ObjectAlloc {
    /// Allocates `size` bytes, 8-aligned. Panics on failure (a benchmark has no
    /// way to recover, and failing loudly beats measuring nonsense).
    fn alloc(&mut self, size: usize) -> NonNull<u8>;

    /// Frees an allocation of `size` bytes.
    ///
    /// # Safety
    /// `ptr` came from `alloc(size)` on this allocator and was not freed since.
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize);

    /// Bytes this allocator holds from the operating system, if it can tell
    /// (rtmem allocators can; the anchors are measured from RSS instead).
    fn committed_bytes(&self) -> Option<u64> {
        None
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("benchmark sizes are valid layouts")
}

/// The process's system allocator (glibc malloc), called through `GlobalAlloc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemAlloc;

impl ObjectAlloc for SystemAlloc {
    #[inline]
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        // SAFETY: benchmark layouts have a non-zero size.
        NonNull::new(unsafe { System.alloc(layout(size)) }).expect("system allocator failed")
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller guarantees `ptr` is a live allocation of `size` bytes from System.
        unsafe { System.dealloc(ptr.as_ptr(), layout(size)) }
    }
}

/// mimalloc, called through its `GlobalAlloc` methods.
#[derive(Clone, Copy, Debug, Default)]
pub struct MiMallocAlloc;

impl ObjectAlloc for MiMallocAlloc {
    #[inline]
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        // SAFETY: benchmark layouts have a non-zero size.
        NonNull::new(unsafe { mimalloc::MiMalloc.alloc(layout(size)) }).expect("mimalloc failed")
    }

    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller guarantees `ptr` is a live allocation of `size` bytes from mimalloc.
        unsafe { mimalloc::MiMalloc.dealloc(ptr.as_ptr(), layout(size)) }
    }
}

/// rtmem's run-of-slots allocator through a thread's [`LocalRuns`] handle.
pub struct RunSlotsAlloc {
    local: LocalRuns,
}

impl RunSlotsAlloc {
    /// A fresh allocator over its own pool manager, in the runtime-internal space.
    pub fn new() -> RunSlotsAlloc {
        let shared = Arc::new(RunSlotsAllocator::new(
            new_pools(),
            SpaceType::RuntimeInternal,
        ));
        RunSlotsAlloc::on(&shared)
    }

    /// Another thread's handle on the same allocator.
    pub fn on(shared: &Arc<RunSlotsAllocator>) -> RunSlotsAlloc {
        RunSlotsAlloc {
            local: shared.local(),
        }
    }

    /// The shared allocator behind this handle.
    pub fn shared(&self) -> &Arc<RunSlotsAllocator> {
        self.local.allocator()
    }

    /// The statistics of the allocator's pool manager.
    pub fn snapshot(&self) -> MemStatsSnapshot {
        self.shared().pools().snapshot()
    }
}

impl Default for RunSlotsAlloc {
    fn default() -> Self {
        RunSlotsAlloc::new()
    }
}

impl ObjectAlloc for RunSlotsAlloc {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        self.local
            .alloc(size)
            .expect("run-of-slots allocation failed")
    }

    #[inline(always)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, _size: usize) {
        // SAFETY: the caller guarantees `ptr` is a live slot from this allocator.
        unsafe { self.local.free(ptr) }
    }

    fn committed_bytes(&self) -> Option<u64> {
        Some(committed(self.shared().pools()))
    }
}

/// rtmem's free-list allocator.
pub struct FreeListAlloc {
    inner: FreeListAllocator,
    pools: Arc<rtmem_base::PoolManager>,
}

impl FreeListAlloc {
    /// A fresh allocator over its own pool manager, in the runtime-internal space.
    pub fn new() -> FreeListAlloc {
        let pools = new_pools();
        FreeListAlloc {
            inner: FreeListAllocator::new(pools.clone(), SpaceType::RuntimeInternal),
            pools,
        }
    }
}

impl Default for FreeListAlloc {
    fn default() -> Self {
        FreeListAlloc::new()
    }
}

impl ObjectAlloc for FreeListAlloc {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        self.inner
            .alloc(layout(size))
            .expect("free-list allocation failed")
    }

    #[inline(always)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, _size: usize) {
        // SAFETY: the caller guarantees `ptr` is a live block from this allocator.
        unsafe { self.inner.free(ptr) }
    }

    fn committed_bytes(&self) -> Option<u64> {
        Some(committed(&self.pools))
    }
}

/// Bytes the runtime-internal space of `pools` has committed.
fn committed(pools: &rtmem_base::PoolManager) -> u64 {
    pools.stats().space(SpaceType::RuntimeInternal).committed
}

/// A pool manager with default settings, for one benchmark.
pub fn new_pools() -> Arc<rtmem_base::PoolManager> {
    Arc::new(
        rtmem_base::PoolManager::new(rtmem_base::PoolManagerConfig::default())
            .expect("reserving the benchmark's address space"),
    )
}

/// The `small` workload: allocate `OBJECTS` objects of `size` bytes (writing
/// one word into each), then free them all in allocation order. `ptrs` is
/// scratch space reused between iterations.
#[inline]
pub fn small_pattern<A: ObjectAlloc>(a: &mut A, size: usize, ptrs: &mut Vec<NonNull<u8>>) {
    ptrs.clear();
    for i in 0..OBJECTS {
        let p = a.alloc(size);
        // SAFETY: a fresh allocation of at least 8 bytes, 8-aligned.
        unsafe { p.cast::<usize>().as_ptr().write(i) };
        ptrs.push(p);
    }
    for &p in ptrs.iter() {
        // SAFETY: every pointer was allocated above with `size` and is freed once.
        unsafe { a.free(p, size) };
    }
}

/// The `churn` workload: a window of live objects in which each step frees a
/// random one and allocates a random size in [`CHURN_SIZES`].
pub struct Churn<A: ObjectAlloc> {
    alloc: A,
    window: Vec<(NonNull<u8>, usize)>,
    rng: XorShift,
    live_bytes: usize,
}

impl<A: ObjectAlloc> Churn<A> {
    /// Fills a window of `live` objects.
    pub fn new(mut alloc: A, live: usize, seed: u64) -> Churn<A> {
        let mut rng = XorShift::new(seed);
        let mut live_bytes = 0;
        let window = (0..live)
            .map(|_| {
                let size = Self::size(&mut rng);
                live_bytes += size;
                (alloc.alloc(size), size)
            })
            .collect();
        Churn {
            alloc,
            window,
            rng,
            live_bytes,
        }
    }

    #[inline]
    fn size(rng: &mut XorShift) -> usize {
        CHURN_SIZES.0 + rng.below(CHURN_SIZES.1 - CHURN_SIZES.0 + 1)
    }

    /// Frees a random object and allocates a random size in its place.
    #[inline]
    pub fn step(&mut self) {
        let i = self.rng.below(self.window.len());
        let (old, old_size) = self.window[i];
        // SAFETY: every window entry is a live allocation with its size.
        unsafe { self.alloc.free(old, old_size) };
        let size = Self::size(&mut self.rng);
        let p = self.alloc.alloc(size);
        // SAFETY: a fresh allocation of at least 16 bytes.
        unsafe { p.cast::<usize>().as_ptr().write(size) };
        self.window[i] = (p, size);
        self.live_bytes = self.live_bytes + size - old_size;
    }

    /// Bytes requested by the live objects.
    pub fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Live objects in the window.
    pub fn live_objects(&self) -> usize {
        self.window.len()
    }

    /// The allocator under test.
    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    /// Frees every live object.
    pub fn drain(&mut self) {
        for (p, size) in self.window.drain(..) {
            // SAFETY: every window entry is a live allocation with its size.
            unsafe { self.alloc.free(p, size) };
        }
        self.live_bytes = 0;
    }
}

impl<A: ObjectAlloc> Drop for Churn<A> {
    fn drop(&mut self) {
        self.drain();
    }
}

/// The resident set size of this process in bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rtmem_base::page_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_numbers_stay_in_range() {
        let mut rng = XorShift::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[rng.below(10)] = true;
        }
        assert!(seen.iter().all(|&s| s), "every value of 0..10 appears");
    }

    #[test]
    fn churn_keeps_its_window_on_every_allocator() {
        fn run<A: ObjectAlloc>(a: A) {
            let mut churn = Churn::new(a, 500, 3);
            let before = churn.live_objects();
            for _ in 0..5000 {
                churn.step();
            }
            assert_eq!(churn.live_objects(), before);
            let live = churn.live_bytes();
            assert!((500 * 16..=500 * 256).contains(&live), "{live}");
            if let Some(committed) = churn.allocator().committed_bytes() {
                assert!(committed >= live as u64);
            }
        }
        run(SystemAlloc);
        run(MiMallocAlloc);
        run(RunSlotsAlloc::new());
        run(FreeListAlloc::new());
    }
}
