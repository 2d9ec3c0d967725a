//! The debug log: `--log-level LEVEL` (or `MIRRORPLAN_LOG`), to stderr or
//! to `--log-file PATH` (created mode 0600). Off unless asked for.
//!
//! Only mirrorplan's own events are logged (`mirrorplan_registry::request`:
//! one per registry request; `mirrorplan_node::command`: one per command
//! run on a node), never another crate's: their output is not redacted,
//! ours is (see the registry's `request_log` and the node's `command_log`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

/// The levels `--log-level` takes, alone or as `TARGET=LEVEL`.
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// A log setting that cannot be used.
#[derive(Debug, Error, Diagnostic)]
pub enum LogError {
    #[error("invalid log level `{given}`: {reason}")]
    #[diagnostic(
        code(mirrorplan::cli::log_level),
        help("use one of off, error, warn, info, debug, trace, or TARGET=LEVEL pairs for mirrorplan's own targets (mirrorplan_registry=debug,mirrorplan_node=info), separated by commas")
    )]
    Level { given: String, reason: String },

    #[error("cannot open the log file {}: {source}", path.display())]
    #[diagnostic(
        code(mirrorplan::cli::log_file),
        help("give a path in a writable directory")
    )]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The `EnvFilter` directives for `given`: a bare level applies to
/// mirrorplan's targets only; `TARGET=LEVEL` must name one of them.
/// `None`: logging is off.
fn directives(given: &str) -> Result<Option<String>, LogError> {
    let bad = |reason: String| LogError::Level {
        given: given.to_string(),
        reason,
    };
    let mut out = Vec::new();
    for part in given.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (target, level) = match part.split_once('=') {
            Some((t, l)) => (t.trim(), l.trim()),
            None => ("mirrorplan", part),
        };
        let level = level.to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            return Err(bad(format!("`{level}` is not a level")));
        }
        if !target.starts_with("mirrorplan") {
            return Err(bad(format!(
                "`{target}` is not one of mirrorplan's targets (other crates' output is not redacted)"
            )));
        }
        if target.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            return Err(bad(format!("`{target}` is not a target name")));
        }
        if level != "off" {
            out.push(format!("{target}={level}"));
        }
    }
    Ok((!out.is_empty()).then(|| out.join(",")))
}

/// Starts the log when `level` asks for it, into `file` (appended to,
/// created 0600) or stderr.
pub fn install(level: Option<&str>, file: Option<&Path>) -> Result<(), LogError> {
    let Some(directives) = level.map(directives).transpose()?.flatten() else {
        return Ok(());
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&directives).map_err(|e| LogError::Level {
            given: level.unwrap_or_default().to_string(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(true);
    match file {
        Some(path) => {
            let f = open_log_file(path).map_err(|source| LogError::File {
                path: path.to_path_buf(),
                source,
            })?;
            let _ = builder.with_writer(std::sync::Mutex::new(f)).try_init();
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
    Ok(())
}

/// `path` opened for appending; a new file is created mode 0600, and an
/// existing one readable by others is made 0600.
fn open_log_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let meta = f.metadata()?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.flush()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_apply_to_mirrorplan_only() {
        assert_eq!(
            directives("debug").ok().flatten().as_deref(),
            Some("mirrorplan=debug")
        );
        assert_eq!(
            directives("mirrorplan_registry=TRACE, info")
                .ok()
                .flatten()
                .as_deref(),
            Some("mirrorplan_registry=trace,mirrorplan=info")
        );
        assert!(directives("off").ok().flatten().is_none());
        assert!(directives("").ok().flatten().is_none());
        assert!(directives("loud").is_err());
        assert!(directives("hyper=trace").is_err());
    }
}
