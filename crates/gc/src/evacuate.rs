//! The young collection of the generational collectors: stop the world,
//! copy the live young objects in parallel, update every slot.
//!
//! 1. Every mutator's TLAB is retired (its tail becomes a filler).
//! 2. Roots — mutator roots, global roots, the finalization queues and the
//!    objects registered for finalization — are *evacuated*: each young
//!    object a root slot holds is copied and the slot updated.
//! 3. The old objects on dirty cards (tenured and non-moving runs and free
//!    lists, large objects) are found; their cards are cleaned.
//! 4. Copies and old objects from 3 are scanned on `gc_workers` threads
//!    ([`parallel`](crate::parallel)): each young object a slot references
//!    is evacuated. An object is copied into the *to* survivor region, or
//!    into the tenured generation once it has survived `promotion_age`
//!    young collections (or when the survivor region is full). Copies are
//!    claimed with a compare-exchange on the header ([`Header::BUSY`]), so
//!    each object is copied once, by the worker that claimed it; others
//!    wait the few instructions until the forwarding address is published.
//!    An old object (promoted, or from a dirty card) that still references
//!    a young one afterwards has its card dirtied again.
//! 5. Weak tables learn the new addresses; eden and the *from* region are
//!    emptied and the survivor regions swap.
//!
//! During a concurrent cycle's marking, promoted objects are marked
//! (allocated black): the cycle's marker does not trace them.
//!
//! Young collections treat reference objects' referents and objects
//! registered for finalization as strong: weak, soft and phantom references
//! are cleared and finalizers run only by full collections (young garbage
//! with a finalizer is promoted first). That keeps young collections
//! simple and short, at the price of holding such objects one full cycle
//! longer.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use rtmem_runslots::LocalRuns;
use rtmem_tlab::Tlab;

use crate::card::CardTable;
use crate::heap::HeapInner;
use crate::mutator::alloc_block;
use crate::object::{HEADER_BYTES, Header, ObjectRef};
use crate::parallel::{Scanner, drain};
use crate::stats::PhaseTimer;
use crate::vm::{ObjectModel, Scanning, SlotVisitor, VM};
use crate::young::Young;

/// What a young collection did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Evacuated {
    /// Bytes and objects copied into the survivor region.
    pub(crate) survived_bytes: usize,
    pub(crate) survived_objects: usize,
    /// Bytes and objects copied into the tenured generation.
    pub(crate) promoted_bytes: usize,
    pub(crate) promoted_objects: usize,
}

impl std::ops::AddAssign for Evacuated {
    fn add_assign(&mut self, other: Evacuated) {
        self.survived_bytes += other.survived_bytes;
        self.survived_objects += other.survived_objects;
        self.promoted_bytes += other.promoted_bytes;
        self.promoted_objects += other.promoted_objects;
    }
}

/// One copying worker: its buffers in the survivor region and the tenured
/// generation, and what it copied.
pub(crate) struct Evacuator<'a, V: VM> {
    heap: &'a HeapInner<V>,
    young: &'a Young,
    cards: &'a CardTable,
    survivor: Tlab,
    tenured: LocalRuns,
    done: Evacuated,
    /// Set when a slot visited since the last reset holds a young object.
    young_ref: bool,
    /// Where a visit pushes new copies (taken from the scanner's caller).
    grey: Vec<ObjectRef>,
    /// Whether a concurrent cycle is marking: promoted objects are then
    /// allocated black.
    black: bool,
    /// Whether this is the only worker (`gc_workers` = 1).
    alone: bool,
    /// Whether the survivor region refused a copy: the rest is promoted.
    survivor_full: bool,
}

impl<'a, V: VM> Evacuator<'a, V> {
    pub(crate) fn new(heap: &'a HeapInner<V>, young: &'a Young, cards: &'a CardTable) -> Self {
        Evacuator {
            heap,
            young,
            cards,
            survivor: Tlab::new(heap.config.heap.tlab),
            tenured: heap.spaces.object().tenured().small().local(),
            done: Evacuated::default(),
            young_ref: false,
            grey: Vec::new(),
            black: heap.marking(),
            alone: heap.config.gc_workers == 1,
            survivor_full: false,
        }
    }

    /// Claims the object whose header is `word` for copying: its original
    /// header, or `Err` with the copy's address if another worker copied
    /// it (after waiting for a copy in progress).
    #[inline]
    fn claim(&self, word: &AtomicU64) -> Result<Header, ObjectRef> {
        let mut spins = 0;
        loop {
            let bits = word.load(Ordering::Acquire);
            let header = Header::from_bits(bits);
            if let Some(to) = header.forwarded_to() {
                return Err(ObjectRef::from_addr(to).expect("forwarding addresses are not 0"));
            }
            if header == Header::BUSY {
                crate::sync::spin_wait(&mut spins);
                continue;
            }
            if word
                .compare_exchange_weak(
                    bits,
                    Header::BUSY.to_bits(),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Ok(header);
            }
        }
    }

    /// The young object `object` after evacuation: its copy's address,
    /// copying it first unless another worker did (or is doing) so.
    #[inline]
    fn evacuate(&mut self, object: ObjectRef) -> ObjectRef {
        // SAFETY: `object` is a young object the collector reached; its
        // header word is only accessed atomically during the copy phase.
        let word = unsafe { AtomicU64::from_ptr(object.addr() as *mut u64) };
        let header = if self.alone {
            // The only worker: nobody races for the object, so a plain
            // read and no claim. (A locked compare-exchange waits for the
            // stores of the previous copies to drain, which serializes
            // their cache misses.)
            let header = Header::from_bits(word.load(Ordering::Relaxed));
            if let Some(to) = header.forwarded_to() {
                return ObjectRef::from_addr(to).expect("forwarding addresses are not 0");
            }
            header
        } else {
            match self.claim(word) {
                Ok(header) => header,
                Err(copy) => return copy,
            }
        };
        let size = V::ObjectModel::size(object, header);
        let aged = header.aged();
        let promote = aged.age() >= self.heap.config.heap.promotion_age;
        let to = match (!promote && !self.survivor_full)
            .then(|| self.survivor.alloc(self.young.to_space(), size).ok())
            .flatten()
        {
            Some(to) => {
                self.done.survived_bytes += size;
                self.done.survived_objects += 1;
                to
            }
            None => {
                // Once the survivor region refuses, it stays full for this
                // collection: stop asking (each refusal is a slow path).
                self.survivor_full |= !promote;
                self.done.promoted_bytes += size;
                self.done.promoted_objects += 1;
                let to = self.promote(size);
                if self.black {
                    self.heap.bitmap.mark(to.as_ptr() as usize);
                }
                to
            }
        };
        // SAFETY: `to` is a fresh block of `size` bytes, disjoint from the
        // object; the object's body is intact (only its header was claimed).
        unsafe {
            copy_body(
                object.addr() as *const u64,
                to.cast::<u64>().as_ptr(),
                size.div_ceil(8),
            );
            to.cast::<u64>().write(aged.to_bits());
        }
        // The next copies go right after this one: start fetching their
        // lines, so that their stores do not each wait for a miss.
        rtmem_base::prefetch_ahead(to.as_ptr().wrapping_add(size));
        let copy = ObjectRef::from_addr(to.as_ptr() as usize).expect("blocks are not at 0");
        word.store(Header::forwarding(copy.addr()).to_bits(), Ordering::Release);
        self.grey.push(copy);
        copy
    }

    /// A block of `size` bytes in the tenured generation.
    fn promote(&mut self, size: usize) -> NonNull<u8> {
        let spaces = &self.heap.spaces;
        alloc_block(spaces, spaces.object().tenured(), &mut self.tenured, size).unwrap_or_else(|e| {
            panic!(
                "promotion failed during a young collection: {e} \
                 (the collector checks for room before it starts; the object space limit is too tight)"
            )
        })
    }

    /// Scans an old or copied object: evacuates what its slots reference
    /// (its referent too: young collections keep referents) and, for an old
    /// object left referencing young ones, dirties its card again.
    fn scan_object(&mut self, object: ObjectRef) {
        let header = grey_header(object);
        self.young_ref = false;
        V::Scanning::scan_object(object, header, self);
        if let Some((_, offset)) = V::ObjectModel::reference(object, header) {
            // SAFETY: the referent slot is a word inside the object, which
            // only this worker scans.
            let slot = unsafe { &mut *((object.addr() + offset) as *mut Option<ObjectRef>) };
            self.visit(slot);
        }
        if self.young_ref && !self.young.contains(object.addr()) {
            self.cards.dirty(object.addr());
        }
    }

    /// Gives back the buffers (the survivor buffer's tail becomes a filler)
    /// and returns what was copied.
    pub(crate) fn finish(mut self) -> Evacuated {
        self.survivor.retire(self.young.to_space());
        self.tenured.flush();
        self.done
    }
}

/// The header of a grey object of a young collection: a copy this
/// collection made, or an old object from the roots or a dirty card.
#[inline(always)]
fn grey_header(object: ObjectRef) -> Header {
    // SAFETY: a copy made by this collection or an allocated old object:
    // its header is an ordinary header, which no one writes meanwhile.
    Header::from_bits(unsafe { (object.addr() as *const u64).read() })
}

/// Copies the body (all but the header word) of an object of `words`
/// words from `from` to `to`. Most objects are a few words: those are
/// copied by fixed-size moves, not a call to `memcpy`.
///
/// # Safety
/// `from` and `to` are 8-aligned, disjoint, and valid for `words` (at
/// least 1) words. (Blocks are whole words: an object whose size is not
/// a multiple of 8 was allocated rounded up.)
#[inline(always)]
unsafe fn copy_body(from: *const u64, to: *mut u64, words: usize) {
    const { assert!(HEADER_BYTES == 8, "the header is one word") };
    /// Copies words `1..=N`.
    #[inline(always)]
    unsafe fn body<const N: usize>(from: *const u64, to: *mut u64) {
        // SAFETY: the caller's block holds `N + 1` words.
        unsafe {
            to.add(1)
                .cast::<[u64; N]>()
                .write(from.add(1).cast::<[u64; N]>().read())
        }
    }
    // SAFETY: for every arm, the blocks hold `words` words.
    unsafe {
        match words {
            1 => {}
            2 => body::<1>(from, to),
            3 => body::<2>(from, to),
            4 => body::<3>(from, to),
            5 => body::<4>(from, to),
            6 => body::<5>(from, to),
            7 => body::<6>(from, to),
            8 => body::<7>(from, to),
            n => std::ptr::copy_nonoverlapping(from.add(1), to.add(1), n - 1),
        }
    }
}

impl<V: VM> SlotVisitor for Evacuator<'_, V> {
    #[inline]
    fn visit(&mut self, slot: &mut Option<ObjectRef>) {
        if let Some(object) = *slot {
            if self.young.is_collected(object.addr()) {
                let copy = self.evacuate(object);
                *slot = Some(copy);
                self.young_ref |= self.young.contains(copy.addr());
            } else {
                self.young_ref |= self.young.contains(object.addr());
            }
        }
    }
}

impl<V: VM> Scanner for Evacuator<'_, V> {
    #[inline]
    fn scan(&mut self, object: ObjectRef, stack: &mut Vec<ObjectRef>) {
        std::mem::swap(&mut self.grey, stack);
        self.scan_object(object);
        std::mem::swap(&mut self.grey, stack);
    }

    /// The object is a copy this collection just wrote (or an old object
    /// on a dirty card): what scanning it will miss on is the headers of
    /// the young objects it references, which are about to be claimed and
    /// forwarded. Fetch those for writing.
    #[inline]
    fn prefetch(&mut self, object: ObjectRef) {
        /// Prefetches the young objects the slots it is shown hold.
        struct Prefetch<'a>(&'a Young);
        impl SlotVisitor for Prefetch<'_> {
            #[inline]
            fn visit(&mut self, slot: &mut Option<ObjectRef>) {
                if let Some(object) = *slot
                    && self.0.is_collected(object.addr())
                {
                    rtmem_base::prefetch_write(object.addr());
                }
            }
        }
        V::Scanning::scan_object(object, grey_header(object), &mut Prefetch(self.young));
    }
}

/// The old objects on dirty cards, whose cards are now clean.
///
/// Runs of slots are found from the card table, a group of clean cards at
/// a time, so the cost follows the dirty cards, not the size of the
/// tenured generation; free-list and large objects are walked (there are
/// few of them). The world is stopped: cleaning the cards once they are
/// found is as good as after (an object left referencing young ones
/// dirties its card again when it is scanned).
pub(crate) fn dirty_old_objects<V: VM>(heap: &HeapInner<V>, cards: &CardTable) -> Vec<ObjectRef> {
    let object = |block: NonNull<u8>| {
        ObjectRef::from_addr(block.as_ptr() as usize).expect("blocks are not at 0")
    };
    // Free-list and large objects overlapping a dirty card. Their cards
    // are cleaned only once all are found: neighbours may share a card.
    let mut blocks = Vec::new();
    let mut take_block = |block: NonNull<u8>, size: usize| {
        let start = block.as_ptr() as usize;
        if cards.any_dirty(start, start + size) {
            blocks.push((block, size));
        }
    };
    let mut found = Vec::new();
    for set in heap.block_sets() {
        // The dirty cards of the runs are cleaned as they are read; every
        // slot overlapping one is taken.
        set.small().walk_live_overlapping(
            |start, end, ranges| {
                cards.for_each_dirty(start, end, true, |lo, hi| match ranges.last_mut() {
                    Some(last) if last.1 == lo => last.1 = hi,
                    _ => ranges.push((lo, hi)),
                });
            },
            |slot, _| found.push(object(slot)),
        );
        set.medium().walk(&mut take_block);
    }
    heap.spaces.humongous().large().walk(&mut take_block);
    for (block, size) in blocks {
        let start = block.as_ptr() as usize;
        cards.for_each_dirty(start, start + size, true, |_, _| {});
        found.push(object(block));
    }
    found
}

/// Copies the survivors of the young generation; the world is stopped and
/// every mutator's TLAB retired. `roots` visits every root slot with the
/// evacuator it is given.
pub(crate) fn evacuate<V: VM>(
    heap: &HeapInner<V>,
    young: &Young,
    cards: &CardTable,
    timer: &mut PhaseTimer,
    roots: impl FnOnce(&mut Evacuator<'_, V>),
) -> Evacuated {
    let mut workers: Vec<Evacuator<'_, V>> = (0..heap.config.gc_workers)
        .map(|_| Evacuator::new(heap, young, cards))
        .collect();
    timer.phase("roots");
    roots(&mut workers[0]);
    let mut grey = std::mem::take(&mut workers[0].grey);
    timer.phase("cards");
    grey.extend(dirty_old_objects(heap, cards));
    timer.phase("copy");
    drain(&mut workers, grey);
    let mut done = Evacuated::default();
    for worker in workers {
        done += worker.finish();
    }
    done
}
