//! Which pools an allocator owns: a bitmap with one bit per pool slot of the
//! `PoolManager`'s reservation, read without a lock.
//!
//! Several allocators may share a space (a non-moving space holds run-slots
//! and free-list pools), so the `PoolManager`'s space tag alone cannot say
//! whether an address is ours, and reading a foreign pool's memory to find out
//! would be a data race (or a fault, if the pool is decommitted meanwhile).
//!
//! The pool slots of the reservation are consecutive multiples of the pool
//! size, so `start / pool_size` of the slots are consecutive integers and,
//! reduced modulo a power of two at least the number of slots, distinct: that
//! is the bit index. A pool of several slots is named by its first slot, which
//! is what `PoolManager::pool_of` returns for any address inside it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rtmem_base::{Pool, PoolManager, SpaceType};

/// One bit per pool slot: set while the pool starting there is ours.
pub(crate) struct OwnedPools {
    bits: Box<[AtomicU64]>,
    mask: usize,
    shift: u32,
}

impl OwnedPools {
    /// An empty set sized for `pools`' reservation.
    pub(crate) fn new(pools: &PoolManager) -> OwnedPools {
        let slots = (pools.reserved_bytes() / pools.pool_size())
            .next_power_of_two()
            .max(64);
        OwnedPools {
            bits: (0..slots / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: slots - 1,
            shift: pools.pool_size().trailing_zeros(),
        }
    }

    /// The bytes of the bitmap (reported as metadata).
    pub(crate) fn metadata_bytes(&self) -> usize {
        size_of_val(&*self.bits)
    }

    #[inline(always)]
    fn bit(&self, pool: &Pool) -> (&AtomicU64, u64) {
        let index = (pool.start_addr() >> self.shift) & self.mask;
        (&self.bits[index / 64], 1 << (index % 64))
    }

    /// Records that `pool` is ours.
    pub(crate) fn insert(&self, pool: &Pool) {
        let (word, bit) = self.bit(pool);
        word.fetch_or(bit, Relaxed);
    }

    /// Records that `pool` is ours no more.
    pub(crate) fn remove(&self, pool: &Pool) {
        let (word, bit) = self.bit(pool);
        word.fetch_and(!bit, Relaxed);
    }

    /// The pool of ours (of `space` in `pools`) that contains `addr`, if any.
    #[inline(always)]
    pub(crate) fn pool_of(
        &self,
        pools: &PoolManager,
        space: SpaceType,
        addr: usize,
    ) -> Option<Pool> {
        let pool = pools.pool_of(addr)?;
        let (word, bit) = self.bit(&pool);
        (pool.space() == space && word.load(Relaxed) & bit != 0).then_some(pool)
    }
}

#[cfg(test)]
mod tests {
    use rtmem_base::PoolManagerConfig;

    use super::*;

    #[test]
    fn membership_follows_insert_and_remove() {
        let pm = PoolManager::new(PoolManagerConfig::default().with_reserve(64 << 20)).unwrap();
        let owned = OwnedPools::new(&pm);
        assert_eq!(
            owned.metadata_bytes(),
            256 / 8,
            "256 slots of 256 KiB, one bit each"
        );
        let ours = pm.alloc_pool(SpaceType::NonMoving, 1).unwrap();
        let theirs = pm.alloc_pool(SpaceType::NonMoving, 1).unwrap();
        let big = pm
            .alloc_pool(SpaceType::NonMoving, 3 * pm.pool_size())
            .unwrap();
        owned.insert(&ours);
        owned.insert(&big);
        let inside = ours.start_addr() + 100;
        assert_eq!(owned.pool_of(&pm, SpaceType::NonMoving, inside), Some(ours));
        assert_eq!(
            owned.pool_of(&pm, SpaceType::Object, inside),
            None,
            "wrong space"
        );
        assert_eq!(
            owned.pool_of(&pm, SpaceType::NonMoving, theirs.start_addr()),
            None
        );
        assert_eq!(
            owned.pool_of(&pm, SpaceType::NonMoving, big.end_addr() - 1),
            Some(big)
        );
        assert_eq!(owned.pool_of(&pm, SpaceType::NonMoving, 0), None);
        owned.remove(&ours);
        assert_eq!(owned.pool_of(&pm, SpaceType::NonMoving, inside), None);
        assert!(
            owned
                .pool_of(&pm, SpaceType::NonMoving, big.start_addr())
                .is_some()
        );
        for p in [ours, theirs, big] {
            pm.free_pool(p);
        }
    }
}
