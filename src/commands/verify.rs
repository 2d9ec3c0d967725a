//! `mirrorplan verify`: the source document's two ways of proving that nodes
//! really pull through the mirror, run against what exists now.
//!
//! - Method 1, digests: every image's manifest digest in the mirror equals
//!   the expected source digest; on each cluster's canary (every SSH node
//!   with `--pull`, none with `--no-pull`) containerd pulls the cluster's
//!   image by its public name through CRI, and its `repoDigests` must hold
//!   the mirror's digest.
//! - Method 2, configuration: each node's live containerd configuration
//!   (hosts.toml files or config.toml) lists the mirror endpoints in order,
//!   the CA files exist and match, `config_path` and legacy `mirrors` are not
//!   both set, and containerd's CRI plugin answers. For the other runtime
//!   styles, every file the style writes is read back and compared.
//! - A cluster with `cluster_config`: the cluster configuration file says
//!   the configured `registryMirrors` / `gcrKeyPath`, and the CA and
//!   credential files it names hold what the last apply rolled out; its
//!   nodes' files are the cluster software's, so on them only CRI and the
//!   canary pull are checked.
//!
//! Nothing is written anywhere: the state is read without a lock, and the
//! only side effect is an image pull into a node's containerd, announced on
//! stderr and listed in the output.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use miette::miette;
use mirrorplan_engine::{Address, DesiredInstance};
use mirrorplan_node::cluster::ClusterSpec;
use mirrorplan_node::cluster_config::ClusterConfigSpec;
use mirrorplan_node::provider::{Connections, NodeSpec, TransportSpec};
use mirrorplan_node::{
    edit_config, hosts_endpoints, hosts_toml_path, inspect_config, ConfigStyle, ContainerdVersion,
    CriClient, LocalTransport, Transport,
};
use mirrorplan_registry::provider::{ImageProvider, ImageSpec};
use mirrorplan_registry::{Digest, OciStore};
use serde_json::json;

use crate::cli::{Format, PlanArgs, VerifyArgs};
use crate::commands::run::{prepare, store};
use crate::output::Output;

/// The version of `verify --json`.
pub const VERIFY_JSON_VERSION: &str = "1.0";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Ok,
    Fail,
    NotApplicable,
    Unreachable,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Fail => "FAIL",
            Status::NotApplicable => "n/a",
            Status::Unreachable => "UNREACHABLE",
        }
    }
    fn json(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "fail",
            Status::NotApplicable => "n/a",
            Status::Unreachable => "unreachable",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
struct Check {
    check: &'static str,
    target: String,
    status: Status,
    reason: String,
}

impl Check {
    fn new(
        check: &'static str,
        target: impl Into<String>,
        status: Status,
        reason: impl Into<String>,
    ) -> Self {
        Check {
            check,
            target: target.into(),
            status,
            reason: reason.into(),
        }
    }
}

/// `mirrorplan verify`
pub fn run(dir: &Path, args: &VerifyArgs, out: &Output) -> miette::Result<ExitCode> {
    let plan_args = PlanArgs {
        vars: args.vars.clone(),
        state: args.state.unlocked(),
        refresh: false,
        refresh_only: false,
        targets: Vec::new(),
        replace: Vec::new(),
        parallelism: 10,
        json: false,
        format: Format::Human,
        verbose: false,
        destroy: false,
    };
    let Some(ctx) = prepare(dir, &plan_args, out)? else {
        return Ok(ExitCode::from(1));
    };
    // read-only: no lock, and a missing state is only a note
    let state = store(dir, &args.state.unlocked())
        .load()
        .map_err(miette::Report::new)?;
    let recorded: Vec<String> = state
        .as_ref()
        .map(|s| s.instances().keys().cloned().collect())
        .unwrap_or_default();

    let images: Vec<&DesiredInstance> = ctx
        .desired
        .iter()
        .filter(|d| d.provider == "image")
        .filter(|d| {
            args.image_set
                .as_deref()
                .is_none_or(|s| in_set(&d.address, s))
        })
        .filter(|_| args.cluster.is_none() && args.node.is_none() || args.image_set.is_some())
        .collect();
    let clusters: Vec<&DesiredInstance> = ctx
        .desired
        .iter()
        .filter(|d| d.provider == "cluster")
        .filter(|d| {
            args.cluster
                .as_deref()
                .is_none_or(|c| in_set(&d.address, c))
        })
        .filter(|_| args.image_set.is_none() || args.cluster.is_some() || args.node.is_some())
        .collect();
    if let Some(c) = &args.cluster {
        if !ctx
            .desired
            .iter()
            .any(|d| d.provider == "cluster" && in_set(&d.address, c))
        {
            return Err(miette!(
                code = "mirrorplan::verify::no_such_cluster",
                help = "name a `cluster` block of the configuration (its label)",
                "--cluster {c}: the configuration has no such cluster"
            ));
        }
    }
    if let Some(s) = &args.image_set {
        if !ctx
            .desired
            .iter()
            .any(|d| d.provider == "image" && in_set(&d.address, s))
        {
            return Err(miette!(
                code = "mirrorplan::verify::no_such_image_set",
                help = "name an `image_set` block of the configuration (its label) that has images",
                "--image-set {s}: the configuration has no such image set"
            ));
        }
    }

    // the nodes to check, with their cluster and whether to pull on them
    let mut setup_rows = Vec::new();
    let mut node_plans = Vec::new();
    let mut file_checks: Vec<&DesiredInstance> = Vec::new();
    let mut cluster_nodes = Vec::new();
    for c in &clusters {
        let spec = match ClusterSpec::from_attrs(&c.attrs) {
            Ok(s) => s,
            Err(e) => {
                setup_rows.push(Check::new(
                    "cluster",
                    c.address.to_string(),
                    Status::Fail,
                    e.message,
                ));
                continue;
            }
        };
        // with `cluster_config` the cluster software writes the nodes: the
        // file is checked, and the nodes only answer CRI and pull
        if let Some(f) = ctx.desired.iter().find(|d| {
            d.provider == mirrorplan_node::cluster_config::KIND
                && d.address.name() == c.address.name()
        }) {
            if args.node.is_none() {
                file_checks.push(f);
            }
            for t in &spec.nodes {
                if let Some(h) = &args.node {
                    if !transport_matches(t, h) {
                        continue;
                    }
                }
                let is_canary = spec.canary.as_ref() == Some(t);
                let pull = !args.no_pull
                    && matches!(t, TransportSpec::Ssh { .. })
                    && (args.pull || is_canary);
                let target = format!("{} {}", c.address, transport_label(t));
                cluster_nodes.push((target, t.clone(), spec.clone(), pull));
            }
            continue;
        }
        for n in ctx
            .desired
            .iter()
            .filter(|d| d.provider == "node" && d.address.name() == c.address.name())
        {
            let Ok(nspec) = NodeSpec::from_attrs(&n.attrs) else {
                setup_rows.push(Check::new(
                    "node",
                    n.address.to_string(),
                    Status::Fail,
                    "the node's settings cannot be read back (a bug in mirrorplan)",
                ));
                continue;
            };
            if let Some(h) = &args.node {
                if !node_matches(&n.address, &nspec.transport, h) {
                    continue;
                }
            }
            let is_canary = spec.canary.as_ref() == Some(&nspec.transport);
            let pull = !args.no_pull
                && matches!(nspec.transport, TransportSpec::Ssh { .. })
                && (args.pull || is_canary);
            node_plans.push((n.address.clone(), nspec, spec.clone(), pull));
        }
    }
    if let Some(h) = &args.node {
        if node_plans.is_empty() && cluster_nodes.is_empty() {
            return Err(miette!(
                code = "mirrorplan::verify::no_such_node",
                help = "give the host (or host:port) as written in the cluster's `nodes`",
                "--node {h}: no cluster of the configuration has such a node"
            ));
        }
    }

    let provider = ctx.images.clone();
    let connections = Arc::new(Connections::default());
    let color = out.color_stderr;
    let checks = ctx.rt.block_on(async {
        let mut checks = setup_rows;
        let image_jobs = images.iter().map(|d| check_image(&provider, d, &recorded));
        for rows in futures::future::join_all(image_jobs).await {
            checks.extend(rows);
        }
        let node_jobs = node_plans.into_iter().map(|(address, nspec, spec, pull)| {
            check_node(connections.clone(), address, nspec, spec, pull, color)
        });
        for rows in futures::future::join_all(node_jobs).await {
            checks.extend(rows);
        }
        for f in &file_checks {
            checks.extend(check_cluster_file(f, state.as_ref()));
        }
        let cluster_jobs = cluster_nodes
            .into_iter()
            .map(|(target, transport, spec, pull)| {
                check_cluster_node(connections.clone(), target, transport, spec, pull, color)
            });
        for rows in futures::future::join_all(cluster_jobs).await {
            checks.extend(rows);
        }
        checks
    });

    let pulled: Vec<&Check> = checks
        .iter()
        .filter(|c| c.check == "pull" && c.status != Status::NotApplicable)
        .collect();
    if args.json {
        let v = json!({
            "format_version": VERIFY_JSON_VERSION,
            "ok": checks.iter().all(|c| matches!(c.status, Status::Ok | Status::NotApplicable)),
            "unreachable": checks.iter().any(|c| c.status == Status::Unreachable),
            "pulled": pulled.iter().map(|c| c.target.clone()).collect::<Vec<_>>(),
            "checks": checks.iter().map(|c| json!({
                "check": c.check,
                "target": c.target,
                "status": c.status.json(),
                "reason": c.reason,
            })).collect::<Vec<_>>(),
            "summary": summary_json(&checks),
        });
        crate::output::print_document(&serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", render_table(&checks, out.color_stdout));
    }
    let _ = std::io::stdout().flush();

    let unreachable: Vec<&Check> = checks
        .iter()
        .filter(|c| c.status == Status::Unreachable)
        .collect();
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if !unreachable.is_empty() {
        let list: Vec<String> = unreachable
            .iter()
            .map(|c| format!("{}: {}", c.target, c.reason))
            .collect();
        return Err(miette!(
            code = "mirrorplan::verify::unreachable",
            help = "this is not a verification failure: the checks could not run. Check the network path, SSH access and registry credentials, then run verify again",
            "could not reach {} target(s), so they were not verified:\n  {}",
            unreachable.len(),
            list.join("\n  ")
        ));
    }
    if failed > 0 {
        eprintln!(
            "\nVerification failed: {failed} of {} checks failed.",
            checks.len()
        );
        return Ok(ExitCode::from(1));
    }
    eprintln!("\nVerification passed: {} checks.", checks.len());
    Ok(ExitCode::SUCCESS)
}

fn summary_json(checks: &[Check]) -> serde_json::Value {
    let n = |s: Status| checks.iter().filter(|c| c.status == s).count();
    json!({
        "ok": n(Status::Ok),
        "fail": n(Status::Fail),
        "n/a": n(Status::NotApplicable),
        "unreachable": n(Status::Unreachable),
    })
}

/// `image.SET[...]` / `cluster.NAME` belongs to the block named `name`
/// (a `for_each` instance's name is `NAME_KEY`).
fn in_set(address: &Address, name: &str) -> bool {
    let n = address.name();
    n == name
        || n.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('_'))
}

fn node_matches(address: &Address, transport: &TransportSpec, wanted: &str) -> bool {
    address.key() == Some(wanted) || transport_matches(transport, wanted)
}

fn transport_matches(transport: &TransportSpec, wanted: &str) -> bool {
    match transport {
        TransportSpec::Ssh { host, port, .. } => {
            host == wanted || format!("{host}:{port}") == wanted
        }
        TransportSpec::Local { root } => {
            wanted.strip_prefix("local:").unwrap_or(wanted) == root.as_str()
        }
    }
}

/// `HOST:PORT` or `local:ROOT`, as a cluster's `nodes` name them.
fn transport_label(transport: &TransportSpec) -> String {
    match transport {
        TransportSpec::Ssh { host, port, .. } => format!("{host}:{port}"),
        TransportSpec::Local { root } => format!("local:{root}"),
    }
}

/// The cluster configuration file of a `cluster_config` cluster: its
/// `registryMirrors` / `gcrKeyPath` say what the configuration says, and
/// the CA certificates and credential files it names hold what the last
/// apply rolled out (the cluster software copied them to the nodes then).
fn check_cluster_file(d: &DesiredInstance, state: Option<&mirrorplan_state::State>) -> Vec<Check> {
    let target = d.address.to_string();
    let spec = match ClusterConfigSpec::from_attrs(&d.attrs) {
        Ok(s) => s,
        Err(e) => return vec![Check::new("file", target, Status::Fail, e.message)],
    };
    let file = spec.file.display().to_string();
    let mut rows = Vec::new();
    match spec.read_back() {
        Err(e) => rows.push(Check::new("file", &target, Status::Fail, e.message)),
        Ok(changes) if changes.is_empty() => rows.push(Check::new(
            "file",
            &target,
            Status::Ok,
            format!("{file} says registryMirrors and gcrKeyPath as configured"),
        )),
        Ok(changes) => {
            for (key, _, _) in changes {
                rows.push(Check::new(
                    "file",
                    &target,
                    Status::Fail,
                    format!("{key} in {file} differs from the configuration (edited outside mirrorplan, or not applied; run `mirrorplan plan`)"),
                ));
            }
        }
    }
    let Some((record, state)) = state.and_then(|s| Some((s.instance(&target)?, s))) else {
        rows.push(Check::new(
            "file",
            &target,
            Status::Fail,
            format!("{file} was never applied (not in the state: run `mirrorplan apply`)"),
        ));
        return rows;
    };
    let recorded = record
        .attributes
        .get(mirrorplan_node::cluster_config::CA_CERTS)
        .and_then(serde_json::Value::as_object);
    for (path, digest) in &spec.ca_certs {
        let was = recorded.and_then(|r| r.get(path)).and_then(|v| v.as_str());
        rows.push(if was == Some(digest.as_str()) {
            Check::new("ca", &target, Status::Ok, format!("{path} is the CA the last apply rolled out"))
        } else {
            Check::new(
                "ca",
                &target,
                Status::Fail,
                format!("{path} (caCertPath in {file}) has changed since the last apply: the nodes have the old CA (run `mirrorplan apply`)"),
            )
        });
    }
    if let Some(c) = &spec.credentials {
        let key = mirrorplan_node::cluster_config::CREDENTIALS;
        let same = record.sensitive.get(key) == Some(&state.digest_secret(c.as_bytes()));
        rows.push(if same {
            Check::new("credentials", &target, Status::Ok, "the pull credentials and gcr.io key are those the last apply rolled out")
        } else {
            Check::new(
                "credentials",
                &target,
                Status::Fail,
                format!("the pull credentials or gcr.io key files {file} names have changed since the last apply (run `mirrorplan apply`)"),
            )
        });
    }
    rows
}

/// A node of a `cluster_config` cluster: its runtime's files are the
/// cluster software's, so only CRI and the pull are checked.
async fn check_cluster_node(
    connections: Arc<Connections>,
    target: String,
    transport: TransportSpec,
    cluster: ClusterSpec,
    pull: bool,
    color: bool,
) -> Vec<Check> {
    let mut rows = vec![Check::new(
        "config",
        &target,
        Status::NotApplicable,
        "written by the cluster software through update_command: the cluster configuration file is checked instead",
    )];
    check_cri_and_pull(
        &connections,
        &target,
        &transport,
        &cluster,
        pull,
        color,
        &mut rows,
    )
    .await;
    rows
}

/// The table: CHECK, TARGET, STATUS, REASON.
fn render_table(checks: &[Check], color: bool) -> String {
    let w_check = checks
        .iter()
        .map(|c| c.check.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let w_target = checks
        .iter()
        .map(|c| c.target.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let w_status = 11;
    let mut out = format!(
        "{:<w_check$}  {:<w_target$}  {:<w_status$}  REASON\n",
        "CHECK", "TARGET", "STATUS"
    );
    for c in checks {
        let word = format!("{:<w_status$}", c.status.word());
        let word = if color {
            let code = match c.status {
                Status::Ok => "32",
                Status::Fail | Status::Unreachable => "31",
                Status::NotApplicable => "2",
            };
            format!("\x1b[{code}m{word}\x1b[0m")
        } else {
            word
        };
        // a reason may quote what a node or registry said
        let line = format!(
            "{:<w_check$}  {:<w_target$}  {word}  {}",
            c.check,
            mirrorplan_engine::escape_controls(&c.target),
            mirrorplan_engine::escape_controls(&c.reason)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let n = |s: Status| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "\n{} checks: {} ok, {} failed, {} unreachable, {} n/a.\n",
        checks.len(),
        n(Status::Ok),
        n(Status::Fail),
        n(Status::Unreachable),
        n(Status::NotApplicable)
    ));
    out
}

/// Method 1 for one image: the mirror serves the expected digest.
async fn check_image(
    provider: &ImageProvider,
    d: &DesiredInstance,
    recorded: &[String],
) -> Vec<Check> {
    let target = d.address.to_string();
    let spec = match ImageSpec::from_attrs(&d.attrs) {
        Ok(s) => s,
        Err(e) => return vec![Check::new("digest", target, Status::Fail, e.message)],
    };
    let reference = spec.tag.clone().unwrap_or_else(|| spec.digest.clone());
    let where_ = format!("{}:{reference}", spec.repository);
    let never = if recorded.contains(&target) {
        ""
    } else {
        " (not in the state: run `mirrorplan apply` first)"
    };
    let found: Result<Option<String>, (bool, String)> = match spec.mirror.oci_path() {
        Some(path) => {
            if !path.join("oci-layout").is_file() {
                Ok(None)
            } else {
                match OciStore::open_or_create(&path) {
                    Ok(store) => store
                        .resolve(&spec.repository, &reference)
                        .map(|o| o.map(|d| d.digest.to_string()))
                        .map_err(|e| (false, format!("oci store {}: {e}", path.display()))),
                    Err(e) => Err((false, format!("oci store {}: {e}", path.display()))),
                }
            }
        }
        None => match provider.client(&spec.mirror) {
            Err(e) => Err((e.is_unreachable(), e.message)),
            Ok(client) => client
                .head_manifest(&spec.repository, &reference)
                .await
                .map(|o| o.map(|m| m.digest.to_string()))
                .map_err(|e| {
                    let unreachable =
                        matches!(e, mirrorplan_registry::RegistryError::Connect { .. });
                    (unreachable, format!("{}: {e}", spec.mirror.endpoint))
                }),
        },
    };
    let row = match found {
        Ok(Some(digest)) if digest == spec.digest => Check::new(
            "digest",
            target,
            Status::Ok,
            format!("{where_} is {}", short(&digest)),
        ),
        Ok(Some(digest)) => Check::new(
            "digest",
            target,
            Status::Fail,
            format!(
                "{where_} in {} is {}, expected {} (the tag was moved or its content replaced)",
                spec.mirror.endpoint, digest, spec.digest
            ),
        ),
        Ok(None) => Check::new(
            "digest",
            target,
            Status::Fail,
            format!("{where_} is missing in {}{never}", spec.mirror.endpoint),
        ),
        Err((true, msg)) => Check::new("digest", target, Status::Unreachable, msg),
        Err((false, msg)) => Check::new("digest", target, Status::Fail, msg),
    };
    vec![row]
}

fn short(digest: &str) -> String {
    match Digest::parse(digest) {
        Ok(d) => d.to_string(),
        Err(_) => digest.to_string(),
    }
}

/// Method 2 (and the pull of method 1) for one node.
async fn check_node(
    connections: Arc<Connections>,
    address: Address,
    spec: NodeSpec,
    cluster: ClusterSpec,
    pull: bool,
    color: bool,
) -> Vec<Check> {
    let target = address.to_string();
    let mut rows = Vec::new();
    let transport: Arc<dyn Transport> = match &spec.transport {
        TransportSpec::Local { root } => {
            if !Path::new(root).is_dir() {
                rows.push(Check::new(
                    "files",
                    &target,
                    Status::Fail,
                    format!("the directory {root} does not exist (never applied?)"),
                ));
                return rows;
            }
            Arc::new(LocalTransport::new(root))
        }
        TransportSpec::Ssh { .. } => match connections.open(&spec.transport).await {
            Ok(t) => t,
            Err(e) => {
                let status = if e.is_unreachable() {
                    Status::Unreachable
                } else {
                    Status::Fail
                };
                rows.push(Check::new("ssh", &target, status, e.message));
                return rows;
            }
        },
    };
    let read = |path: String| {
        let t = transport.clone();
        async move { t.read_file(&path).await }
    };
    let cfg = &spec.config;
    let rendered = match spec.rendered_files() {
        Ok(f) => f,
        Err(e) => {
            rows.push(Check::new("files", &target, Status::Fail, e.message));
            return rows;
        }
    };
    // config.toml is containerd's: the other styles never read nor write it
    let containerd_cfg = cfg.config_style.edits_containerd_config();
    if !containerd_cfg {
        rows.push(Check::new(
            "config",
            &target,
            Status::NotApplicable,
            format!(
                "config_style = \"{}\" does not use {}: containerd's config checks are skipped",
                cfg.config_style, spec.config_file
            ),
        ));
    }
    let live_config = match read(spec.config_file.clone()).await {
        Ok(_) if !containerd_cfg => None,
        Ok(c) => c,
        Err(e) => {
            rows.push(Check::new(
                "config",
                &target,
                Status::Unreachable,
                format!("reading {}: {e}", spec.config_file),
            ));
            return rows;
        }
    };
    let facts = match &live_config {
        None if !containerd_cfg => None,
        Some(bytes) => match inspect_config(&String::from_utf8_lossy(bytes)) {
            Ok(f) => Some(f),
            Err(e) => {
                rows.push(Check::new(
                    "config",
                    &target,
                    Status::Fail,
                    format!("{} is not valid TOML: {e}", spec.config_file),
                ));
                None
            }
        },
        None => {
            rows.push(Check::new(
                "config",
                &target,
                Status::Fail,
                format!("{} does not exist", spec.config_file),
            ));
            None
        }
    };

    match cfg.config_style {
        ConfigStyle::Hosts => {
            if let Some(f) = &facts {
                let want = cfg.config_dir();
                rows.push(match f.config_path.as_deref() {
                    Some(p) if p == want => Check::new(
                        "config",
                        &target,
                        Status::Ok,
                        format!("{} sets config_path = {p}", spec.config_file),
                    ),
                    Some(p) => Check::new(
                        "config",
                        &target,
                        Status::Fail,
                        format!("{} sets config_path = {p}, not {want}: containerd does not read mirrorplan's hosts files", spec.config_file),
                    ),
                    None => Check::new(
                        "config",
                        &target,
                        Status::Fail,
                        format!("{} has no registry config_path: containerd does not read {want}", spec.config_file),
                    ),
                });
            }
            for host in cfg.upstream_hosts() {
                let path = hosts_toml_path(cfg, &host);
                let Some(want) = rendered.iter().find(|f| f.path == path) else {
                    continue;
                };
                let label = format!("{target} {host}");
                match read(path.clone()).await {
                    Ok(None) => rows.push(Check::new(
                        "hosts",
                        label,
                        Status::Fail,
                        format!("{path} is missing"),
                    )),
                    Ok(Some(live)) => {
                        let want_ep = hosts_endpoints(&String::from_utf8_lossy(&want.contents));
                        let live_ep = hosts_endpoints(&String::from_utf8_lossy(&live));
                        rows.push(if want_ep != live_ep {
                            Check::new(
                                "hosts",
                                label,
                                Status::Fail,
                                format!("{path} lists {live_ep:?}, expected {want_ep:?} in this order"),
                            )
                        } else if live != want.contents {
                            Check::new(
                                "hosts",
                                label,
                                Status::Fail,
                                format!("{path} lists the right endpoints but differs from what mirrorplan renders (edited outside mirrorplan; run `mirrorplan plan`)"),
                            )
                        } else {
                            Check::new(
                                "hosts",
                                label,
                                Status::Ok,
                                format!("{path} lists {}", want_ep.join(", ")),
                            )
                        });
                    }
                    Err(e) => rows.push(Check::new(
                        "hosts",
                        label,
                        Status::Unreachable,
                        format!("reading {path}: {e}"),
                    )),
                }
            }
        }
        ConfigStyle::RegistriesConf | ConfigStyle::K3s | ConfigStyle::Rke2 => {
            // every file the style writes, as rendered: node and file named
            for f in &rendered {
                let label = format!("{target} {}", f.path.rsplit('/').next().unwrap_or(""));
                rows.push(match read(f.path.clone()).await {
                    Ok(None) => Check::new("files", label, Status::Fail, format!("{} is missing", f.path)),
                    Ok(Some(live)) if live == f.contents => {
                        Check::new("files", label, Status::Ok, format!("{} matches", f.path))
                    }
                    Ok(Some(_)) => Check::new(
                        "files",
                        label,
                        Status::Fail,
                        format!(
                            "{} differs from what mirrorplan renders (edited outside mirrorplan; run `mirrorplan plan`)",
                            f.path
                        ),
                    ),
                    Err(e) => Check::new(
                        "files",
                        label,
                        Status::Unreachable,
                        format!("reading {}: {e}", f.path),
                    ),
                });
            }
        }
        ConfigStyle::Legacy => {
            if let Some(f) = &facts {
                let wanted = edit_config("", ContainerdVersion::V1, cfg)
                    .ok()
                    .and_then(|e| inspect_config(&e.text).ok())
                    .map(|f| f.legacy_mirrors)
                    .unwrap_or_default();
                for host in cfg.upstream_hosts() {
                    let Some(want) = wanted.get(&host) else {
                        continue;
                    };
                    let label = format!("{target} {host}");
                    rows.push(match f.legacy_mirrors.get(&host) {
                        Some(live) if live == want => Check::new(
                            "mirrors",
                            label,
                            Status::Ok,
                            format!("{} lists {}", spec.config_file, want.join(", ")),
                        ),
                        Some(live) => Check::new(
                            "mirrors",
                            label,
                            Status::Fail,
                            format!(
                                "{} lists {live:?} for {host}, expected {want:?} in this order",
                                spec.config_file
                            ),
                        ),
                        None => Check::new(
                            "mirrors",
                            label,
                            Status::Fail,
                            format!(
                                "{} has no registry.mirrors entry for {host}",
                                spec.config_file
                            ),
                        ),
                    });
                }
            }
        }
    }

    // CA files (and, in legacy style, the other rendered files)
    for f in rendered
        .iter()
        .filter(|f| containerd_cfg && !f.path.ends_with("/hosts.toml"))
    {
        let label = format!("{target} {}", f.path.rsplit('/').nth(1).unwrap_or(""));
        rows.push(match read(f.path.clone()).await {
            Ok(None) => Check::new("ca", label, Status::Fail, format!("{} is missing", f.path)),
            Ok(Some(live)) if live == f.contents => {
                Check::new("ca", label, Status::Ok, format!("{} matches", f.path))
            }
            Ok(Some(_)) => Check::new(
                "ca",
                label,
                Status::Fail,
                format!("{} differs from the configured CA certificate", f.path),
            ),
            Err(e) => Check::new(
                "ca",
                label,
                Status::Unreachable,
                format!("reading {}: {e}", f.path),
            ),
        });
    }

    if let Some(f) = &facts {
        rows.push(if f.conflict {
            Check::new(
                "conflict",
                &target,
                Status::Fail,
                format!("{} sets both config_path and legacy registry.mirrors ({}): containerd refuses to load its CRI plugin", spec.config_file, f.legacy_mirrors.keys().cloned().collect::<Vec<_>>().join(", ")),
            )
        } else {
            Check::new(
                "conflict",
                &target,
                Status::Ok,
                "config_path and legacy mirrors are not both set",
            )
        });
    }

    check_cri_and_pull(
        &connections,
        &target,
        &spec.transport,
        &cluster,
        pull,
        color,
        &mut rows,
    )
    .await;
    rows
}

/// The CRI plugin of an SSH node answers, and (with `pull`) the runtime
/// pulls the cluster's image by its public name with the mirror's digest.
async fn check_cri_and_pull(
    connections: &Connections,
    target: &str,
    transport: &TransportSpec,
    cluster: &ClusterSpec,
    pull: bool,
    color: bool,
    rows: &mut Vec<Check>,
) {
    let TransportSpec::Ssh { .. } = transport else {
        rows.push(Check::new(
            "cri",
            target,
            Status::NotApplicable,
            "local: node, no containerd to ask",
        ));
        return;
    };
    let ssh = match connections.ssh(transport).await {
        Ok(s) => s,
        Err(e) => {
            rows.push(Check::new("cri", target, Status::Unreachable, e.message));
            return;
        }
    };
    let cri = match CriClient::over_ssh(&ssh, &cluster.socket).await {
        Ok(c) => match c.version().await {
            Ok(v) => {
                rows.push(Check::new(
                    "cri",
                    target,
                    Status::Ok,
                    format!(
                        "{} {} answers (CRI {})",
                        v.runtime_name, v.runtime_version, v.runtime_api_version
                    ),
                ));
                Some(c)
            }
            Err(e) => {
                rows.push(Check::new(
                    "cri",
                    target,
                    Status::Fail,
                    format!("containerd's CRI plugin does not answer: {e}"),
                ));
                None
            }
        },
        Err(e) => {
            rows.push(Check::new(
                "cri",
                target,
                Status::Fail,
                format!("the runtime does not answer on {}: {e}", cluster.socket),
            ));
            None
        }
    };
    if !pull {
        return;
    }
    let (Some(image), Some(expected)) = (&cluster.image, &cluster.expected_digest) else {
        rows.push(Check::new(
            "pull",
            target,
            Status::NotApplicable,
            "no image of the cluster's image sets is on a mirrored host",
        ));
        return;
    };
    let Some(cri) = cri else {
        rows.push(Check::new(
            "pull",
            target,
            Status::Fail,
            format!("cannot pull {image}: the CRI plugin does not answer"),
        ));
        return;
    };
    let note = format!("{target}: pulling {image} into the node's containerd (verify pulls; nothing else is changed)");
    if color {
        eprintln!("\x1b[2m{note}\x1b[0m");
    } else {
        eprintln!("{note}");
    }
    let row = match cri.pull(image, None).await {
        Err(e) => Check::new(
            "pull",
            target,
            Status::Fail,
            format!("pulling {image} by its public name failed: {e}"),
        ),
        Ok(_) => match cri.image_status(image).await {
            Ok(Some(info)) if info.repo_digests.iter().any(|d| d.ends_with(&format!("@{expected}"))) => Check::new(
                "pull",
                target,
                Status::Ok,
                format!("pulled {image}: repoDigests hold the mirror's {expected}"),
            ),
            Ok(Some(info)) => Check::new(
                "pull",
                target,
                Status::Fail,
                format!("pulled {image}, but repoDigests {:?} do not hold the expected digest {expected}: the node did not get the expected content", info.repo_digests),
            ),
            Ok(None) => Check::new("pull", target, Status::Fail, format!("{image} is not in containerd after the pull")),
            Err(e) => Check::new("pull", target, Status::Fail, format!("image status of {image}: {e}")),
        },
    };
    rows.push(row);
}
