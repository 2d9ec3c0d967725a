//! sshd starts for real: key login as root with strict host key checking
//! against the generated known_hosts works, and a wrong known_hosts fails.

use std::error::Error;
use std::process::Command;

use mirrorplan_harness::{find_binary, HarnessError, Sshd, SshdOptions};

type TestResult = Result<(), Box<dyn Error>>;

fn ssh_echo(sshd: &Sshd, known_hosts: &std::path::Path) -> std::io::Result<std::process::Output> {
    Command::new("ssh")
        .arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(sshd.client_key_path())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
        ])
        .arg(sshd.port().to_string())
        .arg("root@127.0.0.1")
        .args(["echo", "hi"])
        .output()
}

#[test]
fn ssh_with_generated_key_and_known_hosts_runs_a_command() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    assert_eq!(sshd.addr().ip().to_string(), "127.0.0.1");

    let out = ssh_echo(&sshd, &sshd.known_hosts_path())?;
    assert!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    let kh = std::fs::read_to_string(sshd.known_hosts_path())?;
    assert_eq!(
        kh,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), sshd.host_public_key())
    );
    assert!(sshd.host_public_key().starts_with("ssh-ed25519 "));

    // So does the generated ssh_config alone.
    let out = Command::new("ssh")
        .arg("-F")
        .arg(sshd.ssh_config_path())
        .args(["127.0.0.1", "echo", "hi"])
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The harness's own ssh helper gives the same result.
    assert_eq!(sshd.endpoint().run("echo hi")?, "hi\n");
    Ok(())
}

#[test]
fn strict_host_key_checking_rejects_an_unknown_host_key() -> TestResult {
    let sshd = Sshd::start(SshdOptions::default())?;
    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "")?;
    let out = ssh_echo(&sshd, &empty)?;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    Ok(())
}

#[test]
fn two_sshds_get_distinct_ports_and_host_keys() -> TestResult {
    let a = Sshd::start(SshdOptions::default())?;
    let b = Sshd::start(SshdOptions::default())?;
    assert_ne!(a.port(), b.port());
    assert_ne!(a.host_public_key(), b.host_public_key());
    // a's key is not authorised on b.
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(a.client_key_path())
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            b.known_hosts_path().display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
        ])
        .arg(b.port().to_string())
        .args(["root@127.0.0.1", "true"])
        .output()?;
    assert!(!out.status.success());
    Ok(())
}

#[test]
fn a_missing_program_is_an_error_naming_the_debian_package() {
    match find_binary("docker-registry-that-does-not-exist") {
        Err(HarnessError::MissingBinary { binary, .. }) => {
            assert_eq!(binary, "docker-registry-that-does-not-exist");
        }
        other => panic!("expected MissingBinary, got {other:?}"),
    }
    assert_eq!(
        mirrorplan_harness::debian_package_for("htpasswd"),
        "apache2-utils"
    );
    assert_eq!(mirrorplan_harness::debian_package_for("ctr"), "containerd");
}
