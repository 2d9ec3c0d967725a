//! Copy images from an upstream registry to a mirror, registry to
//! registry: blob bodies stream from the source `GET` straight into the
//! destination `PUT` (no temp files, never a whole blob in memory), and
//! manifests are copied byte for byte, platform manifests before the index,
//! the tag last. [`copy_images`] copies many images in one pass with the
//! bundle push's plan and machinery ([`crate::plan`], [`crate::push_remote`]):
//! several blobs at once, each once, mounted into the other repositories
//! that need it.
//!
//! With a platform filter that drops entries of an index, the index is
//! rewritten by the same function the bundle reader uses (all other fields
//! kept) and therefore gets a new digest; [`CopyReport::filtered`] says so.
//! A warm copy (the tag already points at the expected digest) costs one
//! `GET` of the source manifest and one `HEAD` on the mirror.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::StreamExt;

use crate::bundle::{BlobRef, Catalogue, ChildManifest, ImageEntry};
use crate::client::RegistryClient;
use crate::client_error::RegistryError;
use crate::digest::Digest;
use crate::oci::{self, Descriptor, Parsed};
use crate::plan::{plan_push_to, ImageStatus};
use crate::push_remote::{run_task, Finished, Pair, Task, Waits};
use crate::reference::{ImageRef, MirrorRef, Platform};

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

/// The manifest reference of `src_ref` on its registry: its digest, else
/// its tag, else `latest`.
fn source_reference(src_ref: &ImageRef) -> String {
    match (&src_ref.digest, &src_ref.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    }
}

/// Reads the manifests of `src_ref` (one `GET`, plus one per platform
/// manifest an index keeps after `platforms`) into a catalogue entry: the
/// exact bytes to push and every config and layer blob the copy needs.
async fn read_source(
    src: &RegistryClient,
    src_ref: &ImageRef,
    platforms: &[Platform],
) -> Result<ImageEntry, RegistryError> {
    let image = src_ref.to_string();
    let (bytes, media_type, source_digest) = src
        .get_manifest(&src_ref.repository, &source_reference(src_ref))
        .await?;
    let top = select_top(&image, &bytes, &media_type, &source_digest, platforms)?;
    let mut blobs: Vec<BlobRef> = Vec::new();
    let add = |d: &Descriptor, blobs: &mut Vec<BlobRef>| {
        if !blobs.iter().any(|b| b.digest == d.digest) {
            blobs.push(BlobRef {
                digest: d.digest.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
            });
        }
    };
    for d in &top.blobs {
        add(d, &mut blobs);
    }
    let mut children = Vec::with_capacity(top.children.len());
    for desc in &top.children {
        let (b, mt, _) = src
            .get_manifest(&src_ref.repository, desc.digest.as_str())
            .await?;
        let hint = if mt.is_empty() { &desc.media_type } else { &mt };
        let (mt, parsed) =
            oci::parse_manifest(&b, Some(hint)).map_err(|r| unreadable(&image, &desc.digest, r))?;
        let Parsed::Image { config, layers } = parsed else {
            return Err(unreadable(
                &image,
                &desc.digest,
                "nested indexes are not supported".into(),
            ));
        };
        let mut own = Vec::new();
        for d in std::iter::once(&config).chain(layers.iter().filter(|l| !oci::is_foreign_layer(l)))
        {
            add(d, &mut blobs);
            add(d, &mut own);
        }
        children.push(ChildManifest {
            platform: desc.platform.clone(),
            digest: desc.digest.clone(),
            media_type: mt.to_string(),
            bytes: b,
            blobs: own,
        });
    }
    Ok(ImageEntry {
        name: image,
        reference: src_ref.clone(),
        manifest_digest: Digest::of(&top.bytes),
        media_type: top.media_type,
        manifest_bytes: top.bytes,
        children,
        blobs,
        filtered: top.filtered,
        original_digest: top.filtered.then_some(source_digest),
        synthesized: false,
        referrer_of: None,
    })
}

/// Reads the source manifest of `src_ref` (one GET, plus one per platform
/// manifest an index keeps) and works out the digest the mirror will serve
/// once [`copy_image`] ran with `platforms`, and the blobs a copy sends at most.
pub async fn resolve_source(
    src: &RegistryClient,
    src_ref: &ImageRef,
    platforms: &[Platform],
) -> Result<ResolvedSource, RegistryError> {
    let entry = read_source(src, src_ref, platforms).await?;
    Ok(ResolvedSource {
        source_digest: entry
            .original_digest
            .clone()
            .unwrap_or_else(|| entry.manifest_digest.clone()),
        digest: entry.manifest_digest.clone(),
        filtered: entry.filtered,
        blobs: entry.blobs.len() as u64,
        bytes: entry.blob_bytes(),
        platform_manifests: entry.children.iter().map(|c| c.digest.clone()).collect(),
    })
}

/// One image of a [`copy_images`] pass.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// The image on the upstream registry (its digest, else its tag).
    pub source: ImageRef,
    /// Its repository on the mirror.
    pub repository: String,
    /// Its tag there (`None`: by digest only).
    pub tag: Option<String>,
    /// Keep only these platforms of an index (empty: all).
    pub platforms: Vec<Platform>,
    /// Copy it whole even where the mirror has it (`-replace`).
    pub force: bool,
}

/// The outcome of one image of a [`copy_images`] pass: an error shared by
/// several images (a blob they all use, a registry-wide failure) is the
/// same `Arc`.
pub type CopyResult = Result<CopyReport, Arc<RegistryError>>;

/// Copy `src_ref` (its repository, and its digest or else its tag) from
/// `src` to `dst` as `dst_repo:tag` (`tag` `None`: by digest only): a
/// [`copy_images`] pass of one image.
pub async fn copy_image(
    src: &RegistryClient,
    src_ref: &ImageRef,
    dst: &RegistryClient,
    dst_repo: &str,
    tag: Option<&str>,
    options: &CopyOptions,
) -> Result<CopyReport, RegistryError> {
    let request = CopyRequest {
        source: src_ref.clone(),
        repository: dst_repo.to_string(),
        tag: tag.map(str::to_string),
        platforms: options.platforms.clone(),
        force: options.force,
    };
    let mut results = copy_images(src, dst, &[request], options).await;
    match results.pop() {
        Some(Ok(report)) => Ok(report),
        Some(Err(e)) => {
            Err(Arc::try_unwrap(e).unwrap_or_else(|e| RegistryError::Internal(e.to_string())))
        }
        None => Err(RegistryError::Internal("the copy reported nothing".into())),
    }
}

/// Copy several images from `src` to `dst` in one pass, with the bundle
/// push's plan and ordering (see [`crate::push_remote`]): the upstream
/// manifests are read first (`options.concurrency` at a time); then one
/// manifest `HEAD` per image and one blob `HEAD` per (repository, blob) of
/// the images not up to date; each missing blob is copied once, streamed
/// from the source `GET` into the mirror's `PUT` (never whole in memory,
/// `options.concurrency` at a time, largest first), into the first
/// repository that needs it, and mounted into the others as soon as it is
/// there; an image's platform manifests, then its top manifest under its
/// tag, are put as soon as all its blobs are in its repository. Manifests
/// are copied byte for byte (unless a platform filter rewrote an index).
/// `options.platforms` and `options.force` are ignored: each request has
/// its own. One result per request, in order.
pub async fn copy_images(
    src: &RegistryClient,
    dst: &RegistryClient,
    requests: &[CopyRequest],
    options: &CopyOptions,
) -> Vec<CopyResult> {
    let concurrency = options.concurrency.max(1);
    let mut out: Vec<Option<CopyResult>> = requests.iter().map(|_| None).collect();

    // ----- the upstream's manifests ----------------------------------------
    let read: Vec<Result<ImageEntry, RegistryError>> = futures::stream::iter(requests)
        .map(|r| read_source(src, &r.source, &r.platforms))
        .buffered(concurrency)
        .collect()
        .await;
    let mut entries = Vec::new();
    // catalogue index -> request index
    let mut of_request = Vec::new();
    let mut mirrors = Vec::new();
    for (i, r) in read.into_iter().enumerate() {
        match r {
            Ok(e) => {
                mirrors.push(MirrorRef {
                    repository: requests[i].repository.clone(),
                    tag: requests[i].tag.clone(),
                    digest: None,
                });
                entries.push(e);
                of_request.push(i);
            }
            Err(e) => out[i] = Some(Err(Arc::new(e))),
        }
    }
    let catalogue = Catalogue::of_images(entries);
    // digest -> a source repository holding it
    let mut source_repo: HashMap<Digest, String> = HashMap::new();
    for image in &catalogue.images {
        for b in &image.blobs {
            source_repo
                .entry(b.digest.clone())
                .or_insert_with(|| image.reference.repository.clone());
        }
    }

    // ----- the plan: what the mirror has -------------------------------------
    // `-replace`: the image is copied as if the mirror had none of it
    let mut known_absent = HashSet::new();
    let mut known_tags = HashMap::new();
    for ((image, mirror), i) in catalogue.images.iter().zip(&mirrors).zip(&of_request) {
        if requests[*i].force {
            for b in &image.blobs {
                known_absent.insert((mirror.repository.clone(), b.digest.clone()));
            }
            let reference = mirror
                .tag
                .clone()
                .unwrap_or_else(|| image.manifest_digest.to_string());
            known_tags.insert((mirror.repository.clone(), reference), None);
        }
    }
    let plan = match plan_push_to(
        &catalogue,
        mirrors,
        dst,
        concurrency,
        &HashMap::new(),
        &known_absent,
        &known_tags,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            let e = Arc::new(e);
            for i in &of_request {
                out[*i] = Some(Err(e.clone()));
            }
            return finish(out);
        }
    };

    // ----- copies, mounts and manifests, overlapped ---------------------------
    let mut waits = Waits::new(&catalogue, &plan);
    // nothing to verify after the copies (the bundle pass checks the blobs it
    // does not upload; the registry checks each copied blob's digest)
    let mut queue: VecDeque<Task> = waits
        .verified(&HashSet::new())
        .into_iter()
        .map(Task::Manifest)
        .collect();
    for (i, m) in plan.mounts.iter().enumerate() {
        if !plan.uploads.contains_key(&m.digest) {
            queue.push_back(Task::Mount(i)); // from a repository that has it
        }
    }
    queue.extend(waits.ready_now().into_iter().map(Task::Manifest));
    let mut pending: Vec<(&Digest, &String, u64)> = plan
        .uploads
        .iter()
        .map(|(d, (repo, size))| (d, repo, *size))
        .collect();
    // largest first: the biggest blob does not start last
    pending.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(b.0)));
    let mut pending: VecDeque<_> = pending.into();

    let mut fatal: Option<Arc<RegistryError>> = None;
    let mut blob_failed: HashMap<Digest, Arc<RegistryError>> = HashMap::new();
    let mut pair_failed: HashMap<Pair, Arc<RegistryError>> = HashMap::new();
    let mut manifest_failed: HashMap<usize, Arc<RegistryError>> = HashMap::new();
    let mut manifests: HashMap<usize, usize> = HashMap::new();
    let mut copies = futures::stream::FuturesUnordered::new();
    let mut requests_in_flight = futures::stream::FuturesUnordered::new();
    loop {
        if fatal.is_some() {
            queue.clear(); // a registry-wide error: nothing new starts
            pending.clear();
        }
        while copies.len() < concurrency {
            let Some((digest, repo, size)) = pending.pop_front() else {
                break;
            };
            let from = source_repo.get(digest).cloned().unwrap_or_default();
            copies.push(async move {
                let r = transfer_blob(src, &from, dst, repo, digest, size).await;
                (digest, repo, r)
            });
        }
        while requests_in_flight.len() < concurrency {
            let Some(task) = queue.pop_front() else {
                break;
            };
            requests_in_flight.push(run_task(task, dst, &catalogue, &plan));
        }
        let error = tokio::select! {
            Some((digest, repo, r)) = copies.next(), if !copies.is_empty() => match r {
                Ok(()) => {
                    queue.extend(
                        waits
                            .mounts_after
                            .remove(digest)
                            .unwrap_or_default()
                            .into_iter()
                            .map(Task::Mount),
                    );
                    queue.extend(
                        waits
                            .arrived(&(repo.clone(), digest.clone()))
                            .into_iter()
                            .map(Task::Manifest),
                    );
                    None
                }
                Err(e) => {
                    let e = Arc::new(e);
                    blob_failed.insert(digest.clone(), e.clone());
                    Some(e)
                }
            },
            Some(finished) = requests_in_flight.next(), if !requests_in_flight.is_empty() => {
                match finished {
                    Finished::Mount(i, Ok(())) => {
                        let m = &plan.mounts[i];
                        queue.extend(
                            waits
                                .arrived(&(m.repo.clone(), m.digest.clone()))
                                .into_iter()
                                .map(Task::Manifest),
                        );
                        None
                    }
                    Finished::Mount(i, Err(e)) => {
                        let m = &plan.mounts[i];
                        let e = Arc::new(e);
                        pair_failed.insert((m.repo.clone(), m.digest.clone()), e.clone());
                        Some(e)
                    }
                    Finished::Manifest(i, Ok(n)) => {
                        manifests.insert(i, n);
                        None
                    }
                    Finished::Manifest(i, Err(e)) => {
                        let e = Arc::new(e);
                        manifest_failed.insert(i, e.clone());
                        Some(e)
                    }
                }
            }
            else => break,
        };
        if let Some(e) = error {
            if e.is_fatal() && fatal.is_none() {
                fatal = Some(e);
            }
        }
    }

    // ----- each image's outcome -----------------------------------------------
    for (k, (image, p)) in catalogue.images.iter().zip(&plan.images).enumerate() {
        let present = matches!(p.status, ImageStatus::Present(_));
        let result = if present || manifests.contains_key(&k) {
            Ok(CopyReport {
                digest: Some(image.manifest_digest.clone()),
                source_digest: Some(
                    image
                        .original_digest
                        .clone()
                        .unwrap_or_else(|| image.manifest_digest.clone()),
                ),
                filtered: image.filtered,
                up_to_date: present,
                blobs_copied: p.blobs_to_upload + p.blobs_to_mount,
                blobs_skipped: p.blobs_to_skip,
                bytes_copied: p.bytes_to_upload,
                manifests_pushed: manifests.get(&k).copied().unwrap_or(0),
            })
        } else {
            let repo = &p.mirror.repository;
            let blob_error = || {
                image.blobs.iter().find_map(|b| {
                    pair_failed
                        .get(&(repo.clone(), b.digest.clone()))
                        .or_else(|| blob_failed.get(&b.digest))
                        .cloned()
                })
            };
            Err(manifest_failed
                .remove(&k)
                .or_else(blob_error)
                .or_else(|| fatal.clone())
                .unwrap_or_else(|| {
                    let what = match waits.first_missing(k, image, repo) {
                        Some(d) => format!("blob {d} never arrived in {repo}"),
                        None => "not copied".to_string(),
                    };
                    Arc::new(RegistryError::Internal(format!("{}: {what}", image.name)))
                }))
        };
        out[of_request[k]] = Some(result);
    }
    finish(out)
}

fn finish(out: Vec<Option<CopyResult>>) -> Vec<CopyResult> {
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(Arc::new(RegistryError::Internal(
                    "the copy reported nothing for this image".into(),
                )))
            })
        })
        .collect()
}

/// Copy one blob, streamed from the source `GET` into the destination
/// `PUT`. A failed transfer is tried once more (the source can be read
/// again).
async fn transfer_blob(
    src: &RegistryClient,
    src_repo: &str,
    dst: &RegistryClient,
    dst_repo: &str,
    digest: &Digest,
    size: u64,
) -> Result<(), RegistryError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let chunked_before = dst.uploads_chunked();
        let (_, body) = src.get_blob(src_repo, digest).await?;
        match dst.upload_blob(dst_repo, digest, size, body).await {
            Ok(()) => return Ok(()),
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
