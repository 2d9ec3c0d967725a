//! Referrers: the signatures, attestations, SBOMs and other artifacts that
//! refer to an image (`image_set { referrers = true }`).
//!
//! Two ways of finding them, as OCI 1.1 and cosign define them:
//!
//! - the **referrers API**, `GET /v2/NAME/referrers/DIGEST`: an index of
//!   the manifests whose `subject` is DIGEST, where the registry
//!   implements it;
//! - the **tag schema**: the fallback index tagged `sha256-<hex>` (what OCI
//!   clients write on registries without the API) and cosign's
//!   `sha256-<hex>.sig`, `.att` and `.sbom` tags, asked for always (cosign
//!   writes them whatever the registry supports).
//!
//! [`discover`] finds them for a list of subjects (an image's manifest and
//! each platform manifest it keeps) at plan time; [`copy_referrers`]
//! copies them after their subject with [`crate::copy::copy_image`], byte
//! for byte (no platform filter), so their digests and the digests their
//! signatures sign are the source's. Artifacts found through the API are
//! also listed in the fallback index of a mirror that does not answer the
//! referrers API, so that clients find them there too.

use serde::{Deserialize, Serialize};

use crate::client::RegistryClient;
use crate::client_error::RegistryError;
use crate::copy::{copy_image, CopyOptions};
use crate::digest::Digest;
use crate::oci::{self, media_types, Descriptor, Parsed};
use crate::reference::ImageRef;

/// cosign's tag suffixes: signatures, attestations, SBOMs.
pub const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// One artifact referring to an image, as the plan lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referrer {
    /// The digest of the manifest it refers to (the image or one of its
    /// platform manifests).
    pub subject: String,
    /// Its manifest digest (kept on the mirror).
    pub digest: String,
    /// Its manifest media type.
    pub media_type: String,
    /// Its `artifactType`, when the referrers index gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The tag it is copied under (`sha256-<hex>.sig`, the fallback index
    /// `sha256-<hex>`); `None`: by digest only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// How it was found: `referrers_api`, `fallback_tag` (listed in the
    /// fallback index, or the index itself), `cosign_tag`, or `bundle` (an
    /// image of the bundle: pushed as its own image instance, listed here).
    pub found_by: String,
}

impl Referrer {
    /// `sha256-<hex>.sig (cosign signature) sha256:…`, for the human plan.
    pub fn line(&self) -> String {
        if self.found_by == "bundle" {
            return format!(
                "referrer of {}: {} (in the bundle, pushed as its own image)",
                short(&self.subject),
                self.tag.as_deref().unwrap_or(&self.digest)
            );
        }
        let what = match (&self.tag, self.found_by.as_str()) {
            (Some(t), _) if t.ends_with(".sig") => format!("{t} (cosign signature)"),
            (Some(t), _) if t.ends_with(".att") => format!("{t} (cosign attestation)"),
            (Some(t), _) if t.ends_with(".sbom") => format!("{t} (cosign SBOM)"),
            (Some(t), _) => format!("{t} (referrers fallback index)"),
            (None, how) => format!(
                "{} ({})",
                self.artifact_type.as_deref().unwrap_or(&self.media_type),
                if how == "referrers_api" {
                    "referrers API"
                } else {
                    "in the fallback index"
                }
            ),
        };
        format!(
            "referrer of {}: {what} {}",
            short(&self.subject),
            self.digest
        )
    }
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// The fallback tag of a subject: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

fn descriptors_of(index: &[u8]) -> Option<Vec<Descriptor>> {
    match oci::parse_manifest(index, Some(media_types::OCI_INDEX)) {
        Ok((_, Parsed::Index { manifests })) => Some(manifests),
        _ => None,
    }
}

fn artifact_type(d: &Descriptor) -> Option<String> {
    d.extra
        .get("artifactType")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The artifacts an index of referrers of `subject` lists (the referrers
/// API's answer or a fallback tag's index), found the way `found_by` says.
fn listed(index: &[u8], subject: &Digest, found_by: &str) -> Vec<Referrer> {
    descriptors_of(index)
        .unwrap_or_default()
        .iter()
        .map(|d| Referrer {
            subject: subject.to_string(),
            digest: d.digest.to_string(),
            media_type: d.media_type.clone(),
            artifact_type: artifact_type(d),
            tag: None,
            found_by: found_by.into(),
        })
        .collect()
}

/// The referrers of each of `subjects` in `repo`, in the order they must be
/// pushed (after their subject): the artifacts, then the fallback index
/// that lists them.
pub async fn discover(
    src: &RegistryClient,
    repo: &str,
    subjects: &[Digest],
) -> Result<Vec<Referrer>, RegistryError> {
    let mut out: Vec<Referrer> = Vec::new();
    let push = |r: Referrer, out: &mut Vec<Referrer>| {
        if !out.iter().any(|o| o.digest == r.digest && o.tag == r.tag) {
            out.push(r);
        }
    };
    for subject in subjects {
        let mut index_last = None;
        match src.get_referrers(repo, subject).await? {
            Some(bytes) => {
                for r in listed(&bytes, subject, "referrers_api") {
                    push(r, &mut out);
                }
            }
            None => {
                let tag = fallback_tag(subject);
                if src.head_manifest(repo, &tag).await?.is_some() {
                    let (bytes, mt, digest) = src.get_manifest(repo, &tag).await?;
                    if oci::is_index(&mt) {
                        for r in listed(&bytes, subject, "fallback_tag") {
                            push(r, &mut out);
                        }
                    }
                    index_last = Some(Referrer {
                        subject: subject.to_string(),
                        digest: digest.to_string(),
                        media_type: mt,
                        artifact_type: None,
                        tag: Some(tag),
                        found_by: "fallback_tag".into(),
                    });
                }
            }
        }
        for suffix in COSIGN_SUFFIXES {
            let tag = format!("{}.{suffix}", fallback_tag(subject));
            if let Some(info) = src.head_manifest(repo, &tag).await? {
                push(
                    Referrer {
                        subject: subject.to_string(),
                        digest: info.digest.to_string(),
                        media_type: info.media_type,
                        artifact_type: None,
                        tag: Some(tag),
                        found_by: "cosign_tag".into(),
                    },
                    &mut out,
                );
            }
        }
        if let Some(i) = index_last {
            push(i, &mut out);
        }
    }
    Ok(out)
}

/// What [`copy_referrers`] did.
#[derive(Debug, Clone, Default)]
pub struct ReferrersReport {
    /// Referrer manifests put on the mirror (not up to date before).
    pub copied: usize,
    /// Fallback indexes written on the mirror for artifacts found through
    /// the referrers API.
    pub indexes_written: usize,
}

/// Copies `referrers` (from [`discover`]) from `src_repo` to `dst_repo`, in
/// their order, each byte for byte; their subjects must be on the mirror
/// already. A referrer whose digest would change is an error.
pub async fn copy_referrers(
    src: &RegistryClient,
    src_image: &ImageRef,
    dst: &RegistryClient,
    dst_repo: &str,
    referrers: &[Referrer],
    force: bool,
) -> Result<ReferrersReport, RegistryError> {
    let mut report = ReferrersReport::default();
    let options = CopyOptions {
        force,
        ..CopyOptions::default()
    };
    for r in referrers {
        let digest = Digest::parse(&r.digest).map_err(|e| RegistryError::Platform {
            image: src_image.to_string(),
            reason: format!("referrer {}: {e}", r.digest),
        })?;
        let src_ref = ImageRef {
            registry: src_image.registry.clone(),
            repository: src_image.repository.clone(),
            tag: None,
            digest: Some(digest.clone()),
        };
        let done = copy_image(src, &src_ref, dst, dst_repo, r.tag.as_deref(), &options).await?;
        if done.digest.as_ref() != Some(&digest) {
            return Err(RegistryError::Platform {
                image: src_image.to_string(),
                reason: format!(
                    "referrer {} would be pushed as {:?}: not copied",
                    r.digest, done.digest
                ),
            });
        }
        if !done.up_to_date {
            report.copied += 1;
        }
    }
    // artifacts the source lists through the API: a mirror without the API
    // gets them in its fallback index, merged with what it lists already
    let mut subjects: Vec<&str> = referrers
        .iter()
        .filter(|r| r.found_by == "referrers_api")
        .map(|r| r.subject.as_str())
        .collect();
    subjects.dedup();
    for subject in subjects {
        let Ok(subject_digest) = Digest::parse(subject) else {
            continue;
        };
        if dst
            .get_referrers(dst_repo, &subject_digest)
            .await?
            .is_some()
        {
            continue;
        }
        let tag = fallback_tag(&subject_digest);
        let mut manifests: Vec<serde_json::Value> = match dst.head_manifest(dst_repo, &tag).await? {
            Some(_) => {
                let (bytes, _, _) = dst.get_manifest(dst_repo, &tag).await?;
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let before = manifests.len();
        for r in referrers
            .iter()
            .filter(|r| r.subject == subject && r.found_by == "referrers_api")
        {
            if manifests
                .iter()
                .any(|m| m.get("digest").and_then(|d| d.as_str()) == Some(r.digest.as_str()))
            {
                continue;
            }
            let Some(info) = dst.head_manifest(dst_repo, &r.digest).await? else {
                continue;
            };
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest,
                "size": info.size,
            });
            if let Some(a) = &r.artifact_type {
                d["artifactType"] = serde_json::Value::from(a.clone());
            }
            manifests.push(d);
        }
        if manifests.len() == before {
            continue;
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).map_err(|e| RegistryError::Platform {
            image: src_image.to_string(),
            reason: format!("fallback index: {e}"),
        })?;
        dst.put_manifest(dst_repo, &tag, media_types::OCI_INDEX, &bytes)
            .await?;
        report.indexes_written += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_tags_and_plan_lines() {
        let d = Digest::of(b"image");
        let tag = fallback_tag(&d);
        assert_eq!(tag, format!("sha256-{}", d.hex()));
        let r = Referrer {
            subject: d.to_string(),
            digest: Digest::of(b"sig").to_string(),
            media_type: media_types::OCI_MANIFEST.into(),
            artifact_type: None,
            tag: Some(format!("{tag}.sig")),
            found_by: "cosign_tag".into(),
        };
        let line = r.line();
        assert!(line.contains("(cosign signature)"), "{line}");
        assert!(line.contains(&r.digest), "{line}");
        let api = Referrer {
            tag: None,
            artifact_type: Some("application/spdx+json".into()),
            found_by: "referrers_api".into(),
            ..r
        };
        assert!(api.line().contains("application/spdx+json (referrers API)"));
    }
}
