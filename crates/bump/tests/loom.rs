//! Loom models of `BumpRegion`'s lock-free carving: threads racing on the
//! region's top never get overlapping memory, never pass the end, and each
//! sees exhaustion as an error exactly when not enough is left.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p rtmem-bump --release --test loom`.
#![cfg(loom)]

use std::alloc::Layout;
use std::ptr::NonNull;

use loom::sync::Arc;
use loom::thread;
use rtmem_base::AllocError;
use rtmem_bump::BumpRegion;

/// The region's memory: a plain boxed buffer, 8-aligned.
const WORDS: usize = 8;
const CAPACITY: usize = WORDS * 8;

/// What one carve or alloc returned: (offset, length) or the bytes that were
/// in use when it failed.
type Outcome = Result<(usize, usize), usize>;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // `LOOM_MAX_PREEMPTIONS` (CI sets 2) wins; otherwise bound the search here.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

fn region_over(buf: &mut [u64; WORDS]) -> BumpRegion {
    let start = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: the buffer outlives the region (both live in the model's
    // closure, the region is dropped first) and is used only through it.
    unsafe { BumpRegion::from_raw(start, CAPACITY) }
}

fn outcome(region: &BumpRegion, r: Result<(NonNull<u8>, usize), AllocError>) -> Outcome {
    let base = region.start().as_ptr().addr();
    match r {
        Ok((p, len)) => Ok((p.as_ptr().addr() - base, len)),
        Err(AllocError::LimitExceeded { used, limit, .. }) => {
            assert_eq!(limit, CAPACITY);
            Err(used)
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Every chunk inside the region, no two overlapping, and together exactly
/// what the region says it used.
fn check_tiling(region: &BumpRegion, chunks: &mut [(usize, usize)]) {
    chunks.sort_unstable();
    let mut end = 0;
    for &(offset, len) in chunks.iter() {
        assert!(offset >= end, "chunks {chunks:?} overlap");
        assert!(
            offset + len <= CAPACITY,
            "chunk {offset}+{len} passes the end"
        );
        end = offset + len;
    }
    assert_eq!(chunks.iter().map(|c| c.1).sum::<usize>(), region.used());
}

#[test]
fn racing_carves_are_disjoint_and_see_exhaustion() {
    model(|| {
        let mut buf = Box::new([0u64; WORDS]);
        let region = Arc::new(region_over(&mut buf));
        // Each thread asks for (min, preferred) twice: 3 x 2 x 16 = 96 bytes
        // wanted, 64 available, so somebody must be refused.
        let handles: Vec<_> = [(8, 16), (16, 24), (8, 32)]
            .into_iter()
            .map(|(min, preferred)| {
                let region = region.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        let r = outcome(&region, region.carve(min, preferred));
                        if let Ok((_, len)) = r {
                            assert!(
                                (min..=preferred).contains(&len),
                                "{len} not in {min}..={preferred}"
                            );
                        }
                        got.push((min, r));
                    }
                    got
                })
            })
            .collect();
        let results: Vec<(usize, Outcome)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let mut chunks: Vec<(usize, usize)> = results.iter().filter_map(|r| r.1.ok()).collect();
        check_tiling(&region, &mut chunks);
        for &(min, r) in &results {
            if let Err(used) = r {
                // Refused only when, at that moment, less than `min` was left.
                assert!(
                    CAPACITY - used < min,
                    "refused {min} with {used} of {CAPACITY} used"
                );
            }
        }
        assert!(
            results.iter().any(|r| r.1.is_err()),
            "96 bytes cannot fit in 64"
        );
        assert!(
            CAPACITY - region.used() < 16,
            "the region was carved until nothing useful was left"
        );
        drop(region);
        drop(buf);
    });
}

#[test]
fn aligned_allocs_race_with_carves() {
    model(|| {
        let mut buf = Box::new([0u64; WORDS]);
        let region = Arc::new(region_over(&mut buf));
        let layout = Layout::from_size_align(8, 16).unwrap();
        let allocator = {
            let region = region.clone();
            thread::spawn(move || {
                let base = region.start().as_ptr().addr();
                (0..2)
                    .map(|_| {
                        let r = region.alloc(layout).map(|p| (p, 8));
                        if let Ok((p, _)) = r {
                            assert_eq!(p.as_ptr().addr() % 16, 0, "alignment honoured");
                            assert!(p.as_ptr().addr() - base < CAPACITY);
                        }
                        outcome(&region, r)
                    })
                    .collect::<Vec<_>>()
            })
        };
        let carver = {
            let region = region.clone();
            thread::spawn(move || {
                (0..2)
                    .map(|_| outcome(&region, region.carve(8, 24)))
                    .collect::<Vec<_>>()
            })
        };
        let allocs = allocator.join().unwrap();
        let carves = carver.join().unwrap();
        let mut chunks: Vec<(usize, usize)> = carves.iter().filter_map(|r| r.ok()).collect();
        let objects: Vec<(usize, usize)> = allocs.iter().filter_map(|r| r.ok()).collect();
        chunks.extend(&objects);
        let gaps = region.used() - chunks.iter().map(|c| c.1).sum::<usize>();
        chunks.push((CAPACITY, 0));
        chunks.sort_unstable();
        for pair in chunks.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{chunks:?} overlap");
        }
        assert!(
            gaps <= 8 * objects.len(),
            "each aligned alloc skips at most 8 bytes"
        );
        assert_eq!(region.accounted_objects(), objects.len());
        drop(region);
        drop(buf);
    });
}
