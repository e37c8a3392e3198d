//! Several threads, each with its own TLAB over one shared region: all objects
//! are disjoint and intact, the region is used to the last byte, and its
//! exhaustion reaches every thread as an error.

use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{AllocError, PoolManager, PoolManagerConfig, SpaceType};
use rtmem_bump::{BumpRegion, granule_round};
use rtmem_tlab::{Tlab, TlabStats};

const THREADS: usize = 4;

/// An object a thread allocated: address, rounded size, and the word written into it.
type Object = (usize, usize, u64);

/// Marks each gap, so that an overlap with an object shows as a clobbered word.
fn mark_gap(start: NonNull<u8>, _len: usize) {
    // SAFETY: an unused, 8-aligned range of at least 8 bytes in the region.
    unsafe { start.cast::<u64>().write(u64::MAX) };
}

#[test]
fn threads_share_a_region_until_it_is_exhausted() {
    let pools = Arc::new(
        PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(64 << 10)
                .with_reserve(16 << 20),
        )
        .unwrap(),
    );
    let mut region = BumpRegion::new(pools.clone(), SpaceType::Object, 1 << 20)
        .unwrap()
        .with_filler(mark_gap);
    let results: Vec<(Vec<Object>, AllocError, TlabStats)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let region = &region;
                s.spawn(move || {
                    let mut tlab = Tlab::new(4096 << (t % 3));
                    let mut objects = Vec::new();
                    let mut n = 0u64;
                    // Mixed sizes until the region refuses; then single
                    // granules until even those are refused.
                    let mut granules_only = false;
                    let error = loop {
                        let size = match (granules_only, n % 97) {
                            (true, _) => 8,
                            (false, 96) => 3000,
                            (false, _) => 8 + ((n * 37 + t as u64 * 11) % 200) as usize,
                        };
                        match tlab.alloc(region, size) {
                            Ok(p) => {
                                let word = ((t as u64) << 48) | n;
                                // SAFETY: a fresh object of at least 8 bytes.
                                unsafe { p.cast::<u64>().write(word) };
                                objects.push((p.as_ptr().addr(), granule_round(size), word));
                                n += 1;
                            }
                            Err(e) if size == 8 => break e,
                            Err(_) => granules_only = true,
                        }
                    };
                    tlab.retire(region);
                    (objects, error, tlab.stats())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no thread panics"))
            .collect()
    });

    let mut all: Vec<Object> = Vec::new();
    let base = region.start().as_ptr().addr();
    for (objects, error, stats) in results {
        assert!(
            matches!(
                error,
                AllocError::LimitExceeded {
                    space: SpaceType::Object,
                    ..
                }
            ),
            "every thread sees exhaustion as a LimitExceeded error: {error}"
        );
        assert!(
            error.to_string().contains("object space is full"),
            "{error}"
        );
        assert_eq!(stats.objects, objects.len());
        assert_eq!(
            stats.allocated_bytes,
            objects.iter().map(|o| o.1).sum::<usize>()
        );
        all.extend(objects);
    }
    all.sort_unstable();
    for pair in all.windows(2) {
        assert!(
            pair[0].0 + pair[0].1 <= pair[1].0,
            "{:#x?} and {:#x?} overlap",
            pair[0],
            pair[1]
        );
    }
    for &(addr, size, word) in &all {
        assert!(addr >= base && addr + size <= base + region.capacity());
        // SAFETY: each object was written by its thread, and the threads were joined.
        let found = unsafe { (addr as *const u64).read() };
        assert_eq!(found, word, "object at {addr:#x} intact");
    }
    assert_eq!(region.used(), region.capacity(), "carved to the last byte");
    let bytes: usize = all.iter().map(|o| o.1).sum();
    assert_eq!(region.accounted_bytes(), bytes);
    assert_eq!(region.accounted_objects(), all.len());
    let s = pools.stats().space(SpaceType::Object);
    assert_eq!(
        (s.live_bytes() as usize, s.live_objects() as usize),
        (bytes, all.len())
    );
    region.reset();
    assert_eq!(pools.stats().space(SpaceType::Object).live_bytes(), 0);
}
