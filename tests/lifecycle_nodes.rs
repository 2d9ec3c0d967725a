//! Issue 14 on real nodes (the harness's sshd + containerd): a node that
//! the state forgot is recorded without a write or a restart, and
//! `-replace` writes its files again and restarts containerd.

mod nodes_support;

use nodes_support::{
    all_text, containerd_starts, cri_healthy, node_address, run_ok, start_node, streams,
    ClusterConf, Lab,
};

#[test]
fn a_forgotten_node_is_recorded_as_is_and_replace_restarts_it() {
    let lab = Lab::start();
    let n1 = start_node();
    lab.write_config(&[&n1], &ClusterConf::default());
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let node = node_address(&n1);
    let hosts = n1.etc_containerd_dir().join("certs.d/gcr.io/hosts.toml");
    use std::os::unix::fs::MetadataExt;
    let ino = || {
        std::fs::metadata(&hosts)
            .unwrap_or_else(|e| panic!("{}: {e}", hosts.display()))
            .ino()
    };

    // forgotten, then found as configured: recorded, nothing written or restarted
    run_ok(lab.path(), &["state", "rm", &node], 0);
    let (starts, before) = (containerd_starts(&n1), ino());
    let o = run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
    assert!(
        all_text(&o).contains(&format!("# {node} is already present, will be recorded")),
        "{}",
        streams(&o)
    );
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    assert!(
        all_text(&o).contains("Resources: 1 imported, 0 added"),
        "{}",
        streams(&o)
    );
    assert_eq!(containerd_starts(&n1), starts, "no restart");
    assert_eq!(ino(), before, "no write");
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);

    // -replace: every file written again, containerd restarted and healthy
    let o = run_ok(
        lab.path(),
        &["apply", "--auto-approve", &format!("-replace={node}")],
        0,
    );
    assert!(
        all_text(&o).contains(&format!(
            "# {node} must be replaced, as requested: it will be re-applied"
        )),
        "{}",
        streams(&o)
    );
    assert!(
        containerd_starts(&n1) > starts,
        "containerd was not restarted"
    );
    assert_ne!(ino(), before, "hosts.toml was not written again");
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
}
