//! `Heap`: the object heap of one runtime — its spaces, mutators, collector,
//! trigger, statistics and finalization queues.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use rtmem_base::{AllocError, Mutex, SpaceType};
use rtmem_spaces::{SlotsAndBlocks, Spaces};

use crate::barrier::BarrierSet;
use crate::bitmap::MarkBitmap;
use crate::card::CardTable;
use crate::concurrent::{Concurrent, MarkingHold, PauseGuard};
use crate::config::GcConfig;
use crate::mutator::{Mutator, MutatorState};
use crate::object::{HEADER_BYTES, ObjectRef};
use crate::safepoint::{SafepointHandle, Safepoints, StoppedWorld};
use crate::stats::{GcKind, GcStats, GcSummary};
use crate::trigger::Trigger;
use crate::verify::{VerifyError, VerifyReport};
use crate::vm::VM;
use crate::young::Young;

/// The object heap of one runtime, collected by the collector its
/// [`GcConfig`] names. Cloning gives another handle on the same heap.
///
/// Runtime threads [`register`](Heap::register) to get a [`Mutator`], which
/// allocates and polls safepoints. Any thread may ask for a collection:
/// a mutator with [`Mutator::collect`], another thread with
/// [`Heap::collect`].
pub struct Heap<V: VM> {
    pub(crate) inner: Arc<HeapInner<V>>,
}

impl<V: VM> Clone for Heap<V> {
    fn clone(&self) -> Self {
        Heap {
            inner: self.inner.clone(),
        }
    }
}

/// Objects the collector has handed to the runtime, and objects registered
/// for finalization. Everything in `to_finalize` and `phantoms` is a root
/// until the runtime takes it.
#[derive(Default)]
pub(crate) struct Queues {
    /// Registered for finalization and not yet found unreachable.
    pub(crate) registered: Vec<ObjectRef>,
    /// Found unreachable, resurrected, waiting for the runtime to finalize.
    pub(crate) to_finalize: Vec<ObjectRef>,
    /// Phantom reference objects whose referent died, for the runtime.
    pub(crate) phantoms: Vec<ObjectRef>,
}

pub(crate) struct HeapInner<V: VM> {
    /// The heap itself, for the concurrent marking thread to hold.
    pub(crate) me: Weak<HeapInner<V>>,
    pub(crate) vm: V,
    pub(crate) spaces: Arc<Spaces>,
    pub(crate) config: GcConfig,
    pub(crate) safepoints: Safepoints<MutatorState<V>>,
    pub(crate) bitmap: MarkBitmap,
    pub(crate) trigger: Trigger,
    pub(crate) stats: GcStats,
    pub(crate) queues: Mutex<Queues>,
    pub(crate) barriers: BarrierSet,
    /// The young generation (generational collectors).
    pub(crate) young: Option<Young>,
    /// The card table over the pool area (generational collectors).
    pub(crate) cards: Option<CardTable>,
    /// The concurrent cycles' state (`gen-concurrent`).
    pub(crate) concurrent: Option<Concurrent>,
    /// Set when eden could not be emptied for lack of room to promote:
    /// mutators then allocate in the tenured generation instead of asking
    /// for young collections, until a full collection makes room.
    pub(crate) eden_blocked: AtomicBool,
    /// Object bytes allocated outside the young generation since the last
    /// full collection, promotions included (mutators report in chunks;
    /// the collector adds what they hold when the world stops).
    pub(crate) allocated: AtomicUsize,
    /// Object bytes marked live by the last full collection.
    pub(crate) live: AtomicUsize,
    /// The most object bytes in use seen at once.
    pub(crate) peak: AtomicUsize,
    /// Mark-bitmap and card-table bytes accounted as the object space's
    /// metadata.
    pub(crate) side_tables_accounted: AtomicUsize,
    /// Stop-the-world collections run by [`collect`](Self::collect).
    pauses: AtomicUsize,
}

impl<V: VM> Heap<V> {
    /// A heap over `spaces` for the runtime `vm`.
    ///
    /// Errors: [`AllocError::BadLayout`] if the configuration is
    /// inconsistent (no GC worker, a card size that is not a power of two
    /// from 64 to 4096); the kernel's error if the side tables
    /// cannot be reserved; the object space's error if it cannot hold the
    /// young generation.
    pub fn new(spaces: Arc<Spaces>, config: GcConfig, vm: V) -> Result<Heap<V>, AllocError> {
        if config.gc_workers == 0 {
            return Err(AllocError::bad_layout(
                0,
                1,
                "gc_workers must be at least 1 (the collecting thread marks too)",
            ));
        }
        spaces.pools().stats().set_object_header_bytes(HEADER_BYTES);
        let (base, len) = spaces.pools().pool_area();
        let bitmap = MarkBitmap::new(base, len)?;
        let (young, cards) = if config.kind.is_generational() {
            (
                Some(Young::new(spaces.pools(), config.heap.young)?),
                Some(CardTable::new(base, len, config.heap.card_size)?),
            )
        } else {
            (None, None)
        };
        let heap_limit = spaces.pools().limit(SpaceType::Object);
        let trigger =
            Trigger::new(config.trigger, heap_limit).with_stress_every(config.stress_every);
        let concurrent = (config.kind == GcKind::GenConcurrent).then(Concurrent::new);
        tracing::debug!(collector = %config.kind, workers = config.gc_workers, "heap created");
        Ok(Heap {
            inner: Arc::new_cyclic(|me| HeapInner {
                me: me.clone(),
                vm,
                barriers: BarrierSet::for_collector(
                    config.kind,
                    cards.as_ref(),
                    concurrent.as_ref().map(Concurrent::marking_flag),
                ),
                young,
                cards,
                concurrent,
                eden_blocked: AtomicBool::new(false),
                stats: GcStats::new(config.kind),
                safepoints: Safepoints::new(),
                queues: Mutex::new(Queues::default()),
                allocated: AtomicUsize::new(0),
                live: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                side_tables_accounted: AtomicUsize::new(0),
                pauses: AtomicUsize::new(0),
                spaces,
                config,
                bitmap,
                trigger,
            }),
        })
    }

    /// Registers the calling thread as a mutator with its roots (frames,
    /// registers, handles), which the collector scans while the world is
    /// stopped. Keep the mutator on one thread at a time (it is `Send`).
    pub fn register(&self, roots: V::MutatorRoots) -> Mutator<V> {
        Mutator::new(self.clone(), roots)
    }

    /// The runtime's binding.
    pub fn vm(&self) -> &V {
        &self.inner.vm
    }

    /// The spaces the heap allocates in.
    pub fn spaces(&self) -> &Arc<Spaces> {
        &self.inner.spaces
    }

    /// The configuration.
    pub fn config(&self) -> &GcConfig {
        &self.inner.config
    }

    /// The barriers mutators apply, and the facts a JIT inlines them from.
    pub fn barriers(&self) -> &BarrierSet {
        &self.inner.barriers
    }

    /// Collects now, from a thread that is **not** a registered mutator (a
    /// mutator calls [`Mutator::collect`] instead: this call would wait for
    /// it to reach a safepoint forever). Returns whether a collection ran
    /// (never for epsilon).
    pub fn collect(&self, cause: crate::stats::GcCause) -> bool {
        self.inner.collect(None, cause)
    }

    /// Asks for a collection that mutators start at their next allocation
    /// slow path (an explicit or idle request from any thread).
    pub fn request(&self, cause: crate::stats::GcCause) {
        self.inner.trigger.request(cause);
    }

    /// Checks every object and every root (from a thread that is not a
    /// registered mutator; see [`Mutator::verify`]).
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        let (mut world, _pause) = self.inner.stop_the_world(None);
        self.inner.verify_stopped(&mut world)
    }

    /// Keeps `gen-concurrent`'s marking thread from taking its next step
    /// while the hold lives (`None` for the other collectors): cycles still
    /// start, but marking makes no progress and no remark runs. For tests
    /// that need a mutator to act in the middle of marking, and for
    /// debugging.
    pub fn hold_marking(&self) -> Option<MarkingHold> {
        self.inner.concurrent.as_ref().map(Concurrent::hold)
    }

    /// Whether a concurrent cycle (`gen-concurrent`) is under way.
    pub fn concurrent_cycle_active(&self) -> bool {
        self.inner
            .concurrent
            .as_ref()
            .is_some_and(Concurrent::is_active)
    }

    /// Waits until no concurrent cycle is under way (returns at once for
    /// the other collectors). A registered mutator calls
    /// [`Mutator::await_concurrent_cycle`] instead: the cycle's remark pause
    /// waits for it to reach a safepoint.
    pub fn await_concurrent_cycle(&self) {
        if let Some(concurrent) = &self.inner.concurrent {
            concurrent.wait_idle();
        }
    }

    /// Takes the objects that died and were resurrected for finalization,
    /// in the order they were found. They stay alive until the runtime drops
    /// its references: keep them in root slots while finalizing.
    pub fn take_finalizable(&self) -> Vec<ObjectRef> {
        std::mem::take(&mut self.inner.queues.lock().to_finalize)
    }

    /// Takes the phantom reference objects whose referent died (and was
    /// finalized, if it was finalizable); their referent slot is now null.
    pub fn take_phantoms(&self) -> Vec<ObjectRef> {
        std::mem::take(&mut self.inner.queues.lock().phantoms)
    }

    /// Statistics of every collection so far.
    pub fn stats(&self) -> &GcStats {
        &self.inner.stats
    }

    /// The totals: collections, pauses (max, p50, p99, total), bytes freed.
    pub fn summary(&self) -> GcSummary {
        self.inner.stats.summary()
    }

    /// Object bytes in use: live after the last collection plus what
    /// mutators reported allocating since (they report in chunks of
    /// [`Mutator::REPORT_BYTES`]), plus the young generation's use.
    pub fn used_bytes(&self) -> usize {
        self.inner.used()
    }

    /// The most object bytes in use seen at once (at a collection or a
    /// mutator's report).
    pub fn peak_bytes(&self) -> usize {
        self.inner.peak.load(Relaxed).max(self.inner.used())
    }

    /// How many mutators are registered.
    pub fn mutator_count(&self) -> usize {
        self.inner.safepoints.mutator_count()
    }

    /// The fixed per-object and per-heap-byte costs of this heap.
    pub fn footprint(&self) -> HeapFootprint {
        HeapFootprint {
            header_bytes_per_object: HEADER_BYTES,
            mark_bitmap_bytes_per_heap_byte: 1.0 / 64.0,
            card_table_bytes_per_heap_byte: self
                .inner
                .cards
                .as_ref()
                .map_or(0.0, |c| 1.0 / c.card_size() as f64),
            metadata_bytes: self.inner.side_tables_accounted.load(Relaxed),
        }
    }
}

/// What the collector costs in memory beyond the objects themselves, for a
/// runtime budgeting its footprint.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct HeapFootprint {
    /// Header bytes every object carries (one word).
    pub header_bytes_per_object: usize,
    /// Mark-bitmap bytes per committed heap byte (one bit per 8 bytes).
    pub mark_bitmap_bytes_per_heap_byte: f64,
    /// Card-table bytes per committed heap byte (generational collectors).
    pub card_table_bytes_per_heap_byte: f64,
    /// Side-metadata bytes accounted now (also in `MemStats` as the object
    /// space's metadata).
    pub metadata_bytes: usize,
}

impl<V: VM> HeapInner<V> {
    /// Object bytes in use, young generation included.
    pub(crate) fn used(&self) -> usize {
        self.old_used() + self.young.as_ref().map_or(0, Young::used)
    }

    /// Object bytes in use outside the young generation: what triggers a
    /// full collection.
    pub(crate) fn old_used(&self) -> usize {
        self.live.load(Relaxed) + self.allocated.load(Relaxed)
    }

    /// Adds a mutator's report of bytes allocated outside the young
    /// generation; returns the old generation's use.
    pub(crate) fn report_allocated(&self, bytes: usize) -> usize {
        self.allocated.fetch_add(bytes, Relaxed);
        self.peak.fetch_max(self.used(), Relaxed);
        self.old_used()
    }

    /// With the world stopped: [flushes](MutatorState::flush) every
    /// mutator and reports its unreported bytes.
    pub(crate) fn flush_mutators(&self, world: &mut StoppedWorld<'_, MutatorState<V>>) {
        world.for_each_mutator(|state| {
            self.report_allocated(state.flush(self.young.as_ref()));
        });
    }

    /// After a marking of the old generation found `live` bytes live (with
    /// `before` in use when it began): the old generation's use, the peak,
    /// the trigger's next threshold and the side tables' accounting.
    pub(crate) fn marked_live(&self, live: usize, before: usize) {
        self.live.store(live, Relaxed);
        self.allocated.store(0, Relaxed);
        self.peak.fetch_max(before, Relaxed);
        self.trigger.collected(live);
        self.account_side_tables();
    }

    /// Whether a concurrent cycle is marking: the SATB barrier is on and
    /// old allocations and promotions are allocated black.
    #[inline(always)]
    pub(crate) fn marking(&self) -> bool {
        self.concurrent.as_ref().is_some_and(Concurrent::is_marking)
    }

    /// Stops the world (with `requester` taking part) and holds the
    /// concurrent marking thread, if any, until both are dropped.
    pub(crate) fn stop_the_world<'a>(
        &'a self,
        requester: Option<&'a mut SafepointHandle<MutatorState<V>>>,
    ) -> (StoppedWorld<'a, MutatorState<V>>, Option<PauseGuard<'a>>) {
        let world = self.safepoints.stop_the_world(requester);
        let pause = self.concurrent.as_ref().map(Concurrent::pause);
        (world, pause)
    }

    /// What the trigger asks for with `old_used` bytes in the old
    /// generation — except a heap-size collection while a concurrent cycle
    /// is under way (the cycle is that collection).
    pub(crate) fn collection_wanted(&self, old_used: usize) -> Option<crate::stats::GcCause> {
        use crate::stats::GcCause;
        let cause = self.trigger.should_collect(old_used)?;
        let cycle = self.concurrent.as_ref().is_some_and(Concurrent::is_active);
        let heap_size = matches!(cause, GcCause::HeapOccupancy | GcCause::AdaptiveGrowth);
        (!(cycle && heap_size)).then_some(cause)
    }

    /// Stops the world (with `requester` taking part) and collects, unless
    /// the collector is epsilon, or another thread ran a stop-the-world
    /// collection while this one waited (then its work is done, except for
    /// allocation failures and explicit requests, which collect again; a
    /// concurrent cycle's remark does not count: it empties no eden).
    pub(crate) fn collect(
        &self,
        requester: Option<&mut SafepointHandle<MutatorState<V>>>,
        cause: crate::stats::GcCause,
    ) -> bool {
        use crate::stats::GcCause;
        if self.config.kind == GcKind::Epsilon {
            return false;
        }
        let seen = self.pauses.load(Relaxed);
        let (mut world, _pause) = self.stop_the_world(requester);
        if self.pauses.load(Relaxed) != seen
            && !matches!(cause, GcCause::AllocationFailure | GcCause::Explicit)
        {
            return false;
        }
        match self.config.kind {
            GcKind::Stw => crate::mark_sweep::collect(self, &mut world, cause),
            _ => crate::generational::collect(self, &mut world, cause),
        }
        self.pauses.fetch_add(1, Relaxed);
        true
    }

    /// The non-moving block allocators of the managed spaces (runs of slots
    /// and a free list each): the tenured generation and the non-moving
    /// space. The humongous space's large objects come on top.
    pub(crate) fn block_sets(&self) -> [&SlotsAndBlocks; 2] {
        [
            self.spaces.object().tenured(),
            self.spaces.non_moving().objects(),
        ]
    }

    /// Brings the side tables' share of committed heap memory (the mark
    /// bitmap, the card table) into the object space's metadata in
    /// `MemStats`.
    pub(crate) fn account_side_tables(&self) {
        let pools = self.spaces.pools();
        let stats = pools.stats();
        let committed: u64 = SpaceType::MANAGED
            .iter()
            .map(|&s| stats.space(s).committed)
            .sum();
        let committed = committed as usize;
        let now = MarkBitmap::metadata_bytes_for(committed)
            + self
                .cards
                .as_ref()
                .map_or(0, |c| c.metadata_bytes_for(committed));
        let before = self.side_tables_accounted.swap(now, Relaxed);
        if now > before {
            stats.record_metadata(SpaceType::Object, now - before);
        } else {
            stats.release_metadata(SpaceType::Object, before - now);
        }
    }
}

impl<V: VM> Drop for HeapInner<V> {
    fn drop(&mut self) {
        let accounted = self.side_tables_accounted.load(Relaxed);
        self.spaces
            .pools()
            .stats()
            .release_metadata(SpaceType::Object, accounted);
    }
}
