//! The card table: cards and their boundaries, scanning against a set model,
//! the barrier as a JIT inlines it, errors, and cleaning while mutators run.
#![cfg(not(loom))]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rtmem_base::{AllocError, Reservation, page_size};
use rtmem_gc::card::{BarrierFacts, CardTable, DEFAULT_CARD_SIZE, MAX_CARD_SIZE, MIN_CARD_SIZE};

/// A table with every card clean.
fn clean_table(base: usize, len: usize, card_size: usize) -> CardTable {
    let cards = CardTable::new(base, len, card_size).unwrap();
    cards.clear_all();
    cards
}

fn dirty_cards(cards: &CardTable, start: usize, end: usize, clean: bool) -> Vec<(usize, usize)> {
    let mut seen = Vec::new();
    cards.for_each_dirty(start, end, clean, |s, e| seen.push((s, e)));
    seen
}

#[test]
fn cards_and_their_boundaries() {
    let heap = Reservation::new(64 * 1024, 64 * 1024).unwrap();
    let base = heap.start().as_ptr() as usize;
    let cards = clean_table(base, heap.len(), DEFAULT_CARD_SIZE);
    assert_eq!(cards.card_size(), 512);
    let (first, last) = (base, cards.end() - 8);
    // The last byte of card 2 and the first of card 3 are different cards.
    cards.dirty(base + 3 * 512 - 1);
    assert!(cards.is_dirty(base + 2 * 512) && !cards.is_dirty(base + 3 * 512));
    cards.dirty(first);
    cards.dirty(last);
    assert_eq!(
        dirty_cards(&cards, base, cards.end(), false),
        [
            (base, base + 512),
            (base + 1024, base + 1536),
            (cards.end() - 512, cards.end())
        ]
    );
    // Ranges select the cards they overlap: a start inside a card includes
    // it; an end on a card boundary excludes the next card.
    assert_eq!(
        dirty_cards(&cards, base + 1100, base + 1101, false),
        [(base + 1024, base + 1536)]
    );
    assert_eq!(dirty_cards(&cards, base + 512, base + 1024, false), []);
    assert_eq!(dirty_cards(&cards, base + 1536, base + 1536, true), []);
    // Scanning without cleaning left them all dirty; with cleaning, the
    // scanned range only.
    assert_eq!(dirty_cards(&cards, base, base + 2048, true).len(), 2);
    assert!(!cards.is_dirty(first) && cards.is_dirty(last));
    assert!(cards.clean(last), "was dirty");
    assert!(!cards.clean(last), "already clean");
    cards.dirty(first);
    cards.clear_all();
    assert_eq!(dirty_cards(&cards, base, cards.end(), false), []);
}

#[test]
fn a_partial_last_card_is_clipped() {
    let cards = clean_table(0x10_0000, 1000, 256);
    assert_eq!(cards.end(), 0x10_0000 + 1000);
    cards.dirty(0x10_0000 + 999);
    assert_eq!(
        dirty_cards(&cards, 0x10_0000, cards.end(), true),
        [(0x10_0000 + 768, 0x10_0000 + 1000)]
    );
}

/// Resident memory of this process, from `/proc/self/statm`.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * page_size()
}

#[test]
fn a_new_table_is_clean_and_costs_nothing_until_written() {
    // A table for a 64 GiB reservation: 128 MiB of cards, none of them touched.
    let (base, len) = (0x1000_0000_0000, 64 << 30);
    let before = resident_bytes();
    let cards = CardTable::new(base, len, DEFAULT_CARD_SIZE).unwrap();
    assert_eq!(cards.metadata_bytes(), 128 << 20);
    assert!(
        !cards.is_dirty(base) && !cards.is_dirty(base + len / 2) && !cards.is_dirty(base + len - 1)
    );
    assert_eq!(dirty_cards(&cards, base, base + (1 << 30), false), []);
    // Dirty every card of one 256 KiB pool in the middle: 512 cards, one
    // page of table.
    let pool = base + (5 << 30);
    for card in (pool..pool + (256 << 10)).step_by(DEFAULT_CARD_SIZE) {
        cards.dirty(card);
    }
    assert_eq!(
        dirty_cards(&cards, pool - 4096, pool + (260 << 10), false).len(),
        512
    );
    assert!(!cards.is_dirty(pool - 1) && !cards.is_dirty(pool + (256 << 10)));
    cards.clean_range(pool, 256 << 10);
    assert_eq!(dirty_cards(&cards, pool, pool + (256 << 10), false), []);
    let grown = resident_bytes().saturating_sub(before);
    // Other tests run in this process at the same time: allow them 32 MiB.
    assert!(grown < 32 << 20, "the table made {grown} bytes resident");
    assert_eq!(cards.metadata_bytes_for(256 << 10), 512);
    assert_eq!(cards.metadata_bytes_for(1), 1);
    assert!(cards.contains(base) && !cards.contains(cards.end()));
    assert_eq!(cards.base(), base);
}

#[test]
fn clean_range_leaves_cards_that_stick_out_alone() {
    let base = 0x10_0000;
    let cards = CardTable::new(base, 4096 + 100, 512).unwrap();
    for card in (base..cards.end()).step_by(512) {
        cards.dirty(card);
    }
    // From inside card 0 to inside card 3: only cards 1 and 2 lie wholly inside.
    cards.clean_range(base + 10, 3 * 512);
    let dirty: Vec<usize> = dirty_cards(&cards, base, cards.end(), false)
        .into_iter()
        .map(|(s, _)| (s - base) / 512)
        .collect();
    assert_eq!(dirty, [0, 3, 4, 5, 6, 7, 8]);
    // Inside one card: nothing. Up to the end: the partial last card too.
    cards.clean_range(base + 3 * 512 + 1, 10);
    assert!(cards.is_dirty(base + 3 * 512));
    cards.clean_range(base + 7 * 512, 512 + 100);
    assert_eq!(dirty_cards(&cards, base, cards.end(), false).len(), 5); // 0, 3, 4, 5, 6
    cards.clear_all();
    assert_eq!(dirty_cards(&cards, base, cards.end(), false), []);
}

#[test]
fn bad_card_sizes_and_ranges_are_errors() {
    for size in [0, 1, 32, 100, 513, 8192, 1 << 20] {
        match CardTable::new(0x10_0000, 1 << 16, size) {
            Err(e @ AllocError::BadLayout { size: s, .. }) => {
                assert_eq!(s, size);
                assert!(e.to_string().contains("card size"), "{e}");
            }
            other => panic!("card size {size}: {other:?}"),
        }
    }
    for size in [MIN_CARD_SIZE, 128, DEFAULT_CARD_SIZE, MAX_CARD_SIZE] {
        let cards = CardTable::new(0x10_0000, 1 << 16, size).unwrap();
        assert_eq!(cards.facts().card_shift, size.trailing_zeros());
    }
    for (base, len, why) in [
        (0x10_0000, 0, "empty"),
        (0x10_0100, 4096, "card boundary"),
        (usize::MAX - 511, 1024, "wraps"),
    ] {
        match CardTable::new(base, len, 512) {
            Err(AllocError::BadLayout { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{base:#x} +{len}: {other:?}"),
        }
    }
}

#[test]
#[should_panic(
    expected = "address 0x110000 is outside the card table's range [0x100000, 0x110000)"
)]
fn dirtying_outside_the_range_panics() {
    CardTable::new(0x10_0000, 1 << 16, 512)
        .unwrap()
        .dirty(0x11_0000);
}

#[test]
#[should_panic(expected = "range [0x10fe00, 0x110001) is not inside the card table's range")]
fn scanning_past_the_end_panics() {
    CardTable::new(0x10_0000, 1 << 16, 512)
        .unwrap()
        .for_each_dirty(0x10_fe00, 0x11_0001, true, |_, _| {});
}

/// The barrier exactly as a JIT emits it: `biased_base + (addr >> shift)`,
/// turned into a pointer, and one byte store of the dirty value.
fn jit_barrier(facts: &BarrierFacts, addr: usize) {
    assert!((facts.covered_start..facts.covered_end).contains(&addr));
    let card = facts
        .card_table_biased_base
        .wrapping_add(addr >> facts.card_shift);
    let card = std::ptr::with_exposed_provenance_mut::<u8>(card);
    // SAFETY: `facts` promises that the card of a covered address is a byte
    // of the table, whose provenance it exposed; the table's bytes are only
    // ever accessed atomically.
    unsafe { AtomicU8::from_ptr(card) }.store(facts.dirty_value, Release);
}

#[test]
fn the_jit_barrier_dirties_the_card_the_table_sees() {
    let heap = Reservation::new(1 << 20, 1 << 20).unwrap();
    let base = heap.start().as_ptr() as usize;
    let cards = clean_table(base, heap.len(), DEFAULT_CARD_SIZE);
    let facts = cards.facts();
    assert_eq!(
        (facts.dirty_value, facts.clean_value, facts.card_shift),
        (CardTable::DIRTY, CardTable::CLEAN, 9)
    );
    assert_eq!(
        (facts.covered_start, facts.covered_end),
        (base, base + (1 << 20))
    );
    for addr in [
        base,
        base + 511,
        base + 512,
        base + 777_777,
        cards.end() - 1,
    ] {
        jit_barrier(&facts, addr);
        assert!(cards.is_dirty(addr), "{addr:#x}");
        let card = addr & !511;
        assert_eq!(
            dirty_cards(&cards, base, cards.end(), true),
            [(card, card + 512)]
        );
    }
}

/// A heap high in the address space: `base >> shift` is larger than the
/// table's address, so the biased base wraps around; the sum still lands on
/// the right card.
#[test]
fn the_biased_base_may_wrap() {
    let base = 0xffff_f000_0000_0000;
    let cards = clean_table(base, 1 << 20, 64);
    let facts = cards.facts();
    assert!(facts.card_table_biased_base > usize::MAX / 2, "wrapped");
    jit_barrier(&facts, base + 64 * 1000 + 3);
    assert_eq!(
        dirty_cards(&cards, base, cards.end(), false),
        [(base + 64_000, base + 64_064)]
    );
}

#[derive(Clone, Debug)]
enum Op {
    Dirty(usize),
    Clean(usize),
    IsDirty(usize),
    /// Byte offsets `[start, end)`, and whether to clean.
    Scan(usize, usize, bool),
    /// Byte offsets `start, len`.
    CleanRange(usize, usize),
    ClearAll,
}

/// 37 cards of 64 bytes and a partial one: several groups of eight, a
/// partial group at the end.
const LEN: usize = 37 * 64 + 40;

fn op() -> impl Strategy<Value = Op> {
    let offset = 0..LEN;
    prop_oneof![
        4 => offset.clone().prop_map(Op::Dirty),
        1 => offset.clone().prop_map(Op::Clean),
        1 => offset.prop_map(Op::IsDirty),
        3 => (0..=LEN, 0..=LEN, any::<bool>()).prop_map(|(a, b, c)| Op::Scan(a.min(b), a.max(b), c)),
        1 => (0..=LEN, 0..=LEN).prop_map(|(a, b)| Op::CleanRange(a.min(b), a.max(b) - a.min(b))),
        1 => Just(Op::ClearAll),
    ]
}

proptest! {
    #[test]
    fn behaves_like_a_set_of_cards(ops in proptest::collection::vec(op(), 1..200)) {
        let base = 0x7000_0000;
        let cards = clean_table(base, LEN, 64);
        let mut model = BTreeSet::new(); // dirty card indices
        for op in ops {
            match op {
                Op::Dirty(o) => {
                    cards.dirty(base + o);
                    model.insert(o / 64);
                }
                Op::Clean(o) => prop_assert_eq!(cards.clean(base + o), model.remove(&(o / 64))),
                Op::IsDirty(o) => prop_assert_eq!(cards.is_dirty(base + o), model.contains(&(o / 64))),
                Op::Scan(start, end, clean) => {
                    let wanted = start / 64..end.div_ceil(64);
                    let expected: Vec<(usize, usize)> = model
                        .range(wanted)
                        .map(|&c| (base + c * 64, base + (c * 64 + 64).min(LEN)))
                        .collect();
                    prop_assert_eq!(dirty_cards(&cards, base + start, base + end, clean), expected.clone());
                    if clean {
                        for (s, _) in expected {
                            model.remove(&((s - base) / 64));
                        }
                    }
                }
                Op::CleanRange(start, len) => {
                    cards.clean_range(base + start, len);
                    // The cards wholly inside; the partial last card counts
                    // as whole when the range reaches the end.
                    let end = start + len;
                    let last = if end == LEN { LEN.div_ceil(64) } else { end / 64 };
                    for c in start.div_ceil(64)..last {
                        model.remove(&c);
                    }
                }
                Op::ClearAll => {
                    cards.clear_all();
                    model.clear();
                }
            }
        }
    }
}

/// Real threads: a mutator stores into the two slots of each card in turn
/// (so a card can be dirty from the first store while the second lands) and
/// dirties the card after each store; a collector keeps scanning, with
/// cleaning, the cards around the mutator, taking its time over each card
/// as if it scanned objects. Each slot is stored once, so at the end every
/// store was seen by a scan, or its card is still dirty.
///
/// Loom checks the orderings of this protocol; this also catches a scan
/// that visits a card before cleaning it, which loom 0.7.2 cannot check
/// (see `tests/loom.rs`).
#[test]
fn cleaning_scans_never_lose_a_store() {
    const CARDS: usize = 1 << 12;
    let base = 0x10_0000;
    let slot_addr = |i: usize| base + i * 32;
    let cards = CardTable::new(base, CARDS * 64, 64).unwrap();
    let slots: Vec<AtomicUsize> = (0..2 * CARDS).map(|_| AtomicUsize::new(0)).collect();
    let progress = AtomicUsize::new(0);
    let start = std::sync::Barrier::new(2);
    let pause = || (0..20).for_each(|_| std::hint::spin_loop());
    let mut seen = vec![0; 2 * CARDS];
    // Passes for a fifth of a second: the two threads only race when the
    // machine gives them two cores at once.
    let deadline = Instant::now() + Duration::from_millis(200);
    for pass in 1.. {
        cards.clear_all();
        progress.store(0, Relaxed);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                for card in 0..CARDS {
                    progress.store(card, Relaxed);
                    for i in [2 * card, 2 * card + 1] {
                        slots[i].store(pass, Relaxed);
                        cards.dirty(slot_addr(i));
                        pause(); // the mutator's other work
                    }
                }
                progress.store(CARDS, Release);
            });
            start.wait();
            loop {
                let at = progress.load(Acquire);
                let (from, to) = (at.saturating_sub(1), (at + 2).min(CARDS));
                cards.for_each_dirty(base + from * 64, base + to * 64, true, |start, end| {
                    for i in (start - base) / 32..(end - base) / 32 {
                        seen[i] = slots[i].load(Relaxed);
                    }
                    pause(); // scanning the card's objects
                });
                if at == CARDS {
                    break;
                }
            }
        });
        let lost: Vec<usize> = (0..2 * CARDS)
            .filter(|&i| seen[i] != pass && !cards.is_dirty(slot_addr(i)))
            .collect();
        assert!(
            lost.is_empty(),
            "pass {pass}: {} stores lost (never seen, card clean), slots {:?}...",
            lost.len(),
            &lost[..lost.len().min(8)]
        );
        if Instant::now() >= deadline {
            break;
        }
    }
}
