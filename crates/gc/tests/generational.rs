//! The generational collector (`gen`) through the test runtime: young
//! objects move and every slot follows them, old-to-young references found
//! through the card table keep young objects alive (the classic lost-object
//! case), survivors are promoted after `promotion_age` collections, random
//! graphs mixing old and young objects survive exactly, weak tables learn
//! new addresses, and the barrier set exposes the card facts a JIT needs.
//! The heap verifier runs before and after every collection.

use std::sync::Arc;

use proptest::prelude::*;
use rtmem_base::{SpaceBudget, SpaceType};
use rtmem_gc::barrier::BarrierKinds;
use rtmem_gc::stats::CollectionKind;
use rtmem_gc::{GcCause, GcConfig, GcKind, Heap, Mutator, ObjectRef};
use rtmem_spaces::{Spaces, SpacesConfig};
use rtmem_testvm::{TestMutator, TestVm};

const MIB: usize = 1 << 20;

fn gen_heap(workers: usize, object_limit: usize) -> Heap<TestVm> {
    let spaces = SpacesConfig::default().with_budget(
        SpaceType::Object,
        SpaceBudget::growing(4 * MIB, object_limit, 100),
    );
    let mut config = GcConfig {
        kind: GcKind::Gen,
        gc_workers: workers,
        verify: true,
        ..GcConfig::default()
    };
    config.heap.young = 2 * MIB;
    let spaces = Arc::new(Spaces::new(spaces).unwrap());
    Heap::new(spaces, config, TestVm::default()).unwrap()
}

fn young_collection(m: &mut Mutator<TestVm>) {
    assert!(m.collect(GcCause::YoungFull));
    let last = m.heap().stats().last().unwrap();
    assert_eq!(last.kind, CollectionKind::Young, "{last:?}");
}

fn is_young(heap: &Heap<TestVm>, object: ObjectRef) -> bool {
    // Old objects live in the tenured runs or free list, or in the
    // non-moving and humongous spaces; whatever else is in the object
    // space is young.
    let spaces = heap.spaces();
    heap.spaces().pools().space_of(object.addr()) == Some(SpaceType::Object)
        && !spaces.object().tenured().contains(object.addr())
}

/// A node: an array of [left, right, id blob].
fn node(m: &mut Mutator<TestVm>, id: u32) -> ObjectRef {
    let blob = m.blob(&id.to_le_bytes()).unwrap();
    let at = m.push_root(Some(blob));
    let array = m.array(3).unwrap();
    let blob = m.root(at);
    m.set(array, 2, blob);
    m.truncate_roots(at);
    array
}

fn id(m: &Mutator<TestVm>, node: ObjectRef) -> u32 {
    let bytes = m.bytes(m.get(node, 2).unwrap());
    u32::from_le_bytes(bytes.try_into().unwrap())
}

#[test]
fn young_objects_move_and_their_roots_follow() {
    let heap = gen_heap(2, 64 * MIB);
    let mut m = heap.register(Default::default());
    let a = node(&mut m, 7);
    assert!(is_young(&heap, a));
    m.push_root(Some(a));
    young_collection(&mut m);
    let moved = m.root(0).unwrap();
    assert_ne!(moved, a, "a young survivor is copied");
    assert!(
        is_young(&heap, moved),
        "age 1: still young (in a survivor region)"
    );
    assert_eq!(id(&m, moved), 7);
    young_collection(&mut m);
    let promoted = m.root(0).unwrap();
    assert!(!is_young(&heap, promoted), "age 2: promoted");
    assert_eq!(id(&m, promoted), 7);
    let record = heap.stats().last().unwrap();
    assert!(record.promoted_bytes >= 2 * 24, "{record:?}");
    young_collection(&mut m);
    assert_eq!(m.root(0), Some(promoted), "old objects stay put");
}

#[test]
fn a_young_object_reachable_only_from_an_old_one_survives() {
    for pinned in [false, true] {
        let heap = gen_heap(2, 64 * MIB);
        let mut m = heap.register(Default::default());
        // The old holder: a pinned pair, or a pair promoted by two young
        // collections.
        let at = m.push_root(None);
        let holder = if pinned {
            m.alloc_pinned(rtmem_testvm::PAIR, 24).unwrap()
        } else {
            let p = m.pair(None, None).unwrap();
            m.set_root(at, Some(p));
            young_collection(&mut m);
            young_collection(&mut m);
            m.root(at).unwrap()
        };
        m.set_root(at, Some(holder));
        assert!(!is_young(&heap, holder));
        // The only reference to a young object goes into the old holder
        // (through the barrier), and the young object's own root is dropped.
        let young = node(&mut m, 42);
        m.set_left(holder, Some(young));
        let before = young;
        young_collection(&mut m);
        let holder = m.root(at).unwrap();
        let now = m.left(holder).expect("the young object survived");
        assert_ne!(now, before, "it was copied, and the old slot updated");
        assert_eq!(id(&m, now), 42);
        // It is still young (age 1): the card of the holder stays dirty so
        // that the next young collection finds it again.
        young_collection(&mut m);
        let holder = m.root(at).unwrap();
        let now = m.left(holder).unwrap();
        assert_eq!(id(&m, now), 42);
        m.verify().unwrap();
    }
}

/// The control for the test above: the same old-to-young store made
/// without the barrier leaves the holder's card clean, and the verifier
/// names the holder and the young object before a collection loses it.
#[test]
fn the_verifier_reports_an_old_to_young_store_without_the_barrier() {
    let heap = gen_heap(1, 64 * MIB);
    let mut m = heap.register(Default::default());
    let p = m.pair(None, None).unwrap();
    let at = m.push_root(Some(p));
    young_collection(&mut m);
    young_collection(&mut m);
    let holder = m.root(at).unwrap();
    assert!(!is_young(&heap, holder));
    let young = node(&mut m, 42);
    assert!(is_young(&heap, young));
    // SAFETY: the holder's left slot (word 1); a store without the
    // barrier, as a runtime that forgot it would make.
    unsafe { ((holder.addr() + 8) as *mut Option<ObjectRef>).write(Some(young)) };
    let error = m
        .verify()
        .expect_err("the old-to-young reference is on a clean card");
    assert_eq!(
        error,
        rtmem_gc::verify::VerifyError::CleanCard {
            object: holder.addr(),
            young: young.addr(),
        },
        "{error}"
    );
    // With the barrier the same heap verifies.
    m.set_left(holder, Some(young));
    m.verify().unwrap();
}

#[test]
fn a_full_collection_frees_old_garbage_and_empties_eden() {
    let heap = gen_heap(1, 64 * MIB);
    let mut m = heap.register(Default::default());
    let kept = node(&mut m, 1);
    m.push_root(Some(kept));
    for i in 0..1000 {
        node(&mut m, i);
    }
    young_collection(&mut m);
    young_collection(&mut m);
    // `kept` (two objects) is old now; make 50 more old objects and drop them.
    let garbage = m.array(50).unwrap();
    let g = m.push_root(Some(garbage));
    for i in 0..50 {
        let n = m.pair(None, None).unwrap();
        let array = m.root(g).unwrap();
        m.set(array, i, Some(n));
    }
    young_collection(&mut m);
    young_collection(&mut m);
    m.truncate_roots(1);
    assert!(m.collect(GcCause::Explicit));
    let records = heap.stats().recent();
    let full = records
        .iter()
        .rev()
        .find(|r| r.kind == CollectionKind::Full)
        .unwrap();
    assert_eq!(full.objects_freed, 51, "{full:?}");
    let kept = m.root(0).unwrap();
    assert_eq!(id(&m, kept), 1);
    assert_eq!(m.verify().unwrap().objects, 2);
}

#[test]
fn the_weak_table_follows_moved_strings_and_drops_dead_ones() {
    let heap = gen_heap(2, 64 * MIB);
    let mut m = heap.register(Default::default());
    let kept = TestVm::intern(&mut m, b"kept").unwrap();
    m.push_root(Some(kept));
    TestVm::intern(&mut m, b"dropped").unwrap();
    young_collection(&mut m);
    let moved = m.root(0).unwrap();
    assert_ne!(moved, kept);
    assert_eq!(heap.vm().lookup_interned(b"kept"), Some(moved));
    assert_eq!(heap.vm().lookup_interned(b"dropped"), None);
    assert_eq!(TestVm::intern(&mut m, b"kept").unwrap(), moved);
}

#[test]
fn weak_references_are_cleared_by_full_collections() {
    let heap = gen_heap(2, 64 * MIB);
    let mut m = heap.register(Default::default());
    let target = m.pair(None, None).unwrap();
    let at = m.push_root(Some(target));
    let weak = m.reference(rtmem_testvm::WEAK, Some(target)).unwrap();
    let w = m.push_root(Some(weak));
    young_collection(&mut m);
    let (weak, target) = (m.root(w).unwrap(), m.root(at).unwrap());
    assert_eq!(m.referent(weak), Some(target), "the referent moved with it");
    m.set_root(at, None);
    m.collect(GcCause::Explicit);
    let weak = m.root(w).unwrap();
    assert_eq!(m.referent(weak), None);
}

#[test]
fn the_barrier_set_gives_the_card_facts() {
    let heap = gen_heap(1, 64 * MIB);
    let barriers = heap.barriers();
    assert!(barriers.kinds().contains(BarrierKinds::CARD));
    assert!(!barriers.kinds().contains(BarrierKinds::SATB));
    let facts = barriers.card_facts().expect("gen marks cards");
    assert_eq!(facts.card_shift, 9);
    assert_eq!(facts.dirty_value, rtmem_gc::card::CardTable::DIRTY);
    let (base, len) = heap.spaces().pools().pool_area();
    assert_eq!((facts.covered_start, facts.covered_end), (base, base + len));
    // The inlined barrier: the card of a slot is biased_base + (slot >> shift).
    let mut m = heap.register(Default::default());
    let pinned = m.alloc_pinned(rtmem_testvm::PAIR, 24).unwrap();
    let card =
        (facts.card_table_biased_base + ((pinned.addr() + 8) >> facts.card_shift)) as *mut u8;
    // SAFETY: the card of a heap address is a byte of the table.
    unsafe { card.write(facts.clean_value) };
    m.set_left(pinned, None);
    // SAFETY: as above.
    assert_eq!(unsafe { card.read() }, facts.dirty_value);
}

#[test]
fn eden_exhaustion_collects_and_a_full_heap_errs_cleanly() {
    let heap = gen_heap(1, 16 * MIB);
    let mut m = heap.register(Default::default());
    let list = m.push_root(None);
    let mut err = None;
    for i in 0..2_000_000u32 {
        let head = m.root(list);
        match m.pair(head, None) {
            Ok(p) => m.set_root(list, Some(p)),
            Err(e) => {
                err = Some((i, e));
                break;
            }
        }
    }
    let (count, err) = err.expect("16 MiB cannot hold two million pairs");
    assert_eq!(err.space(), Some(SpaceType::Object), "{err}");
    assert!(count > 100_000, "only {count} pairs before {err}");
    assert!(heap.stats().gc_count() > 3);
    // Nothing is lost: the list is whole, and dropping it makes room again.
    let mut n = 0;
    let mut at = m.root(list);
    while let Some(p) = at {
        n += 1;
        at = m.left(p);
    }
    assert_eq!(n, count);
    m.set_root(list, None);
    m.collect(GcCause::AllocationFailure);
    m.pair(None, None).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Random graphs of old and young nodes with edges in every direction,
    /// against a model: after a young collection and after a full one, the
    /// nodes reachable from the roots are intact, edges and ids alike.
    #[test]
    fn old_and_young_graphs_survive_exactly(
        old in 1usize..60,
        young in 1usize..60,
        edges in proptest::collection::vec((0usize..120, 0usize..120, any::<bool>()), 0..160),
        roots in proptest::collection::vec(0usize..120, 1..5),
        workers in 1usize..3,
    ) {
        let heap = gen_heap(workers, 64 * MIB);
        let mut m = heap.register(Default::default());
        let nodes = old + young;
        let all = m.array(nodes).unwrap();
        let anchor = m.push_root(Some(all));
        for i in 0..old {
            let n = node(&mut m, i as u32);
            let all = m.root(anchor).unwrap();
            m.set(all, i, Some(n));
        }
        // Age the first nodes into the tenured generation.
        young_collection(&mut m);
        young_collection(&mut m);
        for i in old..nodes {
            let n = node(&mut m, i as u32);
            let all = m.root(anchor).unwrap();
            m.set(all, i, Some(n));
        }
        let all = m.root(anchor).unwrap();
        prop_assert!(!is_young(&heap, m.get(all, 0).unwrap()));
        prop_assert!(is_young(&heap, m.get(all, nodes - 1).unwrap()));
        let mut model = vec![[None, None]; nodes];
        for &(from, to, right) in &edges {
            let (from, to) = (from % nodes, to % nodes);
            let (f, t) = (m.get(all, from).unwrap(), m.get(all, to).unwrap());
            m.set(f, right as usize, Some(t));
            model[from][right as usize] = Some(to);
        }
        let roots: Vec<usize> = roots.iter().map(|r| r % nodes).collect();
        let first_root = m.push_root(None);
        m.truncate_roots(first_root);
        for &r in &roots {
            let n = m.get(all, r);
            m.push_root(n);
        }
        m.set_root(anchor, None);
        let mut reachable = vec![false; nodes];
        let mut stack = roots.clone();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut reachable[n], true) {
                stack.extend(model[n].iter().flatten());
            }
        }
        let check = |m: &mut Mutator<TestVm>| -> Result<(), TestCaseError> {
            let mut seen = vec![false; nodes];
            let mut stack: Vec<ObjectRef> =
                (0..roots.len()).map(|i| m.root(first_root + i).unwrap()).collect();
            while let Some(n) = stack.pop() {
                let i = id(m, n) as usize;
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                for (side, expected) in model[i].iter().enumerate() {
                    let to = m.get(n, side);
                    prop_assert_eq!(to.map(|t| id(m, t) as usize), *expected);
                    stack.extend(to);
                }
            }
            prop_assert_eq!(&seen, &reachable);
            Ok(())
        };
        young_collection(&mut m);
        check(&mut m)?;
        m.collect(GcCause::Explicit);
        check(&mut m)?;
        let live = reachable.iter().filter(|&&r| r).count();
        prop_assert_eq!(m.verify().unwrap().objects, 2 * live);
    }
}
