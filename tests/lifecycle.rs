//! Issue 14, items 4 to 6, through the binary: one owner per node, adopting
//! what already exists (`state rm` then plan, `mirrorplan import`), and the
//! lifecycle rules (`prevent_destroy`, `ignore_changes`, `-replace`).
//!
//! Nodes are `local:` directories; registries are the harness's real
//! docker-registry, behind its counting proxy (HTTP mode) so that blob
//! uploads are counted request by request.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run_ok, text, unwrapped};
use mirrorplan_harness::{FaultProxy, ProxiedRequest, ProxyMode, Registry, RegistryOptions};
use mirrorplan_registry::fixtures::{
    write_oci_bundle, Fixture, FixtureSpec, LayerCompression, Packing,
};

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn tempdir() -> tempfile::TempDir {
    ok(
        tempfile::Builder::new().prefix("mp-lifecycle-").tempdir(),
        "tempdir",
    )
}

fn write(dir: &Path, name: &str, content: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        ok(std::fs::create_dir_all(parent), "mkdir");
    }
    ok(std::fs::write(&p, content), "write");
}

fn read(path: &Path) -> String {
    ok(
        std::fs::read_to_string(path),
        &format!("read {}", path.display()),
    )
}

/// Both streams of a run, diagnostics unwrapped.
fn both(o: &std::process::Output) -> String {
    format!("{}\n{}", text(&o.stdout), unwrapped(&text(&o.stderr)))
}

/// The uploads a run started (cross-repository mounts are not uploads).
fn uploads(reqs: &[ProxiedRequest]) -> usize {
    reqs.iter().filter(|r| r.is_upload_start()).count()
}

/// What the registry was asked to upload or put, for messages.
fn writes(reqs: &[ProxiedRequest]) -> Vec<String> {
    reqs.iter()
        .filter(|r| r.method == "POST" || r.method == "PUT" || r.method == "PATCH")
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

fn spec(seed: u64, images: usize) -> FixtureSpec {
    FixtureSpec {
        seed,
        images,
        layers_per_image: 2,
        shared_base_layers: 0,
        layer_size: 4096,
        multi_arch: false,
        layer_compression: LayerCompression::Gzip,
    }
}

/// A plain-HTTP registry behind a counting proxy.
struct Mirror {
    _registry: Registry,
    proxy: FaultProxy,
}

impl Mirror {
    fn start(seed: u64) -> Mirror {
        let registry = ok(
            Registry::start(RegistryOptions::default()),
            "start the registry",
        );
        let proxy = ok(
            FaultProxy::start(registry.addr(), ProxyMode::Http, seed),
            "start the proxy",
        );
        Mirror {
            _registry: registry,
            proxy,
        }
    }
}

/// A configuration pushing `bundle.tar.gz` into `mirror` (through its
/// proxy), plus `extra` HCL.
fn registry_config(dir: &Path, mirror: &Mirror, extra: &str) {
    write(
        dir,
        "main.hcl",
        &format!(
            "registry \"mirror\" {{\n  endpoint  = \"http://{}\"\n  namespace = \"mirror\"\n}}\n\n\
             image_set \"bundle\" {{\n  registry = registry.mirror\n  bundle   = \"bundle.tar.gz\"\n}}\n{extra}",
            mirror.proxy.host_port()
        ),
    );
}

fn bundle(dir: &Path, seed: u64, images: usize) -> Fixture {
    ok(
        write_oci_bundle(
            dir.join("bundle.tar.gz"),
            &spec(seed, images),
            Packing::TarGz,
        ),
        "write bundle",
    )
}

/// `image.bundle["NAME"]`.
fn image_addr(name: &str) -> String {
    format!("image.bundle[\"{name}\"]")
}

/// The addresses the state records.
fn state_list(dir: &Path) -> Vec<String> {
    let o = run_ok(dir, &["state", "list"], 0);
    text(&o.stdout).lines().map(str::to_string).collect()
}

/// A configuration of `local:` nodes: an `oci:` store for the images (no
/// registry needed) and the given cluster blocks.
fn local_config(dir: &Path, clusters: &str) {
    ok(
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/quickstart/bundles/quickstart.tar.gz"),
            dir.join("quickstart.tar.gz"),
        ),
        "copy the quickstart bundle",
    );
    write(
        dir,
        "main.hcl",
        &format!(
            r#"registry "store" {{
  endpoint  = "oci:./store"
  namespace = "mirror"
}}

registry "mirror" {{
  endpoint  = "http://127.0.0.1:5000"
  namespace = "mirror"
}}

image_set "bundle" {{
  registry = registry.store
  bundle   = "quickstart.tar.gz"
}}
{clusters}"#
        ),
    );
}

fn cluster(name: &str, nodes: &[&str], lifecycle: &str) -> String {
    let nodes: Vec<String> = nodes.iter().map(|n| format!("\"local:{n}\"")).collect();
    format!(
        "\ncluster \"{name}\" {{\n  nodes = [{}]\n  registry_mirror {{\n    registry = registry.mirror\n  }}\n{lifecycle}}}\n",
        nodes.join(", ")
    )
}

const HOSTS_TOML: &str = "etc/containerd/certs.d/gcr.io/hosts.toml";
const CONFIG_TOML: &str = "etc/containerd/config.toml";

// ------------------------------------------------------------- item 4

#[test]
fn the_same_node_in_two_clusters_is_a_diagnostic_naming_both_blocks() {
    let dir = tempdir();
    let clusters = format!(
        "{}{}",
        cluster("a", &["./nodes/n1", "./nodes/n0"], ""),
        cluster("b", &["nodes/../nodes/n0"], "")
    );
    local_config(dir.path(), &clusters);
    // ssh nodes too: the same host and port under two spellings
    let mut hcl = read(&dir.path().join("main.hcl"));
    hcl.push_str(
        "\ncluster \"c\" {\n  nodes = [\"cp1.example\"]\n  registry_mirror {\n    registry = registry.mirror\n  }\n}\n\
         \ncluster \"d\" {\n  nodes = [\"CP1.example:22\", \"cp1.example:2222\"]\n  registry_mirror {\n    registry = registry.mirror\n  }\n}\n",
    );
    write(dir.path(), "main.hcl", &hcl);
    let o = run_ok(dir.path(), &["validate"], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(
        err.contains(
            "node `local:nodes/../nodes/n0` is configured by both cluster.a and cluster.b"
        ),
        "{err}"
    );
    assert!(
        err.contains("node `CP1.example` is configured by both cluster.c and cluster.d"),
        "{err}"
    );
    // both blocks, with their spans: the second entry and the first one
    assert!(err.contains("configured again by cluster.b"), "{err}");
    assert!(err.contains("first configured by cluster.a"), "{err}");
    assert!(err.contains("[main.hcl:24:12]"), "{err}");
    assert!(
        err.contains("cluster.a configures it at main.hcl:17:32"),
        "{err}"
    );
    assert!(err.contains("mirrorplan::config::duplicate"), "{err}");
    // another port is another node
    assert!(!err.contains("node `cp1.example:2222`"), "{err}");
    assert!(err.contains("2 problems found"), "{err}");

    // a node list only known from plan on: the same diagnostic from plan
    let dir = tempdir();
    let clusters = format!(
        "\nvariable \"nodes\" {{\n  type = list(string)\n}}\n{}{}",
        cluster("a", &["./nodes/n0"], ""),
        "\ncluster \"b\" {\n  nodes = var.nodes\n  registry_mirror {\n    registry = registry.mirror\n  }\n}\n"
    );
    local_config(dir.path(), &clusters);
    run_ok(dir.path(), &["validate"], 0);
    let o = run_ok(
        dir.path(),
        &["plan", "--var", "nodes=[\"local:./nodes/n0\"]"],
        1,
    );
    let err = unwrapped(&text(&o.stderr));
    assert!(
        err.contains("node `local:./nodes/n0` is configured by both cluster.a and cluster.b"),
        "{err}"
    );
    assert!(!dir.path().join("nodes").exists(), "nothing was written");

    // one directory under two names (a symbolic link): seen from plan on
    let dir = tempdir();
    let clusters = format!(
        "{}{}",
        cluster("a", &["./nodes/real"], ""),
        cluster("b", &["./nodes/link"], "")
    );
    local_config(dir.path(), &clusters);
    ok(
        std::fs::create_dir_all(dir.path().join("nodes/real")),
        "mkdir",
    );
    ok(
        std::os::unix::fs::symlink("real", dir.path().join("nodes/link")),
        "symlink",
    );
    run_ok(dir.path(), &["validate"], 0);
    let o = run_ok(dir.path(), &["plan"], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(
        err.contains("`local:./nodes/real` (cluster.a) and `local:./nodes/link` (cluster.b) are the same node"),
        "{err}"
    );
    assert!(err.contains("cluster.b configures it too"), "{err}");
    assert!(err.contains("cluster.a configures it"), "{err}");
    let o = run_ok(dir.path(), &["apply", "--auto-approve"], 1);
    assert!(
        text(&o.stderr).contains("are the same node"),
        "{}",
        both(&o)
    );
    assert!(
        !dir.path().join("nodes/real/etc").exists(),
        "nothing was written"
    );
}

// ------------------------------------------------------------- item 5

#[test]
fn an_image_forgotten_by_state_rm_is_recorded_without_an_upload() {
    let mirror = Mirror::start(1);
    let dir = tempdir();
    let fixture = bundle(dir.path(), 41, 2);
    registry_config(dir.path(), &mirror, "");
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    assert!(
        uploads(&mirror.proxy.requests()) > 0,
        "the first apply uploads"
    );

    let name = fixture.images[0].name.clone();
    let addr = image_addr(&name);
    run_ok(dir.path(), &["state", "rm", &addr], 0);
    let o = run_ok(dir.path(), &["plan", "--detailed-exitcode"], 2);
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!("# {addr} is already present, will be recorded")),
        "{out}"
    );
    assert!(out.contains("nothing to upload"), "{out}");
    assert!(!out.contains("to upload ("), "no blob to send: {out}");
    assert!(
        out.contains("Plan: 1 to import, 0 to add, 0 to change, 0 to destroy."),
        "{out}"
    );
    let json = run_ok(dir.path(), &["plan", "--json"], 0);
    let v: serde_json::Value = ok(serde_json::from_slice(&json.stdout), "plan JSON");
    assert_eq!(v["summary"]["import"], 1);
    assert_eq!(v["format_version"], "1.2");

    mirror.proxy.clear_log();
    let o = run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    let reqs = mirror.proxy.requests();
    assert_eq!(uploads(&reqs), 0, "{:?}", writes(&reqs));
    assert!(
        writes(&reqs).is_empty(),
        "nothing written: {:?}",
        writes(&reqs)
    );
    assert!(
        text(&o.stdout).contains("Apply complete! Resources: 1 imported, 0 added"),
        "{}",
        both(&o)
    );
    assert!(state_list(dir.path()).contains(&addr));
    run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);
}

/// Runs skopeo (the lab's version) with plain-HTTP registries.
fn skopeo(args: &[&str]) {
    let o = ok(Command::new("skopeo").args(args).output(), "run skopeo");
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

#[test]
fn import_records_an_image_pushed_by_skopeo_without_an_upload() {
    // an "upstream" registry gets the bundle from mirrorplan; skopeo copies
    // one image from there into the mirror, digests preserved, as a
    // bmctl-built mirror would hold it
    let upstream = Mirror::start(2);
    let mirror = Mirror::start(3);
    let first = tempdir();
    let fixture = bundle(first.path(), 42, 2);
    registry_config(first.path(), &upstream, "");
    run_ok(first.path(), &["apply", "--auto-approve"], 0);
    let name = fixture.images[1].name.clone();
    let path = name.split_once('/').map_or(name.as_str(), |(_, p)| p);
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/mirror/{path}", upstream.proxy.host_port()),
        &format!("docker://{}/mirror/{path}", mirror.proxy.host_port()),
    ]);

    let dir = tempdir();
    bundle(dir.path(), 42, 2);
    registry_config(dir.path(), &mirror, "");
    let addr = image_addr(&name);
    // not in the configuration: refused, with the closest address
    let typo = addr.replace("bundle[", "bundel[");
    let o = run_ok(dir.path(), &["import", &typo], 1);
    assert!(
        unwrapped(&text(&o.stderr)).contains(&format!("did you mean `{addr}`?")),
        "{}",
        both(&o)
    );
    // --lock=false is refused, as for every command that writes the state
    let o = run_ok(dir.path(), &["import", &addr, "--lock=false"], 1);
    assert!(text(&o.stderr).contains("lock_required"), "{}", both(&o));
    // an image that is not in the mirror: nothing to import
    let missing = image_addr(&fixture.images[0].name);
    let o = run_ok(dir.path(), &["import", &missing], 1);
    assert!(
        text(&o.stderr).contains("does not exist, so there is nothing to import"),
        "{}",
        both(&o)
    );

    mirror.proxy.clear_log();
    let o = run_ok(dir.path(), &["import", &addr], 0);
    assert!(
        text(&o.stdout).contains("It already is as configured"),
        "{}",
        both(&o)
    );
    let reqs = mirror.proxy.requests();
    assert!(writes(&reqs).is_empty(), "{:?}", writes(&reqs));
    assert_eq!(state_list(dir.path()), vec![addr.clone()]);
    // recorded: the plan creates the other image only
    let o = run_ok(dir.path(), &["plan"], 0);
    let out = text(&o.stdout);
    assert!(!out.contains(&format!("# {addr}")), "{out}");
    assert!(
        out.contains(&format!("# {missing} will be created")),
        "{out}"
    );
    // twice: refused
    let o = run_ok(dir.path(), &["import", &addr], 1);
    assert!(
        text(&o.stderr).contains("is already in the state"),
        "{}",
        both(&o)
    );
}

#[test]
fn import_records_a_hand_configured_node_without_a_write() {
    let dir = tempdir();
    local_config(dir.path(), &cluster("edge", &["./nodes/n1"], ""));
    // the files written by hand, as mirrorplan would write them
    let node = dir.path().join("nodes/n1");
    write(
        &node,
        HOSTS_TOML,
        "server = \"https://gcr.io\"\n\n[host.\"http://127.0.0.1:5000/v2/mirror\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
    );
    write(
        &node,
        CONFIG_TOML,
        "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n",
    );
    let before = ok(std::fs::metadata(node.join(HOSTS_TOML)), "stat");
    let addr = "node.edge[\"local:./nodes/n1\"]";
    // a plan already adopts it
    let o = run_ok(dir.path(), &["plan"], 0);
    assert!(
        text(&o.stdout).contains(&format!("# {addr} is already present, will be recorded")),
        "{}",
        both(&o)
    );
    let o = run_ok(dir.path(), &["import", addr], 0);
    assert!(
        text(&o.stdout).contains("recorded without a write or a restart"),
        "{}",
        both(&o)
    );
    assert_eq!(state_list(dir.path()), vec![addr.to_string()]);
    let o = run_ok(dir.path(), &["plan"], 0);
    assert!(!text(&o.stdout).contains("node.edge"), "{}", both(&o));
    let after = ok(std::fs::metadata(node.join(HOSTS_TOML)), "stat");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(before.ino(), after.ino(), "not written again");

    // a node whose files differ is imported as it is; the plan then shows the change
    write(&node, HOSTS_TOML, "server = \"https://gcr.io\"\n");
    run_ok(dir.path(), &["state", "rm", addr], 0);
    let o = run_ok(dir.path(), &["import", addr], 0);
    assert!(text(&o.stdout).contains("It differs"), "{}", both(&o));
    let o = run_ok(dir.path(), &["plan"], 0);
    assert!(
        text(&o.stdout).contains(&format!("# {addr} will be updated in place")),
        "{}",
        both(&o)
    );
    // an image_set cannot be imported
    let o = run_ok(dir.path(), &["import", "image_set.bundle"], 1);
    assert!(
        text(&o.stderr).contains("cannot be imported"),
        "{}",
        both(&o)
    );
}

// ------------------------------------------------------------- item 6

#[test]
fn prevent_destroy_refuses_destroy_and_removal_until_the_block_goes() {
    let dir = tempdir();
    let protect = "  lifecycle {\n    prevent_destroy = true\n  }\n";
    local_config(
        dir.path(),
        &cluster("edge", &["./nodes/n1", "./nodes/n2"], protect),
    );
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    let state_before = read(&dir.path().join(".mirrorplan/state.json"));

    for args in [
        &["destroy", "--auto-approve"][..],
        &["plan", "-destroy"][..],
    ] {
        let o = run_ok(dir.path(), args, 1);
        let err = unwrapped(&text(&o.stderr));
        assert!(err.contains("mirrorplan::config::prevent_destroy"), "{err}");
        assert!(
            err.contains("the plan would destroy cluster.edge, node.edge[\"local:./nodes/n1\"], node.edge[\"local:./nodes/n2\"], but cluster \"edge\" has lifecycle.prevent_destroy = true"),
            "{err}"
        );
        assert!(err.contains("[main.hcl:"), "{err}");
    }
    assert!(dir.path().join("nodes/n1").join(HOSTS_TOML).is_file());
    assert_eq!(
        read(&dir.path().join(".mirrorplan/state.json")),
        state_before,
        "nothing applied"
    );

    // a node removed from the protected cluster
    local_config(dir.path(), &cluster("edge", &["./nodes/n1"], protect));
    let o = run_ok(dir.path(), &["apply", "--auto-approve"], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(
        err.contains("the plan would destroy node.edge[\"local:./nodes/n2\"]"),
        "{err}"
    );
    assert!(dir.path().join("nodes/n2").join(HOSTS_TOML).is_file());

    // the whole block removed, its lifecycle with it: no protection left
    local_config(dir.path(), "");
    let o = run_ok(dir.path(), &["plan"], 0);
    assert!(
        text(&o.stdout).contains("# node.edge[\"local:./nodes/n2\"] will be destroyed"),
        "{}",
        both(&o)
    );
}

#[test]
fn ignore_changes_hides_the_drift_of_an_attribute_other_tools_own() {
    let dir = tempdir();
    let clusters = format!(
        "{}{}",
        cluster(
            "owned",
            &["./nodes/n1"],
            "  lifecycle {\n    ignore_changes = [hosts_toml]\n  }\n"
        ),
        cluster("plain", &["./nodes/n2"], "")
    );
    local_config(dir.path(), &clusters);
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    // another tool rewrites both nodes' hosts.toml
    let theirs = "server = \"https://gcr.io\"\n# written by bmctl\n";
    for n in ["n1", "n2"] {
        write(&dir.path().join("nodes").join(n), HOSTS_TOML, theirs);
    }
    let o = run_ok(dir.path(), &["plan"], 0);
    let out = text(&o.stdout);
    assert!(!out.contains("node.owned"), "ignored: {out}");
    assert!(
        out.contains("# node.plain[\"local:./nodes/n2\"] has changed"),
        "{out}"
    );
    assert!(
        out.contains("# node.plain[\"local:./nodes/n2\"] will be updated in place"),
        "{out}"
    );
    let o = run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    assert_eq!(
        read(&dir.path().join("nodes/n1").join(HOSTS_TOML)),
        theirs,
        "{}",
        both(&o)
    );
    assert_ne!(read(&dir.path().join("nodes/n2").join(HOSTS_TOML)), theirs);
    run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);
    run_ok(
        dir.path(),
        &["plan", "--refresh-only", "--detailed-exitcode"],
        0,
    );
    // a host the configuration adds: its missing hosts.toml is written,
    // the other tool's content of the existing one is kept
    let hcl = read(&dir.path().join("main.hcl")).replacen(
        "registry = registry.mirror\n",
        "registry = registry.mirror\n    hosts    = [\"quay.io\"]\n",
        1,
    );
    assert!(hcl.contains("quay.io"), "{hcl}");
    write(dir.path(), "main.hcl", &hcl);
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    let quay = "etc/containerd/certs.d/quay.io/hosts.toml";
    assert!(dir.path().join("nodes/n1").join(quay).is_file());
    assert_eq!(read(&dir.path().join("nodes/n1").join(HOSTS_TOML)), theirs);
    run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);
    // a file the other tool removed is missing: written again
    ok(
        std::fs::remove_file(dir.path().join("nodes/n1").join(HOSTS_TOML)),
        "rm",
    );
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    assert!(dir.path().join("nodes/n1").join(HOSTS_TOML).is_file());
    run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);

    // an unknown attribute name is a validate diagnostic
    local_config(
        dir.path(),
        &cluster(
            "owned",
            &["./nodes/n1"],
            "  lifecycle {\n    ignore_changes = [host_toml]\n  }\n",
        ),
    );
    let o = run_ok(dir.path(), &["validate"], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(
        err.contains("`ignore_changes` of a `cluster` has no attribute `host_toml`"),
        "{err}"
    );
    assert!(err.contains("did you mean `hosts_toml`?"), "{err}");
}

#[test]
fn replace_re_pushes_one_image_and_re_writes_one_node() {
    let mirror = Mirror::start(4);
    let dir = tempdir();
    let fixture = bundle(dir.path(), 43, 2);
    let nodes = "\ncluster \"edge\" {\n  nodes = [\"local:./nodes/n1\", \"local:./nodes/n2\"]\n  registry_mirror {\n    registry = registry.mirror\n  }\n}\n";
    registry_config(dir.path(), &mirror, nodes);
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);

    let name = fixture.images[0].name.clone();
    let addr = image_addr(&name);
    let blobs = fixture.images[0].blobs.len();
    let node = "node.edge[\"local:./nodes/n1\"]";
    let o = run_ok(
        dir.path(),
        &["plan", &format!("-replace={addr}"), "--replace", node],
        0,
    );
    let out = text(&o.stdout);
    for a in [&addr, node] {
        assert!(
            out.contains(&format!(
                "# {a} must be replaced, as requested: it will be re-applied"
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("Plan: 2 to add, 0 to change, 2 to destroy."),
        "{out}"
    );
    // an unknown address: did you mean
    let o = run_ok(
        dir.path(),
        &["plan", "--replace", "node.edge[\"local:./nodes/n3\"]"],
        1,
    );
    let err = unwrapped(&text(&o.stderr));
    assert!(err.contains("replace_not_found"), "{err}");
    assert!(err.contains("did you mean `node.edge["), "{err}");

    use std::os::unix::fs::MetadataExt;
    let ino = |n: &str, f: &str| {
        ok(
            std::fs::metadata(dir.path().join("nodes").join(n).join(f)),
            "stat",
        )
        .ino()
    };
    let before = [
        ino("n1", HOSTS_TOML),
        ino("n1", CONFIG_TOML),
        ino("n2", HOSTS_TOML),
    ];
    mirror.proxy.clear_log();
    let o = run_ok(
        dir.path(),
        &[
            "apply",
            "--auto-approve",
            "-replace",
            &addr,
            "-replace",
            node,
        ],
        0,
    );
    let reqs = mirror.proxy.requests();
    assert_eq!(
        uploads(&reqs),
        blobs,
        "every blob of the one image again: {:?}",
        writes(&reqs)
    );
    let other = fixture.images[1]
        .name
        .split_once('/')
        .map_or("", |(_, p)| p);
    let other_repo = other.split(':').next().unwrap_or_default();
    assert!(
        !reqs.iter().any(|r| r.method != "GET"
            && r.method != "HEAD"
            && r.target.contains(&format!("/mirror/{other_repo}/"))),
        "the other image is left alone: {:?}",
        writes(&reqs)
    );
    assert!(
        text(&o.stdout).contains("Apply complete! Resources: 2 added, 0 changed, 2 destroyed."),
        "{}",
        both(&o)
    );
    assert_ne!(ino("n1", HOSTS_TOML), before[0], "re-written");
    assert_ne!(ino("n1", CONFIG_TOML), before[1], "re-written");
    assert_eq!(ino("n2", HOSTS_TOML), before[2], "the other node untouched");
    run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn replace_copies_every_blob_of_an_upstream_image_again() {
    // the upstream registry gets a bundle from mirrorplan; the mirror
    // copies one image from there (`images = [...]`)
    let upstream = Mirror::start(5);
    let mirror = Mirror::start(6);
    let first = tempdir();
    let fixture = bundle(first.path(), 44, 1);
    registry_config(first.path(), &upstream, "");
    run_ok(first.path(), &["apply", "--auto-approve"], 0);
    let path = fixture.images[0]
        .name
        .split_once('/')
        .map_or("", |(_, p)| p)
        .to_string();
    let source = format!("{}/mirror/{path}", upstream.proxy.host_port());
    let dir = tempdir();
    write(
        dir.path(),
        "main.hcl",
        &format!(
            "registry \"up\" {{\n  endpoint = \"http://{}\"\n}}\n\n\
             registry \"mirror\" {{\n  endpoint  = \"http://{}\"\n  namespace = \"mirror\"\n}}\n\n\
             image_set \"copied\" {{\n  registry = registry.mirror\n  images   = [\"{source}\"]\n}}\n",
            upstream.proxy.host_port(),
            mirror.proxy.host_port()
        ),
    );
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    let addr = format!("image.copied[\"{source}\"]");
    mirror.proxy.clear_log();
    let o = run_ok(
        dir.path(),
        &["apply", "--auto-approve", "--replace", &addr],
        0,
    );
    let reqs = mirror.proxy.requests();
    assert_eq!(
        uploads(&reqs),
        fixture.images[0].blobs.len(),
        "{:?}\n{}",
        writes(&reqs),
        both(&o)
    );
    run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn prevent_destroy_covers_a_removed_for_each_key() {
    let dir = tempdir();
    let block = |keys: &str| {
        format!(
            "\ncluster \"site\" {{\n  for_each = toset([{keys}])\n  nodes    = [\"local:./nodes/${{each.key}}\"]\n  registry_mirror {{\n    registry = registry.mirror\n  }}\n  lifecycle {{\n    prevent_destroy = true\n  }}\n}}\n"
        )
    };
    local_config(dir.path(), &block("\"x\", \"y\""));
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    local_config(dir.path(), &block("\"x\""));
    let o = run_ok(dir.path(), &["plan"], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(
        err.contains("the plan would destroy cluster.site_y, node.site_y[\"local:./nodes/y\"], but cluster \"site\" has lifecycle.prevent_destroy = true"),
        "{err}"
    );
    assert!(dir.path().join("nodes/y").join(HOSTS_TOML).is_file());
}

#[test]
fn ignore_changes_digest_leaves_a_re_tagged_image_alone() {
    let mirror = Mirror::start(7);
    let dir = tempdir();
    let fixture = bundle(dir.path(), 45, 2);
    registry_config(dir.path(), &mirror, "");
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    // another tool points image 0's tag at image 1's manifest
    let path = |i: usize| {
        fixture.images[i]
            .name
            .split_once('/')
            .map_or("", |(_, p)| p)
            .to_string()
    };
    let (p0, p1) = (path(0), path(1));
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/mirror/{p1}", mirror.proxy.host_port()),
        &format!("docker://{}/mirror/{p0}", mirror.proxy.host_port()),
    ]);
    let addr = image_addr(&fixture.images[0].name);
    let o = run_ok(dir.path(), &["plan", "--detailed-exitcode"], 2);
    assert!(
        text(&o.stdout).contains(&format!("# {addr} has changed")),
        "{}",
        both(&o)
    );

    registry_config(dir.path(), &mirror, "");
    let mut hcl = read(&dir.path().join("main.hcl"));
    hcl = hcl.replace(
        "  bundle   = \"bundle.tar.gz\"\n}",
        "  bundle   = \"bundle.tar.gz\"\n  lifecycle {\n    ignore_changes = [digest]\n  }\n}",
    );
    write(dir.path(), "main.hcl", &hcl);
    let o = run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);
    assert!(!text(&o.stdout).contains(&addr), "{}", both(&o));
    mirror.proxy.clear_log();
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    let reqs = mirror.proxy.requests();
    assert!(writes(&reqs).is_empty(), "{:?}", writes(&reqs));
}
