//! End-to-end tests of the `mirrorplan` binary: exit codes, stdout and stderr
//! of the configuration commands (validate, fmt, graph, completions).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1");
    c.env_remove("MIRRORPLAN_VAR_mirror_password");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    match bin().arg("-C").arg(dir).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run mirrorplan: {e}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/anthos")
}

/// A temporary copy of the example with `find` replaced by `replace`.
fn broken_copy(find: &str, replace: &str) -> tempfile::TempDir {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let src = std::fs::read_to_string(example_dir().join("main.hcl")).unwrap_or_default();
    assert!(src.contains(find), "example lacks {find:?}");
    std::fs::write(dir.path().join("main.hcl"), src.replacen(find, replace, 1)).ok();
    dir
}

#[test]
fn validate_the_example() {
    let o = run(&example_dir(), &["validate"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    assert!(text(&o.stdout).contains("The configuration is valid"));
}

#[test]
fn validate_reports_every_problem_with_code_and_location() {
    let dir = broken_copy("linux/amd64", "linux/amd46");
    std::fs::write(
        dir.path().join("extra.hcl"),
        "registry \"other\" {\n  endpont = \"https://o.example\"\n}\n",
    )
    .ok();
    let o = run(dir.path(), &["validate"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("mirrorplan::config::unknown_attribute"),
        "{err}"
    );
    assert!(err.contains("[extra.hcl:2:3]"), "{err}");
    assert!(err.contains("did you mean `endpoint`?"), "{err}");
    assert!(
        err.contains("mirrorplan::config::missing_required"),
        "{err}"
    );
    assert!(
        err.contains("mirrorplan::config::invalid_platform"),
        "{err}"
    );
    assert!(err.contains("[main.hcl:31:16]"), "{err}");
    assert!(
        err.contains("3 problems found in the configuration."),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "colour with NO_COLOR: {err}");
}

#[test]
fn validate_json() {
    let dir = broken_copy("linux/amd64", "linux/amd46");
    let o = run(dir.path(), &["validate", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["valid"], serde_json::json!(false));
    assert_eq!(
        v["diagnostics"][0]["code"],
        serde_json::json!("mirrorplan::config::invalid_platform")
    );
    assert_eq!(
        v["diagnostics"][0]["location"],
        serde_json::json!("main.hcl:31:16")
    );
}

#[test]
fn validate_an_empty_directory_fails_clearly() {
    let dir = tempfile::tempdir().ok();
    let Some(dir) = dir else { return };
    let o = run(dir.path(), &["validate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no *.hcl files in"));
}

#[test]
fn fmt_check_and_rewrite() {
    let o = run(&example_dir(), &["fmt", "--check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the example is not canonical: {}",
        text(&o.stdout)
    );
    let dir = broken_copy(
        "  endpoint  = \"https://mirror",
        "endpoint=\"https://mirror",
    );
    let o = run(dir.path(), &["fmt", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("main.hcl"));
    let o = run(dir.path(), &["fmt"]);
    assert_eq!(o.status.code(), Some(0));
    let fixed = std::fs::read_to_string(dir.path().join("main.hcl")).unwrap_or_default();
    let original = std::fs::read_to_string(example_dir().join("main.hcl")).unwrap_or_default();
    assert_eq!(fixed, original);
    let o = run(dir.path(), &["fmt", "--check"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn fmt_refuses_invalid_files() {
    let dir = broken_copy("registry \"mirror\" {", "registry \"mirror\" {{");
    let o = run(dir.path(), &["fmt"]);
    assert_eq!(o.status.code(), Some(1));
    // the same diagnostic as `validate`: code, file:line:col, span
    let stderr = text(&o.stderr);
    assert!(stderr.contains("mirrorplan::config::syntax"), "{stderr}");
    assert!(stderr.contains("main.hcl:15:20"), "{stderr}");
}

#[test]
fn graph_prints_dot_with_dependency_edges() {
    let o = run(&example_dir(), &["graph"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let dot = text(&o.stdout);
    assert!(dot.starts_with("digraph mirrorplan {"));
    assert!(dot.contains("\"registry.mirror\" -> \"image_set.anthos\";"));
    assert!(dot.contains("\"registry.mirror\" -> \"image_set.extras\";"));
    // a cluster_config cluster: its file instance stands where its nodes would
    assert!(dot.contains(
        "\"image_set.anthos\" -> \"cluster_config.admin1\" [style = dashed, label = \"depends_on\"];"
    ));
    assert!(dot.contains("\"cluster_config.admin1\" -> \"cluster.admin1\";"));
    assert!(!dot.contains("node.admin1"), "{dot}");
}

#[test]
fn completions_version_and_help() {
    for shell in ["bash", "zsh", "fish"] {
        let o = bin().args(["completions", shell]).output();
        let Ok(o) = o else { panic!("run") };
        assert_eq!(o.status.code(), Some(0));
        assert!(text(&o.stdout).contains("mirrorplan"), "{shell}");
    }
    let Ok(o) = bin().arg("--version").output() else {
        panic!("run")
    };
    assert!(text(&o.stdout).starts_with("mirrorplan "));
    let Ok(o) = bin().args(["validate", "--help"]).output() else {
        panic!("run")
    };
    assert!(text(&o.stdout).contains("Check the configuration"));
    // a usage error is an error (1); 2 means "changes present"
    let Ok(o) = bin().args(["frobnicate"]).output() else {
        panic!("run")
    };
    assert_eq!(o.status.code(), Some(1));
}
