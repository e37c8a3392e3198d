//! The supply of runs: pools from the [`PoolManager`] cut into runs, handed
//! to size classes, taken back when empty, and each pool given back to the
//! manager when its last run is.
//!
//! Everything here happens under one lock (the heap lock), on slow paths only:
//! a thread takes a run when its current run of a class is exhausted, and
//! gives one back when a run empties. Walking and sweeping hold the lock too,
//! so no run is released or recycled under them. Nothing here calls the
//! global allocator: the bookkeeping of a pool lives in its first run's header.
//!
//! A pool whose runs are all free is kept as a *spare* (committed, its runs
//! on the free list) while fewer than the spare limit are kept, and goes back
//! to the pool manager otherwise. Spares spare a workload that repeatedly
//! fills and empties the heap the cost of decommitting and faulting its
//! memory back in; [`HeapGuard::trim`] gives them back.

use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{AllocError, Pool, PoolManager, SpaceType};

use crate::list::{ListTag, RunList};
use crate::run::{FREE_RUN, Geometry, Run};
use crate::sync::{Mutex, MutexGuard};

/// The run size: 64 KiB, or the pool size if pools are smaller.
pub(crate) const MAX_RUN_SIZE: usize = 64 << 10;

/// The heap's bookkeeping of one pool, in the header of the pool's first run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolInfo {
    pool: Pool,
    /// The neighbours on the list of pools held.
    prev: Option<Run>,
    next: Option<Run>,
    /// Runs of the pool in use.
    in_use: u32,
    /// Runs carved so far; runs from this index on were never used, so their
    /// memory is not read (its contents are unspecified).
    carved: u32,
}

/// The runs of one allocator.
pub(crate) struct Heap {
    pools: Arc<PoolManager>,
    space: SpaceType,
    run_size: usize,
    runs_per_pool: u32,
    state: Mutex<HeapState>,
}

struct HeapState {
    /// The first runs of the pools held, linked through their pool info.
    pools: Option<Run>,
    /// Runs not in use, in pools that have a run in use.
    free: RunList,
    /// The pool with never-used runs left, if any.
    fresh: Option<Run>,
    /// Pools held with no run in use.
    spares: usize,
    /// The most spares kept.
    spare_limit: usize,
}

// SAFETY: the state is addresses of runs in pools this heap holds; it is only
// reached through the heap lock.
unsafe impl Send for HeapState {}

/// The heap, locked.
pub(crate) struct HeapGuard<'a> {
    heap: &'a Heap,
    state: MutexGuard<'a, HeapState>,
}

impl Heap {
    /// A heap holding no pool yet, keeping up to `spare_bytes` of spare pools.
    pub(crate) fn new(pools: Arc<PoolManager>, space: SpaceType, spare_bytes: usize) -> Heap {
        let run_size = MAX_RUN_SIZE.min(pools.pool_size());
        let runs_per_pool = (pools.pool_size() / run_size) as u32;
        let state = HeapState {
            pools: None,
            free: RunList::new(ListTag::Free),
            fresh: None,
            spares: 0,
            spare_limit: spare_bytes / pools.pool_size(),
        };
        Heap {
            pools,
            space,
            run_size,
            runs_per_pool,
            state: Mutex::new(state),
        }
    }

    /// The pool manager.
    pub(crate) fn pools(&self) -> &Arc<PoolManager> {
        &self.pools
    }

    /// The space the pools are taken for.
    pub(crate) fn space(&self) -> SpaceType {
        self.space
    }

    /// The size (and alignment) of a run.
    pub(crate) fn run_size(&self) -> usize {
        self.run_size
    }

    /// Takes the heap lock.
    pub(crate) fn lock(&self) -> HeapGuard<'_> {
        HeapGuard {
            heap: self,
            state: self.state.lock(),
        }
    }

    fn first_run(&self, run: Run) -> Run {
        let mask = !(self.pools.pool_size() - 1);
        let start = run.base().as_ptr().map_addr(|a| a & mask);
        // SAFETY: pools are aligned to the pool size, so this is the start of
        // the pool holding `run`, which the heap holds (and is not null).
        unsafe { Run::from_raw(NonNull::new_unchecked(start)) }
    }

    fn nth_run(&self, first: Run, index: u32) -> Run {
        debug_assert!(index < self.runs_per_pool);
        // SAFETY: run `index` lies inside the pool `first` starts.
        unsafe { Run::from_raw(first.base().add(index as usize * self.run_size)) }
    }
}

impl HeapGuard<'_> {
    /// Takes a run not in use, laid out as `geo`, owned by `owner`: a freed
    /// run, else a never-used run of the newest pool, else the first run of a
    /// new pool. Fails when the pool manager does (the space's limit, or the
    /// reservation, is exhausted).
    pub(crate) fn take(&mut self, geo: Geometry, owner: u64) -> Result<Run, AllocError> {
        let heap = self.heap;
        // SAFETY: we hold the heap lock, which holds the free runs.
        let at = if let Some(run) = unsafe { self.state.free.pop_front() } {
            // SAFETY: we hold the heap lock, which guards the pool fields of
            // the pools the heap holds, such as the one of a free run.
            let was_spare = unsafe {
                heap.first_run(run).pool_info(|p| {
                    p.in_use += 1;
                    p.in_use == 1
                })
            };
            if was_spare {
                self.state.spares -= 1;
            }
            run.base()
        } else if let Some(first) = self.state.fresh {
            // SAFETY: as above; `fresh` is a pool the heap holds.
            let index = unsafe {
                first.pool_info(|p| {
                    p.carved += 1;
                    p.in_use += 1;
                    p.carved - 1
                })
            };
            if index + 1 == heap.runs_per_pool {
                self.state.fresh = None;
            }
            heap.nth_run(first, index).base()
        } else {
            let pool = heap.pools.alloc_pool(heap.space, heap.pools.pool_size())?;
            let next = self.state.pools;
            // SAFETY: the pool is new and ours, its first run's header
            // writable; `next` is a pool the heap holds, under the heap lock.
            let first = unsafe {
                let first = Run::from_raw(pool.start());
                first.init_pool_info(PoolInfo {
                    pool,
                    prev: None,
                    next,
                    in_use: 1,
                    carved: 1,
                });
                if let Some(next) = next {
                    next.pool_info(|p| p.prev = Some(first));
                }
                first
            };
            self.state.pools = Some(first);
            if heap.runs_per_pool > 1 {
                self.state.fresh = Some(first);
            }
            tracing::debug!(space = %heap.space, start = pool.start_addr(), "runslots: pool taken");
            pool.start()
        };
        // SAFETY: `at` starts a run-aligned run that is not in use, inside a
        // pool the heap holds until the run is released.
        let run = unsafe { Run::init(at, geo, owner) };
        heap.pools
            .stats()
            .record_metadata(heap.space, geo.data_offset as usize);
        Ok(run)
    }

    /// Gives a run back. A pool whose last run this was becomes a spare, or
    /// goes back to the pool manager if the spares are at their limit.
    ///
    /// # Safety
    /// The run is empty (no slot allocated), on no list, and held by the
    /// caller, who gives it up.
    pub(crate) unsafe fn release(&mut self, run: Run) {
        let heap = self.heap;
        heap.pools
            .stats()
            .release_metadata(heap.space, run.geometry().data_offset as usize);
        let first = heap.first_run(run);
        // SAFETY: the caller gave the run up to us, and we hold the heap lock,
        // which guards the pool fields and the free list.
        let info = unsafe {
            run.set_free();
            let info = first.pool_info(|p| {
                p.in_use -= 1;
                *p
            });
            if info.in_use > 0 {
                self.state.free.push_front(run);
                return;
            }
            info
        };
        if self.state.spares < self.state.spare_limit {
            self.state.spares += 1;
            // SAFETY: as above.
            unsafe { self.state.free.push_front(run) };
        } else {
            // SAFETY: as above; the pool is empty and `run` on no list.
            unsafe { self.give_back(first, info, Some(run)) };
        }
    }

    /// Gives every spare pool back to the pool manager.
    pub(crate) fn trim(&mut self) {
        self.trim_to(0);
    }

    /// Sets the most spare pools kept, giving back any above it.
    pub(crate) fn set_spare_limit(&mut self, pools: usize) {
        self.state.spare_limit = pools;
        self.trim_to(pools);
    }

    /// The most spare pools kept.
    pub(crate) fn spare_limit(&self) -> usize {
        self.state.spare_limit
    }

    fn trim_to(&mut self, spares: usize) {
        let mut pool = self.state.pools;
        while let Some(first) = pool {
            if self.state.spares <= spares {
                break;
            }
            // SAFETY: we hold the heap lock and `first` starts a pool we hold.
            let info = unsafe { first.pool_info(|p| *p) };
            pool = info.next;
            if info.in_use == 0 {
                self.state.spares -= 1;
                // SAFETY: the pool is empty: all its carved runs are free.
                unsafe { self.give_back(first, info, None) };
            }
        }
    }

    /// Gives an empty pool back to the pool manager.
    ///
    /// # Safety
    /// The heap lock is held (`&mut self`), `first` starts a pool of the heap
    /// with no run in use, `info` is its bookkeeping, and every carved run of
    /// it but `released` (which is on no list) is on the free list.
    unsafe fn give_back(&mut self, first: Run, info: PoolInfo, released: Option<Run>) {
        let heap = self.heap;
        // SAFETY: by the contract; the pool's neighbours are pools the heap holds.
        unsafe {
            for index in 0..info.carved {
                let other = heap.nth_run(first, index);
                if Some(other) != released {
                    self.state.free.remove(other);
                }
            }
            match info.prev {
                Some(prev) => prev.pool_info(|p| p.next = info.next),
                None => self.state.pools = info.next,
            }
            if let Some(next) = info.next {
                next.pool_info(|p| p.prev = info.prev);
            }
        }
        if self.state.fresh == Some(first) {
            self.state.fresh = None;
        }
        tracing::debug!(space = %heap.space, start = info.pool.start_addr(), "runslots: pool given back");
        heap.pools.free_pool(info.pool);
    }

    /// Every pool held, as its first run and bookkeeping, newest first.
    fn pools(&self) -> impl Iterator<Item = (Run, PoolInfo)> + '_ {
        let mut pool = self.state.pools;
        std::iter::from_fn(move || {
            let first = pool?;
            // SAFETY: we hold the heap lock (borrowed for the iterator's
            // life) and `first` starts a pool we hold.
            let info = unsafe { first.pool_info(|p| *p) };
            pool = info.next;
            Some((first, info))
        })
    }

    /// Calls `f` with every run in use.
    pub(crate) fn for_each_run(&self, mut f: impl FnMut(Run)) {
        for (first, info) in self.pools() {
            for index in 0..info.carved {
                let run = self.heap.nth_run(first, index);
                if run.owner() != FREE_RUN {
                    f(run);
                }
            }
        }
    }

    /// Calls `f(start, end)` with the part of every pool held that runs were
    /// carved from so far, and then `run(addr)` answers, for any `addr` in
    /// that part, the run in use containing it (`None` for a free run).
    pub(crate) fn for_each_carved(
        &self,
        mut f: impl FnMut(usize, usize, &dyn Fn(usize) -> Option<Run>),
    ) {
        let run_size = self.heap.run_size;
        for (first, info) in self.pools() {
            let start = info.pool.start_addr();
            let end = start + info.carved as usize * run_size;
            let run_at = |addr: usize| {
                debug_assert!((start..end).contains(&addr));
                let run = self.heap.nth_run(first, ((addr - start) / run_size) as u32);
                (run.owner() != FREE_RUN).then_some(run)
            };
            f(start, end, &run_at);
        }
    }

    /// The pool held that contains `addr`, as its first run and bookkeeping.
    /// O(pools held).
    fn pool_containing(&self, addr: usize) -> Option<(Run, PoolInfo)> {
        self.pools().find(|(_, info)| info.pool.contains(addr))
    }

    /// Whether `addr` lies in a pool the heap holds. O(pools held).
    pub(crate) fn holds(&self, addr: usize) -> bool {
        self.pool_containing(addr).is_some()
    }

    /// The run in use that contains `addr`, if any. O(pools held).
    #[cfg(debug_assertions)]
    pub(crate) fn run_containing(&self, addr: usize) -> Option<Run> {
        let (first, info) = self.pool_containing(addr)?;
        let index = ((addr - info.pool.start_addr()) / self.heap.run_size) as u32;
        let run = self.heap.nth_run(first, index);
        (index < info.carved && run.owner() != FREE_RUN).then_some(run)
    }
}

impl Drop for Heap {
    /// Gives every pool back, whatever is still allocated in it.
    fn drop(&mut self) {
        let mut pool = self.state.get_mut().pools;
        while let Some(first) = pool {
            // SAFETY: `&mut self`: nothing else can reach the heap's runs.
            let info = unsafe { first.pool_info(|p| *p) };
            for index in 0..info.carved {
                let run = self.nth_run(first, index);
                if run.owner() != FREE_RUN {
                    self.pools
                        .stats()
                        .release_metadata(self.space, run.geometry().data_offset as usize);
                }
            }
            pool = info.next;
            self.pools.free_pool(info.pool);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use rtmem_base::PoolManagerConfig;

    use super::*;

    const POOL: usize = 256 << 10;

    fn heap(spare_pools: usize) -> (Arc<PoolManager>, Heap) {
        let pools = Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_pool_size(POOL)
                    .with_reserve(64 * POOL),
            )
            .unwrap(),
        );
        let heap = Heap::new(pools.clone(), SpaceType::Object, spare_pools * POOL);
        (pools, heap)
    }

    fn count_runs(heap: &HeapGuard<'_>) -> usize {
        let mut runs = 0;
        heap.for_each_run(|_| runs += 1);
        runs
    }

    #[test]
    fn runs_are_carved_from_pools_and_pools_go_back_with_their_last_run() {
        let (pools, heap) = heap(0);
        assert_eq!(heap.run_size(), MAX_RUN_SIZE);
        let geo = Geometry::new(3, 32, heap.run_size());
        let mut guard = heap.lock();
        let runs: Vec<Run> = (0..5).map(|_| guard.take(geo, 1).unwrap()).collect();
        assert_eq!(
            pools.used(SpaceType::Object),
            2 * POOL,
            "4 runs per pool: 5 runs need 2 pools"
        );
        let meta = pools.stats().space(SpaceType::Object).metadata;
        assert_eq!(meta, 5 * geo.data_offset as u64);
        for (i, run) in runs.iter().enumerate() {
            assert_eq!(run.base().addr().get() % MAX_RUN_SIZE, 0);
            assert!(guard.holds(run.base().addr().get() + MAX_RUN_SIZE - 1));
            assert_eq!(run.geometry(), geo);
            assert!(runs[..i].iter().all(|other| other != run));
        }
        assert_eq!(count_runs(&guard), 5);
        // SAFETY: the runs are fresh (empty), on no list, and ours.
        unsafe { guard.release(runs[4]) };
        assert_eq!(
            pools.used(SpaceType::Object),
            POOL,
            "the second pool went back with its only run"
        );
        assert!(!guard.holds(runs[4].base().addr().get()));
        for &run in &runs[..4] {
            // SAFETY: as above.
            unsafe { guard.release(run) };
        }
        assert_eq!(pools.used(SpaceType::Object), 0);
        assert_eq!(pools.stats().space(SpaceType::Object).metadata, 0);
        assert_eq!(count_runs(&guard), 0);
    }

    #[test]
    fn freed_runs_are_reused_before_new_ones_are_carved() {
        let (pools, heap) = heap(0);
        let geo = Geometry::new(0, 8, heap.run_size());
        let mut guard = heap.lock();
        let a = guard.take(geo, 1).unwrap();
        let b = guard.take(geo, 1).unwrap();
        // SAFETY: fresh, unlisted, ours.
        unsafe { guard.release(a) };
        let c = guard
            .take(Geometry::new(23, 256, heap.run_size()), 2)
            .unwrap();
        assert_eq!(c, a, "the freed run is reused, for any class");
        assert_eq!(c.geometry().slot_size, 256);
        assert_eq!(c.owner(), 2);
        assert_ne!(b, c);
        assert_eq!(pools.used(SpaceType::Object), POOL);
    }

    #[test]
    fn empty_pools_are_kept_as_spares_up_to_the_limit_until_trimmed() {
        let (pools, heap) = heap(1);
        let geo = Geometry::new(7, 64, heap.run_size());
        let mut guard = heap.lock();
        let runs: Vec<Run> = (0..12).map(|_| guard.take(geo, 1).unwrap()).collect();
        assert_eq!(pools.used(SpaceType::Object), 3 * POOL);
        for run in runs {
            // SAFETY: fresh, unlisted, ours.
            unsafe { guard.release(run) };
        }
        assert_eq!(
            pools.used(SpaceType::Object),
            POOL,
            "one spare pool is kept"
        );
        assert_eq!(count_runs(&guard), 0, "a spare holds no run in use");
        let again: Vec<Run> = (0..4).map(|_| guard.take(geo, 1).unwrap()).collect();
        assert_eq!(
            pools.used(SpaceType::Object),
            POOL,
            "the spare's runs are reused"
        );
        for run in again {
            // SAFETY: fresh, unlisted, ours.
            unsafe { guard.release(run) };
        }
        guard.trim();
        assert_eq!(pools.used(SpaceType::Object), 0);
        guard.set_spare_limit(4);
        assert_eq!(guard.spare_limit(), 4);
    }
}
