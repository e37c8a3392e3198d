//! Thread-local allocation buffers (TLABs): the allocation fast path of
//! every mutator thread.
//!
//! A [`Tlab`] holds a chunk carved from a shared [`TlabSource`] (a
//! [`BumpRegion`](rtmem_bump::BumpRegion), or a collector's young regions)
//! and allocates from it with a compare and an add, touching no shared
//! memory. When the chunk runs out, a cold slow path carves the next one and
//! *retires* the old: its unused tail is described to the source (so a
//! heap walker can step over it) and the object counts are flushed into the
//! source's statistics.
//!
//! Use one per thread that allocates managed objects; retire it whenever the
//! source is about to be reset or walked (before a young collection, at a
//! safepoint), and when the thread exits.
//!
//! ```
//! use std::sync::Arc;
//! use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
//! use rtmem_bump::BumpRegion;
//! use rtmem_tlab::Tlab;
//!
//! let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
//! let mut young = BumpRegion::new(pools.clone(), SpaceType::Object, 1 << 20).unwrap();
//!
//! std::thread::scope(|s| {
//!     for _ in 0..2 {
//!         s.spawn(|| {
//!             let mut tlab = Tlab::new(16 * 1024);
//!             for i in 0..1000u64 {
//!                 let object = tlab.alloc(&young, 32).unwrap();
//!                 // SAFETY: 32 fresh bytes, ours until the region is reset.
//!                 unsafe { object.cast::<u64>().write(i) };
//!             }
//!             tlab.retire(&young);
//!         });
//!     }
//! });
//! assert_eq!(pools.stats().space(SpaceType::Object).objects_allocated, 2000);
//! young.reset(); // after evacuating the survivors
//! ```

mod source;
mod tlab;

pub use source::TlabSource;
pub use tlab::{Tlab, TlabStats};
