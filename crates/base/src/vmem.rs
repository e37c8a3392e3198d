//! Virtual memory: reserve, commit, decommit, protect and release address ranges.
//!
//! Everything goes straight to the kernel through `rustix` (`mmap`, `mprotect`,
//! `madvise`, `munmap`); nothing here touches the global allocator, so the
//! pools built on it can themselves back a `#[global_allocator]`.

use std::ptr::NonNull;

use rustix::mm::{Advice, MapFlags, MprotectFlags, ProtFlags};

use crate::address::{align_up, is_aligned, page_size};
use crate::error::AllocError;

/// The access rights of a committed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// No access: any load or store faults.
    None,
    /// Read only.
    Read,
    /// Read and write (ordinary data).
    ReadWrite,
    /// Read and execute (finished machine code; never writable at the same time).
    ReadExecute,
}

impl Protection {
    fn flags(self) -> MprotectFlags {
        match self {
            Protection::None => MprotectFlags::empty(),
            Protection::Read => MprotectFlags::READ,
            Protection::ReadWrite => MprotectFlags::READ | MprotectFlags::WRITE,
            Protection::ReadExecute => MprotectFlags::READ | MprotectFlags::EXEC,
        }
    }
}

/// A reserved range of address space, released when dropped.
///
/// A new reservation is inaccessible (`PROT_NONE`, `MAP_NORESERVE`): it costs
/// address space but no memory until parts of it are [committed](Self::commit).
#[derive(Debug)]
pub struct Reservation {
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: a reservation is an address range owned by this value; the range
// itself carries no thread affinity, and every method takes the kernel's
// locks, so sharing or sending it between threads is sound.
unsafe impl Send for Reservation {}
// SAFETY: as above; `&Reservation` only exposes system calls on the range.
unsafe impl Sync for Reservation {}

impl Reservation {
    /// Reserves `len` bytes (rounded up to pages) starting at a multiple of
    /// `align` (a power of two, at least a page).
    pub fn new(len: usize, align: usize) -> Result<Reservation, AllocError> {
        let page = page_size();
        let align = align.max(page);
        if !align.is_power_of_two() {
            return Err(AllocError::bad_layout(
                len,
                align,
                "alignment must be a power of two",
            ));
        }
        if len == 0 {
            return Err(AllocError::bad_layout(
                len,
                align,
                "cannot reserve zero bytes",
            ));
        }
        let len = align_up(len, page);
        let padded = len.checked_add(align - page).ok_or(AllocError::bad_layout(
            len,
            align,
            "reservation larger than the address space",
        ))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing; it cannot alias anything that exists.
        let raw = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                padded,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| AllocError::Os {
            operation: "mmap",
            bytes: padded,
            errno: e.raw_os_error(),
        })?;
        let base = raw as usize;
        let start = align_up(base, align);
        let head = start - base;
        let tail = padded - head - len;
        // SAFETY: both trimmed ranges lie inside the mapping just created and
        // are not part of the range this reservation keeps.
        unsafe {
            if head > 0 {
                let _ = rustix::mm::munmap(raw, head);
            }
            if tail > 0 {
                let _ = rustix::mm::munmap((start + len) as *mut _, tail);
            }
        }
        let start = NonNull::new(start as *mut u8).expect("mmap returned null");
        tracing::trace!(
            start = start.as_ptr() as usize,
            len,
            "reserved address range"
        );
        Ok(Reservation { start, len })
    }

    /// The first byte of the range.
    #[inline]
    pub fn start(&self) -> NonNull<u8> {
        self.start
    }

    /// The length of the range in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a reservation holds at least one page.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `addr` lies inside the range.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start.as_ptr() as usize) < self.len
    }

    /// Makes `[offset, offset + len)` readable and writable. Pages read as zero
    /// the first time they are touched after a reservation or a decommit.
    pub fn commit(&self, offset: usize, len: usize) -> Result<(), AllocError> {
        self.protect(offset, len, Protection::ReadWrite)
    }

    /// Gives the pages of `[offset, offset + len)` back to the operating system
    /// and makes them inaccessible again; the address range stays reserved.
    pub fn decommit(&self, offset: usize, len: usize) -> Result<(), AllocError> {
        let ptr = self.range(offset, len);
        // SAFETY: the range lies inside this reservation (checked by `range`);
        // dropping its pages is exactly what the caller asked for.
        unsafe { rustix::mm::madvise(ptr, len, Advice::LinuxDontNeed) }.map_err(|e| {
            AllocError::Os {
                operation: "madvise",
                bytes: len,
                errno: e.raw_os_error(),
            }
        })?;
        self.protect(offset, len, Protection::None)
    }

    /// Asks the kernel to back `[offset, offset + len)` with transparent huge
    /// pages where it can: one fault (and one TLB entry) per 2 MiB instead of
    /// per 4 KiB, for memory that is written from end to end over and over,
    /// such as a young generation. A hint: a kernel without them, or with
    /// them switched off, ignores it (so does this function, on failure).
    pub fn advise_huge_pages(&self, offset: usize, len: usize) {
        let ptr = self.range(offset, len);
        // SAFETY: the range lies inside this reservation (checked by
        // `range`); the advice changes how pages are backed, not what they
        // hold.
        let advised = unsafe { rustix::mm::madvise(ptr, len, Advice::LinuxHugepage) };
        if let Err(e) = advised {
            tracing::debug!(
                len,
                errno = e.raw_os_error(),
                "madvise(MADV_HUGEPAGE) refused"
            );
        }
    }

    /// Changes the access rights of `[offset, offset + len)`.
    pub fn protect(&self, offset: usize, len: usize, prot: Protection) -> Result<(), AllocError> {
        let ptr = self.range(offset, len);
        // SAFETY: the range lies inside this reservation (checked by `range`),
        // which owns its mapping; callers own the consequences of the rights.
        unsafe { rustix::mm::mprotect(ptr, len, prot.flags()) }.map_err(|e| AllocError::Os {
            operation: "mprotect",
            bytes: len,
            errno: e.raw_os_error(),
        })
    }

    fn range(&self, offset: usize, len: usize) -> *mut std::ffi::c_void {
        let page = page_size();
        assert!(
            is_aligned(offset, page) && is_aligned(len, page),
            "range [{offset:#x}, +{len:#x}) is not page-aligned"
        );
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "range [{offset:#x}, +{len:#x}) lies outside a reservation of {:#x} bytes",
            self.len
        );
        (self.start.as_ptr() as usize + offset) as *mut _
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `new` and is owned by this value;
        // whoever handed out pointers into it has been dropped (borrowck) or
        // documented that they must not be used after the owner is gone.
        let _ = unsafe { rustix::mm::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_commit_write_decommit() {
        let page = page_size();
        let r = Reservation::new(16 * page, 64 * 1024).unwrap();
        assert!(is_aligned(r.start().as_ptr() as usize, 64 * 1024));
        assert_eq!(r.len(), 16 * page);
        r.commit(page, 2 * page).unwrap();
        // SAFETY: one page into a reservation of sixteen.
        let p = unsafe { r.start().as_ptr().add(page) };
        // SAFETY: the page was just committed read-write.
        unsafe {
            p.write_bytes(0xAB, 2 * page);
            assert_eq!(*p.add(2 * page - 1), 0xAB);
        }
        r.decommit(page, 2 * page).unwrap();
        r.commit(page, page).unwrap();
        // SAFETY: committed again; decommitted pages read back as zero.
        assert_eq!(unsafe { *p }, 0);
        assert!(r.contains(p as usize));
        assert!(!r.contains(r.start().as_ptr() as usize + r.len()));
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(matches!(
            Reservation::new(0, 4096),
            Err(AllocError::BadLayout { .. })
        ));
        assert!(matches!(
            Reservation::new(4096, 3 << 12),
            Err(AllocError::BadLayout { .. })
        ));
        let err = Reservation::new(usize::MAX / 2, 4096).unwrap_err();
        assert!(
            matches!(
                err,
                AllocError::Os {
                    operation: "mmap",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    #[should_panic(expected = "outside a reservation")]
    fn out_of_range_commit_panics() {
        let r = Reservation::new(page_size(), page_size()).unwrap();
        let _ = r.commit(0, 2 * page_size());
    }
}
