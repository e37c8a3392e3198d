//! The mark bitmap against a set model, its errors, and parallel marking.
#![cfg(not(loom))]

use std::collections::BTreeSet;
use std::sync::Barrier;

use proptest::prelude::*;
use rtmem_base::{AllocError, Reservation};
use rtmem_gc::bitmap::{GRANULE, MarkBitmap};

/// Four and a bit words of bits: the last word is partial.
const HEAP: usize = 4 * 64 * GRANULE + 3 * GRANULE;

/// A real address range to cover (the bitmap itself never touches it).
fn heap(len: usize) -> Reservation {
    Reservation::new(len, 4096).unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    /// Mark the granule at this byte offset (rounded down to its granule).
    Mark(usize),
    Unmark(usize),
    IsMarked(usize),
    /// Byte offsets `start, len`.
    Clear(usize, usize),
    /// Byte offsets `[start, end)`: walk and count.
    Walk(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let offset = 0..HEAP;
    let range = (0..=HEAP, 0..=HEAP).prop_map(|(a, b)| (a.min(b), a.max(b)));
    prop_oneof![
        4 => offset.clone().prop_map(Op::Mark),
        1 => offset.clone().prop_map(Op::Unmark),
        1 => offset.prop_map(Op::IsMarked),
        1 => range.clone().prop_map(|(a, b)| Op::Clear(a, b - a)),
        2 => range.prop_map(|(a, b)| Op::Walk(a, b)),
    ]
}

proptest! {
    #[test]
    fn behaves_like_a_set_of_granules(ops in proptest::collection::vec(op(), 1..200)) {
        let memory = heap(HEAP);
        let base = memory.start().as_ptr() as usize;
        let bitmap = MarkBitmap::new(base, HEAP).unwrap();
        // The model: the addresses of marked granules.
        let mut model = BTreeSet::new();
        let granule = |offset: usize| base + offset / GRANULE * GRANULE;
        for op in ops {
            match op {
                Op::Mark(o) => {
                    prop_assert_eq!(bitmap.mark(base + o), model.insert(granule(o)), "mark {:#x}", o);
                }
                Op::Unmark(o) => {
                    bitmap.unmark(base + o);
                    model.remove(&granule(o));
                }
                Op::IsMarked(o) => {
                    prop_assert_eq!(bitmap.is_marked(base + o), model.contains(&granule(o)));
                }
                Op::Clear(start, len) => {
                    bitmap.clear_range(base + start, len);
                    let doomed: Vec<usize> = model.range(base + start..base + start + len).copied().collect();
                    for g in doomed {
                        model.remove(&g);
                    }
                }
                Op::Walk(start, end) => {
                    let mut seen = Vec::new();
                    bitmap.for_each_marked(base + start, base + end, |a| seen.push(a));
                    let expected: Vec<usize> = model.range(base + start..base + end).copied().collect();
                    prop_assert_eq!(bitmap.count_marked(base + start, base + end), expected.len());
                    prop_assert_eq!(seen, expected);
                }
            }
        }
        let mut all = Vec::new();
        bitmap.for_each_marked(base, bitmap.end(), |a| all.push(a));
        prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn first_and_last_granules() {
    let memory = heap(HEAP);
    let base = memory.start().as_ptr() as usize;
    let bitmap = MarkBitmap::new(base, HEAP).unwrap();
    let last = base + HEAP - GRANULE;
    assert!(bitmap.contains(base) && bitmap.contains(last + 7));
    assert!(!bitmap.contains(base + HEAP) && !bitmap.contains(base - 1));
    assert!(bitmap.mark(base) && bitmap.mark(last));
    let mut seen = Vec::new();
    bitmap.for_each_marked(base, bitmap.end(), |a| seen.push(a));
    assert_eq!(seen, [base, last]);
    assert_eq!(bitmap.count_marked(base + 1, last), 0);
    bitmap.clear_range(last, GRANULE);
    assert_eq!(bitmap.count_marked(base, bitmap.end()), 1);
}

#[test]
fn clearing_whole_and_partial_words() {
    let memory = heap(1 << 16);
    let base = memory.start().as_ptr() as usize;
    let bitmap = MarkBitmap::new(base, 1 << 16).unwrap();
    let granules = (1 << 16) / GRANULE;
    for g in 0..granules {
        bitmap.mark(base + g * GRANULE);
    }
    // From the middle of word 1 to the middle of word 100.
    let (from, to) = (64 + 10, 100 * 64 + 5);
    bitmap.clear_range(base + from * GRANULE, (to - from) * GRANULE);
    assert_eq!(
        bitmap.count_marked(base, bitmap.end()),
        granules - (to - from)
    );
    assert!(bitmap.is_marked(base + (from - 1) * GRANULE));
    assert!(!bitmap.is_marked(base + from * GRANULE));
    assert!(!bitmap.is_marked(base + (to - 1) * GRANULE));
    assert!(bitmap.is_marked(base + to * GRANULE));
    bitmap.clear_range(base, 1 << 16);
    assert_eq!(bitmap.count_marked(base, bitmap.end()), 0);
}

#[test]
fn metadata_is_one_sixty_fourth() {
    assert_eq!(MarkBitmap::metadata_bytes_for(256 * 1024), 4096);
    assert_eq!(MarkBitmap::metadata_bytes_for(8), 1);
    assert_eq!(MarkBitmap::metadata_bytes_for(520), 9);
    assert_eq!(MarkBitmap::metadata_bytes_for(0), 0);
    let bitmap = MarkBitmap::new(0x10_0000, 1 << 20).unwrap();
    assert_eq!(bitmap.metadata_bytes(), 16 * 1024);
    assert_eq!((bitmap.base(), bitmap.end()), (0x10_0000, 0x20_0000));
}

#[test]
fn bad_ranges_are_errors() {
    for (base, len, why) in [
        (0x1000, 0, "empty"),
        (0x1004, 4096, "8-aligned"),
        (usize::MAX - 4095, 8192, "wraps"),
    ] {
        match MarkBitmap::new(base, len) {
            Err(AllocError::BadLayout { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{base:#x} +{len}: {other:?}"),
        }
    }
}

#[test]
#[should_panic(expected = "address 0x2000 is outside the mark bitmap's range [0x1000, 0x2000)")]
fn marking_outside_the_range_panics() {
    MarkBitmap::new(0x1000, 0x1000).unwrap().mark(0x2000);
}

#[test]
#[should_panic(expected = "address 0xff8 is outside")]
fn asking_below_the_range_panics() {
    MarkBitmap::new(0x1000, 0x1000).unwrap().is_marked(0xff8);
}

#[test]
#[should_panic(expected = "range [0x1800, 0x2008) is not inside the mark bitmap's range")]
fn walking_past_the_end_panics() {
    MarkBitmap::new(0x1000, 0x1000)
        .unwrap()
        .for_each_marked(0x1800, 0x2008, |_| {});
}

#[test]
#[should_panic(expected = "is not inside the mark bitmap's range")]
fn clearing_an_overflowing_range_panics() {
    MarkBitmap::new(0x1000, 0x1000)
        .unwrap()
        .clear_range(0x1800, usize::MAX);
}

/// Four threads mark overlapping sets of granules in different orders, many
/// rounds: every granule is reported newly marked by exactly one of them.
#[test]
fn parallel_marking_reports_each_granule_once() {
    const LEN: usize = 1 << 18;
    const THREADS: usize = 4;
    let memory = heap(LEN);
    let base = memory.start().as_ptr() as usize;
    let bitmap = MarkBitmap::new(base, LEN).unwrap();
    let granules = LEN / GRANULE;
    let start = Barrier::new(THREADS);
    for round in 0..4 {
        let won: Vec<Vec<usize>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (bitmap, start) = (&bitmap, &start);
                    s.spawn(move || {
                        // Thread t skips the granules ≡ t (mod 4), so every
                        // granule is wanted by three threads; odd threads
                        // walk downwards.
                        let mut mine: Vec<usize> = (0..granules)
                            .filter(|g| (g + round) % THREADS != t)
                            .collect();
                        if t % 2 == 1 {
                            mine.reverse();
                        }
                        start.wait();
                        mine.into_iter()
                            .map(|g| base + g * GRANULE)
                            .filter(|&a| bitmap.mark(a))
                            .collect()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let mut all: Vec<usize> = won.into_iter().flatten().collect();
        all.sort_unstable();
        let expected: Vec<usize> = (0..granules).map(|g| base + g * GRANULE).collect();
        assert_eq!(all, expected, "round {round}: a granule won twice or never");
        assert_eq!(bitmap.count_marked(base, bitmap.end()), granules);
        bitmap.clear_range(base, LEN);
    }
}
