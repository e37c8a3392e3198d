//! Fragmentation after the `churn` workload: committed bytes divided by live
//! bytes for each allocator — from `MemStats` for rtmem's allocators, from
//! the growth of the resident set for the system allocator and mimalloc.
//!
//! `cargo run --release -p rtmem-benches --bin fragmentation [-- STEPS]` runs
//! each allocator in a process of its own (so one allocator's retained memory
//! does not count against the next) and prints one table.

use std::process::Command;

use rtmem_benches::{
    Churn, FreeListAlloc, MiMallocAlloc, ObjectAlloc, RunSlotsAlloc, SystemAlloc, rss_bytes,
};

const WINDOW: usize = 10_000;
const ALLOCATORS: [&str; 4] = ["rtmem_freelist", "rtmem_runslots", "mimalloc", "system"];

/// Runs the churn and prints `live committed source` on one line.
fn measure<A: ObjectAlloc>(alloc: A, steps: u64) {
    let rss_before = rss_bytes().unwrap_or(0);
    let mut churn = Churn::new(alloc, WINDOW, 42);
    for _ in 0..steps {
        churn.step();
    }
    let live = churn.live_bytes() as u64;
    let (committed, source) = match churn.allocator().committed_bytes() {
        Some(c) => (c, "MemStats committed"),
        None => (
            rss_bytes().unwrap_or(0).saturating_sub(rss_before),
            "RSS growth",
        ),
    };
    println!("{live} {committed} {source}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps: u64 = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    if let Some(pos) = args.iter().position(|a| a == "--one") {
        match args.get(pos + 1).map(String::as_str) {
            Some("rtmem_freelist") => measure(FreeListAlloc::new(), steps),
            Some("rtmem_runslots") => measure(RunSlotsAlloc::new(), steps),
            Some("mimalloc") => measure(MiMallocAlloc, steps),
            Some("system") => measure(SystemAlloc, steps),
            other => panic!("unknown allocator {other:?} (known: {ALLOCATORS:?})"),
        }
        return;
    }
    let exe = std::env::current_exe().expect("the running binary has a path");
    println!("churn: window {WINDOW} objects of 16..=256 bytes, {steps} steps");
    println!(
        "{:<16} {:>12} {:>12} {:>7}  source",
        "allocator", "live", "committed", "ratio"
    );
    for name in ALLOCATORS {
        let out = Command::new(&exe)
            .args(["--one", name, &steps.to_string()])
            .output()
            .expect("run a measurement");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let live: f64 = fields
            .next()
            .and_then(|v| v.parse().ok())
            .expect("live bytes");
        let committed: f64 = fields
            .next()
            .and_then(|v| v.parse().ok())
            .expect("committed bytes");
        let source = fields.collect::<Vec<_>>().join(" ");
        println!(
            "{name:<16} {live:>12} {committed:>12} {:>7.2}  {source}",
            committed / live
        );
    }
}
