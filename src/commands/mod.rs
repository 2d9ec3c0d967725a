//! One module per command; each parses nothing, loads what it needs and
//! returns an exit code or an error report.

pub mod backend;
pub mod config;
mod fmt;
mod import;
pub mod run;
mod state;
mod state_mv;
mod verify;

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, Command, Shell, StateArgs, StateCommand};
use crate::output::Output;

/// Runs the chosen command.
pub fn run(cli: Cli, out: &Output) -> miette::Result<ExitCode> {
    // `main` made the configuration directory the working directory (`-C`),
    // so every path is relative to `.`: nothing recorded in the state, a plan
    // file or the plan output depends on where the checkout is
    let dir = std::path::PathBuf::from(".");
    match cli.command {
        Command::Validate { json } => config::validate(&dir, json, out),
        Command::Graph { vars } => config::graph(&dir, &vars, out),
        Command::Fmt { check, diff, files } => fmt::run(&dir, check, diff, &files, out),
        Command::Plan {
            mut args,
            out: plan_out,
            detailed_exitcode,
            destroy,
            refresh_only,
        } => {
            args.destroy = destroy;
            args.refresh_only = refresh_only;
            if plan_out.is_some()
                && !args.state.lock
                && run::store(&dir, &args.state)
                    .load()
                    .map_err(miette::Report::new)?
                    .is_none()
            {
                // there is no state yet: a saved plan creates it
                require_lock(&args.state, "plan --out")?;
            }
            run::plan(&dir, &args, plan_out.as_deref(), detailed_exitcode, out)
        }
        Command::Apply {
            mut args,
            auto_approve,
            plan_file,
            refresh_only,
        } => {
            require_lock(&args.state, "apply")?;
            args.refresh_only = refresh_only;
            run::apply(&dir, &args, plan_file.as_deref(), auto_approve, out)
        }
        Command::Destroy {
            mut args,
            auto_approve,
        } => {
            require_lock(&args.state, "destroy")?;
            args.destroy = true;
            run::apply(&dir, &args, None, auto_approve, out)
        }
        Command::Import {
            address,
            vars,
            state,
        } => {
            require_lock(&state, "import")?;
            import::run(&dir, &address, &vars, &state, out)
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
            state::show(&dir, plan_file.as_deref(), format, &state.unlocked(), out)
        }
        Command::State { command } => match command {
            StateCommand::List { state } => state::list(&dir, &state.unlocked()),
            StateCommand::Show { address, state } => {
                state::show_one(&dir, &address, &state.unlocked())
            }
            StateCommand::Rm { address, state } => {
                require_lock(&state, "state rm")?;
                state::rm(&dir, &address, &state)
            }
            StateCommand::Mv { from, to, state } => {
                require_lock(&state, "state mv")?;
                state_mv::mv(&dir, &from, &to, &state)
            }
            StateCommand::Pull { state } => backend::pull(&dir, &state.unlocked()),
            StateCommand::Push { file, force, state } => {
                require_lock(&state, "state push")?;
                backend::push(&dir, &file, force, &state)
            }
        },
        Command::Output { name, json, state } => {
            state::output(&dir, name.as_deref(), json, &state.unlocked())
        }
        Command::ForceUnlock { id, state } => state::force_unlock(&dir, &id, &state.unlocked()),
        Command::Init {
            migrate_state,
            state,
        } => {
            if migrate_state {
                require_lock(&state, "init --migrate-state")?;
            }
            backend::init(&dir, migrate_state, &state)
        }
        Command::Workspace { command } => backend::workspace(&dir, &command),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mirrorplan", &mut script);
            // a closed pipe ends the output quietly, as for every command
            print!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Refuses `--lock=false` for a command that writes the state or changes
/// nodes or registries: two such runs at once corrupt both. Checked before
/// anything is read or done.
fn require_lock(state: &StateArgs, command: &str) -> miette::Result<()> {
    if state.lock {
        return Ok(());
    }
    Err(miette::miette!(
        code = "mirrorplan::cli::lock_required",
        help = "--lock=false is only for read-only commands such as `plan --refresh-only`, \
                `show` or `state list`; drop it (use --lock-timeout to wait for another run)",
        "`mirrorplan {command}` writes the state, so it always takes the state lock: --lock=false is refused"
    ))
}
