//! Model checks of the remote-free protocol (`rtmem_runslots::run`) with loom,
//! over one run in a plain heap buffer: no pool manager, no mmap.
//!
//! Each model ends the same way: once every thread has joined, the run is
//! abandoned and adopted again (which takes back anything still on its remote
//! stack) and every free slot is popped. The slots popped plus the slots still
//! live must be every slot of the run exactly once: a lost free shows up as a
//! missing slot, a slot handed out twice as a duplicate. Loom also checks that
//! the run's owner-only fields are never touched by two threads without a
//! happens-before edge (they live in loom `UnsafeCell`s under `cfg(loom)`).
//!
//! Every racing participant runs on a spawned thread and the model's main
//! thread only sets up and joins: loom 0.7 explores far fewer schedules when
//! the main thread itself races with a thread it spawned (one schedule instead
//! of sixteen for the first model here; compare tokio-rs/loom#392).
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p rtmem-runslots --release --test loom`.

#![cfg(loom)]

use std::alloc::Layout;
use std::collections::HashSet;
use std::ptr::NonNull;
// A plain counter of loom's schedules, outside the model.
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use loom::sync::{Arc, Mutex};
use loom::thread;
use rtmem_runslots::run::{Fill, Geometry, NO_OWNER, Remote, Run, SET_APART};

const RUN_SIZE: usize = 4096;
const SLOT_SIZE: usize = 256;
const OWNER: u64 = 1;
const OTHER_OWNER: u64 = 2;

/// A run-aligned buffer for one run.
struct Buffer(NonNull<u8>);

impl Buffer {
    fn new() -> Buffer {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(Self::layout()) };
        Buffer(NonNull::new(ptr).expect("test allocation"))
    }

    fn layout() -> Layout {
        Layout::from_size_align(RUN_SIZE, RUN_SIZE).unwrap()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), Self::layout()) };
    }
}

/// A slot address that may cross threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Slot(NonNull<u8>);
// SAFETY: a slot is handed from one thread to another, which then owns it.
unsafe impl Send for Slot {}

/// Runs `f` under loom with a preemption bound of 3 (or `LOOM_MAX_PREEMPTIONS`),
/// and checks that loom explored at least `min_schedules` schedules.
fn model(min_schedules: usize, f: impl Fn() + Sync + Send + 'static) {
    // One counter per model: the test harness runs models on several threads
    // at once, so a shared static would count other models' schedules too.
    let schedules = std::sync::Arc::new(AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    let counter = schedules.clone();
    builder.check(move || {
        counter.fetch_add(1, Relaxed);
        f()
    });
    let explored = schedules.load(Relaxed);
    assert!(
        explored >= min_schedules,
        "loom explored only {explored} schedules"
    );
}

/// A run owned by `OWNER` in `buffer`.
fn owned_run(buffer: &Buffer) -> Run {
    run_owned_by(buffer, OWNER)
}

/// A run owned by `owner` in `buffer`.
fn run_owned_by(buffer: &Buffer, owner: u64) -> Run {
    let geo = Geometry::new(0, SLOT_SIZE, RUN_SIZE);
    assert!(
        geo.slots >= 4,
        "the model needs a few slots, got {}",
        geo.slots
    );
    // SAFETY: the buffer is run-aligned, ours, and outlives the model's threads.
    unsafe { Run::init(buffer.0, geo, owner) }
}

fn pop(run: Run) -> Slot {
    // SAFETY: called by the run's owner.
    Slot(unsafe { run.pop() }.expect("the run has free slots"))
}

/// What `RunSlotsAllocator::free` does for a slot of a run it does not own.
fn remote_free(run: Run, slot: Slot, class_lock: &Mutex<()>) {
    // SAFETY: the slot is live and given up by this thread.
    if unsafe { run.free_remote(slot.0) } == Remote::Unowned {
        let _guard = class_lock.lock().unwrap();
        // SAFETY: as above, with the class lock held.
        unsafe { run.free_unowned(slot.0) };
    }
}

/// Takes the run back (abandon + adopt, under the lock), pops every free slot
/// and checks that they and `live` are every slot of the run exactly once.
fn check_every_slot_once(run: Run, class_lock: &Mutex<()>, live: &[Slot]) {
    {
        let _guard = class_lock.lock().unwrap();
        // SAFETY: the run is ours (owned by OWNER, or unowned and we hold the
        // lock); every other thread has joined.
        unsafe {
            if run.owner() != NO_OWNER {
                run.abandon();
            }
            run.adopt(OWNER);
        }
    }
    let mut seen: HashSet<Slot> = live.iter().copied().collect();
    assert_eq!(
        seen.len(),
        live.len(),
        "a live slot was handed out twice: {live:?}"
    );
    // SAFETY: we own the run.
    while let Some(slot) = unsafe { run.pop() } {
        assert!(seen.insert(Slot(slot)), "slot {slot:?} handed out twice");
    }
    assert_eq!(seen.len(), run.geometry().slots as usize, "a slot was lost");
}

/// The owner frees locally, collects remote frees and allocates while another
/// thread frees into its run.
#[test]
fn remote_free_while_owner_allocates_and_collects() {
    model(10, || {
        let buffer = Buffer::new();
        let run = owned_run(&buffer);
        let class_lock = Arc::new(Mutex::new(()));
        let (a, b) = (pop(run), pop(run));
        let remote = {
            let class_lock = class_lock.clone();
            thread::spawn(move || remote_free(run, a, &class_lock))
        };
        let owner = thread::spawn(move || {
            // SAFETY: this thread owns the run; `b` is a live slot of it.
            unsafe { run.push_local(b.0) };
            // SAFETY: this thread owns the run.
            let collected = unsafe { run.collect_remote() };
            assert!(collected <= 1);
            let (c, d) = (pop(run), pop(run));
            assert_ne!(c, d);
            assert!(
                c != a || collected == 1,
                "the remotely freed slot was reused before it was collected"
            );
            [c, d]
        });
        remote.join().unwrap();
        let live = owner.join().unwrap();
        check_every_slot_once(run, &class_lock, &live);
    });
}

/// The owner abandons its run while another thread's free is in flight: the
/// free lands either on the stack the abandon takes, or in the run under the
/// class lock after it.
#[test]
fn owner_abandons_while_a_remote_free_is_in_flight() {
    model(5, || {
        let buffer = Buffer::new();
        let run = owned_run(&buffer);
        let class_lock = Arc::new(Mutex::new(()));
        let (a, b) = (pop(run), pop(run));
        let remote = {
            let class_lock = class_lock.clone();
            thread::spawn(move || remote_free(run, a, &class_lock))
        };
        let owner = {
            let class_lock = class_lock.clone();
            thread::spawn(move || {
                let _guard = class_lock.lock().unwrap();
                // SAFETY: this thread owns the run and holds its class lock.
                let fill = unsafe { run.abandon() };
                assert_eq!(fill, Fill::Partial);
            })
        };
        remote.join().unwrap();
        owner.join().unwrap();
        assert_eq!(run.owner(), NO_OWNER);
        assert!(!run.has_remote(), "an unowned run's stack is empty");
        check_every_slot_once(run, &class_lock, &[b]);
    });
}

/// Another thread adopts an unowned run while a free into it is in flight:
/// the free is done directly under the lock before the adoption, or goes to
/// the new owner's stack after it.
#[test]
fn adoption_races_with_a_remote_free() {
    model(10, || {
        let buffer = Buffer::new();
        let run = owned_run(&buffer);
        let class_lock = Arc::new(Mutex::new(()));
        let (a, b) = (pop(run), pop(run));
        {
            let _guard = class_lock.lock().unwrap();
            // SAFETY: we own the run and hold its class lock.
            unsafe { run.abandon() };
        }
        let remote = {
            let class_lock = class_lock.clone();
            thread::spawn(move || remote_free(run, a, &class_lock))
        };
        let adopter = {
            let class_lock = class_lock.clone();
            thread::spawn(move || {
                {
                    let _guard = class_lock.lock().unwrap();
                    // SAFETY: the run is unowned and we hold its class lock.
                    unsafe { run.adopt(OTHER_OWNER) };
                }
                // SAFETY: this thread owns the run now.
                unsafe { run.collect_remote() };
                let c = pop(run);
                let _guard = class_lock.lock().unwrap();
                // SAFETY: we own the run and hold its class lock.
                unsafe { run.abandon() };
                c
            })
        };
        remote.join().unwrap();
        let c = adopter.join().unwrap();
        check_every_slot_once(run, &class_lock, &[b, c]);
    });
}

/// Two threads free into one run while its owner collects: pushes racing with
/// pushes and with the swap that takes the stack.
#[test]
fn two_remote_frees_race_with_a_collect() {
    model(20, || {
        let buffer = Buffer::new();
        let run = owned_run(&buffer);
        let class_lock = Arc::new(Mutex::new(()));
        let (a, b, c) = (pop(run), pop(run), pop(run));
        let freers: Vec<_> = [a, b]
            .into_iter()
            .map(|slot| {
                let class_lock = class_lock.clone();
                thread::spawn(move || remote_free(run, slot, &class_lock))
            })
            .collect();
        // SAFETY: the collecting thread owns the run.
        let collector = thread::spawn(move || unsafe { run.collect_remote() });
        for freer in freers {
            freer.join().unwrap();
        }
        let first = collector.join().unwrap();
        // SAFETY: every other thread has joined; the run is owned by OWNER.
        let second = unsafe { run.collect_remote() };
        assert_eq!(
            first + second,
            2,
            "every remote free is collected exactly once"
        );
        check_every_slot_once(run, &class_lock, &[c]);
    });
}

/// A run set apart for a sweep alongside allocation (`SweepSet`) is swept in
/// place by the thread holding the set while a mutator frees one of its live
/// objects, then given back (abandoned under the class lock). The free lands
/// on the stack, which the sweep leaves alone and the give-back takes, or in
/// the run under the lock after the give-back; the sweep frees exactly the
/// dead slot either way, and the holder's fields see no data race.
#[test]
fn a_sweep_of_a_set_apart_run_races_with_a_remote_free() {
    model(50, || {
        let buffer = Buffer::new();
        let run = run_owned_by(&buffer, SET_APART);
        let class_lock = Arc::new(Mutex::new(()));
        // `a` is live and freed by a mutator, `b` dead, `c` live and kept.
        let (a, b, c) = (pop(run), pop(run), pop(run));
        let mutator = {
            let class_lock = class_lock.clone();
            thread::spawn(move || remote_free(run, a, &class_lock))
        };
        let sweeper = {
            let class_lock = class_lock.clone();
            thread::spawn(move || {
                // SAFETY: this thread holds the set-apart run, which others
                // free into only by its stack; no one else frees `b`.
                let swept = unsafe { run.sweep_held(|slot| Slot(slot) != b) };
                assert_eq!(swept, 1, "exactly the dead slot is swept");
                let _guard = class_lock.lock().unwrap();
                // SAFETY: the set owns the run and we hold its class lock.
                unsafe { run.abandon() }
            })
        };
        mutator.join().unwrap();
        assert_eq!(sweeper.join().unwrap(), Fill::Partial);
        assert_eq!(run.owner(), NO_OWNER);
        check_every_slot_once(run, &class_lock, &[c]);
    });
}
