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

/// Loads and prints diagnostics; `None` when there were problems.
pub fn load_checked(dir: &Path, opts: &LoadOptions, out: &Output) -> Option<Loaded> {
    let loaded = load_dir(dir, opts);
    if loaded.is_ok() {
        Some(loaded)
    } else {
        out.diagnostics(&loaded.diagnostics);
        None
    }
}

/// `mirrorplan validate`
pub fn validate(dir: &Path, json: bool, out: &Output) -> miette::Result<ExitCode> {
    let opts = load_options(&VarArgs::default(), Mode::Validate)?;
    let loaded = load_dir(dir, &opts);
    if json {
        let diags: Vec<serde_json::Value> = loaded
            .diagnostics
            .iter()
            .map(|d| {
                serde_json::json!({
                    "code": d.kind.code(),
                    "message": d.message,
                    "location": d.location(),
                    "help": d.help,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "format_version": "1.0",
            "valid": loaded.is_ok(),
            "diagnostics": diags,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
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
