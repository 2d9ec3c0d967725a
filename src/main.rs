//! The `mirrorplan` binary: argument parsing, the tokio runtime, rendering and
//! exit codes. The only place that prints or chooses an exit code.
//!
//! Exit codes scripts can trust: 0 success (or no changes), 2 only for
//! "changes present" under `--detailed-exitcode`, 1 for every error,
//! command-line usage errors included.

mod cli;
mod commands;
mod expand;
mod lifecycle;
mod logging;
mod moves;
mod output;
mod ownership;
mod signals;

use std::process::ExitCode;

fn main() -> ExitCode {
    output::quiet_on_closed_pipe();
    // a closed stdout (`mirrorplan show | head -1`) ends the output quietly:
    // the write panics, the panic unwinds (dropping the state lock and
    // connections) and is caught here
    match std::panic::catch_unwind(run) {
        Ok(code) => code,
        Err(payload) if output::is_closed_pipe(payload.as_ref()) => ExitCode::SUCCESS,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

fn run() -> ExitCode {
    let args = cli::terraform_style_args(std::env::args_os());
    let mut cli = match cli::parse(&args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // before any lock is taken: no signal may leave one behind
    signals::install();
    // `-C DIR` runs "as if started in DIR": relative paths on the command line
    // (plan files, --state, --var-file) are relative to DIR, as with `tofu -chdir`.
    if let Some(dir) = cli.dir.take() {
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        if dir.is_dir() && std::env::set_current_dir(&dir).is_err() {
            eprintln!("mirrorplan: cannot change to {}", dir.display());
            return ExitCode::from(1);
        }
        cli.dir = Some(dir);
    }
    let out = output::Output::new(cli.no_color).with_json(cli.wants_json());
    out.install_miette_hook();
    if let Err(e) = logging::install(cli.log_level.as_deref(), cli.log_file.as_deref()) {
        out.report(&miette::Report::new(e));
        return ExitCode::from(1);
    }
    match commands::run(cli, &out) {
        Ok(code) => code,
        Err(report) => {
            out.report(&report);
            ExitCode::from(1)
        }
    }
}
