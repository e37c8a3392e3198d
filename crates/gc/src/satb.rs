//! Snapshot-at-the-beginning (SATB) buffers: how mutators tell a
//! concurrent marker about the references they overwrite.
//!
//! While a concurrent cycle marks, the pre-write barrier logs the old value
//! of every reference store (and [`keep_alive`](crate::Mutator::keep_alive)
//! logs references read out of weak places) into the mutator's own
//! [`SatbBuffer`] — a plain `Vec`, no atomics. A full buffer is handed to the
//! heap's [`SatbQueue`], where the marking thread takes it. What is left in
//! the mutators' buffers reaches the queue at a handshake (each mutator hands
//! its buffer over at its next safepoint poll) and, finally, in the remark
//! pause, where the collector reads the stopped mutators' buffers itself.
//!
//! Every logged reference is marked, so every object reachable when marking
//! began is marked by the time it ends (the snapshot), whatever the
//! mutators did meanwhile. The hand-off is model-checked with loom
//! (`tests/loom.rs`): no entry is lost or seen twice.
//!
//! ```
//! use rtmem_gc::ObjectRef;
//! use rtmem_gc::satb::{SatbBuffer, SatbQueue};
//!
//! let queue = SatbQueue::new();
//! let mut buffer = SatbBuffer::with_capacity(2);
//! let object = |addr| ObjectRef::from_addr(addr).unwrap();
//! buffer.log(object(0x1000), &queue);
//! assert!(queue.is_empty());
//! buffer.log(object(0x2000), &queue); // full: handed to the queue
//! buffer.log(object(0x3000), &queue);
//! assert_eq!(queue.take_all().len(), 2);
//! buffer.hand_off(&queue); // what a handshake does
//! assert_eq!(queue.take_all(), [object(0x3000)]);
//! ```

use crate::object::ObjectRef;
use crate::sync::Mutex;

/// The full buffers mutators handed over, waiting for the marker.
#[derive(Default)]
pub struct SatbQueue {
    full: Mutex<Vec<Vec<ObjectRef>>>,
}

impl SatbQueue {
    /// An empty queue.
    pub fn new() -> SatbQueue {
        SatbQueue::default()
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, Vec<Vec<ObjectRef>>> {
        self.full.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a buffer of logged references (nothing if it is empty).
    pub fn push(&self, buffer: Vec<ObjectRef>) {
        if !buffer.is_empty() {
            self.lock().push(buffer);
        }
    }

    /// Takes every queued reference.
    pub fn take_all(&self) -> Vec<ObjectRef> {
        let buffers = std::mem::take(&mut *self.lock());
        buffers.concat()
    }

    /// Whether no buffer is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops every queued buffer (a cycle was abandoned).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// One mutator's log of references for the concurrent marker.
#[derive(Debug)]
pub struct SatbBuffer {
    entries: Vec<ObjectRef>,
    capacity: usize,
}

impl Default for SatbBuffer {
    fn default() -> Self {
        SatbBuffer::with_capacity(SatbBuffer::CAPACITY)
    }
}

impl SatbBuffer {
    /// References a buffer holds before it is handed over.
    pub const CAPACITY: usize = 512;

    /// An empty buffer handed over when it holds `capacity` references
    /// (at least 1). Its memory is allocated at the first log.
    pub fn with_capacity(capacity: usize) -> SatbBuffer {
        SatbBuffer {
            entries: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    /// Logs `object`; a full buffer goes to `queue`.
    #[inline]
    pub fn log(&mut self, object: ObjectRef, queue: &SatbQueue) {
        if self.entries.capacity() == 0 {
            self.entries.reserve_exact(self.capacity);
        }
        self.entries.push(object);
        if self.entries.len() >= self.capacity {
            self.hand_off(queue);
        }
    }

    /// Hands what the buffer holds to `queue` (at a handshake, or when the
    /// mutator leaves).
    pub fn hand_off(&mut self, queue: &SatbQueue) {
        queue.push(std::mem::take(&mut self.entries));
    }

    /// Takes what the buffer holds (the collector, with the world stopped).
    pub fn take(&mut self) -> Vec<ObjectRef> {
        std::mem::take(&mut self.entries)
    }

    /// How many references it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
