//! Parallel tracing: the work-stealing loop that marking and young-generation
//! copying share.
//!
//! Each of `workers` threads (the collecting thread is one) owns a
//! [`Scanner`] — what it does to one grey object — a private stack (a `Vec`:
//! no atomics) and a `crossbeam-deque` queue that others may steal from; the
//! initial grey objects start in a shared injector. A worker scans what it
//! pops, and the scanner pushes the newly grey objects it finds onto the
//! private stack. When the stack is deep and the public queue has been
//! drained by thieves, half of the stack moves there. When both are empty
//! the worker steals from the injector or another worker.
//!
//! Objects pass through a small FIFO before they are scanned, and each is
//! prefetched as it enters: by the time it is scanned its header and slots
//! are (usually) in the cache.
//!
//! **Termination** is the [`Termination`] protocol: a worker goes idle only
//! with its stack, FIFO and queue empty.

use std::collections::VecDeque;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::object::ObjectRef;
use crate::termination::Termination;

/// What one worker does to a grey object.
pub(crate) trait Scanner: Send {
    /// Scans `object`, pushing the objects it makes grey onto `stack`.
    fn scan(&mut self, object: ObjectRef, stack: &mut Vec<ObjectRef>);
}

/// Objects prefetched and waiting to be scanned.
const PREFETCH_FIFO: usize = 8;

/// A private stack deeper than this shares half with thieves once they
/// have drained the worker's public queue.
const SHARE_DEPTH: usize = 64;

/// One worker's work: its private stack, its public queue, the FIFO.
struct Local {
    stack: Vec<ObjectRef>,
    queue: Worker<ObjectRef>,
    fifo: VecDeque<ObjectRef>,
}

/// Scans everything grey, starting from `grey`, with one thread per
/// scanner (the calling thread runs the first), until no work is left.
pub(crate) fn drain<S: Scanner>(scanners: &mut [S], grey: Vec<ObjectRef>) {
    if grey.is_empty() {
        return;
    }
    let workers = scanners.len();
    let injector = Injector::new();
    for object in grey {
        injector.push(object);
    }
    let queues: Vec<Worker<ObjectRef>> = (0..workers).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<Stealer<ObjectRef>> = queues.iter().map(Worker::stealer).collect();
    let termination = Termination::new(workers);
    let shared = Shared {
        injector: &injector,
        stealers: &stealers,
        termination: &termination,
        workers,
    };
    let mut pairs = scanners.iter_mut().zip(queues);
    let (mine, my_queue) = pairs.next().expect("at least one worker");
    if workers == 1 {
        shared.run(mine, my_queue);
        return;
    }
    std::thread::scope(|s| {
        let helpers: Vec<_> = pairs
            .map(|(scanner, queue)| {
                let shared = &shared;
                s.spawn(move || shared.run(scanner, queue))
            })
            .collect();
        shared.run(mine, my_queue);
        for helper in helpers {
            helper.join().expect("a tracing worker panicked");
        }
    });
}

struct Shared<'a> {
    injector: &'a Injector<ObjectRef>,
    stealers: &'a [Stealer<ObjectRef>],
    termination: &'a Termination,
    workers: usize,
}

impl Shared<'_> {
    fn run<S: Scanner>(&self, scanner: &mut S, queue: Worker<ObjectRef>) {
        let mut local = Local {
            stack: Vec::with_capacity(1024),
            queue,
            fifo: VecDeque::with_capacity(PREFETCH_FIFO),
        };
        loop {
            while let Some(object) = self.next(&mut local) {
                scanner.scan(object, &mut local.stack);
                if self.workers > 1 && local.stack.len() > SHARE_DEPTH && local.queue.is_empty() {
                    let half = local.stack.len() / 2;
                    for object in local.stack.drain(..half) {
                        local.queue.push(object);
                    }
                }
            }
            if self.workers == 1 || self.wait_for_work() {
                return;
            }
        }
    }

    /// The next object to scan: the FIFO is topped up from the stack, the
    /// queue or a steal, prefetching each object that enters it.
    #[inline]
    fn next(&self, local: &mut Local) -> Option<ObjectRef> {
        while local.fifo.len() < PREFETCH_FIFO {
            let Some(object) = local
                .stack
                .pop()
                .or_else(|| local.queue.pop())
                .or_else(|| self.steal(&local.queue))
            else {
                break;
            };
            rtmem_base::prefetch_read(object.addr());
            local.fifo.push_back(object);
        }
        local.fifo.pop_front()
    }

    /// Work from the injector or another worker.
    fn steal(&self, queue: &Worker<ObjectRef>) -> Option<ObjectRef> {
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(queue) {
                Steal::Success(object) => return Some(object),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            for stealer in self.stealers {
                match stealer.steal_batch_and_pop(queue) {
                    Steal::Success(object) => return Some(object),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    /// Waits idle; true when every worker is idle (marking is over), false
    /// when work appeared somewhere.
    fn wait_for_work(&self) -> bool {
        self.termination.wait_for_work(|| {
            !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
        })
    }
}
