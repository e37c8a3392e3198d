//! The managed-object spaces, as building blocks a collector configures.

use std::sync::Arc;

use rtmem_base::{AllocError, PoolManager, SpaceType};
use rtmem_bump::BumpRegion;
use rtmem_freelist::FreeListAllocator;
use rtmem_freelist::large::LargeObjectAllocator;
use rtmem_runslots::RunSlotsAllocator;

/// Small objects in runs of slots and medium ones in a free list: the
/// non-moving pair that both the tenured generation and the non-moving space
/// are made of.
pub struct SlotsAndBlocks {
    small: Arc<RunSlotsAllocator>,
    medium: FreeListAllocator,
}

impl SlotsAndBlocks {
    fn new(pools: &Arc<PoolManager>, space: SpaceType) -> SlotsAndBlocks {
        SlotsAndBlocks {
            small: Arc::new(RunSlotsAllocator::new(pools.clone(), space)),
            medium: FreeListAllocator::new(pools.clone(), space),
        }
    }

    /// Objects of up to [`RunSlotsAllocator::MAX_SIZE`] bytes.
    pub fn small(&self) -> &Arc<RunSlotsAllocator> {
        &self.small
    }

    /// Objects up to the free list's [`max_size`](FreeListAllocator::max_size).
    pub fn medium(&self) -> &FreeListAllocator {
        &self.medium
    }

    /// Whether `addr` lies in one of the two allocators' pools.
    pub fn contains(&self, addr: usize) -> bool {
        self.medium.contains(addr) || self.small.contains(addr)
    }
}

/// The object space: a young generation of bump regions (carved into TLABs)
/// and a tenured generation of runs of slots and free-list blocks.
pub struct ObjectSpace {
    pools: Arc<PoolManager>,
    tenured: SlotsAndBlocks,
}

impl ObjectSpace {
    pub(crate) fn new(pools: &Arc<PoolManager>) -> ObjectSpace {
        ObjectSpace {
            pools: pools.clone(),
            tenured: SlotsAndBlocks::new(pools, SpaceType::Object),
        }
    }

    /// A new young region of `bytes` (rounded up to whole pools), for TLABs.
    pub fn young_region(&self, bytes: usize) -> Result<BumpRegion, AllocError> {
        BumpRegion::new(self.pools.clone(), SpaceType::Object, bytes)
    }

    /// The tenured generation.
    pub fn tenured(&self) -> &SlotsAndBlocks {
        &self.tenured
    }
}

/// The non-moving space: pinned objects, classes, objects seen by native code.
pub struct NonMovingSpace {
    objects: SlotsAndBlocks,
}

impl NonMovingSpace {
    pub(crate) fn new(pools: &Arc<PoolManager>) -> NonMovingSpace {
        NonMovingSpace {
            objects: SlotsAndBlocks::new(pools, SpaceType::NonMoving),
        }
    }

    /// The allocators of the space.
    pub fn objects(&self) -> &SlotsAndBlocks {
        &self.objects
    }
}

/// The humongous space: each large object in a pool of its own.
pub struct HumongousSpace {
    large: LargeObjectAllocator,
}

impl HumongousSpace {
    pub(crate) fn new(pools: &Arc<PoolManager>) -> HumongousSpace {
        HumongousSpace {
            large: LargeObjectAllocator::new(pools.clone(), SpaceType::Humongous),
        }
    }

    /// The large-object allocator.
    pub fn large(&self) -> &LargeObjectAllocator {
        &self.large
    }
}
