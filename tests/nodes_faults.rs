//! Issue 5 faults end to end through the `mirrorplan` binary, on real
//! nodes (sshd + containerd): a node down (max_failures 0 and > 0), a host
//! key mismatch, a configuration that makes containerd's CRI plugin fail
//! (rolled back, containerd healthy again) and SSH cut in the middle of a
//! write (every file old or new, never a mix).

mod nodes_support;

use std::path::Path;
use std::process::{Command, Stdio};

use nodes_support::*;

/// The files under the node's `/etc/containerd/certs.d` (relative paths).
fn certs_files(n: &mirrorplan_harness::Node) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.display().to_string());
            }
        }
    }
    let base = n.etc_containerd_dir().join("certs.d");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

#[test]
fn a_node_down_stops_the_rollout_or_is_tolerated_within_max_failures() {
    let lab = Lab::start();
    let mut n1 = start_node();
    let n2 = start_node();
    let n3 = start_node();
    lab.write_config(&[&n1, &n2, &n3], &ClusterConf::default());
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let down = node_address(&n1);
    let down_key = node_key(&n1);
    let hosts_k8s = "certs.d/registry.k8s.io/hosts.toml";

    // the change: one more mirrored host
    let with_k8s = |rollout: Option<&str>| ClusterConf {
        hosts: vec!["quay.io".into(), "registry.k8s.io".into()],
        rollout: rollout.map(str::to_string),
        ..Default::default()
    };
    lab.write_config(&[&n1, &n2, &n3], &with_k8s(None));
    n1.stop();

    // max_failures = 0: refresh cannot reach n1, so nothing is planned,
    // nothing changes, the node is named
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let out = all_text(&o);
    assert!(
        out.contains(&down_key),
        "the error does not name {down_key}:\n{out}"
    );
    assert!(!out.contains("Warning:"), "{out}");
    for n in [&n2, &n3] {
        assert!(node_file(n, hosts_k8s).is_none(), "{} changed", node_key(n));
    }

    // without refresh, max_failures = 0 (default): n1 fails, the later batches are skipped
    let o = run_ok(
        lab.path(),
        &["apply", "--auto-approve", "--refresh=false"],
        1,
    );
    let out = all_text(&o);
    assert!(out.contains(&down), "{out}");
    assert!(out.contains("skipped"), "no skipped nodes reported:\n{out}");
    for n in [&n2, &n3] {
        assert!(node_file(n, hosts_k8s).is_none(), "{} changed", node_key(n));
    }

    // max_failures = 1: the refreshing plan goes on, warning about n1
    lab.write_config(&[&n1, &n2, &n3], &with_k8s(Some("max_failures = 1")));
    let o = run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
    let plan = all_text(&o);
    let warning = format!("Warning: {down} could not be read: node root@{down_key}");
    assert!(plan.contains(&warning), "no warning about {down}:\n{plan}");
    assert!(
        plan.contains("count a failure against cluster.c1's max_failures = 1"),
        "{plan}"
    );
    for n in [&n1, &n2, &n3] {
        assert!(
            plan.contains(&format!("{} will be updated", node_address(n))),
            "{} is not planned:\n{plan}",
            node_key(n)
        );
    }
    let o = run_ok(lab.path(), &["plan", "--json"], 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", streams(&o)));
    let warnings = v["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{v:#}");
    assert_eq!(warnings[0]["address"], down.as_str());
    let o = run_ok(lab.path(), &["plan", "--format", "markdown"], 0);
    let md = all_text(&o);
    assert!(md.contains("> **Warning:**"), "{md}");
    assert!(md.contains("could not be read"), "{md}");
    // a drift check still fails on the unreachable node
    let o = run_ok(
        lab.path(),
        &["plan", "--refresh-only", "--detailed-exitcode"],
        1,
    );
    let out = all_text(&o);
    assert!(out.contains("mirrorplan::refresh::unreachable"), "{out}");
    assert!(out.contains(&down_key), "{out}");

    // apply (refreshing): n1 fails with a clear error, n2 and n3 are
    // configured; the cluster check waits
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let out = all_text(&o);
    assert!(out.contains(&warning), "{out}");
    assert!(out.contains(&down), "{out}");
    for n in [&n2, &n3] {
        let f = node_file(n, hosts_k8s)
            .unwrap_or_else(|| panic!("{} was not configured:\n{out}", node_key(n)));
        assert!(f.contains("server = \"https://registry.k8s.io\""), "{f}");
        assert_pulls_through_mirror(&lab, n, GCR_IMAGE);
    }
    // the state records the finished nodes: n1 is still pending, n2 and n3
    // are not (with and without refresh)
    for args in [
        &["plan", "--detailed-exitcode"][..],
        &["plan", "--refresh=false", "--detailed-exitcode"][..],
    ] {
        let o = run_ok(lab.path(), args, 2);
        let plan = all_text(&o);
        assert!(plan.contains(&format!("{down} will be updated")), "{plan}");
        assert!(!plan.contains(&node_address(&n2)), "{plan}");
        assert!(!plan.contains(&node_address(&n3)), "{plan}");
    }
}

#[test]
fn max_failures_stops_starting_nodes_once_exceeded() {
    let lab = Lab::start();
    let mut n1 = start_node();
    let mut n2 = start_node();
    let n3 = start_node();
    lab.write_config(&[&n1, &n2, &n3], &ClusterConf::default());
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    lab.write_config(
        &[&n1, &n2, &n3],
        &ClusterConf {
            hosts: vec!["quay.io".into(), "registry.k8s.io".into()],
            rollout: Some("max_failures = 1".into()),
            ..Default::default()
        },
    );
    n1.stop();
    n2.stop();
    let o = run_ok(
        lab.path(),
        &["apply", "--auto-approve", "--refresh=false"],
        1,
    );
    let out = all_text(&o);
    assert!(out.contains("not started"), "{out}");
    assert!(out.contains("max_failures = 1"), "{out}");
    assert!(
        node_file(&n3, "certs.d/registry.k8s.io/hosts.toml").is_none(),
        "n3 was changed after two failures:\n{out}"
    );
}

#[test]
fn a_host_key_mismatch_is_refused_and_nothing_is_written() {
    let lab = Lab::start();
    let n1 = start_node();
    // known_hosts naming n1's address with some other key
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = other.path().join("k");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap_or_default();
    let wrong: Vec<&str> = public.split_whitespace().take(2).collect();
    let known_hosts = lab.path().join("wrong_known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[{}]:{} {}\n",
            n1.ssh_addr().ip(),
            n1.ssh_addr().port(),
            wrong.join(" ")
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config_before = node_file(&n1, "config.toml");
    lab.write_config(
        &[&n1],
        &ClusterConf {
            known_hosts: Some(known_hosts),
            ..Default::default()
        },
    );
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let out = all_text(&o).to_lowercase();
    assert!(out.contains(&node_key(&n1)), "{out}");
    assert!(out.contains("host key"), "{out}");
    assert_eq!(certs_files(&n1), Vec::<String>::new());
    assert_eq!(node_file(&n1, "config.toml"), config_before);
}

#[test]
fn a_config_that_breaks_the_cri_plugin_is_rolled_back_and_containerd_is_healthy_again() {
    let lab = Lab::start();
    // containerd 1.x default (no config_path) on a node whose service
    // manager adds a hand-written snippet with legacy `mirrors` to the CRI
    // plugin's section when it starts containerd (like a packaging tool
    // concatenating drop-ins). Harmless until config_path is set beside
    // it; then containerd starts but its CRI plugin does not load.
    let n1 = start_node_with(mirrorplan_harness::ContainerdOptions {
        config_style: mirrorplan_harness::ConfigStyle::Legacy,
        ..Default::default()
    });
    let etc = n1.etc_containerd_dir();
    std::fs::write(
        etc.join("snippet.toml"),
        "\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  \
         endpoint = [\"https://registry-1.docker.io\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ctl = std::fs::read_to_string(n1.ctl_path()).unwrap_or_default();
    let effective_ctl = ctl.replace(
        "CONFIG='/etc/containerd/config.toml'",
        "CONFIG='/etc/containerd/effective.toml'",
    );
    assert_ne!(ctl, effective_ctl, "the harness ctl script changed: {ctl}");
    std::fs::write(etc.join("ctl-effective.sh"), effective_ctl).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        etc.join("restart-effective.sh"),
        "#!/bin/sh\nset -e\ncat /etc/containerd/config.toml /etc/containerd/snippet.toml \
         >/etc/containerd/effective.toml\nexec sh /etc/containerd/ctl-effective.sh restart-containerd\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // the node as it runs: restarted once through that path, CRI healthy
    n1.ssh_run("sh /etc/containerd/restart-effective.sh")
        .unwrap_or_else(|e| panic!("{e}"));
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));
    let original = node_file(&n1, "config.toml").unwrap_or_default();

    lab.write_config(
        &[&n1],
        &ClusterConf {
            restart_command: Some("sh /etc/containerd/restart-effective.sh".into()),
            ..Default::default()
        },
    );
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let out = all_text(&o);
    assert!(out.contains(&node_address(&n1)), "{out}");
    assert!(out.contains("CRI"), "the reason is not given:\n{out}");
    assert!(out.contains("restored"), "no rollback reported:\n{out}");
    assert!(
        out.contains("restarted healthy"),
        "containerd not reported healthy:\n{out}"
    );
    let log = std::fs::read_to_string(n1.containerd_log_path()).unwrap_or_default();
    assert!(
        log.contains("cannot be set when `config_path` is provided"),
        "containerd's CRI plugin did not fail for the expected reason"
    );
    // the node is as it was, and containerd answers again
    assert_eq!(node_file(&n1, "config.toml").unwrap_or_default(), original);
    assert_eq!(certs_files(&n1), Vec::<String>::new());
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));
    // the node is still pending
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
}

#[test]
fn ssh_cut_mid_write_leaves_every_file_old_or_new() {
    let lab = Lab::start();
    let mut n1 = start_node();
    let ca = lab.path().join("mirror-ca.crt");
    let real = std::fs::read_to_string(lab.ca_cert()).unwrap_or_default();
    std::fs::write(&ca, &real).unwrap_or_else(|e| panic!("{e}"));
    let conf = ClusterConf {
        ca_cert: Some(ca.clone()),
        ..Default::default()
    };
    lab.write_config(&[&n1], &conf);
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let old: Vec<(String, String)> = certs_files(&n1)
        .into_iter()
        .map(|f| {
            let c = node_file(&n1, &format!("certs.d/{f}")).unwrap_or_default();
            (f, c)
        })
        .collect();
    assert_eq!(old.len(), 4, "{old:?}");

    // a large CA bundle (text before a PEM block is ignored by PEM readers)
    let new_ca = format!("# {}\n{real}", "x".repeat(24 << 20));
    std::fs::write(&ca, &new_ca).unwrap_or_else(|e| panic!("{e}"));
    let mut child = bin()
        .arg("-C")
        .arg(lab.path())
        .args(["apply", "--auto-approve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("mirrorplan: {e}"));
    // cut SSH (stop the node) as soon as the second CA file is being written
    let certs = n1.etc_containerd_dir().join("certs.d");
    let mut cut = false;
    loop {
        let new_done = old
            .iter()
            .filter(|(f, _)| f.ends_with("-ca.crt"))
            .filter(|(f, _)| {
                std::fs::metadata(certs.join(f))
                    .map(|m| m.len())
                    .unwrap_or(0)
                    == new_ca.len() as u64
            })
            .count();
        let writing = std::fs::read_dir(&certs)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(mirrorplan_node::TEMP_MARKER)
            });
        if new_done >= 1 && writing {
            n1.stop();
            cut = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(cut, "the apply finished before SSH could be cut");
    assert_eq!(status.code(), Some(1));
    let mut new_files = 0;
    for (f, before) in &old {
        let now = node_file(&n1, &format!("certs.d/{f}")).unwrap_or_default();
        let expected_new = if f.ends_with("-ca.crt") {
            &new_ca
        } else {
            before
        };
        assert!(
            now == *before || now == *expected_new,
            "{f} is neither old nor new ({} bytes)",
            now.len()
        );
        if f.ends_with("-ca.crt") && now == new_ca {
            new_files += 1;
        }
    }
    // the cut really happened between two files: one new, one old
    assert_eq!(new_files, 1);
}
