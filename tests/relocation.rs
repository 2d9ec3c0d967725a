//! Relocatable state and plans (issue 13): nothing recorded depends on the
//! absolute path of the checkout. Paths are recorded relative to the
//! configuration directory, a bundle is identified by its content, and a
//! checkout at another path plans "No changes" against the same state and
//! acts only on what its own configuration names.

mod common;
use common::*;

use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("copy: {e}"));
        }
    }
}

fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

const HOSTS: &str = "etc/containerd/certs.d/gcr.io/hosts.toml";

#[test]
fn nothing_recorded_holds_the_checkout_path() {
    let cfg = local_nodes_config(2);
    let dir = cfg.path();
    let abs = canonical(dir);
    run_ok(dir, &["plan", "--out", "tfplan"], 0);
    let plan_json = run_ok(dir, &["plan", "--json"], 0);
    let human = run_ok(dir, &["plan"], 0);
    run_ok(dir, &["apply", "tfplan"], 0);
    let state = std::fs::read_to_string(state_path(dir)).unwrap_or_default();
    let plan_file = std::fs::read_to_string(dir.join("tfplan")).unwrap_or_default();
    for (what, text) in [
        ("state", state),
        ("plan file", plan_file),
        ("JSON plan", text(&plan_json.stdout)),
        ("human plan", text(&human.stdout)),
    ] {
        assert!(!text.contains(&abs), "the {what} holds {abs}:\n{text}");
        assert!(!text.contains("/./"), "the {what} holds a `/./`:\n{text}");
    }
}

#[test]
fn a_copy_at_another_path_plans_no_changes_and_acts_on_its_own_nodes() {
    let cfg = local_nodes_config(2);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let copy = other.path().join("q2");
    copy_dir(dir, &copy);
    let o = run_ok(&copy, &["plan", "--detailed-exitcode"], 0);
    assert!(
        text(&o.stdout).contains("No changes"),
        "{}",
        text(&o.stdout)
    );
    // destroy in the copy removes the copy's node files, not the original's
    run_ok(&copy, &["destroy", "--auto-approve"], 0);
    assert!(!copy.join("nodes/n0").join(HOSTS).exists());
    assert!(dir.join("nodes/n0").join(HOSTS).is_file());
    assert!(dir.join("nodes/n1").join(HOSTS).is_file());
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn a_moved_bundle_is_no_change() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    std::fs::create_dir_all(dir.join("vendor")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(
        dir.join("bundles/quickstart.tar.gz"),
        dir.join("vendor/bmpackages_1.0.tar.gz"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let main = dir.join("main.hcl");
    let hcl = std::fs::read_to_string(&main).unwrap_or_default();
    std::fs::write(
        &main,
        hcl.replace("bundles/quickstart.tar.gz", "vendor/bmpackages_1.0.tar.gz"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 0);
    assert!(
        text(&o.stdout).contains("No changes"),
        "{}",
        text(&o.stdout)
    );
}

/// The previous release recorded absolute paths under the checkout
/// (`/ckout/./nodes/n0`, `oci:/ckout/./store`, `bundle:/ckout/bundles/...`):
/// such a state still plans no change after the upgrade.
#[test]
fn a_state_with_the_previous_releases_absolute_paths_plans_no_changes() {
    let cfg = local_nodes_config(2);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let abs = canonical(dir);
    let state = std::fs::read_to_string(state_path(dir)).unwrap_or_default();
    let old = state
        .replace("\"root\": \"nodes/", &format!("\"root\": \"{abs}/./nodes/"))
        .replace("\"oci:store\"", &format!("\"oci:{abs}/./store\""))
        .replace("\"bundle:bundles/", &format!("\"bundle:{abs}/bundles/"));
    assert_ne!(old, state);
    std::fs::write(state_path(dir), old).unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 0);
    assert!(
        text(&o.stdout).contains("No changes"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn absolute_paths_inside_the_checkout_are_the_relative_ones() {
    // the same configuration written with the checkout's absolute path:
    // recorded relative, and switching between the two forms changes no
    // resource (node keys and outputs are the text as written, like
    // Terraform's, so those are left relative here)
    let cfg = local_nodes_config(2);
    let dir = cfg.path();
    let abs = canonical(dir);
    let main = dir.join("main.hcl");
    let relative = std::fs::read_to_string(&main).unwrap_or_default();
    let absolute = relative
        .replace("\"oci:./store\"", &format!("\"oci:{abs}/store\""))
        .replace(
            "\"bundles/quickstart.tar.gz\"",
            &format!("\"{abs}/bundles/quickstart.tar.gz\""),
        );
    assert_eq!(absolute.matches(abs.as_str()).count(), 2, "{absolute}");
    let no_resource_changes = |what: &str| {
        let o = run_ok(dir, &["plan", "--json"], 0);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{what}: {e}: {}", text(&o.stdout)));
        let changes = v["resource_changes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!changes.is_empty(), "{what}: {v:#}");
        for c in changes {
            assert_eq!(c["action"], "no-op", "{what}: {c:#}");
        }
    };
    std::fs::write(&main, &absolute).unwrap_or_else(|e| panic!("{e}"));
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path(dir)).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    let records = state["instances"].to_string();
    assert!(
        !records.contains(&abs),
        "the state's records hold {abs}:\n{state:#}"
    );
    no_resource_changes("absolute paths");
    std::fs::write(&main, &relative).unwrap_or_else(|e| panic!("{e}"));
    no_resource_changes("relative paths");
    // a path outside the checkout stays absolute
    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = canonical(outside.path());
    std::fs::write(
        &main,
        relative.replace("\"oci:./store\"", &format!("\"oci:{store}/store\"")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(dir, &["plan", "--json"], 0);
    assert!(
        text(&o.stdout).contains(&format!("oci:{store}/store")),
        "{}",
        text(&o.stdout)
    );
}
