//! The region stays walkable: with a filler that writes a marker record into
//! every gap, a walk from the region's start to `used()` over object headers
//! and filler records visits exactly the objects allocated.

use std::alloc::Layout;
use std::collections::BTreeSet;
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
use rtmem_bump::{BumpRegion, granule_round};
use rtmem_tlab::Tlab;

/// A filler record's header: its length with the low bit set. Object headers
/// hold the object's size, a multiple of 8, so the low bit tells them apart.
const FILLER_BIT: u64 = 1;

fn write_filler(start: NonNull<u8>, len: usize) {
    assert!(
        len >= 8 && len.is_multiple_of(8),
        "fillers get whole granules, got {len}"
    );
    // SAFETY: the region hands the filler an unused, 8-aligned range of `len` bytes.
    unsafe { start.cast::<u64>().write(len as u64 | FILLER_BIT) };
}

/// Steps from the start of the region to `used()`, returning the objects seen.
fn walk(region: &BumpRegion) -> BTreeSet<(usize, usize)> {
    let mut objects = BTreeSet::new();
    let mut addr = region.start().as_ptr().addr();
    let end = addr + region.used();
    while addr < end {
        // SAFETY: `addr` is the start of an object or a filler record inside
        // the region's used part; both begin with an 8-byte header.
        let header = unsafe { (addr as *const u64).read() };
        let len = (header & !FILLER_BIT) as usize;
        assert!(len >= 8, "corrupt header {header:#x} at {addr:#x}");
        if header & FILLER_BIT == 0 {
            objects.insert((addr, len));
        }
        addr += len;
    }
    assert_eq!(addr, end, "the walk ends exactly at the top");
    objects
}

/// A small deterministic generator, so the test needs no randomness crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below
    }
}

#[test]
fn a_walk_visits_exactly_the_allocated_objects() {
    let pools = Arc::new(
        PoolManager::new(
            PoolManagerConfig::default()
                .with_pool_size(64 << 10)
                .with_reserve(16 << 20),
        )
        .unwrap(),
    );
    let mut region = BumpRegion::new(pools, SpaceType::Object, 256 << 10)
        .unwrap()
        .with_filler(write_filler);
    let mut tlabs = [Tlab::new(2048), Tlab::new(512), Tlab::new(8 << 10)];
    let mut rng = Lcg(42);
    for round in 0..3 {
        let mut allocated = BTreeSet::new();
        let mut record = |p: NonNull<u8>, size: usize| {
            let size = granule_round(size.max(8));
            // SAFETY: a fresh object of at least `size` (>= 8) bytes.
            unsafe { p.cast::<u64>().write(size as u64) };
            allocated.insert((p.as_ptr().addr(), size));
        };
        for step in 0..3000 {
            let t = rng.next(3);
            match rng.next(100) {
                0..=2 => tlabs[t].retire(&region),
                3..=5 => {
                    let size = 8 + rng.next(100);
                    let layout = Layout::from_size_align(size, 64).unwrap();
                    if let Ok(p) = region.alloc(layout) {
                        record(p, size);
                    }
                }
                n => {
                    let size = if n > 97 {
                        300 + rng.next(5000)
                    } else {
                        8 + rng.next(120)
                    };
                    match tlabs[t].alloc(&region, size) {
                        Ok(p) => record(p, size),
                        Err(e) => assert!(step > 100, "round {round}: early failure {e}"),
                    }
                }
            }
        }
        for t in &mut tlabs {
            t.retire(&region);
        }
        assert!(
            tlabs.iter().map(|t| t.stats().wasted_bytes).sum::<usize>() > 0,
            "tails were filled"
        );
        assert_eq!(walk(&region), allocated, "round {round}");
        region.reset();
    }
}
