//! The `cluster_config` provider: `cluster_config.NAME` puts a cluster's
//! mirrors into its bare-metal cluster configuration file (the source
//! document's way: `registryMirrors` and `gcrKeyPath` of the settings
//! document) and runs the cluster's update command (`bmctl update cluster
//! ...`), which makes the cluster software write the nodes' containerd
//! configuration. The `cluster.NAME` check then proves it on a canary node.
//!
//! Refresh reads the file on the workstation; the plan shows the two keys'
//! text as a diff. Apply keeps `FILE.backup`, writes the file atomically,
//! runs the command once (`sh -c`, in the configuration directory, output
//! captured) and, when it fails, puts the file back byte for byte.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use mirrorplan_engine::{
    ApplyContext, Attrs, DesiredInstance, NewInstanceState, Observed, PlannedChange, PriorInstance,
    Provider, ProviderError,
};
use serde_json::Value;

use crate::cluster_file::{edit_cluster_file_blocks, GCR_KEY_PATH_KEY, REGISTRY_MIRRORS_KEY};

/// The provider kind.
pub const KIND: &str = "cluster_config";
/// Attribute: the cluster configuration file (absolute path on the workstation).
pub const FILE: &str = "file";
/// Attribute: the directory `update_command` runs in.
pub const DIR: &str = "dir";
/// Attribute: the command run after the file changed.
pub const UPDATE_COMMAND: &str = "update_command";
/// Attribute: the content digest of each CA file the YAML names
/// (`caCertPath` → `blake3:...`): a CA rotated in place changes the
/// digest, not the YAML, and still has to reach the nodes.
pub const CA_CERTS: &str = "ca_certs";
/// Attribute (sensitive): what the pull credentials and gcr.io key files
/// the YAML names hold; new credentials in the same files are rolled out too.
pub const CREDENTIALS: &str = "credentials";

/// What one cluster's configuration file should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfigSpec {
    /// The file.
    pub file: PathBuf,
    /// Where `update_command` runs (the configuration directory).
    pub dir: PathBuf,
    /// `registryMirrors:` as [`crate::render_registry_mirrors`] renders it (`\n` endings).
    pub registry_mirrors: String,
    /// `gcrKeyPath: ...` as [`crate::render_gcr_key_path`] renders it, if the cluster has a key.
    pub gcr_key_path: Option<String>,
    /// The update command.
    pub update_command: String,
    /// Whether the command is sensitive (never shown, stored as a digest).
    pub update_command_sensitive: bool,
    /// `caCertPath` → the content digest of that file ([`crate::digest`]).
    pub ca_certs: std::collections::BTreeMap<String, String>,
    /// What the credential files the YAML names hold (sensitive: only a
    /// salted digest is stored), if it names any.
    pub credentials: Option<String>,
}

impl ClusterConfigSpec {
    /// The desired instance at `address`.
    pub fn to_desired(&self, address: mirrorplan_engine::Address) -> DesiredInstance {
        let mut attrs = Attrs::new()
            .with(FILE, self.file.display().to_string())
            .with(DIR, self.dir.display().to_string())
            .with(REGISTRY_MIRRORS_KEY, self.registry_mirrors.clone());
        if let Some(g) = &self.gcr_key_path {
            attrs.insert(GCR_KEY_PATH_KEY, g.clone());
        }
        if !self.ca_certs.is_empty() {
            attrs.insert(CA_CERTS, serde_json::json!(self.ca_certs));
        }
        if let Some(c) = &self.credentials {
            attrs.insert_sensitive(CREDENTIALS, c.clone());
        }
        if self.update_command_sensitive {
            attrs.insert_sensitive(UPDATE_COMMAND, self.update_command.clone());
        } else {
            attrs.insert(UPDATE_COMMAND, self.update_command.clone());
        }
        DesiredInstance::new(address, KIND, attrs)
    }

    /// Reads a spec back from an instance's attributes (in clear).
    pub fn from_attrs(attrs: &Attrs) -> Result<ClusterConfigSpec, ProviderError> {
        let s = |k: &str| attrs.get(k).and_then(Value::as_str).map(str::to_string);
        let need = |k: &str| {
            s(k).ok_or_else(|| {
                ProviderError::invalid_input(format!("cluster_config instance without `{k}`"))
            })
        };
        Ok(ClusterConfigSpec {
            file: PathBuf::from(need(FILE)?),
            dir: PathBuf::from(need(DIR)?),
            registry_mirrors: need(REGISTRY_MIRRORS_KEY)?,
            gcr_key_path: s(GCR_KEY_PATH_KEY),
            update_command: s(UPDATE_COMMAND).unwrap_or_default(),
            update_command_sensitive: attrs.is_sensitive(UPDATE_COMMAND),
            ca_certs: attrs
                .get(CA_CERTS)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            credentials: s(CREDENTIALS),
        })
    }

    /// Reads the file back: for each key whose text differs from what this
    /// spec says, `(key, the file's text, the wanted text)`, `\n` line
    /// endings. Empty: the file says it. `verify` uses it.
    pub fn read_back(&self) -> Result<Vec<(&'static str, String, String)>, ProviderError> {
        let text = read_text(&self.file)?;
        Ok(edit(&text, self)?
            .changes
            .into_iter()
            .map(|c| {
                (
                    c.key,
                    c.old.replace("\r\n", "\n"),
                    c.new.replace("\r\n", "\n"),
                )
            })
            .collect())
    }

    fn shown_command(&self) -> &str {
        if self.update_command_sensitive {
            "(sensitive value)"
        } else {
            &self.update_command
        }
    }
}

fn read_text(file: &Path) -> Result<String, ProviderError> {
    match std::fs::read(file) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
            ProviderError::invalid_input(format!(
                "{}: not UTF-8 text: not a cluster configuration file",
                file.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ProviderError::invalid_input(
            format!(
                "{}: the cluster configuration file does not exist",
                file.display()
            ),
        )
        .with_help(
            "write it first (`bmctl create config -c CLUSTER_NAME`), or fix `cluster_config.file`",
        )),
        Err(e) => Err(ProviderError::failed(format!(
            "{}: cannot read: {e}",
            file.display()
        ))),
    }
}

/// The new text of `file` for `spec`, with the keys' current text.
fn edit(text: &str, spec: &ClusterConfigSpec) -> Result<crate::ClusterFileEdit, ProviderError> {
    edit_cluster_file_blocks(text, &spec.registry_mirrors, spec.gcr_key_path.as_deref()).map_err(
        |e| {
            let at = if e.line > 0 {
                format!("{}:{}", spec.file.display(), e.line)
            } else {
                spec.file.display().to_string()
            };
            ProviderError::invalid_input(format!("{at}: {}", e.message)).with_help(
                "mirrorplan edits `registryMirrors` and `gcrKeyPath` in the first (settings) \
                 document of a block-style YAML cluster configuration file; fix the file",
            )
        },
    )
}

/// Writes `bytes` to `file` atomically (temporary file beside it, fsync,
/// rename, directory fsync), keeping the file's permissions.
fn write_atomic(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".mirrorplan-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(file) {
        std::fs::set_permissions(tmp.path(), meta.permissions())?;
    }
    tmp.persist(file).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The last `n` lines of a command's output, trimmed.
fn tail(output: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `KEY in FILE:` and a unified diff of the key's text.
fn yaml_diff(file: &Path, key: &str, before: &str, after: &str) -> String {
    let diff = similar::TextDiff::from_lines(before, after);
    let unified = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("{} (now)", file.display()), "planned")
        .to_string();
    // continuation lines aligned under the plan's `# ` detail marker
    let body: Vec<String> = unified
        .trim_end()
        .lines()
        .map(|l| format!("        {l}"))
        .collect();
    format!("{key} in {}:\n{}", file.display(), body.join("\n"))
}

/// Edits cluster configuration files and runs their update command.
#[derive(Debug, Default)]
pub struct ClusterConfigProvider;

impl ClusterConfigProvider {
    async fn run_update(&self, spec: &ClusterConfigSpec, ctx: &ApplyContext) -> Result<(), String> {
        ctx.message(format!("running `{}`", spec.shown_command()));
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&spec.update_command)
            .current_dir(&spec.dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot start `sh -c`: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let status = match out.status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        let shown = if spec.update_command_sensitive {
            "(its output is not shown: the command is sensitive)".to_string()
        } else {
            let mut o = tail(&out.stderr, 20);
            if o.is_empty() {
                o = tail(&out.stdout, 20);
            }
            if o.is_empty() {
                "(no output)".to_string()
            } else {
                format!("its output ends with:\n{o}")
            }
        };
        Err(format!("{status}; {shown}"))
    }
}

#[async_trait]
impl Provider for ClusterConfigProvider {
    fn kind(&self) -> &str {
        KIND
    }

    /// The file itself: two instances naming one file are one object.
    fn physical_identity(
        &self,
        attrs: &std::collections::BTreeMap<String, mirrorplan_engine::AttrValue>,
    ) -> Option<String> {
        attrs
            .get(FILE)
            .and_then(Value::as_str)
            .map(|f| format!("file:{f}"))
    }

    async fn read(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
    ) -> Result<Option<Observed>, ProviderError> {
        // a removed block leaves the file as it is: nothing to read
        let Some(d) = desired else {
            return Ok(prior.map(|_| Observed {
                attrs: Attrs::new(),
            }));
        };
        let spec = ClusterConfigSpec::from_attrs(&d.attrs)?;
        let text = read_text(&spec.file)?;
        let e = edit(&text, &spec)?;
        // the keys as the file has them: the desired text where it already says it
        let mut attrs = Attrs::new()
            .with(FILE, spec.file.display().to_string())
            .with(REGISTRY_MIRRORS_KEY, spec.registry_mirrors.clone());
        if let Some(g) = &spec.gcr_key_path {
            attrs.insert(GCR_KEY_PATH_KEY, g.clone());
        }
        for c in &e.changes {
            attrs.insert(c.key, c.old.replace("\r\n", "\n"));
        }
        Ok(Some(Observed { attrs }))
    }

    fn plan(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
        observed: Option<&Observed>,
    ) -> Result<PlannedChange, ProviderError> {
        // what the file says now counts as "before", whatever the state says
        let refreshed = prior.map(|p| {
            let mut p = p.clone();
            if let Some(o) = observed {
                for name in o.attrs.names() {
                    if let Some(v) = o.attrs.get(name) {
                        p.attrs.insert(name.to_string(), v.clone());
                    }
                }
            }
            p
        });
        let mut change = mirrorplan_engine::diff(&[], desired, refreshed.as_ref())?;
        match desired {
            None => change.details.push(
                "the cluster configuration file is left as it is (the cluster keeps its mirrors)"
                    .into(),
            ),
            Some(d) => {
                let spec = ClusterConfigSpec::from_attrs(&d.attrs)?;
                // the file's keys as they are against the plan, the file named
                // (drift, too: `prior` is the refreshed one)
                if let Some(o) = observed {
                    for key in [REGISTRY_MIRRORS_KEY, GCR_KEY_PATH_KEY] {
                        let (Some(now), Some(want)) = (
                            o.attrs.get(key).and_then(Value::as_str),
                            d.attrs.get(key).and_then(Value::as_str),
                        ) else {
                            continue;
                        };
                        if now != want {
                            change.details.push(yaml_diff(&spec.file, key, now, want));
                        }
                    }
                }
                if let Some(p) = prior {
                    let recorded = p.attrs.get(CA_CERTS).and_then(Value::as_object);
                    for (path, digest) in &spec.ca_certs {
                        let was = recorded.and_then(|r| r.get(path)).and_then(Value::as_str);
                        if was.is_some_and(|w| w != digest) {
                            change.details.push(format!(
                                "the CA certificate {path} (caCertPath in {}) has new content: {} (was {})",
                                spec.file.display(),
                                digest,
                                was.unwrap_or_default()
                            ));
                        }
                    }
                }
                if change.action.needs_provider() {
                    change.details.push(format!(
                        "{} is written (its previous content kept as {}.backup), then `{}` runs in {}; if it fails the file is put back",
                        spec.file.display(),
                        spec.file.display(),
                        spec.shown_command(),
                        spec.dir.display()
                    ));
                }
            }
        }
        Ok(change)
    }

    async fn apply(
        &self,
        change: &PlannedChange,
        ctx: &ApplyContext,
    ) -> Result<Option<NewInstanceState>, ProviderError> {
        let Some(after) = &change.after else {
            return Ok(None);
        };
        let spec = ClusterConfigSpec::from_attrs(after)?;
        let file = &spec.file;
        let original = read_text(file)?;
        let e = edit(&original, &spec)?;
        let changed = e.text != original;
        if changed {
            let backup = PathBuf::from(format!("{}.backup", file.display()));
            write_atomic(&backup, original.as_bytes()).map_err(|err| {
                ProviderError::failed(format!("{}: cannot write: {err}", backup.display()))
            })?;
            write_atomic(file, e.text.as_bytes()).map_err(|err| {
                ProviderError::failed(format!("{}: cannot write: {err}", file.display()))
            })?;
            ctx.message(format!(
                "{} written ({} kept)",
                file.display(),
                backup.display()
            ));
        }
        if let Err(why) = self.run_update(&spec, ctx).await {
            let restored = if changed {
                match write_atomic(file, original.as_bytes()) {
                    Ok(()) => format!("{} was restored as it was", file.display()),
                    Err(err) => format!(
                        "{} could NOT be restored ({err}): its previous content is in {}.backup",
                        file.display(),
                        file.display()
                    ),
                }
            } else {
                format!("{} was not changed", file.display())
            };
            return Err(ProviderError::failed(format!(
                "update_command `{}` {why}\n{restored}",
                spec.shown_command()
            ))
            .with_help("fix the cause, then apply again: the file is written again and the command runs again"));
        }
        Ok(Some(NewInstanceState {
            attrs: after.clone(),
            digests: std::collections::BTreeMap::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use mirrorplan_engine::{Action, Address, Interrupt, NoHooks};
    use std::sync::Arc;

    const FILE_TEXT: &str = "# settings\r\ngcrKeyPath: /k.json # key\r\n---\r\nkind: Cluster\r\n";

    fn spec(dir: &Path, command: &str, sensitive: bool) -> ClusterConfigSpec {
        ClusterConfigSpec {
            file: dir.join("c.yaml"),
            dir: dir.to_path_buf(),
            registry_mirrors: crate::render_registry_mirrors(
                &[crate::ClusterFileMirror {
                    endpoint: "https://m:5000".into(),
                    ca_cert_path: None,
                    pull_credential_config_path: None,
                    hosts: vec![],
                }],
                "\n",
            ),
            gcr_key_path: None,
            update_command: command.into(),
            update_command_sensitive: sensitive,
            ca_certs: Default::default(),
            credentials: None,
        }
    }

    fn apply(spec: &ClusterConfigSpec) -> Result<Option<NewInstanceState>, ProviderError> {
        let address = Address::new("cluster_config", "c").expect("address");
        let d = spec.to_desired(address.clone());
        let change = PlannedChange {
            address: address.clone(),
            provider: KIND.into(),
            action: Action::Create,
            before: None,
            after: Some(d.attrs),
            replace_because: vec![],
            details: vec![],
            handover: None,
            replace_requested: false,
        };
        let ctx = ApplyContext::new(address, Arc::new(NoHooks), Interrupt::new());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(ClusterConfigProvider.apply(&change, &ctx))
    }

    #[test]
    fn apply_writes_keeps_a_backup_and_runs_the_command_in_the_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("c.yaml"), FILE_TEXT).expect("write");
        let s = spec(dir.path(), "pwd > ran.txt", false);
        apply(&s).expect("applied");
        let text = std::fs::read_to_string(dir.path().join("c.yaml")).expect("read");
        assert_eq!(
            text,
            "# settings\r\ngcrKeyPath: /k.json # key\r\nregistryMirrors:\r\n  - endpoint: https://m:5000\r\n---\r\nkind: Cluster\r\n"
        );
        let backup = std::fs::read_to_string(dir.path().join("c.yaml.backup")).expect("backup");
        assert_eq!(backup, FILE_TEXT);
        let ran = std::fs::read_to_string(dir.path().join("ran.txt")).expect("ran");
        assert_eq!(
            Path::new(ran.trim()).canonicalize().expect("canonical"),
            dir.path().canonicalize().expect("canonical")
        );
    }

    #[test]
    fn a_failing_command_restores_the_file_and_a_sensitive_one_shows_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("c.yaml"), FILE_TEXT).expect("write");
        let e = apply(&spec(dir.path(), "echo oops-token-1 >&2; exit 4", false))
            .expect_err("the command fails");
        assert!(e.message.contains("exited with status 4"), "{e}");
        assert!(e.message.contains("oops-token-1"), "{e}");
        assert!(e.message.contains("was restored as it was"), "{e}");
        let text = std::fs::read(dir.path().join("c.yaml")).expect("read");
        assert_eq!(text, FILE_TEXT.as_bytes());
        let e = apply(&spec(
            dir.path(),
            "echo s3cret-token >&2; exit 5 # s3cret",
            true,
        ))
        .expect_err("the command fails");
        assert!(!e.message.contains("s3cret"), "{e}");
        assert!(e.message.contains("(sensitive value)"), "{e}");
        assert!(e.message.contains("exited with status 5"), "{e}");
        let text = std::fs::read(dir.path().join("c.yaml")).expect("read");
        assert_eq!(text, FILE_TEXT.as_bytes());
    }

    #[test]
    fn a_missing_or_bad_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = apply(&spec(dir.path(), "true", false)).expect_err("no file");
        assert!(
            e.message
                .contains("c.yaml: the cluster configuration file does not exist"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("c.yaml"),
            "a: 1\n  b\tc\n\tx: 1\n---\nkind: Cluster\n",
        )
        .expect("write");
        let e = apply(&spec(dir.path(), "true", false)).expect_err("bad file");
        assert!(e.message.contains("c.yaml:3: a tab in indentation"), "{e}");
        assert!(!dir.path().join("c.yaml.backup").exists());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail(b"", 2), "");
    }

    #[test]
    fn atomic_write_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "old").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomic(&f, b"new").expect("atomic write");
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "new");
        let mode = std::fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
