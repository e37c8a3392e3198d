//! `lox [--profile NAME|FILE] [--gc-stats] [path]`: clox's command line —
//! run a script, or a REPL without a path — on rtmem.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use rtmem::Profile;
use rtmem_lox::{Lox, Status};

const USAGE: &str = "Usage: clox [path]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut profile_arg = None;
    let mut gc_stats = false;
    let mut path = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--profile" => match args.next() {
                Some(value) => profile_arg = Some(value),
                None => return usage(),
            },
            "--gc-stats" => gc_stats = true,
            _ if arg.starts_with("--profile=") => {
                profile_arg = Some(arg["--profile=".len()..].to_owned());
            }
            _ if path.is_none() && !arg.starts_with("--") => path = Some(arg),
            _ => return usage(),
        }
    }
    let profile = match profile_arg {
        Some(name) => Profile::from_name_or_path(&name),
        None => Profile::from_env(),
    };
    let profile = match profile {
        Ok(profile) => profile,
        Err(e) => {
            eprintln!("lox: bad memory profile: {e}");
            return ExitCode::from(64);
        }
    };
    let mut lox = match Lox::new(profile, std::io::stdout().lock(), std::io::stderr()) {
        Ok(lox) => lox,
        Err(e) => {
            eprintln!("lox: {e}");
            return ExitCode::from(64);
        }
    };
    let code = match path {
        Some(path) => match std::fs::read(&path) {
            Ok(source) => lox.interpret(&source).exit_code(),
            Err(_) => {
                eprintln!("Could not open file \"{path}\".");
                74
            }
        },
        None => repl(&mut lox),
    };
    let _ = lox.flush();
    if gc_stats {
        eprintln!("{}", lox.memory_manager().report());
    }
    ExitCode::from(code)
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(64)
}

/// Reads and runs one line at a time until end of input.
fn repl<O: Write, E: Write>(lox: &mut Lox<O, E>) -> u8 {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        let _ = lox.output().write_all(b"> ");
        let _ = lox.flush();
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                let _ = lox.output().write_all(b"\n");
                return Status::Ok.exit_code();
            }
            Ok(_) => {
                lox.interpret(&line);
            }
        }
    }
}
