//! The hand-written CRI client against real containerd: locally on a
//! harness `Containerd` socket, and on a harness `Node` through its sshd
//! (`direct-streamlocal` to `/run/containerd/containerd.sock` inside the
//! node's mount namespace), including a pull through a hosts.toml written
//! with the SSH transport from a registry that requires auth.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mirrorplan_harness::{
    Containerd, ContainerdOptions, Credentials, Node, NodeOptions, Registry, RegistryOptions,
    NODE_CONTAINERD_SOCKET,
};
use mirrorplan_node::{
    CriClient, CriError, NodeError, PullAuth, SshOptions, SshTransport, Transport,
};
use sha2::Digest as _;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

fn ssh_to(node: &Node) -> SshOptions {
    let ep = node.ssh();
    let mut o = SshOptions::new(ep.host());
    o.port = ep.port();
    o.user = ep.user().to_owned();
    o.private_key = Some(ep.client_key_path());
    o.known_hosts = Some(ep.known_hosts_path());
    o.use_agent = false;
    o.timeout = Duration::from_secs(30);
    o
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A one-layer image as an OCI layout in `dir`; returns the config and
/// manifest digests.
fn oci_layout(dir: &Path) -> Result<(String, String), Box<dyn std::error::Error>> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> std::io::Result<(String, usize)> {
        let d = sha256(bytes);
        std::fs::write(blobs.join(&d["sha256:".len()..]), bytes)?;
        Ok((d, bytes.len()))
    };
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("hello.txt"), "hello from mirrorplan\n")?;
    let tar = dir.join("layer.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .arg("hello.txt")
        .status()?;
    assert!(st.success());
    let (layer, layer_size) = put(&std::fs::read(&tar)?)?;
    let config = serde_json::json!({
        "architecture": oci_arch(), "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest)?)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": "1"}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok((config_digest, manifest_digest))
}

fn cri_error(e: NodeError) -> CriError {
    match e {
        NodeError::Cri(e) => *e,
        other => panic!("expected a CRI error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_status_on_a_local_socket() -> TestResult {
    let containerd = Containerd::start(ContainerdOptions::default())?;
    let cri = CriClient::connect_local(containerd.socket_path()).await?;
    let v = cri.version().await?;
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");
    let server = containerd.version()?;
    assert!(
        v.runtime_version.contains(server.trim_start_matches('v')),
        "{v:?} vs {server}"
    );
    assert_eq!(
        cri.image_status("docker.io/library/not-here:1").await?,
        None
    );

    let dir = tempfile::tempdir()?;
    let err = CriClient::connect_local(dir.path().join("absent.sock"))
        .await
        .err()
        .ok_or("connecting to a missing socket should fail")?;
    let err = cri_error(err);
    assert!(matches!(err, CriError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("absent.sock"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_ssh_on_a_node() -> TestResult {
    let creds = Credentials::new("puller", "pull-pass-123");
    let registry = Registry::start(RegistryOptions {
        auth: Some(creds.clone()),
        ..Default::default()
    })?;
    let node = Node::start(NodeOptions::default())?;

    // an image in the registry
    let dir = tempfile::tempdir()?;
    let layout = dir.path().join("layout");
    let (config_digest, _) = oci_layout(&layout)?;
    let host = registry.host_port();
    // skopeo compresses the layer on the way, so the pushed manifest differs
    // from the layout's: it reports the pushed digest in --digestfile
    let digest_file = dir.path().join("digest");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg("--digestfile")
        .arg(&digest_file)
        .arg("--dest-creds")
        .arg(format!("{}:{}", creds.username(), creds.password()))
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{host}/test/hello:1"))
        .output()?;
    assert!(out.status.success(), "{out:?}");
    let manifest_digest = std::fs::read_to_string(&digest_file)?.trim().to_owned();
    assert!(manifest_digest.starts_with("sha256:"), "{manifest_digest}");

    let ssh = SshTransport::connect(&ssh_to(&node)).await?;
    let cri = CriClient::over_ssh(&ssh, NODE_CONTAINERD_SOCKET).await?;
    let v = cri.version().await?;
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");

    // the plain-HTTP registry, configured with the SSH transport
    let hosts_toml = format!(
        "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    let hosts_path = format!("/etc/containerd/certs.d/{host}/hosts.toml");
    ssh.write_file_atomic(&hosts_path, hosts_toml.as_bytes(), 0o644)
        .await?;
    // the file landed in the node's own /etc/containerd, not the host's
    let on_host = node
        .etc_containerd_dir()
        .join(format!("certs.d/{host}/hosts.toml"));
    assert_eq!(std::fs::read_to_string(on_host)?, hosts_toml);

    let image = format!("{host}/test/hello:1");
    assert_eq!(cri.image_status(&image).await?, None);

    let err = cri_error(
        cri.pull(&image, None)
            .await
            .err()
            .ok_or("pulling without credentials should fail")?,
    );
    assert!(
        matches!(
            err,
            CriError::Call {
                method: "PullImage",
                ..
            }
        ),
        "{err}"
    );

    let auth = PullAuth::basic(creds.username(), creds.password());
    let image_ref = cri.pull(&image, Some(&auth)).await?;
    assert_eq!(image_ref, config_digest);
    let info = cri
        .image_status(&image)
        .await?
        .ok_or("the pulled image should be present")?;
    assert_eq!(info.id, config_digest);
    assert_eq!(info.repo_tags, vec![image.clone()]);
    assert_eq!(
        info.repo_digests,
        [format!("{host}/test/hello@{manifest_digest}")]
    );

    // many RPCs share one SSH connection
    for _ in 0..5 {
        assert!(cri.image_status(&image).await?.is_some());
    }
    let err = cri_error(
        CriClient::over_ssh(&ssh, "/run/containerd/nope.sock")
            .await
            .err()
            .ok_or("a missing remote socket should fail")?,
    );
    assert!(matches!(err, CriError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("nope.sock"), "{err}");
    Ok(())
}
