//! Issue 11, item 3: injected faults, through the `mirrorplan` binary.
//!
//! Registry faults go through the harness's [`FaultProxy`] in front of a
//! REAL plain-HTTP registry (HTTP mode: the proxy sees each request, so it
//! can answer 500/503/429 itself, stall, delay, reset or truncate), or in
//! front of a TLS registry (TCP mode: bytes only). Also: a registry whose
//! disk fills up (its storage on a small tmpfs), the state directory on a
//! full tmpfs, and SSH cut at every step of a node write (a TCP proxy in
//! front of a real node's sshd).
//!
//! Every test checks the same four things: the apply completes (retries) or
//! fails with exit 1 and a message naming what failed; the state still
//! loads (`mirrorplan state list`, `state.json` parses); nothing is
//! half-written (every tag in the registry resolves to a manifest whose
//! blobs exist; every node file is its old or its new content); and an
//! apply without the fault converges (exit 0, then `plan
//! --detailed-exitcode` exits 0) without uploading again a blob whose
//! upload the registry had already completed.

mod nodes_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mirrorplan_harness::proxy::http_request;
use mirrorplan_harness::{
    Fault, FaultProxy, Node, ProxiedRequest, ProxyMode, Registry, RegistryOptions, Rule, Tmpfs,
};
use mirrorplan_registry::fixtures::{
    write_oci_bundle, Fixture, FixtureSpec, LayerCompression, Packing,
};

/// A run of mirrorplan that takes longer than this is a hang.
const HANG: Duration = Duration::from_secs(180);

/// The namespace images are mirrored under.
const NS: &str = "mirror";

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    out: String,
}

/// Runs `mirrorplan -C DIR ARGS` (no proxy variables from the caller),
/// killing it and failing the test if it runs longer than [`HANG`].
fn mp(dir: &Path, args: &[&str]) -> Run {
    let mut c = nodes_support::bin();
    for v in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        c.env_remove(v);
    }
    c.arg("-C")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = ok(c.spawn(), "spawn mirrorplan");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let o: Output = match rx.recv_timeout(HANG) {
        Ok(r) => ok(r, "wait for mirrorplan"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("mirrorplan {args:?} hangs (over {HANG:?})");
        }
    };
    let out = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        !out.contains("panicked"),
        "mirrorplan {args:?} panicked:\n{out}"
    );
    assert!(
        !out.contains(nodes_support::PASSWORD),
        "mirrorplan {args:?} printed the password:\n{out}"
    );
    Run {
        code: o.status.code().unwrap_or(-1),
        out,
    }
}

fn expect(r: &Run, code: i32, what: &str) {
    assert_eq!(r.code, code, "{what}: expected exit {code}:\n{}", r.out);
}

/// The state loads: `state list` works and `state.json` parses.
fn assert_state_loads(dir: &Path) {
    let r = mp(dir, &["state", "list"]);
    expect(&r, 0, "state list");
    let path = dir.join(".mirrorplan/state.json");
    if let Ok(bytes) = std::fs::read(&path) {
        let v: Result<serde_json::Value, _> = serde_json::from_slice(&bytes);
        assert!(v.is_ok(), "{} does not parse: {v:?}", path.display());
    }
}

/// The manifest types a registry may answer with.
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Reads every tag of a plain-HTTP registry directly (not through the
/// proxy) and checks that each resolves to a manifest whose blobs (and
/// children, for an index) all exist. Returns `repo:tag` → digest.
fn registry_contents(addr: std::net::SocketAddr) -> BTreeMap<String, String> {
    let get = |method: &str, target: &str| {
        ok(
            http_request(addr, method, target, &MANIFEST_TYPES),
            "registry request",
        )
    };
    let (status, _, body) = get("GET", "/v2/_catalog?n=1000");
    assert_eq!(status, 200, "catalog");
    let cat: serde_json::Value = ok(serde_json::from_slice(&body), "catalog JSON");
    let mut out = BTreeMap::new();
    for repo in cat["repositories"].as_array().into_iter().flatten() {
        let repo = repo.as_str().unwrap_or_default();
        let (status, _, body) = get("GET", &format!("/v2/{repo}/tags/list"));
        if status == 404 {
            continue; // a repository whose tags were all deleted
        }
        assert_eq!(status, 200, "tags of {repo}");
        let tags: serde_json::Value = ok(serde_json::from_slice(&body), "tags JSON");
        for tag in tags["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap_or_default();
            let digest = check_manifest(&get, repo, tag);
            out.insert(format!("{repo}:{tag}"), digest);
        }
    }
    out
}

/// What [`http_request`] answers: status, headers, body.
type Answer = (u16, BTreeMap<String, String>, Vec<u8>);

/// GETs `repo`'s manifest `reference` and checks what it refers to.
fn check_manifest(get: &dyn Fn(&str, &str) -> Answer, repo: &str, reference: &str) -> String {
    let (status, headers, body) = get("GET", &format!("/v2/{repo}/manifests/{reference}"));
    assert_eq!(
        status, 200,
        "{repo}:{reference} is listed but its manifest is missing (a half-written push)"
    );
    let m: serde_json::Value = ok(serde_json::from_slice(&body), "manifest JSON");
    for child in m["manifests"].as_array().into_iter().flatten() {
        check_manifest(get, repo, child["digest"].as_str().unwrap_or_default());
    }
    let blobs = m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&m["config"]))
        .filter_map(|b| b["digest"].as_str());
    for b in blobs {
        let (status, _, _) = get("HEAD", &format!("/v2/{repo}/blobs/{b}"));
        assert_eq!(
            status, 200,
            "{repo}:{reference} refers to blob {b}, which is missing"
        );
    }
    headers
        .get("docker-content-digest")
        .cloned()
        .unwrap_or_default()
}

/// `gcr.io/a/b:t` → `NS/a/b:t`.
fn mirror_tag(upstream: &str) -> String {
    let path = upstream.split_once('/').map_or(upstream, |(_, p)| p);
    format!("{NS}/{path}")
}

/// Digests whose upload the registry completed (`PUT …?digest=` → 201).
fn completed_uploads(reqs: &[ProxiedRequest]) -> BTreeSet<String> {
    reqs.iter()
        .filter(|r| r.status == Some(201))
        .filter_map(ProxiedRequest::uploaded_digest)
        .collect()
}

/// Digests whose upload was finished (any answer) in `reqs`.
fn attempted_uploads(reqs: &[ProxiedRequest]) -> BTreeSet<String> {
    reqs.iter()
        .filter_map(ProxiedRequest::uploaded_digest)
        .collect()
}

fn small_spec(seed: u64, images: usize, layer_size: usize) -> FixtureSpec {
    FixtureSpec {
        seed,
        images,
        layers_per_image: 2,
        shared_base_layers: 1,
        layer_size,
        multi_arch: false,
        layer_compression: LayerCompression::Gzip,
    }
}

fn bundle(dir: &Path, name: &str, spec: &FixtureSpec) -> Fixture {
    ok(
        write_oci_bundle(dir.join(format!("{name}.tar.gz")), spec, Packing::TarGz),
        "write bundle",
    )
}

/// A plain-HTTP registry behind an HTTP-mode proxy, and a configuration
/// pushing one bundle into it through the proxy.
struct RegistryLab {
    registry: Registry,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
    fixture: Fixture,
}

impl RegistryLab {
    fn start(seed: u64, spec: &FixtureSpec, opts: RegistryOptions) -> Self {
        let registry = ok(Registry::start(opts), "start the registry");
        let proxy = ok(
            FaultProxy::start(registry.addr(), ProxyMode::Http, seed),
            "start the proxy",
        );
        let dir = ok(
            tempfile::Builder::new().prefix("mp-faults-").tempdir(),
            "tempdir",
        );
        let fixture = bundle(dir.path(), "bundle", spec);
        let lab = RegistryLab {
            registry,
            proxy,
            dir,
            fixture,
        };
        lab.write_config();
        lab
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self) {
        let hcl = format!(
            "registry \"mirror\" {{\n  endpoint  = \"http://{}\"\n  namespace = \"{NS}\"\n}}\n\n\
             image_set \"bundle\" {{\n  registry = registry.mirror\n  bundle   = \"bundle.tar.gz\"\n}}\n",
            self.proxy.host_port()
        );
        ok(
            std::fs::write(self.path().join("main.hcl"), hcl),
            "write main.hcl",
        );
    }

    /// Every image of the bundle is in the registry with its digest.
    fn assert_all_mirrored(&self) {
        let have = registry_contents(self.registry.addr());
        for img in &self.fixture.images {
            let want = img
                .manifest_digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert_eq!(
                have.get(&mirror_tag(&img.name)),
                Some(&want),
                "{} in {have:?}",
                img.name
            );
        }
    }
}

/// How a run under a fault must end.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Exit 0: the client retried.
    Completes,
    /// Exit 1 with a message holding every one of these.
    FailsNaming(&'static [&'static str]),
    /// Either of the two (the fault may or may not hit a request that is
    /// retried, depending on where it lands).
    CompletesOrFailsNaming(&'static [&'static str]),
}

/// The whole check of one registry fault: apply under `rules`, then the
/// four checks of the module docs. Returns how many faults were injected.
fn registry_fault(seed: u64, spec: &FixtureSpec, rules: Vec<Rule>, outcome: Outcome) -> u64 {
    let mut injected = 0;
    registry_fault_with(
        seed,
        spec,
        RegistryOptions::default(),
        |lab| lab.proxy.set_rules(rules),
        |lab, first| {
            injected = lab.proxy.injected().values().sum();
            assert!(injected > 0, "no fault was injected:\n{}", first.out);
            lab.proxy.clear_rules();
        },
        outcome,
    );
    injected
}

/// [`registry_fault`] with any fault: `arm` sets it up, `disarm` (given
/// the first apply) removes it.
fn registry_fault_with(
    seed: u64,
    spec: &FixtureSpec,
    opts: RegistryOptions,
    arm: impl FnOnce(&RegistryLab),
    disarm: impl FnOnce(&RegistryLab, &Run),
    outcome: Outcome,
) {
    let lab = RegistryLab::start(seed, spec, opts);
    arm(&lab);
    let first = mp(lab.path(), &["apply", "--auto-approve"]);
    let check_failure = |needles: &[&str]| {
        expect(&first, 1, "apply under the fault");
        for n in needles {
            assert!(
                first.out.contains(n),
                "the failure does not say {n:?}:\n{}",
                first.out
            );
        }
        assert!(
            first.out.contains(&lab.proxy.host_port()),
            "the failure does not name the registry:\n{}",
            first.out
        );
    };
    match outcome {
        Outcome::Completes => expect(&first, 0, "apply under the fault"),
        Outcome::FailsNaming(needles) => check_failure(needles),
        Outcome::CompletesOrFailsNaming(needles) => {
            if first.code != 0 {
                check_failure(needles);
            }
        }
    }
    disarm(&lab, &first);
    assert_state_loads(lab.path());
    // nothing half-written: every tag resolves, blobs and all
    registry_contents(lab.registry.addr());
    let run1 = lab.proxy.requests();
    let done1 = completed_uploads(&run1);
    lab.proxy.clear_log();

    let second = mp(lab.path(), &["apply", "--auto-approve"]);
    if second.code != 0 {
        let log = std::fs::read_to_string(lab.registry.log_path()).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("level=error")).collect();
        eprintln!("the registry's errors: {errors:#?}");
    }
    expect(&second, 0, "apply without the fault");
    let run2 = lab.proxy.requests();
    let broken = run2
        .iter()
        .filter(|r| r.method == "HEAD" && r.status == Some(500))
        .count();
    eprintln!("blob records the registry answered 500 for in the rerun: {broken}");
    let tried2 = attempted_uploads(&run2);
    let again: Vec<&String> = tried2.intersection(&done1).collect();
    assert!(
        again.is_empty(),
        "blobs the registry already had were uploaded again: {again:?}\n{}",
        second.out
    );
    if first.code == 0 {
        let starts = run2.iter().filter(|r| r.is_upload_start()).count();
        assert_eq!(
            starts, 0,
            "a converged apply uploads nothing:\n{}",
            second.out
        );
    }
    let plan = mp(lab.path(), &["plan", "--detailed-exitcode"]);
    expect(&plan, 0, "plan after the fault-free apply");
    lab.assert_all_mirrored();
    let mut failed: Vec<&str> = first
        .out
        .lines()
        .filter(|l| l.starts_with("  - "))
        .collect();
    if failed.is_empty() && first.code != 0 {
        failed = first.out.lines().filter(|l| l.contains("rror")).collect();
    }
    eprintln!(
        "faults injected: {:?}; first apply exit {}; failed: {failed:#?}",
        lab.proxy.injected(),
        first.code
    );
}

fn status(code: u16, retry_after: Option<u64>) -> Fault {
    Fault::Status { code, retry_after }
}

/// The requests a client may always send again (no one-shot body).
fn replayable(fault: Fault, p: f64) -> Vec<Rule> {
    ["HEAD", "GET", "POST"]
        .iter()
        .map(|m| Rule::with_probability(fault.clone(), p).method(m))
        .collect()
}

#[test]
fn status_503_with_retry_after_is_retried_and_the_apply_completes() {
    registry_fault(
        1,
        &small_spec(31, 3, 4096),
        replayable(status(503, Some(1)), 0.3),
        Outcome::Completes,
    );
}

#[test]
fn status_429_with_retry_after_is_retried_and_the_apply_completes() {
    registry_fault(
        2,
        &small_spec(32, 3, 4096),
        replayable(status(429, Some(1)), 0.3),
        Outcome::Completes,
    );
}

#[test]
fn status_500_is_retried_and_the_apply_completes() {
    registry_fault(
        3,
        &small_spec(33, 3, 4096),
        replayable(status(500, None), 0.3),
        Outcome::Completes,
    );
}

#[test]
fn status_503_on_every_request_fails_naming_the_status() {
    registry_fault(
        4,
        &small_spec(34, 2, 4096),
        vec![Rule::always(status(503, Some(0)))],
        Outcome::FailsNaming(&["503"]),
    );
}

#[test]
fn status_503_on_a_blob_upload_body_fails_or_retries_and_the_rerun_uploads_only_the_rest() {
    registry_fault(
        5,
        &small_spec(35, 3, 8192),
        vec![Rule::always(status(503, None))
            .method("PUT")
            .path("/blobs/uploads/")
            .times(1)],
        Outcome::CompletesOrFailsNaming(&["503"]),
    );
}

#[test]
fn delay_of_every_other_request_still_completes() {
    registry_fault(
        6,
        &small_spec(36, 3, 4096),
        vec![Rule::with_probability(
            Fault::Delay(Duration::from_millis(300)),
            0.5,
        )],
        Outcome::Completes,
    );
}

#[test]
fn reset_mid_upload_body_fails_naming_the_upload_and_the_rerun_uploads_only_the_rest() {
    registry_fault(
        7,
        &small_spec(37, 3, 64 * 1024),
        vec![
            Rule::with_probability(Fault::ResetRequest { after: 20_000 }, 0.5)
                .method("PUT")
                .path("/blobs/uploads/"),
        ],
        Outcome::CompletesOrFailsNaming(&["upload"]),
    );
}

#[test]
fn reset_mid_response_fails_or_retries_and_the_rerun_converges() {
    registry_fault(
        8,
        &small_spec(38, 3, 4096),
        vec![Rule::with_probability(
            Fault::ResetResponse { after: 20 },
            0.2,
        )],
        Outcome::CompletesOrFailsNaming(&[]),
    );
}

#[test]
fn truncated_responses_fail_or_retry_and_the_rerun_converges() {
    registry_fault(
        9,
        &small_spec(39, 3, 4096),
        vec![Rule::with_probability(Fault::Truncate { after: 40 }, 0.2)],
        Outcome::CompletesOrFailsNaming(&[]),
    );
}

#[test]
fn stall_then_close_fails_or_retries_and_the_rerun_converges() {
    registry_fault(
        10,
        &small_spec(40, 2, 4096),
        vec![Rule::always(Fault::Stall(Duration::from_secs(3))).times(2)],
        Outcome::CompletesOrFailsNaming(&[]),
    );
}

#[test]
fn registry_disk_full_fails_naming_the_registry_and_the_rerun_uploads_only_the_rest() {
    let spec = small_spec(41, 3, 48 * 1024);
    registry_fault_with(
        11,
        &spec,
        RegistryOptions {
            storage_tmpfs: Some(8 << 20),
            ..Default::default()
        },
        |lab| {
            // room for about two layers
            let fs = lab
                .registry
                .storage_tmpfs()
                .unwrap_or_else(|| panic!("no tmpfs"));
            ok(fs.fill(100 * 1024), "fill the registry's disk");
        },
        |lab, first| {
            let fs = lab
                .registry
                .storage_tmpfs()
                .unwrap_or_else(|| panic!("no tmpfs"));
            let done = completed_uploads(&lab.proxy.requests());
            assert!(
                !done.is_empty(),
                "nothing was stored before the disk filled up:\n{}",
                first.out
            );
            ok(fs.unfill(), "free the registry's disk");
        },
        Outcome::FailsNaming(&["HTTP 500"]),
    );
}

/// The state directory `.mirrorplan/` on a tmpfs that is full (or has a
/// few pages left) while apply pushes a new image set: the apply fails
/// naming the file it could not write and the reason, the state left
/// behind loads, and once there is room again an apply converges without
/// uploading again what the failed one pushed.
#[test]
fn state_directory_on_a_full_filesystem_fails_naming_it_and_the_rerun_converges() {
    let lab = RegistryLab::start(12, &small_spec(42, 2, 4096), RegistryOptions::default());
    let state_dir = lab.path().join(".mirrorplan");
    let fs = ok(
        Tmpfs::mount(&state_dir, 1 << 20),
        "mount a tmpfs for .mirrorplan",
    );
    expect(
        &mp(lab.path(), &["apply", "--auto-approve"]),
        0,
        "first apply",
    );
    let base = std::fs::read_to_string(lab.path().join("main.hcl")).unwrap_or_default();
    let mut sets = String::new();
    for (i, leave) in [0u64, 4096, 8192, 16384].into_iter().enumerate() {
        // one more image set, into its own namespace
        let name = format!("extra{i}");
        bundle(lab.path(), &name, &small_spec(100 + i as u64, 2, 4096));
        sets.push_str(&format!(
            "\nregistry \"{name}\" {{\n  endpoint  = \"http://{}\"\n  namespace = \"{name}\"\n}}\n\
             image_set \"{name}\" {{\n  registry = registry.{name}\n  bundle   = \"{name}.tar.gz\"\n}}\n",
            lab.proxy.host_port()
        ));
        ok(
            std::fs::write(lab.path().join("main.hcl"), format!("{base}{sets}")),
            "write main.hcl",
        );
        let before = std::fs::read(state_dir.join("state.json")).ok();
        ok(fs.fill(leave), "fill .mirrorplan");
        lab.proxy.clear_log();
        let first = mp(lab.path(), &["apply", "--auto-approve"]);
        eprintln!(
            "{leave} bytes left: exit {}; {:?}",
            first.code,
            first
                .out
                .lines()
                .filter(|l| l.contains("space"))
                .collect::<Vec<_>>()
        );
        if first.code != 0 {
            expect(&first, 1, "apply on a full state directory");
            assert!(
                first.out.contains("No space left on device"),
                "the reason is not given:\n{}",
                first.out
            );
            assert!(
                first.out.contains(".mirrorplan"),
                "the file is not named:\n{}",
                first.out
            );
            // the state on disk is the old one or a complete new one
            let now = std::fs::read(state_dir.join("state.json")).ok();
            if now != before {
                let v: Result<serde_json::Value, _> =
                    serde_json::from_slice(now.as_deref().unwrap_or_default());
                assert!(v.is_ok(), "a torn state.json: {v:?}");
            }
        }
        ok(fs.unfill(), "free .mirrorplan");
        assert_state_loads(lab.path());
        registry_contents(lab.registry.addr());
        let done1 = completed_uploads(&lab.proxy.requests());
        lab.proxy.clear_log();
        let second = mp(lab.path(), &["apply", "--auto-approve"]);
        expect(&second, 0, "apply once there is room");
        let tried2 = attempted_uploads(&lab.proxy.requests());
        let again: Vec<&String> = tried2.intersection(&done1).collect();
        assert!(
            again.is_empty(),
            "uploaded again: {again:?}\n{}",
            second.out
        );
        expect(
            &mp(lab.path(), &["plan", "--detailed-exitcode"]),
            0,
            "plan after the apply",
        );
        let have = registry_contents(lab.registry.addr());
        assert!(
            have.keys().any(|k| k.starts_with(&format!("{name}/"))),
            "{name} was not pushed: {have:?}"
        );
    }
}

/// The nodes of `lab`'s configuration reached through `proxies` (node i
/// through proxy i): the node addresses in `main.hcl` and their
/// known_hosts lines are rewritten to the proxies' addresses.
fn route_nodes_through(lab: &nodes_support::Lab, nodes: &[&Node], proxies: &[&FaultProxy]) {
    let main = lab.path().join("main.hcl");
    let kh = lab.path().join("known_hosts");
    let mut hcl = std::fs::read_to_string(&main).unwrap_or_default();
    let mut hosts = std::fs::read_to_string(&kh).unwrap_or_default();
    for (n, p) in nodes.iter().zip(proxies) {
        let a = n.ssh_addr();
        let key = nodes_support::node_key(n);
        assert!(hcl.contains(&format!("\"{key}\"")), "{hcl}");
        hcl = hcl.replace(&format!("\"{key}\""), &format!("\"{}\"", p.host_port()));
        let from = format!("[{}]:{}", a.ip(), a.port());
        assert!(hosts.contains(&from), "{hosts}");
        hosts = hosts.replace(&from, &format!("[{}]:{}", p.addr().ip(), p.addr().port()));
    }
    ok(std::fs::write(&main, hcl), "write main.hcl");
    ok(std::fs::write(&kh, hosts), "write known_hosts");
}

/// The node's CA files (relative to `/etc/containerd`) and their content.
fn ca_files(n: &Node) -> BTreeMap<String, String> {
    let base = n.etc_containerd_dir().join("certs.d");
    let mut out = BTreeMap::new();
    for d in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".crt") {
                let rel = format!("certs.d/{}/{name}", d.file_name().to_string_lossy());
                out.insert(rel, std::fs::read_to_string(f.path()).unwrap_or_default());
            }
        }
    }
    out
}

/// SSH cut at every step of a node write: a TCP proxy in front of a real
/// node's sshd resets the connection once the client (or the node) has sent
/// N bytes, for N spread over the whole session of an apply that changes
/// two CA files
/// (handshake, authentication, the read, the write command and its stdin,
/// the CRI check, the cluster's pull). After each cut: exit 0 or exit 1
/// naming the node; every CA file is its old or its new content, never a
/// part; the state loads; an apply without the cut converges.
#[test]
fn ssh_cut_at_each_step_of_a_node_write_leaves_every_file_old_or_new() {
    let lab = nodes_support::Lab::start();
    let n1 = nodes_support::start_node();
    let proxy = ok(
        FaultProxy::start(n1.ssh_addr(), ProxyMode::Tcp, 13),
        "start the ssh proxy",
    );
    let real = std::fs::read_to_string(lab.ca_cert()).unwrap_or_default();
    let ca = lab.path().join("mirror-ca.crt");
    let variant = |v: char| format!("# variant {v}\n{real}");
    let configure = |v: char| {
        ok(std::fs::write(&ca, variant(v)), "write the CA");
        lab.write_config(
            &[&n1],
            &nodes_support::ClusterConf {
                ca_cert: Some(ca.clone()),
                ..Default::default()
            },
        );
        route_nodes_through(&lab, &[&n1], &[&proxy]);
    };
    configure('A');
    expect(
        &mp(lab.path(), &["apply", "--auto-approve"]),
        0,
        "first apply",
    );
    // the whole session of an apply that writes the other variant
    configure('B');
    proxy.clear_log();
    expect(
        &mp(lab.path(), &["apply", "--auto-approve"]),
        0,
        "measuring apply",
    );
    let sessions = proxy.requests();
    let total: u64 = sessions.iter().map(|r| r.bytes.0).sum();
    eprintln!(
        "an apply's SSH sessions (client bytes, server bytes): {:?}",
        sessions.iter().map(|r| r.bytes).collect::<Vec<_>>()
    );
    assert!(total > 0, "no SSH traffic through the proxy");
    let total_down: u64 = sessions.iter().map(|r| r.bytes.1).sum();
    let files = ca_files(&n1);
    assert_eq!(files.len(), 2, "{files:?}");
    let mut current = 'B';
    // cut when the client has sent N bytes (over the whole session), and
    // when the node has sent N bytes (over its last fifth: this one also
    // lands after the node did something but before the client heard it)
    let cuts = 12u64;
    let mut points: Vec<(Fault, u64, u64)> = Vec::new();
    for k in 0..cuts {
        let up = total * k / cuts + 1;
        points.push((Fault::ResetRequest { after: up }, up, total));
        // the node sends most of its bytes early (the read); its last
        // fifth holds the answers to the write, the CRI check and the pull
        let down = total_down * 4 / 5 + total_down * k / (5 * cuts) + 1;
        points.push((Fault::ResetResponse { after: down }, down, total_down));
    }
    let mut failed = 0;
    for (fault, after, total) in points {
        let next = if current == 'A' { 'B' } else { 'A' };
        configure(next);
        proxy.set_rules(vec![Rule::always(fault.clone()).times(1)]);
        let r = mp(lab.path(), &["apply", "--auto-approve"]);
        proxy.clear_rules();
        if r.code != 0 {
            expect(&r, 1, "apply with SSH cut");
            assert!(
                r.out.contains(&proxy.host_port()),
                "the failure does not name the node:\n{}",
                r.out
            );
            failed += 1;
        }
        let (old, new) = (variant(current), variant(next));
        let mut state = Vec::new();
        for (f, content) in ca_files(&n1) {
            assert!(
                content == old || content == new,
                "cut after {after} bytes: {f} is neither old nor new ({} bytes)",
                content.len()
            );
            state.push(if content == new { "new" } else { "old" });
        }
        let why: Vec<&str> = r.out.lines().filter(|l| l.starts_with("  - ")).collect();
        eprintln!(
            "{} after {after} of {total} bytes: exit {}, files {state:?}, {why:?}",
            fault.kind(),
            r.code
        );
        if r.out.contains("files were restored") {
            assert!(
                state.iter().all(|s| *s == "old"),
                "{} after {after} bytes: the message says the files were restored, \
                 but they are {state:?}:\n{}",
                fault.kind(),
                r.out
            );
        }
        assert_state_loads(lab.path());
        expect(
            &mp(lab.path(), &["apply", "--auto-approve"]),
            0,
            "apply without the cut",
        );
        expect(
            &mp(lab.path(), &["plan", "--detailed-exitcode"]),
            0,
            "plan after the apply",
        );
        for (f, content) in ca_files(&n1) {
            assert_eq!(content, new, "{f} after the apply without the cut");
        }
        current = next;
    }
    assert!(failed > 0, "no cut made an apply fail");
    let injected = proxy.injected();
    assert_eq!(injected.get("reset_request"), Some(&cuts), "{injected:?}");
    assert_eq!(injected.get("reset_response"), Some(&cuts), "{injected:?}");
}

/// Digests of the blob uploads the registry's access log shows finished
/// (`PUT …/blobs/uploads/…digest=… 201`) in `log`.
fn logged_uploads(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/"))
        .filter(|l| l.contains("\" 201 "))
        .filter_map(|l| {
            let i = l.find("digest=sha256")?;
            let rest = &l[i + "digest=".len()..];
            let end = rest.find(['&', ' ', '"']).unwrap_or(rest.len());
            Some(rest[..end].replace("%3A", ":"))
        })
        .collect()
}

/// TLS through a TCP-mode proxy: the client still validates the
/// registry's certificate (it names 127.0.0.1, where the proxy listens),
/// and a connection reset in the middle of an upload body (the proxy cannot
/// see inside TLS: it cuts half the connections once the client has sent
/// 20 KB, which only uploads reach) is retried or named; the rerun uploads
/// only what is missing.
#[test]
fn tls_connection_reset_mid_upload_through_a_tcp_proxy() {
    let registry = ok(
        Registry::start(RegistryOptions {
            tls: true,
            auth: Some(mirrorplan_harness::Credentials::new(
                nodes_support::USER,
                nodes_support::PASSWORD,
            )),
            ..Default::default()
        }),
        "start the TLS registry",
    );
    let proxy = ok(
        FaultProxy::start(registry.addr(), ProxyMode::Tcp, 14),
        "start the proxy",
    );
    let dir = ok(tempfile::tempdir(), "tempdir");
    let fixture = bundle(dir.path(), "bundle", &small_spec(44, 3, 64 * 1024));
    let ca = registry.ca_cert_path().unwrap_or_default();
    let hcl = format!(
        "variable \"mirror_password\" {{\n  type      = string\n  sensitive = true\n}}\n\n\
         registry \"mirror\" {{\n  endpoint  = \"https://{}\"\n  namespace = \"{NS}\"\n  \
         ca_cert   = \"{}\"\n  username  = \"{}\"\n  password  = var.mirror_password\n}}\n\n\
         image_set \"bundle\" {{\n  registry = registry.mirror\n  bundle   = \"bundle.tar.gz\"\n}}\n",
        proxy.host_port(),
        ca.display(),
        nodes_support::USER
    );
    ok(std::fs::write(dir.path().join("main.hcl"), hcl), "main.hcl");
    proxy.set_rules(vec![Rule::with_probability(
        Fault::ResetRequest { after: 20_000 },
        0.5,
    )]);
    let first = mp(dir.path(), &["apply", "--auto-approve"]);
    // connections that carried an upload, reset in its middle
    let cut = proxy
        .requests()
        .iter()
        .filter(|r| r.fault.is_some() && r.bytes.0 == 20_000)
        .count();
    assert!(cut > 0, "no upload was reset: {:?}", proxy.requests());
    assert!(
        !first.out.contains("TLS handshake failed"),
        "a connection cut mid-upload is not a TLS handshake failure:\n{}",
        first.out
    );
    if first.code != 0 {
        expect(&first, 1, "apply with the reset");
        assert!(first.out.contains(&proxy.host_port()), "{}", first.out);
        eprintln!(
            "{}",
            first
                .out
                .lines()
                .filter(|l| l.starts_with("  - "))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    proxy.clear_rules();
    assert_state_loads(dir.path());
    let log1 = std::fs::read_to_string(registry.log_path()).unwrap_or_default();
    let done1 = logged_uploads(&log1);
    let second = mp(dir.path(), &["apply", "--auto-approve"]);
    expect(&second, 0, "apply without the reset");
    let log2 = std::fs::read_to_string(registry.log_path()).unwrap_or_default();
    let done2 = logged_uploads(log2.get(log1.len()..).unwrap_or_default());
    let again: Vec<&String> = done1.intersection(&done2).collect();
    assert!(again.is_empty(), "uploaded twice: {again:?}");
    assert_eq!(
        done1.len() + done2.len(),
        fixture.blobs.len(),
        "every blob uploaded once over the two runs: {done1:?} {done2:?}"
    );
    expect(
        &mp(dir.path(), &["plan", "--detailed-exitcode"]),
        0,
        "plan after the apply",
    );
    eprintln!(
        "TLS reset: {cut} uploads cut, first apply exit {}, {} + {} uploads",
        first.code,
        done1.len(),
        done2.len()
    );
}

/// What a full disk can leave in the registry, made on purpose: a blob's
/// record in one repository emptied (distribution then answers every
/// `HEAD` of it with 500 "invalid checksum digest format") and that
/// repository's image deleted. The apply that pushes the image again
/// takes the broken blob as absent and sends it (which writes the record
/// anew) instead of failing on the `HEAD` forever.
#[test]
fn registry_blob_record_broken_by_a_full_disk_is_written_again() {
    let lab = RegistryLab::start(15, &small_spec(45, 2, 4096), RegistryOptions::default());
    expect(
        &mp(lab.path(), &["apply", "--auto-approve"]),
        0,
        "first apply",
    );
    let img = &lab.fixture.images[0];
    let tag = mirror_tag(&img.name);
    let (repo, _) = tag.rsplit_once(':').unwrap_or((&tag, ""));
    let layers = lab
        .registry
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_layers/sha256");
    let mut emptied = 0;
    for d in std::fs::read_dir(&layers).into_iter().flatten().flatten() {
        ok(std::fs::write(d.path().join("link"), ""), "empty a link");
        emptied += 1;
    }
    assert!(emptied > 0, "no layer records in {}", layers.display());
    let digest = img
        .manifest_digest
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let (status, _, _) = ok(
        http_request(
            lab.registry.addr(),
            "DELETE",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[],
        ),
        "delete the manifest",
    );
    assert_eq!(status, 202, "DELETE {repo}@{digest}");
    lab.proxy.clear_log();
    let r = mp(lab.path(), &["apply", "--auto-approve"]);
    expect(&r, 0, "apply over the broken records");
    let broken = lab
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == "HEAD" && r.status == Some(500))
        .count();
    assert!(
        broken > 0,
        "the registry did not answer 500 for the broken records"
    );
    expect(
        &mp(lab.path(), &["plan", "--detailed-exitcode"]),
        0,
        "plan after the apply",
    );
    lab.assert_all_mirrored();
}
