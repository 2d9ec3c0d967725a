//! The lab shared by `tests/verify.rs`, `tests/drift.rs` and
//! `tests/markdown.rs`: a TLS + htpasswd harness [`Registry`] as the mirror,
//! a three-image bundle pushed into it by `mirrorplan apply` itself, and one
//! harness [`Node`] (sshd + real containerd in its own mount namespace on a
//! `127.A.B.C` address) configured by mirrorplan as cluster `admin`.
//!
//! Also the ways to break it the source document cares about (tag deleted,
//! manifest replaced, hosts.toml edited, CA removed, legacy mirrors beside
//! `config_path`, containerd stopped) and placeholders for snapshots.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mirrorplan_harness::{Credentials, Node, NodeOptions, Registry, RegistryOptions};
use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, LayerCompression, Packing};
use mirrorplan_registry::provider::{ImageProvider, RegistryConn};

/// The mirror's user.
pub const USER: &str = "mpuser";
/// The mirror's password: must never appear in mirrorplan's output.
pub const PASSWORD: &str = "verify-Secret-77";
/// The registry's namespace.
pub const NAMESPACE: &str = "test-namespace";
/// Mirrored by default (gcr.io): the cluster's canary image.
pub const GCR_IMAGE: &str = "gcr.io/mirrorplan-fixtures/app-0:1.0";
/// Mirrored because listed in `hosts`.
pub const QUAY_IMAGE: &str = "quay.io/mirrorplan/tool-1:v1";
/// Not mirrored by the cluster.
pub const DOCKER_IMAGE: &str = "docker.io/library/base-2:latest";

/// `image.bundle["IMAGE"]`.
pub fn image_address(image: &str) -> String {
    format!("image.bundle[\"{image}\"]")
}

/// A running lab.
pub struct Lab {
    pub registry: Registry,
    pub node: Node,
    pub dir: tempfile::TempDir,
    /// image name → manifest digest.
    pub digests: Vec<(String, String)>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// A `mirrorplan` command: no colour, no stdin, the password in the environment.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1");
    c.env("MIRRORPLAN_VAR_mirror_password", PASSWORD);
    c.stdin(Stdio::null());
    c
}

/// JSON from text, with the text in the panic message.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

impl Lab {
    /// Starts the mirror and the node, pushes the bundle and configures the
    /// node with `mirrorplan apply`.
    pub fn start() -> Lab {
        let registry = Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("starting the mirror registry: {e}"));
        let node = Node::start(NodeOptions::default())
            .unwrap_or_else(|e| panic!("starting a harness node: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let fixture = write_oci_bundle(
            dir.path().join("bundle.tar.gz"),
            &FixtureSpec {
                seed: 11,
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
            .filter_map(|i| {
                i.manifest_digest
                    .as_ref()
                    .map(|d| (i.name.clone(), d.to_string()))
            })
            .collect();
        let lab = Lab {
            registry,
            node,
            dir,
            digests,
        };
        lab.write_config();
        lab.run_ok(&["apply", "--auto-approve"], 0);
        lab
    }

    /// The configuration directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The mirror's CA file.
    pub fn ca_cert(&self) -> PathBuf {
        self.registry
            .ca_cert_path()
            .unwrap_or_else(|| panic!("the mirror has no CA"))
    }

    /// The node as written in `nodes`.
    pub fn node_key(&self) -> String {
        self.node.ssh_addr().to_string()
    }

    /// `node.admin["127.a.b.c:PORT"]`.
    pub fn node_address(&self) -> String {
        format!("node.admin[\"{}\"]", self.node_key())
    }

    /// The manifest digest of an image of the bundle.
    pub fn digest(&self, image: &str) -> String {
        self.digests
            .iter()
            .find(|(n, _)| n == image)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no digest for {image}: {:?}", self.digests))
    }

    fn write_config(&self) {
        let pull = self.path().join("pull-config.json");
        let creds = self
            .registry
            .docker_config_json()
            .unwrap_or_else(|| panic!("the registry has no credentials"));
        std::fs::write(&pull, creds).unwrap_or_else(|e| panic!("pull credentials: {e}"));
        let ep = self.node.ssh();
        let config = format!(
            r#"variable "mirror_password" {{
  type      = string
  sensitive = true
}}

registry "mirror" {{
  endpoint  = "{url}"
  namespace = "{NAMESPACE}"
  ca_cert   = "{ca}"
  username  = "{USER}"
  password  = var.mirror_password
}}

image_set "bundle" {{
  registry = registry.mirror
  bundle   = "bundle.tar.gz"
}}

cluster "admin" {{
  nodes = ["{node}"]
  ssh {{
    user        = "root"
    private_key = "{key}"
    known_hosts = "{kh}"
    use_agent   = false
  }}
  registry_mirror {{
    registry         = registry.mirror
    hosts            = ["quay.io"]
    pull_credentials = "{pull}"
  }}
  containerd {{
    restart_command = "{restart}"
  }}
  depends_on = [image_set.bundle]
}}
"#,
            url = self.registry.url(),
            ca = self.ca_cert().display(),
            node = self.node_key(),
            key = ep.client_key_path().display(),
            kh = ep.known_hosts_path().display(),
            pull = pull.display(),
            restart = self.node.containerd_restart_command(),
        );
        std::fs::write(self.path().join("main.hcl"), config)
            .unwrap_or_else(|e| panic!("writing main.hcl: {e}"));
    }

    /// Runs `mirrorplan -C DIR ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        bin()
            .arg("-C")
            .arg(self.path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mirrorplan: {e}"))
    }

    /// Runs, asserts the exit code and that no secret was printed.
    pub fn run_ok(&self, args: &[&str], code: i32) -> Output {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "mirrorplan {args:?}\n{}",
            streams(&o)
        );
        self.assert_no_secret(&o);
        o
    }

    /// Neither stream holds the password or the basic-auth token.
    pub fn assert_no_secret(&self, o: &Output) {
        let all = format!("{}{}", stdout(o), stderr(o));
        let token = Credentials::new(USER, PASSWORD).basic_token();
        assert!(
            !all.contains(PASSWORD),
            "the password was printed:\n{}",
            streams(o)
        );
        assert!(
            !all.contains(&token),
            "the auth token was printed:\n{}",
            streams(o)
        );
    }

    /// A file under the node's `/etc/containerd` (host-side path).
    pub fn node_path(&self, rel: &str) -> PathBuf {
        self.node.etc_containerd_dir().join(rel)
    }

    /// The CA file mirrorplan wrote for `host` (the one `*-ca.crt` there).
    pub fn ca_file(&self, host: &str) -> PathBuf {
        let d = self.node_path(&format!("certs.d/{host}"));
        std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-ca.crt"))
            .unwrap_or_else(|| panic!("no CA file in {}", d.display()))
    }

    fn client(&self) -> std::sync::Arc<mirrorplan_registry::RegistryClient> {
        let conn = RegistryConn {
            endpoint: self.registry.url(),
            ca_cert: Some(self.ca_cert().display().to_string()),
            username: Some(USER.into()),
            password: Some(PASSWORD.into()),
            ..RegistryConn::default()
        };
        ImageProvider::new()
            .client(&conn)
            .unwrap_or_else(|e| panic!("registry client: {e}"))
    }

    /// `test-namespace/...` repository and tag of an upstream image.
    pub fn mirror_repo(image: &str) -> (String, String) {
        let (path, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{image} has no tag"));
        let (_, repo) = path
            .split_once('/')
            .unwrap_or_else(|| panic!("{image} has no host"));
        (format!("{NAMESPACE}/{repo}"), tag.to_string())
    }

    /// Deletes an image's manifest (and so its tag) from the mirror.
    pub fn delete_tag(&self, image: &str) {
        let (repo, _) = Self::mirror_repo(image);
        let digest = mirrorplan_registry::Digest::parse(&self.digest(image))
            .unwrap_or_else(|e| panic!("digest: {e}"));
        rt().block_on(self.client().delete_manifest(&repo, &digest))
            .unwrap_or_else(|e| panic!("deleting {repo}@{digest}: {e}"));
    }

    /// Pushes a different manifest under an image's tag (same blobs, one
    /// more annotation); returns its digest.
    pub fn replace_manifest(&self, image: &str) -> String {
        let (repo, tag) = Self::mirror_repo(image);
        let client = self.client();
        rt().block_on(async {
            let (bytes, media_type, _) = client
                .get_manifest(&repo, &tag)
                .await
                .unwrap_or_else(|e| panic!("GET {repo}:{tag}: {e}"));
            let mut v = json(&String::from_utf8_lossy(&bytes));
            v["annotations"] = serde_json::json!({"test.mirrorplan/replaced": "yes"});
            let new = serde_json::to_vec(&v).unwrap_or_else(|e| panic!("{e}"));
            client
                .put_manifest(&repo, &tag, &media_type, &new)
                .await
                .unwrap_or_else(|e| panic!("PUT {repo}:{tag}: {e}"))
                .to_string()
        })
    }

    /// Runs a command on the node over ssh.
    pub fn on_node(&self, remote: &str) -> String {
        self.node
            .ssh_run(remote)
            .unwrap_or_else(|e| panic!("on the node `{remote}`: {e}"))
    }

    /// Replaces `from` by `to` in a node file.
    pub fn edit_node_file(&self, rel: &str, from: &str, to: &str) {
        let p = self.node_path(rel);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.contains(from),
            "{} has no {from:?}:\n{text}",
            p.display()
        );
        std::fs::write(&p, text.replace(from, to))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    /// Appends legacy `registry.mirrors` beside `config_path` and restarts
    /// containerd: its CRI plugin no longer loads.
    pub fn add_legacy_mirrors_and_restart(&self) {
        let p = self.node_path("config.toml");
        let mut text =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        text.push_str(&format!(
            "\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"registry.k8s.io\"]\n  endpoint = [\"{}\"]\n",
            self.registry.url()
        ));
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        self.on_node(&self.node.containerd_restart_command());
    }

    /// Stops the node's containerd.
    pub fn stop_containerd(&self) {
        self.on_node(&format!(
            "{} stop-containerd",
            self.node.ctl_path().display()
        ));
    }

    /// Starts the node's containerd again.
    pub fn start_containerd(&self) {
        self.on_node(&format!(
            "{} start-containerd",
            self.node.ctl_path().display()
        ));
    }

    /// `s` with ports, the temp dir, the node address and digests replaced
    /// by placeholders, for snapshots.
    pub fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        let canonical =
            std::fs::canonicalize(self.path()).unwrap_or_else(|_| self.path().to_path_buf());
        for p in [canonical, self.path().to_path_buf()] {
            out = out.replace(&p.display().to_string(), "[DIR]");
        }
        out = out.replace(&self.node_key(), "[NODE]");
        out = out.replace(&self.registry.host_port(), "[MIRROR]");
        out = out.replace(&self.registry.host_port().replace(':', "_"), "[MIRROR_]");
        out = out.replace(&self.ca_cert().display().to_string(), "[CA]");
        let out: String = out
            .lines()
            .map(|l| {
                // the diff marker is one '+' or '-' (around spaces); a
                // base64 line may itself start with '+'
                let rest = l.trim_start_matches(' ');
                let rest = rest
                    .strip_prefix(['+', '-'])
                    .unwrap_or(rest)
                    .trim_start_matches(' ');
                let body = rest;
                let pem = body.len() >= 20
                    && !body.contains("--")
                    && body
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
                if pem {
                    format!("{}[PEM]\n", &l[..l.len() - body.len()])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        redact_digests(&out)
    }
}

/// A table with every run of two or more spaces made exactly two, so that
/// placeholders of another length than the value do not move columns.
pub fn collapse_columns(s: &str) -> String {
    s.lines()
        .map(|l| {
            let mut out = String::new();
            let mut spaces = 0;
            for c in l.chars() {
                if c == ' ' {
                    spaces += 1;
                    continue;
                }
                if spaces > 0 {
                    out.push_str(if spaces >= 2 { "  " } else { " " });
                    spaces = 0;
                }
                out.push(c);
            }
            out + "\n"
        })
        .collect()
}

/// `sha256:<64 hex>` → `sha256:[DIGEST]`, `blake3:<hex>` → `blake3:[DIGEST]`.
pub fn redact_digests(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let next = ["sha256:", "blake3:"]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min();
        let Some((i, prefix)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i + prefix.len()]);
        rest = &rest[i + prefix.len()..];
        let hex = rest.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        if hex >= 32 {
            out.push_str("[DIGEST]");
            rest = &rest[hex..];
        }
    }
}

/// A small tokio runtime for registry calls from tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}
