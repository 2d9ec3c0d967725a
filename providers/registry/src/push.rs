//! Push a bundle into a local OCI layout store, in the order that keeps a
//! mirror consistent at every instant: all blobs (streamed and verified),
//! then each image's platform manifests, then its top manifest, then its
//! tag. An image with any failed blob gets no manifest and no tag.

use std::cell::Cell;

use crate::bundle::{Bundle, Catalogue};
use crate::digest::Digest;
use crate::error::{BundleError, StoreError};
use crate::reference::MirrorRef;
use crate::store::{OciStore, PutOutcome};

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
    let written = Cell::new(0usize);
    let present = Cell::new(0usize);
    let stream = bundle.stream_blobs(catalogue, |blob, reader| {
        match store.put_blob(&blob.digest, blob.size, reader)? {
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
    for image in &catalogue.images {
        if !stream.image_ok(&image.name) {
            report.skipped.push(image.name.clone());
            continue;
        }
        let mirror = image.mirror_ref(namespace);
        let result = (|| -> Result<(), StoreError> {
            for child in &image.children {
                store.put_manifest_blob(&mirror.repository, &child.media_type, &child.bytes)?;
            }
            match &mirror.tag {
                Some(tag) => store.put_manifest(
                    &mirror.repository,
                    tag,
                    &image.media_type,
                    &image.manifest_bytes,
                )?,
                None => store.put_manifest_blob(
                    &mirror.repository,
                    &image.media_type,
                    &image.manifest_bytes,
                )?,
            };
            Ok(())
        })();
        match result {
            Ok(()) => report.pushed.push(PushedImage {
                name: image.name.clone(),
                mirror,
                digest: image.manifest_digest.clone(),
                filtered: image.filtered,
                synthesized: image.synthesized,
            }),
            Err(e) => report.manifest_failures.push((image.name.clone(), e)),
        }
    }
    report.blob_failures = stream.failures;
    Ok(report)
}
