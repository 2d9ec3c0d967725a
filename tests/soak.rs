//! Issue 11, item 4: the soak. `SOAK_CYCLES` (default 200) apply/plan
//! cycles through the `mirrorplan` binary against one REAL plain-HTTP
//! registry behind the harness's fault proxy and two REAL nodes (sshd +
//! containerd), each cycle with a random configuration change (an image
//! set added or removed, the cluster's `hosts` list changed, the second
//! node leaving or joining the cluster) and random registry faults (500,
//! 503 and 429 with `Retry-After`, delays, stalls, resets mid request and
//! mid response, truncated responses). The faults also reach the nodes'
//! pulls: their mirror endpoint is the proxy.
//!
//! Every cycle: no run hangs or panics, an apply exits 0 or 1 (a plan 0, 1
//! or 2), `state.json` parses, every node file is complete. Every tenth
//! cycle the registry is walked: every tag resolves to a manifest whose
//! blobs exist. At the end, without faults, an apply converges, a plan
//! finds nothing to do, and the registry's tags, the node files and the
//! state agree with the configuration and with each other.
//!
//! The seed is printed; `SOAK_SEED=N` runs the same configuration changes
//! and the same fault choices again (which request a fault hits is decided
//! by the request's identity, not by arrival order; see the proxy's docs).

mod nodes_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mirrorplan_harness::proxy::http_request;
use mirrorplan_harness::{Fault, FaultProxy, Node, ProxyMode, Registry, RegistryOptions, Rule};
use mirrorplan_registry::fixtures::{
    write_oci_bundle, Fixture, FixtureSpec, LayerCompression, Packing, Rng,
};

/// Image sets (each its own bundle, registry block and namespace); set 0
/// is always there (the cluster mirrors its registry).
const SETS: usize = 4;
/// Hosts the cluster may mirror besides gcr.io.
const HOSTS: [&str; 3] = ["quay.io", "docker.io", "registry.k8s.io"];
/// A run longer than this is a hang.
const HANG: Duration = Duration::from_secs(180);

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn mp(dir: &Path, seed: u64, args: &[&str]) -> (i32, String) {
    let mut c = nodes_support::bin();
    for v in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
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
    let o = match rx.recv_timeout(HANG) {
        Ok(r) => ok(r, "wait for mirrorplan"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("SOAK_SEED={seed}: mirrorplan {args:?} hangs");
        }
    };
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !out.contains("panicked"),
        "SOAK_SEED={seed}: mirrorplan {args:?} panicked:\n{out}"
    );
    (o.status.code().unwrap_or(-1), out)
}

/// One cycle's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Conf {
    sets: BTreeSet<usize>,
    hosts: Vec<&'static str>,
    second_node: bool,
    /// `local:` nodes instead of the real ones.
    local: bool,
}

fn random_change(rng: &mut Rng, c: &Conf) -> Conf {
    let mut c = c.clone();
    match rng.next_u64() % 3 {
        0 => {
            let s = 1 + (rng.next_u64() as usize) % (SETS - 1);
            if !c.sets.remove(&s) {
                c.sets.insert(s);
            }
        }
        1 => {
            let bits = rng.next_u64() % 8;
            c.hosts = HOSTS
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, h)| *h)
                .collect();
        }
        _ => c.second_node = !c.second_node,
    }
    c
}

fn random_faults(rng: &mut Rng) -> Vec<Rule> {
    let p = [0.05, 0.1, 0.2][(rng.next_u64() % 3) as usize];
    let fault = match rng.next_u64() % 9 {
        0 => return Vec::new(),
        1 => Fault::Status {
            code: 503,
            retry_after: Some(rng.next_u64() % 2),
        },
        2 => Fault::Status {
            code: 429,
            retry_after: Some(rng.next_u64() % 2),
        },
        3 => Fault::Status {
            code: 500,
            retry_after: None,
        },
        4 => Fault::Delay(Duration::from_millis(50 + rng.next_u64() % 200)),
        5 => Fault::Stall(Duration::from_millis(500 + rng.next_u64() % 1000)),
        6 => Fault::ResetRequest {
            after: rng.next_u64() % 2048,
        },
        7 => Fault::ResetResponse {
            after: rng.next_u64() % 200,
        },
        _ => Fault::Truncate {
            after: rng.next_u64() % 200,
        },
    };
    let mut rule = Rule::with_probability(fault.clone(), p);
    if matches!(fault, Fault::ResetRequest { .. }) {
        rule = rule.method("PUT");
    }
    vec![rule]
}

struct Soak {
    seed: u64,
    registry: Registry,
    proxy: FaultProxy,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    fixtures: Vec<Fixture>,
    key: std::path::PathBuf,
    known_hosts: std::path::PathBuf,
}

impl Soak {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i` as the cluster lists it: real nodes 0 and 1, `local:`
    /// nodes 2 and 3.
    fn node_key(&self, i: usize) -> String {
        match i {
            0 | 1 => self.nodes[i].ssh_addr().to_string(),
            _ => format!("local:./nodes/n{i}"),
        }
    }

    /// Node `i`'s `/etc/containerd` on this machine.
    fn etc_containerd(&self, i: usize) -> std::path::PathBuf {
        match i {
            0 | 1 => self.nodes[i].etc_containerd_dir(),
            _ => self.path().join(format!("nodes/n{i}/etc/containerd")),
        }
    }

    /// The nodes of the cluster under `c`.
    fn members(c: &Conf) -> Vec<usize> {
        let first = if c.local { 2 } else { 0 };
        if c.second_node {
            vec![first, first + 1]
        } else {
            vec![first]
        }
    }

    fn write(&self, c: &Conf) {
        let mut hcl = String::new();
        for s in &c.sets {
            hcl.push_str(&format!(
                "registry \"r{s}\" {{\n  endpoint  = \"http://{}\"\n  namespace = \"s{s}\"\n}}\n\n\
                 image_set \"s{s}\" {{\n  registry = registry.r{s}\n  bundle   = \"s{s}.tar.gz\"\n  \
                 prune    = true\n}}\n\n",
                self.proxy.host_port()
            ));
        }
        let nodes: Vec<String> = Self::members(c)
            .into_iter()
            .map(|i| format!("\"{}\"", self.node_key(i)))
            .collect();
        let hosts: Vec<String> = c.hosts.iter().map(|h| format!("\"{h}\"")).collect();
        hcl.push_str(&format!(
            "cluster \"c1\" {{\n  nodes = [{}]\n  ssh {{\n    user        = \"root\"\n    \
             private_key = \"{}\"\n    known_hosts = \"{}\"\n    use_agent   = false\n  }}\n  \
             registry_mirror {{\n    registry = registry.r0\n    hosts    = [{}]\n  }}\n  \
             containerd {{\n    restart_command = {}\n  }}\n  depends_on = [image_set.s0]\n}}\n",
            nodes.join(", "),
            self.key.display(),
            self.known_hosts.display(),
            hosts.join(", "),
            nodes_support::hcl_string(nodes_support::RESTART_COMMAND),
        ));
        ok(
            std::fs::write(self.path().join("main.hcl"), hcl),
            "main.hcl",
        );
    }

    /// The hosts directories (with a hosts.toml) of node `i`.
    fn node_hosts(&self, i: usize) -> BTreeSet<String> {
        let base = self.etc_containerd(i).join("certs.d");
        let mut out = BTreeSet::new();
        for d in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let p = d.path().join("hosts.toml");
            if let Ok(text) = std::fs::read_to_string(&p) {
                // complete: rendered files end with the last endpoint's table
                assert!(
                    text.starts_with("server = ") && text.ends_with('\n'),
                    "SOAK_SEED={}: {} is not a complete hosts.toml:\n{text}",
                    self.seed,
                    p.display()
                );
                out.insert(d.file_name().to_string_lossy().into_owned());
            }
        }
        out
    }

    /// Every tag of the registry resolves (blobs and all); `repo:tag` → digest.
    fn registry_tags(&self) -> BTreeMap<String, String> {
        let types = [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ];
        let get = |m: &str, t: &str| ok(http_request(self.registry.addr(), m, t, &types), t);
        let (status, _, body) = get("GET", "/v2/_catalog?n=1000");
        assert_eq!(status, 200);
        let cat: serde_json::Value = ok(serde_json::from_slice(&body), "catalog");
        let mut out = BTreeMap::new();
        for repo in cat["repositories"].as_array().into_iter().flatten() {
            let repo = repo.as_str().unwrap_or_default();
            let (status, _, body) = get("GET", &format!("/v2/{repo}/tags/list"));
            if status != 200 {
                continue;
            }
            let tags: serde_json::Value = ok(serde_json::from_slice(&body), "tags");
            for tag in tags["tags"].as_array().into_iter().flatten() {
                let tag = tag.as_str().unwrap_or_default();
                let (status, h, body) = get("GET", &format!("/v2/{repo}/manifests/{tag}"));
                assert_eq!(
                    status, 200,
                    "SOAK_SEED={}: {repo}:{tag} has no manifest",
                    self.seed
                );
                let m: serde_json::Value = ok(serde_json::from_slice(&body), "manifest");
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
                        "SOAK_SEED={}: {repo}:{tag} lacks blob {b}",
                        self.seed
                    );
                }
                let d = h.get("docker-content-digest").cloned().unwrap_or_default();
                out.insert(format!("{repo}:{tag}"), d);
            }
        }
        out
    }

    /// The state file parses; its instance addresses.
    fn state_addresses(&self) -> BTreeSet<String> {
        let p = self.path().join(".mirrorplan/state.json");
        let Ok(bytes) = std::fs::read(&p) else {
            return BTreeSet::new();
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("SOAK_SEED={}: state.json: {e}", self.seed));
        let mut out = BTreeSet::new();
        if let Some(list) = v["instances"].as_array() {
            for i in list {
                if let Some(a) = i["address"].as_str() {
                    out.insert(a.to_owned());
                }
            }
        } else if let Some(map) = v["instances"].as_object() {
            out.extend(map.keys().cloned());
        }
        out
    }

    /// Registry, node files and state agree with `c` (and each other).
    fn assert_agree(&self, c: &Conf) {
        let tags = self.registry_tags();
        let mut want_tags = BTreeMap::new();
        let mut want_state = BTreeSet::new();
        for s in &c.sets {
            want_state.insert(format!("image_set.s{s}"));
            for img in &self.fixtures[*s].images {
                let path = img.name.split_once('/').map_or(img.name.as_str(), |x| x.1);
                let d = img.manifest_digest.as_ref().map(ToString::to_string);
                want_tags.insert(format!("s{s}/{path}"), d.unwrap_or_default());
                want_state.insert(format!("image.s{s}[\"{}\"]", img.name));
            }
        }
        assert_eq!(
            tags, want_tags,
            "SOAK_SEED={}: the registry's tags",
            self.seed
        );
        let mut want_hosts: BTreeSet<String> = c.hosts.iter().map(|h| h.to_string()).collect();
        want_hosts.insert("gcr.io".into());
        want_state.insert("cluster.c1".into());
        for i in 0..4 {
            let member = Self::members(c).contains(&i);
            let have = self.node_hosts(i);
            if member {
                assert_eq!(
                    have, want_hosts,
                    "SOAK_SEED={}: node {i}'s hosts",
                    self.seed
                );
                want_state.insert(format!("node.c1[\"{}\"]", self.node_key(i)));
            } else {
                assert!(
                    have.is_empty(),
                    "SOAK_SEED={}: node {i} left the cluster but keeps {have:?}",
                    self.seed
                );
            }
        }
        let state = self.state_addresses();
        assert_eq!(state, want_state, "SOAK_SEED={}: the state", self.seed);
        let (code, out) = mp(self.path(), self.seed, &["state", "list"]);
        assert_eq!(code, 0, "{out}");
        for a in &want_state {
            assert!(out.contains(a.as_str()), "state list lacks {a}:\n{out}");
        }
    }
}

#[test]
fn soak_apply_plan_cycles_under_random_registry_faults_and_config_changes() {
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                % 1_000_000
        });
    let cycles: usize = std::env::var("SOAK_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    eprintln!("soak: SOAK_SEED={seed} SOAK_CYCLES={cycles}");
    let started = Instant::now();
    let registry = ok(Registry::start(RegistryOptions::default()), "registry");
    let proxy = ok(
        FaultProxy::start(registry.addr(), ProxyMode::Http, seed),
        "proxy",
    );
    let nodes = vec![nodes_support::start_node(), nodes_support::start_node()];
    let dir = ok(
        tempfile::Builder::new().prefix("mp-soak-").tempdir(),
        "tempdir",
    );
    let fixtures: Vec<Fixture> = (0..SETS)
        .map(|s| {
            let spec = FixtureSpec {
                seed: 500 + s as u64,
                images: 1 + s % 2,
                layers_per_image: 1,
                shared_base_layers: 1,
                layer_size: 2048,
                multi_arch: false,
                layer_compression: LayerCompression::Gzip,
            };
            ok(
                write_oci_bundle(
                    dir.path().join(format!("s{s}.tar.gz")),
                    &spec,
                    Packing::TarGz,
                ),
                "bundle",
            )
        })
        .collect();
    // one key for both nodes, one known_hosts with both
    let key = nodes[0].ssh().client_key_path();
    let public = ok(
        std::fs::read_to_string(key.with_extension("pub")),
        "pub key",
    );
    let auth = nodes[1]
        .ssh()
        .client_key_path()
        .parent()
        .map(|d| d.join("authorized_keys"))
        .unwrap_or_default();
    let mut a = ok(std::fs::read_to_string(&auth), "authorized_keys");
    a.push_str(&public);
    ok(std::fs::write(&auth, a), "authorized_keys");
    let mut kh = String::new();
    for n in &nodes {
        kh.push_str(&ok(
            std::fs::read_to_string(n.ssh().known_hosts_path()),
            "known_hosts",
        ));
        nodes_support::install_restart_script(n);
    }
    let known_hosts = dir.path().join("known_hosts");
    ok(std::fs::write(&known_hosts, kh), "known_hosts");
    let soak = Soak {
        seed,
        registry,
        proxy,
        nodes,
        dir,
        fixtures,
        key,
        known_hosts,
    };

    let mut rng = Rng::new(seed);
    let mut conf = Conf {
        sets: [0, 1].into_iter().collect(),
        hosts: vec!["quay.io"],
        second_node: true,
        local: false,
    };
    // the first cycles on the real nodes, the rest on `local:` nodes (a
    // cycle on real nodes takes about 3 s here, on local ones about 1 s)
    let real_cycles: usize = std::env::var("SOAK_REAL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let mut applies = BTreeMap::<i32, u64>::new();
    let mut plans = BTreeMap::<i32, u64>::new();
    let mut failures = BTreeMap::<String, u64>::new();
    for cycle in 0..cycles {
        conf = random_change(&mut rng, &conf);
        conf.local = cycle >= real_cycles;
        soak.write(&conf);
        soak.proxy
            .reseed(seed.wrapping_mul(1000).wrapping_add(cycle as u64));
        soak.proxy.set_rules(random_faults(&mut rng));
        let t = Instant::now();
        let (code, out) = mp(soak.path(), seed, &["apply", "--auto-approve"]);
        if std::env::var_os("SOAK_VERBOSE").is_some() {
            eprintln!(
                "cycle {cycle}: {conf:?} apply exit {code} in {:?}",
                t.elapsed()
            );
        }
        assert!(
            code == 0 || code == 1,
            "SOAK_SEED={seed} cycle {cycle}: apply exit {code}:\n{out}"
        );
        if code == 1 {
            // the reason names the registry or a node
            let named = out.contains(&soak.proxy.host_port())
                || (0..4).any(|i| out.contains(&soak.node_key(i)));
            assert!(
                named,
                "SOAK_SEED={seed} cycle {cycle}: nothing named:\n{out}"
            );
            let what = if out.contains("HTTP 5") || out.contains("HTTP 429") {
                "registry status"
            } else if out.contains("connection") || out.contains("transport") {
                "connection"
            } else {
                "other"
            };
            *failures.entry(what.to_owned()).or_default() += 1;
            let first = out
                .lines()
                .find(|l| l.starts_with("  - ") || l.trim_start().starts_with("x "))
                .unwrap_or_default();
            eprintln!("soak: cycle {cycle}: apply failed: {}", first.trim());
        }
        *applies.entry(code).or_default() += 1;
        let t = Instant::now();
        let (code, out) = mp(soak.path(), seed, &["plan", "--detailed-exitcode"]);
        if std::env::var_os("SOAK_VERBOSE").is_some() {
            eprintln!("cycle {cycle}: plan exit {code} in {:?}", t.elapsed());
        }
        assert!(
            (0..=2).contains(&code),
            "SOAK_SEED={seed} cycle {cycle}: plan exit {code}:\n{out}"
        );
        *plans.entry(code).or_default() += 1;
        soak.state_addresses();
        for i in 0..4 {
            soak.node_hosts(i);
        }
        if cycle % 10 == 9 {
            soak.registry_tags();
        }
    }
    // no faults: converge, then everything agrees
    soak.proxy.clear_rules();
    let (code, out) = mp(soak.path(), seed, &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "SOAK_SEED={seed}: the final apply:\n{out}");
    let (code, out) = mp(soak.path(), seed, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "SOAK_SEED={seed}: the final plan:\n{out}");
    soak.assert_agree(&conf);
    let injected = soak.proxy.injected();
    eprintln!(
        "soak: SOAK_SEED={seed}: {cycles} cycles in {:?}; applies by exit code {applies:?}, \
         plans by exit code {plans:?}, failed applies by reason {failures:?}; faults injected \
         (and survived: the final apply converged) per kind: {injected:?}",
        started.elapsed()
    );
    assert!(
        injected.values().sum::<u64>() > 0,
        "SOAK_SEED={seed}: no fault was injected"
    );
}
