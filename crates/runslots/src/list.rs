//! Intrusive doubly-linked lists of runs, linked through the runs' headers.
//!
//! A run is on at most one list at a time, recorded in its header so that a
//! free can tell in one load whether the run needs moving. Every list is
//! changed only by the runs' holder: a thread's own lists by that thread, a
//! size class's shared list under the class lock, the heap's free list under
//! the heap lock.

use crate::run::Run;

/// Which list a run is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListTag {
    /// None: a thread's current run, a full unowned run, or a run in passing.
    None,
    /// A thread's parked runs with free slots.
    Partial,
    /// A thread's parked runs without free slots.
    Full,
    /// A size class's unowned runs with free slots.
    Shared,
    /// The heap's free runs.
    Free,
}

/// The links of a run on a list.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Links {
    prev: Option<Run>,
    next: Option<Run>,
}

/// A list of runs.
#[derive(Debug)]
pub(crate) struct RunList {
    head: Option<Run>,
    tail: Option<Run>,
    len: usize,
    tag: ListTag,
}

impl RunList {
    /// An empty list whose runs are tagged `tag`.
    pub(crate) const fn new(tag: ListTag) -> RunList {
        RunList {
            head: None,
            tail: None,
            len: 0,
            tag,
        }
    }

    /// The number of runs on the list.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `run`.
    ///
    /// # Safety
    /// The caller holds `run` and the runs of this list, and `run` is on no list.
    pub(crate) unsafe fn push_back(&mut self, run: Run) {
        // SAFETY: the caller holds `run` and the tail.
        unsafe {
            debug_assert_eq!(run.list(), ListTag::None, "{run:?} is on two lists");
            run.set_list(self.tag);
            run.links(|l| {
                *l = Links {
                    prev: self.tail,
                    next: None,
                }
            });
            match self.tail {
                Some(tail) => tail.links(|l| l.next = Some(run)),
                None => self.head = Some(run),
            }
        }
        self.tail = Some(run);
        self.len += 1;
    }

    /// Prepends `run`.
    ///
    /// # Safety
    /// As for [`push_back`](Self::push_back).
    pub(crate) unsafe fn push_front(&mut self, run: Run) {
        // SAFETY: the caller holds `run` and the head.
        unsafe {
            debug_assert_eq!(run.list(), ListTag::None, "{run:?} is on two lists");
            run.set_list(self.tag);
            run.links(|l| {
                *l = Links {
                    prev: None,
                    next: self.head,
                }
            });
            match self.head {
                Some(head) => head.links(|l| l.prev = Some(run)),
                None => self.tail = Some(run),
            }
        }
        self.head = Some(run);
        self.len += 1;
    }

    /// Removes and returns the first run.
    ///
    /// # Safety
    /// The caller holds the runs of this list.
    pub(crate) unsafe fn pop_front(&mut self) -> Option<Run> {
        let run = self.head?;
        // SAFETY: forwarded.
        unsafe { self.remove(run) };
        Some(run)
    }

    /// Removes `run`, which is on this list.
    ///
    /// # Safety
    /// The caller holds the runs of this list and `run` is on it.
    pub(crate) unsafe fn remove(&mut self, run: Run) {
        // SAFETY: the caller holds `run` and its neighbours.
        unsafe {
            debug_assert_eq!(run.list(), self.tag, "{run:?} is not on this list");
            let Links { prev, next } = run.links(std::mem::take);
            match prev {
                Some(prev) => prev.links(|l| l.next = next),
                None => self.head = next,
            }
            match next {
                Some(next) => next.links(|l| l.prev = prev),
                None => self.tail = prev,
            }
            run.set_list(ListTag::None);
        }
        self.len -= 1;
    }
}

// SAFETY: a list is addresses of runs; whoever holds the list (a thread's
// `LocalRuns`, a class lock, the heap lock) holds its runs.
unsafe impl Send for RunList {}
