//! OpenSSH server on a free loopback port, key-only root login, with
//! generated ed25519 host and client keys; plus [`SshEndpoint`], the client
//! side (key, known_hosts, ready-made `ssh` commands) shared with
//! [`crate::Node`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{io_err, HarnessError, Result};
use crate::net::{free_port, ssh_banner};
use crate::process::{log_tail, ServiceProcess};
use crate::tools::{find_binary, mkdir, run, write_file};

/// How long sshd gets to send its banner.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a client reaches an sshd started by the harness: address, user
/// (`root`), private key and a known_hosts file that pins the host key.
#[derive(Debug, Clone)]
pub struct SshEndpoint {
    addr: SocketAddr,
    dir: PathBuf,
    host_public_key: String,
}

impl SshEndpoint {
    /// Generates host and client keys in `dir` (created if missing) and
    /// writes `authorized_keys`. The address is set by [`Self::set_addr`].
    pub(crate) fn generate(dir: &Path) -> Result<Self> {
        let keygen = find_binary("ssh-keygen")?;
        mkdir(dir)?;
        for (file, comment) in [
            ("host_ed25519", "mirrorplan-harness-host"),
            ("client_ed25519", "mirrorplan-harness-client"),
        ] {
            run(
                Command::new(&keygen)
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                    .arg(dir.join(file)),
                None,
            )?;
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(io_err(format!("reading {}", p.display())))
        };
        let client_pub = read("client_ed25519.pub")?;
        write_file(&dir.join("authorized_keys"), &client_pub)?;
        let host_pub = read("host_ed25519.pub")?;
        let host_public_key = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            dir: dir.to_owned(),
            host_public_key,
        })
    }

    /// Sets the address and (re)writes `known_hosts` and `ssh_config`.
    pub(crate) fn set_addr(&mut self, addr: SocketAddr) -> Result<()> {
        self.addr = addr;
        write_file(
            &self.known_hosts_path(),
            format!("[{}]:{} {}\n", addr.ip(), addr.port(), self.host_public_key),
        )?;
        write_file(
            &self.ssh_config_path(),
            format!(
                "Host {ip}\n  HostName {ip}\n  Port {port}\n  User root\n  IdentityFile {key}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  \
                 BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n",
                ip = addr.ip(),
                port = addr.port(),
                key = self.client_key_path().display(),
                kh = self.known_hosts_path().display(),
            ),
        )
    }

    /// Writes an sshd_config for this endpoint to `path`.
    pub(crate) fn write_sshd_config(&self, path: &Path, pid_file: &Path) -> Result<()> {
        write_file(
            path,
            format!(
                "Port {port}\nListenAddress {ip}\nHostKey {hk}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                port = self.addr.port(),
                ip = self.addr.ip(),
                hk = self.dir.join("host_ed25519").display(),
                pid = pid_file.display(),
                ak = self.dir.join("authorized_keys").display(),
            ),
        )
    }

    /// Address sshd listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The IP part of [`Self::addr`] as a string.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The login user: always `root`.
    pub fn user(&self) -> &'static str {
        "root"
    }

    /// Private ed25519 key authorised for `root`.
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.join("client_ed25519")
    }

    /// known_hosts with the single line `[IP]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// An ssh_config (`ssh -F`) for this host: key, known_hosts,
    /// `StrictHostKeyChecking yes`, `BatchMode yes`.
    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// The host public key, `"ssh-ed25519 AAAA…"` (no comment).
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// An `ssh` command that runs `remote` (a shell command line) on the
    /// server, with strict host key checking and batch mode.
    pub fn command(&self, remote: &str) -> Result<Command> {
        let mut cmd = Command::new(find_binary("ssh")?);
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(self.client_key_path())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts_path().display()
            ))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
            .args(["-o", "LogLevel=ERROR", "-p"])
            .arg(self.port().to_string())
            .arg(format!("root@{}", self.addr.ip()))
            .arg("--")
            .arg(remote);
        Ok(cmd)
    }

    /// Runs `remote` over ssh; returns its stdout, or an error carrying its
    /// stderr when it exits non-zero.
    pub fn run(&self, remote: &str) -> Result<String> {
        let out = run(&mut self.command(remote)?, None)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Creates `/run/sshd`, the privilege-separation directory sshd insists on.
pub(crate) fn prepare_sshd_dirs() -> Result<()> {
    mkdir(Path::new("/run/sshd"))
}

/// Options for [`Sshd::start`].
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// Address to listen on; must be in 127.0.0.0/8. Default `127.0.0.1`.
    pub listen_ip: Ipv4Addr,
}

impl Default for SshdOptions {
    fn default() -> Self {
        Self {
            listen_ip: Ipv4Addr::LOCALHOST,
        }
    }
}

/// A running sshd (root namespace). Stopped, temp dir removed, on drop.
#[derive(Debug)]
pub struct Sshd {
    _dir: tempfile::TempDir,
    endpoint: SshEndpoint,
    config_path: PathBuf,
    log_path: PathBuf,
    process: Option<ServiceProcess>,
}

impl Sshd {
    /// Generates keys, picks a free port on `opts.listen_ip`, starts sshd
    /// and waits for its banner.
    pub fn start(opts: SshdOptions) -> Result<Self> {
        let sshd = find_binary("sshd")?;
        find_binary("ssh")?;
        prepare_sshd_dirs()?;
        let dir = tempfile::Builder::new()
            .prefix("mp-sshd-")
            .tempdir()
            .map_err(io_err("creating sshd temp dir"))?;
        let mut endpoint = SshEndpoint::generate(&dir.path().join("keys"))?;
        let config_path = dir.path().join("sshd_config");
        let log_path = dir.path().join("sshd.log");
        let pid_file = dir.path().join("sshd.pid");
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port(opts.listen_ip)?;
            endpoint.set_addr(SocketAddr::from((opts.listen_ip, port)))?;
            endpoint.write_sshd_config(&config_path, &pid_file)?;
            run(
                Command::new(&sshd).arg("-t").arg("-f").arg(&config_path),
                None,
            )?;
            let mut cmd = Command::new(&sshd);
            cmd.args(["-D", "-e", "-f"]).arg(&config_path);
            let mut process = ServiceProcess::spawn("sshd", cmd, &log_path)?;
            let addr = endpoint.addr();
            match process.wait_ready(READY_TIMEOUT, || ssh_banner(addr)) {
                Ok(()) => {
                    return Ok(Self {
                        _dir: dir,
                        endpoint,
                        config_path,
                        log_path,
                        process: Some(process),
                    })
                }
                Err(e) if log_tail(&log_path).contains("Address already in use") => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(HarnessError::NoFreePort {
            ip: opts.listen_ip.into(),
            attempts: 5,
        }))
    }

    /// Client-side view: key, known_hosts, `ssh` commands.
    pub fn endpoint(&self) -> &SshEndpoint {
        &self.endpoint
    }

    /// Address sshd listens on.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.endpoint.port()
    }

    /// Private key authorised for `root`.
    pub fn client_key_path(&self) -> PathBuf {
        self.endpoint.client_key_path()
    }

    /// known_hosts pinning the host key for `[IP]:PORT`.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.endpoint.known_hosts_path()
    }

    /// `"ssh-ed25519 AAAA…"`.
    pub fn host_public_key(&self) -> &str {
        self.endpoint.host_public_key()
    }

    /// An ssh_config (`ssh -F`) for this server.
    pub fn ssh_config_path(&self) -> PathBuf {
        self.endpoint.ssh_config_path()
    }

    /// The generated sshd_config.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// sshd's log (`-e`: everything it would send to syslog).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops the listening sshd (sessions still open run to their end).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
