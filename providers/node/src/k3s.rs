//! Renderer for k3s and RKE2 (`config_style = "k3s"` / `"rke2"`): the
//! `registries.yaml` both read at start and turn into containerd
//! configuration (docs.k3s.io/installation/private-registry,
//! docs.rke2.io/install/private_registry). Pure: model in, bytes out.
//!
//! Under the node's `config_path` (default `/etc/rancher/k3s` or
//! `/etc/rancher/rke2`):
//! - `registries.yaml`: `mirrors."HOST".endpoint` lists the mirrors'
//!   `SCHEME://HOST:PORT` in priority order, with `rewrite:
//!   {"^(.*)$": "NAMESPACE/$1"}` when they keep the images under a
//!   namespace; `configs."HOST:PORT"` holds `auth` (username, password) and
//!   `tls.ca_file`, and `configs."gcr.io".auth` the gcr.io key (user
//!   `_json_key`). Mode 0600 when it holds credentials.
//! - `mirrorplan/HOST_PORT-ca.crt`: a mirror's private CA, named by
//!   `tls.ca_file`.
//!
//! k3s always tries the upstream host itself last (its "default
//! endpoint"), without the rewrite, so it is not listed.

use crate::diff::DesiredFile;
use crate::error::{NodeError, Result};
use crate::hosts::{MODE_PUBLIC, MODE_SECRET};
use crate::model::{
    ConfigStyle, MirrorSpec, NodeMirrorConfig, PullAuth, GCR_HOST, GCR_KEY_USERNAME,
};

/// First line of registries.yaml, naming the format's documentation.
fn header(style: ConfigStyle) -> &'static str {
    match style {
        ConfigStyle::Rke2 => "# managed by mirrorplan: registry mirrors, see https://docs.rke2.io/install/private_registry\n",
        _ => "# managed by mirrorplan: registry mirrors, see https://docs.k3s.io/installation/private-registry\n",
    }
}

/// Path of registries.yaml on the node.
pub fn registries_yaml_path(cfg: &NodeMirrorConfig) -> String {
    format!("{}/registries.yaml", cfg.config_dir())
}

/// Path of `mirror`'s CA on the node.
pub fn k3s_ca_path(cfg: &NodeMirrorConfig, mirror: &MirrorSpec) -> String {
    format!(
        "{}/mirrorplan/{}-ca.crt",
        cfg.config_dir(),
        mirror.file_stem()
    )
}

/// Whether `rest` (a path relative to `config_path`) is one of the files
/// this style writes: what the node provider may remove there.
pub(crate) fn owns(rest: &str) -> bool {
    rest == "registries.yaml"
        || rest
            .strip_prefix("mirrorplan/")
            .and_then(|r| r.strip_suffix("-ca.crt"))
            .is_some_and(|stem| !stem.is_empty() && !stem.contains('/'))
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Render registries.yaml and the CA files, sorted by path.
pub fn render_k3s_registries(cfg: &NodeMirrorConfig) -> Result<Vec<DesiredFile>> {
    cfg.validate()?;
    let what = format!("{}'s registries.yaml", cfg.config_style);
    crate::containerd::check_keyed_by_host(cfg, &what)?;
    let mut text = header(cfg.config_style).to_owned();
    let mut mirrors_yaml = String::new();
    for host in cfg.upstream_hosts() {
        let mirrors: Vec<&MirrorSpec> = cfg.mirrors_for(&host).collect();
        let Some(first) = mirrors.first() else {
            continue;
        };
        // one rewrite per upstream host: its mirrors must agree on the namespace
        if let Some(other) = mirrors.iter().find(|m| m.namespace != first.namespace) {
            return Err(NodeError::MirrorConflict {
                reason: format!(
                    "{} and {} both mirror {host} but keep images under different namespaces ({} and {}); {what} has one `rewrite` per upstream host",
                    first.endpoint_url(),
                    other.endpoint_url(),
                    first.namespace.as_deref().unwrap_or("none"),
                    other.namespace.as_deref().unwrap_or("none"),
                ),
            });
        }
        mirrors_yaml.push_str(&format!("  {}:\n    endpoint:\n", q(&host)));
        for m in &mirrors {
            mirrors_yaml.push_str(&format!(
                "      - {}\n",
                q(&format!("{}://{}", m.endpoint_scheme.as_str(), m.host_port))
            ));
        }
        if let Some(ns) = &first.namespace {
            mirrors_yaml.push_str(&format!(
                "    rewrite:\n      {}: {}\n",
                q("^(.*)$"),
                q(&format!("{ns}/$1"))
            ));
        }
    }
    if mirrors_yaml.is_empty() {
        text.push_str("mirrors: {}\n");
    } else {
        text.push_str("mirrors:\n");
        text.push_str(&mirrors_yaml);
    }
    let mut files: Vec<DesiredFile> = Vec::new();
    let mut configs = String::new();
    let mut sensitive = false;
    let mut seen: Vec<&str> = Vec::new();
    for m in &cfg.mirrors {
        if seen.contains(&m.host_port.as_str()) {
            continue;
        }
        seen.push(&m.host_port);
        let ca = m.ca_cert_pem.as_ref().map(|pem| (k3s_ca_path(cfg, m), pem));
        let auth = match &m.pull_auth {
            Some(PullAuth::Basic { username, password }) => {
                Some((username.as_str(), password.expose()))
            }
            _ => None,
        };
        if ca.is_none() && auth.is_none() {
            continue;
        }
        configs.push_str(&format!("  {}:\n", q(&m.host_port)));
        if let Some((user, pass)) = auth {
            sensitive = true;
            configs.push_str(&format!(
                "    auth:\n      username: {}\n      password: {}\n",
                q(user),
                q(pass)
            ));
        }
        if let Some((path, pem)) = ca {
            configs.push_str(&format!("    tls:\n      ca_file: {}\n", q(&path)));
            files.push(DesiredFile {
                path,
                contents: pem.clone(),
                mode: MODE_PUBLIC,
                sensitive: false,
            });
        }
    }
    if let Some(key) = &cfg.gcr_key {
        sensitive = true;
        configs.push_str(&format!(
            "  {}:\n    auth:\n      username: {}\n      password: {}\n",
            q(GCR_HOST),
            q(GCR_KEY_USERNAME),
            q(key.expose())
        ));
    }
    if !configs.is_empty() {
        text.push_str("configs:\n");
        text.push_str(&configs);
    }
    files.push(DesiredFile {
        path: registries_yaml_path(cfg),
        contents: text.into_bytes(),
        mode: if sensitive { MODE_SECRET } else { MODE_PUBLIC },
        sensitive,
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}
