//! The `node` provider: one resource instance per cluster node,
//! `node.CLUSTER["host"]`, implementing the engine's provider contract.
//!
//! Attributes (built by [`NodeSpec::to_desired`], read back by
//! [`NodeSpec::from_attrs`]): the transport, the containerd settings, one
//! `file:PATH` attribute per rendered file (sensitive when it holds
//! credentials) and, for the legacy style, the mirror settings needed to edit
//! `config.toml`. The provider adds `file:CONFIG_FILE` itself at plan time:
//! that edit depends on the file as it is on the node.
//!
//! One node's apply: read the files (or reuse what this process's refresh
//! read, kept in [`Connections`]) → write only what differs, each
//! atomically, after checking TOML parses (with a reused read, the write
//! command first checks on the node that every file it replaces is still
//! as read, and writes nothing otherwise: the node fails with "changed on
//! the node since it was read; run plan again") → restart containerd only
//! if `config.toml` changed → health check → on failure restore every file
//! and restart again, and fail the node with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use mirrorplan_engine::{
    Address, Adoption, ApplyContext, Attrs, DesiredInstance, NewInstanceState, Observed,
    PlannedChange, PriorInstance, Provider, ProviderError,
};
use serde_json::{json, Value};

use crate::containerd::{edit_config, parse_containerd_version, ContainerdVersion};
use crate::diff::{digest, DesiredFile};
use crate::model::{ConfigStyle, EndpointScheme, MirrorSpec, NodeMirrorConfig, PullAuth};
use crate::secret::Secret;
use crate::transport::{LocalTransport, Output, Transport};
use crate::NodeError;

/// The provider kind.
pub const KIND: &str = "node";
/// Prefix of file attributes.
pub const FILE_PREFIX: &str = "file:";

/// How to reach a node.
#[derive(Clone, PartialEq, Eq)]
pub enum TransportSpec {
    /// A directory on this machine standing in for the node's root.
    Local {
        /// The directory.
        root: String,
    },
    /// SSH.
    Ssh {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Remote user.
        user: String,
        /// Private key file.
        private_key: Option<String>,
        /// Key passphrase (secret).
        passphrase: Option<String>,
        /// known_hosts file.
        known_hosts: Option<String>,
        /// Explicit host key pin.
        host_key: Option<String>,
        /// Use the SSH agent when present.
        use_agent: bool,
        /// Connect timeout in seconds.
        timeout_seconds: u64,
    },
}

impl std::fmt::Debug for TransportSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportSpec::Local { root } => write!(f, "local:{root}"),
            TransportSpec::Ssh {
                host, port, user, ..
            } => write!(f, "ssh://{user}@{host}:{port}"),
        }
    }
}

impl TransportSpec {
    /// The public JSON form used in instance attributes (no passphrase).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            TransportSpec::Local { root } => json!({"kind": "local", "root": root}),
            TransportSpec::Ssh {
                host,
                port,
                user,
                private_key,
                known_hosts,
                host_key,
                use_agent,
                timeout_seconds,
                ..
            } => json!({
                "kind": "ssh", "host": host, "port": port, "user": user,
                "private_key": private_key, "known_hosts": known_hosts, "host_key": host_key,
                "use_agent": use_agent, "timeout_seconds": timeout_seconds,
            }),
        }
    }

    /// Reads [`TransportSpec::to_json`] back, with the passphrase attribute.
    pub(crate) fn from_json(v: &Value, passphrase: Option<&Value>) -> Option<TransportSpec> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match s("kind")?.as_str() {
            "local" => Some(TransportSpec::Local { root: s("root")? }),
            "ssh" => Some(TransportSpec::Ssh {
                host: s("host")?,
                port: v
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(22),
                user: s("user").unwrap_or_else(|| "root".into()),
                private_key: s("private_key"),
                passphrase: passphrase.and_then(Value::as_str).map(str::to_string),
                known_hosts: s("known_hosts"),
                host_key: s("host_key"),
                use_agent: v.get("use_agent").and_then(Value::as_bool).unwrap_or(true),
                timeout_seconds: v
                    .get("timeout_seconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(10),
            }),
            _ => None,
        }
    }
}

/// One node's files as a refresh read them (`None`: missing), by path.
type NodeRead = BTreeMap<String, Option<Vec<u8>>>;

/// Open connections, one per node, reused by every operation of a run, and
/// the files each node's refresh read in this process (apply's base, taken
/// once).
#[derive(Default)]
pub struct Connections {
    ssh: tokio::sync::Mutex<std::collections::HashMap<String, Arc<crate::ssh::SshTransport>>>,
    reads: std::sync::Mutex<std::collections::HashMap<String, NodeRead>>,
}

impl Connections {
    /// Keep what a refresh read from a node (it replaces an earlier read).
    fn remember_read(&self, spec: &TransportSpec, read: NodeRead) {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(format!("{spec:?}"), read);
    }

    /// What this process's refresh read from a node, once: a second apply
    /// of the same node reads it again.
    fn take_read(&self, spec: &TransportSpec) -> Option<NodeRead> {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&format!("{spec:?}"))
    }

    /// The transport for a node: a directory for `local:` nodes, an SSH
    /// connection (opened once, then shared) for the others.
    pub async fn open(&self, spec: &TransportSpec) -> Result<Arc<dyn Transport>, ProviderError> {
        match spec {
            TransportSpec::Local { root } => {
                // the directory is made by the first write, not by a plan
                Ok(Arc::new(LocalTransport::new(root)) as Arc<dyn Transport>)
            }
            TransportSpec::Ssh { .. } => Ok(self.ssh(spec).await? as Arc<dyn Transport>),
        }
    }

    /// The SSH connection for an SSH node.
    pub async fn ssh(
        &self,
        spec: &TransportSpec,
    ) -> Result<Arc<crate::ssh::SshTransport>, ProviderError> {
        let TransportSpec::Ssh {
            host,
            port,
            user,
            private_key,
            passphrase,
            known_hosts,
            host_key,
            use_agent,
            timeout_seconds,
        } = spec
        else {
            return Err(ProviderError::invalid_input("not an SSH node"));
        };
        let key = format!("{user}@{host}:{port}");
        let mut cache = self.ssh.lock().await;
        if let Some(t) = cache.get(&key) {
            return Ok(t.clone());
        }
        let mut opts = crate::ssh::SshOptions::new(host.clone());
        opts.port = *port;
        opts.user = user.clone();
        opts.private_key = private_key.as_ref().map(std::path::PathBuf::from);
        opts.passphrase = passphrase.as_ref().map(|p| Secret::from(p.as_str()));
        opts.known_hosts = known_hosts.as_ref().map(std::path::PathBuf::from);
        opts.host_key_pin = host_key.clone();
        opts.use_agent = *use_agent;
        opts.timeout = std::time::Duration::from_secs((*timeout_seconds).max(1));
        let t = crate::ssh::SshTransport::connect(&opts).await.map_err(|e| {
            let unreachable = matches!(
                &e,
                NodeError::Ssh(inner)
                    if matches!(**inner, crate::ssh::SshError::Connect { .. } | crate::ssh::SshError::Timeout { .. })
            );
            let msg = format!("node {key}: {e}");
            if unreachable {
                ProviderError::unreachable(msg)
            } else {
                ProviderError::failed(msg)
            }
        })?;
        if t.uses_sudo() {
            // a login that is not root reaches containerd through a bridge
            // under `sudo -n`: refuse the node now, before anything is
            // written, if sudo wants a password or there is no bridge
            crate::cri::check_socket_bridge(&t)
                .await
                .map_err(|e| unreachable(&t, e))?;
        }
        let t = Arc::new(t);
        cache.insert(key, t.clone());
        Ok(t)
    }
}

/// Everything the provider needs to know about one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// How to reach it.
    pub transport: TransportSpec,
    /// The mirror settings (rendered into files).
    pub config: NodeMirrorConfig,
    /// containerd's main config file on the node.
    pub config_file: String,
    /// Command that restarts containerd.
    pub restart_command: String,
    /// True when the restart command derives from a sensitive value: it is a
    /// sensitive attribute, and plans and errors show it as `(sensitive value)`.
    pub restart_command_sensitive: bool,
}

fn bad(msg: impl Into<String>) -> ProviderError {
    ProviderError::invalid_input(msg)
}

fn node_err(ctx: &str, e: NodeError) -> ProviderError {
    ProviderError::failed(format!("{ctx}: {e}"))
}

fn mirror_config_json(cfg: &NodeMirrorConfig) -> Value {
    let mirrors: Vec<Value> = cfg
        .mirrors
        .iter()
        .map(|m| {
            json!({
                "scheme": m.endpoint_scheme.as_str(),
                "host_port": m.host_port,
                "namespace": m.namespace,
                "ca_cert_pem": m.ca_cert_pem.as_ref().map(|p| String::from_utf8_lossy(p).into_owned()),
                "pull_auth": match &m.pull_auth {
                    Some(PullAuth::Basic { username, password }) => json!({"username": username, "password": password.expose()}),
                    Some(PullAuth::Token(t)) => json!({"token": t.expose()}),
                    None => Value::Null,
                },
                "hosts": m.hosts,
            })
        })
        .collect();
    json!({
        "style": cfg.config_style.as_str(),
        "config_path": cfg.config_path,
        "mirrors": mirrors,
        "gcr_key": cfg.gcr_key.as_ref().map(|k| k.expose().to_string()),
    })
}

fn mirror_config_from_json(v: &Value) -> Option<NodeMirrorConfig> {
    let style = ConfigStyle::parse(v.get("style")?.as_str()?).unwrap_or(ConfigStyle::Hosts);
    let mut cfg = NodeMirrorConfig::new(style);
    cfg.config_path = v.get("config_path")?.as_str()?.to_string();
    cfg.gcr_key = v.get("gcr_key").and_then(Value::as_str).map(Secret::from);
    for m in v.get("mirrors")?.as_array()? {
        let mut spec = MirrorSpec::new(m.get("host_port")?.as_str()?);
        spec.endpoint_scheme = if m.get("scheme").and_then(Value::as_str) == Some("http") {
            EndpointScheme::Http
        } else {
            EndpointScheme::Https
        };
        spec.namespace = m
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        spec.ca_cert_pem = m
            .get("ca_cert_pem")
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec());
        spec.pull_auth = match m.get("pull_auth") {
            Some(a) if a.get("token").is_some() => a
                .get("token")
                .and_then(Value::as_str)
                .map(|t| PullAuth::Token(Secret::from(t))),
            Some(a) if a.get("username").is_some() => Some(PullAuth::basic(
                a.get("username")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                Secret::from(
                    a.get("password")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                ),
            )),
            _ => None,
        };
        spec.hosts = m
            .get("hosts")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        cfg.mirrors.push(spec);
    }
    Some(cfg)
}

impl NodeSpec {
    /// The files rendered for this node (hosts.toml or legacy CA files).
    pub fn rendered_files(&self) -> Result<Vec<DesiredFile>, ProviderError> {
        crate::containerd::render_node_files(&self.config).map_err(|e| bad(e.to_string()))
    }

    /// The desired instance for `address`.
    pub fn to_desired(&self, address: Address) -> Result<DesiredInstance, ProviderError> {
        let mut attrs = Attrs::new()
            .with("transport", self.transport.to_json())
            .with("config_style", self.config.config_style.as_str())
            .with("config_path", self.config.config_path.clone())
            .with("config_file", self.config_file.clone());
        if self.restart_command_sensitive {
            attrs.insert_sensitive("restart_command", self.restart_command.clone());
        } else {
            attrs.insert("restart_command", self.restart_command.clone());
        }
        if let TransportSpec::Ssh {
            passphrase: Some(p),
            ..
        } = &self.transport
        {
            attrs.insert_sensitive("ssh_passphrase", p.clone());
        }
        attrs.insert_sensitive(
            "mirror_config",
            mirror_config_json(&self.config).to_string(),
        );
        for f in self.rendered_files()? {
            let name = format!("{FILE_PREFIX}{}", f.path);
            let text = String::from_utf8_lossy(&f.contents).into_owned();
            if f.sensitive {
                attrs.insert_sensitive(&name, text);
            } else {
                attrs.insert(&name, text);
            }
        }
        Ok(DesiredInstance::new(address, KIND, attrs))
    }

    /// Reads the parts of a spec that apply needs from attributes.
    pub fn from_attrs(attrs: &Attrs) -> Result<NodeSpec, ProviderError> {
        let s = |k: &str| attrs.get(k).and_then(Value::as_str).map(str::to_string);
        let transport = attrs
            .get("transport")
            .and_then(|t| TransportSpec::from_json(t, attrs.get("ssh_passphrase")))
            .ok_or_else(|| bad("node instance without a valid `transport`"))?;
        let style = s("config_style")
            .as_deref()
            .and_then(ConfigStyle::parse)
            .unwrap_or(ConfigStyle::Hosts);
        let config = attrs
            .get("mirror_config")
            .and_then(Value::as_str)
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
            .and_then(|v| mirror_config_from_json(&v))
            .unwrap_or_else(|| {
                let mut c = NodeMirrorConfig::new(style);
                if let Some(p) = s("config_path") {
                    c.config_path = p;
                }
                c
            });
        Ok(NodeSpec {
            transport,
            config,
            config_file: s("config_file").unwrap_or_else(|| "/etc/containerd/config.toml".into()),
            restart_command: s("restart_command")
                .unwrap_or_else(|| "systemctl restart containerd".into()),
            restart_command_sensitive: attrs.is_sensitive("restart_command"),
        })
    }

    /// The restart command as plans and errors show it.
    pub fn shown_restart_command(&self) -> &str {
        if self.restart_command_sensitive {
            mirrorplan_engine::SENSITIVE_MASK
        } else {
            &self.restart_command
        }
    }
}

/// Where mirrorplan may remove files on one node: below the node's
/// `config_path` (the hosts directory, also where legacy CA files go) or its
/// `config_file`, each as the configuration gives it and as the state
/// recorded it. The paths to remove come from the state, which can be
/// edited: nothing else is ever removed.
#[derive(Debug, Default)]
struct Managed {
    /// Each `config_path`, with the style whose files may be removed there.
    dirs: Vec<(String, ConfigStyle)>,
    files: Vec<String>,
}

impl Managed {
    fn of<'a>(specs: impl IntoIterator<Item = &'a NodeSpec>) -> Managed {
        let mut m = Managed::default();
        for spec in specs {
            let dir = spec.config.config_dir();
            // a config_path that is not clean (or `/`) protects nothing
            let style = spec.config.config_style;
            if clean_absolute(dir)
                && dir != "/"
                && !m.dirs.iter().any(|(d, s)| d == dir && *s == style)
            {
                m.dirs.push((dir.to_string(), style));
            }
            // config.toml is a node file only for the containerd styles
            if spec.config.config_style.edits_containerd_config()
                && clean_absolute(&spec.config_file)
                && !m.files.contains(&spec.config_file)
            {
                m.files.push(spec.config_file.clone());
            }
        }
        m
    }

    /// Whether mirrorplan may remove `path` on this node.
    fn allows(&self, path: &str) -> bool {
        clean_absolute(path)
            && (self.files.iter().any(|f| f == path)
                || self.dirs.iter().any(|(d, style)| {
                    path.strip_prefix(d.as_str())
                        .and_then(|rest| rest.strip_prefix('/'))
                        .is_some_and(|rest| style.owns(rest))
                }))
    }

    /// Why `paths` (which [`allows`](Self::allows) rejects) are not removed.
    fn refusal(&self, paths: &[&str]) -> String {
        let quoted: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
        let dirs: Vec<String> = self
            .dirs
            .iter()
            .map(|(d, style)| {
                if style.edits_containerd_config() {
                    format!("{d}/")
                } else {
                    format!("{d}/ (only the files config_style = \"{style}\" writes)")
                }
            })
            .collect();
        format!(
            "refusing to remove {}: the state lists {} among the node's files, \
             but mirrorplan only removes files under {} or the config_file {}",
            quoted.join(", "),
            if paths.len() == 1 { "it" } else { "them" },
            if dirs.is_empty() {
                "(no valid config_path)".to_string()
            } else {
                dirs.join(" or ")
            },
            if self.files.is_empty() {
                "(none valid)".to_string()
            } else {
                self.files.join(" or ")
            },
        )
    }

    /// The paths of `prior`'s files that are not to be removed.
    fn unmanaged_of(&self, prior: &PriorInstance) -> Vec<String> {
        file_attrs_prior(prior)
            .into_iter()
            .map(|n| n[FILE_PREFIX.len()..].to_string())
            .filter(|p| !self.allows(p))
            .collect()
    }

    /// The apply error for `paths` that [`allows`](Self::allows) rejects.
    fn refuse(&self, node: &str, paths: &[&str]) -> ProviderError {
        ProviderError::invalid_input(format!(
            "node {node}: {}; nothing was changed on this node",
            self.refusal(paths)
        ))
        .with_help(
            "the state was edited or damaged: restore .mirrorplan/state.json.backup, or \
             `mirrorplan state rm` this node and apply again",
        )
    }
}

/// An absolute path without empty, `.` or `..` segments or control characters.
fn clean_absolute(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| {
        rest.is_empty() || rest.split('/').all(|seg| !matches!(seg, "" | "." | ".."))
    }) && !path.chars().any(char::is_control)
}

/// The file attribute names of an attribute set.
fn file_attrs(attrs: &Attrs) -> BTreeSet<String> {
    attrs
        .names()
        .filter(|n| n.starts_with(FILE_PREFIX))
        .map(str::to_string)
        .collect()
}

fn file_attrs_prior(p: &PriorInstance) -> BTreeSet<String> {
    p.attrs
        .keys()
        .chain(p.sensitive.keys())
        .filter(|n| n.starts_with(FILE_PREFIX))
        .cloned()
        .collect()
}

/// Configures containerd's registry settings on nodes.
pub struct NodeProvider {
    connections: Arc<Connections>,
    socket: String,
    rollouts: std::sync::Mutex<std::collections::HashMap<String, Arc<RolloutGate>>>,
}

/// Name of the attribute that carries a cluster's rollout limits when
/// `max_failures > 0` (see [`RolloutSpec`]).
pub const ROLLOUT_ATTR: &str = "rollout";

/// A cluster's rollout limits, enforced by the node provider.
///
/// With `max_failures = 0` (the default) the binary chains the batches of
/// `max_unavailable` nodes by dependencies, so the engine skips every node
/// after the first failure and reports them as skipped. With
/// `max_failures > 0` the nodes are not chained: each node carries this
/// attribute, and the provider lets at most `max_unavailable` nodes of the
/// cluster change at once and starts no further node of the cluster once
/// more than `max_failures` have failed (those fail with "not started",
/// their files untouched, and stay pending in the next plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSpec {
    /// The cluster, e.g. `cluster.c1`.
    pub cluster: String,
    /// Nodes changed at once (at least 1).
    pub max_unavailable: u32,
    /// Failed nodes tolerated before the rollout stops.
    pub max_failures: u32,
}

impl RolloutSpec {
    /// The attribute value.
    pub fn to_json(&self) -> Value {
        json!({
            "cluster": self.cluster,
            "max_unavailable": self.max_unavailable,
            "max_failures": self.max_failures,
        })
    }

    fn from_attrs(attrs: &Attrs) -> Option<RolloutSpec> {
        let v = attrs.get(ROLLOUT_ATTR)?;
        let n = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        Some(RolloutSpec {
            cluster: v.get("cluster")?.as_str()?.to_string(),
            max_unavailable: n("max_unavailable")?.max(1),
            max_failures: n("max_failures")?,
        })
    }
}

/// The running state of one cluster's rollout in this process.
struct RolloutGate {
    slots: Arc<tokio::sync::Semaphore>,
    failures: std::sync::atomic::AtomicU32,
}

impl NodeProvider {
    /// A provider sharing `connections` (with the cluster provider).
    pub fn new(connections: Arc<Connections>) -> Self {
        NodeProvider {
            connections,
            socket: crate::cri::DEFAULT_SOCKET.to_string(),
            rollouts: Default::default(),
        }
    }

    fn gate(&self, r: &RolloutSpec) -> Arc<RolloutGate> {
        let mut map = self
            .rollouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(r.cluster.clone())
            .or_insert_with(|| {
                Arc::new(RolloutGate {
                    slots: Arc::new(tokio::sync::Semaphore::new(
                        r.max_unavailable.max(1) as usize
                    )),
                    failures: std::sync::atomic::AtomicU32::new(0),
                })
            })
            .clone()
    }

    async fn transport(&self, spec: &TransportSpec) -> Result<Arc<dyn Transport>, ProviderError> {
        self.connections.open(spec).await
    }
}

impl Default for NodeProvider {
    fn default() -> Self {
        NodeProvider::new(Arc::new(Connections::default()))
    }
}

fn unreachable(t: &dyn Transport, e: NodeError) -> ProviderError {
    let msg = format!("node {}: {e}", t.describe());
    match e {
        NodeError::Io { .. } => ProviderError::failed(msg),
        // reached, but the login cannot act as root: the node's setup
        NodeError::Ssh(inner)
            if matches!(
                *inner,
                crate::ssh::SshError::Sudo { .. } | crate::ssh::SshError::SocketBridge { .. }
            ) =>
        {
            let help = miette::Diagnostic::help(&*inner).map(|h| h.to_string());
            let e = ProviderError::failed(msg);
            match help {
                Some(h) => e.with_help(h),
                None => e,
            }
        }
        _ => ProviderError::unreachable(msg),
    }
}

/// Every file of `paths` and containerd's major version, with one remote
/// command (a `local:` node has no containerd: 1.x). A failed `containerd
/// --version` means 1.x.
async fn read_with_version(
    t: &dyn Transport,
    spec: &TransportSpec,
    paths: &[&str],
) -> Result<(Vec<Option<Vec<u8>>>, ContainerdVersion), NodeError> {
    if matches!(spec, TransportSpec::Local { .. }) {
        return Ok((t.read_files(paths).await?, ContainerdVersion::V1));
    }
    let (files, out) = t
        .read_files_and_run(paths, &["containerd", "--version"])
        .await?;
    let version = match out {
        Ok(out) if out.success() => parse_containerd_version(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or(ContainerdVersion::V1),
        _ => ContainerdVersion::V1,
    };
    Ok((files, version))
}

impl NodeProvider {
    /// The refresh of one node: every file it should have, and containerd's
    /// version.
    async fn read_node(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
    ) -> Result<Option<Observed>, ProviderError> {
        let (spec, mut names, sensitive): (NodeSpec, BTreeSet<String>, BTreeSet<String>) =
            match (desired, prior) {
                (Some(d), p) => {
                    let mut names = file_attrs(&d.attrs);
                    if let Some(p) = p {
                        names.extend(file_attrs_prior(p));
                    }
                    let sens = d.attrs.sensitive_names().map(str::to_string).collect();
                    (NodeSpec::from_attrs(&d.attrs)?, names, sens)
                }
                (None, Some(p)) => (
                    NodeSpec::from_attrs(&p.attrs_view())?,
                    file_attrs_prior(p),
                    p.sensitive.keys().cloned().collect(),
                ),
                (None, None) => return Ok(None),
            };
        // a file the state lists outside what mirrorplan manages is not
        // read (its content would reach the plan); apply refuses to remove it
        let prior_spec = prior.and_then(|p| NodeSpec::from_attrs(&p.attrs_view()).ok());
        let managed = Managed::of(std::iter::once(&spec).chain(prior_spec.as_ref()));
        let wanted = desired.map(|d| file_attrs(&d.attrs)).unwrap_or_default();
        names.retain(|n| wanted.contains(n) || managed.allows(&n[FILE_PREFIX.len()..]));
        if spec.config.config_style.edits_containerd_config() {
            names.insert(format!("{FILE_PREFIX}{}", spec.config_file));
        }
        let t = self.transport(&spec.transport).await?;
        let names: Vec<String> = names.into_iter().collect();
        let paths: Vec<&str> = names.iter().map(|n| &n[FILE_PREFIX.len()..]).collect();
        // every file and `containerd --version`, with one command
        let (contents, version) = read_with_version(t.as_ref(), &spec.transport, &paths)
            .await
            .map_err(|e| unreachable(t.as_ref(), e))?;
        if contents.len() != names.len() {
            return Err(ProviderError::failed(format!(
                "node {}: read {} files, got {} answers",
                t.describe(),
                names.len(),
                contents.len()
            )));
        }
        let mut attrs = Attrs::new();
        let mut read = NodeRead::new();
        for (name, content) in names.iter().zip(contents) {
            let value = match &content {
                Some(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
                None => Value::Null,
            };
            read.insert(name[FILE_PREFIX.len()..].to_string(), content);
            let is_sensitive = sensitive.contains(name)
                || prior.is_some_and(|p| p.sensitive.contains_key(name))
                || value
                    .as_str()
                    .is_some_and(|s| crate::diff::looks_sensitive(s.as_bytes()));
            if is_sensitive {
                attrs.insert_sensitive(name, value);
            } else {
                attrs.insert(name, value);
            }
        }
        self.connections.remember_read(&spec.transport, read);
        attrs.insert(
            "containerd",
            match version {
                ContainerdVersion::V1 => "1.x",
                ContainerdVersion::V2 => "2.x",
            },
        );
        Ok(Some(Observed { attrs }))
    }
}

#[async_trait]
impl Provider for NodeProvider {
    fn kind(&self) -> &str {
        KIND
    }

    /// The node itself: `ssh:HOST:PORT` or `local:ROOT`. Two instances
    /// with the same one (a cluster renamed without a `moved` block) are
    /// one node changing owner.
    fn physical_identity(
        &self,
        attrs: &BTreeMap<String, mirrorplan_engine::AttrValue>,
    ) -> Option<String> {
        match TransportSpec::from_json(attrs.get("transport")?, None)? {
            TransportSpec::Local { root } => Some(format!("local:{root}")),
            TransportSpec::Ssh { host, port, .. } => {
                Some(format!("ssh:{}:{port}", host.to_ascii_lowercase()))
            }
        }
    }

    async fn read(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
    ) -> Result<Option<Observed>, ProviderError> {
        self.read_node(desired, prior).await.map_err(|e| {
            // a node down while its cluster's rollout tolerates failures:
            // the other nodes are planned, this one is tried by apply
            match desired.and_then(|d| RolloutSpec::from_attrs(&d.attrs)) {
                Some(r) if e.is_unreachable() && r.max_failures > 0 => {
                    e.allow_plan_unread(format!(
                        "apply will try it and count a failure against {}'s max_failures = {}",
                        r.cluster, r.max_failures
                    ))
                }
                _ => e,
            }
        })
    }

    fn plan(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
        observed: Option<&Observed>,
    ) -> Result<PlannedChange, ProviderError> {
        // files the state lists outside what mirrorplan manages: apply
        // will refuse to touch this node, say so now
        let prior_spec = prior.and_then(|p| NodeSpec::from_attrs(&p.attrs_view()).ok());
        let desired_spec = desired
            .map(|d| NodeSpec::from_attrs(&d.attrs))
            .transpose()?;
        let unmanaged = prior.map_or_else(Vec::new, |p| {
            Managed::of(desired_spec.iter().chain(prior_spec.as_ref())).unmanaged_of(p)
        });
        let refusal = (!unmanaged.is_empty()).then(|| {
            let paths: Vec<&str> = unmanaged.iter().map(String::as_str).collect();
            let managed = Managed::of(desired_spec.iter().chain(prior_spec.as_ref()));
            format!("apply will fail for this node: {}", managed.refusal(&paths))
        });
        let Some(d) = desired else {
            let mut change = mirrorplan_engine::diff(self.force_new(), None, prior)?;
            change
                .details
                .push("the rendered files are removed (except those a new instance of the same node takes over); config.toml keeps its config_path".into());
            change.details.extend(refusal);
            return Ok(change);
        };
        let Some(spec) = desired_spec else {
            return Err(bad("node instance without a spec"));
        };
        let cfg_name = format!("{FILE_PREFIX}{}", spec.config_file);
        // config.toml as it is now: what refresh found, else what state recorded
        let current: Option<String> = observed
            .and_then(|o| o.attrs.get(&cfg_name))
            .or_else(|| prior.and_then(|p| p.attrs.get(&cfg_name)))
            .and_then(Value::as_str)
            .map(str::to_string);
        let seen_version: Option<String> = observed
            .and_then(|o| o.attrs.get("containerd"))
            .or_else(|| prior.and_then(|p| p.attrs.get("containerd")))
            .and_then(Value::as_str)
            .map(str::to_string);
        let version = match seen_version.as_deref() {
            Some("2.x") => ContainerdVersion::V2,
            _ => ContainerdVersion::V1,
        };
        // the other styles never read nor write config.toml
        let edit = spec
            .config
            .config_style
            .edits_containerd_config()
            .then(|| {
                edit_config(current.as_deref().unwrap_or(""), version, &spec.config)
                    .map_err(|e| bad(format!("{}: {e}", spec.config_file)))
            })
            .transpose()?;
        let mut desired2 = d.clone();
        if let Some(v) = &seen_version {
            // what refresh learnt about the node is kept, not planned away
            desired2.attrs.insert("containerd", v.clone());
        }
        match &edit {
            Some(edit) if edit.contains_credentials => {
                desired2
                    .attrs
                    .insert_sensitive(&cfg_name, edit.text.clone());
            }
            Some(edit) => desired2.attrs.insert(&cfg_name, edit.text.clone()),
            None => {}
        }
        // config.toml holding credentials is only a salted digest in the
        // state: without refresh its text is unknown, so the edit above
        // (of an empty file) says nothing about it. It counts as unchanged
        // here; apply reads and edits the node's file anyway.
        let cfg_unknown = current.is_none()
            && edit.is_some()
            && prior.is_some_and(|p| p.sensitive.contains_key(&cfg_name));
        let mut change = mirrorplan_engine::diff(self.force_new(), Some(&desired2), prior)?;
        // the rollout limits (and the cluster's name in them, which a
        // `moved` block changes) steer the apply walk: nothing on the node
        // to change when only they differ
        if change.action == mirrorplan_engine::Action::Update
            && prior.is_some_and(|p| {
                mirrorplan_engine::changed_attributes(&desired2, p)
                    .iter()
                    .all(|a| a == ROLLOUT_ATTR || (cfg_unknown && *a == cfg_name))
            })
        {
            change.action = mirrorplan_engine::Action::NoOp;
        }
        if cfg_unknown {
            change.details.push(format!(
                "{}: holds credentials, so the state keeps only its digest: without refresh its edit is not known until apply reads it",
                spec.config_file
            ));
            change.details.extend(refusal);
            return Ok(change);
        }
        for n in edit.iter().flat_map(|e| &e.notes) {
            change.details.push(format!("{}: {n}", spec.config_file));
        }
        change.details.extend(refusal);
        let Some(edit) = edit else {
            if change.action != mirrorplan_engine::Action::NoOp {
                change.details.push(format!(
                    "config_style = \"{}\": the files change, then `{}` runs (on SSH nodes); {} is not touched",
                    spec.config.config_style,
                    spec.shown_restart_command(),
                    spec.config_file
                ));
            }
            return Ok(change);
        };
        let cfg_changes = match prior {
            None => true,
            Some(p) => match (p.attrs.get(&cfg_name), edit.contains_credentials) {
                (Some(v), false) => v.as_str() != Some(edit.text.as_str()),
                _ => !p.secret_matches(&cfg_name, &Value::String(edit.text.clone())),
            },
        };
        if cfg_changes && edit.changed {
            change.details.push(format!(
                "{} changes: containerd is restarted with `{}`",
                spec.config_file,
                spec.shown_restart_command()
            ));
        }
        Ok(change)
    }

    fn adopt(
        &self,
        _desired: &DesiredInstance,
        planned: &PlannedChange,
        observed: &Observed,
    ) -> Option<Adoption> {
        let after = planned.after.as_ref()?;
        if !mirrorplan_engine::observed_matches(after, observed) {
            return None;
        }
        let digests = file_attrs(after)
            .into_iter()
            .filter_map(|name| {
                let text = after.get(&name)?.as_str()?;
                Some((
                    name[FILE_PREFIX.len()..].to_string(),
                    digest(text.as_bytes()),
                ))
            })
            .collect();
        Some(Adoption {
            state: NewInstanceState {
                attrs: after.clone(),
                digests,
            },
            details: vec![
                "its files already are as configured: recorded without a write or a restart".into(),
            ],
        })
    }

    async fn apply(
        &self,
        change: &PlannedChange,
        ctx: &ApplyContext,
    ) -> Result<Option<NewInstanceState>, ProviderError> {
        let rollout = change.after.as_ref().and_then(RolloutSpec::from_attrs);
        let mut turn = Turn {
            gate: rollout.map(|r| (self.gate(&r), r)),
            address: &change.address,
            permit: None,
            refused: false,
        };
        let result = self.apply_node(change, ctx, &mut turn).await;
        if let (Err(_), Some((gate, _)), false) = (&result, &turn.gate, turn.refused) {
            gate.failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        result
    }
}

/// A node's turn in its cluster's rollout (`max_unavailable` nodes at a
/// time): taken right before the node's first change, held until its step
/// (write, restart, health check, restore) ends. What comes before (reading
/// the node, preparing the write on it) does not wait for the turn.
struct Turn<'a> {
    gate: Option<(Arc<RolloutGate>, RolloutSpec)>,
    address: &'a Address,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The rollout stopped before this node's turn: it is unchanged.
    refused: bool,
}

impl Turn<'_> {
    /// Waits for the node's turn (once; no-op outside a rollout) and checks
    /// that the rollout has not stopped.
    async fn take(&mut self) -> Result<(), ProviderError> {
        let Some((gate, rollout)) = &self.gate else {
            return Ok(());
        };
        if self.permit.is_some() {
            return Ok(());
        }
        let permit = gate
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ProviderError::failed(format!("{}: rollout closed", self.address)))?;
        let failed = gate.failures.load(std::sync::atomic::Ordering::SeqCst);
        if failed > rollout.max_failures {
            self.refused = true;
            return Err(ProviderError::failed(format!(
                "{}: not started: the rollout of {} stopped after {failed} failed node(s) (max_failures = {}); this node is unchanged",
                self.address, rollout.cluster, rollout.max_failures
            ))
            .with_help("fix the failed nodes, then apply again: the untouched nodes are still pending"));
        }
        self.permit = Some(permit);
        Ok(())
    }
}

impl NodeProvider {
    /// One node's step (see the module docs).
    async fn apply_node(
        &self,
        change: &PlannedChange,
        ctx: &ApplyContext,
        turn: &mut Turn<'_>,
    ) -> Result<Option<NewInstanceState>, ProviderError> {
        let (attrs, deleting) = match (&change.after, &change.before) {
            (Some(a), _) => (a, false),
            (None, Some(b)) => (b, true),
            (None, None) => return Ok(None),
        };
        let spec = NodeSpec::from_attrs(attrs)?;
        let t = self.transport(&spec.transport).await?;
        let cfg_path = spec.config_file.clone();
        // hosts / legacy edit config.toml and restart containerd when it
        // changes; the other styles leave it alone and run their command
        // when any of their files changes
        let containerd_cfg = spec.config.config_style.edits_containerd_config();
        let runtime = if containerd_cfg {
            "containerd"
        } else {
            "the runtime"
        };
        // what to write and what to remove
        let mut writes: Vec<(String, String, bool)> = Vec::new();
        if !deleting {
            for name in file_attrs(attrs) {
                let path = &name[FILE_PREFIX.len()..];
                if path == cfg_path {
                    continue;
                }
                if let Some(v) = attrs.get(&name).and_then(Value::as_str) {
                    writes.push((path.to_string(), v.to_string(), attrs.is_sensitive(&name)));
                }
            }
        }
        let mut removes: Vec<String> = Vec::new();
        if let Some(before) = &change.before {
            // a hand-over (the same node under a new address, applied
            // already): the files the new instance wrote are its own now
            let taken_over = |name: &str| {
                change
                    .handover
                    .as_ref()
                    .is_some_and(|h| h.attributes.contains(name))
            };
            for name in file_attrs(before) {
                let path = name[FILE_PREFIX.len()..].to_string();
                if path != cfg_path
                    && !writes.iter().any(|(p, _, _)| *p == path)
                    && !taken_over(&name)
                {
                    removes.push(path);
                }
            }
            // the paths come from the state: each must be one mirrorplan
            // manages, or nothing of this node is touched
            let before_spec = NodeSpec::from_attrs(before).ok();
            let managed = Managed::of(std::iter::once(&spec).chain(before_spec.as_ref()));
            let refused: Vec<&str> = removes
                .iter()
                .map(String::as_str)
                .filter(|p| !managed.allows(p))
                .collect();
            if !refused.is_empty() {
                return Err(managed.refuse(&t.describe(), &refused));
            }
        }
        // every file as the node has it: the backups, the "unchanged" test
        // and the base of the config.toml edit. The refresh's read of this
        // process when there is one (the write then checks on the node that
        // every file it replaces is still what was read), else one read now.
        let mut read_paths: Vec<&str> = writes.iter().map(|(p, _, _)| p.as_str()).collect();
        read_paths.extend(removes.iter().map(String::as_str));
        if !deleting && containerd_cfg {
            read_paths.push(&cfg_path);
        }
        let mut cached = self
            .connections
            .take_read(&spec.transport)
            .filter(|_| !deleting && removes.is_empty())
            .and_then(|m| {
                read_paths
                    .iter()
                    .map(|p| m.get(*p).cloned())
                    .collect::<Option<Vec<_>>>()
            });
        let base_writes = &writes;
        let (writes, backups, config_changed, restart, result) = loop {
            let mut writes = base_writes.clone();
            let checked = cached.is_some();
            let read = match cached.take() {
                Some(read) => read,
                None => t
                    .read_files(&read_paths)
                    .await
                    .map_err(|e| unreachable(t.as_ref(), e))?,
            };
            if read.len() != read_paths.len() {
                return Err(ProviderError::failed(format!(
                    "node {}: read {} files, got {} answers",
                    t.describe(),
                    read_paths.len(),
                    read.len()
                )));
            }
            let mut now: BTreeMap<String, Option<Vec<u8>>> = read_paths
                .iter()
                .map(|p| (*p).to_string())
                .zip(read)
                .collect();
            if !deleting && containerd_cfg {
                // config.toml is edited as the node has it (had at the
                // refresh, checked before the rename): only mirrorplan's keys
                // change, whatever else happened to the file since the plan
                let current = now
                    .get(&cfg_path)
                    .cloned()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                let version = match attrs.get("containerd").and_then(Value::as_str) {
                    Some("2.x") => ContainerdVersion::V2,
                    _ => ContainerdVersion::V1,
                };
                let edit = edit_config(current.as_deref().unwrap_or(""), version, &spec.config)
                    .map_err(|e| bad(format!("node {}: {cfg_path}: {e}", t.describe())))?;
                writes.push((cfg_path.clone(), edit.text, edit.contains_credentials));
            }
            // validate before touching anything
            for (path, text, _) in &writes {
                if path.ends_with(".toml") {
                    if let Err(e) = text.parse::<toml_edit::DocumentMut>() {
                        let first = e.to_string().lines().next().unwrap_or_default().to_string();
                        return Err(ProviderError::failed(format!(
                            "node {}: {path} would not be valid TOML: {first}",
                            t.describe()
                        )));
                    }
                }
            }
            // backups and the actual changes
            let mut backups: Vec<(String, Option<Vec<u8>>)> = Vec::new();
            let mut config_changed = false;
            let mut result: Result<(), ProviderError> = Ok(());
            let mut batch: Vec<(&str, &[u8], u32)> = Vec::new();
            for (path, text, sensitive) in &writes {
                let current = now.remove(path).flatten();
                // (-replace: every file is written again)
                if current.as_deref() == Some(text.as_bytes()) && !change.replace_requested {
                    continue;
                }
                ctx.message(format!("writing {path}"));
                let mode = if *sensitive { 0o600 } else { 0o644 };
                backups.push((path.clone(), current));
                batch.push((path, text.as_bytes(), mode));
                if *path == cfg_path {
                    config_changed = true;
                }
            }
            let removing = removes
                .iter()
                .any(|p| now.get(p).is_some_and(Option::is_some));
            let changes_runtime = if containerd_cfg {
                config_changed
            } else {
                !batch.is_empty() || removing
            };
            let restart = changes_runtime && matches!(spec.transport, TransportSpec::Ssh { .. });
            let names: Vec<&str> = batch.iter().map(|f| f.0).collect();
            let mut restarted = false;
            let argv = ["sh", "-c", spec.restart_command.as_str()];
            // with a check and a restart over SSH, the files are sent to the
            // node before its turn; the check, renames and restart wait
            let prepare = checked && restart && !batch.is_empty();
            if !prepare {
                turn.take().await?;
            }
            if checked {
                // one command: the check that every file replaced is still
                // what the refresh read, the files, and the restart if any
                // (there is nothing to remove on this path)
                let expected: Vec<Option<&[u8]>> =
                    backups.iter().map(|(_, old)| old.as_deref()).collect();
                let then = restart.then_some(&argv[..]);
                let written = if prepare {
                    let ssh = self.connections.ssh(&spec.transport).await?;
                    let command = crate::shell::join(&argv);
                    let prepared = ssh.prepare_write(&batch, &expected, &command).await;
                    if let Err(e) = turn.take().await {
                        if let Ok(p) = prepared {
                            p.abort().await;
                        }
                        return Err(e);
                    }
                    ctx.message(format!("restarting {runtime}"));
                    match prepared {
                        Ok(p) => p.commit().await,
                        Err(e) => Err(e),
                    }
                } else {
                    if restart {
                        ctx.message(format!("restarting {runtime}"));
                    }
                    t.write_files_if_unchanged(&batch, &expected, then).await
                };
                match written {
                    Ok(Some(out)) => {
                        result = restart_outcome(t.as_ref(), &spec, &out);
                        restarted = true;
                    }
                    Ok(None) => {}
                    // the node cannot compare: nothing written; read it again
                    Err(NodeError::CannotCheck { .. }) => continue,
                    // nothing written: nothing to restore or restart
                    Err(e @ NodeError::ChangedSinceRead { .. }) => {
                        return Err(ProviderError::failed(format!("node {}: {e}", t.describe()))
                            .with_help(
                            "nothing was written on this node; `mirrorplan plan` reads it again",
                        ));
                    }
                    Err(e) => {
                        let what = if restart {
                            format!(" and restarting {runtime}")
                        } else {
                            String::new()
                        };
                        result = Err(node_err(
                            &format!("node {}: writing {}{what}", t.describe(), names.join(", ")),
                            e,
                        ));
                        restarted = restart;
                    }
                }
            } else if restart && !removing {
                // the usual first rollout: the files and the restart with one
                // command (the restart runs only once every file is in place)
                ctx.message(format!("restarting {runtime}"));
                result = match t.write_files_then_run(&batch, &argv).await {
                    Ok(out) => restart_outcome(t.as_ref(), &spec, &out),
                    Err(e) => Err(node_err(
                        &format!(
                            "node {}: writing {} and restarting {runtime}",
                            t.describe(),
                            names.join(", ")
                        ),
                        e,
                    )),
                };
                restarted = true;
            } else if let Err(e) = t.write_files_atomic(&batch).await {
                result = Err(node_err(
                    &format!("node {}: writing {}", t.describe(), names.join(", ")),
                    e,
                ));
            }
            if result.is_ok() {
                for path in &removes {
                    let current = now.remove(path).flatten();
                    if current.is_none() {
                        continue;
                    }
                    ctx.message(format!("removing {path}"));
                    backups.push((path.clone(), current));
                    if let Err(e) = t.remove_file(path).await {
                        result = Err(node_err(
                            &format!("node {}: removing {path}", t.describe()),
                            e,
                        ));
                        break;
                    }
                }
            }
            if result.is_ok() && restart && !restarted {
                ctx.message(format!("restarting {runtime}"));
                result = restart_and_check(t.as_ref(), &spec).await;
            }
            break (writes, backups, config_changed, restart, result);
        };
        // containerd's CRI answers after a restart; the other runtimes
        // (CRI-O, k3s, RKE2) have only their command's exit status here
        // (the cluster step's canary pull checks them through their socket)
        let result = if result.is_ok() && restart && containerd_cfg {
            self.health_check(&spec).await
        } else {
            result
        };
        if let Err(e) = result {
            let mut msg = if restore(t.as_ref(), &backups).await {
                format!("{} (the node's files were restored", e.message)
            } else {
                format!(
                    "{} (the node's files could not all be restored: each is its old or its \
                     new content; `mirrorplan plan` reads them again",
                    e.message
                )
            };
            if containerd_cfg
                && config_changed
                && matches!(spec.transport, TransportSpec::Ssh { .. })
            {
                let again = match restart_and_check(t.as_ref(), &spec).await {
                    Ok(()) => self.health_check(&spec).await,
                    Err(e) => Err(e),
                };
                match again {
                    Ok(()) => msg.push_str(" and containerd restarted healthy"),
                    Err(e2) => {
                        msg.push_str(&format!("; containerd is still unhealthy: {}", e2.message))
                    }
                }
            } else if !containerd_cfg && restart {
                // the runtime reads the restored files again
                match restart_and_check(t.as_ref(), &spec).await {
                    Ok(()) => msg.push_str(&format!(
                        " and `{}` ran again",
                        spec.shown_restart_command()
                    )),
                    Err(e2) => msg.push_str(&format!("; running it again failed: {}", e2.message)),
                }
            }
            msg.push(')');
            return Err(ProviderError { message: msg, ..e });
        }
        if deleting {
            return Ok(None);
        }
        let mut digests = BTreeMap::new();
        let mut new_attrs = attrs.clone();
        for (path, text, sensitive) in &writes {
            digests.insert(path.clone(), digest(text.as_bytes()));
            if *path == cfg_path {
                // what was really written (the plan may not hold it: a saved
                // plan carries no secrets)
                let name = format!("{FILE_PREFIX}{path}");
                if *sensitive {
                    new_attrs.insert_sensitive(&name, text.clone());
                } else {
                    new_attrs.insert(&name, text.clone());
                }
            }
        }
        Ok(Some(NewInstanceState {
            attrs: new_attrs,
            digests,
        }))
    }
}

/// Put every backed-up file back as it was (best effort: the caller
/// reports the original failure). Files already as they were (a batch
/// write that failed before renaming) are left alone. Returns whether
/// every file is back (false when a write or removal failed, e.g. the
/// node can no longer be reached: the caller must not say "restored").
async fn restore(t: &dyn Transport, backups: &[(String, Option<Vec<u8>>)]) -> bool {
    let paths: Vec<&str> = backups.iter().map(|(p, _)| p.as_str()).collect();
    let now = match t.read_files(&paths).await {
        Ok(now) if now.len() == backups.len() => now.into_iter().map(Some).collect(),
        _ => vec![None; backups.len()],
    };
    let mut restored = true;
    let mut rewrite: Vec<(&str, &[u8], u32)> = Vec::new();
    for ((path, old), now) in backups.iter().zip(now) {
        if now.as_ref() == Some(old) {
            continue;
        }
        match old {
            Some(bytes) => rewrite.push((path, bytes, 0o600)),
            None => {
                if t.remove_file(path).await.is_err() {
                    restored = false;
                }
            }
        }
    }
    if t.write_files_atomic(&rewrite).await.is_err() {
        // one by one, so one bad file does not keep the others from coming back
        for (path, bytes, mode) in rewrite {
            if t.write_file_atomic(path, bytes, mode).await.is_err() {
                restored = false;
            }
        }
    }
    restored
}

impl NodeProvider {
    /// containerd answers on its socket and its CRI plugin is loaded (a CRI
    /// `Version` call succeeds), within 20 seconds.
    async fn health_check(&self, spec: &NodeSpec) -> Result<(), ProviderError> {
        let ssh = self.connections.ssh(&spec.transport).await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            match crate::cri::CriClient::over_ssh(&ssh, &self.socket).await {
                Ok(client) => match client.version().await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        Err(ProviderError::failed(format!(
            "node {:?}: containerd's CRI plugin does not answer after the restart: {last}",
            spec.transport
        ))
        .with_help(
            "check the node's containerd log; `mirrors` and `config_path` must not both be set",
        ))
    }
}

async fn restart_and_check(t: &dyn Transport, spec: &NodeSpec) -> Result<(), ProviderError> {
    let out = t
        .run(&["sh", "-c", &spec.restart_command])
        .await
        .map_err(|e| unreachable(t, e))?;
    restart_outcome(t, spec, &out)
}

/// The restart command's exit status as a result (the last lines of its
/// stderr on failure).
fn restart_outcome(t: &dyn Transport, spec: &NodeSpec, out: &Output) -> Result<(), ProviderError> {
    if !out.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("; ");
        // the command's own error output may quote its secret
        let tail = if spec.restart_command_sensitive {
            "(its error output is not shown: the command is sensitive)".to_string()
        } else {
            tail
        };
        return Err(ProviderError::failed(format!(
            "node {}: `{}` failed (exit {:?}): {tail}",
            t.describe(),
            spec.shown_restart_command(),
            out.status
        )));
    }
    Ok(())
}

/// Basic auth header value for `user:password` (used by renderers and tests).
pub fn basic_auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(config_path: &str, config_file: &str) -> NodeSpec {
        let mut config = NodeMirrorConfig::new(ConfigStyle::Hosts);
        config.config_path = config_path.into();
        NodeSpec {
            transport: TransportSpec::Local {
                root: "/tmp/n0".into(),
            },
            config,
            config_file: config_file.into(),
            restart_command: "true".into(),
            restart_command_sensitive: false,
        }
    }

    #[test]
    fn only_files_under_config_path_or_the_config_file_are_removable() {
        let now = spec("/etc/containerd/certs.d/", "/etc/containerd/config.toml");
        let before = spec("/var/lib/certs.d", "/etc/containerd/config.toml");
        let m = Managed::of([&now, &before]);
        for ok in [
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "/etc/containerd/certs.d/10.0.0.1_5000-ca.crt",
            "/var/lib/certs.d/quay.io/hosts.toml",
            "/etc/containerd/config.toml",
        ] {
            assert!(m.allows(ok), "{ok}");
        }
        for bad in [
            "/etc/passwd",
            "../../outside",
            "etc/containerd/certs.d/x",
            "/etc/containerd/certs.d",
            "/etc/containerd/certs.d/",
            "/etc/containerd/certs.d/../../passwd",
            "/etc/containerd/certs.d/./x",
            "/etc/containerd/certs.d//x",
            "/etc/containerd/certs.dx/hosts.toml",
            "/etc/containerd/certs.d/x\n",
            "/etc/containerd/config.toml.bak",
        ] {
            assert!(!m.allows(bad), "{bad:?}");
        }
        // a config_path that is `/` or not clean protects nothing
        for dir in ["/", "relative/certs.d", "/etc/../etc"] {
            let m = Managed::of([&spec(dir, "/etc/containerd/config.toml")]);
            assert!(!m.allows("/etc/passwd"), "{dir}");
            assert!(!m.allows("/etc/etc/passwd"), "{dir}");
        }
        // the runtime styles' directories hold other software's files:
        // only the files the style writes there may be removed
        let mut crio = spec("/etc/containers", "/etc/containerd/config.toml");
        crio.config.config_style = ConfigStyle::RegistriesConf;
        let mut k3s = spec("/etc/rancher/k3s", "/etc/containerd/config.toml");
        k3s.config.config_style = ConfigStyle::K3s;
        let m2 = Managed::of([&crio, &k3s]);
        for ok in [
            "/etc/containers/registries.conf.d/50-mirrorplan.conf",
            "/etc/containers/auth.json",
            "/etc/containers/certs.d/10.0.0.1:5000/ca.crt",
            "/etc/rancher/k3s/registries.yaml",
            "/etc/rancher/k3s/mirrorplan/10.0.0.1_5000-ca.crt",
        ] {
            assert!(m2.allows(ok), "{ok}");
        }
        for bad in [
            "/etc/containers/policy.json",
            "/etc/containers/registries.conf",
            "/etc/containers/registries.conf.d/other.conf",
            "/etc/containers/certs.d/x/client.key",
            "/etc/rancher/k3s/k3s.yaml",
            "/etc/rancher/k3s/config.yaml",
            "/etc/rancher/k3s/mirrorplan/a/b-ca.crt",
            "/etc/containerd/config.toml",
        ] {
            assert!(!m2.allows(bad), "{bad:?}");
        }
        assert!(m2
            .refusal(&["/etc/rancher/k3s/k3s.yaml"])
            .contains("only the files config_style = \"k3s\" writes"));
        let text = m.refusal(&["/etc/passwd"]);
        assert!(
            text.contains("refusing to remove \"/etc/passwd\""),
            "{text}"
        );
    }
}
