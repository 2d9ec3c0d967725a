//! The debug log of commands run on nodes (`MIRRORPLAN_LOG=debug`): one
//! event per command, under the target `mirrorplan_node::command`, with
//! the node, what ran (the name of one of mirrorplan's fixed scripts, or
//! the program's name), the bytes fed on stdin, the exit status and the
//! duration.
//!
//! Neither the command line nor stdin is logged: stdin carries file
//! contents (credentials among them), and a configured command (such as
//! `restart_command`) may hold a sensitive value; only the program's name
//! is shown.

use std::fmt::Display;
use std::time::Duration;

use crate::transport::Output;

/// The target of the command events.
pub(crate) const TARGET: &str = "mirrorplan_node::command";

/// The name a program is logged under: the last part of `argv0`, or
/// `(command)` when it is not a plain name (an assignment, a path with
/// spaces).
pub(crate) fn program(argv0: &str) -> String {
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    if name.is_empty() || name.contains('=') || name.contains(char::is_whitespace) {
        "(command)".to_string()
    } else {
        name.to_string()
    }
}

/// One command that ran (or could not run) on `node`.
pub(crate) fn finished<E: Display>(
    node: &str,
    what: &str,
    stdin: usize,
    result: std::result::Result<&Output, &E>,
    took: Duration,
) {
    match result {
        Ok(out) => tracing::debug!(
            target: TARGET,
            node = %node,
            command = %what,
            stdin,
            exit = %out.status.map_or_else(|| "signal".to_string(), |s| s.to_string()),
            stdout = out.stdout.len(),
            stderr = out.stderr.len(),
            ms = took.as_millis() as u64,
            "command"
        ),
        Err(e) => tracing::debug!(
            target: TARGET,
            node = %node,
            command = %what,
            stdin,
            error = %e,
            ms = took.as_millis() as u64,
            "command failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_program_name_is_shown() {
        assert_eq!(program("/usr/bin/systemctl"), "systemctl");
        assert_eq!(program("TOKEN=abc"), "(command)");
        assert_eq!(program("a b"), "(command)");
    }
}
