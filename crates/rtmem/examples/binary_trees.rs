//! The Benchmarks Game binary-trees program on rtmem's collected heap.
//!
//! ```text
//! cargo run --release -p rtmem --example binary_trees -- --depth N [--profile NAME|FILE] [--json] [--gc-records]
//! ```
//!
//! Prints the standard output lines (so the answer can be checked), then the
//! collector's summary; `--gc-records` prints the collector's records (every
//! collection, phase by phase) as JSON on stderr; with `--json` the last line is one JSON object with
//! the run's figures. The profile comes from `--profile`, else
//! `RTMEM_PROFILE`, else the default.

use std::process::ExitCode;
use std::time::Instant;

use rtmem::{MemoryManager, Profile};
use rtmem_base::SpaceType;
use rtmem_testvm::TestVm;
use rtmem_testvm::trees::{PairTrees, binary_trees, expected_total};

const USAGE: &str = "usage: binary_trees [--depth N] [--profile NAME|FILE] [--json]";

struct Args {
    depth: u32,
    profile: Option<String>,
    json: bool,
    records: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        depth: 16,
        profile: None,
        json: false,
        records: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--depth" => {
                let value = args.next().ok_or("--depth needs a value")?;
                parsed.depth = value
                    .parse()
                    .ok()
                    .filter(|d| (1..=30).contains(d))
                    .ok_or(format!("--depth {value}: expected a depth from 1 to 30"))?;
            }
            "--profile" => parsed.profile = Some(args.next().ok_or("--profile needs a value")?),
            "--json" => parsed.json = true,
            "--gc-records" => parsed.records = true,
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(parsed)
}

fn run(args: Args) -> Result<(), String> {
    let profile = match &args.profile {
        Some(name) => Profile::from_name_or_path(name),
        None => Profile::from_env(),
    }
    .map_err(|e| e.to_string())?;
    let mm = MemoryManager::new(profile, TestVm::default()).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut trees = PairTrees::new(mm.register(Default::default()));
    let total = binary_trees(&mut trees, args.depth, |line| println!("{line}"));
    let wall = start.elapsed();
    drop(trees);
    if total != expected_total(args.depth) {
        return Err(format!(
            "wrong answer: total check {total}, expected {}",
            expected_total(args.depth)
        ));
    }
    if args.records {
        eprintln!("{}", mm.heap().stats().to_json());
    }
    let report = mm.report();
    let gc = &report.gc;
    let committed_peak: u64 = SpaceType::MANAGED
        .iter()
        .map(|&s| report.memory.space(s).peak_committed)
        .sum();
    println!();
    println!("{report}");
    println!("wall time: {:.1} ms", wall.as_secs_f64() * 1e3);
    if args.json {
        let json = serde_json::json!({
            "profile": report.profile,
            "gc": gc.collector,
            "depth": args.depth,
            "wall_ms": wall.as_secs_f64() * 1e3,
            "gc_count": gc.gc_count,
            "pause_max_ms": gc.pause_max_ms,
            "pause_p50_ms": gc.pause_p50_ms,
            "pause_p99_ms": gc.pause_p99_ms,
            "pause_total_ms": gc.pause_total_ms,
            "heap_peak_bytes": report.heap_peak_bytes,
            "committed_peak_bytes": committed_peak,
            "freed_bytes": gc.freed_bytes,
            "objects_freed": gc.objects_freed,
        });
        println!("{json}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
