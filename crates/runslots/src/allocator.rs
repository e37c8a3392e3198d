//! The allocator shared by all threads: size classes, the runs no thread
//! owns, frees from any thread, walking and sweeping.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use crossbeam_utils::CachePadded;
use rtmem_base::{PoolManager, SpaceStats, SpaceType};

use crate::class::{CLASS_SIZES, MAX_SIZE, NUM_CLASSES, class_of};
use crate::heap::{Heap, HeapGuard, MAX_RUN_SIZE};
use crate::list::{ListTag, RunList};
use crate::local::LocalRuns;
use crate::run::{Fill, Geometry, NO_OWNER, Remote, Run, SET_APART};
use crate::sync::Mutex;

/// The most bitmap words a run can have.
const MAX_WORDS: usize = MAX_RUN_SIZE / 8 / 64;

/// The default most bytes of spare pools kept: 32 MiB, and at most an eighth
/// of the space's limit so that spares never starve the space's other allocators.
const DEFAULT_SPARE_BYTES: usize = 32 << 20;

/// A run-of-slots allocator for objects of 1 to 256 bytes, shared by all
/// threads (`Send + Sync`).
///
/// Allocation goes through a per-thread [`LocalRuns`] handle
/// ([`local`](Self::local)); [`free`](Self::free) works from any thread
/// without one. [`walk`](Self::walk), [`sweep`](Self::sweep) and
/// [`contains`](Self::contains) serve a collector, and
/// [`detach_for_sweep`](Self::detach_for_sweep) with
/// [`sweep_detached`](Self::sweep_detached) a collector that sweeps while
/// mutators allocate.
///
/// # Memory
///
/// A run that becomes empty goes back to the allocator's heap at once, to be
/// reused by any size class. A pool whose runs are all free is kept as a
/// *spare* while the spares are under the [spare limit](Self::set_spare_limit)
/// (by default 32 MiB, at most an eighth of the space's limit) and goes back
/// to the [`PoolManager`] otherwise. Spares go back on [`trim`](Self::trim),
/// when the last [`LocalRuns`] handle is dropped, and when the allocator is.
/// A spare limit of 0 gives every empty pool back at once.
///
/// Dropping the allocator (which happens after every `LocalRuns` is dropped,
/// since each holds an `Arc` of it) gives every pool back and reports what was
/// still allocated as freed.
pub struct RunSlotsAllocator {
    heap: Heap,
    /// Live `LocalRuns` handles; when the last goes, the spares go too.
    handles: AtomicUsize,
    geometry: [Geometry; NUM_CLASSES],
    /// Per size class: the unowned runs and the hints that spare a refill
    /// from taking the class lock or reading cold run headers.
    shared: [CachePadded<SharedClass>; NUM_CLASSES],
}

/// What the threads share about one size class.
struct SharedClass {
    /// The unowned runs with free slots. The lock also serializes frees into
    /// unowned runs of the class and adopting or abandoning them.
    runs: Mutex<RunList>,
    /// `runs.len()`, readable without the lock (a hint: it may be stale).
    len: AtomicUsize,
    /// Bumped after a remote free makes some run's stack non-empty, so that
    /// owners look at their parked full runs only after remote frees happened.
    remote_frees: AtomicUsize,
}

pub use rtmem_base::Swept;

/// How runs of one size class are laid out (see [`RunSlotsAllocator::run_layout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLayout {
    /// The size of a run in bytes.
    pub run_size: usize,
    /// The slot size.
    pub slot_size: usize,
    /// Slots per run.
    pub slots: usize,
    /// Metadata per run: the header and both bitmaps, padded to the first slot.
    pub header_bytes: usize,
    /// Bytes at the end of a run too small for another slot.
    pub tail_bytes: usize,
}

impl RunSlotsAllocator {
    /// The largest request served, in bytes.
    pub const MAX_SIZE: usize = MAX_SIZE;

    /// An allocator taking pools for `space` from `pools`. Runs are 64 KiB,
    /// or the pool size if pools are smaller. No memory is taken until the
    /// first allocation.
    pub fn new(pools: Arc<PoolManager>, space: SpaceType) -> RunSlotsAllocator {
        let spare_bytes = DEFAULT_SPARE_BYTES.min(pools.limit(space) / 8);
        let heap = Heap::new(pools, space, spare_bytes);
        let run_size = heap.run_size();
        RunSlotsAllocator {
            handles: AtomicUsize::new(0),
            geometry: std::array::from_fn(|class| {
                Geometry::new(class, CLASS_SIZES[class], run_size)
            }),
            shared: std::array::from_fn(|_| {
                CachePadded::new(SharedClass {
                    runs: Mutex::new(RunList::new(ListTag::Shared)),
                    len: AtomicUsize::new(0),
                    remote_frees: AtomicUsize::new(0),
                })
            }),
            heap,
        }
    }

    /// The slot size serving a request of `size` bytes, or `None` if `size` is
    /// 0 or above [`MAX_SIZE`](Self::MAX_SIZE). Slot sizes are multiples of 8;
    /// the waste is at most 7 bytes up to 128 and 15 bytes above.
    pub fn size_class(size: usize) -> Option<usize> {
        class_of(size).map(|class| CLASS_SIZES[class])
    }

    /// The alignment every slot of `slot_size` bytes has: the largest power
    /// of two dividing `slot_size`, up to 64. So every slot is 8-aligned, and
    /// a slot whose size is a multiple of 16 is 16-aligned.
    pub fn slot_align(slot_size: usize) -> usize {
        1 << slot_size
            .trailing_zeros()
            .min(crate::run::DATA_ALIGN.trailing_zeros())
    }

    /// How the runs serving `size` are laid out, or `None` if `size` is not served.
    pub fn run_layout(&self, size: usize) -> Option<RunLayout> {
        let geo = self.geometry[class_of(size)?];
        let (slot_size, slots) = (geo.slot_size as usize, geo.slots as usize);
        let header_bytes = geo.data_offset as usize;
        let run_size = self.heap.run_size();
        Some(RunLayout {
            run_size,
            slot_size,
            slots,
            header_bytes,
            tail_bytes: run_size - header_bytes - slots * slot_size,
        })
    }

    /// A handle for one thread to allocate with: it owns a current run per
    /// size class and allocates from it with no lock and no atomic
    /// read-modify-write. The handle holds an `Arc` of the allocator.
    pub fn local(self: &Arc<Self>) -> LocalRuns {
        self.handles.fetch_add(1, AcqRel);
        LocalRuns::new(Arc::clone(self))
    }

    /// Gives every spare pool back to the pool manager (see [Memory](#memory)).
    /// A collector calls this after a sweep to shrink the heap.
    pub fn trim(&self) {
        self.heap.lock().trim();
    }

    /// Sets the most bytes of spare pools kept (rounded down to whole pools),
    /// giving back any spares above it now. 0 gives every empty pool back at once.
    pub fn set_spare_limit(&self, bytes: usize) {
        self.heap
            .lock()
            .set_spare_limit(bytes / self.heap.pools().pool_size());
    }

    /// The most bytes of spare pools kept.
    pub fn spare_limit(&self) -> usize {
        self.heap.lock().spare_limit() * self.heap.pools().pool_size()
    }

    /// Frees a slot, from any thread.
    ///
    /// A slot in a run some thread owns, or in a run
    /// [set apart](Self::detach_for_sweep) for a sweep, goes onto that run's
    /// remote-free stack (one compare-and-swap); a slot in an unowned run is
    /// freed under its size class's lock. Frees through a [`LocalRuns`] are
    /// faster when the slot is in one of that handle's runs.
    ///
    /// # Safety
    /// `ptr` was returned by an allocation of this allocator and is live: not
    /// freed (or swept) since, and no sweep running meanwhile calls it dead.
    /// It is not used after this call.
    ///
    /// # Panics
    /// In debug builds, if `ptr` is not a live slot of this allocator (a
    /// double free, an interior or a foreign pointer); the message names the
    /// address and the allocator's space.
    pub unsafe fn free(&self, ptr: NonNull<u8>) {
        #[cfg(debug_assertions)]
        self.check_live(ptr, "free");
        // SAFETY: the caller passes a live slot of this allocator.
        let run = unsafe { Run::from_slot(ptr, self.heap.run_size()) };
        let slot_size = run.geometry().slot_size as usize;
        // SAFETY: as above; the caller gives the slot up.
        unsafe { self.free_in(run, ptr) };
        self.heap
            .pools()
            .stats()
            .record_free(self.heap.space(), slot_size, 1);
    }

    /// The usable size of a slot: its slot size, at least the size requested.
    ///
    /// # Safety
    /// `ptr` is a live slot of this allocator.
    ///
    /// # Panics
    /// In debug builds, as [`free`](Self::free) does.
    pub unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        #[cfg(debug_assertions)]
        self.check_live(ptr, "usable_size");
        // SAFETY: the caller passes a live slot of this allocator.
        unsafe { Run::from_slot(ptr, self.heap.run_size()) }
            .geometry()
            .slot_size as usize
    }

    /// Calls `f(start, slot size)` for every live slot, read from the runs'
    /// live bitmaps (a freed slot is never visited, even when its owner has not
    /// collected it yet).
    ///
    /// The walk holds the allocator's heap lock: `f` must not allocate from or
    /// free into this allocator (it would deadlock). Slots allocated or freed by
    /// other threads during the walk may or may not be visited; for an exact
    /// picture, walk while mutators are stopped.
    pub fn walk(&self, mut f: impl FnMut(NonNull<u8>, usize)) {
        let heap = self.heap.lock();
        heap.for_each_run(|run| {
            let slot_size = run.geometry().slot_size as usize;
            run.for_each_live(|index| f(run.slot(index), slot_size));
        });
    }

    /// Calls `f(start, slot size)` once for every live slot that overlaps
    /// one of the byte ranges `ranges` reports. For each pool, `ranges(start,
    /// end, out)` is called with the part runs were carved from and pushes
    /// onto `out` (empty on entry) the ranges of interest inside it, sorted
    /// and disjoint. Only the runs those ranges touch are read, so a
    /// generational collector finds the objects on dirty cards in time
    /// proportional to the dirty cards, not to the heap.
    ///
    /// Holds the heap lock like [`walk`](Self::walk): neither closure may
    /// allocate from or free into this allocator.
    pub fn walk_live_overlapping(
        &self,
        mut ranges: impl FnMut(usize, usize, &mut Vec<(usize, usize)>),
        mut f: impl FnMut(NonNull<u8>, usize),
    ) {
        let heap = self.heap.lock();
        let run_size = self.heap.run_size();
        let mut found = Vec::new();
        heap.for_each_carved(|start, end, run_at| {
            found.clear();
            ranges(start, end, &mut found);
            // Slots before `next` were reported already (a slot may overlap
            // two ranges).
            let mut next = 0;
            for &(lo, hi) in &found {
                debug_assert!(
                    start <= lo && lo <= hi && hi <= end,
                    "range outside the pool"
                );
                let mut at = lo.max(next);
                while at < hi {
                    let run_end = (at & !(run_size - 1)) + run_size;
                    if let Some(run) = run_at(at) {
                        let slot_size = run.geometry().slot_size as usize;
                        let slots = run.slots_overlapping(at, hi.min(run_end));
                        run.for_each_live_in(slots.start, slots.end, |index| {
                            let slot = run.slot(index);
                            next = slot.as_ptr() as usize + slot_size;
                            f(slot, slot_size);
                        });
                    }
                    at = run_end.max(next);
                }
            }
        });
    }

    /// Frees every live slot for which `is_live(start, slot size)` is false,
    /// and returns what was freed. Runs that become empty go back to the heap,
    /// pools that become empty to the pool manager.
    ///
    /// Slots in runs a thread owns are freed as remote frees (the owner
    /// collects them later), so sweeping may run while mutators allocate,
    /// provided `is_live` answers true for every object that is allocated
    /// meanwhile (allocate-black). Explicit frees of the same objects during a
    /// sweep are a logic error. `is_live` runs under the heap lock and must not
    /// call into this allocator.
    ///
    /// Runs [set apart](Self::detach_for_sweep) for a sweep are left to
    /// [`sweep_detached`](Self::sweep_detached).
    pub fn sweep(&self, mut is_live: impl FnMut(NonNull<u8>, usize) -> bool) -> Swept {
        let mut swept = Swept::default();
        let mut empty = Vec::new();
        let mut heap = self.heap.lock();
        Self::for_each_run_to_sweep(&heap, |run| {
            self.sweep_run(run, &mut is_live, &mut swept, &mut empty)
        });
        for run in empty {
            // SAFETY: the run is empty, unowned and unlisted: ours to release.
            unsafe { heap.release(run) };
        }
        drop(heap);
        self.record_swept(swept);
        swept
    }

    /// [`sweep`](Self::sweep) for a stopped world, on up to `threads`
    /// threads: the same result, without an atomic read-modify-write per
    /// object. Each run no thread owns (a collector
    /// [flushes](LocalRuns::flush) the mutators' handles first) is swept in
    /// place a bitmap word at a time and relisted once; runs a thread still
    /// owns are swept as `sweep` does. After a run is swept,
    /// `run_swept(start, len)` is called with its address range: where a
    /// collector clears the run's mark bits in bulk, rather than one atomic
    /// operation per live object in `is_live`.
    ///
    /// Runs [set apart](Self::detach_for_sweep) for a sweep are left to
    /// [`sweep_detached`](Self::sweep_detached).
    ///
    /// # Safety
    /// No thread allocates from or frees into this allocator during the call
    /// (in a collector: every mutator is stopped, and no `sweep_detached`
    /// runs), and `is_live` and `run_swept` do not call into it.
    pub unsafe fn sweep_stopped(
        &self,
        threads: usize,
        is_live: impl Fn(NonNull<u8>, usize) -> bool + Sync,
        run_swept: impl Fn(usize, usize) + Sync,
    ) -> Swept {
        let mut runs = Vec::new();
        Self::for_each_run_to_sweep(&self.heap.lock(), |run| runs.push(run));
        // The heap lock guards carving and releasing runs, which nobody does
        // until we return (the caller's contract): the runs may be swept
        // without it, in parallel.
        let sweep_part = |part: &[Run]| {
            let (mut swept, mut empty) = (Swept::default(), Vec::new());
            let mut is_live = &is_live;
            for &run in part {
                let start = run.base().as_ptr() as usize;
                self.sweep_run_stopped(run, &mut is_live, &mut swept, &mut empty);
                run_swept(start, self.heap.run_size());
            }
            (swept, empty)
        };
        const MIN_RUNS_PER_THREAD: usize = 16;
        let threads = threads.clamp(1, runs.len().div_ceil(MIN_RUNS_PER_THREAD).max(1));
        let (mut swept, mut empty) = (Swept::default(), Vec::new());
        if threads == 1 {
            (swept, empty) = sweep_part(&runs);
        } else {
            std::thread::scope(|scope| {
                let chunk = runs.len().div_ceil(threads);
                let sweep_part = &sweep_part;
                let helpers: Vec<_> = runs[chunk..]
                    .chunks(chunk)
                    .map(|part| {
                        // Moved, not shared: `Run` is `Send` but not `Sync`.
                        let part = part.to_vec();
                        scope.spawn(move || sweep_part(&part))
                    })
                    .collect();
                (swept, empty) = sweep_part(&runs[..chunk]);
                for helper in helpers {
                    let (s, e) = helper.join().expect("a sweeping thread panicked");
                    swept += s;
                    empty.extend(e);
                }
            });
        }
        if !empty.is_empty() {
            let mut heap = self.heap.lock();
            for run in empty {
                // SAFETY: the run is empty, unowned and unlisted: ours to release.
                unsafe { heap.release(run) };
            }
        }
        self.record_swept(swept);
        swept
    }

    /// Calls `f` with every run in use that is not set apart for a sweep
    /// (those are their `SweepSet`'s to sweep).
    fn for_each_run_to_sweep(heap: &HeapGuard<'_>, mut f: impl FnMut(Run)) {
        heap.for_each_run(|run| {
            if run.owner() != SET_APART {
                f(run)
            }
        });
    }

    /// Sweeps one run for `sweep_stopped`: in place if no thread owns it.
    fn sweep_run_stopped(
        &self,
        run: Run,
        is_live: &mut impl FnMut(NonNull<u8>, usize) -> bool,
        swept: &mut Swept,
        empty: &mut Vec<Run>,
    ) {
        if run.owner() != NO_OWNER {
            return self.sweep_run(run, is_live, swept, empty);
        }
        let geo = run.geometry();
        let slot_size = geo.slot_size as usize;
        // SAFETY: the run is unowned and nothing else touches the allocator
        // (the caller's contract), so we hold it.
        let found = unsafe { run.sweep_held(|slot| is_live(slot, slot_size)) };
        if found == 0 {
            return;
        }
        swept.objects += found;
        swept.bytes += found * slot_size;
        // SAFETY: unowned, and its class lock is held inside.
        let release = self.with_shared(geo.class as usize, |shared| unsafe {
            Self::relist(run, run.fill(), shared)
        });
        if release {
            empty.push(run);
        }
    }

    /// Sweeps one run that a thread may own, by the remote-free protocol;
    /// a run left empty and unowned goes on `empty`.
    fn sweep_run(
        &self,
        run: Run,
        is_live: &mut impl FnMut(NonNull<u8>, usize) -> bool,
        swept: &mut Swept,
        empty: &mut Vec<Run>,
    ) {
        let geo = run.geometry();
        let slot_size = geo.slot_size as usize;
        let mut dead = [0u64; MAX_WORDS];
        let mut found = 0;
        run.for_each_live(|index| {
            if !is_live(run.slot(index), slot_size) {
                dead[index / 64] |= 1 << (index % 64);
                found += 1;
            }
        });
        if found == 0 {
            return;
        }
        swept.objects += found;
        swept.bytes += found * slot_size;
        if self.free_dead(run, &dead[..geo.words as usize]) {
            empty.push(run);
        }
    }

    /// Reports a sweep's frees to `MemStats`.
    pub(crate) fn record_swept(&self, swept: Swept) {
        if swept.objects > 0 {
            self.heap
                .pools()
                .stats()
                .record_free(self.heap.space(), swept.bytes, swept.objects);
        }
    }

    /// Frees the `dead` slots (a bitmap) of a run that may be owned, by the
    /// remote-free protocol; returns whether the run is now empty, unowned
    /// and unlisted (to be released).
    fn free_dead(&self, run: Run, dead: &[u64]) -> bool {
        let class = run.geometry().class as usize;
        let (release, hint) = self.with_shared(class, |shared| {
            let (mut fill, mut hint) = (None, false);
            for (word, &bits) in dead.iter().enumerate() {
                let mut bits = bits;
                while bits != 0 {
                    let slot = run.slot(word * 64 + bits.trailing_zeros() as usize);
                    bits &= bits - 1;
                    // SAFETY: the slot is live (its bits say so and only
                    // `free` could change that, which must not race with
                    // a sweep of the same object) and dead to the collector.
                    match unsafe { run.free_remote(slot) } {
                        Remote::Pushed { first } => hint |= first,
                        // SAFETY: as above, and we hold the class lock (so
                        // the run stays unowned for the whole loop).
                        Remote::Unowned => fill = unsafe { run.free_unowned(slot) },
                    }
                }
            }
            // SAFETY: `fill` is set only for an unowned run, and we hold its lock.
            let release = fill.is_some_and(|fill| unsafe { Self::relist(run, fill, shared) });
            (release, hint)
        });
        if hint {
            self.shared[class].remote_frees.fetch_add(1, Release);
        }
        release
    }

    /// Whether `addr` lies in memory this allocator holds (one of its pools).
    /// Takes the heap lock; O(pools held).
    pub fn contains(&self, addr: usize) -> bool {
        self.heap.lock().holds(addr)
    }

    /// The space this allocator takes pools for.
    pub fn space(&self) -> SpaceType {
        self.heap.space()
    }

    /// The pool manager.
    pub fn pools(&self) -> &Arc<PoolManager> {
        self.heap.pools()
    }

    /// The statistics of this allocator's space (shared with any other
    /// allocator of the space). Counts batched in live [`LocalRuns`] handles
    /// are reported when they switch runs or flush.
    pub fn stats(&self) -> SpaceStats {
        self.heap.pools().stats().space(self.heap.space())
    }

    // ---- crate-internal: used by `LocalRuns` and `SweepSet` ----

    pub(crate) fn heap(&self) -> &Heap {
        &self.heap
    }

    /// Called by a `LocalRuns` handle when it is dropped (after its flush):
    /// the last handle takes the spares with it.
    pub(crate) fn handle_dropped(&self) {
        if self.handles.fetch_sub(1, AcqRel) == 1 {
            self.trim();
        }
    }

    pub(crate) fn geometry(&self, class: usize) -> Geometry {
        self.geometry[class]
    }

    /// Frees a live slot of `run` that the caller does not hold the run of.
    ///
    /// # Safety
    /// `ptr` is a live slot of `run`, given up by the caller.
    pub(crate) unsafe fn free_in(&self, run: Run, ptr: NonNull<u8>) {
        let class = run.geometry().class as usize;
        // SAFETY: forwarded.
        match unsafe { run.free_remote(ptr) } {
            // After the push the run may be gone: only the allocator is touched.
            Remote::Pushed { first: true } => {
                self.shared[class].remote_frees.fetch_add(1, Release);
            }
            Remote::Pushed { first: false } => {}
            // SAFETY: forwarded; `free_remote` said the run was unowned.
            Remote::Unowned => unsafe { self.free_unowned(class, run, ptr) },
        }
    }

    /// The slow half of a free into an unowned run: under the class lock.
    ///
    /// # Safety
    /// As for [`Run::free_unowned`], minus the lock, which this takes.
    #[cold]
    #[inline(never)]
    unsafe fn free_unowned(&self, class: usize, run: Run, ptr: NonNull<u8>) {
        let release = self.with_shared(class, |shared| {
            // SAFETY: forwarded, with the class lock held; then the run is
            // unowned under its lock, as `relist` requires.
            unsafe {
                run.free_unowned(ptr)
                    .is_some_and(|fill| Self::relist(run, fill, shared))
            }
        });
        if release {
            // SAFETY: the run is empty, unowned and unlisted: ours to release.
            unsafe { self.heap.lock().release(run) };
        }
    }

    /// Takes an unowned run with free slots of `class` for `owner`, if any.
    pub(crate) fn adopt(&self, class: usize, owner: u64) -> Option<Run> {
        if self.shared[class].len.load(Relaxed) == 0 {
            return None;
        }
        self.with_shared(class, |shared| {
            // SAFETY: we hold the class lock, which holds the shared runs.
            let run = unsafe { shared.pop_front() }?;
            // SAFETY: the run is unowned (it was shared) and we hold its lock.
            unsafe { run.adopt(owner) };
            Some(run)
        })
    }

    /// How many times a remote free made a run of `class` have pending frees
    /// (Acquire: the pushes counted are visible to the caller's reads).
    pub(crate) fn remote_frees(&self, class: usize) -> usize {
        self.shared[class].remote_frees.load(Acquire)
    }

    /// Runs `f` on the shared runs of `class` under the class lock, keeping
    /// the lock-free length hint exact.
    pub(crate) fn with_shared<R>(&self, class: usize, f: impl FnOnce(&mut RunList) -> R) -> R {
        let shared = &self.shared[class];
        let mut runs = shared.runs.lock();
        let result = f(&mut runs);
        shared.len.store(runs.len(), Relaxed);
        result
    }

    /// Abandons every run on `runs` (all of `class`, owned by the caller):
    /// runs with free slots become shared, empty runs go back to the heap.
    ///
    /// # Safety
    /// The caller owns every run on `runs` and gives them up.
    pub(crate) unsafe fn abandon(&self, class: usize, runs: &mut RunList) {
        let mut empty = RunList::new(ListTag::None);
        self.with_shared(class, |shared| {
            // SAFETY: the caller owns the runs on `runs`.
            while let Some(run) = unsafe { runs.pop_front() } {
                // SAFETY: we own the run and hold its class lock, as `abandon`
                // requires; afterwards it is unowned under that lock, as
                // `relist` requires, and an empty run is on no list and ours.
                unsafe {
                    let fill = run.abandon();
                    if Self::relist(run, fill, shared) {
                        empty.push_back(run);
                    }
                }
            }
        });
        if empty.len() > 0 {
            let mut heap = self.heap.lock();
            // SAFETY: each run on `empty` is empty, unowned, ours and on no other list.
            while let Some(run) = unsafe { empty.pop_front() } {
                // SAFETY: as above: the run is ours to give back.
                unsafe { heap.release(run) };
            }
        }
    }

    /// Puts an unowned run on or off its class's shared list after a change of
    /// fill; returns whether it is empty and must be released (it is then on
    /// no list).
    ///
    /// # Safety
    /// The run is unowned and `shared` is its class's list, locked.
    unsafe fn relist(run: Run, fill: Fill, shared: &mut RunList) -> bool {
        // SAFETY: by the contract we hold the run and the list.
        unsafe {
            let listed = run.list() == ListTag::Shared;
            match fill {
                Fill::Empty => {
                    if listed {
                        shared.remove(run);
                    }
                    true
                }
                Fill::Partial => {
                    if !listed {
                        shared.push_back(run);
                    }
                    false
                }
                Fill::Full => false,
            }
        }
    }

    /// Panics unless `ptr` is a live slot of this allocator (debug builds).
    #[cfg(debug_assertions)]
    #[track_caller]
    pub(crate) fn check_live(&self, ptr: NonNull<u8>, operation: &str) {
        let addr = ptr.addr().get();
        let space = self.heap.space();
        let heap = self.heap.lock();
        let Some(run) = heap.run_containing(addr) else {
            panic!(
                "RunSlotsAllocator ({space} space): {operation} of {addr:#x}, which is not in a run of this \
                 allocator (foreign pointer)"
            );
        };
        let Some(index) = run.index_of(ptr) else {
            panic!(
                "RunSlotsAllocator ({space} space): {operation} of {addr:#x}, which is not the start of a slot \
                 (interior or foreign pointer)"
            );
        };
        assert!(
            run.is_live(index),
            "RunSlotsAllocator ({space} space): {operation} of {addr:#x}, a slot that is not allocated (double free \
             or use after free)"
        );
    }
}

impl Drop for RunSlotsAllocator {
    fn drop(&mut self) {
        let (mut bytes, mut objects) = (0, 0);
        self.heap.lock().for_each_run(|run| {
            let slot_size = run.geometry().slot_size as usize;
            run.for_each_live(|_| {
                bytes += slot_size;
                objects += 1;
            });
        });
        if objects > 0 {
            tracing::debug!(space = %self.heap.space(), objects, bytes, "runslots: dropped with live objects");
            self.heap
                .pools()
                .stats()
                .record_free(self.heap.space(), bytes, objects);
        }
        // The heap gives the pools back when it drops.
    }
}

impl std::fmt::Debug for RunSlotsAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSlotsAllocator")
            .field("space", &self.heap.space())
            .field("run_size", &self.heap.run_size())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use rtmem_base::{AllocError, PoolManagerConfig};

    use super::*;

    /// An allocator for the runtime-internal space over its own pool manager.
    pub(crate) fn allocator(config: PoolManagerConfig) -> Arc<RunSlotsAllocator> {
        let pools = Arc::new(PoolManager::new(config).unwrap());
        Arc::new(RunSlotsAllocator::new(pools, SpaceType::RuntimeInternal))
    }

    /// Every live slot, as the walk sees it.
    pub(crate) fn walked(slots: &RunSlotsAllocator) -> BTreeMap<usize, usize> {
        let mut live = BTreeMap::new();
        slots.walk(|ptr, size| {
            assert!(
                live.insert(ptr.addr().get(), size).is_none(),
                "visited twice"
            )
        });
        live
    }

    #[test]
    fn any_thread_may_free_and_the_walk_sees_only_live_slots() {
        let slots = allocator(PoolManagerConfig::default());
        let mut local = slots.local();
        let ptrs: Vec<_> = (1..=40)
            .map(|i| (local.alloc(i * 6).unwrap(), i * 6))
            .collect();
        let (gone, kept) = ptrs.split_at(25);
        let gone: Vec<usize> = gone.iter().map(|(p, _)| p.addr().get()).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                for &addr in &gone {
                    let ptr = NonNull::new(addr as *mut u8).unwrap();
                    // SAFETY: live slots handed over to this thread.
                    unsafe { slots.free(ptr) };
                }
            });
        });
        let expected: BTreeMap<usize, usize> = kept
            .iter()
            .map(|&(p, size)| (p.addr().get(), RunSlotsAllocator::size_class(size).unwrap()))
            .collect();
        assert_eq!(
            walked(&slots),
            expected,
            "remote frees are dead before the owner collects them"
        );
        for &(p, size) in kept {
            // SAFETY: live.
            let usable = unsafe { slots.usable_size(p) };
            assert_eq!(usable, RunSlotsAllocator::size_class(size).unwrap());
            assert!(slots.contains(p.addr().get()));
            // SAFETY: live, freed once.
            unsafe { local.free(p) };
        }
        assert!(walked(&slots).is_empty());
        drop(local);
        let stats = slots.stats();
        assert_eq!((stats.objects_allocated, stats.objects_freed), (40, 40));
        assert_eq!(stats.live_bytes(), 0);
        assert_eq!(
            slots.pools().used(SpaceType::RuntimeInternal),
            0,
            "the last handle takes the spares"
        );
    }

    /// The slots of `walked` whose address `keep` keeps.
    fn kept(
        walked: &BTreeMap<usize, usize>,
        keep: impl Fn(usize) -> bool,
    ) -> BTreeMap<usize, usize> {
        walked
            .iter()
            .filter(|&(&a, _)| keep(a))
            .map(|(&a, &s)| (a, s))
            .collect()
    }

    #[test]
    fn sweep_frees_the_dead_in_owned_and_unowned_runs() {
        let slots = allocator(PoolManagerConfig::default());
        let per_run = slots.run_layout(256).unwrap().slots;
        // `a`'s runs become unowned when it is dropped; `b` keeps its own,
        // which it fills (two full runs of 256-byte slots).
        let mut a = slots.local();
        let mut b = slots.local();
        let from_a: Vec<_> = (0..300).map(|i| a.alloc(16 + i % 200).unwrap()).collect();
        let from_b: Vec<_> = (0..2 * per_run).map(|_| b.alloc(256).unwrap()).collect();
        drop(a);
        let keep = |addr: usize| addr.is_multiple_of(3);
        let before = walked(&slots);
        let survivors = kept(&before, keep);
        let dead_bytes: usize = before
            .iter()
            .filter(|&(&a, _)| !keep(a))
            .map(|(_, size)| size)
            .sum();
        let swept = slots.sweep(|p, _| keep(p.addr().get()));
        assert_eq!(swept.objects, from_a.len() + from_b.len() - survivors.len());
        assert_eq!(swept.bytes, dead_bytes);
        assert_eq!(walked(&slots), survivors);
        assert_eq!(
            slots.sweep(|_, _| true),
            Swept::default(),
            "nothing left to sweep"
        );
        // `b` collects the slots swept out of its full runs and reuses them
        // before taking any new run.
        let used = slots.pools().used(SpaceType::RuntimeInternal);
        let dead_of_b = from_b.iter().filter(|p| !keep(p.addr().get())).count();
        let again: Vec<_> = (0..dead_of_b).map(|_| b.alloc(256).unwrap()).collect();
        assert!(
            again
                .iter()
                .all(|p| !keep(p.addr().get()) && from_b.contains(p)),
            "swept slots come back"
        );
        assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), used);
        let everything = slots.sweep(|_, _| false);
        assert_eq!(everything.objects, survivors.len() + again.len());
        assert!(walked(&slots).is_empty());
        drop(b);
        let stats = slots.stats();
        assert_eq!((stats.live_objects(), stats.live_bytes()), (0, 0));
        assert_eq!(stats.metadata, 0, "every run went back");
        assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), 0);
    }

    #[test]
    fn a_stopped_sweep_matches_the_general_one_on_any_thread_count() {
        for threads in [1, 2, 3] {
            let slots = allocator(PoolManagerConfig::default());
            // Unowned runs (the handle flushed, as a collector does) and one
            // handle that keeps its runs.
            let mut flushed = slots.local();
            let mut owner = slots.local();
            let mut ptrs: Vec<_> = (0..20_000).map(|_| flushed.alloc(48).unwrap()).collect();
            ptrs.extend((0..500).map(|_| owner.alloc(48).unwrap()));
            flushed.flush();
            let keep = |addr: usize| addr.is_multiple_of(5);
            let before = walked(&slots);
            let survivors = kept(&before, keep);
            let runs = std::sync::Mutex::new(BTreeSet::new());
            let run_size = slots.heap().run_size();
            // SAFETY: no thread uses the allocator during the sweep.
            let swept = unsafe {
                slots.sweep_stopped(
                    threads,
                    |p, _| keep(p.addr().get()),
                    |start, len| {
                        assert_eq!((start % run_size, len), (0, run_size));
                        assert!(runs.lock().unwrap().insert(start), "a run swept twice");
                    },
                )
            };
            assert_eq!(swept.objects, before.len() - survivors.len());
            assert_eq!(walked(&slots), survivors);
            let runs = runs.into_inner().unwrap();
            assert!(before.keys().all(|a| runs.contains(&(a & !(run_size - 1)))));
            // Swept slots are handed out again before any new run is taken.
            let used = slots.pools().used(SpaceType::RuntimeInternal);
            let dead = ptrs[..20_000]
                .iter()
                .filter(|p| !keep(p.addr().get()))
                .count();
            let again: Vec<_> = (0..dead).map(|_| flushed.alloc(48).unwrap()).collect();
            assert!(
                again
                    .iter()
                    .all(|p| !survivors.contains_key(&p.addr().get()))
            );
            assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), used);
            drop((flushed, owner));
            // SAFETY: as above.
            let rest = unsafe { slots.sweep_stopped(threads, |_, _| false, |_, _| {}) };
            assert_eq!(rest.objects, survivors.len() + again.len());
            slots.trim();
            let stats = slots.stats();
            assert_eq!((stats.live_objects(), stats.live_bytes()), (0, 0));
            assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), 0);
        }
    }

    #[test]
    fn the_allocator_is_shared_by_all_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<RunSlotsAllocator>();
        shared::<Swept>();
    }

    #[test]
    fn layout_alignment_and_containment() {
        let slots = allocator(PoolManagerConfig::default());
        let layout = slots.run_layout(16).unwrap();
        assert_eq!((layout.run_size, layout.slot_size), (64 << 10, 16));
        assert_eq!(
            layout.header_bytes + layout.slots * 16 + layout.tail_bytes,
            64 << 10
        );
        assert!(layout.tail_bytes < 16);
        assert_eq!(slots.run_layout(0), None);
        assert_eq!(slots.run_layout(257), None);
        assert_eq!(
            [24, 48, 96, 64, 256].map(RunSlotsAllocator::slot_align),
            [8, 16, 32, 64, 64],
            "slots are aligned to their size's power of two, up to 64"
        );
        let mut local = slots.local();
        let p = local.alloc(8).unwrap();
        assert!(slots.contains(p.addr().get()));
        let other = allocator(PoolManagerConfig::default());
        assert!(!other.contains(p.addr().get()));
        assert!(!slots.contains(0));
        // SAFETY: live.
        unsafe { local.free(p) };
    }

    #[test]
    fn spare_pools_are_kept_until_trimmed() {
        let config = PoolManagerConfig::default().with_pool_size(64 << 10);
        let slots = allocator(config);
        assert_eq!(slots.spare_limit(), 32 << 20);
        let mut local = slots.local();
        let ptrs: Vec<_> = (0..20_000).map(|_| local.alloc(64).unwrap()).collect();
        let used = slots.pools().used(SpaceType::RuntimeInternal);
        for p in ptrs {
            // SAFETY: live.
            unsafe { local.free(p) };
        }
        local.flush();
        assert!(
            slots.pools().used(SpaceType::RuntimeInternal) > used / 2,
            "empty pools are kept as spares"
        );
        slots.trim();
        assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), 0);
        slots.set_spare_limit(0);
        let p = local.alloc(64).unwrap();
        // SAFETY: live.
        unsafe { local.free(p) };
        local.flush();
        assert_eq!(
            slots.pools().used(SpaceType::RuntimeInternal),
            0,
            "no spares: empty pools go back at once"
        );
        // A space limit bounds the default spares to an eighth of it.
        let small =
            allocator(PoolManagerConfig::default().with_limit(SpaceType::RuntimeInternal, 8 << 20));
        assert_eq!(small.spare_limit(), 1 << 20);
    }

    #[test]
    fn a_space_without_room_is_an_error_naming_the_space() {
        let slots =
            allocator(PoolManagerConfig::default().with_limit(SpaceType::RuntimeInternal, 0));
        let err = slots.local().alloc(16).unwrap_err();
        assert!(matches!(
            err,
            AllocError::LimitExceeded {
                space: SpaceType::RuntimeInternal,
                limit: 0,
                ..
            }
        ));
        assert!(
            err.to_string().contains("runtime-internal space is full"),
            "{err}"
        );
    }

    /// The message of the panic `f` raises.
    pub(crate) fn panic_message(f: impl FnOnce()) -> String {
        let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .expect_err("expected a panic");
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "RunSlotsAllocator (runtime-internal space): free of 0x")]
    fn double_free_panics_in_debug_builds() {
        let slots = allocator(PoolManagerConfig::default());
        let p = slots.local().alloc(32).unwrap();
        // SAFETY: live, then (deliberately) not.
        unsafe {
            slots.free(p);
            slots.free(p);
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    fn bad_frees_panic_naming_the_address_and_the_space() {
        let slots = allocator(PoolManagerConfig::default());
        let mut local = slots.local();
        let p = local.alloc(48).unwrap();
        let addr = p.addr().get();
        let interior = NonNull::new((addr + 8) as *mut u8).unwrap();
        let msg = panic_message(|| {
            // SAFETY: deliberate misuse, caught by the debug checks before any effect.
            unsafe { slots.free(interior) }
        });
        assert!(
            msg.contains(&format!("{:#x}", addr + 8)) && msg.contains("not the start of a slot"),
            "{msg}"
        );
        let foreign = Box::new(0u64);
        let foreign_ptr = NonNull::from(&*foreign).cast::<u8>();
        let msg = panic_message(|| {
            // SAFETY: as above.
            unsafe { local.free(foreign_ptr) }
        });
        assert!(
            msg.contains(&format!("{:#x}", foreign_ptr.addr())) && msg.contains("foreign pointer"),
            "{msg}"
        );
        assert!(msg.contains("runtime-internal space"), "{msg}");
        // SAFETY: live.
        unsafe { local.free(p) };
        let msg = panic_message(|| {
            // SAFETY: as above.
            unsafe { local.free(p) }
        });
        assert!(
            msg.contains(&format!("{addr:#x}")) && msg.contains("double free"),
            "{msg}"
        );
        let msg = panic_message(|| {
            // SAFETY: as above.
            unsafe { slots.usable_size(p) };
        });
        assert!(
            msg.contains("usable_size of") && msg.contains("not allocated"),
            "{msg}"
        );
    }
}
