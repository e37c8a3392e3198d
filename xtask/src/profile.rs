//! `cargo xtask profile list | show NAME | check FILE | select NAME`.
//!
//! The selected profile of this workspace is the `RTMEM_PROFILE` entry of the
//! `[env]` table in `.cargo/config.toml`: cargo sets it for every program it
//! runs here (`cargo xtask demo`, `cargo run`, tests), unless the variable is
//! already set in the environment, which wins.

use std::path::PathBuf;

use rtmem::{PROFILE_ENV, Profile};

const USAGE: &str =
    "usage: cargo xtask profile <list | show NAME|FILE | check FILE | select NAME|FILE>";

/// Runs a `profile` subcommand.
pub fn run(args: &[String]) -> Result<(), String> {
    match (args.first().map(String::as_str), args.get(1), args.len()) {
        (Some("list"), None, 1) => {
            list();
            Ok(())
        }
        (Some("show"), Some(name), 2) => {
            let p = Profile::from_name_or_path(name).map_err(|e| e.to_string())?;
            print!("{}", p.to_toml());
            Ok(())
        }
        (Some("check"), Some(file), 2) => {
            let p = Profile::from_file(file).map_err(|e| e.to_string())?;
            println!(
                "{file}: ok (profile `{}`, gc {}, object heap up to {})",
                p.name,
                p.gc,
                rtmem::format_size(p.space(rtmem_base::SpaceType::Object).max)
            );
            Ok(())
        }
        (Some("select"), Some(name), 2) => select(name),
        _ => Err(USAGE.to_owned()),
    }
}

fn list() {
    let selected = selected();
    for (name, description) in Profile::builtin() {
        let mark = if selected.as_deref() == Some(name) {
            "*"
        } else {
            " "
        };
        println!("{mark} {name:<16} {description}");
    }
    match selected {
        Some(s) if Profile::builtin().iter().all(|(n, _)| *n != s) => println!("* {s} (a file)"),
        Some(_) => {}
        None => println!("(none selected: programs use `{}`)", rtmem::DEFAULT_PROFILE),
    }
}

fn config_path() -> PathBuf {
    crate::workspace_root().join(".cargo").join("config.toml")
}

/// The profile selected in `.cargo/config.toml`, if any.
fn selected() -> Option<String> {
    let text = std::fs::read_to_string(config_path()).ok()?;
    selected_in(&text)
}

fn selected_in(config: &str) -> Option<String> {
    let table: toml::Table = config.parse().ok()?;
    match table.get("env")?.get(PROFILE_ENV)? {
        toml::Value::String(s) => Some(s.clone()),
        v => v.get("value")?.as_str().map(str::to_owned),
    }
}

fn select(name: &str) -> Result<(), String> {
    // A path is stored absolute so that programs started from any directory agree.
    let value = if name.contains('/') || name.ends_with(".toml") {
        std::path::absolute(name)
            .map_err(|e| format!("{name}: {e}"))?
            .display()
            .to_string()
    } else {
        name.to_owned()
    };
    let profile = Profile::from_name_or_path(&value).map_err(|e| e.to_string())?;
    let path = config_path();
    let config = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, with_selection(&config, &value))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "selected profile `{}` ({}): `cargo xtask demo` and programs run with cargo in this workspace now use it \
         ({PROFILE_ENV} in .cargo/config.toml; an {PROFILE_ENV} set in the environment still takes precedence)",
        profile.name, profile.description
    );
    Ok(())
}

/// `config` with its `[env]` table's `RTMEM_PROFILE` set to `value`, every
/// other line kept as it is.
fn with_selection(config: &str, value: &str) -> String {
    let entry = format!("{PROFILE_ENV} = {{ value = {value:?}, force = false }}");
    let mut out = Vec::new();
    let mut in_env = false;
    let mut done = false;
    for line in config.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if in_env && !done {
                out.push(entry.clone());
                done = true;
            }
            in_env = trimmed == "[env]";
        }
        if in_env && trimmed.starts_with(PROFILE_ENV) {
            if !done {
                out.push(entry.clone());
                done = true;
            }
            continue;
        }
        out.push(line.to_owned());
    }
    if !done {
        if !in_env {
            if out.last().is_some_and(|l| !l.is_empty()) {
                out.push(String::new());
            }
            out.push("[env]".to_owned());
        }
        out.push(entry);
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_written_into_the_env_table() {
        let base = "[alias]\nxtask = \"run --package xtask --\"\n";
        let once = with_selection(base, "throughput");
        assert_eq!(selected_in(&once).as_deref(), Some("throughput"));
        assert!(once.starts_with(base), "other lines are kept: {once}");
        let twice = with_selection(&once, "epsilon");
        assert_eq!(selected_in(&twice).as_deref(), Some("epsilon"));
        assert_eq!(twice.matches(PROFILE_ENV).count(), 1, "{twice}");
        // An [env] table followed by another table keeps both.
        let mixed = "[env]\nOTHER = \"1\"\n[alias]\nx = \"y\"\n";
        let sel = with_selection(mixed, "balanced");
        let table: toml::Table = sel.parse().unwrap();
        assert_eq!(table["env"]["OTHER"].as_str(), Some("1"));
        assert_eq!(table["alias"]["x"].as_str(), Some("y"));
        assert_eq!(selected_in(&sel).as_deref(), Some("balanced"));
    }

    #[test]
    fn the_workspace_config_parses_and_names_a_valid_profile() {
        let text = std::fs::read_to_string(config_path()).unwrap();
        if let Some(name) = selected_in(&text) {
            Profile::from_name_or_path(&name).unwrap();
        }
    }

    #[test]
    fn bad_commands_and_files_are_errors() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(run(&args(&[])).unwrap_err().starts_with("usage"));
        assert!(run(&args(&["show"])).unwrap_err().starts_with("usage"));
        let err = run(&args(&["show", "nonesuch"])).unwrap_err();
        assert!(err.contains("known profiles"), "{err}");
        let dir = std::env::temp_dir().join(format!("xtask-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "gc_workers = 0\n").unwrap();
        let err = run(&args(&["check", bad.to_str().unwrap()])).unwrap_err();
        assert!(
            err.contains("bad.toml") && err.contains("`gc_workers` = 0"),
            "{err}"
        );
        let good = dir.join("good.toml");
        std::fs::write(&good, "inherits = \"epsilon\"\n").unwrap();
        run(&args(&["check", good.to_str().unwrap()])).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
