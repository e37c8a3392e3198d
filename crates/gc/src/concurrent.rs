//! The concurrent cycle of `gen-concurrent`: the tenured generation is
//! marked by a background thread while mutators run.
//!
//! 1. **Initial mark**, at the end of a young collection (one pause): eden
//!    is empty, so the young objects are the few survivors. Every root and
//!    every young object (its referent too) marks the old objects it
//!    references; those are the grey objects the cycle starts from. The
//!    SATB barrier is switched on ([`Concurrent::is_marking`]) and the
//!    marking thread is started.
//! 2. **Concurrent marking** on that thread, of old objects only: young
//!    objects are neither marked nor traced through (young collections
//!    decide their fate; to a cycle they are live). Mutators log the
//!    references they overwrite, and those they read out of weak places
//!    ([`Mutator::keep_alive`](crate::Mutator::keep_alive)), into their
//!    [SATB buffers](crate::satb); the thread marks from the full buffers,
//!    then asks for the rest with handshakes. Objects allocated in the old
//!    generation and objects promoted meanwhile are allocated black (marked).
//! 3. **Remark** (the second pause): the stopped mutators' buffers are
//!    drained with `gc_workers` threads; references and weak tables are
//!    processed (young referents and keys count as live); the barrier is
//!    switched off; the free lists and large objects are swept, and every
//!    run of slots in use is set apart for sweeping
//!    ([`RunSlotsAllocator::detach_for_sweep`](rtmem_runslots::RunSlotsAllocator::detach_for_sweep)).
//! 4. **Concurrent sweeping** on the same thread, a few runs per step: each
//!    run is swept with the mark bitmap, its marks cleared and the run given
//!    back. Mutators and promotions allocate in other runs meanwhile (never
//!    in a run awaiting its sweep), so nothing needs to be allocated black.
//!    The next cycle starts only after the sweep; a full collection finishes
//!    it first. The verifier skips the unmarked objects of runs awaiting
//!    their sweep (they are garbage whose references may dangle).
//!
//! Every object reachable when marking began is marked by the end (the
//! snapshot), and so is everything allocated old since; a young object only
//! ever references old objects that were reachable when it got the
//! reference, so sweeping the unmarked ones leaves no young object (dead or
//! alive) with a dangling reference.
//!
//! **Pauses and the marking thread.** The thread marks in steps, holding a
//! lock each pauses takes once the world is stopped: a young collection (or
//! the verifier) never runs alongside marking, and the thread yields within
//! a few hundred objects when a pause asks. Young collections may run any
//! number of times during a cycle; they mark what they promote.
//!
//! **Concurrent-mode failure.** A full collection during a cycle — because
//! the object space filled up, a young collection found no room to promote,
//! or the runtime asked — abandons the cycle: the barrier goes off, the
//! buffers are dropped, the marks are cleared, and the stop-the-world
//! mark-sweep runs (recorded with cause `concurrent-mode-failure` when it ran
//! for lack of room).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};
use rtmem_base::Swept;
use rtmem_runslots::SweepSet;

use crate::heap::HeapInner;
use crate::mark::{MarkScope, Marker, trace};
use crate::mark_sweep::{mark_roots, process_references, process_weak_tables, sweep_blocks};
use crate::mutator::MutatorState;
use crate::object::ObjectRef;
use crate::safepoint::StoppedWorld;
use crate::satb::SatbQueue;
use crate::stats::{CollectionKind, CollectionRecord, GcCause, PhaseTimer};
use crate::vm::{ObjectModel, Scanning, VM};

/// Handshakes the marking thread asks for at most before it remarks.
const MAX_HANDSHAKES: usize = 4;

/// Runs the sweeping thread sweeps per step, per run-of-slots allocator.
const RUNS_PER_STEP: usize = 32;

/// The state of `gen-concurrent`'s cycles, shared by mutators, pauses and the
/// marking thread.
pub(crate) struct Concurrent {
    /// Whether the SATB barrier is on. Boxed: a JIT inlines a load from its
    /// address ([`BarrierSet::satb_facts`](crate::barrier::BarrierSet::satb_facts)).
    /// Changed only while the world is stopped.
    marking: Box<AtomicBool>,
    /// Whether a cycle is under way (marking, or waiting for its remark).
    active: AtomicBool,
    /// Full SATB buffers for the marking thread.
    pub(crate) satb: Arc<SatbQueue>,
    /// Held by the marking thread while it marks a step, and by every pause.
    work: Mutex<()>,
    /// Set while a pause waits for `work`: the thread yields it.
    yield_requested: AtomicBool,
    state: Mutex<CycleState>,
    /// Signalled when a cycle ends.
    ended: Condvar,
    /// Held by [`MarkingHold`]s: the thread waits for it before each step.
    gate: Arc<Mutex<()>>,
}

/// The cycle under way, if any.
#[derive(Default)]
struct CycleState {
    /// Bumped when a cycle starts or is abandoned: a thread whose epoch is
    /// not current stops.
    epoch: u64,
    /// The grey objects of the initial mark, for the thread to take.
    grey: Vec<ObjectRef>,
    cause: Option<GcCause>,
    started: Option<Instant>,
    /// Old-generation bytes allocated (`HeapInner::allocated`) at the
    /// initial mark: what is allocated after it is black.
    allocated_at_start: usize,
    heap_before: usize,
    /// The runs awaiting their sweep, one set per block set
    /// ([`HeapInner::block_sets`] order); empty outside the sweep.
    sweeping: Vec<SweepSet>,
    /// What the cycle has freed so far.
    swept: Swept,
}

/// One step of a cycle's thread: it holds the gate, the work lock and the
/// cycle's state.
struct Step<'a> {
    _gate: MutexGuard<'a, ()>,
    work: MutexGuard<'a, ()>,
    state: MutexGuard<'a, CycleState>,
}

impl Step<'_> {
    /// Ends the step: a waiting pause gets the work lock before the thread
    /// takes it again.
    fn end(self) {
        drop(self.state);
        MutexGuard::unlock_fair(self.work);
    }
}

/// A pause's hold on the marking thread: it marks nothing while this lives.
pub(crate) struct PauseGuard<'a> {
    _work: MutexGuard<'a, ()>,
    concurrent: &'a Concurrent,
}

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        self.concurrent.yield_requested.store(false, Relaxed);
    }
}

/// Keeps the marking thread of `gen-concurrent` from taking its next step
/// while it lives (see [`Heap::hold_marking`](crate::Heap::hold_marking)).
pub struct MarkingHold {
    gate: Arc<Mutex<()>>,
}

impl MarkingHold {
    fn new(gate: Arc<Mutex<()>>) -> MarkingHold {
        std::mem::forget(gate.lock());
        MarkingHold { gate }
    }
}

impl Drop for MarkingHold {
    fn drop(&mut self) {
        // SAFETY: `new` locked the gate and forgot the guard; this hold is
        // the one that owns that lock.
        unsafe { self.gate.force_unlock() };
    }
}

impl Concurrent {
    pub(crate) fn new() -> Concurrent {
        Concurrent {
            marking: Box::new(AtomicBool::new(false)),
            active: AtomicBool::new(false),
            satb: Arc::new(SatbQueue::new()),
            work: Mutex::new(()),
            yield_requested: AtomicBool::new(false),
            state: Mutex::new(CycleState::default()),
            ended: Condvar::new(),
            gate: Arc::new(Mutex::new(())),
        }
    }

    /// The flag the SATB barrier tests.
    pub(crate) fn marking_flag(&self) -> &AtomicBool {
        &self.marking
    }

    /// Whether the SATB barrier is on (a cycle is marking).
    #[inline(always)]
    pub(crate) fn is_marking(&self) -> bool {
        self.marking.load(Relaxed)
    }

    /// Whether a cycle is under way.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Relaxed)
    }

    /// With the world stopped: makes the marking thread stop between two
    /// steps until the guard is dropped.
    pub(crate) fn pause(&self) -> PauseGuard<'_> {
        self.yield_requested.store(true, Relaxed);
        PauseGuard {
            _work: self.work.lock(),
            concurrent: self,
        }
    }

    /// A hold on the marking thread (for tests and debugging).
    pub(crate) fn hold(&self) -> MarkingHold {
        MarkingHold::new(self.gate.clone())
    }

    /// Waits until no cycle is under way.
    pub(crate) fn wait_idle(&self) {
        let mut state = self.state.lock();
        while self.is_active() {
            self.ended.wait(&mut state);
        }
    }

    /// Begins a step of the thread of cycle `epoch`: waits for holds and
    /// pauses to end; `None` if the cycle was abandoned meanwhile.
    fn begin_step(&self, epoch: u64) -> Option<Step<'_>> {
        let gate = self.gate.lock();
        let work = self.work.lock();
        let state = self.state.lock();
        (state.epoch == epoch).then_some(Step {
            _gate: gate,
            work,
            state,
        })
    }

    /// Calls `f` with the runs awaiting their sweep (none outside a
    /// cycle's sweep).
    pub(crate) fn with_unswept<R>(&self, f: impl FnOnce(&[SweepSet]) -> R) -> R {
        f(&self.state.lock().sweeping)
    }

    /// Ends the cycle (under the state lock): wakes the waiters.
    fn end(&self, state: &mut CycleState) {
        state.epoch += 1;
        state.grey = Vec::new();
        debug_assert!(state.sweeping.iter().all(SweepSet::is_empty));
        state.sweeping = Vec::new();
        self.marking.store(false, Relaxed);
        self.active.store(false, Relaxed);
        self.ended.notify_all();
    }

    /// In a pause: abandons the cycle under way, if it is marking — the
    /// barrier goes off, logged references are dropped and every mark is
    /// cleared — and returns true. A cycle that is sweeping is not
    /// abandoned: its sweep is finished here (so that the bitmap is clear
    /// for a full collection) and its thread ends it.
    pub(crate) fn abandon<V: VM>(
        &self,
        heap: &HeapInner<V>,
        world: &mut StoppedWorld<'_, MutatorState<V>>,
    ) -> bool {
        if !self.is_marking() {
            if self.is_active() {
                sweep_step(heap, &mut self.state.lock(), usize::MAX);
            }
            return false;
        }
        tracing::debug!("concurrent cycle abandoned");
        self.end(&mut self.state.lock());
        world.for_each_mutator(|state| drop(state.satb.take()));
        self.satb.clear();
        let (base, _) = heap.spaces.pools().pool_area();
        let top = heap.spaces.pools().high_water();
        heap.bitmap.clear_range(base, top.saturating_sub(base));
        true
    }
}

/// At the end of a young collection (eden empty, the world stopped, every
/// TLAB retired): the initial mark of a cycle for `cause`; starts the
/// marking thread.
pub(crate) fn initial_mark<V: VM>(
    heap: &HeapInner<V>,
    world: &mut StoppedWorld<'_, MutatorState<V>>,
    cause: GcCause,
) {
    let concurrent = heap.concurrent.as_ref().expect("a gen-concurrent heap");
    let young = heap.young.as_ref().expect("a generational heap");
    debug_assert!(!concurrent.is_active());
    let mut roots = mark_roots(heap, world, MarkScope::old_only(&heap.bitmap, young));
    let scan_young = |object: ObjectRef, header, _size| {
        V::Scanning::scan_object(object, header, &mut roots);
        if let Some((_, offset)) = V::ObjectModel::reference(object, header) {
            // SAFETY: the referent slot is a word inside the object; the
            // world is stopped.
            let referent = unsafe { ((object.addr() + offset) as *const Option<ObjectRef>).read() };
            if let Some(referent) = referent {
                roots.mark(referent);
            }
        }
    };
    // SAFETY: the world is stopped and every TLAB and copying buffer
    // retired (the caller's contract).
    unsafe { young.walk::<V>(scan_young) };

    let epoch = {
        let mut state = concurrent.state.lock();
        state.epoch += 1;
        state.grey = roots.grey;
        state.cause = Some(cause);
        state.started = Some(Instant::now());
        state.allocated_at_start = heap.allocated.load(Relaxed);
        state.heap_before = heap.used();
        state.swept = Swept::default();
        state.epoch
    };
    concurrent.active.store(true, Relaxed);
    concurrent.marking.store(true, Relaxed);
    let me = heap.me.upgrade().expect("a heap in use is alive");
    let spawned = std::thread::Builder::new()
        .name("rtmem-gc-concurrent".into())
        .spawn(move || run(me, epoch));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the concurrent marking thread; cycle abandoned");
        concurrent.abandon(heap, world);
    }
}

/// The marking thread of one cycle: marks, asks for the mutators' buffers,
/// remarks and sweeps. Stops early if the cycle is abandoned.
fn run<V: VM>(heap: Arc<HeapInner<V>>, epoch: u64) {
    let _span = tracing::info_span!("concurrent-cycle", epoch).entered();
    let concurrent = heap.concurrent.as_ref().expect("a gen-concurrent heap");
    let young = heap.young.as_ref().expect("a generational heap");
    let scope = MarkScope::old_only(&heap.bitmap, young);
    let mut timer = PhaseTimer::start();
    timer.concurrent_phase("mark");
    let mut marker = Marker::<V>::new(scope);
    let mut stack = Vec::new();
    let mut handshakes = 0;
    let yield_requested = || concurrent.yield_requested.load(Relaxed);
    loop {
        {
            let Some(mut step) = concurrent.begin_step(epoch) else {
                return;
            };
            stack.append(&mut step.state.grey);
            grey_logged(scope, concurrent.satb.take_all(), &mut stack);
            let drained = marker.trace_until(&mut stack, yield_requested);
            step.end();
            if !drained || !concurrent.satb.is_empty() {
                continue;
            }
        }
        if handshakes == MAX_HANDSHAKES {
            break;
        }
        handshakes += 1;
        let queue = concurrent.satb.clone();
        heap.safepoints
            .handshake(None, move |state: &mut MutatorState<V>| {
                state.satb.hand_off(&queue)
            });
        if concurrent.satb.is_empty() {
            break;
        }
    }
    let timer = {
        let _gate = concurrent.gate.lock();
        let mut world = heap.safepoints.stop_the_world(None);
        let _work = concurrent.work.lock();
        if concurrent.state.lock().epoch != epoch {
            return;
        }
        remark(&heap, &mut world, timer, marker, stack)
    };

    loop {
        let Some(mut step) = concurrent.begin_step(epoch) else {
            return;
        };
        let state = &mut *step.state;
        if sweep_step(&heap, state, RUNS_PER_STEP) {
            let record = CollectionRecord {
                start: heap
                    .stats
                    .since_created(state.started.expect("a cycle has a start")),
                heap_before: state.heap_before,
                heap_after: heap.used(),
                freed_bytes: state.swept.bytes,
                objects_freed: state.swept.objects,
                ..CollectionRecord::new(
                    CollectionKind::ConcurrentCycle,
                    state.cause.expect("a cycle has a cause"),
                    timer.finish(),
                )
            };
            tracing::debug!(freed = state.swept.bytes, "concurrent cycle done");
            heap.stats.record(record);
            concurrent.end(state);
            return;
        }
        step.end();
    }
}

/// Sweeps up to `max_runs` runs of each set awaiting its sweep; returns
/// whether none is left.
fn sweep_step<V: VM>(heap: &HeapInner<V>, state: &mut CycleState, max_runs: usize) -> bool {
    let bitmap = &heap.bitmap;
    let mut swept = Swept::default();
    for (blocks, set) in heap.block_sets().into_iter().zip(&mut state.sweeping) {
        swept += blocks.small().sweep_detached(
            set,
            max_runs,
            |block, _| bitmap.is_marked(block.as_ptr() as usize),
            |start, len| bitmap.clear_range(start, len),
        );
    }
    state.swept += swept;
    state.sweeping.iter().all(SweepSet::is_empty)
}

/// Marks the logged objects not marked yet and adds them to `stack`.
fn grey_logged(scope: MarkScope<'_>, logged: Vec<ObjectRef>, stack: &mut Vec<ObjectRef>) {
    stack.extend(logged.into_iter().filter(|o| scope.mark(o.addr())));
}

/// The remark pause; the world is stopped and the marking thread's work is
/// in `marker` and `stack`. Sets the runs of slots apart for the sweep that
/// follows and returns the cycle's timer, in its `sweep` phase.
fn remark<V: VM>(
    heap: &HeapInner<V>,
    world: &mut StoppedWorld<'_, MutatorState<V>>,
    mut timer: PhaseTimer,
    marker: Marker<'_, V>,
    mut stack: Vec<ObjectRef>,
) -> PhaseTimer {
    let concurrent = heap.concurrent.as_ref().expect("a gen-concurrent heap");
    let young = heap.young.as_ref().expect("a generational heap");
    let scope = MarkScope::old_only(&heap.bitmap, young);
    let (cause, allocated_at_start, heap_before) = {
        let state = concurrent.state.lock();
        (
            state.cause.expect("a cycle has a cause"),
            state.allocated_at_start,
            state.heap_before,
        )
    };
    let index = heap.stats.gc_count();
    timer.phase("remark");
    heap.flush_mutators(world);
    heap.verify_if_asked(world, &mut timer, index, cause, "before");
    timer.phase("remark");
    let mut logged = concurrent.satb.take_all();
    world.for_each_mutator(|state| logged.append(&mut state.satb.take()));
    grey_logged(scope, logged, &mut stack);
    let mut traced = marker.into_traced();
    traced.merge(trace::<V>(scope, heap.config.gc_workers, stack));
    process_references(heap, scope, &mut traced, false);
    timer.phase("weak-tables");
    process_weak_tables(heap, scope);
    concurrent.marking.store(false, Relaxed);

    timer.phase("sweep-start");
    let swept = sweep_blocks(heap);
    let sets: Vec<SweepSet> = heap
        .block_sets()
        .into_iter()
        // SAFETY: the world is stopped and every mutator's runs flushed
        // (above); the young collections' promotion handles are flushed
        // when each ends.
        .map(|blocks| unsafe { blocks.small().detach_for_sweep() })
        .collect();
    {
        let mut state = concurrent.state.lock();
        state.swept += swept;
        state.sweeping = sets;
    }
    let black = heap
        .allocated
        .load(Relaxed)
        .saturating_sub(allocated_at_start);
    let live = traced.bytes + black;
    heap.marked_live(live, heap_before);
    heap.verify_if_asked(world, &mut timer, index, cause, "after");
    tracing::debug!(live, "remark done; sweeping");
    timer.concurrent_phase("sweep");
    timer
}
