//! The free-list allocator's lock: one atomic swap to take it, one plain
//! store to give it back.
//!
//! Why not `parking_lot::Mutex`: its unlock is a compare-exchange, so a
//! lock/unlock pair costs two atomic read-modify-writes (about 22 ns on the
//! reference machine, more than a whole glibc `malloc`+`free` step of the
//! churn benchmark), while this lock costs one (about 10 ns). The price is
//! that a waiter cannot be woken: it spins with exponential backoff and then
//! yields its time slice until the lock is free. The allocator's critical
//! sections are a few dozen instructions, except when a pool is taken from or
//! given back to the `PoolManager`, so waiting is short.
//!
//! In a single-threaded process (glibc's `__libc_single_threaded`, the flag
//! libstdc++ uses to skip atomic reference counts) no other thread can race
//! for the lock, so it is taken with a plain load and store: no atomic
//! read-modify-write at all, like glibc's own `malloc` in that case. The flag
//! can only turn false by the current thread creating a thread, which
//! synchronizes with the new thread, so the plain store is seen by it.
//!
//! In debug builds the lock remembers its holder and panics when the holder
//! tries to take it again (a `walk` or `sweep` callback that calls back into
//! the allocator), instead of spinning forever.
//!
//! Under `cfg(loom)` the lock is built from loom's atomics, cell and yield
//! (this crate's `sync` module) and is public so that `tests/loom.rs` can
//! model-check it: loom checks every dereference of a guard against the
//! previous holder's. The single-threaded fast path is then off, since loom's
//! threads are not glibc's.

use std::ops::{Deref, DerefMut};

#[cfg(debug_assertions)]
use crate::sync::AtomicUsize;
use crate::sync::{AtomicBool, Ordering, Ordering::*, UnsafeCell, spin_loop, yield_now};

/// Spin rounds (each twice as long as the last) before yielding.
const SPIN_ROUNDS: u32 = 6;

/// A mutual-exclusion lock around a `T`.
pub struct Lock<T> {
    locked: AtomicBool,
    /// The holding thread's marker (debug builds only), 0 when free.
    #[cfg(debug_assertions)]
    holder: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one thread at a time, so sharing the
// lock between threads is sound when `T` may be sent between them.
unsafe impl<T: Send> Sync for Lock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: Send> Send for Lock<T> {}

/// Proof that the lock is held; gives access to the value and releases the
/// lock when dropped (also on unwinding).
pub struct LockGuard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Lock<T> {
    /// A free lock around `value`.
    pub fn new(value: T) -> Lock<T> {
        Lock {
            locked: AtomicBool::new(false),
            #[cfg(debug_assertions)]
            holder: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, waiting for it if needed.
    #[inline(always)]
    pub fn lock(&self) -> LockGuard<'_, T> {
        if process_is_single_threaded() {
            // No other thread exists: only a re-entry can find the lock held.
            if self.locked.load(Relaxed) {
                self.lock_contended();
            }
            self.locked.store(true, Relaxed);
        } else if !self.try_take() {
            self.lock_contended();
        }
        #[cfg(debug_assertions)]
        self.holder.store(thread_marker(), Relaxed);
        LockGuard { lock: self }
    }

    /// Mutable access without locking: `&mut self` proves exclusivity.
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` proves that no guard, and so no other reference
        // to the value, is alive.
        self.value.with_mut(|value| unsafe { &mut *value })
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        #[cfg(debug_assertions)]
        assert_ne!(
            self.holder.load(Relaxed),
            thread_marker(),
            "the free-list allocator's lock was taken again by the thread holding it \
             (did a walk or sweep callback call back into the allocator?)"
        );
        let mut round = 0;
        loop {
            // Wait with plain loads (no cache-line ping-pong), then try again.
            while self.locked.load(Relaxed) {
                if round < SPIN_ROUNDS {
                    for _ in 0..1 << round {
                        spin_loop();
                    }
                    round += 1;
                } else {
                    yield_now();
                }
            }
            if self.try_take() {
                return;
            }
        }
    }

    /// Takes the lock if it is free, with one atomic swap.
    ///
    /// Under loom the swap is a compare-exchange: loom 0.7 lets another
    /// thread's store slip between the read and the write of a swap
    /// (tokio-rs/loom#254), so a failed swap of a waiter could overwrite the
    /// holder's unlock and the model would spin forever on a lock nobody
    /// holds. The two are the same operation here: a swap that finds the lock
    /// free is a compare-exchange that succeeds, and one that finds it taken
    /// writes `true` over `true`, changes nothing and gives its caller
    /// nothing, like a compare-exchange that fails.
    #[inline(always)]
    fn try_take(&self) -> bool {
        // One ordering for both, so that loom checks the one the swap uses.
        const TAKE: Ordering = Acquire;
        #[cfg(not(loom))]
        let was_locked = self.locked.swap(true, TAKE);
        #[cfg(loom)]
        let was_locked = self
            .locked
            .compare_exchange(false, true, TAKE, Relaxed)
            .is_err();
        !was_locked
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held by this thread.
        self.lock.value.with(|value| unsafe { &*value })
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held by this thread, and
        // `&mut self` that no other reference from this guard is alive.
        self.lock.value.with_mut(|value| unsafe { &mut *value })
    }
}

impl<T> Drop for LockGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        self.lock.holder.store(0, Relaxed);
        self.lock.locked.store(false, Release);
    }
}

/// Whether no thread but the calling one exists (glibc 2.32 and later keeps
/// this flag; elsewhere, and under loom, the answer is always "no").
#[inline(always)]
fn process_is_single_threaded() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(loom)))]
    {
        // glibc's own byte, not one of ours: always `std`'s atomic.
        use std::sync::atomic::AtomicU8;

        unsafe extern "C" {
            /// Non-zero while the process has a single thread; written by
            /// glibc only while that is so (so never concurrently with a read).
            static __libc_single_threaded: AtomicU8;
        }
        // SAFETY: a glibc global of one byte, valid for the whole process.
        unsafe { __libc_single_threaded.load(Relaxed) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", not(loom))))]
    {
        false
    }
}

/// A number unique to the calling thread while it lives (never 0).
#[cfg(debug_assertions)]
fn thread_marker() -> usize {
    #[cfg(not(loom))]
    crate::sync::thread_local!(static MARKER: u8 = const { 0 });
    // loom's `thread_local!` takes no `const` initializer.
    #[cfg(loom)]
    crate::sync::thread_local!(static MARKER: u8 = 0);
    MARKER.with(|m| m as *const u8 as usize)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn excludes_other_threads() {
        let lock = Lock::new((0u64, 0u64));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        let mut g = lock.lock();
                        // A torn update would show as the two halves differing.
                        g.0 += 1;
                        std::hint::black_box(&mut *g);
                        g.1 += 1;
                    }
                });
            }
        });
        let g = lock.lock();
        assert_eq!(*g, (80_000, 80_000));
    }

    #[test]
    fn unwinding_releases_the_lock() {
        let lock = Lock::new(1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = lock.lock();
            panic!("inside");
        }));
        assert!(r.is_err());
        assert_eq!(*lock.lock(), 1);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "taken again by the thread holding it")]
    fn reentry_panics_in_debug_builds() {
        let lock = Lock::new(0);
        let _g = lock.lock();
        let _again = lock.lock();
    }
}
