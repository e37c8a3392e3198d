//! An `UnsafeCell` with loom's closure-based access API, switched to loom's
//! race-checking cell under `--cfg loom`.
//!
//! Protocol code (remote frees, safepoints, locks) keeps the data it hands
//! between threads in this cell and reaches it only through
//! [`with`](UnsafeCell::with) and [`with_mut`](UnsafeCell::with_mut): in an
//! ordinary build those are plain pointer accesses; under loom every access
//! is checked for races. One definition serves every rtmem crate.

/// `std`'s `UnsafeCell` with loom's access API.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// A cell holding `value`.
    #[inline(always)]
    pub const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared pointer to the value.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable pointer to the value.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    /// The value, consuming the cell.
    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

/// loom's race-checking cell.
#[cfg(loom)]
pub use loom::cell::UnsafeCell;
