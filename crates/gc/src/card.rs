//! The card table: where a generational collector finds old-to-young references.
//!
//! The heap's address range is cut into *cards* of `card_size` bytes (a power
//! of two from 64 to 4096, [`DEFAULT_CARD_SIZE`] = 512), each with one byte
//! in a [`CardTable`]. After every store of a reference into an object, the
//! mutator's post-write barrier [dirties](CardTable::dirty) the card of the
//! slot it wrote; a young collection then scans only the objects on dirty
//! cards of the old generation ([`CardTable::for_each_dirty`]) instead of the
//! whole old generation. The table costs `1 / card_size` of the covered range
//! ([`CardTable::metadata_bytes_for`]), in a reservation of its own.
//!
//! # Encoding: clean = 0
//!
//! [`CardTable::CLEAN`] is 0 and [`CardTable::DIRTY`] is 1. The barrier runs
//! on every reference store and is one store of a constant byte:
//! `mov byte [biased_base + (addr >> 9)], 1` on x86-64. A compiler gets the
//! raw numbers from [`CardTable::facts`].
//!
//! Fresh memory reads as zero, so **a new table has every card clean**, and
//! costs no memory until it is used; so do the cards of a pool when it
//! first joins the old generation, with no cleaning pass. (HotSpot uses
//! dirty = 0, to store a zero register on RISC machines, and must then
//! clean the cards of newly committed heap; a collector that forgets to
//! scans every object of a fresh pool once for nothing — which is what
//! this crate did until that showed as half of the young collections'
//! copying time when most survivors are promoted.) A pool given back and
//! taken again may bring dirty cards along: they are scanned once and
//! cleaned, which is safe.
//!
//! # Cleaning while mutators run
//!
//! A scan may clean cards while mutators keep dirtying them (concurrent
//! refinement, or a collector that scans before it stops the world). The
//! protocol guarantees that a reference store is never lost: once both sides
//! are done, either the scan saw the stored value or the card is still
//! dirty. It rests on three rules, checked with loom (`tests/loom.rs`: the
//! orderings) and with real threads (`tests/card.rs`: the order of cleaning
//! and visiting, which needs a card dirtied twice, a case loom 0.7.2
//! misjudges):
//!
//! 1. The barrier's store of DIRTY is a *release* store, so the reference
//!    store before it is visible to whoever sees the card dirty. On x86-64
//!    this is the plain `mov` above; on weakly ordered CPUs it is `stlrb` (or
//!    a store-store barrier before the store).
//! 2. The scan cleans a dirty card with an *acquire* `swap` **before** it
//!    visits the card. A read-modify-write reads the latest value of the
//!    card, so if the cleaning comes after the barrier's DIRTY it
//!    synchronizes with it and the visit sees the reference; if it comes
//!    before, the barrier's DIRTY survives the scan. (A load followed by a
//!    plain store of CLEAN could read an older DIRTY of the same card and
//!    wipe the newer one without seeing its reference.)
//! 3. Visiting first and cleaning after would lose a store that lands
//!    between the two: never do that.
//!
//! If cards are only ever scanned with the world stopped, the safepoint
//! orders everything and a relaxed barrier store would do.
//!
//! ```
//! use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
//! use rtmem_gc::card::{CardTable, DEFAULT_CARD_SIZE};
//!
//! let pools = PoolManager::new(PoolManagerConfig::default()).unwrap();
//! let old = pools.alloc_pool(SpaceType::Object, 64 * 1024).unwrap();
//! let (start, end) = (old.start_addr(), old.end_addr());
//! let cards = CardTable::new(start, old.size(), DEFAULT_CARD_SIZE).unwrap();
//! // The pool joins the old generation: its cards start clean.
//! cards.clean_range(start, old.size());
//! pools.stats().record_metadata(SpaceType::Object, cards.metadata_bytes_for(old.size()));
//!
//! // The post-write barrier, after a reference was stored at `slot`:
//! let slot = start + 1000;
//! cards.dirty(slot);
//! assert!(cards.is_dirty(slot));
//!
//! // A young collection scans the dirty cards, cleaning each before its visit.
//! let mut visited = Vec::new();
//! cards.for_each_dirty(start, end, true, |card_start, card_end| {
//!     visited.push((card_start, card_end)); // scan the objects overlapping the card
//! });
//! assert_eq!(visited, [(start + 512, start + 1024)]);
//! assert!(!cards.is_dirty(slot));
//!
//! // What a JIT inlines: `*(biased_base + (slot >> shift)) = dirty_value`.
//! let facts = cards.facts();
//! assert_eq!((facts.card_shift, facts.dirty_value), (9, CardTable::DIRTY));
//! pools.free_pool(old);
//! ```

use crate::covered::Covered;
use std::ops::Range;

use rtmem_base::AllocError;

use crate::sync::{
    AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
    SideTable,
};

/// The card size when a profile does not choose one: 512 bytes, as in HotSpot.
pub const DEFAULT_CARD_SIZE: usize = 512;
/// The smallest card size: a cache line.
pub const MIN_CARD_SIZE: usize = 64;
/// The largest card size: a page.
pub const MAX_CARD_SIZE: usize = 4096;

/// Cards read at once while skipping clean ones: a word's worth.
const GROUP: usize = 8;

/// One byte per card of an address range `[base, base + len)`, dirtied by
/// the post-write barrier and scanned (and cleaned) by the collector.
///
/// # Panics
///
/// Every method that takes an address panics, in debug and release builds,
/// if the address (or range) lies outside the covered range; the message
/// names the address and the range. The barrier pays one compare and a
/// branch that is never taken for this; an unchecked store would write
/// outside the table.
#[derive(Debug)]
pub struct CardTable {
    range: Covered,
    shift: u32,
    cards: SideTable<AtomicU8>,
}

/// The raw facts a compiler needs to inline the post-write barrier, from
/// [`CardTable::facts`].
///
/// The card of `addr` (inside `[covered_start, covered_end)`) is the byte at
/// `card_table_biased_base + (addr >> card_shift)`; the barrier stores
/// `dirty_value` there, after the reference store and ordered after it (see
/// the [module docs](self)): on x86-64
///
/// ```text
/// shr  rA, card_shift
/// mov  byte [rA + rBiasedBase], dirty_value    ; 0
/// ```
///
/// and on AArch64 `lsr x1, x0, #shift; add x1, x1, xBiasedBase; stlrb wzr, [x1]`.
/// The table's provenance is exposed, so Rust code that plays the JIT may
/// turn these addresses into pointers with `std::ptr::with_exposed_provenance_mut`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierFacts {
    /// The table's start minus `covered_start >> card_shift` (wrapping), so
    /// that the card of `addr` is at `card_table_biased_base + (addr >> card_shift)`
    /// with no subtraction.
    pub card_table_biased_base: usize,
    /// log2 of the card size.
    pub card_shift: u32,
    /// The byte the barrier stores: [`CardTable::DIRTY`].
    pub dirty_value: u8,
    /// The byte of a clean card: [`CardTable::CLEAN`].
    pub clean_value: u8,
    /// The first address the table covers.
    pub covered_start: usize,
    /// One past the last address the table covers; the barrier must only be
    /// applied to slots in `[covered_start, covered_end)`.
    pub covered_end: usize,
}

impl CardTable {
    /// The value of a dirty card.
    pub const DIRTY: u8 = 1;
    /// The value of a clean card: 0, the value of fresh memory.
    pub const CLEAN: u8 = 0;

    /// A table covering `[base, base + len)` with cards of `card_size` bytes,
    /// **every card clean** (the value of fresh memory: the table costs
    /// nothing until it is written).
    ///
    /// Fails with [`AllocError::BadLayout`] if `card_size` (reported as the
    /// size) is not a power of two from [`MIN_CARD_SIZE`] to
    /// [`MAX_CARD_SIZE`], if `len` is zero, `base` is not a multiple of the
    /// card size or the range wraps around the address space; with
    /// [`AllocError::Os`] if the kernel refuses the table's memory.
    pub fn new(base: usize, len: usize, card_size: usize) -> Result<CardTable, AllocError> {
        if !card_size.is_power_of_two() || !(MIN_CARD_SIZE..=MAX_CARD_SIZE).contains(&card_size) {
            return Err(AllocError::bad_layout(
                card_size,
                card_size,
                "the card size must be a power of two from 64 to 4096 bytes",
            ));
        }
        let reason = if len == 0 {
            "a card table cannot cover an empty range"
        } else if !base.is_multiple_of(card_size) {
            "the range of a card table must start at a card boundary"
        } else if base.checked_add(len).is_none() {
            "the range of a card table wraps around the address space"
        } else {
            let cards = SideTable::zeroed(len.div_ceil(card_size))?;
            tracing::debug!(base, len, card_size, "card table reserved");
            return Ok(CardTable {
                range: Covered::new(base, len, "card table"),
                shift: card_size.trailing_zeros(),
                cards,
            });
        };
        Err(AllocError::bad_layout(len, card_size, reason))
    }

    /// The post-write barrier: marks the card of `addr` dirty with one release
    /// store of [`DIRTY`](Self::DIRTY) (a plain `mov` on x86-64).
    ///
    /// # Panics
    /// If `addr` lies outside the covered range.
    #[inline(always)]
    pub fn dirty(&self, addr: usize) {
        self.card(addr).store(Self::DIRTY, Release);
    }

    /// Whether the card of `addr` is dirty. When it is, the stores made
    /// before the barrier that dirtied it are visible to the caller.
    ///
    /// # Panics
    /// If `addr` lies outside the covered range.
    #[inline]
    pub fn is_dirty(&self, addr: usize) -> bool {
        self.card(addr).load(Acquire) == Self::DIRTY
    }

    /// Cleans the card of `addr`; true if it was dirty, in which case the
    /// stores made before the barrier that dirtied it are visible to the
    /// caller (it is safe to clean a card and then scan it while mutators run).
    ///
    /// # Panics
    /// If `addr` lies outside the covered range.
    #[inline]
    pub fn clean(&self, addr: usize) -> bool {
        take_dirty(self.card(addr))
    }

    /// Cleans the cards that lie wholly inside `[start, start + len)` (a card
    /// only partly inside may cover dirty memory outside: it is left alone).
    /// Dirtying that races with this may be lost: use it for memory that
    /// holds no objects (a pool given back), or with the world stopped.
    ///
    /// # Panics
    /// If the range is not inside the covered range.
    pub fn clean_range(&self, start: usize, len: usize) {
        let end = start.saturating_add(len);
        let (start_offset, end_offset) = self.range.offsets(start, end);
        // From the first card boundary at or after `start` to the last one at
        // or before `end`; a partial last card ends at the end of the range.
        let first = start_offset.div_ceil(self.card_size());
        let last = if end == self.end() {
            self.cards.len()
        } else {
            end_offset >> self.shift
        };
        for card in self.cards.get(first..last).unwrap_or_default() {
            card.store(Self::CLEAN, Relaxed);
        }
    }

    /// Cleans every card, writing the whole table (one byte per card):
    /// prefer [`clean_range`](Self::clean_range) over the pools in use.
    /// Dirtying that races with this may be lost: use it with the world
    /// stopped.
    pub fn clear_all(&self) {
        self.clean_range(self.range.base(), self.range.len());
    }

    /// Calls `f(card_start, card_end)` for every dirty card overlapping
    /// `[start, end)`, in address order; `card_end` is clipped to the covered
    /// range. Runs of eight clean cards are skipped with one 8-byte load (on
    /// x86-64; elsewhere eight byte loads and one branch).
    ///
    /// With `clean_as_you_go`, each dirty card is cleaned *before* `f` sees it,
    /// so a mutator that dirties it again during the visit leaves it dirty
    /// for the next scan and no store is lost (see the module docs). The
    /// whole card is cleaned even if it sticks out of `[start, end)`, and `f`
    /// is told its whole range.
    ///
    /// # Panics
    /// If the range is not inside the covered range.
    pub fn for_each_dirty(
        &self,
        start: usize,
        end: usize,
        clean_as_you_go: bool,
        mut f: impl FnMut(usize, usize),
    ) {
        let cards = self.cards_of(start, end);
        let mut visit = |i: usize| {
            let card = &self.cards[i];
            let dirty = if clean_as_you_go {
                take_dirty(card)
            } else {
                card.load(Acquire) == Self::DIRTY
            };
            if dirty {
                let card_start = self.range.base() + (i << self.shift);
                f(card_start, (card_start + (1 << self.shift)).min(self.end()));
            }
        };
        for group in cards.start / GROUP..cards.end.div_ceil(GROUP) {
            let lo = (group * GROUP).max(cards.start);
            let hi = ((group + 1) * GROUP).min(cards.end);
            if hi - lo == GROUP && self.cards[lo..].first_chunk().is_some_and(all_clean) {
                continue;
            }
            (lo..hi).for_each(&mut visit);
        }
    }

    /// Whether any card overlapping `[start, end)` is dirty (an acquire
    /// read of each, as [`for_each_dirty`](Self::for_each_dirty) without
    /// cleaning).
    ///
    /// # Panics
    /// If the range is not inside the covered range.
    pub fn any_dirty(&self, start: usize, end: usize) -> bool {
        self.cards[self.cards_of(start, end)]
            .iter()
            .any(|card| card.load(Acquire) == Self::DIRTY)
    }

    /// The raw facts a compiler inlines the barrier from.
    ///
    /// Not available under loom, whose atomics are not bytes in memory.
    #[cfg(not(loom))]
    pub fn facts(&self) -> BarrierFacts {
        BarrierFacts {
            card_table_biased_base: self
                .cards
                .exposed_start()
                .wrapping_sub(self.range.base() >> self.shift),
            card_shift: self.shift,
            dirty_value: Self::DIRTY,
            clean_value: Self::CLEAN,
            covered_start: self.range.base(),
            covered_end: self.end(),
        }
    }

    /// The bytes of table that a heap range of `len` bytes uses: one per card,
    /// rounded up. Pass a pool's size to account the pool's share as metadata
    /// in `MemStats` (the pages of the table are only backed once written).
    pub fn metadata_bytes_for(&self, len: usize) -> usize {
        len.div_ceil(self.card_size())
    }

    /// The bytes reserved for the whole table (whole pages): the most it can
    /// ever occupy in memory.
    pub fn metadata_bytes(&self) -> usize {
        self.cards.bytes()
    }

    /// The size of a card in bytes.
    pub fn card_size(&self) -> usize {
        1 << self.shift
    }

    /// The first address covered.
    pub fn base(&self) -> usize {
        self.range.base()
    }

    /// One past the last address covered.
    pub fn end(&self) -> usize {
        self.range.end()
    }

    /// Whether `addr` lies in the covered range.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        self.range.contains(addr)
    }

    /// The card byte of `addr`.
    #[inline(always)]
    fn card(&self, addr: usize) -> &AtomicU8 {
        let offset = self.range.offset(addr);
        // SAFETY: `offset < len`, so `offset >> shift <= (len - 1) >> shift`,
        // which is less than `len.div_ceil(card_size)`, the table's length.
        unsafe { self.cards.get_unchecked(offset >> self.shift) }
    }

    /// The indices of the cards overlapping `[start, end)`.
    fn cards_of(&self, start: usize, end: usize) -> Range<usize> {
        let (start, end) = self.range.offsets(start, end);
        start >> self.shift..end.div_ceil(self.card_size())
    }
}

/// Cleans `card` if it is dirty; true if it was. The cleaning is an acquire
/// read-modify-write, which reads the card's latest value: if that is a
/// barrier's DIRTY, the stores before the barrier are now visible (ordering 2
/// of the module docs). A card seen clean is left alone.
#[inline(always)]
fn take_dirty(card: &AtomicU8) -> bool {
    card.load(Relaxed) == CardTable::DIRTY
        && card.swap(CardTable::CLEAN, Acquire) == CardTable::DIRTY
}

// `all_clean` relies on CLEAN being zero: the OR of cards is CLEAN only if
// every card is.
const _: () = assert!(CardTable::CLEAN == 0);

/// Whether all eight cards of a group (8-aligned within the table) are clean,
/// read with one 8-byte load on x86-64.
///
/// Rust's memory model has no mixed-size atomics: an `AtomicU64` load over
/// bytes that barriers store as `AtomicU8` would be undefined behaviour. An
/// aligned 8-byte load in inline assembly returns a value that eight relaxed
/// byte loads done back to back could return, so it is one (four times
/// faster to scan a mostly clean table than eight byte loads, measured
/// on x86-64: 0.15 vs 0.55 ms for the 2 MiB table of a 1 GiB heap).
/// Elsewhere, and under loom, eight relaxed byte loads.
#[inline(always)]
fn all_clean(group: &[AtomicU8; GROUP]) -> bool {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    {
        let word: u64;
        // SAFETY: `group` is eight `AtomicU8` of the table, readable for the
        // life of the borrow, and 8-aligned (the table is page-aligned and
        // groups start at multiples of 8), so the load is a single-copy
        // atomic read of exactly those bytes; it writes nothing. Its result
        // is one that eight relaxed `AtomicU8` loads could produce, so in the
        // abstract machine it is such loads (see above), racing soundly with
        // barrier stores.
        unsafe {
            std::arch::asm!(
                "mov {word}, qword ptr [{group}]",
                group = in(reg) group.as_ptr(),
                word = lateout(reg) word,
                options(nostack, preserves_flags, readonly),
            );
        }
        word == 0
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    {
        group
            .iter()
            .fold(CardTable::CLEAN, |any, card| any | card.load(Relaxed))
            == CardTable::CLEAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dirty_card_is_found_at_every_position_of_a_group() {
        let base = 0x4000_0000;
        let cards = CardTable::new(base, 64 * 512, 512).unwrap();
        cards.clear_all();
        for i in 0..64 {
            let addr = base + i * 512 + 17;
            cards.dirty(addr);
            let mut seen = Vec::new();
            cards.for_each_dirty(base, cards.end(), true, |s, e| seen.push((s, e)));
            assert_eq!(seen, [(base + i * 512, base + (i + 1) * 512)], "card {i}");
            assert!(!cards.is_dirty(addr));
        }
    }

    #[test]
    fn take_dirty_cleans_once() {
        let card = AtomicU8::new(CardTable::DIRTY);
        assert!(take_dirty(&card));
        assert!(!take_dirty(&card));
        assert_eq!(card.load(Relaxed), CardTable::CLEAN);
    }
}
