//! A `GlobalAlloc` over the runtime-internal space.
//!
//! ```
//! use rtmem_base::SpaceType;
//! use rtmem_spaces::InternalGlobalAlloc;
//!
//! #[global_allocator]
//! static GLOBAL: InternalGlobalAlloc = InternalGlobalAlloc::new(16 << 30);
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     let snapshot = GLOBAL.snapshot().unwrap();
//!     assert!(snapshot.space(SpaceType::RuntimeInternal).live_bytes() >= 8000);
//!     drop(v);
//! }
//! ```
//!
//! - **Start-up.** The space is built on the first allocation. Building it
//!   allocates (its `Arc`s), which re-enters the allocator: while the space is
//!   being built, requests are served from a small static bootstrap buffer
//!   whose blocks are never reused (frees of them are ignored).
//! - **Threads.** Each thread keeps its own runs for small requests in a
//!   thread-local cache; a thread whose cache is busy (a re-entrant call) or
//!   already destroyed (allocations from other thread-local destructors) uses
//!   the shared, locked cache instead. Frees are routed by layout, so a block
//!   may be freed on any thread.
//! - **Failure** returns null, as `GlobalAlloc` requires; the standard
//!   library then reports the allocation failure.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::{Cell, RefCell, UnsafeCell};
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};

use rtmem_base::{MemStatsSnapshot, PoolManager, PoolManagerConfig, SpaceBudget, SpaceType};
use rtmem_runslots::{LocalRuns, RunSlotsAllocator};

use crate::internal::{Route, RuntimeInternalSpace};

const UNINIT: u8 = 0;
const BUILDING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// Bytes of static memory that serve allocations made while the space is built.
const BOOTSTRAP_BYTES: usize = 64 << 10;

/// A `#[global_allocator]` backed by rtmem's runtime-internal space: every
/// allocation of the program is accounted in its [`MemStats`](rtmem_base::MemStats).
pub struct InternalGlobalAlloc {
    reserve_bytes: usize,
    state: AtomicU8,
    space: UnsafeCell<MaybeUninit<(Arc<PoolManager>, RuntimeInternalSpace)>>,
    bootstrap: UnsafeCell<[u64; BOOTSTRAP_BYTES / 8]>,
    bootstrap_top: AtomicUsize,
}

// SAFETY: `space` is written once, by the thread that wins the UNINIT ->
// BUILDING transition, before READY is published with Release; readers load
// READY with Acquire and then only read it. The bootstrap buffer is handed
// out in disjoint pieces by an atomic bump pointer.
unsafe impl Sync for InternalGlobalAlloc {}

thread_local! {
    /// This thread's cache: (the allocator it belongs to, its runs).
    static CACHE: RefCell<Option<(usize, LocalRuns)>> = const { RefCell::new(None) };
    /// Set while this thread is inside the allocator (re-entrancy guard).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

impl InternalGlobalAlloc {
    /// An allocator that will reserve `reserve_bytes` of address space for
    /// the runtime-internal space on first use (no limit on its growth).
    pub const fn new(reserve_bytes: usize) -> InternalGlobalAlloc {
        InternalGlobalAlloc {
            reserve_bytes,
            state: AtomicU8::new(UNINIT),
            space: UnsafeCell::new(MaybeUninit::uninit()),
            bootstrap: UnsafeCell::new([0; BOOTSTRAP_BYTES / 8]),
            bootstrap_top: AtomicUsize::new(0),
        }
    }

    /// The space, building it on first use; `None` while it is being built
    /// (by this thread re-entrantly, or by another) or if building failed.
    #[inline]
    fn space(&self) -> Option<&RuntimeInternalSpace> {
        if self.state.load(Acquire) == READY {
            // SAFETY: READY is published after the space is written (see `Sync`).
            return Some(unsafe { &(*self.space.get()).assume_init_ref().1 });
        }
        self.build()
    }

    #[cold]
    fn build(&self) -> Option<&RuntimeInternalSpace> {
        if self
            .state
            .compare_exchange(UNINIT, BUILDING, AcqRel, Acquire)
            .is_err()
        {
            return None;
        }
        let config = PoolManagerConfig::default()
            .with_reserve(self.reserve_bytes)
            .with_budget(SpaceType::RuntimeInternal, SpaceBudget::UNLIMITED);
        let Ok(pools) = PoolManager::new(config) else {
            self.state.store(FAILED, Release);
            return None;
        };
        let pools = Arc::new(pools);
        let space = RuntimeInternalSpace::new(pools.clone(), 64 << 10);
        // SAFETY: only the thread that won UNINIT -> BUILDING writes here, once.
        unsafe { (*self.space.get()).write((pools, space)) };
        self.state.store(READY, Release);
        // SAFETY: just written.
        Some(unsafe { &(*self.space.get()).assume_init_ref().1 })
    }

    fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Serves a request from the bootstrap buffer (never reused).
    fn bootstrap_alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.bootstrap.get() as usize;
        let mut top = self.bootstrap_top.load(Relaxed);
        loop {
            let start = (base + top).next_multiple_of(layout.align()) - base;
            let end = start + layout.size();
            if end > BOOTSTRAP_BYTES {
                return ptr::null_mut();
            }
            match self
                .bootstrap_top
                .compare_exchange_weak(top, end, Relaxed, Relaxed)
            {
                Ok(_) => return (base + start) as *mut u8,
                Err(now) => top = now,
            }
        }
    }

    fn in_bootstrap(&self, ptr: *mut u8) -> bool {
        (ptr as usize).wrapping_sub(self.bootstrap.get() as usize) < BOOTSTRAP_BYTES
    }

    /// Runs `f` with this thread's cache, if it is usable now.
    #[inline]
    fn with_cache<R>(
        &self,
        space: &RuntimeInternalSpace,
        f: impl FnOnce(&mut LocalRuns) -> R,
    ) -> Option<R> {
        INSIDE
            .try_with(|inside| {
                if inside.replace(true) {
                    return None;
                }
                let r = CACHE
                    .try_with(|cache| {
                        let mut cache = cache.try_borrow_mut().ok()?;
                        match &mut *cache {
                            Some((owner, local)) if *owner == self.id() => Some(f(local)),
                            Some(_) => None,
                            slot @ None => {
                                let (_, local) = slot.insert((self.id(), space.small().local()));
                                Some(f(local))
                            }
                        }
                    })
                    .ok()
                    .flatten();
                inside.set(false);
                r
            })
            .ok()
            .flatten()
    }

    /// A snapshot of the runtime-internal space's statistics (after reporting
    /// the calling thread's and the shared caches' batched counts).
    pub fn snapshot(&self) -> Option<MemStatsSnapshot> {
        let space = self.space()?;
        self.flush_thread_cache();
        space.flush_stats();
        // SAFETY: `space()` returned Some, so the pair is initialized.
        Some(unsafe { (*self.space.get()).assume_init_ref().0.snapshot() })
    }

    /// Reports the calling thread's batched counts now (threads report when
    /// they exit on their own).
    pub fn flush_thread_cache(&self) {
        if let Some(space) = self.space() {
            let _ = self.with_cache(space, |local| local.flush());
        }
    }
}

// SAFETY: every block comes from the runtime-internal space (or the bootstrap
// buffer), is at least `layout.size()` bytes, aligned to `layout.align()`
// (routing sends an alignment the small and medium allocators cannot meet to
// the large one), and is freed through the allocator that served it, chosen
// by the same layout.
unsafe impl GlobalAlloc for InternalGlobalAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(space) = self.space() else {
            return self.bootstrap_alloc(layout);
        };
        let route = space.route(layout);
        let result = match route {
            Route::Small => self
                .with_cache(space, |local| local.alloc(layout.size()))
                .unwrap_or_else(|| space.alloc_routed(route, layout)),
            _ => space.alloc_routed(route, layout),
        };
        result.map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.in_bootstrap(ptr) {
            return;
        }
        let (Some(space), Some(ptr)) = (self.space(), NonNull::new(ptr)) else {
            return;
        };
        let route = space.route(layout);
        if route == Route::Small
            // SAFETY: the caller frees a live block allocated with `layout`,
            // which routing sent to the run-of-slots allocator.
            && self.with_cache(space, |local| unsafe { local.free(ptr) }).is_some()
        {
            return;
        }
        // SAFETY: as above, through the shared allocator of that route.
        unsafe { space.free_routed(route, ptr) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A small block whose size class does not change stays where it is.
        if !self.in_bootstrap(ptr)
            && let Some(space) = self.space()
        {
            // SAFETY: `new_size` with the old alignment is a valid layout (GlobalAlloc contract).
            let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            if space.route(layout) == Route::Small
                && space.route(new) == Route::Small
                && RunSlotsAllocator::size_class(layout.size())
                    == RunSlotsAllocator::size_class(new_size)
            {
                return ptr;
            }
        }
        let new = match Layout::from_size_align(new_size, layout.align()) {
            Ok(new) => new,
            Err(_) => return ptr::null_mut(),
        };
        // SAFETY: the GlobalAlloc contract: allocate, copy the common prefix, free.
        unsafe {
            let p = self.alloc(new);
            if !p.is_null() {
                ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }
}
