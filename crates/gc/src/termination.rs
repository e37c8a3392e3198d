//! The termination protocol of parallel tracing: when may a worker that
//! found no work stop?
//!
//! A worker that finds no work anywhere calls [`Termination::wait_for_work`]:
//! it counts itself idle and waits until either every worker is idle (the
//! trace is over: return `true`) or some queue shows work (it leaves the
//! idle count and returns `false` to go and steal it).
//!
//! Why it is sound: only a busy worker pushes work, and a worker goes idle
//! only once its own queues are empty. So when the idle count reaches the
//! number of workers, every queue is empty and nothing can refill one: no
//! work is left behind. A waiting worker that sees work leaves the count
//! before taking it, so the count never reaches the total while work exists.
//! The protocol is model-checked with loom (`tests/loom.rs`).
//!
//! ```
//! use rtmem_gc::termination::Termination;
//!
//! let done = Termination::new(1);
//! // A lone worker with no work left is done at once.
//! assert!(done.wait_for_work(|| false));
//! ```

use crate::sync::{AtomicUsize, Ordering::SeqCst};

/// The idle count of one parallel trace (see the [module docs](self)).
#[derive(Debug)]
pub struct Termination {
    idle: AtomicUsize,
    workers: usize,
}

impl Termination {
    /// The protocol for `workers` threads, all busy.
    pub fn new(workers: usize) -> Termination {
        Termination {
            idle: AtomicUsize::new(0),
            workers,
        }
    }

    /// Called by a worker whose own queues are empty and that found nothing
    /// to steal. Returns `true` when every worker is idle (stop), `false`
    /// when `work_visible` saw work somewhere (go and take it).
    pub fn wait_for_work(&self, work_visible: impl Fn() -> bool) -> bool {
        self.idle.fetch_add(1, SeqCst);
        let mut spins = 0u32;
        loop {
            if self.idle.load(SeqCst) == self.workers {
                return true;
            }
            if work_visible() {
                self.idle.fetch_sub(1, SeqCst);
                return false;
            }
            crate::sync::spin_wait(&mut spins);
        }
    }
}
