//! Issue 4 through the `mirrorplan` binary: image sets pushed into REAL
//! registries started by `mirrorplan-harness` (a TLS + htpasswd "mirror" and
//! a plain-HTTP "upstream"), with configurations written to temp dirs.
//!
//! Every manifest digest is read back from the mirror independently of
//! mirrorplan (`skopeo inspect --raw | sha256sum`, or the OCI layout files),
//! uploads are counted in the registry's access log, and faults (wrong
//! password, no CA, the registry going away mid-push, corrupt and truncated
//! bundles) are checked for exit codes, messages and what reached the mirror.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirrorplan_harness::{Credentials, Registry, RegistryOptions};
use mirrorplan_registry::fixtures::{
    repack, truncate_copy, write_docker_archive, write_oci_bundle, write_oci_bundle_with,
    Corruption, Fixture, FixtureSpec, LayerCompression, MemberOrder, Packing,
};

const USER: &str = "mirror-pusher";
const PASSWORD: &str = "Corr3ct-h0rse-Battery";
const NS: &str = "test-namespace";

// ---------------------------------------------------------------- helpers

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn tmp() -> tempfile::TempDir {
    ok(
        tempfile::Builder::new().prefix("mp-regtest-").tempdir(),
        "tempdir",
    )
}

/// The mirror: TLS from a test CA and htpasswd auth.
fn secure_registry() -> Registry {
    ok(
        Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            ..Default::default()
        }),
        "start the TLS registry",
    )
}

/// The upstream: plain HTTP, no auth.
fn plain_registry() -> Registry {
    ok(
        Registry::start(RegistryOptions::default()),
        "start the plain registry",
    )
}

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    fn expect(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "{what}: expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn from_output(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `mirrorplan -C DIR ARGS` with the mirror password in the environment
/// (never in argv) and no proxy variables from the caller's environment.
fn mp_cmd(dir: &Path, password: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1")
        .env("MIRRORPLAN_VAR_mirror_password", password)
        .env("HOME", dir)
        .stdin(Stdio::null());
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
    c.arg("-C").arg(dir).args(args);
    c
}

fn mp(dir: &Path, args: &[&str]) -> Run {
    mp_pw(dir, PASSWORD, args)
}

fn mp_pw(dir: &Path, password: &str, args: &[&str]) -> Run {
    from_output(ok(mp_cmd(dir, password, args).output(), "run mirrorplan"))
}

fn apply(dir: &Path) -> Run {
    mp(dir, &["apply", "--auto-approve"])
}

fn plan_exit(dir: &Path) -> Run {
    mp(dir, &["plan", "--detailed-exitcode"])
}

/// A `registry` block for a harness registry.
fn registry_block(name: &str, reg: &Registry, namespace: Option<&str>, ca: bool) -> String {
    let mut b = format!("registry \"{name}\" {{\n  endpoint = \"{}\"\n", reg.url());
    if let Some(ns) = namespace {
        b.push_str(&format!("  namespace = \"{ns}\"\n"));
    }
    if let (true, Some(ca)) = (ca, reg.ca_cert_path()) {
        b.push_str(&format!("  ca_cert = \"{}\"\n", ca.display()));
    }
    if let Some(c) = reg.credentials() {
        b.push_str(&format!(
            "  username = \"{}\"\n  password = var.mirror_password\n",
            c.username()
        ));
    }
    b.push_str("}\n");
    b
}

const PASSWORD_VAR: &str = "variable \"mirror_password\" {\n  type      = string\n  sensitive = true\n  default   = \"\"\n}\n";

/// Writes `main.hcl` (the password variable plus `body`) into `dir`.
fn write_config(dir: &Path, body: &str) {
    ok(
        std::fs::write(dir.join("main.hcl"), format!("{PASSWORD_VAR}\n{body}")),
        "write main.hcl",
    );
}

/// A configuration of one registry block `mirror` (`reg`, namespace `ns`,
/// its CA when `ca`) and one image set `set` over `bundle` (`extra`: more
/// lines for the set).
fn write_set_config(
    dir: &Path,
    reg: &Registry,
    ns: Option<&str>,
    ca: bool,
    set: &str,
    bundle: &Path,
    extra: &str,
) {
    write_config(
        dir,
        &format!(
            "{}{}",
            registry_block("mirror", reg, ns, ca),
            bundle_set(set, "mirror", bundle, extra)
        ),
    );
}

fn bundle_set(name: &str, registry: &str, bundle: &Path, extra: &str) -> String {
    format!(
        "image_set \"{name}\" {{\n  registry = registry.{registry}\n  bundle   = \"{}\"\n{extra}}}\n",
        bundle.display()
    )
}

/// `gcr.io/a/b:t` → `NS/a/b:t` (the host dropped), written out here rather
/// than taken from mirrorplan so that the mapping itself is checked.
fn mirror_ref(upstream: &str, ns: Option<&str>) -> String {
    let path = match upstream.split_once('/') {
        Some((_, rest)) => rest,
        None => upstream,
    };
    match ns {
        Some(ns) => format!("{ns}/{path}"),
        None => path.to_string(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = ok(
        Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn(),
        "run sha256sum",
    );
    {
        let mut stdin = ok(child.stdin.take().ok_or("no stdin"), "sha256sum stdin");
        ok(stdin.write_all(bytes), "feed sha256sum");
    }
    let out = ok(child.wait_with_output(), "sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().unwrap_or("").to_string()
}

/// The raw manifest of `REPO:TAG` as skopeo reads it, or None if absent.
fn skopeo_raw(reg: &Registry, reference: &str) -> Option<Vec<u8>> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    match reg.certs_dir() {
        Some(d) => {
            cmd.arg("--cert-dir").arg(d);
        }
        None => {
            cmd.arg("--tls-verify=false");
        }
    }
    if let Some(c) = reg.credentials() {
        cmd.arg("--creds")
            .arg(format!("{}:{}", c.username(), c.password()));
    }
    cmd.arg(format!("docker://{}/{reference}", reg.host_port()));
    let out = ok(cmd.output(), "run skopeo");
    out.status.success().then_some(out.stdout)
}

/// `sha256:…` of the manifest the registry serves for `REPO:TAG`.
fn mirror_digest(reg: &Registry, reference: &str) -> Option<String> {
    skopeo_raw(reg, reference).map(|b| format!("sha256:{}", sha256_hex(&b)))
}

fn log_text(reg: &Registry) -> String {
    std::fs::read_to_string(reg.log_path()).unwrap_or_default()
}

/// Digests of blobs whose upload finished (`PUT …/blobs/uploads/…digest=… 201`)
/// in `log`.
fn uploaded_blobs(log: &str) -> Vec<String> {
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

/// Number of access-log lines with all `needles`.
fn log_count(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Repositories the registry stores (empty when nothing was pushed).
fn stored_repositories(reg: &Registry) -> Vec<String> {
    let root = reg.storage_dir().join("docker/registry/v2/repositories");
    let mut out = Vec::new();
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "_manifests") {
                if let Ok(rel) = dir.strip_prefix(root) {
                    out.push(rel.display().to_string());
                }
            } else if p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n == "_layers" || n == "_uploads")
            {
                walk(&p, root, out);
            }
        }
    }
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// Tags the registry stores (`repo:tag`), read from its storage directory.
fn stored_tags(reg: &Registry) -> Vec<String> {
    let root = reg.storage_dir().join("docker/registry/v2/repositories");
    let mut out = Vec::new();
    for repo in stored_repositories(reg) {
        let tags = root.join(&repo).join("_manifests/tags");
        if let Ok(rd) = std::fs::read_dir(tags) {
            for e in rd.flatten() {
                out.push(format!("{repo}:{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// `DELETE /v2/REPO/manifests/DIGEST` on the mirror with curl (the
/// registry removes the tags that point at it).
fn delete_manifest(reg: &Registry, repo: &str, digest: &str) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "DELETE",
    ]);
    if let Some(ca) = reg.ca_cert_path() {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.args(["-K", "-"]);
    cmd.arg(format!("{}/v2/{repo}/manifests/{digest}", reg.url()));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = ok(cmd.spawn(), "run curl");
    if let (Some(mut stdin), Some(c)) = (child.stdin.take(), reg.credentials()) {
        ok(
            writeln!(stdin, "user = \"{}:{}\"", c.username(), c.password()),
            "feed curl",
        );
    }
    let out = ok(child.wait_with_output(), "curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "202",
        "DELETE {repo}@{digest}"
    );
}

fn spec(seed: u64, images: usize, layer_size: usize) -> FixtureSpec {
    FixtureSpec {
        seed,
        images,
        layers_per_image: 2,
        shared_base_layers: 1,
        layer_size,
        multi_arch: true,
        layer_compression: LayerCompression::Mixed,
    }
}

fn oci_bundle(dir: &Path, name: &str, spec: &FixtureSpec, packing: Packing) -> Fixture {
    let path = dir.join(format!("{name}.{}", packing.extension()));
    ok(write_oci_bundle(&path, spec, packing), "write bundle")
}

/// Every image of `fixture` is in `reg` under `NS` with the source's digest,
/// as skopeo reads it.
fn assert_all_mirrored(reg: &Registry, fixture: &Fixture, ns: Option<&str>) {
    for img in &fixture.images {
        let want = img
            .manifest_digest
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let got = mirror_digest(reg, &mirror_ref(&img.name, ns));
        assert_eq!(
            got.as_deref(),
            Some(want.as_str()),
            "digest of {}",
            img.name
        );
    }
}

fn state_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(".mirrorplan/state.json")).unwrap_or_default()
}

fn image_addr(set: &str, upstream: &str) -> String {
    format!("image.{set}[\"{upstream}\"]")
}

/// The `# blobs: ...` detail line of `address` in a human plan.
fn blob_line(plan: &str, address: &str) -> String {
    let header = format!("# {address} will be");
    plan.lines()
        .skip_while(|l| !l.contains(&header))
        .find_map(|l| {
            l.trim()
                .strip_prefix("# blobs: ")
                .map(|r| format!("blobs: {r}"))
        })
        .unwrap_or_else(|| panic!("no blob line for {address} in the plan:\n{plan}"))
}

// ------------------------------------------------------------------ tests

/// The main path: a bundle (random layers, a base layer shared by every
/// image, a two-platform index) pushed into a TLS + htpasswd mirror under a
/// namespace; digests equal the source's; the plan counts blobs and bytes;
/// a second apply uploads nothing; a tag deleted in the mirror is drift
/// that `apply` repairs.
#[test]
fn bundle_push_is_exact_idempotent_and_repairs_drift() {
    let reg = secure_registry();
    let dir = tmp();
    let fx = oci_bundle(
        dir.path(),
        "bundle",
        &spec(11, 4, 64 * 1024),
        Packing::TarZst,
    );
    write_set_config(dir.path(), &reg, Some(NS), true, "anthos", &fx.path, "");

    // the plan: one create per image, with its blob count and bytes
    let plan = mp(dir.path(), &["plan", "--detailed-exitcode"]);
    plan.expect(2, "first plan");
    for img in &fx.images {
        assert!(
            plan.stdout.contains(&image_addr("anthos", &img.name)),
            "{}",
            plan.stdout
        );
    }
    // the first image uploads every blob; the others mount the shared
    // base layer from it (each blob is uploaded once per run)
    let n0 = fx.images[0].blobs.len();
    let line0 = blob_line(&plan.stdout, &image_addr("anthos", &fx.images[0].name));
    assert!(
        line0.starts_with(&format!("blobs: {n0} to upload (")) && !line0.contains("mount"),
        "image 0 uploads its {n0} blobs: {line0:?}\n{}",
        plan.stdout
    );
    let line1 = blob_line(&plan.stdout, &image_addr("anthos", &fx.images[1].name));
    let n1 = fx.images[1].blobs.len();
    assert!(
        line1.starts_with(&format!("blobs: {} to upload (", n1 - 1))
            && line1.contains(", 1 to mount from other repositories ("),
        "image 1 uploads {} blobs and mounts the base layer: {line1:?}",
        n1 - 1
    );
    assert!(
        !plan.all().contains(PASSWORD),
        "the password leaked into the plan"
    );

    let before_apply = log_text(&reg).len();
    let first = apply(dir.path());
    first.expect(0, "first apply");
    assert!(
        !first.all().contains(PASSWORD),
        "the password leaked into apply"
    );
    assert_all_mirrored(&reg, &fx, Some(NS));
    // the two-platform index: both platform manifests are there too
    let index = ok(
        String::from_utf8(
            skopeo_raw(&reg, &mirror_ref(&fx.images[0].name, Some(NS))).unwrap_or_default(),
        ),
        "index text",
    );
    assert_eq!(fx.images[0].child_digests.len(), 2);
    for child in &fx.images[0].child_digests {
        assert!(index.contains(&child.to_string()), "index lists {child}");
        let repo = mirror_ref(&fx.images[0].name, Some(NS));
        let repo = repo.rsplit_once(':').map(|(r, _)| r).unwrap_or(&repo);
        assert_eq!(
            mirror_digest(&reg, &format!("{repo}@{child}")).as_deref(),
            Some(child.to_string().as_str())
        );
    }
    // each distinct blob uploaded at most once (the shared base layer too)
    let log1 = log_text(&reg);
    let uploads = uploaded_blobs(&log1);
    let distinct: BTreeSet<&String> = uploads.iter().collect();
    assert_eq!(
        uploads.len(),
        distinct.len(),
        "a blob was uploaded twice: {uploads:?}"
    );
    assert_eq!(
        distinct.len(),
        fx.blobs.len(),
        "every blob of the bundle uploaded once"
    );
    // the push reuses what the plan's blob survey found missing: no
    // (repository, blob) is looked up twice in the first apply
    let apply_log = &log1[before_apply..];
    let mut heads: Vec<&str> = apply_log
        .lines()
        .filter(|l| l.contains("\"HEAD /v2/") && l.contains("/blobs/"))
        .filter(|l| !l.contains("\" 401 "))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(!heads.is_empty(), "no blob HEAD in the log:\n{apply_log}");
    let n_heads = heads.len();
    heads.sort_unstable();
    heads.dedup();
    assert_eq!(
        n_heads,
        heads.len(),
        "a blob was looked up twice:\n{apply_log}"
    );

    // warm: nothing to do, nothing uploaded
    plan_exit(dir.path()).expect(0, "plan after apply");
    let second = apply(dir.path());
    second.expect(0, "second apply");
    let log2 = log_text(&reg);
    let new_log = &log2[log1.len()..];
    assert_eq!(
        log_count(new_log, &["\"PUT /v2/"]),
        0,
        "second apply wrote:\n{new_log}"
    );
    assert_eq!(
        log_count(new_log, &["\"POST /v2/"]),
        0,
        "second apply started uploads:\n{new_log}"
    );

    // drift: delete image 1's manifest (and so its tag) in the mirror
    let victim = &fx.images[1];
    let digest = victim
        .manifest_digest
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let mref = mirror_ref(&victim.name, Some(NS));
    let (repo, _tag) = mref.rsplit_once(':').unwrap_or((&mref, ""));
    delete_manifest(&reg, repo, &digest);
    assert_eq!(mirror_digest(&reg, &mref), None, "the tag is gone");
    let drift = plan_exit(dir.path());
    drift.expect(2, "plan after the tag was deleted");
    let victim_addr = image_addr("anthos", &victim.name);
    assert!(
        drift.stdout.contains("changed outside of mirrorplan")
            && drift
                .stdout
                .contains(&format!("# {victim_addr} has been deleted"))
            && drift
                .stdout
                .contains(&format!("# {victim_addr} will be created")),
        "drift for {victim_addr}:\n{}",
        drift.stdout
    );
    for other in fx.images.iter().filter(|i| i.name != victim.name) {
        let a = image_addr("anthos", &other.name);
        assert!(
            !drift
                .stdout
                .lines()
                .any(|l| l.contains(&a) && (l.contains("created") || l.contains("updated"))),
            "only {victim_addr} should change:\n{}",
            drift.stdout
        );
    }
    apply(dir.path()).expect(0, "apply after drift");
    assert_eq!(
        mirror_digest(&reg, &mref).as_deref(),
        Some(digest.as_str()),
        "restored"
    );
    plan_exit(dir.path()).expect(0, "plan after repair");
}

/// A `docker save` archive (`.tar.xz`) pushed without a namespace: the
/// mirror serves a manifest that names exactly the archive's config and
/// layers, under the digest recorded in the state.
/// Issue 16: a bundle whose members come in name order (`blobs/` before
/// `index.json`, as a plain `tar -cf` of a layout gives) or the reverse,
/// as `.tar`, multi-block `.tar.xz` (as `xz -T0` writes it), single-block
/// `.tar.xz` and `.tar.zst`, cold (a new directory: no `.mirrorplan/`), is
/// applied with every digest exact and each blob uploaded once; a second
/// plan finds nothing to do.
#[test]
fn bundles_in_name_and_reverse_member_order_are_applied_exactly() {
    let reg = secure_registry();
    let dir = tmp();
    let src = oci_bundle(dir.path(), "src", &spec(16, 3, 96 * 1024), Packing::Tar);
    let mut k = 0;
    for order in [MemberOrder::Name, MemberOrder::Reverse] {
        for (packing, one_xz_block) in [
            (Packing::Tar, false),
            (Packing::TarXz, false),
            (Packing::TarXz, true),
            (Packing::TarZst, false),
        ] {
            k += 1;
            let what = format!("{order:?} {packing:?} (one xz block: {one_xz_block})");
            let work = dir.path().join(format!("w{k}"));
            ok(std::fs::create_dir(&work), "mkdir");
            let bundle = work.join(format!("bundle.{}", packing.extension()));
            ok(
                repack(&src.path, &bundle, order, packing, one_xz_block),
                "repack",
            );
            let ns = format!("order-{k}");
            write_set_config(&work, &reg, Some(&ns), true, "set", &bundle, "");
            let before = uploaded_blobs(&log_text(&reg)).len();
            apply(&work).expect(0, &what);
            assert_all_mirrored(&reg, &src, Some(&ns));
            let uploads = uploaded_blobs(&log_text(&reg)).len() - before;
            assert_eq!(uploads, src.blobs.len(), "{what}: each blob uploaded once");
            plan_exit(&work).expect(0, &format!("{what}: plan after apply"));
        }
    }
}

#[test]
fn docker_archive_is_pushed_without_namespace() {
    let reg = secure_registry();
    let dir = tmp();
    let path = dir.path().join("saved.tar.xz");
    let fx = ok(
        write_docker_archive(&path, &spec(12, 3, 32 * 1024), Packing::TarXz),
        "write docker archive",
    );
    write_set_config(dir.path(), &reg, None, true, "saved", &path, "");
    apply(dir.path()).expect(0, "apply of a docker archive");
    let state = state_text(dir.path());
    for img in &fx.images {
        let mref = mirror_ref(&img.name, None);
        let raw = skopeo_raw(&reg, &mref).unwrap_or_else(|| panic!("{mref} is not in the mirror"));
        let digest = format!("sha256:{}", sha256_hex(&raw));
        let text = String::from_utf8_lossy(&raw);
        for blob in &img.blobs {
            assert!(text.contains(&blob.to_string()), "{mref} names {blob}");
        }
        assert!(
            state.contains(&digest),
            "the state records {mref}'s digest {digest}"
        );
    }
    plan_exit(dir.path()).expect(0, "plan after apply");
}

/// A wrong password: exit 1, the error names the registry and the user,
/// never the password, and nothing reaches the mirror.
#[test]
fn wrong_password_is_a_clear_error_and_pushes_nothing() {
    let reg = secure_registry();
    let dir = tmp();
    let fx = oci_bundle(dir.path(), "b", &spec(13, 2, 8 * 1024), Packing::TarGz);
    write_set_config(dir.path(), &reg, Some(NS), true, "s", &fx.path, "");
    let wrong = "Wr0ng-passw0rd-xyz";
    let run = mp_pw(dir.path(), wrong, &["apply", "--auto-approve"]);
    run.expect(1, "apply with a wrong password");
    let all = run.all();
    assert!(all.contains(&reg.host_port()), "names the registry:\n{all}");
    assert!(all.contains(USER), "names the user:\n{all}");
    assert!(
        all.contains("credentials"),
        "says the credentials are wrong:\n{all}"
    );
    assert!(!all.contains(wrong), "the password leaked:\n{all}");
    assert!(stored_repositories(&reg).is_empty(), "nothing pushed");
    let log = log_text(&reg);
    assert_eq!(log_count(&log, &["\"PUT /v2/"]), 0, "no PUT:\n{log}");
}

/// `ca_cert` left out for a registry whose certificate a private CA
/// signed: a clear certificate error that points at `ca_cert`.
#[test]
fn missing_ca_is_a_clear_certificate_error() {
    let reg = secure_registry();
    let dir = tmp();
    let fx = oci_bundle(dir.path(), "b", &spec(14, 1, 4 * 1024), Packing::Tar);
    write_set_config(dir.path(), &reg, Some(NS), false, "s", &fx.path, "");
    let run = apply(dir.path());
    run.expect(1, "apply without the CA");
    let all = run.all().to_lowercase();
    assert!(all.contains("certificate"), "a certificate error:\n{all}");
    assert!(all.contains("ca_cert"), "points at ca_cert:\n{all}");
    assert!(all.contains(&reg.host_port()), "names the registry:\n{all}");
    assert!(stored_repositories(&reg).is_empty(), "nothing pushed");
}

/// `images = [...]` from a plain-HTTP upstream (matched by the `registry`
/// block with the same host:port) copied into the TLS mirror, digests
/// unchanged; with `platforms`, the plan says the index is rewritten and
/// the mirror gets the filtered index.
#[test]
fn upstream_images_are_copied_and_filtered() {
    let up = plain_registry();
    let mirror = secure_registry();
    let dir = tmp();
    // the upstream's content: a bundle pushed into it with mirrorplan
    let seed_dir = tmp();
    let fx = oci_bundle(
        seed_dir.path(),
        "b",
        &spec(15, 2, 16 * 1024),
        Packing::TarGz,
    );
    write_config(
        seed_dir.path(),
        &format!(
            "{}{}",
            registry_block("upstream", &up, None, false),
            bundle_set("seed", "upstream", &fx.path, "")
        ),
    );
    apply(seed_dir.path()).expect(0, "seed the upstream");
    assert_all_mirrored(&up, &fx, None);

    let multi = &fx.images[0]; // the two-platform index
    let single = &fx.images[1];
    let up_ref = |name: &str| format!("{}/{}", up.host_port(), mirror_ref(name, None));
    write_config(
        dir.path(),
        &format!(
            "{}{}image_set \"extras\" {{\n  registry = registry.mirror\n  images   = [\"{}\", \"{}\"]\n}}\nimage_set \"amd64\" {{\n  registry  = registry.mirror2\n  images    = [\"{}\"]\n  platforms = [\"linux/amd64\"]\n}}\n{}",
            registry_block("upstream", &up, None, false),
            registry_block("mirror", &mirror, Some(NS), true),
            up_ref(&multi.name),
            up_ref(&single.name),
            up_ref(&multi.name),
            registry_block("mirror2", &mirror, Some("filtered"), true),
        ),
    );
    let plan = plan_exit(dir.path());
    plan.expect(2, "plan of the upstream copy");
    let filtered_addr = image_addr("amd64", &up_ref(&multi.name));
    let header = format!("# {filtered_addr} will be created");
    let section: String = plan
        .stdout
        .split("\n\n")
        .find(|s| s.contains(&header))
        .unwrap_or_default()
        .to_string();
    assert!(
        section.contains("digest differs from the source's"),
        "the plan says the filter changes the digest:\n{}",
        plan.stdout
    );
    // the plan counts the blobs a copy sends (from the upstream's manifests)
    for (set, img) in [("extras", single), ("extras", multi), ("amd64", multi)] {
        let header = format!("# {} will be created", image_addr(set, &up_ref(&img.name)));
        let section = plan
            .stdout
            .split("\n\n")
            .find(|s| s.contains(&header))
            .unwrap_or_default();
        let line = section
            .lines()
            .find(|l| l.contains("to copy from the upstream registry"))
            .unwrap_or_else(|| panic!("no blob count for {header}:\n{}", plan.stdout));
        let n: u64 = line
            .trim_start_matches([' ', '#'])
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n >= 2, "at least a config and a layer for {header}: {line}");
    }

    apply(dir.path()).expect(0, "apply of the upstream copy");
    for img in [multi, single] {
        let want = img.manifest_digest.as_ref().map(|d| d.to_string());
        assert_eq!(
            mirror_digest(&mirror, &mirror_ref(&img.name, Some(NS))),
            want,
            "{} copied byte for byte",
            img.name
        );
    }
    // the filtered index: only amd64, another digest, recorded in the state
    let fref = mirror_ref(&multi.name, Some("filtered"));
    let raw = skopeo_raw(&mirror, &fref).unwrap_or_else(|| panic!("{fref} missing"));
    let index: serde_json::Value = ok(serde_json::from_slice(&raw), "filtered index JSON");
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(manifests.len(), 1, "one platform left: {index}");
    assert_eq!(manifests[0]["platform"]["architecture"], "amd64");
    let fdigest = format!("sha256:{}", sha256_hex(&raw));
    assert_ne!(
        Some(&fdigest),
        multi
            .manifest_digest
            .as_ref()
            .map(|d| d.to_string())
            .as_ref()
    );
    assert!(
        state_text(dir.path()).contains(&fdigest),
        "the state has the filtered digest"
    );
    // the platform manifest it names is there
    let child = manifests[0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let repo = fref
        .rsplit_once(':')
        .map(|(r, _)| r.to_string())
        .unwrap_or_default();
    assert_eq!(
        mirror_digest(&mirror, &format!("{repo}@{child}")),
        Some(child)
    );
    plan_exit(dir.path()).expect(0, "plan after the copy");
}

/// Copies from an upstream registry are one pass: every blob is read from
/// the upstream once and uploaded into the mirror once, the layer shared
/// by every image is mounted into the other repositories, and every
/// manifest (platform manifests included) keeps its digest.
#[test]
fn upstream_copies_upload_each_blob_once_and_mount_shared_layers() {
    let up = plain_registry();
    let mirror = secure_registry();
    let seed_dir = tmp();
    let fx = oci_bundle(
        seed_dir.path(),
        "b",
        &spec(47, 5, 16 * 1024),
        Packing::TarZst,
    );
    write_config(
        seed_dir.path(),
        &format!(
            "{}{}",
            registry_block("upstream", &up, None, false),
            bundle_set("seed", "upstream", &fx.path, "")
        ),
    );
    apply(seed_dir.path()).expect(0, "seed the upstream");
    let shared: Vec<String> = fx.images[0]
        .blobs
        .iter()
        .filter(|d| fx.images.iter().all(|i| i.blobs.contains(d)))
        .map(|d| d.to_string())
        .collect();
    assert_eq!(shared.len(), 1, "one base layer shared by every image");
    let shared_hex = shared[0].trim_start_matches("sha256:").to_string();

    let dir = tmp();
    let up_ref = |name: &str| format!("{}/{}", up.host_port(), mirror_ref(name, None));
    let list: Vec<String> = fx
        .images
        .iter()
        .map(|i| format!("\"{}\"", up_ref(&i.name)))
        .collect();
    write_config(
        dir.path(),
        &format!(
            "{}{}image_set \"copies\" {{\n  registry = registry.mirror\n  images   = [{}]\n}}\n",
            registry_block("upstream", &up, None, false),
            registry_block("mirror", &mirror, Some(NS), true),
            list.join(", "),
        ),
    );
    let (up_before, mirror_before) = (log_text(&up).len(), log_text(&mirror).len());
    apply(dir.path()).expect(0, "apply of the copies");
    let (up_log, mirror_log) = (log_text(&up), log_text(&mirror));
    let (up_run, run) = (&up_log[up_before..], &mirror_log[mirror_before..]);

    // byte for byte: the mirror serves the upstream's manifests
    for img in &fx.images {
        let want = img.manifest_digest.as_ref().map(|d| d.to_string());
        let at = mirror_ref(&img.name, Some(NS));
        assert_eq!(mirror_digest(&mirror, &at), want, "{} copied", img.name);
        let repo = at.rsplit_once(':').map(|(r, _)| r).unwrap_or(&at);
        for child in &img.child_digests {
            assert_eq!(
                mirror_digest(&mirror, &format!("{repo}@{child}")).as_deref(),
                Some(child.as_str()),
                "platform manifest {child} of {}",
                img.name
            );
        }
    }
    // each blob uploaded once, and only once
    let mut uploaded = uploaded_blobs(run);
    uploaded.sort();
    let mut want: Vec<String> = fx.blobs.keys().map(|d| d.to_string()).collect();
    want.sort();
    assert_eq!(uploaded, want, "every blob uploaded exactly once:\n{run}");
    // the shared layer: read from the upstream once, mounted elsewhere
    assert_eq!(
        log_count(up_run, &["\"GET /v2/", "/blobs/", &shared_hex]),
        1,
        "the shared layer is read from the upstream once:\n{up_run}"
    );
    assert_eq!(
        log_count(run, &["\"POST /v2/", "mount=", &shared_hex]),
        fx.images.len() - 1,
        "the shared layer is mounted into every other repository:\n{run}"
    );
    plan_exit(dir.path()).expect(0, "plan after the copies");
}

/// `oci:PATH` as the target: the layout's index.json tags each image with
/// its mirror path and the stored manifest blob hashes to the source digest.
#[test]
fn oci_store_target_holds_exact_manifests() {
    let dir = tmp();
    let fx = oci_bundle(dir.path(), "b", &spec(16, 3, 8 * 1024), Packing::TarZst);
    write_config(
        dir.path(),
        &format!(
            "registry \"store\" {{\n  endpoint  = \"oci:./store\"\n  namespace = \"{NS}\"\n}}\n{}",
            bundle_set("s", "store", &fx.path, "")
        ),
    );
    apply(dir.path()).expect(0, "apply into an oci: store");
    let store = dir.path().join("store");
    let index: serde_json::Value = ok(
        serde_json::from_slice(&ok(
            std::fs::read(store.join("index.json")),
            "read index.json",
        )),
        "index.json",
    );
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    for img in &fx.images {
        let want = mirror_ref(&img.name, Some(NS));
        let entry = entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == want.as_str())
            .unwrap_or_else(|| panic!("{want} in index.json: {index}"));
        let digest = entry["digest"].as_str().unwrap_or_default();
        let want_digest = img
            .manifest_digest
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default();
        assert_eq!(digest, want_digest, "{want}");
        let hex = digest.trim_start_matches("sha256:");
        let bytes = ok(
            std::fs::read(store.join("blobs/sha256").join(hex)),
            "manifest blob",
        );
        assert_eq!(
            sha256_hex(&bytes),
            hex,
            "the stored manifest hashes to its digest"
        );
    }
    plan_exit(dir.path()).expect(0, "plan after apply");
}

/// A tiny HTTP CONNECT proxy on loopback that records the targets it tunnelled to.
struct ConnectProxy {
    port: u16,
    targets: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let listener = ok(TcpListener::bind("127.0.0.1:0"), "bind the proxy");
        let port = ok(listener.local_addr(), "proxy address").port();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || proxy_one(conn, &seen));
            }
        });
        ConnectProxy { port, targets }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

fn proxy_one(mut client: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    // tests talk to 127.0.0.0/8 only
    let upstream = match target.starts_with("127.") {
        true => TcpStream::connect(target),
        false => Err(std::io::Error::other("not loopback")),
    };
    let Ok(upstream) = upstream else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    if let Ok(mut s) = seen.lock() {
        s.push(target.to_string());
    }
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let mut upstream = upstream;
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut upstream);
        let _ = upstream.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut u2, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

/// `proxy = "http://…"` in the registry block, and `HTTPS_PROXY` in the
/// environment: every connection to the mirror goes through a CONNECT
/// tunnel; a proxy that is down makes apply fail instead of going direct.
#[test]
fn proxy_setting_and_https_proxy_variable_are_used() {
    let reg = secure_registry();
    let proxy = ConnectProxy::start();
    let dir = tmp();
    let fx = oci_bundle(dir.path(), "b", &spec(17, 2, 8 * 1024), Packing::TarGz);
    let with_proxy = registry_block("mirror", &reg, Some(NS), true)
        .replace("}\n", &format!("  proxy = \"{}\"\n}}\n", proxy.url()));
    write_config(
        dir.path(),
        &format!("{with_proxy}{}", bundle_set("s", "mirror", &fx.path, "")),
    );
    apply(dir.path()).expect(0, "apply through the proxy");
    assert_all_mirrored(&reg, &fx, Some(NS));
    let tunnels = proxy.targets();
    assert!(!tunnels.is_empty(), "the proxy saw no CONNECT");
    assert!(
        tunnels.iter().all(|t| *t == reg.host_port()),
        "tunnels go to the mirror: {tunnels:?}"
    );

    // a proxy that is down: apply fails, it does not silently go direct
    let dead = ok(TcpListener::bind("127.0.0.1:0"), "bind");
    let dead_port = ok(dead.local_addr(), "addr").port();
    drop(dead);
    let dir2 = tmp();
    let fx2 = oci_bundle(dir2.path(), "b", &spec(18, 1, 4 * 1024), Packing::Tar);
    let down = registry_block("mirror", &reg, Some("via-dead-proxy"), true).replace(
        "}\n",
        &format!("  proxy = \"http://127.0.0.1:{dead_port}\"\n}}\n"),
    );
    write_config(
        dir2.path(),
        &format!("{down}{}", bundle_set("s", "mirror", &fx2.path, "")),
    );
    let failed = apply(dir2.path());
    failed.expect(1, "apply through a proxy that is down");
    assert!(
        !stored_repositories(&reg)
            .iter()
            .any(|r| r.starts_with("via-dead-proxy")),
        "nothing pushed around the dead proxy"
    );

    // HTTPS_PROXY from the environment, no `proxy` attribute
    let env_proxy = ConnectProxy::start();
    let dir3 = tmp();
    let fx3 = oci_bundle(dir3.path(), "b", &spec(19, 1, 4 * 1024), Packing::Tar);
    write_set_config(dir3.path(), &reg, Some("via-env"), true, "s", &fx3.path, "");
    let run = from_output(ok(
        mp_cmd(dir3.path(), PASSWORD, &["apply", "--auto-approve"])
            .env("HTTPS_PROXY", env_proxy.url())
            .output(),
        "run mirrorplan",
    ));
    run.expect(0, "apply with HTTPS_PROXY");
    assert_all_mirrored(&reg, &fx3, Some("via-env"));
    assert!(
        env_proxy.targets().contains(&reg.host_port()),
        "HTTPS_PROXY was used: {:?}",
        env_proxy.targets()
    );
}

/// Corrupt and truncated bundles: the damaged images fail with an error
/// naming the image and the blob, no manifest is pushed for them, the
/// other images (of the same bundle and of other sets) are pushed, the run
/// exits 1, and a plan after the good images are in reports only the bad.
#[test]
fn corrupt_and_truncated_bundles_fail_only_their_images() {
    let reg = secure_registry();
    let dir = tmp();
    let s = spec(20, 4, 32 * 1024);
    let mut config = String::new();
    // (set name, fixture, the image that must fail)
    let mut cases: Vec<(&str, Fixture, String)> = Vec::new();
    for (name, corruption, bad) in [
        ("wronglayer", Corruption::WrongLayerContent, 0),
        ("missinglayer", Corruption::MissingLayer, 3),
        ("wrongconfig", Corruption::WrongConfigContent, 3),
    ] {
        let path = dir.path().join(format!("{name}.tar.gz"));
        let fx = ok(
            write_oci_bundle_with(&path, &s, Packing::TarGz, corruption),
            "write a corrupt bundle",
        );
        config.push_str(&registry_block(name, &reg, Some(name), true));
        config.push_str(&bundle_set(name, name, &path, ""));
        let bad_name = fx.images[bad].name.clone();
        cases.push((name, fx, bad_name));
    }
    // an unreadable index.json: every image of that bundle fails, nothing else
    let unreadable = dir.path().join("unreadable.tar");
    ok(
        write_oci_bundle_with(&unreadable, &s, Packing::Tar, Corruption::UnreadableIndex),
        "write a bundle with a bad index",
    );
    config.push_str(&registry_block(
        "unreadable",
        &reg,
        Some("unreadable"),
        true,
    ));
    config.push_str(&bundle_set("unreadable", "unreadable", &unreadable, ""));
    // a good set beside them
    let good = oci_bundle(dir.path(), "good", &spec(21, 2, 8 * 1024), Packing::TarZst);
    config.push_str(&registry_block("good", &reg, Some("good"), true));
    config.push_str(&bundle_set("good", "good", &good.path, ""));
    write_config(dir.path(), &config);

    let run = apply(dir.path());
    run.expect(1, "apply of corrupt bundles");
    let all = run.all();
    assert!(!all.contains(PASSWORD), "the password leaked");
    assert_all_mirrored(&reg, &good, Some("good"));
    for (name, fx, bad) in &cases {
        let corrupted = fx
            .corrupted
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default();
        assert!(
            !corrupted.is_empty(),
            "{name}: the fixture names its damaged blob"
        );
        // the error names the image and the blob (messages may wrap lines)
        let flat_nows: String = all.split_whitespace().collect();
        assert!(
            flat_nows.contains(&corrupted) && flat_nows.contains(bad.as_str()),
            "{name}: an error naming {bad} and {corrupted}:\n{all}"
        );
        for img in &fx.images {
            let mref = mirror_ref(&img.name, Some(name));
            let got = mirror_digest(&reg, &mref);
            if img.name == *bad {
                assert_eq!(
                    got, None,
                    "{name}: no manifest for the damaged {}",
                    img.name
                );
            } else {
                let want = img.manifest_digest.as_ref().map(|d| d.to_string());
                assert_eq!(got, want, "{name}: {} is pushed", img.name);
            }
        }
    }
    assert!(
        all.contains("image_set.unreadable"),
        "the unreadable bundle is reported:\n{all}"
    );
    assert!(
        !stored_repositories(&reg)
            .iter()
            .any(|r| r.starts_with("unreadable")),
        "nothing from the unreadable bundle"
    );
    // the good images are recorded; a second apply has only the bad ones left
    let state = state_text(dir.path());
    for img in &good.images {
        assert!(state.contains(&img.name), "the state records {}", img.name);
    }
    let again = plan_exit(dir.path());
    again.expect(1, "plan with damaged images still exits 1");
    for (name, _, bad) in &cases {
        let a = image_addr(name, bad);
        assert!(
            again.all().contains(&a),
            "{a} still reported or planned:\n{}",
            again.all()
        );
    }
    assert!(
        !again.stdout.contains("to destroy") || again.stdout.contains("0 to destroy"),
        "damaged images never make the plan destroy anything:\n{}",
        again.stdout
    );

    // a truncated bundle: its index.json is cut off with the tail, so none
    // of its images can be known; they fail, a good set beside it is pushed
    let tdir = tmp();
    let whole = oci_bundle(tdir.path(), "whole", &spec(22, 4, 64 * 1024), Packing::Tar);
    let len = ok(std::fs::metadata(&whole.path), "bundle size").len();
    let cut = tdir.path().join("cut.tar");
    ok(truncate_copy(&whole.path, &cut, len * 3 / 4), "truncate");
    let good2 = oci_bundle(tdir.path(), "good2", &spec(23, 1, 8 * 1024), Packing::TarGz);
    write_config(
        tdir.path(),
        &format!(
            "{}{}{}{}",
            registry_block("mirror", &reg, Some("truncated"), true),
            bundle_set("cut", "mirror", &cut, ""),
            registry_block("other", &reg, Some("beside-truncated"), true),
            bundle_set("other", "other", &good2.path, ""),
        ),
    );
    let run = apply(tdir.path());
    run.expect(1, "apply of a truncated bundle");
    let flat: String = run.all().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("image_set.cut") && flat.contains("truncated") && flat.contains("cut.tar"),
        "a clear error for the truncated bundle:\n{}",
        run.all()
    );
    assert!(
        !stored_repositories(&reg)
            .iter()
            .any(|r| r.starts_with("truncated")),
        "nothing from the truncated bundle"
    );
    assert_all_mirrored(&reg, &good2, Some("beside-truncated"));
}

/// The registry goes away mid-push (stopped once the first blob upload has
/// finished): apply exits 1 with an error naming the registry, the state
/// records exactly images that are really in the mirror, and once the
/// registry is back the next apply completes without uploading again any
/// blob the first run finished.
#[test]
fn registry_stopped_mid_push_then_resumed() {
    let mut reg = secure_registry();
    let dir = tmp();
    let fx = oci_bundle(
        dir.path(),
        "big",
        &FixtureSpec {
            layers_per_image: 2,
            ..spec(24, 12, 1536 * 1024)
        },
        Packing::TarZst,
    );
    write_set_config(dir.path(), &reg, Some(NS), true, "big", &fx.path, "");
    let mut child = ok(
        mp_cmd(dir.path(), PASSWORD, &["apply", "--auto-approve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
        "spawn apply",
    );
    // stop the registry as soon as one blob upload has completed
    let mut stopped = false;
    for _ in 0..60_000 {
        if !uploaded_blobs(&log_text(&reg)).is_empty() {
            reg.stop();
            stopped = true;
            break;
        }
        if ok(child.try_wait(), "poll apply").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let first = from_output(ok(child.wait_with_output(), "wait for apply"));
    assert!(
        stopped,
        "the registry was stopped mid-push:\n{}",
        first.all()
    );
    first.expect(1, "apply while the registry goes away");
    assert!(
        first.all().contains(&reg.host_port()),
        "the error names the registry:\n{}",
        first.all()
    );
    assert!(
        !first.all().contains("panicked"),
        "a clean failure:\n{}",
        first.all()
    );
    let log1 = log_text(&reg);
    let done1: BTreeSet<String> = uploaded_blobs(&log1).into_iter().collect();
    assert!(
        !done1.is_empty() && done1.len() < fx.blobs.len(),
        "stopped part way: {done1:?}"
    );

    // the state records only images that are really complete in the mirror
    let state = state_text(dir.path());
    let recorded: Vec<&str> = fx
        .images
        .iter()
        .filter(|i| state.contains(&i.name))
        .map(|i| i.name.as_str())
        .collect();
    let tags = stored_tags(&reg);
    for name in &recorded {
        let want = mirror_ref(name, Some(NS));
        assert!(
            tags.contains(&want),
            "{name} is in the state, so in the mirror: {tags:?}"
        );
    }

    ok(reg.start_again(), "start the registry again");
    let second = apply(dir.path());
    second.expect(0, "apply after the registry came back");
    assert_all_mirrored(&reg, &fx, Some(NS));
    let log2 = log_text(&reg);
    let done2: BTreeSet<String> = uploaded_blobs(&log2[log1.len()..]).into_iter().collect();
    let again: Vec<&String> = done1.intersection(&done2).collect();
    assert!(again.is_empty(), "blobs uploaded twice: {again:?}");
    assert_eq!(
        done1.len() + done2.len(),
        fx.blobs.len(),
        "every blob uploaded exactly once over the two runs"
    );
    plan_exit(dir.path()).expect(0, "plan after the resumed apply");
}

/// `destroy` of a set with `prune = true` in the TLS + htpasswd mirror:
/// every tag is deleted (checked with skopeo and curl, with the
/// credentials), the state forgets the images, and the password never
/// appears in the output or the state.
#[test]
fn destroy_with_prune_deletes_tags_on_a_password_protected_mirror() {
    let reg = secure_registry();
    let dir = tmp();
    let fx = oci_bundle(
        dir.path(),
        "bundle",
        &spec(23, 3, 16 * 1024),
        Packing::TarGz,
    );
    write_set_config(
        dir.path(),
        &reg,
        Some(NS),
        true,
        "pruned",
        &fx.path,
        "  prune = true\n",
    );
    apply(dir.path()).expect(0, "apply");
    assert_all_mirrored(&reg, &fx, Some(NS));

    let plan = mp(dir.path(), &["plan", "--destroy", "--detailed-exitcode"]);
    plan.expect(2, "destroy plan");
    assert!(
        plan.stdout
            .contains("the tag is deleted from the mirror (prune = true)"),
        "{}",
        plan.stdout
    );
    let destroy = mp(dir.path(), &["destroy", "--auto-approve"]);
    destroy.expect(0, "destroy");
    for img in &fx.images {
        let mref = mirror_ref(&img.name, Some(NS));
        assert_eq!(
            mirror_digest(&reg, &mref),
            None,
            "{mref} is still served after destroy"
        );
        // the manifest itself is gone too, not only the tag
        let digest = img
            .manifest_digest
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let (repo, _) = mref.rsplit_once(':').unwrap_or((&mref, ""));
        assert_eq!(
            mirror_digest(&reg, &format!("{repo}@{digest}")),
            None,
            "{repo}@{digest} is still served after destroy"
        );
    }
    assert!(
        !stored_tags(&reg).iter().any(|t| t.starts_with(NS)),
        "tags left in storage: {:?}",
        stored_tags(&reg)
    );
    let state = state_text(dir.path());
    for img in &fx.images {
        assert!(
            !state.contains(&image_addr("pruned", &img.name)),
            "the state still holds {}",
            img.name
        );
    }
    for (what, text) in [
        ("plan", plan.all()),
        ("destroy", destroy.all()),
        ("state", state),
    ] {
        assert!(!text.contains(PASSWORD), "the password leaked into {what}");
    }
    // nothing left to do
    mp(dir.path(), &["plan", "--destroy", "--detailed-exitcode"]).expect(0, "second destroy plan");
}

/// The plan's blob split after a partial push: image A alone is pushed
/// (`--target`), then the plan for image B of the same bundle says that the
/// layer B shares with A is mounted from A's repository and that B's own
/// blobs are uploaded; the apply does exactly that (the registry's log shows
/// no upload of the shared layer), and the warm plan after it costs one
/// manifest HEAD per tag and no blob HEAD.
#[test]
fn plan_after_a_partial_push_splits_upload_and_mount() {
    let reg = secure_registry();
    let dir = tmp();
    let fx = oci_bundle(
        dir.path(),
        "bundle",
        &spec(41, 3, 32 * 1024),
        Packing::TarGz,
    );
    write_set_config(dir.path(), &reg, Some(NS), true, "s", &fx.path, "");
    let (a, b) = (&fx.images[1], &fx.images[2]);
    let shared: BTreeSet<String> = a
        .blobs
        .iter()
        .filter(|d| b.blobs.contains(d))
        .map(|d| d.to_string())
        .collect();
    assert!(
        !shared.is_empty(),
        "the fixture's images share a base layer"
    );
    let addr_a = image_addr("s", &a.name);
    let addr_b = image_addr("s", &b.name);
    mp(
        dir.path(),
        &["apply", "--auto-approve", "--target", &addr_a],
    )
    .expect(0, "push image A alone");
    assert_eq!(
        mirror_digest(&reg, &mirror_ref(&b.name, Some(NS))),
        None,
        "B is not pushed yet"
    );

    let plan = plan_exit(dir.path());
    plan.expect(2, "plan after the partial push");
    assert!(
        !plan.stdout.contains(&format!("# {addr_a} will be")),
        "A is up to date:\n{}",
        plan.stdout
    );
    let line = blob_line(&plan.stdout, &addr_b);
    let own = b.blobs.len() - shared.len();
    let shared_bytes: u64 = fx
        .blobs
        .iter()
        .filter(|(d, _)| shared.contains(&d.to_string()))
        .map(|(_, s)| *s)
        .sum();
    assert!(
        line.starts_with(&format!("blobs: {own} to upload ("))
            && line.contains(&format!(
                ", {} to mount from other repositories (",
                shared.len()
            ))
            && !line.contains("already present"),
        "B uploads its {own} own blobs and mounts the {} shared one(s) ({shared_bytes} bytes): {line:?}",
        shared.len()
    );
    assert!(
        !plan.all().contains(PASSWORD),
        "the password leaked into the plan"
    );

    let before = log_text(&reg).len();
    let rest = apply(dir.path());
    rest.expect(0, "apply the rest");
    // the bytes B's own blobs took are reported under B's address (the
    // pass over the bundle is driven by whichever image starts first)
    let done_b = rest
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("{addr_b}: Creation complete after")))
        .unwrap_or_else(|| panic!("no completion line for B:\n{}", rest.stderr));
    assert!(
        done_b.contains(" at ") && done_b.ends_with("/s)"),
        "no bytes and rate for B: {done_b:?}"
    );
    assert_all_mirrored(&reg, &fx, Some(NS));
    let log = log_text(&reg);
    let new_log = &log[before..];
    let uploaded: BTreeSet<String> = uploaded_blobs(new_log).into_iter().collect();
    for d in &shared {
        assert!(
            !uploaded.contains(d),
            "the shared layer {d} was uploaded again instead of mounted:\n{new_log}"
        );
        assert!(
            log_count(new_log, &["\"POST /v2/", "mount=", &d.replace(':', "%3A")]) > 0
                || log_count(new_log, &["\"POST /v2/", "mount=", d.as_str()]) > 0,
            "no mount of {d}:\n{new_log}"
        );
    }
    for d in b.blobs.iter().map(|d| d.to_string()) {
        if !shared.contains(&d) {
            assert!(uploaded.contains(&d), "B's own blob {d} was not uploaded");
        }
    }

    // warm: one manifest HEAD per tag, no blob HEAD
    let before = log_text(&reg).len();
    plan_exit(dir.path()).expect(0, "warm plan");
    let log = log_text(&reg);
    let warm = &log[before..];
    assert_eq!(
        log_count(warm, &["\"HEAD /v2/", "/blobs/"]),
        0,
        "a warm plan looked at blobs:\n{warm}"
    );
    assert_eq!(
        log_count(warm, &["\"HEAD /v2/", "/manifests/", "\" 200 "]),
        fx.images.len(),
        "one manifest HEAD per tag:\n{warm}"
    );
}

/// Requests a fresh apply makes, on a bundle of seven images sharing a base
/// layer: each tag is asked once (the push reuses refresh's answers), and
/// the shared layer is looked up only in its first holders (its home and
/// the mount sources): absent from all of them, the other repositories are
/// not asked. The plan still says upload once, mount elsewhere; the apply
/// uploads it once and mounts it everywhere else. When the home has the
/// layer (one image pushed), every repository is asked and plans a mount.
#[test]
fn fresh_apply_asks_each_tag_once_and_the_shared_layer_only_in_its_first_holders() {
    let reg = plain_registry();
    let dir = tmp();
    let mut fixture_spec = spec(43, 7, 16 * 1024);
    fixture_spec.multi_arch = false;
    let fx = oci_bundle(dir.path(), "bundle", &fixture_spec, Packing::TarZst);
    write_set_config(dir.path(), &reg, None, false, "s", &fx.path, "");
    let shared: Vec<String> = fx.images[0]
        .blobs
        .iter()
        .filter(|d| fx.images.iter().all(|i| i.blobs.contains(d)))
        .map(|d| d.to_string())
        .collect();
    assert_eq!(shared.len(), 1, "one base layer shared by every image");
    let shared_hex = shared[0].trim_start_matches("sha256:").to_string();
    let tags = fx.images.len();
    let pairs: usize = fx.images.iter().map(|i| i.blobs.len()).sum();
    let holders = mirrorplan_registry::plan::MOUNT_SOURCES + 1;
    assert!(tags > holders, "more images than first holders");

    // the plan: one HEAD per tag, the shared layer asked in `holders` repositories
    let plan = plan_exit(dir.path());
    plan.expect(2, "plan on a fresh mirror");
    let log = log_text(&reg);
    assert_eq!(
        log_count(&log, &["\"HEAD /v2/", "/manifests/"]),
        tags,
        "one manifest HEAD per tag:\n{log}"
    );
    assert_eq!(
        log_count(&log, &["\"HEAD /v2/", "/blobs/", &shared_hex]),
        holders,
        "the shared layer is asked in its first {holders} holders only:\n{log}"
    );
    assert_eq!(
        log_count(&log, &["\"HEAD /v2/", "/blobs/"]),
        pairs - (tags - holders),
        "every other (repository, blob) pair is asked once:\n{log}"
    );
    for (n, image) in fx.images.iter().enumerate() {
        let line = blob_line(&plan.stdout, &image_addr("s", &image.name));
        let own = image.blobs.len() - 1;
        let want = if n == 0 {
            format!("blobs: {} to upload (", own + 1)
        } else {
            format!("blobs: {own} to upload (")
        };
        assert!(line.starts_with(&want), "{}: {line:?}", image.name);
        assert_eq!(
            line.contains("1 to mount from other repositories"),
            n > 0,
            "{}: {line:?}",
            image.name
        );
    }

    // the apply: tags asked once more (its own refresh), never by the push
    let before = log.len();
    apply(dir.path()).expect(0, "apply");
    assert_all_mirrored(&reg, &fx, None);
    let log = log_text(&reg);
    let run = &log[before..];
    assert_eq!(
        log_count(run, &["\"HEAD /v2/", "/manifests/"]),
        tags,
        "the push asked the tags again:\n{run}"
    );
    assert_eq!(
        uploaded_blobs(run)
            .iter()
            .filter(|d| **d == shared[0])
            .count(),
        1,
        "the shared layer is uploaded once:\n{run}"
    );
    assert_eq!(
        log_count(run, &["\"POST /v2/", "mount=", &shared_hex]),
        tags - 1,
        "the shared layer is mounted into every other repository:\n{run}"
    );
    plan_exit(dir.path()).expect(0, "nothing left to do");

    // a second mirror where only the first image is pushed: its repository
    // (the shared layer's home) has the layer, so every other repository
    // is asked, and plans a mount
    let reg2 = plain_registry();
    let dir2 = tmp();
    write_set_config(dir2.path(), &reg2, None, false, "s", &fx.path, "");
    let first = image_addr("s", &fx.images[0].name);
    mp(
        dir2.path(),
        &["apply", "--auto-approve", "--target", &first],
    )
    .expect(0, "push the first image alone");
    let before = log_text(&reg2).len();
    let plan = plan_exit(dir2.path());
    plan.expect(2, "plan after the first image");
    let log = log_text(&reg2);
    assert_eq!(
        log_count(&log[before..], &["\"HEAD /v2/", "/blobs/", &shared_hex]),
        tags,
        "the home and every other repository are asked:\n{}",
        &log[before..]
    );
    for image in &fx.images[1..] {
        let line = blob_line(&plan.stdout, &image_addr("s", &image.name));
        assert!(
            line.contains("1 to mount from other repositories")
                && !line.contains("already present"),
            "{}: {line:?}",
            image.name
        );
    }
}

/// Two image sets over the same bundle into the same registry endpoint but
/// two `registry` blocks with different namespaces: each set's images land
/// under its own namespace (one bundle pass per bundle, endpoint and
/// namespace, not one per bundle and endpoint), and the plan after the
/// apply has nothing to do.
#[test]
fn same_bundle_and_endpoint_with_two_namespaces_pushes_both() {
    let reg = secure_registry();
    let dir = tmp();
    let fx = oci_bundle(
        dir.path(),
        "shared",
        &spec(31, 3, 16 * 1024),
        Packing::TarZst,
    );
    write_config(
        dir.path(),
        &format!(
            "{}{}{}{}",
            registry_block("team_a", &reg, Some("team-a"), true),
            registry_block("team_b", &reg, Some("team-b"), true),
            bundle_set("a", "team_a", &fx.path, ""),
            bundle_set("b", "team_b", &fx.path, ""),
        ),
    );
    plan_exit(dir.path()).expect(2, "plan before apply");
    apply(dir.path()).expect(0, "apply of both sets");
    assert_all_mirrored(&reg, &fx, Some("team-a"));
    assert_all_mirrored(&reg, &fx, Some("team-b"));
    plan_exit(dir.path()).expect(0, "plan after apply");
}
