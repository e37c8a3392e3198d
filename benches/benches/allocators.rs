//! Allocator benchmarks.
fn main() {}
