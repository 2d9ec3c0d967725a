//! Copy one image from an upstream registry to a mirror, registry to
//! registry: blob bodies stream from the source `GET` straight into the
//! destination `PUT` (no temp files, never a whole blob in memory), and
//! manifests are copied byte for byte, platform manifests before the index,
//! the tag last.
//!
//! With a platform filter that drops entries of an index, the index is
//! rewritten by the same function the bundle reader uses (all other fields
//! kept) and therefore gets a new digest; [`CopyReport::filtered`] says so.
//! A warm copy (the tag already points at the expected digest) costs one
//! `GET` of the source manifest and one `HEAD` on the mirror.

use futures::StreamExt;

use crate::client::RegistryClient;
use crate::client_error::RegistryError;
use crate::digest::Digest;
use crate::oci::{self, Descriptor, Parsed};
use crate::reference::{ImageRef, Platform};

/// What [`copy_image`] did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Digest of the manifest now under the tag on the mirror.
    pub digest: Option<Digest>,
    /// The source's manifest digest.
    pub source_digest: Option<Digest>,
    /// A platform filter rewrote the index (`digest` != `source_digest`).
    pub filtered: bool,
    /// The tag already pointed at the expected digest: nothing copied.
    pub up_to_date: bool,
    /// Blobs copied.
    pub blobs_copied: usize,
    /// Blobs the mirror repository already had.
    pub blobs_skipped: usize,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Manifests `PUT`.
    pub manifests_pushed: usize,
}

/// Options of [`copy_image`].
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Keep only these platforms of an index (empty: all).
    pub platforms: Vec<Platform>,
    /// Blob copies in flight.
    pub concurrency: usize,
    /// Copy every blob even if the destination has it (`-replace`).
    pub force: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: Vec::new(),
            concurrency: 3,
            force: false,
        }
    }
}

fn unreadable(image: &str, digest: &Digest, reason: String) -> RegistryError {
    RegistryError::Platform {
        image: image.to_string(),
        reason: format!("manifest {digest} is unreadable: {reason}"),
    }
}

/// The top manifest to push for a source manifest and a platform filter.
pub(crate) struct Top {
    /// Media type of the source manifest, as its body or the registry says.
    pub(crate) media_type: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) filtered: bool,
    /// Config and layers of a single-platform image.
    pub(crate) blobs: Vec<Descriptor>,
    /// Platform manifests kept from an index.
    pub(crate) children: Vec<Descriptor>,
}

pub(crate) fn select_top(
    image: &str,
    bytes: &[u8],
    media_type: &str,
    source_digest: &Digest,
    platforms: &[Platform],
) -> Result<Top, RegistryError> {
    let (media_type, parsed) = oci::parse_manifest(bytes, Some(media_type))
        .map_err(|r| unreadable(image, source_digest, r))?;
    let media_type = media_type.to_string();
    match &parsed {
        Parsed::Image { config, layers } => {
            let mut blobs = vec![config.clone()];
            blobs.extend(layers.iter().filter(|l| !oci::is_foreign_layer(l)).cloned());
            Ok(Top {
                media_type,
                bytes: bytes.to_vec(),
                filtered: false,
                blobs,
                children: Vec::new(),
            })
        }
        Parsed::Index { manifests } => {
            let kept: Vec<&Descriptor> = manifests
                .iter()
                .filter(|c| {
                    platforms.is_empty()
                        || c.platform
                            .as_ref()
                            .is_some_and(|p| platforms.iter().any(|w| w.matches(p)))
                })
                .collect();
            if kept.is_empty() {
                let available: Vec<String> = manifests
                    .iter()
                    .filter_map(|c| c.platform.as_ref().map(|p| p.to_string()))
                    .collect();
                return Err(RegistryError::Platform {
                    image: image.to_string(),
                    reason: format!(
                        "no platform matches the filter; it has {}",
                        if available.is_empty() {
                            "no platforms".to_string()
                        } else {
                            available.join(", ")
                        }
                    ),
                });
            }
            let filtered = kept.len() < manifests.len();
            let top = if filtered {
                crate::bundle::filter_index(bytes, &kept)
                    .map_err(|r| unreadable(image, source_digest, r))?
            } else {
                bytes.to_vec()
            };
            Ok(Top {
                media_type,
                bytes: top,
                filtered,
                blobs: Vec::new(),
                children: kept.into_iter().cloned().collect(),
            })
        }
    }
}

/// What [`resolve_source`] found: the digest the mirror will serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSource {
    /// Digest of the manifest that will be pushed (after a platform filter).
    pub digest: Digest,
    /// The source's own manifest digest.
    pub source_digest: Digest,
    /// A platform filter rewrote the index.
    pub filtered: bool,
    /// Distinct blobs (configs and layers) of the image and of every platform
    /// manifest it keeps, and their bytes: what a copy sends at most.
    pub blobs: u64,
    /// Bytes of those blobs.
    pub bytes: u64,
    /// The platform manifests of an index that the filter keeps (their
    /// digests are the source's): the subjects of their referrers.
    pub platform_manifests: Vec<Digest>,
}

/// Reads the source manifest of `src_ref` (one GET, plus one per platform
/// manifest an index keeps) and works out the digest the mirror will serve
/// once [`copy_image`] ran with `platforms`, and the blobs a copy sends at most.
pub async fn resolve_source(
    src: &RegistryClient,
    src_ref: &ImageRef,
    platforms: &[Platform],
) -> Result<ResolvedSource, RegistryError> {
    let image = src_ref.to_string();
    let reference = match (&src_ref.digest, &src_ref.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let (bytes, media_type, source_digest) =
        src.get_manifest(&src_ref.repository, &reference).await?;
    let top = select_top(&image, &bytes, &media_type, &source_digest, platforms)?;
    let mut blobs: std::collections::BTreeMap<Digest, u64> = top
        .blobs
        .iter()
        .map(|d| (d.digest.clone(), d.size))
        .collect();
    for desc in &top.children {
        let (b, mt, _) = src
            .get_manifest(&src_ref.repository, desc.digest.as_str())
            .await?;
        let hint = if mt.is_empty() { &desc.media_type } else { &mt };
        let (_, parsed) =
            oci::parse_manifest(&b, Some(hint)).map_err(|r| unreadable(&image, &desc.digest, r))?;
        if let Parsed::Image { config, layers } = parsed {
            blobs.insert(config.digest.clone(), config.size);
            for l in layers.iter().filter(|l| !oci::is_foreign_layer(l)) {
                blobs.insert(l.digest.clone(), l.size);
            }
        }
    }
    Ok(ResolvedSource {
        digest: Digest::of(&top.bytes),
        source_digest,
        filtered: top.filtered,
        blobs: blobs.len() as u64,
        bytes: blobs.values().sum(),
        platform_manifests: top.children.iter().map(|c| c.digest.clone()).collect(),
    })
}

/// Copy `src_ref` (its repository, and its digest or else its tag) from
/// `src` to `dst` as `dst_repo:tag` (`tag` `None`: by digest only).
pub async fn copy_image(
    src: &RegistryClient,
    src_ref: &ImageRef,
    dst: &RegistryClient,
    dst_repo: &str,
    tag: Option<&str>,
    options: &CopyOptions,
) -> Result<CopyReport, RegistryError> {
    let image = src_ref.to_string();
    let src_repo = src_ref.repository.as_str();
    let reference = match (&src_ref.digest, &src_ref.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let (bytes, media_type, source_digest) = src.get_manifest(src_repo, &reference).await?;
    let top = select_top(
        &image,
        &bytes,
        &media_type,
        &source_digest,
        &options.platforms,
    )?;
    let media_type = top.media_type;
    let (top_bytes, filtered) = (top.bytes, top.filtered);
    let top_blobs = top.blobs;
    let mut children: Vec<(Descriptor, Vec<u8>, String, Vec<Descriptor>)> = top
        .children
        .into_iter()
        .map(|c| (c, Vec::new(), String::new(), Vec::new()))
        .collect();
    let final_digest = Digest::of(&top_bytes);
    let dst_reference = match tag {
        Some(t) => t.to_string(),
        None => final_digest.to_string(),
    };
    let mut report = CopyReport {
        digest: Some(final_digest.clone()),
        source_digest: Some(source_digest.clone()),
        filtered,
        ..CopyReport::default()
    };
    // (`-replace`: copied whole, whatever the destination has)
    let there = if options.force {
        None
    } else {
        dst.head_manifest(dst_repo, &dst_reference).await?
    };
    if let Some(info) = there {
        if info.digest == final_digest {
            report.up_to_date = true;
            return Ok(report);
        }
    }

    // Child manifests from the source.
    for (desc, cbytes, cmt, cblobs) in children.iter_mut() {
        let (b, mt, _) = src.get_manifest(src_repo, desc.digest.as_str()).await?;
        let (mt, p) =
            oci::parse_manifest(&b, Some(if mt.is_empty() { &desc.media_type } else { &mt }))
                .map_err(|r| unreadable(&image, &desc.digest, r))?;
        let Parsed::Image { config, layers } = p else {
            return Err(unreadable(
                &image,
                &desc.digest,
                "nested indexes are not supported".into(),
            ));
        };
        cblobs.push(config);
        cblobs.extend(layers.into_iter().filter(|l| !oci::is_foreign_layer(l)));
        *cbytes = b;
        *cmt = mt;
    }

    // Blobs, distinct, in parallel.
    let mut blobs: Vec<Descriptor> = Vec::new();
    for d in top_blobs
        .iter()
        .chain(children.iter().flat_map(|c| c.3.iter()))
    {
        if !blobs.iter().any(|b| b.digest == d.digest) {
            blobs.push(d.clone());
        }
    }
    let results: Vec<Result<Option<u64>, RegistryError>> = futures::stream::iter(blobs.iter())
        .map(|b| {
            copy_blob(
                src,
                src_repo,
                dst,
                (dst_repo, options.force),
                &b.digest,
                b.size,
            )
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    for r in results {
        match r? {
            Some(n) => {
                report.blobs_copied += 1;
                report.bytes_copied += n;
            }
            None => report.blobs_skipped += 1,
        }
    }

    // Manifests: children first, then the top one under the tag.
    for (desc, cbytes, cmt, _) in &children {
        dst.put_manifest(dst_repo, desc.digest.as_str(), cmt, cbytes)
            .await?;
        report.manifests_pushed += 1;
    }
    dst.put_manifest(dst_repo, &dst_reference, &media_type, &top_bytes)
        .await?;
    report.manifests_pushed += 1;
    Ok(report)
}

/// Copy one blob unless the destination has it (unless `force`).
/// `Some(bytes)` when copied. A failed transfer is tried once more (the
/// source can be read again).
async fn copy_blob(
    src: &RegistryClient,
    src_repo: &str,
    dst: &RegistryClient,
    (dst_repo, force): (&str, bool),
    digest: &Digest,
    size: u64,
) -> Result<Option<u64>, RegistryError> {
    if !force && dst.head_blob(dst_repo, digest).await?.is_some() {
        return Ok(None);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let chunked_before = dst.uploads_chunked();
        let (_, body) = src.get_blob(src_repo, digest).await?;
        match dst.upload_blob(dst_repo, digest, size, body).await {
            Ok(()) => return Ok(Some(size)),
            Err(e) => {
                let retry = matches!(
                    e,
                    RegistryError::Transfer { .. } | RegistryError::Source { .. }
                ) || (!chunked_before && dst.uploads_chunked());
                if !retry || attempt >= 2 {
                    return Err(e);
                }
            }
        }
    }
}
