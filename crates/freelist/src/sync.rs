//! The one place this crate's shared-memory primitives come from: `std` in
//! ordinary builds, `loom`'s model-checked versions under `cfg(loom)`, so the
//! spin lock in [`lock`](crate::lock) is checked exactly as it is compiled.

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(all(loom, debug_assertions))]
pub(crate) use loom::sync::atomic::AtomicUsize;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
#[cfg(all(loom, debug_assertions))]
pub(crate) use loom::thread_local;
pub(crate) use rtmem_base::cell::UnsafeCell;

#[cfg(not(loom))]
pub(crate) use std::hint::spin_loop;
#[cfg(all(not(loom), debug_assertions))]
pub(crate) use std::sync::atomic::AtomicUsize;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;
#[cfg(all(not(loom), debug_assertions))]
pub(crate) use std::thread_local;
