//! `BumpAllocator` against a model: random sequences of allocations and
//! resets never overlap, honour alignment, preserve contents, and report the
//! model's totals.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;

use proptest::prelude::*;
use rtmem_base::{AllocError, PoolManager, PoolManagerConfig, SpaceType};
use rtmem_bump::{BumpAllocator, GRANULE, granule_round};

const POOL: usize = 16 << 10;
const SPACE: SpaceType = SpaceType::CompilerInternal;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align_log2: u32 },
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0usize..600, 0u32..5).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        3 => (600usize..3 * POOL, 0u32..13).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        1 => Just(Op::Reset),
    ]
}

/// An object the model expects to find intact.
struct Live {
    ptr: NonNull<u8>,
    size: usize,
    fill: u8,
}

fn check_contents(live: &[Live]) {
    for obj in live {
        // SAFETY: `obj` was allocated with `size` bytes and written with `fill`;
        // the allocator has not been reset since.
        let bytes = unsafe { std::slice::from_raw_parts(obj.ptr.as_ptr(), obj.size) };
        assert!(
            bytes.iter().all(|&b| b == obj.fill),
            "object at {:p} was overwritten",
            obj.ptr
        );
    }
}

fn check_disjoint(live: &[Live]) {
    let mut ranges: Vec<(usize, usize)> = live
        .iter()
        .map(|o| (o.ptr.as_ptr().addr(), o.ptr.as_ptr().addr() + o.size))
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
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn allocations_match_the_model(ops in prop::collection::vec(op(), 1..120)) {
        let pools = Arc::new(
            PoolManager::new(PoolManagerConfig::default().with_pool_size(POOL).with_reserve(64 << 20))
                .unwrap(),
        );
        let mut bump = BumpAllocator::new(pools.clone(), SPACE);
        let mut live: Vec<Live> = Vec::new();
        let (mut total_bytes, mut total_objects) = (0usize, 0usize);
        let (mut live_bytes, mut live_objects) = (0usize, 0usize);
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { size, align_log2 } => {
                    let align = 1usize << align_log2;
                    let layout = Layout::from_size_align(size, align).unwrap();
                    let ptr = bump.alloc(layout).map_err(|e: AllocError| TestCaseError::fail(e.to_string()))?;
                    if size == 0 {
                        prop_assert_eq!(ptr.as_ptr().addr(), align, "zero sizes are dangling");
                        continue;
                    }
                    prop_assert_eq!(ptr.as_ptr().addr() % align.max(GRANULE), 0);
                    prop_assert!(bump.contains(ptr.as_ptr().addr()));
                    prop_assert!(bump.contains(ptr.as_ptr().addr() + size - 1));
                    let fill = i as u8 | 1;
                    // SAFETY: `size` fresh bytes, ours until the next reset.
                    unsafe { ptr.as_ptr().write_bytes(fill, size) };
                    live.push(Live { ptr, size, fill });
                    live_bytes += granule_round(size);
                    live_objects += 1;
                }
                Op::Reset => {
                    check_disjoint(&live);
                    check_contents(&live);
                    live.clear();
                    bump.reset();
                    total_bytes += live_bytes;
                    total_objects += live_objects;
                    live_bytes = 0;
                    live_objects = 0;
                    let s = pools.stats().space(SPACE);
                    prop_assert_eq!(s.bytes_allocated as usize, total_bytes);
                    prop_assert_eq!(s.objects_allocated as usize, total_objects);
                    prop_assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
                    prop_assert!(pools.used(SPACE) <= pools.stats().space(SPACE).peak_committed as usize);
                }
            }
            prop_assert_eq!(bump.allocated_bytes(), live_bytes);
            let s = pools.stats().space(SPACE);
            prop_assert!(s.live_bytes() as usize <= live_bytes, "stats never run ahead");
        }
        check_disjoint(&live);
        check_contents(&live);
        drop(bump);
        let s = pools.stats().space(SPACE);
        prop_assert_eq!(s.bytes_allocated as usize, total_bytes + live_bytes);
        prop_assert_eq!(s.objects_allocated as usize, total_objects + live_objects);
        prop_assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
        prop_assert_eq!(pools.used(SPACE), 0);
    }
}
