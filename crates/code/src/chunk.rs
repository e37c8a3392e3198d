//! A code chunk: one code-space pool, dual-mapped for W^X.
//!
//! The pool's own address range becomes a read+execute view of a `memfd`;
//! a second, read+write view of the same file lives at another address. Code
//! is written through the writable view and run from the executable one, so
//! no page is ever writable and executable through the same mapping, and
//! installing new code never takes execute rights away from code that other
//! threads may be running in the same page (which flipping protections would).

use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{AllocError, Pool, PoolManager, SpaceType};
use rustix::fs::MemfdFlags;
use rustix::mm::{MapFlags, ProtFlags};

fn os_error(operation: &'static str, bytes: usize, e: rustix::io::Errno) -> AllocError {
    AllocError::Os {
        operation,
        bytes,
        errno: e.raw_os_error(),
    }
}

/// One dual-mapped pool of the code space.
pub(crate) struct CodeChunk {
    pools: Arc<PoolManager>,
    pool: Pool,
    writable: NonNull<u8>,
    _file: OwnedFd,
}

// SAFETY: the chunk owns its two mappings and its file descriptor; neither is
// tied to a thread, and all writes through the writable view are serialized by
// the allocator's lock.
unsafe impl Send for CodeChunk {}

impl CodeChunk {
    /// Takes a code-space pool of at least `bytes` and dual-maps it.
    pub(crate) fn new(pools: &Arc<PoolManager>, bytes: usize) -> Result<CodeChunk, AllocError> {
        let pool = pools.alloc_pool(SpaceType::Code, bytes)?;
        let size = pool.size();
        let mapped = (|| {
            let file = rustix::fs::memfd_create("rtmem-code", MemfdFlags::CLOEXEC)
                .map_err(|e| os_error("memfd_create", size, e))?;
            rustix::fs::ftruncate(&file, size as u64)
                .map_err(|e| os_error("ftruncate", size, e))?;
            // SAFETY: the fixed range is exactly the pool we own; replacing its
            // anonymous pages with a shared view of our file affects nothing else.
            unsafe {
                rustix::mm::mmap(
                    pool.start().as_ptr().cast(),
                    size,
                    ProtFlags::READ | ProtFlags::EXEC,
                    MapFlags::SHARED | MapFlags::FIXED,
                    &file,
                    0,
                )
            }
            .map_err(|e| os_error("mmap (executable view)", size, e))?;
            // SAFETY: a new mapping at an address of the kernel's choosing.
            let writable = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    size,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED,
                    &file,
                    0,
                )
            }
            .map_err(|e| os_error("mmap (writable view)", size, e))?;
            let writable = NonNull::new(writable.cast::<u8>()).expect("mmap never returns null");
            Ok((file, writable))
        })();
        match mapped {
            Ok((file, writable)) => {
                tracing::debug!(start = pool.start_addr(), size, "code chunk mapped");
                Ok(CodeChunk {
                    pools: pools.clone(),
                    pool,
                    writable,
                    _file: file,
                })
            }
            Err(e) => {
                restore_anonymous(&pool);
                pools.free_pool(pool);
                Err(e)
            }
        }
    }

    /// The first executable address.
    pub(crate) fn start(&self) -> usize {
        self.pool.start_addr()
    }

    /// One past the last executable address.
    pub(crate) fn end(&self) -> usize {
        self.pool.end_addr()
    }

    pub(crate) fn size(&self) -> usize {
        self.pool.size()
    }

    /// The writable alias of executable address `exec` (inside the chunk).
    pub(crate) fn writable(&self, exec: usize) -> *mut u8 {
        debug_assert!(self.pool.contains(exec));
        // SAFETY: `exec` lies in the chunk, so the offset stays inside the
        // writable view of the same size.
        unsafe { self.writable.as_ptr().add(exec - self.start()) }
    }
}

/// Puts an ordinary private read-write mapping back over a pool, the state the
/// pool manager handed it out in.
fn restore_anonymous(pool: &Pool) {
    // SAFETY: the fixed range is exactly the pool we own.
    let restored = unsafe {
        rustix::mm::mmap_anonymous(
            pool.start().as_ptr().cast(),
            pool.size(),
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
        )
    };
    if let Err(e) = restored {
        // The pool keeps its file-backed view; the pool manager will still
        // decommit and reuse the range, so only the memory's kind differs.
        tracing::error!(error = %e, start = pool.start_addr(), "restoring a code pool failed");
    }
}

impl Drop for CodeChunk {
    fn drop(&mut self) {
        // SAFETY: the writable view was mapped by `new` with this size and no
        // pointer into it outlives the chunk (the allocator hands out only
        // executable addresses).
        let _ = unsafe { rustix::mm::munmap(self.writable.as_ptr().cast(), self.pool.size()) };
        restore_anonymous(&self.pool);
        self.pools.free_pool(self.pool);
    }
}
