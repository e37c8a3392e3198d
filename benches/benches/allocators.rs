//! Allocator benchmarks: rtmem side by side with bumpalo, mimalloc and the
//! system allocator, in the same run.
//!
//! Groups (criterion ids `group/function/parameter`):
//! - `bump`: `rtmem_tlab`, `rtmem_bump`, `bumpalo` — 100,000 objects of
//!   16/64/256 bytes (one word written into each), then reset.
//! - `arena`: `rtmem_arena`, `bumpalo` — the same pattern.
//! - `small`: `rtmem_runslots`, `mimalloc`, `system` — 100,000 objects, then
//!   free them all in allocation order.
//! - `churn`: `rtmem_freelist`, `rtmem_runslots`, `mimalloc`, `system` — a
//!   window of 10,000 live objects; one step frees a random one and allocates
//!   a random size in 16..=256.
//! - `small_mt`: the `small` pattern at 64 bytes on two threads at once.

use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use rtmem_arena::Arena;
use rtmem_base::SpaceType;
use rtmem_benches::{
    Churn, FreeListAlloc, MiMallocAlloc, OBJECTS, ObjectAlloc, RunSlotsAlloc, SIZES, SystemAlloc,
    new_pools, small_pattern,
};
use rtmem_bump::{BumpAllocator, BumpRegion};
use rtmem_tlab::Tlab;

const CHURN_WINDOW: usize = 10_000;

#[inline(always)]
fn write_word(p: NonNull<u8>, i: usize) {
    // SAFETY: every benchmark object is at least 16 bytes and 8-aligned.
    unsafe { p.cast::<usize>().as_ptr().write(i) };
}

/// The anchor of the `bump` and `arena` groups: bumpalo's `alloc_layout`,
/// one word written into each object, then `reset`.
fn bumpalo_anchor(g: &mut BenchmarkGroup<'_, WallTime>, size: usize, layout: Layout) {
    g.bench_with_input(BenchmarkId::new("bumpalo", size), &layout, |b, &layout| {
        let mut bump = bumpalo::Bump::new();
        b.iter(|| {
            for i in 0..OBJECTS {
                write_word(bump.alloc_layout(black_box(layout)), i);
            }
            bump.reset();
        });
    });
}

fn bump(c: &mut Criterion) {
    let mut g = c.benchmark_group("bump");
    g.throughput(Throughput::Elements(OBJECTS as u64));
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).unwrap();
        g.bench_with_input(BenchmarkId::new("rtmem_tlab", size), &size, |b, &size| {
            let pools = new_pools();
            let mut region = BumpRegion::new(pools, SpaceType::Object, OBJECTS * size * 2).unwrap();
            let mut tlab = Tlab::new(64 << 10);
            b.iter(|| {
                for i in 0..OBJECTS {
                    let p = tlab.alloc(&region, black_box(size)).unwrap();
                    write_word(p, i);
                }
                tlab.retire(&region);
                region.reset();
            });
        });
        g.bench_with_input(
            BenchmarkId::new("rtmem_bump", size),
            &layout,
            |b, &layout| {
                let mut bump = BumpAllocator::new(new_pools(), SpaceType::Object);
                b.iter(|| {
                    for i in 0..OBJECTS {
                        write_word(bump.alloc(black_box(layout)).unwrap(), i);
                    }
                    bump.reset();
                });
            },
        );
        bumpalo_anchor(&mut g, size, layout);
    }
    g.finish();
}

fn arena(c: &mut Criterion) {
    let mut g = c.benchmark_group("arena");
    g.throughput(Throughput::Elements(OBJECTS as u64));
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).unwrap();
        g.bench_with_input(
            BenchmarkId::new("rtmem_arena", size),
            &layout,
            |b, &layout| {
                let mut arena = Arena::new(new_pools());
                b.iter(|| {
                    for i in 0..OBJECTS {
                        write_word(arena.alloc(black_box(layout)).unwrap(), i);
                    }
                    arena.reset();
                });
            },
        );
        bumpalo_anchor(&mut g, size, layout);
    }
    g.finish();
}

fn small_with<A: ObjectAlloc>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut a: A) {
    for size in SIZES {
        let mut ptrs = Vec::with_capacity(OBJECTS);
        g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
            b.iter(|| small_pattern(&mut a, black_box(size), &mut ptrs));
        });
    }
}

fn small(c: &mut Criterion) {
    let mut g = c.benchmark_group("small");
    g.throughput(Throughput::Elements(OBJECTS as u64));
    small_with(&mut g, "rtmem_runslots", RunSlotsAlloc::new());
    small_with(&mut g, "mimalloc", MiMallocAlloc);
    small_with(&mut g, "system", SystemAlloc);
    g.finish();
}

fn churn_with<A: ObjectAlloc>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, a: A) {
    let mut churn = Churn::new(a, CHURN_WINDOW, 42);
    g.bench_function(BenchmarkId::new(name, CHURN_WINDOW), |b| {
        b.iter(|| churn.step())
    });
}

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("churn");
    g.throughput(Throughput::Elements(1));
    churn_with(&mut g, "rtmem_freelist", FreeListAlloc::new());
    churn_with(&mut g, "rtmem_runslots", RunSlotsAlloc::new());
    churn_with(&mut g, "mimalloc", MiMallocAlloc);
    churn_with(&mut g, "system", SystemAlloc);
    g.finish();
}

/// Runs `small_pattern` `iters` times on each of two threads at once and
/// returns the wall time of the slower thread.
fn two_threads<A: ObjectAlloc + Send>(make: impl Fn() -> A + Sync, iters: u64) -> Duration {
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut a = make();
                    let mut ptrs = Vec::with_capacity(OBJECTS);
                    barrier.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        small_pattern(&mut a, black_box(64), &mut ptrs);
                    }
                    t.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    })
}

fn small_mt(c: &mut Criterion) {
    let mut g = c.benchmark_group("small_mt");
    // Two threads each do OBJECTS allocations and frees per iteration.
    g.throughput(Throughput::Elements(2 * OBJECTS as u64));
    let runslots = RunSlotsAlloc::new();
    let shared = Arc::clone(runslots.shared());
    g.bench_function(BenchmarkId::new("rtmem_runslots", 64), |b| {
        b.iter_custom(|iters| two_threads(|| RunSlotsAlloc::on(&shared), iters))
    });
    g.bench_function(BenchmarkId::new("mimalloc", 64), |b| {
        b.iter_custom(|iters| two_threads(|| MiMallocAlloc, iters))
    });
    g.bench_function(BenchmarkId::new("system", 64), |b| {
        b.iter_custom(|iters| two_threads(|| SystemAlloc, iters))
    });
    g.finish();
    drop(runslots);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bump, arena, small, churn, small_mt
}
criterion_main!(benches);
