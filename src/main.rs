//! The `mirrorplan` binary: argument parsing, the tokio runtime, rendering and
//! exit codes. The only place that prints or chooses an exit code.

mod cli;
mod commands;
mod expand;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
