//! `mirrorplan fmt`: canonical formatting of configuration files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mirrorplan_config::fmt::format_source;
use mirrorplan_config::{load_sources, DiagKind, LoadOptions, Mode, SourceFile};

use crate::output::Output;

/// The syntax diagnostics of a file that does not parse, as `validate`
/// reports them (code, file:line:col, span, help); `None` if the loader
/// finds none (the formatter's own reason is shown then).
fn syntax_diagnostics(
    dir: &Path,
    file: &Path,
    text: &str,
) -> Option<Vec<mirrorplan_config::ConfigDiagnostic>> {
    let name = file.strip_prefix(dir).unwrap_or(file).display().to_string();
    let opts = LoadOptions {
        mode: Mode::Validate,
        ..LoadOptions::default()
    };
    let loaded = load_sources(dir, vec![SourceFile::new(name, text)], &opts);
    let diags: Vec<_> = loaded
        .diagnostics
        .into_iter()
        .filter(|d| d.kind == DiagKind::Syntax)
        .collect();
    (!diags.is_empty()).then_some(diags)
}

/// Formats the given files (default: every *.hcl of `dir`).
pub fn run(
    dir: &Path,
    check: bool,
    diff: bool,
    files: &[PathBuf],
    out: &Output,
) -> miette::Result<ExitCode> {
    let files: Vec<PathBuf> = if files.is_empty() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| {
                miette::miette!(
                    code = "mirrorplan::cli::io",
                    "cannot read {}: {e}",
                    dir.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "hcl") && p.is_file())
            .collect();
        v.sort();
        v
    } else {
        files.to_vec()
    };
    let mut changed = Vec::new();
    let mut failed = false;
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", f.display());
                failed = true;
                continue;
            }
        };
        let formatted = match format_source(&text) {
            Ok(s) => s,
            Err(why) => {
                match syntax_diagnostics(dir, f, &text) {
                    Some(diags) => out.diagnostics(&diags),
                    None => eprintln!("error: {}: {why}", f.display()),
                }
                failed = true;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        changed.push(f.clone());
        if diff {
            let d = similar::TextDiff::from_lines(&text, &formatted);
            print!(
                "{}",
                d.unified_diff()
                    .header(&f.display().to_string(), &f.display().to_string())
            );
        }
        if check {
            if !diff {
                println!("{}", f.display());
            }
        } else {
            if let Err(e) = std::fs::write(f, &formatted) {
                eprintln!("error: cannot write {}: {e}", f.display());
                failed = true;
                continue;
            }
            if !diff {
                println!("{}", f.display());
            }
        }
    }
    Ok(if failed || (check && !changed.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
