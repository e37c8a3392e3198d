//! A run and the protocol by which any thread frees into it.
//!
//! A run is `run_size` bytes (a power of two) at a run-size-aligned address,
//! split into equal slots of one size class. Its header sits at the start, so
//! the run of any slot is found by masking the slot's address: O(1), no table.
//!
//! ```text
//! | RunHeader | alloc bits | marked bits | pad to 64 | slot 0 | slot 1 | ... | slot n-1 | tail |
//! ```
//!
//! # Who may touch what
//!
//! - `owner` and `remote` are atomics anyone may read.
//! - The owner-only fields (`hot`: the allocation cursor and the count of used slots;
//!   `links`) belong to the run's *holder*: the thread whose `LocalRuns` owns
//!   the run (`owner` is its id), or, while the run is set apart for a sweep
//!   (`owner` is [`SET_APART`]), the thread holding the `SweepSet`, or, while
//!   the run is unowned, whoever holds the lock of the run's size class, or,
//!   while the run is free, whoever holds the heap lock.
//! - The `alloc` bitmap has one writer, the holder, so the allocation fast
//!   path sets and clears bits with a plain load and store, no atomic
//!   read-modify-write.
//! - The `marked` bitmap is set by a thread that frees a slot it does not hold
//!   the run of, with `fetch_or`, and cleared by the holder when it takes the
//!   slot back. A slot is live exactly when its `alloc` bit is set and its
//!   `marked` bit is clear, so walking and sweeping see a remotely freed slot
//!   as dead from the moment it is freed, not from the moment it is collected.
//!
//! # The remote-free protocol
//!
//! `remote` is the head of a Treiber stack of remotely freed slots (linked
//! through their first word) and, in its low bit, the `UNOWNED` flag. The flag
//! and the list live in one word so that "is there an owner to collect this"
//! and "publish this slot" are a single compare-and-swap.
//!
//! - **Remote free** of slot `s` (any thread, [`Run::free_remote`]): set
//!   `s`'s marked bit, then CAS `s` onto the stack unless `UNOWNED` is set.
//!   Until the CAS succeeds the freer still holds `s`, which keeps the run in
//!   use (a run with a live slot is never released), so touching the header is
//!   safe; after it the freer never touches the run again.
//! - **Unowned** (the CAS saw `UNOWNED`): the freer takes the class lock and
//!   calls [`Run::free_unowned`]: if the run is still unowned, it frees `s`
//!   directly into the run as its holder; if a thread adopted the
//!   run meanwhile, it pushes `s` onto the stack (the new owner cannot abandon
//!   the run while the lock is held, so the push cannot meet `UNOWNED`).
//! - **Collect** ([`Run::collect_remote`], owner): one `swap(0)` takes the whole
//!   stack. Only whole-stack swaps ever remove entries, so the stack has no
//!   ABA problem; pushes may retry, never corrupt.
//! - **Abandon** ([`Run::abandon`], owner, class lock held): `swap(UNOWNED)`
//!   takes the stack and closes it in one step; every push before the swap is
//!   in the taken list, every push after it fails and goes to the class lock,
//!   which the abandoner holds until the run is settled.
//! - **Adopt** ([`Run::adopt`], class lock held, run unowned): clear
//!   `UNOWNED`. While a run is unowned its stack is empty, since pushes fail.
//!
//! Invariants (checked with loom in `tests/loom.rs`): every freed slot is taken
//! back exactly once, by the owner's collect or abandon or by the lock holder;
//! no slot is handed out twice; a run is released only when no slot is
//! allocated, so no freer can be touching it.

use std::ptr::{self, NonNull};

use crate::list::{Links, ListTag};
use crate::sync::{AtomicU64, AtomicUsize, Ordering::*, UnsafeCell};

/// `remote` flag: no thread owns the run; frees take the class lock.
const UNOWNED: usize = 1;

/// [`Run::owner`] of a run in use that no thread owns.
pub const NO_OWNER: u64 = 0;

/// [`Run::owner`] of a run that is not in use (free for any size class).
pub const FREE_RUN: u64 = u64::MAX;

/// [`Run::owner`] of a run in use that a `SweepSet` holds apart for a sweep
/// alongside allocation: the set owns it, so frees into it go onto its remote
/// stack and no thread allocates in it until the sweep gives it back.
pub const SET_APART: u64 = u64::MAX - 1;

/// The alignment of a run's first slot (a cache line), so that a slot whose
/// size is a multiple of 16, 32 or 64 is aligned to that.
pub const DATA_ALIGN: usize = 64;

/// How a run of one size class is laid out: immutable while the run is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The size-class index.
    pub class: u32,
    /// The slot size in bytes (a multiple of 8).
    pub slot_size: u32,
    /// The number of slots.
    pub slots: u32,
    /// The number of 64-bit words of each bitmap.
    pub words: u32,
    /// The offset of the first slot from the start of the run: the header and
    /// bitmaps, padded to [`DATA_ALIGN`]. This is the run's metadata.
    pub data_offset: u32,
    /// `ceil(2^32 / slot_size)`: an offset times this, shifted right by 32,
    /// is the slot index (exact for every offset inside a run of up to 1 MiB).
    magic: u32,
    /// The bits of the last bitmap word that stand for slots.
    last_mask: u64,
}

impl Geometry {
    /// The layout of a run of `run_size` bytes (a power of two, at least
    /// 4 KiB and at most 1 MiB) cut into slots of `slot_size` bytes (a
    /// multiple of 8, at most 256).
    pub fn new(class: usize, slot_size: usize, run_size: usize) -> Geometry {
        assert!(run_size.is_power_of_two() && (4096..=1 << 20).contains(&run_size));
        assert!(slot_size.is_multiple_of(8) && (8..=256).contains(&slot_size));
        let header = size_of::<RunHeader>();
        let word = size_of::<AtomicU64>();
        let mut slots = (run_size - header) / slot_size;
        let (words, data_offset) = loop {
            let words = slots.div_ceil(64);
            let data_offset = rtmem_base::align_up(header + 2 * words * word, DATA_ALIGN);
            if data_offset + slots * slot_size <= run_size {
                break (words, data_offset);
            }
            slots -= 1;
        };
        assert!(
            slots > 0,
            "a run of {run_size} bytes has no room for a slot of {slot_size}"
        );
        Geometry {
            class: class as u32,
            slot_size: slot_size as u32,
            slots: slots as u32,
            words: words as u32,
            data_offset: data_offset as u32,
            magic: (1u64 << 32).div_ceil(slot_size as u64) as u32,
            last_mask: u64::MAX >> (words * 64 - slots),
        }
    }

    /// The bits of bitmap word `word` that stand for slots.
    #[inline(always)]
    fn valid(&self, word: usize) -> u64 {
        if word + 1 == self.words as usize {
            self.last_mask
        } else {
            u64::MAX
        }
    }

    /// The index of the slot containing byte `offset` of the slot area.
    #[inline(always)]
    fn index_of(&self, offset: usize) -> usize {
        ((offset as u64 * self.magic as u64) >> 32) as usize
    }
}

/// What is left in a run, as its holder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// No slot is allocated: the run can go back to the heap.
    Empty,
    /// Some slots are allocated, some are free.
    Partial,
    /// Every slot is allocated (or freed remotely and not yet collected).
    Full,
}

/// The outcome of [`Run::free_remote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    /// The slot is on the run's remote stack; its owner will collect it.
    /// `first` says the stack was empty before (the owner may need a hint).
    Pushed {
        /// Whether the stack was empty before this push.
        first: bool,
    },
    /// The run has no owner: call [`Run::free_unowned`] under the class lock.
    Unowned,
}

/// The fixed part of a run's header. The two bitmaps follow it.
#[repr(C)]
struct RunHeader {
    /// [`FREE_RUN`], [`NO_OWNER`] or the id of the owning `LocalRuns`.
    owner: AtomicU64,
    geo: Geometry,
    hot: UnsafeCell<Hot>,
    /// Treiber stack of remotely freed slot addresses, `| UNOWNED`.
    remote: AtomicUsize,
    links: UnsafeCell<Links>,
    /// Pool bookkeeping of the heap; meaningful in the first run of a pool.
    pool: UnsafeCell<crate::heap::PoolInfo>,
}

/// The holder's fields that every allocation and free touches.
///
/// A slot is free exactly when its alloc bit is clear: allocation takes the
/// lowest clear bit from `cursor` on, and a free clears the bit and moves
/// `cursor` back if needed. Neither reads nor writes the slot's memory, so a
/// collector's sweep frees slots by clearing bits alone, and allocation
/// never waits for a free slot's cold memory to load.
struct Hot {
    /// The first bitmap word that may have a clear bit: every word before it
    /// is full.
    cursor: u32,
    /// Slots whose alloc bit is set.
    used: u32,
    /// The list the run is on.
    list: ListTag,
}

/// A pointer to a run's header.
///
/// Creating a `Run` is unsafe ([`Run::init`], [`Run::from_slot`],
/// `Run::from_raw`) and promises that the header stays initialized and mapped
/// for as long as the value is used: a slot of the run is live, the run is
/// owned or listed, or the heap lock is held. Methods that touch the holder's
/// fields are `unsafe` and say who may call them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Run(NonNull<RunHeader>);

// SAFETY: a `Run` is an address; which thread may use which part of the run
// is the protocol described in the module docs, enforced by the `unsafe`
// methods' contracts, not by thread identity.
unsafe impl Send for Run {}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Run({:#x})", self.0.addr())
    }
}

impl Run {
    /// Writes a fresh header at `at` for runs of `geo`, owned by `owner`
    /// ([`NO_OWNER`] for none), with every slot free and never used.
    ///
    /// # Safety
    /// `at` is aligned to the run size `geo` was computed for, the run size
    /// bytes from it are writable memory that nothing else uses (a free run,
    /// or a buffer of a test), and they stay mapped while the run is used.
    pub unsafe fn init(at: NonNull<u8>, geo: Geometry, owner: u64) -> Run {
        let header = at.cast::<RunHeader>().as_ptr();
        // SAFETY: by the contract the memory is ours to write; `addr_of_mut!`
        // creates no reference to the not yet initialized header, and the pool
        // field (owned by the heap) is left as it is. The bitmaps lie between
        // the header and the first slot.
        unsafe {
            ptr::addr_of_mut!((*header).owner).write(AtomicU64::new(owner));
            ptr::addr_of_mut!((*header).geo).write(geo);
            ptr::addr_of_mut!((*header).hot).write(UnsafeCell::new(Hot {
                cursor: 0,
                used: 0,
                list: ListTag::None,
            }));
            let remote = if owner == NO_OWNER { UNOWNED } else { 0 };
            ptr::addr_of_mut!((*header).remote).write(AtomicUsize::new(remote));
            ptr::addr_of_mut!((*header).links).write(UnsafeCell::new(Links::default()));
            let bits = header.add(1).cast::<AtomicU64>();
            for i in 0..2 * geo.words as usize {
                bits.add(i).write(AtomicU64::new(0));
            }
        }
        Run(at.cast())
    }

    /// The run containing `slot`.
    ///
    /// # Safety
    /// `slot` is a live slot of a run of `run_size` bytes.
    #[inline(always)]
    pub unsafe fn from_slot(slot: NonNull<u8>, run_size: usize) -> Run {
        let start = slot.as_ptr().map_addr(|a| a & !(run_size - 1));
        // SAFETY: a live slot lies inside a run in mapped memory, and a run
        // never starts at address 0, so its start is not null.
        Run(unsafe { NonNull::new_unchecked(start.cast()) })
    }

    /// The run at `at`.
    ///
    /// # Safety
    /// As for [`Run`]: `at` is the start of a run whose header stays mapped
    /// (and, for anything but the pool fields, initialized) while it is used.
    pub(crate) unsafe fn from_raw(at: NonNull<u8>) -> Run {
        Run(at.cast())
    }

    /// The first byte of the run.
    #[inline(always)]
    pub(crate) fn base(self) -> NonNull<u8> {
        self.0.cast()
    }

    #[inline(always)]
    fn header(&self) -> &RunHeader {
        // SAFETY: a `Run` points at a mapped, initialized header for as long as
        // it is used (the type's invariant); the header is only read through
        // this reference, its mutable parts being atomics and cells.
        unsafe { self.0.as_ref() }
    }

    /// The id of the owning `LocalRuns`, [`NO_OWNER`] or [`FREE_RUN`].
    #[inline(always)]
    pub fn owner(self) -> u64 {
        self.header().owner.load(Relaxed)
    }

    /// The run's layout.
    #[inline(always)]
    pub fn geometry(self) -> Geometry {
        self.header().geo
    }

    #[inline(always)]
    fn alloc_word(&self, word: usize) -> &AtomicU64 {
        debug_assert!(word < self.header().geo.words as usize);
        // SAFETY: the alloc bitmap's `words` words follow the header and were
        // initialized by `init`; the pointer derives from the run's own
        // (whole-run) provenance, not from the header reference.
        unsafe { &*self.0.as_ptr().add(1).cast::<AtomicU64>().add(word) }
    }

    #[inline(always)]
    fn marked_word(&self, word: usize) -> &AtomicU64 {
        let words = self.header().geo.words as usize;
        debug_assert!(word < words);
        // SAFETY: as for `alloc_word`; the marked bitmap follows the alloc one.
        unsafe { &*self.0.as_ptr().add(1).cast::<AtomicU64>().add(words + word) }
    }

    /// The bitmap word and bit of `slot`.
    #[inline(always)]
    fn locate(self, slot: NonNull<u8>) -> (usize, u64) {
        let geo = &self.header().geo;
        let offset = slot.addr().get() - self.0.addr().get() - geo.data_offset as usize;
        let index = geo.index_of(offset);
        (index >> 6, 1 << (index & 63))
    }

    /// The slot with index `index` (below `geometry().slots`).
    pub fn slot(self, index: usize) -> NonNull<u8> {
        let geo = self.geometry();
        debug_assert!(index < geo.slots as usize);
        // SAFETY: the slot lies inside the run, which is mapped.
        unsafe {
            self.base()
                .add(geo.data_offset as usize + index * geo.slot_size as usize)
        }
    }

    /// The index of the slot that starts at `ptr`, if one does (`ptr` must lie
    /// inside the run).
    #[cfg(any(all(test, not(loom)), debug_assertions))]
    pub(crate) fn index_of(self, ptr: NonNull<u8>) -> Option<usize> {
        let geo = self.geometry();
        let offset =
            (ptr.addr().get() - self.0.addr().get()).checked_sub(geo.data_offset as usize)?;
        let index = geo.index_of(offset);
        (index < geo.slots as usize && index * geo.slot_size as usize == offset).then_some(index)
    }

    /// Whether slot `index` is live: allocated and not freed.
    #[cfg(debug_assertions)]
    pub(crate) fn is_live(self, index: usize) -> bool {
        let (word, bit) = (index >> 6, 1u64 << (index & 63));
        self.alloc_word(word).load(Relaxed) & !self.marked_word(word).load(Relaxed) & bit != 0
    }

    /// Calls `f` with the index of every live slot.
    pub fn for_each_live(self, f: impl FnMut(usize)) {
        self.for_each_live_in(0, self.geometry().slots as usize, f);
    }

    /// Calls `f` with the index of every live slot in `first..last`
    /// (`last` at most the number of slots), in increasing order.
    pub fn for_each_live_in(self, first: usize, last: usize, mut f: impl FnMut(usize)) {
        debug_assert!(last <= self.geometry().slots as usize);
        if first >= last {
            return;
        }
        for word in first / 64..last.div_ceil(64) {
            let mut live =
                self.alloc_word(word).load(Relaxed) & !self.marked_word(word).load(Relaxed);
            if word == first / 64 {
                live &= u64::MAX << (first % 64);
            }
            if word == (last - 1) / 64 && !last.is_multiple_of(64) {
                live &= (1u64 << (last % 64)) - 1;
            }
            while live != 0 {
                f(word * 64 + live.trailing_zeros() as usize);
                live &= live - 1;
            }
        }
    }

    /// The indices `first..last` of the slots overlapping the bytes
    /// `start..end` (addresses; clipped to the run's slots).
    pub fn slots_overlapping(self, start: usize, end: usize) -> std::ops::Range<usize> {
        let geo = self.geometry();
        let data = self.base().as_ptr() as usize + geo.data_offset as usize;
        let size = geo.slot_size as usize;
        let slots = geo.slots as usize;
        let first = (start.saturating_sub(data) / size).min(slots);
        let last = (end.saturating_sub(data).div_ceil(size)).min(slots);
        first..last.max(first)
    }

    /// Frees, as the run's holder, every live slot for which `is_live` is
    /// false: their alloc bits are cleared a word at a time, and their memory
    /// is not touched. Returns how many were freed.
    ///
    /// Remote frees may race with the call when the caller owns the run: they
    /// only set marked bits and push onto the stack, never touching the alloc
    /// bitmap or the holder's fields, and a slot freed so is either seen
    /// freed or passed to `is_live`, which must then call it live (an object
    /// a thread frees is one it can reach).
    ///
    /// # Safety
    /// The caller holds the run (see [`pop`](Self::pop)); if it does not own
    /// it, nothing frees into it during the call. No slot `is_live` calls dead
    /// is freed by anyone else.
    pub unsafe fn sweep_held(self, mut is_live: impl FnMut(NonNull<u8>) -> bool) -> usize {
        let words = self.geometry().words as usize;
        let mut freed = 0;
        let mut first = words;
        for word in 0..words {
            let alloc = self.alloc_word(word).load(Relaxed);
            let mut live = alloc & !self.marked_word(word).load(Relaxed);
            let mut dead = 0u64;
            while live != 0 {
                let bit = live.trailing_zeros() as usize;
                live &= live - 1;
                if !is_live(self.slot(word * 64 + bit)) {
                    dead |= 1 << bit;
                }
            }
            if dead != 0 {
                self.alloc_word(word).store(alloc & !dead, Relaxed);
                freed += dead.count_ones() as usize;
                first = first.min(word);
            }
        }
        self.header().hot.with_mut(|hot| {
            // SAFETY: the caller holds the run.
            let hot = unsafe { &mut *hot };
            hot.used -= freed as u32;
            hot.cursor = hot.cursor.min(first as u32);
        });
        freed
    }

    /// Whether remotely freed slots wait on the stack (a hint: owner only).
    #[inline]
    pub fn has_remote(self) -> bool {
        self.header().remote.load(Relaxed) & !UNOWNED != 0
    }

    /// Takes a free slot: the lowest-addressed one. `None` if the run has no
    /// free slot its holder knows of.
    ///
    /// # Safety
    /// The caller holds the run: owns it, or it is unowned and the caller holds
    /// its class lock.
    #[inline(always)]
    pub unsafe fn pop(self) -> Option<NonNull<u8>> {
        let geo = &self.header().geo;
        let words = geo.words as usize;
        let index = self.header().hot.with_mut(|hot| {
            // SAFETY: the caller holds the run, so nothing else accesses `hot`
            // or writes the alloc bitmap.
            let hot = unsafe { &mut *hot };
            let mut word = hot.cursor as usize;
            while word < words {
                let alloc = self.alloc_word(word);
                let bits = alloc.load(Relaxed);
                let free = !bits & geo.valid(word);
                if free != 0 {
                    let bit = free.trailing_zeros() as usize;
                    alloc.store(bits | 1 << bit, Relaxed);
                    hot.cursor = word as u32;
                    hot.used += 1;
                    return Some(word * 64 + bit);
                }
                word += 1;
            }
            hot.cursor = words as u32;
            None
        })?;
        let slot = self.slot(index);
        // Free slots are handed out in address order: fetch the line a few
        // slots ahead for writing, as bump allocators do.
        rtmem_base::prefetch_ahead(slot.as_ptr());
        Some(slot)
    }

    /// Frees `slot` by its holder. Returns whether the run, being on a list,
    /// is now empty or was full: the caller should then move or release it.
    ///
    /// # Safety
    /// The caller holds the run (see [`pop`](Self::pop)) and `slot` is a live
    /// slot of it.
    #[inline(always)]
    pub unsafe fn push_local(self, slot: NonNull<u8>) -> bool {
        // SAFETY: forwarded contract; the slot was not marked.
        unsafe { self.put_free(slot, false) }
    }

    /// Makes every remotely freed slot free again and returns how
    /// many there were.
    ///
    /// # Safety
    /// The caller owns the run.
    pub unsafe fn collect_remote(self) -> usize {
        let remote = &self.header().remote;
        if remote.load(Relaxed) == 0 {
            return 0;
        }
        // Acquire: the pushers' writes (the slots' links, the objects' last
        // uses) happen before the slots are reused.
        let list = remote.swap(0, Acquire);
        // SAFETY: the caller owns the run; the swap gave it the whole list.
        unsafe { self.take_list(list) }
    }

    /// Frees a slot of a run the caller does not hold, from any thread.
    ///
    /// # Safety
    /// `slot` is a live slot of this run, and the caller gives it up: it will
    /// not use or free it again.
    pub unsafe fn free_remote(self, slot: NonNull<u8>) -> Remote {
        let (word, bit) = self.locate(slot);
        let was = self.marked_word(word).fetch_or(bit, Relaxed);
        debug_assert_eq!(was & bit, 0, "slot {:#x} freed twice", slot.addr());
        self.push_remote(slot)
    }

    /// Finishes a free that [`free_remote`](Self::free_remote) found unowned:
    /// frees the slot directly and returns the run's fill, or returns `None`
    /// if the run was adopted meanwhile and the slot went onto its stack (the
    /// adopter allocates from the run, so it collects the stack when the run
    /// runs out, with no hint needed).
    ///
    /// # Safety
    /// As for `free_remote`, whose `Remote::Unowned` result for `slot` this
    /// completes, and the caller holds the run's class lock.
    pub unsafe fn free_unowned(self, slot: NonNull<u8>) -> Option<Fill> {
        // Only the class-lock holder sets or clears `UNOWNED`: this load is exact.
        if self.header().remote.load(Relaxed) & UNOWNED == 0 {
            let pushed = self.push_remote(slot);
            debug_assert!(
                matches!(pushed, Remote::Pushed { .. }),
                "an owned run cannot be abandoned under its lock"
            );
            return None;
        }
        // SAFETY: the run is unowned and we hold its class lock, so we hold it;
        // the slot is marked and on no list.
        unsafe { self.put_free(slot, true) };
        // SAFETY: as above.
        Some(unsafe { self.fill() })
    }

    /// Gives up ownership: closes the remote stack, takes back what was on it,
    /// and returns the run's fill. The caller then lists or releases the run.
    ///
    /// # Safety
    /// The caller owns the run and holds its class lock.
    pub unsafe fn abandon(self) -> Fill {
        let list = self.header().remote.swap(UNOWNED, Acquire);
        self.header().owner.store(NO_OWNER, Relaxed);
        // SAFETY: the run is unowned now and we hold its class lock; the swap
        // gave us the whole list.
        unsafe {
            self.take_list(list);
            self.fill()
        }
    }

    /// Takes ownership of an unowned run for `owner`.
    ///
    /// # Safety
    /// The run is unowned and the caller holds its class lock.
    pub unsafe fn adopt(self, owner: u64) {
        debug_assert_eq!(
            self.header().remote.load(Relaxed),
            UNOWNED,
            "unowned runs have empty stacks"
        );
        self.header().owner.store(owner, Relaxed);
        self.header().remote.store(0, Relaxed);
    }

    /// What is left in the run, as its holder sees it.
    ///
    /// # Safety
    /// The caller holds the run.
    pub unsafe fn fill(self) -> Fill {
        self.header().hot.with(|hot| {
            // SAFETY: the caller holds the run.
            let hot = unsafe { &*hot };
            if hot.used == 0 {
                Fill::Empty
            } else if hot.used < self.header().geo.slots {
                Fill::Partial
            } else {
                Fill::Full
            }
        })
    }

    /// The list the run is on.
    ///
    /// # Safety
    /// The caller holds the run.
    pub(crate) unsafe fn list(self) -> ListTag {
        // SAFETY: the caller holds the run.
        self.header().hot.with(|hot| unsafe { (*hot).list })
    }

    /// Records the list the run is on.
    ///
    /// # Safety
    /// The caller holds the run.
    pub(crate) unsafe fn set_list(self, list: ListTag) {
        // SAFETY: the caller holds the run.
        self.header()
            .hot
            .with_mut(|hot| unsafe { (*hot).list = list });
    }

    /// Runs `f` on the run's list links.
    ///
    /// # Safety
    /// The caller holds the run.
    pub(crate) unsafe fn links<R>(self, f: impl FnOnce(&mut Links) -> R) -> R {
        // SAFETY: the caller holds the run.
        self.header()
            .links
            .with_mut(|links| f(unsafe { &mut *links }))
    }

    /// Writes the heap's bookkeeping of the pool this run starts.
    ///
    /// # Safety
    /// The caller holds the heap lock and this run starts a pool just taken
    /// from the pool manager.
    pub(crate) unsafe fn init_pool_info(self, info: crate::heap::PoolInfo) {
        // SAFETY: the pool is new and ours; no reference to the field exists.
        unsafe { ptr::addr_of_mut!((*self.0.as_ptr()).pool).write(UnsafeCell::new(info)) };
    }

    /// Runs `f` on the heap's bookkeeping of the pool this run starts.
    ///
    /// # Safety
    /// The caller holds the heap lock and this run starts a pool of the heap.
    pub(crate) unsafe fn pool_info<R>(self, f: impl FnOnce(&mut crate::heap::PoolInfo) -> R) -> R {
        // SAFETY: the heap lock guards the pool fields.
        self.header().pool.with_mut(|info| f(unsafe { &mut *info }))
    }

    /// Marks the run free (not in use).
    ///
    /// # Safety
    /// The caller holds the heap lock and the run is empty, on no list, and
    /// held by the caller.
    pub(crate) unsafe fn set_free(self) {
        self.header().owner.store(FREE_RUN, Relaxed);
    }

    /// Makes a slot the caller holds the run of free again, clearing
    /// its alloc bit and then (if `marked`) its marked bit, so that a
    /// concurrent walk never sees it allocated-and-unmarked. Returns what
    /// `push_local` returns.
    ///
    /// # Safety
    /// The caller holds the run; `slot` is allocated, marked iff `marked`, and
    /// on no list.
    #[inline(always)]
    unsafe fn put_free(self, slot: NonNull<u8>, marked: bool) -> bool {
        let (word, bit) = self.locate(slot);
        let alloc = self.alloc_word(word);
        alloc.store(alloc.load(Relaxed) & !bit, Relaxed);
        if marked {
            self.marked_word(word).fetch_and(!bit, Relaxed);
        }
        self.header().hot.with_mut(|hot| {
            // SAFETY: the caller holds the run.
            let hot = unsafe { &mut *hot };
            hot.cursor = hot.cursor.min(word as u32);
            hot.used -= 1;
            hot.list != ListTag::None && (hot.used == 0 || hot.list == ListTag::Full)
        })
    }

    /// Pushes a marked slot onto the remote stack unless the run is unowned.
    fn push_remote(self, slot: NonNull<u8>) -> Remote {
        let remote = &self.header().remote;
        let mut head = remote.load(Relaxed);
        loop {
            if head & UNOWNED != 0 {
                return Remote::Unowned;
            }
            // SAFETY: until the CAS below publishes it, the slot is the
            // freer's alone; its first word becomes the stack link.
            unsafe { slot.cast::<usize>().write(head) };
            // Release: the link and the object's last uses happen before the
            // collector's Acquire swap.
            match remote.compare_exchange_weak(head, slot.addr().get(), Release, Relaxed) {
                Ok(_) => return Remote::Pushed { first: head == 0 },
                Err(now) => head = now,
            }
        }
    }

    /// Frees every slot of a list taken off the remote stack.
    ///
    /// # Safety
    /// The caller holds the run and took `list` off its stack with a swap.
    unsafe fn take_list(self, list: usize) -> usize {
        let mut next = list & !UNOWNED;
        let mut taken = 0;
        while let Some(addr) = std::num::NonZeroUsize::new(next) {
            // Rebuild the pointer from the run's own provenance.
            let slot = self.base().with_addr(addr);
            // SAFETY: a pushed slot holds the next stack entry in its first word.
            next = unsafe { slot.cast::<usize>().read() };
            // SAFETY: the slot is marked, allocated, and ours since the swap.
            unsafe { self.put_free(slot, true) };
            taken += 1;
        }
        taken
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::alloc::Layout;
    use std::collections::BTreeSet;

    use super::*;
    use crate::class::CLASS_SIZES;

    /// A run-aligned heap buffer for one run.
    struct Buffer(NonNull<u8>, Layout);

    impl Buffer {
        fn new(run_size: usize) -> Buffer {
            let layout = Layout::from_size_align(run_size, run_size).unwrap();
            // SAFETY: the layout is not zero-sized.
            Buffer(
                NonNull::new(unsafe { std::alloc::alloc(layout) }).unwrap(),
                layout,
            )
        }

        fn run(&self, slot_size: usize, owner: u64) -> Run {
            let geo = Geometry::new(0, slot_size, self.1.size());
            // SAFETY: the buffer is run-aligned, ours, and outlives the run.
            unsafe { Run::init(self.0, geo, owner) }
        }
    }

    impl Drop for Buffer {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.0.as_ptr(), self.1) };
        }
    }

    fn live(run: Run) -> BTreeSet<usize> {
        let mut live = BTreeSet::new();
        run.for_each_live(|i| {
            live.insert(i);
        });
        live
    }

    #[test]
    fn geometry_fits_the_run_and_indexes_exactly() {
        for run_size in [4 << 10, 16 << 10, 64 << 10] {
            for (class, &size) in CLASS_SIZES.iter().enumerate() {
                let g = Geometry::new(class, size, run_size);
                let (slots, offset) = (g.slots as usize, g.data_offset as usize);
                assert_eq!(offset % DATA_ALIGN, 0);
                assert!(offset >= size_of::<RunHeader>() + 2 * 8 * g.words as usize);
                assert!(
                    offset + slots * size <= run_size,
                    "{run_size}/{size}: slots overflow the run"
                );
                assert_eq!(g.words as usize, slots.div_ceil(64));
                // One more slot would not fit, even with its bitmap bits.
                let more = Geometry {
                    slots: g.slots + 1,
                    ..g
                };
                let offset_more = rtmem_base::align_up(
                    size_of::<RunHeader>() + 16 * (slots + 1).div_ceil(64),
                    DATA_ALIGN,
                );
                assert!(
                    offset_more + more.slots as usize * size > run_size,
                    "{run_size}/{size}: room for another slot"
                );
                for offset in 0..slots * size {
                    assert_eq!(
                        g.index_of(offset),
                        offset / size,
                        "{run_size}/{size} at {offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn pops_every_slot_once_in_address_order_then_reuses_freed_ones_lowest_first() {
        let buffer = Buffer::new(4096);
        let run = buffer.run(256, 7);
        let slots = run.geometry().slots as usize;
        // SAFETY: this thread owns the run, and frees only slots it popped.
        unsafe {
            let popped: Vec<_> = std::iter::from_fn(|| run.pop()).collect();
            assert_eq!(popped.len(), slots);
            for (i, p) in popped.iter().enumerate() {
                assert_eq!(*p, run.slot(i));
                assert_eq!(
                    p.addr().get() % DATA_ALIGN,
                    0,
                    "256-byte slots are aligned like the first slot"
                );
                assert_eq!(run.index_of(*p), Some(i));
            }
            assert_eq!(run.fill(), Fill::Full);
            assert_eq!(live(run).len(), slots);
            assert!(
                !run.push_local(popped[3]),
                "a current run needs no attention"
            );
            assert!(!run.push_local(popped[5]));
            assert_eq!(run.fill(), Fill::Partial);
            assert!(!live(run).contains(&3) && !live(run).contains(&5));
            // Freed slots are reused lowest address first.
            assert_eq!(run.pop(), Some(popped[3]));
            assert_eq!(run.pop(), Some(popped[5]));
            assert_eq!(run.pop(), None);
            for p in popped {
                run.push_local(p);
            }
            assert_eq!(run.fill(), Fill::Empty);
            assert!(live(run).is_empty());
        }
    }

    #[test]
    fn a_remote_free_is_dead_at_once_and_collected_by_the_owner() {
        let buffer = Buffer::new(4096);
        let run = buffer.run(64, 7);
        // SAFETY: this thread plays the owner and, for `free_remote`, another
        // thread giving up live slots it was handed.
        unsafe {
            let (a, b) = (run.pop().unwrap(), run.pop().unwrap());
            assert_eq!(run.free_remote(a), Remote::Pushed { first: true });
            assert_eq!(run.free_remote(b), Remote::Pushed { first: false });
            assert!(live(run).is_empty(), "remotely freed slots are not live");
            assert!(run.has_remote());
            assert_eq!(
                run.fill(),
                Fill::Partial,
                "not collected yet: still counted as used"
            );
            assert_eq!(run.collect_remote(), 2);
            assert!(!run.has_remote());
            assert_eq!(run.fill(), Fill::Empty);
            assert_eq!(run.collect_remote(), 0);
        }
    }

    #[test]
    fn an_unowned_run_is_freed_into_directly_and_adopted_with_an_empty_stack() {
        let buffer = Buffer::new(4096);
        let run = buffer.run(64, 7);
        // SAFETY: as above; this thread also holds the (notional) class lock
        // around `abandon`, `free_unowned` and `adopt`.
        unsafe {
            let (a, b) = (run.pop().unwrap(), run.pop().unwrap());
            assert_eq!(run.free_remote(a), Remote::Pushed { first: true });
            assert_eq!(run.abandon(), Fill::Partial, "abandon collects the stack");
            assert_eq!(run.owner(), NO_OWNER);
            assert_eq!(run.free_remote(b), Remote::Unowned);
            assert!(
                live(run).is_empty(),
                "b is dead from the moment it is freed"
            );
            assert_eq!(run.free_unowned(b), Some(Fill::Empty));
            run.adopt(9);
            assert_eq!(run.owner(), 9);
            assert!(!run.has_remote());
            let c = run.pop().unwrap();
            assert_eq!(run.free_remote(c), Remote::Pushed { first: true });
            // Adopted since `free_remote` saw the run unowned: the lock
            // holder's free goes onto the owner's stack.
            let d = run.pop().unwrap();
            let (word, bit) = run.locate(d);
            run.marked_word(word).fetch_or(bit, Relaxed);
            assert_eq!(run.free_unowned(d), None);
            assert_eq!(run.collect_remote(), 2);
        }
    }
}
