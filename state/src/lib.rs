//! mirrorplan's state: what the last apply did, kept in `.mirrorplan/state.json`
//! beside the configuration.
//!
//! # Architecture invariants
//! - **Format.** JSON with `version` (= [`FORMAT_VERSION`], 1), `serial`,
//!   `lineage` (UUID v4 fixed by [`State::new`]), `secret_salt`, `instances`
//!   keyed by instance address (`image.SET["gcr.io/a/b:t"]`,
//!   `node.CLUSTER["host"]`, `cluster.CLUSTER`) and `outputs`. All maps are
//!   `BTreeMap`s: the same state always serialises to the same bytes.
//!   Unknown fields are rejected rather than silently dropped on the next save.
//! - **No secrets on disk.** Sensitive attributes and outputs are stored only as
//!   [`secret_digest`]s keyed by the state's random `secret_salt`, so digests
//!   are not comparable across states. Loading rejects a sensitive entry that
//!   is not a digest. `Debug` of [`State`] hides the salt.
//! - **Serial.** [`StateStore::save`] writes only when the content (everything
//!   but `serial`) differs from the file; then `serial` = on-disk serial + 1.
//!   It refuses a different lineage or an on-disk serial newer than the one
//!   loaded, so a run never overwrites another run's newer state.
//! - **Durability.** Every write goes to a fresh temporary file (mode 0600) in
//!   the same directory, is fsynced, renamed over the target and the directory
//!   fsynced: readers see the old or the new file, never a torn one.
//!   Directories created here get mode 0700. The previous state is kept in
//!   `state.json.backup` (written the same way) on each changing save.
//! - **Never a silent reset.** A missing file is "no state yet"
//!   (`Ok(None)`); a corrupt file or an unknown `version` is an error naming
//!   the path, what is wrong (line and column for JSON) and the backup.
//! - **Locking.** [`StateLock`] = `flock(2)` on `state.json.lock` (never
//!   deleted) + a [`LockInfo`] JSON in `state.json.lock.info` (id, operation,
//!   user@host, pid, time, version). Exactly one process holds the flock; the
//!   kernel frees it when the holder dies. Info present while the flock is free
//!   means the holder died: that is a [`StateError::StaleLock`], cleared only
//!   by [`force_unlock`] with the matching id. Loading never locks (the
//!   `--lock=false` read-only mode); writers hold the lock from load to last save.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use mirrorplan_state::{InstanceRecord, LockRequest, StateStore};
//!
//! # let dir = tempfile::tempdir()?;
//! let store = StateStore::beside_config(dir.path());
//! let _lock = store.lock(LockRequest::new("apply", Duration::from_secs(10)))?;
//! let mut state = store.load_or_new()?;
//! let mut node = InstanceRecord::new("node");
//! node.set_sensitive(state.secret_salt(), "ssh_password", b"hunter2");
//! state.set_instance(r#"node.admin1["cp1.example"]"#, node);
//! assert_eq!(store.save(&mut state)?.serial(), 1);
//! assert_eq!(store.save(&mut state)?.written(), false);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # API boundary
//! This crate knows files, JSON, digests and locks; it knows nothing of plans,
//! providers or HCL. Attributes are opaque `serde_json` objects.

mod backend;
mod error;
mod fsutil;
mod lock;
mod model;
mod store;
mod time;

pub use backend::{
    check_push, check_workspace_name, current_workspace, decode_state, encode_state, next_save,
    select_workspace, set_saved_serial, Backend, BackendError, HeldLock, LocalBackend, PushOutcome,
    SaveStep, TransferError, DEFAULT_WORKSPACE, ENVIRONMENT_FILE, WORKSPACES_DIR, WORKSPACE_ENV,
};
pub use error::StateError;
pub use fsutil::{ensure_private_dir, write_atomic};
pub use lock::{
    force_unlock, read_lock_info, release_held_locks_before_exit, LockInfo, LockRequest, StateLock,
};
pub use model::{secret_digest, InstanceRecord, OutputRecord, State, FORMAT_VERSION};
pub use store::{SaveOutcome, StateStore, DEFAULT_DIR, DEFAULT_FILE};
pub use time::{format_rfc3339, now_rfc3339};
