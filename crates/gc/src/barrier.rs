//! Barriers: what a mutator does around a reference store, per collector.
//!
//! Interpreters call [`Mutator::write_ref`](crate::Mutator::write_ref),
//! which applies the barriers itself. Compilers ask the heap's
//! [`BarrierSet`] for [`BarrierKinds`] (as bits) and, for the card-marking
//! post-write barrier, the card table's [`BarrierFacts`] to inline the fast
//! path from; for the SATB pre-write barrier, [`SatbFacts`]: the address of
//! the byte that says whether marking is active. The inlined SATB fast path
//! is one byte load and a branch taken only while a cycle marks; the slow
//! path calls [`Mutator::write_barrier`](crate::Mutator::write_barrier) (or
//! [`Mutator::keep_alive`](crate::Mutator::keep_alive)) with the old value.
//!
//! | collector | pre-write (SATB) | post-write (card) |
//! |---|---|---|
//! | `epsilon`, `stw` | — | — |
//! | `gen` | — | card marking |
//! | `gen-concurrent` | SATB while marking | card marking |

use std::sync::atomic::AtomicBool;

use crate::card::{BarrierFacts, CardTable};
use crate::stats::GcKind;

/// The barriers of a collector, as bits a JIT can test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BarrierKinds(u8);

impl BarrierKinds {
    /// No barrier: stores are plain stores.
    pub const NONE: BarrierKinds = BarrierKinds(0);
    /// Post-write card marking: after storing into a slot, dirty its card.
    pub const CARD: BarrierKinds = BarrierKinds(1);
    /// Pre-write snapshot-at-the-beginning: while marking is active, log the
    /// value a store overwrites.
    pub const SATB: BarrierKinds = BarrierKinds(2);

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every kind in `other` is in `self`.
    pub const fn contains(self, other: BarrierKinds) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    pub const fn union(self, other: BarrierKinds) -> BarrierKinds {
        BarrierKinds(self.0 | other.0)
    }
}

/// The barriers mutators apply for one heap's collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierSet {
    kinds: BarrierKinds,
    card: Option<BarrierFacts>,
    satb: Option<SatbFacts>,
}

/// What a JIT needs to inline the SATB pre-write barrier's fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SatbFacts {
    /// The address of a byte that is nonzero while concurrent marking is
    /// active (an `AtomicBool`; a relaxed load suffices: it changes only
    /// while mutators are stopped). When it is set, the store's old value
    /// must go to [`Mutator::write_barrier`](crate::Mutator::write_barrier).
    pub marking_flag: usize,
}

impl BarrierSet {
    /// The barriers `kind` needs, with the facts of `cards` (the heap's
    /// card table, for the generational collectors) and of `marking` (the
    /// flag the SATB barrier tests, for `gen-concurrent`).
    pub fn for_collector(
        kind: GcKind,
        cards: Option<&CardTable>,
        marking: Option<&AtomicBool>,
    ) -> BarrierSet {
        let kinds = match kind {
            GcKind::Epsilon | GcKind::Stw => BarrierKinds::NONE,
            GcKind::Gen => BarrierKinds::CARD,
            GcKind::GenConcurrent => BarrierKinds::CARD.union(BarrierKinds::SATB),
        };
        BarrierSet {
            kinds,
            card: cards
                .filter(|_| kinds.contains(BarrierKinds::CARD))
                .and_then(facts_of),
            satb: marking
                .filter(|_| kinds.contains(BarrierKinds::SATB))
                .map(|flag| SatbFacts {
                    marking_flag: flag.as_ptr() as usize,
                }),
        }
    }

    /// Which barriers a store needs.
    pub fn kinds(&self) -> BarrierKinds {
        self.kinds
    }

    /// The card table facts for an inlined post-write barrier, when the
    /// collector marks cards.
    pub fn card_facts(&self) -> Option<BarrierFacts> {
        self.card
    }

    /// The facts for an inlined SATB pre-write barrier, when the collector
    /// marks concurrently.
    pub fn satb_facts(&self) -> Option<SatbFacts> {
        self.satb
    }
}

/// The facts of a card table (none under loom, whose atomics are not bytes
/// in memory).
fn facts_of(cards: &CardTable) -> Option<BarrierFacts> {
    #[cfg(not(loom))]
    return Some(cards.facts());
    #[cfg(loom)]
    {
        let _ = cards;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectors_ask_for_their_barriers() {
        let none = BarrierSet::for_collector(GcKind::Stw, None, None);
        assert_eq!(none.kinds(), BarrierKinds::NONE);
        assert_eq!(
            BarrierSet::for_collector(GcKind::Epsilon, None, None)
                .kinds()
                .bits(),
            0
        );
        let both = BarrierSet::for_collector(GcKind::GenConcurrent, None, None).kinds();
        assert!(both.contains(BarrierKinds::CARD) && both.contains(BarrierKinds::SATB));
        assert!(
            !BarrierSet::for_collector(GcKind::Gen, None, None)
                .kinds()
                .contains(BarrierKinds::SATB)
        );
        assert_eq!(none.card_facts(), None);
        let flag = AtomicBool::new(false);
        let concurrent = BarrierSet::for_collector(GcKind::GenConcurrent, None, Some(&flag));
        assert_eq!(
            concurrent.satb_facts().map(|f| f.marking_flag),
            Some(flag.as_ptr() as usize)
        );
        assert_eq!(
            BarrierSet::for_collector(GcKind::Gen, None, Some(&flag)).satb_facts(),
            None
        );
    }
}
