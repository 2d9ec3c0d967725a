//! The small model the renderers work from: which mirrors a node uses, for
//! which upstream hosts, with which CA and pull credentials. No I/O here.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::{NodeError, Result};
use crate::secret::Secret;

/// Default containerd hosts directory.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/containerd/certs.d";

/// The upstream host that is always mirrored, listed or not.
pub const GCR_HOST: &str = "gcr.io";

/// User name containerd sends with a gcr.io service-account key.
pub const GCR_KEY_USERNAME: &str = "_json_key";

/// How the node's containerd learns about mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigStyle {
    /// `registry.config_path` + `HOST/hosts.toml` files (containerd 1.5+, 2.x).
    /// Read on every pull: no restart once `config_path` is set.
    Hosts,
    /// `registry.mirrors` / `registry.configs` in config.toml (containerd 1.x
    /// only). Read at start: needs a restart.
    Legacy,
    /// CRI-O / podman: a `containers-registries.conf(5)` drop-in under
    /// `CONFIG_PATH/registries.conf.d/`, CAs in `CONFIG_PATH/certs.d/`, pull
    /// credentials in `CONFIG_PATH/auth.json` (see [`crate::registries_conf`]).
    RegistriesConf,
    /// k3s: `CONFIG_PATH/registries.yaml` (`/etc/rancher/k3s`), read when
    /// the service starts (see [`crate::k3s`]).
    K3s,
    /// RKE2: the same `registries.yaml` format under `/etc/rancher/rke2`.
    Rke2,
}

impl ConfigStyle {
    /// Every style, in the order the configuration documents them.
    pub const ALL: [ConfigStyle; 5] = [
        ConfigStyle::Hosts,
        ConfigStyle::Legacy,
        ConfigStyle::RegistriesConf,
        ConfigStyle::K3s,
        ConfigStyle::Rke2,
    ];

    /// The `config_style` value: `hosts`, `legacy`, `registries_conf`, `k3s`, `rke2`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigStyle::Hosts => "hosts",
            ConfigStyle::Legacy => "legacy",
            ConfigStyle::RegistriesConf => "registries_conf",
            ConfigStyle::K3s => "k3s",
            ConfigStyle::Rke2 => "rke2",
        }
    }

    /// The style named `name` ([`ConfigStyle::as_str`]).
    pub fn parse(name: &str) -> Option<ConfigStyle> {
        ConfigStyle::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether this style configures containerd directly, editing its
    /// `config.toml` (`hosts`, `legacy`). The other styles never read or
    /// write `config.toml` and have no containerd health check.
    pub fn edits_containerd_config(self) -> bool {
        matches!(self, ConfigStyle::Hosts | ConfigStyle::Legacy)
    }

    /// The node directory the style writes under when `config_path` is not
    /// set: `/etc/containerd/certs.d`, `/etc/containers`,
    /// `/etc/rancher/k3s`, `/etc/rancher/rke2`.
    pub fn default_config_path(self) -> &'static str {
        match self {
            ConfigStyle::Hosts | ConfigStyle::Legacy => DEFAULT_CONFIG_PATH,
            ConfigStyle::RegistriesConf => "/etc/containers",
            ConfigStyle::K3s => "/etc/rancher/k3s",
            ConfigStyle::Rke2 => "/etc/rancher/rke2",
        }
    }

    /// The command that makes the runtime read the files again, when the
    /// configuration gives none.
    pub fn default_restart_command(self) -> &'static str {
        match self {
            ConfigStyle::Hosts | ConfigStyle::Legacy => "systemctl restart containerd",
            ConfigStyle::RegistriesConf => "systemctl reload crio",
            ConfigStyle::K3s => "systemctl restart k3s",
            ConfigStyle::Rke2 => "systemctl restart rke2-server",
        }
    }

    /// Whether `rest`, a path relative to `config_path`, may be a file of
    /// this style: anything below the hosts directory for `hosts` and
    /// `legacy`, only the files they write for the others (whose
    /// directories hold other software's files: `policy.json`, `k3s.yaml`).
    pub fn owns(self, rest: &str) -> bool {
        match self {
            ConfigStyle::Hosts | ConfigStyle::Legacy => !rest.is_empty(),
            ConfigStyle::RegistriesConf => crate::registries_conf::owns(rest),
            ConfigStyle::K3s | ConfigStyle::Rke2 => crate::k3s::owns(rest),
        }
    }

    /// The CRI socket of the runtime this style configures (the cluster
    /// step's canary pull goes through it).
    pub fn cri_socket(self) -> &'static str {
        match self {
            ConfigStyle::Hosts | ConfigStyle::Legacy => crate::cri::DEFAULT_SOCKET,
            ConfigStyle::RegistriesConf => "/var/run/crio/crio.sock",
            ConfigStyle::K3s | ConfigStyle::Rke2 => "/run/k3s/containerd/containerd.sock",
        }
    }
}

impl fmt::Display for ConfigStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scheme containerd uses to reach a mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointScheme {
    /// TLS (optionally with a private CA).
    Https,
    /// Plain HTTP.
    Http,
}

impl EndpointScheme {
    /// `"https"` or `"http"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointScheme::Https => "https",
            EndpointScheme::Http => "http",
        }
    }
}

/// Credentials the node uses to pull from a mirror. Push credentials never
/// belong here: they must never reach nodes.
#[derive(Clone, PartialEq, Eq)]
pub enum PullAuth {
    /// HTTP basic auth.
    Basic {
        /// User name (must not contain `:`).
        username: String,
        /// Password.
        password: Secret,
    },
    /// A static bearer token sent as `Authorization: Bearer TOKEN`
    /// (hosts style only).
    Token(Secret),
}

impl PullAuth {
    /// Basic-auth credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        PullAuth::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Parse a `user:pass` string (as found, base64-decoded, in a Docker
    /// config file's `auth` field).
    pub fn from_user_pass(user_pass: &Secret) -> Option<Self> {
        let (user, pass) = user_pass.expose().split_once(':')?;
        Some(PullAuth::basic(user, pass))
    }
}

impl fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullAuth::Basic { username, password } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", password)
                .finish(),
            PullAuth::Token(t) => f.debug_tuple("Token").field(t).finish(),
        }
    }
}

/// One registry mirror as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSpec {
    /// `https` or `http`.
    pub endpoint_scheme: EndpointScheme,
    /// `HOST[:PORT]` of the mirror, as the nodes reach it.
    pub host_port: String,
    /// Namespace the images live under (`HOST:PORT/NAMESPACE/...`).
    pub namespace: Option<String>,
    /// PEM CA certificate(s) for a private TLS certificate.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Credentials for pulling from the mirror.
    pub pull_auth: Option<PullAuth>,
    /// Upstream hosts this mirror serves; `gcr.io` is always included.
    pub hosts: Vec<String>,
}

impl MirrorSpec {
    /// An HTTPS mirror without namespace, CA, credentials or extra hosts.
    pub fn new(host_port: impl Into<String>) -> Self {
        MirrorSpec {
            endpoint_scheme: EndpointScheme::Https,
            host_port: host_port.into(),
            namespace: None,
            ca_cert_pem: None,
            pull_auth: None,
            hosts: Vec::new(),
        }
    }

    /// The endpoint URL containerd uses: `SCHEME://HOST:PORT[/v2/NAMESPACE]`.
    pub fn endpoint_url(&self) -> String {
        let base = format!("{}://{}", self.endpoint_scheme.as_str(), self.host_port);
        match &self.namespace {
            Some(ns) => format!("{base}/v2/{ns}"),
            None => base,
        }
    }

    /// File-name stem derived from `host_port` (`10.0.0.1:5000` → `10.0.0.1_5000`).
    pub fn file_stem(&self) -> String {
        self.host_port
            .chars()
            .filter(|c| *c != '[' && *c != ']')
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Upstream hosts this mirror serves, normalised, `gcr.io` included.
    pub fn upstream_hosts(&self) -> BTreeSet<String> {
        let mut set: BTreeSet<String> = self.hosts.iter().map(|h| normalize_host(h)).collect();
        set.insert(GCR_HOST.to_owned());
        set
    }

    /// Whether this mirror serves `host` (already normalised).
    pub fn mirrors_host(&self, host: &str) -> bool {
        host == GCR_HOST || self.hosts.iter().any(|h| normalize_host(h) == host)
    }
}

/// Everything mirrorplan configures on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMirrorConfig {
    /// hosts.toml directory or legacy config.toml entries.
    pub config_style: ConfigStyle,
    /// containerd hosts directory on the node (absolute).
    pub config_path: String,
    /// Mirrors in priority order (first is tried first).
    pub mirrors: Vec<MirrorSpec>,
    /// gcr.io service-account key JSON, used to pull from gcr.io itself.
    pub gcr_key: Option<Secret>,
}

impl NodeMirrorConfig {
    /// An empty configuration with the default `config_path`.
    pub fn new(config_style: ConfigStyle) -> Self {
        NodeMirrorConfig {
            config_style,
            config_path: config_style.default_config_path().to_owned(),
            mirrors: Vec::new(),
            gcr_key: None,
        }
    }

    /// `config_path` without a trailing `/`.
    pub fn config_dir(&self) -> &str {
        let trimmed = self.config_path.trim_end_matches('/');
        if trimmed.is_empty() {
            "/"
        } else {
            trimmed
        }
    }

    /// Every upstream host that gets configuration, sorted: `gcr.io` always,
    /// plus each mirror's hosts.
    pub fn upstream_hosts(&self) -> BTreeSet<String> {
        let mut set = BTreeSet::from([GCR_HOST.to_owned()]);
        for m in &self.mirrors {
            set.extend(m.upstream_hosts());
        }
        set
    }

    /// Mirrors serving `host`, in priority order.
    pub fn mirrors_for<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a MirrorSpec> + 'a {
        self.mirrors.iter().filter(move |m| m.mirrors_host(host))
    }

    /// Check everything the renderers rely on. Renderers call this first.
    pub fn validate(&self) -> Result<()> {
        validate_config_path(&self.config_path)?;
        for m in &self.mirrors {
            validate_mirror(m)?;
            for h in &m.hosts {
                validate_host(h)?;
            }
        }
        for (i, a) in self.mirrors.iter().enumerate() {
            for b in &self.mirrors[i + 1..] {
                if a.endpoint_url() == b.endpoint_url() {
                    return Err(NodeError::MirrorConflict {
                        reason: format!("{} is listed twice", a.endpoint_url()),
                    });
                }
                if a.file_stem() == b.file_stem() && a.ca_cert_pem != b.ca_cert_pem {
                    return Err(NodeError::MirrorConflict {
                        reason: format!(
                            "{} and {} share a host but have different CA certificates",
                            a.endpoint_url(),
                            b.endpoint_url()
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Lower-case a host name and drop surrounding whitespace.
pub fn normalize_host(host: &str) -> String {
    host.trim().to_ascii_lowercase()
}

fn host_port_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("it is empty");
    }
    if s.contains("://") {
        return Some("it contains a scheme");
    }
    if s.contains('/') {
        return Some("it contains a path");
    }
    if s.starts_with('.') || s.contains("..") {
        return Some("it contains `..` or starts with `.`");
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
    {
        return Some("it contains characters not allowed in a host name");
    }
    None
}

/// An upstream host must be usable as a directory name and TOML key.
pub(crate) fn validate_host(host: &str) -> Result<()> {
    let h = normalize_host(host);
    match host_port_problem(&h) {
        Some(reason) => Err(NodeError::InvalidHost {
            host: host.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

fn validate_mirror(m: &MirrorSpec) -> Result<()> {
    let bad = |reason: &str| NodeError::InvalidMirror {
        endpoint: m.host_port.clone(),
        reason: reason.to_owned(),
    };
    if let Some(reason) = host_port_problem(&m.host_port) {
        return Err(bad(reason));
    }
    if let Some(ns) = &m.namespace {
        let ok = !ns.is_empty()
            && ns.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                    })
            });
        if !ok {
            return Err(bad(
                "the namespace must be lower-case path segments ([a-z0-9._-]) separated by `/`",
            ));
        }
    }
    if let Some(pem) = &m.ca_cert_pem {
        let ca_err = |reason: &str| NodeError::InvalidCaCert {
            endpoint: m.endpoint_url(),
            reason: reason.to_owned(),
        };
        if m.endpoint_scheme == EndpointScheme::Http {
            return Err(ca_err(
                "a CA certificate makes no sense for a plain-HTTP mirror",
            ));
        }
        let text = std::str::from_utf8(pem).map_err(|_| ca_err("it is not PEM text"))?;
        if text.contains("PRIVATE KEY") {
            return Err(ca_err(
                "it contains a private key, which must never be copied to nodes",
            ));
        }
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(ca_err("no `-----BEGIN CERTIFICATE-----` block found"));
        }
    }
    if let Some(PullAuth::Basic { username, .. }) = &m.pull_auth {
        if username.is_empty() || username.contains(':') {
            return Err(NodeError::InvalidCredentials {
                endpoint: m.endpoint_url(),
                reason: "the user name is empty or contains `:`".to_owned(),
            });
        }
    }
    Ok(())
}

fn validate_config_path(path: &str) -> Result<()> {
    let bad = |reason: &str| NodeError::InvalidConfigPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(bad("it is not absolute"));
    }
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(bad("it contains `.` or `..`"));
    }
    if path
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(bad("it contains control characters, quotes or backslashes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_url_and_stem() {
        let mut m = MirrorSpec::new("10.0.0.1:5000");
        assert_eq!(m.endpoint_url(), "https://10.0.0.1:5000");
        m.namespace = Some("team/a".into());
        m.endpoint_scheme = EndpointScheme::Http;
        assert_eq!(m.endpoint_url(), "http://10.0.0.1:5000/v2/team/a");
        assert_eq!(m.file_stem(), "10.0.0.1_5000");
        assert_eq!(MirrorSpec::new("[::1]:5000").file_stem(), "__1_5000");
    }

    #[test]
    fn gcr_is_always_mirrored_and_hosts_are_normalised() {
        let mut m = MirrorSpec::new("m:1");
        m.hosts = vec!["Quay.IO ".into(), "docker.io".into()];
        let hosts: Vec<_> = m.upstream_hosts().into_iter().collect();
        assert_eq!(hosts, ["docker.io", "gcr.io", "quay.io"]);
        assert!(m.mirrors_host("gcr.io"));
        assert!(m.mirrors_host("quay.io"));
        assert!(!m.mirrors_host("ghcr.io"));
    }

    #[test]
    fn validation_rejects_bad_input() {
        let check = |m: MirrorSpec| {
            let mut cfg = NodeMirrorConfig::new(ConfigStyle::Hosts);
            cfg.mirrors.push(m);
            cfg.validate()
        };
        assert!(check(MirrorSpec::new("mirror:5000")).is_ok());
        assert!(matches!(
            check(MirrorSpec::new("https://mirror")),
            Err(NodeError::InvalidMirror { .. })
        ));
        let mut m = MirrorSpec::new("mirror");
        m.hosts = vec!["../etc".into()];
        assert!(matches!(check(m), Err(NodeError::InvalidHost { .. })));
        let mut m = MirrorSpec::new("mirror");
        m.namespace = Some("a/../b".into());
        assert!(matches!(check(m), Err(NodeError::InvalidMirror { .. })));
        let mut m = MirrorSpec::new("mirror");
        m.ca_cert_pem = Some(b"-----BEGIN PRIVATE KEY-----\n".to_vec());
        assert!(matches!(check(m), Err(NodeError::InvalidCaCert { .. })));
        let mut m = MirrorSpec::new("mirror");
        m.pull_auth = Some(PullAuth::basic("a:b", "c"));
        let err = check(m).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("user name"), "{err}");
        let mut cfg = NodeMirrorConfig::new(ConfigStyle::Hosts);
        cfg.config_path = "etc/certs.d".into();
        assert!(matches!(
            cfg.validate(),
            Err(NodeError::InvalidConfigPath { .. })
        ));
        cfg.config_path = DEFAULT_CONFIG_PATH.into();
        cfg.mirrors = vec![MirrorSpec::new("m"), MirrorSpec::new("m")];
        assert!(matches!(
            cfg.validate(),
            Err(NodeError::MirrorConflict { .. })
        ));
    }

    #[test]
    fn pull_auth_debug_hides_password() {
        let a = PullAuth::basic("user", "s3cret");
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cret"));
        assert!(shown.contains("user"));
        let parsed = PullAuth::from_user_pass(&Secret::new("u:p:q"));
        assert_eq!(parsed, Some(PullAuth::basic("u", "p:q")));
    }
}
