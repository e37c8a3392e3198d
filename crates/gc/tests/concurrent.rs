//! The concurrent generational collector (`gen-concurrent`) through the test
//! runtime, with the heap verifier on before and after every pause:
//!
//! - the classic lost-object case during concurrent marking (the only
//!   reference to an unmarked object moves from an unscanned object into an
//!   already-black one and the original is cleared): the SATB barrier keeps
//!   it, and the same interleaving *without* the barrier loses it — so the
//!   test can fail;
//! - a young object reachable only from an old one survives young
//!   collections that run in the middle of marking;
//! - a referent read during marking is kept alive (`keep_alive`);
//! - a full collection during a cycle abandons it (concurrent-mode failure
//!   when the heap is full), and nothing is lost;
//! - the barrier set gives a JIT the address of the marking flag.
//!
//! `Heap::hold_marking` stops the marking thread, so each interleaving is
//! deterministic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rtmem_base::{SpaceBudget, SpaceType};
use rtmem_gc::barrier::BarrierKinds;
use rtmem_gc::stats::CollectionKind;
use rtmem_gc::{GcCause, GcConfig, GcKind, Heap, Mutator, ObjectRef};
use rtmem_spaces::{Spaces, SpacesConfig};
use rtmem_testvm::{PAIR, TestMutator, TestVm, WEAK};

const MIB: usize = 1 << 20;

fn heap(object_limit: usize) -> Heap<TestVm> {
    heap_verifying(object_limit, true)
}

fn heap_verifying(object_limit: usize, verify: bool) -> Heap<TestVm> {
    let spaces = SpacesConfig::default().with_budget(
        SpaceType::Object,
        SpaceBudget::growing(4 * MIB, object_limit, 100),
    );
    let mut config = GcConfig {
        kind: GcKind::GenConcurrent,
        gc_workers: 2,
        verify,
        ..GcConfig::default()
    };
    config.heap.young = 2 * MIB;
    Heap::new(
        Arc::new(Spaces::new(spaces).unwrap()),
        config,
        TestVm::default(),
    )
    .unwrap()
}

/// A pair in the non-moving space: old from the start.
fn old_pair(m: &mut Mutator<TestVm>) -> ObjectRef {
    m.alloc_pinned(PAIR, 24).unwrap()
}

/// Starts a cycle (a young collection and its initial mark).
fn start_cycle(m: &mut Mutator<TestVm>) {
    assert!(m.collect(GcCause::HeapOccupancy));
    assert!(m.heap().concurrent_cycle_active(), "a cycle started");
}

/// Lets the held cycle finish and checks that it ended with a remark.
fn finish_cycle(m: &mut Mutator<TestVm>, hold: rtmem_gc::MarkingHold) {
    drop(hold);
    m.await_concurrent_cycle();
    assert!(!m.heap().concurrent_cycle_active());
    let last = m.heap().stats().last().unwrap();
    assert_eq!(last.kind, CollectionKind::ConcurrentCycle, "{last:?}");
    assert_eq!(last.pauses().count(), 1, "the remark: {last:?}");
}

/// The lost-object interleaving: `holder` (old, grey: not scanned yet)
/// holds the only reference to `target` (old, unmarked); the mutator copies
/// it into `black` (allocated during marking, never scanned) and clears
/// the holder's slot. `barrier` says whether the clearing store goes
/// through the barrier. Returns (black, target).
fn lose_an_object(m: &mut Mutator<TestVm>, barrier: bool) -> (ObjectRef, ObjectRef) {
    let holder = old_pair(m);
    let target = old_pair(m);
    m.set_left(holder, Some(target));
    m.push_root(Some(holder));
    let hold = m.heap().hold_marking().expect("gen-concurrent");
    start_cycle(m);
    let black = old_pair(m);
    m.push_root(Some(black));
    let moved = m.left(holder);
    m.set_left(black, moved);
    if barrier {
        m.set_left(holder, None);
    } else {
        // SAFETY: the holder's left slot (word 1); a store without the
        // barrier, as a runtime that forgot it would make.
        unsafe { ((holder.addr() + 8) as *mut Option<ObjectRef>).write(None) };
    }
    finish_cycle(m, hold);
    (black, target)
}

#[test]
fn the_satb_barrier_keeps_an_object_moved_behind_the_marker() {
    let heap = heap(64 * MIB);
    let mut m = heap.register(Default::default());
    let (black, target) = lose_an_object(&mut m, true);
    assert_eq!(m.left(black), Some(target));
    assert_eq!(m.tag(target), PAIR);
    let report = m.verify().unwrap();
    assert!(report.objects >= 3, "{report:?}");
}

#[test]
fn without_the_barrier_the_object_is_lost() {
    // The control: the same interleaving with a store that skips the
    // barrier frees the target while `black` references it. (Verifying
    // at the remark would stop the marking thread with that finding.)
    let heap = heap_verifying(64 * MIB, false);
    let mut m = heap.register(Default::default());
    let (black, target) = lose_an_object(&mut m, false);
    assert_eq!(m.left(black), Some(target));
    let err = m.verify().unwrap_err();
    assert!(
        err.to_string().contains(&format!("{:#x}", target.addr())),
        "{err}"
    );
}

#[test]
fn young_collections_during_marking_keep_old_to_young_references() {
    let heap = heap(64 * MIB);
    let mut m = heap.register(Default::default());
    let holder = old_pair(&mut m);
    m.push_root(Some(holder));
    let hold = heap.hold_marking().unwrap();
    start_cycle(&mut m);
    // A young object reachable only from the old holder, then young
    // collections in the middle of marking (and garbage between them).
    let young = m.pair(None, None).unwrap();
    let leaf = m.blob(b"survivor").unwrap();
    m.set_right(young, Some(leaf));
    m.set_left(holder, Some(young));
    for round in 0..4 {
        for _ in 0..2000 {
            m.pair(None, None).unwrap();
        }
        assert!(m.collect(GcCause::YoungFull));
        assert!(heap.concurrent_cycle_active(), "round {round}");
    }
    finish_cycle(&mut m, hold);
    let young = m.left(holder).unwrap();
    let leaf = m.right(young).unwrap();
    assert_eq!(m.bytes(leaf), b"survivor");
    m.verify().unwrap();
    // Marked promotions and the young objects were all kept; a second
    // cycle (nothing held) finds the same graph alive.
    start_cycle(&mut m);
    m.await_concurrent_cycle();
    assert_eq!(
        m.bytes(m.right(m.left(holder).unwrap()).unwrap()),
        b"survivor"
    );
    m.verify().unwrap();
}

#[test]
fn a_referent_read_during_marking_is_kept_alive() {
    let heap = heap(64 * MIB);
    let mut m = heap.register(Default::default());
    let target = old_pair(&mut m);
    let weak = m.reference(WEAK, Some(target)).unwrap();
    m.push_root(Some(weak));
    // Promote the weak reference object: it is then old, and discovered by
    // the cycle's marker.
    for _ in 0..4 {
        assert!(m.collect(GcCause::YoungFull));
    }
    let hold = heap.hold_marking().unwrap();
    start_cycle(&mut m);
    let weak = m.root(0).unwrap();
    // Only weakly reachable when marking began; the read makes it strong.
    let read = m.referent(weak);
    assert_eq!(read, Some(target));
    let black = old_pair(&mut m);
    m.push_root(Some(black));
    m.set_left(black, read);
    finish_cycle(&mut m, hold);
    assert_eq!(m.referent(weak), Some(target), "kept, so not cleared");
    m.verify().unwrap();
    // Once nothing holds it strongly, the next cycle clears the reference.
    m.set_left(black, None);
    start_cycle(&mut m);
    m.await_concurrent_cycle();
    assert_eq!(m.referent(weak), None);
    m.verify().unwrap();
}

#[test]
fn an_explicit_collection_abandons_the_cycle() {
    let heap = heap(64 * MIB);
    let mut m = heap.register(Default::default());
    let kept = old_pair(&mut m);
    m.push_root(Some(kept));
    for _ in 0..100 {
        old_pair(&mut m); // old garbage
    }
    let hold = heap.hold_marking().unwrap();
    start_cycle(&mut m);
    assert!(m.collect(GcCause::Explicit));
    assert!(!heap.concurrent_cycle_active(), "abandoned");
    let full = heap
        .stats()
        .recent()
        .into_iter()
        .rev()
        .find(|r| r.kind == CollectionKind::Full)
        .expect("a full collection");
    assert_eq!(full.cause, GcCause::Explicit);
    assert!(full.objects_freed >= 100, "{full:?}");
    drop(hold);
    m.verify().unwrap();
    assert_eq!(m.tag(kept), PAIR);
    // The abandoned cycle's thread stops; cycles start again.
    start_cycle(&mut m);
    m.await_concurrent_cycle();
    m.verify().unwrap();
}

#[test]
fn a_full_heap_during_a_cycle_is_a_concurrent_mode_failure() {
    let heap = heap(24 * MIB);
    let mut m = heap.register(Default::default());
    let hold = heap.hold_marking().unwrap();
    start_cycle(&mut m);
    // Keep allocating live data (a list of 2 KiB arrays) while marking
    // cannot progress: the heap fills before the cycle can end.
    let list = m.push_root(None);
    let mut kept = 0usize;
    while heap.concurrent_cycle_active() {
        let node = m.array(256).unwrap();
        let head = m.root(list);
        m.set(node, 0, head);
        m.set_root(list, Some(node));
        kept += 1;
        assert!(kept < 100_000, "the cycle never failed");
    }
    drop(hold);
    let summary = heap.summary();
    assert!(
        heap.stats()
            .recent()
            .iter()
            .any(|r| r.kind == CollectionKind::Full && r.cause == GcCause::ConcurrentModeFailure),
        "{summary}"
    );
    // Nothing was lost: the list is whole.
    let mut n = 0;
    let mut at = m.root(list);
    while let Some(node) = at {
        n += 1;
        at = m.get(node, 0);
    }
    assert_eq!(n, kept);
    m.verify().unwrap();
}

#[test]
fn the_barrier_set_gives_the_marking_flag() {
    let heap = heap(64 * MIB);
    let barriers = heap.barriers();
    assert!(
        barriers
            .kinds()
            .contains(BarrierKinds::SATB.union(BarrierKinds::CARD))
    );
    let facts = barriers
        .satb_facts()
        .expect("gen-concurrent has SATB facts");
    // SAFETY: the address of the heap's marking flag, an `AtomicBool` that
    // lives as long as the heap.
    let flag = unsafe { &*(facts.marking_flag as *const AtomicBool) };
    let mut m = heap.register(Default::default());
    assert!(!flag.load(Ordering::Relaxed));
    let hold = heap.hold_marking().unwrap();
    start_cycle(&mut m);
    assert!(
        flag.load(Ordering::Relaxed),
        "marking is on during the cycle"
    );
    finish_cycle(&mut m, hold);
    assert!(!flag.load(Ordering::Relaxed));
    assert!(barriers.card_facts().is_some());
}
