//! Registry credentials: a [`Secret`] that never prints, the [`Auth`]
//! choices of a registry target, Docker `config.json` resolution (inline
//! `auths`, `credHelpers`, `credsStore`) and parsing of
//! `WWW-Authenticate` challenges.
//!
//! Secrets only leave this module as `Authorization` header values built by
//! the client; `Debug` of every type here redacts them, and error messages
//! name the registry and the user, never the password, token or the
//! contents of a docker config file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::client_error::RegistryError;

/// A secret string (password, token). `Debug` and `Display` print
/// `<redacted>`; use [`Secret::expose`] only to build a request header.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret value (never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// How to authenticate to a registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous.
    #[default]
    None,
    /// A user name and password (used for basic auth and for fetching
    /// bearer tokens).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// Read the credentials for the registry's host from a Docker
    /// `config.json` (`auths`, `credHelpers`, `credsStore`).
    DockerConfig(PathBuf),
}

/// Resolved user name and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name (may be `<token>` for identity tokens from helpers).
    pub user: String,
    /// Password or token.
    pub password: Secret,
}

impl Credentials {
    /// The `Authorization: Basic ...` value.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct DockerAuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// `https://host:port/v1/` → `host:port`, as Docker matches `auths` keys.
fn config_key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Resolve the credentials for `host` (`host[:port]` as in image
/// references) from the Docker config file at `path`.
///
/// Order as Docker's: `credHelpers[host]`, then an inline `auths[host]`
/// entry (`auth` = base64 `user:password`, or `username`/`password`), then
/// `credsStore`. Helpers run as `docker-credential-NAME get` with the host
/// on stdin, found in `helper_path` (a `PATH`-style list) or `PATH`.
/// `Ok(None)`: the file has no credentials for the host (anonymous access).
pub fn resolve_docker_config(
    path: &Path,
    host: &str,
    helper_path: Option<&OsString>,
) -> Result<Option<Credentials>, RegistryError> {
    let fail = |reason: String| RegistryError::DockerConfig {
        path: path.to_path_buf(),
        host: host.to_string(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    // The file's contents are secret: report only the position of a syntax error.
    let cfg: DockerConfigFile = serde_json::from_slice(&text).map_err(|e| {
        fail(format!(
            "not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let helper_for = cfg
        .cred_helpers
        .iter()
        .find(|(k, _)| config_key_host(k) == host)
        .map(|(_, v)| v.clone());
    if let Some(helper) = helper_for {
        return run_credential_helper(&helper, host, helper_path).map(Some);
    }
    if let Some((_, entry)) = cfg.auths.iter().find(|(k, _)| config_key_host(k) == host) {
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| fail(format!("`auths.\"{host}\".auth` is not valid base64")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| fail(format!("`auths.\"{host}\".auth` is not UTF-8")))?;
            let Some((user, password)) = decoded.split_once(':') else {
                return Err(fail(format!(
                    "`auths.\"{host}\".auth` must encode `user:password`"
                )));
            };
            return Ok(Some(Credentials {
                user: user.to_string(),
                password: Secret::new(password),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                user: u.clone(),
                password: Secret::new(p.clone()),
            }));
        }
    }
    if let Some(store) = cfg.creds_store.as_deref().filter(|s| !s.is_empty()) {
        return match run_credential_helper(store, host, helper_path) {
            Ok(c) => Ok(Some(c)),
            Err(RegistryError::CredentialHelper { reason, .. })
                if reason.contains("credentials not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        };
    }
    Ok(None)
}

fn find_helper(name: &str, helper_path: Option<&OsString>) -> Option<PathBuf> {
    let path = helper_path.cloned().or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Run `docker-credential-NAME get` with `host` on stdin.
pub fn run_credential_helper(
    name: &str,
    host: &str,
    helper_path: Option<&OsString>,
) -> Result<Credentials, RegistryError> {
    let program = format!("docker-credential-{name}");
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: program.clone(),
        host: host.to_string(),
        reason,
    };
    let exe = find_helper(&program, helper_path)
        .ok_or_else(|| fail("the program is not on PATH".to_string()))?;
    let mut child = Command::new(&exe)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .map_err(|e| fail(format!("cannot write to its stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    if !out.status.success() {
        // Helpers print "credentials not found in native keychain" on stdout;
        // their output never holds the secret on failure.
        let msg = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .chars()
        .take(200)
        .collect::<String>();
        return Err(fail(format!("it exited with {}: {msg}", out.status)));
    }
    parse_helper_reply(&out.stdout).map_err(fail)
}

/// A credential helper's answer to `get`: the JSON object
/// `{ServerURL, Username, Secret}`. The error never quotes the output.
pub(crate) fn parse_helper_reply(stdout: &[u8]) -> Result<Credentials, String> {
    let reply: HelperReply = serde_json::from_slice(stdout).map_err(|_| {
        "its output is not the JSON object {ServerURL, Username, Secret}".to_string()
    })?;
    Ok(Credentials {
        user: reply.username,
        password: Secret::new(reply.secret),
    })
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm=...`
    Basic,
    /// `Bearer realm=...,service=...,scope=...`
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Why the password of a registry at `registry` (its base URL) must not go
/// to the bearer token `realm` it names, or `None` when it may: the realm
/// is `https`, or it has the registry's own scheme, host and port (a
/// plain-http registry's own token endpoint sees nothing the registry does
/// not). Anywhere else the password would travel in clear to a place the
/// configuration never named.
pub(crate) fn realm_refusal(registry: &reqwest::Url, realm: &reqwest::Url) -> Option<&'static str> {
    if realm.scheme() == "https" {
        return None;
    }
    let origin = |u: &reqwest::Url| {
        (
            u.scheme().to_string(),
            u.host_str().map(str::to_ascii_lowercase),
            u.port_or_known_default(),
        )
    };
    if origin(realm) == origin(registry) {
        return None;
    }
    Some("it is not https and not on the registry's own scheme, host and port, so the password would travel in clear to a place the configuration does not name")
}

/// Parse `WWW-Authenticate` (one challenge; unknown schemes → `None`).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_only_to_https_or_same_origin_realms() {
        let u = |s: &str| match reqwest::Url::parse(s) {
            Ok(u) => u,
            Err(e) => panic!("{s}: {e}"),
        };
        let reg = u("http://127.0.0.1:5000/");
        assert!(realm_refusal(&reg, &u("http://127.0.0.1:5000/token")).is_none());
        assert!(realm_refusal(&reg, &u("https://auth.example/token")).is_none());
        assert!(realm_refusal(&reg, &u("http://127.0.0.2:5000/token")).is_some());
        assert!(realm_refusal(&reg, &u("http://127.0.0.1:5001/token")).is_some());
        let tls = u("https://reg.example/");
        assert!(realm_refusal(&tls, &u("http://reg.example/token")).is_some());
        assert!(realm_refusal(&tls, &u("https://reg.example:443/token")).is_none());
    }

    #[test]
    fn secrets_never_print() {
        let a = Auth::Basic {
            user: "bob".into(),
            password: Secret::new("hunter2"),
        };
        let s = format!("{a:?} {}", Secret::new("hunter2"));
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("bob"), "{s}");
        let c = Credentials {
            user: "bob".into(),
            password: Secret::new("pw"),
        };
        assert_eq!(c.basic_header(), "Basic Ym9iOnB3");
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="mirrorplan-harness""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=http://127.0.0.1:1/t"),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn docker_config_inline_and_errors() {
        let dir = tempfile::tempdir();
        let Ok(dir) = dir else { panic!("tempdir") };
        let p = dir.path().join("config.json");
        let cfg = r#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"dTE6cGFzczp3b3Jk"},
            "other:1":{"username":"u2","password":"p2"}}}"#;
        assert!(std::fs::write(&p, cfg).is_ok());
        let c = resolve_docker_config(&p, "127.0.0.1:5000", None);
        assert!(
            matches!(&c, Ok(Some(c)) if c.user == "u1" && c.password.expose() == "pass:word"),
            "{c:?}"
        );
        let c = resolve_docker_config(&p, "other:1", None);
        assert!(matches!(&c, Ok(Some(c)) if c.user == "u2"), "{c:?}");
        assert!(matches!(resolve_docker_config(&p, "nope", None), Ok(None)));
        // Syntax errors never quote the file.
        assert!(std::fs::write(&p, r#"{"auths": {"h": {"auth": "c2VjcmV0"}"#).is_ok());
        let e = resolve_docker_config(&p, "h", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not valid JSON"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }
}
