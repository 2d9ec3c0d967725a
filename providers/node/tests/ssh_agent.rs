//! SSH agent authentication against a real `ssh-agent` and sshd. A test
//! binary of its own: it sets `SSH_AUTH_SOCK` and `HOME` for the process.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mirrorplan_harness::{Sshd, SshdOptions};
use mirrorplan_node::{NodeError, SshError, SshOptions, SshTransport, Transport};

/// `ssh-agent -D` (foreground), killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keys_authenticate() -> Result<(), Box<dyn std::error::Error>> {
    let sshd = Sshd::start(SshdOptions::default())?;
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("agent.sock");
    let _agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()?,
    );
    // ssh-add retries until the agent socket exists (no timing assertion:
    // the loop ends as soon as the add succeeds)
    let mut added = false;
    for _ in 0..200 {
        if sock.exists() {
            let out = Command::new("ssh-add")
                .arg(sshd.client_key_path())
                .env("SSH_AUTH_SOCK", &sock)
                .output()?;
            if out.status.success() {
                added = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(added, "ssh-add never succeeded");

    // no key file, no default keys: only the agent can authenticate
    let home = dir.path().join("home");
    std::fs::create_dir(&home)?;
    std::env::set_var("HOME", &home);
    std::env::set_var("SSH_AUTH_SOCK", &sock);

    let mut o = SshOptions::new(sshd.addr().ip().to_string());
    o.port = sshd.port();
    o.known_hosts = Some(sshd.known_hosts_path());
    o.use_agent = true;
    let t = SshTransport::connect(&o).await?;
    let out = t.run(&["id", "-u"]).await?;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), "0");

    o.use_agent = false;
    match SshTransport::connect(&o).await {
        Err(NodeError::Ssh(e)) => {
            assert!(matches!(*e, SshError::Auth { .. }), "{e}");
            assert!(e.to_string().contains("nothing"), "{e}");
        }
        other => panic!("expected an authentication failure, got {other:?}"),
    }
    Ok(())
}
