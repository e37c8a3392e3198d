//! The one place this crate's shared-memory primitives come from: `std` and
//! rtmem-base's allocation-free mutex in ordinary builds (the allocator may be
//! the process's global allocator, so its locks must never allocate), `loom`'s model-checked versions under
//! `cfg(loom)`, so the remote-free protocol in [`run`](crate::run) is checked
//! exactly as it is compiled.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use rtmem_base::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::MutexGuard;

/// `loom`'s mutex with rtmem-base's signature (`lock` cannot fail).
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .expect("a loom model never poisons a lock it does not panic under")
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0
            .get_mut()
            .expect("a loom model never poisons a lock it does not panic under")
    }
}

pub(crate) use rtmem_base::cell::UnsafeCell;
