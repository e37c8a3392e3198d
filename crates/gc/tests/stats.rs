//! Collection statistics: names, phase timing and spans, records, the pause
//! histogram against exact percentiles, totals, JSON and the table.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use rtmem_gc::stats::{
    CollectionKind, CollectionRecord, GcCause, GcKind, GcStats, PauseHistogram, PhaseTime,
    PhaseTimer,
};

const MIB: usize = 1 << 20;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn stw(name: &'static str, time: Duration) -> PhaseTime {
    PhaseTime {
        name,
        time,
        concurrent: false,
    }
}

fn conc(name: &'static str, time: Duration) -> PhaseTime {
    PhaseTime {
        name,
        time,
        concurrent: true,
    }
}

// ---------------------------------------------------------------- names

#[test]
fn names_round_trip_and_serialize_as_their_spelling() {
    fn check<T>(all: &[T], names: &[&str])
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + serde::Serialize,
        T: std::str::FromStr<Err = rtmem_gc::stats::UnknownName>,
    {
        let shown: Vec<String> = all.iter().map(T::to_string).collect();
        assert_eq!(shown, names);
        for &k in all {
            assert_eq!(k.to_string().parse::<T>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.to_string());
        }
    }
    check(&GcKind::ALL, &["epsilon", "stw", "gen", "gen-concurrent"]);
    check(&CollectionKind::ALL, &["young", "full", "concurrent-cycle"]);
    check(
        &GcCause::ALL,
        &[
            "allocation-failure",
            "heap-occupancy",
            "adaptive-growth",
            "young-full",
            "explicit",
            "idle",
            "stress",
            "concurrent-mode-failure",
        ],
    );
    assert_eq!(GcCause::COUNT, 8);
}

#[test]
fn an_unknown_collector_names_the_value_and_the_choices() {
    let err = "g1".parse::<GcKind>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown collector `g1` (expected one of: epsilon, stw, gen, gen-concurrent)"
    );
    let err = "oom".parse::<GcCause>().unwrap_err().to_string();
    assert!(
        err.contains("`oom`") && err.contains("concurrent-mode-failure"),
        "{err}"
    );
}

#[test]
fn each_collector_lists_the_collections_it_performs() {
    use CollectionKind::*;
    assert_eq!(GcKind::Epsilon.collection_kinds(), &[]);
    assert_eq!(GcKind::Stw.collection_kinds(), &[Full]);
    assert_eq!(GcKind::Gen.collection_kinds(), &[Young, Full]);
    assert_eq!(
        GcKind::GenConcurrent.collection_kinds(),
        &[Young, ConcurrentCycle, Full]
    );
}

// ---------------------------------------------------------------- phases

/// A `tracing` subscriber that logs span entries and exits as `+name` / `-name`
/// (with the span's `name` field), so the test sees what a real one would.
struct SpanLog {
    spans: Mutex<Vec<String>>,
    log: Arc<Mutex<Vec<String>>>,
}

struct NameField(String);

impl tracing::field::Visit for NameField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "name" {
            self.0 = value.to_owned();
        }
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        if field.name() == "concurrent" && value {
            self.0.push_str(" (concurrent)");
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl tracing::Subscriber for SpanLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        assert_eq!(span.metadata().name(), "gc_phase");
        let mut name = NameField(String::new());
        span.record(&mut name);
        let mut spans = self.spans.lock().unwrap();
        spans.push(name.0);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, id: &tracing::span::Id) {
        let name = self.spans.lock().unwrap()[id.into_u64() as usize - 1].clone();
        self.log.lock().unwrap().push(format!("+{name}"));
    }
    fn exit(&self, id: &tracing::span::Id) {
        let name = self.spans.lock().unwrap()[id.into_u64() as usize - 1].clone();
        self.log.lock().unwrap().push(format!("-{name}"));
    }
}

#[test]
fn phase_timer_times_each_phase_inside_its_own_span() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let subscriber = SpanLog {
        spans: Mutex::new(Vec::new()),
        log: log.clone(),
    };
    let phases = tracing::subscriber::with_default(subscriber, || {
        let mut t = PhaseTimer::start();
        t.phase("initial-mark");
        std::thread::sleep(ms(2));
        t.concurrent_phase("mark");
        std::thread::sleep(ms(4));
        t.phase("remark");
        t.finish()
    });
    assert_eq!(
        *log.lock().unwrap(),
        [
            "+initial-mark",
            "-initial-mark",
            "+mark (concurrent)",
            "-mark (concurrent)",
            "+remark",
            "-remark"
        ]
    );
    let names: Vec<_> = phases.iter().map(|p| (p.name, p.concurrent)).collect();
    assert_eq!(
        names,
        [("initial-mark", false), ("mark", true), ("remark", false)]
    );
    assert!(phases[0].time >= ms(2), "{phases:?}");
    assert!(phases[1].time >= ms(4), "{phases:?}");

    let record = CollectionRecord::new(
        CollectionKind::ConcurrentCycle,
        GcCause::HeapOccupancy,
        phases.clone(),
    );
    assert_eq!(record.pause, phases[0].time + phases[2].time);
    assert_eq!(record.concurrent, phases[1].time);
}

#[test]
fn a_timer_without_phases_has_none() {
    assert!(PhaseTimer::start().finish().is_empty());
}

#[test]
fn pauses_are_runs_of_stop_the_world_phases() {
    let record = CollectionRecord::new(
        CollectionKind::ConcurrentCycle,
        GcCause::AdaptiveGrowth,
        vec![
            stw("safepoint", ms(1)),
            stw("initial-mark", ms(2)),
            conc("mark", ms(50)),
            conc("preclean", ms(5)),
            stw("remark", ms(4)),
            conc("sweep", ms(30)),
        ],
    );
    assert_eq!(record.pause, ms(7));
    assert_eq!(record.concurrent, ms(85));
    assert_eq!(record.pauses().collect::<Vec<_>>(), [ms(3), ms(4)]);

    // Without phases, the record's pause is its one pause.
    let bare = CollectionRecord {
        pause: ms(9),
        ..CollectionRecord::new(CollectionKind::Full, GcCause::Explicit, Vec::new())
    };
    assert_eq!(bare.pauses().collect::<Vec<_>>(), [ms(9)]);
    // Only concurrent phases: no pause at all.
    let only_concurrent = CollectionRecord::new(
        CollectionKind::ConcurrentCycle,
        GcCause::Idle,
        vec![conc("sweep", ms(3))],
    );
    assert_eq!(only_concurrent.pauses().count(), 0);
}

// ---------------------------------------------------------------- histogram

/// The nearest-rank percentile of sorted values.
fn exact_percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn check_against_exact(values: &[u64]) {
    let mut h = PauseHistogram::new();
    for &ns in values {
        h.record(Duration::from_nanos(ns));
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    assert_eq!(h.count(), values.len() as u64);
    assert_eq!(h.total(), Duration::from_nanos(values.iter().sum()));
    assert_eq!(h.max(), Duration::from_nanos(*sorted.last().unwrap()));
    assert_eq!(h.min(), Duration::from_nanos(sorted[0]));
    assert_eq!(
        h.mean(),
        Duration::from_nanos(values.iter().sum::<u64>() / values.len() as u64)
    );
    for (p, got) in [
        (0.0, h.percentile(0.0)),
        (50.0, h.p50()),
        (90.0, h.p90()),
        (99.0, h.p99()),
        (99.9, h.percentile(99.9)),
        (100.0, h.percentile(100.0)),
    ] {
        let want = exact_percentile(&sorted, p) as f64;
        let got = got.as_nanos() as f64;
        let err = (got - want).abs() / want.max(1.0);
        assert!(
            err <= PauseHistogram::RELATIVE_ERROR,
            "p{p}: histogram {got} ns, exact {want} ns, relative error {err}"
        );
    }
    assert_eq!(h.percentile(100.0), h.max());
    assert_eq!(h.percentile(0.0), h.min());
}

/// A deterministic xorshift, for many values without a dependency.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn percentiles_match_a_sorted_vec_across_the_range() {
    // Log-uniform from 1 µs to 100 s: every power of two in the range.
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let values: Vec<u64> = (0..20_000)
        .map(|_| {
            let exp = 10.0 + (xorshift(&mut seed) % 10_000) as f64 / 10_000.0 * 26.5;
            2f64.powf(exp) as u64
        })
        .collect();
    assert!(*values.iter().min().unwrap() >= 1_000);
    assert!(*values.iter().max().unwrap() <= 100_000_000_000);
    check_against_exact(&values);

    // Typical pauses: 200 µs to 5 ms, with a few long outliers.
    let mut values: Vec<u64> = (0..5_000)
        .map(|_| 200_000 + xorshift(&mut seed) % 4_800_000)
        .collect();
    values.extend([40_000_000, 45_000_000, 90_000_000]);
    check_against_exact(&values);

    // Tiny values are exact.
    check_against_exact(&(0..128).collect::<Vec<_>>());
    check_against_exact(&[1_000; 10]);
    check_against_exact(&[7]);
}

#[test]
fn pauses_beyond_the_tracked_range_keep_an_exact_maximum() {
    let mut h = PauseHistogram::new();
    h.record(ms(1));
    h.record(Duration::from_secs(1000));
    assert_eq!(h.max(), Duration::from_secs(1000));
    assert_eq!(h.p99(), Duration::from_secs(1000));
    assert_eq!(h.total(), Duration::from_secs(1000) + ms(1));
    assert!(PauseHistogram::MAX_TRACKED > Duration::from_secs(100));
}

#[test]
fn an_empty_histogram_reports_zero() {
    let h = PauseHistogram::default();
    assert_eq!(h.count(), 0);
    for d in [h.total(), h.min(), h.max(), h.mean(), h.p50(), h.p99()] {
        assert_eq!(d, Duration::ZERO);
    }
}

#[test]
#[should_panic(expected = "101 is not a percentile")]
fn a_percentile_above_100_panics() {
    PauseHistogram::new().percentile(101.0);
}

proptest! {
    #[test]
    fn percentiles_are_within_the_relative_error(
        values in proptest::collection::vec(
            prop_oneof![0..2_000u64, 1_000..10_000_000u64, 1_000..100_000_000_000u64],
            1..300,
        ),
    ) {
        check_against_exact(&values);
    }
}

// ---------------------------------------------------------------- GcStats

fn young(pause_ms: u64, freed: usize, promoted: usize) -> CollectionRecord {
    CollectionRecord {
        heap_before: 16 * MIB,
        heap_after: 16 * MIB - freed,
        freed_bytes: freed,
        objects_freed: freed / 64,
        promoted_bytes: promoted,
        ..CollectionRecord::new(
            CollectionKind::Young,
            GcCause::YoungFull,
            vec![stw("copy", ms(pause_ms))],
        )
    }
}

#[test]
fn records_are_numbered_and_the_ring_keeps_the_last_ones() {
    let stats = GcStats::with_capacity(GcKind::Gen, 3);
    assert_eq!(stats.capacity(), 3);
    assert_eq!(stats.collector(), GcKind::Gen);
    for i in 0..5 {
        assert_eq!(stats.record(young(i + 1, MIB, 1024)), i);
    }
    let recent = stats.recent();
    assert_eq!(
        recent.iter().map(|r| r.index).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(recent[0].pause, ms(3));
    assert_eq!(stats.last().unwrap().index, 4);
    assert_eq!(stats.gc_count(), 5);

    // The totals never drop.
    let s = stats.summary();
    assert_eq!((s.gc_count, s.young_count, s.full_count), (5, 5, 0));
    assert_eq!(s.pause_count, 5);
    assert_eq!(s.pause_total_ms, 15.0);
    assert_eq!(s.pause_max_ms, 5.0);
    assert_eq!(s.pause_mean_ms, 3.0);
    assert_eq!(s.freed_bytes, 5 * MIB as u64);
    assert_eq!(s.objects_freed, 5 * (MIB / 64) as u64);
    assert_eq!(s.promoted_bytes, 5 * 1024);
    assert_eq!(s.causes.len(), 1);
    assert_eq!(s.causes[&GcCause::YoungFull], 5);
    assert_eq!(stats.pause_histogram().count(), 5);
}

#[test]
fn no_records_kept_with_capacity_zero_but_totals_are() {
    let stats = GcStats::with_capacity(GcKind::Stw, 0);
    let full = CollectionRecord::new(
        CollectionKind::Full,
        GcCause::AllocationFailure,
        vec![stw("mark", ms(2))],
    );
    stats.record(full.clone());
    stats.record(full);
    assert!(stats.recent().is_empty());
    assert!(stats.last().is_none());
    assert_eq!(stats.summary().gc_count, 2);
    assert_eq!(stats.summary().pause_total_ms, 4.0);
}

#[test]
fn a_concurrent_cycle_counts_each_pause_and_its_concurrent_time() {
    let stats = GcStats::new(GcKind::GenConcurrent);
    assert_eq!(stats.capacity(), GcStats::DEFAULT_RECORDS);
    stats.record(CollectionRecord::new(
        CollectionKind::ConcurrentCycle,
        GcCause::HeapOccupancy,
        vec![
            stw("initial-mark", ms(1)),
            conc("mark", ms(40)),
            stw("remark", ms(3)),
            conc("sweep", ms(20)),
        ],
    ));
    stats.record(CollectionRecord::new(
        CollectionKind::Full,
        GcCause::ConcurrentModeFailure,
        vec![stw("mark", ms(30)), stw("sweep", ms(10))],
    ));
    let s = stats.summary();
    assert_eq!((s.gc_count, s.concurrent_count, s.full_count), (2, 1, 1));
    assert_eq!(s.pause_count, 3, "initial mark, remark, and the full pause");
    assert_eq!(s.pause_max_ms, 40.0);
    assert_eq!(s.pause_total_ms, 44.0);
    assert_eq!(s.concurrent_total_ms, 60.0);
    assert_eq!(s.causes[&GcCause::ConcurrentModeFailure], 1);
    assert_eq!(s.causes[&GcCause::HeapOccupancy], 1);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "collector `stw` does not perform `young` collections")]
fn a_record_the_collector_cannot_produce_is_caught_in_debug_builds() {
    GcStats::new(GcKind::Stw).record(young(1, 0, 0));
}

#[test]
fn json_has_the_summary_and_the_records_in_milliseconds() {
    let stats = GcStats::new(GcKind::Gen);
    stats.record(young(2, 4 * MIB, 512));
    stats.record(CollectionRecord {
        start: ms(1500),
        heap_before: 100 * MIB,
        heap_after: 40 * MIB,
        freed_bytes: 60 * MIB,
        ..CollectionRecord::new(
            CollectionKind::Full,
            GcCause::Explicit,
            vec![stw("mark", ms(6)), stw("sweep", ms(4))],
        )
    });
    let json: serde_json::Value = serde_json::from_str(&stats.to_json()).unwrap();
    let summary = &json["summary"];
    assert_eq!(summary["collector"], "gen");
    assert_eq!(summary["gc_count"], 2);
    assert_eq!(summary["young_count"], 1);
    assert_eq!(summary["full_count"], 1);
    assert_eq!(summary["pause_max_ms"], 10.0);
    assert_eq!(summary["pause_total_ms"], 12.0);
    assert_eq!(summary["pause_p99_ms"], 10.0);
    // p50 of {2 ms, 10 ms} is 2 ms, within the histogram's precision.
    let p50 = summary["pause_p50_ms"].as_f64().unwrap();
    assert!(
        (p50 - 2.0).abs() <= 2.0 * PauseHistogram::RELATIVE_ERROR,
        "{p50}"
    );
    assert_eq!(summary["causes"]["explicit"], 1);
    assert_eq!(summary["causes"]["young-full"], 1);
    assert_eq!(summary["freed_bytes"], 64 * MIB);

    let full = &json["collections"][1];
    assert_eq!(full["index"], 1);
    assert_eq!(full["kind"], "full");
    assert_eq!(full["cause"], "explicit");
    assert_eq!(full["start_ms"], 1500.0);
    assert_eq!(full["pause_ms"], 10.0);
    assert_eq!(full["concurrent_ms"], 0.0);
    assert_eq!(full["heap_before"], 100 * MIB);
    assert_eq!(full["heap_after"], 40 * MIB);
    assert_eq!(
        full["phases"],
        serde_json::json!([
            {"name": "mark", "time_ms": 6.0, "concurrent": false},
            {"name": "sweep", "time_ms": 4.0, "concurrent": false},
        ])
    );
    assert_eq!(json["collections"].as_array().unwrap().len(), 2);
}

#[test]
fn display_prints_a_line_per_collection_and_the_summary() {
    let stats = GcStats::new(GcKind::Gen);
    stats.record(young(2, 4 * MIB, 512));
    stats.record(young(3, 2 * MIB, 0));
    let table = stats.to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("kind") && lines[0].contains("pause"),
        "{table}"
    );
    assert!(
        lines[1].contains("young") && lines[1].contains("young-full"),
        "{table}"
    );
    assert!(
        lines[1].contains("2.000 ms") && lines[1].contains("4.0 MiB"),
        "{table}"
    );
    assert!(lines[2].contains("3.000 ms"), "{table}");
    assert!(lines[3].starts_with("2 collections by `gen`"), "{table}");
    assert!(table.contains("causes: young-full 2"), "{table}");
    assert!(
        table.contains("2 pauses: total 5.000 ms, max 3.000 ms"),
        "{table}"
    );
    assert!(table.contains("freed 6.0 MiB"), "{table}");
    assert!(!table.contains("not kept"), "{table}");

    let small = GcStats::with_capacity(GcKind::Gen, 1);
    small.record(young(2, MIB, 0));
    small.record(CollectionRecord {
        cause: GcCause::Explicit,
        ..young(3, MIB, 0)
    });
    let table = small.to_string();
    assert_eq!(table.lines().count(), 1 + 1 + 1 + 4, "{table}");
    assert!(table.contains("(1 older collections not kept)"), "{table}");
    assert!(
        table.contains("causes: young-full 1, explicit 1"),
        "{table}"
    );
}

#[test]
fn readers_see_consistent_totals_while_the_collector_records() {
    let stats = GcStats::with_capacity(GcKind::Gen, 16);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..500 {
                stats.record(young(1, 1024, 0));
            }
        });
        for _ in 0..50 {
            let snap = stats.snapshot();
            // Taken under one lock: the totals match the pauses counted.
            assert_eq!(snap.summary.gc_count, snap.summary.pause_count);
            assert_eq!(snap.summary.freed_bytes, 1024 * snap.summary.gc_count);
            assert!(snap.collections.len() <= 16);
            std::thread::yield_now();
        }
    });
    assert_eq!(stats.summary().gc_count, 500);
}

#[test]
fn since_created_measures_from_the_heap_creation() {
    let before = std::time::Instant::now();
    let stats = GcStats::new(GcKind::Stw);
    assert_eq!(stats.since_created(before), Duration::ZERO);
    let later = std::time::Instant::now() + ms(5);
    assert!(stats.since_created(later) >= ms(5));
}
