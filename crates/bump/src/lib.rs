//! Bump-pointer allocation over rtmem pools: memory that is handed out by
//! moving a pointer forward and freed all at once.
//!
//! Two allocators, for two situations:
//!
//! - [`BumpAllocator`]: single-threaded and growing, like `bumpalo::Bump` but
//!   over the [`PoolManager`](rtmem_base::PoolManager)'s pools of one space.
//!   Use it for scratch data that dies together: a compiler's per-method
//!   data, a parser's nodes, the runtime's per-phase temporaries. The fast
//!   path is a compare and an add.
//! - [`BumpRegion`]: a fixed-size region shared by threads, carved without
//!   locks (one compare-exchange per chunk). Use it as a young-generation
//!   region or nursery: threads carve thread-local allocation buffers out of
//!   it (see `rtmem-tlab`), slow paths allocate single objects from it, and
//!   the collector [`reset`](BumpRegion::reset)s it after evacuating. A
//!   [`Filler`] keeps it walkable object by object.
//!
//! Both report what they hand out into the pool manager's
//! [`MemStats`](rtmem_base::MemStats) for their space, and every failure is an
//! [`AllocError`](rtmem_base::AllocError) that names the space (a full
//! region, a space limit), or the size and alignment (a layout that can
//! never be served).
//!
//! ```
//! use std::alloc::Layout;
//! use std::sync::Arc;
//! use rtmem_base::{AllocError, PoolManager, PoolManagerConfig, SpaceType};
//! use rtmem_bump::{BumpAllocator, BumpRegion};
//!
//! let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
//!
//! // Scratch memory for a compilation, freed in one go.
//! let mut scratch = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
//! for i in 0..1000u64 {
//!     let node = scratch.alloc(Layout::new::<[u64; 3]>()).unwrap();
//!     // SAFETY: `node` is 24 fresh bytes, valid until `reset`.
//!     unsafe { node.cast::<[u64; 3]>().write([i, i, i]) };
//! }
//! scratch.reset();
//!
//! // A shared region that threads carve buffers from until it is full.
//! let region = BumpRegion::new(pools.clone(), SpaceType::Object, 64 * 1024).unwrap();
//! std::thread::scope(|s| {
//!     for _ in 0..2 {
//!         s.spawn(|| while region.carve(4096, 16 * 1024).is_ok() {});
//!     }
//! });
//! assert_eq!(region.used(), region.capacity());
//! let err = region.carve(8, 8).unwrap_err();
//! assert!(matches!(err, AllocError::LimitExceeded { space: SpaceType::Object, .. }));
//! ```

mod allocator;
mod region;
mod sync;

pub use allocator::BumpAllocator;
pub use region::{BumpRegion, Filler};

/// The unit of bump allocation: every size is rounded up to a multiple of
/// this many bytes, and every chunk and object starts 8-aligned.
pub const GRANULE: usize = 8;

pub use rtmem_base::{PREFETCH_DISTANCE, prefetch_ahead};

/// Rounds `size` up to a multiple of [`GRANULE`]; folds away for constants.
///
/// `size` must be at most `usize::MAX - 7` (every `Layout` size is); larger
/// sizes overflow (a panic in debug builds).
#[inline(always)]
pub const fn granule_round(size: usize) -> usize {
    (size + (GRANULE - 1)) & !(GRANULE - 1)
}
