//! Random push/pop sequences on a frame stack checked against a `Vec` model:
//! depth, bytes used, the top frame, the walk order, the exact
//! `StackOverflow` numbers, and every live frame's contents.

use std::sync::Arc;

use proptest::prelude::*;
use rtmem_arena::{Frame, FrameAllocator};
use rtmem_base::{AllocError, PoolManager, PoolManagerConfig, SpaceType};

#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    PushZeroed(usize),
    Pop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..400).prop_map(Op::Push),
        1 => (0usize..400).prop_map(Op::PushZeroed),
        1 => (2000usize..9000).prop_map(Op::Push),
        4 => Just(Op::Pop),
    ]
}

fn fill(stack: &mut FrameAllocator, frame: Frame, seed: u64) {
    for (i, slot) in stack.slots_mut(frame).iter_mut().enumerate() {
        *slot = seed << 20 | i as u64;
    }
}

fn run(limit: usize, ops: Vec<Op>) {
    let pools =
        Arc::new(PoolManager::new(PoolManagerConfig::default().with_reserve(1 << 30)).unwrap());
    let mut stack = FrameAllocator::new(pools.clone(), limit).unwrap();
    let mut model: Vec<(Frame, u64)> = Vec::new();
    let usable = limit / 8 * 8;
    let mut seed = 0;
    for op in ops {
        let used: usize = model.iter().map(|(f, _)| f.size() + 8).sum();
        match op {
            Op::Push(size) | Op::PushZeroed(size) => {
                let zeroed = matches!(op, Op::PushZeroed(_));
                let result = if zeroed {
                    stack.push_zeroed(size)
                } else {
                    stack.push(size)
                };
                let need = size.div_ceil(8) * 8 + 8;
                if used + need > usable {
                    assert_eq!(
                        result,
                        Err(AllocError::StackOverflow {
                            requested: size,
                            used,
                            limit
                        })
                    );
                } else {
                    let frame = result.unwrap();
                    assert_eq!(frame.size(), need - 8);
                    assert_eq!(frame.ptr().as_ptr() as usize % 8, 0);
                    if zeroed {
                        assert!(stack.slots(frame).iter().all(|&v| v == 0));
                    }
                    if let Some((below, _)) = model.last() {
                        assert_eq!(
                            frame.ptr().as_ptr() as usize,
                            below.ptr().as_ptr() as usize + below.size()
                        );
                    }
                    seed += 1;
                    fill(&mut stack, frame, seed);
                    model.push((frame, seed));
                }
            }
            Op::Pop => {
                if let Some((frame, _)) = model.pop() {
                    stack.pop(frame);
                }
            }
        }
        assert_eq!(stack.depth(), model.len());
        assert_eq!(
            stack.used_bytes(),
            model.iter().map(|(f, _)| f.size() + 8).sum::<usize>()
        );
        assert_eq!(stack.top(), model.last().map(|(f, _)| *f));
        let mut walked = Vec::new();
        stack.walk(|ptr, size| walked.push((ptr, size)));
        assert!(
            walked.iter().eq(model
                .iter()
                .rev()
                .map(|(f, _)| (f.ptr(), f.size()))
                .collect::<Vec<_>>()
                .iter())
        );
        for &(frame, seed) in &model {
            let ok = stack
                .slots(frame)
                .iter()
                .enumerate()
                .all(|(i, &v)| v == seed << 20 | i as u64);
            assert!(ok, "contents of {frame} changed");
        }
    }
    stack.flush_stats();
    let s = pools.stats().space(SpaceType::Frames);
    assert_eq!(
        (s.live_bytes(), s.live_objects()),
        (stack.used_bytes() as u64, model.len() as u64)
    );
    drop(stack);
    assert_eq!(pools.stats().space(SpaceType::Frames).live_bytes(), 0);
    assert_eq!(pools.used(SpaceType::Frames), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn frames_match_the_model(limit in 8usize..20_000, ops in proptest::collection::vec(op(), 1..150)) {
        run(limit, ops);
    }
}
