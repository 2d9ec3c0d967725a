//! The registry client against REAL registries (CNCF distribution from the
//! harness): TLS with a private CA, htpasswd auth, blob upload (monolithic
//! and chunked), HEAD, cross-repository mount, manifests byte for byte,
//! error messages for a wrong password and a missing CA.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use mirrorplan_registry::client::stream_from_reader;
use mirrorplan_registry::fixtures::Rng;
use mirrorplan_registry::{Digest, MountOutcome, RegistryClient, RegistryError, UploadMode};

fn random_blob(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

fn chunks(data: Vec<u8>) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
    let parts: Vec<std::io::Result<Bytes>> = data
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(parts).boxed()
}

async fn read_all(mut s: mirrorplan_registry::client::BlobStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&ok(c, "blob chunk"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_and_manifests_over_tls_with_basic_auth() {
    let reg = secure_registry();
    let c = client_for(&reg);
    ok(c.ping().await, "ping");

    let data = random_blob(1, 300_000);
    let d = Digest::of(&data);
    assert_eq!(ok(c.head_blob("ns/a", &d).await, "head"), None);
    ok(
        c.upload_blob("ns/a", &d, data.len() as u64, chunks(data.clone()))
            .await,
        "upload",
    );
    assert_eq!(
        ok(c.head_blob("ns/a", &d).await, "head"),
        Some(data.len() as u64)
    );
    let (len, s) = ok(c.get_blob("ns/a", &d).await, "get");
    assert_eq!(len, Some(data.len() as u64));
    assert!(read_all(s).await == data, "blob bytes differ");

    // Mount into another repository of the same registry.
    assert_eq!(ok(c.head_blob("ns/b", &d).await, "head b"), None);
    let m = ok(c.mount_blob("ns/b", &d, "ns/a").await, "mount");
    assert!(matches!(m, MountOutcome::Mounted), "{m:?}");
    assert!(ok(c.head_blob("ns/b", &d).await, "head b").is_some());

    // An AsyncRead source.
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
        .to_vec();
    let cd = Digest::of(&cfg);
    ok(
        c.upload_blob_reader(
            "ns/b",
            &cd,
            cfg.len() as u64,
            std::io::Cursor::new(cfg.clone()),
        )
        .await,
        "upload reader",
    );
    let _ = stream_from_reader(std::io::Cursor::new(Vec::<u8>::new()));

    // A manifest, byte for byte (odd spacing on purpose).
    let manifest = format!(
        "{{\"schemaVersion\": 2,  \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{cd}\", \"size\": {}}}, \"layers\": [{{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar\", \"digest\": \"{d}\", \"size\": {}}}]}}\n",
        cfg.len(),
        data.len()
    );
    let md = Digest::of(manifest.as_bytes());
    assert_eq!(ok(c.head_manifest("ns/b", "v1").await, "head m"), None);
    let put = ok(
        c.put_manifest(
            "ns/b",
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        )
        .await,
        "put manifest",
    );
    assert_eq!(put, md);
    let info = ok(c.head_manifest("ns/b", "v1").await, "head m");
    let Some(info) = info else {
        panic!("manifest missing")
    };
    assert_eq!(info.digest, md);
    assert_eq!(
        info.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(info.size, manifest.len() as u64);
    let (bytes, mt, gd) = ok(c.get_manifest("ns/b", "v1").await, "get manifest");
    assert_eq!(bytes, manifest.as_bytes());
    assert_eq!(mt, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(gd, md);
    assert_eq!(
        skopeo_manifest_digest(&reg, "ns/b:v1").as_deref(),
        Some(md.as_str())
    );
    assert!(ok(c.delete_manifest("ns/b", &md).await, "delete"));
    assert_eq!(ok(c.head_manifest("ns/b", "v1").await, "head m"), None);
    assert!(!ok(c.delete_manifest("ns/b", &md).await, "delete again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_and_bad_digests() {
    let reg = plain_registry();
    let mut opts = fast_options();
    opts.upload = UploadMode::Chunked {
        chunk_size: 64 * 1024,
    };
    let c = ok(
        RegistryClient::with_options(target_for(&reg, None), opts),
        "client",
    );
    assert!(c.uploads_chunked());
    let data = random_blob(2, 200_001);
    let d = Digest::of(&data);
    ok(
        c.upload_blob("chunked", &d, data.len() as u64, chunks(data.clone()))
            .await,
        "chunked upload",
    );
    let (_, s) = ok(c.get_blob("chunked", &d).await, "get");
    assert!(read_all(s).await == data);
    // Several PATCHes reached the registry.
    assert!(log_lines(&reg, &["PATCH", "/v2/chunked/blobs/uploads/"]) >= 4);

    // Wrong bytes for the digest: the registry refuses, nothing is stored.
    let plain = client_for(&reg);
    let wrong = Digest::of(b"something else");
    let e = plain
        .upload_blob("chunked", &wrong, data.len() as u64, chunks(data.clone()))
        .await;
    let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("DIGEST_INVALID") || msg.contains("400"),
        "{msg}"
    );
    assert!(
        msg.contains(wrong.as_str()) && msg.contains("chunked"),
        "{msg}"
    );
    assert_eq!(ok(plain.head_blob("chunked", &wrong).await, "head"), None);

    // A failing source aborts the upload and names the blob.
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("disk on fire")),
    ])
    .boxed();
    let e = plain.upload_blob("chunked", &wrong, 100, failing).await;
    assert!(
        matches!(&e, Err(RegistryError::Source { detail, .. }) if detail.contains("disk on fire")),
        "{e:?}"
    );
    assert_eq!(ok(plain.head_blob("chunked", &wrong).await, "head"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_missing_ca_are_clear() {
    let reg = secure_registry();
    let c = ok(
        RegistryClient::with_options(target_for(&reg, Some("not-the-password")), fast_options()),
        "client",
    );
    let e = c.ping().await;
    let Err(e) = e else {
        panic!("wrong password accepted")
    };
    let msg = e.to_string();
    assert!(matches!(e, RegistryError::WrongCredentials { .. }), "{e:?}");
    assert!(
        msg.contains(&reg.host_port()) && msg.contains(USER),
        "{msg}"
    );
    assert!(!msg.contains("not-the-password") && !format!("{e:?}").contains("not-the-password"));
    assert_eq!(
        miette::Diagnostic::code(&e)
            .map(|c| c.to_string())
            .as_deref(),
        Some("mirrorplan::registry::wrong_credentials")
    );

    // No credentials at all.
    let mut t = target_for(&reg, None);
    let anon = ok(
        RegistryClient::with_options(t.clone(), fast_options()),
        "client",
    );
    let e = anon.head_blob("x/y", &Digest::of(b"x")).await;
    assert!(
        matches!(e, Err(RegistryError::AuthRequired { .. })),
        "{e:?}"
    );

    // No CA: the system roots do not know the lab CA.
    t.ca_cert_pem = None;
    let noca = ok(
        RegistryClient::with_options(t.clone(), fast_options()),
        "client",
    );
    let e = noca.ping().await;
    let Err(e) = e else {
        panic!("untrusted certificate accepted")
    };
    let help = miette::Diagnostic::help(&e)
        .map(|h| h.to_string())
        .unwrap_or_default();
    assert!(matches!(e, RegistryError::UnknownAuthority { .. }), "{e:?}");
    assert!(help.contains("ca_cert"), "{help}");
    assert!(e.to_string().contains(&reg.host_port()));

    // insecure = true accepts it (and then auth applies as usual).
    t.insecure = true;
    let insecure = ok(RegistryClient::with_options(t, fast_options()), "client");
    let e = insecure.ping().await;
    assert!(
        matches!(e, Err(RegistryError::AuthRequired { .. })),
        "{e:?}"
    );

    // A CA file that is not PEM.
    let mut bad = target_for(&reg, None);
    bad.ca_cert_pem = Some(b"not a certificate".to_vec());
    let e = RegistryClient::new(bad);
    assert!(matches!(e, Err(RegistryError::Config { .. })), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_config_auth() {
    let reg = secure_registry();
    let path = ok(reg.write_docker_config(), "docker config");
    let Some(path) = path else {
        panic!("no docker config")
    };
    let mut t = target_for(&reg, None);
    t.auth = mirrorplan_registry::Auth::DockerConfig(path.clone());
    let c = ok(RegistryClient::with_options(t, fast_options()), "client");
    assert_eq!(c.user(), Some(USER));
    ok(c.ping().await, "ping with docker config");
    assert!(!format!("{c:?}").contains(PASSWORD));

    // A config without this host: anonymous, so auth is required.
    let other = tmp();
    let p = other.path().join("config.json");
    ok(
        std::fs::write(&p, r#"{"auths":{"elsewhere:5000":{"auth":"dTpw"}}}"#),
        "write",
    );
    let mut t = target_for(&reg, None);
    t.auth = mirrorplan_registry::Auth::DockerConfig(p);
    let c = ok(RegistryClient::with_options(t, fast_options()), "client");
    assert!(matches!(
        c.ping().await,
        Err(RegistryError::AuthRequired { .. })
    ));
}
