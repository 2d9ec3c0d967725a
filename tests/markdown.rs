//! The Markdown plan for merge-request comments (`plan --format markdown`,
//! `show PLANFILE --format markdown`), as snapshots with placeholders for
//! digests and paths: the quickstart's first plan, and a lab plan with drift
//! (first) and node file diffs whose credentials stay masked. Also the
//! non-interactive rules every pipeline relies on: `--json` is
//! `--format json`, no colour without a terminal, data on stdout only, and
//! no approval prompt without a terminal.

mod verify_lab;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use verify_lab::{redact_digests, stderr, stdout, streams, Lab};

fn quickstart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let st = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("cp: {e}"));
    assert!(st.success());
    dir
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mirrorplan"))
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mirrorplan: {e}"))
}

fn run_ok(dir: &Path, args: &[&str], code: i32) -> Output {
    let o = run(dir, args);
    assert_eq!(o.status.code(), Some(code), "{args:?}\n{}", streams(&o));
    o
}

#[test]
fn quickstart_plan_as_markdown() {
    let qs = quickstart();
    let dir = qs.path();
    let o = run_ok(
        dir,
        &["plan", "--format", "markdown", "--detailed-exitcode"],
        2,
    );
    let md = stdout(&o);
    assert!(
        md.starts_with("### mirrorplan plan: 7 to add, 0 to change, 0 to destroy"),
        "{md}"
    );
    assert!(!md.contains(&dir.display().to_string()), "{md}");
    // every <details> is closed
    assert_eq!(
        md.matches("<details").count(),
        md.matches("</details>").count(),
        "{md}"
    );
    insta::assert_snapshot!("quickstart_plan_markdown", redact_digests(&md));

    // a saved plan shows the same
    let planfile = dir.join("plan.bin");
    run_ok(
        dir,
        &[
            "plan",
            "--out",
            planfile.to_str().unwrap_or_default(),
            "--format",
            "markdown",
        ],
        0,
    );
    let o = run_ok(
        dir,
        &[
            "show",
            planfile.to_str().unwrap_or_default(),
            "--format",
            "markdown",
        ],
        0,
    );
    assert_eq!(stdout(&o), md);

    // --json is --format json
    let a = run_ok(dir, &["plan", "--json"], 0);
    let b = run_ok(dir, &["plan", "--format", "json"], 0);
    assert_eq!(stdout(&a), stdout(&b));
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&a)).unwrap_or_else(|e| panic!("not JSON: {e}"));
    assert_eq!(v["format_version"], "1.2");

    // no terminal: no colour on either stream, no progress on stdout
    for o in [&a, &b] {
        assert!(
            !stdout(o).contains('\x1b') && !stderr(o).contains('\x1b'),
            "{}",
            streams(o)
        );
    }
    // no terminal and no --auto-approve: an error, never a prompt that waits
    let o = run_ok(dir, &["apply"], 1);
    assert!(stderr(&o).contains("not a terminal"), "{}", streams(&o));
    assert!(!stderr(&o).contains("Enter a value"), "{}", streams(&o));
}

#[test]
fn lab_plan_markdown_puts_drift_first_and_masks_secrets() {
    let lab = Lab::start();
    // drift: a hosts.toml (which holds credentials) edited on the node
    lab.edit_node_file(
        "certs.d/gcr.io/hosts.toml",
        &lab.registry.url(),
        "https://127.0.0.1:1",
    );
    // and a change: docker.io is mirrored too
    let main = lab.path().join("main.hcl");
    let config = std::fs::read_to_string(&main).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &main,
        config.replace(
            "hosts            = [\"quay.io\"]",
            "hosts            = [\"quay.io\", \"docker.io\"]",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let o = lab.run_ok(&["plan", "--format", "markdown"], 0);
    let md = stdout(&o);
    let drift_at = md
        .find("<b>Drift</b>")
        .unwrap_or_else(|| panic!("no drift section:\n{md}"));
    let cluster_at = md
        .find("<b>Cluster")
        .unwrap_or_else(|| panic!("no cluster section:\n{md}"));
    assert!(drift_at < cluster_at, "drift must come first:\n{md}");
    assert!(md.contains("(sensitive value)"), "{md}");
    insta::assert_snapshot!("lab_plan_markdown", lab.redact(&md));

    // the refresh-only form for a cron job's report
    let o = lab.run_ok(
        &[
            "plan",
            "--refresh-only",
            "--format",
            "markdown",
            "--lock=false",
        ],
        0,
    );
    let md = stdout(&o);
    assert!(
        md.starts_with("### mirrorplan drift check: 1 object changed"),
        "{md}"
    );
    insta::assert_snapshot!("lab_drift_markdown", lab.redact(&md));
}
