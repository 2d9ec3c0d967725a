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
        // containerd went to docker.io's own registry, not the mirror
        assert!(err.contains("registry-1.docker.io"), "{err}");
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

#[test]
fn pull_credentials_go_to_config_toml_registry_configs_auth_in_a_0600_file() {
    let lab = Lab::start();
    let n1 = start_node();
    // without pull credentials the node has no way in: the cluster step's
    // canary pull is refused by the mirror and apply fails on cluster.c1
    lab.write_config(
        &[&n1],
        &ClusterConf {
            pull_credentials: false,
            ..Default::default()
        },
    );
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let out = all_text(&o);
    assert!(out.contains("cluster.c1"), "{out}");
    let gcr = node_file(&n1, "certs.d/gcr.io/hosts.toml").unwrap_or_default();
    assert!(!gcr.contains("Authorization"), "{gcr}");
    assert_eq!(node_file_mode(&n1, "certs.d/gcr.io/hosts.toml"), 0o644);
    let err = cri_pull(&n1, GCR_IMAGE).expect_err("pull without credentials");
    assert!(
        err.to_lowercase().contains("401") || err.contains("nauthorized"),
        "{err}"
    );

    // with them: config.toml's registry.configs."HOST".auth (which also
    // answers a token-auth registry, see tests/token_auth.rs), the file
    // 0600; hosts.toml keeps no header, the CA copied beside it, and the
    // plan shows the secret redacted
    lab.write_config(&[&n1], &ClusterConf::default());
    let o = run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
    assert!(
        all_text(&o).contains("(sensitive value)"),
        "{}",
        streams(&o)
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let config = node_file(&n1, "config.toml").unwrap_or_default();
    let table = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"{}\".auth]",
        lab.registry.host_port()
    );
    assert!(config.contains(&table), "{config}");
    assert!(
        config.contains(&format!("username = \"{USER}\"")),
        "{config}"
    );
    assert_eq!(node_file_mode(&n1, "config.toml"), 0o600);
    for host in ["gcr.io", "quay.io"] {
        let rel = format!("certs.d/{host}/hosts.toml");
        let text = node_file(&n1, &rel).unwrap_or_default();
        assert!(!text.contains("Authorization"), "{text}");
        assert_eq!(node_file_mode(&n1, &rel), 0o644, "{rel}");
        let ca_line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("ca = "))
            .unwrap_or_else(|| panic!("no ca in {text}"));
        let ca_path = ca_line.trim_matches('"');
        let rel_ca = ca_path.trim_start_matches("/etc/containerd/");
        let copied = node_file(&n1, rel_ca).unwrap_or_default();
        let original = std::fs::read_to_string(lab.ca_cert()).unwrap_or_default();
        assert_eq!(copied, original, "CA copy {ca_path}");
    }
    assert_pulls_through_mirror(&lab, &n1, GCR_IMAGE);
    // the push credentials never reach the node
    let all = std::fs::read_dir(n1.etc_containerd_dir().join("certs.d"))
        .into_iter()
        .flatten()
        .flatten()
        .count();
    assert!(all >= 2);
}

#[test]
fn a_containerd_1x_default_config_gets_config_path_and_a_restart() {
    let lab = Lab::start();
    // containerd 1.x default: no config_path at all
    let n1 = start_node_with(mirrorplan_harness::ContainerdOptions {
        config_style: mirrorplan_harness::ConfigStyle::Legacy,
        ..Default::default()
    });
    let before = node_file(&n1, "config.toml").unwrap_or_default();
    assert!(!before.contains("config_path"), "{before}");
    let starts = containerd_starts(&n1);
    lab.write_config(&[&n1], &ClusterConf::default());
    let o = run_ok(lab.path(), &["plan"], 0);
    assert!(
        all_text(&o).contains("config_path"),
        "the plan does not show the config_path edit:\n{}",
        streams(&o)
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let after = node_file(&n1, "config.toml").unwrap_or_default();
    assert!(
        after.contains("config_path = \"/etc/containerd/certs.d\""),
        "{after}"
    );
    // everything else is kept line for line
    for line in before.lines() {
        assert!(after.contains(line), "lost line {line:?} in:\n{after}");
    }
    assert!(
        containerd_starts(&n1) > starts,
        "containerd was not restarted"
    );
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));
    assert_pulls_through_mirror(&lab, &n1, GCR_IMAGE);
    assert_pulls_through_mirror(&lab, &n1, QUAY_IMAGE);
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
}

/// The default rollout (`max_unavailable = 1`) changes one node at a time:
/// when a node's restart starts, exactly the nodes restarted before it
/// (restarted and health-checked) and itself have their new config.toml,
/// no later node does yet, and no two restarts overlap. (The later nodes'
/// files wait on them in temporary files meanwhile: not a change.)
#[test]
fn the_default_rollout_changes_one_node_at_a_time() {
    let lab = Lab::start();
    let legacy = || {
        start_node_with(mirrorplan_harness::ContainerdOptions {
            config_style: mirrorplan_harness::ConfigStyle::Legacy,
            ..Default::default()
        })
    };
    let nodes = [legacy(), legacy(), legacy()];
    let log = lab.path().join("restarts.log");
    let configs: Vec<String> = nodes
        .iter()
        .map(|n| format!("'{}'", n.etc_containerd_dir().join("config.toml").display()))
        .collect();
    // how many nodes have the new config.toml when a restart starts
    let script = lab.path().join("logged-restart.sh");
    let body = format!(
        "n=0\nfor f in {}; do\n  if grep -q '^ *config_path' \"$f\"; then n=$((n + 1)); fi\ndone\n\
         echo \"start $n\" >> '{log}'\n{RESTART_COMMAND}\nr=$?\necho end >> '{log}'\nexit $r\n",
        configs.join(" "),
        log = log.display()
    );
    std::fs::write(&script, body).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let restart = format!("sh '{}'", script.display());
    let refs: Vec<&_> = nodes.iter().collect();
    lab.write_config(
        &refs,
        &ClusterConf {
            restart_command: Some(restart),
            ..Default::default()
        },
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        lines, "start 1\nend\nstart 2\nend\nstart 3\nend\n",
        "one node at a time, each restart after the one before ended"
    );
    for n in &nodes {
        cri_healthy(n).unwrap_or_else(|e| panic!("{e}"));
    }
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
}

/// `config_path` (outside comments) and legacy `mirrors` tables in config.toml.
fn registry_settings(config: &str) -> (bool, bool) {
    let live = |l: &&str| !l.trim_start().starts_with('#');
    let config_path = config
        .lines()
        .filter(live)
        .any(|l| l.trim_start().starts_with("config_path"));
    let mirrors = config
        .lines()
        .filter(live)
        .any(|l| l.contains("registry.mirrors"));
    (config_path, mirrors)
}

#[test]
fn switching_hosts_legacy_hosts_migrates_cleanly_and_pulls_keep_working() {
    let lab = Lab::start();
    let n1 = start_node();
    lab.write_config(&[&n1], &ClusterConf::default());
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    assert_eq!(
        registry_settings(&node_file(&n1, "config.toml").unwrap_or_default()),
        (true, false)
    );

    // hosts → legacy: mirrors in config.toml, config_path gone, hosts.toml gone, restart
    let starts = containerd_starts(&n1);
    lab.write_config(
        &[&n1],
        &ClusterConf {
            style: "legacy",
            ..Default::default()
        },
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let cfg = node_file(&n1, "config.toml").unwrap_or_default();
    assert_eq!(registry_settings(&cfg), (false, true), "{cfg}");
    assert!(cfg.contains("registry.mirrors.\"gcr.io\""), "{cfg}");
    assert!(cfg.contains("registry.mirrors.\"quay.io\""), "{cfg}");
    assert!(node_file(&n1, "certs.d/gcr.io/hosts.toml").is_none());
    assert!(
        containerd_starts(&n1) > starts,
        "no restart after the legacy edit"
    );
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));
    // a fresh image name each time: the pull must resolve again
    assert_pulls_through_mirror(&lab, &n1, QUAY_IMAGE);
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);

    // drift in the legacy style: a hand edit of the mirrors in config.toml
    // is drift of the node's config.toml, and verify names the file
    let host_port = lab.registry.host_port();
    assert!(cfg.contains(&host_port), "{cfg}");
    let config_toml = n1.etc_containerd_dir().join("config.toml");
    std::fs::write(&config_toml, cfg.replace(&host_port, "127.0.0.1:1"))
        .unwrap_or_else(|e| panic!("{}: {e}", config_toml.display()));
    let o = run_ok(
        lab.path(),
        &["plan", "--refresh-only", "--detailed-exitcode", "--json"],
        2,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan JSON: {e}\n{}", streams(&o)));
    let named = v["drift"].as_array().is_some_and(|d| {
        d.iter().any(|e| {
            e["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("node."))
                && e["changes"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["attribute"] == "file:/etc/containerd/config.toml")
                })
        })
    });
    assert!(named, "config.toml is not named: {v:#}");
    let o = run_ok(lab.path(), &["verify", "--no-pull"], 1);
    let text = all_text(&o);
    assert!(
        text.lines().any(|l| l.starts_with("mirrors")
            && l.contains("FAIL")
            && l.contains("/etc/containerd/config.toml lists")),
        "{text}"
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));

    // legacy → hosts: config_path back, mirrors gone, restart, healthy
    let starts = containerd_starts(&n1);
    lab.write_config(&[&n1], &ClusterConf::default());
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let cfg = node_file(&n1, "config.toml").unwrap_or_default();
    assert_eq!(registry_settings(&cfg), (true, false), "{cfg}");
    // legacy's tls entry is gone; the pull credentials stay in
    // registry.configs (hosts style puts them there too)
    assert!(!cfg.contains(".tls]"), "{cfg}");
    assert_eq!(cfg.matches("registry.configs.").count(), 1, "{cfg}");
    assert!(cfg.contains(".auth]"), "{cfg}");
    assert!(
        containerd_starts(&n1) > starts,
        "no restart after the hosts edit"
    );
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));
    assert_pulls_through_mirror(&lab, &n1, GCR_IMAGE);
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn a_changed_ca_shows_a_diff_for_every_node_and_rolls_out() {
    let lab = Lab::start();
    let n1 = start_node();
    let n2 = start_node();
    // the CA file as a path the test controls
    let ca = lab.path().join("mirror-ca.crt");
    std::fs::copy(lab.ca_cert(), &ca).unwrap_or_else(|e| panic!("copy CA: {e}"));
    let conf = ClusterConf {
        ca_cert: Some(ca.clone()),
        ..Default::default()
    };
    lab.write_config(&[&n1, &n2], &conf);
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);

    // a second CA in the bundle (as when a CA is rotated): same path, new content
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pki = mirrorplan_harness::TestPki::generate(other.path(), &[])
        .unwrap_or_else(|e| panic!("second CA: {e}"));
    let mut bundle = std::fs::read_to_string(lab.ca_cert()).unwrap_or_default();
    bundle.push_str(&std::fs::read_to_string(pki.ca_cert_path()).unwrap_or_default());
    std::fs::write(&ca, &bundle).unwrap_or_else(|e| panic!("{e}"));

    let o = run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
    let plan = all_text(&o);
    for n in [&n1, &n2] {
        assert!(
            plan.contains(&node_address(n)),
            "{} not in the plan:\n{plan}",
            node_address(n)
        );
    }
    assert!(plan.contains("-ca.crt"), "no CA file diff:\n{plan}");
    assert!(
        plan.contains("BEGIN CERTIFICATE"),
        "no CA content diff:\n{plan}"
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    for n in [&n1, &n2] {
        let gcr = node_file(n, "certs.d/gcr.io/hosts.toml").unwrap_or_default();
        let ca_path = gcr
            .lines()
            .find_map(|l| l.trim().strip_prefix("ca = "))
            .map(|s| {
                s.trim_matches('"')
                    .trim_start_matches("/etc/containerd/")
                    .to_string()
            })
            .unwrap_or_else(|| panic!("no ca in {gcr}"));
        assert_eq!(node_file(n, &ca_path).unwrap_or_default(), bundle);
        assert_pulls_through_mirror(&lab, n, GCR_IMAGE);
    }
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn a_hand_edit_or_a_deleted_file_on_a_node_shows_as_drift() {
    let lab = Lab::start();
    let n1 = start_node();
    lab.write_config(&[&n1], &ClusterConf::default());
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let certs = n1.etc_containerd_dir().join("certs.d");

    // a public file (the CA copy): the plan shows the edited line
    let ca = std::fs::read_dir(certs.join("quay.io"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-ca.crt"))
        .unwrap_or_else(|| panic!("no CA copy for quay.io"));
    let good_ca = std::fs::read_to_string(&ca).unwrap_or_default();
    std::fs::write(&ca, format!("{good_ca}# a hand edit\n")).unwrap_or_else(|e| panic!("{e}"));
    // a file holding credentials: shown as changed, its content never printed
    let hosts = certs.join("quay.io/hosts.toml");
    let good = std::fs::read_to_string(&hosts).unwrap_or_default();
    let edited = good.replace(
        "override_path = true",
        "override_path = false # secret-edit",
    );
    assert_ne!(good, edited);
    std::fs::write(&hosts, &edited).unwrap_or_else(|e| panic!("{e}"));

    let o = run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
    let plan = all_text(&o);
    assert!(plan.contains(&node_address(&n1)), "{plan}");
    assert!(
        plan.contains("a hand edit"),
        "the plan shows no diff of the edit:\n{plan}"
    );
    assert!(plan.contains("quay.io/hosts.toml"), "{plan}");
    assert!(plan.contains("(sensitive value)"), "{plan}");
    assert!(
        !plan.contains("secret-edit"),
        "a sensitive file was printed:\n{plan}"
    );
    assert!(
        !plan.contains("Basic "),
        "credentials were printed:\n{plan}"
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    assert_eq!(std::fs::read_to_string(&hosts).unwrap_or_default(), good);
    assert_eq!(std::fs::read_to_string(&ca).unwrap_or_default(), good_ca);

    std::fs::remove_file(certs.join("gcr.io/hosts.toml")).unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
    assert!(
        all_text(&o).contains("gcr.io/hosts.toml"),
        "{}",
        streams(&o)
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    assert!(node_file(&n1, "certs.d/gcr.io/hosts.toml").is_some());
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
}

/// A node whose SSH login is a non-root account: every command runs
/// through `sudo -n`, and containerd's root-only socket is reached through
/// a bridge run under sudo (sshd's socket forwarding would open it as the
/// login user). A login whose sudo wants a password is refused clearly.
#[test]
fn a_non_root_login_works_through_passwordless_sudo_and_a_password_prompt_is_a_clear_error() {
    use mirrorplan_harness::{ConfigStyle, ContainerdOptions, NodeUser};
    let lab = Lab::start();
    // containerd without config_path: the apply edits config.toml, so
    // containerd is restarted and health-checked over CRI
    let n1 = start_node_with_users(
        ContainerdOptions {
            config_style: ConfigStyle::Legacy,
            ..Default::default()
        },
        vec![
            NodeUser::sudoer("mpdeploy"),
            NodeUser::sudo_with_password("mpnopass"),
        ],
    );
    // the accounts exist on the node only, and are not root
    let ids = n1
        .ssh_run("id -u mpdeploy; id -u mpnopass")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ids.split_whitespace().collect::<Vec<_>>(),
        ["61000", "61001"]
    );
    let config_before = node_file(&n1, "config.toml");

    // sudo wants a password: refused with the reason and the way out,
    // nothing written
    lab.write_config(
        &[&n1],
        &ClusterConf {
            user: "mpnopass".into(),
            ..Default::default()
        },
    );
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let out = all_text(&o);
    assert!(
        out.contains("sudo on mpnopass@") && out.contains("refused to run without a password"),
        "{out}"
    );
    assert!(out.contains("NOPASSWD"), "no help given:\n{out}");
    assert!(node_file(&n1, "certs.d/gcr.io/hosts.toml").is_none());
    assert_eq!(node_file(&n1, "config.toml"), config_before);

    // passwordless sudo: files written as root with their modes,
    // containerd restarted and healthy, the canary pull proven
    lab.write_config(
        &[&n1],
        &ClusterConf {
            user: "mpdeploy".into(),
            ..Default::default()
        },
    );
    let starts = containerd_starts(&n1);
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    let out = all_text(&o);
    assert!(out.contains("cluster.c1"), "{out}");
    assert!(
        containerd_starts(&n1) > starts,
        "containerd was not restarted:\n{out}"
    );
    let sshd_log = std::fs::read_to_string(n1.sshd_log_path()).unwrap_or_default();
    assert!(
        sshd_log.contains("Accepted publickey for mpdeploy"),
        "mirrorplan did not log in as mpdeploy"
    );
    let log = registry_log(&lab);
    assert!(
        log.contains("ns=gcr.io"),
        "the canary pull did not reach the mirror"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let config = node_file(&n1, "config.toml").unwrap_or_default();
        assert!(config.contains("config_path"), "{config}");
        for (rel, mode) in [
            // the pull credentials are in config.toml (registry.configs)
            ("config.toml", Some(0o600)),
            ("certs.d/gcr.io/hosts.toml", Some(0o644)),
            ("certs.d/quay.io/hosts.toml", Some(0o644)),
        ] {
            let p = n1.etc_containerd_dir().join(rel);
            let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!((m.uid(), m.gid()), (0, 0), "{rel} is not owned by root");
            if let Some(mode) = mode {
                assert_eq!(m.mode() & 0o777, mode, "{rel}");
            }
        }
    }
    // containerd's socket is root's: sshd's socket forwarding (as
    // mpdeploy) cannot open it, so the health check and the canary pull
    // above went through the bridge under sudo
    let cri_as_mpdeploy = |sudo: bool| {
        runtime().block_on(async {
            let ep = n1.ssh();
            let mut o = mirrorplan_node::SshOptions::new(ep.host());
            o.port = ep.port();
            o.user = "mpdeploy".into();
            o.private_key = Some(ep.client_key_path());
            o.known_hosts = Some(ep.known_hosts_path());
            o.use_agent = false;
            o.sudo = Some(sudo);
            let ssh = mirrorplan_node::SshTransport::connect(&o)
                .await
                .map_err(|e| format!("ssh: {e}"))?;
            let cri = mirrorplan_node::CriClient::over_ssh(
                &ssh,
                mirrorplan_harness::NODE_CONTAINERD_SOCKET,
            )
            .await
            .map_err(|e| e.to_string())?;
            let v = cri.version().await.map_err(|e| e.to_string());
            ssh.close().await;
            v
        })
    };
    let direct = cri_as_mpdeploy(false);
    assert!(
        direct.is_err(),
        "mpdeploy opened the socket itself: {direct:?}"
    );
    let bridged = cri_as_mpdeploy(true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bridged.runtime_name, "containerd");
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));
    assert_pulls_through_mirror(&lab, &n1, GCR_IMAGE);
    // the refresh through sudo reads what the apply wrote
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
}

/// A non-root login on a node with no way to bridge to containerd's socket
/// (no socat, python3 or nc): refused before anything is written, naming
/// what to install.
#[test]
fn a_non_root_login_without_a_socket_bridge_is_refused_naming_what_to_install() {
    use mirrorplan_harness::NodeUser;
    let lab = Lab::start();
    let n1 = start_node_without(
        vec![NodeUser::sudoer("mpdeploy")],
        &["socat", "python3", "nc"],
    );
    let missing = n1
        .ssh_run(
            "for b in socat python3 nc; do \
             p=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v $b) \
             && [ -f \"$p\" ] && [ -x \"$p\" ] && echo $p || echo no-$b; done",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        missing.split_whitespace().collect::<Vec<_>>(),
        ["no-socat", "no-python3", "no-nc"]
    );
    let config_before = node_file(&n1, "config.toml");
    lab.write_config(
        &[&n1],
        &ClusterConf {
            user: "mpdeploy".into(),
            ..Default::default()
        },
    );
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let out = all_text(&o);
    assert!(out.contains(&node_address(&n1)), "{out}");
    assert!(
        out.contains("none of socat, python3 or an `nc` with -U"),
        "{out}"
    );
    assert!(out.contains("install socat"), "{out}");
    assert!(node_file(&n1, "certs.d/gcr.io/hosts.toml").is_none());
    assert_eq!(node_file(&n1, "config.toml"), config_before);
}
