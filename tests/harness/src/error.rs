//! The harness's single error type.
//!
//! Every fallible function in the crate returns [`HarnessError`]. Messages
//! name the service, the command or the path involved, and for a missing
//! program the Debian package that provides it. They never contain
//! passwords or private keys.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A program the harness needs is not installed.
    #[error(
        "`{binary}` was not found on PATH, /usr/sbin or /sbin; install the Debian package \
         `{package}` (`.ci/install-deps.sh` installs everything the tests need)"
    )]
    MissingBinary {
        /// Program name, e.g. `docker-registry`.
        binary: String,
        /// Debian package that ships it.
        package: String,
    },
    /// A filesystem or process-spawn operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (openssl, ssh-keygen, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line (never contains secrets: they go through stdin).
        command: String,
        /// Exit status as text.
        status: String,
        /// Trimmed standard error of the command.
        stderr: String,
    },
    /// A service was started but did not answer in time.
    #[error(
        "{service} did not become ready within {waited:?}; last log lines ({log}):\n{log_tail}"
    )]
    NotReady {
        /// Which service.
        service: String,
        /// How long the harness waited.
        waited: Duration,
        /// Log file of the service.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },
    /// A service process exited while the harness waited for it.
    #[error("{service} exited during startup ({status}); last log lines ({log}):\n{log_tail}")]
    ExitedEarly {
        /// Which service.
        service: String,
        /// Exit status as text.
        status: String,
        /// Log file of the service.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },
    /// No free TCP port could be reserved.
    #[error("no free TCP port on {ip} after {attempts} attempts")]
    NoFreePort {
        /// Address that was tried.
        ip: IpAddr,
        /// How many ports were tried.
        attempts: u32,
    },
    /// A command succeeded but printed something the harness cannot parse.
    #[error("{what}: unexpected output: {output}")]
    UnexpectedOutput {
        /// What was being parsed.
        what: String,
        /// The output (trimmed).
        output: String,
    },
    /// The operation needs a running service, but it is stopped.
    #[error("{0} is not running")]
    NotRunning(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Wraps an [`std::io::Error`] with a description of what was being done.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}
