//! The node `config_style`s for runtimes that are not configured through
//! containerd's own files, through the binary on `local:` nodes against
//! the nodes lab's TLS + htpasswd mirror (the bundle pushed into its
//! namespace by mirrorplan itself):
//!
//! - `registries_conf` (CRI-O / podman): the drop-in, `certs.d` CA and
//!   `auth.json` are written under the node root, and skopeo (the same
//!   containers/image library CRI-O and podman use) pulls
//!   `gcr.io/mirrorplan-fixtures/app-0:1.0` by its public name through
//!   them from the mirror, digest for digest. No request can leave the
//!   machine: the skopeo copy of the drop-in points the upstream
//!   `location` of `gcr.io` at a refused loopback port, and skopeo's proxy
//!   for everything but the mirror is that port too;
//! - `k3s` / `rke2`: `registries.yaml` and the CA (k3s cannot run here:
//!   the format is checked by the node crate's snapshots);
//! - for each style (k3s and rke2 included): a second plan is a no-op,
//!   containerd's config.toml is never written, and a hand edit or removal
//!   of each kind of file it writes (drop-in, CA, auth.json,
//!   registries.yaml) is drift, and a `verify` failure, naming the node and
//!   the file.

mod nodes_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use nodes_support::{all_text, run_ok, streams, Lab, GCR_IMAGE, NAMESPACE, PASSWORD, USER};

/// The lab's registry and image set, plus a cluster of one `local:` node
/// in `style` (with `extra` lines in its `containerd` block).
fn write_config(lab: &Lab, style: &str, extra: &str) {
    let hcl = format!(
        "{}\ncluster \"c1\" {{\n  nodes = [\"local:./nodes/n0\"]\n  registry_mirror {{\n    \
         registry         = registry.mirror\n    hosts            = [\"quay.io\"]\n    \
         pull_credentials = \"{}\"\n  }}\n  containerd {{\n    config_style = \"{style}\"\n{extra}  }}\n  \
         depends_on = [image_set.bundle]\n}}\n",
        lab.registry_block(Some(NAMESPACE), None),
        lab.pull_credentials.display(),
    );
    lab.write_file("main.hcl", &hcl);
}

fn node_root(lab: &Lab) -> PathBuf {
    lab.path().join("nodes/n0")
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const NODE: &str = "node.c1[\"local:./nodes/n0\"]";

/// Apply, then the checks every style shares: a second plan plans nothing,
/// config.toml was never written, and a hand edit of `edited` (a path
/// below the node root) is drift naming the node and the file.
fn apply_then_no_op_then_drift(lab: &Lab, edited: &str) {
    let plan = run_ok(lab.path(), &["plan", "--detailed-exitcode"], 2);
    let text = all_text(&plan);
    assert!(text.contains(NODE), "{text}");
    // neither the password nor the basic token reaches the plan
    let token = mirrorplan_node::provider::basic_auth(USER, PASSWORD);
    assert!(
        !text.contains(&token),
        "the pull credentials leaked:\n{text}"
    );
    assert!(
        text.contains("is not touched"),
        "the plan says config.toml is left alone:\n{text}"
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    assert!(
        !node_root(lab).join("etc/containerd").exists(),
        "containerd's files were written for a non-containerd style"
    );
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);

    // a hand edit: drift of that node's file, by name
    hand_change_is_drift(lab, edited, HandChange::Edit);
}

/// What a hand does to a node's file.
#[derive(Clone, Copy, PartialEq)]
enum HandChange {
    /// A line is appended.
    Edit,
    /// The file is removed.
    Remove,
}

/// `change` to `rel` (a path below the node root) is drift naming the node
/// and the file (masked when the file holds credentials), `verify` names
/// the node's file too, and an apply repairs it.
fn hand_change_is_drift(lab: &Lab, rel: &str, change: HandChange) {
    let path = node_root(lab).join(rel);
    match change {
        HandChange::Edit => {
            let mut text = read(&path);
            text.push_str("# edited by hand\n");
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        }
        HandChange::Remove => {
            std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }
    }
    let o = run_ok(
        lab.path(),
        &["plan", "--refresh-only", "--detailed-exitcode", "--json"],
        2,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan JSON: {e}\n{}", streams(&o)));
    let entry = v["drift"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["address"] == NODE))
        .unwrap_or_else(|| panic!("{NODE} did not drift: {v:#}"));
    let attr = format!("file:/{rel}");
    let c = entry["changes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["attribute"] == attr.as_str()))
        .unwrap_or_else(|| panic!("{attr} is not named: {entry:#}"));
    if change == HandChange::Remove {
        assert!(c["after"].is_null(), "{c:#}");
    }
    let text = all_text(&o);
    let token = mirrorplan_node::provider::basic_auth(USER, PASSWORD);
    assert!(!text.contains(PASSWORD) && !text.contains(&token), "{text}");
    // verify names the node and the file too, and apply repairs it
    let o = run_ok(lab.path(), &["verify", "--no-pull"], 1);
    let text = all_text(&o);
    let says = match change {
        HandChange::Edit => format!("/{rel} differs from what mirrorplan renders"),
        HandChange::Remove => format!("/{rel} is missing"),
    };
    let row = text
        .lines()
        .find(|l| l.contains(&says))
        .unwrap_or_else(|| panic!("verify does not say `{says}`:\n{text}"));
    assert!(row.contains(NODE) && row.contains("FAIL"), "{row}");
    assert!(
        text.contains("containerd's config checks are skipped"),
        "{text}"
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 0);
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
    run_ok(lab.path(), &["verify", "--no-pull"], 0);
}

#[test]
fn registries_conf_is_read_by_skopeo_through_the_mirror() {
    let lab = Lab::start();
    write_config(&lab, "registries_conf", "");
    apply_then_no_op_then_drift(&lab, "etc/containers/registries.conf.d/50-mirrorplan.conf");

    let root = node_root(&lab);
    let host_port = lab.registry.host_port();
    let drop_in = root.join("etc/containers/registries.conf.d/50-mirrorplan.conf");
    let auth = root.join("etc/containers/auth.json");
    let certs = root.join(format!("etc/containers/certs.d/{host_port}"));
    assert_eq!(mode(&auth), 0o600);
    assert_eq!(read(&certs.join("ca.crt")), read(&lab.ca_cert()));
    // every file the style writes is read back: the CA, the credentials
    hand_change_is_drift(
        &lab,
        &format!("etc/containers/certs.d/{host_port}/ca.crt"),
        HandChange::Remove,
    );
    hand_change_is_drift(&lab, "etc/containers/auth.json", HandChange::Edit);
    let conf = read(&drop_in);
    assert!(
        conf.contains(&format!("location = \"{host_port}/{NAMESPACE}\"")),
        "{conf}"
    );

    // loopback only: the upstream location of gcr.io becomes a port that
    // refuses, so a fallback past the mirror cannot leave the machine
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let guarded = conf.replacen(
        "location = \"gcr.io\"",
        &format!("location = \"{refused}\""),
        1,
    );
    assert_ne!(guarded, conf, "no upstream location for gcr.io in\n{conf}");
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let registries_conf = home.path().join("registries.conf");
    std::fs::write(&registries_conf, &guarded).unwrap_or_else(|e| panic!("{e}"));

    // and every connection that is not to the mirror goes to a proxy on
    // that refused port too (no DNS lookup of an upstream name either);
    // `--no-tags`: listing tags never goes through mirrors
    let proxy = format!("http://{refused}");
    let skopeo = |with_auth: bool| {
        let mut cmd = Command::new("skopeo");
        cmd.env("HOME", home.path())
            .env("HTTPS_PROXY", &proxy)
            .env("HTTP_PROXY", &proxy)
            .env("NO_PROXY", &host_port)
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .env_remove("no_proxy")
            .env_remove("CONTAINERS_REGISTRIES_CONF")
            .env_remove("REGISTRY_AUTH_FILE")
            .arg("--registries-conf")
            .arg(&registries_conf)
            .args(["inspect", "--no-tags", "--cert-dir"])
            .arg(&certs)
            .arg("--authfile")
            .arg(if with_auth {
                auth.clone()
            } else {
                home.path().join("no-auth.json")
            })
            .arg(format!("docker://{GCR_IMAGE}"));
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run skopeo: {e}"))
    };
    let log_before = nodes_support::registry_log(&lab).len();
    let out = skopeo(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "skopeo inspect through the mirror failed:\n{stdout}\n{stderr}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["Digest"], lab.digest(GCR_IMAGE), "{v:#}");
    // and the mirror served it, under its namespace
    let log = nodes_support::registry_log(&lab);
    let pulls = &log[log_before.min(log.len())..];
    assert!(
        pulls.contains("GET")
            && pulls.contains(&format!(
                "/v2/{NAMESPACE}/mirrorplan-fixtures/app-0/manifests/1.0"
            )),
        "the mirror's log has no pull of the namespaced manifest:\n{pulls}"
    );
    // the credentials come from the written auth.json: without it the
    // mirror refuses, and the guarded fallback cannot succeed either
    let out = skopeo(false);
    assert!(
        !out.status.success(),
        "skopeo pulled without the mirror's credentials:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn k3s_and_rke2_write_registries_yaml() {
    let lab = Lab::start();
    write_config(&lab, "k3s", "");
    apply_then_no_op_then_drift(&lab, "etc/rancher/k3s/registries.yaml");
    let root = node_root(&lab);
    let yaml = root.join("etc/rancher/k3s/registries.yaml");
    assert_eq!(mode(&yaml), 0o600, "registries.yaml holds the password");
    let text = read(&yaml);
    let host_port = lab.registry.host_port();
    assert!(
        text.contains(&format!(
            "      - \"https://{host_port}\"\n    rewrite:\n      \"^(.*)$\": \"{NAMESPACE}/$1\""
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "      ca_file: \"/etc/rancher/k3s/mirrorplan/{}-ca.crt\"",
            host_port.replace(':', "_")
        )),
        "{text}"
    );

    hand_change_is_drift(
        &lab,
        &format!(
            "etc/rancher/k3s/mirrorplan/{}-ca.crt",
            host_port.replace(':', "_")
        ),
        HandChange::Remove,
    );

    // switching to rke2 moves the files: the k3s ones are removed, and
    // rke2's are read back as k3s's were
    write_config(&lab, "rke2", "");
    apply_then_no_op_then_drift(&lab, "etc/rancher/rke2/registries.yaml");
    assert!(!yaml.exists());
    assert!(root.join("etc/rancher/rke2/registries.yaml").exists());
    assert!(!root
        .join("etc/rancher/k3s/mirrorplan")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));
    run_ok(lab.path(), &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn attributes_that_do_not_apply_to_a_style_are_diagnostics() {
    let lab = Lab::start();
    write_config(
        &lab,
        "registries_conf",
        "    config_file = \"/etc/containerd/config.toml\"\n",
    );
    let o = run_ok(lab.path(), &["validate"], 1);
    let text = all_text(&o);
    assert!(
        text.contains("config_file does not apply to config_style = \"registries_conf\"")
            && text.contains("main.hcl"),
        "{text}"
    );
    write_config(&lab, "crio", "");
    let o = run_ok(lab.path(), &["validate"], 1);
    let text = all_text(&o);
    assert!(
        text.contains("config_style must be \"hosts\", \"legacy\", \"registries_conf\", \"k3s\" or \"rke2\", not \"crio\""),
        "{text}"
    );
}

/// On a real SSH node (sshd in its own mount namespace, whose
/// `/etc/containerd` is private): the files go through the SSH transport,
/// `restart_command` runs once per apply that changed a file and never
/// otherwise, and containerd's config.toml stays byte for byte. The
/// style's `config_path` is put under the node's private `/etc/containerd`
/// so that nothing is written to this machine's `/etc/containers`.
#[test]
fn registries_conf_on_an_ssh_node_reloads_only_when_a_file_changed() {
    let lab = Lab::start();
    let n = nodes_support::start_node();
    let etc = n.etc_containerd_dir();
    let config_toml = etc.join("config.toml");
    let before = std::fs::read(&config_toml).unwrap_or_default();
    let reloads = etc.join("reloads");
    let write = |hosts: &[&str]| {
        lab.write_config(
            &[&n],
            &nodes_support::ClusterConf {
                style: "registries_conf",
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                restart_command: Some("echo reload >> /etc/containerd/reloads".into()),
                ..Default::default()
            },
        );
        let hcl = read(&lab.path().join("main.hcl")).replacen(
            "    config_style    = \"registries_conf\"\n",
            "    config_style    = \"registries_conf\"\n    config_path     = \"/etc/containerd/containers\"\n",
            1,
        );
        lab.write_file("main.hcl", &hcl);
    };
    let count = || {
        std::fs::read_to_string(&reloads)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let node = nodes_support::node_address(&n);
    write(&["quay.io"]);
    // the node is configured; the cluster step's canary then asks CRI-O's
    // socket, which this node does not have: that step fails, naming it
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let text = all_text(&o);
    assert!(text.contains("/var/run/crio/crio.sock"), "{text}");
    let drop_in = etc.join("containers/registries.conf.d/50-mirrorplan.conf");
    assert!(
        read(&drop_in).contains(&format!(
            "location = \"{}/{NAMESPACE}\"",
            lab.registry.host_port()
        )),
        "{}",
        streams(&o)
    );
    assert_eq!(mode(&etc.join("containers/auth.json")), 0o600);
    assert_eq!(count(), 1, "one reload after the first apply");
    assert_eq!(
        std::fs::read(&config_toml).unwrap_or_default(),
        before,
        "config.toml was changed"
    );

    // nothing changed: the node is not touched, no reload
    let o = run_ok(lab.path(), &["plan"], 0);
    assert!(
        !all_text(&o).contains(&format!("{node} will be")),
        "{}",
        streams(&o)
    );
    run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    assert_eq!(count(), 1, "a reload without a change");

    // one more mirrored host: the drop-in changes, one reload
    write(&["quay.io", "docker.io"]);
    run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    assert!(read(&drop_in).contains("prefix = \"docker.io\""));
    assert_eq!(count(), 2, "one reload for the change");
    assert_eq!(std::fs::read(&config_toml).unwrap_or_default(), before);
}

/// A failing `restart_command` (here: only its first run) restores the
/// node's files as they were and runs the command again, so that the
/// runtime reads the old files; the node fails with both facts.
#[test]
fn a_failing_reload_restores_the_files_and_reloads_again() {
    let lab = Lab::start();
    let n = nodes_support::start_node();
    let etc = n.etc_containerd_dir();
    lab.write_config(
        &[&n],
        &nodes_support::ClusterConf {
            style: "k3s",
            restart_command: Some(
                "test -e /etc/containerd/once || { touch /etc/containerd/once; exit 3; }".into(),
            ),
            ..Default::default()
        },
    );
    let hcl = read(&lab.path().join("main.hcl")).replacen(
        "    config_style    = \"k3s\"\n",
        "    config_style    = \"k3s\"\n    config_path     = \"/etc/containerd/k3s\"\n",
        1,
    );
    lab.write_file("main.hcl", &hcl);
    let o = run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    let text = all_text(&o);
    assert!(text.contains("(exit Some(3))"), "{text}");
    assert!(text.contains("the node's files were restored"), "{text}");
    assert!(text.contains("ran again"), "{text}");
    assert!(
        !etc.join("k3s/registries.yaml").exists(),
        "registries.yaml was not restored to its absence"
    );
    assert!(etc.join("once").exists());
    // the next apply writes it, and the command succeeds this time (exit 1
    // still: the cluster step's canary asks k3s's CRI socket, absent here)
    run_ok(lab.path(), &["apply", "--auto-approve"], 1);
    assert!(etc.join("k3s/registries.yaml").exists());
}
