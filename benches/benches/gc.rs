//! Collector benchmarks: the Benchmarks Game binary-trees program on rtmem's
//! anchors, in the same run.
//!
//! Group `binary_trees` (criterion ids `binary_trees/<function>/16`), one
//! function per entry of [`IMPLEMENTATIONS`], each running the whole program
//! for maximum depth 16 (about 15 million nodes allocated per run):
//! - `box`: `Option<Box<Node>>` children over the system allocator;
//! - `rc`: `Option<Rc<Node>>` children;
//! - `gc_arena`: gc-arena's incremental mark-sweep, `collect_debt` between
//!   trees whenever the allocation debt passes 1024 `Gc`s;
//! - `bumpalo`: every tree in a bump reset after its check, the lower bound
//!   with no collection at all;
//! - `rtmem_stw`, `rtmem_gen` (profile `throughput`), `rtmem_gen_concurrent`
//!   (profile `balanced`, the default): a fresh memory manager per run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use rtmem_benches::trees::{IMPLEMENTATIONS, expected_total};

const MAX_DEPTH: u32 = 16;

fn binary_trees(c: &mut Criterion) {
    let mut g = c.benchmark_group("binary_trees");
    // One run allocates (and checks) exactly `expected_total` nodes.
    g.throughput(Throughput::Elements(expected_total(MAX_DEPTH)));
    // A run takes a large fraction of a second: the same few iterations per
    // sample, not criterion's linear ramp of 1 + 2 + ... + 10.
    g.sampling_mode(SamplingMode::Flat);
    for &(name, run) in IMPLEMENTATIONS {
        g.bench_function(BenchmarkId::new(name, MAX_DEPTH), |b| {
            b.iter(|| black_box(run(black_box(MAX_DEPTH))))
        });
    }
    g.finish();
}

// A full run of the group stays well under a minute on two cores: box and rc
// take about 0.35 s a run (one run a sample), bumpalo about 0.1 s, and
// gc_arena about 1.5 s, so its 10 one-run samples overrun the 3 s target
// (criterion says so and measures them all the same).
criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = binary_trees
}
criterion_main!(benches);
