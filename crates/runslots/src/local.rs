//! The per-thread handle: owned runs per size class, the allocation and free
//! fast paths, refilling, and batched statistics.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rtmem_base::AllocError;

use crate::allocator::RunSlotsAllocator;
use crate::class::{CLASS_SIZES, NUM_CLASSES, class_of};
use crate::list::{ListTag, RunList};
use crate::run::{Fill, Run};

/// Parked full runs examined for remote frees per refill, so that a thread
/// holding many full runs does not scan them all at once.
const FULL_SCAN: usize = 4;

/// Owner ids: 0 means unowned and `u64::MAX` free, so ids start at 1.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// One thread's allocation handle on a [`RunSlotsAllocator`]
/// (`Send`, not `Sync`).
///
/// Per size class it owns a *current* run, which it allocates from by popping
/// the lowest free slot from the run's alloc bitmap: no lock, no atomic
/// read-modify-write. Runs it filled stay its own (parked), so that its frees
/// into them are fast too; a run that empties goes back to the heap. Frees
/// into runs of other handles, or into unowned runs, take the remote path.
///
/// Statistics are counted here and reported to the space's `MemStats` when a
/// run is switched, on [`flush`](Self::flush) and on drop.
///
/// Dropping the handle [flushes](Self::flush) it; dropping the last handle of
/// an allocator also gives its spare pools back. The handle's objects stay
/// valid: any thread may free them later through the allocator or another handle.
///
/// A handle may move to another thread, but not be shared:
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<rtmem_runslots::LocalRuns>();
/// ```
pub struct LocalRuns {
    alloc: Arc<RunSlotsAllocator>,
    owner: u64,
    run_size: usize,
    classes: [ClassRuns; NUM_CLASSES],
}

/// The runs of one size class a handle owns.
struct ClassRuns {
    /// Allocations and frees through this handle since the last report.
    allocs: usize,
    frees: usize,
    current: Option<Run>,
    /// Parked runs with free slots.
    partial: RunList,
    /// Parked runs without.
    full: RunList,
    /// The class's remote-free count when the current pass over `full` began.
    remote_seen: usize,
    /// Full runs left to examine in the current pass.
    scan_left: usize,
}

// SAFETY: a handle's runs are owned by its id, not by a thread; moving the
// handle moves that ownership with it. It is not `Sync`: its methods take
// `&mut self` and the raw run addresses make the compiler say so.
unsafe impl Send for LocalRuns {}

impl LocalRuns {
    pub(crate) fn new(alloc: Arc<RunSlotsAllocator>) -> LocalRuns {
        let run_size = alloc.heap().run_size();
        LocalRuns {
            alloc,
            owner: NEXT_OWNER.fetch_add(1, Relaxed),
            run_size,
            classes: std::array::from_fn(|_| ClassRuns {
                allocs: 0,
                frees: 0,
                current: None,
                partial: RunList::new(ListTag::Partial),
                full: RunList::new(ListTag::Full),
                remote_seen: 0,
                scan_left: 0,
            }),
        }
    }

    /// The allocator this handle allocates from.
    pub fn allocator(&self) -> &Arc<RunSlotsAllocator> {
        &self.alloc
    }

    /// Allocates a slot of at least `size` bytes, 8-aligned (see
    /// [`RunSlotsAllocator::slot_align`]). Its contents are unspecified.
    ///
    /// Errors: [`AllocError::BadLayout`] if `size` is 0 or above
    /// [`RunSlotsAllocator::MAX_SIZE`]; the pool manager's error (such as
    /// [`AllocError::LimitExceeded`] naming the space) if a new run is needed
    /// and no pool can be had.
    #[inline(always)]
    pub fn alloc(&mut self, size: usize) -> Result<NonNull<u8>, AllocError> {
        let Some(class) = class_of(size) else {
            return Err(bad_size(size));
        };
        let runs = &mut self.classes[class];
        if let Some(run) = runs.current {
            // SAFETY: the current run is owned by this handle.
            if let Some(slot) = unsafe { run.pop() } {
                runs.allocs += 1;
                return Ok(slot);
            }
        }
        self.alloc_slow(class)
    }

    /// Frees a slot: in place when it is in one of this handle's runs, else by
    /// the remote path of [`RunSlotsAllocator::free`].
    ///
    /// # Safety
    /// As for [`RunSlotsAllocator::free`]: `ptr` is a live slot of this
    /// handle's allocator and is not used after this call.
    ///
    /// # Panics
    /// In debug builds, if `ptr` is not a live slot of the allocator; the
    /// message names the address and the allocator's space.
    #[inline(always)]
    pub unsafe fn free(&mut self, ptr: NonNull<u8>) {
        #[cfg(debug_assertions)]
        self.alloc.check_live(ptr, "free");
        // SAFETY: the caller passes a live slot, so its run is in use.
        let run = unsafe { Run::from_slot(ptr, self.run_size) };
        if run.owner() != self.owner {
            // SAFETY: forwarded.
            return unsafe { self.free_remote(run, ptr) };
        }
        let class = run.geometry().class as usize;
        // SAFETY: we own the run and `ptr` is a live slot of it.
        if unsafe { run.push_local(ptr) } {
            self.parked_run_freed(class, run);
        }
        self.classes[class].frees += 1;
    }

    /// Gives every run this handle owns back to the allocator (runs with free
    /// slots become available to every thread, empty runs go back to the heap)
    /// and reports the batched statistics. The handle stays usable.
    pub fn flush(&mut self) {
        for class in 0..NUM_CLASSES {
            let runs = &mut self.classes[class];
            let mut all = RunList::new(ListTag::None);
            // SAFETY: we own every run of the class; each goes on `all` alone.
            unsafe {
                if let Some(run) = runs.current.take() {
                    all.push_back(run);
                }
                for list in [&mut runs.partial, &mut runs.full] {
                    while let Some(run) = list.pop_front() {
                        all.push_back(run);
                    }
                }
            }
            if all.len() > 0 {
                // SAFETY: we own the runs and give them up.
                unsafe { self.alloc.abandon(class, &mut all) };
            }
        }
        self.report_stats();
    }

    /// Frees a slot of a run this handle does not own.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[cold]
    #[inline(never)]
    unsafe fn free_remote(&mut self, run: Run, ptr: NonNull<u8>) {
        let class = run.geometry().class as usize;
        // SAFETY: forwarded.
        unsafe { self.alloc.free_in(run, ptr) };
        self.classes[class].frees += 1;
    }

    /// After a free into a parked run that emptied it or that was full: an
    /// empty run goes back to the heap, a full one becomes partial.
    #[cold]
    #[inline(never)]
    fn parked_run_freed(&mut self, class: usize, run: Run) {
        let runs = &mut self.classes[class];
        // SAFETY: we own the run, which is parked on one of our lists.
        unsafe {
            let list = if run.list() == ListTag::Full {
                &mut runs.full
            } else {
                &mut runs.partial
            };
            list.remove(run);
            if run.fill() == Fill::Empty {
                self.alloc.heap().lock().release(run);
            } else {
                runs.partial.push_back(run);
            }
        }
    }

    /// Allocates when the current run of `class` has no free slot.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&mut self, class: usize) -> Result<NonNull<u8>, AllocError> {
        self.report_stats();
        let run = self.refill(class)?;
        // SAFETY: `refill` returns a run we own that has a free slot.
        let slot = unsafe { run.pop() }.expect("a refilled run has a free slot");
        self.classes[class].allocs += 1;
        Ok(slot)
    }

    /// Makes a run with a free slot current for `class`: the current run if it
    /// has remote frees to collect; else a parked partial run; else a parked
    /// full run with remote frees; else an unowned run; else a new one.
    ///
    /// Parked full runs are examined only after a remote free into a run of
    /// the class happened (the class's remote-free count moved), a few per
    /// refill, so that a thread that frees only its own objects never reads
    /// their (cold) headers.
    fn refill(&mut self, class: usize) -> Result<Run, AllocError> {
        let remote_frees = self.alloc.remote_frees(class);
        let runs = &mut self.classes[class];
        // SAFETY: we own the current run and the parked ones (which are on our
        // lists), as every call below requires.
        let next = unsafe {
            if let Some(run) = runs.current.take() {
                if run.collect_remote() > 0 {
                    runs.current = Some(run);
                    return Ok(run);
                }
                runs.full.push_back(run);
            }
            let mut next = runs.partial.pop_front();
            if next.is_none() && remote_frees != runs.remote_seen {
                // A new pass over every full run, including any parked since.
                runs.remote_seen = remote_frees;
                runs.scan_left = runs.full.len();
            }
            let mut examined = 0;
            while next.is_none() && runs.scan_left > 0 && examined < FULL_SCAN {
                runs.scan_left -= 1;
                examined += 1;
                // Frees may have moved full runs off the list since the pass began.
                let Some(run) = runs.full.pop_front() else {
                    runs.scan_left = 0;
                    break;
                };
                if run.has_remote() && run.collect_remote() > 0 {
                    next = Some(run);
                } else {
                    runs.full.push_back(run);
                }
            }
            next
        };
        let run = match next.or_else(|| self.alloc.adopt(class, self.owner)) {
            Some(run) => run,
            None => self
                .alloc
                .heap()
                .lock()
                .take(self.alloc.geometry(class), self.owner)?,
        };
        self.classes[class].current = Some(run);
        Ok(run)
    }

    /// Reports the batched allocation and free counts to `MemStats`.
    fn report_stats(&mut self) {
        let (mut alloc_bytes, mut allocs, mut free_bytes, mut frees) = (0, 0, 0, 0);
        for (runs, size) in self.classes.iter_mut().zip(CLASS_SIZES) {
            alloc_bytes += runs.allocs * size;
            allocs += runs.allocs;
            free_bytes += runs.frees * size;
            frees += runs.frees;
            runs.allocs = 0;
            runs.frees = 0;
        }
        let (stats, space) = (self.alloc.pools().stats(), self.alloc.space());
        if allocs > 0 {
            stats.record_alloc(space, alloc_bytes, allocs);
        }
        if frees > 0 {
            stats.record_free(space, free_bytes, frees);
        }
    }
}

impl Drop for LocalRuns {
    fn drop(&mut self) {
        self.flush();
        self.alloc.handle_dropped();
    }
}

impl std::fmt::Debug for LocalRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuns")
            .field("owner", &self.owner)
            .field("space", &self.alloc.space())
            .finish()
    }
}

#[cold]
fn bad_size(size: usize) -> AllocError {
    let reason = if size == 0 {
        "runslots cannot allocate zero bytes"
    } else {
        "runslots serves sizes of 1 to 256 bytes (RunSlotsAllocator::MAX_SIZE)"
    };
    AllocError::bad_layout(size, 8, reason)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::BTreeSet;

    use rtmem_base::{PoolManagerConfig, SpaceType};

    use super::*;
    use crate::allocator::tests::{allocator, walked};

    #[test]
    fn zero_and_oversized_requests_are_bad_layouts() {
        let slots = allocator(PoolManagerConfig::default());
        let mut local = slots.local();
        for size in [0, RunSlotsAllocator::MAX_SIZE + 1, usize::MAX] {
            let err = local.alloc(size).unwrap_err();
            assert!(
                matches!(err, AllocError::BadLayout { size: s, align: 8, .. } if s == size),
                "{err}"
            );
        }
        assert!(
            local
                .alloc(0)
                .unwrap_err()
                .to_string()
                .contains("zero bytes")
        );
        assert!(
            local
                .alloc(257)
                .unwrap_err()
                .to_string()
                .contains("1 to 256 bytes")
        );
    }

    #[test]
    fn every_size_gets_an_aligned_slot_of_its_class_that_keeps_its_contents() {
        let slots = allocator(PoolManagerConfig::default());
        let mut local = slots.local();
        let ptrs: Vec<_> = (1..=RunSlotsAllocator::MAX_SIZE)
            .map(|size| (local.alloc(size).unwrap(), size))
            .collect();
        for &(p, size) in &ptrs {
            let slot = RunSlotsAllocator::size_class(size).unwrap();
            assert_eq!(
                p.addr().get() % RunSlotsAllocator::slot_align(slot),
                0,
                "size {size}"
            );
            // SAFETY: live.
            assert_eq!(unsafe { slots.usable_size(p) }, slot);
            // SAFETY: the whole slot is ours to write.
            unsafe { p.as_ptr().write_bytes(size as u8, slot) };
        }
        for &(p, size) in &ptrs {
            let slot = RunSlotsAllocator::size_class(size).unwrap();
            // SAFETY: live and written above.
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), slot) };
            assert!(
                bytes.iter().all(|&b| b == size as u8),
                "size {size} was overwritten"
            );
            // SAFETY: live, freed once.
            unsafe { local.free(p) };
        }
    }

    #[test]
    fn freed_slots_are_reused_before_new_memory_is_taken() {
        let slots = allocator(PoolManagerConfig::default());
        let mut local = slots.local();
        let n = 3 * slots.run_layout(48).unwrap().slots + 17;
        let first: BTreeSet<usize> = (0..n)
            .map(|_| local.alloc(48).unwrap().addr().get())
            .collect();
        assert_eq!(first.len(), n);
        let used = slots.pools().used(SpaceType::RuntimeInternal);
        for &addr in &first {
            // SAFETY: live, freed once.
            unsafe { local.free(NonNull::new(addr as *mut u8).unwrap()) };
        }
        let second: BTreeSet<usize> = (0..n)
            .map(|_| local.alloc(48).unwrap().addr().get())
            .collect();
        // The current run also has never-used slots, handed out before any
        // freed run is taken back: the same runs, not the same slots.
        let run_of = |addr: &usize| addr & !(slots.run_layout(48).unwrap().run_size - 1);
        let runs = |set: &BTreeSet<usize>| set.iter().map(run_of).collect::<BTreeSet<_>>();
        assert_eq!(second.len(), n);
        assert!(
            runs(&second) == runs(&first),
            "the second round used other runs"
        );
        assert_eq!(
            slots.pools().used(SpaceType::RuntimeInternal),
            used,
            "no new memory was taken"
        );
    }

    #[test]
    fn counts_are_batched_until_a_run_switch_or_flush() {
        let slots = allocator(PoolManagerConfig::default());
        let mut local = slots.local();
        let p = local.alloc(100).unwrap();
        assert_eq!(slots.stats().objects_allocated, 0, "not reported yet");
        // SAFETY: live.
        unsafe { local.free(p) };
        local.flush();
        let stats = slots.stats();
        assert_eq!(
            (
                stats.objects_allocated,
                stats.bytes_allocated,
                stats.bytes_freed
            ),
            (1, 104, 104)
        );
        let per_run = slots.run_layout(256).unwrap().slots;
        let ptrs: Vec<_> = (0..=per_run).map(|_| local.alloc(256).unwrap()).collect();
        assert_eq!(
            slots.stats().objects_allocated,
            1 + per_run as u64,
            "reported when the run switched"
        );
        for p in ptrs {
            // SAFETY: live.
            unsafe { local.free(p) };
        }
        drop(local);
        assert_eq!(slots.stats().live_objects(), 0);
        assert_eq!(slots.stats().objects_freed, 2 + per_run as u64);
    }

    #[test]
    fn flushed_runs_are_adopted_by_other_handles() {
        let slots = allocator(PoolManagerConfig::default());
        let mut a = slots.local();
        let ptrs: Vec<_> = (0..10).map(|_| a.alloc(72).unwrap()).collect();
        a.flush();
        let run = ptrs[0].addr().get() & !(slots.run_layout(72).unwrap().run_size - 1);
        let mut b = slots.local();
        let q = b.alloc(72).unwrap();
        assert_eq!(
            q.addr().get() & !(slots.run_layout(72).unwrap().run_size - 1),
            run,
            "b adopted a's run"
        );
        // `a`'s objects now live in `b`'s run: `b` frees them locally, `a` remotely.
        for (i, &p) in ptrs.iter().enumerate() {
            // SAFETY: live, freed once.
            unsafe { if i % 2 == 0 { b.free(p) } else { a.free(p) } };
        }
        // SAFETY: live.
        unsafe { b.free(q) };
        assert!(walked(&slots).is_empty());
        drop((a, b));
        assert_eq!(slots.pools().used(SpaceType::RuntimeInternal), 0);
        assert_eq!(slots.stats().live_objects(), 0);
    }

    #[test]
    fn a_handle_moves_between_threads() {
        fn assert_send<T: Send>(_: &T) {}
        let slots = allocator(PoolManagerConfig::default());
        let mut local = slots.local();
        assert_send(&local);
        let p = local.alloc(8).unwrap().addr().get();
        let local = std::thread::spawn(move || {
            let mut local = local;
            // SAFETY: live; the handle that owns its run moved here with it.
            unsafe { local.free(NonNull::new(p as *mut u8).unwrap()) };
            local
        })
        .join()
        .unwrap();
        drop(local);
        assert_eq!(slots.stats().live_objects(), 0);
    }
}
