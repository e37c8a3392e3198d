//! How a heap is configured: the collector, its workers, the verifier, the
//! trigger and the object-heap layout (a profile's collector keys).

use serde::Serialize;

use crate::stats::GcKind;
use crate::trigger::{TriggerConfig, TriggerKind};

/// Object-heap layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HeapConfig {
    /// Size of the young generation (generational collectors).
    pub young: usize,
    /// Size of a thread-local allocation buffer.
    pub tlab: usize,
    /// Objects at least this large go to the humongous space.
    pub large_threshold: usize,
    /// Bytes of heap covered by one card of the card table (a power of two).
    pub card_size: usize,
    /// Young collections an object survives before it is promoted.
    pub promotion_age: u8,
}

impl Default for HeapConfig {
    fn default() -> Self {
        HeapConfig {
            young: 16 << 20,
            tlab: 32 << 10,
            large_threshold: 64 << 10,
            card_size: 512,
            promotion_age: 2,
        }
    }
}

/// Everything a [`Heap`](crate::Heap) needs to know besides its spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GcConfig {
    /// The collector.
    pub kind: GcKind,
    /// Threads that mark in parallel (the collecting thread is one of them).
    pub gc_workers: usize,
    /// Verify the heap before and after every collection.
    pub verify: bool,
    /// Collect every this many allocations (0 = off).
    pub stress_every: u64,
    /// Object-heap layout.
    pub heap: HeapConfig,
    /// When to collect.
    pub trigger: TriggerConfig,
}

impl Default for GcConfig {
    /// The stop-the-world collector on one worker, adaptive trigger
    /// (collect when the heap doubles over the live size, from 8 MiB).
    fn default() -> Self {
        GcConfig {
            kind: GcKind::Stw,
            gc_workers: 1,
            verify: false,
            stress_every: 0,
            heap: HeapConfig::default(),
            trigger: TriggerConfig {
                kind: TriggerKind::Adaptive,
                growth_percent: 100,
                occupancy_percent: 75,
                min_heap: 8 << 20,
            },
        }
    }
}
