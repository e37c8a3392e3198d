//! Helpers shared by the unit tests of the free-list and large-object allocators.

use std::alloc::Layout;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{PoolManager, PoolManagerConfig};

/// A pool manager reserving `reserve` bytes.
pub(crate) fn pools(reserve: usize) -> Arc<PoolManager> {
    Arc::new(PoolManager::new(PoolManagerConfig::default().with_reserve(reserve)).unwrap())
}

pub(crate) fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

pub(crate) fn addr(p: NonNull<u8>) -> usize {
    p.as_ptr() as usize
}

/// The message of the panic `f` raises.
pub(crate) fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}
