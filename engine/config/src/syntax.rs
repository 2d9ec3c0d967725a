//! Syntax checks for the strings the language gives meaning to: registry
//! endpoints, node hosts, platforms and image references.
//!
//! Each check returns the parsed value or a message saying what is wrong.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// `path` as the configuration names it, resolved against the
/// configuration directory `base` lexically (no `.` components, nothing
/// read from disk): relative stays relative when `base` is (mirrorplan runs
/// in the configuration directory, as `.`), so that nothing recorded
/// depends on where the checkout is. An absolute `path` is kept as is,
/// except, when `base` is relative, one inside `base` (as the file system
/// resolves `base` now): it is made relative too, so that `/checkout/ca.crt`
/// and `ca.crt` written in `/checkout` are one value, wherever the state
/// that recorded either is used.
pub fn config_relative(base: &Path, path: &Path) -> PathBuf {
    let resolved = if base.is_relative() && path.is_absolute() {
        std::fs::canonicalize(base).ok()
    } else {
        None
    };
    config_relative_within(base, resolved.as_deref(), path)
}

/// [`config_relative`] with `base` already resolved by the caller
/// (`resolved`, `None` to keep absolute paths as they are).
pub fn config_relative_within(base: &Path, resolved: Option<&Path>, path: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if path.is_absolute() {
        let inside = resolved
            .and_then(|dir| path.strip_prefix(dir).ok().map(|r| r.to_path_buf()))
            .filter(|r| !r.as_os_str().is_empty());
        match inside {
            Some(rest) => base.join(rest),
            None => path.to_path_buf(),
        }
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

use crate::model::{Endpoint, NodeAddr};

/// Checks a host name or IP address (IPv6 in brackets).
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("`{inner}` is not an IPv6 address"));
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!(
                "`{host}` has an empty label (two dots or a leading/trailing dot)"
            ));
        }
        if label.len() > 63 {
            return Err(format!("the label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "`{host}` contains `{c}`, which a host name cannot contain"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label `{label}` starts or ends with `-`"));
        }
    }
    Ok(())
}

/// Splits `host[:port]` (IPv6 as `[addr]:port`) and checks both parts.
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(i) => {
                let rest = &s[i + 1..];
                let port = match rest.strip_prefix(':') {
                    Some(p) => Some(p),
                    None if rest.is_empty() => None,
                    None => return Err(format!("unexpected `{rest}` after the IPv6 address")),
                };
                (&s[..=i], port)
            }
            None => return Err("`[` without a closing `]`".into()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    check_host(host)?;
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("`{p}` is not a port number (1-65535)")),
            Ok(n) => Some(n),
        },
        None => None,
    };
    Ok((host.to_string(), port))
}

/// Parses a registry endpoint: `https://host[:port]`, `http://host[:port]` or `oci:PATH`.
pub fn parse_endpoint(s: &str, base: &Path) -> Result<Endpoint, String> {
    if let Some(path) = s.strip_prefix("oci:") {
        if path.is_empty() {
            return Err("`oci:` needs a directory path, e.g. `oci:./store`".into());
        }
        return Ok(Endpoint::Oci {
            path: config_relative(base, Path::new(path)),
        });
    }
    let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "`{s}` has no scheme: write `https://HOST[:PORT]`, `http://HOST[:PORT]` or `oci:PATH`"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(format!(
            "`{s}` has a path: put the namespace in the `namespace` attribute instead"
        ));
    }
    let (host, port) = split_host_port(rest)?;
    Ok(if https {
        Endpoint::Https { host, port }
    } else {
        Endpoint::Http { host, port }
    })
}

/// Parses a node address: `host[:port]` (SSH, default port 22) or `local:PATH`.
pub fn parse_node(s: &str, base: &Path) -> Result<NodeAddr, String> {
    if let Some(path) = s.strip_prefix("local:") {
        if path.is_empty() {
            return Err("`local:` needs a directory path, e.g. `local:./nodes/n1`".into());
        }
        return Ok(NodeAddr::Local {
            written: path.to_string(),
            path: config_relative(base, Path::new(path)),
        });
    }
    if s.contains("://") || s.contains('/') {
        return Err(format!(
            "`{s}` is not `host[:port]`: nodes are SSH hosts or `local:PATH`"
        ));
    }
    let (host, port) = split_host_port(s)?;
    Ok(NodeAddr::Ssh {
        host,
        port: port.unwrap_or(22),
    })
}

/// Checks `os/arch[/variant]`.
pub fn check_platform(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('/').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!(
            "`{s}` is not `os/arch[/variant]`, e.g. `linux/amd64`"
        ));
    }
    for p in &parts {
        if p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        {
            return Err(format!(
                "`{s}` is not `os/arch[/variant]`: each part is lowercase letters and digits"
            ));
        }
    }
    const OSES: &[&str] = &[
        "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix",
        "plan9", "js", "wasip1",
    ];
    const ARCHES: &[&str] = &[
        "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le",
        "mips64", "mipsle", "mips", "loong64", "wasm",
    ];
    if !OSES.contains(&parts[0]) {
        return Err(format!("`{}` is not a known operating system", parts[0]));
    }
    if !ARCHES.contains(&parts[1]) {
        return Err(format!("`{}` is not a known architecture", parts[1]));
    }
    Ok(())
}

/// A normalised image reference, enough to compute its mirror path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// Registry host[:port] (`docker.io` when none is written).
    pub host: String,
    /// Repository path (`library/nginx`).
    pub path: String,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Digest, when given.
    pub digest: Option<String>,
}

impl ImageName {
    /// `path:tag` or `path@digest`: where the image lands under the mirror (before namespace).
    pub fn mirror_key(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}:{t}", self.path),
            (None, Some(d)) => format!("{}@{d}", self.path),
            (None, None) => format!("{}:latest", self.path),
        }
    }
}

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    if c.is_empty() {
        return false;
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// Checks a repository path such as a namespace (`team/sub`).
pub fn check_repo_path(s: &str) -> Result<(), String> {
    if s.split('/').all(valid_path_component) {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a repository path: lowercase letters, digits and `._-` separators, parts joined by `/`"
        ))
    }
}

/// Parses an image reference the way Docker does (`nginx` is `docker.io/library/nginx`).
pub fn parse_image(s: &str) -> Result<ImageName, String> {
    if s.is_empty() {
        return Err("the image reference is empty".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            let Some(hex) = d.strip_prefix("sha256:") else {
                return Err(format!("digest `{d}` is not `sha256:<64 hex digits>`"));
            };
            if hex.len() != 64
                || !hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                return Err(format!(
                    "digest `{d}` is not `sha256:<64 lowercase hex digits>`"
                ));
            }
            (r, Some(d.to_string()))
        }
        None => (s, None),
    };
    let (host, remainder) = match rest.split_once('/') {
        Some((first, r)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            split_host_port(first)?;
            (first.to_string(), r)
        }
        _ => ("docker.io".to_string(), rest),
    };
    let (path, tag) = match remainder.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, Some(t.to_string())),
        _ => (remainder, None),
    };
    if let Some(t) = &tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
            && !t.starts_with(['.', '-']);
        if !ok {
            return Err(format!(
                "tag `{t}` is not valid: letters, digits, `_`, `.`, `-`, up to 128"
            ));
        }
    }
    if !path.split('/').all(valid_path_component) {
        return Err(format!(
            "repository `{path}` is not valid: lowercase letters, digits and `._-` separators"
        ));
    }
    let path = if host == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    Ok(ImageName {
        host,
        path,
        tag,
        digest,
    })
}

/// A duration such as `0s`, `30s`, `500ms`, `5m` or `1h` (a bare number is
/// seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 0s, 30s or 5m"))?;
    let too_long = || format!("`{s}` is too long");
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(too_long),
        "h" => n
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(too_long),
        _ => Err(format!("`{s}` has an unknown unit (use ms, s, m or h)")),
    }
}

/// A `rate_limit`: `N/s` or `N/m`, N at least 1.
pub fn parse_rate_limit(s: &str) -> Result<crate::model::RateLimit, String> {
    let bad = || format!("`{s}` is not a rate like \"10/s\" or \"100/m\"");
    let (n, per) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!(
            "`{s}` allows no request at all: the count must be at least 1"
        ));
    }
    let per = match per.trim() {
        "s" => std::time::Duration::from_secs(1),
        "m" => std::time::Duration::from_secs(60),
        _ => return Err(format!("`{s}` has an unknown period (use /s or /m)")),
    };
    Ok(crate::model::RateLimit { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let base = Path::new("/cfg");
        assert_eq!(
            parse_endpoint("https://mirror.example:5000", base),
            Ok(Endpoint::Https {
                host: "mirror.example".into(),
                port: Some(5000)
            })
        );
        assert_eq!(
            parse_endpoint("http://127.0.0.1:5001", base),
            Ok(Endpoint::Http {
                host: "127.0.0.1".into(),
                port: Some(5001)
            })
        );
        assert_eq!(
            parse_endpoint("oci:./store", base),
            Ok(Endpoint::Oci {
                path: "/cfg/store".into()
            })
        );
        assert!(parse_endpoint("mirror.example:5000", base).is_err());
        assert!(parse_endpoint("https://mirror.example:99999", base).is_err());
        assert!(parse_endpoint("https://mirror.example/v2/ns", base).is_err());
        assert!(parse_endpoint("https://mir ror", base).is_err());
    }

    #[test]
    fn nodes() {
        let base = Path::new("/cfg");
        assert_eq!(
            parse_node("cp2.admin1.example:2222", base),
            Ok(NodeAddr::Ssh {
                host: "cp2.admin1.example".into(),
                port: 2222
            })
        );
        assert_eq!(
            parse_node("10.0.0.1", base).map(|n| n.key()),
            Ok("10.0.0.1".to_string())
        );
        assert!(parse_node("ssh://x", base).is_err());
        assert!(parse_node("bad_host", base).is_err());
    }

    #[test]
    fn platforms() {
        assert!(check_platform("linux/amd64").is_ok());
        assert!(check_platform("linux/arm/v7").is_ok());
        assert!(check_platform("linux").is_err());
        assert!(check_platform("linux/amd65").is_err());
        assert!(check_platform("Linux/amd64").is_err());
    }

    #[test]
    fn images() {
        let i = parse_image("gcr.io/kubernetes-e2e-test-images/nautilus:1.0");
        assert_eq!(
            i.map(|i| (i.host.clone(), i.mirror_key())),
            Ok((
                "gcr.io".to_string(),
                "kubernetes-e2e-test-images/nautilus:1.0".to_string()
            ))
        );
        assert_eq!(
            parse_image("nginx").map(|i| (i.host.clone(), i.mirror_key())),
            Ok(("docker.io".to_string(), "library/nginx:latest".to_string()))
        );
        assert_eq!(
            parse_image("127.0.0.1:5001/a/b:1").map(|i| i.host),
            Ok("127.0.0.1:5001".to_string())
        );
        assert!(parse_image("gcr.io/A/b:1").is_err());
        assert!(parse_image("gcr.io/a/b@sha256:abc").is_err());
        assert!(parse_image("gcr.io/a/b:-x").is_err());
    }

    #[test]
    fn durations_and_rates() {
        assert_eq!(
            parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        let r = parse_rate_limit("10/s").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.count, r.per), (10, std::time::Duration::from_secs(1)));
        let r = parse_rate_limit(" 100 / m ").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.count, r.per), (100, std::time::Duration::from_secs(60)));
        for bad in ["10/h", "0/s", "ten/s", "10", "-1/s"] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
    }
}
