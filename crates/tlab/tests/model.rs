//! TLABs over a `BumpRegion` against a model: random allocations, retires,
//! direct region allocations and resets never overlap, stay 8-aligned,
//! preserve contents, and account for every byte the region handed out.

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;

use proptest::prelude::*;
use rtmem_base::{AllocError, PoolManager, PoolManagerConfig, SpaceType};
use rtmem_bump::{BumpRegion, granule_round};
use rtmem_tlab::{Tlab, TlabStats};

const POOL: usize = 16 << 10;

thread_local! {
    /// Bytes described to the filler on this thread (proptest runs a case on one thread).
    static FILLED: Cell<usize> = const { Cell::new(0) };
}

fn count_filler(_start: NonNull<u8>, len: usize) {
    FILLED.set(FILLED.get() + len);
}

#[derive(Clone, Debug)]
enum Op {
    /// Allocate `size` bytes through TLAB `tlab`.
    Alloc {
        tlab: usize,
        size: usize,
    },
    /// Allocate directly from the region, aligned to `1 << align_log2`.
    Direct {
        size: usize,
        align_log2: u32,
    },
    Retire {
        tlab: usize,
    },
    /// Retire every TLAB, then reset the region.
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0usize..3, 0usize..200).prop_map(|(tlab, size)| Op::Alloc { tlab, size }),
        4 => (0usize..3, 200usize..6000).prop_map(|(tlab, size)| Op::Alloc { tlab, size }),
        3 => (0usize..300, 0u32..8).prop_map(|(size, align_log2)| Op::Direct { size, align_log2 }),
        3 => (0usize..3).prop_map(|tlab| Op::Retire { tlab }),
        1 => Just(Op::Reset),
    ]
}

struct Live {
    ptr: NonNull<u8>,
    size: usize,
    fill: u8,
}

fn check(live: &[Live], region: &BumpRegion) {
    let base = region.start().as_ptr().addr();
    let mut ranges: Vec<(usize, usize)> = live
        .iter()
        .map(|o| {
            (
                o.ptr.as_ptr().addr(),
                o.ptr.as_ptr().addr() + granule_round(o.size.max(1)),
            )
        })
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "objects {:#x?} and {:#x?} overlap",
            pair[0],
            pair[1]
        );
    }
    for &(start, end) in &ranges {
        assert!(
            start >= base && end <= base + region.used(),
            "object outside the used region"
        );
    }
    for obj in live {
        // SAFETY: allocated with `size` bytes, written with `fill`, region not reset since.
        let bytes = unsafe { std::slice::from_raw_parts(obj.ptr.as_ptr(), obj.size) };
        assert!(
            bytes.iter().all(|&b| b == obj.fill),
            "object at {:p} was overwritten",
            obj.ptr
        );
    }
}

/// The sum of one TLAB statistic over all TLABs, since the given earlier stats.
fn since(tlabs: &[Tlab], earlier: &[TlabStats], f: impl Fn(TlabStats) -> usize) -> usize {
    tlabs
        .iter()
        .zip(earlier)
        .map(|(t, e)| f(t.stats()) - f(*e))
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tlabs_match_the_model(ops in prop::collection::vec(op(), 1..150)) {
        FILLED.set(0);
        let pools = Arc::new(
            PoolManager::new(PoolManagerConfig::default().with_pool_size(POOL).with_reserve(16 << 20))
                .unwrap(),
        );
        let mut region = BumpRegion::new(pools.clone(), SpaceType::Object, POOL)
            .unwrap()
            .with_filler(count_filler);
        let mut tlabs = [Tlab::new(1024), Tlab::new(4096), Tlab::new(200)];
        let mut live: Vec<Live> = Vec::new();
        // Since the last reset: object bytes (rounded) and count, all paths;
        // bytes allocated directly from the region; TLAB stats at the reset.
        let (mut bytes, mut objects, mut direct) = (0usize, 0usize, 0usize);
        let mut at_reset = [TlabStats::default(); 3];
        let (mut total_objects, mut direct_objects) = (0usize, 0usize);

        for (i, op) in ops.into_iter().enumerate() {
            let fill = i as u8 | 1;
            let (result, size) = match op {
                Op::Alloc { tlab, size } => (tlabs[tlab].alloc(&region, size), size),
                Op::Direct { size, align_log2 } => {
                    let layout = Layout::from_size_align(size, 1 << align_log2).unwrap();
                    let r = region.alloc(layout);
                    if let Ok(p) = r {
                        prop_assert_eq!(p.as_ptr().addr() % (1 << align_log2), 0);
                        direct += granule_round(size.max(1));
                        direct_objects += 1;
                    }
                    (r, size)
                }
                Op::Retire { tlab } => {
                    tlabs[tlab].retire(&region);
                    continue;
                }
                Op::Reset => {
                    for t in &mut tlabs {
                        t.retire(&region);
                    }
                    check(&live, &region);
                    prop_assert_eq!(region.accounted_bytes(), bytes);
                    prop_assert_eq!(region.accounted_objects(), objects);
                    let s = pools.stats().space(SpaceType::Object);
                    prop_assert_eq!((s.live_bytes() as usize, s.live_objects() as usize), (bytes, objects));
                    live.clear();
                    region.reset();
                    FILLED.set(0);
                    (bytes, objects, direct) = (0, 0, 0);
                    for (t, stats) in tlabs.iter().zip(&mut at_reset) {
                        *stats = t.stats();
                    }
                    continue;
                }
            };
            match result {
                Ok(ptr) => {
                    prop_assert_eq!(ptr.as_ptr().addr() % Tlab::GRANULE, 0);
                    // SAFETY: `size` fresh bytes, ours until the region is reset.
                    unsafe { ptr.as_ptr().write_bytes(fill, size) };
                    live.push(Live { ptr, size, fill });
                    bytes += granule_round(size.max(1));
                    objects += 1;
                    total_objects += 1;
                }
                Err(AllocError::LimitExceeded { space, requested, used, limit }) => {
                    prop_assert_eq!(space, SpaceType::Object);
                    prop_assert_eq!(limit, region.capacity());
                    prop_assert!(limit - used < requested, "refused {} with {} of {} used", requested, used, limit);
                }
                Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
            }
            // Every byte the region handed out since the reset is an object,
            // a filled gap (retired tail or alignment gap), or still untouched in a TLAB.
            let untouched: usize = tlabs.iter().map(Tlab::remaining).sum();
            prop_assert_eq!(bytes + FILLED.get() + untouched, region.used());
            prop_assert_eq!(since(&tlabs, &at_reset, |s| s.allocated_bytes) + direct, bytes);
            let wasted = since(&tlabs, &at_reset, |s| s.wasted_bytes);
            prop_assert!(wasted <= FILLED.get(), "retired tails are all described to the filler");
        }
        check(&live, &region);
        for t in &mut tlabs {
            t.retire(&region);
        }
        prop_assert_eq!(region.accounted_objects(), objects);
        let from_tlabs = since(&tlabs, &[TlabStats::default(); 3], |s| s.objects);
        prop_assert_eq!(from_tlabs + direct_objects, total_objects);
        let s = pools.stats().space(SpaceType::Object);
        prop_assert_eq!(s.objects_allocated as usize, total_objects);
        drop(region);
        let s = pools.stats().space(SpaceType::Object);
        prop_assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
    }
}
