//! How the spaces are sized.

use rtmem_base::{PoolManagerConfig, SpaceBudget, SpaceType};

/// The layout and size policy of every space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpacesConfig {
    /// Address space reserved for all spaces together.
    pub reserve_bytes: usize,
    /// The size of one pool (a power of two, at least a page).
    pub pool_size: usize,
    /// Initial size, limit and growth of each space, by [`SpaceType::index`].
    pub budgets: [SpaceBudget; SpaceType::COUNT],
    /// Requests of at least this many bytes get a pool of their own (in the
    /// runtime-internal space, and the humongous space for objects).
    pub large_threshold: usize,
    /// Alignment of every code blob.
    pub code_alignment: usize,
}

impl Default for SpacesConfig {
    fn default() -> Self {
        let pool = PoolManagerConfig::default();
        SpacesConfig {
            reserve_bytes: pool.reserve_bytes,
            pool_size: pool.pool_size,
            budgets: pool.budgets,
            large_threshold: 64 << 10,
            code_alignment: 16,
        }
    }
}

impl SpacesConfig {
    /// Sets the size policy of one space.
    pub fn with_budget(mut self, space: SpaceType, budget: SpaceBudget) -> Self {
        self.budgets[space.index()] = budget;
        self
    }

    /// The pool manager configuration these spaces need.
    pub fn pool_config(&self) -> PoolManagerConfig {
        PoolManagerConfig {
            reserve_bytes: self.reserve_bytes,
            pool_size: self.pool_size,
            budgets: self.budgets,
            ..PoolManagerConfig::default()
        }
    }
}
