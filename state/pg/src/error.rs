//! [`PgError`]: what can go wrong talking to PostgreSQL. Messages name the
//! server as `user@host:port/dbname` and never hold the password (every
//! text from the client library goes through `PgSettings::scrub`).

use miette::Diagnostic;
use thiserror::Error;

/// An error of the pg backend.
#[derive(Debug, Error, Diagnostic)]
#[non_exhaustive]
pub enum PgError {
    /// The connection settings are invalid.
    #[error("pg backend: {detail}")]
    #[diagnostic(
        code(mirrorplan::pg::config),
        help(
            "check the backend \"pg\" block, PG_CONN_STR, the PG* variables and --backend-config \
             (see docs/reference.md, \"The pg backend\")"
        )
    )]
    Config {
        /// What is wrong (keys only, never values of secrets).
        detail: String,
    },
    /// The TLS settings cannot be used.
    #[error("pg backend: {detail}")]
    #[diagnostic(
        code(mirrorplan::pg::tls),
        help("sslrootcert must be a PEM file of CA certificates readable by mirrorplan")
    )]
    Tls {
        /// What is wrong.
        detail: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL at {target}: {detail}")]
    #[diagnostic(
        code(mirrorplan::pg::connect),
        help(
            "check host, port, user, password (PGPASSWORD or PG_CONN_STR), dbname and sslmode; \
             the server must accept this client (pg_hba.conf)"
        )
    )]
    Connect {
        /// `user@host:port/dbname`.
        target: String,
        /// The client's or server's reason.
        detail: String,
    },
    /// A statement failed.
    #[error("PostgreSQL at {target}: could not {what}: {detail}")]
    #[diagnostic(
        code(mirrorplan::pg::query),
        help("check that the role may use (and on first use create) the schema and its tables")
    )]
    Query {
        /// `user@host:port/dbname`.
        target: String,
        /// What was being done.
        what: &'static str,
        /// The server's reason.
        detail: String,
    },
    /// A stored row does not hold a valid state.
    #[error("{location} is corrupt: {detail}")]
    #[diagnostic(
        code(mirrorplan::pg::corrupt),
        help(
            "mirrorplan will not overwrite it; restore a good state with \
             `mirrorplan state push --force FILE` (e.g. a `state pull` backup)"
        )
    )]
    Corrupt {
        /// Which state.
        location: String,
        /// What is wrong.
        detail: String,
    },
}
