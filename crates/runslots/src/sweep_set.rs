//! Sweeping alongside allocation: the runs in use set apart in a pause
//! ([`RunSlotsAllocator::detach_for_sweep`]), then swept a few at a time by
//! one thread while the others allocate in other runs
//! ([`RunSlotsAllocator::sweep_detached`]).
//!
//! A set-apart run is *owned* by its [`SweepSet`] (its owner is
//! [`SET_APART`]), just as a `LocalRuns` owns its runs: it is on no list a
//! thread adopts runs from, and a free into it, from any thread, is a remote
//! free: one compare-and-swap onto its remote stack. The thread sweeping the
//! set is the runs' holder and sweeps each in place, with no lock. Giving a
//! run back is what a `LocalRuns` flush does with its runs: abandon it under
//! its class lock (which takes back the frees that waited on its stack), then
//! list it for adoption if it has free slots, or release it if it is empty.
//! Nothing here adds a protocol: it is the remote-free protocol of the `run`
//! module, with the set in the role of the owner.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::allocator::{RunSlotsAllocator, Swept};
use crate::list::{ListTag, RunList};
use crate::run::{NO_OWNER, Run, SET_APART};

/// The runs of a [`RunSlotsAllocator`] set apart for a sweep that runs
/// alongside allocation: made by
/// [`detach_for_sweep`](RunSlotsAllocator::detach_for_sweep), swept by
/// [`sweep_detached`](RunSlotsAllocator::sweep_detached), lowest address
/// first. Until a run is swept and given back, no thread allocates in it.
///
/// The set holds an `Arc` of its allocator, and may move to another thread
/// (`Send`); through a shared reference it only answers
/// [`len`](Self::len) and [`contains`](Self::contains) (`Sync`).
///
/// # Dropping a set before the end
///
/// A collector sweeps every set to the end. Dropping a set that still has
/// runs gives those runs back unswept, so none is lost: they become
/// available for allocation again with their dead objects still allocated
/// (the next sweep frees them) and without `run_swept` having been called
/// for them, so a collector that abandons a sweep must reset their mark bits
/// itself. Dropping such a set takes the allocator's class and heap locks,
/// so it must not happen inside a [`walk`](RunSlotsAllocator::walk).
pub struct SweepSet {
    alloc: Arc<RunSlotsAllocator>,
    /// The runs set apart, by address; those from `next` on are not swept yet.
    runs: Vec<Run>,
    next: usize,
}

// SAFETY: through `&SweepSet` only the runs' addresses are read (`len`,
// `contains`, `Debug`); their memory is touched only through `&mut SweepSet`
// (`sweep_detached`) or by dropping the set.
unsafe impl Sync for SweepSet {}

impl SweepSet {
    /// The number of runs not swept yet.
    pub fn len(&self) -> usize {
        self.runs.len() - self.next
    }

    /// Whether every run of the set has been swept (and given back).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `addr` lies in a run of the set that is not swept yet (its
    /// header, its slots or its tail). O(log n); the runs' memory is not read.
    pub fn contains(&self, addr: usize) -> bool {
        let run = addr & !(self.alloc.heap().run_size() - 1);
        self.runs[self.next..]
            .binary_search_by_key(&run, |r| r.base().addr().get())
            .is_ok()
    }
}

impl Drop for SweepSet {
    /// Gives the runs not swept yet back unswept (see
    /// [Dropping a set before the end](SweepSet#dropping-a-set-before-the-end)).
    fn drop(&mut self) {
        if self.is_empty() {
            return;
        }
        tracing::debug!(
            space = %self.alloc.space(),
            runs = self.len(),
            "runslots: sweep set dropped before the end; its runs go back unswept"
        );
        for &run in &self.runs[self.next..] {
            // SAFETY: the set owns the runs from `next` on and gives them up.
            unsafe { self.alloc.give_back(run) };
        }
    }
}

impl std::fmt::Debug for SweepSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SweepSet")
            .field("space", &self.alloc.space())
            .field("runs_left", &self.len())
            .field("runs_swept", &self.next)
            .finish()
    }
}

impl RunSlotsAllocator {
    /// Sets apart every run in use (every run holding at least one allocated
    /// slot) for a sweep that runs while mutators allocate, and returns them
    /// as a [`SweepSet`] for [`sweep_detached`](Self::sweep_detached).
    ///
    /// The runs leave the lists threads adopt runs from: until the sweep
    /// gives a run back, no thread allocates in it, so a collector's mark
    /// bits for it stay valid. Threads allocate in other runs meanwhile:
    /// free runs, new ones, runs already swept and given back. The runs are
    /// still in use: [`walk`](Self::walk),
    /// [`walk_live_overlapping`](Self::walk_live_overlapping),
    /// [`contains`](Self::contains), [`usable_size`](Self::usable_size) and
    /// [`stats`](Self::stats) see them as before, and any thread may
    /// [`free`](Self::free) their objects (directly or through a
    /// [`LocalRuns`](crate::LocalRuns)): such a free is a remote free, dead to
    /// walks at once, and the slot is taken back when the sweep gives the run
    /// back. [`sweep`](Self::sweep) and [`sweep_stopped`](Self::sweep_stopped)
    /// leave the runs to the set. Runs that another set still holds stay in
    /// that set.
    ///
    /// A collector calls this in the pause that ends marking, after flushing
    /// every mutator's handle, and hands the set to a background thread. The
    /// pause pays one visit of each run's header and one uncontended lock
    /// per run, and sorts the runs by address; it sweeps nothing.
    ///
    /// # Safety
    /// No thread owns a run of this allocator (every [`LocalRuns`] was
    /// [flushed](crate::LocalRuns::flush)), and no thread allocates from or
    /// frees into the allocator during the call (the caller's world is
    /// stopped).
    ///
    /// # Panics
    /// If a [`LocalRuns`] handle still owns a run (it was not flushed); the
    /// message names the run and the space, and nothing is set apart.
    ///
    /// [`LocalRuns`]: crate::LocalRuns
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
    /// use rtmem_runslots::RunSlotsAllocator;
    ///
    /// let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
    /// let slots = Arc::new(RunSlotsAllocator::new(pools, SpaceType::Object));
    /// let mut mutator = slots.local();
    /// let old: Vec<_> = (0..10_000).map(|_| mutator.alloc(32).unwrap()).collect();
    /// let marked = |addr: usize| addr % 3 == 0; // the collector's mark bits
    ///
    /// // In the pause: flush the mutators, set the runs apart.
    /// mutator.flush();
    /// // SAFETY: the only handle is flushed and nothing allocates meanwhile.
    /// let mut set = unsafe { slots.detach_for_sweep() };
    /// let young = mutator.alloc(32).unwrap();
    /// assert!(!set.contains(young.addr().get()), "never in a run not swept yet");
    ///
    /// // After it: another thread sweeps, two runs at a time, while the
    /// // mutator allocates.
    /// let swept = std::thread::scope(|s| {
    ///     let slots = &slots;
    ///     let sweeper = s.spawn(move || {
    ///         let mut objects = 0;
    ///         while !set.is_empty() {
    ///             let swept = slots.sweep_detached(
    ///                 &mut set,
    ///                 2,
    ///                 |p, _| marked(p.addr().get()),
    ///                 |_start, _len| { /* clear the run's mark bits */ },
    ///             );
    ///             objects += swept.objects;
    ///         }
    ///         objects
    ///     });
    ///     let more: Vec<_> = (0..1000).map(|_| mutator.alloc(32).unwrap()).collect();
    ///     sweeper.join().unwrap()
    /// });
    /// let dead = old.iter().filter(|p| !marked(p.addr().get())).count();
    /// assert_eq!(swept, dead);
    /// let mut walked = 0;
    /// slots.walk(|_, _| walked += 1);
    /// assert_eq!(walked, old.len() - dead + 1 + 1000);
    /// ```
    pub unsafe fn detach_for_sweep(self: &Arc<Self>) -> SweepSet {
        let (mut runs, mut owned) = (Vec::new(), None);
        let heap = self.heap().lock();
        heap.for_each_run(|run| match run.owner() {
            NO_OWNER => runs.push(run),
            SET_APART => {}
            owner => {
                owned.get_or_insert((run, owner));
            }
        });
        if let Some((run, owner)) = owned {
            drop(heap);
            panic!(
                "RunSlotsAllocator ({} space): detach_for_sweep found {run:?} owned by LocalRuns #{owner}; \
                 flush every LocalRuns handle before setting runs apart",
                self.space()
            );
        }
        // Under the heap lock too, so that no `sweep` sees a run half set apart.
        for &run in &runs {
            self.with_shared(run.geometry().class as usize, |shared| {
                // SAFETY: the run is unowned and we hold its class lock, which
                // holds the shared list it may be on; it leaves that list, and
                // the set owns it from now on.
                unsafe {
                    if run.list() == ListTag::Shared {
                        shared.remove(run);
                    }
                    run.adopt(SET_APART);
                }
            });
        }
        drop(heap);
        runs.sort_unstable_by_key(|run| run.base());
        tracing::debug!(space = %self.space(), runs = runs.len(), "runslots: runs set apart for a sweep");
        SweepSet {
            alloc: Arc::clone(self),
            runs,
            next: 0,
        }
    }

    /// Sweeps up to `max_runs` runs of `set` (lowest address first) while
    /// other threads allocate from and free into this allocator's other runs,
    /// and returns what was freed.
    ///
    /// Each run is swept as [`sweep_stopped`](Self::sweep_stopped) sweeps
    /// one: every live slot for which `is_live(start, slot size)` is false is
    /// freed, a bitmap word at a time, without its memory being touched. Then
    /// `run_swept(run start, run size)` is called (where a collector clears
    /// the run's mark bits), and only then is the run given back, with the
    /// slots freed into it meanwhile: listed for adoption if it has free
    /// slots, kept as a full run if not, or released to the heap if empty
    /// (and its pool to the pool manager if the pool empties and the spares
    /// are at their limit), as the other sweeps do. What was swept is
    /// recorded in the space's `MemStats` as [`sweep`](Self::sweep) does;
    /// objects freed explicitly while their run was set apart were recorded
    /// by their free and are not counted again.
    ///
    /// `max_runs` bounds the work of one call; 0 sweeps nothing.
    ///
    /// # Locks and callbacks
    ///
    /// No lock is held while a run is swept or while `is_live` and
    /// `run_swept` run: the run's class lock, and the heap lock if the run
    /// empties, are taken only to give back one run at a time, so a thread
    /// needing a new run never waits for more than one give-back. (So the
    /// callbacks may even allocate from this allocator.)
    ///
    /// `is_live` is passed the slots that were live when the sweep read the
    /// run's bitmaps. A thread may free one of them meanwhile, which makes
    /// its first word a link: so `is_live` should decide from side metadata
    /// such as a mark bitmap, not from the object's memory. It must call
    /// live every object a thread may still free (as for `sweep`, an object
    /// freed explicitly while the sweep frees it is freed twice, which is
    /// undefined behaviour). Neither callback may free objects of the set's
    /// runs.
    ///
    /// # Panics
    /// If `set` was set apart from another allocator; the message names both
    /// spaces.
    pub fn sweep_detached(
        &self,
        set: &mut SweepSet,
        max_runs: usize,
        mut is_live: impl FnMut(NonNull<u8>, usize) -> bool,
        mut run_swept: impl FnMut(usize, usize),
    ) -> Swept {
        assert!(
            std::ptr::eq(Arc::as_ptr(&set.alloc), self),
            "RunSlotsAllocator ({} space): sweep_detached of a SweepSet set apart from another allocator ({} space)",
            self.space(),
            set.alloc.space()
        );
        let run_size = self.heap().run_size();
        let end = set.runs.len().min(set.next.saturating_add(max_runs));
        let mut swept = Swept::default();
        while set.next < end {
            let run = set.runs[set.next];
            let slot_size = run.geometry().slot_size as usize;
            // SAFETY: the set owns the run (its owner is `SET_APART` since
            // `detach_for_sweep`) and `&mut set` makes this call its only
            // holder; other threads free into it only by its remote stack.
            // A slot `is_live` calls dead is the sweep's to free (no thread
            // frees it: `free`'s contract).
            let found = unsafe { run.sweep_held(|slot| is_live(slot, slot_size)) };
            swept.objects += found;
            swept.bytes += found * slot_size;
            run_swept(run.base().addr().get(), run_size);
            // Past the run before it goes, so that a panic later in the batch
            // does not give it back twice.
            set.next += 1;
            // SAFETY: the set owned the run and gives it up.
            unsafe { self.give_back(run) };
        }
        self.record_swept(swept);
        swept
    }

    /// Gives back a run set apart, as a `LocalRuns` flush gives back its
    /// runs: abandoned (taking back the frees on its stack), then listed for
    /// adoption, kept full, or released.
    ///
    /// # Safety
    /// The run is set apart (owned by a set, on no list) and the set gives it
    /// up.
    unsafe fn give_back(&self, run: Run) {
        let mut one = RunList::new(ListTag::None);
        // SAFETY: the run is owned by the set, which gives it up, and is on no
        // list: `abandon`'s contract.
        unsafe {
            one.push_back(run);
            self.abandon(run.geometry().class as usize, &mut one);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use rtmem_base::{PoolManagerConfig, SpaceType};

    use super::*;
    use crate::allocator::tests::{allocator, panic_message, walked};

    fn ptr(addr: usize) -> NonNull<u8> {
        NonNull::new(addr as *mut u8).unwrap()
    }

    /// Runs of `run_size` holding the addresses of `ptrs`.
    fn runs_of(ptrs: &[NonNull<u8>], run_size: usize) -> BTreeSet<usize> {
        ptrs.iter()
            .map(|p| p.addr().get() & !(run_size - 1))
            .collect()
    }

    #[test]
    fn frees_into_set_apart_runs_wait_for_the_give_back_and_lose_nothing() {
        let slots = allocator(PoolManagerConfig::default());
        slots.set_spare_limit(0);
        let layout = slots.run_layout(64).unwrap();
        let per_run = layout.slots;
        let mut a = slots.local();
        // Three runs of 64-byte slots: the first is freed whole while set
        // apart, the others in part.
        let old: Vec<_> = (0..3 * per_run).map(|_| a.alloc(64).unwrap()).collect();
        for p in &old {
            // SAFETY: live, 64 bytes.
            unsafe { p.as_ptr().write_bytes(0x5A, 64) };
        }
        a.flush();
        // SAFETY: the only handle is flushed; nothing else uses the allocator.
        let mut set = unsafe { slots.detach_for_sweep() };
        assert_eq!(set.len(), 3);
        assert!(old.iter().all(|p| set.contains(p.addr().get())));
        let (whole, rest) = old.split_at(per_run);
        // Explicit frees: the first run entirely (from this thread, through
        // the allocator and through a handle), and every 4th of the rest from
        // another thread.
        for (i, &p) in whole.iter().enumerate() {
            // SAFETY: live, freed once.
            unsafe { if i % 2 == 0 { slots.free(p) } else { a.free(p) } };
        }
        let freed_elsewhere: Vec<usize> = rest.iter().step_by(4).map(|p| p.addr().get()).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut b = slots.local();
                for &addr in &freed_elsewhere {
                    // SAFETY: live slots handed to this thread, freed once.
                    unsafe { b.free(ptr(addr)) };
                }
            });
        });
        let freed: BTreeSet<usize> = whole
            .iter()
            .map(|p| p.addr().get())
            .chain(freed_elsewhere.iter().copied())
            .collect();
        let walk = walked(&slots);
        assert!(
            freed.iter().all(|a| !walk.contains_key(a)),
            "an explicit free is dead at once"
        );
        assert_eq!(walk.len(), old.len() - freed.len());
        // The handle allocates elsewhere: its frees did not make it adopt a set-apart run.
        let young = a.alloc(64).unwrap();
        assert!(!set.contains(young.addr().get()));
        // The sweep never asks about explicitly freed slots, and kills every 3rd slot of the rest.
        let dies = |addr: usize| (addr / 64).is_multiple_of(3);
        let metadata = slots.stats().metadata;
        let mut asked = BTreeSet::new();
        let swept = slots.sweep_detached(
            &mut set,
            usize::MAX,
            |p, size| {
                assert_eq!(size, 64);
                assert!(asked.insert(p.addr().get()), "asked twice");
                !dies(p.addr().get())
            },
            |_, _| {},
        );
        let survivors: Vec<usize> = rest
            .iter()
            .map(|p| p.addr().get())
            .filter(|a| !freed.contains(a))
            .collect();
        assert_eq!(asked, survivors.iter().copied().collect());
        let dead = survivors.iter().filter(|&&a| dies(a)).count();
        assert_eq!((swept.objects, swept.bytes), (dead, 64 * dead));
        assert!(set.is_empty() && !set.contains(old[0].addr().get()));
        assert_eq!(
            slots.stats().metadata,
            metadata - layout.header_bytes as u64,
            "the run freed whole went back to the heap at its give-back"
        );
        let expected: BTreeMap<usize, usize> = survivors
            .iter()
            .filter(|&&a| !dies(a))
            .map(|&a| (a, 64))
            .chain([(young.addr().get(), 64)])
            .collect();
        assert_eq!(walked(&slots), expected);
        for &addr in expected.keys() {
            if addr != young.addr().get() {
                // SAFETY: a live slot written above.
                let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, 64) };
                assert!(bytes.iter().all(|&b| b == 0x5A), "{addr:#x} was touched");
            }
        }
        // Nothing is lost: once everything is freed, every pool goes back.
        for &addr in expected.keys() {
            // SAFETY: live, freed once.
            unsafe { a.free(ptr(addr)) };
        }
        drop(a);
        drop(set);
        let stats = slots.stats();
        assert_eq!((stats.live_objects(), stats.live_bytes()), (0, 0));
        assert_eq!(stats.objects_freed, old.len() as u64 + 1);
        assert_eq!(stats.metadata, 0);
        assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), 0);
    }

    #[test]
    fn no_thread_allocates_in_a_run_before_run_swept_returns() {
        let slots = allocator(PoolManagerConfig::default());
        let mut a = slots.local();
        let ptrs: Vec<_> = (0..100).map(|_| a.alloc(64).unwrap()).collect();
        a.flush();
        // SAFETY: flushed; nothing else uses the allocator.
        let mut set = unsafe { slots.detach_for_sweep() };
        let mut b = slots.local();
        let mut during = Vec::new();
        let swept = slots.sweep_detached(
            &mut set,
            1,
            |_, _| true,
            |start, len| {
                // The run (partial: it would be adopted at once) is not given back yet.
                let p = b.alloc(64).unwrap();
                assert!(!(start..start + len).contains(&p.addr().get()));
                during.push(p);
            },
        );
        assert_eq!((swept, during.len()), (Swept::default(), 1));
        // Given back once swept: the handle's next run is that one.
        b.flush();
        let after = b.alloc(64).unwrap();
        let run_size = slots.run_layout(64).unwrap().run_size;
        assert_eq!(
            after.addr().get() & !(run_size - 1),
            ptrs[0].addr().get() & !(run_size - 1)
        );
    }

    #[test]
    fn a_set_dropped_early_gives_its_runs_back_unswept() {
        let slots = allocator(PoolManagerConfig::default());
        let layout = slots.run_layout(128).unwrap();
        let mut a = slots.local();
        let old: Vec<_> = (0..3 * layout.slots - 5)
            .map(|_| a.alloc(128).unwrap())
            .collect();
        a.flush();
        // SAFETY: flushed; nothing else uses the allocator.
        let mut set = unsafe { slots.detach_for_sweep() };
        let mut swept_runs = Vec::new();
        let first = slots.sweep_detached(&mut set, 1, |_, _| false, |s, _| swept_runs.push(s));
        assert_eq!(first.objects, layout.slots, "one full run swept");
        assert_eq!(set.len(), 2);
        drop(set);
        assert_eq!(swept_runs.len(), 1, "run_swept only for the swept run");
        // Unswept: their objects are still allocated.
        assert_eq!(walked(&slots).len(), old.len() - layout.slots);
        // ... and their runs can be allocated in again: the last one has free slots.
        let last_run = old.last().unwrap().addr().get() & !(layout.run_size - 1);
        let mut b = slots.local();
        let p = b.alloc(128).unwrap();
        assert_eq!(p.addr().get() & !(layout.run_size - 1), last_run);
        // They are no longer set apart: a general sweep frees them.
        assert_eq!(slots.sweep(|q, _| q == p).objects, old.len() - layout.slots);
        // SAFETY: live.
        unsafe { b.free(p) };
        drop((a, b));
        assert_eq!(slots.stats().live_objects(), 0);
        assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), 0);
    }

    #[test]
    fn other_sweeps_leave_set_apart_runs_to_their_set_and_a_second_set_takes_the_others() {
        let slots = allocator(PoolManagerConfig::default());
        let run_size = slots.run_layout(8).unwrap().run_size;
        let mut a = slots.local();
        let first: Vec<_> = (0..1000).map(|_| a.alloc(24).unwrap()).collect();
        a.flush();
        // SAFETY: flushed; nothing else uses the allocator.
        let mut set = unsafe { slots.detach_for_sweep() };
        let second: Vec<_> = (0..1000).map(|_| a.alloc(24).unwrap()).collect();
        assert!(second.iter().all(|p| !set.contains(p.addr().get())));
        a.flush();
        // SAFETY: as above.
        let mut other = unsafe { slots.detach_for_sweep() };
        assert_eq!(other.len(), runs_of(&second, run_size).len());
        assert!(second.iter().all(|p| other.contains(p.addr().get())));
        assert!(first.iter().all(|p| !other.contains(p.addr().get())));
        // Neither sweep touches runs set apart.
        assert_eq!(slots.sweep(|_, _| false), Swept::default());
        // SAFETY: nothing else uses the allocator.
        let stopped = unsafe { slots.sweep_stopped(2, |_, _| false, |_, _| {}) };
        assert_eq!(stopped, Swept::default());
        assert_eq!(walked(&slots).len(), 2000);
        let swept = slots.sweep_detached(&mut other, usize::MAX, |_, _| false, |_, _| {});
        assert_eq!(swept.objects, 1000);
        let swept = slots.sweep_detached(&mut set, usize::MAX, |_, _| false, |_, _| {});
        assert_eq!((swept.objects, swept.bytes), (1000, 24_000));
        assert!(walked(&slots).is_empty());
        drop(a);
        assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), 0);
    }

    #[test]
    fn detaching_with_a_handle_not_flushed_panics_and_sets_nothing_apart() {
        let slots = allocator(PoolManagerConfig::default());
        let mut flushed = slots.local();
        let mut owner = slots.local();
        let p = flushed.alloc(16).unwrap();
        let big = flushed.alloc(200).unwrap();
        flushed.flush();
        // `owner` adopts the run of `p`; the run of `big` stays unowned.
        let q = owner.alloc(16).unwrap();
        let msg = panic_message(|| {
            // SAFETY: deliberately breaks the contract, which is checked first.
            drop(unsafe { slots.detach_for_sweep() });
        });
        assert!(
            msg.contains("runtime-internal space")
                && msg.contains("owned by LocalRuns")
                && msg.contains("flush every LocalRuns"),
            "{msg}"
        );
        // The unowned run was not set apart: a handle adopts it.
        let again = flushed.alloc(200).unwrap();
        assert_eq!(
            again.addr().get() & !(slots.run_layout(200).unwrap().run_size - 1),
            big.addr().get() & !(slots.run_layout(200).unwrap().run_size - 1)
        );
        flushed.flush();
        owner.flush();
        // SAFETY: both flushed now.
        let set = unsafe { slots.detach_for_sweep() };
        assert!(set.contains(p.addr().get()) && set.contains(q.addr().get()));
        assert!(set.contains(big.addr().get()));
        assert_eq!(
            set.len(),
            2,
            "p and q share the run the first handle gave up"
        );
    }

    #[test]
    fn a_set_of_another_allocator_is_refused() {
        let slots = allocator(PoolManagerConfig::default());
        let other = allocator(PoolManagerConfig::default());
        let mut local = other.local();
        let p = local.alloc(8).unwrap();
        local.flush();
        // SAFETY: flushed; nothing else uses `other`.
        let mut set = unsafe { other.detach_for_sweep() };
        let msg = panic_message(|| {
            slots.sweep_detached(&mut set, 1, |_, _| false, |_, _| {});
        });
        assert!(msg.contains("another allocator"), "{msg}");
        assert_eq!(set.len(), 1, "nothing swept");
        assert_eq!(
            walked(&other).keys().copied().collect::<Vec<_>>(),
            [p.addr().get()]
        );
    }

    #[test]
    fn a_set_moves_between_threads_and_answers_from_shared_references() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<SweepSet>();
    }
}
