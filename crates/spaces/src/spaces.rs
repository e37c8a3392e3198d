//! `Spaces`: every space of a runtime over one pool manager.

use std::sync::Arc;

use rtmem_arena::{Arena, FrameAllocator};
use rtmem_base::{AllocError, MemStatsSnapshot, PoolManager, SpaceType};
use rtmem_code::{CodeAllocator, CodeConfig};

use crate::config::SpacesConfig;
use crate::internal::RuntimeInternalSpace;
use crate::object::{HumongousSpace, NonMovingSpace, ObjectSpace};

/// All the spaces of one runtime, sharing one [`PoolManager`] that enforces
/// each space's budget (initial size, growth rule, limit).
pub struct Spaces {
    pools: Arc<PoolManager>,
    code: CodeAllocator,
    internal: RuntimeInternalSpace,
    object: ObjectSpace,
    non_moving: NonMovingSpace,
    humongous: HumongousSpace,
    config: SpacesConfig,
}

impl Spaces {
    /// Reserves the address space and sets up every space.
    pub fn new(config: SpacesConfig) -> Result<Spaces, AllocError> {
        let pools = Arc::new(PoolManager::new(config.pool_config())?);
        let code = CodeAllocator::new(
            pools.clone(),
            CodeConfig {
                alignment: config.code_alignment,
                chunk_bytes: 0,
            },
        )?;
        Ok(Spaces {
            code,
            internal: RuntimeInternalSpace::new(pools.clone(), config.large_threshold),
            object: ObjectSpace::new(&pools),
            non_moving: NonMovingSpace::new(&pools),
            humongous: HumongousSpace::new(&pools),
            pools,
            config,
        })
    }

    /// The pool manager behind every space.
    pub fn pools(&self) -> &Arc<PoolManager> {
        &self.pools
    }

    /// The configuration the spaces were built from.
    pub fn config(&self) -> &SpacesConfig {
        &self.config
    }

    /// The code space.
    pub fn code(&self) -> &CodeAllocator {
        &self.code
    }

    /// A new arena in the compiler-internal space (freed when dropped).
    pub fn compiler_arena(&self) -> Arena {
        Arena::with_space(self.pools.clone(), SpaceType::CompilerInternal)
    }

    /// A new frame stack in the frames space, of at most `limit_bytes`.
    pub fn frames(&self, limit_bytes: usize) -> Result<FrameAllocator, AllocError> {
        FrameAllocator::new(self.pools.clone(), limit_bytes)
    }

    /// The runtime-internal space.
    pub fn internal(&self) -> &RuntimeInternalSpace {
        &self.internal
    }

    /// The object space.
    pub fn object(&self) -> &ObjectSpace {
        &self.object
    }

    /// The non-moving space.
    pub fn non_moving(&self) -> &NonMovingSpace {
        &self.non_moving
    }

    /// The humongous space.
    pub fn humongous(&self) -> &HumongousSpace {
        &self.humongous
    }

    /// Statistics of every space.
    pub fn snapshot(&self) -> MemStatsSnapshot {
        self.internal.flush_stats();
        self.pools.snapshot()
    }
}
