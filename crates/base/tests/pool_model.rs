//! Property test: random pool allocations and frees against a simple model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rtmem_base::{AllocError, Pool, PoolManager, PoolManagerConfig, SpaceType};

const POOL: usize = 64 << 10;
const SLOTS: usize = 48;

#[derive(Clone, Debug)]
enum Op {
    Alloc { space: usize, slots: usize },
    Free { pick: usize },
    Trim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3usize, 1..6usize).prop_map(|(space, slots)| Op::Alloc { space, slots }),
        4 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => Just(Op::Trim),
    ]
}

const SPACES: [SpaceType; 3] = [SpaceType::Object, SpaceType::Code, SpaceType::Humongous];

/// Fills a pool with a byte derived from its start, at both ends and the middle.
fn stamp(p: &Pool) -> u8 {
    (p.start_addr() / POOL) as u8 ^ p.space().index() as u8
}

fn write_stamp(p: &Pool) {
    let b = stamp(p);
    for off in [0, p.size() / 2, p.size() - 1] {
        // SAFETY: the pool is live and committed read-write; offsets are inside it.
        unsafe { p.start().as_ptr().add(off).write(b) };
    }
}

fn check_stamp(p: &Pool) {
    let b = stamp(p);
    for off in [0, p.size() / 2, p.size() - 1] {
        // SAFETY: as in `write_stamp`.
        let found = unsafe { *p.start().as_ptr().add(off) };
        assert_eq!(found, b, "pool {p:?} lost its contents");
    }
}

/// The longest run of slots not covered by a live pool, in a reservation of
/// `SLOTS` slots starting at `base`.
fn largest_gap(live: &BTreeMap<usize, Pool>, base: usize) -> usize {
    let mut best = 0;
    let mut cursor = base;
    for p in live.values() {
        best = best.max((p.start_addr() - cursor) / POOL);
        cursor = p.end_addr();
    }
    best.max((base + SLOTS * POOL - cursor) / POOL)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn pools_match_the_model(ops in proptest::collection::vec(op(), 1..120), limit_slots in 2..20usize) {
        let limit = limit_slots * POOL;
        let pm = PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(POOL)
                .with_reserve(SLOTS * POOL)
                .with_cache_pools(3)
                .with_limit(SpaceType::Code, limit),
        ).unwrap();
        let base = {
            let probe = pm.alloc_pool(SpaceType::Object, 1).unwrap();
            pm.free_pool(probe);
            pm.trim();
            probe.start_addr()
        };
        let mut live: BTreeMap<usize, Pool> = BTreeMap::new();
        let mut used = [0usize; SpaceType::COUNT];
        for op in ops {
            match op {
                Op::Alloc { space, slots } => {
                    let space = SPACES[space];
                    let bytes = slots * POOL;
                    match pm.alloc_pool(space, bytes - 1) {
                        Ok(p) => {
                            prop_assert_eq!(p.size(), bytes);
                            prop_assert_eq!(p.space(), space);
                            prop_assert_eq!(p.start_addr() % POOL, 0);
                            // No overlap with any live pool.
                            if let Some((_, q)) = live.range(..p.end_addr()).next_back() {
                                prop_assert!(q.end_addr() <= p.start_addr(), "{p:?} overlaps {q:?}");
                            }
                            prop_assert!(space != SpaceType::Code || used[space.index()] + bytes <= limit);
                            write_stamp(&p);
                            used[space.index()] += bytes;
                            live.insert(p.start_addr(), p);
                        }
                        Err(AllocError::LimitExceeded { space: s, .. }) => {
                            prop_assert_eq!(s, SpaceType::Code);
                            prop_assert!(used[s.index()] + bytes > limit);
                        }
                        Err(AllocError::OutOfMemory { .. }) => {
                            // Exact: cached pools are flushed and free ranges coalesce, so
                            // the request fails only if no gap between live pools fits it.
                            let gap = largest_gap(&live, base);
                            prop_assert!(gap < slots, "out of memory with a free gap of {gap} slots for {slots}");
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
                Op::Free { pick } => {
                    if live.is_empty() { continue; }
                    let key = *live.keys().nth(pick % live.len()).unwrap();
                    let p = live.remove(&key).unwrap();
                    check_stamp(&p);
                    pm.free_pool(p);
                    used[p.space().index()] -= p.size();
                    prop_assert_eq!(pm.pool_of(p.start_addr()), None);
                }
                Op::Trim => pm.trim(),
            }
            for space in SPACES {
                prop_assert_eq!(pm.used(space), used[space.index()]);
                prop_assert_eq!(pm.stats().space(space).committed as usize, used[space.index()]);
            }
        }
        for p in live.values() {
            check_stamp(p);
            prop_assert_eq!(pm.pool_of(p.start_addr() + p.size() / 2), Some(*p));
        }
        for p in std::mem::take(&mut live).into_values() {
            pm.free_pool(p);
        }
        // Everything is free again: one request for the whole reservation succeeds.
        pm.trim();
        let all = pm.alloc_pool(SpaceType::Object, SLOTS * POOL).unwrap();
        prop_assert_eq!(all.size(), SLOTS * POOL);
    }
}
