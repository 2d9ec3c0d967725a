//! `LocalTransport`: files under a root, atomic writes with modes, path
//! escapes refused, commands recorded or run as argv.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;

use mirrorplan_node::{
    diff_files, render_hosts, ChangeKind, ConfigStyle, LocalTransport, MirrorSpec, NodeError,
    NodeMirrorConfig, PullAuth, RunMode, Secret, Transport,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn mode_of(path: &std::path::Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[tokio::test]
async fn write_read_remove_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let t = LocalTransport::new(dir.path());
    assert_eq!(t.describe(), format!("local:{}", dir.path().display()));
    let p = "/etc/containerd/certs.d/gcr.io/hosts.toml";
    assert_eq!(t.read_file(p).await?, None);
    t.write_file_atomic(p, b"secret", 0o600).await?;
    let host = dir.path().join("etc/containerd/certs.d/gcr.io/hosts.toml");
    assert_eq!(std::fs::read(&host)?, b"secret");
    assert_eq!(mode_of(&host)?, 0o600);
    t.write_file_atomic(p, b"public", 0o644).await?;
    assert_eq!(t.read_file(p).await?.as_deref(), Some(&b"public"[..]));
    assert_eq!(mode_of(&host)?, 0o644);
    // no temporary files are left behind
    let names: Vec<_> = std::fs::read_dir(host.parent().ok_or("parent")?)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names, ["hosts.toml"]);
    assert!(t.remove_file(p).await?);
    assert!(!t.remove_file(p).await?);
    assert_eq!(t.read_file(p).await?, None);
    Ok(())
}

#[tokio::test]
async fn escapes_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    let t = LocalTransport::new(dir.path().join("node"));
    std::fs::create_dir_all(dir.path().join("node/etc"))?;
    for bad in ["relative/path", "/etc/../../x", "/./etc", "/", ""] {
        let err = t.write_file_atomic(bad, b"x", 0o644).await.err();
        assert!(
            matches!(err, Some(NodeError::PathNotAllowed { .. })),
            "{bad}: {err:?}"
        );
    }
    std::os::unix::fs::symlink(outside.path(), dir.path().join("node/etc/link"))?;
    let err = t
        .write_file_atomic("/etc/link/evil", b"x", 0o644)
        .await
        .err();
    assert!(
        matches!(err, Some(NodeError::PathNotAllowed { .. })),
        "{err:?}"
    );
    assert!(!outside.path().join("evil").exists());
    let err = t.read_file("/etc/link/evil").await.err();
    assert!(
        matches!(err, Some(NodeError::PathNotAllowed { .. })),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn run_records_by_default_and_executes_argv_when_asked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let t = LocalTransport::new(dir.path());
    let out = t.run(&["systemctl", "restart", "containerd"]).await?;
    assert!(out.success());
    assert_eq!(
        t.recorded_commands(),
        [["systemctl", "restart", "containerd"]]
    );
    assert!(matches!(t.run(&[]).await, Err(NodeError::EmptyCommand)));

    let t = t.with_run_mode(RunMode::Execute);
    // argv, not a shell: `$HOME` and `;` stay literal
    let out = t.run(&["printf", "%s|", "$HOME; id", "a b"]).await?;
    assert!(out.success());
    assert_eq!(out.stdout, b"$HOME; id|a b|");
    let out = t.run(&["sh", "-c", "exit 3"]).await?;
    assert_eq!(out.status, Some(3));
    let err = t.run(&["/nonexistent/program"]).await.err();
    assert!(matches!(err, Some(NodeError::Command { .. })), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn render_diff_apply_then_nothing_left_to_do() -> TestResult {
    let dir = tempfile::tempdir()?;
    let t = LocalTransport::new(dir.path());
    let mut m = MirrorSpec::new("10.231.0.1:5443");
    m.namespace = Some("test-namespace".into());
    m.ca_cert_pem =
        Some(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec());
    // a bearer token stays a hosts.toml header (basic credentials go to
    // config.toml): the file holds a secret
    m.pull_auth = Some(PullAuth::Token(Secret::new("mp-bearer-t0ken")));
    let mut cfg = NodeMirrorConfig::new(ConfigStyle::Hosts);
    cfg.mirrors.push(m);
    let desired = render_hosts(&cfg)?;
    // a stale file mirrorplan wrote earlier for a host no longer mirrored
    let stale = "/etc/containerd/certs.d/quay.io/hosts.toml";
    t.write_file_atomic(stale, b"server = \"https://quay.io\"\n", 0o644)
        .await?;

    let mut current = BTreeMap::new();
    for f in &desired {
        current.insert(f.path.clone(), t.read_file(&f.path).await?);
    }
    current.insert(stale.to_owned(), t.read_file(stale).await?);
    let changes = diff_files(&current, &desired);
    let kinds: Vec<_> = changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [ChangeKind::Create, ChangeKind::Create, ChangeKind::Delete]
    );
    assert!(!format!("{changes:?}").contains("mp-bearer-t0ken"));
    for f in &desired {
        t.write_file_atomic(&f.path, &f.contents, f.mode).await?;
    }
    assert!(t.remove_file(stale).await?);

    let mut after = BTreeMap::new();
    for f in &desired {
        after.insert(f.path.clone(), t.read_file(&f.path).await?);
    }
    after.insert(stale.to_owned(), t.read_file(stale).await?);
    assert!(diff_files(&after, &desired)
        .iter()
        .all(|c| c.kind == ChangeKind::NoOp));
    let hosts = dir.path().join("etc/containerd/certs.d/gcr.io/hosts.toml");
    assert_eq!(mode_of(&hosts)?, 0o600);
    Ok(())
}

/// The node provider's apply reuses the refresh's read of the same
/// process; a file changed on the node in between makes it fail without
/// writing anything. Its next apply has no read to reuse: it reads again.
#[tokio::test]
async fn apply_refuses_a_file_changed_since_the_refresh_read() -> TestResult {
    use mirrorplan_engine::{Address, ApplyContext, Interrupt, NoHooks, Provider};
    use mirrorplan_node::provider::{NodeProvider, NodeSpec, TransportSpec};

    let dir = tempfile::tempdir()?;
    let root = dir.path().to_str().ok_or("non-UTF-8 temp dir")?.to_string();
    let mut config = NodeMirrorConfig::new(ConfigStyle::Hosts);
    config.mirrors.push(MirrorSpec::new("127.0.0.1:5000"));
    let spec = NodeSpec {
        transport: TransportSpec::Local { root },
        config,
        config_file: "/etc/containerd/config.toml".into(),
        restart_command: "true".into(),
        restart_command_sensitive: false,
    };
    let address = Address::keyed("node", "c1", "n1")?;
    let desired = spec.to_desired(address.clone())?;
    let cfg = dir.path().join("etc/containerd/config.toml");
    std::fs::create_dir_all(cfg.parent().ok_or("parent")?)?;
    std::fs::write(&cfg, "version = 2\n")?;

    let provider = NodeProvider::default();
    let observed = provider.read(Some(&desired), None).await?;
    let change = provider.plan(Some(&desired), None, observed.as_ref())?;
    // a hand edit between the refresh and the apply
    std::fs::write(&cfg, "version = 2\n# hand edit\n")?;
    let ctx = ApplyContext::new(address, std::sync::Arc::new(NoHooks), Interrupt::default());
    let err = match provider.apply(&change, &ctx).await {
        Ok(_) => return Err("apply wrote over a file changed since the refresh".into()),
        Err(e) => e,
    };
    assert!(
        err.message.ends_with(
            "/etc/containerd/config.toml changed on the node since it was read; run plan again"
        ),
        "{}",
        err.message
    );
    assert_eq!(std::fs::read_to_string(&cfg)?, "version = 2\n# hand edit\n");
    let written: Vec<_> = walk(dir.path())?
        .into_iter()
        .filter(|p| p.is_file() && *p != cfg)
        .collect();
    assert!(written.is_empty(), "files written: {written:?}");
    // the next apply reads the node again and edits the file as it is now
    provider.apply(&change, &ctx).await?;
    let now = std::fs::read_to_string(&cfg)?;
    assert!(
        now.contains("# hand edit") && now.contains("config_path"),
        "{now}"
    );
    assert!(dir
        .path()
        .join("etc/containerd/certs.d/gcr.io/hosts.toml")
        .is_file());
    Ok(())
}

fn walk(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        }
        out.push(path);
    }
    Ok(out)
}
