//! Push a bundle into a local OCI layout store, in the order that keeps a
//! mirror consistent at every instant: all blobs (streamed and verified),
//! then each image's platform manifests, then its top manifest, then its
//! tag. An image with any failed blob gets no manifest and no tag. Tags are
//! written in batches of up to [`TAG_BATCH`] images, one `index.json`
//! rewrite per batch (per-image rewrites of a growing index are quadratic:
//! hours for 10,000 images), each batch after its images' manifests.

use std::cell::Cell;

use crate::bundle::{Bundle, Catalogue};
use crate::digest::Digest;
use crate::error::{BundleError, StoreError};
use crate::reference::MirrorRef;
use crate::store::{OciStore, PutOutcome, TagBatch};

/// An image now on the mirror.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// Full upstream name.
    pub name: String,
    /// Where it is on the mirror.
    pub mirror: MirrorRef,
    /// Digest of the manifest stored (equals the bundle's unless
    /// `filtered` or `synthesized`).
    pub digest: Digest,
    /// Whether a platform filter rewrote the index.
    pub filtered: bool,
    /// Whether the manifest was synthesised from a docker archive.
    pub synthesized: bool,
}

/// What [`push_bundle_to_store`] did.
#[derive(Debug, Default)]
pub struct PushReport {
    /// Images stored and tagged (digest-only references: stored, untagged).
    pub pushed: Vec<PushedImage>,
    /// Images not pushed because one of their blobs failed.
    pub skipped: Vec<String>,
    /// The blob failures (each names its blob and images).
    pub blob_failures: Vec<BundleError>,
    /// Manifest failures per image.
    pub manifest_failures: Vec<(String, StoreError)>,
    /// Blobs written now.
    pub blobs_written: usize,
    /// Blobs the store already had (still verified from the bundle).
    pub blobs_present: usize,
}

/// Push every image of `catalogue` into `store` under `namespace`.
///
/// Fatal bundle errors (truncated archive) abort with `Err`; per-image
/// problems are in the report.
pub fn push_bundle_to_store(
    bundle: &Bundle,
    catalogue: &Catalogue,
    store: &OciStore,
    namespace: Option<&str>,
) -> Result<PushReport, BundleError> {
    push_bundle_to_store_with(bundle, catalogue, store, namespace, &|_, _| {})
}

/// [`push_bundle_to_store`], calling `on_bytes(blob, n)` as each `n` bytes
/// of a blob are read from the bundle (for progress bars).
pub fn push_bundle_to_store_with(
    bundle: &Bundle,
    catalogue: &Catalogue,
    store: &OciStore,
    namespace: Option<&str>,
    on_bytes: &dyn Fn(&Digest, u64),
) -> Result<PushReport, BundleError> {
    let written = Cell::new(0usize);
    let present = Cell::new(0usize);
    let stream = bundle.stream_blobs(catalogue, |blob, reader| {
        let mut reader = Counting {
            inner: reader,
            digest: &blob.digest,
            on_bytes,
        };
        match store.put_blob(&blob.digest, blob.size, &mut reader)? {
            PutOutcome::Written => written.set(written.get() + 1),
            PutOutcome::AlreadyPresent => present.set(present.get() + 1),
        }
        Ok(())
    })?;
    let mut report = PushReport {
        blobs_written: written.get(),
        blobs_present: present.get(),
        ..PushReport::default()
    };
    // Tags are collected and written TAG_BATCH at a time, each batch with
    // one rewrite of index.json, after the manifests of its images.
    let mut tags = TagBatch::default();
    let mut tagged: Vec<PushedImage> = Vec::new();
    for image in &catalogue.images {
        if !stream.image_ok(&image.name) {
            report.skipped.push(image.name.clone());
            continue;
        }
        let mirror = image.mirror_ref(namespace);
        let result = (|| -> Result<bool, StoreError> {
            for child in &image.children {
                store.put_manifest_blob(&mirror.repository, &child.media_type, &child.bytes)?;
            }
            let desc = store.put_manifest_blob(
                &mirror.repository,
                &image.media_type,
                &image.manifest_bytes,
            )?;
            match &mirror.tag {
                Some(tag) => {
                    tags.add(&mirror.repository, tag, desc)?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })();
        let pushed = PushedImage {
            name: image.name.clone(),
            mirror,
            digest: image.manifest_digest.clone(),
            filtered: image.filtered,
            synthesized: image.synthesized,
        };
        match result {
            Ok(true) => tagged.push(pushed),
            Ok(false) => report.pushed.push(pushed),
            Err(e) => report.manifest_failures.push((image.name.clone(), e)),
        }
        if tags.len() >= TAG_BATCH {
            flush_tags(store, &mut tags, &mut tagged, &mut report);
        }
    }
    flush_tags(store, &mut tags, &mut tagged, &mut report);
    report.blob_failures = stream.failures;
    Ok(report)
}

/// A reader that reports how many bytes went through it.
struct Counting<'a, R: ?Sized> {
    inner: &'a mut R,
    digest: &'a Digest,
    on_bytes: &'a dyn Fn(&Digest, u64),
}

impl<R: std::io::Read + ?Sized> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            (self.on_bytes)(self.digest, n as u64);
        }
        Ok(n)
    }
}

/// How many tags one `index.json` rewrite records at most.
const TAG_BATCH: usize = 1000;

/// Writes the pending tags; their images count as pushed, or all fail
/// with the index error.
fn flush_tags(
    store: &OciStore,
    tags: &mut TagBatch,
    tagged: &mut Vec<PushedImage>,
    report: &mut PushReport,
) {
    match store.put_tags(std::mem::take(tags)) {
        Ok(()) => report.pushed.append(tagged),
        Err(e) => {
            let why = e.to_string();
            for image in tagged.drain(..) {
                report.manifest_failures.push((
                    image.name,
                    StoreError::Io {
                        path: store.root().to_path_buf(),
                        action: "update index.json".into(),
                        source: std::io::Error::other(why.clone()),
                    },
                ));
            }
        }
    }
}
