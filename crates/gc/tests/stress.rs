//! A randomized multi-threaded graph-mutation stress test: threads allocate
//! pairs, arrays and weak references, store references into shared and
//! private structures, drop them, and check what they can still reach,
//! while collections run with the heap verifier on before and after each.
//!
//! The short version runs in CI; the long one (minutes) is `#[ignore]`d:
//! `cargo test --release -p rtmem-gc --test stress -- --ignored`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtmem_base::{SpaceBudget, SpaceType};
use rtmem_gc::{GcCause, GcConfig, GcKind, Heap, Mutator, ObjectRef};
use rtmem_spaces::{Spaces, SpacesConfig};
use rtmem_testvm::{BLOB, PAIR, TestMutator, TestVm, WEAK};

const SHARED_SLOTS: usize = 256;

fn heap(kind: GcKind, stress_every: u64) -> Heap<TestVm> {
    let spaces = SpacesConfig::default().with_budget(
        SpaceType::Object,
        SpaceBudget::growing(4 << 20, 512 << 20, 100),
    );
    let mut config = GcConfig {
        kind,
        verify: true,
        gc_workers: 2,
        stress_every,
        ..GcConfig::default()
    };
    // A small young generation, so that young collections happen often.
    config.heap.young = 2 << 20;
    Heap::new(
        Arc::new(Spaces::new(spaces).unwrap()),
        config,
        TestVm::default(),
    )
    .unwrap()
}

/// A small xorshift generator: deterministic per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Checks an object reached from a root: its type is one the test makes,
/// and a pair's children are too (one level: the verifier checks the rest).
fn check(m: &mut Mutator<TestVm>, object: ObjectRef) {
    match m.tag(object) {
        PAIR => {
            for child in [m.left(object), m.right(object)].into_iter().flatten() {
                assert!(matches!(
                    m.tag(child),
                    PAIR | BLOB | WEAK | rtmem_testvm::ARRAY
                ));
            }
        }
        BLOB => assert_eq!(m.bytes(object).len(), 8),
        WEAK => {
            if let Some(r) = m.referent(object) {
                m.tag(r);
            }
        }
        rtmem_testvm::ARRAY => {}
        t => panic!("unexpected type tag {t}"),
    }
}

/// `shared` is the index of the global holding the shared array: the array
/// may move, so it is read from there after every possible collection.
fn mutate(heap: &Heap<TestVm>, shared: usize, seed: u64, until: Instant) -> u64 {
    let mut m = heap.register(Default::default());
    let mut rng = Rng(seed | 1);
    // Private roots: 16 slots on the mutator's stack.
    for _ in 0..16 {
        m.push_root(None);
    }
    let mut steps = 0u64;
    while Instant::now() < until {
        steps += 1;
        let slot = rng.below(16);
        match rng.below(10) {
            // New objects, stored in a private root.
            0..=2 => {
                let left = m.root(rng.below(16));
                let right = m.root(rng.below(16));
                let p = m.pair(left, right).unwrap();
                m.set_root(slot, Some(p));
            }
            3 => {
                let b = m.blob(&steps.to_le_bytes()).unwrap();
                m.set_root(slot, Some(b));
            }
            4 => {
                let target = m.root(rng.below(16));
                let w = m.reference(WEAK, target).unwrap();
                m.set_root(slot, Some(w));
            }
            // Publish a private object in the shared array, or take one.
            5 => {
                let value = m.root(slot);
                let array = heap.vm().global(shared).unwrap();
                m.set(array, rng.below(SHARED_SLOTS), value);
            }
            6 => {
                let array = heap.vm().global(shared).unwrap();
                let value = m.get(array, rng.below(SHARED_SLOTS));
                m.set_root(slot, value);
            }
            // Stores between objects: old to new and new to old alike.
            7 => {
                if let (Some(p), value) = (m.root(slot), m.root(rng.below(16)))
                    && m.tag(p) == PAIR
                {
                    if rng.below(2) == 0 {
                        m.set_left(p, value);
                    } else {
                        m.set_right(p, value);
                    }
                }
            }
            // Drops.
            8 => m.set_root(slot, None),
            _ => {
                if let Some(o) = m.root(slot) {
                    check(&mut m, o);
                }
                m.poll();
            }
        }
    }
    steps
}

fn run(kind: GcKind, threads: usize, duration: Duration, stress_every: u64) {
    let heap = heap(kind, stress_every);
    let mut main = heap.register(Default::default());
    let array = main.array(SHARED_SLOTS).unwrap();
    let shared = heap.vm().add_global(Some(array));
    drop(main);
    let until = Instant::now() + duration;
    let steps: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let heap = &heap;
                s.spawn(move || mutate(heap, shared, 0x5EED + t as u64 * 7919, until))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let mut m = heap.register(Default::default());
    assert!(m.collect(GcCause::Explicit));
    let report = m.verify().unwrap();
    let summary = heap.summary();
    assert!(summary.gc_count > 2, "{summary}");
    if kind == GcKind::GenConcurrent {
        assert!(
            summary.concurrent_count > 0,
            "no concurrent cycle ended: {summary}"
        );
    }
    assert!(steps > 1000);
    // What is left is what the shared array reaches: at most its slots'
    // objects' graphs, never more than the heap held at its peak.
    assert!(heap.used_bytes() <= heap.peak_bytes());
    assert!(report.roots >= 1);
}

#[test]
fn three_threads_mutate_a_shared_graph_with_the_verifier_on() {
    run(GcKind::Stw, 3, Duration::from_millis(700), 2_000);
}

#[test]
fn three_threads_mutate_a_generational_heap_with_the_verifier_on() {
    run(GcKind::Gen, 3, Duration::from_millis(700), 2_000);
}

#[test]
fn three_threads_mutate_a_concurrently_marked_heap_with_the_verifier_on() {
    run(GcKind::GenConcurrent, 3, Duration::from_millis(700), 2_000);
}

#[test]
#[ignore = "minutes long: run with --ignored (release build recommended)"]
fn long_randomized_graph_mutation() {
    run(GcKind::Stw, 4, Duration::from_secs(180), 20_000);
}

#[test]
#[ignore = "minutes long: run with --ignored (release build recommended)"]
fn long_randomized_graph_mutation_generational() {
    run(GcKind::Gen, 4, Duration::from_secs(180), 20_000);
}

#[test]
#[ignore = "minutes long: run with --ignored (release build recommended)"]
fn long_randomized_graph_mutation_concurrent() {
    run(GcKind::GenConcurrent, 4, Duration::from_secs(180), 20_000);
}
