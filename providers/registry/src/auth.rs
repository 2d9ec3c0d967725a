//! Registry credentials: a [`Secret`] that never prints, the [`Auth`]
//! choices of a registry target, the one parser of Docker `config.json` /
//! containers `auth.json` files (inline `auths` with `auth`,
//! `username`/`password` or `identitytoken`, `credHelpers`, `credsStore`),
//! the lookup of those files where docker, podman and skopeo keep them
//! ([`credential_files`]), and parsing of `WWW-Authenticate` challenges.
//!
//! The `docker_credential` crate (1.4) was considered and not taken: its
//! podman lookup skips `$XDG_CONFIG_HOME/containers/auth.json` (and fails
//! without `XDG_RUNTIME_DIR`), docker and podman files are two separate
//! lookups, and a failing helper's whole stdout/stderr travels in its
//! error; this parser already served `docker_config` and `pull_credentials`.
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
    /// Look the host up in the credential files docker, podman and skopeo
    /// use, in the order of [`credential_files`]; anonymous when none has
    /// an entry for it.
    Environment,
}

/// Resolved user name and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name; [`IDENTITY_TOKEN_USER`] when `password` is an identity
    /// token (an OAuth2 refresh token), as credential helpers say it.
    pub user: String,
    /// Password or token.
    pub password: Secret,
}

/// The user name credential helpers give with an identity token, and that
/// [`Credentials`] carry for an `identitytoken` entry.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credentials {
    /// An identity token (`identitytoken`, or a helper's `<token>` user):
    /// exchanged at the token endpoint with `grant_type=refresh_token`,
    /// never sent as a password.
    pub fn is_identity_token(&self) -> bool {
        self.user == IDENTITY_TOKEN_USER
    }

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
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// `https://host:port/v1/` → `host:port`, as Docker matches `auths` keys.
/// A key with a path but no scheme (`quay.io/team`, a containers
/// `auth.json` entry for one namespace) gives `None`: it holds credentials
/// for part of a registry only, and mirrorplan authenticates per host.
fn config_key_host(key: &str) -> Option<&str> {
    match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(k) => k.split('/').next(),
        None => (!key.contains('/')).then_some(key),
    }
}

/// The names one registry host has in credential files: Docker Hub's API
/// host is `registry-1.docker.io`, its credentials are kept under
/// `https://index.docker.io/v1/` (or `docker.io`).
fn host_aliases(host: &str) -> &'static [&'static str] {
    match host {
        "registry-1.docker.io" | "docker.io" | "index.docker.io" => {
            &["index.docker.io", "docker.io", "registry-1.docker.io"]
        }
        _ => &[],
    }
}

fn key_matches(key: &str, host: &str) -> bool {
    config_key_host(key).is_some_and(|k| k == host || host_aliases(host).contains(&k))
}

/// The host name given to a credential helper (`https://index.docker.io/v1/`
/// for Docker Hub, as `docker login` stores it).
fn helper_server(host: &str) -> &str {
    if host_aliases(host).is_empty() {
        host
    } else {
        "https://index.docker.io/v1/"
    }
}

/// The credential files docker, podman and skopeo read, in the order
/// mirrorplan looks a host up in them (`env` reads a variable):
///
/// 1. `$REGISTRY_AUTH_FILE` — when set, the only file (as podman and
///    skopeo, containers-auth.json(5));
/// 2. `$XDG_RUNTIME_DIR/containers/auth.json` (podman login's default);
/// 3. `$XDG_CONFIG_HOME/containers/auth.json`, or
///    `$HOME/.config/containers/auth.json`;
/// 4. `$DOCKER_CONFIG/config.json`, or `$HOME/.docker/config.json`.
pub fn credential_files(env: &dyn Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(f) = set("REGISTRY_AUTH_FILE") {
        return vec![f];
    }
    let home = set("HOME");
    let mut out = Vec::new();
    if let Some(d) = set("XDG_RUNTIME_DIR") {
        out.push(d.join("containers/auth.json"));
    }
    if let Some(d) = set("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        out.push(d.join("containers/auth.json"));
    }
    if let Some(d) = set("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
        out.push(d.join("config.json"));
    }
    out
}

/// The credentials for `host` from the first of [`credential_files`] that
/// has them, with that file's path (`Ok(None)`: anonymous). Files that do
/// not exist are skipped; one that cannot be read or parsed is an error
/// naming it. Helpers are looked up on `env("PATH")`.
pub fn resolve_environment(
    host: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Option<(PathBuf, Credentials)>, RegistryError> {
    let helper_path = env("PATH");
    for f in credential_files(env) {
        if !f.exists() {
            continue;
        }
        if let Some(c) = resolve_docker_config(&f, host, helper_path.as_ref())? {
            // the file's path only, never what it holds
            tracing::debug!(
                target: "mirrorplan_registry::auth",
                registry = %host,
                file = %f.display(),
                "credentials from the environment"
            );
            return Ok(Some((f, c)));
        }
    }
    tracing::debug!(
        target: "mirrorplan_registry::auth",
        registry = %host,
        "no credentials in the environment: anonymous"
    );
    Ok(None)
}

/// Resolve the credentials for `host` (`host[:port]` as in image
/// references) from the Docker config file at `path`.
///
/// Order as Docker's: `credHelpers[host]`, then an inline `auths[host]`
/// entry (`auth` = base64 `user:password`, or `username`/`password`, or
/// `identitytoken`), then `credsStore`. Helpers run as `docker-credential-NAME get` with the host
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
        .find(|(k, _)| key_matches(k, host))
        .map(|(_, v)| v.clone());
    if let Some(helper) = helper_for {
        return run_credential_helper(&helper, helper_server(host), helper_path).map(Some);
    }
    if let Some((_, entry)) = cfg.auths.iter().find(|(k, _)| key_matches(k, host)) {
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
        if let Some(t) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials {
                user: IDENTITY_TOKEN_USER.to_string(),
                password: Secret::new(t),
            }));
        }
    }
    if let Some(store) = cfg.creds_store.as_deref().filter(|s| !s.is_empty()) {
        return match run_credential_helper(store, helper_server(host), helper_path) {
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

    fn env_of<'a>(vars: &'a [(&'a str, &'a Path)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_os_str().to_os_string())
        }
    }

    #[test]
    fn credential_files_in_the_order_of_docker_podman_and_skopeo() {
        let p = Path::new;
        let all = [
            ("HOME", p("/h")),
            ("XDG_RUNTIME_DIR", p("/run/u")),
            ("XDG_CONFIG_HOME", p("/cfg")),
            ("DOCKER_CONFIG", p("/dk")),
        ];
        assert_eq!(
            credential_files(&env_of(&all)),
            vec![
                PathBuf::from("/run/u/containers/auth.json"),
                PathBuf::from("/cfg/containers/auth.json"),
                PathBuf::from("/dk/config.json"),
            ]
        );
        assert_eq!(
            credential_files(&env_of(&[("HOME", p("/h")), ("XDG_CONFIG_HOME", p(""))])),
            vec![
                PathBuf::from("/h/.config/containers/auth.json"),
                PathBuf::from("/h/.docker/config.json"),
            ]
        );
        let mut with_file = all.to_vec();
        with_file.push(("REGISTRY_AUTH_FILE", p("/a.json")));
        assert_eq!(
            credential_files(&env_of(&with_file)),
            vec![PathBuf::from("/a.json")]
        );
        assert!(credential_files(&env_of(&[])).is_empty());
    }

    #[test]
    fn the_first_file_with_the_host_wins() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let d = dir.path();
        let run = d.join("run");
        let dk = d.join("dk");
        assert!(std::fs::create_dir_all(run.join("containers")).is_ok());
        assert!(std::fs::create_dir_all(&dk).is_ok());
        // base64("first:one"), base64("second:two")
        assert!(std::fs::write(
            run.join("containers/auth.json"),
            r#"{"auths":{"a:1":{"auth":"Zmlyc3Q6b25l"},"quay.io/team":{"auth":"Zmlyc3Q6b25l"}}}"#
        )
        .is_ok());
        assert!(std::fs::write(
            dk.join("config.json"),
            r#"{"auths":{"a:1":{"auth":"c2Vjb25kOnR3bw=="},"b:2":{"auth":"c2Vjb25kOnR3bw=="},
                "https://index.docker.io/v1/":{"identitytoken":"rt"}}}"#
        )
        .is_ok());
        let vars = [
            ("XDG_RUNTIME_DIR", run.as_path()),
            ("DOCKER_CONFIG", dk.as_path()),
        ];
        let env = env_of(&vars);
        let user = |host: &str| match resolve_environment(host, &env) {
            Ok(Some((f, c))) => Some((f, c.user)),
            Ok(None) => None,
            Err(e) => panic!("{host}: {e}"),
        };
        assert_eq!(
            user("a:1"),
            Some((run.join("containers/auth.json"), "first".into()))
        );
        assert_eq!(user("b:2"), Some((dk.join("config.json"), "second".into())));
        // A namespace-scoped containers key is not a host's credentials.
        assert_eq!(user("quay.io"), None);
        // Docker Hub's API host finds the `docker login` entry.
        assert_eq!(
            user("registry-1.docker.io"),
            Some((dk.join("config.json"), IDENTITY_TOKEN_USER.into()))
        );
        // A malformed file is an error naming it, not its contents.
        assert!(
            std::fs::write(run.join("containers/auth.json"), "{\"auths\": Zmlyc3Q6b25l").is_ok()
        );
        let e = resolve_environment("b:2", &env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("containers/auth.json"), "{e}");
        assert!(!e.contains("Zmlyc3Q6b25l"), "{e}");
    }
}
