//! The generational collectors: young collections that copy
//! ([`evacuate`](crate::evacuate)), and full collections — the
//! stop-the-world [mark-sweep](crate::mark_sweep) of the whole heap
//! followed by a young collection that empties eden. `gen-concurrent`
//! collects the old generation with [concurrent cycles](crate::concurrent)
//! instead, started by the young collection after which the old
//! generation's trigger fires; its full collections are the fallback.
//!
//! A young collection runs when eden is full (a mutator's TLAB cannot be
//! refilled) and in stress mode; a full collection when the old
//! generation's trigger fires (checked after every young collection, whose
//! promotions grow it, and at mutators' reports of direct old allocations),
//! on allocation failure and on explicit requests. A young collection
//! first checks that the object space has room to promote everything young
//! in the worst case; if not, it collects the whole heap instead, and if
//! even then there is no room the young generation stays as it is and
//! mutators allocate directly in the tenured generation until the next
//! full collection.

use std::sync::atomic::Ordering::Relaxed;

use rtmem_base::SpaceType;

use crate::evacuate::evacuate;
use crate::heap::HeapInner;
use crate::mutator::MutatorState;
use crate::object::ObjectRef;
use crate::safepoint::StoppedWorld;
use crate::stats::{CollectionKind, CollectionRecord, GcCause, PhaseTimer};
use crate::vm::{Collection, Scanning, SlotVisitor, VM};

/// Runs the collection `cause` calls for; the world is stopped.
pub(crate) fn collect<V: VM>(
    heap: &HeapInner<V>,
    world: &mut StoppedWorld<'_, MutatorState<V>>,
    cause: GcCause,
) {
    let concurrent = heap.concurrent.as_ref();
    let count = heap.stats.gc_count();
    // Stress alternates, so that every kind runs often: gen alternates young
    // and full collections; gen-concurrent runs young collections during
    // cycles and, between cycles, starts one or runs a full collection.
    let (young_only, start_cycle) = match (cause, concurrent) {
        (GcCause::YoungFull, _) => (true, false),
        (GcCause::Stress, None) => (count.is_multiple_of(2), false),
        (GcCause::Stress, Some(c)) if c.is_active() => (true, false),
        (GcCause::Stress, Some(_)) => (!count.is_multiple_of(3), true),
        (GcCause::HeapOccupancy | GcCause::AdaptiveGrowth, Some(_)) => (true, true),
        _ => (false, false),
    };
    if young_only && has_room_to_promote(heap) {
        young_collection(heap, world, cause, start_cycle);
        if concurrent.is_none()
            && let Some(cause) = heap.trigger.should_collect(heap.old_used())
        {
            full_collection(heap, world, cause);
        }
    } else {
        let abandoned = concurrent.is_some_and(|c| c.abandon(heap, world));
        let for_room = young_only || cause == GcCause::AllocationFailure;
        let cause = if abandoned && for_room {
            GcCause::ConcurrentModeFailure
        } else {
            cause
        };
        full_collection(heap, world, cause);
    }
}

/// Whether the object space can take every young object, if all were
/// promoted (with room for size-class rounding and partly used runs).
fn has_room_to_promote<V: VM>(heap: &HeapInner<V>) -> bool {
    let young = heap.young.as_ref().expect("a generational heap");
    let pools = heap.spaces.pools();
    let committed = pools.stats().space(SpaceType::Object).committed as usize;
    let room = pools.limit(SpaceType::Object).saturating_sub(committed);
    let slack = 2 << 20;
    room >= young.used() + young.used() / 2 + slack
}

/// Mark-sweep of the whole heap, then a young collection if there is room.
fn full_collection<V: VM>(
    heap: &HeapInner<V>,
    world: &mut StoppedWorld<'_, MutatorState<V>>,
    cause: GcCause,
) {
    crate::mark_sweep::collect(heap, world, cause);
    let room = has_room_to_promote(heap);
    if room {
        young_collection(heap, world, cause, false);
        // The full collection counted the young survivors as live already.
        heap.allocated.store(0, Relaxed);
    } else {
        tracing::debug!("no room to promote the young generation; eden stays full");
    }
    heap.eden_blocked.store(!room, Relaxed);
}

/// Visits the queues' objects (they are roots until the runtime takes them).
fn visit_queues<V: VM>(heap: &HeapInner<V>, visitor: &mut impl SlotVisitor) {
    let mut queues = heap.queues.lock();
    let queues = &mut *queues;
    for object in queues
        .registered
        .iter_mut()
        .chain(&mut queues.to_finalize)
        .chain(&mut queues.phantoms)
    {
        let mut slot = Some(*object);
        visitor.visit(&mut slot);
        *object = slot.expect("a visit never clears a root");
    }
}

/// Copies the young survivors; the world is stopped. For
/// `gen-concurrent`, then starts a cycle (initial mark) if none is under
/// way and `start_cycle` says so or the old generation's trigger fires.
fn young_collection<V: VM>(
    heap: &HeapInner<V>,
    world: &mut StoppedWorld<'_, MutatorState<V>>,
    cause: GcCause,
    start_cycle: bool,
) {
    let young = heap.young.as_ref().expect("a generational heap");
    let cards = heap.cards.as_ref().expect("a generational heap");
    let mut timer = PhaseTimer::start();
    let started = timer.started();
    let index = heap.stats.gc_count();
    let _span = tracing::info_span!("young-gc", index, cause = cause.name()).entered();
    heap.flush_mutators(world);
    let before = heap.used();
    let young_before = young.used();
    let objects_before = young.accounted_objects();
    heap.verify_if_asked(world, &mut timer, index, cause, "before");

    let done = evacuate(heap, young, cards, &mut timer, |evacuator| {
        world.for_each_mutator(|state| {
            V::Scanning::scan_mutator_roots(&mut state.roots, evacuator);
        });
        V::Scanning::scan_global_roots(&heap.vm, evacuator);
        visit_queues(heap, evacuator);
    });

    timer.phase("weak-tables");
    V::Collection::process_weak_tables(&heap.vm, &|object: ObjectRef| {
        if young.is_collected(object.addr()) {
            young.forwarded(object)
        } else {
            Some(object)
        }
    });
    // SAFETY: the world is stopped, the mutators' TLABs were retired and
    // the evacuators' buffers given back; every slot now references the
    // copies.
    unsafe { young.flip() };
    heap.allocated.fetch_add(done.promoted_bytes, Relaxed);
    heap.account_side_tables();
    if let Some(concurrent) = &heap.concurrent
        && !concurrent.is_active()
    {
        let cycle_cause = if start_cycle {
            Some(cause)
        } else {
            heap.trigger.threshold_reached(heap.old_used())
        };
        if let Some(cycle_cause) = cycle_cause {
            timer.phase("initial-mark");
            crate::concurrent::initial_mark(heap, world, cycle_cause);
        }
    }
    heap.verify_if_asked(world, &mut timer, index, cause, "after");

    let survived = done.survived_bytes + done.promoted_bytes;
    let record = CollectionRecord {
        start: heap.stats.since_created(started),
        heap_before: before,
        heap_after: heap.used(),
        freed_bytes: young_before.saturating_sub(survived),
        objects_freed: objects_before.saturating_sub(done.survived_objects + done.promoted_objects),
        promoted_bytes: done.promoted_bytes,
        ..CollectionRecord::new(CollectionKind::Young, cause, timer.finish())
    };
    tracing::debug!(
        survived = done.survived_bytes,
        promoted = done.promoted_bytes,
        "young collection done"
    );
    heap.stats.record(record);
}
