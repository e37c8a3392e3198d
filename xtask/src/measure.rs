//! Running a benchmark program as a child process and measuring it: its
//! wall time and its peak resident set size, from the `rusage` that
//! `wait4(2)` returns for that one child; the median of several runs; and
//! where its output differs from the expected one. Shared by `compare-jvm`
//! and `lox-bench`.

use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What one run of a program printed and cost.
#[derive(Debug)]
pub struct Measurement {
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// From just before it was started until it was reaped.
    pub wall: Duration,
    /// Its peak resident set size (`ru_maxrss`), in bytes.
    pub peak_rss: u64,
}

/// Runs `command` to completion with stdout and stderr captured, measuring
/// its wall time and peak RSS.
///
/// # Errors
/// If it cannot be started, or exits unsuccessfully (the message has the
/// command line, the exit status and the end of its stderr).
pub fn measure(command: &mut Command) -> Result<Measurement, String> {
    let line = command_line(command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;
    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    // Both pipes are drained while the child runs, so that it never blocks on
    // a full pipe; the child is reaped here, by wait4, to get its own rusage.
    let (waited, stdout, stderr) = std::thread::scope(|s| {
        let out = s.spawn(move || read_all(&mut stdout_pipe));
        let err = s.spawn(move || read_all(&mut stderr_pipe));
        let waited = wait_with_rusage(&child);
        let wall = start.elapsed();
        if waited.is_err() {
            // Still running, perhaps: stop it so that its pipes close.
            let _ = child.kill();
        }
        (
            waited.map(|(status, rss)| (status, rss, wall)),
            out.join().expect("stdout reader"),
            err.join().expect("stderr reader"),
        )
    });
    let (status, peak_rss, wall) = waited.map_err(|e| format!("waiting for `{line}`: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`{line}` failed ({status}); the end of its stderr:\n{}",
            tail(&stderr, 20)
        ));
    }
    Ok(Measurement {
        stdout,
        wall,
        peak_rss,
    })
}

/// The median of `values` (the mean of the middle two for an even count), or
/// `None` if there are none.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Where `actual` output differs from `expected`, as a message naming the
/// first differing line, or `None` if they are the same.
pub fn first_difference(expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let (mut e, mut a) = (expected.lines(), actual.lines());
    let mut number = 0;
    loop {
        number += 1;
        match (e.next(), a.next()) {
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return Some("the same lines, different line endings".to_owned()),
            (x, y) => {
                let show =
                    |l: Option<&str>| l.map_or("(end of output)".to_owned(), |l| format!("{l:?}"));
                return Some(format!(
                    "line {number}: expected {}, got {}",
                    show(x),
                    show(y)
                ));
            }
        }
    }
}

/// `bytes` in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The program and its arguments, as a shell would show them.
pub fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Everything a pipe delivers until it closes, lossily decoded as UTF-8.
fn read_all(pipe: &mut impl Read) -> String {
    let mut bytes = Vec::new();
    // A read error only shortens the output, which the callers then check.
    let _ = pipe.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `ru_maxrss` is in KiB on Linux (bytes on macOS).
#[cfg(target_os = "macos")]
const MAXRSS_UNIT: u64 = 1;
#[cfg(not(target_os = "macos"))]
const MAXRSS_UNIT: u64 = 1024;

/// Reaps `child` with `wait4`, returning its exit status and peak RSS in
/// bytes. `std`'s own `wait` would reap it without its resource usage.
fn wait_with_rusage(child: &Child) -> io::Result<(ExitStatus, u64)> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a C struct of integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is a child of this process that nothing else reaps
        // (its `Child` is never waited on); `status` and `usage` are live
        // locals of the types wait4 writes.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    let peak = u64::try_from(usage.ru_maxrss).unwrap_or(0) * MAXRSS_UNIT;
    Ok((ExitStatus::from_raw(status), peak))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([7.5]), Some(7.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn measures_output_time_and_memory_of_a_child() {
        // The shell allocates a 32 MiB string: its peak RSS must show it.
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            "x=$(head -c 33554432 /dev/zero | tr '\\0' a); echo ${#x}; sleep 0.05",
        ]);
        let m = measure(&mut sh).unwrap();
        assert_eq!(m.stdout.trim(), "33554432");
        assert!(m.wall >= Duration::from_millis(50), "{:?}", m.wall);
        assert!(m.peak_rss >= 32 << 20, "peak RSS {} bytes", m.peak_rss);
    }

    #[test]
    fn a_failing_child_is_an_error_with_its_stderr() {
        let mut sh = Command::new("sh");
        sh.args(["-c", "echo out; echo 'it broke' >&2; exit 3"]);
        let err = measure(&mut sh).unwrap_err();
        assert!(
            err.contains("it broke") && err.contains('3') && err.contains("sh -c"),
            "{err}"
        );
        let err = measure(&mut Command::new("/nonexistent/program")).unwrap_err();
        assert!(err.contains("cannot start `/nonexistent/program`"), "{err}");
    }

    #[test]
    fn first_difference_names_the_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(
            first_difference("a\nb\n", "a\nc\n").unwrap(),
            r#"line 2: expected "b", got "c""#
        );
        assert_eq!(
            first_difference("a\nb\n", "a\n").unwrap(),
            r#"line 2: expected "b", got (end of output)"#
        );
        assert!(first_difference("a\n", "a\r\n").is_some());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(mib(3 << 20), 3.0);
    }
}
