//! Workspace tasks for rtmem, run as `cargo xtask <task>`.
//!
//! - `demo`: the main job — a workload over every space of the selected
//!   profile, then a table of what each space allocated, freed and committed.
//! - `profile list | show NAME | check FILE | select NAME`: the profiles.

mod demo;
mod profile;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  demo                 run a workload over every space of the selected profile and print what each did
  profile list         the built-in profiles (* marks the selected one)
  profile show NAME    the resolved profile, every key (NAME may be a file)
  profile check FILE   validate a profile file
  profile select NAME  make NAME (or a file) the profile of this workspace";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(&args[1..]),
        Some("profile") => profile::run(&args[1..]),
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
