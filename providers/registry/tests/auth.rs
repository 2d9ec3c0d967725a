//! Bearer-token auth, re-authentication after token expiry, retries and
//! credential helpers, against a small hand-written HTTP server on
//! 127.0.0.1 (the harness registry only speaks htpasswd basic auth).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::ok;
use mirrorplan_registry::auth::resolve_docker_config;
use mirrorplan_registry::{
    Auth, Digest, RegistryClient, RegistryError, RegistryTarget, Scheme, Secret,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
struct State {
    port: u16,
    issued: u32,
    valid: HashSet<String>,
    token_requests: Vec<String>,
    /// Requests per path (method + path).
    hits: Vec<String>,
    flaky_left: u32,
    never_accept: bool,
}

struct Req {
    method: String,
    path: String,
    auth: Option<String>,
    body: String,
}

fn respond(state: &Mutex<State>, req: &Req) -> (u16, Vec<(String, String)>, String) {
    let Ok(mut s) = state.lock() else {
        return (500, vec![], String::new());
    };
    s.hits.push(format!("{} {}", req.method, req.path));
    let port = s.port;
    if req.path.starts_with("/token") {
        s.token_requests.push(req.path.clone());
        // base64("alice:correct horse"), or the identity token's
        // refresh-token grant (POSTed as a form, as Docker does).
        let refresh = req.method == "POST"
            && req.auth.is_none()
            && req.body.split('&').any(|p| p == "grant_type=refresh_token")
            && req
                .body
                .split('&')
                .any(|p| p == "refresh_token=rt-s3cret-77");
        if !refresh && req.auth.as_deref() != Some("Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==") {
            return (401, vec![], "{}".into());
        }
        s.issued += 1;
        let t = format!("tok-{}", s.issued);
        s.valid.insert(t.clone());
        return (
            200,
            vec![],
            format!("{{\"token\":\"{t}\",\"expires_in\":60}}"),
        );
    }
    if req.path.contains("/flaky/") {
        if s.flaky_left > 0 {
            s.flaky_left -= 1;
            let status = if s.flaky_left % 2 == 0 { 429 } else { 503 };
            return (
                status,
                vec![("Retry-After".into(), "0".into())],
                String::new(),
            );
        }
        return (
            200,
            vec![("Content-Length".into(), "5".into())],
            String::new(),
        );
    }
    if req.path.contains("/bad/") {
        return (
            400,
            vec![],
            r#"{"errors":[{"code":"NAME_INVALID","message":"bad name"}]}"#.into(),
        );
    }
    if req.path.contains("/broken/") {
        return (502, vec![], String::new());
    }
    let token_ok = req
        .auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| s.valid.contains(t));
    if !token_ok || s.never_accept {
        let challenge = format!(
            "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"mock\",scope=\"repository:repo:pull\""
        );
        return (
            401,
            vec![("WWW-Authenticate".into(), challenge)],
            String::new(),
        );
    }
    let d = Digest::of(b"{}");
    (
        200,
        vec![
            ("Docker-Content-Digest".into(), d.to_string()),
            (
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            ),
        ],
        String::new(),
    )
}

async fn serve(state: Arc<Mutex<State>>) -> u16 {
    let listener = ok(TcpListener::bind("127.0.0.1:0").await, "bind");
    let port = ok(listener.local_addr(), "addr").port();
    if let Ok(mut s) = state.lock() {
        s.port = port;
    }
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let head_len = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
                let want = text[..head_len]
                    .split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < head_len + want {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&buf[head_len.min(buf.len())..]).to_string();
                let text = text[..head_len].to_string();
                let mut lines = text.split("\r\n");
                let first = lines.next().unwrap_or_default();
                let mut parts = first.split(' ');
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let auth = lines
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.trim().to_string());
                let (status, headers, body) = respond(
                    &state,
                    &Req {
                        method: method.clone(),
                        path,
                        auth,
                        body,
                    },
                );
                let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                let has_len = headers.iter().any(|(k, _)| k == "Content-Length");
                for (k, v) in &headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                if !has_len {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                out.push_str("\r\n");
                if method != "HEAD" {
                    out.push_str(&body);
                }
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

fn client(port: u16, password: &str) -> RegistryClient {
    let mut t = RegistryTarget::new(Scheme::Http, format!("127.0.0.1:{port}"));
    t.auth = Auth::Basic {
        user: "alice".into(),
        password: Secret::new(password),
    };
    ok(
        RegistryClient::with_options(t, common::fast_options()),
        "client",
    )
}

fn hits(state: &Mutex<State>, needle: &str) -> usize {
    state
        .lock()
        .map(|s| s.hits.iter().filter(|h| h.contains(needle)).count())
        .unwrap_or(0)
}

fn token_requests(state: &Mutex<State>) -> Vec<String> {
    state
        .lock()
        .map(|s| s.token_requests.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_cached_and_renewed() {
    let state = Arc::new(Mutex::new(State::default()));
    let port = serve(state.clone()).await;
    let c = client(port, "correct horse");
    let info = ok(c.head_manifest("repo", "t").await, "head");
    assert_eq!(info.map(|i| i.digest), Some(Digest::of(b"{}")));
    let t = token_requests(&state);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(
        t[0].contains("service=mock") && t[0].contains("scope=repository%3Arepo%3Apull"),
        "{t:?}"
    );
    // Cached: no new token.
    ok(c.head_manifest("repo", "t").await, "head again");
    assert_eq!(token_requests(&state).len(), 1);
    // The registry forgets every token (expiry): the client gets a new one.
    if let Ok(mut s) = state.lock() {
        s.valid.clear();
    }
    ok(c.head_manifest("repo", "t").await, "head after expiry");
    assert_eq!(token_requests(&state).len(), 2);
    assert_eq!(hits(&state, "HEAD /v2/repo/manifests/t"), 5);
}

/// A `MakeWriter` into a shared buffer, for the debug log.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// The debug log of the bearer flow names each request (the token request
/// with its scope) and how it was authenticated, never the token, the
/// password or its Basic form.
#[tokio::test]
async fn the_debug_log_of_the_bearer_flow_holds_no_token_or_password() {
    let buf = LogBuffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("mirrorplan=debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // global: a scoped subscriber misses events of callsites that the
    // other tests of this binary, on their threads, registered first
    ok(
        tracing::subscriber::set_global_default(subscriber),
        "set the subscriber",
    );
    let state = Arc::new(Mutex::new(State::default()));
    let port = serve(state.clone()).await;
    let c = client(port, "correct horse");
    ok(c.head_manifest("repo", "t").await, "head");
    ok(c.head_manifest("repo", "t").await, "head again");
    let log = buf.text();
    // this test's lines (the other tests log too)
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("mirrorplan_registry::request"))
        .filter(|l| l.contains(&format!("127.0.0.1:{port}")))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("method=HEAD")
            && l.contains(&format!("url=http://127.0.0.1:{port}/v2/repo/manifests/t"))
            && l.contains("status=401")
            && l.contains("auth=none")),
        "the challenge:\n{log}"
    );
    assert!(
        lines.iter().any(|l| l.contains("method=GET")
            && l.contains("/token?service=mock&scope=repository%3Arepo%3Apull")
            && l.contains("status=200")
            && l.contains("auth=basic")),
        "the token request:\n{log}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("method=HEAD")
                && l.contains("status=200")
                && l.contains("auth=bearer"))
            .count(),
        2,
        "both HEADs with the token:\n{log}"
    );
    for secret in [
        "tok-1",
        "correct horse",
        "YWxpY2U6Y29ycmVjdCBob3JzZQ",
        "Bearer ",
        "Authorization",
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }

    // An identity token: the refresh-token grant is logged as such, the
    // refresh token and the bearer token it buys never.
    let state = Arc::new(Mutex::new(State::default()));
    let port = serve(state.clone()).await;
    ok(
        identity_client(port, "rt-s3cret-77")
            .head_manifest("repo", "t")
            .await,
        "head with an identity token",
    );
    let log = buf.text();
    assert!(
        log.lines().any(|l| l.contains("method=POST")
            && l.contains(&format!("127.0.0.1:{port}/token"))
            && l.contains("status=200")
            && l.contains("auth=refresh_token")),
        "the refresh-token grant:\n{log}"
    );
    for secret in ["rt-s3cret-77", "tok-1", "Bearer ", "Authorization"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_wrong_password_and_refused_tokens_are_clear() {
    let state = Arc::new(Mutex::new(State::default()));
    let port = serve(state.clone()).await;
    let c = client(port, "battery staple");
    let e = c.head_manifest("repo", "t").await;
    let Err(e) = e else {
        panic!("wrong password accepted")
    };
    assert!(matches!(e, RegistryError::WrongCredentials { .. }), "{e:?}");
    let msg = format!("{e} {e:?}");
    assert!(msg.contains("alice") && !msg.contains("battery"), "{msg}");

    // Tokens are issued but never accepted: bounded, then a clear error.
    if let Ok(mut s) = state.lock() {
        s.never_accept = true;
        s.hits.clear();
    }
    let c = client(port, "correct horse");
    let e = c.head_manifest("repo", "t").await;
    assert!(
        matches!(e, Err(RegistryError::WrongCredentials { .. })),
        "{e:?}"
    );
    assert!(hits(&state, "HEAD /v2/repo/manifests/t") <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_5xx_and_429_but_not_other_4xx() {
    let state = Arc::new(Mutex::new(State {
        flaky_left: 2,
        ..State::default()
    }));
    let port = serve(state.clone()).await;
    let c = client(port, "correct horse");
    let d = Digest::of(b"hello");
    assert_eq!(ok(c.head_blob("flaky/x", &d).await, "flaky head"), Some(5));
    assert_eq!(hits(&state, "/flaky/"), 3);

    let e = c.head_blob("bad/x", &d).await;
    assert!(
        matches!(e, Err(RegistryError::Status { status: 400, .. })),
        "{e:?}"
    );
    assert_eq!(hits(&state, "/bad/"), 1);

    let e = c.head_blob("broken/x", &d).await;
    let Err(e) = e else { panic!("502 accepted") };
    assert!(
        matches!(e, RegistryError::Status { status: 502, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains(d.as_str()) && e.to_string().contains("broken/x"),
        "{e}"
    );
    assert_eq!(hits(&state, "/broken/"), 3, "max_attempts");

    // Nothing listens: connect errors are retried, then reported.
    let dead = ok(std::net::TcpListener::bind("127.0.0.1:0"), "bind");
    let dead_port = ok(dead.local_addr(), "addr").port();
    drop(dead);
    let c = client(dead_port, "x");
    let e = c.ping().await;
    assert!(
        matches!(e, Err(RegistryError::Connect { attempts: 3, .. })),
        "{e:?}"
    );
}

#[test]
fn credential_helpers() {
    let dir = common::tmp();
    let bin = dir.path().join("bin");
    ok(std::fs::create_dir(&bin), "mkdir");
    let helper = bin.join("docker-credential-mptest");
    ok(
        std::fs::write(
            &helper,
            "#!/bin/sh\nread host\nif [ \"$1\" = get ] && [ \"$host\" = 127.0.0.1:5000 ]; then\n  echo '{\"ServerURL\":\"127.0.0.1:5000\",\"Username\":\"helper-user\",\"Secret\":\"helper-secret\"}'\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        ),
        "write helper",
    );
    use std::os::unix::fs::PermissionsExt;
    ok(
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)),
        "chmod",
    );
    let path = Some(bin.clone().into_os_string());
    let cfg = dir.path().join("config.json");
    ok(
        std::fs::write(&cfg, r#"{"credHelpers":{"127.0.0.1:5000":"mptest"}}"#),
        "write",
    );
    let c = ok(
        resolve_docker_config(&cfg, "127.0.0.1:5000", path.as_ref()),
        "helper",
    );
    let Some(c) = c else {
        panic!("no credentials from the helper")
    };
    assert_eq!(c.user, "helper-user");
    assert_eq!(c.password.expose(), "helper-secret");
    assert!(!format!("{c:?}").contains("helper-secret"));

    // credsStore: found for this host, "not found" (anonymous) for others.
    ok(std::fs::write(&cfg, r#"{"credsStore":"mptest"}"#), "write");
    let c = ok(
        resolve_docker_config(&cfg, "127.0.0.1:5000", path.as_ref()),
        "store",
    );
    assert_eq!(c.map(|c| c.user), Some("helper-user".to_string()));
    let c = ok(
        resolve_docker_config(&cfg, "127.0.0.1:6000", path.as_ref()),
        "store",
    );
    assert!(c.is_none());

    // A helper that is not installed.
    ok(
        std::fs::write(&cfg, r#"{"credHelpers":{"h:1":"absent"}}"#),
        "write",
    );
    let e = resolve_docker_config(&cfg, "h:1", path.as_ref());
    let Err(e) = e else {
        panic!("missing helper accepted")
    };
    assert!(matches!(e, RegistryError::CredentialHelper { .. }));
    assert!(e.to_string().contains("docker-credential-absent"), "{e}");
}

/// A client for the mock registry with the `identitytoken` `token`, read
/// from a containers `auth.json` by the one config parser.
fn identity_client(port: u16, token: &str) -> RegistryClient {
    let dir = common::tmp();
    let cfg = dir.path().join("auth.json");
    ok(
        std::fs::write(
            &cfg,
            format!(
                r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"","identitytoken":"{token}"}}}}}}"#
            ),
        ),
        "write",
    );
    let c = ok(
        resolve_docker_config(&cfg, &format!("127.0.0.1:{port}"), None),
        "parse",
    );
    let Some(c) = c else {
        panic!("no credentials from identitytoken")
    };
    assert!(c.is_identity_token());
    assert!(!format!("{c:?}").contains(token));
    let mut t = RegistryTarget::new(Scheme::Http, format!("127.0.0.1:{port}"));
    t.auth = Auth::Basic {
        user: c.user,
        password: c.password,
    };
    ok(
        RegistryClient::with_options(t, common::fast_options()),
        "client",
    )
}

/// An `identitytoken` entry (an OAuth2 refresh token, as `docker login`
/// stores for registries that give one) is exchanged at the token endpoint
/// with `grant_type=refresh_token` in a POST form (never as Basic auth,
/// never in the URL), and the bearer token it returns is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_tokens_use_the_refresh_token_grant() {
    let state = Arc::new(Mutex::new(State::default()));
    let port = serve(state.clone()).await;
    let info = ok(
        identity_client(port, "rt-s3cret-77")
            .head_manifest("repo", "t")
            .await,
        "head with an identity token",
    );
    assert_eq!(info.map(|i| i.digest), Some(Digest::of(b"{}")));
    assert_eq!(hits(&state, "POST /token"), 1, "one refresh-token grant");
    assert_eq!(hits(&state, "GET /token"), 0, "no Basic token request");
    assert!(
        token_requests(&state)
            .iter()
            .all(|p| !p.contains("rt-s3cret")),
        "the refresh token is not in the URL"
    );

    // A wrong refresh token: a clear error, without the token.
    let e = identity_client(port, "rt-wrong-99")
        .head_manifest("repo", "t")
        .await;
    let Err(e) = e else {
        panic!("a wrong refresh token was accepted")
    };
    let msg = format!("{e} {e:?}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains("rt-wrong-99"), "{msg}");
}
