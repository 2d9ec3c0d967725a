//! Test harness for mirrorplan: starts REAL services on loopback for
//! integration tests and stops them on drop.
//!
//! | type | what runs | on drop |
//! | --- | --- | --- |
//! | [`Registry`] | `docker-registry serve` (CNCF distribution 2.8) on `127.0.0.1:<free port>`, optional TLS (generated CA) and htpasswd auth | process group killed, temp dir removed |
//! | [`Sshd`] | OpenSSH `sshd -D` on a free port, ed25519 keys, key-only root login | same |
//! | [`Containerd`] | containerd with its own root/state/socket/config and an empty `certs.d`, in private mount + PID namespaces | the namespaces' PID 1 exits, the kernel kills everything inside (shims, containers) |
//! | [`Node`] | containerd + sshd in private mount + PID namespaces with the node's own `/etc/containerd` and `/run/containerd`; sshd on its own `127.A.B.C` | same |
//! | [`Postgres`] | Debian's PostgreSQL (`initdb` + `postgres`, as the `postgres` OS user under root) on `127.0.0.1:<free port>`, SCRAM password login, optional TLS | process group stopped, temp dir removed |
//!
//! Everything needs root and the Debian packages installed by
//! `.ci/install-deps.sh`; a missing program is reported as
//! [`HarnessError::MissingBinary`] with the package name, never a panic.
//! Ports and temp dirs are unique per service, so tests may run in
//! parallel. No network namespace is created: all addresses are in
//! 127.0.0.0/8.
//!
//! ## Main entry points
//! * [`Registry::start`]`(`[`RegistryOptions`]`)`: `addr()`, `url()`,
//!   `host_port()`, `ca_cert_path()`, `certs_dir()` (for skopeo),
//!   `credentials()`, `docker_config_json()` / [`docker_config_json`],
//!   `storage_dir()`, `log_path()` (access log), `v2_status(with_creds)`,
//!   `stop()` and `start_again()` (same port and storage: for "registry went
//!   away mid-push" tests). TLS material comes from [`TestPki`].
//! * [`Sshd::start`]`(`[`SshdOptions`]`)`: `port()`, `client_key_path()`,
//!   `known_hosts_path()`, `host_public_key()`, and [`SshEndpoint`]
//!   (`endpoint()`) with `command(remote)` / `run(remote)` / `ssh_config_path()`.
//! * [`Containerd::start`]`(`[`ContainerdOptions`]`)`: `socket_path()`,
//!   `address()`, `config_path()`, `certs_dir()`, `version()`, `ctr()`,
//!   `restart()`, `log_path()`.
//! * [`Node::start`]`(`[`NodeOptions`]`)`: `ssh_addr()`, `ssh()`,
//!   `ssh_run(remote)`, `etc_containerd_dir()` (host path of the node's
//!   `/etc/containerd`), `containerd_restart()` / `containerd_restart_command()`
//!   (the node's `restart_command`), `containerd_socket_host_path()`,
//!   `containerd_version()`, `stop()`.
//!
//! * [`FaultProxy::start`]`(upstream, `[`ProxyMode`]`, seed)`: a proxy that
//!   injects faults ([`Fault`], chosen by [`Rule`]s) into the traffic to a
//!   registry or an sshd, logs requests ([`ProxiedRequest`]) and counts
//!   the faults; [`proxy::http_request`] for plain checks of a registry.
//! * [`RegistryOptions::token_auth`]: the registry uses token auth
//!   (`auth: token:`) with a [`TokenService`] on `127.0.0.1:<free port>`
//!   that signs ES256 JWTs with a test key (`kid` = libtrust key id) and
//!   logs what it granted ([`Registry::token_service`]).
//! * [`Tmpfs::mount`]`(dir, bytes)`: a small filesystem that can be filled
//!   ([`RegistryOptions::storage_tmpfs`] puts a registry's storage on one).
//!
//! ## Caveats
//! * Node sshd addresses are `127.A.B.C` from [`net::unique_loopback_ip`],
//!   not only `127.0.0.N`, so that parallel tests and processes never
//!   share one.
//! * A [`Containerd`] shares the host's `/run/containerd` (so `ctr run` from
//!   the host works); runc state and cgroups are keyed by namespace and
//!   container ID there, so parallel tests must use distinct container IDs.
//!   A [`Node`] has its own `/run/containerd`; run `ctr run` on it over ssh.
//! * Services are stopped on drop; a test process killed with SIGKILL
//!   leaves them running (their temp dirs are `/tmp/mp-*`).
//!
//! ```no_run
//! use mirrorplan_harness::{Credentials, Registry, RegistryOptions};
//! # fn main() -> Result<(), mirrorplan_harness::HarnessError> {
//! let reg = Registry::start(RegistryOptions {
//!     tls: true,
//!     auth: Some(Credentials::new("user", "secret")),
//!     ..Default::default()
//! })?;
//! println!("{} (CA {:?})", reg.url(), reg.ca_cert_path());
//! # Ok(()) }
//! ```

mod containerd;
mod error;
pub mod net;
mod node;
mod pki;
mod postgres;
mod process;
pub mod proxy;
mod registry;
mod sandbox;
mod ssh;
mod tmpfs;
mod token;
mod tools;

pub use containerd::{
    parse_server_version, ConfigStyle, Containerd, ContainerdOptions, Snapshotter,
};
pub use error::{HarnessError, Result};
pub use node::{Node, NodeOptions, NodeUser, NODE_CONTAINERD_CONFIG, NODE_CONTAINERD_SOCKET};
pub use pki::TestPki;
pub use postgres::{Postgres, PostgresOptions};
pub use proxy::{Fault, FaultProxy, ProxiedRequest, ProxyMode, Rule};
pub use registry::{docker_config_json, Credentials, Registry, RegistryOptions};
pub use ssh::{SshEndpoint, Sshd, SshdOptions};
pub use tmpfs::{Tmpfs, FILLER};
pub use token::{libtrust_key_id, TokenRequest, TokenService, TOKEN_ISSUER, TOKEN_SERVICE};
pub use tools::{debian_package_for, find_binary};
