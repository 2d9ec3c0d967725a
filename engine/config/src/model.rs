//! The checked configuration model.
//!
//! What the HCL files say once every expression is evaluated, every reference
//! resolved and every value checked. Plain data: no I/O, no HCL types. It
//! serialises to JSON so that providers can take their part of it without
//! knowing HCL; secrets serialise as `(sensitive value)` unless revealed on
//! purpose with [`Secret::expose`].

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize, Serializer};

/// A secret value: printed and serialised as `(sensitive value)`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; call only where it is really used (an HTTP header, a node file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive value)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive value)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("(sensitive value)")
    }
}

/// Where a block is declared: file name and byte range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Origin {
    /// File name relative to the configuration directory.
    pub file: String,
    /// Byte range of the block or attribute.
    #[serde(skip)]
    pub span: Range<usize>,
    /// 1-based line.
    pub line: usize,
}

/// A registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", rename_all = "lowercase")]
pub enum Endpoint {
    /// `https://host[:port]`
    Https {
        /// Host name or IP address.
        host: String,
        /// Port, when given.
        port: Option<u16>,
    },
    /// `http://host[:port]` (plain HTTP)
    Http {
        /// Host name or IP address.
        host: String,
        /// Port, when given.
        port: Option<u16>,
    },
    /// `oci:PATH`: a local OCI image layout directory.
    Oci {
        /// The directory, resolved against the configuration directory.
        path: PathBuf,
    },
}

impl Endpoint {
    /// `host[:port]` for network endpoints.
    pub fn host_port(&self) -> Option<String> {
        match self {
            Endpoint::Https { host, port } | Endpoint::Http { host, port } => Some(match port {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            }),
            Endpoint::Oci { .. } => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Https { .. } => write!(f, "https://{}", self.host_port().unwrap_or_default()),
            Endpoint::Http { .. } => write!(f, "http://{}", self.host_port().unwrap_or_default()),
            Endpoint::Oci { path } => write!(f, "oci:{}", path.display()),
        }
    }
}

/// A `registry` block.
#[derive(Debug, Clone, Serialize)]
pub struct Registry {
    /// The block's name.
    pub name: String,
    /// Where it is served.
    pub endpoint: Endpoint,
    /// The writable namespace, e.g. `test-namespace`.
    pub namespace: Option<String>,
    /// CA certificate file for a private TLS certificate.
    pub ca_cert: Option<PathBuf>,
    /// Push user.
    pub username: Option<String>,
    /// Push password.
    pub password: Option<Secret>,
    /// A Docker `config.json` with the push credentials.
    pub docker_config: Option<PathBuf>,
    /// `credentials_from = "none"`: without `username`/`password` or
    /// `docker_config`, anonymous, not the credential files of docker,
    /// podman and skopeo (`"environment"`, the default).
    pub no_environment_credentials: bool,
    /// Proxy URL for this registry. Credentials in it (`http://user:pass@host`)
    /// are never shown: see the registry provider's `RegistryConn`.
    pub proxy: Option<String>,
    /// True when the proxy URL derives from a sensitive value: it is then
    /// shown and stored only as `(sensitive value)` (and a salted digest).
    pub proxy_sensitive: bool,
    /// Skip TLS verification (explicit opt-in, warned about in every plan).
    pub insecure: bool,
    /// Seconds the registry may leave a request unanswered (`None`: the
    /// client's default).
    pub timeout_seconds: Option<u64>,
    /// `max_concurrency`, `rate_limit` and `retry { }`.
    pub limits: RegistryLimits,
    /// Where it is declared.
    pub origin: Origin,
}

/// The per-registry limits of a `registry` block (`None`: the default).
/// They apply to every request to the block's host, whether it is the
/// mirror or an upstream that `images` copy from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RegistryLimits {
    /// `max_concurrency`: requests in flight at once (at least 1).
    pub max_concurrency: Option<u32>,
    /// `rate_limit`: requests started per period.
    pub rate_limit: Option<RateLimit>,
    /// `retry.attempts`: attempts per request in all (1: no retry).
    pub retry_attempts: Option<u32>,
    /// `retry.max_delay`: the longest wait between attempts (also caps a
    /// `Retry-After`).
    pub retry_max_delay: Option<std::time::Duration>,
}

/// `rate_limit = "N/s"` or `"N/m"`: at most `count` requests started per
/// `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Requests per period (at least 1).
    pub count: u32,
    /// The period: one second or one minute.
    pub per: std::time::Duration,
}

/// An `image_set` block instance.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSet {
    /// The block's name.
    pub name: String,
    /// The `for_each` key, when the block uses `for_each`.
    pub key: Option<String>,
    /// The registry (block name) the images are pushed to.
    pub registry: String,
    /// Bundle file.
    pub bundle: Option<PathBuf>,
    /// Upstream image references.
    pub images: Vec<String>,
    /// `repository { }` blocks: tags of upstream repositories picked at
    /// plan time.
    pub repositories: Vec<crate::tags::TagSelection>,
    /// Platforms to keep, e.g. `linux/amd64`; empty = all.
    pub platforms: Vec<String>,
    /// Delete the images from the registry on destroy.
    pub prune: bool,
    /// Copy the artifacts referring to each image (signatures,
    /// attestations, SBOMs, OCI 1.1 referrers) with it.
    pub referrers: bool,
    /// Explicit dependencies (block addresses such as `cluster.admin1`).
    pub depends_on: Vec<String>,
    /// Its `lifecycle` block.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Where it is declared.
    pub origin: Origin,
}

impl ImageSet {
    /// The address of this instance: `image_set.NAME` or `image_set.NAME["KEY"]`.
    pub fn address(&self) -> String {
        instance_address("image_set", &self.name, self.key.as_deref())
    }
}

/// A cluster node address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum NodeAddr {
    /// A node reached over SSH.
    Ssh {
        /// Host name or IP.
        host: String,
        /// Port (default 22).
        port: u16,
    },
    /// `local:PATH`: a directory on this machine standing in for a node's root.
    Local {
        /// The directory, resolved against the configuration directory.
        path: PathBuf,
        /// The path as written (the node's name).
        written: String,
    },
}

impl NodeAddr {
    /// The node's name as written (its instance key).
    pub fn key(&self) -> String {
        match self {
            NodeAddr::Ssh { host, port: 22 } => host.clone(),
            NodeAddr::Ssh { host, port } => format!("{host}:{port}"),
            NodeAddr::Local { written, .. } => format!("local:{written}"),
        }
    }
}

/// The `ssh` block of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Ssh {
    /// Remote user (default `root`).
    pub user: String,
    /// Private key file.
    pub private_key: Option<PathBuf>,
    /// Passphrase of the private key.
    pub passphrase: Option<Secret>,
    /// known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// An explicit host key pin (`ssh-ed25519 AAAA...`).
    pub host_key: Option<String>,
    /// Use the SSH agent when present (default true).
    pub use_agent: bool,
    /// Connection timeout in seconds.
    pub timeout_seconds: u64,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            user: "root".into(),
            private_key: None,
            passphrase: None,
            known_hosts: None,
            host_key: None,
            use_agent: true,
            timeout_seconds: 10,
        }
    }
}

/// One `registry_mirror` block of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryMirror {
    /// The registry (block name).
    pub registry: String,
    /// Upstream hosts mirrored besides `gcr.io` (always mirrored).
    pub hosts: Vec<String>,
    /// Docker config file with the mirror's pull credentials.
    pub pull_credentials: Option<PathBuf>,
}

/// How containerd's registry configuration is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigStyle {
    /// `config_path` + `HOST/hosts.toml` (containerd 1.5+ and 2.x).
    Hosts,
    /// `registry.mirrors` in `config.toml` (containerd 1.x).
    Legacy,
    /// CRI-O / podman: a `registries.conf.d` drop-in, `certs.d`, `auth.json`
    /// under `config_path`.
    #[serde(rename = "registries_conf")]
    RegistriesConf,
    /// k3s: `registries.yaml` under `config_path`.
    K3s,
    /// RKE2: `registries.yaml` under `config_path`.
    Rke2,
}

impl ConfigStyle {
    /// The `config_style` values and their styles.
    pub const NAMES: [(&'static str, ConfigStyle); 5] = [
        ("hosts", ConfigStyle::Hosts),
        ("legacy", ConfigStyle::Legacy),
        ("registries_conf", ConfigStyle::RegistriesConf),
        ("k3s", ConfigStyle::K3s),
        ("rke2", ConfigStyle::Rke2),
    ];

    /// `hosts` and `legacy` configure containerd itself (`config.toml`).
    pub fn is_containerd(self) -> bool {
        matches!(self, ConfigStyle::Hosts | ConfigStyle::Legacy)
    }
}

/// The `cluster_config` block of a cluster: its bare-metal cluster
/// configuration file and the command that applies it to the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterConfigFile {
    /// The file (relative paths are relative to the configuration directory).
    pub file: PathBuf,
    /// Run once after the file changed, with `sh -c` in the configuration directory.
    pub update_command: String,
    /// True when the command derives from a sensitive value: never shown.
    pub update_command_sensitive: bool,
}

/// The `containerd` block of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Containerd {
    /// hosts, legacy, registries_conf, k3s or rke2.
    pub config_style: ConfigStyle,
    /// The directory the style writes under, if the configuration sets it
    /// (the node provider owns each style's default: `mirrorplan_node::ConfigStyle`).
    pub config_path: Option<String>,
    /// containerd's main config file (default `/etc/containerd/config.toml`).
    pub config_file: String,
    /// The command that makes the runtime read its files again, if the
    /// configuration sets it (the default is the node provider's, per style).
    pub restart_command: Option<String>,
    /// True when the restart command derives from a sensitive value: plans
    /// then show it as `(sensitive value)` and the state keeps a salted digest.
    pub restart_command_sensitive: bool,
}

impl Default for Containerd {
    fn default() -> Self {
        Containerd {
            config_style: ConfigStyle::Hosts,
            config_path: None,
            config_file: "/etc/containerd/config.toml".into(),
            restart_command: None,
            restart_command_sensitive: false,
        }
    }
}

/// The `rollout` block of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    /// Nodes changed at once (default 1).
    pub max_unavailable: u32,
    /// Failed nodes tolerated before the rollout stops (default 0).
    pub max_failures: u32,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            max_unavailable: 1,
            max_failures: 0,
        }
    }
}

/// A `cluster` block instance.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// The block's name.
    pub name: String,
    /// The `for_each` key, when the block uses `for_each`.
    pub key: Option<String>,
    /// The nodes.
    pub nodes: Vec<NodeAddr>,
    /// SSH settings.
    pub ssh: Ssh,
    /// Mirrors in priority order.
    pub mirrors: Vec<RegistryMirror>,
    /// gcr.io service-account key file.
    pub gcr_key: Option<PathBuf>,
    /// containerd settings.
    pub containerd: Containerd,
    /// Rollout settings.
    pub rollout: Rollout,
    /// The cluster configuration file the mirrors go into (then the nodes
    /// are only verified, never written).
    pub cluster_config: Option<ClusterConfigFile>,
    /// Explicit dependencies (block addresses).
    pub depends_on: Vec<String>,
    /// Its `lifecycle` block.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Where it is declared.
    pub origin: Origin,
}

impl Cluster {
    /// The address of this instance: `cluster.NAME` or `cluster.NAME["KEY"]`.
    pub fn address(&self) -> String {
        instance_address("cluster", &self.name, self.key.as_deref())
    }
    /// The instance name used in node addresses: `NAME` or `NAME["KEY"]` flattened to `NAME.KEY`.
    pub fn instance_name(&self) -> String {
        match &self.key {
            Some(k) => format!("{}[{}]", self.name, quote(k)),
            None => self.name.clone(),
        }
    }
}

/// A variable declaration.
#[derive(Debug, Clone, Serialize)]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// Declared type (`string`, `number`, `bool`, `list(string)`, ...), `any` when absent.
    pub type_name: String,
    /// Description.
    pub description: Option<String>,
    /// Sensitive values are never shown.
    pub sensitive: bool,
    /// Whether a value was given (default, flag, file or environment).
    pub has_value: bool,
}

/// An output.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    /// Its name.
    pub name: String,
    /// Its value (JSON).
    pub value: serde_json::Value,
    /// Sensitive outputs are shown as `(sensitive value)`.
    pub sensitive: bool,
    /// Description.
    pub description: Option<String>,
}

/// The whole checked configuration.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Config {
    /// The configuration directory.
    pub dir: PathBuf,
    /// Variables.
    pub variables: IndexMap<String, Variable>,
    /// Registries by name.
    pub registries: IndexMap<String, Registry>,
    /// Image set instances.
    pub image_sets: Vec<ImageSet>,
    /// Cluster instances.
    pub clusters: Vec<Cluster>,
    /// Outputs by name.
    pub outputs: IndexMap<String, Output>,
    /// Block-level dependency edges `(from, to)`: `to` depends on `from`.
    pub edges: Vec<Edge>,
    /// The `mirrorplan { backend "..." { ... } }` block, if any.
    pub backend: Option<crate::backend::BackendBlock>,
    /// `moved` blocks, in file order.
    pub moved: Vec<crate::moved::MovedBlock>,
}

/// A dependency between two blocks (or block instances).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The dependency.
    pub from: String,
    /// The dependent.
    pub to: String,
    /// True when the edge comes from `depends_on`.
    pub explicit: bool,
}

/// Quotes a key as HCL/Terraform do in addresses: `"a\"b"`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `KIND.NAME` or `KIND.NAME["KEY"]`.
pub fn instance_address(kind: &str, name: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("{kind}.{name}[{}]", quote(k)),
        None => format!("{kind}.{name}"),
    }
}
