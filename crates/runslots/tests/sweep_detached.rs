//! Sweeping runs set apart (`detach_for_sweep` / `sweep_detached`) while
//! allocation goes on.
//!
//! The property test checks one collection against a model: random
//! allocations (some freed before the pause), a random live subset, the runs
//! set apart, then random allocations, frees of new objects and of live old
//! ones (frees into set-apart runs), flushes and sweeps of random chunk
//! sizes. After every step: no new object is in a run not swept yet (by
//! `SweepSet::contains` and by the model's own record of the runs
//! `run_swept` reported), `contains` answers exactly for the old runs,
//! `is_live` is asked about exactly the old objects still allocated in the
//! runs swept, each sweep frees exactly the dead ones, the walk lists exactly
//! the model's objects, and every object keeps its pattern. After a flush,
//! and at the end, `MemStats` equal the model; once everything is freed every
//! pool is back: no slot and no run was lost.
//!
//! The threaded test sweeps a set in chunks on one thread while another
//! allocates, frees its own objects and frees live old ones.

mod common;
use common::{Rng, pattern};
use std::collections::{BTreeMap, BTreeSet};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType, Swept};
use rtmem_runslots::{LocalRuns, RunSlotsAllocator, SweepSet};

const SPACE: SpaceType = SpaceType::Object;

fn ptr(addr: usize) -> NonNull<u8> {
    NonNull::new(addr as *mut u8).unwrap()
}

fn fill(addr: usize, size: usize, pattern: u8) {
    // SAFETY: a live slot of `size` bytes, ours to write.
    unsafe { (addr as *mut u8).write_bytes(pattern, size) };
}

fn check(addr: usize, size: usize, pattern: u8) {
    // SAFETY: a live slot of `size` bytes, written by `fill`.
    let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, size) };
    assert!(
        bytes.iter().all(|&b| b == pattern),
        "object {addr:#x} of {size} bytes was overwritten"
    );
}

fn allocator(pool_size: usize) -> (Arc<PoolManager>, Arc<RunSlotsAllocator>) {
    let config = PoolManagerConfig::default()
        .with_pool_size(pool_size)
        .with_reserve(1 << 30);
    let pools = Arc::new(PoolManager::new(config).unwrap());
    let slots = Arc::new(RunSlotsAllocator::new(pools.clone(), SPACE));
    (pools, slots)
}

/// What happens to an object allocated before the pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Freed before the pause.
    Freed,
    /// Unreachable at the pause: the sweep frees it.
    Dead,
    /// Reachable: kept, and may be freed explicitly later.
    Live,
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        handle: usize,
    },
    /// Free the new object at `index` (modulo their count).
    FreeNew {
        index: usize,
        handle: Option<usize>,
    },
    /// Free the live old object at `index` (modulo their count).
    FreeOld {
        index: usize,
        handle: Option<usize>,
    },
    Sweep {
        chunk: usize,
    },
    Flush,
}

fn size() -> impl Strategy<Value = usize> {
    // One size of each kind fills runs; random sizes spread over classes.
    prop_oneof![3 => 1usize..=256, 1 => Just(8usize), 1 => Just(200usize)]
}

fn old() -> impl Strategy<Value = (usize, usize, Fate)> {
    let fate = prop_oneof![1 => Just(Fate::Freed), 2 => Just(Fate::Dead), 2 => Just(Fate::Live)];
    (size(), 0usize..2, fate)
}

fn op() -> impl Strategy<Value = Op> {
    let handle = prop_oneof![(0usize..2).prop_map(Some), Just(None)];
    prop_oneof![
        6 => (size(), 0usize..2).prop_map(|(size, handle)| Op::Alloc { size, handle }),
        2 => (any::<usize>(), handle.clone()).prop_map(|(index, handle)| Op::FreeNew { index, handle }),
        2 => (any::<usize>(), handle).prop_map(|(index, handle)| Op::FreeOld { index, handle }),
        2 => (0usize..4).prop_map(|chunk| Op::Sweep { chunk }),
        1 => Just(Op::Flush),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Object {
    size: usize,
    pattern: u8,
    /// Allocated before the pause; then `dead` says whether the sweep frees it.
    old: bool,
    dead: bool,
}

struct Harness {
    pools: Arc<PoolManager>,
    slots: Arc<RunSlotsAllocator>,
    run_size: usize,
    handles: Vec<LocalRuns>,
    /// Every allocated object (dead old ones until their run is swept).
    model: BTreeMap<usize, Object>,
    /// The runs set apart and not reported swept yet.
    pending: BTreeSet<usize>,
    /// Every run set apart.
    set_apart: BTreeSet<usize>,
    set: SweepSet,
    swept: Swept,
    dead_total: Swept,
    next_pattern: u8,
}

impl Harness {
    fn new(olds: Vec<(usize, usize, Fate)>) -> Harness {
        // Small pools (one 64 KiB run each), so that pools come and go.
        let (pools, slots) = allocator(64 << 10);
        slots.set_spare_limit(0);
        let run_size = slots.run_layout(8).unwrap().run_size;
        let mut handles = vec![slots.local(), slots.local()];
        let mut model = BTreeMap::new();
        let mut freed = Vec::new();
        for (i, &(size, handle, fate)) in olds.iter().enumerate() {
            let p = handles[handle].alloc(size).unwrap().addr().get();
            let size = RunSlotsAllocator::size_class(size).unwrap();
            let pattern = i as u8 | 1;
            fill(p, size, pattern);
            if fate == Fate::Freed {
                freed.push(p);
            } else {
                let dead = fate == Fate::Dead;
                let object = Object {
                    size,
                    pattern,
                    old: true,
                    dead,
                };
                assert!(model.insert(p, object).is_none());
            }
        }
        for (i, p) in freed.into_iter().enumerate() {
            // SAFETY: live, freed once (through either handle: some remote frees).
            unsafe { handles[i % 2].free(ptr(p)) };
        }
        // The pause: flush the mutators, set the runs apart.
        for handle in &mut handles {
            handle.flush();
        }
        // SAFETY: every handle is flushed and nothing else uses the allocator.
        let set = unsafe { slots.detach_for_sweep() };
        let set_apart: BTreeSet<usize> = model.keys().map(|a| a & !(run_size - 1)).collect();
        assert_eq!(
            set.len(),
            set_apart.len(),
            "exactly the runs in use are set apart"
        );
        let dead_total = model
            .values()
            .filter(|o| o.dead)
            .fold(Swept::default(), |mut s, o| {
                s.objects += 1;
                s.bytes += o.size;
                s
            });
        Harness {
            pools,
            slots,
            run_size,
            handles,
            model,
            pending: set_apart.clone(),
            set_apart,
            set,
            swept: Swept::default(),
            dead_total,
            next_pattern: 1,
        }
    }

    fn run_of(&self, addr: usize) -> usize {
        addr & !(self.run_size - 1)
    }

    fn nth(&self, index: usize, old: bool) -> Option<usize> {
        let candidates: Vec<usize> = self
            .model
            .iter()
            .filter(|(_, o)| o.old == old && !o.dead)
            .map(|(&a, _)| a)
            .collect();
        (!candidates.is_empty()).then(|| candidates[index % candidates.len()])
    }

    fn free(&mut self, addr: usize, handle: Option<usize>) {
        let object = self.model.remove(&addr).unwrap();
        check(addr, object.size, object.pattern);
        // SAFETY: live, freed once, and never called dead by a sweep.
        unsafe {
            match handle {
                Some(h) => self.handles[h].free(ptr(addr)),
                None => self.slots.free(ptr(addr)),
            }
        }
    }

    fn sweep(&mut self, chunk: usize) {
        let left = self.set.len();
        let (mut asked, mut reported) = (BTreeSet::new(), Vec::new());
        let model = &self.model;
        let run_size = self.run_size;
        let swept = self.slots.sweep_detached(
            &mut self.set,
            chunk,
            |p, size| {
                let addr = p.addr().get();
                let object = model.get(&addr).unwrap_or_else(|| {
                    panic!("is_live asked about {addr:#x}, not an allocated object")
                });
                assert!(object.old, "is_live asked about a new object {addr:#x}");
                assert_eq!(size, object.size);
                assert!(asked.insert(addr), "is_live asked twice about {addr:#x}");
                !object.dead
            },
            |start, len| {
                assert_eq!(len, run_size);
                reported.push(start);
            },
        );
        assert_eq!(reported.len(), chunk.min(left), "runs swept");
        assert_eq!(self.set.len(), left - reported.len());
        let mut expected_asked = BTreeSet::new();
        let mut expected = Swept::default();
        for &run in &reported {
            assert!(
                self.pending.remove(&run),
                "run {run:#x} swept twice or never set apart"
            );
            let in_run: Vec<usize> = self
                .model
                .range(run..run + self.run_size)
                .map(|(&a, _)| a)
                .collect();
            for addr in in_run {
                let object = self.model[&addr];
                assert!(object.old, "new object {addr:#x} in a run not swept yet");
                expected_asked.insert(addr);
                if object.dead {
                    expected.objects += 1;
                    expected.bytes += object.size;
                    self.model.remove(&addr);
                }
            }
        }
        // Runs are swept by address.
        assert!(reported.windows(2).all(|w| w[0] < w[1]));
        assert!(
            self.pending
                .iter()
                .all(|&r| reported.iter().all(|&s| s < r))
        );
        assert_eq!(
            asked, expected_asked,
            "is_live asked about exactly the old objects left"
        );
        assert_eq!(swept, expected, "exactly the dead objects were swept");
        self.swept += swept;
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Alloc { size, handle } => {
                let addr = self.handles[handle].alloc(size).unwrap().addr().get();
                let size = RunSlotsAllocator::size_class(size).unwrap();
                assert!(
                    !self.set.contains(addr) && !self.pending.contains(&self.run_of(addr)),
                    "{addr:#x} was allocated in a run not swept yet"
                );
                let pattern = self.next_pattern;
                self.next_pattern = self.next_pattern.wrapping_add(1).max(1);
                fill(addr, size, pattern);
                let object = Object {
                    size,
                    pattern,
                    old: false,
                    dead: false,
                };
                assert!(
                    self.model.insert(addr, object).is_none(),
                    "{addr:#x} handed out twice"
                );
            }
            Op::FreeNew { index, handle } => {
                if let Some(addr) = self.nth(index, false) {
                    self.free(addr, handle);
                }
            }
            Op::FreeOld { index, handle } => {
                if let Some(addr) = self.nth(index, true) {
                    self.free(addr, handle);
                }
            }
            Op::Sweep { chunk } => self.sweep(chunk),
            Op::Flush => {
                for handle in &mut self.handles {
                    handle.flush();
                }
                self.check_stats();
            }
        }
        self.check();
    }

    fn check(&self) {
        let mut walked = BTreeMap::new();
        self.slots.walk(|p, size| {
            assert!(
                walked.insert(p.addr().get(), size).is_none(),
                "walked twice"
            );
        });
        let expected: BTreeMap<usize, usize> =
            self.model.iter().map(|(&a, o)| (a, o.size)).collect();
        assert!(
            walked == expected,
            "the walk saw {} objects, the model has {}",
            walked.len(),
            expected.len()
        );
        for (&addr, object) in &self.model {
            check(addr, object.size, object.pattern);
        }
        for &run in &self.set_apart {
            assert_eq!(self.set.contains(run + 100), self.pending.contains(&run));
        }
    }

    fn check_stats(&self) {
        let stats = self.slots.stats();
        let live_bytes: usize = self.model.values().map(|o| o.size).sum();
        assert_eq!(stats.live_bytes(), live_bytes as u64, "MemStats live bytes");
        assert_eq!(
            stats.live_objects(),
            self.model.len() as u64,
            "MemStats live objects"
        );
    }

    fn finish(mut self) {
        let mut chunk = 1;
        while !self.set.is_empty() {
            self.sweep(chunk);
            chunk = chunk % 3 + 1;
            self.check();
        }
        assert!(self.pending.is_empty());
        assert_eq!(self.swept, self.dead_total, "every dead object swept, once");
        for handle in &mut self.handles {
            handle.flush();
        }
        self.check_stats();
        for addr in self.model.keys().copied().collect::<Vec<_>>() {
            self.free(addr, Some(0));
        }
        drop(std::mem::take(&mut self.handles));
        drop(self.set);
        let stats = self.slots.stats();
        assert_eq!((stats.live_bytes(), stats.live_objects()), (0, 0));
        assert_eq!(stats.metadata, 0, "every run went back");
        assert_eq!(
            self.pools.used(SPACE),
            0,
            "every pool went back: nothing was lost"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sweeping_set_apart_runs_matches_the_model(
        olds in prop::collection::vec(old(), 1..700),
        ops in prop::collection::vec(op(), 0..120),
    ) {
        let mut harness = Harness::new(olds);
        harness.check();
        for op in ops {
            harness.step(op);
        }
        harness.finish();
    }
}

/// Whether the old object at `addr` is unreachable (two in three).
fn dies(addr: usize) -> bool {
    !((addr >> 3) as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .is_multiple_of(3)
}

#[test]
fn a_thread_sweeps_in_chunks_while_another_allocates_and_frees() {
    const OLD: usize = if cfg!(debug_assertions) {
        30_000
    } else {
        200_000
    };
    const MIN_ROUNDS: usize = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let (pools, slots) = allocator(256 << 10);
    let run_size = slots.run_layout(8).unwrap().run_size;
    let mut local = slots.local();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let old: Vec<(usize, usize)> = (0..OLD)
        .map(|_| {
            let size = 1 + rng.below(256) as usize;
            let addr = local.alloc(size).unwrap().addr().get();
            fill(addr, size, pattern(addr));
            (addr, size)
        })
        .collect();
    local.flush();
    // SAFETY: the only handle is flushed and nothing else uses the allocator.
    let mut set = unsafe { slots.detach_for_sweep() };
    let old_runs: BTreeSet<usize> = old.iter().map(|&(a, _)| a & !(run_size - 1)).collect();
    assert_eq!(set.len(), old_runs.len());
    let (dead, live): (Vec<(usize, usize)>, Vec<_>) = old.iter().partition(|&&(a, _)| dies(a));
    let swept_runs = Mutex::new(BTreeSet::new());
    let sweeping = AtomicBool::new(true);
    let (swept, kept) = std::thread::scope(|s| {
        let (slots, swept_runs, sweeping) = (&slots, &swept_runs, &sweeping);
        let sweeper = s.spawn(move || {
            let (mut swept, mut batches) = (Swept::default(), 0);
            while !set.is_empty() {
                swept += slots.sweep_detached(
                    &mut set,
                    1 + batches % 3,
                    |p, _| !dies(p.addr().get()),
                    |start, _| assert!(swept_runs.lock().unwrap().insert(start), "swept twice"),
                );
                batches += 1;
                std::thread::yield_now();
            }
            sweeping.store(false, Ordering::Release);
            (swept, batches)
        });
        // The mutator: allocates (never in a run not swept yet), frees some of
        // its objects, and frees half the live old ones (into set-apart runs
        // while the sweep goes on).
        let mut mine: Vec<(usize, usize)> = Vec::new();
        let mut old_live = live.clone();
        let mut round = 0;
        while round < MIN_ROUNDS || sweeping.load(Ordering::Acquire) {
            let size = 1 + rng.below(256) as usize;
            let addr = local.alloc(size).unwrap().addr().get();
            let run = addr & !(run_size - 1);
            if old_runs.contains(&run) {
                assert!(
                    swept_runs.lock().unwrap().contains(&run),
                    "{addr:#x} was allocated in a run not swept yet"
                );
            }
            fill(addr, size, pattern(addr));
            mine.push((addr, size));
            if rng.below(3) == 0 {
                let (addr, size) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                check(addr, size, pattern(addr));
                // SAFETY: live, ours, freed once.
                unsafe { local.free(ptr(addr)) };
            }
            if round % 4 == 0 && old_live.len() > live.len() / 2 {
                let (addr, size) = old_live.swap_remove(rng.below(old_live.len() as u64) as usize);
                check(addr, size, pattern(addr));
                // SAFETY: live (the sweep calls it live), freed once.
                unsafe {
                    if round % 8 == 0 {
                        slots.free(ptr(addr))
                    } else {
                        local.free(ptr(addr))
                    }
                };
            }
            round += 1;
        }
        let (swept, batches) = sweeper.join().unwrap();
        assert!(batches > 1);
        mine.extend(old_live);
        (swept, mine)
    });
    assert_eq!(swept.objects, dead.len());
    assert_eq!(
        swept.bytes,
        dead.iter()
            .map(|&(_, size)| RunSlotsAllocator::size_class(size).unwrap())
            .sum::<usize>()
    );
    assert_eq!(
        *swept_runs.lock().unwrap(),
        old_runs,
        "every run swept once"
    );
    let mut walked = BTreeMap::new();
    slots.walk(|p, size| {
        walked.insert(p.addr().get(), size);
    });
    let expected: BTreeMap<usize, usize> = kept
        .iter()
        .map(|&(a, size)| (a, RunSlotsAllocator::size_class(size).unwrap()))
        .collect();
    assert!(walked == expected, "the walk differs from what is live");
    local.flush();
    let stats = slots.stats();
    assert_eq!(stats.live_objects(), kept.len() as u64);
    for &(addr, size) in &kept {
        check(addr, size, pattern(addr));
        // SAFETY: live, freed once.
        unsafe { local.free(ptr(addr)) };
    }
    drop(local);
    let stats = slots.stats();
    assert_eq!((stats.live_objects(), stats.live_bytes()), (0, 0));
    assert_eq!(stats.metadata, 0, "every run went back");
    assert_eq!(pools.used(SPACE), 0, "every pool went back");
}
