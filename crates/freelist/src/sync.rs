//! The one place this crate's shared-memory primitives come from: `std` in
//! ordinary builds, `loom`'s model-checked versions under `cfg(loom)`, so the
//! spin lock in [`lock`](crate::lock) is checked exactly as it is compiled.

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
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

/// `std`'s `UnsafeCell` with `loom`'s closure-based access, so that under
/// `cfg(loom)` every access to the locked value is race-checked.
#[cfg(not(loom))]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    #[inline(always)]
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
