//! rtmem's facade: the [`MemoryManager`] a language runtime creates once,
//! built from a [`Profile`] that picks the whole configuration — spaces and
//! their limits, the collector, its trigger and workers — so that an
//! application switches allocators and collectors without code changes
//! (`RTMEM_PROFILE=throughput`, or `cargo xtask profile select NAME`).
//!
//! ```
//! use rtmem::{GcKind, Profile};
//!
//! let p = Profile::from_name("small-footprint").unwrap();
//! assert_eq!(p.gc, GcKind::Stw);
//! let err = Profile::from_name("tiny").unwrap_err();
//! assert!(err.to_string().contains("known profiles: balanced"));
//! ```
//!
//! A runtime implements the VM interface ([`rtmem_gc::vm`]) once, then
//! builds its memory manager with [`MemoryManager::new`] or
//! [`MemoryManager::from_env`]; see `docs/embedding.md`.

mod manager;
mod profile;

pub use manager::{ManagerError, MemoryManager, Report};
pub use profile::{DEFAULT_PROFILE, PROFILE_ENV, Profile, ProfileError, format_size, parse_size};
pub use rtmem_gc::stats::{GcCause, GcKind};
pub use rtmem_gc::trigger::{TriggerConfig, TriggerKind};
pub use rtmem_gc::{GcConfig, Heap, HeapConfig, Mutator, ObjectRef, VM};
