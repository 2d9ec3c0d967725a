//! Shared setup of the end-to-end node tests (`tests/nodes*.rs`): a TLS +
//! htpasswd harness [`Registry`] as the mirror, a small bundle (a gcr.io, a
//! quay.io and a docker.io image) pushed into it by the `mirrorplan` binary
//! itself, harness [`Node`]s (sshd + real containerd in their own mount
//! namespace on `127.A.B.C`), a configuration written into a temp dir, and
//! CRI checks over SSH with the node crate's [`CriClient`].
//!
//! The nodes share the host's network namespace, so `127.0.0.1:PORT` (the
//! mirror) is the same socket from inside a node as from the test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mirrorplan_harness::{
    ContainerdOptions, Credentials, Node, NodeOptions, Registry, RegistryOptions,
    NODE_CONTAINERD_SOCKET,
};
use mirrorplan_node::{CriClient, ImageInfo, SshOptions, SshTransport};
use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, LayerCompression, Packing};

/// The mirror's push/pull user (the password is [`PASSWORD`]).
pub const USER: &str = "mpuser";
/// The mirror's password: must never appear in mirrorplan's output.
pub const PASSWORD: &str = "mp-secret-Pa55";
/// The registry's namespace in the configuration.
pub const NAMESPACE: &str = "test-namespace";

/// The bundle's images: mirrored by default (gcr.io), mirrored because
/// listed in `hosts` (quay.io), not mirrored (docker.io).
pub const GCR_IMAGE: &str = "gcr.io/mirrorplan-fixtures/app-0:1.0";
pub const QUAY_IMAGE: &str = "quay.io/mirrorplan/tool-1:v1";
pub const DOCKER_IMAGE: &str = "docker.io/library/base-2:latest";

/// The mirror, the bundle (already pushed) and a configuration directory.
pub struct Lab {
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    /// image name → manifest digest in the mirror (pushed byte for byte).
    pub digests: Vec<(String, String)>,
    /// The Docker config file with the mirror's pull credentials.
    pub pull_credentials: PathBuf,
}

/// How a cluster block is written by [`Lab::write_config`].
#[derive(Debug, Clone)]
pub struct ClusterConf {
    /// `config_style`.
    pub style: &'static str,
    /// `hosts` of the registry_mirror block.
    pub hosts: Vec<String>,
    /// Write `pull_credentials`.
    pub pull_credentials: bool,
    /// The registry's namespace.
    pub namespace: Option<String>,
    /// known_hosts file (default: every node's key, see [`Lab::known_hosts`]).
    pub known_hosts: Option<PathBuf>,
    /// `restart_command` override (default: the first node's restart script).
    pub restart_command: Option<String>,
    /// The rollout block's body, e.g. `max_unavailable = 2`.
    pub rollout: Option<String>,
    /// `ca_cert` of the registry block (default: the registry's CA).
    pub ca_cert: Option<PathBuf>,
    /// `ssh.user` (default `root`); see [`start_node_with_users`].
    pub user: String,
}

impl Default for ClusterConf {
    fn default() -> Self {
        ClusterConf {
            style: "hosts",
            hosts: vec!["quay.io".into()],
            pull_credentials: true,
            namespace: Some(NAMESPACE.into()),
            known_hosts: None,
            restart_command: None,
            rollout: None,
            ca_cert: None,
            user: "root".into(),
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `mirrorplan` command with colours off and no stdin.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1");
    c.env("MIRRORPLAN_VAR_mirror_password", PASSWORD);
    c.stdin(Stdio::null());
    c
}

/// Runs `mirrorplan -C dir ARGS`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    match bin().arg("-C").arg(dir).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run mirrorplan: {e}"),
    }
}

/// Both streams, for assertion messages.
pub fn streams(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// stdout + stderr as one string.
pub fn all_text(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// Runs and asserts the exit code; the output never holds the password.
pub fn run_ok(dir: &Path, args: &[&str], code: i32) -> Output {
    let o = run(dir, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "mirrorplan {args:?}\n{}",
        streams(&o)
    );
    assert!(
        !all_text(&o).contains(PASSWORD),
        "the mirror password was printed:\n{}",
        streams(&o)
    );
    o
}

/// Starts a node whose containerd uses `config_path = /etc/containerd/certs.d`.
pub fn start_node() -> Node {
    start_node_with(ContainerdOptions::default())
}

/// Starts a node with these containerd options.
pub fn start_node_with(containerd: ContainerdOptions) -> Node {
    Node::start(NodeOptions {
        containerd,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("starting a harness node: {e}"))
}

/// Starts a node with these containerd options that also has these
/// non-root accounts (see [`mirrorplan_harness::NodeUser`]).
pub fn start_node_with_users(
    containerd: ContainerdOptions,
    users: Vec<mirrorplan_harness::NodeUser>,
) -> Node {
    Node::start(NodeOptions {
        containerd,
        users,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("starting a harness node: {e}"))
}

/// [`start_node_with_users`] on a node without these programs (see
/// `NodeOptions::hidden_programs`).
pub fn start_node_without(
    users: Vec<mirrorplan_harness::NodeUser>,
    hidden_programs: &[&str],
) -> Node {
    Node::start(NodeOptions {
        users,
        hidden_programs: hidden_programs.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("starting a harness node: {e}"))
}

/// `host:port` of a node's sshd, as written in `nodes = [...]`.
pub fn node_key(n: &Node) -> String {
    n.ssh_addr().to_string()
}

/// `node.c1["127.a.b.c:PORT"]`.
pub fn node_address(n: &Node) -> String {
    format!("node.c1[\"{}\"]", node_key(n))
}

impl Lab {
    /// Starts the mirror and pushes the bundle into it with mirrorplan.
    pub fn start() -> Lab {
        Lab::start_with(false)
    }

    /// [`Lab::start`] with a mirror using token authentication (`auth:
    /// token:` and the harness's token service) instead of htpasswd.
    pub fn start_token_auth() -> Lab {
        Lab::start_with(true)
    }

    fn start_with(token_auth: bool) -> Lab {
        let registry = Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            token_auth,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("starting the mirror registry: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let bundle = dir.path().join("bundle.tar.gz");
        let fixture = write_oci_bundle(
            &bundle,
            &FixtureSpec {
                seed: 5,
                images: 3,
                layers_per_image: 1,
                shared_base_layers: 1,
                layer_size: 2048,
                multi_arch: false,
                layer_compression: LayerCompression::Gzip,
            },
            Packing::TarGz,
        )
        .unwrap_or_else(|e| panic!("writing the bundle: {e}"));
        let digests: Vec<(String, String)> = fixture
            .images
            .iter()
            .map(|i| {
                let d = i.manifest_digest.as_ref().map(|d| d.to_string());
                (
                    i.name.clone(),
                    d.unwrap_or_else(|| panic!("{} has no digest", i.name)),
                )
            })
            .collect();
        for name in [GCR_IMAGE, QUAY_IMAGE, DOCKER_IMAGE] {
            assert!(
                digests.iter().any(|(n, _)| n == name),
                "the fixture has no {name}: {digests:?}"
            );
        }
        let pull_credentials = dir.path().join("pull-config.json");
        let json = registry
            .docker_config_json()
            .unwrap_or_else(|| panic!("the registry has no credentials"));
        std::fs::write(&pull_credentials, json)
            .unwrap_or_else(|e| panic!("writing pull credentials: {e}"));
        let lab = Lab {
            registry,
            dir,
            digests,
            pull_credentials,
        };
        // push the bundle with mirrorplan itself (no cluster yet)
        lab.write_file("main.hcl", &lab.registry_block(Some(NAMESPACE), None));
        run_ok(lab.path(), &["apply", "--auto-approve"], 0);
        lab
    }

    /// The configuration directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file into the configuration directory.
    pub fn write_file(&self, name: &str, content: &str) {
        let p = self.path().join(name);
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }

    /// The mirror digest of `image`.
    pub fn digest(&self, image: &str) -> &str {
        self.digests
            .iter()
            .find(|(n, _)| n == image)
            .map(|(_, d)| d.as_str())
            .unwrap_or_else(|| panic!("no digest for {image}"))
    }

    /// The CA file of the mirror.
    pub fn ca_cert(&self) -> PathBuf {
        self.registry
            .ca_cert_path()
            .unwrap_or_else(|| panic!("the mirror has no CA"))
    }

    /// The registry and image_set blocks.
    pub fn registry_block(&self, namespace: Option<&str>, ca: Option<&Path>) -> String {
        let ns = namespace
            .map(|n| format!("  namespace = \"{n}\"\n"))
            .unwrap_or_default();
        let ca = ca.map(Path::to_path_buf).unwrap_or_else(|| self.ca_cert());
        format!(
            "variable \"mirror_password\" {{\n  type      = string\n  sensitive = true\n}}\n\n\
             registry \"mirror\" {{\n  endpoint  = \"{url}\"\n{ns}  ca_cert   = \"{ca}\"\n  \
             username  = \"{USER}\"\n  password  = var.mirror_password\n}}\n\n\
             image_set \"bundle\" {{\n  registry = registry.mirror\n  bundle   = \"bundle.tar.gz\"\n}}\n",
            url = self.registry.url(),
            ca = ca.display(),
        )
    }

    /// A known_hosts file with every node's host key.
    pub fn known_hosts(&self, nodes: &[&Node]) -> PathBuf {
        let mut all = String::new();
        for n in nodes {
            let p = n.ssh().known_hosts_path();
            all.push_str(
                &std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", p.display())),
            );
        }
        let path = self.path().join("known_hosts");
        std::fs::write(&path, all).unwrap_or_else(|e| panic!("writing known_hosts: {e}"));
        path
    }

    /// Lets the first node's client key log in to every node (the cluster
    /// has one `private_key`): appends its public key to each node's
    /// `authorized_keys` (beside the node's own client key).
    pub fn authorize(&self, nodes: &[&Node]) -> PathBuf {
        let key = nodes[0].ssh().client_key_path();
        let public = std::fs::read_to_string(key.with_extension("pub"))
            .unwrap_or_else(|e| panic!("reading the public key of {}: {e}", key.display()));
        for n in &nodes[1..] {
            let auth = n
                .ssh()
                .client_key_path()
                .parent()
                .map(|d| d.join("authorized_keys"))
                .unwrap_or_else(|| panic!("no ssh dir"));
            assert!(auth.exists(), "{} is missing", auth.display());
            let mut current = std::fs::read_to_string(&auth)
                .unwrap_or_else(|e| panic!("reading {}: {e}", auth.display()));
            if !current.contains(public.trim()) {
                current.push_str(&public);
                std::fs::write(&auth, current)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", auth.display()));
            }
        }
        key
    }

    /// The whole configuration: registry, image set and cluster `c1` of
    /// `nodes`; written to `main.hcl`.
    pub fn write_config(&self, nodes: &[&Node], conf: &ClusterConf) {
        let key = self.authorize(nodes);
        let known_hosts = conf
            .known_hosts
            .clone()
            .unwrap_or_else(|| self.known_hosts(nodes));
        let list: Vec<String> = nodes
            .iter()
            .map(|n| format!("\"{}\"", node_key(n)))
            .collect();
        let hosts: Vec<String> = conf.hosts.iter().map(|h| format!("\"{h}\"")).collect();
        let creds = if conf.pull_credentials {
            format!(
                "    pull_credentials = \"{}\"\n",
                self.pull_credentials.display()
            )
        } else {
            String::new()
        };
        for n in nodes {
            install_restart_script(n);
        }
        let restart = conf
            .restart_command
            .clone()
            .unwrap_or_else(|| RESTART_COMMAND.to_string());
        let rollout = conf
            .rollout
            .as_ref()
            .map(|r| format!("  rollout {{\n    {r}\n  }}\n"))
            .unwrap_or_default();
        let cluster = format!(
            "\ncluster \"c1\" {{\n  nodes = [{list}]\n  ssh {{\n    user        = \"{user}\"\n    \
             private_key = \"{key}\"\n    known_hosts = \"{kh}\"\n    use_agent   = false\n  }}\n  \
             registry_mirror {{\n    registry = registry.mirror\n    hosts    = [{hosts}]\n{creds}  }}\n  \
             containerd {{\n    config_style    = \"{style}\"\n    restart_command = {restart}\n  }}\n\
             {rollout}  depends_on = [image_set.bundle]\n}}\n",
            list = list.join(", "),
            user = conf.user,
            key = key.display(),
            kh = known_hosts.display(),
            hosts = hosts.join(", "),
            style = conf.style,
            restart = hcl_string(&restart),
        );
        let config =
            self.registry_block(conf.namespace.as_deref(), conf.ca_cert.as_deref()) + &cluster;
        self.write_file("main.hcl", &config);
    }
}

/// The cluster's `restart_command`: every node has this script (see
/// [`install_restart_script`]), which restarts that node's own containerd.
pub const RESTART_COMMAND: &str = "sh /etc/containerd/restart-containerd.sh";

/// Puts `/etc/containerd/restart-containerd.sh` on the node: it runs the
/// node's harness restart script (each node has its own, with its own log).
pub fn install_restart_script(n: &Node) {
    let p = n.etc_containerd_dir().join("restart-containerd.sh");
    let body = format!(
        "#!/bin/sh\n# written by tests/nodes_support: restart this node's containerd\nexec {}\n",
        n.containerd_restart_command()
    );
    std::fs::write(&p, body).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
}

/// An HCL string literal.
pub fn hcl_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A file of the node, read through its host-side `/etc/containerd`
/// (`rel` is relative to `/etc/containerd`); `None` when absent.
pub fn node_file(n: &Node, rel: &str) -> Option<String> {
    std::fs::read_to_string(n.etc_containerd_dir().join(rel)).ok()
}

/// The mode bits of a node file.
pub fn node_file_mode(n: &Node, rel: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let p = n.etc_containerd_dir().join(rel);
    std::fs::metadata(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A tokio runtime for the CRI checks.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

fn ssh_options(n: &Node) -> SshOptions {
    let ep = n.ssh();
    let mut o = SshOptions::new(ep.host());
    o.port = ep.port();
    o.user = ep.user().to_owned();
    o.private_key = Some(ep.client_key_path());
    o.known_hosts = Some(ep.known_hosts_path());
    o.use_agent = false;
    o.timeout = Duration::from_secs(30);
    o
}

/// Pulls `image` by its public name with the node's containerd (CRI over
/// the node's SSH, no credentials in the request: they must come from the
/// node's configuration) and returns the image's status.
pub fn cri_pull(n: &Node, image: &str) -> Result<ImageInfo, String> {
    runtime().block_on(async {
        let ssh = SshTransport::connect(&ssh_options(n))
            .await
            .map_err(|e| format!("ssh to {}: {e}", node_key(n)))?;
        let cri = CriClient::over_ssh(&ssh, NODE_CONTAINERD_SOCKET)
            .await
            .map_err(|e| format!("CRI on {}: {e}", node_key(n)))?;
        cri.pull(image, None)
            .await
            .map_err(|e| format!("pull {image} on {}: {e}", node_key(n)))?;
        let info = cri
            .image_status(image)
            .await
            .map_err(|e| format!("status of {image} on {}: {e}", node_key(n)))?;
        ssh.close().await;
        info.ok_or_else(|| format!("{image} is not on {} after the pull", node_key(n)))
    })
}

/// containerd's CRI plugin answers on the node.
pub fn cri_healthy(n: &Node) -> Result<(), String> {
    runtime().block_on(async {
        let ssh = SshTransport::connect(&ssh_options(n))
            .await
            .map_err(|e| format!("ssh to {}: {e}", node_key(n)))?;
        let cri = CriClient::over_ssh(&ssh, NODE_CONTAINERD_SOCKET)
            .await
            .map_err(|e| format!("CRI on {}: {e}", node_key(n)))?;
        let r = cri
            .version()
            .await
            .map(|_| ())
            .map_err(|e| format!("CRI version on {}: {e}", node_key(n)));
        ssh.close().await;
        r
    })
}

/// Asserts that the node pulls `image` through the mirror: the pull works
/// (nothing else is reachable) and `repoDigests` hold the mirror digest.
pub fn assert_pulls_through_mirror(lab: &Lab, n: &Node, image: &str) {
    let info = cri_pull(n, image).unwrap_or_else(|e| panic!("{e}"));
    let repo = image.rsplit_once(':').map(|(r, _)| r).unwrap_or(image);
    let want = format!("{repo}@{}", lab.digest(image));
    assert_eq!(
        info.repo_digests,
        vec![want],
        "{image} on {}: {info:?}",
        node_key(n)
    );
}

/// The mirror's access log.
pub fn registry_log(lab: &Lab) -> String {
    std::fs::read_to_string(lab.registry.log_path()).unwrap_or_default()
}

/// How often containerd was started on the node (its log's start lines).
pub fn containerd_starts(n: &Node) -> usize {
    std::fs::read_to_string(n.containerd_log_path())
        .unwrap_or_default()
        .matches("starting containerd")
        .count()
}
