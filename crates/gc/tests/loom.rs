//! Loom models of the safepoint protocol. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p rtmem-gc --release --test loom`.
//!
//! In each model the mutator thread ends in native code, still registered,
//! so that every request must reach it, and the outcome is exact.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use rtmem_gc::{SafepointHandle, Safepoints};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(
        std::env::var("LOOM_MAX_PREEMPTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );
    builder.check(f);
}

fn finish(mut m: SafepointHandle<u32>) -> u32 {
    m.leave_native();
    m.unregister()
}

/// A collector stops the world while a mutator polls: its writes to the
/// mutator's state never race with the mutator's own accesses (loom's
/// UnsafeCell checks this), and the mutator sees them afterwards.
#[test]
fn stop_poll_park_resume() {
    model(|| {
        let sp = Safepoints::<u32>::new();
        let mut m = sp.register(0);
        let t = loom::thread::spawn(move || {
            *m.data() += 1;
            m.poll();
            *m.data() += 1;
            m.enter_native();
            m
        });
        {
            let mut world = sp.stop_the_world(None);
            world.for_each_mutator(|c| *c += 10);
        }
        let m = t.join().unwrap();
        assert_eq!(finish(m), 12);
    });
}

/// A mutator entering and leaving native code while the world is being
/// stopped: native counts as stopped, and it never touches its state while
/// the world is stopped.
#[test]
fn native_transitions_during_a_stop() {
    model(|| {
        let sp = Safepoints::<u32>::new();
        let mut m = sp.register(0);
        let t = loom::thread::spawn(move || {
            m.enter_native();
            m.leave_native();
            *m.data() += 1;
            m.enter_native();
            m
        });
        {
            let mut world = sp.stop_the_world(None);
            world.for_each_mutator(|c| *c += 10);
        }
        let m = t.join().unwrap();
        assert_eq!(finish(m), 11);
    });
}

/// A handshake reaches a mutator exactly once, whether it runs it at a poll
/// or the requester runs it on its behalf while it is in native code.
#[test]
fn handshake_with_running_or_native_mutator() {
    model(|| {
        let sp = Safepoints::<u32>::new();
        let mut m = sp.register(0);
        let t = loom::thread::spawn(move || {
            m.poll();
            m.enter_native();
            m.leave_native();
            *m.data() += 10;
            m.poll();
            m.enter_native();
            m
        });
        sp.handshake(None, |c| *c += 1);
        let m = t.join().unwrap();
        assert_eq!(
            finish(m),
            11,
            "the handshake ran exactly once, without racing the mutator"
        );
    });
}

/// Two mutators request a stop at once: both complete, neither deadlocks,
/// and the two stopped worlds never overlap.
#[test]
fn two_requesters() {
    model(|| {
        let sp = Safepoints::<u32>::new();
        let mut a = sp.register(0);
        let mut b = sp.register(0);
        let inside = Arc::new(AtomicBool::new(false));
        let inside2 = inside.clone();
        let sp2 = sp.clone();
        let t = loom::thread::spawn(move || {
            {
                let mut w = sp2.stop_the_world(Some(&mut b));
                assert!(!inside2.swap(true, SeqCst), "two stopped worlds at once");
                w.for_each_mutator(|c| *c += 1);
                inside2.store(false, SeqCst);
            }
            b.unregister()
        });
        {
            let mut w = sp.stop_the_world(Some(&mut a));
            assert!(!inside.swap(true, SeqCst), "two stopped worlds at once");
            w.for_each_mutator(|c| *c += 1);
            inside.store(false, SeqCst);
        }
        let mine = a.unregister();
        let theirs = t.join().unwrap();
        // Each world saw both mutators, unless the other one had left already.
        assert!((1..=2).contains(&mine) && (1..=2).contains(&theirs) && mine + theirs >= 3);
    });
}
