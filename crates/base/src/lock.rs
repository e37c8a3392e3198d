//! A mutex for allocator internals that never allocates.
//!
//! Allocators must be usable as the process's `#[global_allocator]`, so no
//! lock on an allocation path may itself allocate. `parking_lot` does: the
//! first time a thread has to wait, it allocates its parking table through
//! the global allocator — re-entering the allocator that holds the lock.
//! std's mutex is a futex on Linux and never allocates; this wrapper gives it
//! `parking_lot`'s shape (no poisoning: allocator state stays consistent at
//! every point a panic can happen, so a panic elsewhere poisons nothing).

use std::ops::{Deref, DerefMut};

/// A mutual-exclusion lock whose `lock` never allocates and cannot fail.
#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

/// Access to a locked [`Mutex`]'s value; unlocks when dropped.
#[derive(Debug)]
pub struct MutexGuard<'a, T>(std::sync::MutexGuard<'a, T>);

impl<T> Mutex<T> {
    /// A lock around `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }

    /// Takes the lock, waiting for it if needed.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard(
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(MutexGuard(guard)),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                Some(MutexGuard(poisoned.into_inner()))
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_and_survives_a_panic_while_held() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("holder panics");
        })
        .join();
        *m.lock() += 1;
        assert_eq!(*m.lock(), 2);
        let g = m.try_lock().unwrap();
        assert!(m.try_lock().is_none());
        drop(g);
    }
}
