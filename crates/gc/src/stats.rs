//! What the collector did: one record per collection, a pause histogram, and
//! the running totals of a heap, exported as JSON for tools and as a table
//! for people.
//!
//! A collector times its phases with a [`PhaseTimer`] (which also opens a
//! `tracing` span per phase), builds a [`CollectionRecord`] from the phases
//! and the heap sizes it saw, and hands it to the heap's [`GcStats`] before
//! it resumes the mutators. Tools read [`GcStats::summary`] (pause maximum
//! and percentiles, counts by kind and cause, bytes freed and promoted) or
//! [`GcStats::to_json`] at any time, from any thread.
//!
//! The names used here — [`GcKind`] (which collector), [`CollectionKind`]
//! (which kind of collection) and [`GcCause`] (why it ran) — print, parse and
//! serialize as the kebab-case spellings of profiles and logs (`gen-concurrent`,
//! `concurrent-mode-failure`).
//!
//! ```
//! use rtmem_gc::stats::{CollectionKind, CollectionRecord, GcCause, GcKind, GcStats, PhaseTimer};
//!
//! let stats = GcStats::new(GcKind::Stw);
//!
//! // Inside a pause: one phase after the other, each in its own tracing span.
//! let mut timer = PhaseTimer::start();
//! timer.phase("mark");
//! // ... mark ...
//! timer.phase("sweep");
//! // ... sweep ...
//! let start = stats.since_created(timer.started());
//! let record = CollectionRecord {
//!     start,
//!     heap_before: 48 << 20,
//!     heap_after: 12 << 20,
//!     freed_bytes: 36 << 20,
//!     objects_freed: 1_000,
//!     ..CollectionRecord::new(CollectionKind::Full, GcCause::HeapOccupancy, timer.finish())
//! };
//! assert_eq!(stats.record(record), 0); // the first collection has index 0
//!
//! let summary = stats.summary();
//! assert_eq!((summary.gc_count, summary.full_count), (1, 1));
//! assert!(summary.pause_max_ms >= summary.pause_p50_ms);
//! let json: serde_json::Value = serde_json::from_str(&stats.to_json()).unwrap();
//! assert_eq!(json["summary"]["gc_count"], 1);
//! assert_eq!(json["collections"][0]["cause"], "heap-occupancy");
//! assert_eq!(json["collections"][0]["phases"][1]["name"], "sweep");
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use rtmem_base::{Mutex, format_bytes};
use serde::{Serialize, Serializer};

/// Defines a fieldless enum whose variants have a fixed spelling: `name()`,
/// `ALL`, `COUNT`, `Display`, `FromStr` (error: [`UnknownName`]) and a serde
/// serialization as that spelling — one list, so the four always agree.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident: $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $ty {
            /// How many variants there are.
            pub const COUNT: usize = [$($name),+].len();

            /// Every variant, in declaration order.
            pub const ALL: [$ty; $ty::COUNT] = [$($ty::$variant),+];

            /// The spelling used in profiles, logs and JSON.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $ty::$variant => $name, )+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::stats::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::ALL
                    .into_iter()
                    .find(|k| k.name() == s)
                    .ok_or_else(|| $crate::stats::UnknownName {
                        what: $what,
                        value: s.to_owned(),
                        expected: &[$($name),+],
                    })
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }
    };
}
pub(crate) use named_enum;

/// The error of parsing one of the crate's named enums ([`GcKind`],
/// [`CollectionKind`], [`GcCause`], [`TriggerKind`](crate::trigger::TriggerKind))
/// from a name it does not have. The message names the value and the choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being parsed (`collector`, `trigger kind`, ...).
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// Every valid spelling.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (expected one of: {})",
            self.what,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

named_enum! {
    /// Which collector manages the object heap (the profile's `gc` key).
    pub enum GcKind: "collector" {
        /// Allocate only, never collect.
        Epsilon => "epsilon",
        /// Stop-the-world, non-moving mark-sweep with parallel marking.
        Stw => "stw",
        /// Generational: young copying collection, tenured mark-sweep.
        Gen => "gen",
        /// Generational with the tenured generation marked and swept concurrently.
        GenConcurrent => "gen-concurrent",
    }
}

impl GcKind {
    /// Whether the collector has a young generation (and a card table).
    pub const fn is_generational(self) -> bool {
        matches!(self, GcKind::Gen | GcKind::GenConcurrent)
    }

    /// The kinds of collection this collector performs (empty for epsilon).
    /// [`GcStats::record`] checks records against it in debug builds.
    pub const fn collection_kinds(self) -> &'static [CollectionKind] {
        match self {
            GcKind::Epsilon => &[],
            GcKind::Stw => &[CollectionKind::Full],
            GcKind::Gen => &[CollectionKind::Young, CollectionKind::Full],
            GcKind::GenConcurrent => &[
                CollectionKind::Young,
                CollectionKind::ConcurrentCycle,
                CollectionKind::Full,
            ],
        }
    }
}

named_enum! {
    /// What a collection collected.
    pub enum CollectionKind: "collection kind" {
        /// The young generation only (copying, stop-the-world).
        Young => "young",
        /// The whole heap, stop-the-world (the only kind `stw` performs; for
        /// `gen-concurrent`, the fallback after a concurrent-mode failure).
        Full => "full",
        /// A concurrent marking and sweeping cycle of the tenured generation:
        /// short pauses (initial mark, remark) with concurrent work between.
        ConcurrentCycle => "concurrent-cycle",
    }
}

named_enum! {
    /// Why a collection ran.
    pub enum GcCause: "gc cause" {
        /// An allocation failed: the space is at its limit.
        AllocationFailure => "allocation-failure",
        /// The occupancy trigger fired: the heap reached its threshold.
        HeapOccupancy => "heap-occupancy",
        /// The adaptive trigger fired: the heap grew by the configured percent.
        AdaptiveGrowth => "adaptive-growth",
        /// The young generation is full.
        YoungFull => "young-full",
        /// The runtime asked for a collection (`System.gc()`-style).
        Explicit => "explicit",
        /// The runtime is idle and offered the time.
        Idle => "idle",
        /// Stress mode: a collection every N allocations.
        Stress => "stress",
        /// The tenured generation filled before a concurrent cycle finished;
        /// a stop-the-world full collection finished the work.
        ConcurrentModeFailure => "concurrent-mode-failure",
    }
}

/// How long one phase of a collection took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PhaseTime {
    /// The phase (`roots`, `mark`, `sweep`, ...).
    pub name: &'static str,
    /// Its wall-clock time.
    #[serde(rename = "time_ms", serialize_with = "as_ms")]
    pub time: Duration,
    /// Whether it ran alongside the mutators (outside any pause).
    pub concurrent: bool,
}

/// Times the phases of a collection, each inside a
/// `tracing::info_span!("gc_phase", name, concurrent)`.
///
/// A collector creates one when a collection starts and names each phase as
/// it begins: [`phase`](Self::phase) for work done while the world is stopped
/// (include stopping the world itself, e.g. a `"safepoint"` phase, so it
/// counts in the pause), [`concurrent_phase`](Self::concurrent_phase) for work
/// done while mutators run. Each call ends the running phase. A pause is a
/// run of consecutive stop-the-world phases, so a concurrent cycle with
/// `initial-mark`, (concurrent) `mark`, `remark`, (concurrent) `sweep` has two
/// pauses. [`finish`](Self::finish) ends the last phase and returns the
/// times, which [`CollectionRecord::new`] turns into the record's pause and
/// concurrent time.
///
/// The span of the running phase is entered on the thread that started it,
/// so a `PhaseTimer` stays on one thread (it is not `Send`).
///
/// ```
/// use rtmem_gc::stats::{CollectionKind, CollectionRecord, GcCause, PhaseTimer};
///
/// // A concurrent cycle, as the gen-concurrent collector's thread runs it.
/// let mut timer = PhaseTimer::start();
/// timer.phase("initial-mark"); // the world is stopped: roots
/// timer.concurrent_phase("mark"); // mutators run again
/// timer.phase("remark"); // stopped again
/// timer.concurrent_phase("sweep");
/// let phases = timer.finish();
/// let names: Vec<_> = phases.iter().map(|p| p.name).collect();
/// assert_eq!(names, ["initial-mark", "mark", "remark", "sweep"]);
///
/// let record = CollectionRecord::new(CollectionKind::ConcurrentCycle, GcCause::HeapOccupancy, phases);
/// assert_eq!(record.pauses().count(), 2);
/// assert_eq!(record.pause + record.concurrent, record.phases.iter().map(|p| p.time).sum());
/// ```
#[derive(Debug)]
pub struct PhaseTimer {
    started: Instant,
    current: Option<RunningPhase>,
    phases: Vec<PhaseTime>,
}

#[derive(Debug)]
struct RunningPhase {
    name: &'static str,
    concurrent: bool,
    since: Instant,
    _span: tracing::span::EnteredSpan,
}

impl PhaseTimer {
    /// Starts timing a collection (no phase is running yet).
    pub fn start() -> PhaseTimer {
        PhaseTimer {
            started: Instant::now(),
            current: None,
            phases: Vec::with_capacity(8),
        }
    }

    /// When [`start`](Self::start) was called: pass it to
    /// [`GcStats::since_created`] for the record's `start`.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Ends the running phase and starts the stop-the-world phase `name`.
    pub fn phase(&mut self, name: &'static str) {
        self.begin(name, false);
    }

    /// Ends the running phase and starts `name`, which runs alongside the
    /// mutators (concurrent marking or sweeping).
    pub fn concurrent_phase(&mut self, name: &'static str) {
        self.begin(name, true);
    }

    /// Ends the running phase and returns every phase's time, in order.
    pub fn finish(mut self) -> Vec<PhaseTime> {
        self.end_current(Instant::now());
        self.phases
    }

    fn begin(&mut self, name: &'static str, concurrent: bool) {
        let now = Instant::now();
        // The previous span is exited (dropped) before the next is entered.
        self.end_current(now);
        let span = tracing::info_span!("gc_phase", name, concurrent).entered();
        self.current = Some(RunningPhase {
            name,
            concurrent,
            since: now,
            _span: span,
        });
    }

    fn end_current(&mut self, now: Instant) {
        if let Some(phase) = self.current.take() {
            self.phases.push(PhaseTime {
                name: phase.name,
                time: now.saturating_duration_since(phase.since),
                concurrent: phase.concurrent,
            });
        }
    }
}

/// One collection: what ran, why, how long it paused, and what it reclaimed.
///
/// Serializes with durations as fractional milliseconds (`start_ms`,
/// `pause_ms`, `concurrent_ms`, and `time_ms` per phase).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CollectionRecord {
    /// The collection's number in its heap, from 0 (set by [`GcStats::record`]).
    pub index: u64,
    /// What was collected.
    pub kind: CollectionKind,
    /// Why.
    pub cause: GcCause,
    /// When it started, since the heap was created ([`GcStats::since_created`]).
    #[serde(rename = "start_ms", serialize_with = "as_ms")]
    pub start: Duration,
    /// Total stop-the-world time (the sum of its pauses).
    #[serde(rename = "pause_ms", serialize_with = "as_ms")]
    pub pause: Duration,
    /// Time spent working alongside the mutators, outside the pauses.
    #[serde(rename = "concurrent_ms", serialize_with = "as_ms")]
    pub concurrent: Duration,
    /// The phases, in order.
    pub phases: Vec<PhaseTime>,
    /// Bytes in use in the collected heap before the collection.
    pub heap_before: usize,
    /// Bytes in use after it.
    pub heap_after: usize,
    /// Bytes reclaimed.
    pub freed_bytes: usize,
    /// Objects reclaimed.
    pub objects_freed: usize,
    /// Bytes copied from the young into the tenured generation.
    pub promoted_bytes: usize,
}

impl CollectionRecord {
    /// A record of the given phases: `pause` is the time of the
    /// stop-the-world phases, `concurrent` that of the concurrent ones; the
    /// sizes are zero and `start` is zero (set them with struct-update
    /// syntax, as in the [module example](self)).
    pub fn new(kind: CollectionKind, cause: GcCause, phases: Vec<PhaseTime>) -> CollectionRecord {
        let total = |concurrent: bool| {
            phases
                .iter()
                .filter(|p| p.concurrent == concurrent)
                .map(|p| p.time)
                .sum()
        };
        CollectionRecord {
            index: 0,
            kind,
            cause,
            start: Duration::ZERO,
            pause: total(false),
            concurrent: total(true),
            heap_before: 0,
            heap_after: 0,
            freed_bytes: 0,
            objects_freed: 0,
            promoted_bytes: 0,
            phases,
        }
    }

    /// The individual pauses: each run of consecutive stop-the-world phases.
    /// A record without phases is one pause of length `pause`.
    pub fn pauses(&self) -> impl Iterator<Item = Duration> + '_ {
        let without_phases = self.phases.is_empty().then_some(self.pause);
        let mut phases = self.phases.iter().peekable();
        let runs = std::iter::from_fn(move || {
            while phases.next_if(|p| p.concurrent).is_some() {}
            let mut run = None;
            while let Some(p) = phases.next_if(|p| !p.concurrent) {
                *run.get_or_insert(Duration::ZERO) += p.time;
            }
            run
        });
        without_phases.into_iter().chain(runs)
    }
}

/// Log-linear buckets per power of two (2^7 = 128): a bucket is at most
/// 1/128 of its values wide, and a percentile is reported as the bucket's
/// middle, so within 1/256 of the truth.
const SUB_BITS: u32 = 7;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Values from 2^MAX_BITS ns (about 137 s) up share one overflow bucket.
const MAX_BITS: u32 = 37;
/// One exact group for 0..128 ns, then one group per power of two.
const BUCKETS: usize = (MAX_BITS - SUB_BITS + 1) as usize * SUB_BUCKETS;
/// The bucket of every value from `2^MAX_BITS` ns up.
const OVERFLOW: usize = BUCKETS;

/// A histogram of pause times: every pause recorded in O(1), in fixed
/// memory (about 31 KiB, allocated once), with no dependency.
///
/// Buckets are log-linear like HdrHistogram's: exact below 128 ns, then 128
/// buckets per power of two up to about 137 s ([`MAX_TRACKED`](Self::MAX_TRACKED)).
/// Count, total, minimum, maximum and mean are exact; percentiles are within
/// [`RELATIVE_ERROR`](Self::RELATIVE_ERROR) (0.4%) of the nearest-rank
/// percentile of the recorded values (percentiles that fall among pauses
/// longer than `MAX_TRACKED` are reported as the exact maximum).
#[derive(Clone)]
pub struct PauseHistogram {
    counts: Box<[u64]>,
    count: u64,
    total_ns: u64,
    min_ns: u64,
    max_ns: u64,
}

impl Default for PauseHistogram {
    fn default() -> Self {
        PauseHistogram::new()
    }
}

impl PauseHistogram {
    /// The largest relative error of a percentile.
    pub const RELATIVE_ERROR: f64 = 1.0 / 256.0;

    /// Pauses up to this long get percentiles within `RELATIVE_ERROR`.
    pub const MAX_TRACKED: Duration = Duration::from_nanos(1 << MAX_BITS);

    /// An empty histogram.
    pub fn new() -> PauseHistogram {
        PauseHistogram {
            counts: vec![0; BUCKETS + 1].into_boxed_slice(),
            count: 0,
            total_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    /// Records one pause.
    #[inline]
    pub fn record(&mut self, pause: Duration) {
        let ns = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(ns)] += 1;
        self.count += 1;
        self.total_ns = self.total_ns.saturating_add(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// How many pauses were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of all pauses (exact).
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_ns)
    }

    /// The shortest pause (exact; zero when empty).
    pub fn min(&self) -> Duration {
        Duration::from_nanos(if self.count == 0 { 0 } else { self.min_ns })
    }

    /// The longest pause (exact; zero when empty).
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The mean pause (zero when empty).
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.total_ns.checked_div(self.count).unwrap_or(0))
    }

    /// The median pause.
    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The 90th-percentile pause.
    pub fn p90(&self) -> Duration {
        self.percentile(90.0)
    }

    /// The 99th-percentile pause.
    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }

    /// The nearest-rank `p`th percentile: the smallest recorded pause that
    /// at least `p` percent of the pauses do not exceed, within
    /// [`RELATIVE_ERROR`](Self::RELATIVE_ERROR). `0.0` gives the minimum,
    /// `100.0` the maximum; zero when empty.
    ///
    /// # Panics
    ///
    /// If `p` is not within `0.0..=100.0`.
    pub fn percentile(&self, p: f64) -> Duration {
        assert!(
            (0.0..=100.0).contains(&p),
            "PauseHistogram::percentile: {p} is not a percentile (0 to 100)"
        );
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0 * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == 1 {
            return self.min();
        }
        if rank == self.count {
            return self.max();
        }
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                if i == OVERFLOW {
                    return self.max();
                }
                let (low, width) = bucket_range(i);
                let middle = low + (width - 1) / 2;
                return Duration::from_nanos(middle.clamp(self.min_ns, self.max_ns));
            }
        }
        unreachable!("the bucket counts add up to the pause count")
    }
}

impl fmt::Debug for PauseHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PauseHistogram")
            .field("count", &self.count)
            .field("total", &self.total())
            .field("min", &self.min())
            .field("p50", &self.p50())
            .field("p99", &self.p99())
            .field("max", &self.max())
            .finish()
    }
}

/// The bucket holding `ns` nanoseconds.
#[inline]
fn bucket_of(ns: u64) -> usize {
    if ns < SUB_BUCKETS as u64 {
        return ns as usize;
    }
    if ns >> MAX_BITS != 0 {
        return OVERFLOW;
    }
    let bits = u64::BITS - 1 - ns.leading_zeros(); // SUB_BITS..MAX_BITS
    let shift = bits - SUB_BITS;
    let group = (shift + 1) as usize;
    group * SUB_BUCKETS + (ns >> shift) as usize - SUB_BUCKETS
}

/// The smallest value of bucket `i` (below `OVERFLOW`) and its width.
fn bucket_range(i: usize) -> (u64, u64) {
    let (group, sub) = (i / SUB_BUCKETS, (i % SUB_BUCKETS) as u64);
    if group == 0 {
        return (sub, 1);
    }
    let shift = group as u32 - 1;
    ((SUB_BUCKETS as u64 + sub) << shift, 1 << shift)
}

/// The running statistics of one heap: the last records, totals that are
/// never dropped, and the pause histogram.
///
/// The collector calls [`record`](Self::record) once per collection (inside
/// its last pause); tools read [`summary`](Self::summary),
/// [`recent`](Self::recent) or [`to_json`](Self::to_json) from any thread.
/// The state sits behind an allocation-free [`rtmem_base::Mutex`], held only
/// for a few additions per collection.
pub struct GcStats {
    collector: GcKind,
    created: Instant,
    capacity: usize,
    state: Mutex<StatsState>,
}

struct StatsState {
    recent: VecDeque<CollectionRecord>,
    by_kind: [u64; CollectionKind::COUNT],
    by_cause: [u64; GcCause::COUNT],
    concurrent: Duration,
    freed_bytes: u64,
    objects_freed: u64,
    promoted_bytes: u64,
    pauses: PauseHistogram,
}

impl GcStats {
    /// How many records [`GcStats::new`] keeps.
    pub const DEFAULT_RECORDS: usize = 1024;

    /// Statistics for a heap managed by `collector`, created now, keeping
    /// the last [`DEFAULT_RECORDS`](Self::DEFAULT_RECORDS) records.
    pub fn new(collector: GcKind) -> GcStats {
        GcStats::with_capacity(collector, GcStats::DEFAULT_RECORDS)
    }

    /// Statistics keeping the last `records` records (0 keeps only the totals).
    /// The ring is allocated here, so recording never grows it.
    pub fn with_capacity(collector: GcKind, records: usize) -> GcStats {
        GcStats {
            collector,
            created: Instant::now(),
            capacity: records,
            state: Mutex::new(StatsState {
                recent: VecDeque::with_capacity(records),
                by_kind: [0; CollectionKind::COUNT],
                by_cause: [0; GcCause::COUNT],
                concurrent: Duration::ZERO,
                freed_bytes: 0,
                objects_freed: 0,
                promoted_bytes: 0,
                pauses: PauseHistogram::new(),
            }),
        }
    }

    /// The collector these statistics describe.
    pub fn collector(&self) -> GcKind {
        self.collector
    }

    /// How many records are kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The time from the heap's creation to `at` (zero if `at` is earlier):
    /// a record's `start`.
    pub fn since_created(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.created)
    }

    /// Adds a collection: numbers it (its `index` is overwritten), adds its
    /// pauses to the histogram and its counts to the totals, and keeps it in
    /// the ring of recent records (dropping the oldest when full). Returns
    /// the index. Emits a `tracing` debug event per collection.
    ///
    /// In debug builds, panics if the collector does not perform the
    /// record's kind ([`GcKind::collection_kinds`]).
    pub fn record(&self, mut record: CollectionRecord) -> u64 {
        debug_assert!(
            self.collector.collection_kinds().contains(&record.kind),
            "GcStats::record: collector `{}` does not perform `{}` collections",
            self.collector,
            record.kind
        );
        let mut s = self.state.lock();
        let index = s.by_kind.iter().sum();
        record.index = index;
        s.by_kind[record.kind as usize] += 1;
        s.by_cause[record.cause as usize] += 1;
        s.concurrent += record.concurrent;
        s.freed_bytes += record.freed_bytes as u64;
        s.objects_freed += record.objects_freed as u64;
        s.promoted_bytes += record.promoted_bytes as u64;
        for pause in record.pauses() {
            s.pauses.record(pause);
        }
        let (kind, cause, pause) = (record.kind, record.cause, record.pause);
        let (heap_before, heap_after) = (record.heap_before, record.heap_after);
        if self.capacity > 0 {
            if s.recent.len() == self.capacity {
                s.recent.pop_front();
            }
            s.recent.push_back(record);
        }
        // Not under the lock: a subscriber may read these statistics.
        drop(s);
        tracing::debug!(
            index,
            kind = kind.name(),
            cause = cause.name(),
            pause_ms = as_ms_f64(pause),
            heap_before,
            heap_after,
            "gc"
        );
        index
    }

    /// How many collections have been recorded.
    pub fn gc_count(&self) -> u64 {
        self.state.lock().by_kind.iter().sum()
    }

    /// The most recent record.
    pub fn last(&self) -> Option<CollectionRecord> {
        self.state.lock().recent.back().cloned()
    }

    /// The records kept, oldest first.
    pub fn recent(&self) -> Vec<CollectionRecord> {
        self.state.lock().recent.iter().cloned().collect()
    }

    /// A copy of the pause histogram (every pause so far).
    pub fn pause_histogram(&self) -> PauseHistogram {
        self.state.lock().pauses.clone()
    }

    /// The totals and pause statistics since the heap was created.
    pub fn summary(&self) -> GcSummary {
        self.summary_of(&self.state.lock())
    }

    /// The summary and the records kept, taken under one lock.
    pub fn snapshot(&self) -> GcStatsSnapshot {
        let s = self.state.lock();
        GcStatsSnapshot {
            summary: self.summary_of(&s),
            collections: s.recent.iter().cloned().collect(),
        }
    }

    /// The [`snapshot`](Self::snapshot) as JSON: `{"summary": {..}, "collections": [..]}`.
    pub fn to_json(&self) -> String {
        self.snapshot().to_json()
    }

    fn summary_of(&self, s: &StatsState) -> GcSummary {
        let count = |kind: CollectionKind| s.by_kind[kind as usize];
        let h = &s.pauses;
        GcSummary {
            collector: self.collector,
            uptime_ms: as_ms_f64(self.created.elapsed()),
            gc_count: s.by_kind.iter().sum(),
            young_count: count(CollectionKind::Young),
            full_count: count(CollectionKind::Full),
            concurrent_count: count(CollectionKind::ConcurrentCycle),
            causes: GcCause::ALL
                .into_iter()
                .filter(|&c| s.by_cause[c as usize] > 0)
                .map(|c| (c, s.by_cause[c as usize]))
                .collect(),
            pause_count: h.count(),
            pause_total_ms: as_ms_f64(h.total()),
            pause_max_ms: as_ms_f64(h.max()),
            pause_mean_ms: as_ms_f64(h.mean()),
            pause_p50_ms: as_ms_f64(h.p50()),
            pause_p90_ms: as_ms_f64(h.p90()),
            pause_p99_ms: as_ms_f64(h.p99()),
            concurrent_total_ms: as_ms_f64(s.concurrent),
            freed_bytes: s.freed_bytes,
            objects_freed: s.objects_freed,
            promoted_bytes: s.promoted_bytes,
        }
    }
}

impl fmt::Debug for GcStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcStats")
            .field("collector", &self.collector)
            .field("capacity", &self.capacity)
            .field("summary", &self.summary())
            .finish()
    }
}

/// A table of the recent collections and the summary.
impl fmt::Display for GcStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// The totals of one heap since it was created. Times are in fractional
/// milliseconds; the JSON names are the field names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GcSummary {
    /// The collector.
    pub collector: GcKind,
    /// Time since the heap was created.
    pub uptime_ms: f64,
    /// Collections of every kind.
    pub gc_count: u64,
    /// Young collections.
    pub young_count: u64,
    /// Full (stop-the-world, whole-heap) collections.
    pub full_count: u64,
    /// Concurrent cycles.
    pub concurrent_count: u64,
    /// Collections per cause (causes that never occurred are left out).
    pub causes: BTreeMap<GcCause, u64>,
    /// Individual pauses (a concurrent cycle has several).
    pub pause_count: u64,
    /// Total stop-the-world time.
    pub pause_total_ms: f64,
    /// Longest pause (exact).
    pub pause_max_ms: f64,
    /// Mean pause.
    pub pause_mean_ms: f64,
    /// Median pause (within [`PauseHistogram::RELATIVE_ERROR`]).
    pub pause_p50_ms: f64,
    /// 90th-percentile pause.
    pub pause_p90_ms: f64,
    /// 99th-percentile pause.
    pub pause_p99_ms: f64,
    /// Total time of concurrent phases.
    pub concurrent_total_ms: f64,
    /// Bytes reclaimed.
    pub freed_bytes: u64,
    /// Objects reclaimed.
    pub objects_freed: u64,
    /// Bytes promoted to the tenured generation.
    pub promoted_bytes: u64,
}

impl fmt::Display for GcSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} collections by `{}` in {:.1} ms (young {}, full {}, concurrent-cycle {})",
            self.gc_count,
            self.collector,
            self.uptime_ms,
            self.young_count,
            self.full_count,
            self.concurrent_count
        )?;
        if !self.causes.is_empty() {
            f.write_str("\ncauses: ")?;
            for (i, (cause, n)) in self.causes.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}{cause} {n}")?;
            }
        }
        write!(
            f,
            "\n{} pauses: total {:.3} ms, max {:.3} ms, mean {:.3} ms, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
            self.pause_count,
            self.pause_total_ms,
            self.pause_max_ms,
            self.pause_mean_ms,
            self.pause_p50_ms,
            self.pause_p90_ms,
            self.pause_p99_ms
        )?;
        write!(
            f,
            "\nconcurrent {:.3} ms, freed {} ({} objects), promoted {}",
            self.concurrent_total_ms,
            format_bytes(self.freed_bytes),
            self.objects_freed,
            format_bytes(self.promoted_bytes)
        )
    }
}

/// The summary and the records kept, as one value (what
/// [`GcStats::to_json`] serializes and `Display` prints).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GcStatsSnapshot {
    /// The totals.
    pub summary: GcSummary,
    /// The records kept, oldest first.
    pub collections: Vec<CollectionRecord>,
}

impl GcStatsSnapshot {
    /// As JSON: `{"summary": {..}, "collections": [..]}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("GC statistics (numbers and names) always serialize")
    }
}

/// One line per collection kept, then the summary.
impl fmt::Display for GcStatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>6} {:>12} {:<16} {:<24} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10}",
            "#",
            "start",
            "kind",
            "cause",
            "pause",
            "concurrent",
            "before",
            "after",
            "freed",
            "promoted"
        )?;
        for r in &self.collections {
            writeln!(
                f,
                "{:>6} {:>9.1} ms {:<16} {:<24} {:>8.3} ms {:>8.3} ms {:>10} {:>10} {:>10} {:>10}",
                r.index,
                as_ms_f64(r.start),
                r.kind.name(),
                r.cause.name(),
                as_ms_f64(r.pause),
                as_ms_f64(r.concurrent),
                format_bytes(r.heap_before as u64),
                format_bytes(r.heap_after as u64),
                format_bytes(r.freed_bytes as u64),
                format_bytes(r.promoted_bytes as u64)
            )?;
        }
        let dropped = self.summary.gc_count - self.collections.len() as u64;
        if dropped > 0 {
            writeln!(f, "({dropped} older collections not kept)")?;
        }
        self.summary.fmt(f)
    }
}

fn as_ms_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Serializes a duration as fractional milliseconds.
fn as_ms<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(as_ms_f64(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut expected_low = 0;
        for i in 0..BUCKETS {
            let (low, width) = bucket_range(i);
            assert_eq!(low, expected_low, "bucket {i} starts where {} ended", i - 1);
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(low + width - 1), i);
            // Never wider than 1/128 of its smallest value (beyond the exact ones).
            assert!(
                width == 1 || width * SUB_BUCKETS as u64 <= low,
                "bucket {i}"
            );
            expected_low = low + width;
        }
        assert_eq!(expected_low, 1 << MAX_BITS);
        assert_eq!(bucket_of(1 << MAX_BITS), OVERFLOW);
        assert_eq!(bucket_of(u64::MAX), OVERFLOW);
    }
}
