//! rtmem's collectors and the machinery they share.
//!
//! This crate is being built in steps (the plan is `docs/gc-design.md`).
//! Today it holds the pieces every collector shares:
//!
//! - [`safepoint`]: stop-the-world with a guard, per-thread handshakes and
//!   native-code transitions, model-checked with loom;
//! - [`object`]: object references and the one-word object header
//!   (type word, age, finalization flag, forwarding);
//! - [`bitmap`]: the side mark bitmap (one bit per 8-byte granule);
//! - [`card`]: the card table kept by the post-write barrier, and the raw
//!   [`BarrierFacts`](card::BarrierFacts) a JIT inlines it from;
//! - [`stats`]: per-collection records, the pause histogram, JSON export;
//! - [`trigger`]: when to collect (occupancy, adaptive growth, explicit,
//!   idle, stress).
//!
//! ```
//! use rtmem_gc::Safepoints;
//!
//! let safepoints = Safepoints::<Vec<u32>>::new();
//! let mut me = safepoints.register(Vec::new());
//! std::thread::scope(|s| {
//!     let sp = safepoints.clone();
//!     s.spawn(move || {
//!         let mut other = sp.register(vec![1]);
//!         for _ in 0..1000 {
//!             other.poll(); // a safepoint in the other thread's loop
//!         }
//!         other.unregister()
//!     });
//!     // Run a closure on every mutator's state at its next safepoint.
//!     safepoints.handshake(Some(&mut me), |state| state.push(7));
//! });
//! assert_eq!(me.data(), &[7]);
//! ```

pub mod barrier;
pub mod bitmap;
pub mod card;
mod config;
mod covered;
mod heap;
mod mark;
mod mark_sweep;
mod mutator;
pub mod object;
pub mod safepoint;
pub mod stats;
mod sync;
pub mod trigger;
pub mod verify;
pub mod vm;

pub use config::{GcConfig, HeapConfig};
pub use heap::{Heap, HeapFootprint};
pub use mutator::Mutator;
pub use object::{Header, ObjectRef};
pub use safepoint::{SafepointHandle, Safepoints, StoppedWorld};
pub use stats::{GcCause, GcKind};
pub use vm::{Collection, ObjectModel, ReferenceKind, Scanning, SlotVisitor, VM};
