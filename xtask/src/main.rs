//! Workspace tasks for rtmem, run as `cargo xtask <task>`.
//!
//! - `demo`: the main job — a workload over every space of the selected
//!   profile, then a table of what each space allocated, freed and committed.
//! - `profile list | show NAME | check FILE | select NAME`: the profiles.
//! - `compare-jvm [--depth N] [--runs K]`: binary-trees on rtmem (profiles
//!   `throughput` and `balanced`) against the same program on the JVM (G1,
//!   Parallel, ZGC): wall time, peak RSS, collections, pauses, and the ratios
//!   rtmem's targets are stated in.
//! - `lox-bench [--runs K] [--profile P] [NAME...]`: the Lox programs of
//!   `benches/lox` on rtmem's Lox VM, checked against their expected output,
//!   timed against clox.
//!
//! The benchmark tasks run every program as a child process and measure it
//! from outside (`measure`), so every contender is timed the same way.

mod cargo_build;
mod compare_jvm;
mod demo;
mod gc_log;
mod lox_bench;
mod measure;
mod profile;
mod table;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  demo                 run a workload over every space of the selected profile and print what each did
  profile list         the built-in profiles (* marks the selected one)
  profile show NAME    the resolved profile, every key (NAME may be a file)
  profile check FILE   validate a profile file
  profile select NAME  make NAME (or a file) the profile of this workspace
  compare-jvm [--depth N] [--runs K]
                       binary-trees (depth N, default 20) K times (default 3) on rtmem's throughput and
                       balanced profiles and on the JVM with G1, Parallel and ZGC; a table of wall time,
                       peak RSS and pauses, and the ratios of rtmem's targets
  lox-bench [--runs K] [--profile P] [NAME...]
                       the programs of benches/lox (or those named) K times (default 3) on the lox VM,
                       output checked against NAME.expected; a table against clox's times";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(&args[1..]),
        Some("profile") => profile::run(&args[1..]),
        Some("compare-jvm") => compare_jvm::run(&args[1..]),
        Some("lox-bench") => lox_bench::run(&args[1..]),
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

/// The workspace root: where `.cargo/config.toml` lives.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `target` in
/// the workspace.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::path::absolute(&dir).unwrap_or_else(|_| dir.into()),
        None => workspace_root().join("target"),
    }
}

/// The value of the option `flag`, a number in `range`.
fn number_arg(
    flag: &str,
    value: Option<&String>,
    range: RangeInclusive<u32>,
) -> Result<u32, String> {
    let value = value.ok_or(format!("{flag} needs a value"))?;
    value
        .parse()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or(format!(
            "{flag} {value}: expected a number from {} to {}",
            range.start(),
            range.end()
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_arguments_are_checked() {
        let v = |s: &str| Some(s.to_owned());
        assert_eq!(number_arg("--runs", v("3").as_ref(), 1..=100), Ok(3));
        let err = number_arg("--runs", v("0").as_ref(), 1..=100).unwrap_err();
        assert_eq!(err, "--runs 0: expected a number from 1 to 100");
        assert!(number_arg("--depth", v("x").as_ref(), 1..=30).is_err());
        assert_eq!(
            number_arg("--depth", None, 1..=30).unwrap_err(),
            "--depth needs a value"
        );
    }
}
