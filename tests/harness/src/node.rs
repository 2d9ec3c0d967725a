//! A test "node": containerd and sshd sharing private mount and PID
//! namespaces in which `/etc/containerd` and `/run/containerd` are the
//! node's own temp dirs, so containerd uses the real default paths
//! (`/etc/containerd/config.toml`, `/etc/containerd/certs.d`,
//! `/run/containerd/containerd.sock`) without touching the host's.
//!
//! sshd listens on a loopback address of its own (see
//! [`crate::net::unique_loopback_ip`]). Every command run over that ssh
//! shares the node's view, just like on a real machine; the rest of the
//! filesystem is shared with the host, so the harness's scripts and the
//! test binaries are usable on the node.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::containerd::{
    ctr_answers, ensure_mount_point, render_config, server_version, snapshotter_name,
    write_ctl_script, write_init_script, ConfigPaths, ContainerdOptions, READY_TIMEOUT,
};
use crate::error::{io_err, HarnessError, Result};
use crate::net::{free_port, ssh_banner, unique_loopback_ip};
use crate::process::log_tail;
use crate::sandbox::{container_traces, remove_container_leftovers, Sandbox};
use crate::ssh::{prepare_sshd_dirs, SshEndpoint};
use crate::tools::{find_binary, mkdir, run, sh_path, write_file, write_script};

/// The socket path containerd uses inside every node.
pub const NODE_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// The config path containerd uses inside every node.
pub const NODE_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";

/// Options for [`Node::start`].
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// The node's containerd config.toml (written to the node's
    /// `/etc/containerd/config.toml`; `config_path` is
    /// `/etc/containerd/certs.d` in hosts.toml style).
    pub containerd: ContainerdOptions,
    /// Address for the node's sshd; a fresh [`unique_loopback_ip`] if `None`.
    pub ssh_ip: Option<Ipv4Addr>,
    /// Non-root login accounts of the node (see [`NodeUser`]).
    pub users: Vec<NodeUser>,
    /// Programs the node does not have: each one found in the usual
    /// `PATH` directories (symlinks followed) is covered with `/dev/null`
    /// inside the node's mount namespace (not executable, so not found).
    pub hidden_programs: Vec<String>,
}

/// The bind mounts that hide `programs` on the node (see
/// [`NodeOptions::hidden_programs`]).
fn hidden_program_binds(programs: &[String]) -> Vec<(PathBuf, String)> {
    let mut binds = Vec::new();
    for name in programs {
        for dir in [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ] {
            let p = Path::new(dir).join(name);
            if let Ok(real) = std::fs::canonicalize(&p) {
                let target = real.to_string_lossy().into_owned();
                if !binds.iter().any(|(_, t)| *t == target) {
                    binds.push((PathBuf::from("/dev/null"), target));
                }
            }
        }
    }
    binds
}

/// A non-root account that exists only on one node: the node's mount
/// namespace sees copies of `/etc/passwd`, `/etc/shadow`, `/etc/group` and
/// `/etc/sudoers.d` with it added (bind mounts), so the machine's own files
/// are never changed. It logs in with the node's client key (the same
/// `authorized_keys` as root) and has no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUser {
    /// Login name, e.g. `mpdeploy`.
    pub name: String,
    /// `NOPASSWD: ALL` in sudoers when true; `ALL` (a password needed,
    /// which the account does not have) when false.
    pub passwordless_sudo: bool,
}

impl NodeUser {
    /// An account with passwordless sudo.
    pub fn sudoer(name: &str) -> Self {
        NodeUser {
            name: name.to_owned(),
            passwordless_sudo: true,
        }
    }

    /// An account whose sudo asks for a password.
    pub fn sudo_with_password(name: &str) -> Self {
        NodeUser {
            name: name.to_owned(),
            passwordless_sudo: false,
        }
    }
}

/// The node's copies of the account files with `users` added, and the
/// bind mounts that put them in place: `(host copy, path on the node)`.
fn account_files(d: &Path, users: &[NodeUser]) -> Result<Vec<(PathBuf, &'static str)>> {
    use std::os::unix::fs::PermissionsExt;
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let read = |p: &str| std::fs::read_to_string(p).map_err(io_err(format!("reading {p}")));
    let (mut passwd, mut shadow, mut group) = (
        read("/etc/passwd")?,
        read("/etc/shadow")?,
        read("/etc/group")?,
    );
    let mut sudoers = String::from("# written by mirrorplan-harness for this node only\n");
    for (i, u) in users.iter().enumerate() {
        let id = 61000 + i;
        for text in [&mut passwd, &mut shadow, &mut group] {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
        }
        passwd.push_str(&format!(
            "{n}:x:{id}:{id}:mirrorplan test user:/:/bin/sh\n",
            n = u.name
        ));
        // `*`: no password, but not locked (sshd refuses locked accounts)
        shadow.push_str(&format!("{}:*:19000:0:99999:7:::\n", u.name));
        group.push_str(&format!("{}:x:{id}:\n", u.name));
        let rule = if u.passwordless_sudo {
            "NOPASSWD: ALL"
        } else {
            "ALL"
        };
        sudoers.push_str(&format!("{} ALL=(ALL:ALL) {rule}\n", u.name));
    }
    let dir = d.join("accounts");
    mkdir(&dir)?;
    let sudoers_d = d.join("sudoers.d");
    mkdir(&sudoers_d)?;
    for e in std::fs::read_dir("/etc/sudoers.d")
        .into_iter()
        .flatten()
        .flatten()
    {
        let to = sudoers_d.join(e.file_name());
        std::fs::copy(e.path(), &to).map_err(io_err(format!("copying {}", e.path().display())))?;
    }
    let mut files = vec![
        (dir.join("passwd"), passwd, 0o644),
        (dir.join("shadow"), shadow, 0o640),
        (dir.join("group"), group, 0o644),
        (sudoers_d.join("mirrorplan-harness"), sudoers, 0o440),
    ];
    for (path, text, mode) in files.drain(..) {
        write_file(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("chmod {}", path.display())))?;
    }
    Ok(vec![
        (dir.join("passwd"), "/etc/passwd"),
        (dir.join("shadow"), "/etc/shadow"),
        (dir.join("group"), "/etc/group"),
        (sudoers_d, "/etc/sudoers.d"),
    ])
}

/// A running node. Stopped (every process in it, shims and containers
/// included) and its temp dir removed on drop.
#[derive(Debug)]
pub struct Node {
    dir: tempfile::TempDir,
    sandbox: Sandbox,
    ssh: SshEndpoint,
    ctl_path: PathBuf,
    restart_script: PathBuf,
    snapshotter: &'static str,
}

impl Node {
    /// Creates the node's directories and config, starts its sandbox with
    /// containerd and sshd, and waits until both answer.
    pub fn start(opts: NodeOptions) -> Result<Self> {
        for b in [
            "containerd",
            "ctr",
            "containerd-shim-runc-v2",
            "runc",
            "ssh",
        ] {
            find_binary(b)?;
        }
        let sshd_bin = find_binary("sshd")?;
        prepare_sshd_dirs()?;
        ensure_mount_point("/etc/containerd")?;
        ensure_mount_point("/run/containerd")?;
        let dir = tempfile::Builder::new()
            .prefix("mp-node-")
            .tempdir()
            .map_err(io_err("creating node temp dir"))?;
        let d = dir.path();
        let etc = d.join("etc-containerd");
        let run_dir = d.join("run-containerd");
        for p in [
            &etc.join("certs.d"),
            &run_dir,
            &d.join("root"),
            &d.join("opt"),
            &d.join("cni"),
        ] {
            mkdir(p)?;
        }
        let snapshotter = snapshotter_name(opts.containerd.snapshotter);
        let paths = ConfigPaths {
            root: &d.join("root"),
            state: Path::new("/run/containerd"),
            grpc: Path::new(NODE_CONTAINERD_SOCKET),
            opt: &d.join("opt"),
            cni_conf: &d.join("cni"),
            certs_d: Path::new("/etc/containerd/certs.d"),
        };
        write_file(
            &etc.join("config.toml"),
            render_config(&opts.containerd, snapshotter, &paths),
        )?;
        let ctl_path = d.join("ctl");
        write_ctl_script(
            &ctl_path,
            Path::new(NODE_CONTAINERD_CONFIG),
            Path::new(NODE_CONTAINERD_SOCKET),
            &d.join("containerd.log"),
            Path::new("/run/containerd/containerd.pid"),
        )?;
        let restart_script = d.join("restart-containerd");
        write_script(
            &restart_script,
            &format!(
                "#!/bin/sh\n# Generated by mirrorplan-harness. Run ON the node (over its ssh):\n\
                 # the stand-in for `systemctl restart containerd`.\nexec {} restart-containerd\n",
                sh_path(&ctl_path)
            ),
        )?;
        let mut ssh = SshEndpoint::generate(&d.join("ssh"))?;
        let accounts = account_files(d, &opts.users)?;
        if !accounts.is_empty() {
            // the other accounts read the shared authorized_keys (sshd
            // reads it as the user): let them through the node's dirs
            use std::os::unix::fs::PermissionsExt;
            for (p, mode) in [
                (d.to_path_buf(), 0o711),
                (d.join("ssh"), 0o711),
                (d.join("ssh").join("authorized_keys"), 0o644),
            ] {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .map_err(io_err(format!("chmod {}", p.display())))?;
            }
        }
        let ip = opts.ssh_ip.unwrap_or_else(unique_loopback_ip);
        let sshd_config = d.join("sshd_config");
        let sshd_log = d.join("sshd.log");
        let ready = d.join("ready");
        let init = d.join("init.sh");
        let mut binds: Vec<(&Path, &str)> =
            vec![(&etc, "/etc/containerd"), (&run_dir, "/run/containerd")];
        binds.extend(accounts.iter().map(|(p, t)| (p.as_path(), *t)));
        let hidden = hidden_program_binds(&opts.hidden_programs);
        binds.extend(hidden.iter().map(|(p, t)| (p.as_path(), t.as_str())));
        write_init_script(
            &init,
            &binds,
            &ctl_path,
            &ready,
            Some((&sshd_bin, &sshd_config, &sshd_log)),
        )?;
        let host_socket = run_dir.join("containerd.sock");
        let mut last_err = None;
        for _ in 0..3 {
            let _ = std::fs::remove_file(&ready);
            ssh.set_addr(SocketAddr::from((ip, free_port(ip)?)))?;
            ssh.write_sshd_config(&sshd_config, &d.join("sshd.pid"))?;
            run(
                Command::new(&sshd_bin)
                    .arg("-t")
                    .arg("-f")
                    .arg(&sshd_config),
                None,
            )?;
            let mut sandbox = Sandbox::spawn("node sandbox", d, &init, &d.join("sandbox.log"))?;
            let addr = ssh.addr();
            match sandbox.wait_ready(READY_TIMEOUT, || {
                ready.exists() && ctr_answers(&host_socket) && ssh_banner(addr)
            }) {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        sandbox,
                        ssh,
                        ctl_path,
                        restart_script,
                        snapshotter,
                    })
                }
                Err(e) if log_tail(&sshd_log).contains("Address already in use") => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(HarnessError::NoFreePort {
            ip: ip.into(),
            attempts: 3,
        }))
    }

    /// Client-side ssh view: key, known_hosts, ready-made `ssh` commands.
    pub fn ssh(&self) -> &SshEndpoint {
        &self.ssh
    }

    /// Where the node's sshd listens (`127.A.B.C:PORT`).
    pub fn ssh_addr(&self) -> SocketAddr {
        self.ssh.addr()
    }

    /// Runs `remote` on the node over ssh and returns its stdout.
    pub fn ssh_run(&self, remote: &str) -> Result<String> {
        self.ssh.run(remote)
    }

    /// Host-side path of the node's `/etc/containerd`.
    pub fn etc_containerd_dir(&self) -> PathBuf {
        self.dir.path().join("etc-containerd")
    }

    /// Host-side path of the node's `/run/containerd` (containerd's state).
    pub fn run_containerd_dir(&self) -> PathBuf {
        self.dir.path().join("run-containerd")
    }

    /// Host-side path of the node's containerd socket (the same socket as
    /// `/run/containerd/containerd.sock` on the node).
    pub fn containerd_socket_host_path(&self) -> PathBuf {
        self.run_containerd_dir().join("containerd.sock")
    }

    /// A script to run ON the node (e.g. as mirrorplan's `restart_command`
    /// over ssh) that restarts the node's containerd: kill by pid file,
    /// start again in the node's namespaces, wait until it answers.
    pub fn containerd_restart(&self) -> &Path {
        &self.restart_script
    }

    /// [`Self::containerd_restart`] as a shell command line.
    pub fn containerd_restart_command(&self) -> String {
        sh_path(&self.restart_script)
    }

    /// The node's control script (`start-containerd`, `stop-containerd`,
    /// `restart-containerd`, `status`), to run on the node.
    pub fn ctl_path(&self) -> &Path {
        &self.ctl_path
    }

    /// The node containerd's log (host path).
    pub fn containerd_log_path(&self) -> PathBuf {
        self.dir.path().join("containerd.log")
    }

    /// The node sshd's log (host path).
    pub fn sshd_log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// `"overlayfs"` or `"native"`.
    pub fn snapshotter(&self) -> &'static str {
        self.snapshotter
    }

    /// The node containerd's server version (asked from the host side).
    pub fn containerd_version(&self) -> Result<String> {
        server_version(&self.containerd_socket_host_path())
    }

    /// A `ctr` command against the node's containerd, run from the host.
    /// Fine for images, content and `version`; for `ctr run`/`tasks`, run
    /// ctr on the node over ssh instead (its client makes FIFOs under the
    /// caller's `/run/containerd`, which on the node is the node's own).
    pub fn ctr(&self) -> Result<Command> {
        let mut cmd = Command::new(find_binary("ctr")?);
        cmd.arg("--address").arg(self.containerd_socket_host_path());
        Ok(cmd)
    }

    /// True while the node's sandbox runs.
    pub fn is_running(&mut self) -> bool {
        self.sandbox.is_running()
    }

    /// Stops every process on the node.
    pub fn stop(&mut self) {
        let traces = container_traces(&self.run_containerd_dir());
        self.sandbox.stop();
        remove_container_leftovers(&traces, None);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
