//! containerd starts for real in its sandbox: `ctr version` reports a
//! server version, the config is the generated one, restart works, and
//! nothing is left running after drop.

use std::error::Error;
use std::path::Path;
use std::process::Command;

use mirrorplan_harness::{parse_server_version, ConfigStyle, Containerd, ContainerdOptions};

type TestResult = Result<(), Box<dyn Error>>;

/// PIDs of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(&needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

#[test]
fn ctr_version_reports_the_server_and_drop_stops_everything() -> TestResult {
    let ctd = Containerd::start(ContainerdOptions::default())?;
    let out = Command::new("ctr")
        .arg("--address")
        .arg(ctd.socket_path())
        .arg("version")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let server = parse_server_version(&text).ok_or("no server version in ctr output")?;
    assert!(server.starts_with(|c: char| c.is_ascii_digit()), "{server}");
    assert_eq!(ctd.version()?, server);

    let config = std::fs::read_to_string(ctd.config_path())?;
    assert!(config.contains(&format!("config_path = \"{}\"", ctd.certs_dir().display())));
    assert!(config.contains(&format!("snapshotter = \"{}\"", ctd.snapshotter())));
    assert!(ctd.certs_dir().is_dir());
    assert!(ctd.address().starts_with("unix:///"));

    let dir = ctd
        .root_dir()
        .parent()
        .ok_or("root dir has no parent")?
        .to_owned();
    assert!(
        !processes_mentioning(&dir).is_empty(),
        "containerd not found in /proc"
    );
    drop(ctd);
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
    assert!(!dir.exists(), "temp dir left behind: {}", dir.display());
    Ok(())
}

#[test]
fn restart_brings_containerd_back_with_legacy_config() -> TestResult {
    let mut ctd = Containerd::start(ContainerdOptions {
        config_style: ConfigStyle::Legacy,
        extra_toml: "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"gcr.io\"]\n  \
                     endpoint = [\"https://127.0.0.1:1\"]"
            .into(),
        ..Default::default()
    })?;
    let config = std::fs::read_to_string(ctd.config_path())?;
    assert!(!config.contains("config_path"));
    assert!(config.contains("registry.mirrors.\"gcr.io\""));

    let log_before = std::fs::read_to_string(ctd.log_path())?;
    ctd.restart()?;
    let version = ctd.version()?;
    assert!(!version.is_empty());
    // The log grew by a second startup.
    let log_after = std::fs::read_to_string(ctd.log_path())?;
    let starts = |s: &str| s.matches("starting containerd").count();
    assert_eq!(starts(&log_after), starts(&log_before) + 1, "{log_after}");
    Ok(())
}

#[test]
fn two_containerds_in_parallel_have_separate_sockets() -> TestResult {
    let handles: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| Containerd::start(ContainerdOptions::default())))
        .collect();
    let mut started = Vec::new();
    for h in handles {
        started.push(h.join().map_err(|_| "thread panicked")??);
    }
    assert_ne!(started[0].socket_path(), started[1].socket_path());
    for c in &started {
        assert!(!c.version()?.is_empty());
    }
    Ok(())
}

#[test]
fn a_broken_config_is_an_error_with_the_log_not_a_hang_or_panic() {
    let result = Containerd::start(ContainerdOptions {
        extra_toml: "this is [not toml".into(),
        ..Default::default()
    });
    match result {
        Err(mirrorplan_harness::HarnessError::ExitedEarly { log_tail, .. }) => {
            assert!(
                log_tail.contains("containerd exited during startup"),
                "{log_tail}"
            );
        }
        other => panic!("expected ExitedEarly, got {other:?}"),
    }
}
