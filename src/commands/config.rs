//! `validate` and `graph`: load the configuration and report on it.

use std::path::Path;
use std::process::ExitCode;

use mirrorplan_config::{load_dir, parse_var_flag, LoadOptions, Loaded, Mode};

use crate::cli::VarArgs;
use crate::output::Output;

/// Builds load options from flags and the environment.
pub fn load_options(vars: &VarArgs, mode: Mode) -> miette::Result<LoadOptions> {
    let mut parsed = Vec::new();
    for v in &vars.vars {
        let kv = parse_var_flag(v).map_err(|why| {
            miette::miette!(
                code = "mirrorplan::cli::bad_var",
                help = "write --var NAME=VALUE",
                "invalid --var: {why}"
            )
        })?;
        parsed.push(kv);
    }
    for f in &vars.var_files {
        if !f.is_file() {
            return Err(miette::miette!(
                code = "mirrorplan::cli::var_file",
                help = "pass an existing HCL file of NAME = value lines",
                "--var-file {}: no such file",
                f.display()
            ));
        }
    }
    Ok(LoadOptions {
        vars: parsed,
        var_files: vars.var_files.clone(),
        mode,
        ..LoadOptions::default()
    }
    .with_process_env())
}

/// Loads and prints diagnostics; `None` when there were problems. A
/// `--var` naming a variable the configuration does not declare is a
/// problem too, as in Terraform (a typo would otherwise be ignored).
pub fn load_checked(dir: &Path, opts: &LoadOptions, out: &Output) -> Option<Loaded> {
    let loaded = load_dir(dir, opts);
    if !loaded.is_ok() {
        out.diagnostics(&loaded.diagnostics);
        return None;
    }
    let declared = &loaded.config.variables;
    let mut undeclared = false;
    for (name, _) in &opts.vars {
        if declared.contains_key(name) {
            continue;
        }
        undeclared = true;
        let closest = declared
            .keys()
            .map(|k| (strsim::levenshtein(name, k), k))
            .filter(|(d, k)| *d <= (k.len() / 3).max(2))
            .min();
        let help = match closest {
            Some((_, k)) => format!("did you mean `{k}`?"),
            None if declared.is_empty() => "the configuration declares no variables".into(),
            None => format!(
                "declared variables: {}",
                declared.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        out.report(&miette::miette!(
            code = "mirrorplan::cli::undeclared_var",
            help = help,
            "--var {name}=...: the configuration declares no variable `{name}`"
        ));
    }
    (!undeclared).then_some(loaded)
}

/// `mirrorplan validate`
pub fn validate(dir: &Path, json: bool, out: &Output) -> miette::Result<ExitCode> {
    let opts = load_options(&VarArgs::default(), Mode::Validate)?;
    let loaded = load_dir(dir, &opts);
    if json {
        let diags: Vec<_> = loaded
            .diagnostics
            .iter()
            .map(crate::output::json_diagnostic)
            .collect();
        let doc = crate::output::json_diagnostics_doc(loaded.is_ok(), &diags);
        crate::output::print_document(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if loaded.is_ok() {
        println!("Success! The configuration is valid.");
    } else {
        out.diagnostics(&loaded.diagnostics);
    }
    Ok(if loaded.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `mirrorplan graph`
pub fn graph(dir: &Path, vars: &VarArgs, out: &Output) -> miette::Result<ExitCode> {
    let opts = load_options(vars, Mode::Validate)?;
    let Some(loaded) = load_checked(dir, &opts, out) else {
        return Ok(ExitCode::from(1));
    };
    print!("{}", mirrorplan_config::graph::to_dot(&loaded.config));
    Ok(ExitCode::SUCCESS)
}
