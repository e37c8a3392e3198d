//! Quick timings against the system allocator, to know where the fast paths
//! stand before the criterion benchmarks run. Ignored by default; run with
//!
//! `cargo test -p rtmem-runslots --release --test timing -- --ignored --nocapture`
//!
//! Each scenario mirrors a benchmark of `benches/`: `small` (100,000 objects
//! of one size, then freed in allocation order), `small_mt` (the same on two
//! threads at once, 64 bytes) and `churn` (10,000 live objects of 16 to 256
//! bytes, each step frees a random one and allocates a random size).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
use rtmem_runslots::{LocalRuns, RunSlotsAllocator};

const OBJECTS: usize = 100_000;
const ROUNDS: usize = 30;

/// The operations the scenarios need, for both allocators.
trait Alloc {
    fn alloc(&mut self, size: usize) -> NonNull<u8>;
    /// # Safety
    /// `ptr` is a live allocation of `size` bytes from this allocator.
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize);
}

impl Alloc for LocalRuns {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        LocalRuns::alloc(self, size).unwrap()
    }

    #[inline(always)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, _size: usize) {
        // SAFETY: forwarded.
        unsafe { LocalRuns::free(self, ptr) }
    }
}

struct Sys;

impl Alloc for Sys {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { System.alloc(Layout::from_size_align(size, 8).unwrap()) }).unwrap()
    }

    #[inline(always)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: forwarded; allocated with this layout.
        unsafe { System.dealloc(ptr.as_ptr(), Layout::from_size_align(size, 8).unwrap()) }
    }
}

fn runslots() -> Arc<RunSlotsAllocator> {
    let cache = std::env::var("CACHE")
        .map(|c| c.parse().unwrap())
        .unwrap_or(16);
    let pools =
        Arc::new(PoolManager::new(PoolManagerConfig::default().with_cache_pools(cache)).unwrap());
    Arc::new(RunSlotsAllocator::new(pools, SpaceType::RuntimeInternal))
}

/// One round of `small`: allocate `OBJECTS`, touch each, free them in order.
fn small_round(a: &mut impl Alloc, size: usize, objects: &mut Vec<NonNull<u8>>) {
    for _ in 0..OBJECTS {
        let p = a.alloc(size);
        // SAFETY: a fresh allocation of at least one byte.
        unsafe { p.as_ptr().write(1) };
        objects.push(black_box(p));
    }
    for p in objects.drain(..) {
        // SAFETY: live, of `size` bytes.
        unsafe { a.free(p, size) };
    }
}

/// Nanoseconds per operation since `start`.
fn ns_per(start: Instant, ops: usize) -> f64 {
    start.elapsed().as_secs_f64() * 1e9 / ops as f64
}

/// The best per-pair time (ns) of `ROUNDS` rounds of `small`.
fn small(a: &mut impl Alloc, size: usize) -> f64 {
    let mut objects = Vec::with_capacity(OBJECTS);
    small_round(a, size, &mut objects); // warm up
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            small_round(a, size, &mut objects);
            ns_per(start, OBJECTS)
        })
        .fold(f64::INFINITY, f64::min)
}

/// `small` at 64 bytes on two threads at once: the best wall time (ns) per
/// pair per thread.
fn small_mt<A: Alloc>(make: impl Fn() -> A + Sync) -> f64 {
    (0..ROUNDS / 3)
        .map(|_| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        let mut a = make();
                        let mut objects = Vec::with_capacity(OBJECTS);
                        for _ in 0..3 {
                            small_round(&mut a, 64, &mut objects);
                        }
                    });
                }
            });
            ns_per(start, 3 * OBJECTS)
        })
        .fold(f64::INFINITY, f64::min)
}

/// `churn`: the per-step time (ns; one free and one allocation).
fn churn(a: &mut impl Alloc) -> f64 {
    const WINDOW: usize = 10_000;
    const STEPS: usize = 200_000;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut live: Vec<(NonNull<u8>, usize)> = Vec::with_capacity(WINDOW);
    for _ in 0..WINDOW {
        let size = 16 + (next() % 241) as usize;
        live.push((a.alloc(size), size));
    }
    let start = Instant::now();
    for _ in 0..STEPS {
        let i = (next() % WINDOW as u64) as usize;
        let (p, size) = live[i];
        // SAFETY: live, of `size` bytes.
        unsafe { a.free(p, size) };
        let size = 16 + (next() % 241) as usize;
        live[i] = (black_box(a.alloc(size)), size);
    }
    let elapsed = ns_per(start, STEPS);
    for (p, size) in live {
        // SAFETY: live, of `size` bytes.
        unsafe { a.free(p, size) };
    }
    elapsed
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn timings_against_the_system_allocator() {
    let slots = runslots();
    let mut local = slots.local();
    eprintln!(
        "{:<22} {:>12} {:>12} {:>7}",
        "scenario", "runslots", "system", "ratio"
    );
    let row = |name: &str, ours: f64, sys: f64| {
        let ratio = ours / sys;
        eprintln!("{name:<22} {ours:>9.2} ns {sys:>9.2} ns {ratio:>7.2}");
    };
    for size in [16, 64, 256] {
        row(
            &format!("small {size} B (pair)"),
            small(&mut local, size),
            small(&mut Sys, size),
        );
    }
    row(
        "small_mt 64 B (pair)",
        small_mt(|| slots.local()),
        small_mt(|| Sys),
    );
    row("churn (step)", churn(&mut local), churn(&mut Sys));
    drop(local);
    assert_eq!(slots.stats().live_objects(), 0);
    assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), 0);
}
