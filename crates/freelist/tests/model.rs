//! Property tests: random alloc / free / sweep / walk sequences against a
//! model (a map of the live blocks).
//!
//! Small blocks are parked on quick lists when freed and handed out again by
//! allocations of their size, so the sequences mix many sizes (splitting and
//! coalescing) with a few recurring small ones (parking and reuse), and the
//! checks hold parked blocks to being free: `walk` and `sweep` never see
//! them, `MemStats` counts them freed, and freeing one again panics (in
//! debug builds).

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::Arc;

use proptest::prelude::*;
use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
use rtmem_freelist::FreeListAllocator;
use rtmem_freelist::large::LargeObjectAllocator;

const SPACE: SpaceType = SpaceType::NonMoving;
/// Small pools, so that sequences span several of them.
const POOL: usize = 64 << 10;
/// A few recurring small sizes, so that freed blocks are parked and handed
/// out again (blocks of 32, 32, 48, 112, 112, 272, 512 and 528 bytes; quick
/// lists take blocks up to 512).
const SMALL: [usize; 8] = [8, 24, 40, 100, 104, 250, 504, 505];

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_log: u32,
    },
    /// Allocates this many blocks of one of the recurring small sizes, so
    /// that the heap spans several pools.
    Burst(usize, usize),
    /// Frees the live block at this index (modulo the live count) in address order.
    Free(usize),
    /// Frees the most recently freed block again, unless it was handed out
    /// again meanwhile: a double free, which must panic (debug builds only).
    FreeAgain,
    /// Flushes the quick lists and gives back the kept empty pool.
    Trim,
    /// Sweeps, keeping the blocks whose id has this bit clear.
    Sweep(u32),
    Walk,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3000, 0u32..=12).prop_map(|(size, align_log)| Op::Alloc { size, align_log }),
        1 => (0usize..16).prop_map(|size| Op::Alloc { size, align_log: 3 }),
        4 => (0..SMALL.len()).prop_map(|i| Op::Alloc { size: SMALL[i], align_log: 3 }),
        1 => (1usize..200, 0..SMALL.len()).prop_map(|(n, i)| Op::Burst(n, i)),
        7 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::FreeAgain),
        1 => Just(Op::Trim),
        1 => (0u32..4).prop_map(Op::Sweep),
        1 => Just(Op::Walk),
    ]
}

/// What the model knows of a live block.
#[derive(Clone, Copy, Debug)]
struct Live {
    id: u32,
    size: usize,
    usable: usize,
}

/// The byte pattern block `id` is filled with.
fn pattern(id: u32, i: usize) -> u8 {
    (id as usize).wrapping_mul(31).wrapping_add(i) as u8
}

fn fill(p: NonNull<u8>, live: Live) {
    for i in 0..live.size {
        // SAFETY: the block is live and at least `size` bytes long.
        unsafe { p.as_ptr().add(i).write(pattern(live.id, i)) };
    }
}

fn check_contents(addr: usize, live: Live) {
    for i in 0..live.size {
        // SAFETY: the block is live and was filled with its pattern.
        let byte = unsafe { *(addr as *const u8).add(i) };
        assert_eq!(
            byte,
            pattern(live.id, i),
            "block {} at {addr:#x} changed at byte {i}",
            live.id
        );
    }
}

/// Allocates `size` bytes aligned to `align`, checks the block against the
/// model (alignment, usable size, no overlap), fills it and records it.
fn alloc(
    heap: &FreeListAllocator,
    model: &mut BTreeMap<usize, Live>,
    next_id: &mut u32,
    size: usize,
    align: usize,
) {
    let p = heap
        .alloc(Layout::from_size_align(size, align).unwrap())
        .unwrap();
    let addr = p.as_ptr() as usize;
    assert_eq!(
        addr % align.max(FreeListAllocator::ALIGN),
        0,
        "alignment {align}"
    );
    // SAFETY: `p` is live.
    let usable = unsafe { heap.usable_size(p) };
    assert!(usable >= size);
    assert!(heap.contains(addr) && heap.contains(addr + usable - 1));
    // No overlap with the nearest live blocks on either side.
    if let Some((&a, l)) = model.range(..addr).next_back() {
        assert!(
            a + l.usable + FreeListAllocator::HEADER_BYTES <= addr,
            "overlaps the block before"
        );
    }
    if let Some((&a, _)) = model.range(addr..).next() {
        assert!(
            addr + usable + FreeListAllocator::HEADER_BYTES <= a,
            "overlaps the block after"
        );
    }
    let live = Live {
        id: *next_id,
        size,
        usable,
    };
    *next_id += 1;
    fill(p, live);
    model.insert(addr, live);
}

fn run(ops: Vec<Op>) {
    let pools = Arc::new(
        PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(POOL)
                .with_reserve(64 << 20),
        )
        .unwrap(),
    );
    let heap = FreeListAllocator::new(pools.clone(), SPACE);
    let mut model: BTreeMap<usize, Live> = BTreeMap::new();
    let mut next_id = 0;
    let mut last_freed = None;
    for op in ops {
        match op {
            Op::Alloc { size, align_log } => {
                alloc(&heap, &mut model, &mut next_id, size, 1 << align_log)
            }
            Op::Burst(n, i) => {
                for _ in 0..n {
                    alloc(&heap, &mut model, &mut next_id, SMALL[i], 8);
                }
            }
            Op::Free(i) => {
                if model.is_empty() {
                    continue;
                }
                let addr = *model.keys().nth(i % model.len()).unwrap();
                let live = model.remove(&addr).unwrap();
                check_contents(addr, live);
                // SAFETY: a live block of `heap`, freed once.
                unsafe { heap.free(NonNull::new(addr as *mut u8).unwrap()) };
                last_freed = Some(addr);
            }
            Op::FreeAgain => {
                let Some(addr) = last_freed.filter(|a| !model.contains_key(a)) else {
                    continue;
                };
                if cfg!(debug_assertions) {
                    let p = NonNull::new(addr as *mut u8).unwrap();
                    // SAFETY: none: the double free is the bug under test, and
                    // debug builds catch it before touching the heap.
                    let r = catch_unwind(AssertUnwindSafe(|| unsafe { heap.free(p) }));
                    assert!(r.is_err(), "double free of {addr:#x} went unnoticed");
                }
            }
            Op::Trim => heap.trim(),
            Op::Sweep(bit) => {
                let mut visited = Vec::new();
                let swept = heap.sweep(|p, usable| {
                    let addr = p.as_ptr() as usize;
                    let live = model[&addr];
                    assert_eq!(usable, live.usable);
                    check_contents(addr, live);
                    visited.push(addr);
                    live.id & (1 << bit) == 0
                });
                visited.sort();
                assert_eq!(
                    visited,
                    model.keys().copied().collect::<Vec<_>>(),
                    "sweep visits the live set"
                );
                let dead: Vec<usize> = model
                    .iter()
                    .filter(|(_, l)| l.id & (1 << bit) != 0)
                    .map(|(&a, _)| a)
                    .collect();
                let bytes: usize = dead.iter().map(|a| model[a].usable).sum();
                assert_eq!((swept.bytes, swept.objects), (bytes, dead.len()));
                for a in dead {
                    model.remove(&a);
                }
            }
            Op::Walk => {
                let mut walked = Vec::new();
                heap.walk(|p, usable| walked.push((p.as_ptr() as usize, usable)));
                walked.sort();
                let expected: Vec<_> = model.iter().map(|(&a, l)| (a, l.usable)).collect();
                assert_eq!(walked, expected, "walk visits exactly the live set");
                check_stats(&heap, &pools, &model);
            }
        }
        // The kept empty pool aside, committed memory tracks live memory.
        assert!(heap.pool_count() * POOL <= pools.used(SPACE));
    }
    check_stats(&heap, &pools, &model);
    for (&addr, &live) in &model {
        check_contents(addr, live);
        // SAFETY: live blocks of `heap`, each freed once.
        unsafe { heap.free(NonNull::new(addr as *mut u8).unwrap()) };
    }
    // Every freed byte is reusable: at most the one kept pool remains, and it
    // holds a block of a whole pool's usable size.
    assert!(
        heap.pool_count() <= 1,
        "{} pools after freeing everything",
        heap.pool_count()
    );
    assert!(pools.used(SPACE) <= POOL);
    let whole = heap
        .alloc(Layout::from_size_align(heap.max_size(), 8).unwrap())
        .unwrap();
    assert_eq!(heap.pool_count(), 1);
    // SAFETY: live, freed once.
    unsafe { heap.free(whole) };
    heap.flush_stats();
    let s = pools.stats().space(SPACE);
    assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
}

/// `MemStats` counts exactly the live blocks of the model (parked blocks
/// count as freed).
fn check_stats(heap: &FreeListAllocator, pools: &PoolManager, model: &BTreeMap<usize, Live>) {
    heap.flush_stats();
    let s = pools.stats().space(SPACE);
    assert_eq!(
        s.live_bytes(),
        model.values().map(|l| l.usable as u64).sum::<u64>(),
        "MemStats live bytes"
    );
    assert_eq!(
        s.live_objects(),
        model.len() as u64,
        "MemStats live objects"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn free_list_matches_the_model(ops in prop::collection::vec(op(), 1..300)) {
        run(ops);
    }

    #[test]
    fn large_objects_match_the_model(
        ops in prop::collection::vec((0usize..(1 << 20), 0u32..=16, any::<bool>()), 1..40),
    ) {
        let pools = Arc::new(
            PoolManager::new(PoolManagerConfig::default().with_pool_size(POOL).with_reserve(512 << 20)).unwrap(),
        );
        let large = LargeObjectAllocator::new(pools.clone(), SpaceType::Humongous).with_cache(2);
        let mut model: BTreeMap<usize, (usize, u8)> = BTreeMap::new();
        for (i, (size, align_log, free)) in ops.into_iter().enumerate() {
            if free && !model.is_empty() {
                let addr = *model.keys().nth(size % model.len()).unwrap();
                let (size, byte) = model.remove(&addr).unwrap();
                // SAFETY: live and filled with `byte`; freed once.
                unsafe {
                    let p = NonNull::new(addr as *mut u8).unwrap();
                    assert!(std::slice::from_raw_parts(p.as_ptr(), size).iter().all(|&b| b == byte));
                    large.free(p);
                }
                continue;
            }
            let align = 1usize << align_log;
            let p = large.alloc(Layout::from_size_align(size, align).unwrap()).unwrap();
            let addr = p.as_ptr() as usize;
            prop_assert_eq!(addr % align.max(4096), 0);
            // SAFETY: live, at least `size` bytes.
            unsafe { p.as_ptr().write_bytes(i as u8, size) };
            model.insert(addr, (size, i as u8));
        }
        let mut walked = Vec::new();
        large.walk(|p, usable| {
            // SAFETY: live.
            assert_eq!(usable, unsafe { large.usable_size(p) });
            walked.push(p.as_ptr() as usize);
        });
        walked.sort();
        prop_assert_eq!(walked, model.keys().copied().collect::<Vec<_>>());
        let s = pools.stats().space(SpaceType::Humongous);
        prop_assert_eq!(s.live_objects(), model.len() as u64);
        let swept = large.sweep(|_, _| false);
        prop_assert_eq!(swept.objects, model.len());
        prop_assert!(large.cached_pools() <= 2);
        large.trim();
        prop_assert_eq!(pools.used(SpaceType::Humongous), 0);
        prop_assert_eq!(pools.stats().space(SpaceType::Humongous).live_bytes(), 0);
    }
}
