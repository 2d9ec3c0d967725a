//! Image references (`host[:port]/path[:tag][@sha256:digest]`) with Docker's
//! normalisation, the mapping of an upstream image onto a mirror path, and
//! `os/arch[/variant]` platform strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::ReferenceError;

/// The registry that short names (`nginx`, `bitnami/redis`) refer to.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = [
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];
const MAX_NAME_LEN: usize = 255;

/// A fully normalised image reference.
///
/// `nginx` becomes `docker.io/library/nginx:latest`; a reference without tag
/// and without digest gets the tag `latest`; a digest-only reference keeps
/// no tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host, with port when given (`gcr.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/nginx`).
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parse and normalise a reference.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let invalid = |reason: String| ReferenceError::InvalidReference {
            reference: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("the reference is empty".into()));
        }
        if input.chars().any(|c| c.is_whitespace()) {
            return Err(invalid("it contains whitespace".into()));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|e| invalid(format!("bad digest: {e}")))?;
                (n, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|s| colon > s) => {
                (&name_tag[..colon], Some(&name_tag[colon + 1..]))
            }
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(&invalid)?;
        }
        if name.is_empty() {
            return Err(invalid("the repository name is empty".into()));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        validate_host(&registry).map_err(&invalid)?;
        let registry = if DOCKER_HUB_ALIASES.contains(&registry.as_str()) {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        validate_path(&repository).map_err(&invalid)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "the name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Where an upstream image lives on a mirror: the repository path (with the
/// mirror namespace, the upstream host dropped) plus tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MirrorRef {
    /// `[NAMESPACE/]path`, e.g. `test-namespace/library/nginx`.
    pub repository: String,
    /// The upstream tag, kept.
    pub tag: Option<String>,
    /// The upstream digest, kept.
    pub digest: Option<Digest>,
}

impl fmt::Display for MirrorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Map an upstream image onto the mirror: `gcr.io/a/b:t` → `[NAMESPACE/]a/b:t`.
///
/// The namespace is trimmed of surrounding `/`; validate user input with
/// [`validate_namespace`] first.
pub fn mirror_path(reference: &ImageRef, namespace: Option<&str>) -> MirrorRef {
    let repository = match namespace
        .map(|n| n.trim_matches('/'))
        .filter(|n| !n.is_empty())
    {
        Some(ns) => format!("{ns}/{}", reference.repository),
        None => reference.repository.clone(),
    };
    MirrorRef {
        repository,
        tag: reference.tag.clone(),
        digest: reference.digest.clone(),
    }
}

/// Check a mirror namespace (`team/images`): path components as in a
/// repository name.
pub fn validate_namespace(namespace: &str) -> Result<(), ReferenceError> {
    validate_path(namespace.trim_matches('/')).map_err(|reason| ReferenceError::InvalidNamespace {
        namespace: namespace.to_string(),
        reason,
    })
}

pub(crate) fn validate_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err("the tag after `:` is empty".into()),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => {
            return Err(format!(
                "tag `{tag}` must start with a letter, digit or `_`"
            ))
        }
        _ => {}
    }
    if tag.len() > 128 {
        return Err(format!("tag `{tag}` is longer than 128 characters"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!(
            "tag `{tag}` contains `{c}`; allowed are letters, digits, `_`, `.`, `-`"
        ));
    }
    Ok(())
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: [::1]:5000
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry host `{host}` has an unclosed `[`"))?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!(
                "registry host `{host}` is not a valid IPv6 literal"
            ));
        }
        match after {
            "" => return Ok(()),
            p => (
                "",
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("registry host `{host}`: junk after `]`"))?,
                ),
            ),
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("registry host `{host}` has an invalid port `{p}`"));
        }
    }
    if host.starts_with('[') {
        return Ok(());
    }
    if name.is_empty() {
        return Err("the registry host is empty".into());
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!("registry host `{host}` is not a valid host name"));
        }
    }
    Ok(())
}

/// Repository path components: lowercase alphanumerics separated by `.`,
/// `_`, `__` or runs of `-`.
pub(crate) fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the repository path is empty".into());
    }
    for comp in path.split('/') {
        if comp.is_empty() {
            return Err(format!("repository path `{path}` has an empty component"));
        }
        if comp.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("repository path `{path}` must be lowercase"));
        }
        let bytes = comp.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!(
                "component `{comp}` of `{path}` must start and end with a lowercase letter or digit"
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            // separator: '.', '_', '__' or '-'+
            let sep_start = i;
            match b {
                b'.' => i += 1,
                b'_' => {
                    i += 1;
                    if i < bytes.len() && bytes[i] == b'_' {
                        i += 1;
                    }
                }
                b'-' => {
                    while i < bytes.len() && bytes[i] == b'-' {
                        i += 1;
                    }
                }
                other => {
                    return Err(format!(
                        "component `{comp}` of `{path}` contains `{}`",
                        other as char
                    ))
                }
            }
            if i < bytes.len() && !alnum(bytes[i]) {
                return Err(format!(
                    "component `{comp}` of `{path}` has an invalid separator `{}`",
                    &comp[sep_start..=i]
                ));
            }
        }
    }
    Ok(())
}

/// A platform `os/arch[/variant]` as used in image indexes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system (`linux`, `windows`).
    pub os: String,
    /// CPU architecture in Go's naming (`amd64`, `arm64`).
    pub architecture: String,
    /// Variant (`v7` for arm), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Operating systems accepted in platform strings (Go's GOOS values).
pub const KNOWN_OS: &[&str] = &[
    "linux",
    "windows",
    "darwin",
    "freebsd",
    "netbsd",
    "openbsd",
    "solaris",
    "illumos",
    "aix",
    "wasip1",
    "js",
    "plan9",
    "dragonfly",
    "android",
    "ios",
];
/// Architectures accepted in platform strings (Go's GOARCH values).
pub const KNOWN_ARCH: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64",
    "mipsle", "mips", "loong64", "wasm",
];

impl Platform {
    /// Parse `os/arch[/variant]`; `x86_64` and `aarch64` are normalised to
    /// `amd64` and `arm64`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let invalid = |reason: String| ReferenceError::InvalidPlatform {
            platform: input.to_string(),
            reason,
        };
        let parts: Vec<&str> = input.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(invalid("expected `os/arch` or `os/arch/variant`".into()));
        }
        let os = parts[0].to_ascii_lowercase();
        let arch = match parts[1].to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            "i386" => "386".to_string(),
            a => a.to_string(),
        };
        if !KNOWN_OS.contains(&os.as_str()) {
            return Err(invalid(format!("unknown operating system `{}`", parts[0])));
        }
        if !KNOWN_ARCH.contains(&arch.as_str()) {
            return Err(invalid(format!("unknown architecture `{}`", parts[1])));
        }
        let variant = match parts.get(2) {
            None => None,
            Some(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(v.to_ascii_lowercase())
            }
            Some(v) => return Err(invalid(format!("invalid variant `{v}`"))),
        };
        Ok(Platform {
            os,
            architecture: arch,
            variant,
        })
    }

    /// Whether an image's platform `other` satisfies this wanted platform.
    /// A wanted platform without variant matches any variant; `arm64/v8`
    /// and `arm64` are the same.
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        let norm = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", Some("v8")) => None,
            (_, v) => v.map(str::to_string),
        };
        match norm(self) {
            None => true,
            Some(v) => norm(other).as_deref() == Some(v.as_str()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        match ImageRef::parse(s) {
            Ok(r) => r.to_string(),
            Err(e) => format!("ERR {e}"),
        }
    }

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn docker_normalisation() {
        assert_eq!(r("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(r("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(r("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(r("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            r("index.docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
        assert_eq!(r("localhost/foo"), "localhost/foo:latest");
        assert_eq!(r("localhost:5000/foo/bar:v1"), "localhost:5000/foo/bar:v1");
        assert_eq!(r("172.18.0.20:5000/x"), "172.18.0.20:5000/x:latest");
        assert_eq!(
            r("gcr.io/kubernetes-e2e-test-images/nautilus:1.0"),
            "gcr.io/kubernetes-e2e-test-images/nautilus:1.0"
        );
        assert_eq!(r("[::1]:5000/img:t"), "[::1]:5000/img:t");
        // A first component without '.', ':' or localhost is a path.
        assert_eq!(r("myhost/img"), "docker.io/myhost/img:latest");
    }

    #[test]
    fn digests() {
        let digest_only = ImageRef::parse(&format!("gcr.io/a/b@{D}"));
        let Ok(digest_only) = digest_only else {
            panic!("digest ref should parse: {digest_only:?}");
        };
        assert_eq!(digest_only.tag, None);
        assert_eq!(digest_only.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(
            r(&format!("nginx:1@{D}")),
            format!("docker.io/library/nginx:1@{D}")
        );
        assert!(r("nginx@sha256:abc").starts_with("ERR"));
        assert!(r("nginx@md5:abc").starts_with("ERR"));
    }

    #[test]
    fn invalid_references_say_why() {
        for (input, why) in [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("nginx:", "tag after `:` is empty"),
            ("nginx:-x", "must start"),
            ("nginx:a/b", "invalid port"),
            ("gcr.io/a//b", "empty component"),
            ("gcr.io/a-/b", "start and end"),
            ("gcr.io/a..b", "invalid separator"),
            ("host:99999/a", "invalid port"),
            ("a b", "whitespace"),
            ("gcr.io/a$b", "contains `$`"),
        ] {
            let out = r(input);
            assert!(out.starts_with("ERR"), "{input} parsed as {out}");
            assert!(out.contains(why), "{input}: `{out}` lacks `{why}`");
        }
        assert!(ImageRef::parse(&format!("gcr.io/{}", "a".repeat(300))).is_err());
        assert_eq!(r("gcr.io/a__b/c---d/e.f"), "gcr.io/a__b/c---d/e.f:latest");
    }

    #[test]
    fn mirror_paths() {
        let m = |s: &str, ns: Option<&str>| match ImageRef::parse(s) {
            Ok(r) => mirror_path(&r, ns).to_string(),
            Err(e) => format!("ERR {e}"),
        };
        assert_eq!(m("gcr.io/a/b:t", None), "a/b:t");
        assert_eq!(
            m("gcr.io/a/b:t", Some("test-namespace")),
            "test-namespace/a/b:t"
        );
        assert_eq!(m("gcr.io/a/b:t", Some("/ns/sub/")), "ns/sub/a/b:t");
        assert_eq!(m("docker.io/library/nginx", None), "library/nginx:latest");
        assert_eq!(m("nginx", Some("")), "library/nginx:latest");
        assert_eq!(
            m(&format!("quay.io/x/y@{D}"), Some("ns")),
            format!("ns/x/y@{D}")
        );
        assert!(validate_namespace("test-namespace").is_ok());
        assert!(validate_namespace("Bad NS").is_err());
    }

    #[test]
    fn platforms() {
        let p = |s: &str| {
            Platform::parse(s)
                .map(|p| p.to_string())
                .unwrap_or_else(|e| format!("ERR {e}"))
        };
        assert_eq!(p("linux/amd64"), "linux/amd64");
        assert_eq!(p("linux/arm/v7"), "linux/arm/v7");
        assert_eq!(p("Linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert!(p("linux").contains("expected `os/arch`"));
        assert!(p("linux/amd64/v1/x").starts_with("ERR"));
        assert!(p("plan10/amd64").contains("unknown operating system"));
        assert!(p("linux/z80").contains("unknown architecture"));
        assert!(p("linux/arm/v-7").contains("invalid variant"));

        let want = |s: &str| Platform::parse(s).ok();
        let (Some(arm64), Some(arm64v8), Some(armv7), Some(arm), Some(amd64)) = (
            want("linux/arm64"),
            want("linux/arm64/v8"),
            want("linux/arm/v7"),
            want("linux/arm"),
            want("linux/amd64"),
        ) else {
            panic!("platforms should parse");
        };
        assert!(arm64.matches(&arm64v8));
        assert!(arm64v8.matches(&arm64));
        assert!(arm.matches(&armv7));
        assert!(!armv7.matches(&arm));
        assert!(!amd64.matches(&arm64));
    }
}
