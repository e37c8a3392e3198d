//! A LIFO stack of interpreter frames in one pool, with a clear stack-overflow
//! error instead of a crash (the design is described on [`FrameAllocator`]).

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{AllocError, Pool, PoolManager, SpaceType, align_down, align_up, page_size};

/// The size of one entry of the frame-start table, and the frame alignment.
const ENTRY: usize = 8;

/// A stack of interpreter frames: push and pop in LIFO order within a fixed
/// byte limit.
///
/// # Design
/// The whole stack is one pool of `limit` bytes, taken when the allocator is
/// made. The pool is mapped read-write but the kernel backs a page only when it
/// is first touched, so a deep limit costs address space, not memory, until
/// the interpreter actually recurses that deep. (The pool manager still
/// counts the whole limit as committed for the space.)
///
/// Frames are laid out contiguously from the bottom of the pool, each
/// starting 8-aligned right where the previous one ends, so a caller's
/// outgoing arguments can sit next to the callee's frame. The start of every
/// frame is recorded in a table that grows down from the top of the limit, so
/// frame memory holds nothing but the interpreter's data: a frame written
/// wrongly cannot corrupt the stack's bookkeeping. Each frame costs its size
/// rounded up to 8 bytes plus one 8-byte table entry, and the two regions meet
/// at the limit.
///
/// - `push` is a minimum, two compares and three stores; the only branch
///   taken rarely is the first time the stack grows past its deepest point so
///   far (the cold path checks the limit and initializes the new memory).
/// - `pop` checks that the frame is the top one (three compares, in every
///   build: popping out of order is an interpreter bug that must not corrupt
///   the stack) and moves two pointers.
///
/// Frame memory is always initialized (zeroed the first time the stack
/// reaches it), so viewing a frame as `u64` slots is sound; a new frame holds
/// whatever earlier frames left there unless pushed with
/// [`FrameAllocator::push_zeroed`].
///
/// ```
/// use std::sync::Arc;
/// use rtmem_arena::FrameAllocator;
/// use rtmem_base::{AllocError, PoolManager, PoolManagerConfig};
///
/// let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
/// let mut stack = FrameAllocator::new(pools, 4096).unwrap();
/// let caller = stack.push_zeroed(64).unwrap();
/// stack.slots_mut(caller)[0] = 42;
/// let callee = stack.push(100).unwrap(); // rounded up to 104 bytes
/// assert_eq!((stack.depth(), callee.size(), stack.top()), (2, 104, Some(callee)));
/// stack.pop(callee);
/// assert_eq!(stack.slots(caller)[0], 42);
/// // Deep recursion ends in an error naming the numbers, not a crash.
/// let err = loop {
///     if let Err(e) = stack.push(256) {
///         break e;
///     }
/// };
/// assert!(matches!(err, AllocError::StackOverflow { requested: 256, limit: 4096, .. }));
/// ```
pub struct FrameAllocator {
    /// One past the top frame's last byte.
    top: usize,
    /// The newest entry of the frame-start table, which grows down from
    /// `table_end`; each entry holds the start address of one frame.
    starts: usize,
    /// Frame memory below this address is initialized.
    ready: usize,
    /// The pool's first byte: the bottom of the stack.
    base: usize,
    /// `base` plus the limit rounded down to a multiple of 8.
    table_end: usize,
    limit: usize,
    /// `used_bytes()` and `depth()` as last reported to the statistics.
    reported_bytes: usize,
    reported_frames: usize,
    pool: Pool,
    space: SpaceType,
    pools: Arc<PoolManager>,
}

/// A frame on a [`FrameAllocator`]: a copyable handle to `size()` bytes of
/// 8-aligned, initialized memory, valid until the frame is popped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    ptr: NonNull<u8>,
    size: usize,
}

impl Frame {
    /// The frame's first byte (8-aligned).
    #[inline(always)]
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The frame's size in bytes: the size pushed, rounded up to a multiple of 8.
    #[inline(always)]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The number of 8-byte slots in the frame.
    #[inline(always)]
    pub fn slot_count(&self) -> usize {
        self.size / ENTRY
    }

    /// The frame's memory as `u64` slots, without the checks of
    /// [`FrameAllocator::slots_mut`] and without borrowing the allocator (for
    /// an interpreter that keeps its caller's and callee's frames open).
    ///
    /// # Safety
    /// The frame must still be pushed (not popped) on a `FrameAllocator` that
    /// is still alive, and while the slice is in use no other reference to
    /// the same memory may be used (another `slots` of this frame, or the
    /// allocator's `slots`/`slots_mut` of it).
    #[inline(always)]
    pub unsafe fn slots<'a>(self) -> &'a mut [u64] {
        // SAFETY: a live frame is `size` bytes of initialized, 8-aligned memory
        // owned by its allocator; exclusivity is the caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u64>(), self.slot_count())
        }
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame at {:#x} ({} bytes)",
            self.ptr.as_ptr() as usize,
            self.size
        )
    }
}

impl FrameAllocator {
    /// A frame stack of at most `limit_bytes` (frames and their 8-byte table
    /// entries together) in the [`SpaceType::Frames`] space.
    ///
    /// # Errors
    /// [`AllocError::BadLayout`] if the limit is below 8 bytes (no frame would
    /// ever fit); the pool manager's errors ([`AllocError::LimitExceeded`]
    /// naming the space, [`AllocError::OutOfMemory`]) if it cannot supply a
    /// pool of `limit_bytes`.
    pub fn new(pools: Arc<PoolManager>, limit_bytes: usize) -> Result<FrameAllocator, AllocError> {
        FrameAllocator::with_space(pools, SpaceType::Frames, limit_bytes)
    }

    /// As [`new`](Self::new), with the pool taken from `space`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_space(
        pools: Arc<PoolManager>,
        space: SpaceType,
        limit_bytes: usize,
    ) -> Result<FrameAllocator, AllocError> {
        if limit_bytes < ENTRY {
            return Err(AllocError::bad_layout(
                limit_bytes,
                ENTRY,
                "a frame stack limit must hold at least one 8-byte frame-table entry",
            ));
        }
        let pool = pools.alloc_pool(space, limit_bytes)?;
        let base = pool.start_addr();
        let table_end = base + align_down(limit_bytes, ENTRY);
        tracing::debug!(%space, base, limit = limit_bytes, "frame stack created");
        Ok(FrameAllocator {
            top: base,
            starts: table_end,
            ready: base,
            base,
            table_end,
            limit: limit_bytes,
            reported_bytes: 0,
            reported_frames: 0,
            pool,
            space,
            pools,
        })
    }

    /// Pushes a frame of `size` bytes (rounded up to a multiple of 8, starting
    /// 8-aligned right after the current top frame). Its contents are what
    /// earlier frames left there (zero the first time the stack reaches it).
    ///
    /// # Errors
    /// [`AllocError::StackOverflow`] `{ requested: size, used, limit }` if the
    /// frame and its 8-byte table entry do not fit in the limit. The stack is
    /// unchanged, so the interpreter can unwind and report it.
    #[inline(always)]
    pub fn push(&mut self, size: usize) -> Result<Frame, AllocError> {
        // Frames end at or below both the initialized memory and the next table
        // entry (which may already be below the top when the stack is full).
        // `room` is a multiple of 8 (every address involved is), so a `size`
        // within it still fits once rounded up.
        let end = self.ready.min(self.starts - ENTRY);
        if let Some(room) = end.checked_sub(self.top)
            && size <= room
        {
            return Ok(self.place(round_up(size)));
        }
        self.push_slow(size)
    }

    /// As [`push`](Self::push), with the frame's memory zeroed (so a collector
    /// scanning frames never sees stale values).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    #[inline]
    pub fn push_zeroed(&mut self, size: usize) -> Result<Frame, AllocError> {
        let frame = self.push(size)?;
        // SAFETY: the new frame's `size` bytes are ours and nothing refers to them.
        unsafe { frame.ptr.as_ptr().write_bytes(0, frame.size) };
        Ok(frame)
    }

    /// Pops the top frame.
    ///
    /// # Panics
    /// If `frame` is not the top frame (popped out of order, already popped,
    /// or from another allocator), with a message naming it and the actual
    /// top. Checked in every build.
    #[inline(always)]
    pub fn pop(&mut self, frame: Frame) {
        let start = frame.ptr.as_ptr() as usize;
        if self.starts == self.table_end
            || self.entry(self.starts) != start
            || start.wrapping_add(frame.size) != self.top
        {
            self.wrong_pop(frame);
        }
        self.top = start;
        self.starts += ENTRY;
    }

    /// The number of frames on the stack.
    #[inline]
    pub fn depth(&self) -> usize {
        (self.table_end - self.starts) / ENTRY
    }

    /// Bytes in use: the frames (each rounded up to 8 bytes) plus 8 bytes of
    /// table entry per frame.
    #[inline]
    pub fn used_bytes(&self) -> usize {
        (self.top - self.base) + (self.table_end - self.starts)
    }

    /// The limit in bytes, as given to [`new`](Self::new).
    #[inline]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The top frame, if any.
    #[inline]
    pub fn top(&self) -> Option<Frame> {
        (self.starts != self.table_end).then(|| self.frame(self.entry(self.starts), self.top))
    }

    /// The frame's memory as `u64` slots.
    ///
    /// # Panics
    /// If `frame` does not lie in this allocator's live frames (popped, or
    /// from another allocator); the message names the frame.
    pub fn slots(&self, frame: Frame) -> &[u64] {
        self.check_live(frame);
        // SAFETY: the frame lies in `[base, top)`: initialized, 8-aligned
        // memory of this allocator, borrowed shared with `self`.
        unsafe { std::slice::from_raw_parts(frame.ptr.as_ptr().cast::<u64>(), frame.slot_count()) }
    }

    /// The frame's memory as mutable `u64` slots.
    ///
    /// # Panics
    /// As [`slots`](Self::slots).
    pub fn slots_mut(&mut self, frame: Frame) -> &mut [u64] {
        self.check_live(frame);
        // SAFETY: as in `slots`, borrowed exclusively with `self`.
        unsafe { frame.slots() }
    }

    /// Calls `f(start, size)` for every frame, from the top down (for a
    /// collector scanning frames for roots).
    pub fn walk(&self, mut f: impl FnMut(NonNull<u8>, usize)) {
        let mut end = self.top;
        for entry in (self.starts..self.table_end).step_by(ENTRY) {
            let frame = self.frame(self.entry(entry), end);
            f(frame.ptr, frame.size);
            end = self.entry(entry);
        }
    }

    /// Whether `addr` lies in a live frame.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        (self.base..self.top).contains(&addr)
    }

    /// The space the stack's pool belongs to.
    pub fn space(&self) -> SpaceType {
        self.space
    }

    /// Reports the change in bytes and frames since the last report to the
    /// pool manager's [`MemStats`](rtmem_base::MemStats). Pushes and pops are
    /// not counted one by one (that would put counters on the interpreter's
    /// hottest path): the stack reports its net growth or shrinkage, here,
    /// whenever it first reaches a new depth, and when dropped. Live bytes
    /// and objects (frames) are exact after a report.
    pub fn flush_stats(&mut self) {
        let (bytes, frames) = (self.used_bytes(), self.depth());
        let (old_bytes, old_frames) = (self.reported_bytes, self.reported_frames);
        let stats = self.pools.stats();
        if bytes > old_bytes || frames > old_frames {
            stats.record_alloc(
                self.space,
                bytes.saturating_sub(old_bytes),
                frames.saturating_sub(old_frames),
            );
        }
        if bytes < old_bytes || frames < old_frames {
            stats.record_free(
                self.space,
                old_bytes.saturating_sub(bytes),
                old_frames.saturating_sub(frames),
            );
        }
        (self.reported_bytes, self.reported_frames) = (bytes, frames);
    }

    /// Writes the table entry for a frame of `size` (a multiple of 8) bytes at
    /// the top, which the caller checked fits in initialized memory below the
    /// table.
    #[inline(always)]
    fn place(&mut self, size: usize) -> Frame {
        let start = self.top;
        self.starts -= ENTRY;
        // SAFETY: the entry lies in the pool between the new frame's end and
        // the older entries, and is 8-aligned.
        unsafe { (self.starts as *mut u64).write(start as u64) };
        self.top = start + size;
        self.frame(start, start + size)
    }

    /// The limit check and first-touch initialization of `push`.
    #[cold]
    #[inline(never)]
    fn push_slow(&mut self, size: usize) -> Result<Frame, AllocError> {
        let room = (self.starts - ENTRY).checked_sub(self.top);
        if room.is_none_or(|room| size > room) {
            return Err(AllocError::StackOverflow {
                requested: size,
                used: self.used_bytes(),
                limit: self.limit,
            });
        }
        let size = round_up(size);
        // The frame fits the limit but reaches memory the stack never used:
        // initialize it a page at a time, stopping short of the table.
        let ready = align_up(self.top + size, page_size()).min(self.starts - ENTRY);
        debug_assert!(ready > self.ready);
        // SAFETY: `[self.ready, ready)` lies in the pool above every frame and
        // below every table entry: nothing refers to it.
        unsafe { (self.ready as *mut u8).write_bytes(0, ready - self.ready) };
        self.ready = ready;
        self.flush_stats();
        Ok(self.place(size))
    }

    #[cold]
    #[inline(never)]
    fn wrong_pop(&self, frame: Frame) -> ! {
        match self.top() {
            Some(top) => panic!(
                "FrameAllocator::pop: {frame} is not the top frame (the top is {top}); frames are popped in LIFO order"
            ),
            None => panic!(
                "FrameAllocator::pop: {frame} is not the top frame: the frame stack is empty"
            ),
        }
    }

    fn check_live(&self, frame: Frame) {
        let start = frame.ptr.as_ptr() as usize;
        assert!(
            start >= self.base
                && start
                    .checked_add(frame.size)
                    .is_some_and(|end| end <= self.top),
            "FrameAllocator: {frame} is not a live frame of this allocator"
        );
    }

    #[inline(always)]
    fn entry(&self, at: usize) -> usize {
        // SAFETY: callers pass an entry in `[starts, table_end)`, written by `place`.
        unsafe { (at as *const u64).read() as usize }
    }

    #[inline(always)]
    fn frame(&self, start: usize, end: usize) -> Frame {
        // SAFETY: frames start at or above `base`, which is not 0.
        let ptr = unsafe { NonNull::new_unchecked(start as *mut u8) };
        Frame {
            ptr,
            size: end - start,
        }
    }
}

impl Drop for FrameAllocator {
    fn drop(&mut self) {
        self.top = self.base;
        self.starts = self.table_end;
        self.flush_stats();
        self.pools.free_pool(self.pool);
    }
}

impl fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("space", &self.space)
            .field("depth", &self.depth())
            .field("used_bytes", &self.used_bytes())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// Rounds a frame size up to a multiple of 8; `size` is at most the limit.
#[inline(always)]
fn round_up(size: usize) -> usize {
    (size + (ENTRY - 1)) & !(ENTRY - 1)
}

#[cfg(test)]
mod tests {
    use rtmem_base::PoolManagerConfig;

    use super::*;

    fn pools() -> Arc<PoolManager> {
        Arc::new(PoolManager::new(PoolManagerConfig::default().with_reserve(1 << 30)).unwrap())
    }

    #[test]
    fn push_pop_and_the_counters() {
        let mut s = FrameAllocator::new(pools(), 1 << 20).unwrap();
        assert_eq!(
            (s.depth(), s.used_bytes(), s.limit(), s.top()),
            (0, 0, 1 << 20, None)
        );
        let a = s.push(20).unwrap();
        let b = s.push(0).unwrap();
        let c = s.push(64).unwrap();
        assert_eq!((a.size(), b.size(), c.size()), (24, 0, 64));
        assert_eq!(a.ptr().as_ptr() as usize % 8, 0);
        assert_eq!(
            c.ptr().as_ptr() as usize,
            a.ptr().as_ptr() as usize + 24,
            "frames are contiguous"
        );
        assert_eq!((s.depth(), s.used_bytes(), s.top()), (3, 88 + 24, Some(c)));
        assert!(s.contains(c.ptr().as_ptr() as usize + 63));
        assert!(!s.contains(c.ptr().as_ptr() as usize + 64));
        s.pop(c);
        assert_eq!(s.top(), Some(b));
        s.pop(b);
        s.pop(a);
        assert_eq!((s.depth(), s.used_bytes(), s.top()), (0, 0, None));
        assert_eq!(s.push(20).unwrap(), a, "the same memory is reused");
    }

    #[test]
    fn overflow_is_an_error_with_the_numbers_and_leaves_the_stack_intact() {
        let mut s = FrameAllocator::new(pools(), 1000).unwrap();
        let mut frames = Vec::new();
        // Each frame takes 96 + 8 bytes: nine take 936 of 1000.
        for _ in 0..9 {
            frames.push(s.push(96).unwrap());
        }
        let e = s.push(96).unwrap_err();
        assert_eq!(
            e,
            AllocError::StackOverflow {
                requested: 96,
                used: 936,
                limit: 1000
            }
        );
        assert!(
            e.to_string()
                .contains("a frame of 96 bytes does not fit (936 of 1000 bytes in use)"),
            "{e}"
        );
        assert_eq!(
            s.push(usize::MAX).unwrap_err(),
            AllocError::StackOverflow {
                requested: usize::MAX,
                used: 936,
                limit: 1000
            }
        );
        // 56 bytes + 8 of entry fit exactly (the limit rounds down to 1000).
        let last = s.push(56).unwrap();
        assert_eq!(s.used_bytes(), 1000);
        assert!(matches!(
            s.push(0),
            Err(AllocError::StackOverflow {
                requested: 0,
                used: 1000,
                ..
            })
        ));
        s.pop(last);
        assert_eq!((s.depth(), s.top()), (9, frames.last().copied()));
    }

    #[test]
    fn frames_keep_their_contents_and_are_initialized() {
        let mut s = FrameAllocator::new(pools(), 64 << 10).unwrap();
        let mut frames = Vec::new();
        for i in 0..100u64 {
            let f = s.push(8 * (i as usize % 13 + 1)).unwrap();
            for (j, slot) in s.slots_mut(f).iter_mut().enumerate() {
                *slot = i * 1000 + j as u64;
            }
            frames.push(f);
        }
        for (i, f) in frames.iter().enumerate().rev() {
            assert!(
                s.slots(*f)
                    .iter()
                    .enumerate()
                    .all(|(j, &v)| v == i as u64 * 1000 + j as u64)
            );
            s.pop(*f);
        }
        let z = s.push_zeroed(800).unwrap();
        assert!(s.slots(z).iter().all(|&v| v == 0));
        // Past everything used so far (100 frames of at most 104 bytes), the
        // memory was never touched by a frame and reads as zero.
        let used = s.push(10_000).unwrap();
        assert!(
            s.slots(used).iter().any(|&v| v != 0),
            "earlier frames' values are still there"
        );
        let fresh = s.push(30_000).unwrap();
        // SAFETY: `fresh` is live and not otherwise borrowed.
        assert!(unsafe { fresh.slots() }.iter().all(|&v| v == 0));
    }

    #[test]
    fn walk_visits_frames_top_down() {
        let mut s = FrameAllocator::new(pools(), 4096).unwrap();
        let a = s.push(16).unwrap();
        let b = s.push(40).unwrap();
        let mut seen = Vec::new();
        s.walk(|p, n| seen.push((p, n)));
        assert_eq!(seen, [(b.ptr(), 40), (a.ptr(), 16)]);
    }

    #[test]
    #[should_panic(expected = "is not the top frame (the top is frame at")]
    fn popping_out_of_order_panics() {
        let mut s = FrameAllocator::new(pools(), 4096).unwrap();
        let a = s.push(16).unwrap();
        let _b = s.push(16).unwrap();
        s.pop(a);
    }

    #[test]
    fn popping_twice_or_a_stale_frame_panics_naming_it() {
        let mut s = FrameAllocator::new(pools(), 4096).unwrap();
        let a = s.push(64).unwrap();
        s.pop(a);
        let b = s.push(16).unwrap();
        assert_eq!(a.ptr(), b.ptr());
        // Same start, different size: a stale handle, not the top.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.pop(a)));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(
            msg,
            format!(
                "FrameAllocator::pop: {a} is not the top frame (the top is {b}); frames are popped in LIFO order"
            )
        );
        s.pop(b);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.pop(b)));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.ends_with("the frame stack is empty"), "{msg}");
        assert!(
            msg.contains(&format!("{:#x} (16 bytes)", b.ptr().as_ptr() as usize)),
            "{msg}"
        );
    }

    #[test]
    #[should_panic(expected = "is not a live frame of this allocator")]
    fn slots_of_a_popped_frame_panic() {
        let mut s = FrameAllocator::new(pools(), 4096).unwrap();
        let a = s.push(16).unwrap();
        s.pop(a);
        s.slots(a);
    }

    #[test]
    fn limits_and_space_errors() {
        let e = FrameAllocator::new(pools(), 0).unwrap_err();
        assert!(matches!(e, AllocError::BadLayout { size: 0, .. }), "{e}");
        let pm = Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_reserve(1 << 30)
                    .with_limit(SpaceType::Frames, 0),
            )
            .unwrap(),
        );
        let e = FrameAllocator::new(pm.clone(), 4096).unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::LimitExceeded {
                    space: SpaceType::Frames,
                    limit: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("frames space is full"), "{e}");
        let e = FrameAllocator::new(pools(), 2 << 30).unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::OutOfMemory {
                    space: SpaceType::Frames,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn statistics_report_net_change() {
        let pm = pools();
        let mut s = FrameAllocator::new(pm.clone(), 1 << 20).unwrap();
        let a = s.push(64).unwrap();
        let b = s.push(64).unwrap();
        s.flush_stats();
        let st = pm.stats().space(SpaceType::Frames);
        assert_eq!((st.live_bytes(), st.live_objects()), (144, 2));
        s.pop(b);
        s.flush_stats();
        let st = pm.stats().space(SpaceType::Frames);
        assert_eq!((st.live_bytes(), st.live_objects()), (72, 1));
        let _ = a;
        drop(s);
        let st = pm.stats().space(SpaceType::Frames);
        assert_eq!(
            (st.live_bytes(), st.live_objects(), st.committed),
            (0, 0, 0)
        );
        assert_eq!(pm.used(SpaceType::Frames), 0);
    }
}
