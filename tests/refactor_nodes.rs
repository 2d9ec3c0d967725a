//! Issue 14 (items 1 and 3) on real nodes of the test harness (sshd +
//! containerd, configured over SSH): renaming a cluster with a `moved`
//! block touches no node (no write, no restart); renaming it again without
//! one hands each node over to the new instance: every hosts.toml file is
//! there at every point of the apply, containerd is restarted at most
//! once, the apply exits 0 and the nodes still pull through the mirror.

mod nodes_support;

use mirrorplan_harness::Node;
use nodes_support::*;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const FILES: [&str; 2] = ["certs.d/gcr.io/hosts.toml", "certs.d/quay.io/hosts.toml"];

fn inodes(nodes: &[&Node]) -> Vec<u64> {
    nodes
        .iter()
        .flat_map(|n| {
            FILES.iter().chain(&["config.toml"]).map(move |f| {
                std::fs::metadata(n.etc_containerd_dir().join(f))
                    .unwrap_or_else(|e| panic!("{f} on {}: {e}", node_key(n)))
                    .ino()
            })
        })
        .collect()
}

fn rename(lab: &Lab, from: &str, to: &str, moved: bool) {
    let p = lab.path().join("main.hcl");
    let mut hcl = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}"));
    hcl = hcl.replace(&format!("cluster \"{from}\""), &format!("cluster \"{to}\""));
    if moved {
        hcl.push_str(&format!(
            "\nmoved {{\n  from = cluster.{from}\n  to   = cluster.{to}\n}}\n"
        ));
    }
    lab.write_file("main.hcl", &hcl);
}

#[test]
fn renaming_a_cluster_of_real_nodes_with_and_without_moved() {
    let lab = Lab::start();
    let n1 = start_node();
    let n2 = start_node();
    let nodes = [&n1, &n2];
    lab.write_config(&nodes, &ClusterConf::default());
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let starts: Vec<usize> = nodes.iter().map(|n| containerd_starts(n)).collect();
    let files = inodes(&nodes);

    // with `moved`: the plan says so and the apply touches no node
    rename(&lab, "c1", "c2", true);
    let o = run_ok(lab.path(), &["plan"], 0);
    let out = String::from_utf8_lossy(&o.stdout);
    for n in nodes {
        let line = format!(
            "# node.c1[\"{k}\"] has moved to node.c2[\"{k}\"]",
            k = node_key(n)
        );
        assert!(out.contains(&line), "{line} missing:\n{out}");
    }
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    assert!(!all_text(&o).contains("writing"), "{}", streams(&o));
    assert_eq!(inodes(&nodes), files, "a file was rewritten");
    let now: Vec<usize> = nodes.iter().map(|n| containerd_starts(n)).collect();
    assert_eq!(now, starts, "containerd was restarted");
    let o = run_ok(lab.path(), &["state", "list"], 0);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("node.c2["),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("node.c1["),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // without `moved`: one change of owner per node, no gap in its files
    let p = lab.path().join("main.hcl");
    let hcl = std::fs::read_to_string(&p).unwrap_or_default();
    let without: String = hcl
        .split("\nmoved {")
        .next()
        .unwrap_or_default()
        .to_string();
    lab.write_file("main.hcl", &without);
    rename(&lab, "c2", "c3", false);
    let o = run_ok(lab.path(), &["plan"], 0);
    let out = String::from_utf8_lossy(&o.stdout);
    for n in nodes {
        let line = format!(
            "# node.c2[\"{k}\"] will be replaced by node.c3[\"{k}\"] on the same node",
            k = node_key(n)
        );
        assert!(out.contains(&line), "{line} missing:\n{out}");
    }
    let watched: Vec<PathBuf> = nodes
        .iter()
        .flat_map(|n| FILES.iter().map(move |f| n.etc_containerd_dir().join(f)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let missing = Arc::new(Mutex::new(Vec::<PathBuf>::new()));
    let watcher = {
        let (stop, missing, watched) = (stop.clone(), missing.clone(), watched.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for p in &watched {
                    if !p.is_file() {
                        if let Ok(mut m) = missing.lock() {
                            m.push(p.clone());
                        }
                    }
                }
            }
        })
    };
    let o = run(lab.path(), &["apply", "--auto-approve"]);
    stop.store(true, Ordering::SeqCst);
    watcher
        .join()
        .unwrap_or_else(|_| panic!("watcher panicked"));
    assert_eq!(o.status.code(), Some(0), "{}", streams(&o));
    let seen = missing.lock().map(|m| m.clone()).unwrap_or_default();
    assert!(
        seen.is_empty(),
        "missing during the apply: {seen:?}\n{}",
        streams(&o)
    );
    assert!(watched.iter().all(|p| p.is_file()));
    for (n, before) in nodes.iter().zip(&starts) {
        let after = containerd_starts(n);
        assert!(
            after <= before + 1,
            "containerd restarted {} times on {}",
            after - before,
            node_key(n)
        );
    }
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
    for n in nodes {
        assert_pulls_through_mirror(&lab, n, GCR_IMAGE);
    }
}
