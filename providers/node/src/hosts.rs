//! Renderer for containerd's hosts directory (`config_style = "hosts"`):
//! one `CONFIG_PATH/HOST/hosts.toml` per mirrored upstream host, plus the
//! mirrors' CA files beside it. Pure: model in, bytes out.

use base64::Engine as _;

use crate::diff::DesiredFile;
use crate::error::Result;
use crate::model::{MirrorSpec, NodeMirrorConfig, PullAuth, GCR_HOST, GCR_KEY_USERNAME};
use crate::secret::Secret;

/// Mode of files that contain no credentials.
pub const MODE_PUBLIC: u32 = 0o644;
/// Mode of files that contain credentials.
pub const MODE_SECRET: u32 = 0o600;

/// The `server` URL containerd falls back to for an upstream host.
pub fn upstream_server(host: &str) -> String {
    match host {
        "docker.io" => "https://registry-1.docker.io".to_owned(),
        other => format!("https://{other}"),
    }
}

/// Path of the hosts.toml for `host`.
pub fn hosts_toml_path(cfg: &NodeMirrorConfig, host: &str) -> String {
    format!("{}/{host}/hosts.toml", cfg.config_dir())
}

/// The endpoints a hosts.toml lists, in order (its `[host."URL"]`
/// headers): what `verify` compares between the rendered and the live file.
pub fn hosts_endpoints(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("[host.\"")?;
            let end = rest.find('"')?;
            // `[host."URL"]` itself, not its `[host."URL".header]` subtable
            (&rest[end..] == "\"]").then(|| rest[..end].to_string())
        })
        .collect()
}

/// Path of the CA copy for `mirror` beside the hosts.toml of `host`.
pub fn ca_file_path(cfg: &NodeMirrorConfig, host: &str, mirror: &MirrorSpec) -> String {
    format!("{}/{host}/{}-ca.crt", cfg.config_dir(), mirror.file_stem())
}

/// Render every hosts.toml and CA file for `cfg`, sorted by path.
///
/// Files holding credentials have mode 0600 and `sensitive: true`.
pub fn render_hosts(cfg: &NodeMirrorConfig) -> Result<Vec<DesiredFile>> {
    cfg.validate()?;
    let mut files = Vec::new();
    for host in cfg.upstream_hosts() {
        let mirrors: Vec<&MirrorSpec> = cfg.mirrors_for(&host).collect();
        let gcr_key = cfg.gcr_key.as_ref().filter(|_| host == GCR_HOST);
        if mirrors.is_empty() && gcr_key.is_none() {
            continue;
        }
        let mut text = format!("server = {}\n", toml_string(&upstream_server(&host)));
        let mut sensitive = false;
        for m in &mirrors {
            let ca = m.ca_cert_pem.as_ref().map(|_| ca_file_path(cfg, &host, m));
            // basic credentials go to config.toml (see [`config_auths`]);
            // the header only where that cannot carry them
            let auth = m
                .pull_auth
                .as_ref()
                .filter(|_| !auth_in_config(cfg, m))
                .map(authorization_value);
            sensitive |= auth.is_some();
            push_host_block(
                &mut text,
                &m.endpoint_url(),
                ca.as_deref(),
                m.namespace.is_some(),
                auth.as_ref(),
            );
            if let (Some(path), Some(pem)) = (ca, &m.ca_cert_pem) {
                if !files.iter().any(|f: &DesiredFile| f.path == path) {
                    files.push(DesiredFile {
                        path,
                        contents: pem.clone(),
                        mode: MODE_PUBLIC,
                        sensitive: false,
                    });
                }
            }
        }
        if let Some(key) = gcr_key {
            let auth = basic_header(GCR_KEY_USERNAME, key);
            sensitive = true;
            push_host_block(
                &mut text,
                &upstream_server(GCR_HOST),
                None,
                false,
                Some(&auth),
            );
        }
        files.push(DesiredFile {
            path: hosts_toml_path(cfg, &host),
            contents: text.into_bytes(),
            mode: if sensitive { MODE_SECRET } else { MODE_PUBLIC },
            sensitive,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn push_host_block(
    text: &mut String,
    url: &str,
    ca: Option<&str>,
    override_path: bool,
    authorization: Option<&Secret>,
) {
    let key = toml_string(url);
    text.push_str(&format!("\n[host.{key}]\n"));
    text.push_str("  capabilities = [\"pull\", \"resolve\"]\n");
    if let Some(ca) = ca {
        text.push_str(&format!("  ca = {}\n", toml_string(ca)));
    }
    if override_path {
        text.push_str("  override_path = true\n");
    }
    if let Some(auth) = authorization {
        text.push_str(&format!("  [host.{key}.header]\n"));
        text.push_str(&format!(
            "    Authorization = [{}]\n",
            toml_string(auth.expose())
        ));
    }
}

/// Pull credentials containerd's CRI resolver reads from config.toml
/// (`registry.configs."HOST".auth`), keyed by the mirror's `HOST:PORT`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigAuth {
    /// The mirror's `HOST:PORT` (the key containerd looks credentials up by).
    pub host: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
}

impl std::fmt::Debug for ConfigAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigAuth")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// Whether `m`'s pull credentials go to config.toml rather than a fixed
/// header in hosts.toml: hosts style, basic credentials, and no other
/// mirror on the same `HOST:PORT` with different credentials (config.toml
/// keys them by host).
///
/// A fixed `Authorization: Basic` header only works with registries that
/// accept basic auth on every request; a registry using token auth answers
/// 401 with a `Bearer` challenge, which containerd answers only with
/// credentials from `registry.configs` (it fetches a token from the
/// realm with them). Both containerd 1.5+ (config version 2) and 2.x
/// (version 3, `io.containerd.cri.v1.images`) read `registry.configs.*.auth`
/// together with `config_path`; the table follows the file's version
/// (see `containerd::ensure_config_path_with_auth`).
pub fn auth_in_config(cfg: &NodeMirrorConfig, m: &MirrorSpec) -> bool {
    cfg.config_style == crate::model::ConfigStyle::Hosts
        && matches!(m.pull_auth, Some(PullAuth::Basic { .. }))
        && cfg
            .mirrors
            .iter()
            .filter(|o| o.host_port == m.host_port && o.pull_auth.is_some())
            .all(|o| o.pull_auth == m.pull_auth)
}

/// The credentials [`auth_in_config`] puts into config.toml, one per host,
/// sorted by host.
pub fn config_auths(cfg: &NodeMirrorConfig) -> Vec<ConfigAuth> {
    let mut out: Vec<ConfigAuth> = Vec::new();
    for m in cfg.mirrors.iter().filter(|m| auth_in_config(cfg, m)) {
        if let Some(PullAuth::Basic { username, password }) = &m.pull_auth {
            if !out.iter().any(|a| a.host == m.host_port) {
                out.push(ConfigAuth {
                    host: m.host_port.clone(),
                    username: username.clone(),
                    password: password.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}

/// The `Authorization` header value for pull credentials.
pub(crate) fn authorization_value(auth: &PullAuth) -> Secret {
    match auth {
        PullAuth::Basic { username, password } => basic_header(username, password),
        PullAuth::Token(token) => Secret::new(format!("Bearer {}", token.expose())),
    }
}

fn basic_header(username: &str, password: &Secret) -> Secret {
    let raw = format!("{username}:{}", password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

/// A TOML basic string literal, quoted and escaped.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
