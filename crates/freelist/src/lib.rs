//! Non-moving allocators for blocks that are freed one by one: a free-list
//! allocator with boundary tags, segregated fits and coalescing, and a
//! large-object allocator that gives each big object a pool of its own.
//!
//! This is the allocator of a runtime's *non-moving* memory, in the design of
//! the Panda runtime's free-list allocator:
//!
//! - [`FreeListAllocator`] serves blocks from a few bytes up to nearly a pool
//!   (256 KiB by default): tenured and non-moving objects that a mark-sweep
//!   collector frees with [`sweep`](FreeListAllocator::sweep), and
//!   medium-sized runtime data freed explicitly with
//!   [`free`](FreeListAllocator::free). Every live block costs an 8-byte
//!   header; freed neighbours merge, so memory is reused at any size. Small
//!   freed blocks are first *parked* on quick lists of their exact size, for
//!   the next allocation of that size to take back without touching their
//!   neighbours, and merged only later, when memory runs short, a pool
//!   empties, or on `sweep` and `trim` (deferred coalescing, as glibc's
//!   tcache does: it saves the cache misses of coalescing on the common
//!   path, see [`FreeListAllocator`]).
//! - [`LargeObjectAllocator`](large::LargeObjectAllocator) serves anything
//!   bigger (the humongous space), one pool per object, with a small cache of
//!   freed pools.
//!
//! Use them when objects must not move and are freed individually. For
//! objects freed all at once use a bump or arena allocator; for many small
//! objects of a few sizes a run-slots allocator is faster and denser. Route
//! requests above a threshold (at most [`FreeListAllocator::max_size`]) to the
//! large-object allocator.
//!
//! Both take pools from a shared [`PoolManager`](rtmem_base::PoolManager),
//! report into its [`MemStats`](rtmem_base::MemStats), and speak the verbs of
//! every rtmem allocator: `alloc`, `free`, `usable_size`, `walk`, `sweep`,
//! `contains`.
//!
//! ```
//! use std::alloc::Layout;
//! use std::sync::Arc;
//! use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
//! use rtmem_freelist::FreeListAllocator;
//! use rtmem_freelist::large::LargeObjectAllocator;
//!
//! let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
//! let tenured = FreeListAllocator::new(pools.clone(), SpaceType::NonMoving);
//! let humongous = LargeObjectAllocator::new(pools.clone(), SpaceType::Humongous);
//!
//! let objects: Vec<_> = (1..=100)
//!     .map(|i| tenured.alloc(Layout::from_size_align(i * 8, 8).unwrap()).unwrap())
//!     .collect();
//! let big = humongous.alloc(Layout::from_size_align(1 << 20, 16).unwrap()).unwrap();
//!
//! // A collector found the even-sized objects dead: sweep them in one pass.
//! let dead = |size: usize| (size / 8) % 2 == 0;
//! let requested: Vec<usize> = (1..=100).map(|i| i * 8).collect();
//! let swept = tenured.sweep(|p, _| {
//!     let i = objects.iter().position(|&o| o == p).unwrap();
//!     !dead(requested[i])
//! });
//! assert_eq!(swept.objects, 50);
//!
//! // SAFETY: `big` came from `humongous.alloc` and is live.
//! unsafe { humongous.free(big) };
//! let mut live = 0;
//! tenured.walk(|_, _| live += 1);
//! assert_eq!(live, 50);
//! ```

mod allocator;
mod block;
mod buckets;
pub mod large;
#[cfg(loom)]
pub mod lock;
#[cfg(not(loom))]
mod lock;
mod owned;
mod quick;
mod stats;
mod sync;
#[cfg(test)]
mod test_support;

pub use allocator::FreeListAllocator;

pub use rtmem_base::Swept;
