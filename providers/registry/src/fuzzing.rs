//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from
//! the documentation, may change at any time). Each one runs a parser of
//! untrusted registry input exactly as the crate does, and checks the
//! invariants its callers rely on; a broken invariant panics, which is what
//! a fuzzer reports.

use std::collections::BTreeSet;

use crate::auth::{parse_challenge, parse_helper_reply, Challenge, Credentials};
use crate::digest::Digest;
use crate::oci::{self, Parsed};
use crate::reference::Platform;

/// A manifest or index as a registry serves it, with the `Content-Type`
/// the registry sent and the platform filter of an image set: what
/// `copy` does with it before any upload.
pub fn manifest(bytes: &[u8], content_type: &str, platforms: &[&str]) {
    let _ = oci::parse_manifest(bytes, None);
    let _ = oci::config_platform(bytes);
    let platforms: Vec<Platform> = platforms
        .iter()
        .filter_map(|p| Platform::parse(p).ok())
        .collect();
    let digest = Digest::of(bytes);
    let Ok(top) = crate::copy::select_top("fuzz", bytes, content_type, &digest, &platforms) else {
        return;
    };
    if top.filtered {
        // a filtered index is re-serialised: it must still be an index
        // listing exactly the kept children
        match oci::parse_manifest(&top.bytes, Some(&top.media_type)) {
            Ok((_, Parsed::Index { manifests })) => assert_eq!(
                manifests.iter().map(|m| &m.digest).collect::<BTreeSet<_>>(),
                top.children
                    .iter()
                    .map(|m| &m.digest)
                    .collect::<BTreeSet<_>>(),
                "a filtered index lists other manifests than the ones kept"
            ),
            other => panic!("a filtered index does not parse as an index: {other:?}"),
        }
    } else {
        assert_eq!(top.bytes, bytes, "an unfiltered manifest was rewritten");
    }
    assert!(
        top.children.is_empty() || top.blobs.is_empty(),
        "a manifest is both an index and an image"
    );
}

/// The text a registry error body adds to an error message.
pub fn error_detail(body: &[u8]) -> String {
    crate::client::error_detail(body)
}

/// A `WWW-Authenticate` header: `Some(realm)` for a bearer challenge,
/// `Some("")` for basic, `None` for anything else.
pub fn challenge(header: &str) -> Option<String> {
    match parse_challenge(header)? {
        Challenge::Basic => Some(String::new()),
        Challenge::Bearer { realm, .. } => Some(realm),
    }
}

/// A credential helper's answer to `get`.
pub fn helper_reply(stdout: &[u8]) -> Result<Credentials, String> {
    parse_helper_reply(stdout)
}
