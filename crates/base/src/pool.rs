//! The pool manager: hands out aligned, space-tagged pools of address space.
//!
//! One [`Reservation`] holds everything. Its first pages are the manager's own
//! tables (one entry per pool slot), so the manager never calls the global
//! allocator; the rest is cut into `pool_size` slots. A pool is one or more
//! contiguous slots, aligned to `pool_size`, tagged with its [`SpaceType`].
//!
//! - **Lookup** (`pool_of`, `space_of`) is a shift and an atomic load: no lock.
//! - **Allocation** takes a lock: a single-slot request is served first from a
//!   small cache of freed pools that are still committed; then first-fit over
//!   a list of free slot ranges; then from the never-used top of the range.
//! - **Free ranges** coalesce with free neighbours on both sides (boundary
//!   tags: the head and tail slot of a free range both record its length and
//!   head), and a free range that reaches the top lowers the top instead.
//! - **Decommit is lazy**: freed single pools wait committed in the cache
//!   (up to `cache_pools` of them) and are decommitted when the cache
//!   overflows, when address space runs short, or on [`PoolManager::trim`].

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

use crate::address::{align_up, page_size};
use crate::error::AllocError;
use crate::lock::Mutex;
use crate::space::SpaceType;
use crate::stats::{MemStats, MemStatsSnapshot};
use crate::vmem::{Protection, Reservation};

/// How a [`PoolManager`] is laid out and limited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolManagerConfig {
    /// Address space reserved for pools, in bytes (rounded up to whole pools).
    pub reserve_bytes: usize,
    /// The size and alignment of one pool slot: a power of two, at least a page.
    pub pool_size: usize,
    /// How many freed single-slot pools stay committed for quick reuse.
    pub cache_pools: usize,
    /// The size policy of each space, indexed by [`SpaceType::index`].
    pub budgets: [SpaceBudget; SpaceType::COUNT],
}

/// The size policy of one space: its capacity starts at `initial` and, when a
/// request does not fit, grows by `growth_percent` of itself (at least enough
/// for the request) up to `max`. A space never holds more than its capacity,
/// and its capacity never passes `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SpaceBudget {
    /// The capacity before the first growth, in bytes.
    pub initial: usize,
    /// The limit, in bytes.
    pub max: usize,
    /// Growth step in percent of the current capacity; 0 = fixed at `initial`.
    pub growth_percent: u32,
}

impl SpaceBudget {
    /// No limit at all.
    pub const UNLIMITED: SpaceBudget = SpaceBudget::fixed(usize::MAX);

    /// A fixed capacity of `bytes`.
    pub const fn fixed(bytes: usize) -> SpaceBudget {
        SpaceBudget {
            initial: bytes,
            max: bytes,
            growth_percent: 0,
        }
    }

    /// A capacity starting at `initial` and growing by `growth_percent` up to `max`.
    pub const fn growing(initial: usize, max: usize, growth_percent: u32) -> SpaceBudget {
        SpaceBudget {
            initial,
            max,
            growth_percent,
        }
    }

    /// The capacity after one growth step from `capacity` that must hold `need` bytes,
    /// or `None` if the budget cannot hold them.
    pub fn grown(&self, capacity: usize, need: usize) -> Option<usize> {
        if need > self.max || self.growth_percent == 0 {
            return None;
        }
        let step =
            (capacity as u128 * self.growth_percent as u128 / 100).min(usize::MAX as u128) as usize;
        Some(capacity.saturating_add(step).max(need).min(self.max))
    }
}

impl Default for PoolManagerConfig {
    fn default() -> Self {
        PoolManagerConfig {
            reserve_bytes: 16 << 30,
            pool_size: 256 << 10,
            cache_pools: 16,
            budgets: [SpaceBudget::UNLIMITED; SpaceType::COUNT],
        }
    }
}

impl PoolManagerConfig {
    /// Gives `space` a fixed limit of `bytes`.
    pub fn with_limit(self, space: SpaceType, bytes: usize) -> Self {
        self.with_budget(space, SpaceBudget::fixed(bytes))
    }

    /// Sets the size policy of `space`.
    pub fn with_budget(mut self, space: SpaceType, budget: SpaceBudget) -> Self {
        self.budgets[space.index()] = budget;
        self
    }

    /// Sets the reserved address space.
    pub fn with_reserve(mut self, bytes: usize) -> Self {
        self.reserve_bytes = bytes;
        self
    }

    /// Sets the pool size (a power of two, at least a page).
    pub fn with_pool_size(mut self, bytes: usize) -> Self {
        self.pool_size = bytes;
        self
    }

    /// Sets how many freed pools stay committed for reuse.
    pub fn with_cache_pools(mut self, pools: usize) -> Self {
        self.cache_pools = pools;
        self
    }
}

/// A pool: a `pool_size`-aligned range of committed memory owned by one space.
///
/// A `Pool` is a plain description (start, size, space), freely copied; it is
/// given back with [`PoolManager::free_pool`]. The contents of a new pool are
/// unspecified (a pool reused from the cache holds what its last owner wrote).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    start: NonNull<u8>,
    size: usize,
    space: SpaceType,
}

// SAFETY: a `Pool` is an address range and a tag; it owns nothing that is tied
// to a thread. Access to the memory is through raw pointers whose use is
// `unsafe` on its own.
unsafe impl Send for Pool {}
// SAFETY: see `Send`; `&Pool` exposes only plain values.
unsafe impl Sync for Pool {}

impl Pool {
    /// The first byte.
    #[inline]
    pub fn start(&self) -> NonNull<u8> {
        self.start
    }

    /// The first byte as an address.
    #[inline]
    pub fn start_addr(&self) -> usize {
        self.start.as_ptr() as usize
    }

    /// One past the last byte, as an address.
    #[inline]
    pub fn end_addr(&self) -> usize {
        self.start_addr() + self.size
    }

    /// The size in bytes (a multiple of the pool size).
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The space that owns the pool.
    #[inline]
    pub fn space(&self) -> SpaceType {
        self.space
    }

    /// Whether `addr` lies inside the pool.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start_addr()) < self.size
    }
}

const NIL: u32 = u32::MAX;
/// Slot tags: the low byte of an entry.
const TAG_FREE: u64 = 0;
const TAG_CACHED: u64 = 0xFF;
/// Maximum size of the cache of committed free pools.
const MAX_CACHE: usize = 64;

#[inline]
const fn entry(tag: u64, head: u32) -> u64 {
    tag | ((head as u64) << 32)
}
#[inline]
const fn entry_tag(e: u64) -> u64 {
    e & 0xFF
}
#[inline]
const fn entry_head(e: u64) -> u32 {
    (e >> 32) as u32
}
#[inline]
const fn space_tag(space: SpaceType) -> u64 {
    space.index() as u64 + 1
}

/// State changed only under the lock.
struct Inner {
    /// Slots at and above this index have never been used (or were given back
    /// and decommitted).
    top: u32,
    /// Head slot of the first free range below `top`.
    free_list: u32,
    cache: [u32; MAX_CACHE],
    cache_len: usize,
}

/// Reserves address space and hands out pools of it to spaces, with a byte
/// limit per space and O(1) address-to-pool lookup.
///
/// ```
/// use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
///
/// let pools = PoolManager::new(
///     PoolManagerConfig::default().with_limit(SpaceType::Code, 1 << 20),
/// ).unwrap();
/// let pool = pools.alloc_pool(SpaceType::Code, 4096).unwrap();
/// let inside = pool.start_addr() + 100;
/// assert_eq!(pools.space_of(inside), Some(SpaceType::Code));
/// pools.free_pool(pool);
/// assert_eq!(pools.space_of(inside), None);
/// // Five pools of 256 KiB exceed the 1 MiB limit of the code space.
/// let err = pools.alloc_pool(SpaceType::Code, 5 * pools.pool_size()).unwrap_err();
/// assert!(err.to_string().contains("code space is full"));
/// ```
pub struct PoolManager {
    reservation: Reservation,
    /// Offset of slot 0 inside the reservation.
    data_offset: usize,
    data_start: usize,
    shift: u32,
    slots: u32,
    /// Per slot: tag (free, cached, or 1 + space index) and head slot index.
    entries: NonNull<AtomicU64>,
    /// Per slot: the length in slots of the range it heads (or tails, if free).
    lens: NonNull<AtomicU32>,
    /// Per free-range head: previous and next free-range heads.
    links: NonNull<AtomicU64>,
    table_bytes: usize,
    cache_cap: usize,
    inner: Mutex<Inner>,
    budgets: Mutex<[SpaceBudget; SpaceType::COUNT]>,
    capacity: [AtomicUsize; SpaceType::COUNT],
    auto_grow: [AtomicBool; SpaceType::COUNT],
    growths: [AtomicU64; SpaceType::COUNT],
    used: [AtomicUsize; SpaceType::COUNT],
    stats: MemStats,
}

// SAFETY: the raw table pointers point into `reservation`, which lives as long
// as the manager; every table element is an atomic, and the free-list links
// are only changed while `inner` is locked.
unsafe impl Send for PoolManager {}
// SAFETY: as above.
unsafe impl Sync for PoolManager {}

impl PoolManager {
    /// Reserves the address space and sets up the tables.
    ///
    /// Fails with [`AllocError::BadLayout`] if the pool size is not a power of
    /// two of at least a page, and with [`AllocError::Os`] if the kernel will
    /// not reserve the range.
    pub fn new(config: PoolManagerConfig) -> Result<PoolManager, AllocError> {
        let page = page_size();
        let pool_size = config.pool_size;
        if !pool_size.is_power_of_two() || pool_size < page {
            return Err(AllocError::bad_layout(
                pool_size,
                pool_size,
                "the pool size must be a power of two of at least a page",
            ));
        }
        let slots = (config.reserve_bytes / pool_size).max(1);
        if slots >= NIL as usize {
            return Err(AllocError::bad_layout(
                config.reserve_bytes,
                pool_size,
                "too many pool slots for the reservation",
            ));
        }
        let entries_bytes = slots * size_of::<AtomicU64>();
        let lens_bytes = slots * size_of::<AtomicU32>();
        let table_bytes = align_up(entries_bytes * 2 + lens_bytes, page);
        let data_offset = align_up(table_bytes, pool_size);
        let reservation = Reservation::new(data_offset + slots * pool_size, pool_size)?;
        reservation.commit(0, table_bytes)?;
        let base = reservation.start().as_ptr();
        // SAFETY: the three tables lie inside the committed, zeroed table
        // pages; zero is a valid bit pattern for atomics (entries: free,
        // links: unused until written).
        let (entries, links, lens) = unsafe {
            (
                NonNull::new_unchecked(base.cast::<AtomicU64>()),
                NonNull::new_unchecked(base.add(entries_bytes).cast::<AtomicU64>()),
                NonNull::new_unchecked(base.add(2 * entries_bytes).cast::<AtomicU32>()),
            )
        };
        let data_start = base as usize + data_offset;
        tracing::debug!(slots, pool_size, data_start, "pool manager reserved");
        Ok(PoolManager {
            data_offset,
            data_start,
            shift: pool_size.trailing_zeros(),
            slots: slots as u32,
            entries,
            lens,
            links,
            table_bytes,
            cache_cap: config.cache_pools.min(MAX_CACHE),
            inner: Mutex::new(Inner {
                top: 0,
                free_list: NIL,
                cache: [0; MAX_CACHE],
                cache_len: 0,
            }),
            capacity: config
                .budgets
                .map(|b| AtomicUsize::new(b.initial.min(b.max))),
            budgets: Mutex::new(config.budgets),
            auto_grow: std::array::from_fn(|_| AtomicBool::new(true)),
            growths: Default::default(),
            used: Default::default(),
            stats: MemStats::new(),
            reservation,
        })
    }

    /// The size (and alignment) of one pool slot.
    #[inline]
    pub fn pool_size(&self) -> usize {
        1 << self.shift
    }

    /// The address range every pool lies in, `(start, len)`: what side tables
    /// covering the whole heap (mark bitmaps, card tables) are sized for.
    pub fn pool_area(&self) -> (usize, usize) {
        (self.data_start, self.reserved_bytes())
    }

    /// The bytes reserved for pools, all spaces together.
    pub fn reserved_bytes(&self) -> usize {
        (self.slots as usize) << self.shift
    }

    /// The statistics every allocator over this manager reports into.
    #[inline]
    pub fn stats(&self) -> &MemStats {
        &self.stats
    }

    /// A snapshot of the statistics, with the manager's own memory filled in.
    pub fn snapshot(&self) -> MemStatsSnapshot {
        let mut snap = self.stats.snapshot();
        snap.pool_cache_bytes = (self.inner.lock().cache_len as u64) << self.shift;
        snap.pool_table_bytes = self.table_bytes as u64;
        for s in &mut snap.spaces {
            s.capacity = self.capacity(s.space) as u64;
            s.limit = self.limit(s.space) as u64;
            s.growths = self.growths(s.space);
        }
        snap
    }

    /// The limit of `space`: its capacity can never grow past it.
    pub fn limit(&self, space: SpaceType) -> usize {
        self.budgets.lock()[space.index()].max
    }

    /// Changes the limit of `space`. A fixed-size space (growth 0 %) takes the
    /// new limit as its capacity; a growing one keeps its capacity, lowered to
    /// the limit if needed. Pools already held stay valid even if they exceed
    /// the new limit; further requests are refused until enough is freed.
    pub fn set_limit(&self, space: SpaceType, bytes: usize) {
        let mut budgets = self.budgets.lock();
        let budget = &mut budgets[space.index()];
        budget.max = bytes;
        let capacity = &self.capacity[space.index()];
        if budget.growth_percent == 0 {
            budget.initial = bytes;
            capacity.store(bytes, Relaxed);
        } else {
            capacity.fetch_min(bytes, Relaxed);
        }
    }

    /// The size policy of `space`.
    pub fn budget(&self, space: SpaceType) -> SpaceBudget {
        self.budgets.lock()[space.index()]
    }

    /// The bytes `space` may hold now (between its initial size and its limit).
    pub fn capacity(&self, space: SpaceType) -> usize {
        self.capacity[space.index()].load(Relaxed)
    }

    /// How many times the capacity of `space` has grown.
    pub fn growths(&self, space: SpaceType) -> u64 {
        self.growths[space.index()].load(Relaxed)
    }

    /// Whether a request that does not fit the capacity of `space` grows it
    /// (the default). A collector turns this off for the spaces it manages, so
    /// that a full space is first a reason to collect, and grows them with
    /// [`grow`](Self::grow) when collecting did not free enough.
    pub fn set_auto_grow(&self, space: SpaceType, on: bool) {
        self.auto_grow[space.index()].store(on, Relaxed);
    }

    /// Grows the capacity of `space` by at least `bytes` (one growth step if
    /// that is more), up to its limit. Returns the new capacity.
    pub fn grow(&self, space: SpaceType, bytes: usize) -> usize {
        let budgets = self.budgets.lock();
        let budget = budgets[space.index()];
        let cap = &self.capacity[space.index()];
        let current = cap.load(Relaxed);
        let target = current.saturating_add(bytes).min(budget.max);
        let grown = budget.grown(current, target).unwrap_or(target).max(current);
        if grown > current {
            cap.store(grown, Relaxed);
            self.growths[space.index()].fetch_add(1, Relaxed);
            tracing::debug!(%space, from = current, to = grown, "space capacity grown");
        }
        grown
    }

    /// The bytes of pools `space` holds now.
    pub fn used(&self, space: SpaceType) -> usize {
        self.used[space.index()].load(Relaxed)
    }

    /// Hands out a committed pool of at least `bytes` (rounded up to whole
    /// pool slots), aligned to [`pool_size`](Self::pool_size), owned by `space`.
    ///
    /// Errors: [`AllocError::BadLayout`] for zero bytes,
    /// [`AllocError::LimitExceeded`] if the space would pass its limit,
    /// [`AllocError::OutOfMemory`] if the reservation has no room left.
    pub fn alloc_pool(&self, space: SpaceType, bytes: usize) -> Result<Pool, AllocError> {
        if bytes == 0 {
            return Err(AllocError::bad_layout(
                0,
                self.pool_size(),
                "a pool cannot be empty",
            ));
        }
        let n = bytes.div_ceil(self.pool_size());
        let size = n
            .checked_mul(self.pool_size())
            .ok_or(AllocError::OutOfMemory {
                space,
                requested: bytes,
                reserved: self.reserved_bytes(),
            })?;
        let mut inner = self.inner.lock();
        self.make_room(space, size)?;
        let oom = AllocError::OutOfMemory {
            space,
            requested: size,
            reserved: self.reserved_bytes(),
        };
        if n > self.slots as usize {
            return Err(oom);
        }
        let n = n as u32;
        let head = if n == 1 && inner.cache_len > 0 {
            inner.cache_len -= 1;
            inner.cache[inner.cache_len]
        } else {
            let head = match self.take_range(&mut inner, n) {
                Some(head) => Some(head),
                None if inner.cache_len > 0 => {
                    self.flush_cache(&mut inner);
                    self.take_range(&mut inner, n)
                }
                None => None,
            };
            let Some(head) = head else {
                return Err(oom);
            };
            if let Err(e) = self.reservation.commit(self.offset_of(head), size) {
                self.insert_free(&mut inner, head, n);
                return Err(e);
            }
            head
        };
        for i in head..head + n {
            self.entry(i).store(entry(space_tag(space), head), Release);
        }
        self.len(head).store(n, Relaxed);
        self.used[space.index()].fetch_add(size, Relaxed);
        drop(inner);
        self.stats.record_commit(space, size);
        let start = NonNull::new((self.data_start + ((head as usize) << self.shift)) as *mut u8)
            .expect("pool addresses are never null");
        tracing::trace!(%space, start = start.as_ptr() as usize, size, "pool allocated");
        Ok(Pool { start, size, space })
    }

    /// Makes sure `size` more bytes fit the capacity of `space`, growing it by
    /// the space's rule if allowed. Called with the allocation lock held, under
    /// which `used` only changes, so the caller charges `size` once it has the
    /// slots.
    fn make_room(&self, space: SpaceType, size: usize) -> Result<(), AllocError> {
        let i = space.index();
        let used = self.used[i].load(Relaxed);
        let need = used.checked_add(size);
        let capacity = self.capacity[i].load(Relaxed);
        if need.is_none_or(|need| need > capacity) {
            let budget = self.budgets.lock()[i];
            let grown = need
                .filter(|_| self.auto_grow[i].load(Relaxed))
                .and_then(|need| budget.grown(capacity, need));
            match grown {
                Some(grown) => {
                    self.capacity[i].store(grown, Relaxed);
                    self.growths[i].fetch_add(1, Relaxed);
                    tracing::debug!(%space, from = capacity, to = grown, "space capacity grown");
                }
                None => {
                    let limit = if budget.growth_percent == 0 {
                        capacity
                    } else {
                        budget.max
                    };
                    return Err(AllocError::LimitExceeded {
                        space,
                        requested: size,
                        used,
                        limit,
                    });
                }
            }
        }
        Ok(())
    }

    /// Gives a pool back. Single-slot pools wait committed in a small cache;
    /// larger ones are decommitted at once.
    ///
    /// # Panics
    /// If `pool` is not a live pool of this manager exactly as it was handed
    /// out (a double free or a foreign pool); the message names the address.
    pub fn free_pool(&self, pool: Pool) {
        let idx = self.slot_of(pool.start_addr());
        let live = idx.is_some_and(|idx| {
            let e = self.entry(idx).load(Acquire);
            entry_tag(e) == space_tag(pool.space)
                && entry_head(e) == idx
                && (self.len(idx).load(Relaxed) as usize) << self.shift == pool.size
        });
        assert!(
            live,
            "PoolManager::free_pool: {:#x} is not a live {} pool of {} bytes (double free or foreign pool)",
            pool.start_addr(),
            pool.space,
            pool.size
        );
        let head = idx.expect("checked above");
        let n = (pool.size >> self.shift) as u32;
        let mut inner = self.inner.lock();
        self.used[pool.space.index()].fetch_sub(pool.size, Relaxed);
        if n == 1 && inner.cache_len < self.cache_cap {
            self.entry(head).store(entry(TAG_CACHED, head), Release);
            let len = inner.cache_len;
            inner.cache[len] = head;
            inner.cache_len += 1;
        } else {
            for i in head..head + n {
                self.entry(i).store(entry(TAG_FREE, head), Release);
            }
            self.decommit(head, n);
            self.insert_free(&mut inner, head, n);
        }
        drop(inner);
        self.stats.record_decommit(pool.space, pool.size);
        tracing::trace!(space = %pool.space, start = pool.start_addr(), size = pool.size, "pool freed");
    }

    /// Decommits every cached free pool, returning its memory to the system.
    pub fn trim(&self) {
        let mut inner = self.inner.lock();
        self.flush_cache(&mut inner);
    }

    /// Asks for transparent huge pages over `[start, start + len)`, which
    /// must lie in the pool area (see [`Reservation::advise_huge_pages`]).
    ///
    /// # Panics
    /// If the range leaves the pool area.
    pub fn advise_huge_pages(&self, start: usize, len: usize) {
        let base = self.reservation.start().as_ptr() as usize;
        assert!(
            self.contains(start) && len <= self.pool_area().1 - (start - self.pool_area().0),
            "advise_huge_pages: [{start:#x}, +{len:#x}) leaves the pool area"
        );
        self.reservation.advise_huge_pages(start - base, len);
    }

    /// Changes the access rights of `[offset, offset + len)` inside `pool`
    /// (page-aligned). Used by the code space for W^X.
    ///
    /// # Panics
    /// If the range is not page-aligned or leaves the pool.
    pub fn protect(
        &self,
        pool: &Pool,
        offset: usize,
        len: usize,
        prot: Protection,
    ) -> Result<(), AllocError> {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= pool.size),
            "protect: [{offset:#x}, +{len:#x}) leaves the pool at {:#x} of {} bytes",
            pool.start_addr(),
            pool.size
        );
        let base = self.reservation.start().as_ptr() as usize;
        self.reservation
            .protect(pool.start_addr() - base + offset, len, prot)
    }

    /// The end of the part of the pool area handed out so far: every live
    /// pool lies in `[pool_area().0, high_water())`. Side tables over the
    /// pool area need only be cleared up to it.
    pub fn high_water(&self) -> usize {
        self.data_start + ((self.inner.lock().top as usize) << self.shift)
    }

    /// The live pool containing `addr`, if any. O(1), lock-free.
    #[inline]
    pub fn pool_of(&self, addr: usize) -> Option<Pool> {
        let idx = self.slot_of(addr)?;
        let e = self.entry(idx).load(Acquire);
        let space = SpaceType::from_index((entry_tag(e) as usize).wrapping_sub(1))?;
        let head = entry_head(e);
        let size = (self.len(head).load(Relaxed) as usize) << self.shift;
        let start = self.data_start + ((head as usize) << self.shift);
        Some(Pool {
            start: NonNull::new(start as *mut u8)?,
            size,
            space,
        })
    }

    /// The space owning the pool that contains `addr`, if any. O(1), lock-free.
    #[inline]
    pub fn space_of(&self, addr: usize) -> Option<SpaceType> {
        let idx = self.slot_of(addr)?;
        SpaceType::from_index((entry_tag(self.entry(idx).load(Acquire)) as usize).wrapping_sub(1))
    }

    /// Whether `addr` lies in this manager's pool area (live pool or not).
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        self.slot_of(addr).is_some()
    }

    #[inline]
    fn slot_of(&self, addr: usize) -> Option<u32> {
        let idx = addr.wrapping_sub(self.data_start) >> self.shift;
        (idx < self.slots as usize).then_some(idx as u32)
    }

    fn offset_of(&self, slot: u32) -> usize {
        self.data_offset + ((slot as usize) << self.shift)
    }

    #[inline]
    fn entry(&self, slot: u32) -> &AtomicU64 {
        debug_assert!(slot < self.slots);
        // SAFETY: `slot < slots` and the table holds `slots` entries.
        unsafe { &*self.entries.as_ptr().add(slot as usize) }
    }

    #[inline]
    fn len(&self, slot: u32) -> &AtomicU32 {
        debug_assert!(slot < self.slots);
        // SAFETY: as for `entry`.
        unsafe { &*self.lens.as_ptr().add(slot as usize) }
    }

    fn links(&self, slot: u32) -> (u32, u32) {
        // SAFETY: as for `entry`.
        let v = unsafe { &*self.links.as_ptr().add(slot as usize) }.load(Relaxed);
        ((v >> 32) as u32, v as u32)
    }

    fn set_links(&self, slot: u32, prev: u32, next: u32) {
        // SAFETY: as for `entry`.
        let link = unsafe { &*self.links.as_ptr().add(slot as usize) };
        link.store(((prev as u64) << 32) | next as u64, Relaxed);
    }

    fn set_next(&self, slot: u32, next: u32) {
        let (prev, _) = self.links(slot);
        self.set_links(slot, prev, next);
    }

    fn set_prev(&self, slot: u32, prev: u32) {
        let (_, next) = self.links(slot);
        self.set_links(slot, prev, next);
    }

    /// Takes `n` slots: first fit from the free list, else from the top.
    fn take_range(&self, inner: &mut Inner, n: u32) -> Option<u32> {
        let mut cur = inner.free_list;
        while cur != NIL {
            let len = self.len(cur).load(Relaxed);
            if len >= n {
                self.unlink(inner, cur);
                if len > n {
                    // The remainder's neighbours are the slots just taken and
                    // whatever bounded the free range before: nothing to merge.
                    self.push_free(inner, cur + n, len - n);
                }
                return Some(cur);
            }
            cur = self.links(cur).1;
        }
        if inner.top as u64 + n as u64 <= self.slots as u64 {
            let head = inner.top;
            inner.top += n;
            return Some(head);
        }
        None
    }

    /// Adds `[head, head + n)` (decommitted, entries marked free) to the free
    /// ranges, coalescing with free neighbours and lowering the top if it
    /// reaches it.
    fn insert_free(&self, inner: &mut Inner, mut head: u32, mut n: u32) {
        if head > 0 {
            let before = self.entry(head - 1).load(Relaxed);
            if entry_tag(before) == TAG_FREE {
                let prev_head = entry_head(before);
                self.unlink(inner, prev_head);
                n += self.len(prev_head).load(Relaxed);
                head = prev_head;
            }
        }
        let after = head + n;
        if after < inner.top && entry_tag(self.entry(after).load(Relaxed)) == TAG_FREE {
            self.unlink(inner, after);
            n += self.len(after).load(Relaxed);
        }
        if head + n == inner.top {
            inner.top = head;
            return;
        }
        self.push_free(inner, head, n);
    }

    /// Links `[head, head + n)` into the free list as it is, writing its
    /// boundary tags.
    fn push_free(&self, inner: &mut Inner, head: u32, n: u32) {
        let tail = head + n - 1;
        self.entry(head).store(entry(TAG_FREE, head), Release);
        self.entry(tail).store(entry(TAG_FREE, head), Release);
        self.len(head).store(n, Relaxed);
        self.len(tail).store(n, Relaxed);
        self.set_links(head, NIL, inner.free_list);
        if inner.free_list != NIL {
            self.set_prev(inner.free_list, head);
        }
        inner.free_list = head;
    }

    fn unlink(&self, inner: &mut Inner, head: u32) {
        let (prev, next) = self.links(head);
        if prev == NIL {
            inner.free_list = next;
        } else {
            self.set_next(prev, next);
        }
        if next != NIL {
            self.set_prev(next, prev);
        }
    }

    fn flush_cache(&self, inner: &mut Inner) {
        while inner.cache_len > 0 {
            inner.cache_len -= 1;
            let head = inner.cache[inner.cache_len];
            self.entry(head).store(entry(TAG_FREE, head), Release);
            self.decommit(head, 1);
            self.insert_free(inner, head, 1);
        }
    }

    fn decommit(&self, head: u32, n: u32) {
        let len = (n as usize) << self.shift;
        if let Err(e) = self.reservation.decommit(self.offset_of(head), len) {
            // The range stays reserved and will be recommitted before reuse;
            // only its memory is not returned.
            tracing::warn!(error = %e, "decommit of a freed pool failed");
        }
    }
}

impl std::fmt::Debug for PoolManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolManager")
            .field("data_start", &format_args!("{:#x}", self.data_start))
            .field("pool_size", &self.pool_size())
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(slots: usize) -> PoolManager {
        PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(64 << 10)
                .with_reserve(slots * (64 << 10)),
        )
        .unwrap()
    }

    #[test]
    fn pools_are_aligned_tagged_and_found() {
        let pm = small(64);
        let a = pm.alloc_pool(SpaceType::Object, 1).unwrap();
        let b = pm
            .alloc_pool(SpaceType::Humongous, 3 * pm.pool_size() - 5)
            .unwrap();
        assert_eq!(a.size(), pm.pool_size());
        assert_eq!(b.size(), 3 * pm.pool_size());
        for p in [a, b] {
            assert_eq!(p.start_addr() % pm.pool_size(), 0);
            assert_eq!(pm.pool_of(p.start_addr()), Some(p));
            assert_eq!(pm.pool_of(p.end_addr() - 1), Some(p));
            assert!(!p.contains(p.end_addr()));
            // SAFETY: a fresh pool is committed read-write.
            unsafe { p.start().as_ptr().add(p.size() - 1).write(7) };
        }
        assert_eq!(
            pm.space_of(b.start_addr() + 2 * pm.pool_size()),
            Some(SpaceType::Humongous)
        );
        assert_eq!(pm.used(SpaceType::Humongous), 3 * pm.pool_size());
        assert_eq!(
            pm.stats().space(SpaceType::Object).committed,
            pm.pool_size() as u64
        );
        assert_eq!(pm.pool_of(0), None);
        pm.free_pool(b);
        assert_eq!(pm.pool_of(b.start_addr()), None);
        assert_eq!(pm.used(SpaceType::Humongous), 0);
        assert_eq!(pm.stats().space(SpaceType::Humongous).committed, 0);
    }

    #[test]
    fn huge_page_advice_keeps_the_contents_and_refuses_foreign_ranges() {
        let pm = small(16);
        let pool = pm.alloc_pool(SpaceType::Object, 1).unwrap();
        let bytes = pool.start().as_ptr();
        // SAFETY: the pool is ours, committed and at least a byte long.
        unsafe { bytes.write(42) };
        pm.advise_huge_pages(pool.start_addr(), pool.size());
        // SAFETY: as above.
        assert_eq!(unsafe { bytes.read() }, 42, "advice is not a decommit");
        let (area, len) = pm.pool_area();
        let outside = std::panic::catch_unwind(|| pm.advise_huge_pages(area, len + 4096));
        let message = outside.expect_err("past the pool area");
        let message = message.downcast_ref::<String>().unwrap();
        assert!(message.contains("leaves the pool area"), "{message}");
    }

    #[test]
    fn every_pool_lies_in_the_pool_area() {
        let pm = small(16);
        let (area, len) = pm.pool_area();
        assert_eq!(len, 16 * pm.pool_size());
        assert_eq!(area % pm.pool_size(), 0);
        let pools: Vec<Pool> = (1..=4)
            .map(|n| {
                pm.alloc_pool(SpaceType::Object, n * pm.pool_size())
                    .unwrap()
            })
            .collect();
        for p in &pools {
            assert!(
                p.start_addr() >= area && p.end_addr() <= area + len,
                "{p:?} outside the pool area"
            );
        }
        assert!(!pm.contains(area + len) && pm.contains(area) && pm.contains(area + len - 1));
    }

    #[test]
    fn freed_ranges_coalesce_and_top_shrinks() {
        let pm = small(8);
        let p: Vec<Pool> = (0..8)
            .map(|_| pm.alloc_pool(SpaceType::Object, 1).unwrap())
            .collect();
        assert!(matches!(
            pm.alloc_pool(SpaceType::Object, 1),
            Err(AllocError::OutOfMemory { .. })
        ));
        pm.trim();
        // Free slots 1, 3, 2 (out of order) with no cache: they must merge into one range of 3.
        let pm = PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(64 << 10)
                .with_reserve(8 * (64 << 10))
                .with_cache_pools(0),
        )
        .unwrap();
        let p2: Vec<Pool> = (0..8)
            .map(|_| pm.alloc_pool(SpaceType::Object, 1).unwrap())
            .collect();
        drop(p);
        for i in [1, 3, 2] {
            pm.free_pool(p2[i]);
        }
        let big = pm
            .alloc_pool(SpaceType::Object, 3 * pm.pool_size())
            .unwrap();
        assert_eq!(big.start(), p2[1].start());
        // Free the last pools: the top shrinks and a 2-slot pool fits there again.
        pm.free_pool(p2[7]);
        pm.free_pool(p2[6]);
        let tail = pm
            .alloc_pool(SpaceType::Object, 2 * pm.pool_size())
            .unwrap();
        assert_eq!(tail.start(), p2[6].start());
    }

    #[test]
    fn cache_reuses_committed_pools_and_trim_empties_it() {
        let pm = small(16);
        let a = pm.alloc_pool(SpaceType::RuntimeInternal, 1).unwrap();
        pm.free_pool(a);
        assert_eq!(pm.snapshot().pool_cache_bytes, pm.pool_size() as u64);
        let b = pm.alloc_pool(SpaceType::Object, 1).unwrap();
        assert_eq!(a.start(), b.start(), "the cached pool is reused first");
        assert_eq!(pm.space_of(b.start_addr()), Some(SpaceType::Object));
        pm.free_pool(b);
        pm.trim();
        assert_eq!(pm.snapshot().pool_cache_bytes, 0);
    }

    #[test]
    fn cached_pools_are_flushed_when_space_runs_short() {
        let pm = small(4);
        let p: Vec<Pool> = (0..4)
            .map(|_| pm.alloc_pool(SpaceType::Object, 1).unwrap())
            .collect();
        for pool in p {
            pm.free_pool(pool);
        }
        // All four slots wait in the cache; a 4-slot request must still succeed.
        let big = pm
            .alloc_pool(SpaceType::Humongous, 4 * pm.pool_size())
            .unwrap();
        assert_eq!(big.size(), 4 * pm.pool_size());
    }

    #[test]
    fn limits_are_enforced_and_named() {
        let pm = PoolManager::new(
            PoolManagerConfig::default()
                .with_limit(SpaceType::Code, 0)
                .with_limit(SpaceType::Object, 512 << 10),
        )
        .unwrap();
        let e = pm.alloc_pool(SpaceType::Code, 1).unwrap_err();
        assert_eq!(
            e,
            AllocError::LimitExceeded {
                space: SpaceType::Code,
                requested: pm.pool_size(),
                used: 0,
                limit: 0
            }
        );
        let a = pm.alloc_pool(SpaceType::Object, 1).unwrap();
        let _b = pm.alloc_pool(SpaceType::Object, 1).unwrap();
        let e = pm.alloc_pool(SpaceType::Object, 1).unwrap_err();
        assert!(e.to_string().contains("object space is full"), "{e}");
        pm.free_pool(a);
        pm.alloc_pool(SpaceType::Object, 1)
            .expect("freed bytes count against the limit no more");
        pm.set_limit(SpaceType::Code, 1 << 20);
        pm.alloc_pool(SpaceType::Code, 1).unwrap();
    }

    #[test]
    fn capacity_grows_by_its_rule_up_to_the_limit() {
        let pool = 64 << 10;
        let pm = PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(pool)
                .with_budget(
                    SpaceType::RuntimeInternal,
                    SpaceBudget::growing(4 * pool, 10 * pool, 50),
                )
                .with_budget(
                    SpaceType::Frames,
                    SpaceBudget::growing(2 * pool, 8 * pool, 0),
                ),
        )
        .unwrap();
        let ri = SpaceType::RuntimeInternal;
        assert_eq!(pm.capacity(ri), 4 * pool);
        let held: Vec<Pool> = (0..4).map(|_| pm.alloc_pool(ri, 1).unwrap()).collect();
        assert_eq!((pm.capacity(ri), pm.growths(ri)), (4 * pool, 0));
        // The fifth pool grows the capacity by half: 4 -> 6 pools.
        let fifth = pm.alloc_pool(ri, 1).unwrap();
        assert_eq!((pm.capacity(ri), pm.growths(ri)), (6 * pool, 1));
        // A request beyond one step grows to fit it: 5 + 4 = 9 pools.
        let big = pm.alloc_pool(ri, 4 * pool).unwrap();
        assert_eq!(pm.capacity(ri), 9 * pool);
        // Then the step (9 * 1.5) is capped at the limit of 10.
        let tenth = pm.alloc_pool(ri, 1).unwrap();
        assert_eq!(pm.capacity(ri), 10 * pool);
        let e = pm.alloc_pool(ri, 1).unwrap_err();
        assert_eq!(
            e,
            AllocError::LimitExceeded {
                space: ri,
                requested: pool,
                used: 10 * pool,
                limit: 10 * pool
            }
        );
        let snap = pm.snapshot();
        assert_eq!(snap.space(ri).capacity, 10 * pool as u64);
        assert_eq!(snap.space(ri).growths, 3);
        for p in held.into_iter().chain([fifth, big, tenth]) {
            pm.free_pool(p);
        }
        // A growth of 0 % means a fixed capacity at the initial size, named in the error.
        let fr = SpaceType::Frames;
        let a = pm.alloc_pool(fr, 2 * pool).unwrap();
        let e = pm.alloc_pool(fr, 1).unwrap_err();
        assert_eq!(
            e,
            AllocError::LimitExceeded {
                space: fr,
                requested: pool,
                used: 2 * pool,
                limit: 2 * pool
            }
        );
        pm.free_pool(a);
    }

    #[test]
    fn a_collector_grows_its_spaces_explicitly() {
        let pool = 64 << 10;
        let pm = PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(pool)
                .with_budget(
                    SpaceType::Object,
                    SpaceBudget::growing(2 * pool, 5 * pool, 100),
                ),
        )
        .unwrap();
        pm.set_auto_grow(SpaceType::Object, false);
        let a = pm.alloc_pool(SpaceType::Object, 2 * pool).unwrap();
        let e = pm.alloc_pool(SpaceType::Object, 1).unwrap_err();
        assert!(
            matches!(e, AllocError::LimitExceeded { limit, .. } if limit == 5 * pool),
            "{e}"
        );
        assert_eq!(
            pm.capacity(SpaceType::Object),
            2 * pool,
            "no automatic growth"
        );
        assert_eq!(pm.grow(SpaceType::Object, 1), 4 * pool, "one step of 100 %");
        let b = pm.alloc_pool(SpaceType::Object, 2 * pool).unwrap();
        assert_eq!(
            pm.grow(SpaceType::Object, 10 * pool),
            5 * pool,
            "capped at the limit"
        );
        pm.set_limit(SpaceType::Object, 3 * pool);
        assert_eq!(
            pm.capacity(SpaceType::Object),
            3 * pool,
            "a lower limit lowers the capacity"
        );
        pm.free_pool(a);
        pm.free_pool(b);
    }

    #[test]
    fn bad_requests() {
        let pm = small(4);
        assert!(matches!(
            pm.alloc_pool(SpaceType::Object, 0),
            Err(AllocError::BadLayout { .. })
        ));
        let e = pm.alloc_pool(SpaceType::Object, usize::MAX).unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::OutOfMemory {
                    space: SpaceType::Object,
                    ..
                }
            ),
            "{e}"
        );
        let e = pm
            .alloc_pool(SpaceType::Object, 5 * pm.pool_size())
            .unwrap_err();
        assert!(matches!(e, AllocError::OutOfMemory { .. }));
        assert!(
            e.to_string().contains("out of memory in the object space"),
            "{e}"
        );
        assert!(matches!(
            PoolManager::new(PoolManagerConfig::default().with_pool_size(3000)),
            Err(AllocError::BadLayout { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "is not a live object pool")]
    fn double_free_panics() {
        let pm = small(4);
        let a = pm.alloc_pool(SpaceType::Object, 1).unwrap();
        pm.free_pool(a);
        pm.free_pool(a);
    }

    #[test]
    fn protect_makes_a_pool_read_only_then_writable() {
        let pm = small(4);
        let a = pm.alloc_pool(SpaceType::Code, 1).unwrap();
        pm.protect(&a, 0, page_size(), Protection::Read).unwrap();
        pm.protect(&a, 0, page_size(), Protection::ReadWrite)
            .unwrap();
        // SAFETY: writable again.
        unsafe { a.start().as_ptr().write(1) };
    }

    #[test]
    fn concurrent_alloc_and_free() {
        let pm = small(256);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let pm = &pm;
                s.spawn(move || {
                    for round in 0..200usize {
                        let n = 1 + (round + t as usize) % 3;
                        let p = pm
                            .alloc_pool(SpaceType::Object, n * pm.pool_size())
                            .unwrap();
                        // SAFETY: the pool is committed and ours alone.
                        unsafe { p.start().as_ptr().write_bytes(t, p.size()) };
                        assert_eq!(pm.pool_of(p.start_addr() + p.size() - 1), Some(p));
                        // SAFETY: as above.
                        assert_eq!(unsafe { *p.start().as_ptr().add(p.size() - 1) }, t);
                        pm.free_pool(p);
                    }
                });
            }
        });
        assert_eq!(pm.used(SpaceType::Object), 0);
        assert_eq!(pm.stats().space(SpaceType::Object).committed, 0);
    }
}
