//! Issue 17 items 1 and 2 through the `mirrorplan` binary, against REAL
//! registries started by `mirrorplan-harness` (Debian's docker-registry,
//! the CNCF distribution 2.8: no referrers API, so the tag schema is what
//! the source offers):
//!
//! - `referrers = true`: a cosign-format signature (made here with a test
//!   ECDSA P-256 key through the openssl CLI, pushed under
//!   `sha256-<hex>.sig`) and OCI 1.1 artifacts with a `subject` (on an
//!   index and on one of its platform manifests, listed by the fallback
//!   index tag `sha256-<hex>`) are listed in the plan, copied after their
//!   subject with their digests, and the signature still verifies against
//!   the mirror's copy;
//! - tag selections (`repository { }` blocks) against an upstream
//!   repository with 30 tags: the plan shows the tags picked, a tag gone
//!   upstream is forgotten but stays in the mirror, bad selections are
//!   diagnostics at their file and line.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use mirrorplan_harness::{Credentials, Registry, RegistryOptions};
use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, LayerCompression, Packing};
use mirrorplan_registry::{Digest, RegistryClient, RegistryTarget, Scheme};

const USER: &str = "mirror-pusher";
const PASSWORD: &str = "Corr3ct-h0rse-Battery";
const NS: &str = "test-namespace";

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn tmp() -> tempfile::TempDir {
    ok(
        tempfile::Builder::new().prefix("mp-referrers-").tempdir(),
        "tempdir",
    )
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
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

/// `mirrorplan -C DIR ARGS`, the mirror password in the environment.
fn mp(dir: &Path, args: &[&str]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1")
        .env("MIRRORPLAN_VAR_mirror_password", PASSWORD)
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
    from_output(ok(c.output(), "run mirrorplan"))
}

fn registry_block(name: &str, reg: &Registry, namespace: Option<&str>) -> String {
    let mut b = format!("registry \"{name}\" {{\n  endpoint = \"{}\"\n", reg.url());
    if let Some(ns) = namespace {
        b.push_str(&format!("  namespace = \"{ns}\"\n"));
    }
    if let Some(ca) = reg.ca_cert_path() {
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

fn write_config(dir: &Path, body: &str) {
    ok(
        std::fs::write(dir.join("main.hcl"), format!("{PASSWORD_VAR}\n{body}")),
        "write main.hcl",
    );
}

/// The raw manifest `REPO:REF` (tag or `@digest`) that `reg` serves, read
/// with skopeo (independently of mirrorplan).
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

fn served_digest(reg: &Registry, reference: &str) -> Option<String> {
    skopeo_raw(reg, reference).map(|b| Digest::of(&b).to_string())
}

fn openssl(args: &[&str], what: &str) -> Vec<u8> {
    let out = ok(Command::new("openssl").args(args).output(), what);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    ok(
        base64::engine::general_purpose::STANDARD.decode(s),
        "base64",
    )
}

/// Pushes a blob and returns its descriptor JSON.
async fn blob(c: &RegistryClient, repo: &str, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let d = Digest::of(bytes);
    ok(
        c.upload_blob_bytes(repo, &d, bytes.to_vec().into()).await,
        "upload blob",
    );
    serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()})
}

/// Puts a manifest (exact bytes) under `reference`; returns its digest.
async fn manifest(
    c: &RegistryClient,
    repo: &str,
    reference: &str,
    m: &serde_json::Value,
) -> Digest {
    let bytes = ok(serde_json::to_vec(m), "manifest JSON");
    let media_type = m["mediaType"].as_str().unwrap_or_default().to_string();
    ok(
        c.put_manifest(repo, reference, &media_type, &bytes).await,
        "put manifest",
    );
    Digest::of(&bytes)
}

const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SIG_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// An OCI 1.1 artifact referring to `subject` (by digest only).
async fn artifact(
    c: &RegistryClient,
    repo: &str,
    subject: (&Digest, &str, u64),
    artifact_type: &str,
    content: &[u8],
) -> (Digest, u64) {
    let config = blob(c, repo, EMPTY, b"{}").await;
    let layer = blob(c, repo, artifact_type, content).await;
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config,
        "layers": [layer],
        "subject": {"mediaType": subject.1, "digest": subject.0.to_string(), "size": subject.2},
    });
    let size = ok(serde_json::to_vec(&m), "json").len() as u64;
    let d = Digest::of(&ok(serde_json::to_vec(&m), "json"));
    manifest(c, repo, d.as_str(), &m).await;
    (d, size)
}

/// The fallback index (`sha256-<hex>` tag) of `subject` listing `artifacts`.
async fn fallback_index(
    c: &RegistryClient,
    repo: &str,
    subject: &Digest,
    artifacts: &[(Digest, u64, &str)],
) -> Digest {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": artifacts.iter().map(|(d, size, t)| serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": size, "artifactType": t,
        })).collect::<Vec<_>>(),
    });
    manifest(c, repo, &format!("sha256-{}", subject.hex()), &m).await
}

/// Lines of `log` (a registry access log) that PUT a manifest into `repo`.
fn manifest_puts(log: &str, repo: &str) -> Vec<String> {
    let prefix = format!("\"PUT /v2/{repo}/manifests/");
    log.lines()
        .filter_map(|l| {
            let i = l.find(&prefix)?;
            let rest = &l[i + prefix.len()..];
            Some(rest.split(' ').next()?.to_string())
        })
        .collect()
}

/// `referrers = true` copies a cosign signature (`.sig` tag) of a
/// single-platform image and OCI 1.1 artifacts of a two-platform index and
/// of one of its platform manifests (found through the fallback index
/// tags), after their subjects, byte for byte; the plan (human and JSON)
/// lists them; the signature verifies against the mirror's copy; a second
/// plan has nothing to do.
#[test]
fn signatures_and_referrers_are_copied_after_their_subject_with_their_digests() {
    let up = ok(Registry::start(RegistryOptions::default()), "upstream");
    let mirror = ok(
        Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            ..Default::default()
        }),
        "mirror",
    );
    let work = tmp();
    // the upstream's images: a bundle pushed into it with mirrorplan
    let fx = ok(
        write_oci_bundle(
            work.path().join("seed.tar.gz"),
            &FixtureSpec {
                seed: 17,
                images: 2,
                layers_per_image: 1,
                shared_base_layers: 1,
                layer_size: 4096,
                multi_arch: true,
                layer_compression: LayerCompression::Gzip,
            },
            Packing::TarGz,
        ),
        "bundle",
    );
    let seed = tmp();
    write_config(
        seed.path(),
        &format!(
            "{}image_set \"seed\" {{\n  registry = registry.up\n  bundle = \"{}\"\n}}\n",
            registry_block("up", &up, None),
            fx.path.display()
        ),
    );
    mp(seed.path(), &["apply", "--auto-approve"]).expect(0, "seed the upstream");
    let multi = &fx.images[0];
    let single = &fx.images[1];
    let repo_of = |name: &str| -> String {
        let path = name.split_once('/').map(|(_, p)| p).unwrap_or(name);
        path.rsplit_once(':')
            .map(|(r, _)| r)
            .unwrap_or(path)
            .to_string()
    };
    let tag_of = |name: &str| {
        name.rsplit_once(':')
            .map(|(_, t)| t.to_string())
            .unwrap_or_default()
    };
    let (single_repo, multi_repo) = (repo_of(&single.name), repo_of(&multi.name));
    let single_digest = ok(single.manifest_digest.clone().ok_or("digest"), "single");
    let multi_digest = ok(multi.manifest_digest.clone().ok_or("digest"), "multi");
    let index_raw = ok(
        skopeo_raw(&up, &format!("{multi_repo}@{multi_digest}")).ok_or("index"),
        "index",
    );
    let index: serde_json::Value = ok(serde_json::from_slice(&index_raw), "index JSON");
    let child = ok(
        Digest::parse(index["manifests"][0]["digest"].as_str().unwrap_or_default()),
        "child digest",
    );
    let child_size = index["manifests"][0]["size"].as_u64().unwrap_or(0);

    // a cosign signature, made with a test key
    let key = work.path().join("cosign.key");
    let public = work.path().join("cosign.pub");
    let key_s = key.display().to_string();
    let public_s = public.display().to_string();
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key_s,
        ],
        "key",
    );
    openssl(
        &["ec", "-in", &key_s, "-pubout", "-out", &public_s],
        "public key",
    );
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{single_repo}", up.host_port())},
            "image": {"docker-manifest-digest": single_digest.to_string()},
            "type": "cosign container image signature",
        },
        "optional": null,
    }));
    let payload = ok(payload, "payload");
    let payload_file = work.path().join("payload.json");
    ok(std::fs::write(&payload_file, &payload), "payload file");
    let signature = openssl(
        &[
            "dgst",
            "-sha256",
            "-sign",
            &key_s,
            &payload_file.display().to_string(),
        ],
        "sign",
    );
    let rt = ok(tokio::runtime::Runtime::new(), "runtime");
    let upstream = ok(
        RegistryClient::new(RegistryTarget::new(Scheme::Http, up.host_port())),
        "client",
    );
    let (sig_digest, sbom, child_sbom, multi_fallback, child_fallback) = rt.block_on(async {
        let config = blob(
            &upstream,
            &single_repo,
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#,
        )
        .await;
        let mut layer = blob(
            &upstream,
            &single_repo,
            "application/vnd.dev.cosign.simplesigning.v1+json",
            &payload,
        )
        .await;
        layer["annotations"] = serde_json::json!({SIG_ANNOTATION: b64(&signature)});
        let sig = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        });
        let sig_digest = manifest(
            &upstream,
            &single_repo,
            &format!("sha256-{}.sig", single_digest.hex()),
            &sig,
        )
        .await;
        // OCI 1.1 artifacts: an SBOM of the index, a provenance of a platform manifest
        let sbom = artifact(
            &upstream,
            &multi_repo,
            (&multi_digest, OCI_INDEX, index_raw.len() as u64),
            "application/spdx+json",
            br#"{"spdxVersion":"SPDX-2.3"}"#,
        )
        .await;
        let child_sbom = artifact(
            &upstream,
            &multi_repo,
            (&child, OCI_MANIFEST, child_size),
            "application/vnd.in-toto+json",
            br#"{"_type":"https://in-toto.io/Statement/v1"}"#,
        )
        .await;
        let multi_fallback = fallback_index(
            &upstream,
            &multi_repo,
            &multi_digest,
            &[(sbom.0.clone(), sbom.1, "application/spdx+json")],
        )
        .await;
        let child_fallback = fallback_index(
            &upstream,
            &multi_repo,
            &child,
            &[(
                child_sbom.0.clone(),
                child_sbom.1,
                "application/vnd.in-toto+json",
            )],
        )
        .await;
        (
            sig_digest,
            sbom.0,
            child_sbom.0,
            multi_fallback,
            child_fallback,
        )
    });

    let dir = tmp();
    let up_ref = |name: &str| format!("{}/{}:{}", up.host_port(), repo_of(name), tag_of(name));
    write_config(
        dir.path(),
        &format!(
            "{}{}image_set \"signed\" {{\n  registry  = registry.mirror\n  images    = [\"{}\", \"{}\"]\n  referrers = true\n}}\n",
            registry_block("up", &up, None),
            registry_block("mirror", &mirror, Some(NS)),
            up_ref(&single.name),
            up_ref(&multi.name),
        ),
    );
    // the plan lists each referrer under its image
    let plan = mp(dir.path(), &["plan", "--detailed-exitcode"]);
    plan.expect(2, "plan");
    let section = |name: &str| -> String {
        let header = format!("# image.signed[\"{}\"] will be created", up_ref(name));
        plan.stdout
            .split("\n\n")
            .find(|s| s.contains(&header))
            .unwrap_or_else(|| panic!("no section {header}:\n{}", plan.stdout))
            .to_string()
    };
    let s = section(&single.name);
    assert!(
        s.contains(&format!(
            "sha256-{}.sig (cosign signature) {sig_digest}",
            single_digest.hex()
        )),
        "the signature is listed:\n{s}"
    );
    let m = section(&multi.name);
    for d in [&sbom, &child_sbom, &multi_fallback, &child_fallback] {
        assert!(m.contains(d.as_str()), "{d} listed:\n{m}");
    }
    assert!(
        m.contains("application/spdx+json (in the fallback index)"),
        "{m}"
    );
    // and so does the JSON plan
    let json = mp(dir.path(), &["plan", "--json"]);
    json.expect(0, "plan --json");
    let v: serde_json::Value = ok(serde_json::from_str(&json.stdout), "plan JSON");
    let changes = v["resource_changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let single_change = changes
        .iter()
        .find(|c| {
            c["address"]
                .as_str()
                .is_some_and(|a| a.contains(&single_repo))
        })
        .cloned()
        .unwrap_or_default();
    let listed = &single_change["after"]["referrers"];
    assert_eq!(listed[0]["digest"], sig_digest.to_string(), "{listed}");
    assert_eq!(listed[0]["found_by"], "cosign_tag");
    assert_eq!(listed[0]["subject"], single_digest.to_string());

    mp(dir.path(), &["apply", "--auto-approve"]).expect(0, "apply");
    // every referrer on the mirror under its digest (and tag)
    let ms = format!("{NS}/{single_repo}");
    let mm = format!("{NS}/{multi_repo}");
    assert_eq!(
        served_digest(&mirror, &format!("{ms}:sha256-{}.sig", single_digest.hex())),
        Some(sig_digest.to_string())
    );
    for d in [&sbom, &child_sbom] {
        assert_eq!(
            served_digest(&mirror, &format!("{mm}@{d}")),
            Some(d.to_string())
        );
    }
    assert_eq!(
        served_digest(&mirror, &format!("{mm}:sha256-{}", multi_digest.hex())),
        Some(multi_fallback.to_string())
    );
    assert_eq!(
        served_digest(&mirror, &format!("{mm}:sha256-{}", child.hex())),
        Some(child_fallback.to_string())
    );
    // subjects first: the image's manifest PUT precedes its referrers'
    let log = std::fs::read_to_string(mirror.log_path()).unwrap_or_default();
    let puts = manifest_puts(&log, &ms);
    let at = |r: &str| puts.iter().position(|p| p == r);
    let subject_at = at(&tag_of(&single.name));
    let sig_at = at(&format!("sha256-{}.sig", single_digest.hex()));
    assert!(
        subject_at.is_some() && sig_at.is_some() && subject_at < sig_at,
        "subject PUT before its signature: {puts:?}"
    );
    let puts = manifest_puts(&log, &mm);
    let at = |r: &str| puts.iter().position(|p| p == r);
    let subject_at = at(&tag_of(&multi.name));
    let sbom_at = at(sbom.as_str());
    let index_at = at(&format!("sha256-{}", multi_digest.hex()));
    assert!(
        subject_at.is_some() && subject_at < sbom_at && sbom_at < index_at,
        "index, then its SBOM, then the fallback index: {puts:?}"
    );
    // the signature verifies against the mirror's copy: its payload names
    // the digest the mirror serves, and the ECDSA signature holds
    let sig_raw = ok(
        skopeo_raw(&mirror, &format!("{ms}@{sig_digest}")).ok_or("signature"),
        "signature on the mirror",
    );
    let sig: serde_json::Value = ok(serde_json::from_slice(&sig_raw), "signature JSON");
    let layer_digest = sig["layers"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sig_b64 = sig["layers"][0]["annotations"][SIG_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-f", "-u", &format!("{USER}:{PASSWORD}")]);
    if let Some(ca) = mirror.ca_cert_path() {
        curl.arg("--cacert").arg(ca);
    }
    let fetched = ok(
        curl.arg(format!("{}/v2/{ms}/blobs/{layer_digest}", mirror.url()))
            .output(),
        "curl payload",
    );
    assert!(fetched.status.success(), "payload blob on the mirror");
    let mirrored_payload: serde_json::Value =
        ok(serde_json::from_slice(&fetched.stdout), "payload JSON");
    assert_eq!(
        mirrored_payload["critical"]["image"]["docker-manifest-digest"].as_str(),
        served_digest(&mirror, &format!("{ms}:{}", tag_of(&single.name))).as_deref(),
        "the signed digest is the one the mirror serves"
    );
    let mirrored_payload_file = work.path().join("mirrored-payload.json");
    let sig_file = work.path().join("sig.bin");
    ok(
        std::fs::write(&mirrored_payload_file, &fetched.stdout),
        "write",
    );
    ok(std::fs::write(&sig_file, unb64(&sig_b64)), "write");
    let verified = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            &public_s,
            "-signature",
            &sig_file.display().to_string(),
            &mirrored_payload_file.display().to_string(),
        ],
        "verify",
    );
    assert_eq!(String::from_utf8_lossy(&verified).trim(), "Verified OK");

    mp(dir.path(), &["plan", "--detailed-exitcode"]).expect(0, "nothing left to do");
}

/// Writes `bytes` as a blob of the OCI layout at `dir`; its descriptor.
fn layout_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let d = Digest::of(bytes);
    ok(
        std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes),
        "write blob",
    );
    serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()})
}

/// A bundle whose index.json lists, besides its images, an unnamed OCI 1.1
/// artifact with a `subject` (the two-platform index) and a cosign
/// signature tagged `sha256-<hex>.sig` (of the single-platform image):
/// with `referrers = true` both are listed under their subject, pushed with
/// their digests (the artifact by digest into its subject's repository);
/// without, they are left out and nothing fails.
#[test]
fn bundles_carry_the_referrers_their_index_lists() {
    let mirror = ok(
        Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            ..Default::default()
        }),
        "mirror",
    );
    let work = tmp();
    let fx = ok(
        write_oci_bundle(
            work.path().join("plain.tar"),
            &FixtureSpec {
                seed: 171,
                images: 2,
                layers_per_image: 1,
                shared_base_layers: 1,
                layer_size: 4096,
                multi_arch: true,
                layer_compression: LayerCompression::Gzip,
            },
            Packing::Tar,
        ),
        "bundle",
    );
    let layout = work.path().join("layout");
    ok(std::fs::create_dir_all(&layout), "mkdir");
    let untar = ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&fx.path)
            .arg("-C")
            .arg(&layout)
            .status(),
        "untar",
    );
    assert!(untar.success());
    let multi = &fx.images[0];
    let single = &fx.images[1];
    let multi_digest = ok(multi.manifest_digest.clone().ok_or("digest"), "multi");
    let single_digest = ok(single.manifest_digest.clone().ok_or("digest"), "single");
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value = ok(
        serde_json::from_slice(&ok(std::fs::read(&index_path), "index.json")),
        "index JSON",
    );
    let multi_size = index["manifests"][0]["size"].as_u64().unwrap_or(0);
    // an OCI 1.1 artifact of the index, unnamed
    let config = layout_blob(&layout, EMPTY, b"{}");
    let layer = layout_blob(
        &layout,
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#,
    );
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": config,
        "layers": [layer],
        "subject": {"mediaType": OCI_INDEX, "digest": multi_digest.to_string(), "size": multi_size},
    });
    let artifact_desc = layout_blob(
        &layout,
        OCI_MANIFEST,
        &ok(serde_json::to_vec(&artifact), "json"),
    );
    // a cosign-style signature of the single image, named by the tag schema
    let sig_config = layout_blob(
        &layout,
        "application/vnd.oci.image.config.v1+json",
        br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let mut sig_layer = layout_blob(
        &layout,
        "application/vnd.dev.cosign.simplesigning.v1+json",
        format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{single_digest}"}}}}}}"#)
            .as_bytes(),
    );
    sig_layer["annotations"] = serde_json::json!({SIG_ANNOTATION: "MEUCIQ=="});
    let sig = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": sig_config,
        "layers": [sig_layer],
    });
    let mut sig_desc = layout_blob(&layout, OCI_MANIFEST, &ok(serde_json::to_vec(&sig), "json"));
    let single_base = single
        .name
        .rsplit_once(':')
        .map(|(r, _)| r)
        .unwrap_or(&single.name);
    let sig_name = format!("{single_base}:sha256-{}.sig", single_digest.hex());
    sig_desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": sig_name});
    if let Some(m) = index["manifests"].as_array_mut() {
        // listed first: the catalogue still pushes them after their subjects
        m.insert(0, sig_desc.clone());
        m.insert(0, artifact_desc.clone());
    }
    ok(
        std::fs::write(&index_path, ok(serde_json::to_vec(&index), "json")),
        "index.json",
    );
    let bundle = work.path().join("signed.tar");
    let tarred = ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&bundle)
            .arg("-C")
            .arg(&layout)
            .args(["oci-layout", "index.json", "blobs"])
            .status(),
        "tar",
    );
    assert!(tarred.success());

    // (a copy for the other set: one pass per bundle and mirror endpoint)
    let copy = work.path().join("signed-copy.tar");
    ok(std::fs::copy(&bundle, &copy), "copy bundle");
    let dir = tmp();
    let set = |name: &str, ns_registry: &str, referrers: bool| {
        format!(
            "image_set \"{name}\" {{\n  registry  = registry.{ns_registry}\n  bundle    = \"{}\"\n  referrers = {referrers}\n}}\n",
            if referrers { &bundle } else { &copy }.display()
        )
    };
    write_config(
        dir.path(),
        &format!(
            "{}{}{}{}",
            registry_block("mirror", &mirror, Some(NS)),
            registry_block("plain", &mirror, Some("plain")),
            set("signed", "mirror", true),
            set("unsigned", "plain", false),
        ),
    );
    let plan = mp(dir.path(), &["plan", "--detailed-exitcode"]);
    plan.expect(2, "plan");
    let section = |addr: &str| -> String {
        let header = format!("# {addr} will be created");
        plan.stdout
            .split("\n\n")
            .find(|s| s.contains(&header))
            .unwrap_or_else(|| panic!("no section {header}:\n{}", plan.stdout))
            .to_string()
    };
    let s = section(&format!("image.signed[\"{}\"]", single.name));
    assert!(
        s.contains(&format!(
            "sha256-{}.sig (in the bundle",
            single_digest.hex()
        )),
        "{s}"
    );
    let artifact_digest = artifact_desc["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let m = section(&format!("image.signed[\"{}\"]", multi.name));
    assert!(m.contains(&artifact_digest), "{m}");
    // the referrers are instances of the signed set only
    let multi_base = multi
        .name
        .rsplit_once(':')
        .map(|(r, _)| r)
        .unwrap_or(&multi.name);
    let artifact_addr = format!("image.signed[\"{multi_base}@{artifact_digest}\"]");
    section(&artifact_addr);
    assert!(
        !plan.stdout.contains("image.unsigned[\"")
            || !plan
                .stdout
                .contains(&format!("image.unsigned[\"{multi_base}@")),
        "no referrer in the set without referrers:\n{}",
        plan.stdout
    );
    assert!(
        !plan
            .stdout
            .contains(&format!("image.unsigned[\"{sig_name}\"]")),
        "{}",
        plan.stdout
    );

    mp(dir.path(), &["apply", "--auto-approve"]).expect(0, "apply");
    let repo_of = |name: &str| -> String {
        let path = name.split_once('/').map(|(_, p)| p).unwrap_or(name);
        path.rsplit_once(':')
            .map(|(r, _)| r)
            .unwrap_or(path)
            .to_string()
    };
    let mm = format!("{NS}/{}", repo_of(&multi.name));
    let ms = format!("{NS}/{}", repo_of(&single.name));
    assert_eq!(
        served_digest(&mirror, &format!("{mm}@{artifact_digest}")),
        Some(artifact_digest.clone())
    );
    assert_eq!(
        served_digest(&mirror, &format!("{ms}:sha256-{}.sig", single_digest.hex())),
        sig_desc["digest"].as_str().map(str::to_string)
    );
    assert_eq!(
        served_digest(
            &mirror,
            &format!(
                "plain/{}:sha256-{}.sig",
                repo_of(&single.name),
                single_digest.hex()
            )
        ),
        None,
        "not pushed without referrers = true"
    );
    assert_eq!(
        served_digest(
            &mirror,
            &format!("plain/{}@{artifact_digest}", repo_of(&multi.name))
        ),
        None
    );
    mp(dir.path(), &["plan", "--detailed-exitcode"]).expect(0, "nothing left to do");
}

/// Pushes one small image to `repo` of `reg` under each of `tags`, each
/// tag a distinct manifest (an annotation names it), so that deleting one
/// leaves the others.
fn push_tags(reg: &Registry, repo: &str, tags: &[&str]) -> Vec<Digest> {
    let rt = ok(tokio::runtime::Runtime::new(), "runtime");
    let c = ok(
        RegistryClient::new(RegistryTarget::new(Scheme::Http, reg.host_port())),
        "client",
    );
    rt.block_on(async {
        let config = blob(
            &c,
            repo,
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .await;
        let layer = blob(
            &c,
            repo,
            "application/vnd.oci.image.layer.v1.tar",
            b"tagged",
        )
        .await;
        let mut out = Vec::new();
        for t in tags {
            let m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config,
                "layers": [layer],
                "annotations": {"tag": t},
            });
            out.push(manifest(&c, repo, t, &m).await);
        }
        out
    })
}

/// The addresses a plan will create, in its order.
fn created(plan: &str) -> Vec<String> {
    plan.lines()
        .filter_map(|l| l.trim().strip_prefix("# "))
        .filter_map(|l| l.strip_suffix(" will be created"))
        .map(str::to_string)
        .collect()
}

/// A repository with 30 tags: a selection (include, exclude, semver range,
/// newest 3) picks three, listed upstream through the tag list; the plan
/// shows them as image instances; apply copies them; once the newest is
/// deleted upstream the plan picks the next one and forgets the deleted
/// tag without deleting it from the mirror (prune is false).
#[test]
fn tag_selections_pick_from_thirty_upstream_tags() {
    let up = ok(Registry::start(RegistryOptions::default()), "upstream");
    let mirror = ok(
        Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            ..Default::default()
        }),
        "mirror",
    );
    let mut tags: Vec<String> = Vec::new();
    for minor in 25..=30 {
        for patch in 0..=3 {
            tags.push(format!("v1.{minor}.{patch}"));
        }
    }
    tags.extend(
        [
            "v1.29.0-rc.1",
            "v1.30.0-rc.0",
            "latest",
            "1.28",
            "v1.29.4-debug",
            "nightly",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    assert_eq!(tags.len(), 30);
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let digests = push_tags(&up, "kube/apiserver", &tag_refs);
    let digest_of = |t: &str| digests[tags.iter().position(|x| x == t).unwrap_or(0)].to_string();
    // the client lists all 30 (the tag list, following Link pages)
    let rt = ok(tokio::runtime::Runtime::new(), "runtime");
    let c = ok(
        RegistryClient::new(RegistryTarget::new(Scheme::Http, up.host_port())),
        "client",
    );
    let mut listed = ok(rt.block_on(c.list_tags("kube/apiserver")), "list tags");
    listed.sort();
    let mut want = tags.clone();
    want.sort();
    assert_eq!(listed, want);
    // asked 7 a page, all 30 still come (distribution 2.8 ignores `n` for
    // tags and answers in one page; `Link` pages are followed where given)
    let mut paged = ok(
        rt.block_on(c.list_tags_paged("kube/apiserver", 7)),
        "list tags by 7",
    );
    paged.sort();
    assert_eq!(paged, want);

    let dir = tmp();
    let repo = format!("{}/kube/apiserver", up.host_port());
    write_config(
        dir.path(),
        &format!(
            "{}{}image_set \"k8s\" {{\n  registry = registry.mirror\n  repository {{\n    name    = \"{repo}\"\n    include = [\"^v1\\\\.2[89]\\\\.\"]\n    exclude = [\"-\"]\n    semver  = \">=1.28, <1.30\"\n    newest  = 3\n  }}\n}}\n",
            registry_block("up", &up, None),
            registry_block("mirror", &mirror, Some(NS)),
        ),
    );
    let plan = mp(dir.path(), &["plan", "--detailed-exitcode"]);
    plan.expect(2, "plan");
    let addr = |t: &str| format!("image.k8s[\"{repo}:{t}\"]");
    let mut got = created(&plan.stdout);
    got.retain(|a| a.starts_with("image.k8s["));
    got.sort();
    assert_eq!(
        got,
        vec![addr("v1.29.1"), addr("v1.29.2"), addr("v1.29.3")],
        "{}",
        plan.stdout
    );
    mp(dir.path(), &["apply", "--auto-approve"]).expect(0, "apply");
    for t in ["v1.29.1", "v1.29.2", "v1.29.3"] {
        assert_eq!(
            served_digest(&mirror, &format!("{NS}/kube/apiserver:{t}")),
            Some(digest_of(t)),
            "{t} on the mirror"
        );
    }
    assert_eq!(
        served_digest(&mirror, &format!("{NS}/kube/apiserver:v1.29.0")),
        None
    );
    mp(dir.path(), &["plan", "--detailed-exitcode"]).expect(0, "nothing to do");

    // v1.29.3 disappears upstream: v1.29.0 comes in, v1.29.3 is forgotten
    let out = ok(
        Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "DELETE",
            ])
            .arg(format!(
                "{}/v2/kube/apiserver/manifests/{}",
                up.url(),
                digest_of("v1.29.3")
            ))
            .output(),
        "curl DELETE",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "202");
    let plan = mp(dir.path(), &["plan", "--detailed-exitcode"]);
    plan.expect(2, "plan after the delete");
    assert_eq!(
        created(&plan.stdout),
        vec![addr("v1.29.0")],
        "{}",
        plan.stdout
    );
    let gone = plan
        .stdout
        .split("\n\n")
        .find(|s| s.contains(&format!("# {} will be destroyed", addr("v1.29.3"))))
        .unwrap_or_else(|| panic!("v1.29.3 leaves the plan:\n{}", plan.stdout))
        .to_string();
    assert!(
        gone.contains("forgotten only: the image stays in the mirror"),
        "{gone}"
    );
    mp(dir.path(), &["apply", "--auto-approve"]).expect(0, "apply after the delete");
    assert_eq!(
        served_digest(&mirror, &format!("{NS}/kube/apiserver:v1.29.3")),
        Some(digest_of("v1.29.3")),
        "still in the mirror"
    );
    assert_eq!(
        served_digest(&mirror, &format!("{NS}/kube/apiserver:v1.29.0")),
        Some(digest_of("v1.29.0"))
    );
}

/// An invalid regular expression, semver range or `newest = 0` is a
/// diagnostic at its file and line, exit 1, before anything is contacted.
#[test]
fn bad_tag_selections_are_diagnostics_at_their_line() {
    let dir = tmp();
    let body = "registry \"mirror\" {\n  endpoint = \"https://127.0.0.1:9\"\n}\nimage_set \"k8s\" {\n  registry = registry.mirror\n  repository {\n    name    = \"registry.k8s.io/kube-apiserver\"\n    include = [\"^v1(\"]\n    semver  = \">=1.28, <<1.30\"\n    newest  = 0\n  }\n}\n";
    write_config(dir.path(), body);
    // PASSWORD_VAR takes the first lines of main.hcl
    let offset = PASSWORD_VAR.lines().count() + 1;
    let line_of = |needle: &str| {
        body.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1 + offset)
            .unwrap_or(0)
    };
    for cmd in ["validate", "plan"] {
        let r = mp(dir.path(), &[cmd]);
        r.expect(1, cmd);
        let text = format!("{}{}", r.stdout, r.stderr);
        for (what, needle) in [
            ("invalid regular expression in `include`", "include"),
            ("invalid semver range", "semver"),
            ("`newest = 0` selects no tag", "newest"),
        ] {
            assert!(text.contains(what), "{cmd}: {what}:\n{text}");
            assert!(
                text.contains(&format!("main.hcl:{}", line_of(needle))),
                "{cmd}: main.hcl:{} for {what}:\n{text}",
                line_of(needle)
            );
        }
        assert!(!text.contains("panicked"), "{text}");
    }
}
