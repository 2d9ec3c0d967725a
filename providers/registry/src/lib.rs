//! Registry provider: bundles, OCI distribution client, mirror path mapping.
//!
//! This is the offline half: image references and mirror paths
//! ([`reference`]), streaming bundle reading ([`bundle`]), a local OCI image
//! layout store for `oci:PATH` registries ([`store`]), the push of a bundle
//! into such a store ([`push`]) and deterministic test bundles
//! ([`fixtures`]).
//!
//! The network half: a registry client with auth, TLS, proxies and retries
//! ([`client`], [`auth`], errors in [`client_error`]), the push of a bundle
//! to a registry ([`push_remote`]: HEAD before upload, each blob uploaded
//! once per run and mounted into the other repositories, bounded-memory
//! streaming from the archive), registry-to-registry copies ([`copy`]) and
//! read-only plan queries ([`plan`]). The invariants below hold for both
//! halves.
//!
//! # Invariants
//!
//! - **Manifests byte for byte.** Manifest and index bytes are copied
//!   exactly as they are in the bundle, never re-serialised, so digests on
//!   the mirror equal the upstream digests. The two exceptions are flagged:
//!   an index rewritten by a platform filter (`ImageEntry::filtered`, new
//!   digest, `original_digest` keeps the old one) and a manifest synthesised
//!   for a `docker save` archive (`ImageEntry::synthesized`).
//! - **Every blob is verified while it streams.** Bytes pass through a
//!   sha256 + size check ([`digest::VerifyingReader`]); a mismatch surfaces
//!   as a read error before end-of-file, so a consumer that reads to the end
//!   never commits bad bytes. Nothing is extracted to disk and no layer is
//!   held whole in memory.
//! - **A manifest only after its blobs.** [`store::OciStore::put_manifest`]
//!   refuses a manifest whose config, layers or child manifests are not
//!   stored yet; [`push`] stores blobs, then platform manifests, then the
//!   top manifest.
//! - **The tag last.** The tag (an `index.json` entry, rewritten
//!   atomically) is written only once everything it points at is stored, so
//!   a reader never sees a tag that resolves to missing content. A bundle
//!   push records its tags in batches ([`store::OciStore::put_tags`]), one
//!   index rewrite per batch.
//! - **One image's failure does not stop the others.** Per-image problems
//!   are collected in `Catalogue::failures` / `StreamReport::failures`.

pub mod auth;
pub mod bundle;
pub mod client;
pub mod client_error;
pub mod copy;
pub mod digest;
pub mod error;
pub mod fixtures;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod oci;
pub mod plan;
pub mod provider;
pub mod push;
pub mod push_remote;
pub mod reference;
pub mod referrers;
mod request_log;
mod seek;
pub mod set;
pub mod store;
pub mod summary;

pub use auth::{Auth, Credentials, Secret};
pub use bundle::{
    BlobRef, Bundle, BundleFormat, Catalogue, CatalogueOptions, ChildManifest, Compression,
    ImageEntry, ImageFailure, StreamReport,
};
pub use client::{
    ClientOptions, ManifestInfo, MountOutcome, RegistryClient, RegistryTarget, RetryPolicy, Scheme,
    UploadMode, UploadSession,
};
pub use client_error::RegistryError;
pub use copy::{copy_image, resolve_source, CopyOptions, CopyReport, ResolvedSource};
pub use digest::{Digest, VerifyFailure, VerifyingReader};
pub use error::{BundleError, ImageNames, ReferenceError, SinkError, StoreError};
pub use oci::Descriptor;
pub use plan::{image_status, plan_bundle_push, ImagePlan, ImageStatus, PushPlan};
pub use push::{push_bundle_to_store, PushReport};
pub use push_remote::{
    push_bundle_to_registry, FailedImage, PushProgress, RegistryPushReport, RemoteImage,
    RemotePushOptions,
};
pub use reference::{mirror_path, validate_namespace, ImageRef, MirrorRef, Platform};
pub use store::{OciStore, TagEntry};
