//! What planning needs to know about a bundle's images (name, manifest
//! digest, blob count and bytes), cached on disk between runs.
//!
//! Reading a bundle's catalogue decompresses the whole archive: about a
//! fifth of a `plan --refresh=false` at 1,000 images, more with bigger
//! bundles. The summary is small JSON, so [`bundle_summary`] keeps it in a
//! cache directory (the binary uses `.mirrorplan/cache/bundles/` beside the
//! configuration), one file per (bundle, platform filter), and uses it only
//! while the bundle file is the very same: canonical path, size, inode,
//! modification and change times, and a sha256 of its first and last
//! 64 KiB must all match what was recorded. Any difference (or an
//! unreadable or foreign cache file) reads the bundle again and rewrites the
//! entry. The cache is an optimisation only: failing to read or write it
//! never fails a plan. Pushing always streams the bundle itself and checks
//! every digest, so a stale entry could at worst make a plan announce a
//! digest that the push then refuses as a mismatch.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::bundle::Catalogue;
use crate::reference::{mirror_path, ImageRef, MirrorRef};

/// Bumped whenever the cached JSON or the catalogue's rules change.
const CACHE_FORMAT: u32 = 3;
/// Bytes hashed at each end of the bundle for the content check.
const SAMPLE: u64 = 64 * 1024;

/// One image of a bundle, as planning sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// Full normalised upstream reference.
    pub name: String,
    /// The manifest digest the mirror will serve (after a platform filter).
    pub manifest_digest: String,
    /// Whether a platform filter rewrote the index.
    pub filtered: bool,
    /// Number of config and layer blobs.
    pub blobs: u64,
    /// Their total size.
    pub bytes: u64,
    /// A referrer: the image of the bundle it refers to and the digest it
    /// refers to (see [`crate::bundle::ImageEntry::referrer_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_of: Option<(String, String)>,
    #[serde(skip)]
    reference: Option<ImageRef>,
}

impl ImageSummary {
    /// Where this image goes on a mirror (`None` only for a name that does
    /// not parse, which a catalogue never produces).
    pub fn mirror_ref(&self, namespace: Option<&str>) -> Option<MirrorRef> {
        self.reference.as_ref().map(|r| mirror_path(r, namespace))
    }
}

/// An image of the bundle that cannot be pushed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureSummary {
    /// Image name.
    pub name: String,
    /// The reason, as displayed.
    pub error: String,
}

/// The images of a bundle for one platform filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleSummary {
    /// Images that can be pushed, in bundle order.
    pub images: Vec<ImageSummary>,
    /// Images that cannot.
    pub failures: Vec<FailureSummary>,
}

impl BundleSummary {
    /// The summary of a catalogue.
    pub fn of(catalogue: &Catalogue) -> BundleSummary {
        BundleSummary {
            images: catalogue
                .images
                .iter()
                .map(|i| ImageSummary {
                    name: i.name.clone(),
                    manifest_digest: i.manifest_digest.to_string(),
                    filtered: i.filtered,
                    blobs: i.blobs.len() as u64,
                    bytes: i.blob_bytes(),
                    referrer_of: i
                        .referrer_of
                        .as_ref()
                        .map(|(n, d)| (n.clone(), d.to_string())),
                    reference: Some(i.reference.clone()),
                })
                .collect(),
            failures: catalogue
                .failures
                .iter()
                .map(|f| FailureSummary {
                    name: f.name.clone(),
                    error: f.error.to_string(),
                })
                .collect(),
        }
    }

    /// Fills in the parsed references; false when a name does not parse.
    fn parse_references(&mut self) -> bool {
        for i in &mut self.images {
            match ImageRef::parse(&i.name) {
                Ok(r) => i.reference = Some(r),
                Err(_) => return false,
            }
        }
        true
    }
}

/// What identifies one version of a bundle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileIdentity {
    path: PathBuf,
    platforms: Vec<String>,
    size: u64,
    inode: u64,
    device: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    sample_sha256: String,
}

impl FileIdentity {
    fn of(path: &Path, platforms: &[String]) -> Option<FileIdentity> {
        let path = fs::canonicalize(path).ok()?;
        let mut file = File::open(&path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let size = meta.len();
        let mut hasher = Sha256::new();
        let mut buf = Vec::with_capacity(SAMPLE as usize);
        (&mut file).take(SAMPLE).read_to_end(&mut buf).ok()?;
        hasher.update(&buf);
        if size > SAMPLE {
            buf.clear();
            file.seek(SeekFrom::Start(size.saturating_sub(SAMPLE)))
                .ok()?;
            file.take(SAMPLE).read_to_end(&mut buf).ok()?;
            hasher.update(&buf);
        }
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(FileIdentity {
            path,
            platforms: platforms.to_vec(),
            size,
            inode: meta.ino(),
            device: meta.dev(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            sample_sha256: format!("{:x}", hasher.finalize()),
        })
    }

    /// The cache file for this bundle and platform filter (not its version:
    /// a changed bundle overwrites its entry).
    fn cache_file(&self, dir: &Path) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.path.as_os_str().as_encoded_bytes());
        for p in &self.platforms {
            h.update([0]);
            h.update(p.as_bytes());
        }
        dir.join(format!("{:x}.json", h.finalize()))
    }
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    format: u32,
    mirrorplan: String,
    bundle: FileIdentity,
    summary: BundleSummary,
}

/// The summary of the bundle at `path` for `platforms`: from `cache_dir`
/// when it holds an entry for this exact file, else from `read` (which
/// reads the catalogue), then recorded in `cache_dir` for the next run.
/// Errors of `read` are returned and never cached.
pub fn bundle_summary<E>(
    path: &Path,
    platforms: &[String],
    cache_dir: Option<&Path>,
    read: impl FnOnce() -> Result<BundleSummary, E>,
) -> Result<BundleSummary, E> {
    let identity = cache_dir.and_then(|_| FileIdentity::of(path, platforms));
    if let (Some(dir), Some(id)) = (cache_dir, &identity) {
        if let Some(summary) = load(&id.cache_file(dir), id) {
            return Ok(summary);
        }
    }
    let summary = read()?;
    if let (Some(dir), Some(id)) = (cache_dir, identity) {
        // only when the file did not change while it was read
        if FileIdentity::of(path, platforms).as_ref() == Some(&id) {
            store(dir, id, &summary);
        }
    }
    Ok(summary)
}

fn load(file: &Path, id: &FileIdentity) -> Option<BundleSummary> {
    let bytes = fs::read(file).ok()?;
    let entry: CacheEntry = serde_json::from_slice(&bytes).ok()?;
    if entry.format != CACHE_FORMAT
        || entry.mirrorplan != env!("CARGO_PKG_VERSION")
        || &entry.bundle != id
    {
        return None;
    }
    let mut summary = entry.summary;
    summary.parse_references().then_some(summary)
}

fn store(dir: &Path, id: FileIdentity, summary: &BundleSummary) {
    let file = id.cache_file(dir);
    let entry = CacheEntry {
        format: CACHE_FORMAT,
        mirrorplan: env!("CARGO_PKG_VERSION").to_string(),
        bundle: id,
        summary: summary.clone(),
    };
    let Ok(bytes) = serde_json::to_vec(&entry) else {
        return;
    };
    if fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(mut tmp) = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir) else {
        return;
    };
    if tmp.write_all(&bytes).is_ok() {
        let _ = tmp.persist(&file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str) -> BundleSummary {
        let mut s = BundleSummary {
            images: vec![ImageSummary {
                name: name.to_string(),
                manifest_digest: format!("sha256:{}", "a".repeat(64)),
                filtered: false,
                blobs: 2,
                bytes: 100,
                referrer_of: None,
                reference: None,
            }],
            failures: vec![FailureSummary {
                name: "docker.io/library/broken:1".into(),
                error: "blob missing".into(),
            }],
        };
        assert!(s.parse_references());
        s
    }

    #[test]
    fn the_cache_serves_only_the_same_file() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let bundle = dir.path().join("b.tar");
        let cache = dir.path().join("cache");
        assert!(fs::write(&bundle, vec![7u8; 200 * 1024]).is_ok());
        let read = |name: &'static str, calls: &std::cell::Cell<u32>| {
            calls.set(calls.get() + 1);
            Ok::<_, String>(summary(name))
        };
        let calls = std::cell::Cell::new(0);
        let first = bundle_summary(&bundle, &[], Some(&cache), || {
            read("docker.io/a/b:1", &calls)
        });
        assert_eq!(first.as_ref().ok(), Some(&summary("docker.io/a/b:1")));
        // second time: from the cache, with parsed references
        let again = bundle_summary(&bundle, &[], Some(&cache), || {
            read("docker.io/x/y:9", &calls)
        });
        assert_eq!(calls.get(), 1);
        let Ok(again) = again else {
            panic!("{again:?}")
        };
        assert_eq!(again, summary("docker.io/a/b:1"));
        assert_eq!(
            again.images[0].mirror_ref(Some("ns")).map(|m| m.repository),
            Some("ns/a/b".to_string())
        );
        // another platform filter is another entry
        let other = bundle_summary(&bundle, &["linux/arm64".into()], Some(&cache), || {
            read("docker.io/p/q:2", &calls)
        });
        assert_eq!(calls.get(), 2);
        assert_eq!(other.ok(), Some(summary("docker.io/p/q:2")));
        // same size, same first and last bytes, new content in the middle:
        // the change time moves, so the bundle is read again
        let mut bytes = vec![7u8; 200 * 1024];
        bytes[100 * 1024] = 8;
        assert!(fs::write(&bundle, &bytes).is_ok());
        // (timestamps are coarse: make this write's mtime differ for sure)
        let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let touched = File::options()
            .write(true)
            .open(&bundle)
            .and_then(|f| f.set_modified(when));
        assert!(touched.is_ok());
        let changed = bundle_summary(&bundle, &[], Some(&cache), || {
            read("docker.io/c/d:3", &calls)
        });
        assert_eq!(calls.get(), 3);
        assert_eq!(changed.ok(), Some(summary("docker.io/c/d:3")));
        // a damaged cache file is ignored and rewritten
        let Some(id) = FileIdentity::of(&bundle, &[]) else {
            panic!("identity")
        };
        assert!(fs::write(id.cache_file(&cache), b"{not json").is_ok());
        let healed = bundle_summary(&bundle, &[], Some(&cache), || {
            read("docker.io/e/f:4", &calls)
        });
        assert_eq!(calls.get(), 4);
        assert_eq!(healed.ok(), Some(summary("docker.io/e/f:4")));
        let cached = bundle_summary(&bundle, &[], Some(&cache), || {
            read("docker.io/z/z:0", &calls)
        });
        assert_eq!(calls.get(), 4);
        assert_eq!(cached.ok(), Some(summary("docker.io/e/f:4")));
        // errors are not cached; no cache directory: always read
        assert!(fs::remove_file(id.cache_file(&cache)).is_ok());
        let failed = bundle_summary::<String>(&bundle, &[], Some(&cache), || Err("bad".into()));
        assert_eq!(failed.err().as_deref(), Some("bad"));
        assert!(!id.cache_file(&cache).exists());
        let uncached = bundle_summary(&bundle, &[], None, || read("docker.io/g/h:5", &calls));
        assert_eq!(calls.get(), 5);
        assert_eq!(uncached.ok(), Some(summary("docker.io/g/h:5")));
    }
}
