//! `&Arena` as an `allocator_api2` allocator, so that standard collections
//! (`Vec`, `Box`, `hashbrown::HashMap`, ...) can live in an arena.
//!
//! Freeing one block is free of charge and usually does nothing: only the
//! most recent allocation made since the latest mark is reclaimed, and only it
//! grows or shrinks in place. That is exactly the pattern of a collection
//! being built: a `Vec` that is the last thing allocated doubles in place
//! without copying.

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};

use crate::arena::Arena;

// SAFETY: `allocate` returns fresh memory of `layout.size()` bytes aligned to
// `layout.align()`, disjoint from every other live block, and valid until the
// arena is released past it, reset or dropped, which takes `&mut Arena` or
// ownership: impossible while any `&Arena`, so any collection holding this
// allocator, is alive. Copies of an `&Arena` are the same allocator. `grow`
// and `shrink` keep the block's contents up to the smaller size and return a
// block fitting the new layout; in-place changes touch only the most recent
// allocation since the latest mark, which nothing else overlaps.
unsafe impl Allocator for &Arena {
    #[inline(always)]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match (**self).alloc(layout) {
            Ok(ptr) => Ok(NonNull::slice_from_raw_parts(ptr, layout.size())),
            Err(_) => Err(AllocError),
        }
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.resize_top(ptr, layout.size(), 0);
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if is_aligned_to(ptr, new_layout)
            && self.resize_top(ptr, old_layout.size(), new_layout.size())
        {
            return Ok(NonNull::slice_from_raw_parts(ptr, new_layout.size()));
        }
        let new = self.allocate(new_layout)?;
        // SAFETY: the caller guarantees `ptr` is a live block of
        // `old_layout.size()` bytes; the new block is fresh, at least that
        // large (`new_layout.size() >= old_layout.size()`), and disjoint.
        unsafe {
            new.cast::<u8>()
                .as_ptr()
                .copy_from_nonoverlapping(ptr.as_ptr(), old_layout.size())
        };
        Ok(new)
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's guarantees for `grow_zeroed` are those of `grow`.
        let block = unsafe { self.grow(ptr, old_layout, new_layout) }?;
        let grown = new_layout.size() - old_layout.size();
        // SAFETY: the block holds `new_layout.size()` bytes; the tail past the
        // old size is ours to initialize.
        unsafe {
            block
                .cast::<u8>()
                .as_ptr()
                .add(old_layout.size())
                .write_bytes(0, grown)
        };
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if is_aligned_to(ptr, new_layout) {
            // In place: at the top the tail is reclaimed; elsewhere it stays
            // occupied until a release or reset.
            self.resize_top(ptr, old_layout.size(), new_layout.size());
            return Ok(NonNull::slice_from_raw_parts(ptr, new_layout.size()));
        }
        let new = self.allocate(new_layout)?;
        // SAFETY: `ptr` holds at least `new_layout.size()` live bytes (caller:
        // `new_layout.size() <= old_layout.size()`); the new block is fresh and
        // disjoint.
        unsafe {
            new.cast::<u8>()
                .as_ptr()
                .copy_from_nonoverlapping(ptr.as_ptr(), new_layout.size())
        };
        Ok(new)
    }
}

fn is_aligned_to(ptr: NonNull<u8>, layout: Layout) -> bool {
    (ptr.as_ptr() as usize) & (layout.align() - 1) == 0
}

impl Arena {
    /// Resizes `[start, start + old_size)` to `new_size` bytes in place, if it
    /// ends at the top (it is the most recent allocation since the latest
    /// mark) and the new size fits the chunk; a new size of 0 frees it.
    /// Returns whether it did.
    fn resize_top(&self, start: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
        let start = start.as_ptr() as usize;
        // Only a block allocated in the current chunk after the latest mark
        // can end at the top: the chunk's header, or the mark's record, lies
        // between the top and anything older. So a release to that mark
        // still finds every older block whole. `start <= top <= end` once the
        // first test passes.
        if start.wrapping_add(old_size) != self.top.get() || new_size > self.end.get() - start {
            return false;
        }
        self.top.set(start + new_size);
        // Growth shows in `allocated_bytes` by itself; frees are reported.
        if new_size < old_size {
            self.note_freed(old_size - new_size);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use allocator_api2::boxed::Box;
    use allocator_api2::vec::Vec;
    use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};

    use super::*;

    fn arena() -> Arena {
        Arena::new(Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_pool_size(64 << 10)
                    .with_reserve(1 << 30),
            )
            .unwrap(),
        ))
    }

    #[test]
    fn a_vec_that_is_the_last_allocation_grows_in_place() {
        let arena = arena();
        let mut v: Vec<u64, &Arena> = Vec::new_in(&arena);
        v.push(0);
        let first = v.as_ptr();
        for i in 1..1000u64 {
            v.push(i);
        }
        assert_eq!(v.as_ptr(), first, "every doubling happened in place");
        assert_eq!(
            arena.allocated_bytes(),
            v.capacity() * 8,
            "nothing was left behind"
        );
        assert!(v.iter().copied().eq(0..1000));
        // Growth past the chunk copies into a new chunk and keeps the contents.
        for i in 1000..20_000u64 {
            v.push(i);
        }
        assert!(arena.arena_count() > 1);
        assert!(v.iter().copied().eq(0..20_000));
        // Still the most recent allocation: shrinking gives the tail back.
        let (before, cap) = (arena.allocated_bytes(), v.capacity());
        v.shrink_to_fit();
        assert_eq!(v.capacity(), 20_000);
        assert_eq!(before - arena.allocated_bytes(), (cap - 20_000) * 8);
        assert!(v.iter().copied().eq(0..20_000));
    }

    #[test]
    fn interleaved_vecs_copy_and_keep_their_contents() {
        let arena = arena();
        let mut a: Vec<u32, &Arena> = Vec::new_in(&arena);
        let mut b: Vec<u32, &Arena> = Vec::new_in(&arena);
        for i in 0..5000 {
            a.push(i);
            b.push(i * 3);
        }
        assert!(a.iter().copied().eq(0..5000));
        assert!(b.iter().copied().eq((0..5000).map(|i| i * 3)));
        assert!(arena.allocated_bytes() >= (a.capacity() + b.capacity()) * 4);
    }

    #[test]
    fn deallocating_the_last_block_reclaims_it_and_nothing_else() {
        let arena = arena();
        let alloc = &&arena;
        let l = Layout::from_size_align(48, 16).unwrap();
        let a = alloc.allocate(l).unwrap().cast::<u8>();
        let b = alloc.allocate(l).unwrap().cast::<u8>();
        // SAFETY: `a` is live and not the most recent: nothing is reclaimed.
        unsafe { alloc.deallocate(a, l) };
        assert_eq!(arena.allocated_bytes(), 96);
        // SAFETY: `b` is live and the most recent block.
        unsafe { alloc.deallocate(b, l) };
        assert_eq!(arena.allocated_bytes(), 48);
        let c = alloc.allocate(l).unwrap().cast::<u8>();
        assert_eq!(c, b, "the reclaimed block is handed out again");
        arena.flush_stats();
        let s = arena.pools().stats().space(SpaceType::CompilerInternal);
        assert_eq!(
            (s.live_bytes(), s.bytes_allocated, s.bytes_freed),
            (96, 144, 48)
        );
    }

    #[test]
    fn blocks_from_before_a_mark_are_never_resized_in_place() {
        let mut arena = arena();
        let l8 = Layout::from_size_align(8, 8).unwrap();
        let l64 = Layout::from_size_align(64, 8).unwrap();
        let a = (&arena).allocate(l8).unwrap().cast::<u8>();
        // SAFETY: 8 fresh bytes.
        unsafe { a.as_ptr().cast::<u64>().write(42) };
        let m = arena.mark();
        // SAFETY: `a` is live with layout `l8`; it predates the mark, so this
        // must copy rather than extend across the mark.
        let g = unsafe { (&arena).grow(a, l8, l64) }.unwrap().cast::<u8>();
        assert_ne!(g, a);
        // SAFETY: `g` holds the 8 copied bytes.
        assert_eq!(unsafe { g.as_ptr().cast::<u64>().read() }, 42);
        // SAFETY: `a` is live; deallocating it must not move the top below the mark.
        unsafe { (&arena).deallocate(a, l8) };
        arena.release(m);
        assert_eq!(arena.allocated_bytes(), 8);
        // SAFETY: `a` predates the mark and is still counted and intact.
        assert_eq!(unsafe { a.as_ptr().cast::<u64>().read() }, 42);
    }

    #[test]
    fn shrink_and_grow_zeroed_in_place() {
        let arena = arena();
        let alloc = &&arena;
        let l = |n| Layout::from_size_align(n, 8).unwrap();
        let p = alloc.allocate(l(64)).unwrap().cast::<u8>();
        // SAFETY: 64 fresh bytes.
        unsafe { p.as_ptr().write_bytes(0xAB, 64) };
        // SAFETY: `p` is live with layout l(64), shrinking to 16.
        let s = unsafe { alloc.shrink(p, l(64), l(16)) }.unwrap();
        assert_eq!(s.cast::<u8>(), p);
        assert_eq!(arena.allocated_bytes(), 16);
        // SAFETY: `p` is live with layout l(16), growing to 32.
        let g = unsafe { alloc.grow_zeroed(p, l(16), l(32)) }
            .unwrap()
            .cast::<u8>();
        assert_eq!(g, p);
        // SAFETY: 32 bytes: 16 kept, 16 zeroed.
        let bytes = unsafe { std::slice::from_raw_parts(g.as_ptr(), 32) };
        assert!(bytes[..16].iter().all(|&b| b == 0xAB) && bytes[16..].iter().all(|&b| b == 0));
        // A stricter alignment the block does not have (the first block of a
        // chunk sits right after its 48-byte header): moved, contents kept.
        let big = Layout::from_size_align(8, 256).unwrap();
        assert!(!(g.as_ptr() as usize).is_multiple_of(256));
        // SAFETY: `g` is live with layout l(32).
        let moved = unsafe { alloc.shrink(g, l(32), big) }.unwrap().cast::<u8>();
        assert!((moved.as_ptr() as usize).is_multiple_of(256));
        // SAFETY: at least 8 bytes copied from `g`.
        assert_eq!(unsafe { *moved.as_ptr() }, 0xAB);
    }

    #[test]
    fn boxes_live_in_the_arena() {
        let arena = arena();
        let b = Box::new_in([7u64; 16], &arena);
        let addr = &*b as *const _ as usize;
        assert!(arena.contains(addr));
        assert_eq!(b.iter().sum::<u64>(), 112);
        drop(b);
        assert_eq!(
            arena.allocated_bytes(),
            0,
            "the last box is reclaimed when dropped"
        );
        let s = Box::new_in(
            String::from("not dropped by the arena, but by the box"),
            &arena,
        );
        assert_eq!(s.len(), 40);
    }

    #[test]
    fn a_hashbrown_map_with_thousands_of_entries() {
        let mut arena = arena();
        let m = arena.mark();
        {
            let mut map = hashbrown::HashMap::new_in(&arena);
            for i in 0..10_000u64 {
                map.insert(i, i * i);
            }
            assert_eq!(map.len(), 10_000);
            for i in (0..10_000u64).step_by(7) {
                assert_eq!(map[&i], i * i);
            }
            for i in 0..5000u64 {
                map.remove(&i);
            }
            assert_eq!(map.get(&7000), Some(&49_000_000));
            assert!(arena.allocated_bytes() >= 10_000 * 16);
            assert!(arena.arena_count() > 1);
        }
        arena.release(m);
        assert_eq!(arena.allocated_bytes(), 0);
        assert_eq!(arena.arena_count(), 1);
    }

    #[test]
    fn allocation_failures_reach_the_collection_as_alloc_errors() {
        let arena = Arena::new(Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_reserve(1 << 30)
                    .with_limit(SpaceType::CompilerInternal, 0),
            )
            .unwrap(),
        ));
        let mut v: Vec<u8, &Arena> = Vec::new_in(&arena);
        assert!(v.try_reserve(16).is_err());
        let huge = Layout::from_size_align(1 << 40, 8).unwrap();
        assert_eq!((&arena).allocate(huge), Err(AllocError));
    }
}
