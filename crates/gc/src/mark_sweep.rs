//! The stop-the-world mark-sweep collection (`stw`), also the full
//! collection of the generational collectors to come.
//!
//! With the world stopped: verify (if asked); mark from every mutator's
//! roots, the global roots and the finalization queues, in parallel;
//! process references; let the runtime clean its weak tables; sweep every
//! object allocator with the mark bitmap (clearing it as it goes); verify
//! again; record the collection. Every phase runs in a `tracing` span.

use std::ptr::NonNull;

use rtmem_base::Swept;

use crate::heap::HeapInner;
use crate::mark::{Discovered, MarkScope, RootMarker, Traced, trace};
use crate::mutator::MutatorState;
use crate::object::{ObjectRef, set_finalizable};
use crate::safepoint::StoppedWorld;
use crate::stats::{CollectionKind, CollectionRecord, GcCause, PhaseTimer};
use crate::vm::{Collection, ReferenceKind, Scanning, VM};

/// Runs one full collection; the world is stopped.
pub(crate) fn collect<V: VM>(
    heap: &HeapInner<V>,
    world: &mut StoppedWorld<'_, MutatorState<V>>,
    cause: GcCause,
) {
    let mut timer = PhaseTimer::start();
    let started = timer.started();
    let index = heap.stats.gc_count();
    let _span = tracing::info_span!("gc", index, cause = cause.name()).entered();
    heap.flush_mutators(world);
    let before = heap.used();
    heap.verify_if_asked(world, &mut timer, index, cause, "before");

    timer.phase("mark-roots");
    let scope = MarkScope::all(&heap.bitmap);
    let roots = mark_roots(heap, world, scope);

    timer.phase("mark");
    let workers = heap.config.gc_workers;
    let mut traced = trace::<V>(scope, workers, roots.grey);

    timer.phase("references");
    let clear_soft = matches!(
        cause,
        GcCause::AllocationFailure | GcCause::ConcurrentModeFailure
    );
    process_references(heap, scope, &mut traced, clear_soft);

    timer.phase("weak-tables");
    process_weak_tables(heap, scope);
    let bitmap = &heap.bitmap;

    timer.phase("sweep");
    let swept = sweep(heap);
    let live = traced.bytes;
    heap.marked_live(live, before);
    if let Some(young) = &heap.young {
        // Young objects were marked to trace through them; they are not
        // swept (a young collection empties their regions), but the dead
        // ones become fillers: they may reference old objects just freed.
        // SAFETY: the world is stopped and every TLAB retired; unmarked
        // objects are unreachable.
        unsafe { young.fill_dead::<V>(|object| bitmap.is_marked(object.addr())) };
        for (start, len) in young.ranges() {
            bitmap.clear_range(start, len);
        }
    }

    heap.verify_if_asked(world, &mut timer, index, cause, "after");
    let record = CollectionRecord {
        start: heap.stats.since_created(started),
        heap_before: before,
        heap_after: live,
        freed_bytes: before.saturating_sub(live),
        objects_freed: swept.objects,
        ..CollectionRecord::new(CollectionKind::Full, cause, timer.finish())
    };
    heap.stats.record(record);
}

/// Marks the roots in `scope`: every mutator's, the global ones, and the
/// objects waiting in the finalization and phantom queues.
pub(crate) fn mark_roots<'a, V: VM>(
    heap: &HeapInner<V>,
    world: &mut StoppedWorld<'_, MutatorState<V>>,
    scope: MarkScope<'a>,
) -> RootMarker<'a> {
    let mut roots = RootMarker::new(scope);
    world.for_each_mutator(|state| V::Scanning::scan_mutator_roots(&mut state.roots, &mut roots));
    V::Scanning::scan_global_roots(&heap.vm, &mut roots);
    let queues = heap.queues.lock();
    for &object in queues.to_finalize.iter().chain(&queues.phantoms) {
        roots.mark(object);
    }
    roots
}

/// Weak, soft and phantom references, and finalization, in Java's order:
///
/// 1. soft referents are kept alive (traced) unless `clear_soft`;
/// 2. weak and soft references whose referent is unmarked are cleared;
/// 3. registered finalizable objects that are unmarked are resurrected
///    (traced), lose their registration and go on the finalization queue;
///    weak and soft references found only now are cleared like in 2;
/// 4. phantom references whose referent is still unmarked are cleared and
///    queued for the runtime (a finalizable referent was resurrected in 3,
///    so its phantoms wait for the collection after its finalization).
///
/// Out of `scope` (young objects, for a concurrent cycle) means live.
pub(crate) fn process_references<V: VM>(
    heap: &HeapInner<V>,
    scope: MarkScope<'_>,
    traced: &mut Traced,
    clear_soft: bool,
) {
    let workers = heap.config.gc_workers;
    let dead = |r: &Discovered| r.referent().is_some_and(|o| !scope.is_live(o.addr()));
    let mut found = std::mem::take(&mut traced.discovered);
    let mut pending = found.clone();
    while !clear_soft && !pending.is_empty() {
        let mut soft = RootMarker::new(scope);
        for r in pending.iter().filter(|r| r.kind == ReferenceKind::Soft) {
            if let Some(o) = r.referent() {
                soft.mark(o);
            }
        }
        pending = traced.absorb(trace::<V>(scope, workers, soft.grey));
        found.extend_from_slice(&pending);
    }
    let clear_weak = |refs: &[Discovered]| {
        for r in refs.iter().filter(|r| r.kind != ReferenceKind::Phantom) {
            if dead(r) {
                r.clear();
            }
        }
    };
    clear_weak(&found);

    let mut queues = heap.queues.lock();
    let mut dying = RootMarker::new(scope);
    queues.registered.retain(|&o| !dying.mark(o));
    let grey = dying.grey;
    for &o in &grey {
        // SAFETY: a registered object is allocated; the world is stopped.
        unsafe { set_finalizable(o, false) };
    }
    queues.to_finalize.extend_from_slice(&grey);
    let resurrected = traced.absorb(trace::<V>(scope, workers, grey));
    clear_weak(&resurrected);
    found.extend(resurrected);

    for r in found.iter().filter(|r| r.kind == ReferenceKind::Phantom) {
        if dead(r) {
            r.clear();
            queues.phantoms.push(r.object);
        }
    }
}

/// Lets the runtime clean its weak tables: an entry survives if its key
/// is live in `scope`.
pub(crate) fn process_weak_tables<V: VM>(heap: &HeapInner<V>, scope: MarkScope<'_>) {
    V::Collection::process_weak_tables(&heap.vm, &|object: ObjectRef| {
        scope.is_live(object.addr()).then_some(object)
    });
}

/// Frees every unmarked object and clears the marks of the others.
pub(crate) fn sweep<V: VM>(heap: &HeapInner<V>) -> Swept {
    let bitmap = &heap.bitmap;
    let is_marked = |block: NonNull<u8>, _size: usize| bitmap.is_marked(block.as_ptr() as usize);
    let mut swept = Swept::default();
    for blocks in heap.block_sets() {
        // SAFETY: the world is stopped: no mutator allocates or frees, and
        // the closures only read and clear mark bits.
        swept += unsafe {
            blocks
                .small()
                .sweep_stopped(heap.config.gc_workers, is_marked, |start, len| {
                    bitmap.clear_range(start, len)
                })
        };
    }
    swept += sweep_blocks(heap);
    swept
}

/// The part of [`sweep`] outside the runs of slots: the free lists and the
/// large objects, visited one object at a time.
pub(crate) fn sweep_blocks<V: VM>(heap: &HeapInner<V>) -> Swept {
    let bitmap = &heap.bitmap;
    let unmark_if_marked = |block: NonNull<u8>, _size: usize| {
        let addr = block.as_ptr() as usize;
        let marked = bitmap.is_marked(addr);
        if marked {
            bitmap.unmark(addr);
        }
        marked
    };
    let mut swept = Swept::default();
    for blocks in heap.block_sets() {
        swept += blocks.medium().sweep(unmark_if_marked);
    }
    swept += heap.spaces.humongous().large().sweep(unmark_if_marked);
    swept
}
