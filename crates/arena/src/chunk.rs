//! The chain of pools behind an arena: every pool starts with a header that
//! links it to the pool acquired before it, so an arena never needs memory of
//! its own (nor the global allocator) to remember which pools it holds.

use std::ptr::NonNull;

use rtmem_base::Pool;

use crate::mark::MARK_ROOM;

/// The header at the start of every pool an arena holds.
#[repr(C)]
struct ChunkHeader {
    /// The chunk acquired before this one (older), if any.
    prev: Option<Chunk>,
    /// The pool this header lives in, given back to the pool manager whole.
    pool: Pool,
    /// One past the last byte in use, recorded when the arena moves on to a
    /// newer chunk (the current chunk's end of use is the arena's top).
    used_end: usize,
}

/// Bytes at the start of each chunk taken by its header. A multiple of 16, so
/// the first allocation in a fresh chunk is 16-aligned without padding.
pub(crate) const HEADER_SIZE: usize = size_of::<ChunkHeader>().next_multiple_of(16);

/// One pool of an arena's chain, seen through its header.
///
/// Invariant: a `Chunk` is made only by [`Chunk::init`] over a pool the arena
/// owns, and used only while that pool is live: the arena unlinks a chunk
/// from its chain (and forgets every copy of it) before giving its pool back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk(NonNull<ChunkHeader>);

impl Chunk {
    /// Writes a header at the start of `pool` and returns the chunk.
    ///
    /// # Safety
    /// `pool` must be live, owned by the caller and used by nothing else, and
    /// at least `HEADER_SIZE + MARK_ROOM` bytes long.
    pub(crate) unsafe fn init(pool: Pool, prev: Option<Chunk>) -> Chunk {
        debug_assert!(pool.size() >= HEADER_SIZE + MARK_ROOM);
        let header = pool.start().cast::<ChunkHeader>();
        let used_end = pool.start_addr() + HEADER_SIZE;
        // SAFETY: the pool is committed read-write, aligned to at least a page
        // (enough for the header), large enough, and ours alone (caller).
        unsafe {
            header.write(ChunkHeader {
                prev,
                pool,
                used_end,
            })
        };
        Chunk(header)
    }

    /// The chunk acquired before this one.
    #[inline]
    pub(crate) fn prev(self) -> Option<Chunk> {
        // SAFETY: type invariant: the header is initialized and its pool live.
        unsafe { (*self.0.as_ptr()).prev }
    }

    /// Relinks this chunk (used when the chain is cut down to one chunk).
    pub(crate) fn set_prev(self, prev: Option<Chunk>) {
        // SAFETY: as for `prev`; no reference to the header is held anywhere.
        unsafe { (*self.0.as_ptr()).prev = prev };
    }

    /// The pool the chunk lives in.
    #[inline]
    pub(crate) fn pool(self) -> Pool {
        // SAFETY: as for `prev`.
        unsafe { (*self.0.as_ptr()).pool }
    }

    /// The first byte after the header.
    #[inline]
    pub(crate) fn data_start(self) -> usize {
        self.0.as_ptr() as usize + HEADER_SIZE
    }

    /// The limit of ordinary allocation: the pool's end less the room kept
    /// for one mark record.
    #[inline]
    pub(crate) fn alloc_end(self) -> usize {
        self.pool().end_addr() - MARK_ROOM
    }

    /// One past the last byte used, as recorded by [`set_used_end`](Self::set_used_end).
    pub(crate) fn used_end(self) -> usize {
        // SAFETY: as for `prev`.
        unsafe { (*self.0.as_ptr()).used_end }
    }

    /// Records how far the chunk is used, when the arena leaves it.
    pub(crate) fn set_used_end(self, end: usize) {
        // SAFETY: as for `set_prev`.
        unsafe { (*self.0.as_ptr()).used_end = end };
    }
}

/// The chunks from `newest` back to the oldest.
///
/// Each chunk's predecessor is read before the chunk is yielded, but callers
/// that give pools back while walking still use explicit loops, to keep that
/// ordering visible.
pub(crate) fn chain(newest: Option<Chunk>) -> impl Iterator<Item = Chunk> {
    std::iter::successors(newest, |chunk| chunk.prev())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};

    #[test]
    fn headers_link_pools_into_a_chain() {
        let pm = PoolManager::new(PoolManagerConfig::default().with_reserve(16 << 20)).unwrap();
        let a = pm.alloc_pool(SpaceType::CompilerInternal, 1).unwrap();
        let b = pm
            .alloc_pool(SpaceType::CompilerInternal, 3 * pm.pool_size())
            .unwrap();
        // SAFETY: both pools are fresh, ours, and far larger than a header.
        let (ca, cb) = unsafe { (Chunk::init(a, None), Chunk::init(b, None)) };
        cb.set_prev(Some(ca));
        assert_eq!(chain(Some(cb)).collect::<Vec<_>>(), [cb, ca]);
        assert_eq!(cb.pool(), b);
        assert_eq!(ca.data_start(), a.start_addr() + HEADER_SIZE);
        assert_eq!(HEADER_SIZE % 16, 0);
        assert_eq!(cb.alloc_end(), b.end_addr() - MARK_ROOM);
        assert_eq!(ca.used_end(), ca.data_start());
        ca.set_used_end(ca.data_start() + 100);
        assert_eq!(ca.used_end(), ca.data_start() + 100);
        pm.free_pool(a);
        pm.free_pool(b);
    }
}
