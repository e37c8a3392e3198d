//! The synchronization primitives of the collector's protocols, switched to
//! `loom`'s model-checked versions under `--cfg loom`.
//!
//! Protocol code uses std-style `Mutex`/`Condvar` (safepoint slow paths are
//! rare; what matters is that loom can check them) and an `UnsafeCell` with
//! loom's `with`/`with_mut` access API, so that loom also checks that data
//! handed between mutators and the collector is never accessed concurrently.
//!
//! Side tables (mark bitmaps, card tables) are arrays of atomics in a
//! [`SideTable`]: their own mapped memory normally, a boxed slice of loom's
//! atomics under loom (loom's atomics are tracked objects, not raw memory).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub(crate) use rtmem_base::cell::UnsafeCell;

/// One step of a wait loop: spin briefly, then yield the processor (under
/// loom: yield to the model, so that a spinning thread lets others run).
#[inline]
pub(crate) fn spin_wait(spins: &mut u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        *spins += 1;
        if *spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Atomic integers a [`SideTable`] can hold.
///
/// Implemented only for atomic integer types, whose all-zero bytes are the
/// valid value zero (what fresh anonymous memory holds) and which have no
/// drop glue; [`SideTable`]'s safety rests on that.
pub(crate) trait TableAtomic: Default + Send + Sync + 'static {}
impl TableAtomic for AtomicU8 {}
impl TableAtomic for AtomicU64 {}

/// A fixed-length array of atomics, all zero at first, for side metadata.
///
/// Its memory is its own [`Reservation`](rtmem_base::Reservation), committed read-write up front and
/// never taken from the global allocator; the kernel maps pages lazily, so
/// the parts of a table that are never written cost no memory. Under loom it
/// is a boxed slice of loom's atomics.
pub(crate) struct SideTable<A: TableAtomic> {
    #[cfg(not(loom))]
    memory: rtmem_base::Reservation,
    #[cfg(not(loom))]
    len: usize,
    #[cfg(not(loom))]
    _elements: std::marker::PhantomData<A>,
    #[cfg(loom)]
    elements: Box<[A]>,
}

impl<A: TableAtomic> SideTable<A> {
    /// A table of `len` (at least one) zero elements.
    pub(crate) fn zeroed(len: usize) -> Result<Self, rtmem_base::AllocError> {
        debug_assert!(len > 0, "side tables are never empty");
        #[cfg(not(loom))]
        {
            let bytes =
                len.checked_mul(size_of::<A>())
                    .ok_or(rtmem_base::AllocError::bad_layout(
                        len,
                        align_of::<A>(),
                        "side table larger than the address space",
                    ))?;
            let memory = rtmem_base::Reservation::new(bytes, rtmem_base::page_size())?;
            memory.commit(0, memory.len())?;
            Ok(SideTable {
                memory,
                len,
                _elements: std::marker::PhantomData,
            })
        }
        #[cfg(loom)]
        {
            Ok(SideTable {
                elements: (0..len).map(|_| A::default()).collect(),
            })
        }
    }

    /// The bytes of memory the table occupies (whole pages, outside loom).
    pub(crate) fn bytes(&self) -> usize {
        #[cfg(not(loom))]
        {
            self.memory.len()
        }
        #[cfg(loom)]
        {
            self.elements.len() * size_of::<A>()
        }
    }

    /// The address of the first element, its provenance exposed so that code
    /// outside Rust (a JIT's inlined barrier) may write the table through
    /// addresses computed from it.
    #[cfg(not(loom))]
    pub(crate) fn exposed_start(&self) -> usize {
        self.memory.start().as_ptr().expose_provenance()
    }
}

impl<A: TableAtomic> std::ops::Deref for SideTable<A> {
    type Target = [A];

    #[inline(always)]
    fn deref(&self) -> &[A] {
        #[cfg(not(loom))]
        {
            // SAFETY: the reservation holds at least `len * size_of::<A>()`
            // committed read-write bytes, page-aligned (so aligned for `A`),
            // that live as long as `self`; they were zero when mapped and
            // are only ever accessed through these atomics (and through the
            // exposed start, as atomic-equivalent byte stores), and all-zero
            // bytes are a valid `A` (see `TableAtomic`).
            unsafe {
                std::slice::from_raw_parts(self.memory.start().as_ptr().cast::<A>(), self.len)
            }
        }
        #[cfg(loom)]
        {
            &self.elements
        }
    }
}

impl<A: TableAtomic> std::fmt::Debug for SideTable<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SideTable")
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}
