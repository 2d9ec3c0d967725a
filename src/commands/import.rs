//! `mirrorplan import ADDRESS`: reads one image or node instance of the
//! configuration that the state does not record, and records it without
//! changing anything (an image already in the mirror, a node configured by
//! hand or by another tool).

use std::path::Path;
use std::process::ExitCode;

use miette::miette;
use mirrorplan_engine::Address;

use crate::cli::{Format, PlanArgs, StateArgs, VarArgs};
use crate::commands::backend::Store;
use crate::commands::run::{addresses, identity, lock, prepare, to_state_record};
use crate::output::Output;

/// `mirrorplan import ADDRESS`
pub fn run(
    dir: &Path,
    address: &str,
    vars: &VarArgs,
    state_args: &StateArgs,
    out: &Output,
) -> miette::Result<ExitCode> {
    let wanted = addresses(&[address.to_string()], "address")?
        .pop()
        .ok_or_else(|| miette!("internal error: no address"))?;
    if !matches!(wanted.kind(), "image" | "node") || wanted.key().is_none() {
        return Err(miette!(
            code = "mirrorplan::import::kind",
            help = "import an image (image.SET[\"gcr.io/a/b:t\"]) or a node (node.CLUSTER[\"host\"]); \
                    image_set and cluster instances are recorded by the next apply, which changes nothing for them",
            "{wanted} cannot be imported: only image and node instances can"
        ));
    }
    let args = PlanArgs {
        vars: vars.clone(),
        state: state_args.clone(),
        refresh: true,
        refresh_only: false,
        targets: Vec::new(),
        replace: Vec::new(),
        parallelism: 1,
        json: false,
        format: Format::Human,
        verbose: false,
        destroy: false,
    };
    let Some(ctx) = prepare(dir, &args, out)? else {
        return Ok(ExitCode::from(1));
    };
    let Some(desired) = ctx.desired.iter().find(|d| d.address == wanted) else {
        let known: Vec<&Address> = ctx
            .desired
            .iter()
            .map(|d| &d.address)
            .filter(|a| a.kind() == wanted.kind())
            .collect();
        let closest = known
            .iter()
            .map(|a| (strsim::levenshtein(&wanted.to_string(), &a.to_string()), a))
            .filter(|(d, a)| *d <= (a.to_string().len() / 3).max(2))
            .min_by_key(|(d, _)| *d);
        let help = match closest {
            Some((_, a)) => format!("did you mean `{a}`?"),
            None => "import takes an instance the configuration declares; list them with `mirrorplan plan`".into(),
        };
        return Err(miette!(
            code = "mirrorplan::import::not_configured",
            help = help,
            "{wanted} is not an instance of the configuration: add it to the configuration first"
        ));
    };
    let store = Store::new(dir, state_args, Some(ctx.backend.clone()));
    let _lock = lock(&store, state_args, "import")?;
    let mut state = store.load_or_new().map_err(miette::Report::new)?;
    store.check_writable(&state).map_err(miette::Report::new)?;
    if state.instances().contains_key(&wanted.to_string()) {
        return Err(miette!(
            code = "mirrorplan::import::already_managed",
            help = "`mirrorplan state rm` it first to import it again",
            "{wanted} is already in the state"
        ));
    }
    let imported = ctx
        .rt
        .block_on(ctx.engine.import(desired, &identity(&state)))
        .map_err(miette::Report::new)?;
    state.set_instance(wanted.to_string(), to_state_record(&imported.record));
    store.save(&mut state).map_err(miette::Report::new)?;
    ctx.hooks.finish();
    println!("{wanted}: Import complete");
    for d in &imported.details {
        println!("  # {}", mirrorplan_engine::escape_controls(d));
    }
    if imported.matches {
        println!("\nImport successful! It already is as configured: the next plan changes nothing for it.");
    } else {
        println!("\nImport successful! It differs from the configuration: the next plan shows the changes apply makes to it.");
    }
    Ok(ExitCode::SUCCESS)
}
