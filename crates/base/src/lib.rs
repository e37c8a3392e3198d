//! The ground floor of rtmem: virtual memory, pools, spaces, statistics and errors.
//!
//! Every other rtmem crate stands on this one. Memory flows from the kernel to
//! an object like this:
//!
//! 1. [`Reservation`] reserves address space (`mmap`, no access, no memory).
//! 2. [`PoolManager`] cuts its reservation into aligned *pools*, commits them
//!    on demand, tags each with the [`SpaceType`] that owns it, and enforces
//!    a byte limit per space. It answers "which space owns this address" in O(1).
//! 3. Allocators (`rtmem-bump`, `rtmem-tlab`, `rtmem-arena`, ...) carve pools
//!    into objects and report what they hand out into [`MemStats`].
//!
//! Every failure is an [`AllocError`] value that names the space, the request
//! and the limit.
//!
//! ```
//! use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
//!
//! let pools = PoolManager::new(PoolManagerConfig::default()).unwrap();
//! let pool = pools.alloc_pool(SpaceType::RuntimeInternal, 64 * 1024).unwrap();
//! pools.stats().record_alloc(SpaceType::RuntimeInternal, 128, 1);
//! let snapshot = pools.snapshot();
//! assert_eq!(snapshot.space(SpaceType::RuntimeInternal).live_bytes(), 128);
//! println!("{snapshot}");
//! pools.free_pool(pool);
//! ```

mod address;
pub mod cell;
mod error;
mod lock;
mod pool;
mod space;
mod stats;
mod vmem;

pub use address::{
    PREFETCH_DISTANCE, align_down, align_up, checked_align_up, is_aligned, page_size,
    prefetch_ahead, prefetch_read, prefetch_write,
};
pub use error::AllocError;
pub use lock::{Mutex, MutexGuard};
pub use pool::{Pool, PoolManager, PoolManagerConfig, SpaceBudget};
pub use space::{SpaceType, UnknownSpace};
pub use stats::{MemStats, MemStatsSnapshot, SpaceStats, Swept, format_bytes};
pub use vmem::{Protection, Reservation};
