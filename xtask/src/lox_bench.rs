//! `cargo xtask lox-bench [--runs K] [--profile P] [NAME...]`: the Lox
//! programs of `benches/lox` on rtmem's Lox VM (`crates/lox`, the `lox`
//! binary: `lox [--profile P] FILE.lox` runs the script and prints to
//! stdout), each checked against `NAME.expected` when there is one and timed
//! against clox, the C implementation of Crafting Interpreters.
//!
//! Each program runs K times as a child process; the table has the median
//! wall time and peak RSS, clox's reference figures, and the ratio to clox's
//! time with rtmem's target for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::measure::{first_difference, measure, median, mib};
use crate::table::{Table, cell};
use crate::{cargo_build, number_arg};

const USAGE: &str = "usage: cargo xtask lox-bench [--runs K] [--profile P] [NAME...]";

/// clox's figures for a benchmark program and rtmem's target for it.
struct Reference {
    name: &'static str,
    /// clox's wall time, s.
    clox_s: f64,
    /// clox's peak RSS, MiB, where measured.
    clox_rss_mib: Option<f64>,
    /// The largest acceptable ratio of our time to clox's.
    target: f64,
}

/// The reference figures, by program name.
const REFERENCES: [Reference; 9] = [
    reference("binary_trees", 3.5, Some(26.0), 0.7),
    reference("trees", 3.3, Some(93.0), 0.7),
    reference("equality", 3.9, None, 1.0),
    reference("fib", 0.82, None, 1.0),
    reference("instantiation", 0.77, None, 0.7),
    reference("properties", 0.55, None, 1.0),
    reference("invocation", 0.41, None, 1.0),
    reference("zoo", 0.42, None, 1.0),
    reference("method_call", 0.22, None, 1.0),
];

const fn reference(
    name: &'static str,
    clox_s: f64,
    clox_rss_mib: Option<f64>,
    target: f64,
) -> Reference {
    Reference {
        name,
        clox_s,
        clox_rss_mib,
        target,
    }
}

/// Runs the benchmarks.
pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let dir = crate::workspace_root().join("benches").join("lox");
    let programs = programs(&dir, &options.names)?;
    let lox = cargo_build::build_release(&["-p", "rtmem-lox", "--bin", "lox"], "lox")
        .map_err(|e| format!("cannot build the lox interpreter: {e}"))?;
    let mut table = Table::new(&[
        "program",
        "wall s",
        "peak RSS MiB",
        "clox s",
        "clox RSS MiB",
        "ratio",
        "target",
        "",
    ]);
    for (name, path) in &programs {
        let expected = expected_output(path)?;
        let mut walls = Vec::new();
        let mut rss = Vec::new();
        for run in 1..=options.runs {
            eprintln!("run {run}/{}: {name}", options.runs);
            let mut command = Command::new(&lox);
            if let Some(profile) = &options.profile {
                command.args(["--profile", profile]);
            }
            let m = measure(command.arg(path))?;
            if let Some(expected) = &expected
                && let Some(difference) = first_difference(expected, &m.stdout)
            {
                return Err(format!(
                    "WRONG OUTPUT: {name} differs from {name}.expected at {difference}"
                ));
            }
            walls.push(m.wall.as_secs_f64());
            rss.push(mib(m.peak_rss));
        }
        let wall = median(walls).expect("at least one run");
        table.row(row(name, wall, median(rss), expected.is_some()));
    }
    let profile = options.profile.as_deref().unwrap_or("the selected one");
    println!(
        "lox benchmarks, {} run(s) each, profile {profile}; medians of the runs; ratio = wall / clox\n\n{table}",
        options.runs
    );
    Ok(())
}

#[derive(Debug)]
struct Options {
    runs: u32,
    profile: Option<String>,
    names: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        runs: 3,
        profile: None,
        names: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => options.runs = number_arg("--runs", args.next(), 1..=1000)?,
            "--profile" => {
                options.profile = Some(args.next().ok_or("--profile needs a value")?.clone());
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown argument `{other}`\n{USAGE}"));
            }
            name => options.names.push(name.trim_end_matches(".lox").to_owned()),
        }
    }
    Ok(options)
}

/// The programs to run, as (name, path): those named, or every `.lox` file of
/// `dir` in name order.
fn programs(dir: &Path, names: &[String]) -> Result<Vec<(String, PathBuf)>, String> {
    if !names.is_empty() {
        return names
            .iter()
            .map(|name| {
                let path = dir.join(format!("{name}.lox"));
                if path.is_file() {
                    Ok((name.clone(), path))
                } else {
                    Err(format!(
                        "no program `{name}`: {} does not exist",
                        path.display()
                    ))
                }
            })
            .collect();
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("no .lox programs: {}: {e}", dir.display()))?;
    let mut programs = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "lox") {
            let name = path.file_stem().expect("has an extension");
            programs.push((name.to_string_lossy().into_owned(), path));
        }
    }
    if programs.is_empty() {
        return Err(format!("no .lox programs in {}", dir.display()));
    }
    programs.sort();
    Ok(programs)
}

/// The contents of `NAME.expected` beside `NAME.lox`, if there is one.
fn expected_output(program: &Path) -> Result<Option<String>, String> {
    let path = program.with_extension("expected");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The table row of a program.
fn row(name: &str, wall_s: f64, rss_mib: Option<f64>, checked: bool) -> Vec<String> {
    let reference = REFERENCES.iter().find(|r| r.name == name);
    let ratio = reference.map(|r| wall_s / r.clox_s);
    let verdict = match (ratio, reference) {
        (Some(ratio), Some(r)) if ratio <= r.target => "met",
        (Some(_), Some(_)) => "MISSED",
        _ => "",
    };
    let checked = if checked { "" } else { " (output unchecked)" };
    vec![
        name.to_owned(),
        cell(Some(wall_s), 3),
        cell(rss_mib, 1),
        cell(reference.map(|r| r.clox_s), 2),
        cell(reference.and_then(|r| r.clox_rss_mib), 0),
        cell(ratio, 2),
        reference.map_or("-".to_owned(), |r| format!("<= {:?}", r.target)),
        format!("{verdict}{checked}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_known_and_unknown_programs() {
        assert_eq!(
            row("binary_trees", 2.1, Some(30.0), true),
            [
                "binary_trees",
                "2.100",
                "30.0",
                "3.50",
                "26",
                "0.60",
                "<= 0.7",
                "met"
            ]
        );
        assert_eq!(
            row("fib", 1.64, Some(5.0), true),
            [
                "fib", "1.640", "5.0", "0.82", "-", "2.00", "<= 1.0", "MISSED"
            ]
        );
        assert_eq!(
            row("mine", 1.0, None, false),
            [
                "mine",
                "1.000",
                "-",
                "-",
                "-",
                "-",
                "-",
                " (output unchecked)"
            ]
        );
    }

    #[test]
    fn every_reference_has_its_target() {
        for r in &REFERENCES {
            let fast = matches!(r.name, "binary_trees" | "trees" | "instantiation");
            assert_eq!(r.target, if fast { 0.7 } else { 1.0 }, "{}", r.name);
        }
    }

    #[test]
    fn programs_are_found_or_named_errors() {
        let dir = std::env::temp_dir().join(format!("xtask-lox-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = programs(&dir, &[]).unwrap_err();
        assert!(err.starts_with("no .lox programs in"), "{err}");
        for file in ["zoo.lox", "fib.lox", "fib.expected", "notes.txt"] {
            std::fs::write(dir.join(file), "print 1;\n").unwrap();
        }
        let found = programs(&dir, &[]).unwrap();
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["fib", "zoo"]);
        assert_eq!(
            expected_output(&found[0].1).unwrap().as_deref(),
            Some("print 1;\n")
        );
        assert_eq!(expected_output(&found[1].1).unwrap(), None);
        let err = programs(&dir, &["nope".to_owned()]).unwrap_err();
        assert!(err.contains("no program `nope`"), "{err}");
        assert_eq!(programs(&dir, &["zoo".to_owned()]).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse(&args(&[
            "--runs",
            "2",
            "fib",
            "--profile",
            "balanced",
            "zoo.lox",
        ]))
        .unwrap();
        assert_eq!((o.runs, o.profile.as_deref()), (2, Some("balanced")));
        assert_eq!(o.names, ["fib", "zoo"]);
        assert!(parse(&args(&["--fast"])).unwrap_err().contains("usage"));
        assert!(parse(&args(&["--profile"])).is_err());
    }
}
