//! Desired node files and the pure comparison with what a node holds:
//! blake3 digests, change kind and a unified diff with secrets hidden.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use similar::TextDiff;

use crate::secret::REDACTED;

/// A file mirrorplan wants on a node.
#[derive(Clone, PartialEq, Eq)]
pub struct DesiredFile {
    /// Absolute path on the node.
    pub path: String,
    /// Full contents.
    pub contents: Vec<u8>,
    /// Unix permission bits (0o600 for files with credentials).
    pub mode: u32,
    /// The contents hold credentials: never show them.
    pub sensitive: bool,
}

impl DesiredFile {
    /// `blake3:HEX` digest of the contents.
    pub fn digest(&self) -> String {
        digest(&self.contents)
    }
}

impl fmt::Debug for DesiredFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DesiredFile");
        d.field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("sensitive", &self.sensitive);
        if self.sensitive {
            d.field("contents", &REDACTED);
        } else {
            d.field("contents", &String::from_utf8_lossy(&self.contents));
        }
        d.finish()
    }
}

/// What happens to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The file does not exist yet.
    Create,
    /// The file exists with other contents.
    Update,
    /// The file exists and is no longer wanted.
    Delete,
    /// The file already has the desired contents.
    NoOp,
}

/// The planned change of one node file.
#[derive(Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Absolute node path.
    pub path: String,
    /// Create, update, delete or nothing.
    pub kind: ChangeKind,
    /// `blake3:HEX` of the current contents, if the file exists.
    pub before_digest: Option<String>,
    /// `blake3:HEX` of the desired contents, unless deleted.
    pub after_digest: Option<String>,
    /// Desired mode, unless deleted.
    pub mode: Option<u32>,
    /// Old or new contents hold credentials.
    pub sensitive: bool,
    /// Unified diff, or `(sensitive value)` for sensitive files; empty for no-ops.
    pub diff: String,
}

impl fmt::Debug for FileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileChange")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("before_digest", &self.before_digest)
            .field("after_digest", &self.after_digest)
            .field("mode", &self.mode.map(|m| format!("{m:o}")))
            .field("sensitive", &self.sensitive)
            .field("diff", &self.diff)
            .finish()
    }
}

/// `blake3:HEX` digest of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

/// Conservative guess whether existing contents hold credentials, so that a
/// diff never prints an old password when the new file has none.
pub fn looks_sensitive(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    [
        "authorization",
        "password",
        "auth",
        "token",
        "_json_key",
        "private key",
        "secret",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Compare what a node holds (`current`: path → contents, `None` when the
/// file is absent) with what is desired. Paths in `current` that are not
/// desired and exist are deleted; output is sorted by path.
pub fn diff_files(
    current: &BTreeMap<String, Option<Vec<u8>>>,
    desired: &[DesiredFile],
) -> Vec<FileChange> {
    let mut changes = Vec::new();
    let mut wanted = BTreeSet::new();
    for file in desired {
        wanted.insert(file.path.as_str());
        let before = current.get(&file.path).and_then(|c| c.as_deref());
        let kind = match before {
            None => ChangeKind::Create,
            Some(old) if old == file.contents.as_slice() => ChangeKind::NoOp,
            Some(_) => ChangeKind::Update,
        };
        let sensitive = file.sensitive || before.is_some_and(looks_sensitive);
        let diff = match kind {
            ChangeKind::NoOp => String::new(),
            _ if sensitive => REDACTED.to_owned(),
            _ => unified(&file.path, before, Some(&file.contents)),
        };
        changes.push(FileChange {
            path: file.path.clone(),
            kind,
            before_digest: before.map(digest),
            after_digest: Some(file.digest()),
            mode: Some(file.mode),
            sensitive,
            diff,
        });
    }
    for (path, contents) in current {
        if wanted.contains(path.as_str()) {
            continue;
        }
        let Some(old) = contents else { continue };
        let sensitive = looks_sensitive(old);
        changes.push(FileChange {
            path: path.clone(),
            kind: ChangeKind::Delete,
            before_digest: Some(digest(old)),
            after_digest: None,
            mode: None,
            sensitive,
            diff: if sensitive {
                REDACTED.to_owned()
            } else {
                unified(path, Some(old), None)
            },
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

fn unified(path: &str, before: Option<&[u8]>, after: Option<&[u8]>) -> String {
    let as_text = |b: Option<&[u8]>| match b {
        None => Some(String::new()),
        Some(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
    };
    let (Some(old), Some(new)) = (as_text(before), as_text(after)) else {
        return format!(
            "(binary contents: {} bytes -> {} bytes)",
            before.map_or(0, <[u8]>::len),
            after.map_or(0, <[u8]>::len)
        );
    };
    let old_name = if before.is_some() {
        format!("a{path}")
    } else {
        "/dev/null".to_owned()
    };
    let new_name = if after.is_some() {
        format!("b{path}")
    } else {
        "/dev/null".to_owned()
    };
    TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str, sensitive: bool) -> DesiredFile {
        DesiredFile {
            path: path.into(),
            contents: contents.as_bytes().to_vec(),
            mode: if sensitive { 0o600 } else { 0o644 },
            sensitive,
        }
    }

    #[test]
    fn kinds_digests_and_diffs() {
        let current = BTreeMap::from([
            ("/a".to_owned(), Some(b"same\n".to_vec())),
            ("/b".to_owned(), Some(b"one\ntwo\n".to_vec())),
            ("/gone".to_owned(), Some(b"old\n".to_vec())),
            ("/absent".to_owned(), None),
        ]);
        let desired = [
            file("/a", "same\n", false),
            file("/b", "one\nthree\n", false),
            file("/c", "new\n", false),
        ];
        let changes = diff_files(&current, &desired);
        let kinds: Vec<_> = changes.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("/a", ChangeKind::NoOp),
                ("/b", ChangeKind::Update),
                ("/c", ChangeKind::Create),
                ("/gone", ChangeKind::Delete),
            ]
        );
        assert_eq!(changes[0].diff, "");
        assert_eq!(changes[0].before_digest, changes[0].after_digest);
        assert_eq!(
            changes[1].diff,
            "--- a/b\n+++ b/b\n@@ -1,2 +1,2 @@\n one\n-two\n+three\n"
        );
        assert_eq!(changes[2].before_digest, None);
        assert_eq!(changes[2].after_digest, Some(digest(b"new\n")));
        assert!(changes[2].diff.starts_with("--- /dev/null\n+++ b/c\n"));
        assert_eq!(changes[3].after_digest, None);
        assert!(changes[3].diff.contains("-old"));
    }

    #[test]
    fn sensitive_contents_never_show() {
        let current = BTreeMap::from([
            (
                "/h".to_owned(),
                Some(b"Authorization = [\"Basic b2xkOnB3\"]\n".to_vec()),
            ),
            ("/del".to_owned(), Some(b"password = \"pw\"\n".to_vec())),
        ]);
        // new file has no credentials, old one had: still hidden
        let desired = [
            file("/h", "server = \"x\"\n", false),
            file("/s", "Basic c2VjcmV0", true),
        ];
        let changes = diff_files(&current, &desired);
        for c in &changes {
            assert!(c.sensitive, "{c:?}");
            assert_eq!(c.diff, REDACTED);
            let shown = format!("{c:?}");
            assert!(!shown.contains("b2xk") && !shown.contains("pw\"") && !shown.contains("c2Vj"));
        }
        let debug = format!("{:?}", desired[1]);
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
    }
}
