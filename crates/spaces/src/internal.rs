//! The runtime-internal space: the runtime's own `malloc`, with accounting.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{AllocError, Mutex, PoolManager, SpaceType};
use rtmem_freelist::FreeListAllocator;
use rtmem_freelist::large::LargeObjectAllocator;
use rtmem_runslots::{LocalRuns, RunSlotsAllocator};

/// Which allocator serves a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Run-of-slots: up to 256 bytes with an alignment the slot meets.
    Small,
    /// Free list: up to the large threshold.
    Medium,
    /// A pool of its own.
    Large,
}

/// An internal allocator that routes by size: run-of-slots for small
/// requests, the free list for medium ones, a pool of their own for large
/// ones (at least `large_threshold` bytes, or too big for the free list).
///
/// Frees take the layout the block was allocated with (as `GlobalAlloc`
/// does), so routing a free costs a comparison, not a lookup. Threads with a
/// hot path take a [`InternalCache`] (their own runs, no lock); others use
/// [`alloc`](Self::alloc), which shares one cache behind a lock.
pub struct RuntimeInternalSpace {
    small: Arc<RunSlotsAllocator>,
    medium: FreeListAllocator,
    large: LargeObjectAllocator,
    large_threshold: usize,
    shared: Mutex<LocalRuns>,
}

impl RuntimeInternalSpace {
    /// The runtime-internal space over `pools`.
    pub fn new(pools: Arc<PoolManager>, large_threshold: usize) -> RuntimeInternalSpace {
        let space = SpaceType::RuntimeInternal;
        let small = Arc::new(RunSlotsAllocator::new(pools.clone(), space));
        let medium = FreeListAllocator::new(pools.clone(), space);
        let large = LargeObjectAllocator::new(pools, space);
        let shared = Mutex::new(small.local());
        RuntimeInternalSpace {
            small,
            medium,
            large,
            large_threshold,
            shared,
        }
    }

    #[inline]
    pub(crate) fn route(&self, layout: Layout) -> Route {
        let size = layout.size();
        match RunSlotsAllocator::size_class(size) {
            Some(slot) if layout.align() <= RunSlotsAllocator::slot_align(slot) => Route::Small,
            _ if size < self.large_threshold
                && size <= self.medium.max_size()
                && layout.align() <= FreeListAllocator::ALIGN =>
            {
                Route::Medium
            }
            _ => Route::Large,
        }
    }

    /// A per-thread cache: small allocations from the thread's own runs.
    pub fn cache(&self) -> InternalCache<'_> {
        InternalCache {
            space: self,
            local: self.small.local(),
        }
    }

    /// Allocates a block for `layout` (small blocks through the shared cache).
    pub fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.alloc_routed(self.route(layout), layout)
    }

    pub(crate) fn alloc_routed(
        &self,
        route: Route,
        layout: Layout,
    ) -> Result<NonNull<u8>, AllocError> {
        match route {
            Route::Small => self.shared.lock().alloc(layout.size()),
            Route::Medium => self.medium.alloc(layout),
            Route::Large => self.large.alloc(layout),
        }
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` was allocated by this space with `layout` and is still live.
    pub unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { self.free_routed(self.route(layout), ptr) }
    }

    /// # Safety
    /// `ptr` is a live block of the allocator `route` names.
    pub(crate) unsafe fn free_routed(&self, route: Route, ptr: NonNull<u8>) {
        // SAFETY: the caller guarantees `ptr` is a live block of that allocator;
        // a run-of-slots block may be freed from any thread.
        unsafe {
            match route {
                Route::Small => self.small.free(ptr),
                Route::Medium => self.medium.free(ptr),
                Route::Large => self.large.free(ptr),
            }
        }
    }

    /// Calls `f` with every live block (start, usable size).
    pub fn walk(&self, mut f: impl FnMut(NonNull<u8>, usize)) {
        self.small.walk(&mut f);
        self.medium.walk(&mut f);
        self.large.walk(&mut f);
    }

    /// Whether `addr` lies in a pool of this space's allocators.
    pub fn contains(&self, addr: usize) -> bool {
        self.medium.contains(addr) || self.large.contains(addr) || self.small.contains(addr)
    }

    /// Reports batched counts to `MemStats` now (the shared cache's and the
    /// free list's; thread caches report when they are flushed or dropped).
    pub fn flush_stats(&self) {
        self.shared.lock().flush();
        self.medium.flush_stats();
    }

    /// The run-of-slots allocator behind small requests.
    pub fn small(&self) -> &Arc<RunSlotsAllocator> {
        &self.small
    }
}

/// A thread's cache of the runtime-internal space: small requests come from
/// the thread's own runs without a lock; the rest go to the shared allocators.
pub struct InternalCache<'a> {
    space: &'a RuntimeInternalSpace,
    local: LocalRuns,
}

impl InternalCache<'_> {
    /// Allocates a block for `layout`.
    #[inline]
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        match self.space.route(layout) {
            Route::Small => self.local.alloc(layout.size()),
            route => self.space.alloc_routed(route, layout),
        }
    }

    /// Frees a block allocated from this space (through any cache) with `layout`.
    ///
    /// # Safety
    /// As [`RuntimeInternalSpace::free`].
    #[inline]
    pub unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        match self.space.route(layout) {
            // SAFETY: forwarded from the caller.
            Route::Small => unsafe { self.local.free(ptr) },
            // SAFETY: forwarded from the caller.
            route => unsafe { self.space.free_routed(route, ptr) },
        }
    }
}
