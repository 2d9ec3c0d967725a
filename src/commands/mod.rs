//! One module per command; each parses nothing, loads what it needs and
//! returns an exit code or an error report.

pub mod backend;
pub mod config;
mod fmt;
pub mod run;
mod state;
mod verify;

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, Command, Shell, StateCommand};
use crate::output::Output;

/// Runs the chosen command.
pub fn run(cli: Cli, out: &Output) -> miette::Result<ExitCode> {
    let dir = cli
        .dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    // absolute, so that paths in plans and state do not depend on where mirrorplan ran
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    match cli.command {
        Command::Validate { json } => config::validate(&dir, json, out),
        Command::Graph { vars } => config::graph(&dir, &vars, out),
        Command::Fmt { check, diff, files } => fmt::run(&dir, check, diff, &files),
        Command::Plan {
            mut args,
            out: plan_out,
            detailed_exitcode,
            destroy,
        } => {
            args.destroy = destroy;
            run::plan(&dir, &args, plan_out.as_deref(), detailed_exitcode, out)
        }
        Command::Apply {
            args,
            auto_approve,
            plan_file,
        } => run::apply(&dir, &args, plan_file.as_deref(), auto_approve, out),
        Command::Destroy {
            mut args,
            auto_approve,
        } => {
            args.destroy = true;
            run::apply(&dir, &args, None, auto_approve, out)
        }
        Command::Verify(args) => verify::run(&dir, &args, out),
        Command::Show {
            plan_file,
            json,
            format,
            state,
        } => {
            let format = if json {
                crate::cli::Format::Json
            } else {
                format
            };
            state::show(&dir, plan_file.as_deref(), format, &state, out)
        }
        Command::State { command } => match command {
            StateCommand::List { state } => state::list(&dir, &state),
            StateCommand::Show { address, state } => state::show_one(&dir, &address, &state),
            StateCommand::Rm { address, state } => state::rm(&dir, &address, &state),
            StateCommand::Pull { state } => backend::pull(&dir, &state),
            StateCommand::Push { file, force, state } => backend::push(&dir, &file, force, &state),
        },
        Command::Output { name, json, state } => state::output(&dir, name.as_deref(), json, &state),
        Command::ForceUnlock { id, state } => state::force_unlock(&dir, &id, &state),
        Command::Init {
            migrate_state,
            state,
        } => backend::init(&dir, migrate_state, &state),
        Command::Workspace { command } => backend::workspace(&dir, &command),
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
