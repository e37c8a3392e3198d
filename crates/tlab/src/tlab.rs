//! `Tlab`: one thread's allocation buffer, with a compare-and-add fast path.

use std::ptr::{self, NonNull};

use rtmem_base::{AllocError, checked_align_up, is_aligned};
use rtmem_bump::{granule_round, prefetch_ahead};

use crate::TlabSource;

/// A thread-local allocation buffer: a chunk carved from a shared
/// [`TlabSource`] that one thread allocates from without synchronization.
///
/// - **Fast path** ([`try_alloc`](Self::try_alloc), and
///   [`alloc`](Self::alloc) when the object fits): one compare and one add,
///   inlined; the rounding of the size folds away when it is a constant.
/// - **Slow path** (cold, out of line): objects larger than half the TLAB
///   size are carved directly from the source and the buffer is kept;
///   otherwise a new buffer is carved and the old one retired. If the source
///   is exhausted the error is returned and the current buffer stays usable.
/// - **Retiring** ([`retire`](Self::retire)) describes the unused tail to the
///   source (so the heap stays walkable) and flushes the counts into it. It
///   must happen before the source is reset, e.g. before a young collection.
///
/// Sizes are rounded up to [`GRANULE`](Self::GRANULE) bytes and a zero size
/// takes one granule, so every object starts 8-aligned and has an extent a
/// heap walker can step over. Objects are not zeroed.
///
/// A `Tlab` is owned by one thread (`Send`, not `Sync`). Dropping one that
/// still holds a buffer or unflushed counts loses them (and logs a warning):
/// retire it first.
///
/// ```
/// use std::sync::Arc;
/// use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
/// use rtmem_bump::BumpRegion;
/// use rtmem_tlab::Tlab;
///
/// let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
/// let region = BumpRegion::new(pools.clone(), SpaceType::Object, 1 << 20).unwrap();
/// let mut tlab = Tlab::new(32 * 1024);
/// let a = tlab.alloc(&region, 24).unwrap(); // refills: carves 32 KiB
/// let b = tlab.try_alloc(20).unwrap(); // fast path only, rounded to 24
/// assert_eq!(b.as_ptr() as usize, a.as_ptr() as usize + 24);
/// tlab.retire(&region);
/// assert_eq!(tlab.stats().wasted_bytes, 32 * 1024 - 48);
/// assert_eq!(pools.stats().space(SpaceType::Object).objects_allocated, 2);
/// ```
#[derive(Debug)]
pub struct Tlab {
    /// The next free byte of the buffer (null when there is no buffer).
    top: *mut u8,
    /// The end of the buffer (null when there is no buffer).
    end: *mut u8,
    /// The start of the buffer (null when there is no buffer).
    start: *mut u8,
    /// Objects allocated since the last flush (from the buffer and directly).
    objects: usize,
    /// Bytes of large objects carved directly since the last flush.
    direct_bytes: usize,
    /// The size of a buffer.
    size: usize,
    /// Totals flushed so far.
    flushed: TlabStats,
}

// SAFETY: the buffer was carved for this TLAB alone and the TLAB never
// dereferences it; nothing in it is tied to the creating thread.
unsafe impl Send for Tlab {}

/// What a [`Tlab`] has done since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlabStats {
    /// Buffers carved from the source.
    pub refills: usize,
    /// Bytes allocated (rounded sizes), including large objects carved directly.
    pub allocated_bytes: usize,
    /// Objects allocated.
    pub objects: usize,
    /// Bytes of buffer tails left unused when buffers were retired.
    pub wasted_bytes: usize,
}

impl Tlab {
    /// Every size is rounded up to a multiple of this; every result is aligned to it.
    pub const GRANULE: usize = rtmem_bump::GRANULE;

    /// An empty TLAB whose buffers are `preferred_size` bytes (rounded up to
    /// the granule, at least one granule). The first allocation refills it.
    pub fn new(preferred_size: usize) -> Tlab {
        let size = granule_round(preferred_size.clamp(Self::GRANULE, isize::MAX as usize));
        Tlab {
            top: ptr::null_mut(),
            end: ptr::null_mut(),
            start: ptr::null_mut(),
            objects: 0,
            direct_bytes: 0,
            size,
            flushed: TlabStats::default(),
        }
    }

    /// Allocates `size` bytes (rounded up to the granule), refilling from
    /// `source` when the buffer is too small. The memory is valid until the
    /// source is reset.
    ///
    /// Errors: the source's error when it cannot supply the memory (for a
    /// [`BumpRegion`](rtmem_bump::BumpRegion): `LimitExceeded` when it is
    /// full, `BadLayout` when the object would not fit even in the empty region);
    /// [`AllocError::BadLayout`] when the rounded size overflows.
    ///
    /// # Panics
    /// If `source` breaks the [`TlabSource::carve`] contract (the message
    /// names the chunk and the request).
    #[inline(always)]
    pub fn alloc<S: TlabSource + ?Sized>(
        &mut self,
        source: &S,
        size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        match self.try_alloc(size) {
            Some(object) => Ok(object),
            None => self.alloc_slow(source, size),
        }
    }

    /// Allocates `size` bytes from the current buffer, or returns `None`
    /// without refilling. A zero size always returns `None` (the slow path
    /// serves it as one granule).
    #[inline(always)]
    pub fn try_alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        // `remaining` is a multiple of the granule, so `size <= remaining`
        // implies that the rounded size fits as well. A zero size wraps to
        // `usize::MAX` and fails.
        if size.wrapping_sub(1) < self.remaining() {
            // SAFETY: at least one byte is left, so there is a buffer and
            // `granule_round(size) <= remaining`.
            Some(unsafe { self.bump(granule_round(size)) })
        } else {
            None
        }
    }

    /// Gives the buffer up: describes its unused tail to `source` with
    /// [`retire_tail`](TlabSource::retire_tail) and flushes the counts with
    /// [`account`](TlabSource::account). The next allocation refills.
    pub fn retire<S: TlabSource + ?Sized>(&mut self, source: &S) {
        let tail = self.remaining();
        if tail > 0 {
            // SAFETY: a nonzero tail means there is a buffer, so `top` is not null.
            source.retire_tail(unsafe { NonNull::new_unchecked(self.top) }, tail);
            self.flushed.wasted_bytes += tail;
        }
        let bytes = self.pending_bytes();
        if self.objects > 0 {
            source.account(bytes, self.objects);
        }
        self.flushed.allocated_bytes += bytes;
        self.flushed.objects += self.objects;
        self.objects = 0;
        self.direct_bytes = 0;
        self.top = ptr::null_mut();
        self.end = ptr::null_mut();
        self.start = ptr::null_mut();
    }

    /// The totals so far, including what is not yet flushed to the source.
    pub fn stats(&self) -> TlabStats {
        TlabStats {
            allocated_bytes: self.flushed.allocated_bytes + self.pending_bytes(),
            objects: self.flushed.objects + self.objects,
            ..self.flushed
        }
    }

    /// The bytes left in the current buffer.
    #[inline(always)]
    pub fn remaining(&self) -> usize {
        self.end.addr() - self.top.addr()
    }

    /// Whether `addr` lies in the current buffer (allocated or not).
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start.addr()) < self.end.addr() - self.start.addr()
    }

    /// The size of the buffers this TLAB carves.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// Takes `rounded` bytes from the buffer.
    ///
    /// # Safety
    /// There must be a buffer with `rounded <= remaining()`, `rounded > 0`.
    #[inline(always)]
    unsafe fn bump(&mut self, rounded: usize) -> NonNull<u8> {
        let object = self.top;
        self.top = object.wrapping_add(rounded);
        self.objects += 1;
        prefetch_ahead(self.top);
        // SAFETY: the caller guarantees a buffer, whose addresses are not null.
        unsafe { NonNull::new_unchecked(object) }
    }

    /// Bytes allocated since the last flush.
    fn pending_bytes(&self) -> usize {
        self.top.addr() - self.start.addr() + self.direct_bytes
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow<S: TlabSource + ?Sized>(
        &mut self,
        source: &S,
        size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let size = checked_align_up(size.max(1), Self::GRANULE).ok_or(AllocError::bad_layout(
            size,
            Self::GRANULE,
            "TLAB: the rounded size overflows",
        ))?;
        if let Some(object) = self.try_alloc(size) {
            return Ok(object);
        }
        if size > self.size / 2 {
            let (object, len) = source.carve(size, size)?;
            check_carved(object, len, size, size);
            self.direct_bytes += size;
            self.objects += 1;
            return Ok(object);
        }
        let (buffer, len) = source.carve(size, self.size)?;
        check_carved(buffer, len, size, self.size);
        self.retire(source);
        self.flushed.refills += 1;
        self.start = buffer.as_ptr();
        self.top = self.start;
        self.end = self.start.wrapping_add(len);
        // SAFETY: the new buffer holds at least `size` bytes (checked above),
        // and `size` is a nonzero multiple of the granule.
        Ok(unsafe { self.bump(size) })
    }
}

impl Drop for Tlab {
    fn drop(&mut self) {
        if self.objects > 0 || self.remaining() > 0 {
            tracing::warn!(
                objects = self.objects,
                bytes = self.pending_bytes(),
                tail = self.remaining(),
                "TLAB dropped without being retired: its counts are lost and its tail is not filled"
            );
        }
    }
}

/// Checks what a [`TlabSource`] returned against the `carve` contract.
fn check_carved(start: NonNull<u8>, len: usize, min: usize, preferred: usize) {
    assert!(
        (min..=preferred).contains(&len) && is_aligned(start.as_ptr().addr() | len, Tlab::GRANULE),
        "TlabSource::carve broke its contract: {len} bytes at {start:p} for a request of \
         {min}..={preferred} 8-aligned bytes"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;

    use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
    use rtmem_bump::BumpRegion;

    fn region(bytes: usize) -> (Arc<PoolManager>, BumpRegion) {
        let pools = Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_pool_size(64 << 10)
                    .with_reserve(16 << 20),
            )
            .unwrap(),
        );
        let region = BumpRegion::new(pools.clone(), SpaceType::Object, bytes).unwrap();
        (pools, region)
    }

    /// A source over a fixed array that records what the TLAB tells it.
    struct Recorder {
        buf: Box<[u64]>,
        top: Cell<usize>,
        short_by: usize,
        tails: RefCell<Vec<(usize, usize)>>,
        accounted: Cell<(usize, usize)>,
    }

    impl Recorder {
        fn new(words: usize) -> Recorder {
            Recorder {
                buf: vec![0; words].into_boxed_slice(),
                top: Cell::new(0),
                short_by: 0,
                tails: RefCell::default(),
                accounted: Cell::new((0, 0)),
            }
        }
        fn base(&self) -> usize {
            self.buf.as_ptr().addr()
        }
    }

    impl TlabSource for Recorder {
        fn carve(&self, min: usize, preferred: usize) -> Result<(NonNull<u8>, usize), AllocError> {
            let left = self.buf.len() * 8 - self.top.get();
            if left < min {
                return Err(AllocError::LimitExceeded {
                    space: SpaceType::Object,
                    requested: min,
                    used: self.top.get(),
                    limit: self.buf.len() * 8,
                });
            }
            let len = preferred.min(left) - self.short_by;
            let start = NonNull::new(self.buf.as_ptr().cast::<u8>().cast_mut()).unwrap();
            let chunk = start.as_ptr().wrapping_add(self.top.get());
            self.top.set(self.top.get() + len);
            Ok((NonNull::new(chunk).unwrap(), len))
        }
        fn retire_tail(&self, start: NonNull<u8>, len: usize) {
            self.tails
                .borrow_mut()
                .push((start.as_ptr().addr() - self.base(), len));
        }
        fn account(&self, bytes: usize, objects: usize) {
            let (b, o) = self.accounted.get();
            self.accounted.set((b + bytes, o + objects));
        }
    }

    #[test]
    fn fast_path_bumps_and_rounds() {
        let src = Recorder::new(64);
        let mut tlab = Tlab::new(100);
        assert_eq!(tlab.buffer_size(), 104);
        assert_eq!(tlab.try_alloc(8), None, "an empty TLAB has no fast path");
        let a = tlab.alloc(&src, 1).unwrap();
        assert_eq!(a.as_ptr().addr(), src.base());
        let b = tlab.try_alloc(13).unwrap();
        assert_eq!(b.as_ptr().addr(), src.base() + 8);
        assert_eq!(tlab.remaining(), 104 - 8 - 16);
        assert!(tlab.contains(src.base() + 103) && !tlab.contains(src.base() + 104));
        assert_eq!(tlab.try_alloc(81), None, "81 rounds to 88 > 80");
        assert!(tlab.try_alloc(80).is_some());
        assert_eq!(tlab.remaining(), 0);
        assert_eq!(
            tlab.stats(),
            TlabStats {
                refills: 1,
                allocated_bytes: 104,
                objects: 3,
                wasted_bytes: 0
            }
        );
        assert_eq!(
            src.accounted.get(),
            (0, 0),
            "nothing is flushed before retiring"
        );
    }

    #[test]
    fn zero_sizes_take_a_granule() {
        let src = Recorder::new(64);
        let mut tlab = Tlab::new(64);
        assert_eq!(tlab.try_alloc(0), None);
        let a = tlab.alloc(&src, 0).unwrap();
        let b = tlab.alloc(&src, 0).unwrap();
        assert_eq!(b.as_ptr().addr() - a.as_ptr().addr(), 8);
        assert_eq!(tlab.stats().allocated_bytes, 16);
    }

    #[test]
    fn refill_retires_the_old_buffer() {
        let src = Recorder::new(64);
        let mut tlab = Tlab::new(64);
        tlab.alloc(&src, 24).unwrap();
        tlab.alloc(&src, 24).unwrap();
        let c = tlab.alloc(&src, 32).unwrap();
        assert_eq!(
            c.as_ptr().addr(),
            src.base() + 64,
            "a new buffer follows the old one"
        );
        assert_eq!(*src.tails.borrow(), vec![(48, 16)]);
        assert_eq!(src.accounted.get(), (48, 2));
        tlab.retire(&src);
        assert_eq!(*src.tails.borrow(), vec![(48, 16), (96, 32)]);
        assert_eq!(src.accounted.get(), (80, 3));
        assert_eq!(
            tlab.stats(),
            TlabStats {
                refills: 2,
                allocated_bytes: 80,
                objects: 3,
                wasted_bytes: 48
            }
        );
        assert_eq!(tlab.remaining(), 0);
        tlab.retire(&src);
        assert_eq!(
            src.accounted.get(),
            (80, 3),
            "retiring twice flushes nothing new"
        );
    }

    #[test]
    fn large_objects_are_carved_directly_and_keep_the_buffer() {
        let src = Recorder::new(256);
        let mut tlab = Tlab::new(128);
        tlab.alloc(&src, 16).unwrap();
        let small = tlab.alloc(&src, 64).unwrap();
        let big = tlab.alloc(&src, 72).unwrap();
        assert_eq!(
            big.as_ptr().addr(),
            src.base() + 128,
            "carved after the buffer"
        );
        assert_eq!(tlab.remaining(), 48, "the buffer is kept");
        let next = tlab.alloc(&src, 16).unwrap();
        assert_eq!(next.as_ptr().addr(), small.as_ptr().addr() + 64);
        assert_eq!(tlab.stats().refills, 1);
        tlab.retire(&src);
        assert_eq!(src.accounted.get(), (16 + 64 + 72 + 16, 4));
        assert_eq!(src.tails.borrow().len(), 1);
    }

    #[test]
    fn exhaustion_is_an_error_and_keeps_the_buffer() {
        let src = Recorder::new(16);
        let mut tlab = Tlab::new(96);
        tlab.alloc(&src, 32).unwrap();
        tlab.alloc(&src, 40).unwrap();
        let e = tlab.alloc(&src, 48).unwrap_err();
        assert!(
            matches!(e, AllocError::LimitExceeded { requested: 48, .. }),
            "{e}"
        );
        assert_eq!(tlab.remaining(), 24, "the buffer survives a failed refill");
        assert!(tlab.alloc(&src, 24).is_ok());
        assert!(src.tails.borrow().is_empty());
        let e = tlab.alloc(&src, usize::MAX).unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::BadLayout {
                    size: usize::MAX,
                    ..
                }
            ),
            "{e}"
        );
        let e = tlab.alloc(&src, usize::MAX - 7).unwrap_err();
        assert!(matches!(e, AllocError::LimitExceeded { .. }), "{e}");
    }

    #[test]
    #[should_panic(expected = "TlabSource::carve broke its contract")]
    fn a_source_breaking_the_contract_is_caught() {
        let mut src = Recorder::new(64);
        src.short_by = 4;
        let _ = Tlab::new(64).alloc(&src, 8);
    }

    #[test]
    fn over_a_region_stats_reach_memstats() {
        let (pools, mut region) = region(1);
        let mut tlab = Tlab::new(4096);
        for _ in 0..100 {
            let p = tlab.alloc(&region, 48).unwrap();
            // SAFETY: 48 fresh bytes.
            unsafe { p.cast::<u64>().write(7) };
            assert!(region.contains(p.as_ptr().addr()));
        }
        tlab.alloc(&region, 3000).unwrap();
        tlab.retire(&region);
        let s = pools.stats().space(SpaceType::Object);
        assert_eq!((s.bytes_allocated, s.objects_allocated), (4800 + 3000, 101));
        let t = tlab.stats();
        assert_eq!(t.refills, 2);
        assert_eq!(t.allocated_bytes + t.wasted_bytes, region.used());
        region.reset();
        assert_eq!(pools.stats().space(SpaceType::Object).live_bytes(), 0);
    }

    #[test]
    fn objects_larger_than_the_region_are_bad_layouts() {
        let (_pools, region) = region(1);
        let mut tlab = Tlab::new(4096);
        let e = tlab.alloc(&region, 1 << 20).unwrap_err();
        assert!(matches!(e, AllocError::BadLayout { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("does not fit even in the whole, empty bump region"),
            "{e}"
        );
    }

    #[test]
    fn tiny_and_huge_buffer_sizes_are_clamped() {
        assert_eq!(Tlab::new(0).buffer_size(), Tlab::GRANULE);
        assert_eq!(
            Tlab::new(usize::MAX).buffer_size(),
            (isize::MAX as usize) + 1
        );
        let src = Recorder::new(8);
        let mut tlab = Tlab::new(0);
        assert!(
            tlab.alloc(&src, 8).is_ok(),
            "objects above half a granule are carved directly"
        );
        assert_eq!(tlab.stats().refills, 0);
    }
}
