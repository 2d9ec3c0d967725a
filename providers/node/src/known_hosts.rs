//! OpenSSH `known_hosts` matching and host key fingerprints, pure functions
//! used by the SSH transport's host key check.
//!
//! Supported: plain names, `[host]:port` (ports other than 22), comma
//! lists, `*`/`?` wildcards, `!negation`, hashed names (`|1|salt|hash`,
//! HMAC-SHA1 as written by `ssh-keygen -H`), `@revoked` lines. Lines marked
//! `@cert-authority` are skipped (host certificates are not accepted).

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use russh::keys::ssh_key::{HashAlg, PublicKey};

/// Result of looking a host's key up in a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKeyCheck {
    /// A line for this host records exactly this key.
    Match,
    /// No line names this host.
    Unknown,
    /// Lines name this host, but with other keys (1-based line numbers).
    Changed { lines: Vec<usize> },
    /// The key is listed as `@revoked` (1-based line number).
    Revoked { line: usize },
}

/// OpenSSH-style SHA256 fingerprint: `SHA256:` + unpadded base64.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The names a host is recorded under: `host` for port 22 (and
/// `[host]:22`), otherwise only `[host]:port`, lower-cased like OpenSSH.
fn lookup_names(host: &str, port: u16) -> Vec<String> {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        vec![host.clone(), format!("[{host}]:22")]
    } else {
        vec![format!("[{host}]:{port}")]
    }
}

/// Check `key` for `host`:`port` against known_hosts `contents`.
pub(crate) fn check(contents: &str, host: &str, port: u16, key: &PublicKey) -> HostKeyCheck {
    let names = lookup_names(host, port);
    let mut matched = false;
    let mut other_lines = Vec::new();
    for (idx, raw) in contents.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut revoked = false;
        if let Some(marker) = first.strip_prefix('@') {
            match marker {
                "revoked" => revoked = true,
                _ => continue, // @cert-authority and unknown markers
            }
            first = fields.next().unwrap_or_default();
        }
        let (Some(key_type), Some(key_b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !patterns_match(first, &names) {
            continue;
        }
        let recorded = match PublicKey::from_openssh(&format!("{key_type} {key_b64}")) {
            Ok(k) => k,
            Err(_) => {
                // An unreadable key for this host cannot vouch for it.
                if !revoked {
                    other_lines.push(line_no);
                }
                continue;
            }
        };
        let same = recorded.key_data() == key.key_data();
        if revoked {
            if same {
                return HostKeyCheck::Revoked { line: line_no };
            }
        } else if same {
            matched = true;
        } else {
            other_lines.push(line_no);
        }
    }
    if matched {
        HostKeyCheck::Match
    } else if other_lines.is_empty() {
        HostKeyCheck::Unknown
    } else {
        HostKeyCheck::Changed { lines: other_lines }
    }
}

/// The comma-separated host pattern list matches one of `names` and no
/// negated pattern matches.
fn patterns_match(list: &str, names: &[String]) -> bool {
    if let Some(hashed) = list.strip_prefix("|1|") {
        return names.iter().any(|n| hashed_match(hashed, n));
    }
    let mut positive = false;
    for pat in list.split(',') {
        let pat = pat.to_ascii_lowercase();
        if let Some(neg) = pat.strip_prefix('!') {
            if names.iter().any(|n| glob(neg.as_bytes(), n.as_bytes())) {
                return false;
            }
        } else if names.iter().any(|n| glob(pat.as_bytes(), n.as_bytes())) {
            positive = true;
        }
    }
    positive
}

/// `salt|hash` (both base64) against HMAC-SHA1(salt, name).
fn hashed_match(salt_and_hash: &str, name: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH `match_pattern`: `*` any run, `?` one character.
///
/// Greedy with one backtracking point (the last `*`), so time is at most
/// `pat.len() * s.len()` steps whatever the number of `*`: a recursive
/// match takes exponential time on a line of many `*` (found by fuzzing).
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // (pattern position after the last `*`, where its run now ends in `s`)
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = s.get(i) {
        match pat.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, i));
            }
            Some(&q) if q == b'?' || q == c => {
                p += 1;
                i += 1;
            }
            _ => match star {
                // let the last `*` take one more character
                Some((after, end)) => {
                    p = after;
                    i = end + 1;
                    star = Some((after, end + 1));
                }
                None => return false,
            },
        }
    }
    pat.get(p..).unwrap_or_default().iter().all(|&q| q == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM3/X8jS/bw0dwJkzoc3CaOZVZ99LEBcNCUtjShujR5R";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEnvUOR5WnXkpWJbJ4rMBk/1PLGRi9znqV21ISJ3pbr8";

    fn key(s: &str) -> Result<PublicKey, Box<dyn std::error::Error>> {
        Ok(PublicKey::from_openssh(s)?)
    }

    #[test]
    fn bracketed_port_and_plain_forms() -> Result<(), Box<dyn std::error::Error>> {
        let a = key(KEY_A)?;
        let kh = format!("[127.0.0.1]:2222 {KEY_A}\nexample.org {KEY_A} comment\n");
        assert_eq!(check(&kh, "127.0.0.1", 2222, &a), HostKeyCheck::Match);
        // a bracketed entry is for that port only
        assert_eq!(check(&kh, "127.0.0.1", 2223, &a), HostKeyCheck::Unknown);
        assert_eq!(check(&kh, "127.0.0.1", 22, &a), HostKeyCheck::Unknown);
        // a plain entry is port 22, case-insensitive
        assert_eq!(check(&kh, "Example.ORG", 22, &a), HostKeyCheck::Match);
        assert_eq!(check(&kh, "example.org", 2222, &a), HostKeyCheck::Unknown);
        Ok(())
    }

    #[test]
    fn changed_key_and_revoked() -> Result<(), Box<dyn std::error::Error>> {
        let a = key(KEY_A)?;
        let kh = format!("# comment\n\n[h]:2200 {KEY_B}\n");
        assert_eq!(
            check(&kh, "h", 2200, &a),
            HostKeyCheck::Changed { lines: vec![3] }
        );
        // another line with the right key wins
        let kh2 = format!("{kh}[h]:2200 {KEY_A}\n");
        assert_eq!(check(&kh2, "h", 2200, &a), HostKeyCheck::Match);
        let kh3 = format!("{kh2}@revoked * {KEY_A}\n");
        assert_eq!(
            check(&kh3, "h", 2200, &a),
            HostKeyCheck::Revoked { line: 5 }
        );
        // cert-authority lines never vouch for a plain key
        let kh4 = format!("@cert-authority * {KEY_A}\n");
        assert_eq!(check(&kh4, "h", 2200, &a), HostKeyCheck::Unknown);
        Ok(())
    }

    #[test]
    fn lists_wildcards_negation() -> Result<(), Box<dyn std::error::Error>> {
        let a = key(KEY_A)?;
        let kh = format!("web1,[10.0.0.*]:2200,!10.0.0.9 {KEY_A}\n");
        assert_eq!(check(&kh, "web1", 22, &a), HostKeyCheck::Match);
        assert_eq!(check(&kh, "10.0.0.7", 2200, &a), HostKeyCheck::Match);
        assert_eq!(check(&kh, "web2", 22, &a), HostKeyCheck::Unknown);
        let kh = format!("*.example.org,!bad.example.org {KEY_A}\n");
        assert_eq!(check(&kh, "a.example.org", 22, &a), HostKeyCheck::Match);
        assert_eq!(check(&kh, "bad.example.org", 22, &a), HostKeyCheck::Unknown);
        assert!(glob(b"h?st", b"host"));
        assert!(!glob(b"h?st", b"hst"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(!glob(b"a*b*c", b"aXbYbZ"));
        assert!(glob(b"*.example.org", b"a.b.example.org"));
        assert!(!glob(b"?", b""));
        Ok(())
    }

    /// Found by fuzzing: a line with a long run of `*` took exponential
    /// time to match (the check hung the SSH connection).
    #[test]
    fn many_stars_do_not_hang() -> Result<(), Box<dyn std::error::Error>> {
        let a = key(KEY_A)?;
        let stars = "*".repeat(200);
        let kh = format!("{stars}#x {KEY_B}\n{stars}1*2*2*2*2*3 {KEY_A}\n");
        assert_eq!(check(&kh, "127.0.0.1", 2222, &a), HostKeyCheck::Unknown);
        let kh = format!("{stars}2 {KEY_A}\n");
        assert_eq!(check(&kh, "127.0.0.1", 2222, &a), HostKeyCheck::Match);
        assert!(!glob(format!("{stars}x").as_bytes(), b"[127.0.0.1]:2222"));
        Ok(())
    }

    #[test]
    fn hashed_entries() -> Result<(), Box<dyn std::error::Error>> {
        // The `ssh-keygen -H` construction for `[127.0.0.1]:2222`.
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = [7u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt)?;
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let kh = format!("|1|{}|{} {KEY_A}\n", b64.encode(salt), b64.encode(hash));
        let a = key(KEY_A)?;
        assert_eq!(check(&kh, "127.0.0.1", 2222, &a), HostKeyCheck::Match);
        assert_eq!(check(&kh, "127.0.0.2", 2222, &a), HostKeyCheck::Unknown);
        Ok(())
    }

    #[test]
    fn fingerprint_is_openssh_style() -> Result<(), Box<dyn std::error::Error>> {
        // `ssh-keygen -lf` printed this for KEY_A
        let fp = fingerprint(&key(KEY_A)?);
        assert_eq!(fp, "SHA256:q+SR2vNsOJeUELVeOCdtf8lVLj1kBkQVMfCM54j24VY");
        assert_ne!(fp, fingerprint(&key(KEY_B)?));
        Ok(())
    }
}
