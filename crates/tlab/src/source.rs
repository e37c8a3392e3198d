//! `TlabSource`: where a TLAB gets its buffers, and its implementation for
//! `rtmem_bump::BumpRegion`.

use std::ptr::NonNull;

use rtmem_base::AllocError;
use rtmem_bump::BumpRegion;

/// Where a [`Tlab`](crate::Tlab) refills from: a region shared by threads.
///
/// Implemented here for [`BumpRegion`]; a collector implements it for its
/// young regions (for example to pick the next region when one is full).
pub trait TlabSource {
    /// Carves a chunk of between `min` and `preferred` bytes (both nonzero
    /// multiples of [`Tlab::GRANULE`](crate::Tlab::GRANULE)), 8-aligned,
    /// owned by the caller until the source is reset; or the error that
    /// explains why not even `min` is available.
    ///
    /// The TLAB checks the length and alignment of what it gets and panics if
    /// they break this contract; it never reads or writes the memory itself.
    fn carve(&self, min: usize, preferred: usize) -> Result<(NonNull<u8>, usize), AllocError>;

    /// Describes the unused tail `[start, start + len)` of a retired buffer
    /// (`len` a nonzero multiple of 8) so that a heap walker can step over it.
    /// The default does nothing.
    fn retire_tail(&self, _start: NonNull<u8>, _len: usize) {}

    /// Records `objects` objects of `bytes` in total allocated from a retired
    /// buffer (and carved directly). The default does nothing.
    fn account(&self, _bytes: usize, _objects: usize) {}
}

impl TlabSource for BumpRegion {
    #[inline]
    fn carve(&self, min: usize, preferred: usize) -> Result<(NonNull<u8>, usize), AllocError> {
        BumpRegion::carve(self, min, preferred)
    }

    #[inline]
    fn retire_tail(&self, start: NonNull<u8>, len: usize) {
        self.fill_tail(start, len);
    }

    #[inline]
    fn account(&self, bytes: usize, objects: usize) {
        BumpRegion::account(self, bytes, objects);
    }
}
