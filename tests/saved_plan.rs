//! Saved plan files cannot be tampered with (issue 11): a plan file is
//! checked with a key derived from the state's private salt, which the file
//! does not hold, so an edit whose checksum is recomputed the way anyone
//! holding only the file could recompute it is refused before anything is
//! done; and `show` checks it the same way.

mod common;
use common::*;

use std::path::Path;

fn plan_file(dir: &Path) -> serde_json::Value {
    run_ok(dir, &["plan", "--out", "tfplan"], 0);
    let bytes = std::fs::read(dir.join("tfplan")).unwrap_or_else(|e| panic!("read plan: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("plan JSON: {e}"))
}

/// The node change of the plan body.
fn node_after(file: &mut serde_json::Value) -> &mut serde_json::Map<String, serde_json::Value> {
    let changes = file["body"]["changes"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("changes"));
    let node = changes
        .iter_mut()
        .find(|c| {
            c["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("node."))
        })
        .unwrap_or_else(|| panic!("no node change"));
    node["after"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("node after"))
}

/// Writes `file` with each checksum an attacker could compute without the
/// state's key, and asserts `apply` refuses each one and writes nothing.
fn assert_every_forgery_refused(dir: &Path, mut file: serde_json::Value, case: &str) {
    let body = file["body"].to_string();
    for checksum in [
        format!("blake3:{}", blake3::hash(body.as_bytes()).to_hex()),
        format!("blake3-keyed:{}", blake3::hash(body.as_bytes()).to_hex()),
        format!(
            "blake3-keyed:{}",
            blake3::keyed_hash(&[0; 32], body.as_bytes()).to_hex()
        ),
    ] {
        file["checksum"] = checksum.into();
        let forged = serde_json::to_vec_pretty(&file).unwrap_or_default();
        std::fs::write(dir.join("forged"), forged).unwrap_or_else(|e| panic!("{e}"));
        let o = run_ok(dir, &["apply", "forged"], 1);
        let stderr = unwrapped(&text(&o.stderr));
        assert!(
            stderr.contains("plan_tampered") || stderr.contains("plan_file"),
            "{case}: {stderr}"
        );
        let o = run_ok(dir, &["show", "forged"], 1);
        assert!(o.stdout.is_empty(), "{case}: show printed a forged plan");
        assert!(
            !dir.join("nodes").exists(),
            "{case}: a forged plan wrote node files"
        );
        assert!(
            !dir.join("elsewhere").exists(),
            "{case}: a forged plan wrote elsewhere"
        );
    }
}

#[test]
fn edited_plan_restart_command_with_recomputed_checksum_is_refused() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    let mut file = plan_file(dir);
    node_after(&mut file).insert(
        "restart_command".into(),
        format!("touch {}/elsewhere", dir.display()).into(),
    );
    assert_every_forgery_refused(dir, file, "restart_command");
}

#[test]
fn edited_plan_foreign_mirror_in_hosts_toml_is_refused() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    let mut file = plan_file(dir);
    let after = node_after(&mut file);
    let key = "file:/etc/containerd/certs.d/gcr.io/hosts.toml";
    let hosts = after[key].as_str().unwrap_or_default().to_string();
    assert!(hosts.contains("127.0.0.1:5000"), "{hosts}");
    after.insert(
        key.into(),
        hosts
            .replace("127.0.0.1:5000", "attacker.example:5000")
            .into(),
    );
    assert_every_forgery_refused(dir, file, "hosts.toml");
}

#[test]
fn edited_plan_node_transport_is_refused() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    let mut file = plan_file(dir);
    let after = node_after(&mut file);
    let transport = after["transport"].to_string();
    assert!(transport.contains("nodes/n0"), "{transport}");
    let moved = transport.replace("nodes/n0", "elsewhere");
    after.insert(
        "transport".into(),
        serde_json::from_str(&moved).unwrap_or_default(),
    );
    assert_every_forgery_refused(dir, file, "transport");
}

#[test]
fn plan_file_holds_neither_the_state_salt_nor_a_key() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    plan_file(dir);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path(dir)).unwrap_or_default())
            .unwrap_or_else(|e| panic!("state JSON: {e}"));
    let salt = state["secret_salt"].as_str().unwrap_or_default();
    assert!(salt.len() >= 16, "state salt {salt:?}");
    let plan = std::fs::read_to_string(dir.join("tfplan")).unwrap_or_default();
    assert!(!plan.contains(salt), "the plan file holds the state's salt");
    // nor does any output show it
    for args in [&["show", "--json"][..], &["show"], &["state", "list"]] {
        let o = run_ok(dir, args, 0);
        assert!(!text(&o.stdout).contains(salt), "{args:?} shows the salt");
        assert!(!text(&o.stderr).contains(salt), "{args:?} shows the salt");
    }
    assert!(plan.contains("\"checksum\": \"blake3-keyed:"), "{plan}");
    // the intact file is shown and applied
    let o = run_ok(dir, &["show", "tfplan"], 0);
    assert!(text(&o.stdout).contains("to add"), "{}", text(&o.stdout));
    run_ok(dir, &["apply", "tfplan"], 0);
    assert!(dir
        .join("nodes/n0/etc/containerd/certs.d/gcr.io/hosts.toml")
        .is_file());
}

#[test]
fn plan_file_of_another_state_is_refused_as_stale() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    plan_file(dir);
    // a new state (another lineage and salt) beside the same configuration
    std::fs::remove_dir_all(dir.join(".mirrorplan")).unwrap_or_else(|e| panic!("{e}"));
    run_ok(dir, &["plan", "--out", "other"], 0);
    let o = run_ok(dir, &["apply", "tfplan"], 1);
    let stderr = unwrapped(&text(&o.stderr));
    assert!(stderr.contains("stale"), "{stderr}");
    assert!(!dir.join("nodes").exists());
}

/// A drift repair changes nothing the state records, but the apply still
/// moves the state on: the same plan file cannot be applied a second time
/// (issue 13: a saved plan is applied at most once).
#[test]
fn saved_plan_applies_at_most_once_even_after_a_pure_drift_repair() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let hosts = dir.join("nodes/n0/etc/containerd/certs.d/gcr.io/hosts.toml");
    let good = std::fs::read_to_string(&hosts).unwrap_or_default();
    std::fs::write(&hosts, format!("{good}# hand edit\n")).unwrap_or_else(|e| panic!("{e}"));
    let serial = |dir: &Path| -> u64 {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state_path(dir)).unwrap_or_default())
                .unwrap_or_default();
        state["serial"].as_u64().unwrap_or_default()
    };
    run_ok(dir, &["plan", "--out", "repair"], 0);
    let before = serial(dir);
    run_ok(dir, &["apply", "repair"], 0);
    assert_eq!(std::fs::read_to_string(&hosts).unwrap_or_default(), good);
    assert!(serial(dir) > before, "the apply did not move the state on");
    // the same drift again: the old plan is stale, not applied again
    std::fs::write(&hosts, format!("{good}# hand edit\n")).unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(dir, &["apply", "repair"], 1);
    let stderr = unwrapped(&text(&o.stderr));
    assert!(stderr.contains("stale"), "{stderr}");
    assert!(std::fs::read_to_string(&hosts)
        .unwrap_or_default()
        .ends_with("# hand edit\n"));
    // a fresh plan repairs it
    run_ok(dir, &["apply", "--auto-approve"], 0);
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);
}
