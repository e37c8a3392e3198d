//! rtmem's collectors and the machinery they share.
//!
//! This crate is being built in steps; today it holds the safepoint protocol
//! ([`Safepoints`]): stop-the-world with a guard, per-thread handshakes, and
//! native-code transitions, model-checked with loom.
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

pub mod safepoint;
mod sync;

pub use safepoint::{SafepointHandle, Safepoints, StoppedWorld};
