//! The atomics the region's carving protocol uses: `std` normally, `loom`'s
//! model-checked ones under `cfg(loom)` (see `tests/loom.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
