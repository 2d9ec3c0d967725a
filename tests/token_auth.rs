//! Issue 17, item 3 end to end through the `mirrorplan` binary: node pull
//! credentials that work with a registry using token authentication.
//!
//! The mirror is the real distribution registry configured with
//! `auth: token:` (realm, service, issuer, rootcertbundle) and the
//! harness's token service on 127.0.0.1, which checks the basic
//! credentials and signs ES256 JWTs with a test key. mirrorplan pushes the
//! bundle into it, configures a harness node (real containerd 1.6 with
//! `config_path`) over SSH, and the node pulls `gcr.io/...` by its public
//! name through the mirror: the credentials reach containerd's CRI
//! resolver as `registry.configs."HOST".auth`, with which it answers the
//! registry's `Bearer` challenge by fetching a token.

mod nodes_support;

use nodes_support::*;

#[test]
fn a_token_auth_mirror_is_pulled_from_with_config_toml_credentials() {
    let lab = Lab::start_token_auth();
    let token = lab
        .registry
        .token_service()
        .unwrap_or_else(|| panic!("the mirror has no token service"));
    // mirrorplan's own client went through the token service to push
    assert!(
        token.requests().iter().any(|r| r.granted),
        "mirrorplan pushed without a token: {:?}",
        token.requests()
    );
    let n1 = start_node();

    // without pull credentials: the registry's Bearer challenge cannot be
    // answered, the cluster step's canary pull fails, and so does a pull
    lab.write_config(
        &[&n1],
        &ClusterConf {
            pull_credentials: false,
            ..Default::default()
        },
    );
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    assert!(all_text(&o).contains("cluster.c1"), "{}", streams(&o));
    let open_config = node_file(&n1, "config.toml").unwrap_or_default();
    assert!(!open_config.contains("registry.configs"), "{open_config}");
    let before = token.requests().len();
    let err = cri_pull(&n1, GCR_IMAGE).expect_err("pull without credentials");
    assert!(
        err.to_lowercase().contains("401") || err.contains("nauthorized"),
        "{err}"
    );
    // containerd asked the token service anonymously and got nothing
    assert!(
        token.requests()[before..].iter().all(|r| !r.granted),
        "{:?}",
        token.requests()
    );

    // with them: config.toml's registry.configs."HOST".auth, masked in
    // the plan, the file 0600; hosts.toml keeps no header
    lab.write_config(&[&n1], &ClusterConf::default());
    let host = lab.registry.host_port();
    let o = run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
    let plan = all_text(&o);
    assert!(
        plan.contains(&format!("registry.configs.\"{host}\".auth")),
        "the plan does not name the credentials it writes:\n{plan}"
    );
    assert!(plan.contains("(sensitive value)"), "{plan}");
    assert!(!plan.contains(USER_PASS_B64.as_str()), "{plan}");
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);

    let config = node_file(&n1, "config.toml").unwrap_or_default();
    let table = format!("[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"{host}\".auth]");
    assert!(config.contains(&table), "{config}");
    assert!(
        config.contains(&format!("username = \"{USER}\"")),
        "{config}"
    );
    assert!(
        config.contains("config_path = \"/etc/containerd/certs.d\""),
        "{config}"
    );
    assert_eq!(node_file_mode(&n1, "config.toml"), 0o600);
    for h in ["gcr.io", "quay.io"] {
        let rel = format!("certs.d/{h}/hosts.toml");
        let text = node_file(&n1, &rel).unwrap_or_default();
        assert!(text.contains(&host), "{text}");
        assert!(!text.contains("Authorization"), "{text}");
        assert_eq!(node_file_mode(&n1, &rel), 0o644, "{rel}");
    }

    // the proof: the public name pulls through the token-auth mirror,
    // with the mirror's digest, after a token was granted for its scope
    let before = token.requests().len();
    assert_pulls_through_mirror(&lab, &n1, GCR_IMAGE);
    let granted: Vec<_> = token.requests()[before..]
        .iter()
        .filter(|r| r.granted)
        .cloned()
        .collect();
    assert!(
        granted.iter().any(|r| r.username.as_deref() == Some(USER)
            && r.scopes.iter().any(|s| s
                .contains(&format!("{NAMESPACE}/mirrorplan-fixtures/app-0"))
                && s.ends_with(":pull"))),
        "no token granted to the node for the image: {:?}",
        token.requests()
    );
    assert!(registry_log(&lab).contains("ns=gcr.io"));

    // converged: nothing left to do
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);

    // why: the form mirrorplan wrote before, a fixed `Authorization:
    // Basic` header in hosts.toml (the same credentials), does not answer
    // the Bearer challenge. By hand: config.toml without the credentials,
    // quay.io's hosts.toml with the header, containerd restarted.
    let etc = n1.etc_containerd_dir();
    std::fs::write(etc.join("config.toml"), &open_config)
        .unwrap_or_else(|e| panic!("writing config.toml: {e}"));
    let rel = "certs.d/quay.io/hosts.toml";
    let hosts = node_file(&n1, rel).unwrap_or_default();
    let url = format!("https://{host}/v2/{NAMESPACE}");
    let with_header = hosts.replace(
        "  override_path = true\n",
        &format!(
            "  override_path = true\n  [host.\"{url}\".header]\n    Authorization = [\"Basic {}\"]\n",
            USER_PASS_B64.as_str()
        ),
    );
    assert_ne!(with_header, hosts, "no override_path line in {hosts}");
    std::fs::write(etc.join(rel), with_header).unwrap_or_else(|e| panic!("writing {rel}: {e}"));
    n1.ssh_run(&n1.containerd_restart_command())
        .unwrap_or_else(|e| panic!("restarting containerd: {e}"));
    cri_healthy(&n1).unwrap_or_else(|e| panic!("{e}"));
    let before = token.requests().len();
    let err =
        cri_pull(&n1, QUAY_IMAGE).expect_err("a fixed Basic header answered a Bearer challenge");
    assert!(
        err.to_lowercase().contains("401") || err.contains("nauthorized"),
        "{err}"
    );
    assert!(
        token.requests()[before..].iter().all(|r| !r.granted),
        "{:?}",
        token.requests()
    );
}

/// `base64("USER:PASSWORD")`: never in an output.
static USER_PASS_B64: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| mirrorplan_harness::Credentials::new(USER, PASSWORD).basic_token());
