//! Push a bundle to a registry over the network, with the same guarantees
//! as [`crate::push::push_bundle_to_store`]: blobs first (streamed and
//! verified), then each image's platform manifests, then its top manifest
//! under its tag; an image with any missing blob gets no manifest.
//!
//! 1. **Plan** ([`crate::plan::plan_bundle_push`]): one manifest `HEAD` per
//!    image (a tag already at the expected digest is done), then a blob
//!    `HEAD` per (repository, blob) for the others.
//! 2. **Upload**: each missing blob is uploaded at most once per run, into
//!    the first repository that needs it. The archive is decoded once on a
//!    blocking thread; a blob's bytes go, in 64 KiB chunks, through a
//!    bounded channel (4 chunks) into the streaming `PUT`, so memory stays
//!    bounded whatever the layer size. The last chunk is held back until
//!    the sha256 check passed, so a corrupt blob never completes its
//!    `PUT` (and the registry checks the digest again). Blobs of at most
//!    [`BUFFERED_BLOB`] (configs, small and medium layers) are instead read
//!    whole and verified, then uploaded concurrently (up to
//!    [`RemotePushOptions::small_uploads`] in flight, next to the one
//!    streaming blob) while the archive is read on: a bundle of many small
//!    images costs a few round trips at a time, not one after another, and
//!    a registry that digests one upload per core gets several at once.
//!    The blobs read whole and not yet uploaded total at most
//!    [`BUFFER_BUDGET`] bytes (the reader waits for uploads to finish
//!    before reading more), so memory stays bounded whatever the bundle.
//! 3. **Mount** the blob into every other repository that needs it; a
//!    declined mount (`202`) is completed by streaming the blob from the
//!    repository that has it into the session the registry returned.
//! 4. **Manifests** per image (children first, index, tag last), images in
//!    parallel.
//!
//! Connection, TLS and credential errors stop the run (the report says so
//! in `fatal`); per-image problems only fail the images concerned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::bundle::{BlobRef, Bundle, Catalogue, StreamReport};
use crate::client::{MountOutcome, RegistryClient};
use crate::client_error::RegistryError;
use crate::digest::Digest;
use crate::error::{BundleError, SinkError};
use crate::plan::{plan_bundle_push_with, ImageStatus, PushPlan};
use crate::reference::MirrorRef;

/// Progress events, for progress bars.
#[derive(Debug, Clone)]
pub enum PushProgress {
    /// The plan is known: this many bytes will be uploaded.
    Planned {
        /// Bytes to upload.
        bytes: u64,
        /// Blobs to upload.
        blobs: usize,
    },
    /// After `Planned`, once per image that will be pushed: the bytes
    /// uploaded for it (a blob shared with an earlier image counts there).
    ImagePlanned {
        /// Full upstream name.
        name: String,
        /// Bytes to upload for it.
        bytes: u64,
    },
    /// A blob upload started.
    BlobStarted {
        /// Blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// `bytes` more bytes of a blob were handed to the connection.
    Bytes {
        /// Blob.
        digest: Digest,
        /// Increment.
        bytes: u64,
    },
    /// A blob upload finished (`ok` false: it failed).
    BlobDone {
        /// Blob.
        digest: Digest,
        /// Success.
        ok: bool,
    },
    /// An image was tagged on the mirror (or found up to date).
    ImageDone {
        /// Full upstream name.
        name: String,
    },
}

/// Progress callback.
pub type ProgressFn = Arc<dyn Fn(&PushProgress) + Send + Sync>;

/// Options of [`push_bundle_to_registry`].
#[derive(Clone)]
pub struct RemotePushOptions {
    /// Requests in flight for HEADs, mounts and manifests.
    pub concurrency: usize,
    /// Uploads in flight while the archive is read: blobs up to
    /// [`BUFFERED_BLOB`] are read whole (within [`BUFFER_BUDGET`]) and
    /// uploaded concurrently; bigger blobs stream one at a time (the
    /// archive is read in order).
    pub small_uploads: usize,
    /// Progress hook.
    pub progress: Option<ProgressFn>,
    /// Per blob, other repositories that may hold it (see
    /// [`crate::plan::plan_bundle_push_with`]): mounted from there, not uploaded.
    pub mount_sources: HashMap<Digest, Vec<String>>,
    /// (repository, blob) pairs this run already found missing: not asked again.
    pub known_absent: HashSet<(String, Digest)>,
}

impl Default for RemotePushOptions {
    fn default() -> Self {
        RemotePushOptions {
            concurrency: 8,
            small_uploads: 8,
            progress: None,
            mount_sources: HashMap::new(),
            known_absent: HashSet::new(),
        }
    }
}

impl fmt::Debug for RemotePushOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePushOptions")
            .field("concurrency", &self.concurrency)
            .field("small_uploads", &self.small_uploads)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// An image now on the registry.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// Full upstream name.
    pub name: String,
    /// Where it is on the mirror.
    pub mirror: MirrorRef,
    /// Manifest digest pushed.
    pub digest: Digest,
    /// The tag already pointed at this digest: nothing was sent.
    pub up_to_date: bool,
    /// Blobs uploaded into this image's repository for it.
    pub blobs_uploaded: usize,
    /// Blobs mounted into its repository for it.
    pub blobs_mounted: usize,
    /// Blobs already there.
    pub blobs_skipped: usize,
    /// Bytes uploaded for it.
    pub bytes_uploaded: u64,
    /// Manifests `PUT` (children + top).
    pub manifests_pushed: usize,
    /// A platform filter rewrote the index (new digest).
    pub filtered: bool,
    /// The manifest was synthesised from a docker archive.
    pub synthesized: bool,
}

/// An image not pushed, and why.
#[derive(Debug, Clone)]
pub struct FailedImage {
    /// Full upstream name (or the bundle's label).
    pub name: String,
    /// The reason, with its causes.
    pub reason: String,
}

/// What [`push_bundle_to_registry`] did.
#[derive(Debug, Default)]
pub struct RegistryPushReport {
    /// Images on the registry under their tag (pushed or up to date).
    pub pushed: Vec<RemoteImage>,
    /// Images not pushed.
    pub failed: Vec<FailedImage>,
    /// The distinct errors behind the failures.
    pub errors: Vec<RegistryError>,
    /// A registry-wide error that stopped the run.
    pub fatal: Option<RegistryError>,
    /// Distinct blobs uploaded.
    pub blobs_uploaded: usize,
    /// Mounts done.
    pub blobs_mounted: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// The plan the push followed.
    pub plan: PushPlan,
}

impl RegistryPushReport {
    /// Whether every image is on the registry.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty() && self.fatal.is_none()
    }

    /// The report line of one image.
    pub fn image(&self, name: &str) -> Option<&RemoteImage> {
        self.pushed.iter().find(|i| i.name == name)
    }
}

/// An error with its `source()` chain, on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// Blobs up to this size are read whole from the archive and uploaded
/// concurrently (up to [`RemotePushOptions::small_uploads`] at once) while
/// the archive is read on; bigger blobs stream, one at a time.
pub const BUFFERED_BLOB: u64 = 16 * 1024 * 1024;

/// At most this many bytes of blobs read whole wait for or are in their
/// upload at once.
pub const BUFFER_BUDGET: u64 = 48 * 1024 * 1024;

/// Bytes of blobs held whole in memory until their upload finishes.
struct Budget {
    used: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Blocks (reader thread) until `n` more bytes fit in
    /// [`BUFFER_BUDGET`]; one blob always fits when nothing is held.
    fn acquire(&self, n: u64) {
        let Ok(mut used) = self.used.lock() else {
            return;
        };
        while *used > 0 && *used + n > BUFFER_BUDGET {
            used = match self.freed.wait(used) {
                Ok(u) => u,
                Err(_) => return,
            };
        }
        *used += n;
    }

    fn release(&self, n: u64) {
        if let Ok(mut used) = self.used.lock() {
            *used = used.saturating_sub(n);
        }
        self.freed.notify_all();
    }
}

enum Job {
    /// A blob streamed from the archive while it uploads.
    Stream {
        repo: String,
        blob: BlobRef,
        data: mpsc::Receiver<io::Result<Bytes>>,
        done: oneshot::Sender<Result<(), SinkError>>,
    },
    /// A blob of at most [`BUFFERED_BLOB`], read whole and verified.
    Whole {
        repo: String,
        blob: BlobRef,
        data: Bytes,
    },
}

#[derive(Debug)]
struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not uploaded: the run stopped after a registry-wide error")
    }
}

impl std::error::Error for Aborted {}

/// Feed one blob from the blocking reader into an upload job.
fn feed(
    job_tx: &mpsc::Sender<Job>,
    budget: &Budget,
    repo: &str,
    blob: &BlobRef,
    reader: &mut dyn Read,
) -> Result<(), SinkError> {
    if blob.size <= BUFFERED_BLOB {
        // Read to the end: the verifying reader checks digest and size
        // before EOF, so only verified bytes are queued. The upload
        // releases the budget when it ends.
        budget.acquire(blob.size);
        let mut data = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0));
        if let Err(e) = reader.read_to_end(&mut data) {
            budget.release(blob.size);
            return Err(Box::new(e));
        }
        let sent = job_tx.blocking_send(Job::Whole {
            repo: repo.to_string(),
            blob: blob.clone(),
            data: Bytes::from(data),
        });
        if sent.is_err() {
            budget.release(blob.size);
            return Err(Box::new(Aborted));
        }
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let (done_tx, done_rx) = oneshot::channel();
    job_tx
        .blocking_send(Job::Stream {
            repo: repo.to_string(),
            blob: blob.clone(),
            data: rx,
            done: done_tx,
        })
        .map_err(|_| Box::new(Aborted) as SinkError)?;
    let mut buf = vec![0u8; 64 * 1024];
    // Hold the last chunk back until the verifying reader reported EOF
    // (digest and size checked), so a bad blob never completes its PUT.
    let mut pending: Option<Bytes> = None;
    let mut read_error = None;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                if let Some(p) = pending.take() {
                    let _ = tx.blocking_send(Ok(p));
                }
                break;
            }
            Ok(n) => {
                let chunk = Bytes::copy_from_slice(&buf[..n]);
                if let Some(p) = pending.replace(chunk) {
                    if tx.blocking_send(Ok(p)).is_err() {
                        break; // the upload failed; its error comes below
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
                read_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let result = done_rx.blocking_recv();
    if let Some(e) = read_error {
        return Err(Box::new(e));
    }
    match result {
        Ok(r) => r,
        Err(_) => Err(Box::new(Aborted)),
    }
}

/// Push every image of `catalogue` (read from `bundle`) to `client` under
/// `namespace`. `Err` only when nothing could start (registry unreachable,
/// TLS, credentials); everything else is in the report.
pub async fn push_bundle_to_registry(
    bundle: &Bundle,
    catalogue: &Catalogue,
    client: &RegistryClient,
    namespace: Option<&str>,
    options: &RemotePushOptions,
) -> Result<RegistryPushReport, RegistryError> {
    let progress = |p: PushProgress| {
        if let Some(f) = &options.progress {
            f(&p);
        }
    };
    let concurrency = options.concurrency.max(1);
    client.ping().await?;
    let plan = plan_bundle_push_with(
        catalogue,
        client,
        namespace,
        concurrency,
        &options.mount_sources,
        &options.known_absent,
    )
    .await?;
    progress(PushProgress::Planned {
        bytes: plan.bytes_to_upload(),
        blobs: plan.uploads.len(),
    });
    for p in plan
        .images
        .iter()
        .filter(|p| !matches!(p.status, ImageStatus::Present(_)))
    {
        progress(PushProgress::ImagePlanned {
            name: p.name.clone(),
            bytes: p.bytes_to_upload,
        });
    }
    let mut report = RegistryPushReport::default();
    for f in &catalogue.failures {
        report.failed.push(FailedImage {
            name: f.name.clone(),
            reason: chain(&f.error),
        });
    }

    // ----- uploads: one pass over the archive ------------------------------
    let uploaded: Mutex<HashSet<Digest>> = Mutex::new(HashSet::new());
    let abort = Arc::new(AtomicBool::new(false));
    let mut fatal: Option<RegistryError> = None;
    let mut stream_report = StreamReport::default();
    let mut stream_fatal: Option<BundleError> = None;
    let mut whole_failed: Vec<BundleError> = Vec::new();
    if !plan.uploads.is_empty() {
        let uploads: Arc<BTreeMap<Digest, (String, u64)>> = Arc::new(plan.uploads.clone());
        let cat = Arc::new(catalogue.clone_without_failures());
        let bundle2 = bundle.clone();
        let (job_tx, mut job_rx) = mpsc::channel::<Job>(1);
        let budget = Arc::new(Budget::new());
        let budget2 = budget.clone();
        let abort2 = abort.clone();
        let reader = tokio::task::spawn_blocking(move || {
            bundle2.stream_blobs(&cat, |blob, r| {
                let Some((repo, _)) = uploads.get(&blob.digest) else {
                    return Ok(()); // not uploaded: still verified by the reader
                };
                if abort2.load(Ordering::Relaxed) {
                    return Err(Box::new(Aborted));
                }
                feed(&job_tx, &budget2, repo, blob, r)
            })
        });
        // Uploads in flight: every blob read whole, plus the one
        // streaming blob (the reader waits for that one to finish).
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let limit = options.small_uploads.max(1);
        let mut jobs_open = true;
        loop {
            tokio::select! {
                job = job_rx.recv(), if jobs_open && in_flight.len() < limit => {
                    let Some(job) = job else {
                        jobs_open = false;
                        continue;
                    };
                    let (repo, blob, body, done) = match job {
                        Job::Stream { repo, blob, data, done } => {
                            let hook = options.progress.clone();
                            let d = blob.digest.clone();
                            let body = futures::stream::unfold(data, |mut rx| async move {
                                rx.recv().await.map(|item| (item, rx))
                            })
                            .inspect(move |item| {
                                if let (Some(f), Ok(b)) = (&hook, item) {
                                    f(&PushProgress::Bytes {
                                        digest: d.clone(),
                                        bytes: b.len() as u64,
                                    });
                                }
                            })
                            .boxed();
                            (repo, blob, body, Some(done))
                        }
                        Job::Whole { repo, blob, data } => {
                            if let Some(f) = &options.progress {
                                f(&PushProgress::Bytes {
                                    digest: blob.digest.clone(),
                                    bytes: data.len() as u64,
                                });
                            }
                            let body = futures::stream::once(async move { Ok(data) }).boxed();
                            (repo, blob, body, None)
                        }
                    };
                    progress(PushProgress::BlobStarted {
                        digest: blob.digest.clone(),
                        size: blob.size,
                    });
                    in_flight.push(async move {
                        let result = client.upload_blob(&repo, &blob.digest, blob.size, body).await;
                        (blob, result, done)
                    });
                }
                Some((blob, result, done)) = in_flight.next(), if !in_flight.is_empty() => {
                    progress(PushProgress::BlobDone {
                        digest: blob.digest.clone(),
                        ok: result.is_ok(),
                    });
                    let to_sink: Result<(), SinkError> = match result {
                        Ok(()) => {
                            if let Ok(mut u) = uploaded.lock() {
                                u.insert(blob.digest.clone());
                            }
                            report.bytes_uploaded += blob.size;
                            Ok(())
                        }
                        Err(e) if e.is_fatal() => {
                            abort.store(true, Ordering::Relaxed);
                            if fatal.is_none() {
                                fatal = Some(e);
                            }
                            Err(Box::new(Aborted))
                        }
                        Err(e) => Err(Box::new(e)),
                    };
                    match done {
                        Some(done) => {
                            let _ = done.send(to_sink);
                        }
                        // a whole blob's reader has moved on: its failure is
                        // recorded here
                        None => {
                            budget.release(blob.size);
                            if let Err(e) = to_sink {
                                whole_failed.push(BundleError::Sink {
                                    digest: blob.digest.clone(),
                                    images: catalogue.users_of(&blob.digest),
                                    source: e,
                                });
                            }
                        }
                    }
                }
                else => break,
            }
        }
        match reader.await {
            Ok(Ok(r)) => stream_report = r,
            Ok(Err(e)) => stream_fatal = Some(e),
            Err(e) => {
                return Err(RegistryError::Internal(format!(
                    "the bundle reader thread failed: {e}"
                )))
            }
        }
    }
    let uploaded = uploaded.into_inner().unwrap_or_default();
    report.blobs_uploaded = uploaded.len();

    // Blob failures: digest -> reason.
    let mut blob_failed: HashMap<Digest, String> = HashMap::new();
    stream_report.failures.append(&mut whole_failed);
    for e in stream_report.failures.drain(..) {
        if let BundleError::MissingBlob { digest, .. }
        | BundleError::BlobSize { digest, .. }
        | BundleError::BlobVerification { digest, .. }
        | BundleError::Truncated { digest, .. }
        | BundleError::Sink { digest, .. } = &e
        {
            blob_failed.insert(digest.clone(), chain(&e));
        }
        let stopped = matches!(&e, BundleError::Sink { source, .. } if source.is::<Aborted>());
        if !stopped {
            report.errors.push(RegistryError::Bundle(e));
        }
    }
    if let Some(e) = stream_fatal {
        let reason = format!("never reached: {}", chain(&e));
        for d in plan.uploads.keys() {
            if !uploaded.contains(d) {
                blob_failed
                    .entry(d.clone())
                    .or_insert_with(|| reason.clone());
            }
        }
        report.errors.push(RegistryError::Bundle(e));
    }
    if let Some(f) = fatal {
        let reason = format!("not pushed: {}", chain(&f));
        for (image, p) in catalogue.images.iter().zip(&plan.images) {
            if !matches!(p.status, ImageStatus::Present(_)) {
                report.failed.push(FailedImage {
                    name: image.name.clone(),
                    reason: reason.clone(),
                });
            }
        }
        report.fatal = Some(f);
        push_up_to_date(&plan, catalogue, &mut report, &progress);
        report.plan = plan;
        return Ok(report);
    }

    // ----- mounts -----------------------------------------------------------
    let mount_results: Vec<(usize, Result<(), RegistryError>)> =
        futures::stream::iter(plan.mounts.iter().enumerate())
            .map(|(i, m)| {
                let failed_reason = blob_failed.get(&m.digest).cloned();
                async move {
                    if let Some(r) = failed_reason {
                        return (
                            i,
                            Err(RegistryError::Internal(format!("blob not uploaded: {r}"))),
                        );
                    }
                    (i, mount_or_copy(client, &m.repo, &m.digest, &m.from).await)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut pair_failed: HashMap<(String, Digest), String> = HashMap::new();
    for (i, r) in mount_results {
        let m = &plan.mounts[i];
        match r {
            Ok(()) => report.blobs_mounted += 1,
            Err(e) => {
                pair_failed.insert((m.repo.clone(), m.digest.clone()), chain(&e));
                if !matches!(e, RegistryError::Internal(_)) {
                    report.errors.push(e);
                }
            }
        }
    }

    // ----- manifests --------------------------------------------------------
    let mut todo = Vec::new();
    for (image, p) in catalogue.images.iter().zip(&plan.images) {
        if matches!(p.status, ImageStatus::Present(_)) {
            continue;
        }
        let repo = &p.mirror.repository;
        let reason = image.blobs.iter().find_map(|b| {
            pair_failed
                .get(&(repo.clone(), b.digest.clone()))
                .or_else(|| blob_failed.get(&b.digest))
                .map(|r| format!("blob {} failed: {r}", b.digest))
        });
        match reason {
            Some(reason) => report.failed.push(FailedImage {
                name: image.name.clone(),
                reason,
            }),
            None => todo.push((image, p)),
        }
    }
    let results: Vec<(usize, Result<usize, RegistryError>)> =
        futures::stream::iter(todo.iter().enumerate())
            .map(|(i, (image, p))| async move {
                let repo = &p.mirror.repository;
                let run = async {
                    let mut n = 0;
                    for child in &image.children {
                        client
                            .put_manifest(
                                repo,
                                child.digest.as_str(),
                                &child.media_type,
                                &child.bytes,
                            )
                            .await?;
                        n += 1;
                    }
                    let reference = match &p.mirror.tag {
                        Some(t) => t.clone(),
                        None => image.manifest_digest.to_string(),
                    };
                    client
                        .put_manifest(repo, &reference, &image.media_type, &image.manifest_bytes)
                        .await?;
                    Ok::<usize, RegistryError>(n + 1)
                };
                (i, run.await)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut results = results;
    results.sort_by_key(|(i, _)| *i);
    for (i, r) in results {
        let (image, p) = todo[i];
        match r {
            Ok(n) => {
                progress(PushProgress::ImageDone {
                    name: image.name.clone(),
                });
                report.pushed.push(RemoteImage {
                    name: image.name.clone(),
                    mirror: p.mirror.clone(),
                    digest: image.manifest_digest.clone(),
                    up_to_date: false,
                    blobs_uploaded: p.blobs_to_upload,
                    blobs_mounted: p.blobs_to_mount,
                    blobs_skipped: p.blobs_to_skip,
                    bytes_uploaded: p.bytes_to_upload,
                    manifests_pushed: n,
                    filtered: image.filtered,
                    synthesized: image.synthesized,
                })
            }
            Err(e) => {
                report.failed.push(FailedImage {
                    name: image.name.clone(),
                    reason: chain(&e),
                });
                if e.is_fatal() && report.fatal.is_none() {
                    report.fatal = Some(e);
                } else {
                    report.errors.push(e);
                }
            }
        }
    }
    push_up_to_date(&plan, catalogue, &mut report, &progress);
    report.plan = plan;
    Ok(report)
}

fn push_up_to_date(
    plan: &PushPlan,
    catalogue: &Catalogue,
    report: &mut RegistryPushReport,
    progress: &dyn Fn(PushProgress),
) {
    for (image, p) in catalogue.images.iter().zip(&plan.images) {
        if matches!(p.status, ImageStatus::Present(_)) {
            progress(PushProgress::ImageDone {
                name: image.name.clone(),
            });
            report.pushed.push(RemoteImage {
                name: image.name.clone(),
                mirror: p.mirror.clone(),
                digest: image.manifest_digest.clone(),
                up_to_date: true,
                blobs_uploaded: 0,
                blobs_mounted: 0,
                blobs_skipped: image.blobs.len(),
                bytes_uploaded: 0,
                manifests_pushed: 0,
                filtered: image.filtered,
                synthesized: image.synthesized,
            });
        }
    }
}

/// Mount `digest` into `repo` from `from`; when the registry declines,
/// stream the blob from `from` into the upload session it opened.
pub async fn mount_or_copy(
    client: &RegistryClient,
    repo: &str,
    digest: &Digest,
    from: &str,
) -> Result<(), RegistryError> {
    match client.mount_blob(repo, digest, from).await? {
        MountOutcome::Mounted => Ok(()),
        MountOutcome::Declined(session) => {
            let (len, body) = client.get_blob(from, digest).await?;
            let size = match len {
                Some(l) => l,
                None => client.head_blob(from, digest).await?.unwrap_or(0),
            };
            client.upload_to_session(session, digest, size, body).await
        }
    }
}
