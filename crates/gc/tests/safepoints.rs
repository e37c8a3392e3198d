//! The safepoint protocol with real threads.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use rtmem_gc::Safepoints;

#[test]
fn stopped_mutators_do_not_run_and_resume_after() {
    let sp = Safepoints::<u64>::new();
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..3 {
            let (sp, stop) = (sp.clone(), stop.clone());
            s.spawn(move || {
                let mut m = sp.register(0);
                while !stop.load(SeqCst) {
                    *m.data() += 1;
                    m.poll();
                }
                m.unregister()
            });
        }
        while sp.mutator_count() < 3 {
            std::thread::yield_now();
        }
        for _ in 0..20 {
            let mut world = sp.stop_the_world(None);
            let mut before = Vec::new();
            world.for_each_mutator(|c| before.push(*c));
            std::thread::sleep(Duration::from_millis(2));
            let mut after = Vec::new();
            world.for_each_mutator(|c| after.push(*c));
            assert_eq!(before, after, "a stopped mutator ran");
            // The collector may change mutator state while they are stopped.
            world.for_each_mutator(|c| *c += 1_000_000);
            drop(world);
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, SeqCst);
    });
    assert_eq!(sp.mutator_count(), 0);
}

#[test]
fn native_code_counts_as_stopped_and_blocks_on_return() {
    let sp = Safepoints::<u32>::new();
    let returned = Arc::new(AtomicBool::new(false));
    let in_native = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let (sp2, returned2, in_native2) = (sp.clone(), returned.clone(), in_native.clone());
        s.spawn(move || {
            let mut m = sp2.register(0);
            m.enter_native();
            in_native2.store(true, SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            m.leave_native();
            returned2.store(true, SeqCst);
            m.unregister()
        });
        while !in_native.load(SeqCst) {
            std::thread::yield_now();
        }
        // The mutator never polls, yet the world stops: it is in native code.
        let world = sp.stop_the_world(None);
        std::thread::sleep(Duration::from_millis(80));
        assert!(
            !returned.load(SeqCst),
            "left native code while the world was stopped"
        );
        drop(world);
    });
    assert!(returned.load(SeqCst));
}

#[test]
fn handshakes_reach_running_and_native_mutators() {
    let sp = Safepoints::<Vec<&'static str>>::new();
    let done = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU64::new(0));
    let results = std::thread::scope(|s| {
        let mut threads = Vec::new();
        for native in [false, true, false] {
            let (sp, done, ready) = (sp.clone(), done.clone(), ready.clone());
            threads.push(s.spawn(move || {
                let mut m = sp.register(Vec::new());
                if native {
                    m.enter_native();
                    ready.fetch_add(1, SeqCst);
                    while !done.load(SeqCst) {
                        std::thread::yield_now();
                    }
                    m.leave_native();
                } else {
                    ready.fetch_add(1, SeqCst);
                    while !done.load(SeqCst) {
                        m.poll();
                    }
                }
                m.unregister()
            }));
        }
        while ready.load(SeqCst) < 3 {
            std::thread::yield_now();
        }
        let mut me = sp.register(Vec::new());
        sp.handshake(Some(&mut me), |v| v.push("first"));
        sp.handshake(Some(&mut me), |v| v.push("second"));
        done.store(true, SeqCst);
        let mine = me.unregister();
        assert_eq!(mine, ["first", "second"]);
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    for r in results {
        assert_eq!(
            r,
            ["first", "second"],
            "every mutator saw both handshakes, in order"
        );
    }
}

#[test]
fn mutators_requesting_at_once_do_not_deadlock() {
    let sp = Safepoints::<u64>::new();
    let stops = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (sp, stops) = (sp.clone(), stops.clone());
            s.spawn(move || {
                let mut m = sp.register(0);
                for i in 0..200 {
                    if i % 3 == 0 {
                        let mut world = sp.stop_the_world(Some(&mut m));
                        let mut n = 0;
                        world.for_each_mutator(|_| n += 1);
                        assert!(n >= 1);
                        stops.fetch_add(1, SeqCst);
                    } else if i % 3 == 1 {
                        sp.handshake(Some(&mut m), |c| *c += 1);
                    } else {
                        m.in_native(std::thread::yield_now);
                    }
                    m.poll();
                }
                m.unregister()
            });
        }
    });
    assert_eq!(stops.load(SeqCst), 4 * 67);
}

#[test]
fn registering_waits_for_the_world_to_resume() {
    let sp = Safepoints::<u8>::new();
    let registered = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let world = sp.stop_the_world(None);
        let (sp2, registered2) = (sp.clone(), registered.clone());
        s.spawn(move || {
            let m = sp2.register(0);
            registered2.store(true, SeqCst);
            m.unregister()
        });
        std::thread::sleep(Duration::from_millis(30));
        assert!(!registered.load(SeqCst), "a mutator joined a stopped world");
        drop(world);
    });
    assert!(registered.load(SeqCst));
}

#[test]
fn a_dropped_handle_leaves_the_registry() {
    let sp = Safepoints::<u8>::new();
    let m = sp.register(1);
    assert_eq!(sp.mutator_count(), 1);
    drop(m);
    assert_eq!(sp.mutator_count(), 0);
    // And the world can stop with nobody registered.
    drop(sp.stop_the_world(None));
}
