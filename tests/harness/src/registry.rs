//! A real CNCF distribution registry (`docker-registry` from Debian) on a
//! free loopback port, optionally with TLS and htpasswd (bcrypt) basic auth.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use crate::error::{HarnessError, Result};
use crate::net::free_port;
use crate::pki::TestPki;
use crate::process::{log_tail, ServiceProcess};
use crate::tmpfs::Tmpfs;
use crate::token::{TokenService, TOKEN_ISSUER, TOKEN_SERVICE};
use crate::tools::{find_binary, mkdir, run, write_file};

/// How long a registry gets to answer `/v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials for basic auth.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password (handle with care: never print it).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `base64("user:password")`, the value Docker's `config.json` stores.
    pub fn basic_token(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The content of a Docker-style `config.json` holding `creds` for
/// `host_port` (e.g. `127.0.0.1:5443`), as skopeo's `--authfile` and
/// containerd-adjacent tools read it.
pub fn docker_config_json(host_port: &str, creds: &Credentials) -> String {
    let value = serde_json::json!({
        "auths": { host_port: { "auth": creds.basic_token() } }
    });
    // Serialising a `serde_json::Value` cannot fail.
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// How to start a [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a freshly generated CA (see [`Registry::ca_cert_path`]).
    pub tls: bool,
    /// Require basic auth with these credentials (bcrypt htpasswd file).
    pub auth: Option<Credentials>,
    /// With `auth`: token authentication (`auth: token:`) instead of
    /// htpasswd, with a [`TokenService`] the registry owns checking the
    /// credentials and signing the tokens (see [`Registry::token_service`]).
    pub token_auth: bool,
    /// Use this storage directory instead of a fresh one (e.g. to serve the
    /// same content from two registries). It is not deleted on drop.
    pub storage_dir: Option<PathBuf>,
    /// Run as a pull-through cache of this upstream URL (`proxy.remoteurl`).
    pub proxy_remote_url: Option<String>,
    /// Put the storage directory on a tmpfs of this many bytes (see
    /// [`Registry::storage_tmpfs`]): a registry whose disk fills up.
    pub storage_tmpfs: Option<u64>,
}

/// A running registry. Stopped, and its temp dir removed, on drop.
#[derive(Debug)]
pub struct Registry {
    // declared first: unmounted before the temp dir is removed
    tmpfs: Option<Tmpfs>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    tls: Option<TestPki>,
    auth: Option<Credentials>,
    storage_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    process: Option<ServiceProcess>,
    token: Option<TokenService>,
}

impl Registry {
    /// Starts a registry on `127.0.0.1:<free port>` and waits until `/v2/`
    /// answers (200, or 401 when auth is on).
    pub fn start(opts: RegistryOptions) -> Result<Self> {
        find_binary("docker-registry")?;
        find_binary("curl")?;
        let dir = tempfile::Builder::new()
            .prefix("mp-reg-")
            .tempdir()
            .map_err(crate::error::io_err("creating registry temp dir"))?;
        let tls = if opts.tls {
            Some(TestPki::generate(&dir.path().join("pki"), &[])?)
        } else {
            None
        };
        let token = match (&opts.auth, opts.token_auth) {
            (Some(creds), true) => {
                // over https with the registry's own certificate when it
                // has TLS: clients refuse to send a password elsewhere in
                // clear
                let cert = tls
                    .as_ref()
                    .map(|p| (p.server_cert_path(), p.server_key_path()));
                Some(TokenService::start(
                    &dir.path().join("token"),
                    creds.clone(),
                    cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
                )?)
            }
            _ => None,
        };
        if let (Some(creds), None) = (&opts.auth, &token) {
            let htpasswd = find_binary("htpasswd")?;
            // -i: password from stdin, so it never shows in argv.
            let out = run(
                Command::new(htpasswd).args(["-niB", creds.username()]),
                Some(format!("{}\n", creds.password()).as_bytes()),
            )?;
            write_file(&dir.path().join("htpasswd"), out.stdout)?;
        }
        let storage_dir = match &opts.storage_dir {
            Some(d) => d.clone(),
            None => dir.path().join("storage"),
        };
        mkdir(&storage_dir)?;
        let tmpfs = match opts.storage_tmpfs {
            Some(size) => Some(Tmpfs::mount(&storage_dir, size)?),
            None => None,
        };
        let mut reg = Self {
            tmpfs,
            config_path: dir.path().join("config.yml"),
            log_path: dir.path().join("registry.log"),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            dir,
            tls,
            auth: opts.auth.clone(),
            storage_dir,
            process: None,
            token,
        };
        let mut last_err = None;
        for _ in 0..5 {
            reg.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)?));
            reg.write_config(&opts)?;
            match reg.spawn_and_wait() {
                Ok(()) => return Ok(reg),
                Err(e) if log_tail(&reg.log_path).contains("address already in use") => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(HarnessError::NoFreePort {
            ip: Ipv4Addr::LOCALHOST.into(),
            attempts: 5,
        }))
    }

    fn write_config(&self, opts: &RegistryOptions) -> Result<()> {
        let d = self.dir.path();
        let mut y = String::new();
        y.push_str("version: 0.1\nlog: {level: info, fields: {service: mirrorplan-harness}}\n");
        y.push_str(&format!(
            "storage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\n",
            self.storage_dir.display()
        ));
        y.push_str(&format!(
            "http:\n  addr: {}\n  secret: harness-{}\n  headers: {{X-Content-Type-Options: [nosniff]}}\n",
            self.addr,
            self.addr.port()
        ));
        if let Some(pki) = &self.tls {
            y.push_str(&format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                pki.server_cert_path().display(),
                pki.server_key_path().display()
            ));
        }
        if let Some(t) = &self.token {
            y.push_str(&format!(
                "auth:\n  token: {{realm: \"{}\", service: {TOKEN_SERVICE}, issuer: {TOKEN_ISSUER}, rootcertbundle: {}}}\n",
                t.realm(),
                t.cert_path().display()
            ));
        } else if self.auth.is_some() {
            y.push_str(&format!(
                "auth:\n  htpasswd: {{realm: mirrorplan-harness, path: {}}}\n",
                d.join("htpasswd").display()
            ));
        }
        if let Some(url) = &opts.proxy_remote_url {
            y.push_str(&format!("proxy:\n  remoteurl: {url}\n"));
        }
        write_file(&self.config_path, y)
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let mut cmd = Command::new(find_binary("docker-registry")?);
        cmd.arg("serve").arg(&self.config_path);
        let mut process = ServiceProcess::spawn("docker-registry", cmd, &self.log_path)?;
        let probe = |reg: &Self| matches!(reg.v2_status(false), Ok(200 | 401));
        let res = process.wait_ready(READY_TIMEOUT, || probe(self));
        if res.is_ok() {
            self.process = Some(process);
        }
        res
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:<port>"`, the registry host as image references use it.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `https://127.0.0.1:<port>` with TLS, `http://…` without.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA that signed the server certificate (TLS only).
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(TestPki::ca_cert_path)
    }

    /// A directory holding only `ca.crt`, for skopeo's `--cert-dir` (TLS only).
    pub fn certs_dir(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(TestPki::certs_dir)
    }

    /// The generated CA and server certificate (TLS only).
    pub fn pki(&self) -> Option<&TestPki> {
        self.tls.as_ref()
    }

    /// The token service of a registry using token auth
    /// ([`RegistryOptions::token_auth`]).
    pub fn token_service(&self) -> Option<&TokenService> {
        self.token.as_ref()
    }

    /// The credentials the registry requires (auth only).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.auth.as_ref()
    }

    /// A Docker-style `config.json` with this registry's credentials (auth only).
    pub fn docker_config_json(&self) -> Option<String> {
        self.auth
            .as_ref()
            .map(|c| docker_config_json(&self.host_port(), c))
    }

    /// Writes [`Self::docker_config_json`] to `<temp dir>/auth/config.json`
    /// and returns its path (auth only).
    pub fn write_docker_config(&self) -> Result<Option<PathBuf>> {
        let Some(json) = self.docker_config_json() else {
            return Ok(None);
        };
        let dir = self.dir.path().join("auth");
        mkdir(&dir)?;
        let path = dir.join("config.json");
        write_file(&path, json)?;
        Ok(Some(path))
    }

    /// The tmpfs under the storage directory ([`RegistryOptions::storage_tmpfs`]):
    /// fill it, free it, resize it.
    pub fn storage_tmpfs(&self) -> Option<&Tmpfs> {
        self.tmpfs.as_ref()
    }

    /// Where blobs and manifests are stored.
    pub fn storage_dir(&self) -> &Path {
        &self.storage_dir
    }

    /// The registry's log (stdout and stderr, access log included).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The generated `config.yml`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// True while the registry process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Some(p) => p.exit_status().is_none(),
            None => false,
        }
    }

    /// Stops the registry (storage and port are kept for [`Self::start_again`]).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// Starts the registry again on the same port, storage and config and
    /// waits until it answers. Does nothing if it is running.
    pub fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.process = None;
        self.spawn_and_wait()
    }

    /// The HTTP status of `GET /v2/`, through `curl` (with the CA when TLS
    /// is on, and with the credentials when `with_credentials`; the
    /// password goes to curl through stdin, not argv).
    pub fn v2_status(&self, with_credentials: bool) -> Result<u16> {
        let mut cmd = Command::new(find_binary("curl")?);
        cmd.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ]);
        if let Some(ca) = self.ca_cert_path() {
            cmd.arg("--cacert").arg(ca);
        }
        let mut stdin = None;
        if let (true, Some(c)) = (with_credentials, &self.auth) {
            cmd.args(["-K", "-"]);
            stdin = Some(format!(
                "user = \"{}:{}\"\n",
                curl_config_escape(c.username()),
                curl_config_escape(c.password())
            ));
        }
        cmd.arg(format!("{}/v2/", self.url()));
        let out = run(&mut cmd, stdin.as_deref().map(str::as_bytes))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        text.parse().map_err(|_| HarnessError::UnexpectedOutput {
            what: "curl http_code".into(),
            output: text,
        })
    }
}

/// Escapes a value for a double-quoted string in a curl config file.
fn curl_config_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
