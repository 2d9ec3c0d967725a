//! The `mirrorplan` binary: argument parsing, the tokio runtime, rendering and
//! exit codes. The only place that prints or chooses an exit code.

mod cli;
mod commands;
mod expand;
mod output;
mod signals;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut cli = cli::Cli::parse();
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
    let out = output::Output::new(cli.no_color);
    out.install_miette_hook();
    match commands::run(cli, &out) {
        Ok(code) => code,
        Err(report) => {
            out.report(&report);
            ExitCode::from(1)
        }
    }
}
