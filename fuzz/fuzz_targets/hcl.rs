//! The HCL loader with evaluation and functions: `validate` mode, then
//! `plan` mode with a value for every declared variable, plus `fmt` and
//! `graph`, and every diagnostic rendered as the binary prints it.
//!
//! Input: `main.hcl`, optionally followed by a NUL byte and the text of a
//! `--var-file`. `file()` reads relative to the scratch directory, which
//! holds `data.txt`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorplan_config::{fmt, graph, load_sources, LoadOptions, Mode, SourceFile};
use mirrorplan_fuzz::{render, scratch, scratch_file, split_at_byte};

/// The names of the `variable "NAME"` blocks in `text`.
fn declared_variables(text: &str) -> Vec<String> {
    text.split("variable")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix('"')?;
            let name = &rest[..rest.find('"')?];
            (!name.is_empty() && name.len() < 64).then(|| name.to_owned())
        })
        .collect()
}

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let (main, var_file) = split_at_byte(data, 0);
    let Ok(main) = std::str::from_utf8(main) else {
        return;
    };
    let dir = scratch("hcl");
    scratch_file("hcl", "data.txt", b"line one\nline two\n");
    let mut opts = LoadOptions::default();
    if !var_file.is_empty() {
        opts.var_files = vec![scratch_file("hcl", "fuzz.tfvars", var_file)];
    }
    // the lowest-precedence source, so that defaults, the var file and
    // `--var` still win where they are given
    opts.env_vars = declared_variables(main)
        .into_iter()
        .map(|n| (n, "1".to_owned()))
        .collect();
    opts.vars = vec![("pw".into(), "hunter2-sensitive".into())];
    for mode in [Mode::Validate, Mode::Plan] {
        opts.mode = mode;
        let files = vec![SourceFile::new("main.hcl".to_owned(), main.to_owned())];
        let loaded = load_sources(dir, files, &opts);
        for d in &loaded.diagnostics {
            render(d);
        }
        if loaded.is_ok() {
            graph::to_dot(&loaded.config);
        }
    }
    if let Ok(once) = fmt::format_source(main) {
        // formatting is idempotent
        match fmt::format_source(&once) {
            Ok(twice) => assert_eq!(once, twice, "fmt is not idempotent"),
            Err(e) => panic!("fmt output does not parse again: {e}"),
        }
    }
}
