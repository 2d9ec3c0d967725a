//! Push a bundle to a registry over the network, with the same guarantees
//! as [`crate::push::push_bundle_to_store`]: blobs first (streamed and
//! verified), then each image's platform manifests, then its top manifest
//! under its tag; an image with any missing blob gets no manifest.
//!
//! 1. **Plan** ([`crate::plan::plan_bundle_push`]): one manifest `HEAD` per
//!    image (a tag already at the expected digest is done), then a blob
//!    `HEAD` per (repository, blob) for the others.
//! 2. **Upload**: each missing blob is uploaded at most once per run, into
//!    the first repository that needs it. The archive is decoded on a
//!    blocking thread; a blob's bytes go, in [`STREAM_CHUNK`] (256 KiB)
//!    chunks, through a bounded channel (4 chunks) into the streaming `PUT`,
//!    so memory stays bounded whatever the layer size. The last chunk is
//!    held back until the sha256 check passed, so a corrupt blob never
//!    completes its `PUT` (and the registry checks the digest again).
//!    Blobs of at most [`BUFFERED_BLOB`] (configs, small and medium
//!    layers) are instead read whole and verified, then uploaded
//!    concurrently (up to
//!    [`RemotePushOptions::small_uploads`] in flight, next to the one
//!    streaming blob) while the archive is read on: a bundle of many small
//!    images costs a few round trips at a time, not one after another, and
//!    a registry that digests one upload per core gets several at once.
//!    The blobs read whole and not yet uploaded total at most
//!    [`BUFFER_BUDGET`] bytes (the reader waits for uploads to finish
//!    before reading more), so memory stays bounded whatever the bundle.
//!    Bigger blobs stream one at a time per reader; when there are any to
//!    upload (and the bundle is a regular file), the archive is opened a
//!    second time and decoded in parallel by a second blocking thread,
//!    which streams the biggest of them (see [`RemotePushOptions::second_reader`])
//!    while the first reader does the rest; each reader skips (but still
//!    decodes) the other's entries, verifies its own blobs and reports a
//!    damaged or missing one, so the guarantees above hold per reader.
//! 3. **Mount** the blob into every other repository that needs it, as
//!    soon as its upload finished (a mount from a repository that already
//!    had it starts right away); a declined mount (`202`) is completed by
//!    streaming the blob from the repository that has it into the session
//!    the registry returned.
//! 4. **Manifests** per image (children first, index, tag last), as soon
//!    as every blob of the image is present in its repository, while the
//!    archive is still read and uploaded: in a bundle whose biggest layer
//!    comes last, the other images are tagged while it streams. An image
//!    using a blob this run does not upload (already in the registry) also
//!    waits for the end of the archive pass, which verifies that blob too,
//!    so a damaged bundle fails it as before. Mounts and manifests share
//!    [`RemotePushOptions::concurrency`] requests.
//!
//! Connection, TLS and credential errors stop the run (the report says so
//! in `fatal`); per-image problems only fail the images concerned.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::bundle::{BlobRef, Bundle, Catalogue, ImageEntry, StreamReport};
use crate::client::{MountOutcome, RegistryClient};
use crate::client_error::RegistryError;
use crate::digest::Digest;
use crate::error::{BundleError, SinkError};
use crate::plan::{plan_bundle_push_with, ImagePlan, ImageStatus, PushPlan};
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
    /// `buffered_blob` are read whole (within [`BUFFER_BUDGET`]) and
    /// uploaded concurrently; bigger blobs stream, one at a time per
    /// archive reader.
    pub small_uploads: usize,
    /// Blobs up to this size are read whole; bigger ones stream
    /// ([`BUFFERED_BLOB`] by default; tests lower it).
    pub buffered_blob: u64,
    /// When blobs over `buffered_blob` are to be uploaded, open the archive
    /// a second time and decode it in parallel on a second thread, which
    /// streams the biggest of them while the first reader does the rest
    /// (each skips the other's blobs, and stops after its last one: in the
    /// recommended order the biggest blobs follow the head, so the second
    /// reader decodes little else). Only for a regular file. Default on.
    pub second_reader: bool,
    /// Progress hook.
    pub progress: Option<ProgressFn>,
    /// Per blob, other repositories that may hold it (see
    /// [`crate::plan::plan_bundle_push_with`]): mounted from there, not uploaded.
    pub mount_sources: HashMap<Digest, Vec<String>>,
    /// (repository, blob) pairs this run already found missing: not asked again.
    pub known_absent: HashSet<(String, Digest)>,
    /// (repository, tag or digest) → the manifest digest this run's
    /// refresh found there (`None`: missing): not asked again unless it
    /// was the expected digest (see [`crate::plan::plan_bundle_push_with`]).
    pub known_tags: HashMap<(String, String), Option<Digest>>,
}

impl Default for RemotePushOptions {
    fn default() -> Self {
        RemotePushOptions {
            concurrency: 8,
            small_uploads: 8,
            buffered_blob: BUFFERED_BLOB,
            second_reader: true,
            progress: None,
            mount_sources: HashMap::new(),
            known_absent: HashSet::new(),
            known_tags: HashMap::new(),
        }
    }
}

impl fmt::Debug for RemotePushOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePushOptions")
            .field("concurrency", &self.concurrency)
            .field("small_uploads", &self.small_uploads)
            .field("buffered_blob", &self.buffered_blob)
            .field("second_reader", &self.second_reader)
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
/// the archive is read on; bigger blobs stream, one at a time per archive
/// reader (two readers: see [`RemotePushOptions::second_reader`]).
/// Half of [`BUFFER_BUDGET`], so that at least two of them upload at once.
/// (It was 16 MiB: a bundle of "16 MiB" gzip layers, each a little over,
/// then streamed its layers one by one per reader, and the reader with the
/// biggest layer reached it late: about 4 % slower on the push benchmark.)
pub const BUFFERED_BLOB: u64 = BUFFER_BUDGET / 2;

/// A streamed blob goes to its upload in chunks of (at most) this size.
/// 256 KiB rather than 64 KiB: a quarter of the channel sends and socket
/// writes (measured on the push benchmark: about 0.15 s less system time
/// for mirrorplan on 868 MiB, with no effect on memory worth counting).
pub const STREAM_CHUNK: usize = 256 * 1024;

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

/// The blobs the second archive reader streams: the uploads over `limit`,
/// largest first, each given to whichever reader has fewer bytes to upload
/// so far (the first reader starts with every upload up to `limit`; ties go
/// to the second reader).
fn second_reader_blobs(uploads: &BTreeMap<Digest, (String, u64)>, limit: u64) -> HashSet<Digest> {
    let mut big: Vec<(&Digest, u64)> = uploads
        .iter()
        .filter(|(_, (_, size))| *size > limit)
        .map(|(d, (_, size))| (d, *size))
        .collect();
    big.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut first: u64 = uploads
        .values()
        .map(|(_, size)| *size)
        .filter(|size| *size <= limit)
        .sum();
    let mut second = 0u64;
    let mut out = HashSet::new();
    for (digest, size) in big {
        if second <= first {
            second += size;
            out.insert(digest.clone());
        } else {
            first += size;
        }
    }
    out
}

/// Feed one blob from a blocking reader into an upload job: read whole
/// when it is at most `limit` bytes, else streamed.
fn feed(
    job_tx: &mpsc::Sender<Job>,
    budget: &Budget,
    limit: u64,
    repo: &str,
    blob: &BlobRef,
    reader: &mut dyn Read,
) -> Result<(), SinkError> {
    if blob.size <= limit {
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
    let mut buf = vec![0u8; STREAM_CHUNK];
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
        &options.known_tags,
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

    // ----- uploads, mounts and manifests, overlapped -----------------------
    // One pass over the archive uploads the missing blobs. As each upload
    // finishes, the mounts of that blob start; as soon as every (repository,
    // blob) pair an image needs has arrived, its manifests and then its tag
    // are pushed, while the archive is still being read. Mounts and
    // manifests share a pool of `concurrency` requests.
    let uploaded: Mutex<HashSet<Digest>> = Mutex::new(HashSet::new());
    let abort = Arc::new(AtomicBool::new(false));
    let mut fatal: Option<RegistryError> = None;
    let mut stream_report = StreamReport::default();
    let mut stream_fatal: Vec<BundleError> = Vec::new();
    let mut whole_failed: Vec<BundleError> = Vec::new();
    let mut waits = Waits::new(catalogue, &plan);
    let mut queue: VecDeque<Task> = VecDeque::new();
    for (i, m) in plan.mounts.iter().enumerate() {
        if !plan.uploads.contains_key(&m.digest) {
            // from a repository that already has it
            queue.push_back(Task::Mount(i));
        }
    }
    queue.extend(waits.ready_now().into_iter().map(Task::Manifest));
    // (repository, blob) -> why its mount failed.
    let mut pair_failed: HashMap<(String, Digest), String> = HashMap::new();
    // catalogue index -> why its manifest push failed.
    let mut manifest_failed: HashMap<usize, String> = HashMap::new();
    let mut pushed: Vec<(usize, RemoteImage)> = Vec::new();
    {
        let (job_tx, mut job_rx) = mpsc::channel::<Job>(1);
        let budget = Arc::new(Budget::new());
        let buffered = options.buffered_blob;
        let mut readers = Vec::new();
        if !plan.uploads.is_empty() {
            let uploads: Arc<BTreeMap<Digest, (String, u64)>> = Arc::new(plan.uploads.clone());
            // Blobs over the buffered limit stream, one at a time per
            // reader: a second reader of the same file (decoding it in
            // parallel) streams the biggest of them next to the first.
            let regular_file = std::fs::metadata(bundle.path()).is_ok_and(|m| m.is_file());
            let second: HashSet<Digest> = if options.second_reader && regular_file {
                second_reader_blobs(&plan.uploads, buffered)
            } else {
                HashSet::new()
            };
            let mut shares = vec![catalogue.with_blobs(|b| !second.contains(&b.digest))];
            if !second.is_empty() {
                shares.push(catalogue.with_blobs(|b| second.contains(&b.digest)));
            }
            for cat in shares {
                let uploads = uploads.clone();
                let bundle2 = bundle.clone();
                let budget2 = budget.clone();
                let abort2 = abort.clone();
                let job_tx = job_tx.clone();
                readers.push(tokio::task::spawn_blocking(move || {
                    bundle2.stream_blobs(&cat, |blob, r| {
                        let Some((repo, _)) = uploads.get(&blob.digest) else {
                            return Ok(()); // not uploaded: still verified by the reader
                        };
                        if abort2.load(Ordering::Relaxed) {
                            return Err(Box::new(Aborted));
                        }
                        feed(&job_tx, &budget2, buffered, repo, blob, r)
                    })
                }));
            }
        }
        // The channel closes when every reader has finished.
        drop(job_tx);
        // Uploads in flight: every blob read whole, plus the one
        // streaming blob (the reader waits for that one to finish).
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let limit = options.small_uploads.max(1);
        let mut jobs_open = true;
        // Mounts and manifests in flight.
        let mut requests = futures::stream::FuturesUnordered::new();
        loop {
            if abort.load(Ordering::Relaxed) {
                queue.clear(); // a registry-wide error: nothing new starts
            }
            while requests.len() < concurrency {
                let Some(task) = queue.pop_front() else {
                    break;
                };
                requests.push(run_task(task, client, catalogue, &plan));
            }
            tokio::select! {
                job = job_rx.recv(), if jobs_open && in_flight.len() < limit => {
                    let Some(job) = job else {
                        // The archive is read (by every reader): every blob
                        // in it was verified.
                        jobs_open = false;
                        for reader in readers.drain(..) {
                            match reader.await {
                                Ok(Ok(mut r)) => {
                                    stream_report.blobs_streamed += r.blobs_streamed;
                                    stream_report.bytes_streamed += r.bytes_streamed;
                                    stream_report.failures.append(&mut r.failures);
                                    stream_report.failed_images.append(&mut r.failed_images);
                                }
                                Ok(Err(e)) => stream_fatal.push(e),
                                Err(e) => {
                                    return Err(RegistryError::Internal(format!(
                                        "the bundle reader thread failed: {e}"
                                    )))
                                }
                            }
                        }
                        let bad: HashSet<&Digest> =
                            stream_report.failures.iter().filter_map(failed_digest).collect();
                        queue.extend(waits.verified(&bad).into_iter().map(Task::Manifest));
                        continue;
                    };
                    let (repo, blob, body, done, whole) = match job {
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
                            (repo, blob, body, Some(done), None)
                        }
                        Job::Whole { repo, blob, data } => {
                            if let Some(f) = &options.progress {
                                f(&PushProgress::Bytes {
                                    digest: blob.digest.clone(),
                                    bytes: data.len() as u64,
                                });
                            }
                            // held whole: sent again if the upload fails
                            let body = futures::stream::empty().boxed();
                            (repo, blob, body, None, Some(data))
                        }
                    };
                    progress(PushProgress::BlobStarted {
                        digest: blob.digest.clone(),
                        size: blob.size,
                    });
                    in_flight.push(async move {
                        let result = match whole {
                            Some(data) => client.upload_blob_bytes(&repo, &blob.digest, data).await,
                            None => client.upload_blob(&repo, &blob.digest, blob.size, body).await,
                        };
                        (repo, blob, result, done)
                    });
                }
                Some((repo, blob, result, done)) = in_flight.next(), if !in_flight.is_empty() => {
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
                            // Its mounts can start, and images waiting only
                            // for it can be pushed.
                            queue.extend(
                                waits
                                    .mounts_after
                                    .remove(&blob.digest)
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(Task::Mount),
                            );
                            queue.extend(
                                waits
                                    .arrived(&(repo, blob.digest.clone()))
                                    .into_iter()
                                    .map(Task::Manifest),
                            );
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
                Some(finished) = requests.next(), if !requests.is_empty() => {
                    let error = match finished {
                        Finished::Mount(i, Ok(())) => {
                            report.blobs_mounted += 1;
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
                            pair_failed.insert((m.repo.clone(), m.digest.clone()), chain(&e));
                            Some(e)
                        }
                        Finished::Manifest(i, Ok(n)) => {
                            let (image, p) = (&catalogue.images[i], &plan.images[i]);
                            progress(PushProgress::ImageDone {
                                name: image.name.clone(),
                            });
                            pushed.push((i, pushed_image(image, p, n)));
                            None
                        }
                        Finished::Manifest(i, Err(e)) => {
                            manifest_failed.insert(i, chain(&e));
                            Some(e)
                        }
                    };
                    match error {
                        Some(e) if e.is_fatal() => {
                            abort.store(true, Ordering::Relaxed);
                            if fatal.is_none() {
                                fatal = Some(e);
                            }
                        }
                        Some(e) => report.errors.push(e),
                        None => {}
                    }
                }
                else => break,
            }
        }
    }
    let uploaded = uploaded.into_inner().unwrap_or_default();
    report.blobs_uploaded = uploaded.len();

    // Blob failures: digest -> reason.
    let mut blob_failed: HashMap<Digest, String> = HashMap::new();
    stream_report.failures.append(&mut whole_failed);
    for e in stream_report.failures.drain(..) {
        if let Some(digest) = failed_digest(&e) {
            blob_failed.insert(digest.clone(), chain(&e));
        }
        let stopped = matches!(&e, BundleError::Sink { source, .. } if source.is::<Aborted>());
        if !stopped {
            report.errors.push(RegistryError::Bundle(e));
        }
    }
    // A reader that stopped inside a blob names it (with two readers, the
    // other one may have stopped elsewhere, e.g. while skipping).
    for e in &stream_fatal {
        if let Some(digest) = failed_digest(e) {
            if !uploaded.contains(digest) {
                blob_failed.insert(digest.clone(), format!("never reached: {}", chain(e)));
            }
        }
    }
    for e in stream_fatal {
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

    // ----- the images not pushed, and why ----------------------------------
    let stopped = fatal.as_ref().map(|f| format!("not pushed: {}", chain(f)));
    let done: HashSet<usize> = pushed.iter().map(|(i, _)| *i).collect();
    for (i, (image, p)) in catalogue.images.iter().zip(&plan.images).enumerate() {
        if matches!(p.status, ImageStatus::Present(_)) || done.contains(&i) {
            continue;
        }
        let repo = &p.mirror.repository;
        let reason = manifest_failed
            .remove(&i)
            .or_else(|| stopped.clone())
            .or_else(|| {
                image.blobs.iter().find_map(|b| {
                    pair_failed
                        .get(&(repo.clone(), b.digest.clone()))
                        .or_else(|| blob_failed.get(&b.digest))
                        .map(|r| format!("blob {} failed: {r}", b.digest))
                })
            })
            .unwrap_or_else(|| match waits.first_missing(i, image, repo) {
                Some(d) => format!("blob {d} never arrived in {repo}"),
                None => "not pushed".to_string(),
            });
        report.failed.push(FailedImage {
            name: image.name.clone(),
            reason,
        });
    }
    pushed.sort_by_key(|(i, _)| *i);
    report.pushed.extend(pushed.into_iter().map(|(_, r)| r));
    report.fatal = fatal;
    push_up_to_date(&plan, catalogue, &mut report, &progress);
    report.plan = plan;
    Ok(report)
}

/// The blob a per-blob failure of the archive pass is about.
fn failed_digest(e: &BundleError) -> Option<&Digest> {
    match e {
        BundleError::MissingBlob { digest, .. }
        | BundleError::BlobSize { digest, .. }
        | BundleError::BlobVerification { digest, .. }
        | BundleError::Truncated { digest, .. }
        | BundleError::Sink { digest, .. } => Some(digest),
        _ => None,
    }
}

/// A (repository, blob) pair.
pub(crate) type Pair = (String, Digest);

/// What each image of the push still waits for.
pub(crate) struct Waits {
    /// Per catalogue image: pairs that have not arrived yet.
    remaining: Vec<usize>,
    /// Per pair still to arrive (by upload or mount): the images waiting.
    users: HashMap<Pair, Vec<usize>>,
    /// Per uploaded blob: its mounts (indexes into the plan's), started
    /// when its upload finishes.
    pub(crate) mounts_after: HashMap<Digest, Vec<usize>>,
    /// Images using a blob that this run does not upload (already in the
    /// registry) but that the archive pass still verifies: they also wait
    /// for the end of that pass, so that a damaged bundle fails them as it
    /// fails the images whose upload it breaks.
    after_stream: Vec<(usize, Vec<Digest>)>,
    /// Images whose pairs have all arrived (queued once).
    released: Vec<bool>,
}

impl Waits {
    pub(crate) fn new(catalogue: &Catalogue, plan: &PushPlan) -> Waits {
        let mut arriving: HashSet<Pair> = plan
            .uploads
            .iter()
            .map(|(d, (r, _))| (r.clone(), d.clone()))
            .collect();
        arriving.extend(
            plan.mounts
                .iter()
                .map(|m| (m.repo.clone(), m.digest.clone())),
        );
        let n = catalogue.images.len();
        let mut w = Waits {
            remaining: vec![0; n],
            users: HashMap::new(),
            mounts_after: HashMap::new(),
            after_stream: Vec::new(),
            released: vec![false; n],
        };
        for (i, (image, p)) in catalogue.images.iter().zip(&plan.images).enumerate() {
            if matches!(p.status, ImageStatus::Present(_)) {
                w.released[i] = true; // not pushed: up to date
                continue;
            }
            let kept: Vec<Digest> = image
                .blobs
                .iter()
                .filter(|b| !plan.uploads.contains_key(&b.digest))
                .map(|b| b.digest.clone())
                .collect();
            if !kept.is_empty() {
                w.after_stream.push((i, kept));
                w.remaining[i] += 1;
            }
            for b in &image.blobs {
                let key = (p.mirror.repository.clone(), b.digest.clone());
                if arriving.contains(&key) {
                    let u = w.users.entry(key).or_default();
                    if !u.contains(&i) {
                        u.push(i);
                        w.remaining[i] += 1;
                    }
                }
            }
        }
        for (i, m) in plan.mounts.iter().enumerate() {
            if plan.uploads.contains_key(&m.digest) {
                w.mounts_after.entry(m.digest.clone()).or_default().push(i);
            }
        }
        w
    }

    /// Images that wait for nothing (all their blobs already there).
    pub(crate) fn ready_now(&mut self) -> Vec<usize> {
        let mut ready = Vec::new();
        for i in 0..self.remaining.len() {
            if self.remaining[i] == 0 && !self.released[i] {
                self.released[i] = true;
                ready.push(i);
            }
        }
        ready
    }

    /// `pair` is now present: the images this completes.
    pub(crate) fn arrived(&mut self, pair: &Pair) -> Vec<usize> {
        let mut ready = Vec::new();
        for i in self.users.remove(pair).unwrap_or_default() {
            self.remaining[i] = self.remaining[i].saturating_sub(1);
            if self.remaining[i] == 0 && !self.released[i] {
                self.released[i] = true;
                ready.push(i);
            }
        }
        ready
    }

    /// The archive pass ended, `bad` its failed blobs: the images it
    /// completes (those using a failed blob keep waiting: they fail).
    pub(crate) fn verified(&mut self, bad: &HashSet<&Digest>) -> Vec<usize> {
        let mut ready = Vec::new();
        for (i, kept) in std::mem::take(&mut self.after_stream) {
            if kept.iter().any(|d| bad.contains(d)) {
                continue;
            }
            self.remaining[i] = self.remaining[i].saturating_sub(1);
            if self.remaining[i] == 0 && !self.released[i] {
                self.released[i] = true;
                ready.push(i);
            }
        }
        ready
    }

    /// A blob image `i` still waits for in `repo`.
    pub(crate) fn first_missing<'a>(
        &self,
        i: usize,
        image: &'a ImageEntry,
        repo: &str,
    ) -> Option<&'a Digest> {
        image.blobs.iter().map(|b| &b.digest).find(|d| {
            self.users
                .get(&(repo.to_string(), (*d).clone()))
                .is_some_and(|u| u.contains(&i))
        })
    }
}

/// Work for the request pool next to the uploads.
pub(crate) enum Task {
    /// The plan's mount with this index.
    Mount(usize),
    /// The manifests and tag of the catalogue image with this index.
    Manifest(usize),
}

pub(crate) enum Finished {
    Mount(usize, Result<(), RegistryError>),
    Manifest(usize, Result<usize, RegistryError>),
}

pub(crate) fn run_task<'a>(
    task: Task,
    client: &'a RegistryClient,
    catalogue: &'a Catalogue,
    plan: &'a PushPlan,
) -> futures::future::BoxFuture<'a, Finished> {
    match task {
        Task::Mount(i) => {
            let m = &plan.mounts[i];
            async move { Finished::Mount(i, mount_or_copy(client, &m.repo, &m.digest, &m.from).await) }
                .boxed()
        }
        Task::Manifest(i) => {
            let (image, p) = (&catalogue.images[i], &plan.images[i]);
            async move { Finished::Manifest(i, push_manifests(client, image, p).await) }.boxed()
        }
    }
}

/// Children first, then the top manifest under its tag: the count pushed.
async fn push_manifests(
    client: &RegistryClient,
    image: &ImageEntry,
    p: &ImagePlan,
) -> Result<usize, RegistryError> {
    let repo = &p.mirror.repository;
    let mut n = 0;
    for child in &image.children {
        client
            .put_manifest(repo, child.digest.as_str(), &child.media_type, &child.bytes)
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
    Ok(n + 1)
}

fn pushed_image(image: &ImageEntry, p: &ImagePlan, manifests: usize) -> RemoteImage {
    RemoteImage {
        name: image.name.clone(),
        mirror: p.mirror.clone(),
        digest: image.manifest_digest.clone(),
        up_to_date: false,
        blobs_uploaded: p.blobs_to_upload,
        blobs_mounted: p.blobs_to_mount,
        blobs_skipped: p.blobs_to_skip,
        bytes_uploaded: p.bytes_to_upload,
        manifests_pushed: manifests,
        filtered: image.filtered,
        synthesized: image.synthesized,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads(sizes: &[u64]) -> (BTreeMap<Digest, (String, u64)>, Vec<Digest>) {
        let digests: Vec<Digest> = (0..sizes.len())
            .map(|i| Digest::of(i.to_string().as_bytes()))
            .collect();
        let map = digests
            .iter()
            .zip(sizes)
            .map(|(d, s)| (d.clone(), ("r".to_string(), *s)))
            .collect();
        (map, digests)
    }

    #[test]
    fn the_second_reader_takes_the_biggest_blobs_up_to_about_half() {
        // The benchmark's shape: many medium blobs, a 32 and a 256 MiB layer.
        let mib = 1024 * 1024;
        let mut sizes = vec![8 * mib; 70];
        sizes.extend([32 * mib, 256 * mib]);
        let (map, d) = uploads(&sizes);
        let second = second_reader_blobs(&map, 16 * mib);
        assert_eq!(second, HashSet::from([d[70].clone(), d[71].clone()]));

        // Only big blobs: balanced by bytes, the largest to the second.
        let (map, d) = uploads(&[40, 30, 20, 10]);
        let second = second_reader_blobs(&map, 5);
        assert_eq!(second, HashSet::from([d[0].clone(), d[3].clone()]));

        // Nothing over the limit: no second reader.
        let (map, _) = uploads(&[1, 2, 3]);
        assert!(second_reader_blobs(&map, 5).is_empty());
    }
}
