//! Streaming reader for image bundles: an OCI image layout or a `docker save`
//! archive, packed as `.tar`, `.tar.gz`, `.tar.xz` or `.tar.zst` (detected by
//! magic bytes, the extension is not trusted).
//!
//! Nothing is extracted to disk and no layer is held in memory. Two passes
//! over the archive:
//!
//! 1. [`Bundle::catalogue`] reads the small files: `index.json`,
//!    `manifest.json` and every JSON blob up to [`JSON_BLOB_CAP`] (manifests,
//!    indexes, configs; verified against their digest right away). Layers are
//!    skipped, only their size (and, for `docker save` files, their sha256)
//!    is recorded. The result lists each image with its exact manifest bytes
//!    and every blob it needs; images that cannot be pushed (missing blob,
//!    bad name, ...) are listed in [`Catalogue::failures`] without stopping
//!    the others. For an OCI layout the pass stops as soon as `index.json`,
//!    the manifests and indexes it references and their configs have been
//!    read; with the recommended packing order (`oci-layout`, `index.json`,
//!    the blobs of at most 1 MiB smallest first, then the bigger blobs
//!    largest first) that is the head of the archive, and layers are then
//!    checked in pass 2 only. Other orders read the whole archive.
//! 2. [`Bundle::stream_blobs`] decodes the archive again and hands each
//!    needed blob, in archive order, to a sink through a reader that hashes
//!    and counts while the bytes pass and fails at end of stream when the
//!    digest or size is wrong. Since every byte it hands on is checked
//!    against a sha256, this pass skips the xz container's own CRC64.
//!
//! A compressed `tar` is sequential; when `index.json` sorts after `blobs/`
//! (as `tar` of a layout directory writes it), pass 1 cannot know which
//! repositories a blob belongs to when it streams past, so it reads the
//! whole archive and the bundle is decoded twice. A plain `.tar` and a
//! multi-block `.xz` are the exception: both passes skip what they do not
//! need without decoding it ([`crate::seek`]), so pass 1 reads the headers
//! and small JSON wherever they are, and pass 2 about the blobs it streams.
//!
//! `docker save` archives (`manifest.json` with `RepoTags`, layers as
//! `<id>/layer.tar` or `blobs/sha256/<hex>`) carry no registry manifest: an
//! OCI manifest is synthesised from the config and layers as stored. Its
//! digest (and, for uncompressed layers, the layer digests) therefore differ
//! from the original registry's. Such entries have `synthesized: true`.
//! Archives from Docker 25+ also contain an OCI `index.json`, which is
//! preferred and gives byte-exact manifests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, VerifyFailure, VerifyingReader};
use crate::error::{BundleError, ImageNames, SinkError};
use crate::oci::{self, media_types, Descriptor, Parsed};
use crate::reference::{mirror_path, ImageRef, MirrorRef, Platform};
use crate::seek::{Counter, Forward, PlainFile, ReadSeek, XzIndex, XzSeekReader};

/// JSON blobs up to this size are read in pass 1 (manifests, configs).
pub const JSON_BLOB_CAP: u64 = 4 * 1024 * 1024;
/// `index.json` / `manifest.json` may be at most this large.
pub const INDEX_CAP: u64 = 64 * 1024 * 1024;
/// Pass 1 reads at most this many bytes of JSON documents (manifests,
/// indexes, configs, and any repeated `index.json` / `manifest.json`) in
/// all: a bundle over it is refused rather than held in memory.
pub const METADATA_CAP: u64 = 64 * 1024 * 1024;
/// ... and at most this many of them.
pub const METADATA_DOCS_CAP: u64 = 100_000;

/// Compression of the bundle archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`.tar.gz`, `.tgz`).
    Gzip,
    /// xz (`.tar.xz`).
    Xz,
    /// zstd (`.tar.zst`).
    Zstd,
}

/// Layout of the images inside the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleFormat {
    /// OCI image layout (`oci-layout`, `index.json`, `blobs/`).
    OciLayout,
    /// `docker save` archive (`manifest.json`).
    DockerArchive,
}

/// A blob (config or layer) an image needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobRef {
    /// Content digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type from the manifest.
    pub media_type: String,
}

/// A platform manifest of a multi-arch index.
#[derive(Debug, Clone)]
pub struct ChildManifest {
    /// Platform from the index entry.
    pub platform: Option<Platform>,
    /// Digest of `bytes`.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// Exact manifest bytes.
    pub bytes: Vec<u8>,
    /// Config and layers of this platform.
    pub blobs: Vec<BlobRef>,
}

/// One named image of the bundle, ready to push.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// Full normalised upstream reference, e.g. `gcr.io/a/b:1.0`.
    pub name: String,
    /// The parsed reference.
    pub reference: ImageRef,
    /// Digest of `manifest_bytes`.
    pub manifest_digest: Digest,
    /// Media type of the top manifest (index or image manifest).
    pub media_type: String,
    /// Exact bytes of the top manifest: never re-serialised unless
    /// `filtered` or `synthesized`.
    pub manifest_bytes: Vec<u8>,
    /// Platform manifests, for an index (after filtering).
    pub children: Vec<ChildManifest>,
    /// Every config and layer blob the image needs (all children), distinct.
    pub blobs: Vec<BlobRef>,
    /// The platform filter dropped entries: `manifest_bytes` is a NEW index
    /// with a new digest; `original_digest` is the bundle's.
    pub filtered: bool,
    /// The bundle's manifest digest when `filtered`.
    pub original_digest: Option<Digest>,
    /// The manifest was synthesised from a `docker save` archive; its digest
    /// differs from the original registry's.
    pub synthesized: bool,
    /// A referrer (see [`crate::referrers`]): the name of the image of the
    /// bundle it refers to, and the digest it refers to (that image's
    /// manifest or one of its platform manifests). Referrers come after
    /// every other image in [`Catalogue::images`].
    pub referrer_of: Option<(String, Digest)>,
}

impl ImageEntry {
    /// Where this image goes on a mirror.
    pub fn mirror_ref(&self, namespace: Option<&str>) -> MirrorRef {
        mirror_path(&self.reference, namespace)
    }

    /// Total bytes of the image's blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// An image of the bundle that cannot be pushed, and why.
#[derive(Debug)]
pub struct ImageFailure {
    /// Name as found in the bundle (normalised when it parsed).
    pub name: String,
    /// The reason.
    pub error: BundleError,
}

/// Options for [`Bundle::catalogue_with`].
#[derive(Debug, Clone, Default)]
pub struct CatalogueOptions {
    /// Keep only these platforms of multi-arch indexes (empty: keep all).
    pub platforms: Vec<Platform>,
}

/// What a bundle holds.
#[derive(Debug)]
pub struct Catalogue {
    /// OCI layout or docker archive.
    pub format: BundleFormat,
    /// Archive compression.
    pub compression: Compression,
    /// Images that can be pushed, in bundle order.
    pub images: Vec<ImageEntry>,
    /// Images that cannot, with the reason.
    pub failures: Vec<ImageFailure>,
    /// Distinct blobs needed by `images`, sorted by digest.
    pub blobs: Vec<BlobRef>,
    /// Whether pass 1 read the whole archive. `false` when it stopped after
    /// the head (see [`Bundle::catalogue_with`]): layers that come later
    /// were not seen, so a missing or wrong-sized layer is reported by
    /// [`Bundle::stream_blobs`] instead (failing only the images using it).
    pub read_whole: bool,
    users: BTreeMap<Digest, Vec<String>>,
    file_blobs: HashMap<String, Digest>,
}

impl Catalogue {
    /// Names of the images that use a blob.
    pub fn users_of(&self, digest: &Digest) -> ImageNames {
        ImageNames(self.users.get(digest).cloned().unwrap_or_default())
    }

    /// Sum of the sizes of all distinct blobs.
    pub fn total_blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    /// The entry for a full image name.
    pub fn image(&self, name: &str) -> Option<&ImageEntry> {
        self.images.iter().find(|i| i.name == name)
    }

    /// A copy without `failures` whose blobs are only those `keep`
    /// accepts: [`Bundle::stream_blobs`] with it reads, verifies and
    /// reports only those (e.g. two readers of one archive, each with its
    /// share of the blobs).
    pub fn with_blobs(&self, keep: impl Fn(&BlobRef) -> bool) -> Catalogue {
        let mut c = self.clone_without_failures();
        c.blobs.retain(|b| keep(b));
        c
    }

    /// A copy without `failures` (their errors cannot be cloned), e.g. to
    /// move into a blocking task that runs [`Bundle::stream_blobs`].
    pub fn clone_without_failures(&self) -> Catalogue {
        Catalogue {
            format: self.format,
            compression: self.compression,
            images: self.images.clone(),
            failures: Vec::new(),
            blobs: self.blobs.clone(),
            read_whole: self.read_whole,
            users: self.users.clone(),
            file_blobs: self.file_blobs.clone(),
        }
    }
}

/// Result of [`Bundle::stream_blobs`].
#[derive(Debug, Default)]
pub struct StreamReport {
    /// Blobs handed to the sink and verified.
    pub blobs_streamed: usize,
    /// Their total size.
    pub bytes_streamed: u64,
    /// Blobs that failed (verification, sink error, missing); each names
    /// the images using it.
    pub failures: Vec<BundleError>,
    /// Images with at least one failed blob: do not push their manifests.
    pub failed_images: BTreeSet<String>,
}

impl StreamReport {
    /// Whether every blob streamed and verified.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Whether all blobs of this image arrived intact.
    pub fn image_ok(&self, name: &str) -> bool {
        !self.failed_images.contains(name)
    }
}

/// An image bundle archive on disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    path: PathBuf,
    compression: Compression,
    /// The block index of a multi-block `.xz` (random access, see
    /// [`crate::seek`]).
    xz_index: Option<Arc<XzIndex>>,
    /// Bytes decoded from this file by every reader in this process.
    decoded: Counter,
}

static DECODED: Mutex<Option<HashMap<PathBuf, Counter>>> = Mutex::new(None);

/// The shared decode counter of the bundle file at `path`.
fn counter_for(path: &Path) -> Counter {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match DECODED.lock() {
        Ok(mut guard) => guard
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_default()
            .clone(),
        Err(_) => Counter::default(),
    }
}

/// How many bytes this process has decoded from the bundle file at `path`
/// so far, over every pass and reader (for a plain `.tar`, the bytes read).
/// Compared with the archive's decoded size, it says how many times the
/// bundle was decoded.
pub fn decoded_bytes(path: &Path) -> u64 {
    counter_for(path).load(std::sync::atomic::Ordering::Relaxed)
}

struct FileInfo {
    digest: Digest,
    size: u64,
    magic: Vec<u8>,
    json: Option<Vec<u8>>,
}

#[derive(Default)]
struct Scan {
    /// Verified small JSON blobs under blobs/sha256.
    json: HashMap<Digest, Vec<u8>>,
    /// Blobs whose bytes do not hash to their name: actual digest.
    corrupt: HashMap<Digest, Digest>,
    /// Every blob under blobs/sha256 with its size.
    sizes: HashMap<Digest, u64>,
    /// First bytes of each blob (media type sniffing for docker archives).
    magic: HashMap<Digest, Vec<u8>>,
    /// Files outside blobs/ (docker archives), hashed.
    files: HashMap<String, FileInfo>,
    /// Symlinks / hard links: path -> target path.
    links: HashMap<String, String>,
    index_json: Option<Vec<u8>>,
    manifest_json: Option<Vec<u8>>,
    /// The scan read to the end of the archive (not stopped after the head).
    complete: bool,
    /// JSON bytes and documents read so far (see [`METADATA_CAP`]).
    metadata_bytes: u64,
    metadata_docs: u64,
}

impl Scan {
    /// Counts a JSON document of `size` bytes about to be read at `path`;
    /// an error once the bundle holds more than the caps allow.
    fn charge(&mut self, bundle: &Bundle, size: u64, path: &str) -> Result<(), BundleError> {
        self.metadata_bytes += size;
        self.metadata_docs += 1;
        let over = if self.metadata_bytes > METADATA_CAP {
            Some(format!("{} MiB", METADATA_CAP >> 20))
        } else if self.metadata_docs > METADATA_DOCS_CAP {
            Some(format!("{METADATA_DOCS_CAP} documents"))
        } else {
            None
        };
        match over {
            Some(limit) => Err(BundleError::TooMuchMetadata {
                path: bundle.path.clone(),
                limit,
                at: format!("at entry `{path}`"),
            }),
            None => Ok(()),
        }
    }
}

/// What the head of an OCI layout must hold before pass 1 may stop.
#[derive(Debug, Clone)]
enum Need {
    /// A manifest or index (`top`: named in `index.json`), with the media
    /// type of the descriptor that references it.
    Manifest { top: bool, hint: String },
    /// A config blob: only has to be seen.
    Config,
}

/// Decides when pass 1 has read everything the catalogue needs from an OCI
/// layout: `index.json`, every manifest and index it references (and the
/// platform manifests of those indexes) and their configs. Layers are not
/// needed: the catalogue takes their size from the manifest. Any doubt
/// (an unreadable `index.json`, a foreign layer, which may or may not be in
/// the archive) means reading the whole archive, as before.
#[derive(Debug, Default)]
struct HeadTracker {
    index_seen: bool,
    give_up: bool,
    waiting: HashMap<Digest, Need>,
}

impl HeadTracker {
    fn on_index(&mut self, scan: &Scan, index: &[u8]) {
        self.index_seen = true;
        match serde_json::from_slice::<OciIndexFile>(index) {
            Ok(parsed) => {
                for d in parsed.manifests {
                    self.need(
                        scan,
                        d.digest,
                        Need::Manifest {
                            top: true,
                            hint: d.media_type,
                        },
                    );
                }
            }
            Err(_) => self.give_up = true,
        }
    }

    fn need(&mut self, scan: &Scan, digest: Digest, need: Need) {
        if scan.sizes.contains_key(&digest) {
            self.resolve(scan, &digest, need);
            return;
        }
        match (self.waiting.get(&digest), &need) {
            // a manifest need is stronger than a config one
            (Some(Need::Manifest { .. }), Need::Config) => {}
            _ => {
                self.waiting.insert(digest, need);
            }
        }
    }

    /// `digest` has been seen (its size, and its bytes when small JSON).
    fn resolve(&mut self, scan: &Scan, digest: &Digest, need: Need) {
        let Need::Manifest { top, hint } = need else {
            return;
        };
        // Corrupt, too big or not JSON: the catalogue reports it the same
        // way whatever follows in the archive.
        let Some(bytes) = scan.json.get(digest) else {
            return;
        };
        let Ok((_, parsed)) = oci::parse_manifest(bytes, Some(&hint)) else {
            return;
        };
        match parsed {
            Parsed::Image { config, layers } => {
                if layers.iter().any(oci::is_foreign_layer) {
                    self.give_up = true;
                }
                self.need(scan, config.digest, Need::Config);
            }
            Parsed::Index { manifests } if top => {
                for m in manifests {
                    self.need(
                        scan,
                        m.digest,
                        Need::Manifest {
                            top: false,
                            hint: m.media_type,
                        },
                    );
                }
            }
            // nested index: refused by the catalogue, nothing more to read
            Parsed::Index { .. } => {}
        }
    }

    fn on_blob(&mut self, scan: &Scan, digest: &Digest) {
        if let Some(need) = self.waiting.remove(digest) {
            self.resolve(scan, digest, need);
        }
    }

    fn done(&self) -> bool {
        self.index_seen && !self.give_up && self.waiting.is_empty()
    }
}

fn normalise(path: &str) -> String {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_start_matches('/').to_string()
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn blob_path_digest(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/")
        .and_then(|hex| Digest::from_hex(hex).ok())
}

impl Bundle {
    /// Open a bundle and detect its compression from the magic bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<Bundle, BundleError> {
        let path = path.as_ref().to_path_buf();
        let mut f = File::open(&path).map_err(|source| BundleError::Open {
            path: path.clone(),
            source,
        })?;
        let mut head = [0u8; 512];
        let n = read_up_to(&mut f, &mut head).map_err(|source| BundleError::Open {
            path: path.clone(),
            source,
        })?;
        let head = &head[..n];
        let format_err = |reason: &str| BundleError::Format {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let compression = if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            return Err(format_err(
                "bzip2 compression is not supported; recompress with gzip, xz or zstd",
            ));
        } else if n >= 262 && &head[257..262] == b"ustar" {
            Compression::None
        } else if n == 0 {
            return Err(format_err("the file is empty"));
        } else {
            return Err(format_err(
                "not a tar archive (no ustar header) and not gzip, xz or zstd compressed",
            ));
        };
        // A multi-block xz can be read from any block; a file without a
        // readable index (truncated, say) is read as a stream and fails
        // there as before.
        let xz_index = match compression {
            Compression::Xz => XzIndex::read(&f)
                .ok()
                .filter(|i| i.block_count() > 1)
                .map(Arc::new),
            _ => None,
        };
        let decoded = counter_for(&path);
        Ok(Bundle {
            path,
            compression,
            xz_index,
            decoded,
        })
    }

    /// Whether a pass can skip entries without decoding them (a plain
    /// `.tar`, or an `.xz` of several blocks): then the catalogue of a
    /// bundle whose `index.json` comes after its blobs costs little more
    /// than its head, and each archive reader decodes only its own blobs.
    pub fn random_access(&self) -> bool {
        self.compression == Compression::None || self.xz_index.is_some()
    }

    /// The bundle's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detected compression.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The decoded archive. `container_check` keeps the compression
    /// format's own integrity check (xz's CRC64 per block, zstd's XXH64
    /// per frame); without it the check is skipped, which only the blob
    /// pass does: every byte it hands on is verified against a sha256
    /// anyway, and the static liblzma's CRC64 (no CLMUL) costs more than
    /// decoding stored blocks (zstd's XXH64 about 7 % of the push's CPU).
    fn archive(
        &self,
        container_check: bool,
    ) -> Result<tar::Archive<Box<dyn ReadSeek>>, BundleError> {
        let f = File::open(&self.path).map_err(|source| BundleError::Open {
            path: self.path.clone(),
            source,
        })?;
        let counter = self.decoded.clone();
        if self.compression == Compression::None {
            let plain = PlainFile::new(f, counter).map_err(|source| BundleError::Open {
                path: self.path.clone(),
                source,
            })?;
            return Ok(tar::Archive::new(Box::new(plain)));
        }
        if let Some(index) = &self.xz_index {
            return Ok(tar::Archive::new(Box::new(XzSeekReader::new(
                f,
                index.clone(),
                container_check,
                counter,
            ))));
        }
        // One buffer between the file and the decoder (the `bufread`
        // decoders read from it directly, without a second copy).
        let buffered = BufReader::with_capacity(256 * 1024, f);
        let reader: Box<dyn Read + Send> =
            match self.compression {
                Compression::None => Box::new(buffered),
                Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
                Compression::Xz => {
                    let mut flags = liblzma::stream::CONCATENATED;
                    if !container_check {
                        flags |= liblzma::stream::IGNORE_CHECK;
                    }
                    let stream = liblzma::stream::Stream::new_stream_decoder(u64::MAX, flags)
                        .map_err(|e| BundleError::Read {
                            path: self.path.clone(),
                            where_: "at the start of the xz stream".into(),
                            source: io::Error::other(e),
                        })?;
                    Box::new(liblzma::bufread::XzDecoder::new_stream(buffered, stream))
                }
                Compression::Zstd => {
                    let start_err = |source| BundleError::Read {
                        path: self.path.clone(),
                        where_: "at the start of the zstd stream".into(),
                        source,
                    };
                    let mut decoder =
                        zstd::stream::read::Decoder::with_buffer(buffered).map_err(start_err)?;
                    if !container_check {
                        // the frame's XXH64, like xz's CRC64 above
                        decoder
                            .set_parameter(zstd::zstd_safe::DParameter::ForceIgnoreChecksum(true))
                            .map_err(start_err)?;
                    }
                    Box::new(decoder)
                }
            };
        // Skipping an entry decodes and drops it.
        Ok(tar::Archive::new(Box::new(Forward::new(reader, counter))))
    }

    fn read_err(&self, where_: String) -> impl FnOnce(io::Error) -> BundleError + '_ {
        move |source| BundleError::Read {
            path: self.path.clone(),
            where_,
            source,
        }
    }

    /// Pass 1 without platform filter.
    pub fn catalogue(&self) -> Result<Catalogue, BundleError> {
        self.catalogue_with(&CatalogueOptions::default())
    }

    /// Pass 1: read index and manifests, list images and blobs.
    ///
    /// For an OCI layout, reading stops as soon as `index.json`, every
    /// manifest and index it references and their configs have been read:
    /// a bundle written in the recommended order (`oci-layout`,
    /// `index.json`, the blobs of at most 1 MiB smallest first, then the
    /// bigger ones largest first) is catalogued from its head only. In any
    /// other order (or for `docker save` archives) the whole archive is
    /// read. [`Catalogue::read_whole`] says which.
    pub fn catalogue_with(&self, options: &CatalogueOptions) -> Result<Catalogue, BundleError> {
        self.catalogue_impl(options, true)
    }

    /// Pass 1 reading the whole archive, never stopping after the head
    /// (the reference the early stop is tested against).
    pub fn catalogue_whole_with(
        &self,
        options: &CatalogueOptions,
    ) -> Result<Catalogue, BundleError> {
        self.catalogue_impl(options, false)
    }

    fn catalogue_impl(
        &self,
        options: &CatalogueOptions,
        may_stop: bool,
    ) -> Result<Catalogue, BundleError> {
        let scan = self.scan(may_stop)?;
        let mut builder = Builder {
            bundle: self,
            scan: &scan,
            options,
            images: Vec::new(),
            failures: Vec::new(),
            file_blobs: HashMap::new(),
        };
        let format = if let Some(index) = &scan.index_json {
            builder.add_oci_index(index)?;
            BundleFormat::OciLayout
        } else if let Some(manifest) = &scan.manifest_json {
            builder.add_docker_manifest(manifest)?;
            BundleFormat::DockerArchive
        } else {
            return Err(BundleError::NoIndex {
                path: self.path.clone(),
            });
        };
        let Builder {
            images,
            failures,
            file_blobs,
            ..
        } = builder;
        let mut blobs: BTreeMap<Digest, BlobRef> = BTreeMap::new();
        let mut users: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for image in &images {
            for b in &image.blobs {
                blobs.entry(b.digest.clone()).or_insert_with(|| b.clone());
                let u = users.entry(b.digest.clone()).or_default();
                if !u.contains(&image.name) {
                    u.push(image.name.clone());
                }
            }
        }
        Ok(Catalogue {
            format,
            compression: self.compression,
            images,
            failures,
            blobs: blobs.into_values().collect(),
            read_whole: scan.complete,
            users,
            file_blobs,
        })
    }

    fn scan(&self, may_stop: bool) -> Result<Scan, BundleError> {
        let mut archive = self.archive(true)?;
        let mut scan = Scan::default();
        let mut head = HeadTracker {
            give_up: !may_stop,
            ..HeadTracker::default()
        };
        let mut last = String::from("the first entry");
        let entries = archive
            .entries_with_seek()
            .map_err(self.read_err("at the start of the archive".into()))?;
        for entry in entries {
            let mut entry = entry.map_err(self.read_err(format!("after {last}")))?;
            let path = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
            // Stop at the first blob after the head is complete. Small
            // files after it (`oci-layout`) are still read, so an archive
            // whose head ends with its last blob is read to its end and
            // checked as a whole.
            if head.done() && blob_path_digest(&path).is_some() {
                return Ok(scan);
            }
            last = format!("entry `{path}`");
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                if let Ok(Some(target)) = entry.link_name() {
                    let target = target.to_string_lossy().to_string();
                    let resolved = if kind.is_symlink() {
                        resolve_relative(&path, &target)
                    } else {
                        normalise(&target)
                    };
                    scan.links.insert(path, resolved);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.size();
            let in_entry = format!("in entry `{path}`");
            match path.as_str() {
                "index.json" | "manifest.json" => {
                    let again = if path == "index.json" {
                        scan.index_json.is_some()
                    } else {
                        scan.manifest_json.is_some()
                    };
                    if again {
                        scan.charge(self, size, &path)?;
                    }
                    if size > INDEX_CAP {
                        return Err(BundleError::UnreadableIndex {
                            path: self.path.clone(),
                            file: path,
                            reason: format!("{size} bytes is more than the {INDEX_CAP} byte limit"),
                        });
                    }
                    let mut buf = Vec::with_capacity(size as usize);
                    entry
                        .read_to_end(&mut buf)
                        .map_err(self.read_err(in_entry.clone()))?;
                    if (buf.len() as u64) < size {
                        return Err(self.read_err(in_entry)(io::ErrorKind::UnexpectedEof.into()));
                    }
                    if path == "index.json" {
                        head.on_index(&scan, &buf);
                        scan.index_json = Some(buf);
                    } else {
                        scan.manifest_json = Some(buf);
                    }
                    continue;
                }
                _ => {}
            }
            if let Some(digest) = blob_path_digest(&path) {
                let mut magic = [0u8; 8];
                let n =
                    read_up_to(&mut entry, &mut magic).map_err(self.read_err(in_entry.clone()))?;
                let magic = magic[..n].to_vec();
                if size <= JSON_BLOB_CAP && magic.first() == Some(&b'{') {
                    scan.charge(self, size, &path)?;
                    let mut buf = Vec::with_capacity(size as usize);
                    buf.extend_from_slice(&magic);
                    entry
                        .read_to_end(&mut buf)
                        .map_err(self.read_err(in_entry.clone()))?;
                    if (buf.len() as u64) < size {
                        return Err(self.read_err(in_entry)(io::ErrorKind::UnexpectedEof.into()));
                    }
                    let actual = Digest::of(&buf);
                    if actual == digest {
                        scan.json.insert(digest.clone(), buf);
                    } else {
                        scan.corrupt.insert(digest.clone(), actual);
                    }
                }
                scan.sizes.insert(digest.clone(), size);
                scan.magic.insert(digest.clone(), magic);
                head.on_blob(&scan, &digest);
                continue;
            }
            // Files outside blobs/: `docker save` layers and configs. Hash
            // them now since their digest is not in their name.
            let mut hasher = Sha256::new();
            let mut magic = Vec::new();
            let keep = size <= JSON_BLOB_CAP;
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut count = 0u64;
            loop {
                let k = match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.read_err(in_entry)(e)),
                };
                if magic.len() < 8 {
                    let take = (8 - magic.len()).min(k);
                    magic.extend_from_slice(&buf[..take]);
                }
                if keep {
                    kept.extend_from_slice(&buf[..k]);
                }
                hasher.update(&buf[..k]);
                count += k as u64;
            }
            if count < size {
                return Err(self.read_err(in_entry)(io::ErrorKind::UnexpectedEof.into()));
            }
            let json = (keep && magic.first() == Some(&b'{')).then_some(kept);
            if json.is_some() {
                scan.charge(self, size, &path)?;
            }
            scan.files.insert(
                path,
                FileInfo {
                    digest: Digest::from_hasher(hasher),
                    size,
                    magic,
                    json,
                },
            );
        }
        scan.complete = true;
        Ok(scan)
    }

    /// Pass 2: stream every blob of `catalogue.blobs` (in archive order) to
    /// `sink`, verifying size and sha256 while it streams.
    ///
    /// The reader given to the sink returns an error instead of end-of-file
    /// when the bytes do not match, so a sink must read to the end before it
    /// commits anything. A sink that does not read everything is fine: the
    /// rest is drained and verified. Failures of one blob (bad digest, sink
    /// error, absent) are collected in the report and streaming goes on; a
    /// stream that ends early or does not decompress is fatal
    /// ([`BundleError::Truncated`] / [`BundleError::Read`]).
    pub fn stream_blobs<F>(
        &self,
        catalogue: &Catalogue,
        mut sink: F,
    ) -> Result<StreamReport, BundleError>
    where
        F: FnMut(&BlobRef, &mut dyn Read) -> Result<(), SinkError>,
    {
        let wanted: HashMap<&Digest, &BlobRef> =
            catalogue.blobs.iter().map(|b| (&b.digest, b)).collect();
        let mut done: HashSet<Digest> = HashSet::new();
        let mut report = StreamReport::default();
        let fail = |report: &mut StreamReport, err: BundleError, digest: &Digest| {
            for u in catalogue.users_of(digest).0 {
                report.failed_images.insert(u);
            }
            report.failures.push(err);
        };
        let mut archive = self.archive(false)?;
        let mut last = String::from("the first entry");
        let entries = archive
            .entries_with_seek()
            .map_err(self.read_err("at the start of the archive".into()))?;
        for entry in entries {
            if done.len() == wanted.len() {
                break;
            }
            let mut entry = entry.map_err(self.read_err(format!("after {last}")))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = match std::str::from_utf8(&entry.path_bytes()) {
                Ok(p) => normalise(p),
                Err(_) => continue,
            };
            last = format!("entry `{path}`");
            let digest = match blob_path_digest(&path) {
                Some(d) => d,
                None => match catalogue.file_blobs.get(&path) {
                    Some(d) => d.clone(),
                    None => continue,
                },
            };
            let Some(blob) = wanted.get(&digest) else {
                continue;
            };
            if done.contains(&digest) {
                continue;
            }
            done.insert(digest.clone());
            let images = catalogue.users_of(&digest);
            if entry.size() != blob.size {
                fail(
                    &mut report,
                    BundleError::BlobSize {
                        digest: digest.clone(),
                        images,
                        expected: blob.size,
                        actual: entry.size(),
                    },
                    &digest,
                );
                continue;
            }
            let mut verifier = VerifyingReader::new(&mut entry, &digest, blob.size);
            let sink_result = sink(blob, &mut verifier);
            let verdict = match verifier.finish() {
                Ok(v) => v,
                Err(source) => {
                    return Err(BundleError::Truncated {
                        path: self.path.clone(),
                        digest,
                        images,
                        source,
                    })
                }
            };
            match verdict {
                Err(VerifyFailure::Truncated { expected, actual }) => {
                    return Err(BundleError::Truncated {
                        path: self.path.clone(),
                        digest,
                        images,
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the archive ended after {actual} of {expected} bytes"),
                        ),
                    });
                }
                Err(failure) => fail(
                    &mut report,
                    BundleError::BlobVerification {
                        digest: digest.clone(),
                        images,
                        failure,
                    },
                    &digest,
                ),
                Ok(()) => match sink_result {
                    Ok(()) => {
                        report.blobs_streamed += 1;
                        report.bytes_streamed += blob.size;
                    }
                    Err(source) => fail(
                        &mut report,
                        BundleError::Sink {
                            digest: digest.clone(),
                            images,
                            source,
                        },
                        &digest,
                    ),
                },
            }
        }
        for blob in &catalogue.blobs {
            if !done.contains(&blob.digest) {
                fail(
                    &mut report,
                    BundleError::MissingBlob {
                        digest: blob.digest.clone(),
                        images: catalogue.users_of(&blob.digest),
                    },
                    &blob.digest,
                );
            }
        }
        Ok(report)
    }
}

fn resolve_relative(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return normalise(target);
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

struct Builder<'a> {
    bundle: &'a Bundle,
    scan: &'a Scan,
    options: &'a CatalogueOptions,
    images: Vec<ImageEntry>,
    failures: Vec<ImageFailure>,
    file_blobs: HashMap<String, Digest>,
}

#[derive(Deserialize)]
struct OciIndexFile {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// A file referenced by docker's manifest.json: digest, size, first bytes,
/// and its bytes when it is a small JSON document.
type DockerFile = (Digest, u64, Vec<u8>, Option<Vec<u8>>);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SynthManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

impl Builder<'_> {
    fn push_result(&mut self, name: String, result: Result<ImageEntry, BundleError>) {
        match result {
            Ok(entry) => {
                if self.images.iter().any(|i| i.name == entry.name) {
                    self.failures.push(ImageFailure {
                        name: entry.name.clone(),
                        error: BundleError::ImageName {
                            image: entry.name,
                            reason: "the name appears more than once in the bundle; the first one is used".into(),
                        },
                    });
                } else {
                    self.images.push(entry);
                }
            }
            Err(error) => self.failures.push(ImageFailure { name, error }),
        }
    }

    fn add_oci_index(&mut self, index: &[u8]) -> Result<(), BundleError> {
        let parsed: OciIndexFile =
            serde_json::from_slice(index).map_err(|e| BundleError::UnreadableIndex {
                path: self.bundle.path.clone(),
                file: "index.json".into(),
                reason: e.to_string(),
            })?;
        // unnamed entries whose manifest has a `subject`: OCI 1.1 referrers
        let mut unnamed_referrers: Vec<(&Descriptor, Digest)> = Vec::new();
        for (i, desc) in parsed.manifests.iter().enumerate() {
            let raw = desc
                .annotations
                .get(oci::ANNOTATION_CONTAINERD_NAME)
                .or_else(|| desc.annotations.get(oci::ANNOTATION_REF_NAME));
            if raw.is_none() {
                if let Some(subject) = self.subject_of(desc) {
                    unnamed_referrers.push((desc, subject));
                    continue;
                }
            }
            let Some(raw) = raw else {
                let label = format!("index.json entry #{} ({})", i + 1, desc.digest);
                self.failures.push(ImageFailure {
                    name: label.clone(),
                    error: BundleError::ImageName {
                        image: label,
                        reason: "no name annotation".into(),
                    },
                });
                continue;
            };
            let (name, result) = match ImageRef::parse(raw) {
                Ok(reference) => {
                    let name = reference.to_string();
                    (name.clone(), self.oci_image(&name, reference, desc))
                }
                Err(e) => (
                    raw.clone(),
                    Err(BundleError::ImageName {
                        image: raw.clone(),
                        reason: e.to_string(),
                    }),
                ),
            };
            self.push_result(name, result);
        }
        self.add_referrers(unnamed_referrers);
        Ok(())
    }

    /// The `subject` digest of an index.json entry's manifest, if it has one.
    fn subject_of(&self, desc: &Descriptor) -> Option<Digest> {
        #[derive(Deserialize)]
        struct WithSubject {
            subject: Option<Descriptor>,
        }
        if !oci::is_manifest(&desc.media_type) && !oci::is_index(&desc.media_type) {
            return None;
        }
        let bytes = self.manifest_bytes(desc.digest.as_str(), desc).ok()?;
        let w: WithSubject = serde_json::from_slice(&bytes).ok()?;
        w.subject.map(|s| s.digest)
    }

    /// The image of the bundle in `repo` whose manifest, original manifest
    /// or platform manifest is `subject`.
    fn subject_image(&self, repo: Option<(&str, &str)>, subject: &Digest) -> Option<&ImageEntry> {
        self.images.iter().find(|i| {
            i.referrer_of.is_none()
                && repo.is_none_or(|(reg, r)| {
                    i.reference.registry == reg && i.reference.repository == r
                })
                && (i.manifest_digest == *subject
                    || i.original_digest.as_ref() == Some(subject)
                    || i.children.iter().any(|c| c.digest == *subject))
        })
    }

    /// Marks the referrers of the bundle's images and puts them after every
    /// other image: tag-schema entries (`REPO:sha256-<hex>` fallback indexes,
    /// cosign's `.sig`/`.att`/`.sbom`), and `unnamed` entries with a
    /// `subject`, named `REPO@DIGEST` after their subject's repository.
    fn add_referrers(&mut self, unnamed: Vec<(&Descriptor, Digest)>) {
        for i in 0..self.images.len() {
            let r = &self.images[i].reference;
            let Some((hex, _)) = r.tag.as_deref().and_then(referrer_tag) else {
                continue;
            };
            let Ok(subject) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            let found = self
                .subject_image(Some((&r.registry, &r.repository)), &subject)
                .map(|s| s.name.clone());
            if let Some(name) = found {
                self.images[i].referrer_of = Some((name, subject));
            }
        }
        for (desc, subject) in unnamed {
            let label = format!("index.json entry {} (a referrer of {subject})", desc.digest);
            let Some(s) = self.subject_image(None, &subject) else {
                self.failures.push(ImageFailure {
                    name: label.clone(),
                    error: BundleError::ImageName {
                        image: label,
                        reason: "its subject is not an image of the bundle".into(),
                    },
                });
                continue;
            };
            let (subject_name, mut reference) = (s.name.clone(), s.reference.clone());
            reference.tag = None;
            reference.digest = Some(desc.digest.clone());
            let name = reference.to_string();
            let result = self.oci_image(&name, reference, desc).map(|mut e| {
                e.referrer_of = Some((subject_name, subject.clone()));
                e
            });
            self.push_result(name, result);
        }
        // after their subjects
        let (mut images, referrers): (Vec<ImageEntry>, Vec<ImageEntry>) =
            std::mem::take(&mut self.images)
                .into_iter()
                .partition(|i| i.referrer_of.is_none());
        images.extend(referrers);
        self.images = images;
    }

    /// Exact bytes of a manifest blob, verified.
    fn manifest_bytes(&self, image: &str, desc: &Descriptor) -> Result<Vec<u8>, BundleError> {
        let d = &desc.digest;
        if let Some(actual) = self.scan.corrupt.get(d) {
            return Err(BundleError::BlobVerification {
                digest: d.clone(),
                images: ImageNames(vec![image.to_string()]),
                failure: VerifyFailure::DigestMismatch {
                    actual: actual.clone(),
                },
            });
        }
        let Some(bytes) = self.scan.json.get(d) else {
            return Err(match self.scan.sizes.get(d) {
                None => BundleError::MissingManifest {
                    image: image.to_string(),
                    digest: d.clone(),
                },
                Some(size) => BundleError::UnreadableManifest {
                    image: image.to_string(),
                    digest: d.clone(),
                    reason: format!(
                        "{size} bytes, not a JSON document of at most {JSON_BLOB_CAP} bytes"
                    ),
                },
            });
        };
        if bytes.len() as u64 != desc.size {
            return Err(BundleError::BlobSize {
                digest: d.clone(),
                images: ImageNames(vec![image.to_string()]),
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes.clone())
    }

    /// Check a config/layer descriptor against the archive.
    fn blob_ref(&self, image: &str, desc: &Descriptor) -> Result<Option<BlobRef>, BundleError> {
        let d = &desc.digest;
        let images = || ImageNames(vec![image.to_string()]);
        if let Some(actual) = self.scan.corrupt.get(d) {
            return Err(BundleError::BlobVerification {
                digest: d.clone(),
                images: images(),
                failure: VerifyFailure::DigestMismatch {
                    actual: actual.clone(),
                },
            });
        }
        match self.scan.sizes.get(d) {
            None if oci::is_foreign_layer(desc) => Ok(None),
            // Not seen because pass 1 stopped after the head: taken from
            // the manifest; pass 2 checks it is there with this size.
            None if !self.scan.complete => Ok(Some(BlobRef {
                digest: d.clone(),
                size: desc.size,
                media_type: desc.media_type.clone(),
            })),
            None => Err(BundleError::MissingBlob {
                digest: d.clone(),
                images: images(),
            }),
            Some(&size) if size != desc.size => Err(BundleError::BlobSize {
                digest: d.clone(),
                images: images(),
                expected: desc.size,
                actual: size,
            }),
            Some(_) => Ok(Some(BlobRef {
                digest: d.clone(),
                size: desc.size,
                media_type: desc.media_type.clone(),
            })),
        }
    }

    /// Config + layers of an image manifest; checks the platform filter
    /// against the config when `check_platform`.
    fn image_blobs(
        &self,
        image: &str,
        digest: &Digest,
        config: &Descriptor,
        layers: &[Descriptor],
        check_platform: bool,
    ) -> Result<Vec<BlobRef>, BundleError> {
        let mut out = Vec::with_capacity(layers.len() + 1);
        for d in std::iter::once(config).chain(layers) {
            if let Some(b) = self.blob_ref(image, d)? {
                if !out.iter().any(|o: &BlobRef| o.digest == b.digest) {
                    out.push(b);
                }
            }
        }
        if check_platform && !self.options.platforms.is_empty() {
            let cfg = self.scan.json.get(&config.digest).map(|b| b.as_slice());
            if let Some(p) = cfg.and_then(oci::config_platform) {
                if !self.options.platforms.iter().any(|w| w.matches(&p)) {
                    return Err(BundleError::PlatformNotAvailable {
                        image: image.to_string(),
                        wanted: platform_list(&self.options.platforms),
                        available: format!(
                            "only {p} (single-platform manifest {})",
                            digest.short()
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    fn oci_image(
        &self,
        name: &str,
        reference: ImageRef,
        desc: &Descriptor,
    ) -> Result<ImageEntry, BundleError> {
        let bytes = self.manifest_bytes(name, desc)?;
        if let Some(d) = &reference.digest {
            if d != &desc.digest {
                return Err(BundleError::ImageName {
                    image: name.to_string(),
                    reason: format!(
                        "the name pins {d} but the bundle's manifest is {}",
                        desc.digest
                    ),
                });
            }
        }
        let unreadable = |reason: String| BundleError::UnreadableManifest {
            image: name.to_string(),
            digest: desc.digest.clone(),
            reason,
        };
        let (media_type, parsed) =
            oci::parse_manifest(&bytes, Some(&desc.media_type)).map_err(unreadable)?;
        match parsed {
            Parsed::Image { config, layers } => {
                let blobs = self.image_blobs(name, &desc.digest, &config, &layers, true)?;
                Ok(ImageEntry {
                    name: name.to_string(),
                    reference,
                    manifest_digest: desc.digest.clone(),
                    media_type,
                    manifest_bytes: bytes,
                    children: Vec::new(),
                    blobs,
                    filtered: false,
                    original_digest: None,
                    synthesized: false,
                    referrer_of: None,
                })
            }
            Parsed::Index { manifests } => {
                // a referrers fallback index lists artifacts, not platforms
                let no_filter = Vec::new();
                let wanted = match reference.tag.as_deref().and_then(referrer_tag) {
                    Some((_, None)) => &no_filter,
                    _ => &self.options.platforms,
                };
                let keep = |c: &Descriptor| {
                    wanted.is_empty()
                        || c.platform
                            .as_ref()
                            .is_some_and(|p| wanted.iter().any(|w| w.matches(p)))
                };
                let kept: Vec<&Descriptor> = manifests.iter().filter(|c| keep(c)).collect();
                if kept.is_empty() {
                    let available: Vec<String> = manifests
                        .iter()
                        .filter_map(|c| c.platform.as_ref().map(|p| p.to_string()))
                        .collect();
                    return Err(BundleError::PlatformNotAvailable {
                        image: name.to_string(),
                        wanted: platform_list(wanted),
                        available: if available.is_empty() {
                            "no platforms".into()
                        } else {
                            available.join(", ")
                        },
                    });
                }
                let mut children = Vec::with_capacity(kept.len());
                let mut blobs: Vec<BlobRef> = Vec::new();
                for child in &kept {
                    let child_bytes = self.manifest_bytes(name, child)?;
                    let (child_type, child_parsed) =
                        oci::parse_manifest(&child_bytes, Some(&child.media_type)).map_err(
                            |reason| BundleError::UnreadableManifest {
                                image: name.to_string(),
                                digest: child.digest.clone(),
                                reason,
                            },
                        )?;
                    let Parsed::Image { config, layers } = child_parsed else {
                        return Err(BundleError::UnreadableManifest {
                            image: name.to_string(),
                            digest: child.digest.clone(),
                            reason: "nested indexes are not supported".into(),
                        });
                    };
                    let child_blobs =
                        self.image_blobs(name, &child.digest, &config, &layers, false)?;
                    for b in &child_blobs {
                        if !blobs.iter().any(|o| o.digest == b.digest) {
                            blobs.push(b.clone());
                        }
                    }
                    children.push(ChildManifest {
                        platform: child.platform.clone(),
                        digest: child.digest.clone(),
                        media_type: child_type,
                        bytes: child_bytes,
                        blobs: child_blobs,
                    });
                }
                let filtered = kept.len() < manifests.len();
                let (manifest_bytes, manifest_digest, original_digest) = if filtered {
                    let new_bytes = filter_index(&bytes, &kept).map_err(unreadable)?;
                    let d = Digest::of(&new_bytes);
                    (new_bytes, d, Some(desc.digest.clone()))
                } else {
                    (bytes, desc.digest.clone(), None)
                };
                Ok(ImageEntry {
                    name: name.to_string(),
                    reference,
                    manifest_digest,
                    media_type,
                    manifest_bytes,
                    children,
                    blobs,
                    filtered,
                    original_digest,
                    synthesized: false,
                    referrer_of: None,
                })
            }
        }
    }

    fn resolve_link(&self, path: &str) -> String {
        let mut p = normalise(path);
        for _ in 0..8 {
            match self.scan.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }

    /// A file referenced by docker's manifest.json.
    fn docker_file(&mut self, image: &str, path: &str) -> Result<DockerFile, BundleError> {
        let resolved = self.resolve_link(path);
        if let Some(d) = blob_path_digest(&resolved) {
            if let Some(actual) = self.scan.corrupt.get(&d) {
                return Err(BundleError::BlobVerification {
                    digest: d.clone(),
                    images: ImageNames(vec![image.to_string()]),
                    failure: VerifyFailure::DigestMismatch {
                        actual: actual.clone(),
                    },
                });
            }
            let Some(&size) = self.scan.sizes.get(&d) else {
                return Err(BundleError::MissingBlob {
                    digest: d,
                    images: ImageNames(vec![image.to_string()]),
                });
            };
            let magic = self.scan.magic.get(&d).cloned().unwrap_or_default();
            let json = self.scan.json.get(&d).cloned();
            return Ok((d, size, magic, json));
        }
        match self.scan.files.get(&resolved) {
            Some(f) => {
                self.file_blobs.insert(resolved.clone(), f.digest.clone());
                Ok((f.digest.clone(), f.size, f.magic.clone(), f.json.clone()))
            }
            None => Err(BundleError::UnreadableIndex {
                path: self.bundle.path.clone(),
                file: "manifest.json".into(),
                reason: format!("image `{image}` references `{path}`, which is not in the archive"),
            }),
        }
    }

    fn add_docker_manifest(&mut self, manifest: &[u8]) -> Result<(), BundleError> {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(manifest).map_err(|e| BundleError::UnreadableIndex {
                path: self.bundle.path.clone(),
                file: "manifest.json".into(),
                reason: e.to_string(),
            })?;
        for entry in entries {
            let tags = entry.repo_tags.clone().unwrap_or_default();
            if tags.is_empty() {
                let label = format!("untagged image with config {}", entry.config);
                self.failures.push(ImageFailure {
                    name: label.clone(),
                    error: BundleError::ImageName {
                        image: label,
                        reason: "RepoTags is empty".into(),
                    },
                });
                continue;
            }
            for tag in tags {
                let (name, result) = match ImageRef::parse(&tag) {
                    Ok(reference) => {
                        let name = reference.to_string();
                        (name.clone(), self.docker_image(&name, reference, &entry))
                    }
                    Err(e) => (
                        tag.clone(),
                        Err(BundleError::ImageName {
                            image: tag.clone(),
                            reason: e.to_string(),
                        }),
                    ),
                };
                self.push_result(name, result);
            }
        }
        Ok(())
    }

    fn docker_image(
        &mut self,
        name: &str,
        reference: ImageRef,
        entry: &DockerManifestEntry,
    ) -> Result<ImageEntry, BundleError> {
        let (cfg_digest, cfg_size, _, cfg_json) = self.docker_file(name, &entry.config)?;
        let mut config = Descriptor::new(media_types::OCI_CONFIG, cfg_digest.clone(), cfg_size);
        config.platform = None;
        let mut layers = Vec::with_capacity(entry.layers.len());
        for l in &entry.layers {
            let (d, size, magic, _) = self.docker_file(name, l)?;
            layers.push(Descriptor::new(
                oci::sniff_layer_media_type(&magic),
                d,
                size,
            ));
        }
        if !self.options.platforms.is_empty() {
            if let Some(p) = cfg_json.as_deref().and_then(oci::config_platform) {
                if !self.options.platforms.iter().any(|w| w.matches(&p)) {
                    return Err(BundleError::PlatformNotAvailable {
                        image: name.to_string(),
                        wanted: platform_list(&self.options.platforms),
                        available: format!("only {p}"),
                    });
                }
            }
        }
        let synth = SynthManifest {
            schema_version: 2,
            media_type: media_types::OCI_MANIFEST,
            config: &config,
            layers: &layers,
        };
        let bytes = serde_json::to_vec(&synth).map_err(|e| BundleError::UnreadableManifest {
            image: name.to_string(),
            digest: cfg_digest.clone(),
            reason: e.to_string(),
        })?;
        let mut blobs = vec![BlobRef {
            digest: cfg_digest,
            size: cfg_size,
            media_type: media_types::OCI_CONFIG.to_string(),
        }];
        for l in &layers {
            if !blobs.iter().any(|b| b.digest == l.digest) {
                blobs.push(BlobRef {
                    digest: l.digest.clone(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                });
            }
        }
        let manifest_digest = Digest::of(&bytes);
        if let Some(d) = &reference.digest {
            if d != &manifest_digest {
                return Err(BundleError::ImageName {
                    image: name.to_string(),
                    reason: "a docker-save archive cannot keep a digest-pinned name: its manifest is synthesised".into(),
                });
            }
        }
        Ok(ImageEntry {
            name: name.to_string(),
            reference,
            manifest_digest,
            media_type: media_types::OCI_MANIFEST.to_string(),
            manifest_bytes: bytes,
            children: Vec::new(),
            blobs,
            filtered: false,
            original_digest: None,
            synthesized: true,
            referrer_of: None,
        })
    }
}

/// A tag of the referrers tag schema: `sha256-<hex>` (the fallback index)
/// or cosign's `sha256-<hex>.sig` / `.att` / `.sbom`: the hex and the suffix.
pub fn referrer_tag(tag: &str) -> Option<(&str, Option<&str>)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = match rest.split_once('.') {
        Some((h, s)) => (h, Some(s)),
        None => (rest, None),
    };
    let hex_ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let suffix_ok = suffix.is_none_or(|s| crate::referrers::COSIGN_SUFFIXES.contains(&s));
    (hex_ok && suffix_ok).then_some((hex, suffix))
}

fn platform_list(ps: &[Platform]) -> String {
    ps.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new index with only the kept entries (all other fields preserved).
pub(crate) fn filter_index(bytes: &[u8], kept: &[&Descriptor]) -> Result<Vec<u8>, String> {
    let mut v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let keep: HashSet<&str> = kept.iter().map(|d| d.digest.as_str()).collect();
    let manifests = v
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or("index without `manifests` array")?;
    manifests.retain(|m| {
        m.get("digest")
            .and_then(Value::as_str)
            .is_some_and(|d| keep.contains(d))
    });
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

impl Catalogue {
    /// A catalogue of `images` read from elsewhere than a bundle (e.g. the
    /// manifests of an upstream registry, for a copy): the push plan and
    /// pass work on it as on a bundle's.
    pub(crate) fn of_images(images: Vec<ImageEntry>) -> Catalogue {
        let all = Catalogue {
            format: BundleFormat::OciLayout,
            compression: Compression::None,
            images,
            failures: Vec::new(),
            blobs: Vec::new(),
            read_whole: true,
            users: BTreeMap::new(),
            file_blobs: HashMap::new(),
        };
        all.subset(|_| true)
    }

    /// A catalogue of only the images whose name `keep` accepts, with the
    /// blob list and blob users narrowed to them (failures are not carried).
    pub fn subset(&self, keep: impl Fn(&str) -> bool) -> Catalogue {
        let images: Vec<ImageEntry> = self
            .images
            .iter()
            .filter(|i| keep(&i.name))
            .cloned()
            .collect();
        let mut blobs: BTreeMap<Digest, BlobRef> = BTreeMap::new();
        let mut users: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for i in &images {
            for b in &i.blobs {
                blobs.entry(b.digest.clone()).or_insert_with(|| b.clone());
                users
                    .entry(b.digest.clone())
                    .or_default()
                    .push(i.name.clone());
            }
        }
        Catalogue {
            format: self.format,
            compression: self.compression,
            images,
            failures: Vec::new(),
            blobs: blobs.into_values().collect(),
            read_whole: self.read_whole,
            users,
            file_blobs: self.file_blobs.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(
            resolve_relative("a/layer.tar", "../b/layer.tar"),
            "b/layer.tar"
        );
        assert_eq!(resolve_relative("a/layer.tar", "/c/x"), "c/x");
        assert_eq!(normalise("./././blobs/sha256/x"), "blobs/sha256/x");
    }

    #[test]
    fn rejects_non_archives() {
        let dir = tempfile::tempdir();
        let Ok(dir) = dir else { panic!("tempdir") };
        let p = dir.path().join("x.tar.gz");
        assert!(std::fs::write(&p, b"hello world, not a tar").is_ok());
        let err = Bundle::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not a tar archive"), "{err}");
        assert!(std::fs::write(&p, b"BZh91AY").is_ok());
        let err = Bundle::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bzip2"), "{err}");
        let err = Bundle::open(dir.path().join("absent"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cannot open bundle"), "{err}");
    }
}
