//! rtmem's collected object heap: the VM interface a runtime implements,
//! mutators, safepoints, barriers, and the collectors.
//!
//! - [`vm`]: the binding a runtime writes once — [`ObjectModel`] (sizes,
//!   reference objects), [`Scanning`] (reference slots of objects, mutator
//!   roots and globals, as `&mut` slots), [`Collection`] (weak tables);
//! - [`Heap`]: the object heap over the runtime's [`Spaces`](rtmem_spaces::Spaces),
//!   collected by the collector its [`GcConfig`] names (`epsilon`, the
//!   stop-the-world mark-sweep `stw`, the generational `gen`, and
//!   `gen-concurrent`, whose old generation is marked and swept by a
//!   background thread); finalization and phantom queues; the [`verify`]
//!   heap verifier;
//! - [`Mutator`]: a runtime thread's handle — allocation fast paths,
//!   barriers, safepoint polls, its roots;
//! - [`safepoint`]: stop-the-world with a guard, per-thread handshakes and
//!   native-code transitions, model-checked with loom;
//! - [`object`]: object references and the one-word object header;
//! - [`bitmap`], [`card`], [`barrier`], [`satb`]: side metadata, the raw
//!   facts a JIT inlines barriers from, and the SATB buffers of concurrent
//!   marking;
//! - [`stats`], [`trigger`]: per-collection records and pause histograms;
//!   when to collect;
//! - [`termination`]: when parallel tracing is over (loom-checked).
//!
//! The design is `docs/gc-design.md`; `rtmem-testvm` is a complete small
//! binding.
//!
//! ```
//! use std::sync::Arc;
//! use rtmem_gc::{GcCause, GcConfig, Heap};
//! use rtmem_spaces::{Spaces, SpacesConfig};
//! use rtmem_testvm::{TestMutator, TestVm};
//!
//! let spaces = Arc::new(Spaces::new(SpacesConfig::default()).unwrap());
//! let heap = Heap::new(spaces, GcConfig::default(), TestVm::default()).unwrap();
//! let mut m = heap.register(Default::default());
//! let kept = m.pair(None, None).unwrap();
//! m.push_root(Some(kept)); // roots are what the runtime says they are
//! for _ in 0..1000 {
//!     m.pair(None, None).unwrap(); // garbage
//! }
//! assert!(m.collect(GcCause::Explicit));
//! let record = heap.stats().last().unwrap();
//! assert_eq!(record.objects_freed, 1000);
//! assert_eq!(record.heap_after, 24);
//! m.verify().unwrap();
//! ```

pub mod barrier;
pub mod bitmap;
pub mod card;
mod concurrent;
mod config;
mod covered;
mod evacuate;
mod generational;
mod heap;
mod mark;
mod mark_sweep;
mod mutator;
pub mod object;
mod parallel;
pub mod safepoint;
pub mod satb;
pub mod stats;
mod sync;
pub mod termination;
pub mod trigger;
pub mod verify;
pub mod vm;
mod young;

pub use concurrent::MarkingHold;
pub use config::{GcConfig, HeapConfig};
pub use heap::{Heap, HeapFootprint};
pub use mutator::Mutator;
pub use object::{Header, ObjectRef};
pub use safepoint::{SafepointHandle, Safepoints, StoppedWorld};
pub use stats::{GcCause, GcKind};
pub use vm::{Collection, ObjectModel, ReferenceKind, Scanning, SlotVisitor, VM};
