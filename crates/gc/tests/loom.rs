//! Loom models of the safepoint protocol and of the termination of parallel
//! tracing. Run with
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

/// Stops the world once while `mutator` runs on its own thread (ending in
/// native code), adding 10 to its state; returns the final state.
fn stop_while(mutator: fn(&mut SafepointHandle<u32>)) -> u32 {
    let sp = Safepoints::<u32>::new();
    let mut m = sp.register(0);
    let t = loom::thread::spawn(move || {
        mutator(&mut m);
        m.enter_native();
        m
    });
    {
        let mut world = sp.stop_the_world(None);
        world.for_each_mutator(|c| *c += 10);
    }
    finish(t.join().unwrap())
}

/// A collector stops the world while a mutator polls: its writes to the
/// mutator's state never race with the mutator's own accesses (loom's
/// UnsafeCell checks this), and the mutator sees them afterwards.
#[test]
fn stop_poll_park_resume() {
    model(|| {
        let state = stop_while(|m| {
            *m.data() += 1;
            m.poll();
            *m.data() += 1;
        });
        assert_eq!(state, 12);
    });
}

/// A mutator entering and leaving native code while the world is being
/// stopped: native counts as stopped, and it never touches its state while
/// the world is stopped.
#[test]
fn native_transitions_during_a_stop() {
    model(|| {
        let state = stop_while(|m| {
            m.enter_native();
            m.leave_native();
            *m.data() += 1;
        });
        assert_eq!(state, 11);
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

/// A fake heap address: the card table never touches the heap it covers.
const HEAP: usize = 0x1_0000;

/// The card-cleaning protocol: a mutator stores a reference into a slot and
/// dirties the slot's card while a collector scans the table, cleaning each
/// dirty card before it reads the card's slots. Whatever the interleaving,
/// the store is never lost: the scan read the new value, or the card is
/// still dirty for the next scan. With `dirty_before`, the card is already
/// dirty from an earlier store, so the scan may meet that older DIRTY.
fn cleaning_scan_model(dirty_before: bool) {
    use loom::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use rtmem_gc::card::CardTable;

    model(move || {
        // Sixteen cards of 64 bytes: two groups of eight for the scan's
        // clean-group skipping; the slot lies on card 5.
        let cards = Arc::new(CardTable::new(HEAP, 16 * 64, 64).unwrap());
        let slot_addr = HEAP + 5 * 64 + 8;
        let slot = Arc::new(AtomicUsize::new(0));
        if dirty_before {
            cards.dirty(slot_addr);
        }
        let mutator = {
            let (cards, slot) = (cards.clone(), slot.clone());
            loom::thread::spawn(move || {
                slot.store(1, Relaxed); // the reference store (a plain store in a JIT)
                cards.dirty(slot_addr); // the post-write barrier
            })
        };
        let mut seen = None;
        cards.for_each_dirty(HEAP, cards.end(), true, |start, end| {
            if (start..end).contains(&slot_addr) {
                seen = Some(slot.load(Relaxed));
            }
        });
        mutator.join().unwrap();
        assert!(
            seen == Some(1) || cards.is_dirty(slot_addr),
            "the reference store was lost: the scan read {seen:?} and the card is clean"
        );
    });
}

/// The card starts clean: this checks the orderings (with a relaxed barrier
/// store, or a relaxed cleaning swap, loom finds the lost store).
#[test]
fn card_dirtied_during_a_cleaning_scan_is_never_lost() {
    cleaning_scan_model(false);
}

/// The case that needs cleaning *before* visiting, and cleaning with a
/// read-modify-write: the scan may meet the card's older DIRTY; visiting
/// first, or a load and a plain store of CLEAN, could then let the new DIRTY
/// be wiped without the scan seeing the new value. (`tests/card.rs` checks
/// the first with real threads.)
///
/// Ignored: loom 0.7.2 does not order a store after a concurrent
/// read-modify-write that read an older value (tokio-rs/loom#254 and #389,
/// fix proposed in tokio-rs/loom#391), so it reports the swap reading the
/// older DIRTY *and* the card ending clean, which the C++20 model forbids
/// (the swap reads the value just before it in modification order, so the
/// new DIRTY comes after it). Run it once loom has the fix.
#[test]
#[ignore = "loom 0.7.2 breaks RMW atomicity against later stores (tokio-rs/loom#254)"]
fn card_dirtied_again_during_a_cleaning_scan_is_never_lost() {
    cleaning_scan_model(true);
}

/// Parallel tracing ends only when all work is done: workers that take
/// items from their own queues, steal from each other and push children,
/// then wait through the termination protocol, process every item exactly
/// once and leave every queue empty.
fn traced_by(workers: usize, root_depth: u32) -> usize {
    use loom::sync::Mutex;
    use loom::sync::atomic::AtomicUsize;
    use rtmem_gc::termination::Termination;

    let queues: Arc<Vec<Mutex<Vec<u32>>>> =
        Arc::new((0..workers).map(|_| Mutex::new(Vec::new())).collect());
    queues[0].lock().unwrap().push(root_depth);
    let termination = Arc::new(Termination::new(workers));
    let processed = Arc::new(AtomicUsize::new(0));
    let work = move |me: usize,
                     queues: Arc<Vec<Mutex<Vec<u32>>>>,
                     termination: Arc<Termination>,
                     processed: Arc<AtomicUsize>| {
        loop {
            let own = queues[me].lock().unwrap().pop();
            let item = own.or_else(|| {
                (0..queues.len())
                    .filter(|&i| i != me)
                    .find_map(|i| queues[i].lock().unwrap().pop())
            });
            match item {
                Some(depth) => {
                    processed.fetch_add(1, SeqCst);
                    if depth > 0 {
                        queues[me].lock().unwrap().extend([depth - 1, depth - 1]);
                    }
                }
                None => {
                    let visible = || queues.iter().any(|q| !q.lock().unwrap().is_empty());
                    if termination.wait_for_work(visible) {
                        return;
                    }
                }
            }
        }
    };
    let helpers: Vec<_> = (1..workers)
        .map(|me| {
            let (q, t, p) = (queues.clone(), termination.clone(), processed.clone());
            loom::thread::spawn(move || work(me, q, t, p))
        })
        .collect();
    work(0, queues.clone(), termination.clone(), processed.clone());
    for h in helpers {
        h.join().unwrap();
    }
    assert!(queues.iter().all(|q| q.lock().unwrap().is_empty()));
    processed.load(SeqCst)
}

#[test]
fn tracing_terminates_only_when_all_work_is_done() {
    model(|| assert_eq!(traced_by(2, 2), 7));
}

/// Objects each mutator of the SATB models logs: with buffers of two, the
/// first two go to the queue as a full buffer, the third stays in the
/// buffer until a handshake or the remark.
const LOGGED_PER_MUTATOR: usize = 3;

/// The SATB hand-off, as `concurrent.rs` runs it: two mutators log distinct
/// objects into their own buffers of two, full buffers going to the queue,
/// while this thread (the marking thread) takes what is queued twice. Each
/// mutator then answers a handshake by handing its partial buffer over,
/// unless `second_stops_unhanded` (it is stopped before it gets there, its
/// last entry still in its buffer). After the joins (the stopped world) the
/// remark takes the rest of the queue and each buffer's entries.
///
/// Whatever the interleaving, every logged object is taken exactly once, a
/// full buffer is never taken in part, and the remark leaves nothing behind.
fn satb_hand_off_model(second_stops_unhanded: bool) {
    use rtmem_gc::ObjectRef;
    use rtmem_gc::satb::{SatbBuffer, SatbQueue};

    let object = |k: usize| ObjectRef::from_addr(0x1000 * k).unwrap();
    let logged_by =
        move |m: usize| (1..=LOGGED_PER_MUTATOR).map(move |i| object(m * LOGGED_PER_MUTATOR + i));
    model(move || {
        let queue = Arc::new(SatbQueue::new());
        let mutators: Vec<_> = (0..2)
            .map(|m| {
                let queue = queue.clone();
                let hands_off = !(second_stops_unhanded && m == 1);
                loom::thread::spawn(move || {
                    let mut buffer = SatbBuffer::with_capacity(2);
                    for o in logged_by(m) {
                        buffer.log(o, &queue); // the pre-write barrier
                    }
                    if hands_off {
                        buffer.hand_off(&queue); // the handshake closure
                    }
                    buffer
                })
            })
            .collect();
        let mut takes = vec![queue.take_all(), queue.take_all()];

        // The remark pause: the mutators are stopped.
        let mut buffers: Vec<SatbBuffer> =
            mutators.into_iter().map(|t| t.join().unwrap()).collect();
        for (m, buffer) in buffers.iter().enumerate() {
            let expected = if second_stops_unhanded && m == 1 {
                1
            } else {
                0
            };
            assert_eq!(buffer.len(), expected, "mutator {m}'s buffer at the remark");
        }
        takes.push(queue.take_all());
        takes.extend(buffers.iter_mut().map(SatbBuffer::take));
        assert!(queue.is_empty() && buffers.iter().all(SatbBuffer::is_empty));

        for take in &takes {
            for m in 0..2 {
                let full: Vec<_> = logged_by(m).take(2).collect();
                assert!(
                    full.iter().all(|o| take.contains(o)) || !full.iter().any(|o| take.contains(o)),
                    "a full buffer was taken in part: {take:?}"
                );
            }
        }
        let mut seen = takes.concat();
        seen.sort();
        let all: Vec<_> = (0..2).flat_map(logged_by).collect();
        assert_eq!(seen, all, "every logged object is taken exactly once");
    });
}

/// Both mutators answer the handshake: the remark finds their last entries
/// in the queue, if the marking thread did not take them already.
#[test]
fn satb_buffers_handed_off_are_taken_exactly_once() {
    satb_hand_off_model(false);
}

/// One mutator is stopped with a partial buffer it never handed over: the
/// remark finds its last entry with `take`.
#[test]
fn satb_buffer_not_handed_off_is_taken_at_the_remark() {
    satb_hand_off_model(true);
}
