//! Runs every program under `tests/corpus/` and checks it against the
//! expectations written in its comments (the book's test-suite format, see
//! `tests/corpus/README.md`): in-process under the default profile and
//! under a verifying stress profile for every collector this version
//! builds, and a few through the real binary (exit codes, usage, REPL).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rtmem::{GcKind, Profile};
use rtmem_base::SpaceType;
use rtmem_lox::{Lox, Status};

/// What a corpus program must do, from its comments.
#[derive(Debug, Default)]
struct Expected {
    stdout: Vec<String>,
    compile_errors: Vec<String>,
    /// The message and the line of the innermost frame.
    runtime_error: Option<(String, usize)>,
}

impl Expected {
    fn exit_code(&self) -> u8 {
        if !self.compile_errors.is_empty() {
            65
        } else if self.runtime_error.is_some() {
            70
        } else {
            0
        }
    }
}

/// The expectations of a program; `None` for a `// nontest` file.
fn parse(source: &str) -> Option<Expected> {
    let mut e = Expected::default();
    for (i, line) in source.lines().enumerate() {
        let number = i + 1;
        if line.contains("// nontest") {
            return None;
        }
        if let Some((_, text)) = line.split_once("// expect:") {
            e.stdout
                .push(text.strip_prefix(' ').unwrap_or(text).to_owned());
        } else if let Some((_, message)) = line.split_once("// expect runtime error: ") {
            e.runtime_error = Some((message.to_owned(), number));
        } else if let Some((_, error)) = line.split_once("// Error") {
            e.compile_errors
                .push(format!("[line {number}] Error{error}"));
        } else if let Some((_, rest)) = line.split_once("// [") {
            // `[line N] Error...`, `[c line N] Error...`; `[java line N]` is jlox's.
            if let Some(rest) = rest.strip_prefix("c ").or(Some(rest))
                && rest.starts_with("line ")
                && !rest.starts_with("java")
            {
                e.compile_errors.push(format!("[{rest}"));
            }
        }
    }
    Some(e)
}

/// How a run went.
struct Run {
    stdout: String,
    stderr: String,
    status: Status,
    /// Objects allocated in the managed spaces.
    objects: u64,
}

fn run(source: &str, profile: Profile) -> Run {
    let mut lox = Lox::new(profile, Vec::new(), Vec::new()).expect("the profile is built");
    let status = lox.interpret(source.as_bytes());
    let snapshot = lox.memory_manager().snapshot();
    let objects = SpaceType::MANAGED
        .iter()
        .map(|&s| snapshot.space(s).objects_allocated)
        .sum();
    let (out, err) = lox.into_writers();
    Run {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        status,
        objects,
    }
}

/// Why `run` does not meet `e`, if it does not.
fn check(e: &Expected, run: &Run) -> Result<(), String> {
    let out: Vec<&str> = run.stdout.lines().collect();
    let err: Vec<&str> = run.stderr.lines().collect();
    let want_status = match e.exit_code() {
        65 => Status::CompileError,
        70 => Status::RuntimeError,
        _ => Status::Ok,
    };
    if run.status != want_status {
        return Err(format!(
            "status {:?}, expected {want_status:?}\nstderr:\n{}",
            run.status, run.stderr
        ));
    }
    if !e.compile_errors.is_empty() {
        let mut got: Vec<&str> = err.clone();
        let mut want: Vec<&str> = e.compile_errors.iter().map(String::as_str).collect();
        got.sort_unstable();
        want.sort_unstable();
        if got != want {
            return Err(format!("compile errors {got:#?}, expected {want:#?}"));
        }
        if !out.is_empty() {
            return Err(format!("stdout {out:?} after compile errors"));
        }
        return Ok(());
    }
    if out != e.stdout {
        return Err(format!("stdout {out:#?}, expected {:#?}", e.stdout));
    }
    match &e.runtime_error {
        Some((message, line)) => {
            if err.first() != Some(&message.as_str()) {
                return Err(format!("stderr {err:?}, expected {message:?} first"));
            }
            let trace = format!("[line {line}]");
            if !err.get(1).is_some_and(|l| l.starts_with(&trace)) {
                return Err(format!("stack trace {err:?} does not start with {trace}"));
            }
        }
        None if !err.is_empty() => return Err(format!("unexpected stderr {err:?}")),
        None => {}
    }
    Ok(())
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every `.lox` file under `dir`, sorted.
fn lox_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "lox") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The corpus programs with their sources and expectations.
fn corpus() -> Vec<(PathBuf, String, Expected)> {
    let files = lox_files(&corpus_dir());
    assert!(!files.is_empty(), "no corpus files");
    files
        .into_iter()
        .filter_map(|path| {
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let expected = parse(&source)?;
            Some((path, source, expected))
        })
        .collect()
}

/// A profile that collects every `every` allocations with the collector
/// `gc`, verifying the heap before and after each collection.
fn stress(gc: GcKind, every: u64) -> Profile {
    Profile {
        name: format!("stress-{gc}"),
        gc,
        verify: true,
        stress_every: every,
        ..Profile::default()
    }
}

/// Runs `f` on every program, on two threads; panics listing the failures.
fn for_each_program(f: impl Fn(&str, &Expected) -> Result<(), String> + Sync) {
    let programs = corpus();
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((path, source, expected)) = programs.get(i) else {
                        break;
                    };
                    if let Err(why) = f(source, expected) {
                        let name = path.strip_prefix(corpus_dir()).unwrap_or(path);
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {why}", name.display()));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let mut report = String::new();
    for failure in &failures {
        writeln!(report, "{failure}\n").unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus programs failed:\n{report}",
        failures.len(),
        programs.len()
    );
}

#[test]
fn corpus_passes_under_the_default_profile() {
    for_each_program(|source, expected| check(expected, &run(source, Profile::default())));
}

/// Under every collector (but epsilon) with a collection every few
/// allocations and the verifier on: about 50 collections per program.
#[test]
fn corpus_passes_under_stress_collection() {
    for_each_program(|source, expected| {
        let objects = run(source, Profile::default()).objects;
        let every = (objects / 50).max(5);
        for &gc in GcKind::ALL.iter().filter(|&&k| k != GcKind::Epsilon) {
            check(expected, &run(source, stress(gc, every)))
                .map_err(|why| format!("under {gc} (stress_every = {every}): {why}"))?;
        }
        Ok(())
    });
}

#[test]
fn corpus_expectations_parse() {
    let e = parse(
        "print 1; // expect: 1\n\
         a; // Error at 'a': Bad.\n\
         // [line 7] Error: Unexpected character.\n\
         // [c line 8] Error at end: Oops.\n\
         // [java line 9] Error: jlox only.\n\
         nil(); // expect runtime error: Can only call functions and classes.\n",
    )
    .unwrap();
    assert_eq!(e.stdout, ["1"]);
    assert_eq!(
        e.compile_errors,
        [
            "[line 2] Error at 'a': Bad.",
            "[line 7] Error: Unexpected character.",
            "[line 8] Error at end: Oops."
        ]
    );
    assert_eq!(
        e.runtime_error,
        Some(("Can only call functions and classes.".into(), 6))
    );
    assert_eq!(e.exit_code(), 65);
    assert!(parse("// nontest\n").is_none());
}

// ---- the binary ------------------------------------------------------------

fn lox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lox"));
    c.env_remove("RTMEM_PROFILE");
    c
}

/// Runs the binary on `args` with `stdin`; returns (exit code, stdout, stderr).
fn run_binary(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = lox()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lox binary runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("stdin takes the input");
    let out = child.wait_with_output().expect("the binary exits");
    (
        out.status.code().expect("exited normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A program of each outcome through the binary: the exit code and output
/// are as the corpus expects.
#[test]
fn binary_exit_codes_match_the_corpus() {
    let mut seen = [false; 3];
    for (path, source, expected) in corpus() {
        let kind = match expected.exit_code() {
            0 => 0,
            65 => 1,
            _ => 2,
        };
        if seen[kind] || source.len() > 4096 {
            continue;
        }
        seen[kind] = true;
        let (code, stdout, stderr) = run_binary(&[path.to_str().expect("UTF-8 path")], "");
        assert_eq!(code, i32::from(expected.exit_code()), "{}", path.display());
        let run = Run {
            stdout,
            stderr,
            status: match code {
                0 => Status::Ok,
                65 => Status::CompileError,
                _ => Status::RuntimeError,
            },
            objects: 0,
        };
        check(&expected, &run).unwrap_or_else(|why| panic!("{}: {why}", path.display()));
    }
    assert_eq!(seen, [true; 3], "the corpus has programs of every outcome");
}

#[test]
fn binary_usage_and_unreadable_files() {
    let (code, out, err) = run_binary(&["a.lox", "b.lox"], "");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (64, "", "Usage: clox [path]\n")
    );
    let (code, _, err) = run_binary(&["/no/such/file.lox"], "");
    assert_eq!(
        (code, err.as_str()),
        (74, "Could not open file \"/no/such/file.lox\".\n")
    );
    let (code, _, err) = run_binary(&["--profile", "no-such-profile", "x.lox"], "");
    assert_eq!(code, 64);
    assert!(err.contains("no-such-profile"), "{err}");
}

#[test]
fn binary_repl_keeps_globals_between_lines() {
    let (code, out, err) = run_binary(&[], "var a = 1;\nprint a + 1;\nprint b;\nprint a;\n");
    assert_eq!(code, 0);
    assert_eq!(out, "> > 2\n> > 1\n> \n");
    assert_eq!(err, "Undefined variable 'b'.\n[line 1] in script\n");
}

#[test]
fn binary_prints_gc_stats_with_a_named_profile() {
    let dir = corpus_dir().join("smoke");
    let file = lox_files(&dir).into_iter().next().expect("a smoke program");
    let (code, _, err) = run_binary(
        &[
            "--profile",
            "small-footprint",
            "--gc-stats",
            file.to_str().expect("UTF-8 path"),
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("profile: small-footprint"), "{err}");
    assert!(err.contains("runtime-internal"), "{err}");
}
