//! Issue 5 end to end through the `mirrorplan` binary: a cluster of real
//! nodes (harness `Node`: sshd + containerd 1.6 in their own mount
//! namespace) configured over SSH to pull through a TLS + htpasswd mirror
//! (a real registry the bundle was pushed into by mirrorplan itself), and
//! proven by real CRI pulls by public name over each node's SSH.

mod nodes_support;

use nodes_support::*;

#[test]
fn apply_makes_every_node_pull_through_the_mirror_and_converges() {
    let lab = Lab::start();
    let n1 = start_node();
    let n2 = start_node();
    lab.write_config(&[&n1, &n2], &ClusterConf::default());

    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let out = all_text(&o);
    for a in [
        node_address(&n1),
        node_address(&n2),
        "cluster.c1".to_string(),
    ] {
        assert!(
            out.contains(&a),
            "{a} missing from the apply output:\n{out}"
        );
    }

    for n in [&n1, &n2] {
        // the rendered files: gcr.io always, quay.io listed, docker.io not
        let gcr = node_file(n, "certs.d/gcr.io/hosts.toml")
            .unwrap_or_else(|| panic!("no gcr.io hosts.toml on {}", node_key(n)));
        assert!(gcr.contains("server = \"https://gcr.io\""), "{gcr}");
        let host = format!("https://{}/v2/{NAMESPACE}", lab.registry.host_port());
        assert!(gcr.contains(&host), "{gcr}");
        assert!(gcr.contains("override_path = true"), "{gcr}");
        assert!(node_file(n, "certs.d/quay.io/hosts.toml").is_some());
        assert!(node_file(n, "certs.d/docker.io/hosts.toml").is_none());
        // the proof: pulls by public name through the mirror
        assert_pulls_through_mirror(&lab, n, GCR_IMAGE);
        assert_pulls_through_mirror(&lab, n, QUAY_IMAGE);
        // a host not listed is not mirrored: no route anywhere else
        let err = cri_pull(n, DOCKER_IMAGE).expect_err("docker.io is not mirrored");
        assert!(err.contains("pull"), "{err}");
    }
    // the mirror saw the pulls under the public hosts
    let log = registry_log(&lab);
    assert!(
        log.contains("ns=gcr.io"),
        "no gcr.io pull in the mirror's log"
    );
    assert!(
        log.contains("ns=quay.io"),
        "no quay.io pull in the mirror's log"
    );
    assert!(
        !log.contains("ns=docker.io"),
        "docker.io went to the mirror"
    );

    // a second run changes nothing
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    assert!(
        !all_text(&o).contains("writing "),
        "the second apply wrote files:\n{}",
        streams(&o)
    );
}
