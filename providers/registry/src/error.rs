//! Error types of the registry provider. Every error names the image and the
//! blob it concerns, has a stable `mirrorplan::registry::...` code and a help
//! line. No credentials pass through this crate's offline half, so nothing
//! here can leak a secret.

use std::fmt;
use std::io;
use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::digest::{Digest, VerifyFailure};

/// Errors in references, digests, namespaces and platform strings.
#[derive(Debug, Error, Diagnostic, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference `{reference}`: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::invalid_reference),
        help("use `[host[:port]/]path[:tag][@sha256:<64 hex>]`, e.g. `gcr.io/project/image:1.0`")
    )]
    InvalidReference { reference: String, reason: String },

    #[error("invalid digest `{digest}`: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::invalid_digest),
        help("digests look like `sha256:` followed by 64 lowercase hex characters")
    )]
    InvalidDigest { digest: String, reason: String },

    #[error("invalid mirror namespace `{namespace}`: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::invalid_namespace),
        help("a namespace is one or more lowercase path components, e.g. `test-namespace`")
    )]
    InvalidNamespace { namespace: String, reason: String },

    #[error("invalid platform `{platform}`: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::invalid_platform),
        help("use `os/arch[/variant]`, e.g. `linux/amd64` or `linux/arm/v7`")
    )]
    InvalidPlatform { platform: String, reason: String },
}

/// A list of image names, displayed as `a, b and 3 more`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageNames(pub Vec<String>);

impl fmt::Display for ImageNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 3;
        match self.0.len() {
            0 => f.write_str("no image"),
            n => {
                let shown: Vec<&str> = self.0.iter().take(SHOWN).map(String::as_str).collect();
                f.write_str(&shown.join(", "))?;
                if n > SHOWN {
                    write!(f, " and {} more", n - SHOWN)?;
                }
                Ok(())
            }
        }
    }
}

/// Boxed error returned by a blob sink (an uploader, a store).
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors reading a bundle. Whole-bundle errors (`Open`, `Format`, `Read`,
/// `NoIndex`, `UnreadableIndex`) abort; the others are per image or per blob
/// and are collected in [`crate::Catalogue::failures`] or
/// [`crate::StreamReport::failures`].
#[derive(Debug, Error, Diagnostic)]
pub enum BundleError {
    #[error("cannot open bundle {path}")]
    #[diagnostic(
        code(mirrorplan::registry::bundle_open),
        help("check that the bundle path exists and is readable")
    )]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("bundle {path} is not a supported archive: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::bundle_format),
        help("bundles are OCI image layouts or `docker save` archives packed as .tar, .tar.gz, .tar.xz or .tar.zst")
    )]
    Format { path: PathBuf, reason: String },

    #[error("bundle {path} is truncated or corrupt ({where_})")]
    #[diagnostic(
        code(mirrorplan::registry::bundle_read),
        help("the archive stream ended early or does not decompress; download the bundle again and compare its checksum")
    )]
    Read {
        path: PathBuf,
        where_: String,
        #[source]
        source: io::Error,
    },

    #[error("bundle {path} has neither index.json (OCI layout) nor manifest.json (docker save)")]
    #[diagnostic(
        code(mirrorplan::registry::bundle_no_index),
        help("the archive may be truncated, or it is not an image bundle")
    )]
    NoIndex { path: PathBuf },

    #[error("bundle {path}: {file} is unreadable: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::bundle_unreadable_index),
        help("index.json / manifest.json must be valid JSON as written by an OCI tool or `docker save`")
    )]
    UnreadableIndex {
        path: PathBuf,
        file: String,
        reason: String,
    },

    #[error("bundle {path}: more than {limit} of JSON metadata ({at}); not a valid image bundle")]
    #[diagnostic(
        code(mirrorplan::registry::bundle_metadata_limit),
        help("an image bundle's manifests, indexes and configs are small; this archive holds far more JSON than images need (damaged, or built to exhaust memory)")
    )]
    TooMuchMetadata {
        path: PathBuf,
        limit: String,
        at: String,
    },

    #[error("image `{image}` in the bundle has no usable name: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::image_name),
        help("each image needs its full upstream name in the `io.containerd.image.name` or `org.opencontainers.image.ref.name` annotation (OCI) or in RepoTags (docker save)")
    )]
    ImageName { image: String, reason: String },

    #[error("image `{image}`: manifest {digest} is referenced but not in the bundle")]
    #[diagnostic(
        code(mirrorplan::registry::missing_manifest),
        help("the bundle is incomplete; rebuild it with all platforms or filter platforms with --platform")
    )]
    MissingManifest { image: String, digest: Digest },

    #[error("image `{image}`: manifest {digest} is unreadable: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::unreadable_manifest),
        help("the manifest must be an OCI or Docker v2 image manifest or index")
    )]
    UnreadableManifest {
        image: String,
        digest: Digest,
        reason: String,
    },

    #[error("image `{image}` has no platform matching {wanted}; it has {available}")]
    #[diagnostic(
        code(mirrorplan::registry::platform_not_available),
        help("choose platforms the image provides, or drop the platform filter")
    )]
    PlatformNotAvailable {
        image: String,
        wanted: String,
        available: String,
    },

    #[error("blob {digest} used by {images} is referenced but not in the bundle")]
    #[diagnostic(
        code(mirrorplan::registry::missing_blob),
        help("the bundle is incomplete or truncated; rebuild or download it again")
    )]
    MissingBlob { digest: Digest, images: ImageNames },

    #[error("blob {digest} used by {images} is {actual} bytes in the bundle but its manifest says {expected}")]
    #[diagnostic(
        code(mirrorplan::registry::blob_size),
        help(
            "the bundle's blob does not match its manifest; rebuild or download the bundle again"
        )
    )]
    BlobSize {
        digest: Digest,
        images: ImageNames,
        expected: u64,
        actual: u64,
    },

    #[error("blob {digest} used by {images} failed verification while streaming: {failure}")]
    #[diagnostic(
        code(mirrorplan::registry::blob_verification),
        help("the bundle's bytes do not match their digest (corrupt or truncated); nothing of this blob was committed")
    )]
    BlobVerification {
        digest: Digest,
        images: ImageNames,
        failure: VerifyFailure,
    },

    #[error("bundle {path} ended while streaming blob {digest} used by {images}")]
    #[diagnostic(
        code(mirrorplan::registry::bundle_truncated),
        help("the archive is truncated or corrupt; download it again")
    )]
    Truncated {
        path: PathBuf,
        digest: Digest,
        images: ImageNames,
        #[source]
        source: io::Error,
    },

    #[error("storing blob {digest} used by {images} failed")]
    #[diagnostic(
        code(mirrorplan::registry::blob_sink),
        help("see the cause below; the blob was verified while streaming and nothing partial was committed")
    )]
    Sink {
        digest: Digest,
        images: ImageNames,
        #[source]
        source: SinkError,
    },
}

/// Errors of the local OCI layout store (`oci:PATH` registries).
#[derive(Debug, Error, Diagnostic)]
pub enum StoreError {
    #[error("OCI store {path}: cannot {action}")]
    #[diagnostic(
        code(mirrorplan::registry::store_io),
        help("check that the directory exists, is writable and the disk is not full")
    )]
    Io {
        path: PathBuf,
        action: String,
        #[source]
        source: io::Error,
    },

    #[error("OCI store {path} is not a valid OCI image layout: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::store_layout),
        help("point `oci:PATH` at an empty directory or an OCI image layout (oci-layout + index.json)")
    )]
    Layout { path: PathBuf, reason: String },

    #[error("OCI store: blob {digest} failed verification: {failure}")]
    #[diagnostic(
        code(mirrorplan::registry::store_blob_verification),
        help("the bytes offered do not match the digest; nothing was stored")
    )]
    Verification {
        digest: Digest,
        failure: VerifyFailure,
    },

    #[error("OCI store: reading blob {digest} from its source failed")]
    #[diagnostic(
        code(mirrorplan::registry::store_blob_source),
        help("the source stream failed (for a bundle: corrupt or truncated); nothing was stored")
    )]
    Source {
        digest: Digest,
        #[source]
        source: io::Error,
    },

    #[error("OCI store: manifest {digest} for {repository} references {missing}, which is not stored yet")]
    #[diagnostic(
        code(mirrorplan::registry::store_manifest_order),
        help("store every blob and child manifest before the manifest that references it")
    )]
    MissingReference {
        repository: String,
        digest: Digest,
        missing: Digest,
    },

    #[error("OCI store: manifest {digest} for {repository} is not valid: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::store_manifest_invalid),
        help("manifests must be OCI or Docker v2 image manifests or indexes")
    )]
    InvalidManifest {
        repository: String,
        digest: Digest,
        reason: String,
    },

    #[error("OCI store: invalid repository or tag `{name}`: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::store_name),
        help("repositories are lowercase paths, tags are `[A-Za-z0-9_][A-Za-z0-9_.-]*`")
    )]
    Name { name: String, reason: String },
}
