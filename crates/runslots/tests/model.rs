//! Property test: random sequences of allocations, frees (through either of
//! two handles, so frees into the other handle's runs take the remote path,
//! or through the shared allocator), sweeps, flushes and trims, checked
//! against a model: a map from each live slot's address to its slot size and
//! the byte pattern written into it.
//!
//! After every step: no two live slots overlap, every slot is aligned and of
//! its size's class, every live slot still holds its pattern, and the walk
//! visits exactly the model's slots, and a walk of the slots overlapping a
//! random set of card-sized ranges visits exactly the model's slots on
//! them, once each. After every flush of both handles the
//! space's `MemStats` equal the model's totals. At the end, with everything
//! freed and the handles dropped, every pool is back with the pool manager:
//! no freed slot was lost.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Arc;

use proptest::prelude::*;
use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
use rtmem_runslots::{LocalRuns, RunSlotsAllocator};

const SPACE: SpaceType = SpaceType::Object;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        handle: usize,
    },
    /// Free the live slot at `index` (modulo the live count) through a handle.
    Free {
        index: usize,
        handle: usize,
    },
    /// Free through the shared allocator.
    FreeShared {
        index: usize,
    },
    /// Sweep away the slots whose address hashes with `seed` to 0 mod 3.
    Sweep {
        seed: u64,
    },
    Flush {
        handle: usize,
    },
    Trim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..=256, 0usize..2).prop_map(|(size, handle)| Op::Alloc { size, handle }),
        // Runs of one size fill and empty runs; worth weighting.
        2 => (prop_oneof![Just(8usize), Just(200usize)], 0usize..2).prop_map(|(size, handle)| Op::Alloc { size, handle }),
        3 => (any::<usize>(), 0usize..2).prop_map(|(index, handle)| Op::Free { index, handle }),
        1 => any::<usize>().prop_map(|index| Op::FreeShared { index }),
        1 => any::<u64>().prop_map(|seed| Op::Sweep { seed }),
        1 => (0usize..2).prop_map(|handle| Op::Flush { handle }),
        1 => Just(Op::Trim),
    ]
}

/// Slot address to (slot size, pattern byte).
type Model = BTreeMap<usize, (usize, u8)>;

struct Harness {
    pools: Arc<PoolManager>,
    slots: Arc<RunSlotsAllocator>,
    handles: Vec<LocalRuns>,
    model: Model,
    next_pattern: u8,
}

fn ptr(addr: usize) -> NonNull<u8> {
    NonNull::new(addr as *mut u8).unwrap()
}

fn dies(addr: usize, seed: u64) -> bool {
    ((addr as u64 >> 3) ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 < 3
}

impl Harness {
    fn new(spare: bool) -> Harness {
        // Small pools (one 64 KiB run each) so that pools come and go often.
        let config = PoolManagerConfig::default()
            .with_pool_size(64 << 10)
            .with_reserve(1 << 30);
        let pools = Arc::new(PoolManager::new(config).unwrap());
        let slots = Arc::new(RunSlotsAllocator::new(pools.clone(), SPACE));
        if !spare {
            slots.set_spare_limit(0);
        }
        let handles = vec![slots.local(), slots.local()];
        Harness {
            pools,
            slots,
            handles,
            model: Model::new(),
            next_pattern: 1,
        }
    }

    fn nth_live(&self, index: usize) -> Option<usize> {
        (!self.model.is_empty()).then(|| *self.model.keys().nth(index % self.model.len()).unwrap())
    }

    fn check_pattern(&self, addr: usize) {
        let (size, pattern) = self.model[&addr];
        // SAFETY: a live slot of `size` bytes, written with `pattern` when allocated.
        let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, size) };
        assert!(
            bytes.iter().all(|&b| b == pattern),
            "slot {addr:#x} of {size} bytes was overwritten"
        );
    }

    fn forget(&mut self, addr: usize) {
        self.check_pattern(addr);
        self.model.remove(&addr);
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Alloc { size, handle } => {
                let p = self.handles[handle].alloc(size).unwrap();
                let addr = p.addr().get();
                let slot = RunSlotsAllocator::size_class(size).unwrap();
                assert!(slot >= size);
                assert_eq!(
                    addr % RunSlotsAllocator::slot_align(slot),
                    0,
                    "misaligned slot"
                );
                assert_eq!(addr % 8, 0);
                // SAFETY: live.
                assert_eq!(unsafe { self.slots.usable_size(p) }, slot);
                if let Some((&before, &(before_size, _))) = self.model.range(..addr).next_back() {
                    assert!(
                        before + before_size <= addr,
                        "overlaps the slot at {before:#x}"
                    );
                }
                if let Some((&after, _)) = self.model.range(addr..).next() {
                    assert!(addr + slot <= after, "overlaps the slot at {after:#x}");
                }
                let pattern = self.next_pattern;
                self.next_pattern = self.next_pattern.wrapping_add(1).max(1);
                // SAFETY: the whole slot is ours.
                unsafe { p.as_ptr().write_bytes(pattern, slot) };
                self.model.insert(addr, (slot, pattern));
            }
            Op::Free { index, handle } => {
                if let Some(addr) = self.nth_live(index) {
                    self.forget(addr);
                    // SAFETY: live, freed once.
                    unsafe { self.handles[handle].free(ptr(addr)) };
                }
            }
            Op::FreeShared { index } => {
                if let Some(addr) = self.nth_live(index) {
                    self.forget(addr);
                    // SAFETY: live, freed once.
                    unsafe { self.slots.free(ptr(addr)) };
                }
            }
            Op::Sweep { seed } => {
                let dead: Vec<usize> = self
                    .model
                    .keys()
                    .copied()
                    .filter(|&a| dies(a, seed))
                    .collect();
                let dead_bytes: usize = dead.iter().map(|a| self.model[a].0).sum();
                for &addr in &dead {
                    self.forget(addr);
                }
                let swept = self.slots.sweep(|p, _| !dies(p.addr().get(), seed));
                assert_eq!((swept.objects, swept.bytes), (dead.len(), dead_bytes));
            }
            Op::Flush { handle } => {
                self.handles[handle].flush();
                self.handles[1 - handle].flush();
                let stats = self.slots.stats();
                let live_bytes: usize = self.model.values().map(|&(size, _)| size).sum();
                assert_eq!(stats.live_bytes(), live_bytes as u64, "MemStats live bytes");
                assert_eq!(
                    stats.live_objects(),
                    self.model.len() as u64,
                    "MemStats live objects"
                );
                // With both handles flushed, the runs in use are those with live slots.
                assert_eq!(
                    stats.metadata > 0,
                    !self.model.is_empty(),
                    "run headers are metadata"
                );
            }
            Op::Trim => self.slots.trim(),
        }
        let mut walked = Vec::new();
        self.slots
            .walk(|p, size| walked.push((p.addr().get(), size)));
        let expected: Vec<(usize, usize)> = self.model.iter().map(|(&a, &(s, _))| (a, s)).collect();
        walked.sort_unstable();
        assert!(
            walked == expected,
            "the walk saw {} slots, the model has {}",
            walked.len(),
            expected.len()
        );
        for &addr in self.model.keys() {
            assert!(self.slots.contains(addr));
        }
        self.check_overlapping_walk();
    }

    /// `walk_live_overlapping` over a pseudo-random third of the 512-byte
    /// "cards" of the carved memory reports exactly the live slots that
    /// overlap one of them, each once.
    fn check_overlapping_walk(&self) {
        const CARD: usize = 512;
        let seed = self.next_pattern as u64;
        let chosen = |card: usize| dies(card * CARD, seed);
        let mut reported = Vec::new();
        self.slots.walk_live_overlapping(
            |start, end, ranges| {
                assert!(
                    ranges.is_empty(),
                    "the range list starts empty for each pool"
                );
                for card in start / CARD..end.div_ceil(CARD) {
                    if chosen(card) {
                        ranges.push(((card * CARD).max(start), ((card + 1) * CARD).min(end)));
                    }
                }
            },
            |p, size| reported.push((p.addr().get(), size)),
        );
        let mut expected: Vec<(usize, usize)> = self
            .model
            .iter()
            .filter(|&(&a, &(s, _))| (a / CARD..=(a + s - 1) / CARD).any(chosen))
            .map(|(&a, &(s, _))| (a, s))
            .collect();
        expected.sort_unstable();
        let count = reported.len();
        reported.sort_unstable();
        reported.dedup();
        assert_eq!(reported.len(), count, "a slot was reported twice");
        assert!(
            reported == expected,
            "the overlapping walk saw {} slots, the model has {} on the chosen cards",
            reported.len(),
            expected.len()
        );
    }

    fn finish(mut self) {
        for addr in self.model.keys().copied().collect::<Vec<_>>() {
            self.forget(addr);
            // SAFETY: live, freed once.
            unsafe { self.handles[0].free(ptr(addr)) };
        }
        drop(std::mem::take(&mut self.handles));
        let stats = self.slots.stats();
        assert_eq!((stats.live_bytes(), stats.live_objects()), (0, 0));
        assert_eq!(stats.bytes_allocated, stats.bytes_freed);
        assert_eq!(stats.metadata, 0, "every run went back");
        assert_eq!(
            self.pools.used(SPACE),
            0,
            "every pool went back: no freed slot was lost"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_the_model(ops in prop::collection::vec(op(), 1..250), spare in any::<bool>()) {
        let mut harness = Harness::new(spare);
        for op in ops {
            harness.step(op);
        }
        harness.finish();
    }
}
