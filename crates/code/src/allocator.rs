//! The code allocator: blobs of machine code in dual-mapped chunks.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;
use rtmem_base::{AllocError, PoolManager, SpaceType, align_up};

use crate::chunk::CodeChunk;
use crate::icache;

/// How a [`CodeAllocator`] lays out code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeConfig {
    /// Alignment of every blob's first instruction (a power of two; 16 by default).
    pub alignment: usize,
    /// Size of an ordinary chunk (rounded up to whole pools; one pool by default).
    /// Blobs larger than a chunk get a chunk of their own.
    pub chunk_bytes: usize,
}

impl Default for CodeConfig {
    fn default() -> Self {
        CodeConfig {
            alignment: 16,
            chunk_bytes: 0,
        }
    }
}

/// A blob of installed machine code: its executable address and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodeBlob {
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: a blob is an address and a length; the code it names is read-only.
unsafe impl Send for CodeBlob {}
// SAFETY: as above.
unsafe impl Sync for CodeBlob {}

impl CodeBlob {
    /// The address of the first instruction.
    #[inline]
    pub fn start(&self) -> NonNull<u8> {
        self.start
    }

    /// The address of the first instruction, as an integer.
    #[inline]
    pub fn start_addr(&self) -> usize {
        self.start.as_ptr() as usize
    }

    /// The length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty blobs cannot be installed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the program counter `pc` lies inside the blob.
    #[inline]
    pub fn contains(&self, pc: usize) -> bool {
        pc.wrapping_sub(self.start_addr()) < self.len
    }

    /// The installed bytes (read through the executable view).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the blob's range is mapped readable as long as the allocator
        // lives; a blob outliving its allocator is a caller bug that at worst
        // reads a freed, still-reserved range (documented on `CodeAllocator`).
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }

    /// The blob's entry point as a function pointer of type `F`.
    ///
    /// # Safety
    /// `F` must be a function-pointer type whose signature and ABI match the
    /// machine code, the blob must not be freed while the pointer is used, and
    /// the code must be correct for the target.
    pub unsafe fn entry<F: Copy>(&self) -> F {
        assert_eq!(
            size_of::<F>(),
            size_of::<usize>(),
            "entry::<F>: F must be a function pointer"
        );
        let addr = self.start_addr();
        // SAFETY: `F` is pointer-sized (checked) and the caller guarantees it
        // is a function pointer matching the code at `addr`.
        unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
    }
}

struct Inner {
    /// Chunks by executable start address.
    chunks: BTreeMap<usize, CodeChunk>,
    /// Free ranges (executable start -> length), never spanning two chunks.
    free: BTreeMap<usize, usize>,
    /// Live blobs (executable start -> reserved length).
    blobs: BTreeMap<usize, (usize, usize)>,
}

/// Executable memory for a JIT or a loader, with W^X by dual mapping.
///
/// Code is copied (or emitted) through a writable alias of each chunk and run
/// from a separate read+execute mapping at the chunk's address in the code
/// space; no mapping is ever writable and executable. Blobs are aligned (16
/// bytes by default), freed memory is poisoned with trapping instructions and
/// reused, and [`find`](Self::find) maps a program counter to its blob in
/// O(log n) for stack walkers and profilers.
///
/// Blobs are plain handles: using one after its allocator is dropped, or
/// calling into a freed blob, is the caller's bug (the memory then traps or
/// faults; it is never silently reused while the allocator is gone).
///
/// ```
/// use std::sync::Arc;
/// use rtmem_base::{PoolManager, PoolManagerConfig};
/// use rtmem_code::{CodeAllocator, CodeConfig};
///
/// let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
/// let code = CodeAllocator::new(pools, CodeConfig::default()).unwrap();
/// # #[cfg(target_arch = "x86_64")] {
/// let blob = code.install(&[0xB8, 42, 0, 0, 0, 0xC3]).unwrap(); // mov eax, 42; ret
/// // SAFETY: the bytes are a complete x86_64 function returning an i32.
/// let f: extern "C" fn() -> i32 = unsafe { blob.entry() };
/// assert_eq!(f(), 42);
/// assert_eq!(code.find(blob.start_addr() + 3), Some(blob));
/// # }
/// ```
pub struct CodeAllocator {
    pools: Arc<PoolManager>,
    alignment: usize,
    chunk_bytes: usize,
    inner: Mutex<Inner>,
}

/// The byte that freed code is filled with: a trapping instruction.
#[cfg(target_arch = "x86_64")]
const POISON: u8 = 0xCC; // int3
/// The byte that freed code is filled with: `udf #0` is all zeroes on aarch64.
#[cfg(not(target_arch = "x86_64"))]
const POISON: u8 = 0x00;

impl CodeAllocator {
    /// A code allocator taking its chunks from the code space of `pools`.
    ///
    /// Fails with [`AllocError::BadLayout`] if the alignment is not a power of
    /// two or is larger than a pool.
    pub fn new(pools: Arc<PoolManager>, config: CodeConfig) -> Result<CodeAllocator, AllocError> {
        if !config.alignment.is_power_of_two() || config.alignment > pools.pool_size() {
            return Err(AllocError::bad_layout(
                0,
                config.alignment,
                "code alignment must be a power of two no larger than a pool",
            ));
        }
        let chunk_bytes = align_up(config.chunk_bytes.max(1), pools.pool_size());
        Ok(CodeAllocator {
            pools,
            alignment: config.alignment,
            chunk_bytes,
            inner: Mutex::new(Inner {
                chunks: BTreeMap::new(),
                free: BTreeMap::new(),
                blobs: BTreeMap::new(),
            }),
        })
    }

    /// The alignment of every blob.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Installs a copy of `code` and returns its blob, ready to run.
    pub fn install(&self, code: &[u8]) -> Result<CodeBlob, AllocError> {
        self.install_with(code.len(), |buf, _| buf.copy_from_slice(code))
    }

    /// Reserves `len` bytes and lets `emit` write the code in place; `emit`
    /// also gets the final executable address, for position-dependent code.
    pub fn install_with(
        &self,
        len: usize,
        emit: impl FnOnce(&mut [u8], usize),
    ) -> Result<CodeBlob, AllocError> {
        if len == 0 {
            return Err(AllocError::bad_layout(
                0,
                self.alignment,
                "code blobs cannot be empty",
            ));
        }
        let reserved = align_up(len, self.alignment);
        let mut inner = self.inner.lock();
        let exec = match self.take(&mut inner, reserved) {
            Some(exec) => exec,
            None => {
                let chunk = CodeChunk::new(&self.pools, reserved.max(self.chunk_bytes))?;
                let (start, size) = (chunk.start(), chunk.size());
                inner.chunks.insert(start, chunk);
                inner.free.insert(start, size);
                self.take(&mut inner, reserved)
                    .expect("a new chunk fits the blob")
            }
        };
        let chunk = chunk_of(&inner, exec);
        let written = chunk.writable(exec);
        // SAFETY: `[exec, exec + reserved)` was just taken from a free range of
        // this chunk, so its writable alias is ours alone while the lock is held.
        let buf = unsafe { std::slice::from_raw_parts_mut(written, len) };
        emit(buf, exec);
        icache::flush(written, exec, len);
        inner.blobs.insert(exec, (len, reserved));
        drop(inner);
        self.pools
            .stats()
            .record_alloc(SpaceType::Code, reserved, 1);
        let start = NonNull::new(exec as *mut u8).expect("code addresses are never null");
        Ok(CodeBlob { start, len })
    }

    /// Frees a blob: its bytes become trapping instructions and its memory is
    /// reused by later installs. A chunk left empty goes back to the pool
    /// manager (the last one is kept).
    ///
    /// # Panics
    /// If `blob` is not a live blob of this allocator (double free or foreign
    /// blob); the message names its address.
    pub fn free(&self, blob: CodeBlob) {
        let exec = blob.start_addr();
        let mut inner = self.inner.lock();
        let reserved = match inner.blobs.get(&exec) {
            Some(&(len, reserved)) if len == blob.len => reserved,
            _ => panic!(
                "CodeAllocator::free: {exec:#x} (+{}) is not a live code blob (double free or foreign blob)",
                blob.len
            ),
        };
        inner.blobs.remove(&exec);
        let chunk = chunk_of(&inner, exec);
        let written = chunk.writable(exec);
        // SAFETY: the blob's range belongs to this chunk and is no longer live.
        unsafe { written.write_bytes(POISON, reserved) };
        icache::flush(written, exec, reserved);
        let chunk_start = chunk.start();
        let chunk_size = chunk.size();
        let (start, len) = self.give_back(&mut inner, exec, reserved);
        if start == chunk_start && len == chunk_size && inner.chunks.len() > 1 {
            inner.free.remove(&start);
            let chunk = inner.chunks.remove(&start).expect("the chunk exists");
            drop(inner);
            drop(chunk);
        } else {
            drop(inner);
        }
        self.pools.stats().record_free(SpaceType::Code, reserved, 1);
    }

    /// The blob containing the program counter `pc`, if any. O(log n).
    pub fn find(&self, pc: usize) -> Option<CodeBlob> {
        let inner = self.inner.lock();
        let (&start, &(len, _)) = inner.blobs.range(..=pc).next_back()?;
        let start = NonNull::new(start as *mut u8)?;
        let blob = CodeBlob { start, len };
        blob.contains(pc).then_some(blob)
    }

    /// Calls `f` with every live blob, in address order.
    pub fn walk(&self, mut f: impl FnMut(CodeBlob)) {
        let inner = self.inner.lock();
        for (&start, &(len, _)) in &inner.blobs {
            f(CodeBlob {
                start: NonNull::new(start as *mut u8).expect("blobs are never at null"),
                len,
            });
        }
    }

    /// Whether `addr` lies in one of this allocator's chunks.
    pub fn contains(&self, addr: usize) -> bool {
        let inner = self.inner.lock();
        inner
            .chunks
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, c)| addr < c.end())
    }

    /// The number of live blobs.
    pub fn live_blobs(&self) -> usize {
        self.inner.lock().blobs.len()
    }

    /// The number of chunks held (each one or more pools of the code space).
    pub fn chunk_count(&self) -> usize {
        self.inner.lock().chunks.len()
    }

    /// First fit over the free ranges (all ranges and sizes are multiples of
    /// the alignment, so any range that is long enough fits).
    fn take(&self, inner: &mut Inner, len: usize) -> Option<usize> {
        let (&start, &free_len) = inner.free.iter().find(|&(_, &l)| l >= len)?;
        inner.free.remove(&start);
        if free_len > len {
            inner.free.insert(start + len, free_len - len);
        }
        Some(start)
    }

    /// Returns `[start, start + len)` to the free ranges, merging with free
    /// neighbours in the same chunk; returns the merged range.
    fn give_back(&self, inner: &mut Inner, mut start: usize, mut len: usize) -> (usize, usize) {
        let chunk = chunk_of(inner, start);
        let (lo, hi) = (chunk.start(), chunk.end());
        if let Some((&prev, &prev_len)) = inner.free.range(..start).next_back()
            && prev + prev_len == start
            && prev >= lo
        {
            inner.free.remove(&prev);
            start = prev;
            len += prev_len;
        }
        if start + len < hi
            && let Some(next_len) = inner.free.remove(&(start + len))
        {
            len += next_len;
        }
        inner.free.insert(start, len);
        (start, len)
    }
}

fn chunk_of(inner: &Inner, exec: usize) -> &CodeChunk {
    let (_, chunk) = inner
        .chunks
        .range(..=exec)
        .next_back()
        .expect("address inside a chunk");
    debug_assert!(exec < chunk.end());
    chunk
}

impl Drop for CodeAllocator {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        let live: usize = inner.blobs.values().map(|&(_, reserved)| reserved).sum();
        if live > 0 {
            self.pools
                .stats()
                .record_free(SpaceType::Code, live, inner.blobs.len());
        }
        inner.blobs.clear();
        inner.chunks.clear();
    }
}

impl std::fmt::Debug for CodeAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeAllocator")
            .field("alignment", &self.alignment)
            .field("chunks", &self.chunk_count())
            .field("live_blobs", &self.live_blobs())
            .finish()
    }
}
