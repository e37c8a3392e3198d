//! The churn workload of the benchmarks: fragmentation, and (ignored) timing.

mod common;

use common::{WINDOW, churn, churn_vs_system, pools};
use rtmem_base::SpaceType;
use rtmem_freelist::FreeListAllocator;

/// Committed memory over live memory after churn, with live bytes as
/// `MemStats` counts them (usable sizes: what the blocks really hold) must
/// stay within 1.3. Against the bytes the workload asked for, the ratio is
/// about 1.35 here: the window needs 1.45 MiB of blocks (request, header,
/// rounding to 16), a little more than fits six 256 KiB pools, so a seventh
/// is taken; the test guards that with a looser bound.
#[test]
fn fragmentation_after_churn_stays_under_1_3() {
    let pools = pools();
    let heap = FreeListAllocator::new(pools.clone(), SpaceType::NonMoving);
    let (live, requested) = churn(
        100_000,
        |l| heap.alloc(l).unwrap(),
        // SAFETY: every pointer freed came from `heap.alloc` and is freed once.
        |p, _| unsafe { heap.free(p) },
    );
    heap.flush_stats();
    let s = pools.stats().space(SpaceType::NonMoving);
    let committed = s.committed as f64;
    assert_eq!(s.live_objects(), WINDOW as u64);
    let vs_live = committed / s.live_bytes() as f64;
    let vs_requested = committed / requested as f64;
    eprintln!(
        "after churn: committed {} KiB, live (usable) {} KiB, requested {} KiB: \
         committed/live {vs_live:.3}, committed/requested {vs_requested:.3}",
        s.committed >> 10,
        s.live_bytes() >> 10,
        requested >> 10,
    );
    assert!(vs_live <= 1.3, "committed/live = {vs_live:.3}");
    assert!(
        vs_requested <= 1.4,
        "committed/requested = {vs_requested:.3}"
    );
    for (p, _) in live {
        // SAFETY: live blocks of `heap`, freed once.
        unsafe { heap.free(p) };
    }
    assert_eq!(heap.pool_count(), 1, "only the kept empty pool remains");
}

/// Release-mode timing against the system allocator in a multi-threaded
/// process (the test harness runs tests on threads): `cargo test --release
/// -p rtmem-freelist --test churn -- --ignored --nocapture`. For a
/// single-threaded process (as in the criterion benches) run
/// `cargo run --release -p rtmem-freelist --example churn`.
#[test]
#[ignore = "a timing measurement: run in release mode with --nocapture"]
fn churn_ns_per_step_vs_system() {
    churn_vs_system(25, 500_000);
}
