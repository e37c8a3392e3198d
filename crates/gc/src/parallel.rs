//! Parallel tracing: the work-stealing loop that marking and young-generation
//! copying share.
//!
//! Each of `workers` threads (the collecting thread is one) owns a
//! [`Scanner`] — what it does to one grey object — a private stack (a `Vec`:
//! no atomics) and a `crossbeam-deque` queue that others may steal from; the
//! initial grey objects are dealt out to the private stacks (no atomic per
//! object: a full young collection may start from half a million objects
//! on dirty cards). A worker scans what it
//! pops, and the scanner pushes the newly grey objects it finds onto the
//! private stack. When the stack is deep and the public queue has been
//! drained by thieves, half of the stack moves there. When both are empty
//! the worker steals from another worker.
//!
//! Objects pass through a small FIFO before they are scanned, and each is
//! prefetched as it enters ([`Scanner::prefetch`]): by the time it is
//! scanned what it reads is (usually) in the cache.
//!
//! **Termination** is the [`Termination`] protocol: a worker goes idle only
//! with its stack, FIFO and queue empty.

use std::collections::VecDeque;

use crossbeam_deque::{Steal, Stealer, Worker};

use crate::object::ObjectRef;
use crate::termination::Termination;

/// What one worker does to a grey object.
pub(crate) trait Scanner: Send {
    /// Scans `object`, pushing the objects it makes grey onto `stack`.
    fn scan(&mut self, object: ObjectRef, stack: &mut Vec<ObjectRef>);

    /// Starts fetching what scanning `object` will read, a few objects
    /// before it is scanned: by default its first line (header and first
    /// slots).
    #[inline]
    fn prefetch(&mut self, object: ObjectRef) {
        rtmem_base::prefetch_read(object.addr());
    }
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

impl Local {
    /// A worker's state, starting with `stack` as its private stack.
    fn new(mut stack: Vec<ObjectRef>) -> Local {
        stack.reserve(1024);
        Local {
            stack,
            queue: Worker::new_lifo(),
            fifo: VecDeque::with_capacity(PREFETCH_FIFO),
        }
    }
}

/// Scans everything grey, starting from `grey`, with one thread per
/// scanner (the calling thread runs the first), until no work is left.
pub(crate) fn drain<S: Scanner>(scanners: &mut [S], grey: Vec<ObjectRef>) {
    if grey.is_empty() {
        return;
    }
    let workers = scanners.len();
    // The first worker keeps the vector itself (a lone worker copies
    // nothing); the others take equal shares off its end.
    let share = grey.len().div_ceil(workers);
    let mut grey = grey;
    let mut stacks: Vec<Vec<ObjectRef>> = (1..workers)
        .map(|_| grey.split_off(grey.len().saturating_sub(share)))
        .collect();
    stacks.insert(0, grey);
    let locals: Vec<Local> = stacks.into_iter().map(Local::new).collect();
    let stealers: Vec<Stealer<ObjectRef>> = locals.iter().map(|l| l.queue.stealer()).collect();
    let termination = Termination::new(workers);
    let shared = Shared {
        stealers: &stealers,
        termination: &termination,
        workers,
    };
    let mut pairs = scanners.iter_mut().zip(locals);
    let (mine, my_local) = pairs.next().expect("at least one worker");
    if workers == 1 {
        shared.run(mine, my_local);
        return;
    }
    std::thread::scope(|s| {
        let helpers: Vec<_> = pairs
            .map(|(scanner, local)| {
                let shared = &shared;
                s.spawn(move || shared.run(scanner, local))
            })
            .collect();
        shared.run(mine, my_local);
        for helper in helpers {
            helper.join().expect("a tracing worker panicked");
        }
    });
}

struct Shared<'a> {
    stealers: &'a [Stealer<ObjectRef>],
    termination: &'a Termination,
    workers: usize,
}

impl Shared<'_> {
    fn run<S: Scanner>(&self, scanner: &mut S, mut local: Local) {
        loop {
            while let Some(object) = self.next(&mut local, scanner) {
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
    fn next<S: Scanner>(&self, local: &mut Local, scanner: &mut S) -> Option<ObjectRef> {
        while local.fifo.len() < PREFETCH_FIFO {
            let Some(object) = local
                .stack
                .pop()
                .or_else(|| local.queue.pop())
                .or_else(|| self.steal(&local.queue))
            else {
                break;
            };
            scanner.prefetch(object);
            local.fifo.push_back(object);
        }
        local.fifo.pop_front()
    }

    /// Work from another worker.
    fn steal(&self, queue: &Worker<ObjectRef>) -> Option<ObjectRef> {
        loop {
            let mut retry = false;
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
        self.termination
            .wait_for_work(|| self.stealers.iter().any(|s| !s.is_empty()))
    }
}
