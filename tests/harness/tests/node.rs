//! A node starts for real: over its own ssh address it sees its own
//! `/etc/containerd/config.toml` and a containerd on the default socket,
//! its restart script works over ssh, the host's `/etc/containerd` is
//! untouched, two nodes do not see each other's files, and nothing is left
//! running after drop.

use std::error::Error;
use std::path::Path;

use mirrorplan_harness::{Node, NodeOptions, NODE_CONTAINERD_SOCKET};

type TestResult = Result<(), Box<dyn Error>>;

/// Every file under `dir` with its content (sorted), to compare snapshots.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn live_processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

#[test]
fn node_has_its_own_etc_containerd_and_default_socket_over_ssh() -> TestResult {
    let host_etc = Path::new("/etc/containerd");
    let host_before = snapshot(host_etc);

    let node = Node::start(NodeOptions::default())?;
    let ip = node.ssh_addr().ip().to_string();
    assert!(ip.starts_with("127."), "{ip}");
    assert_ne!(ip, "127.0.0.1");

    // The node's config, as seen over ssh, is the node's own file.
    let remote_config = node.ssh_run("cat /etc/containerd/config.toml")?;
    let own_config = std::fs::read_to_string(node.etc_containerd_dir().join("config.toml"))?;
    assert_eq!(remote_config, own_config);
    assert!(remote_config.contains("config_path = \"/etc/containerd/certs.d\""));
    assert!(remote_config.contains(&format!("address = \"{NODE_CONTAINERD_SOCKET}\"")));

    // containerd answers on the default socket, on the node.
    let version = node.ssh_run(&format!("ctr --address {NODE_CONTAINERD_SOCKET} version"))?;
    let server =
        mirrorplan_harness::parse_server_version(&version).ok_or("no server version over ssh")?;
    assert_eq!(node.containerd_version()?, server);

    // A file written on the node lands in the node's dir, not the host's.
    node.ssh_run("mkdir -p /etc/containerd/certs.d/gcr.io && echo node > /etc/containerd/certs.d/gcr.io/hosts.toml")?;
    assert_eq!(
        std::fs::read_to_string(node.etc_containerd_dir().join("certs.d/gcr.io/hosts.toml"))?,
        "node\n"
    );
    assert_eq!(
        snapshot(host_etc),
        host_before,
        "host /etc/containerd changed"
    );

    // Restart over ssh, as mirrorplan's restart_command would.
    let pid_file = node.run_containerd_dir().join("containerd.pid");
    let pid_before = std::fs::read_to_string(&pid_file)?;
    let out = node.ssh_run(&node.containerd_restart_command())?;
    assert!(out.contains("restarted containerd"), "{out}");
    assert_ne!(std::fs::read_to_string(&pid_file)?, pid_before);
    assert!(node
        .ssh_run(&format!("ctr --address {NODE_CONTAINERD_SOCKET} version"))?
        .contains("Server:"));

    // Drop: every process of the node is gone (the restarted containerd was
    // started with setsid from an ssh session), and so is the temp dir.
    let dir = node
        .etc_containerd_dir()
        .parent()
        .ok_or("no parent")?
        .to_owned();
    let needle = dir.display().to_string();
    assert!(!live_processes_mentioning(&needle).is_empty());
    drop(node);
    assert_eq!(live_processes_mentioning(&needle), Vec::<String>::new());
    assert!(!dir.exists());
    assert_eq!(
        snapshot(host_etc),
        host_before,
        "host /etc/containerd changed"
    );
    Ok(())
}

#[test]
fn two_nodes_in_parallel_are_isolated() -> TestResult {
    let handles: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| Node::start(NodeOptions::default())))
        .collect();
    let mut nodes = Vec::new();
    for h in handles {
        nodes.push(h.join().map_err(|_| "thread panicked")??);
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    assert_ne!(a.ssh_addr().ip(), b.ssh_addr().ip());
    a.ssh_run("echo a-only > /etc/containerd/marker")?;
    assert_eq!(a.ssh_run("cat /etc/containerd/marker")?, "a-only\n");
    assert_eq!(
        b.ssh_run("test -e /etc/containerd/marker && echo yes || echo no")?,
        "no\n"
    );
    // Each node's sshd serves only its own address: a's key is rejected by b.
    let mut cmd = b.ssh().command("true")?;
    let args: Vec<String> = cmd
        .get_args()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let key_pos = args.iter().position(|s| s == "-i").ok_or("no -i")? + 1;
    let mut swapped = std::process::Command::new(cmd.get_program());
    for (i, arg) in args.iter().enumerate() {
        if i == key_pos {
            swapped.arg(a.ssh().client_key_path());
        } else {
            swapped.arg(arg);
        }
    }
    assert!(cmd.output()?.status.success());
    assert!(!swapped.output()?.status.success());
    Ok(())
}
