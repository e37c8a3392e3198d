//! `Mutator`: a runtime thread's handle on the heap — allocation, barriers,
//! safepoints, and its roots.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;

use rtmem_base::AllocError;
use rtmem_runslots::{LocalRuns, RunSlotsAllocator};
use rtmem_spaces::{SlotsAndBlocks, Spaces};
use rtmem_tlab::Tlab;

use crate::heap::{Heap, HeapInner};
use crate::object::{HEADER_BYTES, Header, OBJECT_ALIGN, ObjectRef, set_finalizable};
use crate::safepoint::SafepointHandle;
use crate::satb::SatbBuffer;
use crate::stats::{GcCause, GcKind};
use crate::verify::{VerifyError, VerifyReport};
use crate::vm::VM;
use crate::young::Young;

/// Where an object is to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Wherever the collector likes (it may move the object).
    Any,
    /// The non-moving space: the object never moves.
    Pinned,
    /// The humongous space (a pool of its own; never moves).
    Large,
}

/// A mutator's state as the collector sees it: reached by the collector
/// only while the world is stopped or through a handshake.
pub(crate) struct MutatorState<V: VM> {
    pub(crate) roots: V::MutatorRoots,
    /// Object bytes allocated and not yet reported to the heap.
    pub(crate) unreported: usize,
    /// Small objects of the object space.
    runs: LocalRuns,
    /// Small objects of the non-moving space.
    pinned_runs: LocalRuns,
    /// The allocation buffer in eden (generational collectors).
    pub(crate) tlab: Tlab,
    /// References logged for concurrent marking (`gen-concurrent`).
    pub(crate) satb: SatbBuffer,
}

impl<V: VM> MutatorState<V> {
    /// Gives the thread's runs back to their allocators (so that a sweep
    /// holds every run), retires its TLAB in `young`'s eden (so that the
    /// young regions can be walked) and takes its unreported bytes.
    pub(crate) fn flush(&mut self, young: Option<&Young>) -> usize {
        self.runs.flush();
        self.pinned_runs.flush();
        if let Some(young) = young {
            self.tlab.retire(young.eden());
        }
        std::mem::take(&mut self.unreported)
    }
}

/// A registered runtime thread: allocates objects, applies barriers, polls
/// safepoints, and owns its roots (see [`VM::MutatorRoots`]).
///
/// **The rule for runtimes:** an [`ObjectRef`] held across an allocation,
/// a [`poll`](Self::poll) or a [`collect`](Self::collect) must be in a root
/// slot, because a collection may run there (and a moving collector updates
/// only slots it is shown).
///
/// Dropping the mutator unregisters it; its objects stay in the heap.
pub struct Mutator<V: VM> {
    handle: SafepointHandle<MutatorState<V>>,
    heap: Heap<V>,
    /// Whether objects are allocated in the young generation's eden.
    generational: bool,
    /// Bytes the fast path may allocate before reporting (0 in stress mode,
    /// so that every allocation takes the slow path and is counted).
    report_every: usize,
}

impl<V: VM> Mutator<V> {
    /// A mutator reports the bytes it allocated to the heap (and checks the
    /// trigger) every this many bytes; the heap's use lags by at most this
    /// much per mutator.
    pub const REPORT_BYTES: usize = 64 << 10;

    pub(crate) fn new(heap: Heap<V>, roots: V::MutatorRoots) -> Mutator<V> {
        let spaces = &heap.inner.spaces;
        let state = MutatorState {
            roots,
            unreported: 0,
            runs: spaces.object().tenured().small().local(),
            pinned_runs: spaces.non_moving().objects().small().local(),
            tlab: Tlab::new(heap.inner.config.heap.tlab),
            satb: SatbBuffer::default(),
        };
        let report_every = if heap.inner.config.stress_every > 0 {
            0
        } else {
            Self::REPORT_BYTES
        };
        Mutator {
            handle: heap.inner.safepoints.register(state),
            generational: heap.inner.young.is_some(),
            heap,
            report_every,
        }
    }

    /// The heap.
    pub fn heap(&self) -> &Heap<V> {
        &self.heap
    }

    /// This mutator's roots, to push and pop frames and handles.
    #[inline]
    pub fn roots(&mut self) -> &mut V::MutatorRoots {
        &mut self.handle.data().roots
    }

    /// Allocates an object of `size` bytes (header included; rounded up to
    /// 8, at least 8) whose header holds `type_word`, with every byte after
    /// the header zero — so every reference slot is null.
    ///
    /// Small objects come from this thread's own runs: no lock. Objects of
    /// at least the profile's `large_threshold` go to the humongous space.
    /// The collector may move the object (not the `stw` one); use
    /// [`alloc_pinned`](Self::alloc_pinned) for objects native code holds.
    ///
    /// May collect first. Errors: if the space is full even after a
    /// collection that cleared soft references, the space's
    /// [`AllocError::LimitExceeded`] (or `OutOfMemory`), naming the space;
    /// [`AllocError::BadLayout`] for a size no allocator can hold.
    ///
    /// # Panics
    /// If `type_word` does not fit in 56 bits.
    #[inline]
    pub fn alloc(&mut self, type_word: u64, size: usize) -> Result<ObjectRef, AllocError> {
        let size = object_size(size)?;
        let report_every = self.report_every;
        let state = self.handle.data();
        if self.generational {
            // Eden, through the TLAB: young allocations are not reported
            // (they do not grow the old generation). In stress mode every
            // allocation takes the slow path, which counts it.
            if report_every != 0
                && let Some(ptr) = state.tlab.try_alloc(size)
            {
                // SAFETY: a fresh block of at least `size` bytes.
                return Ok(unsafe { init(ptr, type_word, size) });
            }
        } else if size <= RunSlotsAllocator::MAX_SIZE
            && state.unreported + size <= report_every
            && let Ok(ptr) = state.runs.alloc(size)
        {
            state.unreported += size;
            // SAFETY: a fresh block of at least `size` bytes.
            return Ok(unsafe { init(ptr, type_word, size) });
        }
        self.alloc_slow(type_word, size, Placement::Any)
    }

    /// Allocates an object that never moves (in the non-moving space), as
    /// [`alloc`](Self::alloc) otherwise.
    pub fn alloc_pinned(&mut self, type_word: u64, size: usize) -> Result<ObjectRef, AllocError> {
        let size = object_size(size)?;
        self.alloc_slow(type_word, size, Placement::Pinned)
    }

    /// Allocates an object in a pool of its own in the humongous space,
    /// whatever its size (it never moves), as [`alloc`](Self::alloc)
    /// otherwise.
    pub fn alloc_large(&mut self, type_word: u64, size: usize) -> Result<ObjectRef, AllocError> {
        let size = object_size(size)?;
        self.alloc_slow(type_word, size, Placement::Large)
    }

    /// Allocates an object registered for finalization: when it becomes
    /// unreachable the collector keeps it (and what it references) alive
    /// once more and hands it to the runtime through
    /// [`Heap::take_finalizable`]. As [`alloc`](Self::alloc) otherwise.
    pub fn alloc_finalizable(
        &mut self,
        type_word: u64,
        size: usize,
    ) -> Result<ObjectRef, AllocError> {
        let object = self.alloc(type_word, size)?;
        // SAFETY: just allocated and initialized; nobody else knows it yet.
        unsafe { set_finalizable(object, true) };
        self.heap.inner.queues.lock().registered.push(object);
        Ok(object)
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(
        &mut self,
        type_word: u64,
        size: usize,
        placement: Placement,
    ) -> Result<ObjectRef, AllocError> {
        let inner = &self.heap.inner;
        if placement == Placement::Any
            && size < inner.config.heap.large_threshold
            && let Some(young) = &inner.young
        {
            if self.report_every == 0 && inner.trigger.note_allocation() {
                inner.collect(Some(&mut self.handle), GcCause::Stress);
            }
            // Refill the TLAB; when eden is full, collect the young
            // generation once and try again.
            for attempt in 0..2 {
                match self.handle.data().tlab.alloc(young.eden(), size) {
                    // SAFETY: a fresh block of at least `size` bytes.
                    Ok(ptr) => return Ok(unsafe { init(ptr, type_word, size) }),
                    Err(e)
                        if e.is_out_of_memory()
                            && attempt == 0
                            && !inner.eden_blocked.load(Relaxed) =>
                    {
                        inner.collect(Some(&mut self.handle), GcCause::YoungFull);
                    }
                    Err(e) if e.is_out_of_memory() => break,
                    Err(e) => return Err(e),
                }
            }
            // Eden is still full (there was no room to promote it, see
            // `eden_blocked`): the object goes straight to the tenured
            // generation, whose own trigger leads to a full collection.
            tracing::debug!(size, "eden full after a young collection; allocating old");
        }
        let state = self.handle.data();
        // The trigger is checked once per reporting chunk (every allocation
        // in stress mode, where the chunk is empty).
        if inner.config.kind != GcKind::Epsilon && state.unreported + size > self.report_every {
            let used = inner.report_allocated(std::mem::take(&mut state.unreported));
            let stress = inner.trigger.note_allocation();
            let cause = if stress {
                Some(GcCause::Stress)
            } else {
                inner.collection_wanted(used)
            };
            if let Some(cause) = cause {
                inner.collect(Some(&mut self.handle), cause);
            }
        }
        let ptr = match place(inner, self.handle.data(), size, placement) {
            Ok(ptr) => ptr,
            Err(e) if e.is_out_of_memory() && inner.config.kind != GcKind::Epsilon => {
                tracing::debug!(size, error = %e, "allocation failed; collecting");
                inner.collect(Some(&mut self.handle), GcCause::AllocationFailure);
                place(inner, self.handle.data(), size, placement)?
            }
            Err(e) => return Err(e),
        };
        self.handle.data().unreported += size;
        // SAFETY: a fresh block of at least `size` bytes.
        let object = unsafe { init(ptr, type_word, size) };
        if inner.marking() {
            // Allocated black: marking does not scan it (its slots are
            // null, and what is stored there later was reachable anyway).
            inner.bitmap.mark(object.addr());
        }
        Ok(object)
    }

    /// Reads the reference slot at byte `offset` of `object`.
    ///
    /// # Safety
    /// `object` is a live object of this heap and `offset` the offset of one
    /// of its reference slots (8-aligned, inside the object).
    #[inline(always)]
    pub unsafe fn read_ref(&self, object: ObjectRef, offset: usize) -> Option<ObjectRef> {
        // SAFETY: the caller guarantees a reference slot of a live object;
        // `Option<ObjectRef>` is a word with null as `None`.
        unsafe { ((object.addr() + offset) as *const Option<ObjectRef>).read() }
    }

    /// Stores `value` into the reference slot at byte `offset` of `object`,
    /// with the collector's barriers (none for `epsilon` and `stw`).
    ///
    /// # Safety
    /// As for [`read_ref`](Self::read_ref); `value` is null or a live
    /// object of this heap.
    #[inline(always)]
    pub unsafe fn write_ref(&mut self, object: ObjectRef, offset: usize, value: Option<ObjectRef>) {
        let slot = (object.addr() + offset) as *mut Option<ObjectRef>;
        // SAFETY: the caller guarantees a reference slot of a live object.
        let old = unsafe { slot.replace(value) };
        self.write_barrier(object, offset, old, value);
    }

    /// The barriers of a reference store the runtime made itself — for
    /// slots that are not plain reference words (a tagged or NaN-boxed
    /// value that holds a reference). Call it right after the store, before
    /// the next allocation, poll or collection: `old` is the reference the
    /// store overwrote and `new` the one it stored (each `None` if the value
    /// held none), at byte `offset` of `object`.
    ///
    /// [`write_ref`](Self::write_ref) calls it for plain reference slots.
    /// For `epsilon` and `stw` it does nothing; for `gen` it dirties the
    /// slot's card (the post-write barrier); for `gen-concurrent` it also
    /// logs `old` while a cycle marks (the SATB pre-write barrier: the
    /// store did not happen before the snapshot as far as marking is
    /// concerned).
    #[inline(always)]
    pub fn write_barrier(
        &mut self,
        object: ObjectRef,
        offset: usize,
        old: Option<ObjectRef>,
        new: Option<ObjectRef>,
    ) {
        let _ = new;
        if let Some(cards) = &self.heap.inner.cards {
            cards.dirty(object.addr() + offset);
        }
        if let Some(old) = old {
            // The pre-write barrier is the weak-read one, on the old value.
            self.keep_alive(old);
        }
    }

    /// Keeps `object` alive through a concurrent cycle under way: call it
    /// for every reference read out of a *weak* place — a reference
    /// object's referent, a weak table (interned strings, caches) — before
    /// using it. A concurrent marker did not see that reference when it
    /// scanned (weak places are not traced), so without this the object
    /// could be freed while the runtime holds it. Costs one load and a
    /// branch outside cycles; does nothing for the other collectors.
    #[inline(always)]
    pub fn keep_alive(&mut self, object: ObjectRef) {
        if self.heap.inner.marking() {
            self.log_for_marking(object);
        }
    }

    /// The SATB barrier's slow path: logs an old object for the marker
    /// (young objects are not marked by cycles: they are skipped).
    #[cold]
    #[inline(never)]
    fn log_for_marking(&mut self, object: ObjectRef) {
        let inner = &self.heap.inner;
        if inner
            .young
            .as_ref()
            .is_some_and(|y| y.contains(object.addr()))
        {
            return;
        }
        let concurrent = inner.concurrent.as_ref().expect("marking is on");
        self.handle.data().satb.log(object, &concurrent.satb);
    }

    /// A safepoint: one load unless the collector asked the world to stop.
    #[inline(always)]
    pub fn poll(&mut self) {
        self.handle.poll();
    }

    /// Runs `f` as native code: the mutator counts as stopped meanwhile
    /// (collections may run), so `f` must not touch managed objects.
    pub fn in_native<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.handle.in_native(f)
    }

    /// Collects now, stopping the other mutators; returns whether a
    /// collection ran (never for epsilon).
    pub fn collect(&mut self, cause: GcCause) -> bool {
        self.heap.inner.collect(Some(&mut self.handle), cause)
    }

    /// Checks every object and every root, with the world stopped.
    pub fn verify(&mut self) -> Result<VerifyReport, VerifyError> {
        let inner = &self.heap.inner;
        let (mut world, _pause) = inner.stop_the_world(Some(&mut self.handle));
        inner.verify_stopped(&mut world)
    }

    /// Waits, as native code, until no concurrent cycle is under way
    /// (returns at once for collectors other than `gen-concurrent`).
    pub fn await_concurrent_cycle(&mut self) {
        let heap = self.heap.clone();
        self.in_native(|| heap.await_concurrent_cycle());
    }
}

impl<V: VM> Drop for Mutator<V> {
    /// Gives the thread's runs back while it is still a registered, running
    /// mutator — no collection can be under way — so that nothing touches
    /// the allocators after it leaves the safepoint protocol (a collection
    /// may start at once and sweep them).
    fn drop(&mut self) {
        let inner = &self.heap.inner;
        let state = self.handle.data();
        if let Some(concurrent) = &inner.concurrent {
            state.satb.hand_off(&concurrent.satb);
        }
        let unreported = state.flush(inner.young.as_ref());
        inner.report_allocated(unreported);
    }
}

/// Takes a block for an object of `size` bytes where `placement` says.
fn place<V: VM>(
    heap: &HeapInner<V>,
    state: &mut MutatorState<V>,
    size: usize,
    placement: Placement,
) -> Result<NonNull<u8>, AllocError> {
    let spaces = &heap.spaces;
    if placement == Placement::Large || size >= heap.config.heap.large_threshold {
        return spaces.humongous().large().alloc(object_layout(size)?);
    }
    let (blocks, runs) = match placement {
        Placement::Pinned => (spaces.non_moving().objects(), &mut state.pinned_runs),
        _ => (spaces.object().tenured(), &mut state.runs),
    };
    alloc_block(spaces, blocks, runs, size)
}

/// A block of `size` bytes among `blocks` (never moving): a small one from
/// `runs` (a thread's handle on `blocks`' runs of slots), a medium one from
/// the free list, a larger one from the humongous space.
pub(crate) fn alloc_block(
    spaces: &Spaces,
    blocks: &SlotsAndBlocks,
    runs: &mut LocalRuns,
    size: usize,
) -> Result<NonNull<u8>, AllocError> {
    if size <= RunSlotsAllocator::MAX_SIZE {
        return runs.alloc(size);
    }
    let layout = object_layout(size)?;
    if size <= blocks.medium().max_size() {
        blocks.medium().alloc(layout)
    } else {
        spaces.humongous().large().alloc(layout)
    }
}

/// The layout of an object block of `size` bytes.
fn object_layout(size: usize) -> Result<Layout, AllocError> {
    Layout::from_size_align(size, OBJECT_ALIGN)
        .map_err(|_| AllocError::bad_layout(size, OBJECT_ALIGN, "object size overflows"))
}

/// The allocated size of an object of `size` bytes.
#[inline(always)]
fn object_size(size: usize) -> Result<usize, AllocError> {
    if size > isize::MAX as usize / 2 {
        return Err(AllocError::bad_layout(
            size,
            OBJECT_ALIGN,
            "object size larger than any space",
        ));
    }
    Ok((size.max(HEADER_BYTES) + OBJECT_ALIGN - 1) & !(OBJECT_ALIGN - 1))
}

/// Writes the header and zeroes the rest of a fresh block.
///
/// # Safety
/// `ptr` is a fresh, 8-aligned block of at least `size` bytes.
#[inline(always)]
unsafe fn init(ptr: NonNull<u8>, type_word: u64, size: usize) -> ObjectRef {
    // SAFETY: the caller passes a fresh block of `size` >= 8 bytes.
    unsafe {
        ptr.cast::<u64>().write(Header::new(type_word).to_bits());
        ptr.add(HEADER_BYTES).write_bytes(0, size - HEADER_BYTES);
    }
    ObjectRef::from_addr(ptr.as_ptr() as usize).expect("allocators return non-null blocks")
}
