//! `SshTransport`: a node reached over SSH (russh, ring crypto backend).
//!
//! One SSH connection per node, opened by [`SshTransport::connect`] and
//! reused for every operation; each operation opens its own channel.
//!
//! ```no_run
//! use mirrorplan_node::{CriClient, SshOptions, SshTransport, Transport};
//! # async fn demo() -> mirrorplan_node::Result<()> {
//! let mut opts = SshOptions::new("10.0.0.5");
//! opts.private_key = Some("/home/me/.ssh/id_ed25519".into());
//! let node = SshTransport::connect(&opts).await?;
//! let out = node.run(&["containerd", "--version"]).await?;
//! let config = node.read_file("/etc/containerd/config.toml").await?;
//! let cri = CriClient::over_ssh(&node, "/run/containerd/containerd.sock").await?;
//! println!("{:?} {:?} {:?}", out.status, config.map(|c| c.len()), cri.version().await?);
//! # Ok(()) }
//! ```
//!
//! # Security
//! - **Host keys are always checked**: against `known_hosts` (default
//!   `~/.ssh/known_hosts`; `[host]:port` and plain forms, hashed entries,
//!   `@revoked`) or against an explicit pin. An unknown host or a changed key
//!   stops the connection with an error naming the host and the key's
//!   SHA256 fingerprint. Nothing is ever added to known_hosts.
//! - **No shell string is built from data**: every word is quoted with
//!   [`crate::shell::quote`]; file scripts are fixed text and receive paths
//!   as positional parameters (`sh -c SCRIPT sh PATH ...`), file contents
//!   on stdin.
//! - **Secrets stay out of errors**: passphrases are [`Secret`]s; remote
//!   stderr is truncated and never includes file contents (they travel on
//!   stdin/stdout only).
//!
//! # Remote requirements
//! A POSIX `sh`, `cat`, `mktemp`, `chmod`, `mv`, `wc`, `dirname`,
//! `basename`, `tail -c`, and `head -c` (GNU coreutils, busybox) for batched
//! writes; `sync FILE` is used when available (GNU coreutils ≥ 8.24,
//! recent busybox). A checked write (`write_files_if_unchanged`) compares
//! with `sha256sum` (GNU coreutils, the package of the tools above, and
//! busybox; chosen over `cmp`, which is POSIX but lives in diffutils, not
//! installed everywhere, and would need every expected file sent again);
//! without it the write refuses before touching anything and the node
//! provider reads and writes unchecked. Non-root users need passwordless
//! `sudo` (`sudo -n`).
//!
//! Several files are read (`read_files`) or written (`write_files_atomic`)
//! with one remote command each, and a command can ride along
//! (`read_files_and_run`: a refresh's read and `containerd --version`;
//! `write_files_then_run`: an apply's write and the restart, which runs
//! only once every file is in place). Every remote command costs a channel,
//! a process on the node and the login shell's start-up (bash sources
//! `~/.bashrc` for commands run by sshd), so a node's refresh is one
//! command and a first rollout two (refresh; write + restart, which first
//! checks on the node that every file it replaces is still what the
//! refresh read: `write_files_if_unchanged`) plus the CRI health check over
//! a forwarded socket. Without the refresh's read in the same process (a
//! saved plan, `--refresh=false`) apply reads first: three.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelStream};

use crate::command_log;
use crate::error::{NodeError, Result};
use crate::known_hosts::{self, fingerprint, HostKeyCheck};
use crate::secret::Secret;
use crate::shell;
use crate::transport::{check_expectations, Output, Transport};

/// Session channels open at once on one connection: OpenSSH's default
/// `MaxSessions` is 10; stay below it (forwarded sockets do not count).
const MAX_SESSIONS: usize = 8;

/// Files larger than this are written alone, not in a batch.
const BATCH_FILE_LIMIT: usize = 1 << 20;

/// How much remote stderr an error message keeps.
const STDERR_LIMIT: usize = 2000;

/// Name part of the temporary files `write_file_atomic` creates next to the
/// target (`.NAME.mirrorplan-tmp.XXXXXX`); stale ones are removed by the
/// next write of the same file.
pub const TEMP_MARKER: &str = "mirrorplan-tmp";

/// How to reach one node over SSH.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (22).
    pub port: u16,
    /// Login user (`root`).
    pub user: String,
    /// Private key file (OpenSSH or PEM format). When `None` and the agent
    /// is not used (or has no usable key), `~/.ssh/id_ed25519`,
    /// `id_ecdsa` and `id_rsa` are tried, like `ssh`.
    pub private_key: Option<PathBuf>,
    /// Passphrase of `private_key`.
    pub passphrase: Option<Secret>,
    /// known_hosts file; `~/.ssh/known_hosts` when `None`. Ignored when
    /// `host_key_pin` is set.
    pub known_hosts: Option<PathBuf>,
    /// Accept exactly this host key instead of consulting known_hosts:
    /// `ssh-ed25519 AAAA…` (a comment may follow) or `SHA256:…`.
    pub host_key_pin: Option<String>,
    /// Try the keys of the SSH agent at `SSH_AUTH_SOCK` (if set).
    pub use_agent: bool,
    /// Limit for TCP connect + handshake + authentication and for opening
    /// each channel. Commands themselves are not limited.
    pub timeout: Duration,
    /// Prefix commands with `sudo -n --`. `None`: only when `user` is not
    /// `root`.
    pub sudo: Option<bool>,
}

impl SshOptions {
    /// Port 22, user `root`, known_hosts from `~/.ssh`, agent used, 30 s
    /// timeout, sudo automatic.
    pub fn new(host: impl Into<String>) -> Self {
        SshOptions {
            host: host.into(),
            port: 22,
            user: "root".to_owned(),
            private_key: None,
            passphrase: None,
            known_hosts: None,
            host_key_pin: None,
            use_agent: true,
            timeout: Duration::from_secs(30),
            sudo: None,
        }
    }

    /// Whether commands run through `sudo -n --`.
    pub fn uses_sudo(&self) -> bool {
        self.sudo.unwrap_or(self.user != "root")
    }

    /// `user@host:port`, for messages.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Errors of the SSH transport and of CRI calls made through it.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum SshError {
    /// Invalid option values.
    #[error("invalid SSH options for {target}: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::options),
        help("check the node's ssh settings (host, user, host_key_pin)")
    )]
    Options { target: String, reason: String },

    /// TCP connection failed.
    #[error("cannot connect to {target}: {source}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::connect),
        help("check that the node is up, that sshd listens on this address and port, and that no firewall is in the way")
    )]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },

    /// Connect, handshake, authentication or channel open took too long.
    #[error("{what} with {target} timed out after {after:?}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::timeout),
        help("the node or the network is slow or unreachable; raise the timeout if the node is known to be slow")
    )]
    Timeout {
        target: String,
        what: &'static str,
        after: Duration,
    },

    /// The host is not in known_hosts.
    #[error("host key of {host} is not known ({key_type} {fingerprint}); not in {known_hosts}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::unknown_host),
        help("verify the fingerprint out of band (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the node), then add the key to known_hosts (`ssh-keyscan -p PORT HOST`) or set host_key_pin")
    )]
    UnknownHost {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: String,
    },

    /// The host presented another key than the one recorded.
    #[error("HOST KEY OF {host} HAS CHANGED: it presented {key_type} {fingerprint}, which does not match {known_hosts} line(s) {lines}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::host_key_changed),
        help("someone may be intercepting the connection; if the node was reinstalled, verify the new fingerprint out of band and replace the old known_hosts line(s)")
    )]
    HostKeyChanged {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: String,
        lines: String,
    },

    /// The host key is marked `@revoked`.
    #[error("host key of {host} ({fingerprint}) is revoked in {known_hosts} line {line}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::host_key_revoked),
        help("this key must not be trusted; give the node a new host key")
    )]
    HostKeyRevoked {
        host: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },

    /// The host key differs from `host_key_pin`.
    #[error(
        "host key of {host} ({key_type} {fingerprint}) does not match the pinned key {pinned}"
    )]
    #[diagnostic(
        code(mirrorplan::node::ssh::host_key_pin_mismatch),
        help("someone may be intercepting the connection; if the node's key really changed, update host_key_pin after verifying it out of band")
    )]
    HostKeyPinMismatch {
        host: String,
        key_type: String,
        fingerprint: String,
        pinned: String,
    },

    /// The server offered a host certificate.
    #[error("{host} presented a host certificate; only plain host keys are accepted")]
    #[diagnostic(
        code(mirrorplan::node::ssh::host_certificate),
        help("pin the host's plain key with host_key_pin or add it to known_hosts")
    )]
    HostCertificate { host: String },

    /// known_hosts exists but cannot be read.
    #[error("cannot read known_hosts {path}: {source}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::known_hosts),
        help("check the file's permissions")
    )]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The private key file cannot be used.
    #[error("cannot use private key {path}: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::private_key),
        help("give an OpenSSH or PEM private key file; an encrypted key needs its passphrase")
    )]
    PrivateKey { path: PathBuf, reason: String },

    /// Authentication was refused.
    #[error("authentication as {target} failed (tried: {tried})")]
    #[diagnostic(
        code(mirrorplan::node::ssh::auth),
        help("check that the key's public half is in the user's authorized_keys on the node, or that the agent holds it")
    )]
    Auth { target: String, tried: String },

    /// SSH agent failure.
    #[error("SSH agent: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::agent),
        help(
            "check SSH_AUTH_SOCK and that the agent runs (`ssh-add -l`), or set use_agent = false"
        )
    )]
    Agent { reason: String },

    /// SSH protocol error or lost connection.
    #[error("SSH session with {target}: {message}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::session),
        help("the connection failed or was closed; run again, and check the node's sshd log if it keeps happening")
    )]
    Session { target: String, message: String },

    /// A remote helper script or command failed.
    #[error("{operation} on {target} failed (exit {status}): {stderr}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::remote),
        help(
            "the message above is the node's stderr; check permissions and free space on the node"
        )
    )]
    Remote {
        target: String,
        operation: String,
        status: String,
        stderr: String,
    },

    /// `sudo -n` refused.
    #[error("sudo on {target} refused to run without a password: {stderr}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::sudo),
        help("give the user passwordless sudo (NOPASSWD) for the commands mirrorplan runs, or log in as root")
    )]
    Sudo { target: String, stderr: String },

    /// `direct-streamlocal` forwarding refused.
    #[error("cannot reach unix socket {socket} on {target}: {message}")]
    #[diagnostic(
        code(mirrorplan::node::ssh::streamlocal),
        help("sshd must allow it (`AllowStreamLocalForwarding yes`, no `DisableForwarding`), the socket must exist, and the login user must be able to open it (root for containerd)")
    )]
    StreamLocal {
        target: String,
        socket: String,
        message: String,
    },

    /// A non-root login has no way to reach a root-only unix socket.
    #[error("cannot reach unix socket {socket} on {target}: the login user is not root, so the socket is opened through `sudo -n` and a stdio-to-socket bridge, but the node has none of socat, python3 or an `nc` with -U")]
    #[diagnostic(
        code(mirrorplan::node::ssh::socket_bridge),
        help("install socat on the node (Debian/Ubuntu: `apt-get install socat`; RHEL/Fedora: `dnf install socat`) or python3, or log in as root")
    )]
    SocketBridge { target: String, socket: String },
}

impl From<SshError> for NodeError {
    fn from(e: SshError) -> Self {
        NodeError::Ssh(Box::new(e))
    }
}

/// Error type of the russh handler: russh's own errors, or our verdict on
/// the host key.
#[derive(Debug)]
enum HandlerError {
    Russh(russh::Error),
    HostKey(SshError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

/// How the host key is verified.
#[derive(Debug, Clone)]
enum HostKeyPolicy {
    KnownHosts(PathBuf),
    PinKey(Box<PublicKey>),
    PinFingerprint(String),
}

struct ClientHandler {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
}

impl ClientHandler {
    fn verify(&self, key: &PublicKeyOrCertificate) -> Result<(), SshError> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(SshError::HostCertificate {
                    host: self.display_host(),
                })
            }
        };
        let fp = fingerprint(key);
        let key_type = key.algorithm().to_string();
        match &self.policy {
            HostKeyPolicy::PinKey(pinned) => {
                if pinned.key_data() == key.key_data() {
                    Ok(())
                } else {
                    Err(SshError::HostKeyPinMismatch {
                        host: self.display_host(),
                        key_type,
                        fingerprint: fp,
                        pinned: fingerprint(pinned),
                    })
                }
            }
            HostKeyPolicy::PinFingerprint(pinned) => {
                if *pinned == fp {
                    Ok(())
                } else {
                    Err(SshError::HostKeyPinMismatch {
                        host: self.display_host(),
                        key_type,
                        fingerprint: fp,
                        pinned: pinned.clone(),
                    })
                }
            }
            HostKeyPolicy::KnownHosts(path) => {
                let contents = match std::fs::read_to_string(path) {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(source) => {
                        return Err(SshError::KnownHosts {
                            path: path.clone(),
                            source,
                        })
                    }
                };
                let kh = path.display().to_string();
                match known_hosts::check(&contents, &self.host, self.port, key) {
                    HostKeyCheck::Match => Ok(()),
                    HostKeyCheck::Unknown => Err(SshError::UnknownHost {
                        host: self.display_host(),
                        key_type,
                        fingerprint: fp,
                        known_hosts: kh,
                    }),
                    HostKeyCheck::Changed { lines } => Err(SshError::HostKeyChanged {
                        host: self.display_host(),
                        key_type,
                        fingerprint: fp,
                        known_hosts: kh,
                        lines: lines
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                    HostKeyCheck::Revoked { line } => Err(SshError::HostKeyRevoked {
                        host: self.display_host(),
                        fingerprint: fp,
                        known_hosts: kh,
                        line,
                    }),
                }
            }
        }
    }

    fn display_host(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.verify(server_public_key)
            .map_err(HandlerError::HostKey)?;
        Ok(true)
    }
}

struct Inner {
    handle: Handle<ClientHandler>,
    target: String,
    sudo: bool,
    timeout: Duration,
    sessions: tokio::sync::Semaphore,
}

/// A node reached over SSH. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct SshTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("target", &self.inner.target)
            .field("sudo", &self.inner.sudo)
            .finish_non_exhaustive()
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn parse_pin(target: &str, pin: &str) -> Result<HostKeyPolicy, SshError> {
    let pin = pin.trim();
    if pin.starts_with("SHA256:") {
        return Ok(HostKeyPolicy::PinFingerprint(pin.to_owned()));
    }
    PublicKey::from_openssh(pin)
        .map(|k| HostKeyPolicy::PinKey(Box::new(k)))
        .map_err(|e| SshError::Options {
            target: target.to_owned(),
            reason: format!(
                "host_key_pin must be `TYPE BASE64` (as in a .pub file) or `SHA256:…`: {e}"
            ),
        })
}

fn truncate_stderr(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.len() <= STDERR_LIMIT {
        return text.to_owned();
    }
    let mut end = STDERR_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

fn status_text(status: Option<i32>) -> String {
    status.map_or_else(|| "by signal".to_owned(), |s| s.to_string())
}

/// Node paths given to the file operations: absolute, no NUL byte.
fn check_path(path: &str) -> Result<()> {
    let bad = |reason: &str| NodeError::PathNotAllowed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(bad("it is not absolute"));
    }
    if path.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(bad("it contains `..` or `.`"));
    }
    if path.ends_with('/') {
        return Err(bad("it names a directory"));
    }
    Ok(())
}

/// `read_file`: `F` + contents, or `N` when missing.
const READ_SCRIPT: &str = r#"if [ -e "$1" ]; then printf F; exec cat -- "$1"; else printf N; fi"#;

/// `remove_file`: `R` when removed, `N` when missing.
const REMOVE_SCRIPT: &str =
    r#"if [ -e "$1" ] || [ -L "$1" ]; then rm -f -- "$1" && printf R; else printf N; fi"#;

/// `write_file_atomic`: $1 path, $2 octal mode, $3 expected byte count;
/// contents on stdin. The length check refuses a stdin cut short by a lost
/// connection, so a truncated file is never renamed into place.
const WRITE_SCRIPT: &str = r#"set -e
p=$1; m=$2; n=$3
if [ -d "$p" ]; then
  echo "$p is a directory; file left unchanged" >&2
  exit 3
fi
d=$(dirname -- "$p"); b=$(basename -- "$p")
mkdir -p -- "$d"
for s in "$d/.$b.mirrorplan-tmp."*; do
  if [ -f "$s" ]; then rm -f -- "$s"; fi
done
t=$(mktemp "$d/.$b.mirrorplan-tmp.XXXXXX")
trap 'rm -f -- "$t"' EXIT
cat > "$t"
got=$(wc -c < "$t" | tr -d ' ')
if [ "$got" != "$n" ]; then
  echo "received $got of $n bytes; file left unchanged" >&2
  exit 3
fi
chmod "$m" "$t"
sync -- "$t" 2>/dev/null || sync
mv -f -- "$t" "$p"
trap - EXIT
sync -- "$d" 2>/dev/null || true
"#;

/// The text of [`READ_MANY_SCRIPT`] (a macro, so that
/// [`READ_MANY_RUN_SCRIPT`] can include it).
macro_rules! read_many_script {
    () => {
        r#"set -e
for p do
  if [ -e "$p" ]; then
    n=$(wc -c < "$p")
    printf 'present %s\n' $n
    cat -- "$p"
  else
    printf 'missing\n'
  fi
done
printf 'end\n'
"#
    };
}

/// `read_files`: for each path argument, `present LEN\n` + contents or
/// `missing\n`; then `end\n`. A file changed between `wc` and `cat` gives
/// an inconsistent answer, which the client detects (then reads the files
/// one by one).
const READ_MANY_SCRIPT: &str = read_many_script!();

/// `write_files_atomic`: $1 a command line to run after the files are
/// written (empty: none), $2 total byte count, $3 the expected current
/// contents (empty: no check; else one word per file followed by a space:
/// `-` no check, `missing`, or the SHA-256 in hex), then one `PATH MODE
/// LEN` triple per file; the contents of every file, concatenated in that order,
/// on stdin. Stdin goes to a 0600 temporary file next to the first file
/// and its size is checked, and so is the sum of the lengths; then every
/// file gets its own temporary file next to it (0600 until `chmod`); their
/// total size is checked (each holds at most its length, so each holds
/// exactly that) and they are fsynced (one `sync` for all); only when all
/// of them are ready are they renamed into place, one by one, and their
/// directories fsynced. With expectations, right before the renames each
/// target is compared with its expectation (`sha256sum`); if any differs
/// the script prints `changed I J...` (0-based file indexes) and exits 4,
/// and without `sha256sum` it exits 5 before reading stdin. Any failure
/// before the renames removes every temporary file and leaves every
/// target unchanged. Then, if there is a command, it
/// runs with stdin from `/dev/null` and stdout folded into stderr, and the
/// script prints `written` and `ran STATUS` (see [`parse_written_ran`]).
const WRITE_MANY_SCRIPT: &str = r#"set -eC
umask 077
c=$1; n=$2; e=$3; g=$4; shift 4
if [ -n "$e" ] && ! command -v sha256sum >/dev/null 2>&1; then
  echo "mirrorplan: no sha256sum on the node; nothing written" >&2
  exit 5
fi
d=${1%/*}; d=${d:-/}
if [ ! -d "$d" ]; then mkdir -p -- "$d"; fi
for s in "$d/..mirrorplan-tmp."*; do
  if [ -f "$s" ]; then rm -f -- "$s"; fi
done
blob=$(mktemp "$d/..mirrorplan-tmp.XXXXXX")
x=${blob##*.}
clean() {
  rm -f -- "$blob"
  i=0
  for a do
    case $i in
      0) q=$a; i=1 ;;
      1) i=2 ;;
      *) i=0; rm -f -- "${q%/*}/.${q##*/}.mirrorplan-tmp.$x" ;;
    esac
  done
}
trap 'clean "$@"' EXIT
# each temps|dirs TRIPLES... -- COMMAND...: runs COMMAND with, appended,
# the temporary file (temps) or the parent directory (dirs) of every target
each() {
  w=$1; shift; i=0
  for a do
    if [ "$a" = "--" ]; then break; fi
    case $i in
      0) i=1
         if [ "$w" = temps ]; then set -- "$@" "${a%/*}/.${a##*/}.mirrorplan-tmp.$x"
         else q=${a%/*}; set -- "$@" "${q:-/}"; fi ;;
      1) i=2 ;;
      *) i=0 ;;
    esac
  done
  while [ "$1" != "--" ]; do shift; done
  shift
  "$@"
}
if [ -n "$g" ]; then head -c "$n" >| "$blob"; else cat >| "$blob"; fi
got=$(wc -c < "$blob")
if [ $got -ne $n ]; then
  echo "received $got of $n bytes; files left unchanged" >&2
  exit 3
fi
sum=0; i=0
for a do
  case $i in
    0) p=$a; i=1 ;;
    1) i=2 ;;
    *) i=0; sum=$((sum + a))
       if [ -d "$p" ]; then
         echo "$p is a directory; files left unchanged" >&2
         exit 3
       fi
       pd=${p%/*}; pd=${pd:-/}; b=${p##*/}
       if [ ! -d "$pd" ]; then mkdir -p -- "$pd"; fi
       for s in "$pd/.$b.mirrorplan-tmp."*; do
         if [ -f "$s" ] && [ "$s" != "$blob" ]; then rm -f -- "$s"; fi
       done ;;
  esac
done
if [ $sum -ne $n ]; then
  echo "the file lengths add up to $sum bytes, not $n; files left unchanged" >&2
  exit 3
fi
off=1; i=0
for a do
  case $i in
    0) p=$a; i=1 ;;
    1) m=$a; i=2 ;;
    *) i=0; l=$a
       t="${p%/*}/.${p##*/}.mirrorplan-tmp.$x"
       tail -c "+$off" "$blob" | head -c "$l" > "$t"
       chmod "$m" "$t"
       off=$((off + l)) ;;
  esac
done
got=$(each temps "$@" -- cat -- | wc -c)
if [ $got -ne $n ]; then
  echo "prepared $got of $n bytes; files left unchanged" >&2
  exit 3
fi
each temps "$@" -- sync -- 2>/dev/null || sync
if [ -n "$g" ]; then
  trap 'exit 6' HUP INT PIPE TERM
  printf 'ready\n'
  if ! IFS= read -r go || [ "$go" != go ]; then
    echo "not started; files left unchanged" >&2
    exit 6
  fi
fi
if [ -n "$e" ]; then
  bad=; k=0; i=0
  for a do
    case $i in
      0) p=$a; i=1 ;;
      1) i=2 ;;
      *) i=0; h=${e%% *}; e=${e#* }; ok=
         case $h in
           -) ok=1 ;;
           missing) if [ ! -e "$p" ] && [ ! -L "$p" ]; then ok=1; fi ;;
           *) if [ -e "$p" ] && g=$(sha256sum < "$p") && [ "${g%% *}" = "$h" ]; then ok=1; fi ;;
         esac
         if [ -z "$ok" ]; then bad="$bad $k"; fi
         k=$((k + 1)) ;;
    esac
  done
  if [ -n "$bad" ]; then
    printf 'changed%s\n' "$bad"
    exit 4
  fi
fi
i=0
for a do
  case $i in
    0) p=$a; i=1 ;;
    1) i=2 ;;
    *) i=0
       mv -f -- "${p%/*}/.${p##*/}.mirrorplan-tmp.$x" "$p" ;;
  esac
done
rm -f -- "$blob"
trap - EXIT
each dirs "$@" -- sync -- 2>/dev/null || true
if [ -n "$c" ]; then
  printf 'written\n'
  if sh -c "$c" </dev/null >&2; then s=0; else s=$?; fi
  printf 'ran %s\n' "$s"
fi
"#;

/// [`READ_MANY_SCRIPT`] (in a subshell), then a command: $1 the command
/// line, then the paths. After `end\n` come the command's stdout, `\n`,
/// `status N\n` (see [`parse_read_run`]).
const READ_MANY_RUN_SCRIPT: &str = concat!(
    "c=$1; shift\n(\n",
    read_many_script!(),
    r#")
r=$?; if [ $r -ne 0 ]; then exit $r; fi
if sh -c "$c" </dev/null; then s=0; else s=$?; fi
printf '\nstatus %s\n' "$s"
"#
);

/// The `$3` of [`WRITE_MANY_SCRIPT`]: per file `missing` or the SHA-256 of
/// its expected contents in hex, each followed by a space.
fn expectation_words(expected: &[Option<&[u8]>]) -> String {
    use sha2::Digest as _;
    let mut words = String::with_capacity(65 * expected.len());
    for e in expected {
        match e {
            None => words.push_str("missing"),
            Some(bytes) => {
                for b in sha2::Sha256::digest(bytes) {
                    words.push_str(&format!("{b:02x}"));
                }
            }
        }
        words.push(' ');
    }
    words
}

/// The `changed I J...` answer of [`WRITE_MANY_SCRIPT`]: the named files,
/// comma-separated; `None` when it is not well formed.
fn parse_changed(answer: &[u8], names: &[&str]) -> Option<String> {
    let line = std::str::from_utf8(answer).ok()?.strip_suffix('\n')?;
    let rest = line.strip_prefix("changed ")?;
    let mut out = Vec::new();
    for word in rest.split(' ') {
        let i: usize = word.parse().ok()?;
        out.push(*names.get(i)?);
    }
    Some(out.join(", "))
}

/// The answer of [`WRITE_MANY_SCRIPT`] with a command: `written\nran N\n`;
/// the command's exit status.
fn parse_written_ran(answer: &[u8]) -> Option<i32> {
    let rest = answer.strip_prefix(b"written\nran ")?;
    let status = rest.strip_suffix(b"\n")?;
    std::str::from_utf8(status).ok()?.parse().ok()
}

/// One file's contents, or `None` when missing.
type FileRead = Option<Vec<u8>>;

/// Parse the answer of [`READ_MANY_RUN_SCRIPT`] for `count` paths: the
/// files, the command's stdout and its exit status; `None` when it is not
/// well formed.
fn parse_read_run(answer: &[u8], count: usize) -> Option<(Vec<FileRead>, Vec<u8>, i32)> {
    let (files, rest) = parse_read_many_prefix(answer, count)?;
    let body = rest.strip_suffix(b"\n")?;
    let nl = body.iter().rposition(|&b| b == b'\n')?;
    let status = body.get(nl + 1..)?.strip_prefix(b"status ")?;
    let status: i32 = std::str::from_utf8(status).ok()?.parse().ok()?;
    Some((files, body.get(..nl)?.to_vec(), status))
}

/// Parse the answer of [`READ_MANY_SCRIPT`] for `count` paths; `None` when
/// it is not well formed.
fn parse_read_many(answer: &[u8], count: usize) -> Option<Vec<FileRead>> {
    let (files, rest) = parse_read_many_prefix(answer, count)?;
    rest.is_empty().then_some(files)
}

/// [`parse_read_many`] of the beginning of `answer`; the rest after `end\n`.
fn parse_read_many_prefix(answer: &[u8], count: usize) -> Option<(Vec<FileRead>, &[u8])> {
    let mut rest = answer;
    let mut files = Vec::with_capacity(count);
    for _ in 0..count {
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let line = rest.get(..nl)?;
        let after = rest.get(nl + 1..)?;
        if line == b"missing" {
            files.push(None);
            rest = after;
            continue;
        }
        let len = line.strip_prefix(b"present ")?;
        let len: usize = std::str::from_utf8(len).ok()?.trim().parse().ok()?;
        files.push(Some(after.get(..len)?.to_vec()));
        rest = after.get(len..)?;
    }
    Some((files, rest.strip_prefix(b"end\n")?))
}

impl SshTransport {
    /// Connect, check the host key, authenticate. The connection stays open
    /// until the last clone is dropped (or [`Self::close`]).
    pub async fn connect(opts: &SshOptions) -> Result<Self> {
        Ok(Self::connect_inner(opts).await?)
    }

    async fn connect_inner(opts: &SshOptions) -> Result<Self, SshError> {
        let target = opts.target();
        if opts.host.is_empty() || opts.user.is_empty() {
            return Err(SshError::Options {
                target,
                reason: "host and user must not be empty".to_owned(),
            });
        }
        let policy = match (&opts.host_key_pin, &opts.known_hosts) {
            (Some(pin), _) => parse_pin(&target, pin)?,
            (None, Some(path)) => HostKeyPolicy::KnownHosts(path.clone()),
            (None, None) => match home_dir() {
                Some(h) => HostKeyPolicy::KnownHosts(h.join(".ssh").join("known_hosts")),
                None => {
                    return Err(SshError::Options {
                        target,
                        reason: "no known_hosts given and HOME is not set".to_owned(),
                    })
                }
            },
        };
        let handler = ClientHandler {
            host: opts.host.clone(),
            port: opts.port,
            policy,
        };
        let timeout = opts.timeout;
        let setup = async {
            let tcp = tokio::net::TcpStream::connect((opts.host.as_str(), opts.port))
                .await
                .map_err(|source| SshError::Connect {
                    target: target.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let config = Arc::new(client::Config {
                inactivity_timeout: None,
                keepalive_interval: Some(Duration::from_secs(15)),
                keepalive_max: 4,
                ..client::Config::default()
            });
            let mut handle =
                client::connect_stream(config, tcp, handler)
                    .await
                    .map_err(|e| match e {
                        HandlerError::HostKey(e) => e,
                        HandlerError::Russh(e) => SshError::Session {
                            target: target.clone(),
                            message: format!("handshake failed: {e}"),
                        },
                    })?;
            authenticate(&mut handle, opts, &target).await?;
            Ok::<_, SshError>(handle)
        };
        let handle =
            tokio::time::timeout(timeout, setup)
                .await
                .map_err(|_| SshError::Timeout {
                    target: target.clone(),
                    what: "SSH connection setup",
                    after: timeout,
                })??;
        Ok(SshTransport {
            inner: Arc::new(Inner {
                handle,
                target,
                sudo: opts.uses_sudo(),
                timeout,
                sessions: tokio::sync::Semaphore::new(MAX_SESSIONS),
            }),
        })
    }

    /// `user@host:port`.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Whether commands run through `sudo -n --`.
    pub fn uses_sudo(&self) -> bool {
        self.inner.sudo
    }

    /// Disconnect politely (dropping the last clone also closes).
    pub async fn close(&self) {
        let _ = self
            .inner
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    fn session_err(&self, message: impl Into<String>) -> SshError {
        SshError::Session {
            target: self.inner.target.clone(),
            message: message.into(),
        }
    }

    /// The remote command line for `argv`, with `sudo -n --` if needed.
    fn command_line(&self, argv: &[&str]) -> String {
        let cmd = shell::join(argv);
        if self.inner.sudo {
            format!("sudo -n -- {cmd}")
        } else {
            cmd
        }
    }

    /// Run a fixed `sh` script with positional `args` (`$1`…), optional stdin.
    async fn run_script(
        &self,
        script: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, SshError> {
        let mut argv = vec!["sh", "-c", script, "sh"];
        argv.extend_from_slice(args);
        let started = std::time::Instant::now();
        let out = self.exec(&self.command_line(&argv), stdin).await;
        command_log::finished(
            &self.inner.target,
            script_name(script),
            stdin.map_or(0, <[u8]>::len),
            out.as_ref(),
            started.elapsed(),
        );
        out
    }

    /// Execute one remote command line on a new channel, feeding `stdin`
    /// (then EOF) while collecting stdout, stderr and the exit status.
    async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let _permit = self
            .inner
            .sessions
            .acquire()
            .await
            .map_err(|_| self.session_err("the transport is closing"))?;
        let channel = self.start_command(command).await?;
        let (mut reader, writer) = channel.split();
        let feed = async {
            if let Some(bytes) = stdin {
                writer.data(bytes).await?;
            }
            writer.eof().await
        };
        let collect = async {
            let mut out = Output::default();
            let mut exited = false;
            let mut refused = false;
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        out.status = Some(i32::try_from(exit_status).unwrap_or(i32::MAX));
                        exited = true;
                    }
                    ChannelMsg::ExitSignal { .. } => {
                        out.status = None;
                        exited = true;
                    }
                    ChannelMsg::Failure => refused = true,
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            (out, exited, refused)
        };
        // Stop feeding when the channel ends: when the connection is cut
        // mid-write, the window the sender waits for never opens, and
        // waiting for the feed would hang forever.
        tokio::pin!(feed);
        tokio::pin!(collect);
        let mut fed: Option<std::result::Result<(), russh::Error>> = None;
        let (out, exited, refused) = loop {
            tokio::select! {
                r = &mut feed, if fed.is_none() => fed = Some(r),
                c = &mut collect => break c,
            }
        };
        let fed = fed.unwrap_or(Err(russh::Error::SendError));
        if refused {
            return Err(self.session_err("the server refused to run the command"));
        }
        if !exited {
            return Err(self.session_err("the connection closed before the command finished"));
        }
        // A command that exits without reading all of stdin makes sending
        // fail; its exit status says what happened, so only report a send
        // error when the command itself succeeded.
        if let Err(e) = fed {
            if out.success() {
                return Err(self.session_err(format!("cannot send data: {e}")));
            }
        }
        if self.inner.sudo && out.status == Some(1) && out.stderr.starts_with(b"sudo:") {
            return Err(SshError::Sudo {
                target: self.inner.target.clone(),
                stderr: truncate_stderr(&out.stderr),
            });
        }
        Ok(out)
    }

    /// [`WRITE_MANY_SCRIPT`]: several files with one remote command, then
    /// `then` (a command line) if given: its output when it ran. With
    /// `expected` (one per file), nothing is written unless every file is
    /// still as expected right before the renames.
    async fn write_batch(
        &self,
        files: &[(&str, &[u8], u32)],
        then: Option<&str>,
        expected: Option<&[Option<&[u8]>]>,
    ) -> Result<Option<Output>> {
        let (args, stdin) = batch_args(files, then, expected, false)?;
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self
            .run_script(WRITE_MANY_SCRIPT, &argv, Some(&stdin))
            .await?;
        self.batch_outcome(files, then, expected.is_some(), out)
    }

    /// [`SshTransport::write_batch`] with a check (`expected`) and a
    /// command (`then`), in two steps: this one sends the files to
    /// temporary files on the node (one remote command, which then waits),
    /// [`PreparedWrite::commit`] has it check, rename and run `then`.
    /// Dropped without a commit, the command ends with nothing changed.
    /// A rollout prepares the next node while the one before is restarted
    /// and checked, and only the commit waits for its turn.
    pub async fn prepare_write(
        &self,
        files: &[(&str, &[u8], u32)],
        expected: &[Option<&[u8]>],
        then: &str,
    ) -> Result<PreparedWrite<'_>> {
        check_expectations(files, expected)?;
        if let Some(big) = files.iter().find(|f| f.1.len() > BATCH_FILE_LIMIT) {
            return Err(NodeError::CannotCheck {
                reason: format!("{} is larger than one batch", big.0),
            });
        }
        let (args, stdin) = batch_args(files, Some(then), Some(expected), true)?;
        let mut argv = vec!["sh", "-c", WRITE_MANY_SCRIPT, "sh"];
        argv.extend(args.iter().map(String::as_str));
        let permit = self
            .inner
            .sessions
            .acquire()
            .await
            .map_err(|_| self.session_err("the transport is closing"))?;
        let started = std::time::Instant::now();
        let channel = self.start_command(&self.command_line(&argv)).await?;
        let (mut reader, writer) = channel.split();
        writer
            .data(&stdin[..])
            .await
            .map_err(|e| self.session_err(format!("cannot send data: {e}")))?;
        let mut out = Output::default();
        let names: Vec<String> = files.iter().map(|f| f.0.to_owned()).collect();
        loop {
            if out.stdout == b"ready\n" {
                return Ok(PreparedWrite {
                    ssh: self,
                    _permit: permit,
                    reader,
                    writer,
                    out,
                    names,
                    then: then.to_owned(),
                    started,
                    stdin: stdin.len(),
                });
            }
            match reader.wait().await {
                Some(ChannelMsg::Data { data }) => out.stdout.extend_from_slice(&data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    out.stderr.extend_from_slice(&data)
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    out.status = Some(i32::try_from(exit_status).unwrap_or(i32::MAX));
                }
                Some(ChannelMsg::Failure) => {
                    return Err(self
                        .session_err("the server refused to run the command")
                        .into())
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
        // it ended before it was ready: what it said
        if out.status.is_none() {
            return Err(self
                .session_err("the connection closed before the command finished")
                .into());
        }
        let files: Vec<(&str, &[u8], u32)> = files.to_vec();
        match self.batch_outcome(&files, Some(then), true, out) {
            Err(e) => Err(e),
            Ok(_) => Err(self
                .session_err("the write ended before it was ready")
                .into()),
        }
    }

    /// What [`WRITE_MANY_SCRIPT`]'s output `out` means (see
    /// [`SshTransport::write_batch`]).
    fn batch_outcome(
        &self,
        files: &[(&str, &[u8], u32)],
        then: Option<&str>,
        checked: bool,
        out: Output,
    ) -> Result<Option<Output>> {
        let names: Vec<&str> = files.iter().map(|f| f.0).collect();
        if checked {
            if out.status == Some(4) {
                if let Some(changed) = parse_changed(&out.stdout, &names) {
                    return Err(NodeError::ChangedSinceRead { paths: changed });
                }
            }
            if out.status == Some(5) && out.stderr.starts_with(b"mirrorplan: no sha256sum") {
                return Err(NodeError::CannotCheck {
                    reason: format!("{}: no `sha256sum` on the node", self.inner.target),
                });
            }
        }
        if !out.success() {
            let what = format!("writing {}", names.join(", "));
            return Err(self.remote_err(what, &out).into());
        }
        let Some(then) = then else {
            return Ok(None);
        };
        match parse_written_ran(&out.stdout) {
            Some(status) => Ok(Some(Output {
                status: Some(status),
                stdout: Vec::new(),
                stderr: out.stderr,
            })),
            None => Err(self
                .session_err(format!(
                    "unexpected answer while writing {} and running `{then}`",
                    names.join(", ")
                ))
                .into()),
        }
    }
}

/// A write that [`SshTransport::prepare_write`] made ready: its files are
/// in temporary files on the node, nothing is renamed yet.
pub struct PreparedWrite<'a> {
    ssh: &'a SshTransport,
    _permit: tokio::sync::SemaphorePermit<'a>,
    reader: russh::ChannelReadHalf,
    writer: russh::ChannelWriteHalf<client::Msg>,
    out: Output,
    names: Vec<String>,
    then: String,
    /// For the debug log: when the remote command started, its stdin size.
    started: std::time::Instant,
    stdin: usize,
}

impl PreparedWrite<'_> {
    /// Ends the remote command without a change (its temporary files are
    /// removed). Dropping it without this ends it with the connection.
    pub async fn abort(mut self) {
        if self.writer.eof().await.is_ok() {
            // its end: the script removes its temporary files first
            while let Some(msg) = self.reader.wait().await {
                if matches!(msg, ChannelMsg::Close) {
                    break;
                }
            }
        }
        let _ = self.writer.close().await;
    }

    /// Check that every file is still as expected, rename, run the command:
    /// its output, as [`Transport::write_files_if_unchanged`] gives it.
    pub async fn commit(mut self) -> Result<Option<Output>> {
        let ssh = self.ssh;
        let sent = match self.writer.data(&b"go\n"[..]).await {
            Ok(()) => self.writer.eof().await,
            Err(e) => Err(e),
        };
        self.out.stdout.clear(); // the `ready` line
        let mut exited = false;
        while let Some(msg) = self.reader.wait().await {
            match msg {
                ChannelMsg::Data { data } => self.out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    self.out.stderr.extend_from_slice(&data)
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    self.out.status = Some(i32::try_from(exit_status).unwrap_or(i32::MAX));
                    exited = true;
                }
                ChannelMsg::ExitSignal { .. } => {
                    self.out.status = None;
                    exited = true;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        if !exited {
            let why = match sent {
                Err(e) => format!("cannot send data: {e}"),
                Ok(()) => "the connection closed before the command finished".to_owned(),
            };
            return Err(ssh.session_err(why).into());
        }
        command_log::finished::<SshError>(
            &ssh.inner.target,
            script_name(WRITE_MANY_SCRIPT),
            self.stdin,
            Ok(&self.out),
            self.started.elapsed(),
        );
        let files: Vec<(&str, &[u8], u32)> = self
            .names
            .iter()
            .map(|n| (n.as_str(), &[][..], 0))
            .collect();
        ssh.batch_outcome(&files, Some(&self.then), true, self.out)
    }
}

/// `files` as [`WRITE_MANY_SCRIPT`]'s arguments and stdin; `gate`: the
/// script waits for `go` before its check and renames.
fn batch_args(
    files: &[(&str, &[u8], u32)],
    then: Option<&str>,
    expected: Option<&[Option<&[u8]>]>,
    gate: bool,
) -> Result<(Vec<String>, Vec<u8>)> {
    {
        let mut seen = std::collections::BTreeSet::new();
        let mut args: Vec<String> = Vec::with_capacity(3 + 3 * files.len());
        let mut stdin = Vec::with_capacity(files.iter().map(|f| f.1.len()).sum());
        args.push(then.unwrap_or_default().to_owned());
        args.push(String::new());
        args.push(expected.map(expectation_words).unwrap_or_default());
        args.push(if gate { "1" } else { "" }.to_owned());
        for &(path, bytes, mode) in files {
            check_path(path)?;
            if !seen.insert(path) {
                return Err(NodeError::PathNotAllowed {
                    path: path.to_owned(),
                    reason: "it is written twice in one batch".to_owned(),
                });
            }
            args.push(path.to_owned());
            args.push(format!("{:04o}", mode & 0o7777));
            args.push(bytes.len().to_string());
            stdin.extend_from_slice(bytes);
        }
        if let Some(total) = args.get_mut(1) {
            *total = stdin.len().to_string();
        }
        Ok((args, stdin))
    }
}

impl SshTransport {
    fn remote_err(&self, operation: String, out: &Output) -> SshError {
        SshError::Remote {
            target: self.inner.target.clone(),
            operation,
            status: status_text(out.status),
            stderr: truncate_stderr(&out.stderr),
        }
    }

    /// Open a `direct-streamlocal@openssh.com` channel to the unix socket
    /// `socket_path` on the node: a byte stream to whatever listens there.
    pub async fn open_unix_socket(&self, socket_path: &str) -> Result<ChannelStream<client::Msg>> {
        Ok(self.open_streamlocal(socket_path).await?)
    }

    /// Run `argv` (through `sudo -n --` when the transport uses sudo) on a
    /// new channel and use its stdin and stdout as a byte stream (stderr
    /// and the exit status are dropped): the way to a socket only root may
    /// open, through a bridge such as `socat - UNIX-CONNECT:PATH`.
    pub(crate) async fn open_command_stream(
        &self,
        argv: &[&str],
    ) -> Result<ChannelStream<client::Msg>, SshError> {
        let channel = self.start_command(&self.command_line(argv)).await;
        tracing::debug!(
            target: command_log::TARGET,
            node = %self.inner.target,
            command = %argv.first().map_or_else(String::new, |a| command_log::program(a)),
            ok = channel.is_ok(),
            "command stream opened"
        );
        Ok(channel?.into_stream())
    }

    /// A new session channel (within the transport's timeout) running the
    /// remote command line `command`.
    async fn start_command(&self, command: &str) -> Result<russh::Channel<client::Msg>, SshError> {
        let timeout = self.inner.timeout;
        let channel = tokio::time::timeout(timeout, self.inner.handle.channel_open_session())
            .await
            .map_err(|_| SshError::Timeout {
                target: self.inner.target.clone(),
                what: "opening an SSH channel",
                after: timeout,
            })?
            .map_err(|e| self.session_err(format!("cannot open a channel: {e}")))?;
        channel
            .exec(true, command.as_bytes())
            .await
            .map_err(|e| self.session_err(format!("cannot start a command: {e}")))?;
        Ok(channel)
    }

    pub(crate) async fn open_streamlocal(
        &self,
        socket_path: &str,
    ) -> Result<ChannelStream<client::Msg>, SshError> {
        let timeout = self.inner.timeout;
        let err = |message: String| SshError::StreamLocal {
            target: self.inner.target.clone(),
            socket: socket_path.to_owned(),
            message,
        };
        let channel = tokio::time::timeout(
            timeout,
            self.inner
                .handle
                .channel_open_direct_streamlocal(socket_path),
        )
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?
        .map_err(|e| err(e.to_string()))?;
        Ok(channel.into_stream())
    }
}

/// Public-key authentication: the configured key file, then the agent,
/// then the default key files.
async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    opts: &SshOptions,
    target: &str,
) -> Result<(), SshError> {
    let session_err = |e: russh::Error| SshError::Session {
        target: target.to_owned(),
        message: format!("authentication failed: {e}"),
    };
    let mut tried: Vec<String> = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(session_err)?
        .flatten();

    if let Some(path) = &opts.private_key {
        let key = load_key(path, opts.passphrase.as_ref())?;
        tried.push(format!("key {}", path.display()));
        let res = handle
            .authenticate_publickey(
                opts.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash),
            )
            .await
            .map_err(session_err)?;
        if res.success() {
            return Ok(());
        }
    }

    if opts.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()) {
        let mut agent = AgentClient::connect_env()
            .await
            .map_err(|e| SshError::Agent {
                reason: format!("cannot connect: {e}"),
            })?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| SshError::Agent {
                reason: format!("cannot list keys: {e}"),
            })?;
        for id in identities {
            let AgentIdentity::PublicKey { key, .. } = id else {
                continue;
            };
            tried.push(format!("agent key {}", fingerprint(&key)));
            match handle
                .authenticate_publickey_with(opts.user.clone(), key, rsa_hash, &mut agent)
                .await
            {
                Ok(res) if res.success() => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(SshError::Agent {
                        reason: format!("signing failed: {e}"),
                    })
                }
            }
        }
    }

    if opts.private_key.is_none() {
        if let Some(home) = home_dir() {
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let path = home.join(".ssh").join(name);
                if !path.is_file() {
                    continue;
                }
                // Default keys that cannot be opened are skipped, like ssh.
                let Ok(key) = load_key(&path, opts.passphrase.as_ref()) else {
                    continue;
                };
                tried.push(format!("key {}", path.display()));
                let res = handle
                    .authenticate_publickey(
                        opts.user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash),
                    )
                    .await
                    .map_err(session_err)?;
                if res.success() {
                    return Ok(());
                }
            }
        }
    }

    Err(SshError::Auth {
        target: target.to_owned(),
        tried: if tried.is_empty() {
            "nothing: no private key given, no agent keys, no ~/.ssh/id_* file".to_owned()
        } else {
            tried.join(", ")
        },
    })
}

fn load_key(path: &Path, passphrase: Option<&Secret>) -> Result<russh::keys::PrivateKey, SshError> {
    russh::keys::load_secret_key(path, passphrase.map(Secret::expose)).map_err(|e| {
        let reason = match e {
            russh::keys::Error::KeyIsEncrypted => {
                "it is encrypted and no passphrase was given".to_owned()
            }
            russh::keys::Error::IO(io) => io.to_string(),
            other if passphrase.is_some() => {
                format!("wrong passphrase or unreadable key ({other})")
            }
            other => other.to_string(),
        };
        SshError::PrivateKey {
            path: path.to_owned(),
            reason,
        }
    })
}

#[async_trait]
impl Transport for SshTransport {
    fn describe(&self) -> String {
        format!("ssh:{}", self.inner.target)
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        check_path(path)?;
        let out = self.run_script(READ_SCRIPT, &[path], None).await?;
        if !out.success() {
            return Err(self.remote_err(format!("reading {path}"), &out).into());
        }
        match out.stdout.split_first() {
            Some((b'F', rest)) => Ok(Some(rest.to_vec())),
            Some((b'N', [])) => Ok(None),
            _ => Err(self
                .session_err(format!("unexpected answer while reading {path}"))
                .into()),
        }
    }

    async fn write_file_atomic(&self, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
        check_path(path)?;
        let mode_s = format!("{:04o}", mode & 0o7777);
        let len = bytes.len().to_string();
        let out = self
            .run_script(WRITE_SCRIPT, &[path, &mode_s, &len], Some(bytes))
            .await?;
        if !out.success() {
            return Err(self.remote_err(format!("writing {path}"), &out).into());
        }
        Ok(())
    }

    async fn read_files(&self, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        match paths {
            [] => return Ok(Vec::new()),
            [one] => return Ok(vec![self.read_file(one).await?]),
            _ => {}
        }
        for path in paths {
            check_path(path)?;
        }
        let out = self.run_script(READ_MANY_SCRIPT, paths, None).await?;
        if !out.success() {
            let what = format!("reading {}", paths.join(", "));
            return Err(self.remote_err(what, &out).into());
        }
        if let Some(files) = parse_read_many(&out.stdout, paths.len()) {
            return Ok(files);
        }
        // a file changed while it was read: read them one by one
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            files.push(self.read_file(path).await?);
        }
        Ok(files)
    }

    async fn write_files_atomic(&self, files: &[(&str, &[u8], u32)]) -> Result<()> {
        // large files are streamed one by one: batching them saves nothing
        // and would hold them all in memory and twice on the node's disk
        let (large, files): (Vec<_>, Vec<_>) = files
            .iter()
            .copied()
            .partition(|(_, bytes, _)| bytes.len() > BATCH_FILE_LIMIT);
        match files.as_slice() {
            [] => {}
            [(path, bytes, mode)] => self.write_file_atomic(path, bytes, *mode).await?,
            _ => {
                self.write_batch(&files, None, None).await?;
            }
        }
        for (path, bytes, mode) in large {
            self.write_file_atomic(path, bytes, mode).await?;
        }
        Ok(())
    }

    async fn read_files_and_run(
        &self,
        paths: &[&str],
        argv: &[&str],
    ) -> Result<(Vec<FileRead>, Result<Output>)> {
        if argv.is_empty() {
            return Err(NodeError::EmptyCommand);
        }
        for path in paths {
            check_path(path)?;
        }
        let command = shell::join(argv);
        let mut args = vec![command.as_str()];
        args.extend_from_slice(paths);
        let out = self.run_script(READ_MANY_RUN_SCRIPT, &args, None).await?;
        if !out.success() {
            let what = format!("reading {}", paths.join(", "));
            return Err(self.remote_err(what, &out).into());
        }
        if let Some((files, stdout, status)) = parse_read_run(&out.stdout, paths.len()) {
            let ran = Output {
                status: Some(status),
                stdout,
                stderr: out.stderr,
            };
            return Ok((files, Ok(ran)));
        }
        // a file changed while it was read: one by one, and the command again
        let files = self.read_files(paths).await?;
        Ok((files, self.run(argv).await))
    }

    async fn write_files_then_run(
        &self,
        files: &[(&str, &[u8], u32)],
        argv: &[&str],
    ) -> Result<Output> {
        if argv.is_empty() {
            return Err(NodeError::EmptyCommand);
        }
        if files.is_empty() || files.iter().any(|f| f.1.len() > BATCH_FILE_LIMIT) {
            self.write_files_atomic(files).await?;
            return self.run(argv).await;
        }
        let command = shell::join(argv);
        match self.write_batch(files, Some(&command), None).await? {
            Some(out) => Ok(out),
            None => Err(self.session_err(format!("`{command}` did not run")).into()),
        }
    }

    async fn write_files_if_unchanged(
        &self,
        files: &[(&str, &[u8], u32)],
        expected: &[Option<&[u8]>],
        argv: Option<&[&str]>,
    ) -> Result<Option<Output>> {
        check_expectations(files, expected)?;
        if argv.is_some_and(<[&str]>::is_empty) {
            return Err(NodeError::EmptyCommand);
        }
        if files.is_empty() {
            return match argv {
                Some(argv) => Ok(Some(self.run(argv).await?)),
                None => Ok(None),
            };
        }
        if let Some(big) = files.iter().find(|f| f.1.len() > BATCH_FILE_LIMIT) {
            return Err(NodeError::CannotCheck {
                reason: format!("{} is larger than one batch", big.0),
            });
        }
        let command = argv.map(shell::join);
        let out = self
            .write_batch(files, command.as_deref(), Some(expected))
            .await?;
        match (out, command) {
            (Some(out), Some(_)) => Ok(Some(out)),
            (None, None) => Ok(None),
            (_, command) => Err(self
                .session_err(format!(
                    "`{}` did not run as asked",
                    command.unwrap_or_default()
                ))
                .into()),
        }
    }

    async fn remove_file(&self, path: &str) -> Result<bool> {
        check_path(path)?;
        let out = self.run_script(REMOVE_SCRIPT, &[path], None).await?;
        if !out.success() {
            return Err(self.remote_err(format!("removing {path}"), &out).into());
        }
        match out.stdout.as_slice() {
            b"R" => Ok(true),
            b"N" => Ok(false),
            _ => Err(self
                .session_err(format!("unexpected answer while removing {path}"))
                .into()),
        }
    }

    async fn run(&self, argv: &[&str]) -> Result<Output> {
        if argv.is_empty() {
            return Err(NodeError::EmptyCommand);
        }
        let started = std::time::Instant::now();
        let out = self.exec(&self.command_line(argv), None).await;
        command_log::finished(
            &self.inner.target,
            &command_log::program(argv[0]),
            0,
            out.as_ref(),
            started.elapsed(),
        );
        Ok(out?)
    }
}

/// The name a fixed script is logged under (see [`command_log`]).
fn script_name(script: &str) -> &'static str {
    [
        (READ_SCRIPT, "read-file"),
        (REMOVE_SCRIPT, "remove-file"),
        (WRITE_SCRIPT, "write-file"),
        (READ_MANY_SCRIPT, "read-files"),
        (WRITE_MANY_SCRIPT, "write-files"),
        (READ_MANY_RUN_SCRIPT, "read-files-and-run"),
    ]
    .iter()
    .find(|(s, _)| *s == script)
    .map_or("script", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_is_automatic_for_non_root() {
        let mut o = SshOptions::new("127.0.0.1");
        assert!(!o.uses_sudo());
        o.user = "deploy".into();
        assert!(o.uses_sudo());
        o.sudo = Some(false);
        assert!(!o.uses_sudo());
        assert_eq!(o.target(), "deploy@127.0.0.1:22");
    }

    /// A checked write on a node without `sha256sum`: exit 5 before
    /// anything is created (the client then reads and writes unchecked).
    #[test]
    fn checked_write_without_sha256sum_touches_nothing() -> Result<(), Box<dyn std::error::Error>> {
        use std::io::Write as _;
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a");
        std::fs::write(&a, "old")?;
        let a_s = a.to_str().ok_or("non-UTF-8 temp path")?;
        let e = expectation_words(&[Some(b"old")]);
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", WRITE_MANY_SCRIPT, "sh", "", "3", &e, a_s, "0644", "3"])
            .env("PATH", dir.path().join("empty"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"new");
        }
        let out = child.wait_with_output()?;
        assert_eq!(out.status.code(), Some(5), "{out:?}");
        assert!(
            out.stderr.starts_with(b"mirrorplan: no sha256sum"),
            "{out:?}"
        );
        assert_eq!(std::fs::read_to_string(&a)?, "old");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn expectations_and_changed_answers() {
        let words = expectation_words(&[None, Some(b"abc")]);
        assert_eq!(
            words,
            "missing ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad "
        );
        let names = ["/a", "/b c", "/d"];
        assert_eq!(
            parse_changed(b"changed 0 2\n", &names).as_deref(),
            Some("/a, /d")
        );
        assert_eq!(parse_changed(b"changed 3\n", &names), None);
        assert_eq!(parse_changed(b"changed x\n", &names), None);
        assert_eq!(parse_changed(b"written\n", &names), None);
    }

    #[test]
    fn passphrase_never_in_debug() {
        let mut o = SshOptions::new("h");
        o.passphrase = Some(Secret::new("hunter2"));
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn stderr_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(STDERR_LIMIT);
        let t = truncate_stderr(long.as_bytes());
        assert!(t.len() < STDERR_LIMIT + 40, "{}", t.len());
        assert!(t.ends_with(&format!("({} bytes in all)", long.len())));
        assert_eq!(truncate_stderr(b"  short\n"), "short");
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path("/etc/containerd/config.toml").is_ok());
        for bad in ["etc/x", "/etc/../x", "/etc/./x", "/etc/", "/a\0b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pins_parse() {
        let pin =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM3/X8jS/bw0dwJkzoc3CaOZVZ99LEBcNCUtjShujR5R c";
        assert!(matches!(parse_pin("t", pin), Ok(HostKeyPolicy::PinKey(_))));
        assert!(matches!(
            parse_pin("t", "SHA256:abc"),
            Ok(HostKeyPolicy::PinFingerprint(_))
        ));
        let err = parse_pin("t", "not a key").map(|_| ()).err();
        assert!(
            matches!(&err, Some(SshError::Options { reason, .. }) if reason.contains("host_key_pin")),
            "{err:?}"
        );
    }

    /// A stdin cut short (lost connection) must not replace the file.
    #[test]
    fn write_script_refuses_short_input() -> Result<(), Box<dyn std::error::Error>> {
        use std::io::Write as _;
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("f.toml");
        std::fs::write(&target, "old")?;
        let path = target.to_str().ok_or("non-UTF-8 temp dir")?;
        let run = |input: &[u8], len: &str| -> std::io::Result<std::process::Output> {
            let mut child = std::process::Command::new("/bin/sh")
                .args(["-c", WRITE_SCRIPT, "sh", path, "0640", len])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(input)?;
            }
            child.wait_with_output()
        };
        let out = run(b"new cont", "11")?;
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stderr).contains("received 8 of 11 bytes"));
        assert_eq!(std::fs::read_to_string(&target)?, "old");
        // the temp file was removed by the EXIT trap
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        let out = run(b"new content", "11")?;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read_to_string(&target)?, "new content");
        Ok(())
    }

    fn run_sh(script: &str, args: &[&str], input: &[u8]) -> std::io::Result<std::process::Output> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            // the script may exit early: a broken pipe is part of the test
            let _ = stdin.write_all(input);
        }
        child.wait_with_output()
    }

    #[test]
    fn read_many_script_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a b.toml");
        let c = dir.path().join("c");
        std::fs::write(&a, "present 3\nend\n")?;
        std::fs::write(&c, b"\x00\xffbin")?;
        let a = a.to_str().ok_or("non-UTF-8")?;
        let c = c.to_str().ok_or("non-UTF-8")?;
        let missing = dir.path().join("nope");
        let missing = missing.to_str().ok_or("non-UTF-8")?;
        let out = run_sh(READ_MANY_SCRIPT, &[a, missing, c], b"")?;
        assert!(out.status.success(), "{out:?}");
        let files = parse_read_many(&out.stdout, 3).ok_or("unparsable")?;
        assert_eq!(
            files,
            vec![
                Some(b"present 3\nend\n".to_vec()),
                None,
                Some(b"\x00\xffbin".to_vec())
            ]
        );
        Ok(())
    }

    #[test]
    fn read_many_answers_are_checked() {
        assert_eq!(parse_read_many(b"end\n", 0), Some(vec![]));
        assert_eq!(parse_read_many(b"missing\nend\n", 1), Some(vec![None]));
        for bad in [
            &b""[..],
            b"missing\n",
            b"present 5\nabcend\n",
            b"present 2\nabcend\n",
            b"present x\nab\nend\n",
            b"present 99999999999999999999999\n",
            b"missing\nend\nextra",
        ] {
            assert_eq!(parse_read_many(bad, 1), None, "{bad:?}");
        }
    }

    #[test]
    fn write_many_script_is_all_or_nothing() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a.toml");
        let b = dir.path().join("sub dir").join("b 'x'.crt");
        std::fs::write(&a, "old")?;
        let a_s = a.to_str().ok_or("non-UTF-8")?;
        let b_s = b.to_str().ok_or("non-UTF-8")?;
        let args = |total: &'static str| ["", total, "", "", a_s, "0644", "3", b_s, "0600", "5"];
        // stdin cut short: nothing changes, no temporary file is left
        let out = run_sh(WRITE_MANY_SCRIPT, &args("8"), b"newbb")?;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("received 5 of 8 bytes"));
        assert_eq!(std::fs::read_to_string(&a)?, "old");
        assert!(!b.exists());
        // the lengths add up to more than was sent: nothing is renamed
        let short = ["", "8", "", "", a_s, "0644", "3", b_s, "0600", "6"];
        let out = run_sh(WRITE_MANY_SCRIPT, &short, b"newbbbbb")?;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("add up to 9 bytes, not 8"));
        assert_eq!(std::fs::read_to_string(&a)?, "old");
        assert!(!b.exists());
        assert_eq!(
            std::fs::read_dir(dir.path())?.count(),
            2,
            "temporary files left"
        );
        // a good batch
        let out = run_sh(WRITE_MANY_SCRIPT, &args("8"), b"newbbbbb")?;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read_to_string(&a)?, "new");
        assert_eq!(std::fs::read_to_string(&b)?, "bbbbb");
        assert_eq!(std::fs::metadata(&a)?.permissions().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::metadata(&b)?.permissions().mode() & 0o7777, 0o600);
        // only the targets are left
        let mut names: Vec<String> = std::fs::read_dir(dir.path())?
            .chain(std::fs::read_dir(b.parent().ok_or("no parent")?)?)
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        assert_eq!(names, ["a.toml", "b 'x'.crt", "sub dir"]);
        assert!(out.stdout.is_empty(), "{out:?}");
        Ok(())
    }

    /// A target that is a directory is refused (`mv` would otherwise move
    /// the file into it), before anything is renamed.
    #[test]
    fn write_scripts_refuse_a_directory_target() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a.toml");
        let d = dir.path().join("hosts.toml");
        std::fs::write(&a, "old")?;
        std::fs::create_dir(&d)?;
        let a_s = a.to_str().ok_or("non-UTF-8")?;
        let d_s = d.to_str().ok_or("non-UTF-8")?;
        let args = ["", "5", "", "", a_s, "0644", "3", d_s, "0600", "2"];
        let out = run_sh(WRITE_MANY_SCRIPT, &args, b"newxx")?;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
        assert_eq!(std::fs::read_to_string(&a)?, "old");
        assert_eq!(
            std::fs::read_dir(&d)?.count(),
            0,
            "a file was moved into the directory"
        );
        let out = run_sh(WRITE_SCRIPT, &[d_s, "0600", "2"], b"xx")?;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
        assert_eq!(
            std::fs::read_dir(&d)?.count(),
            0,
            "a file was moved into the directory"
        );
        // nothing but the two targets is left
        assert_eq!(
            std::fs::read_dir(dir.path())?.count(),
            2,
            "temporary files left"
        );
        Ok(())
    }

    /// With a command: it runs only after every file is in place, its
    /// stdout goes to stderr, and its status is reported, not the script's.
    #[test]
    fn write_many_then_run() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a.toml");
        let b = dir.path().join("d").join("b");
        let a_s = a.to_str().ok_or("non-UTF-8")?;
        let b_s = b.to_str().ok_or("non-UTF-8")?;
        // the command sees both files
        let cmd = shell::join(&["sh", "-c", "cat \"$0\" \"$1\"; exit 7", a_s, b_s]);
        let args = [
            cmd.as_str(),
            "5",
            "",
            "",
            a_s,
            "0644",
            "2",
            b_s,
            "0600",
            "3",
        ];
        let out = run_sh(WRITE_MANY_SCRIPT, &args, b"aabbb")?;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(parse_written_ran(&out.stdout), Some(7), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "aabbb");
        // a failed write: the command does not run
        let marker = dir.path().join("ran");
        let m_s = marker.to_str().ok_or("non-UTF-8")?;
        let cmd = shell::join(&["touch", m_s]);
        let args = [
            cmd.as_str(),
            "6",
            "",
            "",
            a_s,
            "0644",
            "2",
            b_s,
            "0600",
            "3",
        ];
        let out = run_sh(WRITE_MANY_SCRIPT, &args, b"xxyyy")?;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(!marker.exists());
        assert_eq!(std::fs::read_to_string(&a)?, "aa");
        for bad in [&b""[..], b"written\n", b"written\nran x\n", b"ran 0\n"] {
            assert_eq!(parse_written_ran(bad), None, "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn read_many_then_run() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a");
        std::fs::write(&a, "status 0\nend\n")?;
        let a_s = a.to_str().ok_or("non-UTF-8")?;
        let missing = dir.path().join("nope");
        let m_s = missing.to_str().ok_or("non-UTF-8")?;
        let cmd = shell::join(&["sh", "-c", "printf 'v1.7\\nstatus 9\\n'; exit 4"]);
        let out = run_sh(READ_MANY_RUN_SCRIPT, &[cmd.as_str(), a_s, m_s], b"")?;
        assert!(out.status.success(), "{out:?}");
        let (files, stdout, status) = parse_read_run(&out.stdout, 2).ok_or("unparsable")?;
        assert_eq!(files, vec![Some(b"status 0\nend\n".to_vec()), None]);
        assert_eq!(stdout, b"v1.7\nstatus 9\n");
        assert_eq!(status, 4);
        // a command that is missing: the files are still read
        let cmd = shell::join(&["/nonexistent/containerd", "--version"]);
        let out = run_sh(READ_MANY_RUN_SCRIPT, &[cmd.as_str(), a_s], b"")?;
        let (files, _, status) = parse_read_run(&out.stdout, 1).ok_or("unparsable")?;
        assert_eq!(files.len(), 1);
        assert_eq!(status, 127);
        // an unreadable path fails the script before the command runs
        let out = run_sh(
            READ_MANY_RUN_SCRIPT,
            &[cmd.as_str(), dir.path().to_str().ok_or("x")?],
            b"",
        )?;
        assert!(!out.status.success(), "{out:?}");
        for bad in [&b"end\n"[..], b"end\nstatus 0\n", b"end\n\nstatus x\n"] {
            assert_eq!(parse_read_run(bad, 0).map(|r| r.2), None, "{bad:?}");
        }
        assert_eq!(
            parse_read_run(b"end\n\nstatus 0\n", 0).map(|r| r.2),
            Some(0)
        );
        Ok(())
    }

    /// The scripts are fixed text: they must parse with /bin/sh.
    #[test]
    fn scripts_parse() -> std::io::Result<()> {
        for script in [
            READ_SCRIPT,
            REMOVE_SCRIPT,
            WRITE_SCRIPT,
            READ_MANY_SCRIPT,
            READ_MANY_RUN_SCRIPT,
            WRITE_MANY_SCRIPT,
        ] {
            let st = std::process::Command::new("/bin/sh")
                .args(["-n", "-c", script])
                .status()?;
            assert!(st.success(), "{script}");
        }
        assert!(WRITE_SCRIPT.contains(TEMP_MARKER));
        Ok(())
    }
}
