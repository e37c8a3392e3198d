//! The address range a heap-wide side table (mark bitmap, card table)
//! covers, and the bounds checks every access to such a table makes.

/// A covered range `[base, base + len)` and the name of the table covering
/// it, for the panic messages of out-of-range accesses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Covered {
    base: usize,
    len: usize,
    table: &'static str,
}

impl Covered {
    pub(crate) const fn new(base: usize, len: usize, table: &'static str) -> Covered {
        Covered { base, len, table }
    }

    pub(crate) const fn base(&self) -> usize {
        self.base
    }

    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    pub(crate) const fn end(&self) -> usize {
        self.base + self.len
    }

    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base) < self.len
    }

    /// `addr - base`, which is below `len`.
    ///
    /// # Panics
    /// If `addr` lies outside the range; the message names the address, the
    /// table and the range. One compare and a branch never taken.
    #[inline(always)]
    pub(crate) fn offset(&self, addr: usize) -> usize {
        let offset = addr.wrapping_sub(self.base);
        if offset >= self.len {
            self.out_of_range(addr);
        }
        offset
    }

    /// The offsets of `start` and `end` from `base`.
    ///
    /// # Panics
    /// Unless `[start, end)` lies inside the range; the message names both.
    pub(crate) fn offsets(&self, start: usize, end: usize) -> (usize, usize) {
        if !(self.base <= start && start <= end && end <= self.end()) {
            self.range_out_of_range(start, end);
        }
        (start - self.base, end - self.base)
    }

    #[cold]
    #[inline(never)]
    fn out_of_range(&self, addr: usize) -> ! {
        panic!(
            "address {addr:#x} is outside the {}'s range [{:#x}, {:#x})",
            self.table,
            self.base,
            self.end()
        )
    }

    #[cold]
    #[inline(never)]
    fn range_out_of_range(&self, start: usize, end: usize) -> ! {
        panic!(
            "range [{start:#x}, {end:#x}) is not inside the {}'s range [{:#x}, {:#x})",
            self.table,
            self.base,
            self.end()
        )
    }
}
