//! Times the benchmarks' churn workload (a window of 10,000 live objects;
//! each step frees a random one and allocates 16..=256 bytes) over
//! `FreeListAllocator` and over the system allocator, in this process's main
//! thread.
//!
//! ```text
//! cargo run --release -p rtmem-freelist --example churn              # single-threaded process
//! cargo run --release -p rtmem-freelist --example churn -- --threaded # with a second thread alive
//! ```
//!
//! With `--threaded` a parked thread exists during the measurement, so both
//! allocators take their multi-threaded paths (an atomic lock per operation
//! here; thread caches and arena locks in glibc).

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let threaded = std::env::args().any(|a| a == "--threaded");
    let parked = threaded.then(|| std::thread::spawn(std::thread::park));
    eprintln!(
        "process {}",
        if threaded {
            "multi-threaded"
        } else {
            "single-threaded"
        }
    );
    common::churn_vs_system(25, 500_000);
    if let Some(t) = parked {
        t.thread().unpark();
        t.join().unwrap();
    }
}
