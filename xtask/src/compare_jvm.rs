//! `cargo xtask compare-jvm [--depth N] [--runs K]`: the binary-trees
//! program on rtmem (`crates/rtmem/examples/binary_trees.rs`, profiles
//! `throughput` and `balanced`) against the same program on the JVM
//! (`benches/jvm/BinaryTrees.java`, with G1, Parallel and ZGC, `-Xmx1g`).
//!
//! Every contender runs K times, the runs interleaved so that a noisy
//! moment of the machine does not fall on one contender only. Each run is a
//! child process whose wall time and peak RSS are measured from outside;
//! the collections and pauses come from the program's own report on rtmem
//! (its `--json` line) and from the GC log on the JVM (`-Xlog:gc*`, kept in
//! `target/jvm/`). All contenders must print the same answer lines.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::measure::{Measurement, first_difference, measure, median, mib};
use crate::table::{Table, cell};
use crate::{cargo_build, gc_log, number_arg};

const USAGE: &str = "usage: cargo xtask compare-jvm [--depth N] [--runs K]";

/// The rtmem profiles compared.
const PROFILES: [&str; 2] = ["throughput", "balanced"];

/// The JVM collectors compared: name and option.
const JVM_GCS: [(&str, &str); 3] = [
    ("G1", "-XX:+UseG1GC"),
    ("Parallel", "-XX:+UseParallelGC"),
    ("ZGC", "-XX:+UseZGC"),
];

/// The JVM's heap limit, for every collector.
const JVM_HEAP: &str = "-Xmx1g";

/// Runs the comparison.
pub fn run(args: &[String]) -> Result<(), String> {
    let (depth, runs) = parse(args)?;
    let jvm_dir = crate::target_dir().join("jvm");
    compile_java(&jvm_dir)?;
    let example = cargo_build::build_release(
        &["-p", "rtmem", "--example", "binary_trees"],
        "binary_trees",
    )?;
    let mut contenders: Vec<Contender> = PROFILES
        .iter()
        .map(|&profile| Contender {
            name: format!("rtmem {profile}"),
            kind: Kind::Rtmem {
                example: example.clone(),
                profile,
            },
            runs: Vec::new(),
        })
        .chain(JVM_GCS.iter().map(|&(gc, option)| Contender {
            name: format!("JVM {gc}"),
            kind: Kind::Jvm {
                dir: jvm_dir.clone(),
                gc,
                option,
            },
            runs: Vec::new(),
        }))
        .collect();
    let mut reference: Option<(String, String)> = None;
    for run in 1..=runs {
        for contender in &mut contenders {
            eprintln!("run {run}/{runs}: {} (depth {depth})", contender.name);
            let (measurement, figures) = contender.kind.run_once(depth, run)?;
            let answer = answer(&measurement.stdout);
            if answer.is_empty() {
                return Err(format!("{} printed no answer lines", contender.name));
            }
            match &reference {
                None => reference = Some((contender.name.clone(), answer.to_owned())),
                Some((name, expected)) => {
                    if let Some(difference) = first_difference(expected, answer) {
                        return Err(format!(
                            "WRONG ANSWER: {} differs from {name} at {difference}\n\n{name}:\n{expected}\n{}:\n{answer}",
                            contender.name, contender.name
                        ));
                    }
                }
            }
            contender.runs.push(figures);
        }
    }
    let (_, answer) = reference.expect("at least one run");
    println!("binary-trees depth {depth}, {runs} run(s) each; every contender printed:\n{answer}");
    let summaries: Vec<Summary> = contenders.iter().map(Contender::summary).collect();
    println!("{}", table(&summaries));
    println!(
        "wall, peak RSS, collections and total pause: median of the runs; max pause and stalls: the worst run.\n\
         wall and RSS are of the whole process (JVM start-up included); JDK 17's ZGC maps its heap three times,\n\
         so its RSS counts heap pages up to three times. GC logs in {}\n",
        jvm_dir.display()
    );
    for line in target_lines(&summaries) {
        println!("{line}");
    }
    Ok(())
}

fn parse(args: &[String]) -> Result<(u32, u32), String> {
    let (mut depth, mut runs) = (20, 3);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--depth" => depth = number_arg("--depth", args.next(), 1..=30)?,
            "--runs" => runs = number_arg("--runs", args.next(), 1..=1000)?,
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok((depth, runs))
}

/// Compiles `benches/jvm/BinaryTrees.java` into `dir`.
fn compile_java(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let source = crate::workspace_root().join("benches/jvm/BinaryTrees.java");
    eprintln!("compiling {}", source.display());
    measure(Command::new("javac").arg("-d").arg(dir).arg(&source))
        .map_err(|e| format!("{e}\n(compare-jvm needs a JDK: `javac` and `java` on the PATH)"))?;
    Ok(())
}

/// The answer lines of a binary-trees run: its output up to the first empty
/// line, after which rtmem's example prints its report.
fn answer(stdout: &str) -> &str {
    let end = stdout.find("\n\n").map_or(stdout.len(), |i| i + 1);
    &stdout[..end]
}

/// One program and configuration under comparison, and its runs.
struct Contender {
    name: String,
    kind: Kind,
    runs: Vec<Figures>,
}

/// How a contender runs.
enum Kind {
    /// rtmem's example with a profile.
    Rtmem {
        example: PathBuf,
        profile: &'static str,
    },
    /// The Java program with a collector, classes and logs in `dir`.
    Jvm {
        dir: PathBuf,
        gc: &'static str,
        option: &'static str,
    },
}

/// The figures of one run.
#[derive(Clone, Debug, PartialEq)]
struct Figures {
    wall_s: f64,
    peak_rss: u64,
    collections: u64,
    pause_max_ms: f64,
    pause_total_ms: f64,
    /// JVM only.
    stall_max_ms: Option<f64>,
}

impl Kind {
    /// Runs the program once (the `run`th time) for `depth`.
    fn run_once(&self, depth: u32, run: u32) -> Result<(Measurement, Figures), String> {
        match self {
            Kind::Rtmem { example, profile } => {
                let m = measure(
                    Command::new(example)
                        .args(["--depth", &depth.to_string(), "--profile", profile])
                        .arg("--json"),
                )?;
                let figures = rtmem_figures(&m)
                    .map_err(|e| format!("binary_trees --profile {profile}: {e}"))?;
                Ok((m, figures))
            }
            Kind::Jvm { dir, gc, option } => {
                let log = dir.join(format!("{gc}-depth{depth}-run{run}.log"));
                // A log left by an earlier run must not be appended to or rotated.
                let _ = std::fs::remove_file(&log);
                let m = measure(
                    Command::new("java")
                        .args([option, JVM_HEAP])
                        .arg(format!("-Xlog:gc*:file=\"{}\"::filecount=0", log.display()))
                        .arg("-cp")
                        .arg(dir)
                        .args(["BinaryTrees", &depth.to_string()]),
                )?;
                let text = std::fs::read_to_string(&log)
                    .map_err(|e| format!("the GC log {}: {e}", log.display()))?;
                let gc = gc_log::parse(&text);
                let figures = Figures {
                    wall_s: m.wall.as_secs_f64(),
                    peak_rss: m.peak_rss,
                    collections: gc.collections,
                    pause_max_ms: gc.pause_max_ms,
                    pause_total_ms: gc.pause_total_ms,
                    stall_max_ms: Some(gc.stall_max_ms),
                };
                Ok((m, figures))
            }
        }
    }
}

/// The figures of a run of rtmem's example, whose last line is its JSON
/// report.
fn rtmem_figures(m: &Measurement) -> Result<Figures, String> {
    let last = m.stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(last)
        .map_err(|e| format!("the last line is not its JSON report ({e}): {last:?}"))?;
    let number = |key: &str| {
        json[key]
            .as_f64()
            .ok_or(format!("its JSON report has no number `{key}`: {last}"))
    };
    Ok(Figures {
        wall_s: m.wall.as_secs_f64(),
        peak_rss: m.peak_rss,
        collections: number("gc_count")? as u64,
        pause_max_ms: number("pause_max_ms")?,
        pause_total_ms: number("pause_total_ms")?,
        stall_max_ms: None,
    })
}

/// A contender's figures over its runs.
#[derive(Clone, Debug, PartialEq)]
struct Summary {
    name: String,
    wall_s: f64,
    rss_mib: f64,
    collections: f64,
    pause_max_ms: f64,
    pause_total_ms: f64,
    stall_max_ms: Option<f64>,
}

impl Contender {
    fn summary(&self) -> Summary {
        let median_of = |f: fn(&Figures) -> f64| median(self.runs.iter().map(f)).unwrap_or(0.0);
        let max_of = |f: fn(&Figures) -> f64| self.runs.iter().map(f).fold(0.0, f64::max);
        Summary {
            name: self.name.clone(),
            wall_s: median_of(|r| r.wall_s),
            rss_mib: median_of(|r| mib(r.peak_rss)),
            collections: median_of(|r| r.collections as f64),
            pause_max_ms: max_of(|r| r.pause_max_ms),
            pause_total_ms: median_of(|r| r.pause_total_ms),
            stall_max_ms: self
                .runs
                .iter()
                .filter_map(|r| r.stall_max_ms)
                .reduce(f64::max),
        }
    }
}

fn table(summaries: &[Summary]) -> Table {
    let mut table = Table::new(&[
        "implementation",
        "wall s",
        "peak RSS MiB",
        "collections",
        "max pause ms",
        "total pause ms",
        "alloc stalls max ms",
    ]);
    for s in summaries {
        table.row(vec![
            s.name.clone(),
            cell(Some(s.wall_s), 3),
            cell(Some(s.rss_mib), 1),
            cell(Some(s.collections), 0),
            cell(Some(s.pause_max_ms), 3),
            cell(Some(s.pause_total_ms), 1),
            cell(s.stall_max_ms, 3),
        ]);
    }
    table
}

/// The ratios rtmem's targets are stated in, one line each.
fn target_lines(summaries: &[Summary]) -> Vec<String> {
    let find = |name: &str| {
        summaries
            .iter()
            .find(|s| s.name == name)
            .expect("every contender has a summary")
    };
    let line = |what: &str, value: f64, unit: &str, target: f64| {
        let verdict = if value <= target { "met" } else { "MISSED" };
        format!("{what} = {value:.2}{unit} (target <= {target:?}{unit}): {verdict}")
    };
    let (throughput, balanced) = (find("rtmem throughput"), find("rtmem balanced"));
    let (g1, parallel) = (find("JVM G1"), find("JVM Parallel"));
    vec![
        line(
            "throughput/parallel wall",
            throughput.wall_s / parallel.wall_s,
            "",
            1.0,
        ),
        line("balanced max pause", balanced.pause_max_ms, " ms", 5.0),
        line(
            "throughput peak RSS / G1 peak RSS",
            throughput.rss_mib / g1.rss_mib,
            "",
            0.5,
        ),
        line(
            "balanced peak RSS / G1 peak RSS",
            balanced.rss_mib / g1.rss_mib,
            "",
            0.5,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(wall_s: f64, pause_max_ms: f64, stall: Option<f64>) -> Figures {
        Figures {
            wall_s,
            peak_rss: 100 << 20,
            collections: 4,
            pause_max_ms,
            pause_total_ms: pause_max_ms * 2.0,
            stall_max_ms: stall,
        }
    }

    #[test]
    fn answer_is_the_output_before_the_report() {
        let ours = "stretch tree of depth 7\t check: 255\nlong lived tree of depth 6\t check: 127\n\nprofile balanced\n{\"wall_ms\":1}\n";
        let java =
            "stretch tree of depth 7\t check: 255\nlong lived tree of depth 6\t check: 127\n";
        assert_eq!(answer(ours), java);
        assert_eq!(answer(java), java);
        assert_eq!(answer(""), "");
    }

    #[test]
    fn rtmem_figures_come_from_the_json_line() {
        let m = Measurement {
            stdout: "answer\n\nreport\n{\"gc_count\":12,\"pause_max_ms\":3.5,\"pause_total_ms\":20.25,\"wall_ms\":900}\n".into(),
            wall: std::time::Duration::from_millis(1500),
            peak_rss: 64 << 20,
        };
        let f = rtmem_figures(&m).unwrap();
        assert_eq!(
            f,
            Figures {
                wall_s: 1.5,
                peak_rss: 64 << 20,
                collections: 12,
                pause_max_ms: 3.5,
                pause_total_ms: 20.25,
                stall_max_ms: None,
            }
        );
        let bad = Measurement {
            stdout: "answer\n{\"gc_count\":1}\n".into(),
            ..m
        };
        assert!(rtmem_figures(&bad).unwrap_err().contains("pause_max_ms"));
    }

    #[test]
    fn summaries_take_medians_and_the_worst_pause() {
        let c = Contender {
            name: "JVM ZGC".into(),
            kind: Kind::Rtmem {
                example: PathBuf::new(),
                profile: "x",
            },
            runs: vec![
                figures(3.0, 1.0, Some(0.0)),
                figures(1.0, 9.0, Some(40.0)),
                figures(2.0, 2.0, Some(5.0)),
            ],
        };
        let s = c.summary();
        assert_eq!((s.wall_s, s.rss_mib, s.collections), (2.0, 100.0, 4.0));
        assert_eq!(s.pause_max_ms, 9.0, "the worst run");
        assert_eq!(s.pause_total_ms, 4.0, "the median run");
        assert_eq!(s.stall_max_ms, Some(40.0));
        let text = table(&[s]).to_string();
        let row = text.lines().nth(2).unwrap();
        assert!(row.starts_with("JVM ZGC "), "{text}");
        assert!(row.contains("|  2.000 |        100.0 |"), "{text}");
        assert!(text.trim_end().ends_with("40.000"), "{text}");
    }

    #[test]
    fn target_lines_compare_the_right_contenders() {
        let summary = |name: &str, wall_s, rss_mib, pause_max_ms| Summary {
            name: name.into(),
            wall_s,
            rss_mib,
            collections: 1.0,
            pause_max_ms,
            pause_total_ms: 1.0,
            stall_max_ms: None,
        };
        let lines = target_lines(&[
            summary("rtmem throughput", 1.8, 40.0, 30.0),
            summary("rtmem balanced", 2.5, 60.0, 4.0),
            summary("JVM G1", 1.0, 100.0, 10.0),
            summary("JVM Parallel", 2.0, 90.0, 20.0),
            summary("JVM ZGC", 3.0, 300.0, 0.1),
        ]);
        assert_eq!(
            lines,
            [
                "throughput/parallel wall = 0.90 (target <= 1.0): met",
                "balanced max pause = 4.00 ms (target <= 5.0 ms): met",
                "throughput peak RSS / G1 peak RSS = 0.40 (target <= 0.5): met",
                "balanced peak RSS / G1 peak RSS = 0.60 (target <= 0.5): MISSED",
            ]
        );
    }

    #[test]
    fn arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse(&args(&[])), Ok((20, 3)));
        assert_eq!(parse(&args(&["--runs", "1", "--depth", "12"])), Ok((12, 1)));
        assert!(parse(&args(&["--depth", "99"])).is_err());
        assert!(parse(&args(&["12"])).unwrap_err().contains("usage"));
    }
}
