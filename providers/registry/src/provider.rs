//! The `image` provider: one resource instance per image of an image set,
//! `image.SET["gcr.io/a/b:t"]`, implementing the engine's provider contract.
//!
//! The instance's attributes are built from an [`ImageSpec`] by
//! [`ImageSpec::to_desired`] and read back by [`ImageSpec::from_attrs`]: the
//! binary that expands the configuration and this provider share that one
//! contract and nothing else.
//!
//! Images of one bundle are pushed together: the first `apply` of an image
//! of bundle B streams B once and pushes every image of B that the plan
//! wants (see [`ImageProvider::prepare`]); the other images' `apply` calls
//! wait for that one pass and report their own outcome.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mirrorplan_engine::{
    human_bytes, observed_matches, Action, Address, Adoption, ApplyContext, Attrs, DesiredInstance,
    NewInstanceState, Observed, PlannedChange, PriorInstance, Provider, ProviderError,
    ResourceChange, SENSITIVE_MASK,
};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use crate::bundle::{Bundle, Catalogue, CatalogueOptions};
use crate::store::OciStore;

/// The provider kind.
pub const KIND: &str = "image";

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A bundle file.
    Bundle(PathBuf),
    /// An upstream registry.
    Registry,
}

/// How to reach a registry (mirror or upstream).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryConn {
    /// `https://host:port`, `http://host:port` or `oci:/path`.
    pub endpoint: String,
    /// CA certificate file (PEM).
    pub ca_cert: Option<String>,
    /// User for basic auth.
    pub username: Option<String>,
    /// Password (secret).
    pub password: Option<String>,
    /// Docker config.json with credentials.
    pub docker_config: Option<String>,
    /// `credentials_from = "none"`: without `username`/`password` or
    /// `docker_config`, anonymous rather than the credential files of
    /// docker, podman and skopeo.
    pub no_environment_credentials: bool,
    /// Skip TLS verification.
    pub insecure: bool,
    /// Proxy URL. A password in it (`http://user:PASS@proxy:3128`) is never
    /// shown nor stored in clear: see [`RegistryConn::shown_proxy`].
    pub proxy: Option<String>,
    /// The whole proxy URL derives from a sensitive value: it is shown as
    /// `(sensitive value)`.
    pub proxy_sensitive: bool,
}

impl std::fmt::Debug for RegistryConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConn")
            .field("endpoint", &self.endpoint)
            .field("ca_cert", &self.ca_cert)
            .field("username", &self.username)
            .field(
                "password",
                &self.password.as_ref().map(|_| "(sensitive value)"),
            )
            .field("docker_config", &self.docker_config)
            .field(
                "no_environment_credentials",
                &self.no_environment_credentials,
            )
            .field("insecure", &self.insecure)
            .field("proxy", &self.shown_proxy())
            .finish()
    }
}

impl RegistryConn {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "endpoint": self.endpoint,
            "ca_cert": self.ca_cert,
            "username": self.username,
            "docker_config": self.docker_config,
            "insecure": self.insecure,
            "proxy": self.shown_proxy(),
        });
        // only when set, so that existing states read the same
        if self.no_environment_credentials {
            v["credentials_from"] = json!("none");
        }
        v
    }

    /// The proxy URL as plans, the state and plan files show it:
    /// `(sensitive value)` when it derives from a sensitive value, else with
    /// the password of its `user:password@` part masked.
    pub fn shown_proxy(&self) -> Option<String> {
        let p = self.proxy.as_deref()?;
        Some(if self.proxy_sensitive {
            SENSITIVE_MASK.to_string()
        } else {
            masked_proxy(p).unwrap_or_else(|| p.to_string())
        })
    }

    /// The proxy URL when it must be a sensitive attribute (it holds a
    /// password or derives from a sensitive value): its salted digest in
    /// the state and plan files makes a new password a change.
    fn secret_proxy(&self) -> Option<String> {
        let p = self.proxy.as_deref()?;
        (self.proxy_sensitive || masked_proxy(p).is_some()).then(|| p.to_string())
    }

    /// `proxy` is the sensitive attribute [`RegistryConn::secret_proxy`] wrote, if any.
    fn from_json(
        v: Option<&Value>,
        password: Option<&Value>,
        proxy: Option<&Value>,
    ) -> Option<RegistryConn> {
        let v = v?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let shown = s("proxy");
        let proxy_sensitive = shown.as_deref() == Some(SENSITIVE_MASK);
        // read from the state, the attribute is the value's digest: connect
        // through the proxy without its password rather than with the digest
        let secret = proxy
            .and_then(Value::as_str)
            .filter(|p| !is_secret_digest(p))
            .map(str::to_string);
        let public = shown
            .filter(|_| !proxy_sensitive)
            .map(|p| p.replace(&format!(":{SENSITIVE_MASK}@"), "@"));
        Some(RegistryConn {
            endpoint: s("endpoint")?,
            ca_cert: s("ca_cert"),
            username: s("username"),
            password: password.and_then(Value::as_str).map(str::to_string),
            docker_config: s("docker_config"),
            no_environment_credentials: s("credentials_from").as_deref() == Some("none"),
            insecure: v.get("insecure").and_then(Value::as_bool).unwrap_or(false),
            proxy: secret.or(public),
            proxy_sensitive,
        })
    }

    /// The `oci:` store directory, when this is a local store.
    pub fn oci_path(&self) -> Option<PathBuf> {
        self.endpoint.strip_prefix("oci:").map(PathBuf::from)
    }
}

/// Everything the provider needs to know about one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    /// Full upstream reference, e.g. `gcr.io/a/b:1.0` (the instance key).
    pub upstream: String,
    /// Where the image comes from.
    pub source: ImageSource,
    /// The upstream registry's connection when a `registry` block matches its host.
    pub upstream_conn: Option<RegistryConn>,
    /// The mirror.
    pub mirror: RegistryConn,
    /// Repository on the mirror (namespace included), e.g. `test-namespace/a/b`.
    pub repository: String,
    /// Tag on the mirror (None for digest-only references).
    pub tag: Option<String>,
    /// The manifest digest the mirror must serve.
    pub digest: String,
    /// Platforms kept (empty = all).
    pub platforms: Vec<String>,
    /// Whether a platform filter rewrote the index (digest differs from the source's).
    pub filtered: bool,
    /// Delete the tag from the mirror on destroy.
    pub prune: bool,
    /// Number of blobs.
    pub blobs: u64,
    /// Total blob bytes.
    pub bytes: u64,
    /// With `referrers = true`: the artifacts referring to the image and
    /// its platform manifests, copied after it (`None`: not asked for; the
    /// attribute is then absent).
    pub referrers: Option<Vec<crate::referrers::Referrer>>,
}

fn bad(msg: impl Into<String>) -> ProviderError {
    ProviderError::invalid_input(msg)
}

impl ImageSpec {
    /// The desired instance for `address`.
    pub fn to_desired(&self, address: Address) -> DesiredInstance {
        let mut attrs = Attrs::new()
            .with("upstream", self.upstream.clone())
            .with(
                "source",
                match &self.source {
                    ImageSource::Bundle(p) => format!("bundle:{}", p.display()),
                    ImageSource::Registry => "registry".to_string(),
                },
            )
            .with("mirror", self.mirror.to_json())
            .with("repository", self.repository.clone())
            .with("tag", json!(self.tag))
            .with("digest", self.digest.clone())
            .with("platforms", json!(self.platforms))
            .with("filtered", self.filtered)
            .with("prune", self.prune)
            .with("blobs", self.blobs)
            .with("bytes", self.bytes);
        if let Some(r) = &self.referrers {
            attrs.insert("referrers", json!(r));
        }
        if let Some(u) = &self.upstream_conn {
            attrs.insert("upstream_registry", u.to_json());
            if let Some(p) = &u.password {
                attrs.insert_sensitive("upstream_password", p.clone());
            }
            if let Some(p) = u.secret_proxy() {
                attrs.insert_sensitive("upstream_proxy", p);
            }
        }
        if let Some(p) = &self.mirror.password {
            attrs.insert_sensitive("password", p.clone());
        }
        if let Some(p) = self.mirror.secret_proxy() {
            attrs.insert_sensitive("proxy", p);
        }
        DesiredInstance::new(address, KIND, attrs)
    }

    /// Reads a spec back from attributes (desired, or a plan's `after`).
    pub fn from_attrs(attrs: &Attrs) -> Result<ImageSpec, ProviderError> {
        let s = |k: &str| attrs.get(k).and_then(Value::as_str).map(str::to_string);
        let u = |k: &str| attrs.get(k).and_then(Value::as_u64).unwrap_or(0);
        let source = match s("source").as_deref() {
            Some("registry") => ImageSource::Registry,
            Some(b) if b.starts_with("bundle:") => {
                ImageSource::Bundle(PathBuf::from(&b["bundle:".len()..]))
            }
            _ => return Err(bad("image instance without a valid `source`")),
        };
        let mirror = RegistryConn::from_json(
            attrs.get("mirror"),
            attrs.get("password"),
            attrs.get("proxy"),
        )
        .ok_or_else(|| bad("image instance without a `mirror`"))?;
        Ok(ImageSpec {
            upstream: s("upstream").ok_or_else(|| bad("image instance without `upstream`"))?,
            source,
            upstream_conn: RegistryConn::from_json(
                attrs.get("upstream_registry"),
                attrs.get("upstream_password"),
                attrs.get("upstream_proxy"),
            ),
            mirror,
            repository: s("repository")
                .ok_or_else(|| bad("image instance without `repository`"))?,
            tag: s("tag"),
            digest: s("digest").ok_or_else(|| bad("image instance without `digest`"))?,
            platforms: attrs
                .get("platforms")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            filtered: attrs
                .get("filtered")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            prune: attrs.get("prune").and_then(Value::as_bool).unwrap_or(false),
            blobs: u("blobs"),
            bytes: u("bytes"),
            referrers: match attrs.get("referrers") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    serde_json::from_value(v.clone())
                        .map_err(|e| bad(format!("image instance with bad `referrers`: {e}")))?,
                ),
            },
        })
    }
}

/// A proxy URL with a password, `[SCHEME://]USER:PASSWORD@HOST...`, with
/// the password masked; `None` when it has no password. The user part runs
/// to the last `@`, so that an unencoded `@` or `/` in a password is masked
/// too.
fn masked_proxy(url: &str) -> Option<String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let (userinfo, host) = rest.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}{user}:{SENSITIVE_MASK}@{host}"))
}

/// True for the salted digest the state keeps in place of a sensitive value.
fn is_secret_digest(v: &str) -> bool {
    v.strip_prefix("blake3:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

type CatalogueKey = (PathBuf, Vec<String>);

static CATALOGUES: Mutex<Option<HashMap<CatalogueKey, Arc<Catalogue>>>> = Mutex::new(None);

/// Reads (once per process) the catalogue of a bundle for a platform filter.
pub fn bundle_catalogue(
    path: &Path,
    platforms: &[String],
) -> Result<Arc<Catalogue>, ProviderError> {
    let key = (path.to_path_buf(), platforms.to_vec());
    if let Ok(guard) = CATALOGUES.lock() {
        if let Some(c) = guard.as_ref().and_then(|m| m.get(&key)) {
            return Ok(c.clone());
        }
    }
    let bundle = Bundle::open(path).map_err(|e| {
        ProviderError::invalid_input(format!("bundle {}: {e}", path.display())).with_help(
            "check that the bundle file exists and is a .tar, .tar.gz, .tar.xz or .tar.zst",
        )
    })?;
    let options = CatalogueOptions {
        platforms: platforms
            .iter()
            .filter_map(|p| crate::reference::Platform::parse(p).ok())
            .collect(),
    };
    let cat = bundle.catalogue_with(&options).map_err(|e| {
        // most bundle errors name the bundle already
        let msg = e.to_string();
        ProviderError::invalid_input(if msg.starts_with("bundle ") {
            msg
        } else {
            format!("bundle {}: {msg}", path.display())
        })
    })?;
    let cat = Arc::new(cat);
    if let Ok(mut guard) = CATALOGUES.lock() {
        guard
            .get_or_insert_with(HashMap::new)
            .insert(key, cat.clone());
    }
    Ok(cat)
}

/// What planning needs of a bundle's images, from the on-disk cache in
/// `cache_dir` when the bundle is unchanged since it was recorded (see
/// [`crate::summary`]), else from its catalogue.
pub fn bundle_summary(
    path: &Path,
    platforms: &[String],
    cache_dir: Option<&Path>,
) -> Result<crate::summary::BundleSummary, ProviderError> {
    crate::summary::bundle_summary(path, platforms, cache_dir, || {
        bundle_catalogue(path, platforms).map(|c| crate::summary::BundleSummary::of(&c))
    })
}

/// Splits `https://host:port` into a scheme and `host:port`.
fn scheme_host(endpoint: &str) -> Option<(crate::client::Scheme, String)> {
    if let Some(h) = endpoint.strip_prefix("https://") {
        Some((
            crate::client::Scheme::Https,
            h.trim_end_matches('/').to_string(),
        ))
    } else {
        endpoint.strip_prefix("http://").map(|h| {
            (
                crate::client::Scheme::Http,
                h.trim_end_matches('/').to_string(),
            )
        })
    }
}

/// The client settings for a registry connection. Credentials: the
/// password when given, else the named Docker config, else (unless
/// `credentials_from = "none"`) the credential files of docker, podman and
/// skopeo
/// ([`crate::auth::credential_files`]), else anonymous.
pub fn target_for(conn: &RegistryConn) -> Result<crate::client::RegistryTarget, ProviderError> {
    let (scheme, host_port) = scheme_host(&conn.endpoint).ok_or_else(|| {
        ProviderError::invalid_input(format!(
            "`{}` is not an http(s) registry endpoint",
            conn.endpoint
        ))
    })?;
    // Docker Hub's API lives on another host than its image names
    let host_port = if host_port == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        host_port
    };
    let mut t = crate::client::RegistryTarget::new(scheme, host_port.clone());
    t.insecure = conn.insecure;
    t.proxy = conn.proxy.clone();
    if let Some(ca) = &conn.ca_cert {
        let pem = std::fs::read(ca).map_err(|e| {
            ProviderError::invalid_input(format!(
                "registry {host_port}: cannot read ca_cert {ca}: {e}"
            ))
            .with_help(
                "ca_cert must name the PEM file of the CA that signed the registry's certificate",
            )
        })?;
        t.ca_cert_pem = Some(pem);
    }
    t.auth = match (&conn.username, &conn.password, &conn.docker_config) {
        (Some(user), Some(pw), _) => crate::auth::Auth::Basic {
            user: user.clone(),
            password: crate::auth::Secret::from(pw.as_str()),
        },
        (_, _, Some(cfg)) => crate::auth::Auth::DockerConfig(PathBuf::from(cfg)),
        _ if conn.no_environment_credentials => crate::auth::Auth::None,
        _ => crate::auth::Auth::Environment,
    };
    Ok(t)
}

fn registry_error(what: &str, e: crate::client_error::RegistryError) -> ProviderError {
    registry_error_ref(what, &e)
}

fn registry_error_ref(what: &str, e: &crate::client_error::RegistryError) -> ProviderError {
    let help = miette::Diagnostic::help(e).map(|h| h.to_string());
    let unreachable = matches!(e, crate::client_error::RegistryError::Timeout { .. })
        || (e.is_fatal() && e.to_string().to_lowercase().contains("connect"));
    let mut err = if unreachable {
        ProviderError::unreachable(format!("{what}: {e}"))
    } else {
        ProviderError::failed(format!("{what}: {e}"))
    };
    if let Some(h) = help {
        err = err.with_help(h);
    }
    err
}

/// The outcome of one bundle pass: per image name, the digest pushed or why not.
type BatchResult = Result<HashMap<String, Result<String, String>>, String>;

/// One shared pass over a bundle, for one mirror.
type Batch = Arc<OnceCell<BatchResult>>;

/// What one bundle pass is for: (bundle, mirror endpoint, namespace,
/// platforms kept). The pass pushes with its first image's namespace and
/// platform filter, so image sets that share a bundle and an endpoint but
/// differ in either get a pass each.
type PassKey = (PathBuf, String, Option<String>, Vec<String>);

/// The pass that pushes `spec` from `bundle`.
fn pass_key(bundle: &Path, spec: &ImageSpec) -> PassKey {
    (
        bundle.to_path_buf(),
        spec.mirror.endpoint.clone(),
        namespace_of(spec),
        spec.platforms.clone(),
    )
}

/// [`crate::limits::RegistryLimits`] and their limiter, by endpoint.
type RegistryLimitsByEndpoint = HashMap<
    String,
    (
        crate::limits::RegistryLimits,
        Option<Arc<crate::limits::Limiter>>,
    ),
>;

/// Pushes images into mirrors.
#[derive(Default)]
pub struct ImageProvider {
    clients: Mutex<HashMap<String, Arc<crate::client::RegistryClient>>>,
    wanted: Mutex<HashMap<PassKey, HashSet<String>>>,
    batches: Mutex<HashMap<PassKey, Batch>>,
    store_tags: Mutex<HashMap<PathBuf, (IndexStamp, StoreTags)>>,
    /// The configuration's mirror connections by endpoint, with their
    /// secrets: an instance known only from the state holds a digest of
    /// its password, never the password (see [`ImageProvider::remember_connections`]).
    conns: Mutex<HashMap<String, RegistryConn>>,
    /// The address of each image the plan pushes, by (pass, upstream
    /// name): a bundle pass reports each image's progress under its own
    /// address.
    addresses: Mutex<HashMap<BatchImage, Address>>,
    /// What refresh learned about the blobs of the images that will be
    /// pushed, per bundle pass.
    survey: Mutex<HashMap<PassKey, SurveyBatch>>,
    /// Catalogues and their name index are read one at a time: the other
    /// refreshes of the same bundle then find them cached.
    catalogue_gate: tokio::sync::Mutex<HashMap<IndexKey, Arc<CatIndex>>>,
    /// Bounds the blob `HEAD`s of a refresh.
    blob_heads: HeadLimit,
    /// One blob `HEAD` per (endpoint, repository, blob): see [`ImageProvider::blob_here`].
    blob_lookups: Mutex<HashMap<(String, String, String), BlobLookup>>,
    /// What refresh's manifest `HEAD`s found, per (endpoint, repository,
    /// tag or digest): the digest there, `None` when missing. The push of
    /// the same run reuses what is not the expected digest.
    tags_seen: Mutex<HashMap<(String, String, String), Option<crate::digest::Digest>>>,
    /// Inactivity timeouts by endpoint (a registry block's `timeout`), set
    /// before the first client is made: see [`ImageProvider::set_timeout`].
    timeouts: Mutex<HashMap<String, std::time::Duration>>,
    /// Request limits by endpoint (a registry block's `max_concurrency`,
    /// `rate_limit`, `retry`), with the one limiter every client of that
    /// registry shares: see [`ImageProvider::set_limits`].
    limits: Mutex<RegistryLimitsByEndpoint>,
    /// Images whose replacement was asked for (`-replace`), by pass:
    /// every blob is uploaded again and the manifests put again, even
    /// what the mirror already has.
    forced: Mutex<HashMap<PassKey, HashSet<String>>>,
    /// The copies from an upstream registry the plan will make, per
    /// (upstream, mirror) connection: one pass copies them all.
    copies_wanted: Mutex<HashMap<CopyKey, Vec<(String, crate::copy::CopyRequest)>>>,
    /// One shared copy pass per (upstream, mirror) connection.
    copy_batches: Mutex<HashMap<CopyKey, CopyBatch>>,
    /// Transfers and requests in flight in a copy pass (`--parallelism`;
    /// see [`ImageProvider::set_parallelism`]).
    parallelism: Mutex<Option<usize>>,
}

/// (upstream connection, mirror connection), as [`client_key`] names them.
type CopyKey = (String, String);

/// The outcome of one copy pass: per image ([`copy_item`]), the digest now
/// on the mirror or why not.
type CopyBatchResult = HashMap<String, Result<String, ProviderError>>;

/// One shared copy pass.
type CopyBatch = Arc<OnceCell<CopyBatchResult>>;

/// Copy passes without `--parallelism`: transfers and requests in flight.
const COPY_PARALLELISM: usize = 10;

/// Names one registry connection: clients and copy passes are shared per
/// (endpoint, user, docker config).
fn client_key(conn: &RegistryConn) -> String {
    format!(
        "{}|{:?}|{:?}",
        conn.endpoint, conn.username, conn.docker_config
    )
}

/// Names one image of a copy pass.
fn copy_item(spec: &ImageSpec) -> String {
    format!("{}|{}|{:?}", spec.upstream, spec.repository, spec.tag)
}

/// What a copy pass needs of `spec` (an image from an upstream registry).
fn copy_request(spec: &ImageSpec, force: bool) -> Result<crate::copy::CopyRequest, ProviderError> {
    let source = crate::reference::ImageRef::parse(&spec.upstream)
        .map_err(|e| ProviderError::invalid_input(format!("{}: {e}", spec.upstream)))?;
    Ok(crate::copy::CopyRequest {
        source,
        repository: spec.repository.clone(),
        tag: spec.tag.clone(),
        platforms: spec
            .platforms
            .iter()
            .filter_map(|p| crate::reference::Platform::parse(p).ok())
            .collect(),
        force,
    })
}

/// A bundle's catalogue as the blob survey needs it, for one namespace.
struct CatIndex {
    /// Image name → catalogue index.
    names: HashMap<String, usize>,
    /// Blob → the mirror repositories of the images holding it, in
    /// catalogue order, at most [`crate::plan::MOUNT_SOURCES`] + 1.
    holders: HashMap<String, Vec<String>>,
}

impl CatIndex {
    fn of(cat: &Catalogue, namespace: Option<&str>) -> CatIndex {
        let mut holders: HashMap<String, Vec<String>> = HashMap::new();
        for image in &cat.images {
            let repo = image.mirror_ref(namespace).repository;
            for b in &image.blobs {
                let h = holders.entry(b.digest.to_string()).or_default();
                if h.len() <= crate::plan::MOUNT_SOURCES && !h.contains(&repo) {
                    h.push(repo.clone());
                }
            }
        }
        CatIndex {
            names: cat
                .images
                .iter()
                .enumerate()
                .map(|(i, e)| (e.name.clone(), i))
                .collect(),
            holders,
        }
    }
}

/// The answer of one blob `HEAD`, shared by everyone who asks.
type BlobLookup = Arc<OnceCell<Option<bool>>>;

/// (bundle and platform filter, namespace).
type IndexKey = (CatalogueKey, Option<String>);

/// (bundle pass, upstream name).
type BatchImage = (PassKey, String);

/// (repository, tag or digest) → the manifest digest found there (`None`: missing).
type KnownTags = HashMap<(String, String), Option<crate::digest::Digest>>;

/// Blob `HEAD`s in flight during a refresh, over all images.
const BLOB_HEADS: usize = 16;

struct HeadLimit(tokio::sync::Semaphore);

impl Default for HeadLimit {
    fn default() -> Self {
        HeadLimit(tokio::sync::Semaphore::new(BLOB_HEADS))
    }
}

/// One image that refresh found missing or moved, with its blobs.
struct SurveyImage {
    /// Its index in the bundle's catalogue (the push's order).
    index: usize,
    /// Its repository on the mirror (`""` for an `oci:` store, whose blobs
    /// are shared by every repository).
    repo: String,
    /// Its config and layer blobs: digest and size.
    blobs: Vec<(String, u64)>,
}

/// The blob survey of one bundle pass: enough to say, for each image, which
/// blobs the push will upload, mount or find present, with the push's rules
/// (each blob uploaded once per pass, into the repository of the first
/// image that needs it; the other repositories mount it).
#[derive(Default)]
struct SurveyBatch {
    images: HashMap<String, SurveyImage>,
    /// (repository, digest) → whether the mirror has the blob there.
    present: HashMap<(String, String), bool>,
    /// Digest → the first image (catalogue index) that needs it.
    first: HashMap<String, usize>,
    /// (repository, digest) → the first image of that repository that needs it.
    first_in_repo: HashMap<(String, String), usize>,
    /// Digests that some surveyed repository already has.
    somewhere: HashSet<String>,
}

/// An image's blobs by how the push gets them into its repository.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct BlobSplit {
    upload: (u64, u64),
    mount: (u64, u64),
    /// Brought by an earlier image of the same repository (or store).
    shared: (u64, u64),
    present: (u64, u64),
}

impl SurveyBatch {
    fn split(&self, upstream: &str) -> Option<BlobSplit> {
        let img = self.images.get(upstream)?;
        let mut out = BlobSplit::default();
        for (d, size) in &img.blobs {
            let key = (img.repo.clone(), d.clone());
            let slot = if self.present.get(&key).copied().unwrap_or(false) {
                &mut out.present
            } else if self.first_in_repo.get(&key).is_some_and(|i| *i < img.index) {
                &mut out.shared
            } else if self.somewhere.contains(d) || self.first.get(d) != Some(&img.index) {
                &mut out.mount
            } else {
                &mut out.upload
            };
            slot.0 += 1;
            slot.1 += size;
        }
        Some(out)
    }

    fn record(&mut self, upstream: String, img: SurveyImage, present: Vec<bool>) {
        for ((d, _), here) in img.blobs.iter().zip(present) {
            let key = (img.repo.clone(), d.clone());
            self.present.insert(key.clone(), here);
            if here {
                self.somewhere.insert(d.clone());
            }
            let f = self.first.entry(d.clone()).or_insert(img.index);
            *f = (*f).min(img.index);
            let f = self.first_in_repo.entry(key).or_insert(img.index);
            *f = (*f).min(img.index);
        }
        self.images.insert(upstream, img);
    }
}

impl BlobSplit {
    /// `blobs: 3 to upload (24.0 MiB), 2 to mount from other repositories (48.0 MiB), 1 already present`
    fn line(&self) -> String {
        let mut parts = Vec::new();
        if self.upload.0 > 0 || (self.mount.0 + self.shared.0 + self.present.0 == 0) {
            parts.push(format!(
                "{} to upload ({})",
                self.upload.0,
                human_bytes(self.upload.1)
            ));
        }
        if self.mount.0 > 0 {
            parts.push(format!(
                "{} to mount from other repositories ({})",
                self.mount.0,
                human_bytes(self.mount.1)
            ));
        }
        if self.shared.0 > 0 {
            parts.push(format!(
                "{} pushed with another image of this run",
                self.shared.0
            ));
        }
        if self.present.0 > 0 {
            parts.push(format!("{} already present", self.present.0));
        }
        format!("blobs: {}", parts.join(", "))
    }
}

/// `REPO:TAG` → manifest digest, for every tag of an `oci:` store.
type StoreTags = Arc<HashMap<String, String>>;

/// Identifies one version of a store's `index.json` (rewritten by rename,
/// so a new version has a new inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexStamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl ImageProvider {
    /// A provider with nothing prepared.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tags of the `oci:` store at `path` (`None` when there is no store
    /// yet). The index is read once and kept while `index.json` is
    /// unchanged, so refreshing 10,000 images reads it once, not 10,000
    /// times.
    fn store_tags(&self, path: &Path) -> Result<Option<StoreTags>, ProviderError> {
        use std::os::unix::fs::MetadataExt;
        if !path.join("oci-layout").is_file() {
            return Ok(None);
        }
        let failed = |e: &dyn std::fmt::Display| {
            ProviderError::failed(format!("oci store {}: {e}", path.display()))
        };
        let stamp_now = || {
            std::fs::metadata(path.join("index.json"))
                .map(|m| IndexStamp {
                    inode: m.ino(),
                    len: m.len(),
                    modified: m.modified().ok(),
                })
                .ok()
        };
        let before = stamp_now();
        if let (Some(stamp), Ok(cache)) = (&before, self.store_tags.lock()) {
            if let Some((s, tags)) = cache.get(path) {
                if s == stamp {
                    return Ok(Some(tags.clone()));
                }
            }
        }
        let store = OciStore::open_or_create(path).map_err(|e| failed(&e))?;
        let tags: HashMap<String, String> = store
            .ref_names()
            .map_err(|e| failed(&e))?
            .into_iter()
            .map(|(name, digest)| (name, digest.to_string()))
            .collect();
        let tags = Arc::new(tags);
        // cache only what was read from an index that did not move meanwhile
        if let (Some(stamp), true) = (&before, before == stamp_now()) {
            if let Ok(mut cache) = self.store_tags.lock() {
                cache.insert(path.to_path_buf(), (stamp.clone(), tags.clone()));
            }
        }
        Ok(Some(tags))
    }

    /// Learns the configuration's mirror connections (with their secrets)
    /// from the desired instances, so that an image known only from the
    /// state (destroyed, or removed from the configuration) is read and
    /// deleted with the configuration's credentials and CA: the state holds
    /// only a digest of the password.
    pub fn remember_connections(&self, desired: &[DesiredInstance]) {
        let Ok(mut conns) = self.conns.lock() else {
            return;
        };
        for d in desired.iter().filter(|d| d.provider == KIND) {
            let endpoint = d
                .attrs
                .get("mirror")
                .and_then(|m| m.get("endpoint"))
                .and_then(Value::as_str);
            if endpoint.is_none_or(|e| conns.contains_key(e)) {
                continue;
            }
            if let Ok(spec) = ImageSpec::from_attrs(&d.attrs) {
                conns.insert(spec.mirror.endpoint.clone(), spec.mirror);
            }
        }
    }

    /// `conn` came from the state: its `password` is a digest. Use the
    /// configuration's connection to the same endpoint, or no password.
    fn config_conn(&self, conn: &mut RegistryConn) {
        let known = self
            .conns
            .lock()
            .ok()
            .and_then(|c| c.get(&conn.endpoint).cloned());
        match known {
            Some(c) => *conn = c,
            None => conn.password = None,
        }
    }

    /// The inactivity timeout of the clients for `endpoint` (default
    /// [`crate::client::DEFAULT_TIMEOUT`]). It is not an attribute of the
    /// instances: changing it plans no change.
    pub fn set_timeout(&self, endpoint: &str, timeout: std::time::Duration) {
        if let Ok(mut t) = self.timeouts.lock() {
            t.insert(endpoint.to_string(), timeout);
        }
    }

    /// The request limits of the registry at `endpoint` (the mirror, or an
    /// upstream that copies read), set before the first client is made.
    /// They are not attributes of the instances: changing them plans no
    /// change.
    pub fn set_limits(&self, endpoint: &str, limits: crate::limits::RegistryLimits) {
        if let Ok(mut l) = self.limits.lock() {
            let limiter = crate::limits::Limiter::for_limits(&limits);
            l.insert(endpoint.to_string(), (limits, limiter));
        }
    }

    /// One client per registry connection, shared by every image (connection reuse).
    pub fn client(
        &self,
        conn: &RegistryConn,
    ) -> Result<Arc<crate::client::RegistryClient>, ProviderError> {
        let key = client_key(conn);
        if let Ok(clients) = self.clients.lock() {
            if let Some(c) = clients.get(&key) {
                return Ok(c.clone());
            }
        }
        let target = target_for(conn)?;
        let mut options = crate::client::ClientOptions::default();
        if let Some(t) = self
            .timeouts
            .lock()
            .ok()
            .and_then(|t| t.get(&conn.endpoint).copied())
        {
            options.timeout = t;
        }
        if let Some((limits, limiter)) = self
            .limits
            .lock()
            .ok()
            .and_then(|l| l.get(&conn.endpoint).cloned())
        {
            if let Some(n) = limits.retry_attempts {
                options.retry.max_attempts = n.max(1);
            }
            if let Some(d) = limits.retry_max_delay {
                options.retry.max_delay = d;
                options.retry.base_delay = options.retry.base_delay.min(d);
            }
            options.limiter = limiter;
        }
        let client = crate::client::RegistryClient::with_options(target, options)
            .map_err(|e| registry_error(&format!("registry {}", conn.endpoint), e))?;
        let client = Arc::new(client);
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(key, client.clone());
        }
        Ok(client)
    }

    /// The digest the mirror will serve for an upstream image (one GET of
    /// its manifest), with the platform filter applied.
    pub async fn resolve_upstream(
        &self,
        upstream: &crate::reference::ImageRef,
        conn: &RegistryConn,
        platforms: &[String],
    ) -> Result<crate::copy::ResolvedSource, ProviderError> {
        let client = self.client(conn)?;
        let platforms: Vec<crate::reference::Platform> = platforms
            .iter()
            .filter_map(|p| crate::reference::Platform::parse(p).ok())
            .collect();
        crate::copy::resolve_source(&client, upstream, &platforms)
            .await
            .map_err(|e| registry_error(&format!("reading {upstream} from its registry"), e))
    }

    /// Every tag of an upstream repository (`GET /v2/NAME/tags/list`, all
    /// pages), for a tag selection.
    pub async fn list_tags(
        &self,
        conn: &RegistryConn,
        repository: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let client = self.client(conn)?;
        client.list_tags(repository).await.map_err(|e| {
            registry_error(
                &format!("listing the tags of {repository} in {}", conn.endpoint),
                e,
            )
        })
    }

    /// The referrers of an upstream image (see [`crate::referrers::discover`]):
    /// of its manifest unless a platform filter rewrote it, and of each
    /// platform manifest kept.
    pub async fn resolve_referrers(
        &self,
        upstream: &crate::reference::ImageRef,
        conn: &RegistryConn,
        resolved: &crate::copy::ResolvedSource,
    ) -> Result<Vec<crate::referrers::Referrer>, ProviderError> {
        let client = self.client(conn)?;
        let mut subjects = Vec::new();
        if !resolved.filtered {
            subjects.push(resolved.source_digest.clone());
        }
        subjects.extend(resolved.platform_manifests.iter().cloned());
        crate::referrers::discover(&client, &upstream.repository, &subjects)
            .await
            .map_err(|e| registry_error(&format!("listing the referrers of {upstream}"), e))
    }

    /// Transfers and requests in flight in a copy pass (`--parallelism`).
    pub fn set_parallelism(&self, n: usize) {
        if let Ok(mut p) = self.parallelism.lock() {
            *p = Some(n.max(1));
        }
    }

    async fn copy_from_registry(
        &self,
        spec: &ImageSpec,
        force: bool,
        ctx: &ApplyContext,
    ) -> Result<String, ProviderError> {
        let src_conn = spec.upstream_conn.clone().ok_or_else(|| {
            ProviderError::invalid_input(format!(
                "{}: no upstream registry connection",
                spec.upstream
            ))
        })?;
        if spec.mirror.oci_path().is_some() {
            return Err(ProviderError::failed(format!(
                "{}: copying from a registry into an oci: store is not supported",
                spec.upstream
            ))
            .with_help("push to an https:// or http:// registry, or put the image in a bundle"));
        }
        let request = copy_request(spec, force)?;
        let item = copy_item(spec);
        let key: CopyKey = (client_key(&src_conn), client_key(&spec.mirror));
        ctx.message(format!(
            "copying {} from {}",
            spec.upstream, src_conn.endpoint
        ));
        let cell = {
            let mut batches = self
                .copy_batches
                .lock()
                .map_err(|_| ProviderError::failed("internal lock poisoned"))?;
            batches.entry(key.clone()).or_default().clone()
        };
        let result = cell
            .get_or_init(|| async {
                // only the first image of the pass gets here: it copies every
                // image the plan wants from this upstream into this mirror
                let mut wanted = self
                    .copies_wanted
                    .lock()
                    .ok()
                    .and_then(|w| w.get(&key).cloned())
                    .unwrap_or_default();
                if !wanted.iter().any(|(i, _)| *i == item) {
                    wanted.push((item.clone(), request.clone()));
                }
                self.copy_pass(spec, &src_conn, wanted).await
            })
            .await;
        let upstream = request.source.clone();
        let digest = match result.get(&item) {
            Some(r) => r.clone(),
            // not known when the pass started (no plan told the provider):
            // a pass of its own
            None => self
                .copy_pass(spec, &src_conn, vec![(item.clone(), request)])
                .await
                .remove(&item)
                .unwrap_or_else(|| Err(ProviderError::failed("the copy reported nothing"))),
        }?;
        // the subject is on the mirror: now what refers to it
        if let Some(referrers) = spec.referrers.clone().filter(|r| !r.is_empty()) {
            self.copy_referrers_of(spec, &src_conn, upstream, referrers, force)
                .await?;
        }
        Ok(digest)
    }

    /// Copies the referrers of `upstream` (see
    /// [`crate::referrers::copy_referrers`]) into `spec`'s repository on the
    /// mirror, after their subject.
    async fn copy_referrers_of(
        &self,
        spec: &ImageSpec,
        src_conn: &RegistryConn,
        upstream: crate::reference::ImageRef,
        referrers: Vec<crate::referrers::Referrer>,
        force: bool,
    ) -> Result<(), ProviderError> {
        let src = self.client(src_conn)?;
        let dst = self.client(&spec.mirror)?;
        let repo = spec.repository.clone();
        let what = format!(
            "copying the referrers of {} to {}",
            spec.upstream, spec.mirror.endpoint
        );
        // like the copy pass: the copy future is not Send
        let handle = tokio::runtime::Handle::current();
        let joined = tokio::task::spawn_blocking(move || {
            handle.block_on(crate::referrers::copy_referrers(
                &src, &upstream, &dst, &repo, &referrers, force,
            ))
        })
        .await
        .map_err(|e| ProviderError::failed(format!("copy task failed: {e}")))?;
        joined.map(|_| ()).map_err(|e| registry_error(&what, e))
    }

    /// Copies `wanted` from `src_conn` into `spec`'s mirror in one
    /// [`crate::copy::copy_images`] pass: per image, the digest now on the
    /// mirror or why not.
    async fn copy_pass(
        &self,
        spec: &ImageSpec,
        src_conn: &RegistryConn,
        wanted: Vec<(String, crate::copy::CopyRequest)>,
    ) -> CopyBatchResult {
        let clients = self
            .client(src_conn)
            .and_then(|s| Ok((s, self.client(&spec.mirror)?)));
        let (src, dst) = match clients {
            Ok(c) => c,
            Err(e) => {
                return wanted
                    .into_iter()
                    .map(|(i, _)| (i, Err(e.clone())))
                    .collect()
            }
        };
        let options = crate::copy::CopyOptions {
            concurrency: self
                .parallelism
                .lock()
                .ok()
                .and_then(|p| *p)
                .unwrap_or(COPY_PARALLELISM),
            ..crate::copy::CopyOptions::default()
        };
        let (items, requests): (Vec<String>, Vec<crate::copy::CopyRequest>) =
            wanted.into_iter().unzip();
        let mirror = spec.mirror.endpoint.clone();
        // the copy future is not Send (higher-ranked closures inside); run
        // it to completion on a blocking thread of this runtime
        let handle = tokio::runtime::Handle::current();
        let reqs = requests.clone();
        let joined = tokio::task::spawn_blocking(move || {
            handle.block_on(crate::copy::copy_images(&src, &dst, &reqs, &options))
        })
        .await;
        let results = match joined {
            Ok(r) => r,
            Err(e) => {
                let e = ProviderError::failed(format!("copy task failed: {e}"));
                return items.into_iter().map(|i| (i, Err(e.clone()))).collect();
            }
        };
        items
            .into_iter()
            .zip(requests)
            .zip(results)
            .map(|((item, request), r)| {
                let what = format!("copying {} to {mirror}", request.source);
                let r = match r {
                    Ok(report) => report.digest.map(|d| d.to_string()).ok_or_else(|| {
                        ProviderError::failed(format!("{what}: the registry reported no digest"))
                    }),
                    Err(e) => Err(registry_error_ref(&what, &e)),
                };
                (item, r)
            })
            .collect()
    }

    /// For an image refresh found missing or moved: which of its blobs the
    /// mirror already has (one blob `HEAD` per (repository, blob) not known
    /// yet, at most [`BLOB_HEADS`] in flight over all images; a file check
    /// for an `oci:` store), recorded for [`Provider::plan`]'s detail line.
    /// Best effort: on any error the plan shows the plain blob count.
    async fn survey_blobs(&self, spec: &ImageSpec) {
        let ImageSource::Bundle(path) = &spec.source else {
            return;
        };
        let key: CatalogueKey = (path.clone(), spec.platforms.clone());
        let namespace = namespace_of(spec);
        let (catalogue, index_of) = {
            let mut gate = self.catalogue_gate.lock().await;
            let (p, pl) = key.clone();
            let cat = match tokio::task::spawn_blocking(move || bundle_catalogue(&p, &pl)).await {
                Ok(Ok(c)) => c,
                _ => return,
            };
            let idx = gate
                .entry((key, namespace.clone()))
                .or_insert_with(|| Arc::new(CatIndex::of(&cat, namespace.as_deref())))
                .clone();
            (cat, idx)
        };
        let Some(&index) = index_of.names.get(&spec.upstream) else {
            return;
        };
        let Some(entry) = catalogue.images.get(index) else {
            return;
        };
        let blobs: Vec<(String, u64)> = entry
            .blobs
            .iter()
            .map(|b| (b.digest.to_string(), b.size))
            .collect();
        let batch_key = pass_key(path, spec);
        let (repo, present) = match spec.mirror.oci_path() {
            Some(store) => {
                let present = blobs
                    .iter()
                    .map(|(d, _)| {
                        d.split_once(':').is_some_and(|(alg, hex)| {
                            store.join("blobs").join(alg).join(hex).is_file()
                        })
                    })
                    .collect();
                (String::new(), present)
            }
            None => {
                let Ok(client) = self.client(&spec.mirror) else {
                    return;
                };
                let repo = spec.repository.clone();
                let endpoint = spec.mirror.endpoint.as_str();
                let lookups = entry.blobs.iter().map(|b| {
                    let holders = index_of.holders.get(b.digest.as_str());
                    let (client, repo) = (&client, &repo);
                    async move {
                        match holders {
                            // A repository beyond the first holders (the
                            // blob's home and the mount sources) is asked
                            // only if one of those has the blob: absent from
                            // all of them, it is taken as absent here too
                            // (no HEAD). At worst the push then mounts a
                            // blob this repository already had (harmless),
                            // and a registry that only had it there gets
                            // it uploaded once more.
                            Some(h) if !h.contains(repo) => {
                                for other in h {
                                    if self.blob_here(client, endpoint, other, &b.digest).await? {
                                        return self
                                            .blob_here(client, endpoint, repo, &b.digest)
                                            .await;
                                    }
                                }
                                Some(false)
                            }
                            _ => self.blob_here(client, endpoint, repo, &b.digest).await,
                        }
                    }
                });
                let Some(present) = futures::future::join_all(lookups)
                    .await
                    .into_iter()
                    .collect::<Option<Vec<bool>>>()
                else {
                    return;
                };
                // a blob this repository lacks may be in the repository of
                // another image of the bundle (already pushed): then the
                // push mounts it from there (see plan_bundle_push_with)
                let mut probes = Vec::new();
                for (b, here) in entry.blobs.iter().zip(&present) {
                    let d = b.digest.to_string();
                    let candidates: Vec<String> = index_of
                        .holders
                        .get(&d)
                        .map(|h| {
                            h.iter()
                                .filter(|r| **r != repo)
                                .take(crate::plan::MOUNT_SOURCES)
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    if *here || candidates.is_empty() {
                        continue;
                    }
                    let client = &client;
                    probes.push(async move {
                        let mut seen = Vec::new();
                        for c in candidates {
                            let Some(here) = self.blob_here(client, endpoint, &c, &b.digest).await
                            else {
                                break;
                            };
                            seen.push((c, here));
                            if here {
                                break;
                            }
                        }
                        (d, seen)
                    });
                }
                let elsewhere = futures::future::join_all(probes).await;
                if let Ok(mut sv) = self.survey.lock() {
                    let batch = sv.entry(batch_key.clone()).or_default();
                    for (d, seen) in elsewhere {
                        for (c, here) in seen {
                            if here {
                                batch.somewhere.insert(d.clone());
                            }
                            batch.present.insert((c, d.clone()), here);
                        }
                    }
                }
                (repo, present)
            }
        };
        if let Ok(mut sv) = self.survey.lock() {
            sv.entry(batch_key).or_default().record(
                spec.upstream.clone(),
                SurveyImage { index, repo, blobs },
                present,
            );
        }
    }

    /// Whether `repo` on `endpoint` has `digest`: one `HEAD` per
    /// (endpoint, repository, blob) per process, shared by every survey
    /// that asks (concurrent ones wait for the same answer); `None` when
    /// the lookup failed.
    async fn blob_here(
        &self,
        client: &crate::client::RegistryClient,
        endpoint: &str,
        repo: &str,
        digest: &crate::digest::Digest,
    ) -> Option<bool> {
        let cell = {
            let mut heads = self.blob_lookups.lock().ok()?;
            heads
                .entry((endpoint.to_string(), repo.to_string(), digest.to_string()))
                .or_default()
                .clone()
        };
        *cell
            .get_or_init(|| async {
                let _permit = self.blob_heads.0.acquire().await;
                client
                    .head_blob(repo, digest)
                    .await
                    .ok()
                    .map(|f| f.is_some())
            })
            .await
    }

    /// The blob split of a surveyed image.
    fn blob_split(&self, spec: &ImageSpec) -> Option<BlobSplit> {
        let ImageSource::Bundle(path) = &spec.source else {
            return None;
        };
        let sv = self.survey.lock().ok()?;
        sv.get(&pass_key(path, spec))?.split(&spec.upstream)
    }

    /// Tells the provider which images the plan will push, so that one pass
    /// over each bundle serves them all.
    pub fn prepare(&self, changes: &[ResourceChange]) {
        let Ok(mut wanted) = self.wanted.lock() else {
            return;
        };
        for c in changes {
            if c.provider != KIND
                || !matches!(c.action, Action::Create | Action::Update | Action::Replace)
            {
                continue;
            }
            let Some(after) = &c.after else { continue };
            let mut attrs = Attrs::new();
            for (k, v) in after {
                attrs.insert(k, v.clone());
            }
            if let Ok(spec) = ImageSpec::from_attrs(&attrs) {
                if let (ImageSource::Registry, Some(src)) = (&spec.source, &spec.upstream_conn) {
                    if let (Ok(request), Ok(mut w)) = (
                        copy_request(&spec, c.replace_requested),
                        self.copies_wanted.lock(),
                    ) {
                        w.entry((client_key(src), client_key(&spec.mirror)))
                            .or_default()
                            .push((copy_item(&spec), request));
                    }
                }
                if let ImageSource::Bundle(p) = &spec.source {
                    let key = pass_key(p, &spec);
                    if c.replace_requested {
                        if let Ok(mut f) = self.forced.lock() {
                            f.entry(key.clone())
                                .or_default()
                                .insert(spec.upstream.clone());
                        }
                    }
                    if let Ok(mut a) = self.addresses.lock() {
                        a.insert((key.clone(), spec.upstream.clone()), c.address.clone());
                    }
                    wanted.entry(key).or_default().insert(spec.upstream.clone());
                }
            }
        }
    }

    /// The (repository, blob) pairs this run's plan found missing in the
    /// mirror, for the pass `key` (none for a plan made by another
    /// process: a saved plan).
    fn known_absent(&self, key: &PassKey) -> HashSet<(String, crate::digest::Digest)> {
        let Ok(sv) = self.survey.lock() else {
            return HashSet::new();
        };
        let Some(batch) = sv.get(key) else {
            return HashSet::new();
        };
        batch
            .present
            .iter()
            .filter(|(_, here)| !**here)
            .filter_map(|((repo, d), _)| {
                crate::digest::Digest::parse(d)
                    .ok()
                    .map(|d| (repo.clone(), d))
            })
            .collect()
    }

    /// What this run's refresh found at each tag of `endpoint`:
    /// (repository, tag or digest) → digest (`None`: missing).
    fn known_tags(&self, endpoint: &str) -> KnownTags {
        let Ok(seen) = self.tags_seen.lock() else {
            return HashMap::new();
        };
        seen.iter()
            .filter(|((e, _, _), _)| e == endpoint)
            .map(|((_, repo, reference), d)| ((repo.clone(), reference.clone()), d.clone()))
            .collect()
    }

    /// A context per image of the pass (its own address), for progress.
    fn batch_contexts(
        &self,
        spec: &ImageSpec,
        pass: &PassKey,
        wanted: &HashSet<String>,
        ctx: &ApplyContext,
    ) -> HashMap<String, ApplyContext> {
        let mut out = HashMap::new();
        if let Ok(addresses) = self.addresses.lock() {
            for name in wanted {
                if let Some(a) = addresses.get(&(pass.clone(), name.clone())) {
                    out.insert(name.clone(), ctx.for_address(a.clone()));
                }
            }
        }
        out.insert(spec.upstream.clone(), ctx.clone());
        out
    }

    async fn push_from_bundle(
        &self,
        spec: &ImageSpec,
        bundle: &Path,
        ctx: &ApplyContext,
    ) -> Result<String, ProviderError> {
        let key = pass_key(bundle, spec);
        let cell = {
            let mut batches = self
                .batches
                .lock()
                .map_err(|_| ProviderError::failed("internal lock poisoned"))?;
            batches.entry(key.clone()).or_default().clone()
        };
        ctx.message(format!("streaming bundle {}", bundle.display()));
        let remote = match spec.mirror.oci_path() {
            Some(_) => None,
            None => Some(self.client(&spec.mirror)?),
        };
        let result = cell
            .get_or_init(|| async move {
                // only the first image of the batch gets here: copy what the
                // pass needs once, not once per image
                let wanted = self
                    .wanted
                    .lock()
                    .ok()
                    .and_then(|w| w.get(&key).cloned())
                    .unwrap_or_default();
                let spec2 = spec.clone();
                let bundle2 = bundle.to_path_buf();
                let ctxs = self.batch_contexts(spec, &key, &wanted, ctx);
                let known_absent = self.known_absent(&key);
                let known_tags = self.known_tags(&spec.mirror.endpoint);
                let forced = self
                    .forced
                    .lock()
                    .ok()
                    .and_then(|f| f.get(&key).cloned())
                    .unwrap_or_default();
                match remote {
                    None => {
                        let joined = tokio::task::spawn_blocking(move || {
                            push_bundle_blocking(&spec2, &bundle2, &wanted, ctxs)
                        })
                        .await;
                        match joined {
                            Ok(r) => r,
                            Err(e) => Err(format!("bundle push task failed: {e}")),
                        }
                    }
                    Some(client) => {
                        // the push future is not Send (higher-ranked closures inside);
                        // run it to completion on a blocking thread of this runtime
                        let handle = tokio::runtime::Handle::current();
                        let joined = tokio::task::spawn_blocking(move || {
                            handle.block_on(push_bundle_remote(
                                &spec2,
                                &bundle2,
                                &wanted,
                                &client,
                                ctxs,
                                PassHints {
                                    known_absent,
                                    known_tags,
                                    forced,
                                },
                            ))
                        })
                        .await;
                        match joined {
                            Ok(r) => r,
                            Err(e) => Err(format!("bundle push task failed: {e}")),
                        }
                    }
                }
            })
            .await;
        match result {
            Ok(map) => match map.get(&spec.upstream) {
                Some(Ok(d)) => Ok(d.clone()),
                Some(Err(why)) => Err(ProviderError::failed(why.clone())),
                None => Err(ProviderError::failed(format!(
                    "{} was not found in bundle {}",
                    spec.upstream,
                    bundle.display()
                ))),
            },
            Err(why) => Err(ProviderError::failed(why.clone())),
        }
    }
}

/// Forwards the byte progress of one bundle pass to each image's own
/// address: a blob's bytes count for the image that uploads it (the first,
/// in bundle order, that needs it), so the images' totals add up to the
/// pass's.
struct BatchProgress {
    ctxs: HashMap<String, ApplyContext>,
    state: Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    /// Image name → (bytes done, bytes to upload).
    images: HashMap<String, (u64, u64)>,
    /// Blob → the image its bytes count for.
    owner: HashMap<crate::digest::Digest, String>,
    /// Blob → the images holding it, in bundle order.
    users: HashMap<crate::digest::Digest, Vec<String>>,
}

impl BatchProgress {
    fn new(ctxs: HashMap<String, ApplyContext>, cat: &Catalogue) -> Self {
        let mut state = ProgressState::default();
        for image in &cat.images {
            for b in &image.blobs {
                state
                    .users
                    .entry(b.digest.clone())
                    .or_default()
                    .push(image.name.clone());
            }
        }
        BatchProgress {
            ctxs,
            state: Mutex::new(state),
        }
    }

    /// `name` will upload `total` bytes.
    fn set_total(&self, name: &str, total: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.images.insert(name.to_string(), (0, total));
        }
        if let Some(ctx) = self.ctxs.get(name) {
            ctx.bytes(0, Some(total));
        }
    }

    /// Every blob the store lacks counts for the first image holding it.
    fn attribute_all(&self, cat: &Catalogue, missing: impl Fn(&crate::digest::Digest) -> bool) {
        let mut totals: Vec<(String, u64)> = Vec::new();
        if let Ok(mut st) = self.state.lock() {
            for image in &cat.images {
                let mut total = 0;
                for b in &image.blobs {
                    if !st.owner.contains_key(&b.digest) && missing(&b.digest) {
                        st.owner.insert(b.digest.clone(), image.name.clone());
                        total += b.size;
                    }
                }
                totals.push((image.name.clone(), total));
            }
        }
        for (name, total) in totals {
            self.set_total(&name, total);
        }
    }

    /// `n` more bytes of `digest` went out.
    fn add(&self, digest: &crate::digest::Digest, n: u64) {
        let report = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            let st = &mut *st;
            let owner = match st.owner.get(digest) {
                Some(o) => o.clone(),
                None => {
                    let Some(o) = st
                        .users
                        .get(digest)
                        .and_then(|u| u.iter().find(|n| st.images.contains_key(*n)))
                        .cloned()
                    else {
                        return;
                    };
                    st.owner.insert(digest.clone(), o.clone());
                    o
                }
            };
            let Some(entry) = st.images.get_mut(&owner) else {
                return;
            };
            entry.0 += n;
            // a retried upload sends bytes again: the total grows with it
            entry.1 = entry.1.max(entry.0);
            (owner, *entry)
        };
        if let Some(ctx) = self.ctxs.get(&report.0) {
            ctx.bytes(report.1 .0, Some(report.1 .1));
        }
    }
}

fn push_bundle_blocking(
    spec: &ImageSpec,
    bundle_path: &Path,
    wanted: &HashSet<String>,
    ctxs: HashMap<String, ApplyContext>,
) -> BatchResult {
    let catalogue = bundle_catalogue(bundle_path, &spec.platforms).map_err(|e| e.message)?;
    let cat = catalogue
        .subset(|name| wanted.is_empty() || wanted.contains(name) || name == spec.upstream);
    let bundle = Bundle::open(bundle_path).map_err(|e| e.to_string())?;
    let namespace = namespace_of(spec);
    let mut out: HashMap<String, Result<String, String>> = HashMap::new();
    match spec.mirror.oci_path() {
        Some(store_path) => {
            let store = OciStore::open_or_create(&store_path).map_err(|e| e.to_string())?;
            let progress = BatchProgress::new(ctxs, &cat);
            progress.attribute_all(&cat, |d| !store.has_blob(d).unwrap_or(false));
            let report = crate::push::push_bundle_to_store_with(
                &bundle,
                &cat,
                &store,
                namespace.as_deref(),
                &|d, n| progress.add(d, n),
            )
            .map_err(|e| e.to_string())?;
            for p in report.pushed {
                out.insert(p.name, Ok(p.digest.to_string()));
            }
            for name in report.skipped {
                let why = report
                    .blob_failures
                    .iter()
                    .map(|e| e.to_string())
                    .find(|m| m.contains(&name))
                    .unwrap_or_else(|| "one of its blobs failed".into());
                out.insert(name.clone(), Err(format!("{name} was not pushed: {why}")));
            }
            for (name, e) in report.manifest_failures {
                out.insert(name.clone(), Err(format!("{name}: {e}")));
            }
        }
        None => {
            return Err(format!(
                "pushing to {} needs the registry client, which this build does not have yet",
                spec.mirror.endpoint
            ))
        }
    }
    for f in &catalogue.failures {
        out.entry(f.name.clone())
            .or_insert_with(|| Err(format!("{}: {}", f.name, f.error)));
    }
    Ok(out)
}

/// What this run knows about the mirror for one bundle pass.
struct PassHints {
    /// (repository, blob) pairs its refresh found missing.
    known_absent: HashSet<(String, crate::digest::Digest)>,
    /// What its refresh found at each tag.
    known_tags: KnownTags,
    /// Images to push as if the mirror had none of them (`-replace`).
    forced: HashSet<String>,
}

async fn push_bundle_remote(
    spec: &ImageSpec,
    bundle_path: &Path,
    wanted: &HashSet<String>,
    client: &crate::client::RegistryClient,
    ctxs: HashMap<String, ApplyContext>,
    hints: PassHints,
) -> BatchResult {
    let PassHints {
        mut known_absent,
        mut known_tags,
        forced,
    } = hints;
    let catalogue = bundle_catalogue(bundle_path, &spec.platforms).map_err(|e| e.message)?;
    let cat = catalogue
        .subset(|name| wanted.is_empty() || wanted.contains(name) || name == spec.upstream);
    let bundle = Bundle::open(bundle_path).map_err(|e| e.to_string())?;
    let namespace = namespace_of(spec);
    let progress = Arc::new(BatchProgress::new(ctxs, &cat));
    // blobs of the pushed images may already be in the repositories of the
    // bundle's other images (pushed before): mounted from there
    let pushed: HashSet<&str> = cat.images.iter().map(|i| i.name.as_str()).collect();
    let needed: HashSet<&crate::digest::Digest> = cat
        .images
        .iter()
        .flat_map(|i| i.blobs.iter().map(|b| &b.digest))
        .collect();
    let mut mount_sources: HashMap<crate::digest::Digest, Vec<String>> = HashMap::new();
    for image in catalogue
        .images
        .iter()
        .filter(|i| !pushed.contains(i.name.as_str()))
    {
        let repo = image.mirror_ref(namespace.as_deref()).repository;
        for b in image.blobs.iter().filter(|b| needed.contains(&b.digest)) {
            let s = mount_sources.entry(b.digest.clone()).or_default();
            if s.len() < crate::plan::MOUNT_SOURCES && !s.contains(&repo) {
                s.push(repo.clone());
            }
        }
    }
    // `-replace`: the image is pushed as if the mirror had none of it
    for image in cat.images.iter().filter(|i| forced.contains(&i.name)) {
        let m = image.mirror_ref(namespace.as_deref());
        for b in &image.blobs {
            known_absent.insert((m.repository.clone(), b.digest.clone()));
            mount_sources.remove(&b.digest);
        }
        let reference = m
            .tag
            .clone()
            .unwrap_or_else(|| image.manifest_digest.to_string());
        known_tags.insert((m.repository.clone(), reference), None);
    }
    let options = crate::push_remote::RemotePushOptions {
        mount_sources,
        known_absent,
        known_tags,
        progress: Some(Arc::new(move |p: &crate::push_remote::PushProgress| {
            use crate::push_remote::PushProgress as P;
            match p {
                P::ImagePlanned { name, bytes } => progress.set_total(name, *bytes),
                P::Bytes { digest, bytes } => progress.add(digest, *bytes),
                _ => {}
            }
        })),
        ..crate::push_remote::RemotePushOptions::default()
    };
    let report = crate::push_remote::push_bundle_to_registry(
        &bundle,
        &cat,
        client,
        namespace.as_deref(),
        &options,
    )
    .await
    .map_err(|e| {
        registry_error(
            &format!(
                "pushing bundle {} to {}",
                bundle_path.display(),
                spec.mirror.endpoint
            ),
            e,
        )
        .message
    })?;
    let mut out: HashMap<String, Result<String, String>> = HashMap::new();
    for p in report.pushed {
        out.insert(p.name, Ok(p.digest.to_string()));
    }
    for f in report.failed {
        out.insert(
            f.name.clone(),
            Err(format!("{} was not pushed: {}", f.name, f.reason)),
        );
    }
    if let Some(fatal) = report.fatal {
        for i in &cat.images {
            out.entry(i.name.clone())
                .or_insert_with(|| Err(format!("{} was not pushed: {fatal}", i.name)));
        }
    }
    for f in &catalogue.failures {
        out.entry(f.name.clone())
            .or_insert_with(|| Err(format!("{}: {}", f.name, f.error)));
    }
    Ok(out)
}

/// The namespace part of the mirror repository (what precedes the upstream path).
fn namespace_of(spec: &ImageSpec) -> Option<String> {
    let Ok(r) = crate::reference::ImageRef::parse(&spec.upstream) else {
        return None;
    };
    let path = r.repository.clone();
    spec.repository
        .strip_suffix(&path)
        .map(|ns| ns.trim_end_matches('/').to_string())
        .filter(|ns| !ns.is_empty())
}

async fn observed_digest(
    provider: &ImageProvider,
    spec: &ImageSpec,
) -> Result<Option<String>, ProviderError> {
    match spec.mirror.oci_path() {
        Some(path) => {
            let tag = spec.tag.clone().unwrap_or_else(|| spec.digest.clone());
            let tags = provider.store_tags(&path)?;
            Ok(tags.and_then(|t| t.get(&format!("{}:{tag}", spec.repository)).cloned()))
        }
        None => {
            let client = provider.client(&spec.mirror)?;
            let reference = spec.tag.clone().unwrap_or_else(|| spec.digest.clone());
            let found = client
                .head_manifest(&spec.repository, &reference)
                .await
                .map_err(|e| {
                    registry_error(
                        &format!(
                            "reading {}:{reference} in {}",
                            spec.repository, spec.mirror.endpoint
                        ),
                        e,
                    )
                })?;
            let found = found.map(|m| m.digest);
            if let Ok(mut seen) = provider.tags_seen.lock() {
                seen.insert(
                    (
                        spec.mirror.endpoint.clone(),
                        spec.repository.clone(),
                        reference,
                    ),
                    found.clone(),
                );
            }
            Ok(found.map(|d| d.to_string()))
        }
    }
}

#[async_trait]
impl Provider for ImageProvider {
    fn kind(&self) -> &str {
        KIND
    }

    /// The tag in the mirror: an image set renamed without a `moved` block
    /// creates the same tag under the new address, and the delete of the
    /// old address must not prune it.
    fn physical_identity(
        &self,
        attrs: &std::collections::BTreeMap<String, Value>,
    ) -> Option<String> {
        let endpoint = attrs.get("mirror")?.get("endpoint")?.as_str()?;
        let repository = attrs.get("repository")?.as_str()?;
        let tag = attrs.get("tag")?.as_str()?;
        Some(format!("{endpoint}/{repository}:{tag}"))
    }

    fn force_new(&self) -> &[&str] {
        &["repository", "tag"]
    }

    async fn read(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
    ) -> Result<Option<Observed>, ProviderError> {
        let attrs = match (desired, prior) {
            (_, Some(p)) => p.attrs_view(),
            (Some(d), None) => d.attrs.clone(),
            (None, None) => return Ok(None),
        };
        let mut spec = ImageSpec::from_attrs(&attrs)?;
        let mut wanted = None;
        let mut from_state = prior.is_some();
        if let Some(d) = desired {
            // read where the image should be; the prior's mirror might have moved
            if let Ok(ds) = ImageSpec::from_attrs(&d.attrs) {
                if prior.is_none() {
                    spec = ds.clone();
                } else if ds.mirror.endpoint == spec.mirror.endpoint {
                    // the state holds only a digest of the password: connect
                    // with the configuration's credentials and CA
                    spec.mirror = ds.mirror.clone();
                    from_state = false;
                }
                wanted = Some(ds);
            }
        }
        if from_state {
            self.config_conn(&mut spec.mirror);
        }
        let observed = observed_digest(self, &spec).await?;
        if let Some(ds) = wanted {
            // only an image that will be pushed costs blob lookups: a warm
            // plan stays at one manifest HEAD per tag
            let same_place = ds.mirror.endpoint == spec.mirror.endpoint
                && ds.repository == spec.repository
                && ds.tag == spec.tag;
            if same_place && observed.as_deref() != Some(ds.digest.as_str()) {
                self.survey_blobs(&ds).await;
            }
        }
        match observed {
            Some(digest) => Ok(Some(Observed {
                attrs: Attrs::new().with("digest", digest),
            })),
            None => Ok(None),
        }
    }

    fn plan(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
        observed: Option<&Observed>,
    ) -> Result<PlannedChange, ProviderError> {
        let mut change = mirrorplan_engine::diff(self.force_new(), desired, prior)?;
        let _ = observed;
        if let (Some(d), Some(p), Action::Update) = (desired, prior, change.action) {
            // a bundle is identified by its content (the digests the image
            // keeps), not by its path: a bundle moved or renamed is no change
            let bundle = |v: Option<&Value>| {
                v.and_then(Value::as_str)
                    .is_some_and(|s| s.starts_with("bundle:"))
            };
            let changed = mirrorplan_engine::changed_attributes(d, p);
            if changed == ["source"]
                && bundle(d.attrs.get("source"))
                && bundle(p.attrs.get("source"))
            {
                change.action = Action::NoOp;
            }
        }
        if let (Some(d), Action::Create | Action::Update | Action::Replace) =
            (desired, change.action)
        {
            let spec = ImageSpec::from_attrs(&d.attrs)?;
            change.details.push(match self.blob_split(&spec) {
                Some(split) => split.line(),
                // not refreshed (or the survey failed): what the bundle holds
                None => format!(
                    "{} blob{} ({}) to {} unless already in the mirror",
                    spec.blobs,
                    if spec.blobs == 1 { "" } else { "s" },
                    human_bytes(spec.bytes),
                    match spec.source {
                        ImageSource::Registry => "copy from the upstream registry",
                        _ => "send",
                    }
                ),
            });
            for r in spec.referrers.iter().flatten() {
                change.details.push(r.line());
            }
            if spec.filtered {
                change.details.push(format!(
                    "platform filter {:?}: the index is rewritten, its digest differs from the source's",
                    spec.platforms
                ));
            }
            if spec.mirror.insecure {
                change.details.push(
                    "warning: TLS verification is off for this registry (insecure = true)".into(),
                );
            }
        }
        if let (None, Some(p), Action::Delete) = (desired, prior, change.action) {
            let prune = p
                .attrs
                .get("prune")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            change.details.push(if prune {
                "the tag is deleted from the mirror (prune = true), unless a new instance of this plan pushes the same tag".into()
            } else {
                "forgotten only: the image stays in the mirror (set prune = true to delete it)"
                    .into()
            });
        }
        Ok(change)
    }

    fn adopt(
        &self,
        _desired: &DesiredInstance,
        planned: &PlannedChange,
        observed: &Observed,
    ) -> Option<Adoption> {
        let after = planned.after.as_ref()?;
        if !observed_matches(after, observed) {
            return None;
        }
        let digest = after.get("digest")?.as_str()?.to_string();
        Some(Adoption {
            details: vec![format!(
                "the mirror already serves it at {digest}: nothing to upload"
            )],
            state: NewInstanceState {
                attrs: after.clone(),
                digests: BTreeMap::from([("manifest".to_string(), digest)]),
            },
        })
    }

    async fn apply(
        &self,
        change: &PlannedChange,
        ctx: &ApplyContext,
    ) -> Result<Option<NewInstanceState>, ProviderError> {
        match change.action {
            Action::Delete => {
                let Some(before) = &change.before else {
                    return Ok(None);
                };
                let mut spec = ImageSpec::from_attrs(before)?;
                // `before` comes from the state: a digest in place of the password
                self.config_conn(&mut spec.mirror);
                // a hand-over: the tag belongs to the instance that pushed it
                if spec.prune && change.handover.is_none() {
                    if let (Some(path), Some(tag)) = (spec.mirror.oci_path(), &spec.tag) {
                        let store = OciStore::open_or_create(&path).map_err(|e| {
                            ProviderError::failed(format!("oci store {}: {e}", path.display()))
                        })?;
                        store.delete_tag(&spec.repository, tag).map_err(|e| {
                            ProviderError::failed(format!(
                                "deleting {}:{tag}: {e}",
                                spec.repository
                            ))
                        })?;
                    } else if spec.mirror.oci_path().is_none() {
                        let client = self.client(&spec.mirror)?;
                        let digest = crate::digest::Digest::parse(&spec.digest).map_err(|e| {
                            ProviderError::invalid_input(format!("{}: {e}", spec.digest))
                        })?;
                        client
                            .delete_manifest(&spec.repository, &digest)
                            .await
                            .map_err(|e| {
                                registry_error(
                                    &format!("deleting {}@{}", spec.repository, spec.digest),
                                    e,
                                )
                            })?;
                    }
                }
                Ok(None)
            }
            Action::Create | Action::Update | Action::Replace => {
                let after = change
                    .after
                    .as_ref()
                    .ok_or_else(|| ProviderError::failed("a create without attributes"))?;
                let spec = ImageSpec::from_attrs(after)?;
                let digest = match &spec.source {
                    ImageSource::Bundle(b) => self.push_from_bundle(&spec, b, ctx).await?,
                    ImageSource::Registry => {
                        self.copy_from_registry(&spec, change.replace_requested, ctx)
                            .await?
                    }
                };
                if digest != spec.digest {
                    return Err(ProviderError::failed(format!(
                        "{} was pushed as {digest}, but the plan expected {}",
                        spec.upstream, spec.digest
                    )));
                }
                let mut attrs = after.clone();
                attrs.insert("digest", digest.clone());
                Ok(Some(NewInstanceState {
                    attrs,
                    digests: BTreeMap::from([("manifest".to_string(), digest)]),
                }))
            }
            Action::NoOp | Action::Read | Action::Import => {
                Ok(change.after.clone().map(|attrs| NewInstanceState {
                    attrs,
                    digests: BTreeMap::new(),
                }))
            }
        }
    }
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    fn conn(proxy: &str, sensitive: bool) -> RegistryConn {
        RegistryConn {
            endpoint: "https://mirror.example".into(),
            proxy: Some(proxy.into()),
            proxy_sensitive: sensitive,
            ..RegistryConn::default()
        }
    }

    #[test]
    fn proxy_passwords_are_masked_and_kept_as_a_secret() {
        let c = conn("http://user:s3cr/et@x@proxy:3128", false);
        assert_eq!(
            c.shown_proxy().as_deref(),
            Some("http://user:(sensitive value)@proxy:3128")
        );
        assert_eq!(
            c.secret_proxy().as_deref(),
            Some("http://user:s3cr/et@x@proxy:3128")
        );
        assert!(!format!("{c:?}").contains("s3cr"));
        // no password: nothing to hide
        let plain = conn("http://proxy:3128", false);
        assert_eq!(plain.shown_proxy().as_deref(), Some("http://proxy:3128"));
        assert_eq!(plain.secret_proxy(), None);
        // derived from a sensitive value: all of it hidden
        let all = conn("http://proxy.internal:3128", true);
        assert_eq!(all.shown_proxy().as_deref(), Some(SENSITIVE_MASK));
        assert!(all.secret_proxy().is_some());
    }

    #[test]
    fn proxy_round_trips_through_attributes_but_not_through_a_digest() {
        let c = conn("http://user:pw@proxy:3128", false);
        let secret = Value::String("http://user:pw@proxy:3128".into());
        let back = RegistryConn::from_json(Some(&c.to_json()), None, Some(&secret));
        assert_eq!(
            back.and_then(|b| b.proxy).as_deref(),
            Some("http://user:pw@proxy:3128")
        );
        // from the state: the digest is not a proxy; the URL without its password is
        let digest = Value::String(format!("blake3:{}", "a".repeat(64)));
        let back = RegistryConn::from_json(Some(&c.to_json()), None, Some(&digest));
        assert_eq!(
            back.and_then(|b| b.proxy).as_deref(),
            Some("http://user@proxy:3128")
        );
    }
}
