//! The bare-metal cluster configuration file (the source document's
//! "archivo de configuración del clúster", written by `bmctl create config`):
//! a multi-document YAML whose first document holds the workstation settings
//! (`gcrKeyPath`, `sshPrivateKeyPath`, `registryMirrors`, ...), followed by
//! `Namespace`, `Cluster`, `NodePool` ... documents.
//!
//! [`edit_cluster_file`] replaces the text of two top-level keys of the
//! first document, `registryMirrors` and `gcrKeyPath`, and nothing else:
//! every other byte (comments, blank lines, key order, the other documents,
//! line endings) is kept. It is a pure function.
//!
//! Why by hand: the only lossless YAML editor for Rust (`yaml-edit`, 0.x)
//! is young, its API changes between minor versions and it lists known
//! edit-invariant failures; the edit here needs only the span of two
//! top-level keys, whose boundaries are plain in block YAML (a key at column
//! 0 and the lines indented under it).

use std::fmt;

/// One entry of `registryMirrors`, as the cluster software reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFileMirror {
    /// `SCHEME://HOST:PORT[/v2/NAMESPACE]`.
    pub endpoint: String,
    /// Path of the mirror's CA file on the admin workstation.
    pub ca_cert_path: Option<String>,
    /// Path of a Docker config file with the pull credentials, on the workstation.
    pub pull_credential_config_path: Option<String>,
    /// Upstream hosts mirrored besides gcr.io (gcr.io is never listed).
    pub hosts: Vec<String>,
}

/// What the edit changes: one entry per key whose text differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// `registryMirrors` or `gcrKeyPath`.
    pub key: &'static str,
    /// The key's text before (empty when absent).
    pub old: String,
    /// The key's text after.
    pub new: String,
}

/// The result of [`edit_cluster_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFileEdit {
    /// The whole new file.
    pub text: String,
    /// The keys that change (empty: the file already says it).
    pub changes: Vec<KeyChange>,
}

/// A file that is not a cluster configuration file this edit understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFileError {
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ClusterFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for ClusterFileError {}

/// The key holding the mirrors.
pub const REGISTRY_MIRRORS_KEY: &str = "registryMirrors";
/// The key holding the gcr.io service-account key path.
pub const GCR_KEY_PATH_KEY: &str = "gcrKeyPath";

fn err(line: usize, message: impl Into<String>) -> ClusterFileError {
    ClusterFileError {
        line,
        message: message.into(),
    }
}

/// The text of a line without its line ending.
fn content(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

fn is_marker(line: &str, marker: &str) -> bool {
    let c = content(line);
    c == marker || (c.starts_with(marker) && c[marker.len()..].starts_with([' ', '\t']))
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = content(line).trim_start();
    t.is_empty() || t.starts_with('#')
}

/// A top-level key of the first document: its name and its line span.
struct KeySpan {
    name: String,
    /// Index of the key's line.
    start: usize,
    /// One past its last line (trailing blank and column-0 comment lines excluded).
    end: usize,
}

/// The key name of a column-0 `KEY: ...` line, or `None`.
fn key_of(line: &str) -> Option<String> {
    let c = content(line);
    let (name, rest) = if let Some(q) = c.strip_prefix('"') {
        let close = q.find('"')?;
        (q[..close].to_string(), &q[close + 1..])
    } else if let Some(q) = c.strip_prefix('\'') {
        let close = q.find('\'')?;
        (q[..close].to_string(), &q[close + 1..])
    } else {
        let colon = c.find(':')?;
        let name = &c[..colon];
        if name.is_empty()
            || name.contains(" #")
            || name.starts_with(['-', '[', '{', '&', '*', '!', '|', '>', '%', '@', '`', '?'])
        {
            return None;
        }
        (name.trim_end().to_string(), &c[colon..])
    };
    let after = rest.strip_prefix(':')?;
    if after.is_empty() || after.starts_with([' ', '\t']) {
        Some(name)
    } else {
        None
    }
}

/// The value of a one-line `KEY: VALUE` scalar (quotes removed, comment dropped).
fn inline_scalar(line: &str) -> String {
    let c = content(line);
    let Some(colon) = c
        .find(": ")
        .or_else(|| c.strip_suffix(':').map(|s| s.len()))
    else {
        return String::new();
    };
    let v = c[colon + 1..].trim();
    if let Some(q) = v.strip_prefix('"') {
        return q.split('"').next().unwrap_or("").to_string();
    }
    if let Some(q) = v.strip_prefix('\'') {
        return q.split('\'').next().unwrap_or("").to_string();
    }
    match v.find(" #") {
        Some(i) => v[..i].trim_end().to_string(),
        None => v.to_string(),
    }
}

/// A scalar as YAML text: plain when that is unambiguous, else double-quoted.
pub fn yaml_scalar(s: &str) -> String {
    let plain_safe = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':' | '@' | '+' | '~')
        })
        && !s.starts_with(['-', ':', '@', '~'])
        && !s.ends_with(':')
        && !s.contains(": ")
        && s.parse::<f64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain_safe {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `registryMirrors:` block as mirrorplan writes it (the layout of the
/// source document's sample), with `eol` line endings.
pub fn render_registry_mirrors(mirrors: &[ClusterFileMirror], eol: &str) -> String {
    let mut out = format!("{REGISTRY_MIRRORS_KEY}:");
    if mirrors.is_empty() {
        out.push_str(" []");
    }
    out.push_str(eol);
    for m in mirrors {
        out.push_str(&format!("  - endpoint: {}{eol}", yaml_scalar(&m.endpoint)));
        if let Some(p) = &m.ca_cert_path {
            out.push_str(&format!("    caCertPath: {}{eol}", yaml_scalar(p)));
        }
        if let Some(p) = &m.pull_credential_config_path {
            out.push_str(&format!(
                "    pullCredentialConfigPath: {}{eol}",
                yaml_scalar(p)
            ));
        }
        if !m.hosts.is_empty() {
            out.push_str(&format!("    hosts:{eol}"));
            for h in &m.hosts {
                out.push_str(&format!("      - {}{eol}", yaml_scalar(h)));
            }
        }
    }
    out
}

/// The first document's line range and its top-level keys.
struct FirstDoc {
    /// First line of the document's content (after a leading `---`).
    start: usize,
    keys: Vec<KeySpan>,
}

fn scan_first_doc(lines: &[&str]) -> Result<FirstDoc, ClusterFileError> {
    let mut i = 0;
    while i < lines.len() && is_blank_or_comment(lines[i]) && !lines[i].starts_with('%') {
        i += 1;
    }
    while i < lines.len() && content(lines[i]).starts_with('%') {
        i += 1; // directives (%YAML, %TAG)
    }
    while i < lines.len() && is_blank_or_comment(lines[i]) {
        i += 1;
    }
    let start = if i < lines.len() && is_marker(lines[i], "---") {
        if content(lines[i]).len() > 3 && !content(lines[i])[3..].trim().starts_with('#') {
            return Err(err(
                i + 1,
                "the settings document must start on the line after `---`",
            ));
        }
        i + 1
    } else {
        0
    };
    let mut end = start;
    while end < lines.len() && !is_marker(lines[end], "---") && !is_marker(lines[end], "...") {
        end += 1;
    }
    let mut keys: Vec<KeySpan> = Vec::new();
    for (n, line) in lines.iter().enumerate().take(end).skip(start) {
        let c = content(line);
        let indent: String = c.chars().take_while(|ch| ch.is_whitespace()).collect();
        if indent.contains('\t') && indent.len() < c.len() {
            return Err(err(n + 1, "a tab in indentation (YAML allows only spaces)"));
        }
        if is_blank_or_comment(line) || c.starts_with(' ') {
            continue;
        }
        // a column-0 sequence item continues a key whose value is on the next lines
        if c == "-" || c.starts_with("- ") {
            match keys.last() {
                Some(k) if inline_scalar(lines[k.start]).is_empty() => continue,
                _ => {
                    return Err(err(
                        n + 1,
                        "the first document is not a mapping of settings (`key: value` lines)",
                    ))
                }
            }
        }
        let Some(name) = key_of(line) else {
            return Err(err(
                n + 1,
                format!(
                    "expected a top-level `key: value` of the settings document, found `{}`",
                    c.chars().take(60).collect::<String>()
                ),
            ));
        };
        if keys.iter().any(|k| k.name == name) {
            return Err(err(n + 1, format!("key `{name}` appears twice")));
        }
        keys.push(KeySpan {
            name,
            start: n,
            end: n + 1,
        });
    }
    // each key's span: up to the next key, less trailing blank lines and column-0 comments
    for idx in 0..keys.len() {
        let limit = keys.get(idx + 1).map_or(end, |k| k.start);
        let mut e = limit;
        while e > keys[idx].start + 1 {
            let l = lines[e - 1];
            let c = content(l);
            if c.trim().is_empty() || c.starts_with('#') {
                e -= 1;
            } else {
                break;
            }
        }
        keys[idx].end = e;
    }
    if let Some(k) = keys
        .iter()
        .find(|k| k.name == "apiVersion" || k.name == "kind")
    {
        return Err(err(
            k.start + 1,
            "the first document is a Kubernetes object, not the settings document \
             (`gcrKeyPath`, `sshPrivateKeyPath`, ...) that `bmctl create config` writes first",
        ));
    }
    Ok(FirstDoc { start, keys })
}

fn has_cluster_document(lines: &[&str]) -> bool {
    lines.iter().any(|l| {
        let c = content(l);
        c.strip_prefix("kind:")
            .map(|v| {
                let v = v.trim();
                let v = v.split(" #").next().unwrap_or("").trim();
                v.trim_matches(['"', '\'']) == "Cluster"
            })
            .unwrap_or(false)
    })
}

/// The `gcrKeyPath: PATH` line as mirrorplan writes it.
pub fn render_gcr_key_path(path: &str) -> String {
    format!("{GCR_KEY_PATH_KEY}: {}\n", yaml_scalar(path))
}

/// Edits the cluster configuration file `text` so that its settings
/// document says `registryMirrors: mirrors` and, when given,
/// `gcrKeyPath: gcr_key_path` (`None` leaves `gcrKeyPath` as it is). Keys
/// missing are added at the end of the settings document. Everything else
/// is kept byte for byte.
pub fn edit_cluster_file(
    text: &str,
    mirrors: &[ClusterFileMirror],
    gcr_key_path: Option<&str>,
) -> Result<ClusterFileEdit, ClusterFileError> {
    let gcr = gcr_key_path.map(render_gcr_key_path);
    edit_cluster_file_blocks(
        text,
        &render_registry_mirrors(mirrors, "\n"),
        gcr.as_deref(),
    )
}

/// [`edit_cluster_file`] with the keys' text already rendered (`\n` line
/// endings; the file's own line endings are used in the result), as
/// [`render_registry_mirrors`] and [`render_gcr_key_path`] give it.
pub fn edit_cluster_file_blocks(
    text: &str,
    mirrors_block: &str,
    gcr_block: Option<&str>,
) -> Result<ClusterFileEdit, ClusterFileError> {
    if text.contains('\0') {
        return Err(err(0, "the file holds NUL bytes: not YAML"));
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    if !has_cluster_document(&lines) {
        return Err(err(
            0,
            "no `kind: Cluster` document: not a bare-metal cluster configuration file",
        ));
    }
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let with_eol = |b: &str| {
        if eol == "\n" {
            b.to_string()
        } else {
            b.replace("\r\n", "\n").replace('\n', eol)
        }
    };
    let doc = scan_first_doc(&lines)?;

    // (line span to replace, new text, key) for each key to write
    let mut edits: Vec<(usize, usize, String, &'static str)> = Vec::new();
    let new_mirrors = with_eol(mirrors_block);
    match doc.keys.iter().find(|k| k.name == REGISTRY_MIRRORS_KEY) {
        Some(k) => {
            let old: String = lines[k.start..k.end].concat();
            if old != new_mirrors {
                edits.push((k.start, k.end, new_mirrors, REGISTRY_MIRRORS_KEY));
            }
        }
        None => edits.push((usize::MAX, 0, new_mirrors, REGISTRY_MIRRORS_KEY)),
    }
    if let Some(block) = gcr_block {
        let new = with_eol(block);
        let path = inline_scalar(&new);
        match doc.keys.iter().find(|k| k.name == GCR_KEY_PATH_KEY) {
            Some(k) => {
                let same = k.end == k.start + 1 && inline_scalar(lines[k.start]) == path;
                if !same {
                    edits.push((k.start, k.end, new, GCR_KEY_PATH_KEY));
                }
            }
            None => edits.push((usize::MAX, 0, new, GCR_KEY_PATH_KEY)),
        }
    }
    if edits.is_empty() {
        return Ok(ClusterFileEdit {
            text: text.to_string(),
            changes: Vec::new(),
        });
    }
    // where new keys go: after the last key's span, else at the document's start
    let insert_at = doc.keys.last().map_or(doc.start, |k| k.end);
    let mut changes = Vec::new();
    let mut out = String::with_capacity(text.len() + 256);
    let mut i = 0;
    let mut sorted: Vec<_> = edits
        .into_iter()
        .map(|(s, e, new, key)| {
            if s == usize::MAX {
                (insert_at, insert_at, new, key)
            } else {
                (s, e, new, key)
            }
        })
        .collect();
    sorted.sort_by_key(|(s, e, _, _)| (*s, *e));
    for (s, e, new, key) in sorted {
        out.push_str(&lines[i..s].concat());
        // a last line without a newline gets one before an appended key
        if s == e && s > 0 && s == lines.len() && !out.ends_with('\n') && !out.is_empty() {
            out.push_str(eol);
        }
        let old = lines[s..e].concat();
        out.push_str(&new);
        changes.push(KeyChange { key, old, new });
        i = e.max(i).max(s);
    }
    out.push_str(&lines[i..].concat());
    Ok(ClusterFileEdit { text: out, changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "# Sample cluster config with registry mirror:
---
gcrKeyPath: /bmctl/bmctl-workspace/.sa-keys/my-gcp-project-anthos-baremetal-gcr.json
sshPrivateKeyPath: /root/ssh-key/id_rsa
registryMirrors:
  - endpoint: https://172.18.0.20:5000
    caCertPath: /root/ca.crt
    pullCredentialConfigPath: /root/.docker/config.json
    hosts:
      - somehost.io
      - otherhost.io
---
apiVersion: v1
kind: Namespace
metadata:
  name: cluster-admin1
---
apiVersion: baremetal.cluster.gke.io/v1
kind: Cluster
metadata:
  name: admin1
  namespace: cluster-admin1
spec:
  # registryMirrors: here would be wrong, they belong to the first document
  nodeConfig:
    containerRuntime: containerd
";

    fn mirror(endpoint: &str) -> ClusterFileMirror {
        ClusterFileMirror {
            endpoint: endpoint.into(),
            ca_cert_path: Some("/work/ca.crt".into()),
            pull_credential_config_path: Some("/work/docker/config.json".into()),
            hosts: vec!["quay.io".into()],
        }
    }

    /// Asserts that `after` is `before` with exactly the line range
    /// `[from, to)` of `before` replaced by `replacement`.
    fn assert_only_span(before: &str, after: &str, from: usize, to: usize, replacement: &str) {
        let b: Vec<&str> = before.split_inclusive('\n').collect();
        let expected = format!("{}{}{}", b[..from].concat(), replacement, b[to..].concat());
        assert_eq!(after, expected);
    }

    #[test]
    fn replaces_only_the_mirrors_span_of_the_seed_file() {
        let m = [mirror("https://127.0.0.1:5000/v2/test-namespace")];
        let edit = edit_cluster_file(SEED, &m, None).expect("the file is edited");
        let block = "registryMirrors:
  - endpoint: https://127.0.0.1:5000/v2/test-namespace
    caCertPath: /work/ca.crt
    pullCredentialConfigPath: /work/docker/config.json
    hosts:
      - quay.io
";
        assert_only_span(SEED, &edit.text, 4, 11, block);
        assert_eq!(edit.changes.len(), 1);
        assert_eq!(edit.changes[0].key, "registryMirrors");
        assert!(edit.changes[0].old.contains("somehost.io"));
        // idempotent: the edited file needs no change
        let again = edit_cluster_file(&edit.text, &m, None).expect("the file is edited");
        assert!(again.changes.is_empty());
        assert_eq!(again.text, edit.text);
    }

    #[test]
    fn gcr_key_path_is_replaced_in_place_and_left_alone_without_one() {
        let m = [mirror("https://127.0.0.1:5000")];
        let edit =
            edit_cluster_file(SEED, &m, Some("/keys/gcr key.json")).expect("the file is edited");
        let lines: Vec<&str> = edit.text.split_inclusive('\n').collect();
        assert_eq!(lines[2], "gcrKeyPath: \"/keys/gcr key.json\"\n");
        assert_eq!(lines[3], "sshPrivateKeyPath: /root/ssh-key/id_rsa\n");
        assert_eq!(edit.changes.len(), 2);
        let same = edit_cluster_file(
            SEED,
            &m,
            Some("/bmctl/bmctl-workspace/.sa-keys/my-gcp-project-anthos-baremetal-gcr.json"),
        )
        .expect("the file is edited");
        assert_eq!(same.changes.len(), 1, "{:?}", same.changes);
        assert_eq!(same.changes[0].key, "registryMirrors");
    }

    #[test]
    fn missing_keys_are_added_after_the_last_setting_and_comments_stay() {
        let src = "---
# workstation settings
gcrKeyPath: /old.json # the key
sshPrivateKeyPath: /root/id_rsa

# the cluster follows
---
apiVersion: baremetal.cluster.gke.io/v1
kind: Cluster
metadata:
  name: u1
";
        let m = [ClusterFileMirror {
            endpoint: "http://127.0.0.1:5000".into(),
            ca_cert_path: None,
            pull_credential_config_path: None,
            hosts: vec![],
        }];
        let edit = edit_cluster_file(src, &m, None).expect("the file is edited");
        assert_only_span(
            src,
            &edit.text,
            4,
            4,
            "registryMirrors:\n  - endpoint: http://127.0.0.1:5000\n",
        );
        // the key's trailing comment is kept when the value is unchanged
        let e2 = edit_cluster_file(&edit.text, &m, Some("/old.json")).expect("the file is edited");
        assert!(e2.changes.is_empty());
    }

    #[test]
    fn column_zero_sequence_items_and_indented_comments_belong_to_the_key() {
        let src = "gcrKeyPath: /k.json
registryMirrors:
- endpoint: https://old:5000
  # old mirror
  hosts: [a.io]
# trailing note about ssh
sshPrivateKeyPath: /root/id
---
kind: Cluster
";
        let m = [mirror("https://new:5000")];
        let edit = edit_cluster_file(src, &m, None).expect("the file is edited");
        assert_only_span(src, &edit.text, 1, 5, &render_registry_mirrors(&m, "\n"));
    }

    #[test]
    fn crlf_files_keep_crlf() {
        let src = "gcrKeyPath: /k.json\r\nregistryMirrors: []\r\n---\r\nkind: Cluster\r\n";
        let m = [mirror("https://m:5000")];
        let edit = edit_cluster_file(src, &m, None).expect("the file is edited");
        assert!(edit.text.starts_with(
            "gcrKeyPath: /k.json\r\nregistryMirrors:\r\n  - endpoint: https://m:5000\r\n"
        ));
        assert!(edit.text.ends_with("---\r\nkind: Cluster\r\n"));
        assert!(!edit.text.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn flow_style_mirrors_on_one_line_are_replaced() {
        let src = "registryMirrors: [{endpoint: \"https://a:1\"}]\nsshPrivateKeyPath: /x\n---\nkind: Cluster\n";
        let m = [mirror("https://b:2")];
        let edit = edit_cluster_file(src, &m, None).expect("the file is edited");
        assert_only_span(src, &edit.text, 0, 1, &render_registry_mirrors(&m, "\n"));
    }

    #[test]
    fn bad_files_are_errors_with_their_line() {
        let m = [mirror("https://b:2")];
        let e = edit_cluster_file("a: 1\n", &m, None).expect_err("the file is refused");
        assert_eq!(e.line, 0);
        assert!(e.message.contains("kind: Cluster"), "{e}");
        let e = edit_cluster_file("a: 1\n\tb: 2\n---\nkind: Cluster\n", &m, None)
            .expect_err("the file is refused");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("tab"));
        let e = edit_cluster_file("a: 1\nnot a key\n---\nkind: Cluster\n", &m, None)
            .expect_err("the file is refused");
        assert_eq!(e.line, 2, "{e}");
        let e = edit_cluster_file("- a\n---\nkind: Cluster\n", &m, None)
            .expect_err("the file is refused");
        assert_eq!(e.line, 1, "{e}");
        let e = edit_cluster_file("a: 1\na: 2\n---\nkind: Cluster\n", &m, None)
            .expect_err("the file is refused");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("twice"));
        let e = edit_cluster_file(
            "apiVersion: baremetal.cluster.gke.io/v1\nkind: Cluster\n",
            &m,
            None,
        )
        .expect_err("the file is refused");
        assert!(e.message.contains("settings document"), "{e}");
        assert_eq!(e.to_string(), format!("line 1: {}", e.message));
    }

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(yaml_scalar("/root/ca.crt"), "/root/ca.crt");
        assert_eq!(yaml_scalar("https://h:5000/v2/ns"), "https://h:5000/v2/ns");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar("123"), "\"123\"");
        assert_eq!(yaml_scalar("/a b#c"), "\"/a b#c\"");
        assert_eq!(yaml_scalar("a\"b"), "\"a\\\"b\"");
        assert_eq!(yaml_scalar(""), "\"\"");
    }
}
