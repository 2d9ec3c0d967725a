//! `mirrorplan state mv FROM TO`: the command-line form of a `moved`
//! block. It re-addresses state records only, under the lock, and refuses
//! to overwrite a record at the destination.

use std::path::Path;
use std::process::ExitCode;

use miette::miette;
use mirrorplan_engine::{final_address, Address};

use crate::cli::StateArgs;
use crate::commands::run::{lock, store};

/// `mirrorplan state mv FROM TO`
pub fn mv(dir: &Path, from: &str, to: &str, args: &StateArgs) -> miette::Result<ExitCode> {
    let moves = crate::moves::cli_moves(from, to).map_err(|reason| {
        miette!(
            code = "mirrorplan::state::bad_move",
            help = "write e.g. `mirrorplan state mv cluster.local cluster.edge`, \
                    `state mv 'cluster.edge' 'cluster.edge[\"a\"]'` or \
                    `state mv 'node.a[\"h\"]' 'node.b[\"h\"]'`",
            "cannot move {from} to {to}: {reason}"
        )
    })?;
    let store = store(dir, args);
    let _lock = lock(&store, args, "state mv")?;
    let mut state = crate::commands::state::load(dir, args)?;
    store.check_writable(&state).map_err(miette::Report::new)?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    for addr in state.instances().keys() {
        let Ok(a) = addr.parse::<Address>() else {
            continue;
        };
        let dest = final_address(&moves, &a).map_err(miette::Report::new)?;
        if dest != a {
            pairs.push((addr.clone(), dest.to_string()));
        }
    }
    if pairs.is_empty() {
        return Err(miette!(
            code = "mirrorplan::state::no_such_instance",
            help = "list the addresses with `mirrorplan state list`",
            "nothing in the state is recorded at {from}"
        ));
    }
    let leaving: std::collections::BTreeSet<&str> = pairs.iter().map(|(f, _)| f.as_str()).collect();
    let taken: Vec<&str> = pairs
        .iter()
        .map(|(_, t)| t.as_str())
        .filter(|t| state.instance(t).is_some() && !leaving.contains(t))
        .collect();
    if !taken.is_empty() {
        return Err(miette!(
            code = "mirrorplan::state::destination_exists",
            help = "the state already records an instance there: `mirrorplan state rm` it first \
                    if it is stale, or choose another address",
            "cannot move {from} to {to}: {} already in the state; nothing was moved",
            taken.join(", ")
        ));
    }
    let mut records = Vec::new();
    for (f, t) in &pairs {
        if let Some(r) = state.remove_instance(f) {
            records.push((t.clone(), r));
        }
    }
    for (t, r) in records {
        state.set_instance(t, r);
    }
    store.save(&mut state).map_err(miette::Report::new)?;
    for (f, t) in &pairs {
        println!("Moved {f} to {t}");
    }
    println!(
        "{} instance(s) moved in the state; nothing was changed on nodes or registries.",
        pairs.len()
    );
    // the local backend keeps the state before each changing save
    let location = store.location();
    if Path::new(&location).is_file() {
        println!("The state before the move is kept in {location}.backup.");
    }
    Ok(ExitCode::SUCCESS)
}
