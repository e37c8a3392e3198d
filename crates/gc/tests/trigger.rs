//! The collection trigger: thresholds per policy, requests, stress mode, names.

use rtmem_gc::stats::GcCause;
use rtmem_gc::trigger::{Trigger, TriggerConfig, TriggerKind};

use proptest::prelude::*;

const MIB: usize = 1 << 20;

fn config(
    kind: TriggerKind,
    growth_percent: u32,
    occupancy_percent: u32,
    min_heap: usize,
) -> TriggerConfig {
    TriggerConfig {
        kind,
        growth_percent,
        occupancy_percent,
        min_heap,
    }
}

#[test]
fn occupancy_collects_at_its_percent_of_the_limit() {
    let t = Trigger::new(config(TriggerKind::Occupancy, 100, 75, 8 * MIB), 100 * MIB);
    assert_eq!(t.threshold(), 75 * MIB);
    assert_eq!(t.should_collect(75 * MIB - 1), None);
    assert_eq!(t.should_collect(75 * MIB), Some(GcCause::HeapOccupancy));
    assert_eq!(t.should_collect(100 * MIB), Some(GcCause::HeapOccupancy));
    // The live size does not move an occupancy threshold.
    t.collected(60 * MIB);
    assert_eq!(t.threshold(), 75 * MIB);
    t.collected(0);
    assert_eq!(t.threshold(), 75 * MIB);
}

#[test]
fn occupancy_never_goes_below_min_heap_nor_above_the_limit() {
    let t = Trigger::new(config(TriggerKind::Occupancy, 100, 10, 32 * MIB), 100 * MIB);
    assert_eq!(t.threshold(), 32 * MIB, "10% of 100 MiB is below min_heap");
    assert_eq!(t.should_collect(31 * MIB), None);
    let t = Trigger::new(
        config(TriggerKind::Occupancy, 100, 75, 200 * MIB),
        100 * MIB,
    );
    assert_eq!(
        t.threshold(),
        100 * MIB,
        "min_heap above the limit is capped"
    );
    // An occupancy percent above 100 is capped at the limit, too.
    let c = config(TriggerKind::Occupancy, 100, 150, 0);
    assert_eq!(c.threshold(100 * MIB, 0), 100 * MIB);
}

#[test]
fn adaptive_grows_from_the_live_size() {
    let t = Trigger::new(config(TriggerKind::Adaptive, 100, 75, 8 * MIB), 100 * MIB);
    assert_eq!(
        t.threshold(),
        8 * MIB,
        "before the first collection: min_heap"
    );
    t.collected(10 * MIB);
    assert_eq!(t.threshold(), 20 * MIB);
    assert_eq!(t.should_collect(20 * MIB - 1), None);
    assert_eq!(t.should_collect(20 * MIB), Some(GcCause::AdaptiveGrowth));
    // Min-heap floor: 1 MiB live doubles to 2 MiB, below 8 MiB.
    t.collected(MIB);
    assert_eq!(t.threshold(), 8 * MIB);
    // Cap: 80 MiB live would double to 160 MiB, above the 100 MiB limit.
    t.collected(80 * MIB);
    assert_eq!(t.threshold(), 100 * MIB);
    t.collected(usize::MAX);
    assert_eq!(t.threshold(), 100 * MIB);

    let half = Trigger::new(config(TriggerKind::Adaptive, 50, 75, 0), 100 * MIB);
    half.collected(10 * MIB);
    assert_eq!(half.threshold(), 15 * MIB);
}

#[test]
fn explicit_and_idle_requests_come_first_and_are_cleared_by_a_collection() {
    let t = Trigger::new(config(TriggerKind::Occupancy, 100, 75, 0), 100 * MIB);
    assert_eq!(t.pending(), None);
    t.request(GcCause::Idle);
    assert_eq!(t.should_collect(0), Some(GcCause::Idle));
    // An explicit request replaces an idle offer ...
    t.request(GcCause::Explicit);
    assert_eq!(t.should_collect(0), Some(GcCause::Explicit));
    // ... and is not replaced by one.
    t.request(GcCause::Idle);
    assert_eq!(t.pending(), Some(GcCause::Explicit));
    // A request is reported before the heap-size cause.
    assert_eq!(t.should_collect(100 * MIB), Some(GcCause::Explicit));
    t.collected(0);
    assert_eq!(t.pending(), None);
    assert_eq!(t.should_collect(0), None);
    assert_eq!(t.should_collect(75 * MIB), Some(GcCause::HeapOccupancy));
}

#[test]
fn any_thread_may_request() {
    fn shared<T: Send + Sync>(t: T) -> T {
        t
    }
    let t = shared(Trigger::new(
        config(TriggerKind::Adaptive, 100, 75, MIB),
        100 * MIB,
    ));
    std::thread::scope(|s| {
        s.spawn(|| t.request(GcCause::Explicit));
    });
    assert_eq!(t.should_collect(0), Some(GcCause::Explicit));
}

#[test]
fn stress_mode_collects_every_n_allocations() {
    let t =
        Trigger::new(config(TriggerKind::Occupancy, 100, 75, 0), 100 * MIB).with_stress_every(3);
    assert_eq!(t.stress_every(), 3);
    let due: Vec<bool> = (0..7).map(|_| t.note_allocation()).collect();
    assert_eq!(due, [false, false, true, false, false, true, false]);
    assert_eq!(t.should_collect(0), Some(GcCause::Stress));
    t.collected(0);
    assert_eq!(t.should_collect(0), None);
    assert!(
        !t.note_allocation(),
        "the 8th allocation is not a multiple of 3"
    );
    assert!(t.note_allocation());
    assert_eq!(t.should_collect(0), Some(GcCause::Stress));
}

#[test]
fn stress_mode_off_never_requests() {
    let t = Trigger::new(config(TriggerKind::Occupancy, 100, 75, 0), 100 * MIB);
    assert_eq!(t.stress_every(), 0);
    assert!((0..10_000).all(|_| !t.note_allocation()));
    assert_eq!(t.should_collect(0), None);
}

#[test]
fn stress_does_not_displace_an_explicit_request() {
    let t =
        Trigger::new(config(TriggerKind::Occupancy, 100, 75, 0), 100 * MIB).with_stress_every(1);
    t.request(GcCause::Explicit);
    assert!(t.note_allocation(), "a stress collection is still due");
    assert_eq!(t.should_collect(0), Some(GcCause::Explicit));
}

#[test]
fn trigger_kinds_round_trip_the_profile_spelling() {
    assert_eq!(
        TriggerKind::ALL,
        [TriggerKind::Occupancy, TriggerKind::Adaptive]
    );
    for kind in TriggerKind::ALL {
        assert_eq!(kind.to_string(), kind.name());
        assert_eq!(kind.name().parse::<TriggerKind>(), Ok(kind));
    }
    assert_eq!(TriggerKind::Occupancy.to_string(), "occupancy");
    assert_eq!(TriggerKind::Adaptive.to_string(), "adaptive");
    let err = "gogc".parse::<TriggerKind>().unwrap_err();
    assert_eq!(err.value, "gogc");
    assert_eq!(
        err.to_string(),
        "unknown trigger kind `gogc` (expected one of: occupancy, adaptive)"
    );
    // Spellings are exact: no case folding.
    assert!("Adaptive".parse::<TriggerKind>().is_err());
}

#[test]
fn trigger_config_serializes_like_the_profile() {
    let c = config(TriggerKind::Adaptive, 100, 75, 8 * MIB);
    let json: serde_json::Value = serde_json::to_value(c).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "kind": "adaptive",
            "growth_percent": 100,
            "occupancy_percent": 75,
            "min_heap": 8 * MIB,
        })
    );
    assert_eq!(c.cause(), GcCause::AdaptiveGrowth);
}

fn any_kind() -> impl Strategy<Value = TriggerKind> {
    prop_oneof![Just(TriggerKind::Occupancy), Just(TriggerKind::Adaptive)]
}

/// Sizes: mostly realistic, sometimes the extremes.
fn any_size() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0..(1usize << 34), 1 => any::<usize>(), 1 => Just(0), 1 => Just(usize::MAX)]
}

proptest! {
    #[test]
    fn threshold_stays_within_min_heap_and_the_limit(
        kind in any_kind(),
        growth in prop_oneof![0..=1000u32, any::<u32>()],
        occupancy in prop_oneof![0..=100u32, any::<u32>()],
        min_heap in any_size(),
        limit in any_size(),
        lives in proptest::collection::vec(any_size(), 0..8),
    ) {
        let t = Trigger::new(config(kind, growth, occupancy, min_heap), limit);
        let low = min_heap.min(limit);
        for live in std::iter::once(None).chain(lives.into_iter().map(Some)) {
            if let Some(live) = live {
                t.collected(live);
            }
            let threshold = t.threshold();
            prop_assert!(low <= threshold && threshold <= limit,
                "threshold {threshold} outside [{low}, {limit}]");
            prop_assert_eq!(t.should_collect(threshold), Some(t.config().cause()));
            if threshold > 0 {
                prop_assert_eq!(t.should_collect(threshold - 1), None);
            }
        }
    }
}

#[test]
fn a_heap_past_its_threshold_still_grows_before_the_next_collection() {
    let t = Trigger::new(config(TriggerKind::Occupancy, 100, 75, 0), 100 * MIB);
    t.collected(10 * MIB);
    assert_eq!(t.threshold(), 75 * MIB);
    // 80 MiB live is past the 75% mark: collect again after an eighth more.
    t.collected(80 * MIB);
    assert_eq!(t.threshold(), 90 * MIB);
    // Tiny heaps get at least MIN_HEADROOM; nothing goes past the limit.
    t.collected(0);
    assert_eq!(t.threshold(), 75 * MIB);
    t.collected(99 * MIB);
    assert_eq!(t.threshold(), 100 * MIB);
    let small = Trigger::new(config(TriggerKind::Adaptive, 0, 75, 0), 100 * MIB);
    small.collected(1000);
    assert_eq!(small.threshold(), 1000 + Trigger::MIN_HEADROOM);
}
