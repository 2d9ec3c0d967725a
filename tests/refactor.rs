//! Issue 14 (items 1-3) through the binary on `local:` nodes: renames and
//! moves with `moved` blocks (nothing touched, the state re-addressed), a
//! rename without `moved` (every node keeps its hosts.toml files at every
//! point, apply exits 0), a `for_each` refactor, the diagnostics of
//! `moved` blocks, and `state mv`.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const HOSTS: [&str; 3] = [
    "etc/containerd/certs.d/gcr.io/hosts.toml",
    "etc/containerd/certs.d/quay.io/hosts.toml",
    "etc/containerd/certs.d/docker.io/hosts.toml",
];

fn main_hcl(dir: &Path) -> PathBuf {
    dir.join("main.hcl")
}

fn edit(dir: &Path, f: impl FnOnce(String) -> String) {
    let p = main_hcl(dir);
    let old = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&p, f(old)).unwrap_or_else(|e| panic!("{e}"));
}

/// Every file under the nodes, by path: (inode, mtime in ns). A file
/// mirrorplan writes is replaced by a rename, so a write changes its inode.
fn node_files(dir: &Path) -> BTreeMap<PathBuf, (u64, i128)> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, (u64, i128)>) {
        for e in std::fs::read_dir(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .flatten()
        {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let m = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}"));
                out.insert(
                    path,
                    (
                        m.ino(),
                        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&dir.join("nodes"), &mut out);
    out
}

fn state_addresses(dir: &Path) -> Vec<String> {
    let o = run_ok(dir, &["state", "list"], 0);
    text(&o.stdout).lines().map(str::to_string).collect()
}

fn all(o: &std::process::Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// Polls every node's hosts.toml files while `f` runs and returns what
/// was ever missing (a file seen missing once is an outage).
fn watching<T>(files: Vec<PathBuf>, f: impl FnOnce() -> T) -> (T, Vec<PathBuf>) {
    let stop = Arc::new(AtomicBool::new(false));
    let missing = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (stop, missing) = (stop.clone(), missing.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::SeqCst) || rounds == 0 {
                for p in &files {
                    if !p.is_file() {
                        if let Ok(mut m) = missing.lock() {
                            if !m.contains(p) {
                                m.push(p.clone());
                            }
                        }
                    }
                }
                rounds += 1;
            }
            rounds
        })
    };
    let out = f();
    stop.store(true, Ordering::SeqCst);
    let rounds = watcher
        .join()
        .unwrap_or_else(|_| panic!("watcher panicked"));
    assert!(rounds > 0);
    let seen = missing.lock().map(|m| m.clone()).unwrap_or_default();
    (out, seen)
}

#[test]
fn renaming_a_cluster_with_moved_touches_nothing_and_moves_the_state() {
    let dir = local_nodes_config(2);
    let d = dir.path();
    run_ok(d, &["apply", "--auto-approve"], 0);
    let before = node_files(d);
    assert!(before.len() >= 8, "{before:?}");
    edit(d, |s| {
        s.replace("cluster \"big\"", "cluster \"edge\"")
            + "\nmoved {\n  from = cluster.big\n  to   = cluster.edge\n}\n"
    });
    run_ok(d, &["validate"], 0);

    let o = run_ok(d, &["plan", "--detailed-exitcode"], 2);
    let out = text(&o.stdout);
    assert!(
        out.contains("# cluster.big has moved to cluster.edge"),
        "{out}"
    );
    for i in 0..2 {
        let line = format!(
            "# node.big[\"local:./nodes/n{i}\"] has moved to node.edge[\"local:./nodes/n{i}\"]"
        );
        assert!(out.contains(&line), "{line} missing:\n{out}");
    }
    assert!(
        out.contains("Plan: 0 to add, 0 to change, 0 to destroy."),
        "{out}"
    );

    let o = run_ok(d, &["plan", "--json"], 0);
    let plan: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
    let moved: Vec<(String, String, String)> = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["previous_address"].as_str()?.to_string(),
                c["address"].as_str()?.to_string(),
                c["action"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(moved.len(), 3, "{moved:?}");
    assert!(moved.iter().all(|(_, _, a)| a == "no-op"), "{moved:?}");
    assert!(moved.contains(&("cluster.big".into(), "cluster.edge".into(), "no-op".into())));

    let o = run_ok(d, &["plan", "--format", "markdown"], 0);
    assert!(
        text(&o.stdout).contains("`cluster.big` has moved to cluster.edge"),
        "{}",
        text(&o.stdout)
    );

    let o = run_ok(d, &["apply", "--auto-approve"], 0);
    assert!(!all(&o).contains("writing"), "{}", all(&o));
    assert_eq!(
        node_files(d),
        before,
        "a moved cluster's nodes were touched"
    );
    let addrs = state_addresses(d);
    assert!(addrs.contains(&"cluster.edge".to_string()), "{addrs:?}");
    assert!(
        addrs.iter().any(|a| a.starts_with("node.edge[")),
        "{addrs:?}"
    );
    assert!(!addrs.iter().any(|a| a.contains(".big")), "{addrs:?}");
    run_ok(d, &["plan", "--detailed-exitcode"], 0);
    // the moved block can stay: nothing is recorded at its `from` any more
    let o = run_ok(d, &["plan"], 0);
    assert!(
        !text(&o.stdout).contains("has moved"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn renaming_a_cluster_without_moved_keeps_every_hosts_toml_and_exits_0() {
    let dir = local_nodes_config(2);
    let d = dir.path();
    run_ok(d, &["apply", "--auto-approve"], 0);
    edit(d, |s| s.replace("cluster \"big\"", "cluster \"edge\""));
    let o = run_ok(d, &["plan"], 0);
    let out = text(&o.stdout);
    for i in 0..2 {
        let line = format!(
            "# node.big[\"local:./nodes/n{i}\"] will be replaced by node.edge[\"local:./nodes/n{i}\"] on the same node"
        );
        assert!(out.contains(&line), "{line} missing:\n{out}");
    }
    let watched: Vec<PathBuf> = (0..2)
        .flat_map(|i| {
            HOSTS
                .iter()
                .map(move |h| d.join(format!("nodes/n{i}")).join(h))
        })
        .collect();
    assert!(watched.iter().all(|p| p.is_file()));
    let (o, missing) = watching(watched.clone(), || run(d, &["apply", "--auto-approve"]));
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(
        missing.is_empty(),
        "files missing during the apply: {missing:?}\n{}",
        all(&o)
    );
    assert!(watched.iter().all(|p| p.is_file()));
    // the new node instances find their files already as configured (the
    // old instances wrote the same): adopted, recorded without a write,
    // and the old instances' deletes leave those files alone
    let err = text(&o.stderr);
    for i in 0..2 {
        let line =
            format!("# node.edge[\"local:./nodes/n{i}\"] is already present, will be recorded");
        assert!(out.contains(&line), "{line} missing:\n{out}");
        assert!(
            err.contains(&format!(
                "node.big[\"local:./nodes/n{i}\"]: Destruction complete"
            )),
            "{err}"
        );
    }
    let addrs = state_addresses(d);
    assert!(!addrs.iter().any(|a| a.contains(".big")), "{addrs:?}");
    assert_eq!(
        addrs.iter().filter(|a| a.starts_with("node.edge[")).count(),
        2,
        "{addrs:?}"
    );
    run_ok(d, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn a_node_dropped_by_the_renamed_cluster_loses_only_its_own_files() {
    // the new cluster mirrors fewer hosts: docker.io's file goes, the others stay
    let dir = local_nodes_config(1);
    let d = dir.path();
    run_ok(d, &["apply", "--auto-approve"], 0);
    edit(d, |s| {
        s.replace("cluster \"big\"", "cluster \"edge\"")
            .replace("[\"quay.io\", \"docker.io\"]", "[\"quay.io\"]")
    });
    run_ok(d, &["apply", "--auto-approve"], 0);
    let n = d.join("nodes/n0");
    assert!(n.join(HOSTS[0]).is_file() && n.join(HOSTS[1]).is_file());
    assert!(
        !n.join(HOSTS[2]).exists(),
        "docker.io's hosts.toml was kept"
    );
    run_ok(d, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn a_single_cluster_moves_into_a_for_each_key_and_an_image_set_is_renamed() {
    let dir = local_nodes_config(2);
    let d = dir.path();
    run_ok(d, &["apply", "--auto-approve"], 0);
    let before = node_files(d);
    edit(d, |s| {
        s.replace(
            "cluster \"big\" {",
            "cluster \"big\" {\n  for_each = toset([\"a\"])",
        )
        .replace("image_set \"bundle\"", "image_set \"base\"")
        .replace("image_set.bundle", "image_set.base")
            + "\nmoved {\n  from = cluster.big\n  to   = cluster.big[\"a\"]\n}\n\
               moved {\n  from = image_set.bundle\n  to   = image_set.base\n}\n"
    });
    run_ok(d, &["validate"], 0);
    let o = run_ok(d, &["plan"], 0);
    let out = text(&o.stdout);
    assert!(
        out.contains("# cluster.big has moved to cluster.big_a"),
        "{out}"
    );
    assert!(
        out.contains(
            "# node.big[\"local:./nodes/n0\"] has moved to node.big_a[\"local:./nodes/n0\"]"
        ),
        "{out}"
    );
    assert!(
        out.contains("# image.bundle[\"gcr.io/mirrorplan-fixtures/app-0:1.0\"] has moved to image.base[\"gcr.io/mirrorplan-fixtures/app-0:1.0\"]"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 0 to add, 0 to change, 0 to destroy."),
        "{out}"
    );
    let o = run_ok(d, &["apply", "--auto-approve"], 0);
    assert!(!all(&o).contains("Creating"), "{}", all(&o));
    assert_eq!(node_files(d), before);
    let addrs = state_addresses(d);
    assert!(addrs.contains(&"cluster.big_a".to_string()), "{addrs:?}");
    assert!(addrs.contains(&"image_set.base".to_string()), "{addrs:?}");
    assert_eq!(
        addrs
            .iter()
            .filter(|a| a.starts_with("image.base["))
            .count(),
        3,
        "{addrs:?}"
    );
    run_ok(d, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn moved_blocks_that_cannot_be_followed_are_diagnostics_with_spans() {
    let dir = local_nodes_config(1);
    let d = dir.path();
    // `from` still declared, a cycle, a malformed address, a kind change
    edit(d, |s| {
        s + "\nmoved {\n  from = cluster.big\n  to   = cluster.edge\n}\n\
             moved {\n  from = image_set.x\n  to   = image_set.y\n}\n\
             moved {\n  from = image_set.y\n  to   = image_set.x\n}\n\
             moved {\n  from = node.big\n  to   = node.edge\n}\n\
             moved {\n  from = cluster.old\n  to   = image_set.new\n}\n"
    });
    let o = run_ok(d, &["validate"], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(err.contains("mirrorplan::config::moved"), "{err}");
    assert!(
        err.contains("cluster.big still exists in the configuration, so it cannot have moved to cluster.edge"),
        "{err}"
    );
    assert!(err.contains("mirrorplan::config::cycle"), "{err}");
    assert!(
        err.contains("the moved blocks form a cycle: image_set.x -> image_set.y -> image_set.x"),
        "{err}"
    );
    assert!(err.contains("`node` cannot be moved"), "{err}");
    assert!(
        err.contains("cannot move cluster.old to image_set.new"),
        "{err}"
    );
    // spans: the line of the first moved block's `from`
    let line = std::fs::read_to_string(main_hcl(d))
        .unwrap_or_default()
        .lines()
        .position(|l| l.contains("from = cluster.big"))
        .map(|i| i + 1)
        .unwrap_or(0);
    assert!(
        err.contains(&format!("main.hcl:{line}:")),
        "no span at line {line}: {err}"
    );

    let o = run_ok(d, &["validate", "--json"], 1);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o.stdout)));
    assert!(v.to_string().contains("mirrorplan::config::moved"), "{v}");
}

#[test]
fn state_mv_moves_a_cluster_with_its_nodes_under_the_lock() {
    let dir = local_nodes_config(2);
    let d = dir.path();
    run_ok(d, &["apply", "--auto-approve"], 0);
    let before = node_files(d);

    // refused without the lock, and when the destination is taken
    let o = run_ok(
        d,
        &["state", "mv", "--lock=false", "cluster.big", "cluster.edge"],
        1,
    );
    assert!(
        text(&o.stderr).contains("mirrorplan::cli::lock_required"),
        "{}",
        text(&o.stderr)
    );
    let o = run_ok(
        d,
        &[
            "state",
            "mv",
            "node.big[\"local:./nodes/n0\"]",
            "node.big[\"local:./nodes/n1\"]",
        ],
        1,
    );
    assert!(
        text(&o.stderr).contains("mirrorplan::state::destination_exists"),
        "{}",
        text(&o.stderr)
    );
    let o = run_ok(d, &["state", "mv", "cluster.nope", "cluster.edge"], 1);
    assert!(
        text(&o.stderr).contains("mirrorplan::state::no_such_instance"),
        "{}",
        text(&o.stderr)
    );
    let o = run_ok(d, &["state", "mv", "cluster.big", "image_set.edge"], 1);
    assert!(
        text(&o.stderr).contains("mirrorplan::state::bad_move"),
        "{}",
        text(&o.stderr)
    );
    assert!(state_addresses(d)
        .iter()
        .any(|a| a.starts_with("node.big[")));

    let o = run_ok(d, &["state", "mv", "cluster.big", "cluster.edge"], 0);
    let out = text(&o.stdout);
    assert!(out.contains("Moved cluster.big to cluster.edge"), "{out}");
    assert!(out.contains("3 instance(s) moved"), "{out}");
    let addrs = state_addresses(d);
    assert!(addrs.contains(&"cluster.edge".to_string()), "{addrs:?}");
    assert_eq!(
        addrs.iter().filter(|a| a.starts_with("node.edge[")).count(),
        2,
        "{addrs:?}"
    );
    // the backup holds the state before the move
    let backup = std::fs::read_to_string(state_path(d).with_extension("json.backup"))
        .unwrap_or_else(|e| panic!("no backup: {e}"));
    assert!(backup.contains("node.big["), "{backup}");

    // the configuration renamed the same way: nothing to do, nothing touched
    edit(d, |s| s.replace("cluster \"big\"", "cluster \"edge\""));
    run_ok(d, &["plan", "--detailed-exitcode"], 0);
    assert_eq!(node_files(d), before);
}

#[test]
fn chains_are_followed_and_a_move_with_a_change_shows_both_in_a_saved_plan() {
    let dir = local_nodes_config(1);
    let d = dir.path();
    run_ok(d, &["apply", "--auto-approve"], 0);
    edit(d, |s| {
        s.replace("cluster \"big\"", "cluster \"edge\"")
            .replace("[\"quay.io\", \"docker.io\"]", "[\"quay.io\"]")
            + "\nmoved {\n  from = cluster.big\n  to   = cluster.mid\n}\n\
               moved {\n  from = cluster.mid\n  to   = cluster.edge\n}\n"
    });
    run_ok(d, &["validate"], 0);
    let o = run_ok(d, &["plan", "--out", "p.bin"], 0);
    let out = text(&o.stdout);
    let node = "node.edge[\"local:./nodes/n0\"]";
    assert!(
        out.contains(&format!("# {node} will be updated in place")),
        "{out}"
    );
    assert!(
        out.contains("# (moved from node.big[\"local:./nodes/n0\"])"),
        "{out}"
    );
    assert!(out.contains("# (moved from cluster.big)"), "{out}");
    let o = run_ok(d, &["show", "p.bin", "--json"], 0);
    assert!(
        text(&o.stdout).contains("\"previous_address\""),
        "{}",
        text(&o.stdout)
    );
    run_ok(d, &["apply", "p.bin"], 0);
    assert!(!d.join("nodes/n0").join(HOSTS[2]).exists());
    assert!(d.join("nodes/n0").join(HOSTS[0]).is_file());
    let addrs = state_addresses(d);
    assert!(addrs.contains(&node.to_string()), "{addrs:?}");
    assert!(
        !addrs
            .iter()
            .any(|a| a.contains(".big") || a.contains(".mid")),
        "{addrs:?}"
    );
    run_ok(d, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn a_moved_cluster_with_rollout_limits_plans_nothing_either() {
    let dir = local_nodes_config(2);
    let d = dir.path();
    edit(d, |s| {
        s.replace(
            "  depends_on = [image_set.bundle]\n}",
            "  rollout {\n    max_failures = 1\n  }\n  depends_on = [image_set.bundle]\n}",
        )
    });
    run_ok(d, &["apply", "--auto-approve"], 0);
    let before = node_files(d);
    edit(d, |s| {
        s.replace("cluster \"big\"", "cluster \"edge\"")
            + "\nmoved {\n  from = cluster.big\n  to   = cluster.edge\n}\n"
    });
    let o = run_ok(d, &["plan"], 0);
    let out = text(&o.stdout);
    assert!(
        out.contains("Plan: 0 to add, 0 to change, 0 to destroy."),
        "{out}"
    );
    assert!(
        out.contains("# cluster.big has moved to cluster.edge"),
        "{out}"
    );
    run_ok(d, &["apply", "--auto-approve"], 0);
    assert_eq!(node_files(d), before);
    run_ok(d, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn a_pruning_image_set_renamed_without_moved_keeps_its_tags() {
    let dir = local_nodes_config(1);
    let d = dir.path();
    edit(d, |s| {
        s.replace(
            "  bundle   = \"bundles/quickstart.tar.gz\"\n",
            "  bundle   = \"bundles/quickstart.tar.gz\"\n  prune    = true\n",
        )
    });
    run_ok(d, &["apply", "--auto-approve"], 0);
    edit(d, |s| {
        s.replace("image_set \"bundle\"", "image_set \"base\"")
            .replace("image_set.bundle", "image_set.base")
    });
    let o = run_ok(d, &["plan"], 0);
    let out = text(&o.stdout);
    assert!(
        out.contains("# image.bundle[\"gcr.io/mirrorplan-fixtures/app-0:1.0\"] will be replaced by image.base[\"gcr.io/mirrorplan-fixtures/app-0:1.0\"] at the same place"),
        "{out}"
    );
    run_ok(d, &["apply", "--auto-approve"], 0);
    // a refresh finds every tag still in the store: nothing to push again
    run_ok(d, &["plan", "--detailed-exitcode"], 0);
}
