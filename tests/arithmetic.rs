//! HCL arithmetic never panics: `% 0`, `/ 0`, integer and float overflow
//! give a diagnostic at the operation (exit 1), in debug and release builds.
//! End-to-end tests of the `mirrorplan` binary on the quickstart bundle, an
//! `oci:` store and a `local:` node.

mod common;
use common::*;

use std::path::Path;
use std::process::Output;

/// A configuration with one local node and `extra` HCL appended.
fn config(extra: &str) -> tempfile::TempDir {
    let dir = local_nodes_config(1);
    let main = dir.path().join("main.hcl");
    let text = read(&main) + extra;
    std::fs::write(&main, text).unwrap_or_else(|e| panic!("write main.hcl: {e}"));
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Both streams of a run.
fn both(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// `main.hcl:LINE:COL` of the first `needle` in the configuration.
fn location(dir: &Path, needle: &str) -> String {
    let text = read(&dir.join("main.hcl"));
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in main.hcl"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("main.hcl:{line}:{col}")
}

/// `validate --json` of a configuration whose local `x` is `expr`: the one
/// evaluation diagnostic, located at the operation.
fn arithmetic_error(expr: &str, op: &str) -> String {
    let qs = config(&format!("\nlocals {{\n  x = {expr}\n}}\n"));
    let dir = qs.path();
    let o = run_ok(dir, &["validate", "--json"], 1);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("validate --json is not JSON ({e}): {}", both(&o)));
    let diags = doc["diagnostics"].as_array().cloned().unwrap_or_default();
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d["code"], "mirrorplan::config::evaluation", "{d}");
    assert_eq!(d["location"], location(dir, op), "{d}");
    // the human rendering says the same, and nothing panicked
    let o = run_ok(dir, &["validate"], 1);
    let human = both(&o);
    assert!(!human.contains("panicked"), "{human}");
    assert!(human.contains(&location(dir, op)), "{human}");
    d["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn modulo_by_zero_is_a_diagnostic() {
    let m = arithmetic_error("10 + 7 % 0", "7 % 0");
    assert!(m.contains("modulo by zero"), "{m}");
}

#[test]
fn division_by_zero_is_a_diagnostic() {
    let m = arithmetic_error("[for n in [1, 0] : 10 / n]", "10 / n");
    assert!(m.contains("division by zero"), "{m}");
}

#[test]
fn float_modulo_by_zero_is_a_diagnostic() {
    let m = arithmetic_error("2.5 % 0", "2.5 % 0");
    assert!(m.contains("modulo by zero"), "{m}");
}

#[test]
fn integer_overflow_is_a_diagnostic() {
    let m = arithmetic_error(
        "9223372036854775807 * 9223372036854775807",
        "9223372036854775807 *",
    );
    assert!(m.contains("overflow"), "{m}");
    let m = arithmetic_error("18446744073709551615 + 1", "18446744073709551615 +");
    assert!(m.contains("overflow"), "{m}");
    let m = arithmetic_error("-9223372036854775807 - 10", "-9223372036854775807 -");
    assert!(m.contains("overflow"), "{m}");
}

#[test]
fn float_overflow_is_a_diagnostic() {
    let m = arithmetic_error("\"${1e308 * 10}\"", "1e308 * 10");
    assert!(m.contains("overflow"), "{m}");
}

#[test]
fn arithmetic_on_a_string_is_a_diagnostic() {
    let m = arithmetic_error("1 + \"a\"", "1 + \"a\"");
    assert!(m.contains("needs two numbers"), "{m}");
}

#[test]
fn arithmetic_still_computes() {
    let qs = config(
        r#"
output "sum" {
  value = 7 * 6 + 10 / 4 - 9 % 4
}
"#,
    );
    let dir = qs.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let o = run_ok(dir, &["output", "sum"], 0);
    assert_eq!(text(&o.stdout).trim(), "43.5");
}

#[test]
fn modulo_by_zero_in_var_file_is_a_diagnostic() {
    let qs = config(
        r#"
variable "n" {
  type = number
}
"#,
    );
    let dir = qs.path();
    std::fs::write(dir.join("n.vars"), "n = 1 % 0\n").unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(dir, &["plan", "--var-file", "n.vars"], 1);
    let all = both(&o);
    assert!(all.contains("mirrorplan::config::evaluation"), "{all}");
    assert!(all.contains("modulo by zero"), "{all}");
    assert!(all.contains("n.vars:1:5"), "{all}");
}

#[test]
fn modulo_by_zero_in_var_flag_is_a_diagnostic() {
    let qs = config(
        r#"
variable "n" {
  type = number
}

output "n" {
  value = var.n
}
"#,
    );
    let dir = qs.path();
    let o = run_ok(dir, &["plan", "--var", "n=1 % 0"], 1);
    let all = both(&o);
    assert!(!all.contains("panicked"), "{all}");
    assert!(all.contains("mirrorplan::config::wrong_type"), "{all}");
    assert!(all.contains("is not a number"), "{all}");
    // an operation that works is still computed
    run_ok(dir, &["apply", "--auto-approve", "--var", "n=6 * 7"], 0);
    let o = run_ok(dir, &["output", "n"], 0);
    assert_eq!(text(&o.stdout).trim(), "42");
}
