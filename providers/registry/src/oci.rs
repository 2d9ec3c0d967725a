//! OCI / Docker v2 media types, descriptors and the minimal manifest parsing
//! the bundle reader and the OCI store need. Manifests are only ever parsed
//! to find what they reference; their bytes are never re-serialised.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::reference::Platform;

/// Media type strings.
pub mod media_types {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker v2 schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 1 (unsupported).
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1 signed (unsupported).
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// The annotation holding an image's name in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name (written by `docker save` 25+, `ctr export`).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Whether a media type is an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == media_types::OCI_INDEX || media_type == media_types::DOCKER_MANIFEST_LIST
}

/// Whether a media type is an image manifest (OCI or Docker v2).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == media_types::OCI_MANIFEST || media_type == media_types::DOCKER_MANIFEST
}

/// An OCI content descriptor. Unknown fields are kept in `extra` so that a
/// rewritten index.json loses nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Platform, for index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Any other field (`urls`, `artifactType`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Descriptor {
    /// A plain descriptor.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// What a manifest references.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    fs_layers: Option<Value>,
}

/// Parse a manifest or index; `hint` is the media type from the referencing
/// descriptor. Returns the effective media type and the references.
pub(crate) fn parse_manifest(bytes: &[u8], hint: Option<&str>) -> Result<(String, Parsed), String> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid manifest JSON: {e}"))?;
    if raw.fs_layers.is_some() || raw.schema_version == Some(1) {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    let media_type = match (raw.media_type.as_deref(), hint) {
        (Some(m), _) => m.to_string(),
        (None, Some(h)) if is_index(h) || is_manifest(h) => h.to_string(),
        (None, _) if raw.manifests.is_some() => media_types::OCI_INDEX.to_string(),
        (None, _) if raw.config.is_some() => media_types::OCI_MANIFEST.to_string(),
        (None, _) => return Err("neither an image manifest nor an index".into()),
    };
    if media_type == media_types::DOCKER_SCHEMA1 || media_type == media_types::DOCKER_SCHEMA1_SIGNED
    {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    if is_index(&media_type) {
        let manifests = raw.manifests.ok_or("index without `manifests`")?;
        Ok((media_type, Parsed::Index { manifests }))
    } else if is_manifest(&media_type) {
        let config = raw.config.ok_or("manifest without `config`")?;
        let layers = raw.layers.unwrap_or_default();
        Ok((media_type, Parsed::Image { config, layers }))
    } else {
        Err(format!("unsupported media type `{media_type}`"))
    }
}

/// Whether a layer may legitimately be absent (foreign / non-distributable).
pub(crate) fn is_foreign_layer(d: &Descriptor) -> bool {
    d.media_type.contains("nondistributable") || d.media_type.contains("foreign")
}

/// The platform recorded in an image config (`os`, `architecture`, `variant`).
pub(crate) fn config_platform(config: &[u8]) -> Option<Platform> {
    #[derive(Deserialize)]
    struct Cfg {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    let c: Cfg = serde_json::from_slice(config).ok()?;
    Some(Platform {
        os: c.os?,
        architecture: c.architecture?,
        variant: c.variant,
    })
}

/// Guess a layer media type from its first bytes (for `docker save`).
pub(crate) fn sniff_layer_media_type(magic: &[u8]) -> &'static str {
    if magic.starts_with(&[0x1f, 0x8b]) {
        media_types::OCI_LAYER_GZIP
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        media_types::OCI_LAYER_ZSTD
    } else {
        media_types::OCI_LAYER_TAR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifest_and_index() {
        let d = Digest::of(b"x");
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{d}","size":1}},"layers":[{{"mediaType":"{}","digest":"{d}","size":1}}]}}"#,
            media_types::OCI_CONFIG,
            media_types::OCI_LAYER_GZIP
        );
        let parsed = parse_manifest(m.as_bytes(), None);
        assert!(
            matches!(&parsed, Ok((mt, Parsed::Image { layers, .. })) if mt == media_types::OCI_MANIFEST && layers.len() == 1),
            "{parsed:?}"
        );
        let i = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"arm64","os.version":"x"}}}}]}}"#,
            media_types::DOCKER_MANIFEST_LIST,
            media_types::DOCKER_MANIFEST
        );
        let parsed = parse_manifest(i.as_bytes(), None);
        assert!(
            matches!(&parsed, Ok((mt, Parsed::Index { manifests })) if mt == media_types::DOCKER_MANIFEST_LIST && manifests[0].platform.as_ref().map(|p| p.architecture.as_str()) == Some("arm64")),
            "{parsed:?}"
        );
        assert!(parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, None).is_err());
        assert!(parse_manifest(b"not json", None).is_err());
        assert!(parse_manifest(br#"{"mediaType":"text/plain"}"#, None).is_err());
    }
}
