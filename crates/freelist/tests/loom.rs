//! Model checks of the free-list allocator's spin lock (`rtmem_freelist::lock`)
//! with loom.
//!
//! Threads take the lock and do a plain read-modify-write of a counter through
//! the guard: a read through `Deref`, then a write through `DerefMut`. Under
//! `cfg(loom)` the counter lives in a loom `UnsafeCell`, so loom panics with a
//! causality violation if one holder's accesses are not ordered before the
//! next holder's (an unlock that does not release, or a lock that does not
//! acquire); a lost update would also show in the final count.
//!
//! Every racing participant runs on a spawned thread and the model's main
//! thread only sets up, joins and checks: loom 0.7 explores far fewer
//! schedules when the main thread itself races with a thread it spawned
//! (compare tokio-rs/loom#392).
//!
//! There is no model with three threads: with two waiters, loom 0.7 follows a
//! schedule in which they yield to each other forever while the holder, about
//! to unlock, never runs again (tokio-rs/loom#53), and gives up on it as
//! "exceeded maximum number of branches". No fair scheduler does that, and a
//! third thread adds no step to the protocol: every waiter only loads and
//! tries to take, and the holder's unlock is the same for any number of them.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p rtmem-freelist --release --test loom`.

#![cfg(loom)]

// A plain counter of loom's schedules, outside the model.
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use loom::sync::Arc;
use loom::thread;
use rtmem_freelist::lock::Lock;

/// Runs `f` under loom with a preemption bound of 3 (or `LOOM_MAX_PREEMPTIONS`),
/// and checks that loom explored at least `min_schedules` schedules (the
/// minimums below hold from a bound of 2 up).
fn model(min_schedules: usize, f: impl Fn() + Sync + Send + 'static) {
    // One counter per model: the test harness runs models in parallel.
    let schedules = std::sync::Arc::new(AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    builder.check({
        let schedules = schedules.clone();
        move || {
            schedules.fetch_add(1, Relaxed);
            f()
        }
    });
    let explored = schedules.load(Relaxed);
    assert!(
        explored >= min_schedules,
        "loom explored only {explored} schedules"
    );
}

/// One critical section: a plain read-modify-write of the counter, as two
/// accesses that loom checks separately.
fn increment(lock: &Lock<u64>) {
    let mut count = lock.lock();
    let before = *count;
    *count = before + 1;
}

/// Runs `bodies` on threads of their own around one shared counter, and
/// returns the final count, read under the lock after all have joined.
fn run(bodies: Vec<fn(&Lock<u64>)>) -> u64 {
    let lock = Arc::new(Lock::new(0u64));
    let handles: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let lock = lock.clone();
            thread::spawn(move || body(&lock))
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    *lock.lock()
}

#[test]
fn two_threads_exclude_each_other() {
    model(30, || assert_eq!(run(vec![increment, increment]), 2));
}

/// A thread that takes the lock twice against one that takes it once: the
/// lock changes hands up to three times, and the second take by the same
/// thread must still be ordered after the other thread's.
#[test]
fn the_lock_changes_hands_repeatedly() {
    model(60, || {
        let twice = |lock: &Lock<u64>| {
            increment(lock);
            increment(lock);
        };
        assert_eq!(run(vec![twice, increment]), 3);
    });
}
