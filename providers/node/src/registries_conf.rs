//! Renderer for CRI-O and podman (`config_style = "registries_conf"`):
//! the `containers-registries.conf(5)` / `containers-certs.d(5)` /
//! `containers-auth.json(5)` files of the containers libraries. Pure:
//! model in, bytes out.
//!
//! Under the node's `config_path` (default `/etc/containers`):
//! - `registries.conf.d/50-mirrorplan.conf`: a version 2 drop-in, one
//!   `[[registry]]` per mirrored upstream host (`prefix` and `location` the
//!   host itself, so that a pull missing from every mirror still falls back
//!   to it) with one `[[registry.mirror]]` per mirror in priority order:
//!   `location = "HOST:PORT[/NAMESPACE]"`, `insecure = true` for a
//!   plain-`http://` mirror;
//! - `certs.d/HOST:PORT/ca.crt`: a mirror's private CA;
//! - `auth.json` (0600): the mirrors' pull credentials and the gcr.io key,
//!   `{"auths": {"HOST:PORT": {"auth": base64("user:password")}}}`. The
//!   containers libraries do not read this path by themselves: CRI-O needs
//!   `global_auth_file = "/etc/containers/auth.json"` in `[crio.image]`,
//!   podman and skopeo `--authfile` (or `REGISTRY_AUTH_FILE`).

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::diff::DesiredFile;
use crate::error::Result;
use crate::hosts::{toml_string, MODE_PUBLIC, MODE_SECRET};
use crate::model::{
    EndpointScheme, MirrorSpec, NodeMirrorConfig, PullAuth, GCR_HOST, GCR_KEY_USERNAME,
};

/// The drop-in's path below `config_path`.
pub const DROP_IN: &str = "registries.conf.d/50-mirrorplan.conf";

/// First line of the drop-in.
const HEADER: &str = "# managed by mirrorplan: registry mirrors for CRI-O and podman, see containers-registries.conf(5)\n";

/// Path of the drop-in on the node.
pub fn drop_in_path(cfg: &NodeMirrorConfig) -> String {
    format!("{}/{DROP_IN}", cfg.config_dir())
}

/// Path of `mirror`'s CA on the node (`certs.d/HOST:PORT/ca.crt`).
pub fn certs_d_ca_path(cfg: &NodeMirrorConfig, mirror: &MirrorSpec) -> String {
    format!("{}/certs.d/{}/ca.crt", cfg.config_dir(), mirror.host_port)
}

/// Path of the auth file on the node.
pub fn auth_json_path(cfg: &NodeMirrorConfig) -> String {
    format!("{}/auth.json", cfg.config_dir())
}

/// A mirror's `location`: `HOST:PORT[/NAMESPACE]` (no scheme, no `/v2`).
pub fn mirror_location(mirror: &MirrorSpec) -> String {
    match &mirror.namespace {
        Some(ns) => format!("{}/{ns}", mirror.host_port),
        None => mirror.host_port.clone(),
    }
}

/// Whether `rest` (a path relative to `config_path`) is one of the files
/// this style writes: what the node provider may remove there.
pub(crate) fn owns(rest: &str) -> bool {
    rest == DROP_IN
        || rest == "auth.json"
        || rest
            .strip_prefix("certs.d/")
            .and_then(|r| r.strip_suffix("/ca.crt"))
            .is_some_and(|host| !host.is_empty() && !host.contains('/'))
}

/// Render the drop-in, the CA files and (when there are credentials)
/// `auth.json`, sorted by path.
pub fn render_registries_conf(cfg: &NodeMirrorConfig) -> Result<Vec<DesiredFile>> {
    cfg.validate()?;
    crate::containerd::check_keyed_by_host(cfg, "containers auth.json")?;
    let mut text = HEADER.to_owned();
    for host in cfg.upstream_hosts() {
        let mirrors: Vec<&MirrorSpec> = cfg.mirrors_for(&host).collect();
        if mirrors.is_empty() {
            continue;
        }
        text.push_str(&format!(
            "\n[[registry]]\nprefix = {}\nlocation = {}\n",
            toml_string(&host),
            toml_string(&host)
        ));
        for m in mirrors {
            text.push_str(&format!(
                "\n[[registry.mirror]]\nlocation = {}\n",
                toml_string(&mirror_location(m))
            ));
            if m.endpoint_scheme == EndpointScheme::Http {
                text.push_str("insecure = true\n");
            }
        }
    }
    let mut files = vec![DesiredFile {
        path: drop_in_path(cfg),
        contents: text.into_bytes(),
        mode: MODE_PUBLIC,
        sensitive: false,
    }];
    let mut auths: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for m in &cfg.mirrors {
        if let Some(pem) = &m.ca_cert_pem {
            let path = certs_d_ca_path(cfg, m);
            if !files.iter().any(|f| f.path == path) {
                files.push(DesiredFile {
                    path,
                    contents: pem.clone(),
                    mode: MODE_PUBLIC,
                    sensitive: false,
                });
            }
        }
        if let Some(PullAuth::Basic { username, password }) = &m.pull_auth {
            auths.insert(m.host_port.clone(), auth_entry(username, password.expose()));
        }
    }
    if let Some(key) = &cfg.gcr_key {
        auths.insert(
            GCR_HOST.to_owned(),
            auth_entry(GCR_KEY_USERNAME, key.expose()),
        );
    }
    if !auths.is_empty() {
        let json = serde_json::json!({ "auths": auths });
        let mut contents = serde_json::to_string_pretty(&json).unwrap_or_default();
        contents.push('\n');
        files.push(DesiredFile {
            path: auth_json_path(cfg),
            contents: contents.into_bytes(),
            mode: MODE_SECRET,
            sensitive: true,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn auth_entry(user: &str, password: &str) -> serde_json::Value {
    let raw = format!("{user}:{password}");
    serde_json::json!({ "auth": base64::engine::general_purpose::STANDARD.encode(raw) })
}

/// The mirror locations the drop-in lists for `prefix`, in order: what
/// `verify` compares between the rendered and the live drop-in.
pub fn drop_in_mirrors(text: &str, prefix: &str) -> Option<Vec<String>> {
    let doc: toml_edit::DocumentMut = text.parse().ok()?;
    let registries = doc.get("registry")?.as_array_of_tables()?;
    let entry = registries
        .iter()
        .find(|r| r.get("prefix").and_then(|p| p.as_str()) == Some(prefix))?;
    Some(
        entry
            .get("mirror")
            .and_then(|m| m.as_array_of_tables())
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m.get("location").and_then(|l| l.as_str()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    )
}
