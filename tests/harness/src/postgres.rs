//! A throw-away PostgreSQL server (Debian's `postgresql` package): `initdb`
//! into a temp dir, `postgres` on `127.0.0.1:<free port>` with SCRAM
//! password authentication for a test role, optionally TLS with a
//! [`TestPki`] server certificate; stopped on drop.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, the
//! server runs as the `postgres` OS user (created by the package) through
//! `setpriv`, and the temp dir is handed to that user. The superuser
//! `postgres` can log in over the private Unix socket without a password
//! (for [`Postgres::psql`]); over TCP every login needs its password.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{io_err, HarnessError, Result};
use crate::net::free_port;
use crate::pki::TestPki;
use crate::process::ServiceProcess;
use crate::tools::{find_binary, mkdir, run, write_file};

/// How long the server gets to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The role and database the tests use.
const ROLE: &str = "mirrorplan";

/// Options of [`Postgres::start`].
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Serve TLS with a generated CA (see [`Postgres::ca_cert_path`]).
    pub tls: bool,
}

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    // stopped before its directory is removed (fields drop in order)
    process: ServiceProcess,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    pki: Option<TestPki>,
}

/// `bin` of the newest `/usr/lib/postgresql/<version>/bin`, or `PATH`.
fn pg_binary(name: &str) -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    for v in versions.iter().rev() {
        let candidate = v.join("bin").join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    find_binary(name).map_err(|_| HarnessError::MissingBinary {
        binary: name.to_owned(),
        package: "postgresql".to_owned(),
    })
}

/// `(uid, gid)` of an account in `/etc/passwd`.
fn account(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.first() == Some(&name) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

/// Chowns `path` and everything under it.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(io_err(format!("chown {}", path.display())))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path).map_err(io_err(format!("reading {}", path.display())))? {
            let e = e.map_err(io_err(format!("reading {}", path.display())))?;
            chown_tree(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

impl Postgres {
    /// Initialises a cluster in a new temp dir and starts the server.
    pub fn start(opts: PostgresOptions) -> Result<Postgres> {
        let initdb = pg_binary("initdb")?;
        let postgres = pg_binary("postgres")?;
        let setpriv = find_binary("setpriv")?;
        let isready = pg_binary("pg_isready")?;
        let dir = tempfile::Builder::new()
            .prefix("mp-pg-")
            .tempdir()
            .map_err(io_err("creating the postgres temp dir"))?;
        let d = dir.path().to_owned();
        let data = d.join("data");
        let sock = d.join("sock");
        mkdir(&sock)?;
        let superuser_pw = d.join("superuser.pw");
        write_file(&superuser_pw, uuid_like())?;
        let as_root = rustix::process::geteuid().is_root();
        let owner = if as_root {
            Some(
                account("postgres").ok_or_else(|| HarnessError::MissingBinary {
                    binary: "postgres (OS user)".to_owned(),
                    package: "postgresql".to_owned(),
                })?,
            )
        } else {
            None
        };
        let pki = if opts.tls {
            Some(TestPki::generate(&d.join("pki"), &[])?)
        } else {
            None
        };
        if let Some((uid, gid)) = owner {
            chown_tree(&d, uid, gid)?;
        }
        let as_owner = |program: &Path| -> Command {
            match owner {
                Some((uid, gid)) => {
                    let mut c = Command::new(&setpriv);
                    c.arg(format!("--reuid={uid}"))
                        .arg(format!("--regid={gid}"))
                        .arg("--clear-groups")
                        .arg("--")
                        .arg(program);
                    c
                }
                None => Command::new(program),
            }
        };
        run(
            as_owner(&initdb)
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-E", "UTF8", "--no-instructions"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", superuser_pw.display())),
            None,
        )?;
        let mut conf = String::from(
            "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 50\nlog_min_messages = warning\n",
        );
        if let Some(pki) = &pki {
            // the server insists on a private key readable by its user only
            for (from, to) in [
                (pki.server_cert_path(), "server.crt"),
                (pki.server_key_path(), "server.key"),
            ] {
                let dest = data.join(to);
                std::fs::copy(&from, &dest).map_err(io_err(format!(
                    "copying {} into the data dir",
                    from.display()
                )))?;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err(format!("chmod {}", dest.display())))?;
                if let Some((uid, gid)) = owner {
                    chown_tree(&dest, uid, gid)?;
                }
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let conf_path = data.join("postgresql.conf");
        let mut full = std::fs::read_to_string(&conf_path)
            .map_err(io_err(format!("reading {}", conf_path.display())))?;
        full.push_str(&conf);
        write_file(&conf_path, full)?;
        let log = d.join("postgres.log");
        let mut last = None;
        for _ in 0..5 {
            let port = free_port(std::net::Ipv4Addr::LOCALHOST)?;
            let mut cmd = as_owner(&postgres);
            cmd.arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-c")
                .arg(format!("unix_socket_directories={}", sock.display()));
            let mut process = ServiceProcess::spawn("postgres", cmd, &log)?;
            let socket = sock.join(format!(".s.PGSQL.{port}"));
            // accepting connections, not only listening ("starting up")
            let mut ready = Command::new(&isready);
            ready
                .arg("-q")
                .arg("-h")
                .arg(&sock)
                .arg("-p")
                .arg(port.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            match process.wait_ready(READY_TIMEOUT, || {
                socket.exists() && ready.status().is_ok_and(|s| s.success())
            }) {
                Ok(()) => {
                    let password = uuid_like();
                    let mut pg = Postgres {
                        dir,
                        process,
                        port,
                        password,
                        pki,
                    };
                    pg.create_role()?;
                    return Ok(pg);
                }
                Err(e) => {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if !text.contains("Address already in use") {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(HarnessError::NotRunning("postgres".to_owned())))
    }

    fn create_role(&mut self) -> Result<()> {
        // the password goes through stdin, never through arguments
        let sql = format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD '{}';\nCREATE DATABASE {ROLE} OWNER {ROLE};\n",
            self.password
        );
        self.psql_on("postgres", &sql).map(|_| ())
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test role (also its database's name).
    pub fn user(&self) -> &str {
        ROLE
    }

    /// The test role's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The CA that signed the server certificate (with `tls: true`).
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.pki.as_ref().map(TestPki::ca_cert_path)
    }

    /// A `postgres://` URL for the test role with its password, and
    /// `sslmode=verify-full` plus `sslrootcert` with TLS, else
    /// `sslmode=disable`.
    pub fn conn_str(&self) -> String {
        let tls = match self.ca_cert_path() {
            Some(ca) => format!("sslmode=verify-full&sslrootcert={}", ca.display()),
            None => "sslmode=disable".to_owned(),
        };
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{ROLE}?{tls}",
            self.password, self.port
        )
    }

    /// Stops the server (also done on drop).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Runs SQL as the superuser on the test database (over the private
    /// Unix socket) and returns the rows, one per line, fields `|`-separated.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_on(ROLE, sql)
    }

    fn psql_on(&self, db: &str, sql: &str) -> Result<String> {
        let psql = pg_binary("psql")?;
        let out = run(
            Command::new(psql)
                .arg("-h")
                .arg(self.dir.path().join("sock"))
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", "postgres", "-d", db, "-X", "-q", "-A", "-t"])
                .args(["-v", "ON_ERROR_STOP=1"]),
            Some(sql.as_bytes()),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// 32 random hex digits (no quote or shell character).
fn uuid_like() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut s = String::new();
    for _ in 0..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        s.push_str(&format!("{:016x}", h.finish()));
    }
    s
}
