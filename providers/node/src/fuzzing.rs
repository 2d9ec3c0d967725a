//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from
//! the documentation, may change at any time).

use russh::keys::ssh_key::PublicKey;

/// Checks the host key `key` (OpenSSH public key text) for `host`:`port`
/// against known_hosts `contents`, as the SSH transport does. `None` when
/// `key` is not a public key; otherwise the verdict, for comparisons.
pub fn known_hosts_check(contents: &str, host: &str, port: u16, key: &str) -> Option<String> {
    let key = PublicKey::from_openssh(key).ok()?;
    Some(format!(
        "{:?}",
        crate::known_hosts::check(contents, host, port, &key)
    ))
}
