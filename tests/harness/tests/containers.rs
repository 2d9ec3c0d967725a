//! A real container runs under the harness's containerd (runc, a shim, the
//! configured snapshotter), and dropping the `Containerd` kills the shim and
//! the container process too.
//!
//! The image is built here without any registry: one uncompressed layer
//! holding `/bin/busybox` (Debian's busybox-static), packed as an OCI
//! archive for `ctr images import`.

use std::error::Error;
use std::path::Path;
use std::process::Command;

use mirrorplan_harness::{Containerd, ContainerdOptions};
use sha2::{Digest, Sha256};

type TestResult = Result<(), Box<dyn Error>>;

const IMAGE: &str = "docker.io/library/harness-busybox:1";

/// Writes `data` as a blob of the OCI layout at `layout`; returns its digest.
fn put_blob(layout: &Path, data: &[u8]) -> Result<String, Box<dyn Error>> {
    let hex = format!("{:x}", Sha256::digest(data));
    std::fs::write(layout.join("blobs/sha256").join(&hex), data)?;
    Ok(format!("sha256:{hex}"))
}

/// Builds an OCI archive of a busybox image in `work`; returns its path.
fn busybox_oci_archive(work: &Path) -> Result<std::path::PathBuf, Box<dyn Error>> {
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    let layer_tar = work.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--owner=0", "--group=0", "-cf"])
        .arg(&layer_tar)
        .arg("bin")
        .status()?;
    assert!(st.success(), "tar layer");
    let layout = work.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    let layer = std::fs::read(&layer_tar)?;
    let layer_digest = put_blob(&layout, &layer)?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sleep", "600"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    }))?;
    let config_digest = put_blob(&layout, &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}]
    }))?;
    let manifest_digest = put_blob(&layout, &manifest)?;
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": manifest_digest, "size": manifest.len(),
                           "annotations": {"io.containerd.image.name": IMAGE}}]
        }))?,
    )?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let archive = work.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()?;
    assert!(st.success(), "tar archive");
    Ok(archive)
}

fn ctr(ctd: &Containerd, args: &[&str]) -> Result<String, Box<dyn Error>> {
    let out = ctd.ctr()?.args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "ctr {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// PIDs of processes whose command line is exactly `/bin/busybox sleep 600`.
fn sleeper_pids() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            if raw == b"/bin/busybox\x00sleep\x00600\x00" {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn a_container_runs_and_dies_with_the_containerd() -> TestResult {
    let work = tempfile::tempdir()?;
    let archive = busybox_oci_archive(work.path())?;
    let ctd = Containerd::start(ContainerdOptions::default())?;
    let archive_arg = archive.to_string_lossy().into_owned();
    ctr(&ctd, &["images", "import", &archive_arg])?;
    assert!(ctr(&ctd, &["images", "ls", "-q"])?.contains(IMAGE));

    // A one-shot container prints through the shim.
    let id = format!("harness-echo-{}", std::process::id());
    let out = ctr(
        &ctd,
        &[
            "run",
            "--rm",
            IMAGE,
            &id,
            "/bin/busybox",
            "echo",
            "hello from busybox",
        ],
    )?;
    assert_eq!(out.trim(), "hello from busybox");

    // A long-running container is killed when the Containerd is dropped.
    let before = sleeper_pids();
    let id = format!("harness-sleep-{}", std::process::id());
    ctr(&ctd, &["run", "-d", IMAGE, &id])?;
    let tasks = ctr(&ctd, &["tasks", "ls"])?;
    assert!(tasks.contains(&id) && tasks.contains("RUNNING"), "{tasks}");
    let during = sleeper_pids();
    assert!(
        during.len() > before.len(),
        "container process not visible: {during:?}"
    );
    drop(ctd);
    let after: Vec<_> = sleeper_pids()
        .into_iter()
        .filter(|p| during.contains(p) && !before.contains(p))
        .collect();
    assert_eq!(after, Vec::<String>::new(), "container outlived containerd");
    // Host-side traces named after the container are cleaned up too.
    assert!(!Path::new("/run/containerd/runc/default").join(&id).exists());
    assert!(!Path::new("/sys/fs/cgroup/pids/default").join(&id).exists());
    Ok(())
}
