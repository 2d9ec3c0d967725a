//! `show`, `state list|show|rm`, `output` and `force-unlock`: reading and
//! editing the state without planning.

use std::path::Path;
use std::process::ExitCode;

use miette::{miette, IntoDiagnostic, WrapErr};
use mirrorplan_engine::Plan;
use mirrorplan_state::State;

use crate::cli::{Format, StateArgs};
use crate::commands::run::{lock, store};
use crate::output::Output;

pub(crate) fn load(dir: &Path, args: &StateArgs) -> miette::Result<State> {
    let store = store(dir, args);
    match store.load().map_err(miette::Report::new)? {
        Some(s) => Ok(s),
        None => Err(miette!(
            code = "mirrorplan::state::none",
            help = "run `mirrorplan apply` first, or pass --state FILE",
            "there is no state in {}",
            store.location()
        )),
    }
}

/// `mirrorplan show [PLANFILE] [--json | --format FORMAT]`
pub fn show(
    dir: &Path,
    plan_file: Option<&Path>,
    format: Format,
    args: &StateArgs,
    out: &Output,
) -> miette::Result<ExitCode> {
    if let Some(path) = plan_file {
        let bytes = std::fs::read(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read the plan file {}", path.display()))?;
        // the file is checked with its state's key before anything in it
        // is shown
        let state = load(dir, args)
            .wrap_err("a saved plan is checked against its state before it is shown")?;
        let plan = Plan::from_file_bytes(&bytes, &crate::commands::run::identity(&state))
            .map_err(miette::Report::new)?;
        crate::commands::run::print_plan_as(&plan, format, out);
        return Ok(ExitCode::SUCCESS);
    }
    let state = load(dir, args)?;
    if format == Format::Json {
        let mut v = serde_json::to_value(&state).into_diagnostic()?;
        // the salt keys the secret digests and the saved plans' checksums:
        // it never leaves the state file
        if let Some(o) = v.as_object_mut() {
            o.remove("secret_salt");
        }
        crate::output::print_document(&serde_json::to_string_pretty(&v).into_diagnostic()?);
        return Ok(ExitCode::SUCCESS);
    }
    for (addr, rec) in state.instances() {
        println!("# {addr}");
        print_record(rec);
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn print_record(rec: &mirrorplan_state::InstanceRecord) {
    let width = rec
        .attributes
        .keys()
        .chain(rec.sensitive.keys())
        .map(|k| k.len())
        .max()
        .unwrap_or(0);
    println!(
        "  provider{} = {:?}",
        " ".repeat(width.saturating_sub(8)),
        rec.provider
    );
    for (k, v) in &rec.attributes {
        // values come from nodes, registries and bundles: escaped
        let shown = match v {
            serde_json::Value::String(s) if s.contains('\n') => {
                format!("<<EOT\n{}EOT", mirrorplan_engine::escape_controls(s))
            }
            other => mirrorplan_engine::escape_controls(&other.to_string()).into_owned(),
        };
        println!(
            "  {k}{} = {shown}",
            " ".repeat(width.saturating_sub(k.len()))
        );
    }
    for k in rec.sensitive.keys() {
        println!(
            "  {k}{} = (sensitive value)",
            " ".repeat(width.saturating_sub(k.len()))
        );
    }
    if !rec.dependencies.is_empty() {
        println!("  # depends on: {}", rec.dependencies.join(", "));
    }
}

/// `mirrorplan state list`
pub fn list(dir: &Path, args: &StateArgs) -> miette::Result<ExitCode> {
    let state = load(dir, args)?;
    for addr in state.addresses() {
        println!("{}", mirrorplan_engine::escape_controls(addr));
    }
    Ok(ExitCode::SUCCESS)
}

/// `mirrorplan state show ADDR`
pub fn show_one(dir: &Path, address: &str, args: &StateArgs) -> miette::Result<ExitCode> {
    let state = load(dir, args)?;
    match state.instance(address) {
        Some(rec) => {
            println!("# {}", mirrorplan_engine::escape_controls(address));
            print_record(rec);
            Ok(ExitCode::SUCCESS)
        }
        None => Err(miette!(
            code = "mirrorplan::state::no_such_instance",
            help = "list the addresses with `mirrorplan state list`",
            "no instance {address} in the state"
        )),
    }
}

/// `mirrorplan state rm ADDR`
pub fn rm(dir: &Path, address: &str, args: &StateArgs) -> miette::Result<ExitCode> {
    let store = store(dir, args);
    let _lock = lock(&store, args, "state rm")?;
    let mut state = load(dir, args)?;
    if state.remove_instance(address).is_none() {
        return Err(miette!(
            code = "mirrorplan::state::no_such_instance",
            help = "list the addresses with `mirrorplan state list`",
            "no instance {address} in the state"
        ));
    }
    store.save(&mut state).map_err(miette::Report::new)?;
    println!("Removed {address}; nothing was changed on nodes or registries.");
    Ok(ExitCode::SUCCESS)
}

/// `mirrorplan output [NAME] [--json]`
pub fn output(
    dir: &Path,
    name: Option<&str>,
    json: bool,
    args: &StateArgs,
) -> miette::Result<ExitCode> {
    let state = load(dir, args)?;
    let shown = |o: &mirrorplan_state::OutputRecord| -> serde_json::Value {
        if o.sensitive {
            serde_json::Value::String("(sensitive value)".into())
        } else {
            o.value.clone()
        }
    };
    match name {
        Some(n) => {
            let o = state.output(n).ok_or_else(|| {
                miette!(
                    code = "mirrorplan::state::no_such_output",
                    help = "outputs are recorded by `mirrorplan apply`",
                    "no output named {n:?} in the state"
                )
            })?;
            let v = shown(o);
            match (&v, json) {
                (serde_json::Value::String(s), false) => println!("{s}"),
                _ => println!("{v}"),
            }
        }
        None => {
            if json {
                let map: serde_json::Map<String, serde_json::Value> = state
                    .outputs()
                    .iter()
                    .map(|(k, o)| {
                        (
                            k.clone(),
                            serde_json::json!({"value": shown(o), "sensitive": o.sensitive}),
                        )
                    })
                    .collect();
                crate::output::print_document(
                    &serde_json::to_string_pretty(&map).into_diagnostic()?,
                );
            } else {
                for (k, o) in state.outputs() {
                    println!("{k} = {}", shown(o));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mirrorplan force-unlock ID`
pub fn force_unlock(dir: &Path, id: &str, args: &StateArgs) -> miette::Result<ExitCode> {
    let store = store(dir, args);
    let info = store.force_unlock(id).map_err(miette::Report::new)?;
    println!(
        "Removed lock {} ({} by {}, since {}).",
        info.id, info.operation, info.who, info.created
    );
    Ok(ExitCode::SUCCESS)
}
