//! Helpers shared by the integration tests (and the `churn` example): a tiny
//! deterministic RNG, pool managers, and the churn workload of the benchmarks.

#![allow(dead_code)] // each user needs a different part

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
use rtmem_freelist::FreeListAllocator;

/// xorshift64: deterministic, fast, good enough to pick sizes and victims.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// A pool manager with the default 256 KiB pools and a 4 GiB reservation.
pub fn pools() -> Arc<PoolManager> {
    Arc::new(PoolManager::new(PoolManagerConfig::default().with_reserve(4 << 30)).unwrap())
}

/// Live objects in the churn window.
pub const WINDOW: usize = 10_000;

fn churn_layout(rng: &mut Rng) -> Layout {
    Layout::from_size_align(rng.range(16, 256), 8).unwrap()
}

/// The benchmarks' churn: fills a window of `WINDOW` objects, then each step
/// frees a random one and allocates a random size in 16..=256. Returns the
/// live window and the bytes its objects asked for.
pub fn churn<P: Copy>(
    steps: usize,
    mut alloc: impl FnMut(Layout) -> P,
    mut free: impl FnMut(P, Layout),
) -> (Vec<(P, Layout)>, usize) {
    let mut rng = Rng::new(0x5EED);
    let mut live: Vec<(P, Layout)> = (0..WINDOW)
        .map(|_| {
            let l = churn_layout(&mut rng);
            (alloc(l), l)
        })
        .collect();
    for _ in 0..steps {
        let i = rng.range(0, WINDOW - 1);
        let (p, l) = live[i];
        free(p, l);
        let l = churn_layout(&mut rng);
        live[i] = (alloc(l), l);
    }
    let requested = live.iter().map(|(_, l)| l.size()).sum();
    (live, requested)
}

/// Times churn over `FreeListAllocator` and over `System` in alternating
/// short rounds (so load from other processes hits both alike), and a
/// do-nothing allocator for the workload's own cost; prints the medians and
/// the best rounds, and returns the ratio of the medians, ours / System.
pub fn churn_vs_system(rounds: usize, steps: usize) -> f64 {
    let heap = FreeListAllocator::new(pools(), SpaceType::NonMoving);
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_nanos() as f64 / steps as f64
    };
    let (mut ours, mut system, mut empty) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(time(&mut || {
            let (live, _) = churn(
                steps,
                |l| black_box(heap.alloc(l).unwrap()),
                // SAFETY: every pointer freed came from `heap.alloc` and is freed once.
                |p, _| unsafe { heap.free(p) },
            );
            for (p, _) in live {
                // SAFETY: as above.
                unsafe { heap.free(p) };
            }
        }));
        system.push(time(&mut || {
            let (live, _) = churn(
                steps,
                // SAFETY: the layouts have non-zero sizes.
                |l| black_box(NonNull::new(unsafe { System.alloc(l) }).unwrap()),
                // SAFETY: every pointer freed came from `System.alloc` with this layout.
                |p, l| unsafe { System.dealloc(p.as_ptr(), l) },
            );
            for (p, l) in live {
                // SAFETY: as above.
                unsafe { System.dealloc(p.as_ptr(), l) };
            }
        }));
        empty.push(time(&mut || {
            let (live, _) = churn(
                steps,
                |l| black_box(l.size()),
                |p, _| {
                    black_box(p);
                },
            );
            black_box(live);
        }));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, s, e) = (median(&mut ours), median(&mut system), median(&mut empty));
    // After sorting, the first entries are the best rounds: the least disturbed by other load.
    let (o_min, s_min) = (ours[0], system[0]);
    eprintln!(
        "churn, {rounds} rounds of {steps} steps: rtmem_freelist {o:.1} ns/step, System {s:.1} ns/step \
         (medians), ratio {:.2}; best rounds {o_min:.1} vs {s_min:.1}, ratio {:.2}; the workload alone \
         {e:.1} ns/step, so allocator-only {:.1} vs {:.1} ns/step (medians)",
        o / s,
        o_min / s_min,
        o - e,
        s - e
    );
    o / s
}
