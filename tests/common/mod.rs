//! Helpers shared by the binary's end-to-end tests: running `mirrorplan`
//! with no colour and no standard input, checking exit codes, reading the
//! output.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The `mirrorplan` binary under test, with `NO_COLOR` and no standard input.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1");
    c.stdin(Stdio::null());
    c
}

/// Runs `mirrorplan -C DIR ARGS...`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    match bin().arg("-C").arg(dir).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run mirrorplan: {e}"),
    }
}

/// Bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and asserts the exit code, showing both streams on failure.
pub fn run_ok(dir: &Path, args: &[&str], code: i32) -> Output {
    let o = run(dir, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "mirrorplan {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

/// The diagnostic text with any line wrapping undone, so that ids read whole.
pub fn unwrapped(stderr: &str) -> String {
    let mut out = String::new();
    for line in stderr.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix('|').unwrap_or(line).trim();
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() && !out.ends_with('-') {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}
