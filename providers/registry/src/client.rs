//! The OCI distribution client: one [`RegistryClient`] (one `reqwest`
//! connection pool) per registry, with authentication (basic, bearer
//! tokens with re-authentication when a token expires mid-run, Docker
//! config files and credential helpers), TLS with a private CA, proxies,
//! retries with exponential backoff and jitter, and the blob and manifest
//! operations a mirror needs.
//!
//! # Why reqwest streams and not `oci-client`
//!
//! The push path is built directly on `reqwest` streaming bodies rather
//! than on the `oci-client` crate, because for mirroring `oci-client`'s push:
//! - re-uploads every blob on every push (no HEAD-before-upload, so a warm
//!   re-run costs the full bundle size again);
//! - takes each layer as a `Vec<u8>`, i.e. buffers whole blobs in memory,
//!   while bundles stream multi-GiB layers out of a sequential tar;
//! - has no retries/backoff (a single 502 from a proxy fails the run);
//! - mounts blobs in a fragile way (a declined mount, `202`, is not turned
//!   into an upload on the session the registry returned).
//!
//! Here a blob body is a `Stream` of chunks sent with an exact
//! `Content-Length` (monolithic `POST` + `PUT ?digest=`), or in bounded
//! `PATCH` chunks when configured or when a registry rejects monolithic
//! uploads; memory per upload is bounded by the chunk size.
//!
//! # Requests, retries and auth
//!
//! Every request goes through one loop: add the `Authorization` the
//! registry asked for (basic, or a bearer token cached per scope), send,
//! then on `401` parse `WWW-Authenticate`, fetch a token (or switch to
//! basic) and resend once; a second `401` is "wrong credentials" naming the
//! user, never the password. Connect errors, `5xx` and `429` are retried
//! with exponential backoff and jitter (`Retry-After` honoured), a bounded
//! number of times; other `4xx` are never retried. A request whose body is
//! a one-shot stream is sent once: its auth is settled by the preceding
//! body-less `POST` of the upload session.
//!
//! # Timeouts
//!
//! Besides the connect timeout, every request has an inactivity timeout
//! ([`ClientOptions::timeout`], 60 s unless the registry block sets
//! `timeout`): the registry must answer a request within it once the
//! request is sent, and a response body must not pause longer. Uploads are
//! never cut for their length: while a body is being sent, the clock
//! restarts with every chunk the registry takes, and it stops while the
//! chunk's source (a bundle, another registry) is the one that is slow.
//! A request that times out is retried like a connect error.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE,
};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::io::AsyncRead;

use crate::auth::{
    parse_challenge, realm_refusal, resolve_docker_config, resolve_environment, Auth, Challenge,
    Credentials,
};
use crate::client_error::RegistryError;
use crate::digest::Digest;
use crate::oci::media_types;
use crate::request_log::{self, RequestLine};

/// Manifests larger than this are refused (registries cap them at 4 MiB).
pub const MANIFEST_CAP: usize = 4 * 1024 * 1024;

/// The `Accept` header for manifests: OCI and Docker, manifests and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `https` or `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// TLS (the default).
    #[default]
    Https,
    /// Plain HTTP (lab registries, upstreams on loopback).
    Http,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        })
    }
}

/// A registry to talk to.
#[derive(Clone, Default)]
pub struct RegistryTarget {
    /// `https` or `http`.
    pub scheme: Scheme,
    /// `host[:port]`, e.g. `registry.lab:5000`.
    pub host_port: String,
    /// Mirror namespace (path prefix) images go under, if any.
    pub namespace: Option<String>,
    /// PEM CA certificate(s) trusted in addition to the system roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Accept any certificate (throwaway labs only).
    pub insecure: bool,
    /// Credentials.
    pub auth: Auth,
    /// Explicit proxy URL; without it `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
    /// from the environment apply.
    pub proxy: Option<String>,
}

impl RegistryTarget {
    /// A target with no auth, no CA and no namespace.
    pub fn new(scheme: Scheme, host_port: impl Into<String>) -> Self {
        RegistryTarget {
            scheme,
            host_port: host_port.into(),
            ..RegistryTarget::default()
        }
    }

    /// `scheme://host_port`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host_port)
    }
}

impl fmt::Debug for RegistryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryTarget")
            .field("scheme", &self.scheme)
            .field("host_port", &self.host_port)
            .field("namespace", &self.namespace)
            .field(
                "ca_cert_pem",
                &self
                    .ca_cert_pem
                    .as_ref()
                    .map(|p| format!("{} bytes", p.len())),
            )
            .field("insecure", &self.insecure)
            .field("auth", &self.auth)
            .field("proxy", &self.proxy.as_ref().map(|p| redact_url(p)))
            .finish()
    }
}

/// A proxy URL without its `user:password@` part.
fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            format!("{u} (credentials redacted)")
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparsable proxy URL>".to_string(),
    }
}

/// Retry policy for connect errors, `5xx` and `429`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub max_attempts: u32,
    /// First backoff delay; doubles each attempt.
    pub base_delay: Duration,
    /// Cap on one delay (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMode {
    /// Monolithic; after a registry rejects a monolithic `PUT` (413, 405,
    /// 501) the client switches to chunked for the rest of its life.
    #[default]
    Auto,
    /// Always monolithic (`POST` then one streamed `PUT`).
    Monolithic,
    /// Always chunked `PATCH`es of at most `chunk_size` bytes.
    Chunked {
        /// Bytes per `PATCH` (memory used per upload).
        chunk_size: usize,
    },
}

/// Default chunk size for chunked uploads.
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;

/// Client tuning.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Retries.
    pub retry: RetryPolicy,
    /// Blob upload mode.
    pub upload: UploadMode,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Inactivity timeout: the longest the registry may leave a sent
    /// request unanswered, or pause a response body (see the module doc).
    pub timeout: Duration,
    /// The registry's request limits (`max_concurrency`, `rate_limit`),
    /// shared by every client of that registry.
    pub limiter: Option<Arc<crate::limits::Limiter>>,
}

/// The default [`ClientOptions::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry: RetryPolicy::default(),
            upload: UploadMode::Auto,
            connect_timeout: Duration::from_secs(15),
            timeout: DEFAULT_TIMEOUT,
            limiter: None,
        }
    }
}

/// When a request body last made progress, for the inactivity timeout of
/// a request whose body is streamed (see [`RegistryClient::answered`]).
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last chunk the body handed on.
    last_ms: AtomicU64,
    /// The body is waiting for its own source: the registry is not late.
    waiting_on_source: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting_on_source: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A request body that records its progress in an [`Activity`].
struct Watched<S> {
    inner: Pin<Box<S>>,
    activity: Arc<Activity>,
}

impl<S> Stream for Watched<S>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        let waiting = polled.is_pending();
        self.activity
            .waiting_on_source
            .store(waiting, Ordering::Relaxed);
        if !waiting {
            self.activity.touch();
        }
        polled
    }
}

/// `body` watched by `activity`.
fn watched<S>(body: S, activity: &Arc<Activity>) -> Watched<S> {
    activity.touch();
    Watched {
        inner: Box::pin(body),
        activity: activity.clone(),
    }
}

/// `bytes` as a stream of 64 KiB pieces (so that a watched upload of a
/// buffered chunk shows its progress).
fn pieces(bytes: Bytes) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    const PIECE: usize = 64 * 1024;
    let n = bytes.len().div_ceil(PIECE);
    futures::stream::iter(
        (0..n).map(move |i| Ok(bytes.slice(i * PIECE..((i + 1) * PIECE).min(bytes.len())))),
    )
}

/// `60s`, or `500ms` below a second.
fn short_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A response body whose pauses are limited to `timeout`: the clock runs
/// only while the consumer waits for the next chunk.
fn idle_limited(resp: Response, timeout: Duration) -> BlobStream {
    let state = (resp.bytes_stream().boxed(), false);
    futures::stream::unfold(state, move |(mut s, ended)| async move {
        if ended {
            return None;
        }
        match tokio::time::timeout(timeout, s.next()).await {
            Ok(Some(Ok(b))) => Some((Ok(b), (s, false))),
            Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), (s, true))),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the registry sent nothing for {} in the middle of the reply",
                        short_duration(timeout)
                    ),
                )),
                (s, true),
            )),
        }
    })
    .boxed()
}

/// Result of a `HEAD` on a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// `Docker-Content-Digest`.
    pub digest: Digest,
    /// `Content-Type`.
    pub media_type: String,
    /// `Content-Length`.
    pub size: u64,
}

/// An open blob upload session (`Location` of `POST .../blobs/uploads/`).
#[derive(Debug, Clone)]
pub struct UploadSession {
    repository: String,
    location: Url,
}

impl UploadSession {
    /// The repository it uploads into.
    pub fn repository(&self) -> &str {
        &self.repository
    }
}

/// Result of [`RegistryClient::mount_blob`].
#[derive(Debug)]
pub enum MountOutcome {
    /// `201`: the blob is now in the repository.
    Mounted,
    /// `202`: the registry declined and opened an upload session instead.
    Declined(UploadSession),
}

/// A blob body: chunks of bytes, or an I/O error that aborts the upload.
pub type BlobStream = futures::stream::BoxStream<'static, io::Result<Bytes>>;

/// Turn an `AsyncRead` into a [`BlobStream`] (64 KiB chunks).
pub fn stream_from_reader<R: AsyncRead + Send + 'static>(reader: R) -> BlobStream {
    tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024).boxed()
}

#[derive(Default)]
struct AuthState {
    /// The registry asked for basic auth: send it up front.
    basic: bool,
    /// Bearer tokens by scope key.
    tokens: HashMap<String, String>,
}

/// What a request is, for messages and token scopes.
struct Op<'a> {
    what: &'a str,
    scopes: Vec<String>,
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// A client for one registry. Cheap to share (`Arc`); all methods take
/// `&self`.
pub struct RegistryClient {
    target: RegistryTarget,
    base: Url,
    http: reqwest::Client,
    creds: Option<Credentials>,
    options: ClientOptions,
    auth: Mutex<AuthState>,
    chunked: AtomicBool,
    jitter: AtomicU64,
    /// What error texts in the debug log must not show (the password, its
    /// Basic form, the proxy's password).
    secrets: Vec<String>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("target", &self.target)
            .field("user", &self.creds.as_ref().map(|c| c.user.as_str()))
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Build a client with default options.
    pub fn new(target: RegistryTarget) -> Result<Self, RegistryError> {
        Self::with_options(target, ClientOptions::default())
    }

    /// Build a client: TLS roots (system + `ca_cert_pem`), proxy and
    /// credentials (a docker config file is read now).
    pub fn with_options(
        target: RegistryTarget,
        options: ClientOptions,
    ) -> Result<Self, RegistryError> {
        let registry = target.host_port.clone();
        let config = |reason: String| RegistryError::Config {
            registry: registry.clone(),
            reason,
        };
        let base = Url::parse(&format!("{}/", target.base_url())).map_err(|e| {
            config(format!(
                "`{}` is not a valid host:port: {e}",
                target.host_port
            ))
        })?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("mirrorplan/", env!("CARGO_PKG_VERSION")))
            // Redirects to blob storage must not carry our Authorization.
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(pem) = &target.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| config(format!("ca_cert is not a PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(config("ca_cert holds no PEM certificate".into()));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if target.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(p) = &target.proxy {
            let proxy = reqwest::Proxy::all(p)
                .map_err(|_| config(format!("proxy `{}` is not a valid URL", redact_url(p))))?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?;
        let creds = match &target.auth {
            Auth::None => None,
            Auth::Basic { user, password } => Some(Credentials {
                user: user.clone(),
                password: password.clone(),
            }),
            Auth::DockerConfig(path) => resolve_docker_config(path, &target.host_port, None)?,
            Auth::Environment => {
                resolve_environment(&target.host_port, &|k| std::env::var_os(k))?.map(|(_, c)| c)
            }
        };
        let chunked = matches!(options.upload, UploadMode::Chunked { .. });
        let mut secrets = Vec::new();
        if let Some(c) = &creds {
            secrets.push(c.password.expose().to_string());
            secrets.push(c.basic_header().trim_start_matches("Basic ").to_string());
        }
        if let Some(pw) = target
            .proxy
            .as_deref()
            .and_then(|p| Url::parse(p).ok())
            .and_then(|u| u.password().map(str::to_string))
        {
            secrets.push(pw);
        }
        Ok(RegistryClient {
            target,
            base,
            http,
            creds,
            options,
            auth: Mutex::new(AuthState::default()),
            chunked: AtomicBool::new(chunked),
            jitter: AtomicU64::new(0),
            secrets,
        })
    }

    /// The target.
    pub fn target(&self) -> &RegistryTarget {
        &self.target
    }

    /// `host[:port]`, as in messages.
    pub fn registry(&self) -> &str {
        &self.target.host_port
    }

    /// The resolved user name, if any.
    pub fn user(&self) -> Option<&str> {
        self.creds.as_ref().map(|c| c.user.as_str())
    }

    /// Whether uploads are currently chunked.
    pub fn uploads_chunked(&self) -> bool {
        self.chunked.load(Ordering::Relaxed)
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| RegistryError::Config {
            registry: self.registry().to_string(),
            reason: format!("cannot build URL for `{path}`: {e}"),
        })
    }

    fn chunk_size(&self) -> usize {
        match self.options.upload {
            UploadMode::Chunked { chunk_size } => chunk_size.max(1),
            _ => DEFAULT_CHUNK_SIZE,
        }
    }

    // ----- request machinery -------------------------------------------

    fn auth_header(&self, scopes: &[String]) -> Option<String> {
        let state = self.auth.lock().ok()?;
        if let Some(t) = state.tokens.get(&scopes.join(" ")) {
            return Some(format!("Bearer {t}"));
        }
        if state.basic {
            return self.creds.as_ref().map(Credentials::basic_header);
        }
        None
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let p = &self.options.retry;
        if let Some(ra) = retry_after {
            return ra.min(p.max_delay);
        }
        let exp = p
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(p.max_delay);
        // Full jitter in [exp/2, exp].
        let n = self.jitter.fetch_add(1, Ordering::Relaxed);
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        let frac = (h.finish() % 1000) as f64 / 1000.0;
        exp.mul_f64(0.5 + frac / 2.0)
    }

    /// Map a transport error; `Ok(detail)` when it is retryable.
    fn classify(&self, e: &reqwest::Error, what: &str) -> Result<String, RegistryError> {
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        let lower = chain.to_ascii_lowercase();
        if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
            return Err(RegistryError::UnknownAuthority {
                registry: self.registry().to_string(),
                detail: "invalid peer certificate: UnknownIssuer".into(),
            });
        }
        // a peer that went away in the middle (rustls: "peer closed
        // connection without sending TLS close_notify") is a broken
        // connection, not a TLS problem
        let dropped = lower.contains("close_notify")
            || lower.contains("unexpected eof")
            || lower.contains("connection reset");
        if !dropped
            && (lower.contains("certificate")
                || lower.contains("tls")
                || lower.contains("handshake")
                || lower.contains("corrupt message"))
        {
            return Err(RegistryError::Tls {
                registry: self.registry().to_string(),
                detail: last_part(&chain),
            });
        }
        // a connection that could not be made, timed out, or broke before
        // the answer came (reset, closed mid-reply): worth another attempt
        if e.is_connect() || e.is_timeout() || (e.is_request() && e.status().is_none()) {
            return Ok(last_part(&chain));
        }
        Err(RegistryError::Transfer {
            registry: self.registry().to_string(),
            what: what.to_string(),
            detail: last_part(&chain),
        })
    }

    /// Send a request built by `make` (called again for each retry; it
    /// returns `None` when its body cannot be replayed). Handles auth
    /// challenges and retries. Returns the final response, whatever its
    /// status (except 401, which becomes an error); a retryable status
    /// (`5xx`, `429`) to a request whose body cannot be sent again is
    /// returned, for the caller to report.
    async fn send<F>(&self, op: &Op<'_>, make: F) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Option<RequestBuilder>,
    {
        self.send_watched(op, None, make).await
    }

    /// `fut` (sending a request and waiting for its answer), or `None` when
    /// the registry leaves it unanswered for [`ClientOptions::timeout`]:
    /// counted from now, or, for a request whose streamed body reports to
    /// `activity`, from the body's last progress (never while the body
    /// waits for its own source).
    async fn answered<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
        activity: Option<&Activity>,
    ) -> Option<T> {
        let timeout = self.options.timeout;
        tokio::pin!(fut);
        let mut deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                v = &mut fut => return Some(v),
                _ = tokio::time::sleep_until(deadline) => {
                    let a = activity?;
                    let now = Instant::now();
                    let next = if a.waiting_on_source.load(Ordering::Relaxed) {
                        now + timeout
                    } else {
                        a.last() + timeout
                    };
                    if next <= now {
                        return None;
                    }
                    deadline = tokio::time::Instant::from_std(next);
                }
            }
        }
    }

    fn timed_out(&self, what: &str, attempts: u32) -> RegistryError {
        RegistryError::Timeout {
            registry: self.registry().to_string(),
            what: what.to_string(),
            limit: short_duration(self.options.timeout),
            attempts,
        }
    }

    /// [`Self::send`]; a streamed body reports its progress to `activity`.
    async fn send_watched<F>(
        &self,
        op: &Op<'_>,
        activity: Option<&Activity>,
        mut make: F,
    ) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Option<RequestBuilder>,
    {
        let mut attempt: u32 = 0;
        let mut auth_rounds: u32 = 0;
        // a retryable answer, or a broken or unanswered connection, to a
        // request whose body cannot be sent again: the caller reports the
        // last of them
        let mut refused: Option<Response> = None;
        let mut broke: Option<RegistryError> = None;
        loop {
            attempt += 1;
            let Some(mut req) = make() else {
                if let Some(resp) = refused {
                    return Ok(resp);
                }
                if let Some(e) = broke {
                    return Err(e);
                }
                return Err(RegistryError::Internal(format!(
                    "{}: a one-shot request body cannot be resent",
                    op.what
                )));
            };
            let sent_auth = self.auth_header(&op.scopes);
            if let Some(h) = &sent_auth {
                let mut v = HeaderValue::from_str(h).map_err(|_| RegistryError::Config {
                    registry: self.registry().to_string(),
                    reason: "credentials contain characters not allowed in an HTTP header".into(),
                })?;
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
            let admitted = self.admit().await;
            let (line, sending) = self.logged(req);
            let started = Instant::now();
            let auth = request_log::auth_kind(sent_auth.as_deref());
            let answer = self.answered(sending, activity).await;
            drop(admitted);
            let resp = match answer {
                None => {
                    let e = self.timed_out(op.what, attempt);
                    if let Some(l) = &line {
                        l.failed(
                            self.registry(),
                            attempt,
                            auth,
                            &e.to_string(),
                            started.elapsed(),
                        );
                    }
                    if attempt >= self.options.retry.max_attempts {
                        return Err(e);
                    }
                    refused = None;
                    broke = Some(e);
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                    continue;
                }
                Some(Ok(r)) => {
                    if let Some(l) = &line {
                        let received = content_length(r.headers());
                        let status = r.status().as_u16();
                        l.answered(
                            self.registry(),
                            attempt,
                            auth,
                            status,
                            received,
                            started.elapsed(),
                        );
                    }
                    r
                }
                Some(Err(e)) => {
                    if let Some(l) = &line {
                        let error = request_log::scrub(&e.to_string(), &self.secrets);
                        l.failed(self.registry(), attempt, auth, &error, started.elapsed());
                    }
                    let detail = self.classify(&e, op.what)?;
                    if attempt >= self.options.retry.max_attempts {
                        return Err(RegistryError::Connect {
                            registry: self.registry().to_string(),
                            attempts: attempt,
                            detail,
                        });
                    }
                    refused = None;
                    broke = Some(RegistryError::Transfer {
                        registry: self.registry().to_string(),
                        what: op.what.to_string(),
                        detail,
                    });
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                    continue;
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                auth_rounds += 1;
                let challenge = resp
                    .headers()
                    .get_all(reqwest::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(parse_challenge)
                    .next();
                if auth_rounds > 2 {
                    return Err(self.rejected(op));
                }
                match challenge {
                    Some(Challenge::Basic) => {
                        let mut state = self
                            .auth
                            .lock()
                            .map_err(|_| RegistryError::Internal("auth state poisoned".into()))?;
                        // An identity token is only ever exchanged at a token endpoint.
                        let usable = self.creds.as_ref().is_some_and(|c| !c.is_identity_token());
                        if !usable || (state.basic && sent_auth.is_some()) {
                            drop(state);
                            return Err(self.rejected(op));
                        }
                        state.basic = true;
                    }
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope,
                    }) => {
                        let key = op.scopes.join(" ");
                        let had_token = sent_auth
                            .as_deref()
                            .is_some_and(|h| h.starts_with("Bearer "));
                        if had_token && auth_rounds > 1 {
                            // A token fetched just now was refused.
                            return Err(self.rejected(op));
                        }
                        let mut scopes = op.scopes.clone();
                        if let Some(s) = scope {
                            for s in s.split(' ') {
                                if !s.is_empty() && !scopes.iter().any(|x| x == s) {
                                    scopes.push(s.to_string());
                                }
                            }
                        }
                        let token = self
                            .fetch_token(&realm, service.as_deref(), &scopes)
                            .await?;
                        if let Ok(mut state) = self.auth.lock() {
                            state.tokens.insert(key, token);
                        }
                    }
                    None => return Err(self.rejected(op)),
                }
                attempt -= 1;
                continue;
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < self.options.retry.max_attempts
            {
                let ra = retry_after(resp.headers());
                let wait = self.backoff(attempt, ra);
                request_log::retry_wait(
                    self.registry(),
                    op.what,
                    attempt,
                    wait,
                    &format!("HTTP {}", status.as_u16()),
                );
                tokio::time::sleep(wait).await;
                broke = None;
                refused = Some(resp);
                continue;
            }
            let mut resp = resp;
            if attempt > 1 && (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
            {
                resp.extensions_mut().insert(Attempts(attempt));
            }
            return Ok(resp);
        }
    }

    /// The request's turn under the registry's limits (see
    /// [`crate::limits`]); held until its answer comes.
    async fn admit(&self) -> Option<crate::limits::Admission> {
        match &self.options.limiter {
            Some(l) => Some(l.admit().await),
            None => None,
        }
    }

    /// The future sending `req`, and its debug log line when the log
    /// wants one.
    fn logged(
        &self,
        req: RequestBuilder,
    ) -> (
        Option<RequestLine>,
        impl std::future::Future<Output = reqwest::Result<Response>> + Send + 'static,
    ) {
        use futures::future::Either;
        let (client, built) = req.build_split();
        match built {
            Ok(r) => (
                request_log::enabled().then(|| RequestLine::of(&r)),
                Either::Left(client.execute(r)),
            ),
            Err(e) => (None, Either::Right(futures::future::ready(Err(e)))),
        }
    }

    fn rejected(&self, op: &Op<'_>) -> RegistryError {
        match &self.creds {
            Some(c) => RegistryError::WrongCredentials {
                registry: self.registry().to_string(),
                user: c.user.clone(),
            },
            None => RegistryError::AuthRequired {
                registry: self.registry().to_string(),
                what: op.what.to_string(),
            },
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let fail = |reason: String| RegistryError::Token {
            registry: self.registry().to_string(),
            realm: realm.to_string(),
            reason,
        };
        let mut url = Url::parse(realm).map_err(|e| fail(format!("invalid realm URL: {e}")))?;
        if let (Some(c), Some(why)) = (&self.creds, realm_refusal(&self.base, &url)) {
            return Err(RegistryError::UnsafeRealm {
                registry: self.registry().to_string(),
                user: c.user.clone(),
                realm: realm.to_string(),
                reason: why.to_string(),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        // An identity token goes to the realm as Docker sends it: a POST of
        // the OAuth2 refresh-token grant (the token in the form body, never
        // in the URL or a header).
        let refresh = self.creds.as_ref().filter(|c| c.is_identity_token());
        let form = refresh.map(|c| {
            let mut f = vec![
                ("grant_type", "refresh_token".to_string()),
                ("client_id", "mirrorplan".to_string()),
                ("refresh_token", c.password.expose().to_string()),
                ("scope", scopes.join(" ")),
            ];
            if let Some(s) = service {
                f.push(("service", s.to_string()));
            }
            f
        });
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let mut req = match &form {
                Some(f) => self.http.post(url.clone()).form(f),
                None => self.http.get(url.clone()),
            };
            if let Some(c) = self.creds.as_ref().filter(|_| form.is_none()) {
                let mut v = HeaderValue::from_str(&c.basic_header())
                    .map_err(|_| fail("credentials are not a valid header value".into()))?;
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
            let (line, sending) = self.logged(req);
            let started = Instant::now();
            let auth = match (&self.creds, &form) {
                (_, Some(_)) => "refresh_token",
                (Some(_), None) => "basic",
                (None, None) => "none",
            };
            let sent = self.answered(sending, None).await;
            if let Some(l) = &line {
                match &sent {
                    Some(Ok(r)) => l.answered(
                        self.registry(),
                        attempt,
                        auth,
                        r.status().as_u16(),
                        content_length(r.headers()),
                        started.elapsed(),
                    ),
                    Some(Err(e)) => l.failed(
                        self.registry(),
                        attempt,
                        auth,
                        &request_log::scrub(&e.to_string(), &self.secrets),
                        started.elapsed(),
                    ),
                    None => l.failed(
                        self.registry(),
                        attempt,
                        auth,
                        "no answer",
                        started.elapsed(),
                    ),
                }
            }
            let Some(sent) = sent else {
                if attempt >= self.options.retry.max_attempts {
                    return Err(self.timed_out(&format!("token request to {realm}"), attempt));
                }
                tokio::time::sleep(self.backoff(attempt, None)).await;
                continue;
            };
            match sent {
                Ok(r)
                    if (r.status().is_server_error() || r.status().as_u16() == 429)
                        && attempt < self.options.retry.max_attempts =>
                {
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                }
                Ok(r) => break r,
                Err(e) => {
                    let detail = self.classify(&e, "token request")?;
                    if attempt >= self.options.retry.max_attempts {
                        return Err(fail(detail));
                    }
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                }
            }
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(match &self.creds {
                Some(c) => RegistryError::WrongCredentials {
                    registry: self.registry().to_string(),
                    user: c.user.clone(),
                },
                None => RegistryError::AuthRequired {
                    registry: self.registry().to_string(),
                    what: format!("a token for {}", scopes.join(" ")),
                },
            });
        }
        if !status.is_success() {
            return Err(fail(format!("HTTP {}", status.as_u16())));
        }
        #[derive(Deserialize)]
        struct TokenReply {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let body = read_capped(resp, 1024 * 1024, self.options.timeout)
            .await
            .map_err(|e| fail(format!("reading the reply: {e}")))?;
        let reply: TokenReply = serde_json::from_slice(&body)
            .map_err(|_| fail("the reply is not token JSON".into()))?;
        reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the reply holds no token".into()))
    }

    /// Turn a non-success response into an error.
    /// The answer to a pull of `reference` from `repo`: a success passes,
    /// 404 is [`RegistryError::NotFound`], any other status its error.
    async fn found(
        &self,
        resp: Response,
        repo: &str,
        reference: &(impl std::fmt::Display + ?Sized),
        what: &str,
    ) -> Result<Response, RegistryError> {
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                registry: self.registry().to_string(),
                repository: repo.to_string(),
                reference: reference.to_string(),
            }),
            _ => Err(self.status_error(resp, what).await),
        }
    }

    async fn status_error(&self, resp: Response, what: &str) -> RegistryError {
        let status = resp.status().as_u16();
        if status == 403 {
            return RegistryError::Denied {
                registry: self.registry().to_string(),
                what: what.to_string(),
                status,
            };
        }
        let attempts = resp.extensions().get::<Attempts>().map(|a| a.0);
        let body = read_capped(resp, 8192, self.options.timeout)
            .await
            .unwrap_or_default();
        let detail = match attempts {
            Some(n) => format!(" after {n} attempts{}", error_detail(&body)),
            None => error_detail(&body),
        };
        RegistryError::Status {
            registry: self.registry().to_string(),
            what: what.to_string(),
            status,
            detail,
        }
    }

    // ----- public operations --------------------------------------------

    /// `GET /v2/`: checks connectivity, TLS and credentials.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.url("v2/")?;
        let op = Op {
            what: "GET /v2/",
            scopes: Vec::new(),
        };
        let resp = self.send(&op, || Some(self.http.get(url.clone()))).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(resp, op.what).await)
        }
    }

    /// `HEAD` a blob: its size when present.
    pub async fn head_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let what = format!("HEAD blob {digest} in {repo}");
        let op = Op {
            what: &what,
            scopes: vec![pull_scope(repo)],
        };
        let resp = self.send(&op, || Some(self.http.head(url.clone()))).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(content_length(resp.headers()).unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(resp, &what).await),
        }
    }

    /// Open an upload session in `repo`.
    pub async fn start_upload(&self, repo: &str) -> Result<UploadSession, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let what = format!("starting a blob upload in {repo}");
        let op = Op {
            what: &what,
            scopes: vec![push_scope(repo)],
        };
        let resp = self
            .send(&op, || {
                Some(self.http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(resp, &what).await);
        }
        self.session_from(&resp, repo, &what)
    }

    fn session_from(
        &self,
        resp: &Response,
        repo: &str,
        what: &str,
    ) -> Result<UploadSession, RegistryError> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.registry().to_string(),
                what: what.to_string(),
                reason: "no Location header in the upload reply".into(),
            })?;
        let location = self.base.join(loc).map_err(|e| RegistryError::Protocol {
            registry: self.registry().to_string(),
            what: what.to_string(),
            reason: format!("invalid Location `{loc}`: {e}"),
        })?;
        Ok(UploadSession {
            repository: repo.to_string(),
            location,
        })
    }

    /// Cross-repository mount: `POST /v2/<repo>/blobs/uploads/?mount=&from=`.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from_repo: &str,
    ) -> Result<MountOutcome, RegistryError> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from_repo);
        let what = format!("mounting blob {digest} into {repo} from {from_repo}");
        let op = Op {
            what: &what,
            scopes: vec![push_scope(repo), pull_scope(from_repo)],
        };
        let resp = self
            .send(&op, || {
                Some(self.http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => Ok(MountOutcome::Declined(
                self.session_from(&resp, repo, &what)?,
            )),
            _ => Err(self.status_error(resp, &what).await),
        }
    }

    /// Upload a blob from a stream of chunks (never buffered whole):
    /// opens a session, then a monolithic streamed `PUT` or chunked
    /// `PATCH`es depending on [`UploadMode`].
    pub async fn upload_blob<S>(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let session = self.start_upload(repo).await?;
        self.upload_to_session(session, digest, size, body).await
    }

    /// [`Self::upload_blob`] of a blob held in memory. Its body can be sent
    /// again, so an upload the registry fails with `5xx` or `429`, or whose
    /// connection breaks, is started again in a new session (after a `HEAD`
    /// finds the blob still missing), up to the retry policy's attempts.
    pub async fn upload_blob_bytes(
        &self,
        repo: &str,
        digest: &Digest,
        data: Bytes,
    ) -> Result<(), RegistryError> {
        let size = data.len() as u64;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = futures::stream::iter([Ok::<Bytes, io::Error>(data.clone())]);
            let err = match self.upload_blob(repo, digest, size, body).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let retryable = match &err {
                RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
                RegistryError::Transfer { .. } => true,
                _ => false,
            };
            if !retryable || attempt >= self.options.retry.max_attempts {
                return Err(err);
            }
            tokio::time::sleep(self.backoff(attempt, None)).await;
            // the registry may have stored it before the answer was lost
            if let Ok(Some(_)) = self.head_blob(repo, digest).await {
                return Ok(());
            }
        }
    }

    /// [`Self::upload_blob`] from an `AsyncRead`.
    pub async fn upload_blob_reader<R: AsyncRead + Send + 'static>(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        reader: R,
    ) -> Result<(), RegistryError> {
        self.upload_blob(repo, digest, size, stream_from_reader(reader))
            .await
    }

    /// Finish an upload on an open session (e.g. a declined mount's).
    pub async fn upload_to_session<S>(
        &self,
        session: UploadSession,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        if self.uploads_chunked() {
            return self.upload_chunked(session, digest, size, body).await;
        }
        let repo = session.repository.clone();
        let what = format!("uploading blob {digest} ({size} bytes) to {repo}");
        let mut url = session.location.clone();
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let source_error: std::sync::Arc<Mutex<Option<String>>> = Default::default();
        let seen = source_error.clone();
        let body = body.map_err(move |e| {
            if let Ok(mut s) = seen.lock() {
                *s = Some(e.to_string());
            }
            e
        });
        let activity = Activity::new();
        let mut once = Some(reqwest::Body::wrap_stream(watched(body, &activity)));
        let op = Op {
            what: &what,
            scopes: vec![push_scope(&repo)],
        };
        let result = self
            .send_watched(&op, Some(&activity), || {
                once.take().map(|b| {
                    self.http
                        .put(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, size.to_string())
                        .body(b)
                })
            })
            .await;
        let source_failed = source_error.lock().ok().and_then(|s| s.clone());
        if let Some(detail) = source_failed {
            return Err(RegistryError::Source {
                registry: self.registry().to_string(),
                what,
                detail,
            });
        }
        let resp = match result {
            Err(RegistryError::Internal(_)) => {
                // The one-shot body was refused by a retryable status.
                return Err(RegistryError::Transfer {
                    registry: self.registry().to_string(),
                    what,
                    detail: "the registry failed the upload and the stream cannot be resent".into(),
                });
            }
            other => other?,
        };
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            s if self.options.upload == UploadMode::Auto
                && matches!(s.as_u16(), 405 | 413 | 501) =>
            {
                self.chunked.store(true, Ordering::Relaxed);
                let mut e = self.status_error(resp, &what).await;
                if let RegistryError::Status { detail, .. } = &mut e {
                    detail.push_str(" (monolithic uploads rejected; switching to chunked uploads)");
                }
                Err(e)
            }
            _ => Err(self.status_error(resp, &what).await),
        }
    }

    async fn upload_chunked<S>(
        &self,
        session: UploadSession,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let repo = session.repository.clone();
        let what = format!("uploading blob {digest} ({size} bytes, chunked) to {repo}");
        let chunk = self.chunk_size();
        let mut location = session.location;
        let mut offset: u64 = 0;
        let mut body = Box::pin(body);
        let mut buf = BytesMut::with_capacity(chunk.min(1 << 20));
        let mut ended = false;
        let source_err = |e: io::Error| RegistryError::Source {
            registry: self.registry().to_string(),
            what: what.clone(),
            detail: e.to_string(),
        };
        while !ended {
            while buf.len() < chunk {
                match body.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Err(source_err(e)),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            let piece: Bytes = if buf.len() > chunk {
                buf.split_to(chunk).freeze()
            } else {
                buf.split().freeze()
            };
            if piece.is_empty() {
                break;
            }
            let end = offset + piece.len() as u64 - 1;
            let op = Op {
                what: &what,
                scopes: vec![push_scope(&repo)],
            };
            let loc = location.clone();
            let activity = Activity::new();
            let resp = self
                .send_watched(&op, Some(&activity), || {
                    let body = watched(pieces(piece.clone()), &activity);
                    Some(
                        self.http
                            .patch(loc.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("Content-Range", format!("{offset}-{end}"))
                            .header(CONTENT_LENGTH, piece.len().to_string())
                            .body(reqwest::Body::wrap_stream(body)),
                    )
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.status_error(resp, &what).await);
            }
            location = self.session_from(&resp, &repo, &what)?.location;
            offset = end + 1;
            if !buf.is_empty() {
                ended = false;
            }
        }
        if offset != size {
            return Err(RegistryError::Source {
                registry: self.registry().to_string(),
                what,
                detail: format!("the source gave {offset} bytes, expected {size}"),
            });
        }
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let op = Op {
            what: &what,
            scopes: vec![push_scope(&repo)],
        };
        let resp = self
            .send(&op, || {
                Some(self.http.put(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            _ => Err(self.status_error(resp, &what).await),
        }
    }

    /// `HEAD` a manifest by tag or digest.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let what = format!("HEAD manifest {repo}:{reference}");
        let op = Op {
            what: &what,
            scopes: vec![pull_scope(repo)],
        };
        let resp = self
            .send(&op, || {
                Some(self.http.head(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => {
                let h = resp.headers();
                let digest = h
                    .get("Docker-Content-Digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| Digest::parse(v.trim()).ok());
                let digest = match digest {
                    Some(d) => d,
                    None => match Digest::parse(reference) {
                        Ok(d) => d,
                        Err(_) => {
                            // No digest header: fall back to GET and hash.
                            let (_, _, d) = self.get_manifest(repo, reference).await?;
                            d
                        }
                    },
                };
                Ok(Some(ManifestInfo {
                    digest,
                    media_type: content_type(h),
                    size: content_length(h).unwrap_or(0),
                }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(resp, &what).await),
        }
    }

    /// `GET` a manifest: exact bytes, media type, digest (verified against
    /// the reference when it is a digest, and against
    /// `Docker-Content-Digest`).
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let what = format!("GET manifest {repo}:{reference}");
        let op = Op {
            what: &what,
            scopes: vec![pull_scope(repo)],
        };
        let resp = self
            .send(&op, || {
                Some(self.http.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        let resp = self.found(resp, repo, &reference, &what).await?;
        let media_type = content_type(resp.headers());
        let header_digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let bytes = read_capped(resp, MANIFEST_CAP, self.options.timeout)
            .await
            .map_err(|e| RegistryError::Transfer {
                registry: self.registry().to_string(),
                what: what.clone(),
                detail: e.to_string(),
            })?;
        let digest = Digest::of(&bytes);
        let expected = Digest::parse(reference).ok().or(header_digest);
        if let Some(exp) = expected {
            if exp != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry().to_string(),
                    repository: repo.to_string(),
                    expected: exp,
                    actual: digest,
                });
            }
        }
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            crate::oci::parse_manifest(&bytes, None)
                .map(|(m, _)| m)
                .unwrap_or(media_type)
        } else {
            media_type
        };
        Ok((bytes, media_type, digest))
    }

    /// `PUT` a manifest, exact bytes. Returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let digest = Digest::of(bytes);
        let what = format!("PUT manifest {digest} as {repo}:{reference}");
        let body = Bytes::copy_from_slice(bytes);
        let op = Op {
            what: &what,
            scopes: vec![push_scope(repo)],
        };
        let resp = self
            .send(&op, || {
                Some(
                    self.http
                        .put(url.clone())
                        .header(CONTENT_TYPE, media_type)
                        .body(body.clone()),
                )
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, &what).await);
        }
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok())
        {
            if d != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry().to_string(),
                    repository: repo.to_string(),
                    expected: digest,
                    actual: d,
                });
            }
        }
        Ok(digest)
    }

    /// `DELETE` a manifest by digest. `Ok(false)` when it was not there.
    pub async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{digest}"))?;
        let what = format!("DELETE manifest {repo}@{digest}");
        let op = Op {
            what: &what,
            scopes: vec![format!("repository:{repo}:pull,push,delete")],
        };
        let resp = self
            .send(&op, || Some(self.http.delete(url.clone())))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(resp, &what).await),
        }
    }

    /// `GET` a blob as a stream of chunks (size from `Content-Length`).
    /// The bytes are not verified here: the registry they are uploaded to
    /// checks the digest before committing.
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<(Option<u64>, BlobStream), RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let what = format!("GET blob {digest} from {repo}");
        let op = Op {
            what: &what,
            scopes: vec![pull_scope(repo)],
        };
        let resp = self.send(&op, || Some(self.http.get(url.clone()))).await?;
        let resp = self.found(resp, repo, &digest, &what).await?;
        let len = content_length(resp.headers());
        Ok((len, idle_limited(resp, self.options.timeout)))
    }
}

/// How many attempts a request that kept failing was given (a retryable
/// status returned once the attempts ran out), for its error message.
#[derive(Debug, Clone, Copy)]
struct Attempts(u32);

/// `Retry-After`: seconds, or an HTTP date (a date past is no wait).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn content_type(h: &HeaderMap) -> String {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .unwrap_or_default()
}

fn last_part(chain: &str) -> String {
    // reqwest's chain repeats the URL; the innermost causes are the useful part.
    let parts: Vec<&str> = chain.split(": ").collect();
    let n = parts.len();
    parts[n.saturating_sub(2)..].join(": ")
}

async fn read_capped(resp: Response, cap: usize, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut s = idle_limited(resp, timeout);
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > cap {
            return Err(io::Error::other(format!("reply larger than {cap} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `: CODE: message` from an OCI error body, or a short excerpt.
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errs>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|e| format!("{} ({})", e.code, e.message))
            .collect();
        if !parts.is_empty() {
            return format!(": {}", parts.join("; "));
        }
    }
    let text: String = String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(200)
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Listing reads: the OCI 1.1 referrers API and the tag list (used by
/// [`crate::referrers`] and tag selections).
impl RegistryClient {
    /// `GET /v2/REPO/referrers/DIGEST`: the index of the manifests whose
    /// `subject` is `digest`, or `None` when the registry does not
    /// implement the API (404, 405 or 400: the tag schema fallback applies).
    pub async fn get_referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let url = self.url(&format!("v2/{repo}/referrers/{digest}"))?;
        let what = format!("GET referrers {repo}@{digest}");
        let op = Op {
            what: &what,
            scopes: vec![pull_scope(repo)],
        };
        let resp = self
            .send(&op, || {
                Some(
                    self.http
                        .get(url.clone())
                        .header(ACCEPT, media_types::OCI_INDEX),
                )
            })
            .await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST => {
                return Ok(None)
            }
            _ => return Err(self.status_error(resp, &what).await),
        }
        // a registry without the API may answer 200 with something else
        if content_type(resp.headers()) != media_types::OCI_INDEX {
            return Ok(None);
        }
        read_capped(resp, MANIFEST_CAP, self.options.timeout)
            .await
            .map(Some)
            .map_err(|e| RegistryError::Transfer {
                registry: self.registry().to_string(),
                what: what.clone(),
                detail: e.to_string(),
            })
    }

    /// Every tag of `repo` (`GET /v2/REPO/tags/list`, following the
    /// `Link: <...>; rel="next"` pages). A repository that does not exist
    /// is an error.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        self.list_tags_paged(repo, 1000).await
    }

    /// [`Self::list_tags`], asking for `page` tags per request.
    pub async fn list_tags_paged(
        &self,
        repo: &str,
        page: usize,
    ) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut next = Some(self.url(&format!("v2/{repo}/tags/list?n={}", page.max(1)))?);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let what = format!("GET tags of {repo}");
            if pages > 10_000 {
                return Err(RegistryError::Config {
                    registry: self.registry().to_string(),
                    reason: format!("{what}: more than 10000 pages"),
                });
            }
            let op = Op {
                what: &what,
                scopes: vec![pull_scope(repo)],
            };
            let resp = self.send(&op, || Some(self.http.get(url.clone()))).await?;
            let resp = self.found(resp, repo, "(tag list)", &what).await?;
            next = resp
                .headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link)
                .and_then(|l| url.join(&l).ok());
            let bytes = read_capped(resp, MANIFEST_CAP, self.options.timeout)
                .await
                .map_err(|e| RegistryError::Transfer {
                    registry: self.registry().to_string(),
                    what: what.clone(),
                    detail: e.to_string(),
                })?;
            let page: Page =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Transfer {
                    registry: self.registry().to_string(),
                    what: what.clone(),
                    detail: format!("not a tag list: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }
}

/// The target of a `Link` header's `rel="next"` part: `</v2/x/tags/list?n=2&last=b>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let t = target.trim();
        (is_next && t.starts_with('<') && t.ends_with('>')).then(|| t[1..t.len() - 1].to_string())
    })
}

/// Media types accepted for manifests (for callers building `Accept`).
pub fn manifest_media_types() -> [&'static str; 4] {
    [
        media_types::OCI_INDEX,
        media_types::OCI_MANIFEST,
        media_types::DOCKER_MANIFEST_LIST,
        media_types::DOCKER_MANIFEST,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        assert_eq!(
            next_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn error_details() {
        let b = br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#;
        assert_eq!(
            error_detail(b),
            ": DIGEST_INVALID (provided digest did not match uploaded content)"
        );
        assert_eq!(error_detail(b""), "");
        assert_eq!(error_detail(b"oops"), ": oops");
    }

    #[test]
    fn proxy_urls_are_redacted() {
        let r = redact_url("http://user:pa55@proxy.lab:3128");
        assert!(!r.contains("pa55") && !r.contains("user"), "{r}");
        let t = RegistryTarget {
            proxy: Some("http://u:topsecret@p:1".into()),
            auth: Auth::Basic {
                user: "me".into(),
                password: "hunter2".into(),
            },
            ..RegistryTarget::new(Scheme::Https, "r:1")
        };
        let d = format!("{t:?}");
        assert!(!d.contains("topsecret") && !d.contains("hunter2"), "{d}");
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_str(&later).unwrap_or_else(|e| panic!("{e}")),
        );
        let d = retry_after(&h).unwrap_or_else(|| panic!("a date"));
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("soon"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = RegistryClient::new(RegistryTarget::new(Scheme::Http, "127.0.0.1:1"));
        let Ok(c) = c else { panic!("client") };
        let d1 = c.backoff(1, None);
        let d4 = c.backoff(4, None);
        assert!(d1 <= Duration::from_millis(200) && d1 >= Duration::from_millis(100));
        assert!(d4 >= Duration::from_millis(800) && d4 <= Duration::from_millis(1600));
        assert_eq!(
            c.backoff(30, Some(Duration::from_secs(999))),
            Duration::from_secs(10)
        );
        assert!(c.backoff(30, None) <= Duration::from_secs(10));
    }
}
