//! `mirrorplan verify` against a real lab (TLS + htpasswd registry, a
//! harness node with sshd and containerd, the bundle pushed and the node
//! configured by mirrorplan): it passes on the applied lab and fails with
//! the right reason after each way of breaking it, and an unreachable node
//! is a distinct error. The table and the JSON are checked, the table also
//! as a snapshot with placeholders.

mod verify_lab;

use verify_lab::{
    collapse_columns, image_address, json, stderr, stdout, streams, Lab, GCR_IMAGE, QUAY_IMAGE,
};

/// The rows of `verify --json` with this check and status.
fn rows<'a>(v: &'a serde_json::Value, check: &str, status: &str) -> Vec<&'a serde_json::Value> {
    v["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {v}"))
        .iter()
        .filter(|c| c["check"] == check && c["status"] == status)
        .collect()
}

/// Runs `verify --json`, expects `code`, returns the JSON.
fn verify_json(lab: &Lab, extra: &[&str], code: i32) -> serde_json::Value {
    let mut args = vec!["verify", "--json"];
    args.extend_from_slice(extra);
    let o = lab.run_ok(&args, code);
    json(&stdout(&o))
}

/// The only failing rows are of `check`, each reason holding `needle`.
fn assert_fails(v: &serde_json::Value, check: &str, target: &str, needle: &str) {
    let failing = rows(v, check, "fail");
    assert!(
        failing
            .iter()
            .any(|r| r["target"].as_str().is_some_and(|t| t.contains(target))
                && r["reason"].as_str().is_some_and(|s| s.contains(needle))),
        "no failing `{check}` row for {target} with {needle:?}:\n{v:#}"
    );
    assert_eq!(v["ok"], false, "{v:#}");
    assert_eq!(v["unreachable"], false, "{v:#}");
}

#[test]
fn verify_passes_then_fails_for_each_breakage() {
    let lab = Lab::start();
    let node = lab.node_address();

    // a correctly applied lab: everything passes; the canary pull is announced
    let o = lab.run_ok(&["verify"], 0);
    let table = stdout(&o);
    assert!(
        stderr(&o).contains(&format!("pulling {GCR_IMAGE} into the node's containerd")),
        "{}",
        streams(&o)
    );
    assert!(
        stderr(&o).contains("Verification passed"),
        "{}",
        streams(&o)
    );
    insta::assert_snapshot!("verify_table_clean", collapse_columns(&lab.redact(&table)));

    let v = verify_json(&lab, &[], 0);
    assert_eq!(v["format_version"], "1.0");
    assert_eq!(v["ok"], true);
    assert_eq!(v["summary"]["fail"], 0);
    assert_eq!(v["pulled"], serde_json::json!([node.clone()]));
    for check in ["digest", "config", "hosts", "ca", "conflict", "cri", "pull"] {
        assert!(
            !rows(&v, check, "ok").is_empty(),
            "no passing {check} row: {v:#}"
        );
    }
    let pull = &rows(&v, "pull", "ok")[0];
    assert!(
        pull["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&lab.digest(GCR_IMAGE))),
        "{pull}"
    );

    // --no-pull pulls nothing; scope flags narrow the checks
    let v = verify_json(&lab, &["--no-pull"], 0);
    assert_eq!(v["pulled"], serde_json::json!([]));
    assert!(rows(&v, "pull", "ok").is_empty());
    let v = verify_json(&lab, &["--image-set", "bundle"], 0);
    assert!(rows(&v, "hosts", "ok").is_empty(), "{v:#}");
    assert_eq!(rows(&v, "digest", "ok").len(), 3, "{v:#}");
    let v = verify_json(&lab, &["--cluster", "admin", "--no-pull"], 0);
    assert!(rows(&v, "digest", "ok").is_empty(), "{v:#}");
    let v = verify_json(&lab, &["--node", &lab.node_key(), "--no-pull"], 0);
    assert!(!rows(&v, "cri", "ok").is_empty(), "{v:#}");
    let o = lab.run(&["verify", "--cluster", "nope"]);
    assert_eq!(o.status.code(), Some(1), "{}", streams(&o));
    assert!(stderr(&o).contains("no such cluster"), "{}", streams(&o));

    // 1. a tag deleted from the mirror
    lab.delete_tag(QUAY_IMAGE);
    let v = verify_json(&lab, &["--no-pull"], 1);
    assert_fails(&v, "digest", &image_address(QUAY_IMAGE), "is missing in");
    assert_eq!(v["summary"]["fail"], 1, "{v:#}");
    lab.run_ok(&["apply", "--auto-approve"], 0);
    verify_json(&lab, &["--no-pull"], 0);

    // 2. a different manifest pushed under the tag (digest mismatch)
    let replaced = lab.replace_manifest(GCR_IMAGE);
    assert_ne!(replaced, lab.digest(GCR_IMAGE));
    let v = verify_json(&lab, &[], 1);
    assert_fails(
        &v,
        "digest",
        &image_address(GCR_IMAGE),
        &format!("is {replaced}, expected {}", lab.digest(GCR_IMAGE)),
    );
    assert_eq!(v["summary"]["fail"], 1, "{v:#}");
    lab.run_ok(&["apply", "--auto-approve"], 0);
    verify_json(&lab, &[], 0);

    // 3. hosts.toml edited to another endpoint
    let url = lab.registry.url();
    lab.edit_node_file("certs.d/quay.io/hosts.toml", &url, "https://127.0.0.1:1");
    let v = verify_json(&lab, &["--no-pull"], 1);
    assert_fails(
        &v,
        "hosts",
        "quay.io",
        "https://127.0.0.1:1/v2/test-namespace",
    );
    assert_eq!(v["summary"]["fail"], 1, "{v:#}");
    lab.run_ok(&["apply", "--auto-approve"], 0);
    verify_json(&lab, &["--no-pull"], 0);

    // 4. the CA file removed: the pull through the mirror fails as well
    let ca = lab.ca_file("gcr.io");
    std::fs::remove_file(&ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    let v = verify_json(&lab, &[], 1);
    assert_fails(&v, "ca", "gcr.io", "is missing");
    assert_fails(&v, "pull", &node, "failed");
    lab.run_ok(&["apply", "--auto-approve"], 0);
    verify_json(&lab, &[], 0);

    // 5. legacy mirrors beside config_path, containerd restarted: CRI is down
    lab.add_legacy_mirrors_and_restart();
    let o = lab.run_ok(&["verify"], 1);
    let table = stdout(&o);
    assert!(
        stderr(&o).contains("Verification failed"),
        "{}",
        streams(&o)
    );
    assert!(!stderr(&o).contains("could not reach"), "{}", streams(&o));
    insta::assert_snapshot!(
        "verify_table_conflict",
        collapse_columns(&lab.redact(&table))
    );
    let v = verify_json(&lab, &[], 1);
    assert_fails(&v, "conflict", &node, "refuses to load its CRI plugin");
    assert_fails(&v, "cri", &node, "CRI plugin does not answer");
    assert_fails(&v, "pull", &node, "CRI plugin does not answer");
    lab.run_ok(&["apply", "--auto-approve"], 0);
    verify_json(&lab, &[], 0);

    // 6. containerd stopped
    lab.stop_containerd();
    let v = verify_json(&lab, &["--no-pull"], 1);
    assert_fails(&v, "cri", &node, "containerd");
    assert_eq!(v["summary"]["fail"], 1, "{v:#}");
    lab.start_containerd();
    verify_json(&lab, &["--no-pull"], 0);
}

#[test]
fn an_unreachable_node_is_a_distinct_error() {
    let mut lab = Lab::start();
    lab.node.stop();
    let o = lab.run_ok(&["verify", "--json"], 1);
    let v = json(&stdout(&o));
    assert_eq!(v["unreachable"], true, "{v:#}");
    assert_eq!(rows(&v, "ssh", "unreachable").len(), 1, "{v:#}");
    let err = stderr(&o);
    assert!(
        err.contains("mirrorplan::verify::unreachable"),
        "{}",
        streams(&o)
    );
    assert!(err.contains("could not reach 1 target"), "{}", streams(&o));
    assert!(!err.contains("Verification failed"), "{}", streams(&o));
    // the registry half still ran and passed
    assert_eq!(rows(&v, "digest", "ok").len(), 3, "{v:#}");
}
