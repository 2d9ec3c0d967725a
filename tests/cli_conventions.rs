//! The command-line conventions CI logs and scripts rely on, as a Terraform
//! user expects them: exit codes (2 only for "changes present" under
//! `--detailed-exitcode`, 1 for every error, usage errors included), JSON
//! errors on stdout under `--json`, a closed pipe, colour with `TERM=dumb`,
//! `fmt`'s diagnostics, single-dash flags, `destroy`'s report, flags that
//! commands do not honour, "did you mean" for targets and undeclared
//! variables.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};

fn json(s: &[u8]) -> serde_json::Value {
    serde_json::from_slice(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(s)))
}

#[test]
fn usage_error_exits_1_not_2() {
    let cfg = local_nodes_config(1);
    // the mistyped flag of examples/cron must never read as "drift found"
    let o = run_ok(cfg.path(), &["plan", "--detailed-exit-code"], 1);
    assert!(text(&o.stderr).contains("--detailed-exit-code"));
    run_ok(cfg.path(), &["no-such-command"], 1);
    let o = bin().output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.status.code(), Some(1), "no subcommand");
    // help and version are not errors
    run_ok(cfg.path(), &["--help"], 0);
    run_ok(cfg.path(), &["--version"], 0);
    // 2 is for changes, under --detailed-exitcode only
    run_ok(cfg.path(), &["plan", "--detailed-exitcode"], 2);
    run_ok(cfg.path(), &["plan"], 0);
}

#[test]
fn usage_error_under_json_is_json_on_stdout() {
    let cfg = local_nodes_config(1);
    let o = run_ok(cfg.path(), &["plan", "--json", "--bogus"], 1);
    let doc = json(&o.stdout);
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["diagnostics"][0]["code"], "mirrorplan::cli::usage");
    assert!(doc["diagnostics"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("--bogus")));
}

#[test]
fn configuration_error_under_json_is_json_on_stdout() {
    let cfg = local_nodes_config(1);
    let main = cfg.path().join("main.hcl");
    let hcl = std::fs::read_to_string(&main).unwrap_or_default();
    std::fs::write(
        &main,
        hcl.replace("namespace = \"mirror\"", "namespase = \"mirror\""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for args in [
        &["plan", "--json"][..],
        &["plan", "--format", "json"],
        &["apply", "--json", "--auto-approve"],
    ] {
        let o = run_ok(cfg.path(), args, 1);
        let doc = json(&o.stdout);
        let d = &doc["diagnostics"][0];
        assert_eq!(
            d["code"], "mirrorplan::config::unknown_attribute",
            "{args:?}"
        );
        assert_eq!(d["file"], "main.hcl", "{args:?}");
        assert_eq!(d["line"], 3, "{args:?}");
        assert!(d["column"].as_u64().is_some(), "{args:?}");
        // and the human diagnostics still go to stderr
        assert!(text(&o.stderr).contains("namespase"), "{args:?}");
    }
}

#[test]
fn runtime_error_under_json_is_json_on_stdout() {
    let cfg = local_nodes_config(1);
    let o = run_ok(cfg.path(), &["apply", "--json", "no-such-plan"], 1);
    let doc = json(&o.stdout);
    assert_eq!(doc["error"], true);
    assert!(doc["diagnostics"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("no-such-plan")));
}

#[test]
fn closed_pipe_ends_the_output_quietly() {
    let cfg = local_nodes_config(3);
    run_ok(cfg.path(), &["apply", "--auto-approve"], 0);
    for args in [
        &["show"][..],
        &["show", "--json"],
        &["plan"],
        &["completions", "bash"],
    ] {
        let mut child = bin()
            .arg("-C")
            .arg(cfg.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        // the reader goes away before anything is written (`| head -0`)
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
    // the lock was released: the next command takes it
    run_ok(cfg.path(), &["plan", "--detailed-exitcode"], 0);
}

/// `mirrorplan ARGS` in a pseudo-terminal (util-linux `script`) with `TERM`.
fn in_terminal(dir: &Path, args: &str, term: &str) -> String {
    let bin = env!("CARGO_BIN_EXE_mirrorplan");
    let inner = format!("'{bin}' -C '{}' {args}", dir.display());
    let o = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("TERM", term)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run script (util-linux): {e}"));
    text(&o.stdout)
}

#[test]
fn term_dumb_gets_no_colour() {
    let cfg = local_nodes_config(1);
    let coloured = in_terminal(cfg.path(), "plan", "xterm-256color");
    assert!(
        coloured.contains('\x1b'),
        "a terminal gets colour:\n{coloured}"
    );
    let dumb = in_terminal(cfg.path(), "plan", "dumb");
    assert!(dumb.contains("to add"), "{dumb}");
    assert!(!dumb.contains('\x1b'), "TERM=dumb got escapes:\n{dumb:?}");
}

#[test]
fn fmt_reports_parse_errors_as_diagnostics() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("main.hcl"),
        "registry \"a\" {\n  endpoint = \n}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for args in [&["fmt"][..], &["fmt", "--check"]] {
        let o = run_ok(dir.path(), args, 1);
        let stderr = unwrapped(&text(&o.stderr));
        assert!(stderr.contains("mirrorplan::config::syntax"), "{stderr}");
        assert!(stderr.contains("main.hcl:2:"), "{stderr}");
    }
    // the same code and place as `validate`
    let o = run_ok(dir.path(), &["validate"], 1);
    assert!(unwrapped(&text(&o.stderr)).contains("main.hcl:2:"));
}

#[test]
fn terraform_style_single_dash_flags_work() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    let o = run_ok(dir, &["plan", "-out=tfplan", "-lock-timeout=5s"], 0);
    assert!(text(&o.stdout).contains("Saved the plan to"));
    run_ok(dir, &["plan", "-detailed-exitcode", "-refresh=false"], 2);
    run_ok(dir, &["apply", "tfplan"], 0);
    run_ok(dir, &["plan", "-detailed-exitcode"], 0);
    run_ok(dir, &["destroy", "-auto-approve"], 0);
    // a value after `--`-style end of flags is left alone
    run_ok(dir, &["plan", "-target", "node.big"], 0);
}

#[test]
fn destroy_reports_destroy_complete_and_forgets_outputs() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    let o = run_ok(dir, &["apply", "--auto-approve"], 0);
    assert!(text(&o.stdout).contains("Outputs:"));
    let o = run_ok(dir, &["destroy", "--auto-approve"], 0);
    let stdout = text(&o.stdout);
    assert!(stdout.contains("Destroy complete! Resources: "), "{stdout}");
    assert!(!stdout.contains("Apply complete!"), "{stdout}");
    assert!(!stdout.contains("Outputs:"), "{stdout}");
    let o = run_ok(dir, &["output", "--json"], 0);
    assert_eq!(json(&o.stdout), serde_json::json!({}));
}

#[test]
fn read_only_commands_offer_no_lock_flags_and_destroy_no_refresh_only() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    for args in [
        &["show", "--lock=false"][..],
        &["show", "--lock-timeout", "1s"],
        &["verify", "--lock=false"],
        &["output", "--lock=false"],
        &["state", "list", "--lock=false"],
        &["destroy", "--refresh-only", "--auto-approve"],
    ] {
        let o = run_ok(dir, args, 1);
        assert!(text(&o.stderr).contains("unexpected argument"), "{args:?}");
    }
    for (args, absent) in [
        (&["show", "--help"][..], "--lock"),
        (&["verify", "--help"], "--lock"),
        (&["destroy", "--help"], "--refresh-only"),
    ] {
        let o = run_ok(dir, args, 0);
        assert!(!text(&o.stdout).contains(absent), "{args:?}");
    }
}

#[test]
fn mistyped_target_suggests_the_closest_address() {
    let cfg = local_nodes_config(1);
    let o = run_ok(cfg.path(), &["plan", "--target", "cluster.bgi"], 1);
    let stderr = unwrapped(&text(&o.stderr));
    assert!(stderr.contains("target_not_found"), "{stderr}");
    assert!(stderr.contains("did you mean `cluster.big`?"), "{stderr}");
}

#[test]
fn undeclared_var_is_refused() {
    let cfg = local_nodes_config(1);
    let main = cfg.path().join("main.hcl");
    let mut hcl = std::fs::read_to_string(&main).unwrap_or_default();
    hcl.push_str("\nvariable \"site\" {\n  default = \"a\"\n}\n");
    std::fs::write(&main, hcl).unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(cfg.path(), &["plan", "--var", "stie=b"], 1);
    let stderr = unwrapped(&text(&o.stderr));
    assert!(stderr.contains("undeclared_var"), "{stderr}");
    assert!(stderr.contains("did you mean `site`?"), "{stderr}");
    assert!(!cfg.path().join(".mirrorplan").exists(), "it went on");
    run_ok(cfg.path(), &["plan", "--var", "site=b"], 0);
}
