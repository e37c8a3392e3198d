//! Workspace tasks for rtmem, run as `cargo xtask <task>`.
//!
//! - `demo`: the main job — a workload over every allocator on one pool
//!   manager, then a table of what each space allocated, freed and committed.

mod demo;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  demo    run an allocation workload over rtmem's allocators and print what each space did";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(&args[1..]),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
