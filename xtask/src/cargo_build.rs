//! Building a program of this workspace with cargo and finding its
//! executable, wherever the target directory is (`CARGO_TARGET_DIR` and
//! friends are honoured because cargo itself reports the path).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::measure::tail;

/// Runs `cargo build --release <args>` in the workspace and returns the path
/// of the executable of the target named `target`.
///
/// # Errors
/// If cargo fails (the message has the command and the end of its
/// diagnostics) or builds no executable of that name.
pub fn build_release(args: &[&str], target: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let shown = format!("cargo build --release {}", args.join(" "));
    eprintln!("building: {shown}");
    let output = Command::new(cargo)
        .current_dir(crate::workspace_root())
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{shown}` failed ({}); the end of its output:\n{}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 30)
        ));
    }
    executable(&String::from_utf8_lossy(&output.stdout), target)
        .ok_or_else(|| format!("`{shown}` built no executable named `{target}`"))
}

/// The executable of the target named `target` among cargo's JSON messages.
fn executable(messages: &str, target: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == target)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_of_the_named_target() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"rtmem"},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"lox"},"executable":"/t/release/lox"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            executable(&messages, "lox"),
            Some(PathBuf::from("/t/release/lox"))
        );
        assert_eq!(executable(&messages, "rtmem"), None);
        assert_eq!(executable("not json", "lox"), None);
    }
}
