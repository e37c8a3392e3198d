//! The collector core through the test runtime: graphs survive exactly,
//! garbage (cycles included) is freed and counted, roots are honoured,
//! reference kinds and finalization behave, the verifier catches a broken
//! reference, allocation failure collects before it errs, and several
//! mutators run with collections and the verifier on.

use std::sync::Arc;

use proptest::prelude::*;
use rtmem_base::{AllocError, SpaceBudget, SpaceType};
use rtmem_gc::verify::{Holder, VerifyError};
use rtmem_gc::{GcCause, GcConfig, GcKind, Heap, Mutator, ObjectRef};
use rtmem_spaces::{Spaces, SpacesConfig};
use rtmem_testvm::{PHANTOM, SOFT, TestMutator, TestVm, WEAK};

const MIB: usize = 1 << 20;

fn heap_with(config: GcConfig, object_limit: usize) -> Heap<TestVm> {
    let spaces = SpacesConfig::default()
        .with_budget(
            SpaceType::Object,
            SpaceBudget::growing(MIB, object_limit, 100),
        )
        .with_budget(
            SpaceType::Humongous,
            SpaceBudget::growing(MIB, 64 * MIB, 100),
        );
    let spaces = Arc::new(Spaces::new(spaces).unwrap());
    Heap::new(spaces, config, TestVm::default()).unwrap()
}

fn verifying() -> GcConfig {
    GcConfig {
        verify: true,
        gc_workers: 2,
        ..GcConfig::default()
    }
}

fn heap() -> Heap<TestVm> {
    heap_with(verifying(), 256 * MIB)
}

fn collect(m: &mut Mutator<TestVm>) -> rtmem_gc::stats::CollectionRecord {
    assert!(m.collect(GcCause::Explicit));
    m.heap().stats().last().unwrap()
}

/// A complete tree of pairs of `depth` levels: 2^depth - 1 pairs.
fn tree(m: &mut Mutator<TestVm>, depth: u32) -> ObjectRef {
    if depth <= 1 {
        return m.pair(None, None).unwrap();
    }
    let node = m.pair(None, None).unwrap();
    let at = m.push_root(Some(node));
    let left = tree(m, depth - 1);
    let node = m.root(at).unwrap();
    m.set_left(node, Some(left));
    let right = tree(m, depth - 1);
    let node = m.root(at).unwrap();
    m.set_right(node, Some(right));
    m.truncate_roots(at);
    node
}

fn count(m: &Mutator<TestVm>, node: Option<ObjectRef>) -> usize {
    node.map_or(0, |n| 1 + count(m, m.left(n)) + count(m, m.right(n)))
}

#[test]
fn garbage_is_freed_and_reachable_objects_survive() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let kept = tree(&mut m, 8);
    m.push_root(Some(kept));
    for _ in 0..10 {
        tree(&mut m, 5); // 31 pairs of garbage each
    }
    let record = collect(&mut m);
    assert_eq!(record.objects_freed, 310);
    assert_eq!(record.heap_after, 255 * 24);
    assert_eq!(record.heap_before, 565 * 24);
    let root = m.root(0);
    assert_eq!(count(&m, root), 255);
    // Nothing more to free.
    assert_eq!(collect(&mut m).objects_freed, 0);
    m.truncate_roots(0);
    assert_eq!(collect(&mut m).objects_freed, 255);
    assert_eq!(heap.used_bytes(), 0);
}

#[test]
fn requests_from_any_thread_are_honoured_at_the_next_slow_path() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let other = heap.clone();
    std::thread::spawn(move || other.request(GcCause::Idle))
        .join()
        .unwrap();
    assert_eq!(heap.stats().gc_count(), 0);
    // The request is seen when the mutator reports its next chunk.
    let per_chunk = Mutator::<TestVm>::REPORT_BYTES / 24 + 1;
    for _ in 0..per_chunk {
        m.pair(None, None).unwrap();
    }
    let record = heap.stats().last().expect("a collection ran");
    assert_eq!(record.cause, GcCause::Idle);
    // From a thread that is not a mutator, `collect` stops the world itself.
    let other = heap.clone();
    let ran = std::thread::scope(|s| {
        let h = s.spawn(move || other.collect(GcCause::Explicit));
        // This mutator polls until the collection is over.
        while !h.is_finished() {
            m.poll();
        }
        h.join().unwrap()
    });
    assert!(ran);
    assert_eq!(heap.stats().last().unwrap().cause, GcCause::Explicit);
    let json: serde_json::Value = serde_json::from_str(&heap.stats().to_json()).unwrap();
    assert_eq!(json["summary"]["gc_count"], 2);
}

#[test]
fn cycles_are_collected() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let a = m.pair(None, None).unwrap();
    m.push_root(Some(a));
    let b = m.pair(Some(a), None).unwrap();
    m.set_left(a, Some(b));
    m.set_right(a, Some(a));
    assert_eq!(collect(&mut m).objects_freed, 0);
    assert_eq!(m.left(m.left(a).unwrap()), Some(a));
    m.truncate_roots(0);
    assert_eq!(collect(&mut m).objects_freed, 2);
}

#[test]
fn roots_of_every_kind_are_honoured() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let from_frame = m.blob(b"frame").unwrap();
    m.push_root(Some(from_frame));
    let from_global = m.blob(b"global").unwrap();
    let g = heap.vm().add_global(Some(from_global));
    let array = m.array(3).unwrap();
    m.push_root(Some(array));
    let in_array = m.blob(b"element").unwrap();
    m.set(array, 2, Some(in_array));
    m.blob(b"garbage").unwrap();
    assert_eq!(collect(&mut m).objects_freed, 1);
    assert_eq!(m.bytes(from_frame), b"frame");
    assert_eq!(m.bytes(heap.vm().global(g).unwrap()), b"global");
    assert_eq!(m.bytes(m.get(array, 2).unwrap()), b"element");
    assert_eq!((m.len(array), m.get(array, 0)), (3, None));
    heap.vm().set_global(g, None);
    assert_eq!(collect(&mut m).objects_freed, 1);
}

#[test]
fn weak_references_are_cleared_when_the_referent_dies() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let target = m.blob(b"target").unwrap();
    let held = m.push_root(Some(target));
    let weak = m.reference(WEAK, Some(target)).unwrap();
    m.push_root(Some(weak));
    collect(&mut m);
    assert_eq!(m.referent(weak), Some(target), "a reachable referent stays");
    m.set_root(held, None);
    let record = collect(&mut m);
    assert_eq!(m.referent(weak), None);
    assert_eq!(record.objects_freed, 1);
}

#[test]
fn soft_references_survive_until_memory_is_short() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let cached = m.blob(b"cache").unwrap();
    let soft = m.reference(SOFT, Some(cached)).unwrap();
    m.push_root(Some(soft));
    assert_eq!(collect(&mut m).objects_freed, 0);
    let cache = m.referent(soft).unwrap();
    assert_eq!(m.bytes(cache), b"cache");
    assert!(m.collect(GcCause::AllocationFailure));
    assert_eq!(m.referent(soft), None);
    assert_eq!(heap.stats().last().unwrap().objects_freed, 1);
}

#[test]
fn finalizable_objects_are_resurrected_once() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let child = m.blob(b"child").unwrap();
    let at = m.push_root(Some(child));
    let object = m.alloc_finalizable(rtmem_testvm::PAIR, 24).unwrap();
    let child = m.root(at);
    m.set_left(object, child);
    m.truncate_roots(0);
    m.pair(None, None).unwrap(); // plain garbage
    assert_eq!(collect(&mut m).objects_freed, 1);
    let ready = heap.take_finalizable();
    assert_eq!(ready, vec![object]);
    // Resurrected with what it references.
    assert_eq!(m.bytes(m.left(object).unwrap()), b"child");
    assert!(heap.take_finalizable().is_empty());
    // Finalized and dropped: freed at the next collection, not queued again.
    assert_eq!(collect(&mut m).objects_freed, 2);
    assert!(heap.take_finalizable().is_empty());
}

#[test]
fn phantom_references_are_enqueued_after_finalization() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    // A plain referent: enqueued at once.
    let plain = m.blob(b"plain").unwrap();
    let p1 = m.reference(PHANTOM, Some(plain)).unwrap();
    m.push_root(Some(p1));
    // A finalizable referent: enqueued only after its finalization.
    let fin = m.alloc_finalizable(rtmem_testvm::PAIR, 24).unwrap();
    let p2 = m.reference(PHANTOM, Some(fin)).unwrap();
    m.push_root(Some(p2));
    collect(&mut m);
    assert_eq!(heap.take_phantoms(), vec![p1]);
    assert_eq!(m.referent(p1), None);
    assert_eq!(heap.take_finalizable(), vec![fin]);
    assert_eq!(m.referent(p2), Some(fin));
    collect(&mut m);
    assert_eq!(heap.take_phantoms(), vec![p2]);
    assert_eq!(m.referent(p2), None);
}

#[test]
fn the_weak_table_drops_entries_whose_key_died() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let kept = TestVm::intern(&mut m, b"kept").unwrap();
    m.push_root(Some(kept));
    TestVm::intern(&mut m, b"dropped").unwrap();
    assert_eq!(TestVm::intern(&mut m, b"kept").unwrap(), kept);
    assert_eq!(heap.vm().interned_count(), 2);
    collect(&mut m);
    assert_eq!(heap.vm().interned_count(), 1);
    assert_eq!(heap.vm().lookup_interned(b"kept"), Some(kept));
    assert_eq!(heap.vm().lookup_interned(b"dropped"), None);
}

#[test]
fn the_verifier_catches_a_corrupted_slot() {
    let heap = heap_with(GcConfig::default(), 64 * MIB);
    let mut m = heap.register(Default::default());
    let a = m.pair(None, None).unwrap();
    m.push_root(Some(a));
    let b = m.blob(b"0123456789").unwrap();
    m.set_left(a, Some(b));
    let report = m.verify().unwrap();
    assert_eq!((report.objects, report.references, report.roots), (2, 2, 1));
    // An interior pointer: 8 bytes into the blob.
    let interior = ObjectRef::from_addr(b.addr() + 8).unwrap();
    m.set_right(a, Some(interior));
    let err = m.verify().unwrap_err();
    assert_eq!(
        err,
        VerifyError::BadReference {
            holder: Holder::Object {
                object: a.addr(),
                offset: 16
            },
            value: interior.addr()
        }
    );
    assert!(err.to_string().contains("in slot +16 of object"), "{err}");
    // A bad root is caught too.
    m.set_right(a, None);
    m.push_root(Some(interior));
    assert!(matches!(
        m.verify(),
        Err(VerifyError::BadReference {
            holder: Holder::MutatorRoot(0),
            ..
        })
    ));
}

#[test]
#[should_panic(expected = "heap verification before collection 0 (explicit) failed")]
fn collections_verify_when_asked() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let a = m.pair(None, None).unwrap();
    m.push_root(Some(a));
    m.set_left(a, Some(ObjectRef::from_addr(a.addr() + 8).unwrap()));
    m.collect(GcCause::Explicit);
}

#[test]
fn allocation_failure_collects_before_it_errs() {
    let heap = heap_with(GcConfig::default(), 4 * MIB);
    let mut m = heap.register(Default::default());
    // Garbage only: collections keep the heap within its limit forever.
    for _ in 0..400_000 {
        m.pair(None, None).unwrap();
    }
    assert!(heap.stats().gc_count() > 0);
    // Keep everything: the space fills and the error names it.
    let list = m.push_root(None);
    let err = loop {
        let head = m.root(list);
        match m.pair(head, None) {
            Ok(p) => m.set_root(list, Some(p)),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            AllocError::LimitExceeded {
                space: SpaceType::Object,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("object"), "{err}");
    let summary = heap.summary();
    assert!(summary.causes.contains_key(&GcCause::AllocationFailure));
    // Memory is usable again once the list is dropped.
    m.set_root(list, None);
    m.pair(None, None).unwrap();
}

#[test]
fn epsilon_never_collects_and_runs_out() {
    let config = GcConfig {
        kind: GcKind::Epsilon,
        ..GcConfig::default()
    };
    let heap = heap_with(config, 2 * MIB);
    let mut m = heap.register(Default::default());
    assert!(!m.collect(GcCause::Explicit));
    let err = loop {
        if let Err(e) = m.pair(None, None) {
            break e;
        }
    };
    assert!(matches!(
        err,
        AllocError::LimitExceeded {
            space: SpaceType::Object,
            ..
        }
    ));
    assert_eq!(heap.stats().gc_count(), 0);
}

#[test]
fn large_and_pinned_objects_live_in_their_spaces() {
    let heap = heap();
    let mut m = heap.register(Default::default());
    let big = m.array(20_000).unwrap(); // 160 KB: humongous
    let pinned = m.alloc_pinned(rtmem_testvm::PAIR, 24).unwrap();
    let small_large = m.alloc_large(rtmem_testvm::PAIR, 24).unwrap();
    let pools = heap.spaces().pools();
    assert_eq!(pools.space_of(big.addr()), Some(SpaceType::Humongous));
    assert_eq!(pools.space_of(pinned.addr()), Some(SpaceType::NonMoving));
    assert_eq!(
        pools.space_of(small_large.addr()),
        Some(SpaceType::Humongous)
    );
    m.push_root(Some(big));
    m.set(big, 19_999, Some(pinned));
    let record = collect(&mut m);
    assert_eq!(record.objects_freed, 1);
    assert_eq!(m.get(big, 19_999), Some(pinned));
    m.truncate_roots(0);
    assert_eq!(collect(&mut m).objects_freed, 2);
}

#[test]
fn stress_mode_collects_every_n_allocations_with_the_verifier() {
    let config = GcConfig {
        stress_every: 50,
        ..verifying()
    };
    let heap = heap_with(config, 64 * MIB);
    let mut m = heap.register(Default::default());
    let kept = tree(&mut m, 7);
    m.push_root(Some(kept));
    for _ in 0..20 {
        tree(&mut m, 4);
    }
    assert!(heap.stats().gc_count() >= (127 + 300) / 50 - 1);
    let root = m.root(0);
    assert_eq!(count(&m, root), 127);
}

#[test]
fn several_mutators_share_structures_while_collections_run() {
    const THREADS: usize = 3;
    const SLOTS: usize = 64;
    let heap = heap_with(
        GcConfig {
            stress_every: 500,
            ..verifying()
        },
        256 * MIB,
    );
    let mut main = heap.register(Default::default());
    let shared = main.array(SLOTS).unwrap();
    heap.vm().add_global(Some(shared));
    drop(main);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let heap = heap.clone();
            s.spawn(move || {
                let mut m = heap.register(Default::default());
                let mut rng = 0x9E37_79B9u64 ^ t as u64;
                for i in 0..4_000u64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let slot = (rng % SLOTS as u64) as usize;
                    // Build a small tree, publish it in the shared array,
                    // and check one some other thread published.
                    let t = tree(&mut m, 3);
                    m.set(shared, slot, Some(t));
                    let other = m.get(shared, (slot + 1) % SLOTS);
                    if let Some(o) = other {
                        assert_eq!(count(&m, Some(o)), 7);
                    }
                    if i % 100 == 0 {
                        m.collect(GcCause::Explicit);
                    }
                    m.poll();
                }
            });
        }
    });
    assert!(heap.stats().gc_count() > 10);
    let mut m = heap.register(Default::default());
    let report = m.verify().unwrap();
    assert!(report.objects <= SLOTS * 7 + 1 + 7 * THREADS);
    m.collect(GcCause::Explicit);
    let live = heap.stats().last().unwrap().heap_after;
    let published = (0..SLOTS).filter(|&i| m.get(shared, i).is_some()).count();
    assert_eq!(live, (2 + SLOTS) * 8 + published * 7 * 24);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random graphs against a model: after a collection exactly the objects
    /// reachable from the roots remain, each with its edges and contents.
    #[test]
    fn collections_keep_exactly_the_reachable_graph(
        nodes in 1usize..120,
        edges in proptest::collection::vec((0usize..120, 0usize..120, any::<bool>()), 0..200),
        roots in proptest::collection::vec(0usize..120, 0..6),
        workers in 1usize..3,
    ) {
        let heap = heap_with(GcConfig { gc_workers: workers, verify: true, ..GcConfig::default() }, 64 * MIB);
        let mut m = heap.register(Default::default());
        let all = m.array(nodes).unwrap();
        let anchor = m.push_root(Some(all));
        for i in 0..nodes {
            let p = m.pair(None, None).unwrap();
            m.set(all, i, Some(p));
        }
        let mut model = vec![[None, None]; nodes];
        for &(from, to, right) in &edges {
            let (from, to) = (from % nodes, to % nodes);
            let (f, t) = (m.get(all, from).unwrap(), m.get(all, to).unwrap());
            if right { m.set_right(f, Some(t)) } else { m.set_left(f, Some(t)) }
            model[from][right as usize] = Some(to);
        }
        let roots: Vec<usize> = roots.iter().map(|r| r % nodes).collect();
        for &r in &roots {
            let obj = m.get(all, r);
            m.push_root(obj);
        }
        // Which nodes are reachable from the roots (not from the array).
        let mut reachable = vec![false; nodes];
        let mut stack = roots.clone();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut reachable[n], true) {
                stack.extend(model[n].iter().flatten());
            }
        }
        let addrs: Vec<ObjectRef> = (0..nodes).map(|i| m.get(all, i).unwrap()).collect();
        m.set_root(anchor, None);
        let record = collect(&mut m);
        let live = reachable.iter().filter(|&&r| r).count();
        prop_assert_eq!(record.objects_freed, 1 + nodes - live);
        prop_assert_eq!(record.heap_after, live * 24);
        let index = |o: Option<ObjectRef>| o.map(|o| addrs.iter().position(|&a| a == o).unwrap());
        for n in (0..nodes).filter(|&n| reachable[n]) {
            prop_assert_eq!(index(m.left(addrs[n])), model[n][0]);
            prop_assert_eq!(index(m.right(addrs[n])), model[n][1]);
        }
    }
}
