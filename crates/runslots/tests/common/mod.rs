//! Helpers shared by the threaded tests.

/// A small xorshift generator (one per thread: deterministic).
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The byte every object at `addr` is filled with.
pub fn pattern(addr: usize) -> u8 {
    (addr >> 3) as u8 | 1
}
