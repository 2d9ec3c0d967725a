//! Connection settings: the backend block, `PG_CONN_STR`, the libpq
//! environment variables and `--backend-config KEY=VALUE`, merged as libpq
//! would, and turned into a `tokio_postgres::Config` plus a TLS policy.
//!
//! Order, weakest first: the libpq variables (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGCONNECT_TIMEOUT`), then the connection string (`conn_str` of the
//! block, or `PG_CONN_STR` when the block has none), then each
//! `--backend-config` entry (`conn_str=...` replaces the connection string,
//! `schema_name=...` the schema, any other key sets that libpq parameter).
//!
//! The password is never part of a message: parse errors name keys, never
//! values, and [`PgSettings::scrub`] removes it from server and client
//! errors.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::PgError;

/// The schema used when the block names none.
pub const DEFAULT_SCHEMA: &str = "mirrorplan";

/// libpq environment variables and the parameter each sets.
const ENV_PARAMS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGDATABASE", "dbname"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGAPPNAME", "application_name"),
];

/// The libpq parameters this backend understands.
const KNOWN_PARAMS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
];

/// `sslmode` as libpq understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it; the certificate is not checked (unless a
    /// root certificate is configured, as libpq does).
    Prefer,
    /// TLS, certificate not checked unless a root certificate is configured.
    Require,
    /// TLS, the certificate chain is checked against the root certificates.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Everything needed to reach the state tables.
#[derive(Clone)]
pub struct PgSettings {
    params: BTreeMap<String, String>,
    schema: String,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("target", &self.target())
            .field("schema", &self.schema)
            .finish()
    }
}

impl PgSettings {
    /// Merges the sources (see the module documentation). `block` holds the
    /// backend block's attributes (`conn_str`, `schema_name`), `env` reads
    /// an environment variable, `overrides` are the `--backend-config`
    /// entries in order.
    pub fn resolve(
        block: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(String, String)],
    ) -> Result<PgSettings, PgError> {
        for key in block.keys() {
            if key != "conn_str" && key != "schema_name" {
                return Err(PgError::Config {
                    detail: format!("the pg backend block has no attribute `{key}`"),
                });
            }
        }
        let mut params = BTreeMap::new();
        for (var, key) in ENV_PARAMS {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                params.insert((*key).to_owned(), v);
            }
        }
        let mut conn_str = block
            .get("conn_str")
            .cloned()
            .or_else(|| env("PG_CONN_STR").filter(|v| !v.is_empty()));
        let mut schema = block
            .get("schema_name")
            .cloned()
            .or_else(|| env("PG_SCHEMA_NAME").filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        let mut extra = Vec::new();
        for (k, v) in overrides {
            match k.as_str() {
                "conn_str" => conn_str = Some(v.clone()),
                "schema_name" => schema = v.clone(),
                _ => extra.push((k.clone(), v.clone())),
            }
        }
        if let Some(s) = &conn_str {
            for (k, v) in parse_conn_str(s)? {
                params.insert(k, v);
            }
        }
        for (k, v) in extra {
            check_key(&k, "--backend-config")?;
            params.insert(k, v);
        }
        check_schema_name(&schema)?;
        let settings = PgSettings { params, schema };
        if let Some(mode) = settings.params.get("sslmode") {
            if SslMode::parse(mode).is_none() {
                return Err(PgError::Config {
                    detail: format!(
                        "sslmode `{mode}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ),
                });
            }
        }
        if let Some(port) = settings.params.get("port") {
            if port.parse::<u16>().is_err() {
                return Err(PgError::Config {
                    detail: format!("port `{port}` is not a TCP port number"),
                });
            }
        }
        Ok(settings)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The schema name quoted as an SQL identifier.
    pub fn quoted_schema(&self) -> String {
        format!("\"{}\"", self.schema)
    }

    /// The TLS mode (libpq's default is `prefer`).
    pub fn ssl_mode(&self) -> SslMode {
        self.params
            .get("sslmode")
            .and_then(|m| SslMode::parse(m))
            .unwrap_or(SslMode::Prefer)
    }

    /// The file of trusted root certificates, if one is configured (or
    /// `~/.postgresql/root.crt` exists, as libpq looks for).
    pub fn root_cert(&self) -> Option<std::path::PathBuf> {
        if let Some(p) = self.params.get("sslrootcert") {
            return Some(p.into());
        }
        let home = std::env::var_os("HOME")?;
        let p = std::path::Path::new(&home).join(".postgresql/root.crt");
        p.is_file().then_some(p)
    }

    fn user(&self) -> String {
        self.params.get("user").cloned().unwrap_or_else(|| {
            std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "postgres".to_owned())
        })
    }

    fn host(&self) -> String {
        self.params.get("host").cloned().unwrap_or_else(|| {
            if std::path::Path::new("/var/run/postgresql").is_dir() {
                "/var/run/postgresql".to_owned()
            } else {
                "localhost".to_owned()
            }
        })
    }

    fn port(&self) -> u16 {
        self.params
            .get("port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(5432)
    }

    fn dbname(&self) -> String {
        self.params
            .get("dbname")
            .cloned()
            .unwrap_or_else(|| self.user())
    }

    /// `user@host:port/dbname`: where the states are, without the password.
    pub fn target(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user(),
            self.host(),
            self.port(),
            self.dbname()
        )
    }

    /// `text` with the password (raw and percent-encoded) replaced.
    pub fn scrub(&self, text: &str) -> String {
        match self.params.get("password").filter(|p| !p.is_empty()) {
            None => text.to_owned(),
            Some(p) => text
                .replace(p.as_str(), "(password hidden)")
                .replace(&percent_encode(p), "(password hidden)"),
        }
    }

    /// The client configuration (TLS is chosen separately).
    pub fn client_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        for host in self.host().split(',') {
            c.host(host);
        }
        c.port(self.port());
        c.user(self.user());
        c.dbname(self.dbname());
        if let Some(p) = self.params.get("password") {
            c.password(p.as_bytes());
        }
        c.application_name(
            self.params
                .get("application_name")
                .map_or("mirrorplan", String::as_str),
        );
        let timeout = self
            .params
            .get("connect_timeout")
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .unwrap_or(30);
        c.connect_timeout(Duration::from_secs(timeout));
        // a lost network ends the session (and frees its advisory lock) on
        // the server within about a minute
        c.keepalives(true);
        c.keepalives_idle(Duration::from_secs(30));
        c.keepalives_interval(Duration::from_secs(10));
        c.keepalives_retries(3);
        c.ssl_mode(match self.ssl_mode() {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        c
    }
}

fn check_key(key: &str, source: &str) -> Result<(), PgError> {
    if KNOWN_PARAMS.contains(&key) {
        Ok(())
    } else {
        Err(PgError::Config {
            detail: format!(
                "{source}: unknown connection parameter `{key}` (known: conn_str, schema_name, {})",
                KNOWN_PARAMS.join(", ")
            ),
        })
    }
}

fn check_schema_name(schema: &str) -> Result<(), PgError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PgError::Config {
            detail: format!(
                "schema_name `{schema}` is not a plain identifier (letters, digits and `_`, at most 63)"
            ),
        })
    }
}

/// Parses a libpq connection string: a `postgres://` / `postgresql://` URL
/// or `key=value` pairs. Errors never quote the string (it may hold a
/// password).
pub fn parse_conn_str(s: &str) -> Result<Vec<(String, String)>, PgError> {
    let s = s.trim();
    let params = if let Some(rest) = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
    {
        parse_url(rest)?
    } else if s.contains('=') {
        parse_key_values(s)?
    } else {
        return Err(PgError::Config {
            detail: "the connection string is neither a postgres:// URL nor key=value pairs"
                .to_owned(),
        });
    };
    for (k, _) in &params {
        check_key(k, "the connection string")?;
    }
    Ok(params)
}

fn parse_url(rest: &str) -> Result<Vec<(String, String)>, PgError> {
    let bad = |what: &str| PgError::Config {
        detail: format!("the connection URL has an invalid {what}"),
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let mut out = Vec::new();
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.push((
                    "user".to_owned(),
                    percent_decode(user).ok_or_else(|| bad("user"))?,
                ));
            }
            if let Some(p) = password {
                out.push((
                    "password".to_owned(),
                    percent_decode(p).ok_or_else(|| bad("password encoding"))?,
                ));
            }
            hostport
        }
        None => authority,
    };
    if !hostport.is_empty() {
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h.split_once(']').ok_or_else(|| bad("IPv6 host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if !host.is_empty() {
            out.push((
                "host".to_owned(),
                percent_decode(host).ok_or_else(|| bad("host"))?,
            ));
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            out.push(("port".to_owned(), p.to_owned()));
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.push((
            "dbname".to_owned(),
            percent_decode(db).ok_or_else(|| bad("database name"))?,
        ));
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').ok_or_else(|| bad("query parameter"))?;
        out.push((
            percent_decode(k).ok_or_else(|| bad("query parameter"))?,
            percent_decode(v).ok_or_else(|| bad("query parameter value"))?,
        ));
    }
    Ok(out)
}

fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, PgError> {
    let bad = || PgError::Config {
        detail: "the connection string is not a valid list of key=value pairs".to_owned(),
    };
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(bad());
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(bad()),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or_else(bad)?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.push(chars.next().ok_or_else(bad)?);
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        block: &[(&str, &str)],
        env: &[(&str, &str)],
        overrides: &[(&str, &str)],
    ) -> Result<PgSettings, PgError> {
        let block = block
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        PgSettings::resolve(
            &block,
            &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            &overrides,
        )
    }

    #[test]
    fn url_parts_env_and_overrides() -> Result<(), PgError> {
        let s = resolve(
            &[(
                "conn_str",
                "postgres://mp:s%40cret@db.example:6543/states?sslmode=verify-full",
            )],
            &[("PGHOST", "ignored"), ("PGSSLROOTCERT", "/ca.pem")],
            &[("dbname", "other")],
        )?;
        assert_eq!(s.target(), "mp@db.example:6543/other");
        assert_eq!(s.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(s.root_cert(), Some("/ca.pem".into()));
        assert_eq!(s.schema(), DEFAULT_SCHEMA);
        assert_eq!(
            s.scrub("x s@cret s%40cret y"),
            "x (password hidden) (password hidden) y"
        );
        Ok(())
    }

    #[test]
    fn key_values_and_pg_conn_str() -> Result<(), PgError> {
        let s = resolve(
            &[("schema_name", "team_a")],
            &[(
                "PG_CONN_STR",
                "host=127.0.0.1 port=5433 user=u password='a b\\'c' dbname=d",
            )],
            &[],
        )?;
        assert_eq!(s.target(), "u@127.0.0.1:5433/d");
        assert_eq!(s.scrub("a b'c"), "(password hidden)");
        assert_eq!(s.schema(), "team_a");
        assert_eq!(s.ssl_mode(), SslMode::Prefer);
        Ok(())
    }

    #[test]
    fn errors_never_quote_the_password() {
        for bad in [
            "postgres://u:hunter2@h/db?sslmode=sometimes",
            "postgres://u:hunter2@h:notaport/db",
            "postgres://u:hunter2@h/db?frobnicate=1",
            "hunter2",
            "password='hunter2",
        ] {
            let e = resolve(&[("conn_str", bad)], &[], &[]).err();
            let text = e.map(|e| e.to_string()).unwrap_or_default();
            assert!(!text.is_empty(), "{bad} is refused");
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert!(resolve(&[("schema_name", "a;drop")], &[], &[]).is_err());
    }
}
