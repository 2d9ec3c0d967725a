//! Deterministic test bundles, for unit, integration tests and benchmarks.
//!
//! [`write_oci_bundle`] writes an OCI image layout packed as tar, tar.gz,
//! tar.xz or tar.zst: N images, each with shared base layers plus its own
//! seeded-random layers (gzip or uncompressed), image 0 optionally a
//! two-platform index (linux/amd64 + linux/arm64). [`write_docker_archive`]
//! writes the same images as a `docker save` archive. Corrupt variants
//! ([`Corruption`], [`truncate_copy`]) exercise the error paths. The same
//! spec always yields the same bytes and digests. Layers are generated one
//! at a time, so large benchmark bundles need little memory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::digest::Digest;
use crate::oci::{media_types, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use crate::reference::{ImageRef, Platform};

/// Fixed mtime of every tar entry (2020-01-01).
const EPOCH: u64 = 1_577_836_800;

/// A small deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fill a buffer.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn mix(seed: u64, parts: &[u64]) -> u64 {
    let mut r = Rng::new(seed);
    let mut acc = r.next_u64();
    for p in parts {
        r = Rng::new(acc ^ p.wrapping_mul(0x2545_f491_4f6c_dd1d));
        acc = r.next_u64();
    }
    acc
}

/// How the archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// `.tar`
    Tar,
    /// `.tar.gz`
    TarGz,
    /// `.tar.xz`
    TarXz,
    /// `.tar.zst`
    TarZst,
}

impl Packing {
    /// All packings.
    pub const ALL: [Packing; 4] = [
        Packing::Tar,
        Packing::TarGz,
        Packing::TarXz,
        Packing::TarZst,
    ];

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Packing::Tar => "tar",
            Packing::TarGz => "tar.gz",
            Packing::TarXz => "tar.xz",
            Packing::TarZst => "tar.zst",
        }
    }
}

/// How layers are compressed inside the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// Every layer gzip.
    Gzip,
    /// Every layer a plain tar.
    None,
    /// Alternating gzip / plain.
    Mixed,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    /// Seed for all random content.
    pub seed: u64,
    /// Number of named images.
    pub images: usize,
    /// Layers of each image (per platform) besides the shared base.
    pub layers_per_image: usize,
    /// Base layers shared by every image.
    pub shared_base_layers: usize,
    /// Payload bytes per layer (before compression).
    pub layer_size: usize,
    /// Image 0 is a two-platform index (OCI bundles only).
    pub multi_arch: bool,
    /// Layer compression.
    pub layer_compression: LayerCompression,
}

impl Default for FixtureSpec {
    fn default() -> Self {
        FixtureSpec {
            seed: 42,
            images: 3,
            layers_per_image: 2,
            shared_base_layers: 1,
            layer_size: 16 * 1024,
            multi_arch: true,
            layer_compression: LayerCompression::Mixed,
        }
    }
}

/// Deliberate damage for error-path tests (OCI bundles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// A good bundle.
    None,
    /// The last own layer of image 0 has the right size but wrong bytes
    /// (caught while streaming).
    WrongLayerContent,
    /// The last own layer of the last image is left out of the archive.
    MissingLayer,
    /// The config of the last image has wrong bytes (caught in pass 1).
    WrongConfigContent,
    /// `index.json` is not JSON.
    UnreadableIndex,
    /// The last image's index.json entry has no name annotation.
    Unnamed,
}

/// One generated image.
#[derive(Debug, Clone)]
pub struct FixtureImage {
    /// Full normalised upstream name (as [`crate::ImageEntry::name`]).
    pub name: String,
    /// Top manifest digest (`None` for docker archives, whose manifest the
    /// reader synthesises).
    pub manifest_digest: Option<Digest>,
    /// Top manifest media type.
    pub media_type: String,
    /// Platforms (two for the multi-arch image).
    pub platforms: Vec<Platform>,
    /// Platform manifest digests (multi-arch image).
    pub child_digests: Vec<Digest>,
    /// Config and layer digests over all platforms, distinct.
    pub blobs: Vec<Digest>,
}

/// A generated bundle.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Where it was written.
    pub path: PathBuf,
    /// Its images, in order.
    pub images: Vec<FixtureImage>,
    /// Every config/layer blob in the archive with its size.
    pub blobs: BTreeMap<Digest, u64>,
    /// The blob damaged by the corruption, if any.
    pub corrupted: Option<Digest>,
}

/// Upstream name of image `i` as written in the bundle (varied forms).
pub fn image_name(i: usize) -> String {
    match i % 3 {
        0 => format!("gcr.io/mirrorplan-fixtures/app-{i}:1.{i}"),
        1 => format!("quay.io/mirrorplan/tool-{i}:v{i}"),
        _ => format!("docker.io/library/base-{i}:latest"),
    }
}

fn short_docker_name(i: usize) -> String {
    match i % 3 {
        2 => format!("base-{i}:latest"),
        _ => image_name(i),
    }
}

fn normalised(name: &str) -> io::Result<String> {
    ImageRef::parse(name)
        .map(|r| r.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

struct Layer {
    bytes: Vec<u8>,
    diff_id: Digest,
    media_type: &'static str,
}

/// Build one layer: a tar with a single seeded-random file (half random,
/// half text so gzip has work), gzip-compressed or not.
fn make_layer(seed: u64, size: usize, gzip: bool, label: &str) -> io::Result<Layer> {
    let mut payload = vec![0u8; size];
    let half = size / 2;
    Rng::new(seed).fill(&mut payload[..half]);
    let text = format!("mirrorplan fixture layer {label}\n");
    for (i, b) in payload[half..].iter_mut().enumerate() {
        *b = text.as_bytes()[i % text.len()];
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(payload.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(EPOCH);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, format!("data/{label}.bin"), &payload[..])?;
    let raw = builder.into_inner()?;
    let diff_id = Digest::of(&raw);
    if gzip {
        let mut enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw)?;
        Ok(Layer {
            bytes: enc.finish()?,
            diff_id,
            media_type: media_types::OCI_LAYER_GZIP,
        })
    } else {
        Ok(Layer {
            bytes: raw,
            diff_id,
            media_type: media_types::OCI_LAYER_TAR,
        })
    }
}

/// A file written through the compression of a [`Packing`] (call
/// [`Out::finish`] to end the stream and sync the file).
pub enum Out {
    Plain(BufWriter<File>),
    Gz(flate2::write::GzEncoder<BufWriter<File>>),
    Xz(liblzma::write::XzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Out {
    /// Creates `path` (truncating it) for `packing`.
    pub fn create(path: &Path, packing: Packing) -> io::Result<Out> {
        let f = BufWriter::new(File::create(path)?);
        Ok(match packing {
            Packing::Tar => Out::Plain(f),
            Packing::TarGz => Out::Gz(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(f, flate2::Compression::fast()),
            ),
            // blocks of 64 KiB, as a multi-threaded `xz -T0` writes (of a
            // few MiB): readers can start at any block
            Packing::TarXz => Out::Xz(liblzma::write::XzEncoder::new_stream(
                f,
                liblzma::stream::MtStreamBuilder::new()
                    .threads(1)
                    .block_size(64 * 1024)
                    .preset(1)
                    .check(liblzma::stream::Check::Crc64)
                    .encoder()
                    .map_err(io::Error::other)?,
            )),
            Packing::TarZst => Out::Zstd(zstd::stream::write::Encoder::new(f, 3)?),
        })
    }

    /// Ends the compressed stream, flushes and syncs the file.
    pub fn finish(self) -> io::Result<()> {
        let mut inner = match self {
            Out::Plain(w) => w,
            Out::Gz(w) => w.finish()?,
            Out::Xz(w) => w.finish()?,
            Out::Zstd(w) => w.finish()?,
        };
        inner.flush()?;
        inner.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Plain(w) => w.write(buf),
            Out::Gz(w) => w.write(buf),
            Out::Xz(w) => w.write(buf),
            Out::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Plain(w) => w.flush(),
            Out::Gz(w) => w.flush(),
            Out::Xz(w) => w.flush(),
            Out::Zstd(w) => w.flush(),
        }
    }
}

struct TarOut {
    builder: tar::Builder<Out>,
}

impl TarOut {
    fn create(path: &Path, packing: Packing) -> io::Result<TarOut> {
        let mut builder = tar::Builder::new(Out::create(path, packing)?);
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(TarOut { builder })
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(EPOCH);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0, 0o755);
        self.builder.append_data(&mut h, path, io::empty())
    }

    fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, data.len() as u64, 0o644);
        self.builder.append_data(&mut h, path, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0, 0o777);
        self.builder.append_link(&mut h, path, target)
    }

    fn finish(self) -> io::Result<()> {
        self.builder.into_inner()?.finish()
    }
}

/// Write a "JSON bomb" (a test of pass 1's bounds): `oci-layout`, then
/// `entries` blobs of `entry_size` bytes each named by their true digest,
/// each a `{` followed by a counter and zeros (a compressor shrinks them to
/// almost nothing), and no `index.json`.
pub fn write_json_bomb(
    path: impl AsRef<Path>,
    entries: usize,
    entry_size: usize,
    packing: Packing,
) -> io::Result<()> {
    let mut out = TarOut::create(path.as_ref(), packing)?;
    out.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    out.dir("blobs/")?;
    out.dir("blobs/sha256/")?;
    let mut data = vec![0u8; entry_size.max(9)];
    data[0] = b'{';
    for i in 0..entries {
        data[1..9].copy_from_slice(&(i as u64).to_le_bytes());
        out.file(&blob_path(&Digest::of(&data)), &data)?;
    }
    out.finish()
}

/// Blobs of one platform of one image, generated lazily.
struct PlatformImage {
    platform: Platform,
    config: Vec<u8>,
    layers: Vec<(Digest, u64, &'static str)>,
}

fn layer_seed(spec: &FixtureSpec, kind: u64, image: usize, platform: usize, idx: usize) -> u64 {
    mix(
        spec.seed,
        &[kind, image as u64, platform as u64, idx as u64],
    )
}

fn layer_gzip(spec: &FixtureSpec, idx: usize) -> bool {
    match spec.layer_compression {
        LayerCompression::Gzip => true,
        LayerCompression::None => false,
        LayerCompression::Mixed => idx & 1 == 0,
    }
}

/// Generates the layers of one image/platform, writing each new layer to
/// `emit` as soon as it exists (shared layers only once).
fn build_platform(
    spec: &FixtureSpec,
    image: usize,
    pidx: usize,
    arch: &str,
    written: &mut BTreeSet<Digest>,
    emit: &mut dyn FnMut(usize, &Digest, &Layer) -> io::Result<()>,
) -> io::Result<PlatformImage> {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let total = spec.shared_base_layers + spec.layers_per_image;
    for idx in 0..total {
        let (seed, label) = if idx < spec.shared_base_layers {
            (layer_seed(spec, 1, 0, 0, idx), format!("base-{idx}"))
        } else {
            (
                layer_seed(spec, 2, image, pidx, idx),
                format!("image-{image}-{arch}-{idx}"),
            )
        };
        let layer = make_layer(seed, spec.layer_size, layer_gzip(spec, idx), &label)?;
        let d = Digest::of(&layer.bytes);
        if written.insert(d.clone()) {
            emit(idx, &d, &layer)?;
        }
        diff_ids.push(layer.diff_id.to_string());
        layers.push((d, layer.bytes.len() as u64, layer.media_type));
    }
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "created": "2020-01-01T00:00:00Z",
        "config": { "Env": ["PATH=/bin"], "Labels": { "fixture": format!("image-{image}") } },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    Ok(PlatformImage {
        platform: Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        },
        config: serde_json::to_vec(&config).map_err(io::Error::other)?,
        layers,
    })
}

fn manifest_json(p: &PlatformImage) -> io::Result<Vec<u8>> {
    let layers: Vec<_> = p
        .layers
        .iter()
        .map(|(d, size, mt)| json!({ "mediaType": mt, "digest": d.to_string(), "size": size }))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {
            "mediaType": media_types::OCI_CONFIG,
            "digest": Digest::of(&p.config).to_string(),
            "size": p.config.len(),
        },
        "layers": layers,
    });
    serde_json::to_vec(&m).map_err(io::Error::other)
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn damage(bytes: &mut [u8]) {
    if let Some(b) = bytes.last_mut() {
        *b ^= 0xff;
    }
}

/// Write a good OCI bundle.
pub fn write_oci_bundle(
    path: impl AsRef<Path>,
    spec: &FixtureSpec,
    packing: Packing,
) -> io::Result<Fixture> {
    write_oci_bundle_with(path, spec, packing, Corruption::None)
}

/// Write an OCI bundle, possibly damaged.
pub fn write_oci_bundle_with(
    path: impl AsRef<Path>,
    spec: &FixtureSpec,
    packing: Packing,
    corruption: Corruption,
) -> io::Result<Fixture> {
    let path = path.as_ref().to_path_buf();
    let mut out = TarOut::create(&path, packing)?;
    out.dir("blobs/")?;
    out.dir("blobs/sha256/")?;
    let mut written = BTreeSet::new();
    let mut blobs = BTreeMap::new();
    let mut images = Vec::new();
    let mut index_entries = Vec::new();
    let mut corrupted = None;
    let last = spec.images.saturating_sub(1);
    for i in 0..spec.images {
        let archs: &[&str] = if spec.multi_arch && i == 0 {
            &["amd64", "arm64"]
        } else {
            &["amd64"]
        };
        let mut plats = Vec::new();
        for (pidx, arch) in archs.iter().enumerate() {
            // Damage the last own layer of this image/platform?
            let last_idx = spec.shared_base_layers + spec.layers_per_image - 1;
            let target = spec.layers_per_image > 0
                && pidx == archs.len() - 1
                && match corruption {
                    Corruption::WrongLayerContent => i == 0,
                    Corruption::MissingLayer => i == last,
                    _ => false,
                };
            let mut emit = |idx: usize, d: &Digest, layer: &Layer| -> io::Result<()> {
                blobs.insert(d.clone(), layer.bytes.len() as u64);
                if target && idx == last_idx {
                    corrupted = Some(d.clone());
                    if corruption == Corruption::MissingLayer {
                        blobs.remove(d);
                        return Ok(());
                    }
                    let mut bad = layer.bytes.clone();
                    damage(&mut bad);
                    return out.file(&blob_path(d), &bad);
                }
                out.file(&blob_path(d), &layer.bytes)
            };
            let p = build_platform(spec, i, pidx, arch, &mut written, &mut emit)?;
            let cd = Digest::of(&p.config);
            if written.insert(cd.clone()) {
                blobs.insert(cd.clone(), p.config.len() as u64);
                if corruption == Corruption::WrongConfigContent && i == last {
                    let mut bad = p.config.clone();
                    damage(&mut bad);
                    out.file(&blob_path(&cd), &bad)?;
                    corrupted = Some(cd.clone());
                } else {
                    out.file(&blob_path(&cd), &p.config)?;
                }
            }
            plats.push(p);
        }
        let mut image_blobs: Vec<Digest> = Vec::new();
        for p in &plats {
            for d in
                std::iter::once(Digest::of(&p.config)).chain(p.layers.iter().map(|l| l.0.clone()))
            {
                if !image_blobs.contains(&d) {
                    image_blobs.push(d);
                }
            }
        }
        let mut child_digests = Vec::new();
        let (top_bytes, top_type) = if plats.len() > 1 {
            let mut entries = Vec::new();
            for p in &plats {
                let m = manifest_json(p)?;
                let d = Digest::of(&m);
                out.file(&blob_path(&d), &m)?;
                entries.push(json!({
                    "mediaType": media_types::OCI_MANIFEST,
                    "digest": d.to_string(),
                    "size": m.len(),
                    "platform": { "os": p.platform.os, "architecture": p.platform.architecture },
                }));
                child_digests.push(d);
            }
            let idx = json!({ "schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": entries });
            (
                serde_json::to_vec(&idx).map_err(io::Error::other)?,
                media_types::OCI_INDEX,
            )
        } else {
            let first = plats
                .first()
                .ok_or_else(|| io::Error::other("image without platform"))?;
            (manifest_json(first)?, media_types::OCI_MANIFEST)
        };
        let top = Digest::of(&top_bytes);
        out.file(&blob_path(&top), &top_bytes)?;
        let raw_name = image_name(i);
        let annotation = if i % 2 == 0 {
            ANNOTATION_CONTAINERD_NAME
        } else {
            ANNOTATION_REF_NAME
        };
        let mut entry =
            json!({ "mediaType": top_type, "digest": top.to_string(), "size": top_bytes.len() });
        if !(corruption == Corruption::Unnamed && i == last) {
            entry["annotations"] = json!({ annotation: raw_name });
        }
        index_entries.push(entry);
        images.push(FixtureImage {
            name: normalised(&raw_name)?,
            manifest_digest: Some(top),
            media_type: top_type.to_string(),
            platforms: plats.iter().map(|p| p.platform.clone()).collect(),
            child_digests,
            blobs: image_blobs,
        });
    }
    let index = if corruption == Corruption::UnreadableIndex {
        b"{\"schemaVersion\": 2, \"manifests\": [ this is not json".to_vec()
    } else {
        serde_json::to_vec_pretty(&json!({ "schemaVersion": 2, "manifests": index_entries }))
            .map_err(io::Error::other)?
    };
    out.file("index.json", &index)?;
    out.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    out.finish()?;
    Ok(Fixture {
        path,
        images,
        blobs,
        corrupted,
    })
}

/// Write a `docker save` archive of the spec's images (single platform,
/// linux/amd64, layers uncompressed as `<id>/layer.tar`; the second image
/// reaches its first base layer through a symlink, as Docker does for
/// layers shared under another id).
pub fn write_docker_archive(
    path: impl AsRef<Path>,
    spec: &FixtureSpec,
    packing: Packing,
) -> io::Result<Fixture> {
    let path = path.as_ref().to_path_buf();
    let spec = FixtureSpec {
        layer_compression: LayerCompression::None,
        multi_arch: false,
        ..spec.clone()
    };
    let mut out = TarOut::create(&path, packing)?;
    let mut written = BTreeSet::new();
    let mut blobs = BTreeMap::new();
    let mut images = Vec::new();
    let mut manifest = Vec::new();
    let mut repositories = serde_json::Map::new();
    for i in 0..spec.images {
        let mut emit = |_: usize, d: &Digest, layer: &Layer| -> io::Result<()> {
            blobs.insert(d.clone(), layer.bytes.len() as u64);
            out.dir(&format!("{}/", d.hex()))?;
            out.file(&format!("{}/VERSION", d.hex()), b"1.0")?;
            out.file(
                &format!("{}/json", d.hex()),
                format!("{{\"id\":\"{}\"}}", d.hex()).as_bytes(),
            )?;
            out.file(&format!("{}/layer.tar", d.hex()), &layer.bytes)
        };
        let p = build_platform(&spec, i, 0, "amd64", &mut written, &mut emit)?;
        let cd = Digest::of(&p.config);
        blobs.insert(cd.clone(), p.config.len() as u64);
        out.file(&format!("{}.json", cd.hex()), &p.config)?;
        let mut layer_paths = Vec::new();
        for (n, (d, _, _)) in p.layers.iter().enumerate() {
            if i == 1 && n == 0 && spec.shared_base_layers > 0 {
                let link_id = Digest::of(format!("link-{i}-{n}").as_bytes());
                out.dir(&format!("{}/", link_id.hex()))?;
                out.symlink(
                    &format!("{}/layer.tar", link_id.hex()),
                    &format!("../{}/layer.tar", d.hex()),
                )?;
                layer_paths.push(format!("{}/layer.tar", link_id.hex()));
            } else {
                layer_paths.push(format!("{}/layer.tar", d.hex()));
            }
        }
        let tag = short_docker_name(i);
        manifest.push(json!({ "Config": format!("{}.json", cd.hex()), "RepoTags": [tag], "Layers": layer_paths }));
        if let Some((repo, t)) = tag.rsplit_once(':') {
            repositories.insert(
                repo.to_string(),
                json!({ t: p.layers.last().map(|l| l.0.hex().to_string()) }),
            );
        }
        let mut image_blobs = vec![cd];
        for (d, _, _) in &p.layers {
            if !image_blobs.contains(d) {
                image_blobs.push(d.clone());
            }
        }
        images.push(FixtureImage {
            name: normalised(&image_name(i))?,
            manifest_digest: None,
            media_type: media_types::OCI_MANIFEST.to_string(),
            platforms: vec![p.platform.clone()],
            child_digests: Vec::new(),
            blobs: image_blobs,
        });
    }
    out.file(
        "manifest.json",
        &serde_json::to_vec(&manifest).map_err(io::Error::other)?,
    )?;
    out.file(
        "repositories",
        &serde_json::to_vec(&repositories).map_err(io::Error::other)?,
    )?;
    out.finish()?;
    Ok(Fixture {
        path,
        images,
        blobs,
        corrupted: None,
    })
}

/// Copy the first `keep` bytes of `src` to `dst` (a truncated download).
pub fn truncate_copy(src: impl AsRef<Path>, dst: impl AsRef<Path>, keep: u64) -> io::Result<()> {
    let mut input = File::open(src)?.take(keep);
    let mut output = File::create(dst)?;
    io::copy(&mut input, &mut output)?;
    output.sync_all()
}

/// Member orders for [`repack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOrder {
    /// Sorted by path, as `tar --sort=name -cf - blobs index.json
    /// oci-layout` writes a layout: `blobs/` first, `index.json` after them.
    Name,
    /// The same, backwards: `oci-layout`, `index.json`, then the blobs by
    /// digest descending.
    Reverse,
}

/// Rewrites the plain-tar bundle `src` as `dst`, its members in `order`,
/// through `packing` (`.xz` in blocks of 64 KiB, or in one block, as a
/// single-threaded `xz` writes it, when `one_xz_block`). The decoded tar
/// has the size of `src`.
pub fn repack(
    src: &Path,
    dst: &Path,
    order: MemberOrder,
    packing: Packing,
    one_xz_block: bool,
) -> io::Result<()> {
    let mut archive = tar::Archive::new(File::open(src)?);
    let mut members = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let path = entry.path()?.to_string_lossy().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        members.push((path, header, data));
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    if order == MemberOrder::Reverse {
        members.reverse();
    }
    let out = if packing == Packing::TarXz && one_xz_block {
        Out::Xz(liblzma::write::XzEncoder::new(
            BufWriter::new(File::create(dst)?),
            1,
        ))
    } else {
        Out::create(dst, packing)?
    };
    let mut builder = tar::Builder::new(out);
    for (path, mut header, data) in members {
        builder.append_data(&mut header, &path, &data[..])?;
    }
    builder.into_inner()?.finish()
}
