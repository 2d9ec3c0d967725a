//! Expansion: the checked configuration → the resource instances the engine
//! plans, with their dependencies.
//!
//! This is where files named by the configuration are read (bundles' indexes,
//! CA certificates, pull credentials, the gcr.io key): `validate` never gets
//! here. Each provider crate owns the attribute contract of its instances
//! (`ImageSpec`, `NodeSpec`); this module only maps the model onto them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mirrorplan_config::{Cluster, Config, ConfigStyle, Endpoint, ImageSet, NodeAddr, Registry};
use mirrorplan_engine::{Address, DesiredInstance};
use mirrorplan_node::cluster::ClusterSpec;
use mirrorplan_node::provider::{NodeSpec, RolloutSpec, TransportSpec, ROLLOUT_ATTR};
use mirrorplan_node::{EndpointScheme, MirrorSpec, NodeMirrorConfig, PullAuth, Secret};
use mirrorplan_registry::provider::{
    bundle_summary, ImageProvider, ImageSource, ImageSpec, RegistryConn,
};
use mirrorplan_registry::{mirror_path, ImageRef};

mod cluster_file;

/// A problem found while expanding (a file that cannot be read, a bad bundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    /// The block address it concerns, e.g. `image_set.anthos`.
    pub address: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: String,
}

/// The instances of a configuration and the problems found.
#[derive(Debug, Default)]
pub struct Expanded {
    /// Desired instances, in configuration order.
    pub desired: Vec<DesiredInstance>,
    /// Problems; planning must not go on when there are any.
    pub errors: Vec<ExpandError>,
    /// Images that cannot be pushed (damaged in their bundle): the other
    /// instances are planned and applied, these are reported and the run
    /// exits 1. Their recorded state is left alone (never planned for
    /// deletion). The address is an image instance's, or `image.SET` when
    /// the whole bundle is unreadable.
    pub image_errors: Vec<(String, ExpandError)>,
    /// Plan warnings by instance (see [`clear_text_warnings`]).
    pub warnings: Vec<(Address, String)>,
}

fn conn(r: &Registry) -> RegistryConn {
    RegistryConn {
        endpoint: r.endpoint.to_string(),
        ca_cert: r.ca_cert.as_ref().map(|p| p.display().to_string()),
        username: r.username.clone(),
        password: r.password.as_ref().map(|p| p.expose().to_string()),
        docker_config: r.docker_config.as_ref().map(|p| p.display().to_string()),
        no_environment_credentials: r.no_environment_credentials,
        insecure: r.insecure,
        proxy: r.proxy.clone(),
        proxy_sensitive: r.proxy_sensitive,
    }
}

/// `KIND.NAME["KEY"]`; a `for_each` instance's key is folded into the name
/// (`NAME_KEY`, characters that are not allowed in a name become `_`).
fn instance_address(kind: &str, name: &str, for_each_key: Option<&str>, key: &str) -> Address {
    let mut full = name.to_string();
    if let Some(k) = for_each_key {
        full.push('_');
        full.extend(k.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        }));
    }
    match Address::keyed(kind, &full, key) {
        Ok(a) => a,
        // names come from validated labels, so this is not reached
        Err(_) => Address::keyed(kind, "_", key).unwrap_or_else(|_| unreachable_address()),
    }
}

#[allow(clippy::unwrap_used)]
fn unreachable_address() -> Address {
    // "_" is an identifier for Address::new
    Address::new("_", "_").unwrap()
}

/// The instance name of an image set's images (`NAME`, or `NAME_KEY` for a
/// `for_each` instance): `image.NAME_KEY["…"]`.
pub(crate) fn set_instance_name(set: &ImageSet) -> String {
    let probe = image_address(set, "x").to_string();
    probe
        .strip_prefix("image.")
        .and_then(|p| p.split_once('['))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| set.name.clone())
}

/// `image.SET["upstream"]`.
fn image_address(set: &ImageSet, upstream: &str) -> Address {
    instance_address("image", &set.name, set.key.as_deref(), upstream)
}

/// `node.CLUSTER["host[:port]"]`.
pub fn node_address(c: &Cluster, n: &NodeAddr) -> Address {
    instance_address("node", &c.name, c.key.as_deref(), &n.key())
}

/// Expands the whole configuration. Images named by `images = [...]` are
/// resolved in their upstream registries (one manifest GET each, concurrently).
pub async fn expand(config: &Config, images: &ImageProvider) -> Expanded {
    for r in config.registries.values() {
        if let Some(t) = r.timeout_seconds {
            images.set_timeout(&r.endpoint.to_string(), std::time::Duration::from_secs(t));
        }
        let l = &r.limits;
        images.set_limits(
            &r.endpoint.to_string(),
            mirrorplan_registry::limits::RegistryLimits {
                max_concurrency: l.max_concurrency,
                rate: l.rate_limit.map(|r| (r.count, r.per)),
                retry_attempts: l.retry_attempts,
                retry_max_delay: l.retry_max_delay,
            },
        );
    }
    let mut out = Expanded::default();
    // image set address → its image instance addresses
    let mut set_images: BTreeMap<String, Vec<Address>> = BTreeMap::new();
    let mut images_of_set: BTreeMap<Address, Vec<Address>> = BTreeMap::new();
    for set in &config.image_sets {
        let mut addrs = expand_image_set(config, set, &mut out);
        addrs.extend(expand_upstream_images(config, set, images, &mut out).await);
        // one barrier instance per set: nodes wait for it rather than for every image
        let set_addr =
            instance_address("image_set", &set.name, set.key.as_deref(), "").without_key();
        out.desired.push(mirrorplan_registry::set::set_desired(
            set_addr.clone(),
            addrs.len() as u64,
            addrs.clone(),
        ));
        images_of_set.insert(set_addr.clone(), addrs);
        set_images.insert(set.address(), vec![set_addr]);
    }
    for c in &config.clusters {
        expand_cluster(config, c, &set_images, &images_of_set, &mut out);
    }
    out.warnings = clear_text_warnings(config);
    out
}

fn expand_image_set(config: &Config, set: &ImageSet, out: &mut Expanded) -> Vec<Address> {
    let mut addrs = Vec::new();
    let Some(reg) = config.registries.get(&set.registry) else {
        return addrs;
    };
    let err = |message: String, help: &str| ExpandError {
        address: set.address(),
        message,
        help: help.to_string(),
    };
    if let Some(bundle) = &set.bundle {
        let cache = bundle_cache_dir(&config.dir);
        match bundle_summary(bundle, &set.platforms, Some(&cache)) {
            Ok(cat) => {
                for f in &cat.failures {
                    out.image_errors.push((
                        image_address(set, &f.name).to_string(),
                        err(
                            format!("{} in bundle {}: {}", f.name, bundle.display(), f.error),
                            "the other images of the bundle are planned and pushed; fix or rebuild the bundle",
                        ),
                    ));
                }
                for img in &cat.images {
                    // a bundle's referrers are pushed only with `referrers = true`
                    if img.referrer_of.is_some() && !set.referrers {
                        continue;
                    }
                    let Some(m) = img.mirror_ref(reg.namespace.as_deref()) else {
                        continue;
                    };
                    let referrers = set.referrers.then(|| {
                        cat.images
                            .iter()
                            .filter(|r| r.referrer_of.as_ref().is_some_and(|(s, _)| *s == img.name))
                            .map(|r| mirrorplan_registry::referrers::Referrer {
                                subject: r
                                    .referrer_of
                                    .as_ref()
                                    .map(|(_, d)| d.clone())
                                    .unwrap_or_default(),
                                digest: r.manifest_digest.clone(),
                                media_type: String::new(),
                                artifact_type: None,
                                tag: r.mirror_ref(reg.namespace.as_deref()).and_then(|m| m.tag),
                                found_by: "bundle".into(),
                            })
                            .collect()
                    });
                    let spec = ImageSpec {
                        upstream: img.name.clone(),
                        source: ImageSource::Bundle(bundle.clone()),
                        upstream_conn: None,
                        mirror: conn(reg),
                        repository: m.repository.clone(),
                        tag: m.tag.clone(),
                        digest: img.manifest_digest.clone(),
                        platforms: set.platforms.clone(),
                        filtered: img.filtered,
                        prune: set.prune,
                        blobs: img.blobs,
                        bytes: img.bytes,
                        referrers,
                    };
                    let addr = image_address(set, &img.name);
                    addrs.push(addr.clone());
                    out.desired.push(spec.to_desired(addr));
                }
            }
            // an unreadable bundle fails its own images, not the other sets
            Err(e) => out.image_errors.push((
                format!("image.{}", set_instance_name(set)),
                err(
                    e.message.clone(),
                    e.help
                        .as_deref()
                        .unwrap_or("check the bundle path in the image set"),
                ),
            )),
        }
    }
    addrs
}

/// The connection for an upstream image: the `registry` block whose
/// endpoint names the same host[:port], else HTTPS with Docker config credentials.
fn upstream_conn(config: &Config, host: &str) -> RegistryConn {
    for r in config.registries.values() {
        if r.endpoint.host_port().as_deref() == Some(host) {
            return conn(r);
        }
    }
    RegistryConn {
        endpoint: format!("https://{host}"),
        ..RegistryConn::default()
    }
}

async fn expand_upstream_images(
    config: &Config,
    set: &ImageSet,
    images: &ImageProvider,
    out: &mut Expanded,
) -> Vec<Address> {
    let Some(reg) = config.registries.get(&set.registry) else {
        return Vec::new();
    };
    // the tags each `repository { }` selection picks, listed upstream now
    let mut wanted: Vec<String> = set.images.clone();
    // (compared normalised: `docker.io/nginx:1` and `docker.io/library/nginx:1` are one image)
    let normal = |i: &str| ImageRef::parse(i).map_or_else(|_| i.to_string(), |r| r.to_string());
    let mut seen: std::collections::BTreeSet<String> = wanted.iter().map(|i| normal(i)).collect();
    for sel in &set.repositories {
        match select_tags(config, sel, images).await {
            Ok(tags) => {
                for t in tags {
                    let name = format!("{}:{t}", sel.repository);
                    if seen.insert(normal(&name)) {
                        wanted.push(name);
                    }
                }
            }
            Err(e) => out.errors.push(ExpandError {
                address: set.address(),
                message: e.message.clone(),
                help: e.help.clone().unwrap_or_else(|| {
                    "check that the upstream registry is reachable and the repository exists".into()
                }),
            }),
        }
    }
    let mut jobs = Vec::new();
    for img in &wanted {
        let upstream = match ImageRef::parse(img) {
            Ok(r) => r,
            Err(e) => {
                out.errors.push(ExpandError {
                    address: set.address(),
                    message: format!("{img}: {e}"),
                    help: "write HOST/PATH:TAG or HOST/PATH@sha256:DIGEST".into(),
                });
                continue;
            }
        };
        let src = upstream_conn(config, &upstream.registry);
        jobs.push(async move {
            let resolved = images
                .resolve_upstream(&upstream, &src, &set.platforms)
                .await;
            // with `referrers = true`: what refers to it, listed in the plan
            let resolved = match resolved {
                Ok(r) if set.referrers => images
                    .resolve_referrers(&upstream, &src, &r)
                    .await
                    .map(|refs| (r, Some(refs))),
                other => other.map(|r| (r, None)),
            };
            (upstream, src, resolved)
        });
    }
    let mut addrs = Vec::new();
    for (upstream, src, resolved) in futures::future::join_all(jobs).await {
        match resolved {
            Ok((r, referrers)) => {
                let m = mirror_path(&upstream, reg.namespace.as_deref());
                let name = upstream.to_string();
                let spec = ImageSpec {
                    upstream: name.clone(),
                    source: ImageSource::Registry,
                    upstream_conn: Some(src),
                    mirror: conn(reg),
                    repository: m.repository.clone(),
                    tag: m.tag.clone(),
                    digest: r.digest.to_string(),
                    platforms: set.platforms.clone(),
                    filtered: r.filtered,
                    prune: set.prune,
                    blobs: r.blobs,
                    bytes: r.bytes,
                    referrers,
                };
                let addr = image_address(set, &name);
                addrs.push(addr.clone());
                out.desired.push(spec.to_desired(addr));
            }
            Err(e) => out.errors.push(ExpandError {
                address: set.address(),
                message: e.message.clone(),
                help: e.help.clone().unwrap_or_else(|| {
                    "check that the upstream registry is reachable and the image exists".into()
                }),
            }),
        }
    }
    addrs
}

/// The tags of `sel.repository` that the selection picks (its upstream's
/// tag list, all pages). A selection that picks nothing is an error: a
/// plan would otherwise forget every image it picked before.
async fn select_tags(
    config: &Config,
    sel: &mirrorplan_config::TagSelection,
    images: &ImageProvider,
) -> Result<Vec<String>, mirrorplan_engine::ProviderError> {
    let bad = |m: String| mirrorplan_engine::ProviderError::invalid_input(m);
    // `HOST/PATH:probe` parses the repository as the image references do
    let probe = ImageRef::parse(&format!("{}:probe", sel.repository))
        .map_err(|e| bad(format!("repository {}: {e}", sel.repository)))?;
    let src = upstream_conn(config, &probe.registry);
    let tags = images.list_tags(&src, &probe.repository).await?;
    let picked = sel
        .select(&tags)
        .map_err(|e| bad(format!("repository {}: {e}", sel.repository)))?;
    if picked.is_empty() {
        return Err(bad(format!(
            "repository {}: the selection picks none of its {} tags",
            sel.repository,
            tags.len()
        ))
        .with_help("widen include/semver, or remove the repository block"));
    }
    Ok(picked)
}

fn read_file(path: &Path, what: &str, address: &str) -> Result<Vec<u8>, ExpandError> {
    std::fs::read(path).map_err(|e| ExpandError {
        address: address.to_string(),
        message: format!("cannot read {what} {}: {e}", path.display()),
        help: format!("make sure the {what} exists on the machine that runs mirrorplan"),
    })
}

/// The pull credentials for `host_port` from a Docker config file, read by
/// the registry crate's one parser of those files (`auths`, `credHelpers`,
/// `credsStore`; the error names the file, never its contents).
fn pull_auth(path: &Path, host_port: &str, address: &str) -> Result<Option<PullAuth>, ExpandError> {
    let bad = |why: String| ExpandError {
        address: address.to_string(),
        message: format!("pull credentials file {}: {why}", path.display()),
        help: "give a Docker config.json with an `auths` entry for the mirror".into(),
    };
    match mirrorplan_registry::auth::resolve_docker_config(path, host_port, None) {
        Ok(Some(c)) if c.is_identity_token() => {
            Ok(Some(PullAuth::Token(Secret::from(c.password.expose()))))
        }
        Ok(Some(c)) => Ok(Some(PullAuth::basic(
            &c.user,
            Secret::from(c.password.expose()),
        ))),
        Ok(None) => Err(bad(format!("no `auths` entry for {host_port}"))),
        Err(e) => Err(ExpandError {
            address: address.to_string(),
            message: e.to_string(),
            help: "give a Docker config.json with an `auths` entry for the mirror".into(),
        }),
    }
}

fn mirror_spec(
    c: &Cluster,
    m: &mirrorplan_config::RegistryMirror,
    r: &Registry,
) -> Result<MirrorSpec, ExpandError> {
    let address = c.address();
    let (scheme, host_port) = match &r.endpoint {
        Endpoint::Https { .. } => (
            EndpointScheme::Https,
            r.endpoint.host_port().unwrap_or_default(),
        ),
        Endpoint::Http { .. } => (
            EndpointScheme::Http,
            r.endpoint.host_port().unwrap_or_default(),
        ),
        Endpoint::Oci { path } => return Err(ExpandError {
            address,
            message: format!(
                "registry `{}` is a local store (oci:{}): nodes cannot pull from it",
                r.name,
                path.display()
            ),
            help: "point registry_mirror at the registry the nodes pull from (https:// or http://)"
                .into(),
        }),
    };
    let mut spec = MirrorSpec::new(host_port.clone());
    spec.endpoint_scheme = scheme;
    spec.namespace = r.namespace.clone();
    spec.hosts = m.hosts.clone();
    if let Some(ca) = &r.ca_cert {
        spec.ca_cert_pem = Some(read_file(ca, "CA certificate", &address)?);
    }
    if let Some(p) = &m.pull_credentials {
        spec.pull_auth = pull_auth(p, &host_port, &address)?;
    }
    Ok(spec)
}

fn expand_cluster(
    config: &Config,
    c: &Cluster,
    set_images: &BTreeMap<String, Vec<Address>>,
    images_of_set: &BTreeMap<Address, Vec<Address>>,
    out: &mut Expanded,
) {
    let address = c.address();
    let mut cfg = NodeMirrorConfig::new(match c.containerd.config_style {
        ConfigStyle::Hosts => mirrorplan_node::ConfigStyle::Hosts,
        ConfigStyle::Legacy => mirrorplan_node::ConfigStyle::Legacy,
        ConfigStyle::RegistriesConf => mirrorplan_node::ConfigStyle::RegistriesConf,
        ConfigStyle::K3s => mirrorplan_node::ConfigStyle::K3s,
        ConfigStyle::Rke2 => mirrorplan_node::ConfigStyle::Rke2,
    });
    // the style's defaults are the node provider's (`NodeMirrorConfig::new`)
    if let Some(p) = &c.containerd.config_path {
        cfg.config_path = p.clone();
    }
    let mut ok = true;
    for m in &c.mirrors {
        let Some(r) = config.registries.get(&m.registry) else {
            continue;
        };
        match mirror_spec(c, m, r) {
            Ok(s) => cfg.mirrors.push(s),
            Err(e) => {
                out.errors.push(e);
                ok = false;
            }
        }
    }
    if let Some(key) = &c.gcr_key {
        match read_file(key, "gcr.io key", &address) {
            Ok(bytes) => {
                cfg.gcr_key = Some(Secret::from(String::from_utf8_lossy(&bytes).into_owned()))
            }
            Err(e) => {
                out.errors.push(e);
                ok = false;
            }
        }
    }
    if !ok {
        return;
    }
    // what every node of the cluster waits for: image sets (and other blocks) it depends on
    let mut deps: Vec<Address> = Vec::new();
    let mut seen: std::collections::BTreeSet<Address> = std::collections::BTreeSet::new();
    let node_prefix = format!("node.{}[", c.instance_name());
    let mut froms: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for e in &config.edges {
        if e.to.starts_with(&node_prefix) {
            froms.insert(e.from.as_str());
        }
    }
    for from in froms {
        if let Some(sets) = set_images.get(from) {
            for a in sets {
                if seen.insert(a.clone()) {
                    deps.push(a.clone());
                }
            }
        } else if from.starts_with("cluster.") {
            for other in config.clusters.iter().filter(|o| o.address() == from) {
                if other.cluster_config.is_some() {
                    let a = cluster_file::address(other);
                    if seen.insert(a.clone()) {
                        deps.push(a);
                    }
                    continue;
                }
                for n in &other.nodes {
                    let a = node_address(other, n);
                    if seen.insert(a.clone()) {
                        deps.push(a);
                    }
                }
            }
        }
    }
    // the images the cluster uses, for the cluster step's pull
    let used_images: std::collections::BTreeSet<&Address> = deps
        .iter()
        .filter_map(|d| images_of_set.get(d))
        .flatten()
        .collect();
    // Rollout: with max_failures = 0 the batches of max_unavailable nodes
    // are chained by dependencies (the first failure skips every later
    // node); with max_failures > 0 they are not chained and the node
    // provider enforces both limits (`RolloutSpec`), so the other nodes go
    // on until more than max_failures have failed.
    let batch = c.rollout.max_unavailable.max(1) as usize;
    let rollout = (c.rollout.max_failures > 0).then(|| RolloutSpec {
        cluster: address.clone(),
        max_unavailable: c.rollout.max_unavailable.max(1),
        max_failures: c.rollout.max_failures,
    });
    let mut all_nodes: Vec<Address> = Vec::new();
    let mut transports: Vec<TransportSpec> = Vec::new();
    let mut previous_batch: Vec<Address> = Vec::new();
    // with `cluster_config` the cluster software writes the nodes: one
    // instance edits the file, the nodes are only the cluster check's
    let file_instance = c.cluster_config.as_ref().map(|cc| {
        let mut d = cluster_file::desired(config, c, cc, &cfg);
        d.dependencies.extend(deps.iter().cloned());
        d
    });
    for chunk in c.nodes.chunks(batch) {
        let mut this_batch = Vec::new();
        for n in chunk {
            let transport = match n {
                NodeAddr::Local { path, .. } => TransportSpec::Local {
                    root: path.display().to_string(),
                },
                NodeAddr::Ssh { host, port } => TransportSpec::Ssh {
                    host: host.clone(),
                    port: *port,
                    user: c.ssh.user.clone(),
                    private_key: c.ssh.private_key.as_ref().map(|p| p.display().to_string()),
                    passphrase: c.ssh.passphrase.as_ref().map(|p| p.expose().to_string()),
                    known_hosts: c.ssh.known_hosts.as_ref().map(|p| p.display().to_string()),
                    host_key: c.ssh.host_key.clone(),
                    use_agent: c.ssh.use_agent,
                    timeout_seconds: c.ssh.timeout_seconds,
                },
            };
            if file_instance.is_some() {
                transports.push(transport);
                continue;
            }
            let spec = NodeSpec {
                transport,
                config: cfg.clone(),
                config_file: c.containerd.config_file.clone(),
                restart_command: c
                    .containerd
                    .restart_command
                    .clone()
                    .unwrap_or_else(|| cfg.config_style.default_restart_command().to_string()),
                restart_command_sensitive: c.containerd.restart_command_sensitive,
            };
            let addr = node_address(c, n);
            match spec.to_desired(addr.clone()) {
                Ok(mut d) => {
                    d.dependencies.extend(deps.iter().cloned());
                    match &rollout {
                        Some(r) => d.attrs.insert(ROLLOUT_ATTR, r.to_json()),
                        None => d.dependencies.extend(previous_batch.iter().cloned()),
                    }
                    out.desired.push(d);
                    this_batch.push(addr.clone());
                    all_nodes.push(addr);
                    transports.push(spec.transport.clone());
                }
                Err(e) => out.errors.push(ExpandError {
                    address: address.clone(),
                    message: e.message,
                    help: e
                        .help
                        .unwrap_or_else(|| "check the cluster's registry_mirror settings".into()),
                }),
            }
        }
        previous_batch = this_batch;
    }
    if let Some(d) = file_instance {
        all_nodes.push(d.address.clone());
        out.desired.push(d);
    }
    if all_nodes.is_empty() {
        return;
    }
    // the cluster step: prove that a node pulls one of the cluster's images through the mirror
    let mirrored: Vec<String> = cfg.upstream_hosts().into_iter().collect();
    let candidate = out.desired.iter().find(|d| {
        used_images.contains(&d.address)
            && d.provider == "image"
            && d.attrs
                .get("upstream")
                .and_then(|u| u.as_str())
                .and_then(|u| ImageRef::parse(u).ok())
                .is_some_and(|r| mirrored.contains(&r.registry))
    });
    let image = candidate.and_then(|d| {
        d.attrs
            .get("upstream")
            .and_then(|u| u.as_str())
            .map(str::to_string)
    });
    let expected = candidate.and_then(|d| {
        d.attrs
            .get("digest")
            .and_then(|u| u.as_str())
            .map(str::to_string)
    });
    let required_files = match cfg.config_style {
        // the cluster software's files: proven by the canary pull only
        _ if c.cluster_config.is_some() => Vec::new(),
        mirrorplan_node::ConfigStyle::Hosts => mirrored
            .iter()
            .map(|h| format!("{}/{h}/hosts.toml", cfg.config_dir()))
            .collect(),
        mirrorplan_node::ConfigStyle::Legacy => vec![c.containerd.config_file.clone()],
        mirrorplan_node::ConfigStyle::RegistriesConf => vec![mirrorplan_node::drop_in_path(&cfg)],
        mirrorplan_node::ConfigStyle::K3s | mirrorplan_node::ConfigStyle::Rke2 => {
            vec![mirrorplan_node::registries_yaml_path(&cfg)]
        }
    };
    let mut hasher = blake3::Hasher::new();
    // over a secret (pull credentials, the gcr.io key, a sensitive restart
    // command) the digest is itself sensitive: stored only salted and keyed
    let mut over_secret = c.containerd.restart_command_sensitive;
    for d in out
        .desired
        .iter()
        .filter(|d| all_nodes.contains(&d.address))
    {
        // (not the rollout limits: they name the cluster and check nothing)
        for name in d.attrs.names().filter(|n| *n != ROLLOUT_ATTR) {
            if let Some(v) = d.attrs.get(name) {
                over_secret |= d.attrs.is_sensitive(name);
                hasher.update(name.as_bytes());
                hasher.update(v.to_string().as_bytes());
            }
        }
    }
    let spec = ClusterSpec {
        canary: transports
            .iter()
            .find(|t| matches!(t, TransportSpec::Ssh { .. }))
            .cloned(),
        nodes: transports,
        image,
        expected_digest: expected,
        required_files,
        config_digest: format!("blake3:{}", hasher.finalize().to_hex()),
        // the CRI socket of the runtime the style configures
        socket: cfg.config_style.cri_socket().to_string(),
    };
    let mut d = spec.to_desired(cluster_address(c));
    if over_secret {
        // an unkeyed digest over a secret would let one test guesses at it
        if let Some(v) = d.attrs.remove("config_digest") {
            d.attrs.insert_sensitive("config_digest", v);
        }
    }
    d.dependencies = all_nodes;
    out.desired.push(d);
}

/// `cluster.NAME` (`cluster.NAME_KEY` for a `for_each` cluster).
/// The engine addresses of a cluster or image set instance (`key`: its
/// `for_each` key), for moves: its own instance (`cluster.N`,
/// `image_set.N`), the unkeyed block of its nodes or images (`node.N`,
/// `image.N`) and, for a cluster, its cluster configuration file instance
/// (`cluster_config.N`), with the names folded as for the instances
/// planned. Two blocks of one kind give their addresses in the same order.
pub fn block_addresses(kind: &str, name: &str, key: Option<&str>) -> Option<Vec<Address>> {
    match kind {
        "cluster" => {
            let own = match key {
                Some(k) => format!("{name}_{k}"),
                None => name.to_string(),
            };
            Some(vec![
                instance_address("cluster", &own, None, "").without_key(),
                instance_address("node", name, key, "").without_key(),
                cluster_file::address_of(&own),
            ])
        }
        "image_set" => Some(vec![
            instance_address("image_set", name, key, "").without_key(),
            instance_address("image", name, key, "").without_key(),
        ]),
        _ => None,
    }
}

pub(crate) fn cluster_address(c: &Cluster) -> Address {
    let name = match &c.key {
        Some(k) => format!("{}_{k}", c.name),
        None => c.name.clone(),
    };
    instance_address("cluster", &name, None, "").without_key()
}

/// Credentials that would cross the network in clear: a plain-`http://`
/// registry with `username`/`password` or `docker_config` (warned on each
/// image set pushing to it or copying from it), and a `registry_mirror`
/// whose `pull_credentials` containerd sends to a plain-`http://`
/// registry (warned on the cluster). Every plan shows them.
pub fn clear_text_warnings(config: &Config) -> Vec<(Address, String)> {
    let clear = |r: &Registry| -> Option<String> {
        if !matches!(r.endpoint, Endpoint::Http { .. }) {
            return None;
        }
        let what = match (&r.username, &r.docker_config) {
            (Some(u), _) => format!("the password of user {u} travels"),
            (None, Some(_)) => "the credentials from its docker_config travel".to_string(),
            (None, None) => return None,
        };
        Some(format!(
            "registry.{} ({}) is plain http: {what} in clear on every request; use https",
            r.name, r.endpoint
        ))
    };
    let mut out = Vec::new();
    for set in &config.image_sets {
        let addr = instance_address("image_set", &set.name, set.key.as_deref(), "").without_key();
        let upstream_hosts: Vec<String> = set
            .images
            .iter()
            .cloned()
            .chain(
                set.repositories
                    .iter()
                    .map(|r| format!("{}:probe", r.repository)),
            )
            .filter_map(|i| ImageRef::parse(&i).ok().map(|r| r.registry))
            .collect();
        for r in config.registries.values() {
            let used = r.name == set.registry
                || r.endpoint
                    .host_port()
                    .is_some_and(|h| upstream_hosts.contains(&h));
            if let Some(w) = clear(r).filter(|_| used) {
                out.push((addr.clone(), w));
            }
        }
    }
    for c in &config.clusters {
        for m in c.mirrors.iter().filter(|m| m.pull_credentials.is_some()) {
            let Some(r) = config.registries.get(&m.registry) else {
                continue;
            };
            if matches!(r.endpoint, Endpoint::Http { .. }) {
                out.push((
                    cluster_address(c),
                    format!(
                        "registry_mirror registry.{} ({}) is plain http: the pull_credentials containerd sends to it travel in clear on every pull; use https",
                        r.name, r.endpoint
                    ),
                ));
            }
        }
    }
    out
}

/// Adds `warnings` to the plan's changes of their instances (an instance
/// outside a `--target`ed plan gets none).
pub fn attach_warnings(plan: &mut mirrorplan_engine::Plan, warnings: &[(Address, String)]) {
    for (addr, w) in warnings {
        if let Some(c) = plan.changes.iter_mut().find(|c| c.address == *addr) {
            if !c.warnings.contains(w) {
                c.warnings.push(w.clone());
            }
        }
    }
}

/// Where bundle summaries are cached between runs (see
/// `mirrorplan_registry::summary`): `.mirrorplan/cache/bundles/`.
pub fn bundle_cache_dir(dir: &Path) -> PathBuf {
    dir.join(".mirrorplan").join("cache").join("bundles")
}
