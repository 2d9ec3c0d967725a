//! Editing containerd's `config.toml` with `toml_edit`, so that everything
//! mirrorplan does not own stays byte for byte: comments, order, formatting.
//!
//! Ownership: every table mirrorplan writes in legacy style carries the
//! comment line [`MANAGED_MARKER`] just above its header. Marked tables are
//! removed and rewritten on each apply, which is what lets a style switch
//! (hosts ⇄ legacy) migrate in one step. `config_path` and
//! `registry.mirrors` never coexist in an output: containerd would silently
//! drop its CRI plugin.

use std::collections::BTreeMap;
use std::fmt;

use toml_edit::{Array, Decor, DocumentMut, Item, Key, Table, TableLike, Value};

use crate::error::{NodeError, Result};
use crate::model::{
    ConfigStyle, MirrorSpec, NodeMirrorConfig, PullAuth, GCR_HOST, GCR_KEY_USERNAME,
};
use crate::secret::REDACTED;

/// Comment that marks a table written (and owned) by mirrorplan.
pub const MANAGED_MARKER: &str = "# managed by mirrorplan";

/// CRI plugin that holds `registry` in config version 2 (containerd 1.x, and 2.x migrating).
pub const CRI_PLUGIN_V2: &str = "io.containerd.grpc.v1.cri";
/// Plugin that holds `registry` in config version 3 (containerd 2.x).
pub const CRI_IMAGES_PLUGIN_V3: &str = "io.containerd.cri.v1.images";

/// containerd major release line, as detected on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerdVersion {
    /// containerd 1.x: config version 2, legacy mirrors supported.
    V1,
    /// containerd 2.x: config version 3 (2 still read and migrated).
    V2,
}

impl ContainerdVersion {
    /// Config `version` mirrorplan writes into a new file.
    pub fn config_version(self) -> i64 {
        match self {
            ContainerdVersion::V1 => 2,
            ContainerdVersion::V2 => 3,
        }
    }
}

impl fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContainerdVersion::V1 => "1.x",
            ContainerdVersion::V2 => "2.x",
        })
    }
}

/// A containerd release parsed from `containerd --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerdRelease {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
}

impl ContainerdRelease {
    /// The release line.
    pub fn version(self) -> ContainerdVersion {
        if self.major >= 2 {
            ContainerdVersion::V2
        } else {
            ContainerdVersion::V1
        }
    }

    /// `registry.config_path` exists from containerd 1.5 on.
    pub fn supports_config_path(self) -> bool {
        (self.major, self.minor) >= (1, 5)
    }
}

/// Parse `containerd --version` output, for example
/// `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3`
/// or `containerd github.com/containerd/containerd/v2 v2.0.0 207ad71`.
pub fn parse_containerd_release(output: &str) -> Result<ContainerdRelease> {
    let err = || NodeError::VersionParse {
        output: output.chars().take(200).collect(),
    };
    let line = output
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(err)?;
    let mut words = line.split_whitespace();
    if words.next() != Some("containerd") {
        return Err(err());
    }
    let version = words
        .map(|w| w.strip_prefix('v').unwrap_or(w))
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .ok_or_else(err)?;
    let mut nums = version.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok()
    });
    let major = nums.next().flatten().ok_or_else(err)?;
    let minor = nums.next().flatten().ok_or_else(err)?;
    let patch = nums.next().flatten().unwrap_or(0);
    if major == 0 || major > 2 {
        return Err(err());
    }
    Ok(ContainerdRelease {
        major,
        minor,
        patch,
    })
}

/// [`parse_containerd_release`] reduced to the release line.
pub fn parse_containerd_version(output: &str) -> Result<ContainerdVersion> {
    parse_containerd_release(output).map(ContainerdRelease::version)
}

/// The result of editing config.toml.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigEdit {
    /// The new file contents (the input itself when nothing changed).
    pub text: String,
    /// Whether `text` differs from the input.
    pub changed: bool,
    /// What was done, one line each, without secrets (for plans and logs).
    pub notes: Vec<String>,
    /// The output holds credentials (`registry.configs.*.auth`): write it
    /// 0600 and never show it.
    pub contains_credentials: bool,
}

impl ConfigEdit {
    /// The edited config.toml as a node file at `path`: mode 0600 and
    /// sensitive when it holds credentials, else 0644.
    pub fn to_desired_file(&self, path: &str) -> crate::diff::DesiredFile {
        crate::diff::DesiredFile {
            path: path.to_owned(),
            contents: self.text.clone().into_bytes(),
            mode: if self.contains_credentials {
                crate::hosts::MODE_SECRET
            } else {
                crate::hosts::MODE_PUBLIC
            },
            sensitive: self.contains_credentials,
        }
    }
}

impl fmt::Debug for ConfigEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: &dyn fmt::Debug = if self.contains_credentials {
            &REDACTED
        } else {
            &self.text
        };
        f.debug_struct("ConfigEdit")
            .field("text", text)
            .field("changed", &self.changed)
            .field("notes", &self.notes)
            .field("contains_credentials", &self.contains_credentials)
            .finish()
    }
}

/// Facts read from a config.toml, for verification and drift detection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigFacts {
    /// The file's `version` key.
    pub version: Option<i64>,
    /// `registry.config_path`, if set.
    pub config_path: Option<String>,
    /// Legacy `registry.mirrors`: upstream host → endpoints.
    pub legacy_mirrors: BTreeMap<String, Vec<String>>,
    /// Legacy `registry.configs`: registry host → TLS/auth facts.
    pub legacy_configs: BTreeMap<String, LegacyConfigFacts>,
    /// `config_path` and `mirrors` are both set: containerd will not load CRI.
    pub conflict: bool,
}

/// One `registry.configs."HOST"` entry, secrets left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LegacyConfigFacts {
    /// `tls.ca_file`.
    pub ca_file: Option<String>,
    /// An `auth` table with any credential is present.
    pub has_auth: bool,
    /// Written by mirrorplan (carries [`MANAGED_MARKER`]).
    pub managed: bool,
}

fn parse(existing: &str) -> Result<DocumentMut> {
    existing
        .parse::<DocumentMut>()
        .map_err(|e| NodeError::ConfigParse {
            // toml_edit's message quotes the offending line, which could be a
            // password: keep only its first line (position and kind).
            message: e
                .to_string()
                .lines()
                .next()
                .unwrap_or("parse error")
                .to_owned(),
        })
}

fn describe(item: &Item) -> String {
    match item {
        Item::None => "nothing".into(),
        Item::Value(v) => format!("a {}", v.type_name()),
        Item::Table(_) => "a table".into(),
        Item::ArrayOfTables(_) => "an array of tables".into(),
    }
}

/// Descend to `path` under `root`, creating implicit tables where missing.
fn table_path_mut<'a>(root: &'a mut dyn TableLike, path: &[&str]) -> Result<&'a mut dyn TableLike> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(root);
    };
    if !root.contains_key(first) {
        let mut t = Table::new();
        t.set_implicit(true);
        root.insert(first, Item::Table(t));
    }
    let item = root.get_mut(first).ok_or_else(|| NodeError::ConfigShape {
        key: (*first).to_owned(),
        found: "missing".into(),
    })?;
    let found = describe(item);
    let child = item
        .as_table_like_mut()
        .ok_or_else(|| NodeError::ConfigShape {
            key: (*first).to_owned(),
            found,
        })?;
    table_path_mut(child, rest)
}

fn table_path<'a>(root: &'a dyn TableLike, path: &[&str]) -> Option<&'a dyn TableLike> {
    let mut t = root;
    for key in path {
        t = t.get(key)?.as_table_like()?;
    }
    Some(t)
}

/// Which plugin table holds `registry` for this file and containerd.
fn registry_plugin(
    doc: &mut DocumentMut,
    containerd: ContainerdVersion,
    notes: &mut Vec<String>,
) -> Result<&'static str> {
    let found = doc.get("version").map(|v| (v.as_integer(), describe(v)));
    match found {
        Some((Some(2), _)) => Ok(CRI_PLUGIN_V2),
        Some((Some(3), _)) if containerd == ContainerdVersion::V2 => Ok(CRI_IMAGES_PLUGIN_V3),
        Some((Some(n), _)) => Err(NodeError::UnsupportedConfigVersion {
            found: n.to_string(),
            containerd: containerd.to_string(),
        }),
        Some((None, what)) => Err(NodeError::UnsupportedConfigVersion {
            found: what,
            containerd: containerd.to_string(),
        }),
        None if doc.contains_key("plugins") => Err(NodeError::UnsupportedConfigVersion {
            found: "1 (no `version` key)".into(),
            containerd: containerd.to_string(),
        }),
        None => {
            let v = containerd.config_version();
            doc.insert("version", toml_edit::value(v));
            notes.push(format!("set version = {v}"));
            Ok(match containerd {
                ContainerdVersion::V1 => CRI_PLUGIN_V2,
                ContainerdVersion::V2 => CRI_IMAGES_PLUGIN_V3,
            })
        }
    }
}

fn is_managed(item: &Item) -> bool {
    let decor = match item {
        Item::Table(t) => t.decor(),
        _ => return false,
    };
    decor
        .prefix()
        .and_then(|p| p.as_str())
        .is_some_and(|p| p.lines().any(|l| l.trim() == MANAGED_MARKER))
}

/// Indentation of the header of the table at `path` (spaces/tabs before
/// `[`), so that new content lines up with what the file's author wrote.
fn header_indent(doc: &DocumentMut, path: &[&str]) -> String {
    let mut item = doc.as_item();
    for key in path {
        match item.get(key) {
            Some(i) => item = i,
            None => return String::new(),
        }
    }
    let prefix = item
        .as_table()
        .and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let last = prefix.rsplit('\n').next().unwrap_or("");
    if last.chars().all(|c| c == ' ' || c == '\t') {
        last.to_owned()
    } else {
        String::new()
    }
}

/// A key formatted with `indent` before it.
fn indented_key(name: &str, indent: &str) -> Key {
    Key::new(name).with_leaf_decor(Decor::new(indent, " "))
}

/// A table marked as mirrorplan's, its header at `indent`, keys two deeper.
fn managed_table(indent: &str, values: Vec<(&str, Value)>) -> Table {
    let mut t = Table::new();
    t.decor_mut()
        .set_prefix(format!("\n{indent}{MANAGED_MARKER}\n{indent}"));
    let key_indent = if indent.is_empty() {
        String::new()
    } else {
        format!("{indent}  ")
    };
    for (name, value) in values {
        t.insert_formatted(&indented_key(name, &key_indent), Item::Value(value));
    }
    t
}

fn deeper(indent: &str) -> String {
    if indent.is_empty() {
        String::new()
    } else {
        format!("{indent}  ")
    }
}

/// Remove every `mirrors` entry (`all_mirrors`, hosts style) or only the
/// managed ones (legacy style), and the managed `configs` sub-tables.
/// Containers emptied by a removal are removed too. Returns whether
/// anything changed.
fn remove_legacy(registry: &mut dyn TableLike, all_mirrors: bool, notes: &mut Vec<String>) -> bool {
    let mut changed = false;
    if all_mirrors {
        if let Some(item) = registry.remove("mirrors") {
            changed = true;
            match item.as_table_like() {
                Some(mirrors) => {
                    for (host, entry) in mirrors.iter() {
                        notes.push(if is_managed(entry) {
                            format!("removed legacy registry.mirrors.\"{host}\" (managed by mirrorplan)")
                        } else {
                            format!(
                                "removed legacy registry.mirrors.\"{host}\" (not managed by mirrorplan, but it cannot coexist with config_path)"
                            )
                        });
                    }
                }
                None => notes.push("removed legacy registry.mirrors".into()),
            }
        }
    } else if let Some(mirrors) = registry
        .get_mut("mirrors")
        .and_then(Item::as_table_like_mut)
    {
        let hosts: Vec<String> = mirrors.iter().map(|(k, _)| k.to_owned()).collect();
        for host in hosts {
            if mirrors.get(&host).is_some_and(is_managed) {
                mirrors.remove(&host);
                changed = true;
            }
        }
    }
    let mut configs_changed = false;
    if let Some(configs) = registry
        .get_mut("configs")
        .and_then(Item::as_table_like_mut)
    {
        let hosts: Vec<String> = configs.iter().map(|(k, _)| k.to_owned()).collect();
        for host in hosts {
            let Some(entry) = configs.get_mut(&host).and_then(Item::as_table_like_mut) else {
                continue;
            };
            let subs: Vec<String> = entry.iter().map(|(k, _)| k.to_owned()).collect();
            let mut entry_changed = false;
            for sub in subs {
                if entry.get(&sub).is_some_and(is_managed) {
                    entry.remove(&sub);
                    entry_changed = true;
                    if all_mirrors {
                        notes.push(format!(
                            "removed registry.configs.\"{host}\".{sub} (managed by mirrorplan)"
                        ));
                    }
                }
            }
            if entry_changed && entry.is_empty() {
                configs.remove(&host);
            }
            configs_changed |= entry_changed;
        }
        if configs_changed && configs.is_empty() {
            registry.remove("configs");
        }
    }
    changed || configs_changed
}

fn contains_credentials(doc: &DocumentMut) -> bool {
    [CRI_PLUGIN_V2, CRI_IMAGES_PLUGIN_V3].iter().any(|plugin| {
        table_path(doc.as_table(), &["plugins", plugin, "registry", "configs"]).is_some_and(
            |configs| {
                configs.iter().any(|(_, entry)| {
                    entry
                        .as_table_like()
                        .and_then(|e| e.get("auth"))
                        .and_then(Item::as_table_like)
                        .is_some_and(|auth| !auth.is_empty())
                })
            },
        )
    })
}

fn finish(existing: &str, doc: &DocumentMut, modified: bool, notes: Vec<String>) -> ConfigEdit {
    let text = if modified {
        doc.to_string()
    } else {
        existing.to_owned()
    };
    ConfigEdit {
        changed: text != existing,
        contains_credentials: contains_credentials(doc),
        text,
        notes,
    }
}

/// Point containerd's CRI registry at the hosts directory `config_path`
/// (hosts style), removing every legacy `registry.mirrors` entry and the
/// `registry.configs` tables mirrorplan owns. An empty input yields a minimal
/// file with the right `version`.
///
/// The table edited follows the file's own `version`: `version = 2` →
/// `plugins."io.containerd.grpc.v1.cri".registry` (containerd 2.x still reads
/// and migrates such files, so they are not rewritten to version 3);
/// `version = 3` → `plugins."io.containerd.cri.v1.images".registry`
/// (refused for containerd 1.x, which cannot read it).
pub fn ensure_config_path(
    existing: &str,
    containerd: ContainerdVersion,
    config_path: &str,
) -> Result<ConfigEdit> {
    ensure_config_path_with_auth(existing, containerd, config_path, &[])
}

/// [`ensure_config_path`] plus the mirrors' pull credentials as
/// `registry.configs."HOST".auth` (username/password, each table marked
/// as mirrorplan's), which containerd's CRI resolver uses to answer a
/// `Bearer` challenge from a token-auth registry (and a `Basic` one), next
/// to `config_path`. The table is the one the file's version names:
/// `io.containerd.grpc.v1.cri` (version 2: containerd 1.5+, and 2.x, which
/// migrates it) or `io.containerd.cri.v1.images` (version 3, containerd
/// 2.x). The output then holds credentials (`contains_credentials`).
pub fn ensure_config_path_with_auth(
    existing: &str,
    containerd: ContainerdVersion,
    config_path: &str,
    auths: &[crate::hosts::ConfigAuth],
) -> Result<ConfigEdit> {
    let mut doc = parse(existing)?;
    let mut notes = Vec::new();
    let plugin = registry_plugin(&mut doc, containerd, &mut notes)?;
    let mut modified = !notes.is_empty();
    let key_indent = deeper(&header_indent(&doc, &["plugins", plugin, "registry"]));
    let registry = table_path_mut(doc.as_table_mut(), &["plugins", plugin, "registry"])?;
    modified |= remove_legacy(registry, true, &mut notes);
    let current = registry.get("config_path").map(|i| i.as_str());
    if current != Some(Some(config_path)) {
        let mut new = Value::from(config_path);
        match registry.get_mut("config_path") {
            Some(Item::Value(old)) => {
                // keep the key and the value's surrounding whitespace/comment
                *new.decor_mut() = old.decor().clone();
                *old = new;
            }
            _ => {
                registry.remove("config_path");
                registry
                    .entry_format(&indented_key("config_path", &key_indent))
                    .or_insert(Item::Value(new));
            }
        }
        notes.push(format!("set registry.config_path = \"{config_path}\""));
        modified = true;
    }
    if !auths.is_empty() {
        let configs = table_path_mut(registry, &["configs"])?;
        for a in auths {
            let entry = table_path_mut(configs, &[a.host.as_str()])?;
            let t = managed_table(
                &key_indent,
                vec![
                    ("username", Value::from(a.username.clone())),
                    ("password", Value::from(a.password.expose().to_owned())),
                ],
            );
            entry.insert("auth", Item::Table(t));
            notes.push(format!(
                "set registry.configs.\"{}\".auth = {REDACTED}",
                a.host
            ));
        }
        modified = true;
    }
    let mut edit = finish(existing, &doc, modified, notes);
    if !edit.changed {
        // the managed tables were removed and written again as they were
        edit.notes.clear();
    }
    Ok(edit)
}

/// Where legacy style puts a mirror's CA file on the node.
pub fn legacy_ca_path(cfg: &NodeMirrorConfig, mirror: &MirrorSpec) -> String {
    format!("{}/{}-ca.crt", cfg.config_dir(), mirror.file_stem())
}

/// Write legacy `registry.mirrors."HOST".endpoint` and
/// `registry.configs."MIRROR".tls.ca_file` / `.auth` (plus gcr.io's key)
/// for `config_style = "legacy"`, removing `config_path` and everything
/// mirrorplan wrote before. containerd 2.x: [`NodeError::LegacyUnsupported`].
///
/// The CA files themselves are rendered by [`render_legacy_files`].
pub fn apply_legacy(
    existing: &str,
    containerd: ContainerdVersion,
    cfg: &NodeMirrorConfig,
) -> Result<ConfigEdit> {
    if containerd == ContainerdVersion::V2 {
        return Err(NodeError::LegacyUnsupported);
    }
    cfg.validate()?;
    check_legacy_mirrors(cfg)?;
    let mut doc = parse(existing)?;
    let mut notes = Vec::new();
    let plugin = registry_plugin(&mut doc, containerd, &mut notes)?;
    let indent = deeper(&header_indent(&doc, &["plugins", plugin, "registry"]));
    let registry = table_path_mut(doc.as_table_mut(), &["plugins", plugin, "registry"])?;
    if registry.remove("config_path").is_some() {
        notes.push("removed registry.config_path (cannot coexist with legacy mirrors)".into());
    }
    remove_legacy(registry, false, &mut notes);

    // mirrors."HOST".endpoint, priority order
    let mirrors = table_path_mut(registry, &["mirrors"])?;
    for host in cfg.upstream_hosts() {
        let endpoints: Array = cfg.mirrors_for(&host).map(|m| m.endpoint_url()).collect();
        if endpoints.is_empty() {
            continue;
        }
        let t = managed_table(&indent, vec![("endpoint", Value::Array(endpoints))]);
        if mirrors.insert(&host, Item::Table(t)).is_some() {
            notes.push(format!(
                "replaced registry.mirrors.\"{host}\" that mirrorplan did not manage"
            ));
        }
        notes.push(format!("set registry.mirrors.\"{host}\""));
    }

    // configs."HOST".tls / .auth
    let mut entries: Vec<LegacyEntry> = Vec::new();
    for m in &cfg.mirrors {
        if entries.iter().any(|(h, _, _)| *h == m.host_port) {
            continue;
        }
        let ca = m.ca_cert_pem.as_ref().map(|_| legacy_ca_path(cfg, m));
        let auth = match &m.pull_auth {
            Some(PullAuth::Basic { username, password }) => {
                Some((username.clone(), password.expose().to_owned()))
            }
            _ => None,
        };
        entries.push((m.host_port.clone(), ca, auth));
    }
    if let Some(key) = &cfg.gcr_key {
        entries.push((
            GCR_HOST.to_owned(),
            None,
            Some((GCR_KEY_USERNAME.to_owned(), key.expose().to_owned())),
        ));
    }
    if entries
        .iter()
        .any(|(_, ca, auth)| ca.is_some() || auth.is_some())
    {
        let configs = table_path_mut(registry, &["configs"])?;
        for (host, ca, auth) in entries {
            let entry = table_path_mut(configs, &[host.as_str()])?;
            if let Some(ca) = ca {
                let t = managed_table(&indent, vec![("ca_file", Value::from(ca))]);
                entry.insert("tls", Item::Table(t));
                notes.push(format!("set registry.configs.\"{host}\".tls.ca_file"));
            }
            if let Some((user, pass)) = auth {
                let t = managed_table(
                    &indent,
                    vec![
                        ("username", Value::from(user)),
                        ("password", Value::from(pass)),
                    ],
                );
                entry.insert("auth", Item::Table(t));
                notes.push(format!("set registry.configs.\"{host}\".auth ({REDACTED})"));
            }
        }
    }
    Ok(finish(existing, &doc, true, notes))
}

/// `configs."HOST"`: host, CA file path, (user, password).
type LegacyEntry = (String, Option<String>, Option<(String, String)>);

fn check_legacy_mirrors(cfg: &NodeMirrorConfig) -> Result<()> {
    check_keyed_by_host(cfg, "legacy config")
}

/// The styles whose credentials (and TLS settings) are keyed by the
/// mirror's `HOST:PORT` (`legacy`, `registries_conf`, `k3s`, `rke2`): no
/// bearer token (only containerd's hosts.toml can send one), and mirrors
/// sharing a host must share their credentials. `what` names the format in
/// the error, e.g. `"legacy config"`.
pub(crate) fn check_keyed_by_host(cfg: &NodeMirrorConfig, what: &str) -> Result<()> {
    for (i, a) in cfg.mirrors.iter().enumerate() {
        if matches!(a.pull_auth, Some(PullAuth::Token(_))) {
            return Err(NodeError::InvalidCredentials {
                endpoint: a.endpoint_url(),
                reason: format!(
                    "a bearer token cannot be written in {what}; use config_style = \"hosts\""
                ),
            });
        }
        for b in &cfg.mirrors[i + 1..] {
            if a.host_port == b.host_port && a.pull_auth != b.pull_auth {
                return Err(NodeError::MirrorConflict {
                    reason: format!(
                        "{} and {} share host {} but have different credentials ({what} keys credentials by host)",
                        a.endpoint_url(),
                        b.endpoint_url(),
                        a.host_port
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The CA files legacy style needs on the node (`config_path/MIRROR-ca.crt`).
pub fn render_legacy_files(cfg: &NodeMirrorConfig) -> Result<Vec<crate::diff::DesiredFile>> {
    cfg.validate()?;
    let mut files: Vec<crate::diff::DesiredFile> = Vec::new();
    for m in &cfg.mirrors {
        if let Some(pem) = &m.ca_cert_pem {
            let path = legacy_ca_path(cfg, m);
            if !files.iter().any(|f| f.path == path) {
                files.push(crate::diff::DesiredFile {
                    path,
                    contents: pem.clone(),
                    mode: crate::hosts::MODE_PUBLIC,
                    sensitive: false,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Every file `cfg` needs under `config_path`, in its own style: hosts.toml
/// files and CA copies for hosts style, CA copies only for legacy style,
/// the registries.conf drop-in, CAs and auth.json for `registries_conf`,
/// registries.yaml and CAs for `k3s` / `rke2`.
/// Files mirrorplan wrote before and that are not in this list should be
/// deleted (see [`crate::diff_files`]); that is how a style switch also
/// cleans the hosts directory.
pub fn render_node_files(cfg: &NodeMirrorConfig) -> Result<Vec<crate::diff::DesiredFile>> {
    match cfg.config_style {
        ConfigStyle::Hosts => crate::hosts::render_hosts(cfg),
        ConfigStyle::Legacy => render_legacy_files(cfg),
        ConfigStyle::RegistriesConf => crate::registries_conf::render_registries_conf(cfg),
        ConfigStyle::K3s | ConfigStyle::Rke2 => crate::k3s::render_k3s_registries(cfg),
    }
}

/// Apply `cfg` to config.toml in its own style: [`ensure_config_path`] for
/// hosts, [`apply_legacy`] for legacy; the text unchanged for the styles
/// that do not configure containerd directly
/// ([`ConfigStyle::edits_containerd_config`]).
///
/// The result is a fixed point: editing it again changes nothing, so a node
/// whose file mirrorplan wrote plans no change. (A file whose tables sit in
/// an unusual order, e.g. a `registry.configs` header among other tables,
/// is laid out differently by a second pass, which moves a table it
/// re-creates; the edit runs again on its own output until the text stays
/// the same, three passes at most. Found by fuzzing: see
/// `fuzz/corpus/containerd/legacy-table-order`.)
pub fn edit_config(
    existing: &str,
    containerd: ContainerdVersion,
    cfg: &NodeMirrorConfig,
) -> Result<ConfigEdit> {
    let once = |text: &str| match cfg.config_style {
        ConfigStyle::Hosts => {
            cfg.validate()?;
            ensure_config_path_with_auth(
                text,
                containerd,
                cfg.config_dir(),
                &crate::hosts::config_auths(cfg),
            )
        }
        ConfigStyle::Legacy => apply_legacy(text, containerd, cfg),
        // these styles never touch config.toml
        ConfigStyle::RegistriesConf | ConfigStyle::K3s | ConfigStyle::Rke2 => {
            cfg.validate()?;
            Ok(ConfigEdit {
                text: text.to_owned(),
                changed: false,
                notes: Vec::new(),
                contains_credentials: false,
            })
        }
    };
    let mut edit = once(existing)?;
    for _ in 0..2 {
        let again = once(&edit.text)?;
        if again.text == edit.text {
            break;
        }
        edit.text = again.text;
        edit.contains_credentials |= again.contains_credentials;
    }
    edit.changed = edit.text != existing;
    Ok(edit)
}

/// Read the registry facts of a config.toml (both plugin layouts).
pub fn inspect_config(text: &str) -> Result<ConfigFacts> {
    let doc = parse(text)?;
    let mut facts = ConfigFacts {
        version: doc.get("version").and_then(Item::as_integer),
        ..ConfigFacts::default()
    };
    for plugin in [CRI_PLUGIN_V2, CRI_IMAGES_PLUGIN_V3] {
        let Some(registry) = table_path(doc.as_table(), &["plugins", plugin, "registry"]) else {
            continue;
        };
        let config_path = registry.get("config_path").and_then(Item::as_str);
        let mut has_mirrors = false;
        if let Some(mirrors) = registry.get("mirrors").and_then(Item::as_table_like) {
            for (host, entry) in mirrors.iter() {
                has_mirrors = true;
                let endpoints = entry
                    .as_table_like()
                    .and_then(|e| e.get("endpoint"))
                    .and_then(Item::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                facts.legacy_mirrors.insert(host.to_owned(), endpoints);
            }
        }
        if let Some(configs) = registry.get("configs").and_then(Item::as_table_like) {
            for (host, entry) in configs.iter() {
                let Some(entry) = entry.as_table_like() else {
                    continue;
                };
                let tls = entry.get("tls");
                let auth = entry.get("auth");
                facts.legacy_configs.insert(
                    host.to_owned(),
                    LegacyConfigFacts {
                        ca_file: tls
                            .and_then(Item::as_table_like)
                            .and_then(|t| t.get("ca_file"))
                            .and_then(Item::as_str)
                            .map(str::to_owned),
                        has_auth: auth
                            .and_then(Item::as_table_like)
                            .is_some_and(|a| !a.is_empty()),
                        managed: tls.is_some_and(is_managed) || auth.is_some_and(is_managed),
                    },
                );
            }
        }
        if let Some(p) = config_path {
            facts.config_path = Some(p.to_owned());
            facts.conflict |= has_mirrors;
        }
    }
    Ok(facts)
}
