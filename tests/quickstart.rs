//! End-to-end tests of the whole plan/apply cycle of the `mirrorplan` binary on
//! a temporary copy of `examples/quickstart` (a local OCI store and two
//! `local:` nodes): what apply writes, the state file, drift detection, saved
//! plans, approval, destroy, the state and output commands, and `--target`.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const NODE1: &str = r#"node.local["local:./nodes/node1"]"#;
const NODE2: &str = r#"node.local["local:./nodes/node2"]"#;
const GCR_HOSTS: &str = "etc/containerd/certs.d/gcr.io/hosts.toml";
const CLUSTER: &str = "cluster.local";
const IMAGES: [&str; 3] = [
    r#"image.bundle["docker.io/library/base-2:latest"]"#,
    r#"image.bundle["gcr.io/mirrorplan-fixtures/app-0:1.0"]"#,
    r#"image.bundle["quay.io/mirrorplan/tool-1:v1"]"#,
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        }
    }
}

/// A fresh copy of the quickstart in a temporary directory.
fn quickstart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"),
        dir.path(),
    );
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn node_file(dir: &Path, node: &str, file: &str) -> PathBuf {
    dir.join("nodes").join(node).join(file)
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join(".mirrorplan/state.json")
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

/// `s` with the temporary directory (as given and canonical) replaced by
/// `[DIR]`, and the digests computed over it (`config_digest`) by `[DIGEST]`.
fn redact(s: &str, dir: &Path) -> String {
    let mut out = s.to_string();
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for p in [canonical, dir.to_path_buf()] {
        out = out.replace(&p.display().to_string(), "[DIR]");
    }
    out.lines()
        .map(|line| match line.split_once("config_digest") {
            Some((head, rest)) if rest.contains("\"blake3:") => {
                let eq = rest.find('=').map_or(rest.len(), |i| i + 1);
                format!("{head}config_digest{} \"[DIGEST]\"", &rest[..eq])
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every regular file under `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn first_plan_shows_every_instance_and_writes_nothing() {
    let qs = quickstart();
    let dir = qs.path();
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 2);
    let stdout = redact(&text(&o.stdout), dir);
    assert!(!stdout.contains(&dir.display().to_string()));
    insta::assert_snapshot!("first_plan", stdout);
    // plan is read-only: no state, no store, no node files
    assert!(!state_path(dir).exists(), "plan wrote the state");
    assert!(!dir.join("store").exists(), "plan wrote the store");
    assert!(
        !dir.join("nodes").exists(),
        "plan made the node directories"
    );
    assert!(
        files_under(&dir.join("nodes")).is_empty(),
        "plan wrote node files"
    );
}

#[test]
fn apply_writes_store_nodes_and_state_and_converges() {
    let qs = quickstart();
    let dir = qs.path();
    let o = run_ok(dir, &["apply", "--auto-approve"], 0);
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("Apply complete! Resources: 7 added, 0 changed, 0 destroyed."),
        "{stdout}"
    );
    assert!(stdout.contains("store = \"oci:./store\""), "{stdout}");

    // the OCI store
    let layout = json(&read(&dir.join("store/oci-layout")));
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index = json(&read(&dir.join("store/index.json")));
    let mut refs: Vec<String> = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("index.json has no manifests: {index}"))
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    refs.sort();
    assert_eq!(
        refs,
        [
            "mirror/library/base-2:latest",
            "mirror/mirrorplan-fixtures/app-0:1.0",
            "mirror/mirrorplan/tool-1:v1"
        ]
    );
    for m in index["manifests"].as_array().into_iter().flatten() {
        let digest = m["digest"].as_str().unwrap_or_default();
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        assert!(
            dir.join("store/blobs/sha256").join(hex).is_file(),
            "manifest blob {digest} missing from the store"
        );
    }

    // the nodes
    for node in ["node1", "node2"] {
        let hosts = read(&node_file(dir, node, GCR_HOSTS));
        assert!(hosts.contains("server = \"https://gcr.io\""), "{hosts}");
        assert!(
            hosts.contains("[host.\"http://127.0.0.1:5000/v2/mirror\"]"),
            "{hosts}"
        );
        for host in ["docker.io", "quay.io"] {
            let f = node_file(
                dir,
                node,
                &format!("etc/containerd/certs.d/{host}/hosts.toml"),
            );
            assert!(read(&f).contains("127.0.0.1:5000"), "{}", f.display());
        }
        let config = read(&node_file(dir, node, "etc/containerd/config.toml"));
        assert!(
            config.contains("config_path = \"/etc/containerd/certs.d\""),
            "{config}"
        );
    }

    // the state file: private, valid, loadable, with every instance
    let path = state_path(dir);
    let mode = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "state mode {mode:o}");
    let raw = json(&read(&path));
    assert!(
        raw["lineage"].as_str().is_some_and(|l| l.len() == 36),
        "{raw}"
    );
    assert!(raw["serial"].as_u64().is_some_and(|s| s >= 1), "{raw}");
    let state = mirrorplan_state::StateStore::new(&path)
        .load()
        .unwrap_or_else(|e| panic!("state does not load: {e}"))
        .unwrap_or_else(|| panic!("no state"));
    let addrs: Vec<&String> = state.instances().keys().collect();
    let mut expected: Vec<&str> = vec![CLUSTER];
    expected.extend(IMAGES);
    expected.extend(["image_set.bundle", NODE1, NODE2]);
    assert_eq!(addrs, expected);
    // the lock is released: no lock info left behind
    assert!(!dir.join(".mirrorplan/state.json.lock.info").exists());

    // nothing left to do; plan does not change the state
    let serial = state.serial();
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 0);
    assert!(
        text(&o.stdout).contains("No changes."),
        "{}",
        text(&o.stdout)
    );
    let again = run_ok(dir, &["apply", "--auto-approve"], 0);
    assert!(text(&again.stdout).contains("No changes."));
    let reloaded = mirrorplan_state::StateStore::new(&path).load();
    assert_eq!(reloaded.ok().flatten().map(|s| s.serial()), Some(serial));
}

#[test]
fn hand_edited_node_file_is_drift_and_apply_repairs_it() {
    let qs = quickstart();
    let dir = qs.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let hosts = node_file(dir, "node1", GCR_HOSTS);
    let original = read(&hosts);
    std::fs::write(&hosts, format!("{original}# edited by hand\n")).unwrap_or_default();

    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 2);
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("Objects have changed outside of mirrorplan"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("# {NODE1} has changed")),
        "{stdout}"
    );
    assert!(stdout.contains("+# edited by hand"), "{stdout}");
    assert!(stdout.contains("-# edited by hand"), "{stdout}");
    assert!(
        stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{stdout}"
    );
    assert!(!stdout.contains(NODE2), "node2 did not change:\n{stdout}");

    let o = run_ok(dir, &["plan", "--json"], 0);
    let plan = json(&text(&o.stdout));
    let drift = plan["drift"]
        .as_array()
        .unwrap_or_else(|| panic!("no drift array: {plan}"));
    assert_eq!(drift.len(), 1, "{plan}");
    assert_eq!(drift[0]["address"], NODE1);
    let change = &drift[0]["changes"][0];
    assert_eq!(
        change["attribute"],
        "file:/etc/containerd/certs.d/gcr.io/hosts.toml"
    );
    assert_eq!(change["before"], original.as_str());
    assert!(change["after"]
        .as_str()
        .is_some_and(|a| a.ends_with("# edited by hand\n")));
    let updates: Vec<&serde_json::Value> = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["action"] != "no-op")
        .collect();
    assert_eq!(updates.len(), 1, "{plan}");
    assert_eq!(updates[0]["address"], NODE1);
    assert_eq!(updates[0]["action"], "update");

    run_ok(dir, &["apply", "--auto-approve"], 0);
    assert_eq!(read(&hosts), original);
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn saved_plan_applies_once_and_damaged_plans_are_refused() {
    let qs = quickstart();
    let dir = qs.path();
    let plan_file = dir.join("tfplan");
    // a relative plan path is relative to the -C directory
    let o = run_ok(dir, &["plan", "--out", "tfplan"], 0);
    assert!(text(&o.stdout).contains("Saved the plan to"));
    let mode = std::fs::metadata(&plan_file)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default();
    assert_eq!(mode, 0o600, "plan file mode {mode:o}");
    let saved = std::fs::read(&plan_file).unwrap_or_default();
    assert!(
        files_under(&dir.join("nodes")).is_empty(),
        "plan --out applied something"
    );

    // damaged copies are refused before anything is done
    let edited = text(&saved).replacen("\"blobs\": 3", "\"blobs\": 4", 1);
    assert_ne!(edited, text(&saved));
    std::fs::write(dir.join("edited"), edited).unwrap_or_default();
    let o = run_ok(dir, &["apply", "edited"], 1);
    assert!(text(&o.stderr).contains("checksum"), "{}", text(&o.stderr));
    std::fs::write(dir.join("cut"), &saved[..saved.len() / 2]).unwrap_or_default();
    let o = run_ok(dir, &["apply", "cut"], 1);
    assert!(text(&o.stderr).contains("plan file"), "{}", text(&o.stderr));
    std::fs::write(dir.join("other"), "{\"format\": \"terraform\"}").unwrap_or_default();
    let o = run_ok(dir, &["apply", "other"], 1);
    assert!(
        text(&o.stderr).contains("not a mirrorplan plan file"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        files_under(&dir.join("nodes")).is_empty(),
        "a refused plan applied something"
    );

    // the saved plan applies (no approval needed) ...
    let o = run_ok(dir, &["apply", "tfplan"], 0);
    assert!(text(&o.stdout).contains("7 added"), "{}", text(&o.stdout));
    assert!(node_file(dir, "node2", GCR_HOSTS).is_file());
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);

    // ... once: the state has moved on since it was made
    let o = run_ok(dir, &["apply", "tfplan"], 1);
    let stderr = text(&o.stderr);
    assert!(stderr.contains("stale"), "{stderr}");
    assert!(stderr.contains("serial"), "{stderr}");
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let qs = quickstart();
    let dir = qs.path();
    let o = run_ok(dir, &["apply"], 1);
    let stderr = text(&o.stderr);
    assert!(stderr.contains("not a terminal"), "{stderr}");
    assert!(stderr.contains("--auto-approve"), "{stderr}");
    assert!(
        files_under(&dir.join("nodes")).is_empty(),
        "apply went ahead without approval"
    );
    assert!(
        !dir.join("store").exists(),
        "apply went ahead without approval"
    );

    run_ok(dir, &["apply", "--auto-approve"], 0);
    let o = run_ok(dir, &["destroy"], 1);
    assert!(text(&o.stderr).contains("not a terminal"));
    assert!(node_file(dir, "node1", GCR_HOSTS).is_file());
}

#[test]
fn destroy_removes_the_node_files_and_forgets_everything() {
    let qs = quickstart();
    let dir = qs.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let o = run_ok(dir, &["destroy", "--auto-approve"], 0);
    assert!(
        text(&o.stdout).contains("Destroy complete! Resources: 7 destroyed."),
        "{}",
        text(&o.stdout)
    );
    for node in ["node1", "node2"] {
        for host in ["gcr.io", "docker.io", "quay.io"] {
            let f = node_file(
                dir,
                node,
                &format!("etc/containerd/certs.d/{host}/hosts.toml"),
            );
            assert!(!f.exists(), "{} survived destroy", f.display());
        }
    }
    // images are only forgotten (prune = false): the store keeps them
    assert!(read(&dir.join("store/index.json")).contains("mirror/mirrorplan/tool-1:v1"));
    let o = run_ok(dir, &["state", "list"], 0);
    assert_eq!(text(&o.stdout).trim(), "");
    // everything would be created again, except the images the store
    // still holds: those are recorded as they are (issue 14)
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 2);
    assert!(
        text(&o.stdout).contains("Plan: 3 to import, 4 to add, 0 to change, 0 to destroy."),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn state_and_output_commands_read_the_state() {
    let qs = quickstart();
    let dir = qs.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);

    let o = run_ok(dir, &["state", "list"], 0);
    let listed: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
    let mut expected: Vec<&str> = vec![CLUSTER];
    expected.extend(IMAGES);
    expected.extend(["image_set.bundle", NODE1, NODE2]);
    assert_eq!(listed, expected);

    let o = run_ok(dir, &["state", "show", NODE1], 0);
    let shown = text(&o.stdout);
    assert!(shown.starts_with(&format!("# {NODE1}")), "{shown}");
    assert!(shown.contains("provider"), "{shown}");
    assert!(shown.contains("\"node\""), "{shown}");
    assert!(shown.contains("server = \"https://gcr.io\""), "{shown}");
    let o = run_ok(dir, &["state", "show", r#"node.local["nope"]"#], 1);
    assert!(
        text(&o.stderr).contains("no instance"),
        "{}",
        text(&o.stderr)
    );

    let o = run_ok(dir, &["output", "--json"], 0);
    let outputs = json(&text(&o.stdout));
    assert_eq!(outputs["store"]["value"], "oci:./store");
    assert_eq!(outputs["store"]["sensitive"], false);
    let o = run_ok(dir, &["output", "store"], 0);
    assert_eq!(text(&o.stdout).trim(), "oci:./store");
    let o = run_ok(dir, &["output", "nope"], 1);
    assert!(text(&o.stderr).contains("nope"));

    // state rm forgets without touching the node; the next plan finds its
    // files as configured and records it again, writing nothing
    run_ok(dir, &["state", "rm", NODE2], 0);
    let o = run_ok(dir, &["state", "list"], 0);
    assert!(!text(&o.stdout).contains(NODE2));
    assert!(node_file(dir, "node2", GCR_HOSTS).is_file());
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 2);
    assert!(
        text(&o.stdout).contains(&format!("# {NODE2} is already present, will be recorded")),
        "{}",
        text(&o.stdout)
    );
}

/// node1 is targeted: node2 depends on it (rollout batches of one node), so
/// targeting node2 would select node1 too.
#[test]
fn target_limits_plan_and_apply() {
    let qs = quickstart();
    let dir = qs.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    for node in ["node1", "node2"] {
        std::fs::write(node_file(dir, node, GCR_HOSTS), "# replaced\n").unwrap_or_default();
    }
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 2);
    assert!(text(&o.stdout).contains("0 to add, 2 to change, 0 to destroy"));

    let o = run_ok(dir, &["plan", "--detailed-exitcode", "--target", NODE1], 2);
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains(&format!("# {NODE1} will be updated in place")),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("# {NODE2} will be updated")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{stdout}"
    );
    assert!(stdout.contains("limited to"), "{stdout}");

    let o = run_ok(dir, &["plan", "--target", "node.local[bad"], 1);
    assert!(text(&o.stderr).contains("--target"), "{}", text(&o.stderr));

    run_ok(dir, &["apply", "--auto-approve", "--target", NODE1], 0);
    assert!(read(&node_file(dir, "node1", GCR_HOSTS)).contains("https://gcr.io"));
    assert_eq!(read(&node_file(dir, "node2", GCR_HOSTS)), "# replaced\n");
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 2);
    assert!(text(&o.stdout).contains("0 to add, 1 to change, 0 to destroy"));
}
