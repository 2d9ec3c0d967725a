//! Local OCI image layout store: the target of `oci:PATH` registries (the
//! quickstart default).
//!
//! Layout: `oci-layout`, `index.json` (one entry per tag, annotated
//! `org.opencontainers.image.ref.name = REPO:TAG` with the full mirror
//! repository path) and `blobs/sha256/<hex>`. Blobs are written to a
//! temporary file in the same directory, verified (sha256 and size) while
//! they stream, synced and renamed into place: a partial blob is never
//! visible. Blobs shared between images are stored once. `index.json` is
//! rewritten atomically (temp file + rename). Updates to `index.json` are
//! serialised within one process; run one writer per store at a time.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::{Digest, VerifyingReader};
use crate::error::StoreError;
use crate::oci::{self, media_types, Descriptor, Parsed, ANNOTATION_REF_NAME};
use crate::reference::{validate_path, validate_tag};

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_VERSION: &str = "1.0.0";

/// A tag of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct TagEntry {
    /// Mirror repository path (`ns/library/nginx`).
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// The manifest it points at.
    pub descriptor: Descriptor,
}

/// Whether [`OciStore::put_blob`] wrote the blob or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written now.
    Written,
    /// Already stored; the reader was not consumed.
    AlreadyPresent,
}

/// Tags to point at their manifests in one `index.json` rewrite
/// ([`OciStore::put_tags`]). A later entry for the same `REPO:TAG` replaces
/// an earlier one.
#[derive(Debug, Default)]
pub struct TagBatch {
    entries: BTreeMap<String, Descriptor>,
}

impl TagBatch {
    /// Adds `repository:tag` → `manifest` (checked names).
    pub fn add(
        &mut self,
        repository: &str,
        tag: &str,
        mut manifest: Descriptor,
    ) -> Result<(), StoreError> {
        check_name(repository, tag)?;
        let key = format!("{repository}:{tag}");
        manifest
            .annotations
            .insert(ANNOTATION_REF_NAME.to_string(), key.clone());
        self.entries.insert(key, manifest);
        Ok(())
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no tag.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// An OCI image layout directory used as a registry.
#[derive(Debug)]
pub struct OciStore {
    root: PathBuf,
    index_lock: Mutex<()>,
}

impl OciStore {
    /// Open an existing layout, or create one in a missing or empty
    /// directory. A non-empty directory without `oci-layout` is refused.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<OciStore, StoreError> {
        let root = path.as_ref().to_path_buf();
        let io_err = |action: &str| {
            let root = root.clone();
            let action = action.to_string();
            move |source| StoreError::Io {
                path: root,
                action,
                source,
            }
        };
        let layout_path = root.join(LAYOUT_FILE);
        if layout_path.exists() {
            let text = fs::read(&layout_path).map_err(io_err("read oci-layout"))?;
            let v: Value = serde_json::from_slice(&text).map_err(|e| StoreError::Layout {
                path: root.clone(),
                reason: format!("oci-layout is not JSON: {e}"),
            })?;
            if v.get("imageLayoutVersion")
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(StoreError::Layout {
                    path: root.clone(),
                    reason: "oci-layout has no imageLayoutVersion".into(),
                });
            }
        } else {
            if root.exists() {
                let mut entries = fs::read_dir(&root).map_err(io_err("list the directory"))?;
                if entries.next().is_some() {
                    return Err(StoreError::Layout {
                        path: root.clone(),
                        reason: "the directory is not empty and has no oci-layout file".into(),
                    });
                }
            }
            Self::create_layout(&root)?;
        }
        fs::create_dir_all(root.join("blobs").join("sha256"))
            .map_err(io_err("create blobs/sha256"))?;
        let store = OciStore {
            root: root.clone(),
            index_lock: Mutex::new(()),
        };
        if !layout_path.exists() {
            let body = serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }).to_string();
            store.write_atomic(LAYOUT_FILE, body.as_bytes())?;
        }
        if !root.join(INDEX_FILE).exists() {
            store.write_index(&IndexFile {
                schema_version: 2,
                media_type: Some(media_types::OCI_INDEX.to_string()),
                manifests: Vec::new(),
                extra: BTreeMap::new(),
            })?;
        } else {
            store.read_index()?;
        }
        Ok(store)
    }

    /// Creates a new, empty layout at `root` (missing or an empty
    /// directory) all at once: built in a sibling directory, then renamed
    /// into place, so a process killed meanwhile leaves `root` as it was
    /// (an empty or missing directory, which the next run accepts), never a
    /// half-made layout without its `oci-layout` file.
    fn create_layout(root: &Path) -> Result<(), StoreError> {
        let io_err = |action: &str, path: &Path| {
            let path = path.to_path_buf();
            let action = action.to_string();
            move |source| StoreError::Io {
                path,
                action,
                source,
            }
        };
        let parent = match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err("create the directory", &parent))?;
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".into());
        let building = tempfile::Builder::new()
            .prefix(&format!(".{name}.creating-"))
            .tempdir_in(&parent)
            .map_err(io_err("create a directory to build the layout in", &parent))?;
        let new = OciStore {
            root: building.path().to_path_buf(),
            index_lock: Mutex::new(()),
        };
        fs::create_dir_all(new.root.join("blobs").join("sha256"))
            .map_err(io_err("create blobs/sha256", &new.root))?;
        let body = serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }).to_string();
        new.write_atomic(LAYOUT_FILE, body.as_bytes())?;
        new.write_index(&IndexFile {
            schema_version: 2,
            media_type: Some(media_types::OCI_INDEX.to_string()),
            manifests: Vec::new(),
            extra: BTreeMap::new(),
        })?;
        // rename(2) replaces an empty directory; the temporary one is gone
        // after it (nothing is left to clean up)
        let built = building.keep();
        fs::rename(&built, root).map_err(|e| {
            let _ = fs::remove_dir_all(&built);
            io_err("move the new layout into place", root)(e)
        })?;
        if let Ok(dir) = fs::File::open(&parent) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a blob (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    fn io_err(&self, action: String) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: self.root.clone(),
            action,
            source,
        }
    }

    /// Whether a blob is stored.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io_err(format!("inspect blob {digest}"))(e)),
        }
    }

    /// Store a blob from a stream, verifying digest and size while it
    /// streams; the blob becomes visible only once complete and verified.
    /// When the blob is already stored the reader is left unread.
    pub fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<PutOutcome, StoreError> {
        if self.has_blob(digest)? {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let dir = self.root.join("blobs").join("sha256");
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(self.io_err(format!("create a temporary file for blob {digest}")))?;
        let mut verifier = VerifyingReader::new(reader, digest, size);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match verifier.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(match verifier.failure() {
                        Some(f) => StoreError::Verification {
                            digest: digest.clone(),
                            failure: f.clone(),
                        },
                        None => StoreError::Source {
                            digest: digest.clone(),
                            source,
                        },
                    })
                }
            };
            tmp.write_all(&buf[..n])
                .map_err(self.io_err(format!("write blob {digest}")))?;
        }
        tmp.as_file()
            .sync_all()
            .map_err(self.io_err(format!("sync blob {digest}")))?;
        tmp.persist(self.blob_path(digest))
            .map_err(|e| self.io_err(format!("move blob {digest} into place"))(e.error))?;
        Ok(PutOutcome::Written)
    }

    /// Store an in-memory blob (manifests); returns its digest.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        self.put_blob(&digest, bytes.len() as u64, &mut &bytes[..])?;
        Ok(digest)
    }

    /// Read a whole blob (for manifests and tests).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        fs::read(self.blob_path(digest)).map_err(self.io_err(format!("read blob {digest}")))
    }

    /// Open a blob for streaming.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        File::open(self.blob_path(digest)).map_err(self.io_err(format!("open blob {digest}")))
    }

    /// Store a manifest blob without tagging it (platform manifests of an
    /// index, digest-only references). Refused unless everything it
    /// references is stored.
    pub fn put_manifest_blob(
        &self,
        repository: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Descriptor, StoreError> {
        let digest = Digest::of(bytes);
        let invalid = |reason: String| StoreError::InvalidManifest {
            repository: repository.to_string(),
            digest: digest.clone(),
            reason,
        };
        let (effective, parsed) = oci::parse_manifest(bytes, Some(media_type)).map_err(invalid)?;
        if effective != media_type {
            return Err(invalid(format!(
                "its mediaType is `{effective}` but it is stored as `{media_type}`"
            )));
        }
        let referenced: Vec<Descriptor> = match parsed {
            Parsed::Image { config, layers } => std::iter::once(config)
                .chain(layers.into_iter().filter(|l| !oci::is_foreign_layer(l)))
                .collect(),
            Parsed::Index { manifests } => manifests,
        };
        for r in &referenced {
            if !self.has_blob(&r.digest)? {
                return Err(StoreError::MissingReference {
                    repository: repository.to_string(),
                    digest: digest.clone(),
                    missing: r.digest.clone(),
                });
            }
        }
        self.put_blob_bytes(bytes)?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// Store a manifest and point `repository:tag` at it. The tag is
    /// written last, after the manifest blob; the manifest is refused
    /// unless all it references is stored.
    pub fn put_manifest(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Descriptor, StoreError> {
        check_name(repository, tag)?;
        let desc = self.put_manifest_blob(repository, media_type, bytes)?;
        let mut tags = TagBatch::default();
        tags.add(repository, tag, desc.clone())?;
        self.put_tags(tags)?;
        Ok(desc)
    }

    /// Point every tag of `batch` at its (already stored) manifest with one
    /// atomic rewrite of `index.json`. Pushing many images this way costs one
    /// index rewrite instead of one per image (the index grows with every
    /// tag, so per-image rewrites are quadratic). The manifests must have
    /// been stored with [`put_manifest_blob`](Self::put_manifest_blob)
    /// before: tags still come last. Each manifest is checked to be stored.
    pub fn put_tags(&self, batch: TagBatch) -> Result<(), StoreError> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        for (key, desc) in &batch.entries {
            if !self.has_blob(&desc.digest)? {
                let repository = key.rsplit_once(':').map_or(key.as_str(), |(r, _)| r);
                return Err(StoreError::MissingReference {
                    repository: repository.to_string(),
                    digest: desc.digest.clone(),
                    missing: desc.digest.clone(),
                });
            }
        }
        let _guard = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        index.manifests.retain(|m| {
            m.annotations
                .get(ANNOTATION_REF_NAME)
                .is_none_or(|name| !batch.entries.contains_key(name))
        });
        index.manifests.extend(batch.entries.into_values());
        self.write_index(&index)
    }

    /// The manifest `repository:tag` points at.
    pub fn resolve(&self, repository: &str, tag: &str) -> Result<Option<Descriptor>, StoreError> {
        let key = format!("{repository}:{tag}");
        let index = self.read_index()?;
        Ok(index
            .manifests
            .into_iter()
            .rev()
            .find(|m| m.annotations.get(ANNOTATION_REF_NAME) == Some(&key)))
    }

    /// Remove a tag; blobs stay. Returns whether the tag existed.
    pub fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, StoreError> {
        let key = format!("{repository}:{tag}");
        let _guard = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|m| m.annotations.get(ANNOTATION_REF_NAME) != Some(&key));
        if index.manifests.len() == before {
            return Ok(false);
        }
        self.write_index(&index)?;
        Ok(true)
    }

    /// Every `REPO:TAG` name of `index.json` with the manifest digest it
    /// points at (what [`resolve`](Self::resolve) would find for each), from
    /// one read of the index.
    pub fn ref_names(&self) -> Result<std::collections::HashMap<String, Digest>, StoreError> {
        let index = self.read_index()?;
        Ok(index
            .manifests
            .into_iter()
            .filter_map(|mut m| {
                let name = m.annotations.remove(ANNOTATION_REF_NAME)?;
                Some((name, m.digest))
            })
            .collect())
    }

    /// Every `REPO:TAG` entry of `index.json`, sorted.
    pub fn list_tags(&self) -> Result<Vec<TagEntry>, StoreError> {
        let index = self.read_index()?;
        let mut out: Vec<TagEntry> = index
            .manifests
            .into_iter()
            .filter_map(|m| {
                let name = m.annotations.get(ANNOTATION_REF_NAME)?;
                let (repo, tag) = name.rsplit_once(':')?;
                if tag.contains('/') || repo.is_empty() {
                    return None;
                }
                Some(TagEntry {
                    repository: repo.to_string(),
                    tag: tag.to_string(),
                    descriptor: m.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
        Ok(out)
    }

    fn read_index(&self) -> Result<IndexFile, StoreError> {
        let bytes =
            fs::read(self.root.join(INDEX_FILE)).map_err(self.io_err("read index.json".into()))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Layout {
            path: self.root.clone(),
            reason: format!("index.json is unreadable: {e}"),
        })
    }

    fn write_index(&self, index: &IndexFile) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|e| StoreError::Layout {
            path: self.root.clone(),
            reason: format!("cannot serialise index.json: {e}"),
        })?;
        self.write_atomic(INDEX_FILE, &bytes)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.root)
            .map_err(self.io_err(format!("create a temporary file for {name}")))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(self.io_err(format!("write {name}")))?;
        tmp.persist(self.root.join(name))
            .map_err(|e| self.io_err(format!("replace {name}"))(e.error))?;
        Ok(())
    }
}

fn check_name(repository: &str, tag: &str) -> Result<(), StoreError> {
    validate_path(repository).map_err(|reason| StoreError::Name {
        name: repository.to_string(),
        reason,
    })?;
    validate_tag(tag).map_err(|reason| StoreError::Name {
        name: tag.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, OciStore) {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let store = OciStore::open_or_create(dir.path().join("oci"));
        let Ok(store) = store else {
            panic!("store: {store:?}")
        };
        (dir, store)
    }

    /// Found by tests/crash.rs: a run killed while it created the store
    /// left `blobs/` without `oci-layout`, which every later run refused.
    /// The layout is now built beside and renamed into place: a new store
    /// is whole (in a missing or an empty directory) and nothing is left
    /// beside it.
    #[test]
    fn a_new_store_appears_whole_and_leaves_nothing_beside_it() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let empty = dir.path().join("empty");
        assert!(fs::create_dir(&empty).is_ok());
        for root in [dir.path().join("missing"), empty] {
            let s = OciStore::open_or_create(&root);
            assert!(s.is_ok(), "{s:?}");
            assert!(root.join(LAYOUT_FILE).is_file());
            assert!(root.join(INDEX_FILE).is_file());
            assert!(root.join("blobs").join("sha256").is_dir());
            let again = OciStore::open_or_create(&root);
            assert!(again.is_ok(), "{again:?}");
        }
        let names: Vec<String> = fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["empty", "missing"], "{names:?}");
        // a half-made layout (no oci-layout) is still refused
        let half = dir.path().join("half");
        assert!(fs::create_dir_all(half.join("blobs")).is_ok());
        assert!(OciStore::open_or_create(&half).is_err());
    }

    #[test]
    fn blobs_are_verified_and_stored_once() {
        let (_d, s) = store();
        let data = b"layer bytes".to_vec();
        let d = Digest::of(&data);
        assert!(matches!(s.has_blob(&d), Ok(false)));
        let bad = s.put_blob(&d, data.len() as u64, &mut &b"layer bytez"[..]);
        assert!(
            matches!(bad, Err(StoreError::Verification { .. })),
            "{bad:?}"
        );
        let short = s.put_blob(&d, data.len() as u64, &mut &b"layer"[..]);
        assert!(
            matches!(short, Err(StoreError::Verification { .. })),
            "{short:?}"
        );
        assert!(matches!(s.has_blob(&d), Ok(false)));
        // No temp files left behind.
        let leftovers = fs::read_dir(s.root().join("blobs/sha256"))
            .map(|r| r.count())
            .unwrap_or(99);
        assert_eq!(leftovers, 0);
        assert!(matches!(
            s.put_blob(&d, data.len() as u64, &mut &data[..]),
            Ok(PutOutcome::Written)
        ));
        assert!(matches!(
            s.put_blob(&d, data.len() as u64, &mut &data[..]),
            Ok(PutOutcome::AlreadyPresent)
        ));
        assert_eq!(s.read_blob(&d).ok(), Some(data));
    }

    #[test]
    fn manifests_need_their_blobs_and_tags_round_trip() {
        let (_d, s) = store();
        let cfg = br#"{"os":"linux","architecture":"amd64"}"#;
        let cfg_d = Digest::of(cfg);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cfg_d}","size":{}}},"layers":[]}}"#,
            media_types::OCI_MANIFEST,
            media_types::OCI_CONFIG,
            cfg.len()
        );
        let refused = s.put_manifest(
            "ns/a/b",
            "1.0",
            media_types::OCI_MANIFEST,
            manifest.as_bytes(),
        );
        assert!(
            matches!(&refused, Err(StoreError::MissingReference { missing, .. }) if missing == &cfg_d),
            "{refused:?}"
        );
        assert!(matches!(s.resolve("ns/a/b", "1.0"), Ok(None)));
        assert!(s.put_blob_bytes(cfg).is_ok());
        let desc = s.put_manifest(
            "ns/a/b",
            "1.0",
            media_types::OCI_MANIFEST,
            manifest.as_bytes(),
        );
        let Ok(desc) = desc else { panic!("{desc:?}") };
        assert_eq!(desc.digest, Digest::of(manifest.as_bytes()));
        assert!(s
            .put_manifest(
                "ns/a/b",
                "latest",
                media_types::OCI_MANIFEST,
                manifest.as_bytes()
            )
            .is_ok());
        assert!(s
            .put_manifest(
                "ns/a/b",
                "1.0",
                media_types::OCI_MANIFEST,
                manifest.as_bytes()
            )
            .is_ok());
        assert!(matches!(
            s.put_manifest("Bad", "1.0", media_types::OCI_MANIFEST, manifest.as_bytes()),
            Err(StoreError::Name { .. })
        ));

        // Reopen: state is on disk.
        let Ok(s) = OciStore::open_or_create(s.root()) else {
            panic!("reopen")
        };
        let tags = s.list_tags().map(|t| {
            t.iter()
                .map(|e| format!("{}:{}", e.repository, e.tag))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            tags.ok(),
            Some(vec!["ns/a/b:1.0".to_string(), "ns/a/b:latest".to_string()])
        );
        assert_eq!(
            s.resolve("ns/a/b", "1.0").ok().flatten().map(|d| d.digest),
            Some(desc.digest.clone())
        );
        assert_eq!(s.read_blob(&desc.digest).ok(), Some(manifest.into_bytes()));
        assert!(matches!(s.delete_tag("ns/a/b", "1.0"), Ok(true)));
        assert!(matches!(s.delete_tag("ns/a/b", "1.0"), Ok(false)));
        assert!(matches!(s.resolve("ns/a/b", "1.0"), Ok(None)));
        assert!(matches!(s.has_blob(&desc.digest), Ok(true)));
    }

    #[test]
    fn tag_batches_write_every_tag_once_and_need_their_manifests() {
        let (_d, s) = store();
        let cfg = br#"{"os":"linux","architecture":"arm64"}"#;
        assert!(s.put_blob_bytes(cfg).is_ok());
        let manifest = |n: u32| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[],"annotations":{{"n":"{n}"}}}}"#,
                media_types::OCI_MANIFEST,
                media_types::OCI_CONFIG,
                Digest::of(cfg),
                cfg.len()
            )
        };
        // an existing tag that the batch moves
        let old = s.put_manifest(
            "m/a",
            "1",
            media_types::OCI_MANIFEST,
            manifest(0).as_bytes(),
        );
        assert!(old.is_ok(), "{old:?}");
        let mut batch = TagBatch::default();
        let mut digests = Vec::new();
        for n in 1..=3u32 {
            let d = s.put_manifest_blob("m/a", media_types::OCI_MANIFEST, manifest(n).as_bytes());
            let Ok(d) = d else { panic!("{d:?}") };
            digests.push(d.digest.clone());
            assert!(batch.add("m/a", &n.to_string(), d).is_ok());
        }
        assert!(batch
            .add(
                "Bad",
                "1",
                Descriptor::new(media_types::OCI_MANIFEST, Digest::of(b"x"), 1)
            )
            .is_err());
        assert_eq!(batch.len(), 3);
        // nothing is visible before the batch is written
        assert!(matches!(s.resolve("m/a", "2"), Ok(None)));
        assert!(s.put_tags(batch).is_ok());
        let tags = s.list_tags().map(|t| {
            t.into_iter()
                .map(|e| (e.tag, e.descriptor.digest))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            tags.ok(),
            Some(vec![
                ("1".to_string(), digests[0].clone()),
                ("2".to_string(), digests[1].clone()),
                ("3".to_string(), digests[2].clone()),
            ])
        );
        // a batch naming a manifest that is not stored changes nothing
        let mut missing = TagBatch::default();
        let absent = Descriptor::new(media_types::OCI_MANIFEST, Digest::of(b"absent"), 6);
        assert!(missing.add("m/a", "1", absent).is_ok());
        let r = s.put_tags(missing);
        assert!(
            matches!(r, Err(StoreError::MissingReference { .. })),
            "{r:?}"
        );
        assert_eq!(
            s.resolve("m/a", "1").ok().flatten().map(|d| d.digest),
            Some(digests[0].clone())
        );
    }

    #[test]
    fn refuses_foreign_directories() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        assert!(fs::write(dir.path().join("notes.txt"), b"x").is_ok());
        let r = OciStore::open_or_create(dir.path());
        assert!(matches!(r, Err(StoreError::Layout { .. })), "{r:?}");
    }
}
