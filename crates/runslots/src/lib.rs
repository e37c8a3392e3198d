//! Run-of-slots allocation for small objects (1 to 256 bytes), with frees
//! from any thread.
//!
//! # What it is for
//!
//! A language runtime allocates a great many small objects: its own internal
//! data (this crate can replace `malloc` for it, with per-space accounting),
//! and the collector's tenured small objects, which a mark-sweep collector
//! frees by [sweeping](RunSlotsAllocator::sweep). This is the design of the
//! Panda runtime's RunSlots allocator: memory comes in *runs* (64 KiB, carved
//! from the pools of a [`PoolManager`](rtmem_base::PoolManager)), each split
//! into equal slots of one of 24 size classes (8 to 256 bytes, spaced so a
//! request wastes under 12.5 % of its slot once it is above 56 bytes).
//!
//! Use it when objects are small, numerous, freed individually and possibly
//! on another thread than the one that allocated them, and when a collector
//! must be able to [walk](RunSlotsAllocator::walk) or sweep them. For
//! objects freed all at once, a bump or arena allocator is cheaper; objects
//! above 256 bytes belong to a free-list allocator.
//!
//! # How
//!
//! - Each thread allocates through its own [`LocalRuns`] handle, which owns a
//!   current run per size class: an allocation takes the lowest clear bit of
//!   the run's alloc bitmap, with no lock and no atomic read-modify-write, and
//!   without reading the free slot's (cold) memory.
//!   A free into a run the handle owns is just as cheap.
//! - Any thread may free any slot ([`RunSlotsAllocator::free`]): into a run
//!   owned by another thread it is one compare-and-swap onto the run's
//!   remote-free stack, which the owner takes whole with one swap; into a run
//!   no thread owns it is a locked free (one lock per size class). The
//!   protocol, and its race with an owner abandoning its run, is described in
//!   the `run` module and model-checked with loom.
//! - Each run's header (at the run-aligned start of the run, so finding a
//!   slot's run is a mask) holds two bitmaps: *allocated* and *freed
//!   remotely*. A slot is live exactly when it is allocated and not freed, so
//!   walking and sweeping never mistake a freed slot for an object.
//! - A run that becomes empty goes back to the allocator's heap at once, for
//!   any size class. A pool whose runs are all free is kept as a *spare* up to
//!   a limit (32 MiB by default, at most an eighth of the space's limit; see
//!   [`RunSlotsAllocator::set_spare_limit`]) and otherwise goes back to the
//!   pool manager; spares go back on [`RunSlotsAllocator::trim`] and when the
//!   last [`LocalRuns`] handle is dropped. Headers and bitmaps are reported
//!   as metadata, allocations and frees as bytes and objects, in the space's
//!   [`MemStats`](rtmem_base::MemStats); the fast paths batch their counts
//!   per handle and report them when they switch runs.
//!
//! # Sweeping while mutators allocate
//!
//! A concurrent collector that must not pay for the sweep in its pause calls
//! [`RunSlotsAllocator::detach_for_sweep`] in the pause (with every
//! [`LocalRuns`] flushed): every run in use is *set apart* in a [`SweepSet`],
//! owned by the set as a handle owns its runs, so no thread allocates in it
//! and frees into it wait on its remote-free stack. A background thread then
//! calls [`RunSlotsAllocator::sweep_detached`] a few runs at a time; each run
//! is swept with no lock held, reported to the collector (to clear its mark
//! bits), and given back like a flushed handle's run, under its class lock.
//! Mutators meanwhile allocate in free, new and already-swept runs, and wait
//! at most for one give-back.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
//! use rtmem_runslots::RunSlotsAllocator;
//!
//! let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
//! let slots = Arc::new(RunSlotsAllocator::new(pools.clone(), SpaceType::RuntimeInternal));
//! assert_eq!(RunSlotsAllocator::size_class(65), Some(72));
//!
//! let mut local = slots.local();
//! let a = local.alloc(24).unwrap();
//! let b = local.alloc(100).unwrap();
//! // SAFETY: `a` is a fresh slot of 24 bytes.
//! unsafe { a.as_ptr().write_bytes(0xAB, 24) };
//!
//! // Another thread may free what this one allocated.
//! let b_addr = b.as_ptr() as usize;
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let b = std::ptr::NonNull::new(b_addr as *mut u8).unwrap();
//!         // SAFETY: `b` is live and given up here.
//!         unsafe { slots.free(b) };
//!     });
//! });
//!
//! let mut live = Vec::new();
//! slots.walk(|ptr, size| live.push((ptr, size)));
//! assert_eq!(live, [(a, 24)]);
//!
//! // SAFETY: `a` is live and not used afterwards.
//! unsafe { local.free(a) };
//! drop(local); // gives its runs back and reports its counts
//! let stats = slots.stats();
//! assert_eq!((stats.live_bytes(), stats.live_objects()), (0, 0));
//! assert_eq!(pools.used(SpaceType::RuntimeInternal), 0, "every pool went back");
//! ```

mod allocator;
mod class;
mod heap;
mod list;
mod local;
#[cfg(loom)]
pub mod run;
#[cfg(not(loom))]
mod run;
mod sweep_set;
mod sync;

pub use allocator::{RunLayout, RunSlotsAllocator, Swept};
pub use class::{CLASS_SIZES, NUM_CLASSES};
pub use local::LocalRuns;
pub use sweep_set::SweepSet;
