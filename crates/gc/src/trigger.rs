//! When to collect: the heap-size trigger of a profile, explicit and idle
//! requests from any thread, and the stress mode.
//!
//! A [`Trigger`] answers one question on the allocation slow path — "should
//! this thread start (or ask for) a collection now?" — with
//! [`Trigger::should_collect`], which returns the [`GcCause`] to record.
//! It is checked where a thread refills its TLAB or allocation runs, not per
//! object, and the check is two relaxed loads and a compare, without a lock:
//! the trigger is shared by every mutator (`Trigger` is `Sync`).
//!
//! Two heap-size policies ([`TriggerKind`], the profile's `trigger.kind`):
//! - `occupancy`: collect when the heap reaches `occupancy_percent` of its
//!   limit (never below `min_heap`);
//! - `adaptive`: collect when the heap has grown by `growth_percent` over
//!   the bytes live after the last collection (like Go's `GOGC`), never below
//!   `min_heap`.
//!
//! Either threshold is capped at the heap limit. Causes that are not about
//! heap size are reported first: a pending [`request`](Trigger::request)
//! (explicit or idle, from any thread) and, in stress mode, a collection every
//! N allocations ([`Trigger::with_stress_every`]). The young-space-full and
//! allocation-failure causes come from the allocator itself, which knows
//! when a space is full; it may hand them to a collector thread through
//! `request` as well.
//!
//! ```
//! use rtmem_gc::stats::GcCause;
//! use rtmem_gc::trigger::{Trigger, TriggerConfig, TriggerKind};
//!
//! const MIB: usize = 1 << 20;
//! let config = TriggerConfig {
//!     kind: TriggerKind::Adaptive,
//!     growth_percent: 100,
//!     occupancy_percent: 75,
//!     min_heap: 8 * MIB,
//! };
//! let trigger = Trigger::new(config, 256 * MIB);
//! assert_eq!(trigger.threshold(), 8 * MIB); // nothing live yet: min_heap
//! assert_eq!(trigger.should_collect(4 * MIB), None);
//! assert_eq!(trigger.should_collect(8 * MIB), Some(GcCause::AdaptiveGrowth));
//!
//! // After a collection that left 10 MiB live, the heap may double first.
//! trigger.collected(10 * MIB);
//! assert_eq!(trigger.threshold(), 20 * MIB);
//!
//! // Any thread may ask for a collection; it is reported before heap size.
//! trigger.request(GcCause::Explicit);
//! assert_eq!(trigger.should_collect(0), Some(GcCause::Explicit));
//! trigger.collected(10 * MIB);
//! assert_eq!(trigger.should_collect(0), None);
//! ```

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};

use serde::Serialize;

use crate::stats::{GcCause, named_enum};

named_enum! {
    /// How the collector decides, from heap size, when to collect (the
    /// profile's `trigger.kind`).
    pub enum TriggerKind: "trigger kind" {
        /// Collect when the heap reaches `occupancy_percent` of its limit.
        Occupancy => "occupancy",
        /// Collect when the heap has grown by `growth_percent` of the live size
        /// after the last collection (like Go's GOGC), but not below `min_heap`.
        Adaptive => "adaptive",
    }
}

/// When collections start (the profile's `[trigger]` table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TriggerConfig {
    /// The trigger policy.
    pub kind: TriggerKind,
    /// Adaptive: grow by this percent of the live size before the next collection.
    pub growth_percent: u32,
    /// Occupancy: collect at this percent of the heap limit.
    pub occupancy_percent: u32,
    /// No collection is triggered below this heap size.
    pub min_heap: usize,
}

impl TriggerConfig {
    /// The heap size at which this policy collects, for a heap of at most
    /// `heap_limit` bytes that had `live_bytes` live after the last
    /// collection (0 before the first): `max(min_heap, base)` capped at
    /// `heap_limit`, where `base` is `occupancy_percent` of `heap_limit`
    /// (occupancy) or `live_bytes` grown by `growth_percent` (adaptive).
    /// Computed without overflow for any inputs.
    pub fn threshold(&self, heap_limit: usize, live_bytes: usize) -> usize {
        let base = match self.kind {
            TriggerKind::Occupancy => heap_limit as u128 * self.occupancy_percent as u128 / 100,
            TriggerKind::Adaptive => live_bytes as u128 * (100 + self.growth_percent as u128) / 100,
        };
        let base = usize::try_from(base).unwrap_or(usize::MAX);
        base.max(self.min_heap).min(heap_limit)
    }

    /// The cause recorded when the heap-size threshold is reached.
    pub const fn cause(&self) -> GcCause {
        match self.kind {
            TriggerKind::Occupancy => GcCause::HeapOccupancy,
            TriggerKind::Adaptive => GcCause::AdaptiveGrowth,
        }
    }
}

/// No request is pending.
const NO_REQUEST: u8 = 0;

/// The trigger state of one heap, shared by its mutators and its collector.
///
/// The threshold and the pending request are atomics, so mutators check
/// [`should_collect`](Self::should_collect) without a lock; the collector
/// calls [`collected`](Self::collected) when a collection ends.
#[derive(Debug)]
pub struct Trigger {
    config: TriggerConfig,
    heap_limit: usize,
    threshold: AtomicUsize,
    /// The pending request: 0, or 1 + the cause's index in `GcCause::ALL`.
    pending: AtomicU8,
    stress_every: u64,
    allocations: AtomicU64,
}

impl Trigger {
    /// The trigger of a heap of at most `heap_limit` bytes (the heap the
    /// collector passes to `should_collect`: for the generational
    /// collectors, the one whose size the policy watches). Before the first
    /// collection the adaptive threshold is `min_heap` (capped at the limit).
    pub fn new(config: TriggerConfig, heap_limit: usize) -> Trigger {
        Trigger {
            config,
            heap_limit,
            threshold: AtomicUsize::new(config.threshold(heap_limit, 0)),
            pending: AtomicU8::new(NO_REQUEST),
            stress_every: 0,
            allocations: AtomicU64::new(0),
        }
    }

    /// Stress mode: [`note_allocation`](Self::note_allocation) requests a
    /// collection (cause [`GcCause::Stress`]) every `n` allocations; 0 turns
    /// it off (the profile's `stress_every`).
    pub fn with_stress_every(mut self, n: u64) -> Trigger {
        self.stress_every = n;
        self
    }

    /// The policy.
    pub fn config(&self) -> &TriggerConfig {
        &self.config
    }

    /// The heap limit the thresholds are capped at.
    pub fn heap_limit(&self) -> usize {
        self.heap_limit
    }

    /// The stress interval (0 = off).
    pub fn stress_every(&self) -> u64 {
        self.stress_every
    }

    /// The heap size at which the next collection is triggered.
    #[inline]
    pub fn threshold(&self) -> usize {
        self.threshold.load(Relaxed)
    }

    /// Whether to collect now, with `heap_used` bytes in use, and why: a
    /// pending request (explicit, idle, stress, ...) first, then the
    /// heap-size threshold ([`TriggerConfig::cause`]).
    ///
    /// Call it on allocation slow paths (TLAB or run refill, large
    /// allocations), not per object: it costs two relaxed loads and a
    /// compare. The answer stays the same until [`collected`](Self::collected)
    /// runs, so every thread that checks in the meantime sees it.
    #[inline]
    pub fn should_collect(&self, heap_used: usize) -> Option<GcCause> {
        self.pending().or_else(|| self.threshold_reached(heap_used))
    }

    /// The heap-size part of [`should_collect`](Self::should_collect): the
    /// policy's cause if `heap_used` reached the threshold, pending requests
    /// aside.
    #[inline]
    pub fn threshold_reached(&self, heap_used: usize) -> Option<GcCause> {
        (heap_used >= self.threshold()).then(|| self.config.cause())
    }

    /// Asks for a collection for `cause` — usually [`GcCause::Explicit`] or
    /// [`GcCause::Idle`] — from any thread. `should_collect` reports it until
    /// the next [`collected`](Self::collected). A pending request is kept,
    /// except that an idle request (an offer of spare time) gives way to any
    /// other cause.
    pub fn request(&self, cause: GcCause) {
        let code = cause as u8 + 1;
        let idle = GcCause::Idle as u8 + 1;
        // Err means a non-idle request is already pending: keep it.
        let _ = self.pending.fetch_update(Relaxed, Relaxed, |current| {
            (current == NO_REQUEST || current == idle).then_some(code)
        });
    }

    /// The pending request, if any.
    pub fn pending(&self) -> Option<GcCause> {
        match self.pending.load(Relaxed) {
            NO_REQUEST => None,
            code => Some(GcCause::ALL[code as usize - 1]),
        }
    }

    /// Counts one allocation for the stress mode; returns true (and requests
    /// a [`GcCause::Stress`] collection) on every `stress_every`th. With the
    /// stress mode off this is one predictable branch, so allocation fast
    /// paths may call it.
    #[inline(always)]
    pub fn note_allocation(&self) -> bool {
        self.stress_every != 0 && self.count_stress_allocation()
    }

    #[inline(never)]
    fn count_stress_allocation(&self) -> bool {
        let n = self.allocations.fetch_add(1, Relaxed) + 1;
        let due = n.is_multiple_of(self.stress_every);
        if due {
            self.request(GcCause::Stress);
        }
        due
    }

    /// A collection finished with `live_bytes` live: moves the threshold to
    /// the policy's ([`TriggerConfig::threshold`]) and clears the pending
    /// request. A request made while the collection ran is cleared too: that
    /// collection answers it.
    ///
    /// Below the heap limit, the threshold is never less than `live_bytes`
    /// plus an eighth of it (at least [`MIN_HEADROOM`](Self::MIN_HEADROOM)):
    /// a heap whose live data sits at its occupancy threshold would
    /// otherwise collect at every check.
    pub fn collected(&self, live_bytes: usize) {
        let headroom = (live_bytes / 8).max(Self::MIN_HEADROOM);
        let floor = live_bytes.saturating_add(headroom);
        let threshold = self
            .config
            .threshold(self.heap_limit, live_bytes)
            .max(floor.min(self.heap_limit));
        self.threshold.store(threshold, Relaxed);
        self.pending.store(NO_REQUEST, Relaxed);
    }

    /// The least a heap grows between two collections the heap-size policy
    /// starts.
    pub const MIN_HEADROOM: usize = 256 << 10;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_codes_round_trip_every_cause() {
        for cause in GcCause::ALL {
            let t = Trigger::new(
                TriggerConfig {
                    kind: TriggerKind::Occupancy,
                    growth_percent: 100,
                    occupancy_percent: 100,
                    min_heap: 0,
                },
                1000,
            );
            t.request(cause);
            assert_eq!(t.pending(), Some(cause));
            assert_eq!(t.should_collect(0), Some(cause));
        }
    }
}
