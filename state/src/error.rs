//! The one error type of the state crate, [`StateError`].
//!
//! Every variant is a [`miette::Diagnostic`] with a stable code under
//! `mirrorplan::state::` and a help line telling the user what to do. Errors
//! name the file they concern. No variant ever carries a secret: sensitive
//! values are only known to this crate as salted digests.

use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::lock::LockInfo;

/// Everything that can go wrong while reading, writing or locking state.
#[derive(Debug, Error, Diagnostic)]
#[non_exhaustive]
pub enum StateError {
    /// A filesystem operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    #[diagnostic(
        code(mirrorplan::state::io),
        help("check that the directory exists and that you may read and write it")
    )]
    Io {
        /// What was being done, e.g. "read" or "rename temporary file onto".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The state file exists but is not a valid mirrorplan state.
    #[error("state file {} is corrupt: {detail}", path.display())]
    #[diagnostic(
        code(mirrorplan::state::corrupt),
        help(
            "mirrorplan will not overwrite it; restore the previous version from {} \
             (or fix the file by hand) and run again",
            backup.display()
        )
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong, with line and column for JSON errors.
        detail: String,
        /// Where the previous version is kept.
        backup: PathBuf,
    },

    /// The state file was written by an incompatible mirrorplan.
    #[error(
        "state file {} has format version {found}, this mirrorplan only understands version {supported}",
        path.display()
    )]
    #[diagnostic(
        code(mirrorplan::state::unsupported_version),
        help("use the mirrorplan release that wrote this state, or restore {}", backup.display())
    )]
    UnsupportedVersion {
        /// The state file.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The version this crate reads and writes.
        supported: u32,
        /// Where the previous version is kept.
        backup: PathBuf,
    },

    /// The state being saved does not descend from the state on disk.
    #[error(
        "refusing to overwrite {}: it belongs to lineage {on_disk}, the state being saved to lineage {ours}",
        path.display()
    )]
    #[diagnostic(
        code(mirrorplan::state::lineage_mismatch),
        help("these are two unrelated states; check that you are in the right configuration directory")
    )]
    LineageMismatch {
        /// The state file.
        path: PathBuf,
        /// Lineage of the file on disk.
        on_disk: String,
        /// Lineage of the state being saved.
        ours: String,
    },

    /// Someone else saved the state after it was loaded.
    #[error(
        "refusing to overwrite {}: it is at serial {on_disk}, newer than the loaded serial {ours}",
        path.display()
    )]
    #[diagnostic(
        code(mirrorplan::state::serial_conflict),
        help("another run changed the state meanwhile; run plan again (and use locking)")
    )]
    SerialConflict {
        /// The state file.
        path: PathBuf,
        /// Serial of the file on disk.
        on_disk: u64,
        /// Serial of the state being saved.
        ours: u64,
    },

    /// The serial cannot rise any further: no change can be saved.
    #[error(
        "state file {} is at serial {serial}, the largest possible, so no further change can be saved",
        path.display()
    )]
    #[diagnostic(
        code(mirrorplan::state::serial_exhausted),
        help(
            "the serial counts saves and never gets near this by use; the file was edited or damaged. \
             Restore the previous version from {} or set `serial` back to the value it had, then run again",
            backup.display()
        )
    )]
    SerialExhausted {
        /// The state file.
        path: PathBuf,
        /// The serial found.
        serial: u64,
        /// Where the previous version is kept.
        backup: PathBuf,
    },

    /// Another live process holds the lock.
    #[error("state {} is locked{}", path.display(), holder_text(holder.as_deref()))]
    #[diagnostic(
        code(mirrorplan::state::locked),
        help(
            "wait for the other run to finish, or retry with a longer lock timeout; \
             force-unlock cannot clear a lock that a running process holds"
        )
    )]
    Locked {
        /// The state file.
        path: PathBuf,
        /// Who holds it, when the lock info could be read.
        holder: Option<Box<LockInfo>>,
    },

    /// Lock info was left behind by a run that did not finish.
    #[error(
        "state {} has a stale lock: {holder}; the run that took it was killed or crashed{note}",
        path.display()
    )]
    #[diagnostic(
        code(mirrorplan::state::stale_lock),
        help(
            "check that no other mirrorplan runs against this configuration, \
             then run `mirrorplan force-unlock {}`",
            holder.id
        )
    )]
    StaleLock {
        /// The state file.
        path: PathBuf,
        /// What the dead run recorded.
        holder: Box<LockInfo>,
        /// Extra evidence, e.g. "; process 123 on host is no longer running".
        note: String,
    },

    /// The lock info file cannot be parsed.
    #[error("lock info {} is unreadable: {detail}", path.display())]
    #[diagnostic(
        code(mirrorplan::state::lock_info_corrupt),
        help(
            "check that no other mirrorplan runs against this configuration, then delete {}",
            path.display()
        )
    )]
    LockInfoCorrupt {
        /// The lock info file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// `force-unlock` was given an id that is not the current lock's id.
    #[error("lock id {given} does not match the lock on {}: {holder}", path.display())]
    #[diagnostic(
        code(mirrorplan::state::lock_id_mismatch),
        help("pass the id shown in the lock error: `mirrorplan force-unlock {}`", holder.id)
    )]
    LockIdMismatch {
        /// The state file.
        path: PathBuf,
        /// The id the user gave.
        given: String,
        /// The lock actually present.
        holder: Box<LockInfo>,
    },

    /// `force-unlock` found the lock held by a live process.
    #[error(
        "refusing to force-unlock {}: the lock is held by a running process{}",
        path.display(),
        holder_text(holder.as_deref())
    )]
    #[diagnostic(
        code(mirrorplan::state::lock_held),
        help("stop that run first (or wait for it); force-unlock only clears locks of dead runs")
    )]
    LockHeld {
        /// The state file.
        path: PathBuf,
        /// Who holds it, when the lock info could be read.
        holder: Option<Box<LockInfo>>,
    },

    /// `force-unlock` found nothing to unlock.
    #[error("state {} is not locked", path.display())]
    #[diagnostic(code(mirrorplan::state::not_locked), help("nothing to do"))]
    NotLocked {
        /// The state file.
        path: PathBuf,
    },

    /// Serialising the state failed (a bug: state values are plain JSON).
    #[error("could not serialise state: {0}")]
    #[diagnostic(
        code(mirrorplan::state::serialize),
        help("this is a bug in mirrorplan; please report it")
    )]
    Serialize(#[source] serde_json::Error),
}

fn holder_text(holder: Option<&LockInfo>) -> String {
    match holder {
        Some(info) => format!(": {info}"),
        None => " (holder unknown: lock info missing)".to_owned(),
    }
}

impl StateError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StateError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
