//! Parallel marking: work-stealing transitive closure over the mark bitmap.
//!
//! Each of `gc_workers` threads (the collecting thread is one) has a private
//! mark stack (a `Vec`: no atomics) and a `crossbeam-deque` queue that others
//! may steal from; roots start in a shared injector. A worker scans what it
//! pops: every child it is first to mark (the bitmap's atomic `mark`) goes
//! on its private stack, so each object is scanned exactly once. When its
//! stack is deep and its public queue has been drained by thieves, it moves
//! half of the stack there. When both are empty it steals from the injector
//! or another worker.
//!
//! Objects pass through a small FIFO before they are scanned, and each is
//! prefetched as it enters: by the time it is scanned its header and slots
//! are (usually) in the cache.
//!
//! **Termination** is the [`Termination`] protocol: a worker goes idle only
//! with its stack, FIFO and queue empty.

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::bitmap::MarkBitmap;
use crate::object::{Header, ObjectRef};
use crate::termination::Termination;
use crate::vm::{ObjectModel, ReferenceKind, Scanning, SlotVisitor, VM};

/// A reference object found while marking, with its referent slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Discovered {
    /// The reference object.
    pub(crate) object: ObjectRef,
    pub(crate) kind: ReferenceKind,
    /// The referent slot's offset in the object.
    pub(crate) offset: usize,
}

impl Discovered {
    fn slot(&self) -> *mut Option<ObjectRef> {
        (self.object.addr() + self.offset) as *mut Option<ObjectRef>
    }

    /// The referent.
    pub(crate) fn referent(&self) -> Option<ObjectRef> {
        // SAFETY: the slot is a word inside a live (marked) reference
        // object; the world is stopped and reference processing runs on one
        // thread, so nothing writes it meanwhile.
        unsafe { self.slot().read() }
    }

    /// Clears the referent.
    pub(crate) fn clear(&self) {
        // SAFETY: as for `referent`; the collector is the only writer.
        unsafe { self.slot().write(None) }
    }
}

/// What a trace found.
#[derive(Default)]
pub(crate) struct Traced {
    /// Bytes of the objects marked (their sizes, headers included).
    pub(crate) bytes: usize,
    /// Objects marked.
    pub(crate) objects: usize,
    /// Reference objects among them.
    pub(crate) discovered: Vec<Discovered>,
}

impl Traced {
    /// Adds `other`'s counts and returns its discovered references.
    pub(crate) fn absorb(&mut self, other: Traced) -> Vec<Discovered> {
        self.bytes += other.bytes;
        self.objects += other.objects;
        other.discovered
    }

    fn merge(&mut self, other: Traced) {
        let discovered = self.absorb(other);
        self.discovered.extend(discovered);
    }
}

/// Marks roots: each not yet marked is marked and collected for tracing.
pub(crate) struct RootMarker<'a> {
    pub(crate) bitmap: &'a MarkBitmap,
    pub(crate) grey: Vec<ObjectRef>,
}

impl<'a> RootMarker<'a> {
    /// A marker with nothing collected yet.
    pub(crate) fn new(bitmap: &'a MarkBitmap) -> RootMarker<'a> {
        RootMarker {
            bitmap,
            grey: Vec::new(),
        }
    }

    /// Marks `object`; if it was not marked yet, collects it for tracing
    /// and returns true.
    #[inline]
    pub(crate) fn mark(&mut self, object: ObjectRef) -> bool {
        let first = self.bitmap.mark(object.addr());
        if first {
            self.grey.push(object);
        }
        first
    }
}

impl SlotVisitor for RootMarker<'_> {
    #[inline]
    fn visit(&mut self, slot: &mut Option<ObjectRef>) {
        if let Some(object) = *slot {
            self.mark(object);
        }
    }
}

/// Marks the children of a scanned object onto the worker's stack.
struct ChildMarker<'a> {
    bitmap: &'a MarkBitmap,
    stack: &'a mut Vec<ObjectRef>,
}

impl SlotVisitor for ChildMarker<'_> {
    #[inline(always)]
    fn visit(&mut self, slot: &mut Option<ObjectRef>) {
        if let Some(object) = *slot
            && self.bitmap.mark(object.addr())
        {
            self.stack.push(object);
        }
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
    fifo: std::collections::VecDeque<ObjectRef>,
}

/// Marks everything reachable from `grey` (objects already marked, not yet
/// scanned) on `workers` threads and returns what was marked.
pub(crate) fn trace<V: VM>(bitmap: &MarkBitmap, workers: usize, grey: Vec<ObjectRef>) -> Traced {
    if grey.is_empty() {
        return Traced::default();
    }
    let injector = Injector::new();
    for object in grey {
        injector.push(object);
    }
    let queues: Vec<Worker<ObjectRef>> = (0..workers).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<Stealer<ObjectRef>> = queues.iter().map(Worker::stealer).collect();
    let termination = Termination::new(workers);
    let shared = Shared {
        bitmap,
        injector: &injector,
        stealers: &stealers,
        termination: &termination,
        workers,
    };
    let mut queues = queues.into_iter();
    let mine = queues.next().expect("at least one worker");
    if workers == 1 {
        return shared.run::<V>(mine);
    }
    std::thread::scope(|s| {
        let helpers: Vec<_> = queues
            .map(|queue| {
                let shared = &shared;
                s.spawn(move || shared.run::<V>(queue))
            })
            .collect();
        let mut traced = shared.run::<V>(mine);
        for helper in helpers {
            traced.merge(helper.join().expect("a marking worker panicked"));
        }
        traced
    })
}

struct Shared<'a> {
    bitmap: &'a MarkBitmap,
    injector: &'a Injector<ObjectRef>,
    stealers: &'a [Stealer<ObjectRef>],
    termination: &'a Termination,
    workers: usize,
}

impl Shared<'_> {
    fn run<V: VM>(&self, queue: Worker<ObjectRef>) -> Traced {
        let mut traced = Traced::default();
        let mut local = Local {
            stack: Vec::with_capacity(1024),
            queue,
            fifo: std::collections::VecDeque::with_capacity(PREFETCH_FIFO),
        };
        loop {
            while let Some(object) = self.next(&mut local) {
                self.scan::<V>(object, &mut local.stack, &mut traced);
                if self.workers > 1 && local.stack.len() > SHARE_DEPTH && local.queue.is_empty() {
                    let half = local.stack.len() / 2;
                    for object in local.stack.drain(..half) {
                        local.queue.push(object);
                    }
                }
            }
            if self.workers == 1 || self.wait_for_work() {
                return traced;
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

    /// Scans one marked object.
    #[inline]
    fn scan<V: VM>(&self, object: ObjectRef, stack: &mut Vec<ObjectRef>, traced: &mut Traced) {
        // SAFETY: a marked object is an allocated object whose header the
        // mutator wrote before the world stopped.
        let header = Header::from_bits(unsafe { (object.addr() as *const u64).read() });
        traced.bytes += V::ObjectModel::size(object, header);
        traced.objects += 1;
        if let Some((kind, offset)) = V::ObjectModel::reference(object, header) {
            traced.discovered.push(Discovered {
                object,
                kind,
                offset,
            });
        }
        V::Scanning::scan_object(
            object,
            header,
            &mut ChildMarker {
                bitmap: self.bitmap,
                stack,
            },
        );
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
