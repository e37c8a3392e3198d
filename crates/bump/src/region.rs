//! `BumpRegion`: a fixed-size region that many threads carve with one
//! compare-exchange per chunk or object.

use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{AllocError, Pool, PoolManager, SpaceType, align_down, is_aligned};

use crate::sync::{AtomicUsize, Ordering::Relaxed};
use crate::{GRANULE, granule_round};

/// Why a request that even the empty region could not hold is a bad layout
/// (and not a full region, which a collection could cure).
const NEVER_FITS: &str = "does not fit even in the whole, empty bump region";

/// Describes an unused range (start, length in bytes) so that a heap walker
/// can step over it: for example by writing a filler object header.
pub type Filler = fn(NonNull<u8>, usize);

/// A fixed-size, contiguous region (one pool from the [`PoolManager`]) that
/// threads share and carve without locks.
///
/// Memory is handed out from the bottom up: [`carve`](Self::carve) takes a
/// chunk for a thread-local allocation buffer, [`alloc`](Self::alloc) takes
/// a single object. Both are one compare-exchange on the region's top (looping
/// only when another thread won the race), both are 8-aligned and a multiple
/// of [`GRANULE`] long, and neither ever passes the end of the region: when
/// not enough is left the caller gets [`AllocError::LimitExceeded`] naming the
/// space, the bytes in use and the capacity.
///
/// Everything below [`used`](Self::used) was handed out. For the range
/// `[start, start + used)` to be walkable object by object, every gap must be
/// described: a [`Filler`] set with [`with_filler`](Self::with_filler) is
/// called for the unused tail of every retired TLAB and for the padding that
/// over-aligned [`alloc`](Self::alloc) calls skip.
///
/// Statistics: allocations made through [`alloc`](Self::alloc) and counts
/// flushed by TLABs through [`account`](Self::account) are recorded in the
/// pool manager's [`MemStats`](rtmem_base::MemStats) for the region's space;
/// [`reset`](Self::reset) and drop record them as freed.
///
/// ```
/// use std::sync::Arc;
/// use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
/// use rtmem_bump::BumpRegion;
///
/// let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
/// let mut region = BumpRegion::new(pools.clone(), SpaceType::Object, 1 << 20).unwrap();
/// let (chunk, len) = region.carve(64, 4096).unwrap();
/// assert_eq!((chunk, len), (region.start(), 4096));
/// // ... a thread allocates three objects, 96 bytes, inside the chunk ...
/// region.account(96, 3);
/// assert_eq!(pools.stats().space(SpaceType::Object).live_objects(), 3);
/// region.reset();
/// assert_eq!((region.used(), pools.stats().space(SpaceType::Object).live_bytes()), (0, 0));
/// ```
pub struct BumpRegion {
    /// Offset of the first byte not handed out; only grows, except in `reset`.
    top: AtomicUsize,
    start: NonNull<u8>,
    capacity: usize,
    space: SpaceType,
    /// Bytes and objects reported through `account` since the last reset.
    accounted_bytes: AtomicUsize,
    accounted_objects: AtomicUsize,
    filler: Option<Filler>,
    /// The pool the region lives in and its manager; `None` for `from_raw`.
    backing: Option<(Arc<PoolManager>, Pool)>,
}

// SAFETY: the region hands out disjoint ranges of memory it does not read or
// write itself; its shared state is atomics, and the pool (if any) is given
// back exactly once, in `drop`.
unsafe impl Send for BumpRegion {}
// SAFETY: every `&self` method only touches atomics and immutable fields.
unsafe impl Sync for BumpRegion {}

impl BumpRegion {
    /// Takes a pool of at least `bytes` for `space` from `pools`. The
    /// capacity is the whole pool: `bytes` rounded up to whole pool slots.
    ///
    /// Errors are the pool manager's: [`AllocError::BadLayout`] for 0 bytes,
    /// [`AllocError::LimitExceeded`] when the space's limit would be passed,
    /// [`AllocError::OutOfMemory`] when the reservation is exhausted.
    pub fn new(
        pools: Arc<PoolManager>,
        space: SpaceType,
        bytes: usize,
    ) -> Result<BumpRegion, AllocError> {
        let pool = pools.alloc_pool(space, bytes)?;
        tracing::debug!(%space, start = pool.start_addr(), size = pool.size(), "bump region created");
        Ok(BumpRegion::build(
            pool.start(),
            pool.size(),
            space,
            Some((pools, pool)),
        ))
    }

    /// A region over memory the caller owns, for embedding and for loom models.
    ///
    /// The capacity is `len` rounded down to a multiple of [`GRANULE`]. No
    /// pool manager is involved: statistics are kept in the region's own
    /// counters only, and errors name the [`SpaceType::Object`] space.
    ///
    /// # Safety
    /// `[start, start + len)` must be one allocation, valid for reads and
    /// writes, that nothing else uses while the region or any memory it
    /// handed out is in use, and it must outlive the region.
    ///
    /// # Panics
    /// If `start` is not 8-aligned (the message names the address).
    pub unsafe fn from_raw(start: NonNull<u8>, len: usize) -> BumpRegion {
        assert!(
            is_aligned(start.as_ptr().addr(), GRANULE),
            "BumpRegion::from_raw: start {:p} is not {GRANULE}-aligned",
            start
        );
        BumpRegion::build(start, align_down(len, GRANULE), SpaceType::Object, None)
    }

    fn build(
        start: NonNull<u8>,
        capacity: usize,
        space: SpaceType,
        backing: Option<(Arc<PoolManager>, Pool)>,
    ) -> BumpRegion {
        BumpRegion {
            top: AtomicUsize::new(0),
            start,
            capacity,
            space,
            accounted_bytes: AtomicUsize::new(0),
            accounted_objects: AtomicUsize::new(0),
            filler: None,
            backing,
        }
    }

    /// Sets the filler called with every unused tail a TLAB leaves behind and
    /// every alignment gap [`alloc`](Self::alloc) skips (each a nonzero
    /// multiple of [`GRANULE`] bytes). Without one, gaps are left as they are.
    pub fn with_filler(mut self, filler: Filler) -> BumpRegion {
        self.filler = Some(filler);
        self
    }

    /// Carves a chunk of between `min` and `preferred` bytes: `preferred` if
    /// that much is left, otherwise everything that is left. The chunk is
    /// 8-aligned and belongs to the caller until the next [`reset`](Self::reset).
    ///
    /// One compare-exchange when uncontended.
    ///
    /// Errors: [`AllocError::LimitExceeded`] (naming the space, the bytes in
    /// use and the capacity) when less than `min` is left;
    /// [`AllocError::BadLayout`] when `min` is larger than the whole region,
    /// or when `min` and `preferred` are not nonzero multiples of [`GRANULE`]
    /// with `min <= preferred`.
    pub fn carve(&self, min: usize, preferred: usize) -> Result<(NonNull<u8>, usize), AllocError> {
        if min == 0 || min > preferred || !is_aligned(min | preferred, GRANULE) {
            return Err(AllocError::bad_layout(
                min,
                GRANULE,
                "carve: min and preferred must be nonzero multiples of 8 with min <= preferred",
            ));
        }
        if min > self.capacity {
            return Err(AllocError::bad_layout(min, GRANULE, NEVER_FITS));
        }
        let (offset, len) = self.claim(|_| (min, preferred))?;
        Ok((self.at(offset), len))
    }

    /// Allocates one object, thread-safely, with one compare-exchange when
    /// uncontended: for slow paths and objects that do not go through a TLAB.
    ///
    /// The size is rounded up to a multiple of [`GRANULE`]; a zero size takes
    /// one granule, so every object has an extent a heap walker can step over.
    /// Alignments above 8 are honoured by skipping a gap, which is described to
    /// the filler. The object is recorded in the statistics at once, as by
    /// [`account`](Self::account) (relaxed counter additions: there is no
    /// thread-local place to batch them).
    ///
    /// Errors: [`AllocError::LimitExceeded`] when the object does not fit in
    /// what is left; [`AllocError::BadLayout`] when it would not fit even in
    /// the empty region (too large, or an alignment the region cannot meet).
    pub fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let size = granule_round(layout.size().max(1));
        let base = self.start.as_ptr().addr();
        // Padding is at most `align - 1` and `size` at most
        // `isize::MAX - (align - 1) + 7` (a `Layout` invariant), so no sum overflows.
        let pad_at = |offset: usize| (base + offset).wrapping_neg() & (layout.align() - 1);
        if pad_at(0) + size > self.capacity {
            return Err(AllocError::bad_layout(
                layout.size(),
                layout.align(),
                NEVER_FITS,
            ));
        }
        let (offset, _) = self.claim(|offset| {
            let need = pad_at(offset) + size;
            (need, need)
        })?;
        let pad = pad_at(offset);
        if pad > 0 {
            self.fill_tail(self.at(offset), pad);
        }
        self.account(size, 1);
        Ok(self.at(offset + pad))
    }

    /// Records `objects` objects of `bytes` in total that were allocated inside
    /// carved chunks (a TLAB flushes its counts here when it is retired):
    /// into the region's counters and, for a pool-backed region, the pool
    /// manager's statistics.
    pub fn account(&self, bytes: usize, objects: usize) {
        self.accounted_bytes.fetch_add(bytes, Relaxed);
        self.accounted_objects.fetch_add(objects, Relaxed);
        if let Some((pools, _)) = &self.backing {
            pools.stats().record_alloc(self.space, bytes, objects);
        }
    }

    /// Frees everything: the region is empty again, and every accounted byte
    /// and object is recorded as freed. Taking `&mut self` guarantees that no
    /// thread is carving; TLABs over the region must be retired first.
    pub fn reset(&mut self) {
        // SAFETY: `&mut self`: nobody else carves; retiring TLABs is the
        // caller's part, as documented.
        unsafe { self.reset_shared() }
    }

    /// [`reset`](Self::reset) through a shared reference, for a collector
    /// that keeps its young regions where mutators carve them and empties
    /// them with the world stopped.
    ///
    /// # Safety
    /// No thread carves from or allocates in the region during the call,
    /// and every TLAB over it was retired (its memory is handed out again).
    pub unsafe fn reset_shared(&self) {
        self.release_accounted();
        self.top.store(0, Relaxed);
    }

    /// The bytes handed out so far (chunks, objects and alignment gaps).
    #[inline]
    pub fn used(&self) -> usize {
        self.top.load(Relaxed)
    }

    /// The size of the region in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `addr` lies inside the region (handed out or not).
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start.as_ptr().addr()) < self.capacity
    }

    /// The first byte of the region.
    #[inline]
    pub fn start(&self) -> NonNull<u8> {
        self.start
    }

    /// The space the region belongs to ([`SpaceType::Object`] for `from_raw`).
    #[inline]
    pub fn space(&self) -> SpaceType {
        self.space
    }

    /// The bytes recorded through [`account`](Self::account) and
    /// [`alloc`](Self::alloc) since the last reset.
    pub fn accounted_bytes(&self) -> usize {
        self.accounted_bytes.load(Relaxed)
    }

    /// The objects recorded through [`account`](Self::account) and
    /// [`alloc`](Self::alloc) since the last reset.
    pub fn accounted_objects(&self) -> usize {
        self.accounted_objects.load(Relaxed)
    }

    /// Describes the unused range `[start, start + len)` by calling the filler,
    /// if one is set and `len` is not zero.
    #[inline]
    pub fn fill_tail(&self, start: NonNull<u8>, len: usize) {
        if let Some(filler) = self.filler
            && len > 0
        {
            filler(start, len);
        }
    }

    /// The compare-exchange loop behind `carve` and `alloc`. With the top at
    /// `offset`, `plan(offset)` gives the bytes the request needs from there
    /// and the bytes it would like; the top moves by as much of the latter as
    /// is left. Returns the offset claimed from and the advance, or the
    /// `LimitExceeded` error naming what was needed when it is not left.
    ///
    /// Relaxed ordering suffices: disjointness follows from the total order of
    /// read-modify-writes on `top` alone, and no data is published through it
    /// (objects are handed between threads by their own synchronization, and
    /// `reset` takes `&mut self`).
    #[inline]
    fn claim(&self, plan: impl Fn(usize) -> (usize, usize)) -> Result<(usize, usize), AllocError> {
        let mut offset = self.top.load(Relaxed);
        loop {
            let left = self.capacity - offset;
            let (need, want) = plan(offset);
            if need > left {
                return Err(AllocError::LimitExceeded {
                    space: self.space,
                    requested: need,
                    used: offset,
                    limit: self.capacity,
                });
            }
            let step = want.min(left);
            debug_assert!(step <= self.capacity - offset && is_aligned(step, GRANULE));
            match self
                .top
                .compare_exchange_weak(offset, offset + step, Relaxed, Relaxed)
            {
                Ok(_) => return Ok((offset, step)),
                Err(now) => offset = now,
            }
        }
    }

    /// The address `offset` bytes into the region (`offset <= capacity`).
    #[inline]
    fn at(&self, offset: usize) -> NonNull<u8> {
        debug_assert!(offset <= self.capacity);
        // SAFETY: `offset <= capacity`, so the pointer stays inside the
        // region's allocation (or one past its end) and is not null.
        unsafe { self.start.add(offset) }
    }

    /// Records every accounted byte and object as freed and zeroes the counters.
    fn release_accounted(&self) {
        let bytes = self.accounted_bytes.swap(0, Relaxed);
        let objects = self.accounted_objects.swap(0, Relaxed);
        if let Some((pools, _)) = &self.backing {
            pools.stats().record_free(self.space, bytes, objects);
        }
    }
}

impl Drop for BumpRegion {
    fn drop(&mut self) {
        self.release_accounted();
        if let Some((pools, pool)) = self.backing.take() {
            pools.free_pool(pool);
        }
    }
}

impl fmt::Debug for BumpRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BumpRegion")
            .field("space", &self.space)
            .field("start", &self.start)
            .field("used", &self.used())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtmem_base::PoolManagerConfig;
    use std::collections::HashSet;

    fn manager(limit: usize) -> Arc<PoolManager> {
        Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_pool_size(64 << 10)
                    .with_reserve(64 << 20)
                    .with_limit(SpaceType::Object, limit),
            )
            .unwrap(),
        )
    }

    #[test]
    fn carve_gives_preferred_then_the_rest_then_a_named_error() {
        let region = BumpRegion::new(manager(usize::MAX), SpaceType::Object, 1).unwrap();
        assert_eq!(region.capacity(), 64 << 10, "a region is one whole pool");
        let (a, a_len) = region.carve(8, 40 << 10).unwrap();
        assert_eq!((a, a_len), (region.start(), 40 << 10));
        let (b, b_len) = region.carve(8 << 10, 40 << 10).unwrap();
        assert_eq!(b.as_ptr().addr(), a.as_ptr().addr() + a_len);
        assert_eq!(b_len, 24 << 10, "only the rest is left");
        assert_eq!(region.used(), region.capacity());
        let e = region.carve(8, 8).unwrap_err();
        assert_eq!(
            e,
            AllocError::LimitExceeded {
                space: SpaceType::Object,
                requested: 8,
                used: 64 << 10,
                limit: 64 << 10
            }
        );
        assert!(e.to_string().contains("object space is full"), "{e}");
    }

    #[test]
    fn carve_refuses_bad_requests() {
        let region = BumpRegion::new(manager(usize::MAX), SpaceType::Object, 1).unwrap();
        for (min, preferred) in [(0, 8), (12, 16), (8, 12), (16, 8)] {
            let e = region.carve(min, preferred).unwrap_err();
            assert!(
                matches!(e, AllocError::BadLayout { .. }),
                "{min}/{preferred}: {e}"
            );
        }
        let e = region.carve(128 << 10, 128 << 10).unwrap_err();
        assert!(e.to_string().contains(NEVER_FITS), "{e}");
        assert_eq!(region.used(), 0, "refused requests take nothing");
    }

    #[test]
    fn alloc_rounds_aligns_fills_gaps_and_accounts() {
        static GAPS: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());
        fn record(start: NonNull<u8>, len: usize) {
            GAPS.lock().unwrap().push((start.as_ptr().addr(), len));
        }
        let pools = manager(usize::MAX);
        let region = BumpRegion::new(pools.clone(), SpaceType::Object, 1)
            .unwrap()
            .with_filler(record);
        let base = region.start().as_ptr().addr();
        let a = region
            .alloc(Layout::from_size_align(3, 1).unwrap())
            .unwrap();
        assert_eq!(a.as_ptr().addr(), base);
        let z = region
            .alloc(Layout::from_size_align(0, 1).unwrap())
            .unwrap();
        assert_eq!(z.as_ptr().addr(), base + 8, "3 bytes take one granule");
        let b = region
            .alloc(Layout::from_size_align(24, 64).unwrap())
            .unwrap();
        assert_eq!(
            b.as_ptr().addr(),
            base + 64,
            "zero bytes took one granule too"
        );
        assert_eq!(
            *GAPS.lock().unwrap(),
            vec![(base + 16, 48)],
            "the alignment gap is filled"
        );
        assert_eq!(region.used(), 88);
        assert_eq!(
            (region.accounted_bytes(), region.accounted_objects()),
            (8 + 8 + 24, 3)
        );
        let s = pools.stats().space(SpaceType::Object);
        assert_eq!((s.bytes_allocated, s.objects_allocated), (40, 3));
        // SAFETY: `b` is 24 bytes of the region, ours alone.
        unsafe { b.as_ptr().write_bytes(0xAB, 24) };
        assert!(region.contains(b.as_ptr().addr()) && !region.contains(base + region.capacity()));
    }

    #[test]
    fn alloc_errors() {
        let region = BumpRegion::new(manager(usize::MAX), SpaceType::NonMoving, 1).unwrap();
        let e = region
            .alloc(Layout::from_size_align(1 << 20, 8).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::BadLayout {
                    size: 1_048_576,
                    ..
                }
            ),
            "{e}"
        );
        let huge = Layout::from_size_align(isize::MAX as usize - 7, 8).unwrap();
        assert!(matches!(
            region.alloc(huge),
            Err(AllocError::BadLayout { .. })
        ));
        let pool_aligned = Layout::from_size_align(8, 64 << 10).unwrap();
        let first = region.alloc(pool_aligned).unwrap();
        assert_eq!(first, region.start(), "pools are pool-aligned");
        // Now the next 64 KiB boundary is past the end: full, not a bad layout.
        let e = region.alloc(pool_aligned).unwrap_err();
        assert!(e.to_string().contains("non-moving space is full"), "{e}");
        region.carve(8, region.capacity() - 8).unwrap();
        let e = region.alloc(Layout::new::<u64>()).unwrap_err();
        assert_eq!(
            e,
            AllocError::LimitExceeded {
                space: SpaceType::NonMoving,
                requested: 8,
                used: region.capacity(),
                limit: region.capacity()
            }
        );
    }

    #[test]
    fn alignments_the_region_can_never_meet_are_bad_layouts() {
        let mut buf = vec![0u64; 10];
        // A start that is 8 but not 16 modulo 16.
        let first = buf.as_mut_ptr().cast::<u8>();
        let start = if first.addr() % 16 == 0 {
            first.wrapping_add(8)
        } else {
            first
        };
        // SAFETY: `[start, start + 64)` lies inside `buf`, which outlives the region.
        let region = unsafe { BumpRegion::from_raw(NonNull::new(start).unwrap(), 64) };
        let e = region
            .alloc(Layout::from_size_align(64, 16).unwrap())
            .unwrap_err();
        assert_eq!(e, AllocError::bad_layout(64, 16, NEVER_FITS));
        assert_eq!(region.used(), 0);
        let p = region
            .alloc(Layout::from_size_align(48, 16).unwrap())
            .unwrap();
        assert_eq!(p.as_ptr().addr(), start.addr() + 8);
        assert_eq!(region.used(), 56, "the gap and the object");
    }

    #[test]
    fn reset_and_drop_record_frees_and_give_the_pool_back() {
        let pools = manager(usize::MAX);
        let mut region = BumpRegion::new(pools.clone(), SpaceType::Object, 100 << 10).unwrap();
        assert_eq!(region.capacity(), 128 << 10, "rounded up to two pools");
        assert_eq!(pools.used(SpaceType::Object), 128 << 10);
        region.carve(4096, 4096).unwrap();
        region.account(4000, 10);
        region.alloc(Layout::new::<[u64; 2]>()).unwrap();
        let s = pools.stats().space(SpaceType::Object);
        assert_eq!((s.live_bytes(), s.live_objects()), (4016, 11));
        region.reset();
        assert_eq!(region.used(), 0);
        assert_eq!(
            (region.accounted_bytes(), region.accounted_objects()),
            (0, 0)
        );
        let s = pools.stats().space(SpaceType::Object);
        assert_eq!(
            (s.bytes_freed, s.objects_freed, s.live_bytes()),
            (4016, 11, 0)
        );
        let (again, _) = region.carve(8, 8).unwrap();
        assert_eq!(again, region.start(), "reset memory is handed out again");
        region.account(8, 1);
        drop(region);
        let s = pools.stats().space(SpaceType::Object);
        assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
        assert_eq!(pools.used(SpaceType::Object), 0);
    }

    #[test]
    fn limits_are_reported_with_the_space_name() {
        let e = BumpRegion::new(manager(0), SpaceType::Object, 1).unwrap_err();
        assert!(matches!(
            e,
            AllocError::LimitExceeded {
                space: SpaceType::Object,
                limit: 0,
                ..
            }
        ));
        assert!(e.to_string().contains("object space is full"), "{e}");
        let e = BumpRegion::new(manager(usize::MAX), SpaceType::Object, 0).unwrap_err();
        assert!(matches!(e, AllocError::BadLayout { .. }), "{e}");
    }

    #[test]
    fn from_raw_regions_work_without_a_pool_manager() {
        let mut buf = vec![0u64; 9];
        let start = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `buf` outlives the region and is used only through it.
        let region = unsafe { BumpRegion::from_raw(start, 9 * 8 - 3) };
        assert_eq!((region.capacity(), region.space()), (64, SpaceType::Object));
        let (c, len) = region.carve(8, 48).unwrap();
        assert_eq!((c, len), (start, 48));
        region.account(48, 2);
        assert_eq!(region.accounted_objects(), 2);
        assert!(region.carve(24, 24).is_err());
        assert_eq!(region.carve(8, 24).unwrap().1, 16);
    }

    #[test]
    #[should_panic(expected = "is not 8-aligned")]
    fn from_raw_rejects_misaligned_starts() {
        let mut buf = [0u64; 2];
        let start = NonNull::new(buf.as_mut_ptr().cast::<u8>().wrapping_add(4)).unwrap();
        // SAFETY: in bounds of `buf`, which outlives the region; it panics anyway.
        let _ = unsafe { BumpRegion::from_raw(start, 8) };
    }

    #[test]
    fn threads_carve_disjoint_chunks_until_exhaustion() {
        let region = BumpRegion::new(manager(usize::MAX), SpaceType::Object, 256 << 10).unwrap();
        let chunks: Vec<Vec<(usize, usize)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let region = &region;
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0.. {
                            let pref = 8 * (1 + (i * 7 + t) % 300);
                            match region.carve(8, pref) {
                                Ok((p, len)) => mine.push((p.as_ptr().addr(), len)),
                                Err(AllocError::LimitExceeded { .. }) => break,
                                Err(e) => panic!("unexpected error {e}"),
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<(usize, usize)> = chunks.into_iter().flatten().collect();
        all.sort_unstable();
        let base = region.start().as_ptr().addr();
        let mut expect = base;
        for &(addr, len) in &all {
            assert_eq!(
                addr, expect,
                "chunks tile the region without gaps or overlap"
            );
            expect += len;
        }
        assert_eq!(expect - base, region.capacity());
        assert_eq!(
            all.iter().map(|c| c.0).collect::<HashSet<_>>().len(),
            all.len()
        );
    }
}
