//! Marks: positions in an arena that `release` rolls back to, in stack order.
//!
//! Each mark is a small record written into the arena itself, linked to the
//! record of the previous live mark. The arena keeps the newest record; a
//! release walks back from it to the mark's record, so stack discipline is
//! checked exactly: a mark from another arena, or one that an earlier release
//! or reset already freed, is found missing and the release panics instead of
//! corrupting the arena. Releasing to the newest mark, the common case, finds
//! it at once.
//!
//! `mark` must not fail (it returns no `Result`), so every chunk keeps
//! [`MARK_ROOM`] bytes past its allocation limit: whenever the top has moved
//! since the latest mark, it is at or below that limit and a record fits. If
//! the top has not moved, the latest mark already describes this position
//! and is handed out again.

use std::fmt;
use std::ptr::NonNull;

use rtmem_base::align_up;

use crate::arena::Arena;
use crate::chunk::Chunk;

/// The record of a live mark, stored in the arena's own memory.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct MarkRecord {
    /// The record of the previous live mark.
    prev: Option<NonNull<MarkRecord>>,
    /// The chunk the record lies in.
    chunk: Chunk,
    /// The mark's id, unique within its arena.
    id: u64,
    /// The arena's `older_used` and `waste` right after the mark was taken
    /// (its own record counted as waste).
    older_used: usize,
    waste: usize,
}

/// Room kept free at the end of every chunk so that [`Arena::mark`] can always
/// write its record (the record and its alignment padding).
pub(crate) const MARK_ROOM: usize = size_of::<MarkRecord>() + align_of::<MarkRecord>();

/// A position in an [`Arena`], to roll back to with [`Arena::release`].
///
/// Marks nest like a stack: releasing to a mark frees everything allocated
/// after it and invalidates the marks taken after it, while the mark itself
/// stays valid (it can be released to again). A mark is a small copyable
/// token; the arena keeps a 40-byte record per live mark in its own memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArenaMark {
    arena: u64,
    id: u64,
}

impl ArenaMark {
    /// The [`id`](Arena::id) of the arena the mark was taken from.
    pub fn arena_id(&self) -> u64 {
        self.arena
    }
}

impl fmt::Display for ArenaMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mark #{} of arena #{}", self.id, self.arena)
    }
}

impl Arena {
    /// Marks the current position, to [`release`](Self::release) back to.
    ///
    /// Costs one 40-byte record in the arena (not counted in
    /// [`allocated_bytes`](Self::allocated_bytes)), or nothing if nothing was
    /// allocated since the latest mark, which is then returned again. Never
    /// fails and never takes a pool.
    pub fn mark(&self) -> ArenaMark {
        let top = self.top.get();
        if top == self.mark_top.get() {
            let latest = self.latest_mark.get().map(|record| {
                // SAFETY: records on the latest-mark list lie in live chunks
                // below the top, where nothing else writes.
                unsafe { record.as_ptr().read() }
            });
            debug_assert_eq!(
                latest.map_or((0, 0), |r| (r.older_used, r.waste)),
                (self.older_used.get(), self.waste.get()),
                "nothing was allocated since the latest mark"
            );
            return ArenaMark {
                arena: self.id,
                id: latest.map_or(0, |r| r.id),
            };
        }
        let chunk = self
            .chunk
            .get()
            .expect("an arena whose top moved holds a chunk");
        let at = align_up(top, align_of::<MarkRecord>());
        let record_end = at + size_of::<MarkRecord>();
        debug_assert!(
            record_end <= chunk.pool().end_addr(),
            "MARK_ROOM keeps a record in the chunk"
        );
        let id = self.next_mark_id.get();
        self.next_mark_id.set(id + 1);
        let record = NonNull::new(at as *mut MarkRecord).expect("chunks are never at address 0");
        self.waste.set(self.waste.get() + (record_end - top));
        let value = MarkRecord {
            prev: self.latest_mark.get(),
            chunk,
            id,
            older_used: self.older_used.get(),
            waste: self.waste.get(),
        };
        // SAFETY: the top moved since the latest mark, so it is at or below the
        // chunk's allocation limit, and the `MARK_ROOM` bytes past that limit
        // hold the record with its alignment padding; the memory above the top
        // belongs to no allocation, and `at` is aligned for the record.
        unsafe { record.as_ptr().write(value) };
        self.latest_mark.set(Some(record));
        self.top.set(record_end);
        self.end.set(self.end.get().max(record_end));
        self.mark_top.set(record_end);
        ArenaMark { arena: self.id, id }
    }

    /// Frees everything allocated after `mark` (without running destructors)
    /// and gives back the chunks taken since; marks taken after `mark` become
    /// stale. O(chunks given back + marks invalidated).
    ///
    /// # Panics
    /// If `mark` was taken from another arena, or is stale: an earlier
    /// release or reset of this arena already freed it (marks are released in
    /// stack order). The message names the mark. This check is made in every
    /// build: releasing to a stale mark would otherwise corrupt the arena.
    pub fn release(&mut self, mark: ArenaMark) {
        assert!(
            mark.arena == self.id,
            "Arena::release: {mark} belongs to another arena (this is arena #{})",
            self.id
        );
        if mark.id == 0 {
            // Taken before anything was allocated: release everything.
            self.reset();
            return;
        }
        let record = self.find_mark(mark);
        // SAFETY: `find_mark` returns a record on the latest-mark list (see `mark`).
        let found = unsafe { record.as_ptr().read() };
        let before = self.allocated_bytes();
        self.pop_chunks_to(found.chunk);
        self.older_used.set(found.older_used);
        self.waste.set(found.waste);
        self.latest_mark.set(Some(record));
        self.restart_at(
            Some(found.chunk),
            record.as_ptr() as usize + size_of::<MarkRecord>(),
        );
        self.rolled_back(before);
    }

    /// The record of `mark` on the latest-mark list.
    fn find_mark(&self, mark: ArenaMark) -> NonNull<MarkRecord> {
        let mut next = self.latest_mark.get();
        while let Some(record) = next {
            // SAFETY: records on the latest-mark list lie in live chunks.
            let r = unsafe { record.as_ptr().read() };
            // Ids decrease along the list: once below, the mark is not on it.
            if r.id <= mark.id {
                if r.id == mark.id {
                    return record;
                }
                break;
            }
            next = r.prev;
        }
        panic!(
            "Arena::release: {mark} is stale: an earlier release or reset of arena #{} already freed it (marks must be released in stack order)",
            self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::Layout;
    use std::sync::Arc;

    use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};

    use super::*;
    use crate::chunk::HEADER_SIZE;

    const POOL: usize = 64 << 10;

    fn arena() -> Arena {
        Arena::new(Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_pool_size(POOL)
                    .with_reserve(1 << 30),
            )
            .unwrap(),
        ))
    }

    fn alloc(arena: &Arena, size: usize) -> usize {
        let p = arena
            .alloc(Layout::from_size_align(size, 8).unwrap())
            .unwrap();
        // SAFETY: `size` fresh bytes.
        unsafe { p.as_ptr().write_bytes(0xEE, size) };
        p.as_ptr() as usize
    }

    #[test]
    fn release_frees_what_came_after_and_keeps_what_came_before() {
        let mut arena = arena();
        let before = arena.alloc_value(7u64).unwrap() as *mut u64 as usize;
        let m = arena.mark();
        let after = alloc(&arena, 100);
        assert_eq!(arena.allocated_bytes(), 108);
        arena.release(m);
        assert_eq!(arena.allocated_bytes(), 8);
        // SAFETY: allocated before the mark, so still live.
        assert_eq!(unsafe { *(before as *const u64) }, 7);
        assert_eq!(alloc(&arena, 100), after, "released memory is reused");
        // The mark stays valid: release to it again.
        arena.release(m);
        assert_eq!(arena.allocated_bytes(), 8);
    }

    #[test]
    fn nested_marks_release_in_stack_order_across_chunks() {
        let pm;
        let mut arena = arena();
        pm = arena.pools().clone();
        let outer = arena.mark();
        alloc(&arena, 1000);
        let inner = arena.mark();
        for _ in 0..500 {
            alloc(&arena, 1000);
        }
        let chunks = arena.arena_count();
        assert!(chunks >= 4, "{chunks}");
        let innermost = arena.mark();
        alloc(&arena, 8);
        arena.release(innermost);
        assert_eq!(arena.allocated_bytes(), 501 * 1000);
        arena.release(inner);
        assert_eq!(arena.allocated_bytes(), 1000);
        assert_eq!(
            arena.arena_count(),
            1,
            "chunks taken after the mark are given back"
        );
        assert_eq!(pm.used(SpaceType::CompilerInternal), POOL);
        arena.release(outer);
        assert_eq!(arena.allocated_bytes(), 0);
        let s = pm.stats().space(SpaceType::CompilerInternal);
        assert_eq!((s.live_bytes(), s.bytes_freed), (0, 501 * 1000 + 8));
    }

    #[test]
    fn a_mark_with_nothing_after_it_is_handed_out_again() {
        let mut arena = arena();
        let root = arena.mark();
        assert_eq!(arena.mark(), root, "an empty arena has one position");
        assert_eq!(arena.arena_count(), 0, "marking takes no pool");
        alloc(&arena, 16);
        let a = arena.mark();
        let b = arena.mark();
        assert_eq!(a, b);
        assert_ne!(a, root);
        alloc(&arena, 16);
        arena.release(b);
        assert_eq!(arena.mark(), a);
        arena.release(root);
        assert_eq!(arena.allocated_bytes(), 0);
        assert_eq!(
            arena.arena_count(),
            1,
            "releasing to the root mark is a reset"
        );
    }

    #[test]
    fn marks_survive_chunk_ends() {
        // Fill a chunk right up to its allocation limit, then mark repeatedly:
        // the reserved room holds the record, and further allocation moves on.
        let mut arena = arena();
        alloc(&arena, 8);
        while arena.bump(8, 8).is_some() {}
        let m = arena.mark();
        assert_eq!(arena.mark(), m);
        alloc(&arena, 8);
        assert_eq!(arena.arena_count(), 2);
        let m2 = arena.mark();
        alloc(&arena, 8);
        arena.release(m2);
        arena.release(m);
        assert_eq!(arena.arena_count(), 1);
        assert_eq!(
            arena.allocated_bytes(),
            POOL - HEADER_SIZE - MARK_ROOM,
            "the first chunk, full"
        );
    }

    #[test]
    fn stale_marks_are_found_even_after_the_top_passed_them_again() {
        let mut arena = arena();
        let a = arena.mark();
        alloc(&arena, 64);
        let b = arena.mark();
        alloc(&arena, 64);
        arena.release(a);
        // Allocate far past where `b` was: `b` must still be refused.
        for _ in 0..10 {
            alloc(&arena, 64);
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| arena.release(b)));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains(&format!("{b} is stale")), "{msg}");
    }

    #[test]
    #[should_panic(expected = "is stale: an earlier release or reset")]
    fn releasing_a_mark_newer_than_the_top_panics() {
        let mut arena = arena();
        alloc(&arena, 8);
        let older = arena.mark();
        alloc(&arena, 8);
        let newer = arena.mark();
        arena.release(older);
        arena.release(newer);
    }

    #[test]
    #[should_panic(expected = "is stale")]
    fn marks_do_not_survive_reset() {
        let mut arena = arena();
        alloc(&arena, 8);
        let m = arena.mark();
        arena.reset();
        alloc(&arena, 8);
        arena.release(m);
    }

    #[test]
    fn a_foreign_mark_panics_naming_both_arenas() {
        let mut a = arena();
        let b = arena();
        alloc(&b, 8);
        let m = b.mark();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.release(m)));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(
            msg,
            format!(
                "Arena::release: mark #1 of arena #{} belongs to another arena (this is arena #{})",
                b.id(),
                a.id()
            )
        );
        assert_eq!(m.arena_id(), b.id());
    }
}
