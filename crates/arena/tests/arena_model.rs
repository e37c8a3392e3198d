//! Random sequences of arena operations (alloc, mark, release, reset, and
//! deallocating the last block) checked against a model: a list of live
//! blocks and a stack of marks.
//!
//! After every step: blocks never overlap, alignment is honoured, the
//! arena's and `MemStats`' live bytes equal the model's. After
//! releases, resets and at the end: every live block still holds the pattern
//! written into it, and the memory released is handed out again.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;

use allocator_api2::alloc::Allocator;
use proptest::prelude::*;
use proptest::sample::Index;
use rtmem_arena::{Arena, ArenaMark};
use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};

const POOL: usize = 64 << 10;
const SPACE: SpaceType = SpaceType::CompilerInternal;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align: usize },
    Mark,
    Release(Index),
    Reset,
    FreeLast,
}

fn op() -> impl Strategy<Value = Op> {
    let align =
        prop_oneof![8 => (0u32..7).prop_map(|a| 1usize << a), 1 => Just(4096), 1 => Just(8192)];
    prop_oneof![
        12 => (0usize..700, align).prop_map(|(size, align)| Op::Alloc { size, align }),
        1 => (POOL / 2..3 * POOL).prop_map(|size| Op::Alloc { size, align: 8 }),
        3 => Just(Op::Mark),
        2 => any::<Index>().prop_map(Op::Release),
        1 => Just(Op::Reset),
        3 => Just(Op::FreeLast),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Block {
    addr: usize,
    size: usize,
    seed: u8,
    /// Deallocated without being reclaimed: still occupies its memory.
    freed: bool,
}

impl Block {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the model only keeps blocks the arena has not freed.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.size) }
    }
}

#[derive(Default)]
struct Model {
    blocks: Vec<Block>,
    /// Each mark with the number of blocks when it was taken.
    marks: Vec<(ArenaMark, usize)>,
    /// Blocks from this index on were allocated after the latest mark,
    /// release or reset, so deallocating one at the top reclaims it.
    reclaim_from: usize,
    /// The arena's top, when the model knows it exactly.
    top: Option<usize>,
    next_seed: u8,
}

impl Model {
    fn alloc(&mut self, arena: &Arena, size: usize, align: usize) {
        let p = arena
            .alloc(Layout::from_size_align(size, align).unwrap())
            .unwrap();
        let addr = p.as_ptr() as usize;
        assert_eq!(addr % align, 0, "alignment {align} not honoured");
        if size > 0 {
            for b in self.blocks.iter().filter(|b| b.size > 0) {
                assert!(
                    addr + size <= b.addr || b.addr + b.size <= addr,
                    "[{addr:#x}, +{size}) overlaps {b:?}"
                );
            }
        }
        self.next_seed = self.next_seed.wrapping_add(37);
        let seed = self.next_seed;
        // SAFETY: `size` fresh bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, size) };
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed.wrapping_add(i as u8);
        }
        self.blocks.push(Block {
            addr,
            size,
            seed,
            freed: false,
        });
        self.top = Some(addr + size);
    }

    fn free_last(&mut self, arena: &Arena) {
        let Some(i) = self.blocks.iter().rposition(|b| !b.freed) else {
            return;
        };
        let b = self.blocks[i];
        let layout = Layout::from_size_align(b.size, 1).unwrap();
        // SAFETY: `b` is a live block of the arena, allocated with this size
        // (alignment does not matter to the arena's deallocate).
        unsafe { (&arena).deallocate(NonNull::new(b.addr as *mut u8).unwrap(), layout) };
        if i >= self.reclaim_from && self.top == Some(b.addr + b.size) {
            self.blocks.remove(i);
            self.top = Some(b.addr);
        } else {
            self.blocks[i].freed = true;
        }
    }

    /// Forgets the blocks from `keep` on, and returns the first of them that
    /// holds memory.
    fn truncate(&mut self, keep: usize) -> Option<Block> {
        let first = self.blocks[keep..].iter().find(|b| b.size > 0).copied();
        self.blocks.truncate(keep);
        self.reclaim_from = keep;
        self.top = None;
        first
    }

    /// Checks that memory released (holding `first`) is handed out again: a
    /// one-byte probe lands at or below `first` when in the same pool, and
    /// otherwise `first`'s memory no longer belongs to the arena.
    fn probe_reuse(&mut self, arena: &Arena, pools: &PoolManager, first: Option<Block>) {
        let Some(first) = first else { return };
        self.alloc(arena, 1, 1);
        let probe = self.blocks.last().unwrap().addr;
        if pools.pool_of(first.addr).is_some_and(|p| p.contains(probe)) {
            assert!(
                probe <= first.addr,
                "released memory at {:#x} not reused (probe at {probe:#x})",
                first.addr
            );
        } else {
            assert!(
                !arena.contains(first.addr),
                "released block {first:?} still in the arena"
            );
        }
    }

    fn check_contents(&self) {
        for b in &self.blocks {
            let ok = b
                .bytes()
                .iter()
                .enumerate()
                .all(|(i, &v)| v == b.seed.wrapping_add(i as u8));
            assert!(ok, "contents of {b:?} changed");
        }
    }

    fn check_counts(&self, arena: &Arena, pools: &PoolManager) {
        let bytes: usize = self.blocks.iter().map(|b| b.size).sum();
        assert_eq!(arena.allocated_bytes(), bytes);
        arena.flush_stats();
        assert_eq!(pools.stats().space(SPACE).live_bytes(), bytes as u64);
    }
}

fn run(ops: Vec<Op>) {
    let pools = Arc::new(
        PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(POOL)
                .with_reserve(1 << 30),
        )
        .unwrap(),
    );
    let mut arena = Arena::new(pools.clone());
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Alloc { size, align } => model.alloc(&arena, size, align),
            Op::Mark => {
                let mark = arena.mark();
                model.marks.push((mark, model.blocks.len()));
                model.reclaim_from = model.blocks.len();
                model.top = None;
            }
            Op::Release(index) => {
                if model.marks.is_empty() {
                    continue;
                }
                let i = index.index(model.marks.len());
                let (mark, keep) = model.marks[i];
                arena.release(mark);
                model.marks.truncate(i + 1);
                let first = model.truncate(keep);
                model.check_contents();
                model.probe_reuse(&arena, &pools, first);
            }
            Op::Reset => {
                arena.reset();
                assert!(arena.arena_count() <= 1);
                model.marks.clear();
                let first = model.truncate(0);
                model.probe_reuse(&arena, &pools, first);
            }
            Op::FreeLast => model.free_last(&arena),
        }
        model.check_counts(&arena, &pools);
    }
    model.check_contents();
    drop(arena);
    let s = pools.stats().space(SPACE);
    assert_eq!((s.live_bytes(), s.committed), (0, 0));
    assert_eq!(
        pools.used(SPACE),
        0,
        "dropping the arena gives every pool back"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arena_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
