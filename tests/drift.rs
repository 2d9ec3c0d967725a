//! Drift detection for cron: `plan --refresh-only --detailed-exitcode --json`
//! against a real lab. Exit 0 on a clean lab, 2 exactly when reality moved
//! away from the state (each way the source document cares about), with
//! the drifted instance and attribute in the JSON and secrets masked; 1 with
//! a distinct error when a node or the registry cannot be reached; and
//! `--lock=false` never waits for a lock held by an apply.

mod verify_lab;

use std::time::Duration;

use mirrorplan_state::{LockRequest, StateStore};
use verify_lab::{image_address, json, stderr, stdout, streams, Lab, GCR_IMAGE, QUAY_IMAGE};

const DRIFT: &[&str] = &[
    "plan",
    "--refresh-only",
    "--detailed-exitcode",
    "--json",
    "--lock=false",
];

/// Runs the drift check, expects `code`, returns the JSON plan.
fn drift(lab: &Lab, code: i32) -> serde_json::Value {
    let o = lab.run_ok(DRIFT, code);
    json(&stdout(&o))
}

/// The drift entry of `address`.
fn entry<'a>(v: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    v["drift"]
        .as_array()
        .unwrap_or_else(|| panic!("no drift array: {v:#}"))
        .iter()
        .find(|d| d["address"] == address)
        .unwrap_or_else(|| panic!("{address} did not drift: {v:#}"))
}

/// The change of `attribute` in a drift entry.
fn change<'a>(e: &'a serde_json::Value, attribute: &str) -> &'a serde_json::Value {
    e["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes: {e:#}"))
        .iter()
        .find(|c| c["attribute"] == attribute)
        .unwrap_or_else(|| panic!("{attribute} did not change: {e:#}"))
}

fn drifted(v: &serde_json::Value) -> usize {
    v["drift"].as_array().map_or(0, Vec::len)
}

/// Puts the lab back with an apply and checks the drift check is clean.
fn repair(lab: &Lab) {
    lab.run_ok(&["apply", "--auto-approve"], 0);
    let v = drift(lab, 0);
    assert_eq!(drifted(&v), 0, "{v:#}");
}

#[test]
fn drift_exit_codes_and_json_for_each_change() {
    let lab = Lab::start();
    let node = lab.node_address();

    // clean: exit 0, nothing drifted, a refresh-only plan
    let v = drift(&lab, 0);
    assert_eq!(v["format_version"], "1.2");
    assert_eq!(v["refresh_only"], true);
    assert_eq!(drifted(&v), 0, "{v:#}");

    // a tag deleted in the mirror
    lab.delete_tag(QUAY_IMAGE);
    let v = drift(&lab, 2);
    assert_eq!(drifted(&v), 1, "{v:#}");
    assert_eq!(entry(&v, &image_address(QUAY_IMAGE))["gone"], true);
    repair(&lab);

    // a tag moved to other content
    let replaced = lab.replace_manifest(GCR_IMAGE);
    let v = drift(&lab, 2);
    let c = change(entry(&v, &image_address(GCR_IMAGE)), "digest");
    assert_eq!(c["before"], lab.digest(GCR_IMAGE).as_str(), "{c:#}");
    assert_eq!(c["after"], replaced.as_str(), "{c:#}");
    repair(&lab);

    // a node file edited: the pull credentials live in config.toml
    // (`registry.configs."HOST".auth`), so the hosts.toml drift is shown as
    // it is, and nothing secret is in it
    lab.edit_node_file(
        "certs.d/quay.io/hosts.toml",
        &lab.registry.url(),
        "https://127.0.0.1:1",
    );
    let v = drift(&lab, 2);
    let c = change(
        entry(&v, &node),
        "file:/etc/containerd/certs.d/quay.io/hosts.toml",
    );
    assert_eq!(c["sensitive"], false, "{c:#}");
    let after = c["after"].as_str().unwrap_or_default();
    assert!(after.contains("https://127.0.0.1:1/"), "{c:#}");
    assert!(!after.contains("Authorization"), "{c:#}");
    repair(&lab);

    // a node file removed
    let ca = lab.ca_file("gcr.io");
    std::fs::remove_file(&ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    let v = drift(&lab, 2);
    let name = ca
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let c = change(
        entry(&v, &node),
        &format!("file:/etc/containerd/certs.d/gcr.io/{name}"),
    );
    assert!(c["after"].is_null(), "{c:#}");
    assert!(
        c["before"]
            .as_str()
            .is_some_and(|s| s.contains("BEGIN CERTIFICATE")),
        "{c:#}"
    );
    repair(&lab);

    // containerd's config no longer points at the hosts directory
    lab.edit_node_file(
        "config.toml",
        "\"/etc/containerd/certs.d\"",
        "\"/etc/containerd/elsewhere\"",
    );
    let v = drift(&lab, 2);
    let c = change(entry(&v, &node), "file:/etc/containerd/config.toml");
    // config.toml holds the pull credentials (registry.configs."HOST".auth):
    // its drift is named, its contents masked
    assert_eq!(c["sensitive"], true, "{c:#}");
    assert_eq!(c["after"], "(sensitive value)", "{c:#}");
    // the human form says the same, drift first
    let o = lab.run_ok(
        &[
            "plan",
            "--refresh-only",
            "--detailed-exitcode",
            "--lock=false",
        ],
        2,
    );
    let text = stdout(&o);
    assert!(
        text.starts_with("Note: Objects have changed outside of mirrorplan"),
        "{text}"
    );
    assert!(text.contains(&format!("{node} has changed")), "{text}");
    repair(&lab);

    // legacy mirrors beside config_path (and containerd restarted on it)
    lab.add_legacy_mirrors_and_restart();
    let v = drift(&lab, 2);
    let c = change(entry(&v, &node), "file:/etc/containerd/config.toml");
    assert_eq!(c["after"], "(sensitive value)", "{c:#}");
    repair(&lab);

    // containerd stopped: the node is reachable, its files are intact, but
    // containerd no longer serves CRI: the cluster drifts, naming the node
    lab.stop_containerd();
    let v = drift(&lab, 2);
    assert_eq!(drifted(&v), 1, "{v:#}");
    let cluster = v["drift"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(cluster.starts_with("cluster."), "{v:#}");
    let c = change(entry(&v, &cluster), "cri_down");
    assert_eq!(c["before"], serde_json::json!([]), "{c:#}");
    assert_eq!(c["after"].as_array().map(Vec::len), Some(1), "{c:#}");
    lab.start_containerd();
    let v = drift(&lab, 0);
    assert_eq!(drifted(&v), 0, "{v:#}");
}

/// With --json the error is also a JSON document on stdout, never a plan.
fn assert_unreachable_json(o: &std::process::Output) {
    let doc: serde_json::Value = serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", streams(o)));
    assert_eq!(doc["error"], true, "{doc:#}");
    assert!(doc.get("resource_changes").is_none(), "{doc:#}");
    assert_eq!(
        doc["diagnostics"][0]["code"], "mirrorplan::refresh::unreachable",
        "{doc:#}"
    );
}

#[test]
fn lock_false_does_not_wait_and_unreachable_is_exit_1() {
    let mut lab = Lab::start();

    // an apply holds the lock: the cron check still runs, a locking plan does not
    let store = StateStore::new(lab.path().join(".mirrorplan/state.json"));
    let held = store
        .lock(LockRequest {
            operation: "apply".into(),
            timeout: Duration::ZERO,
        })
        .unwrap_or_else(|e| panic!("taking the lock: {e}"));
    let v = drift(&lab, 0);
    assert_eq!(drifted(&v), 0, "{v:#}");
    let o = lab.run_ok(&["plan", "--refresh-only", "--detailed-exitcode"], 1);
    assert!(
        stderr(&o).to_lowercase().contains("lock"),
        "{}",
        streams(&o)
    );
    drop(held);

    // the registry gone: exit 1 with the unreachable error, never 0 or 2
    lab.registry.stop();
    let o = lab.run_ok(DRIFT, 1);
    assert!(
        stderr(&o).contains("mirrorplan::refresh::unreachable"),
        "{}",
        streams(&o)
    );
    assert_unreachable_json(&o);
    lab.registry
        .start_again()
        .unwrap_or_else(|e| panic!("restarting the registry: {e}"));
    drift(&lab, 0);

    // the node gone: the same
    lab.node.stop();
    let o = lab.run_ok(DRIFT, 1);
    let err = stderr(&o);
    assert!(
        err.contains("mirrorplan::refresh::unreachable"),
        "{}",
        streams(&o)
    );
    assert!(err.contains(&lab.node_address()), "{}", streams(&o));
    assert!(err.contains("drift is unknown"), "{}", streams(&o));
    assert_unreachable_json(&o);
}
