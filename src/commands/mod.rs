//! One module per command; each parses nothing, loads what it needs and
//! returns an exit code or an error report.

mod config;
mod fmt;

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, Command, Shell};
use crate::output::Output;

/// Runs the chosen command.
pub fn run(cli: Cli, out: &Output) -> miette::Result<ExitCode> {
    let dir = cli
        .dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    match cli.command {
        Command::Validate { json } => config::validate(&dir, json, out),
        Command::Graph { vars } => config::graph(&dir, &vars, out),
        Command::Fmt { check, diff, files } => fmt::run(&dir, check, diff, &files),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut cmd, "mirrorplan", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
