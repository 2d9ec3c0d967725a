//! Read-only queries for planning: where a tag points on a mirror
//! ([`image_status`]) and what pushing a bundle would transfer
//! ([`plan_bundle_push`]).
//!
//! Cost: one manifest `HEAD` per image; only images whose tag does not
//! already point at the expected digest cost one blob `HEAD` per
//! (repository, blob) pair. A warm plan (everything present) therefore
//! costs exactly one request per tag.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};

use crate::bundle::{Catalogue, ImageEntry};
use crate::client::RegistryClient;
use crate::client_error::RegistryError;
use crate::digest::Digest;
use crate::reference::MirrorRef;

/// Where a reference points on the mirror, compared to what we expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStatus {
    /// It points at the expected digest.
    Present(Digest),
    /// The tag (or digest) does not exist.
    Missing,
    /// The tag points at another digest.
    Moved(Digest),
}

/// `HEAD /v2/<repo>/manifests/<reference>` compared with `expected`.
pub async fn image_status(
    client: &RegistryClient,
    repo: &str,
    reference: &str,
    expected: &Digest,
) -> Result<ImageStatus, RegistryError> {
    Ok(match client.head_manifest(repo, reference).await? {
        None => ImageStatus::Missing,
        Some(info) if &info.digest == expected => ImageStatus::Present(info.digest),
        Some(info) => ImageStatus::Moved(info.digest),
    })
}

/// What pushing one image needs.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    /// Full upstream name.
    pub name: String,
    /// Where it goes.
    pub mirror: MirrorRef,
    /// The manifest digest that will be pushed.
    pub digest: Digest,
    /// Current state of its tag (or digest) on the mirror.
    pub status: ImageStatus,
    /// Blobs this image's repository gets by upload.
    pub blobs_to_upload: usize,
    /// Blobs it gets by cross-repository mount.
    pub blobs_to_mount: usize,
    /// Blobs already in its repository (or not needed: image present).
    pub blobs_to_skip: usize,
    /// Bytes to upload for it.
    pub bytes_to_upload: u64,
}

/// A blob mount: `digest` into `repo` from `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    /// Destination repository.
    pub repo: String,
    /// Blob.
    pub digest: Digest,
    /// Repository that has (or will have) the blob.
    pub from: String,
}

/// What pushing a bundle needs, blob by blob.
#[derive(Debug, Clone, Default)]
pub struct PushPlan {
    /// One entry per catalogue image, in order.
    pub images: Vec<ImagePlan>,
    /// Blobs to upload (each once), with the repository that gets the
    /// upload and the size.
    pub uploads: BTreeMap<Digest, (String, u64)>,
    /// Mounts to do after the uploads.
    pub mounts: Vec<PlannedMount>,
    /// Requests the plan cost.
    pub requests: usize,
}

impl PushPlan {
    /// Whether nothing needs to be pushed.
    pub fn is_noop(&self) -> bool {
        self.images
            .iter()
            .all(|i| matches!(i.status, ImageStatus::Present(_)))
    }

    /// Total bytes to upload.
    pub fn bytes_to_upload(&self) -> u64 {
        self.uploads.values().map(|(_, s)| *s).sum()
    }
}

/// Whether `repo` has `digest` (a blob `HEAD`). A server error that
/// outlasts the client's retries counts as "absent": the blob is then
/// mounted or uploaded, which writes the registry's record of it again. A
/// registry whose disk filled up during a push can keep a broken record
/// (distribution answers every `HEAD` of it with 500 "invalid checksum
/// digest format") that nothing else would repair.
async fn blob_in(
    client: &RegistryClient,
    repo: &str,
    digest: &Digest,
) -> Result<bool, RegistryError> {
    match client.head_blob(repo, digest).await {
        Ok(size) => Ok(size.is_some()),
        Err(RegistryError::Status { status, .. }) if status >= 500 => Ok(false),
        Err(e) => Err(e),
    }
}

fn reference_of(image: &ImageEntry, mirror: &MirrorRef) -> String {
    match &mirror.tag {
        Some(t) => t.clone(),
        None => image.manifest_digest.to_string(),
    }
}

/// Plan the push of `catalogue` to `client` under `namespace`: manifest
/// `HEAD` per image, then blob `HEAD`s for images not present (at most
/// `concurrency` requests in flight).
pub async fn plan_bundle_push(
    catalogue: &Catalogue,
    client: &RegistryClient,
    namespace: Option<&str>,
    concurrency: usize,
) -> Result<PushPlan, RegistryError> {
    plan_bundle_push_with(
        catalogue,
        client,
        namespace,
        concurrency,
        &HashMap::new(),
        &HashSet::new(),
        &HashMap::new(),
    )
    .await
}

/// At most this many other repositories are asked for one blob.
pub const MOUNT_SOURCES: usize = 3;

/// [`plan_bundle_push`], with `sources`: per blob, repositories that may
/// already hold it although no image of `catalogue` there is pushed (e.g.
/// those of images of the same bundle already on the mirror). A blob that
/// no pushed image's repository has is looked up (`HEAD`) in up to
/// [`MOUNT_SOURCES`] of them, in order; found, it is mounted from there
/// instead of uploaded. `known_absent`: (repository, blob) pairs a `HEAD`
/// of this run already found missing (the plan's survey): not asked again.
/// (Only absence is reused: a blob wrongly believed absent is uploaded
/// again, harmlessly; one wrongly believed present would break the image.)
/// `known_tags`: (repository, tag or digest) → the manifest digest a
/// `HEAD` of this run found there (`None`: missing). An answer other than
/// the expected digest is reused (the image is pushed either way); the
/// expected digest is asked again.
pub async fn plan_bundle_push_with(
    catalogue: &Catalogue,
    client: &RegistryClient,
    namespace: Option<&str>,
    concurrency: usize,
    sources: &HashMap<Digest, Vec<String>>,
    known_absent: &HashSet<(String, Digest)>,
    known_tags: &HashMap<(String, String), Option<Digest>>,
) -> Result<PushPlan, RegistryError> {
    let mirrors: Vec<MirrorRef> = catalogue
        .images
        .iter()
        .map(|i| i.mirror_ref(namespace))
        .collect();
    plan_push_to(
        catalogue,
        mirrors,
        client,
        concurrency,
        sources,
        known_absent,
        known_tags,
    )
    .await
}

/// [`plan_bundle_push_with`] with each image's place on the mirror given
/// (`mirrors`, one per catalogue image) rather than derived from its name
/// and a namespace: a copy from an upstream registry names its own.
pub(crate) async fn plan_push_to(
    catalogue: &Catalogue,
    mirrors: Vec<MirrorRef>,
    client: &RegistryClient,
    concurrency: usize,
    sources: &HashMap<Digest, Vec<String>>,
    known_absent: &HashSet<(String, Digest)>,
    known_tags: &HashMap<(String, String), Option<Digest>>,
) -> Result<PushPlan, RegistryError> {
    let concurrency = concurrency.max(1);
    let mut requests = 0;
    let statuses: Vec<ImageStatus> = futures::stream::iter(catalogue.images.iter().zip(&mirrors))
        .map(|(image, mirror)| {
            let reference = reference_of(image, mirror);
            let known = known_tags
                .get(&(mirror.repository.clone(), reference.clone()))
                .filter(|seen| seen.as_ref() != Some(&image.manifest_digest));
            async move {
                match known {
                    Some(None) => return Ok((ImageStatus::Missing, false)),
                    Some(Some(d)) => return Ok((ImageStatus::Moved(d.clone()), false)),
                    None => {}
                }
                image_status(
                    client,
                    &mirror.repository,
                    &reference,
                    &image.manifest_digest,
                )
                .await
                .map(|status| (status, true))
            }
        })
        .buffered(concurrency)
        .try_collect::<Vec<(ImageStatus, bool)>>()
        .await?
        .into_iter()
        .map(|(status, asked)| {
            requests += usize::from(asked);
            status
        })
        .collect();

    // (repo, digest) pairs needed by images not present, first-seen order.
    let mut pairs: Vec<(String, Digest, u64)> = Vec::new();
    let mut seen: HashSet<(String, Digest)> = HashSet::new();
    for ((image, mirror), status) in catalogue.images.iter().zip(&mirrors).zip(&statuses) {
        if matches!(status, ImageStatus::Present(_)) {
            continue;
        }
        for b in &image.blobs {
            if seen.insert((mirror.repository.clone(), b.digest.clone())) {
                pairs.push((mirror.repository.clone(), b.digest.clone(), b.size));
            }
        }
    }
    let reused: Vec<bool> = pairs
        .iter()
        .map(|(repo, digest, _)| known_absent.contains(&(repo.clone(), digest.clone())))
        .collect();
    let present: Vec<bool> = futures::stream::iter(pairs.iter().zip(&reused))
        .map(|((repo, digest, _), reused)| async move {
            if *reused {
                return Ok(false);
            }
            blob_in(client, repo, digest).await
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    requests += reused.iter().filter(|r| !**r).count();

    // Per digest: who has it, who needs it.
    let mut having: HashMap<&Digest, Vec<&str>> = HashMap::new();
    let mut needing: BTreeMap<&Digest, Vec<(&str, u64)>> = BTreeMap::new();
    for ((repo, digest, size), here) in pairs.iter().zip(&present) {
        if *here {
            having.entry(digest).or_default().push(repo);
        } else {
            needing.entry(digest).or_default().push((repo, *size));
        }
    }
    // Blobs no pushed image's repository has: ask the other sources.
    let asked: Vec<(&Digest, &[String])> = needing
        .keys()
        .filter(|d| !having.contains_key(*d))
        .filter_map(|d| {
            let s = sources.get(*d)?;
            Some((*d, &s[..s.len().min(MOUNT_SOURCES)]))
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let found: Vec<(Option<&str>, usize)> = futures::stream::iter(asked.iter())
        .map(|(digest, repos)| async move {
            let mut n = 0;
            for r in repos.iter() {
                n += 1;
                if blob_in(client, r, digest).await? {
                    return Ok((Some(r.as_str()), n));
                }
            }
            Ok::<_, RegistryError>((None, n))
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    for ((digest, _), (repo, n)) in asked.iter().zip(found) {
        requests += n;
        if let Some(r) = repo {
            having.entry(digest).or_default().push(r);
        }
    }
    let mut uploads = BTreeMap::new();
    let mut mounts = Vec::new();
    // (repo, digest) -> how it arrives.
    let mut how: HashMap<(&str, &Digest), Arrival> = HashMap::new();
    for (digest, repos) in &needing {
        let (source, rest) = match having.get(digest).and_then(|h| h.first()) {
            Some(src) => (src.to_string(), &repos[..]),
            None => {
                let (first, size) = repos[0];
                uploads.insert((*digest).clone(), (first.to_string(), size));
                how.insert((first, digest), Arrival::Upload(size));
                (first.to_string(), &repos[1..])
            }
        };
        for (repo, _) in rest {
            mounts.push(PlannedMount {
                repo: repo.to_string(),
                digest: (*digest).clone(),
                from: source.clone(),
            });
            how.insert((repo, digest), Arrival::Mount);
        }
    }
    let mut images = Vec::with_capacity(catalogue.images.len());
    for ((image, mirror), status) in catalogue.images.iter().zip(&mirrors).zip(statuses) {
        let mut p = ImagePlan {
            name: image.name.clone(),
            mirror: mirror.clone(),
            digest: image.manifest_digest.clone(),
            status: status.clone(),
            blobs_to_upload: 0,
            blobs_to_mount: 0,
            blobs_to_skip: 0,
            bytes_to_upload: 0,
        };
        for b in &image.blobs {
            if matches!(status, ImageStatus::Present(_)) {
                p.blobs_to_skip += 1;
                continue;
            }
            match how.get(&(mirror.repository.as_str(), &b.digest)) {
                Some(Arrival::Upload(size)) => {
                    p.blobs_to_upload += 1;
                    p.bytes_to_upload += size;
                }
                Some(Arrival::Mount) => p.blobs_to_mount += 1,
                None => p.blobs_to_skip += 1,
            }
        }
        images.push(p);
    }
    // An upload is counted for the first image of its repository only.
    let mut counted: HashSet<(String, Digest)> = HashSet::new();
    for (image, p) in catalogue.images.iter().zip(images.iter_mut()) {
        if matches!(p.status, ImageStatus::Present(_)) {
            continue;
        }
        for b in &image.blobs {
            let key = (p.mirror.repository.clone(), b.digest.clone());
            if how.contains_key(&(p.mirror.repository.as_str(), &b.digest)) && !counted.insert(key)
            {
                // Already arrives for an earlier image of the same repository.
                match how.get(&(p.mirror.repository.as_str(), &b.digest)) {
                    Some(Arrival::Upload(size)) => {
                        p.blobs_to_upload -= 1;
                        p.bytes_to_upload -= size;
                    }
                    _ => p.blobs_to_mount -= 1,
                }
                p.blobs_to_skip += 1;
            }
        }
    }
    Ok(PushPlan {
        images,
        uploads,
        mounts,
        requests,
    })
}

#[derive(Clone, Copy)]
enum Arrival {
    Upload(u64),
    Mount,
}
