//! Where states live: the [`Backend`] abstraction shared by the local file
//! ([`LocalBackend`]) and remote backends (PostgreSQL, in the
//! `mirrorplan-state-pg` crate), workspaces, and the rules for moving a
//! state between places ([`check_push`]).
//!
//! A backend is bound to one workspace; [`Backend::select`] gives the same
//! backend for another workspace. Every backend keeps the rules of this
//! crate: the same JSON ([`encode_state`] / [`decode_state`]), a serial
//! that rises only when the content changes, and no overwrite of another
//! lineage or of a newer serial ([`next_save`]).
//!
//! Workspaces: `default` always exists. The local backend keeps `default`
//! in `.mirrorplan/state.json` (as before workspaces existed) and any other
//! workspace `NAME` in `.mirrorplan/workspaces/NAME/state.json`. The
//! selected workspace is remembered in `.mirrorplan/environment` (as
//! Terraform's `.terraform/environment`) and `MIRRORPLAN_WORKSPACE`
//! overrides it ([`current_workspace`]).

use std::fmt;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

use crate::error::StateError;
use crate::fsutil::{ensure_dir, read_optional, write_atomic};
use crate::lock::{force_unlock, LockInfo, LockRequest, StateLock};
use crate::model::State;
use crate::store::{file_bytes_at, SaveOutcome, StateStore, DEFAULT_DIR, DEFAULT_FILE};

/// Any backend error: a [`StateError`], or a remote backend's own error.
/// Every one is a [`Diagnostic`] with a code and a help line.
pub type BackendError = Box<dyn Diagnostic + Send + Sync + 'static>;

/// The workspace that always exists.
pub const DEFAULT_WORKSPACE: &str = "default";
/// The environment variable that selects the workspace (wins over
/// `.mirrorplan/environment`).
pub const WORKSPACE_ENV: &str = "MIRRORPLAN_WORKSPACE";
/// File, in [`DEFAULT_DIR`], that remembers the selected workspace.
pub const ENVIRONMENT_FILE: &str = "environment";
/// Directory, in [`DEFAULT_DIR`], of the local states of other workspaces.
pub const WORKSPACES_DIR: &str = "workspaces";

/// A held state lock, of whatever backend. Dropping it releases the lock.
pub trait HeldLock: Send + fmt::Debug {
    /// Who holds it (this process).
    fn info(&self) -> &LockInfo;
}

impl HeldLock for StateLock {
    fn info(&self) -> &LockInfo {
        StateLock::info(self)
    }
}

/// What [`Backend::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The state was written as given (same lineage and serial).
    Written,
    /// The stored state was already identical: nothing was written.
    Unchanged,
}

/// A place that stores the states of a configuration's workspaces.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The workspace this backend reads and writes.
    fn workspace(&self) -> &str;
    /// Where the state is, for messages (never holds a password).
    fn location(&self) -> String;
    /// Loads the state; `Ok(None)` if this workspace has none yet.
    fn load(&self) -> Result<Option<State>, BackendError>;
    /// Saves with [`StateStore::save`]'s rules, as a compare-and-swap: a
    /// state of another lineage or a newer serial stored meanwhile makes it
    /// fail without writing anything.
    fn save(&self, state: &mut State) -> Result<SaveOutcome, BackendError>;
    /// [`save`](Self::save) at the end of an apply of a plan made at
    /// `plan_serial`: when nothing recorded changed and the stored serial
    /// is still `plan_serial`, the same content is stored at the next
    /// serial ([`StateStore::save_moved_on`]), so a saved plan applies at
    /// most once.
    fn save_moved_on(
        &self,
        state: &mut State,
        plan_serial: u64,
    ) -> Result<SaveOutcome, BackendError>;
    /// Fails with [`StateError::SerialExhausted`] when `state`'s serial
    /// cannot rise (writers check right after loading, before changing
    /// anything outside the state).
    fn check_writable(&self, state: &State) -> Result<(), BackendError> {
        match state.serial().checked_add(1) {
            Some(_) => Ok(()),
            None => Err(exhausted(Path::new(&self.location()), state.serial()).into()),
        }
    }
    /// Stores `state` as it is (lineage and serial kept) after
    /// [`check_push`] (skipped with `force`).
    fn push(&self, state: &State, force: bool) -> Result<PushOutcome, BackendError>;
    /// Takes this workspace's lock for `request.operation`, waiting up to
    /// `request.timeout` for another holder.
    fn lock(&self, request: LockRequest) -> Result<Box<dyn HeldLock>, BackendError>;
    /// Clears a lock left by a run that died, if `id` is its id.
    fn force_unlock(&self, id: &str) -> Result<LockInfo, BackendError>;
    /// Every workspace, sorted, `default` included.
    fn workspaces(&self) -> Result<Vec<String>, BackendError>;
    /// Deletes a workspace's state (the caller holds its lock and has
    /// checked that it may).
    fn delete_workspace(&self, name: &str) -> Result<(), BackendError>;
    /// The same backend, bound to workspace `name`.
    fn select(&self, name: &str) -> Result<Box<dyn Backend>, BackendError>;
}

/// Why a workspace name, selection or state transfer was refused.
#[derive(Debug, Error, Diagnostic)]
#[non_exhaustive]
pub enum TransferError {
    /// Not a valid workspace name.
    #[error("`{name}` is not a valid workspace name")]
    #[diagnostic(
        code(mirrorplan::workspace::bad_name),
        help("a workspace name has 1 to 64 letters, digits, `-` and `_`, and starts with a letter or digit")
    )]
    BadWorkspaceName {
        /// The name given.
        name: String,
    },
    /// `state push` without `--force` of a state that would replace a
    /// newer or a different one.
    #[error("refusing to push to {location}: {reason}")]
    #[diagnostic(
        code(mirrorplan::state::push_refused),
        help("pull the stored state first (`mirrorplan state pull`), or pass --force to overwrite it anyway")
    )]
    PushRefused {
        /// Where the state was to go.
        location: String,
        /// What differs.
        reason: String,
    },
}

/// Checks a workspace name: 1 to 64 ASCII letters, digits, `-` and `_`,
/// starting with a letter or digit (so it is a safe directory name and
/// table key).
pub fn check_workspace_name(name: &str) -> Result<(), TransferError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(TransferError::BadWorkspaceName {
            name: name.to_owned(),
        })
    }
}

/// The selected workspace of the configuration in `config_dir`:
/// `MIRRORPLAN_WORKSPACE` if set, else `.mirrorplan/environment`, else
/// `default`.
pub fn current_workspace(config_dir: &Path) -> Result<String, BackendError> {
    if let Some(name) = std::env::var(WORKSPACE_ENV).ok().filter(|v| !v.is_empty()) {
        check_workspace_name(&name)?;
        return Ok(name);
    }
    let path = config_dir.join(DEFAULT_DIR).join(ENVIRONMENT_FILE);
    match read_optional(&path)? {
        None => Ok(DEFAULT_WORKSPACE.to_owned()),
        Some(bytes) => {
            let name = String::from_utf8_lossy(&bytes).trim().to_owned();
            check_workspace_name(&name)?;
            Ok(name)
        }
    }
}

/// Remembers `name` as the selected workspace of `config_dir`.
pub fn select_workspace(config_dir: &Path, name: &str) -> Result<(), BackendError> {
    check_workspace_name(name)?;
    let dir = config_dir.join(DEFAULT_DIR);
    ensure_dir(&dir)?;
    write_atomic(&dir.join(ENVIRONMENT_FILE), format!("{name}\n").as_bytes())?;
    Ok(())
}

/// The state bytes every backend stores: pretty JSON and a final newline,
/// with `state`'s own serial.
pub fn encode_state(state: &State) -> Result<Vec<u8>, StateError> {
    let mut copy = state.clone();
    file_bytes_at(&mut copy, state.serial())
}

/// Parses and checks stored state bytes, as [`StateStore::load`] does;
/// errors name `location`.
pub fn decode_state(bytes: &[u8], location: &Path) -> Result<State, StateError> {
    StateStore::new(location).parse(bytes)
}

/// What a save over a stored state must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveStep {
    /// The content is what is stored: write nothing.
    Unchanged {
        /// The stored serial (now also `state`'s).
        serial: u64,
    },
    /// Write these bytes, which hold `serial`.
    Write {
        /// The new serial.
        serial: u64,
        /// The encoded state at that serial.
        bytes: Vec<u8>,
    },
}

/// [`StateStore::save`]'s rule, for a backend that stores the bytes of
/// [`encode_state`]: `stored` is the stored (lineage, serial, bytes) or
/// `None`. Refuses another lineage and a stored serial newer than
/// `state`'s; identical bytes at the stored serial are
/// [`SaveStep::Unchanged`] (and `state` takes the stored serial).
/// `same_bytes` says whether `bytes` equal the stored bytes, so that a
/// backend may compare digests instead of the bytes themselves.
pub fn next_save(
    stored: Option<(uuid::Uuid, u64)>,
    state: &mut State,
    location: &Path,
    plan_serial: Option<u64>,
    same_bytes: impl FnOnce(&[u8]) -> bool,
) -> Result<SaveStep, StateError> {
    let next = |serial: u64| {
        serial
            .checked_add(1)
            .ok_or_else(|| exhausted(location, serial))
    };
    let Some((lineage, serial)) = stored else {
        let serial = next(state.serial())?;
        let bytes = file_bytes_at(state, serial)?;
        return Ok(SaveStep::Write { serial, bytes });
    };
    if lineage != state.lineage() {
        return Err(StateError::LineageMismatch {
            path: location.to_owned(),
            on_disk: lineage.to_string(),
            ours: state.lineage().to_string(),
        });
    }
    if same_bytes(&file_bytes_at(state, serial)?) {
        if plan_serial != Some(serial) {
            state.set_serial(serial);
            return Ok(SaveStep::Unchanged { serial });
        }
        // the apply of the plan made at `serial` changed nothing recorded:
        // the same content moves on, so that plan is stale from now on
        let serial = next(serial)?;
        let bytes = file_bytes_at(state, serial)?;
        return Ok(SaveStep::Write { serial, bytes });
    }
    if serial > state.serial() {
        return Err(StateError::SerialConflict {
            path: location.to_owned(),
            on_disk: serial,
            ours: state.serial(),
        });
    }
    let new_serial = next(state.serial().max(serial))?;
    let bytes = file_bytes_at(state, new_serial)?;
    Ok(SaveStep::Write {
        serial: new_serial,
        bytes,
    })
}

/// The error for a state whose serial cannot rise; `location` names it
/// (a backend without a backup file names itself twice).
fn exhausted(location: &Path, serial: u64) -> StateError {
    StateError::SerialExhausted {
        path: location.to_owned(),
        serial,
        backup: location.to_owned(),
    }
}

/// Records that `state` was written at `serial` (after a [`SaveStep::Write`]).
pub fn set_saved_serial(state: &mut State, serial: u64) {
    state.set_serial(serial);
}

/// The rule of `state push` and of migrating a state to another backend
/// (`force` skips it): nothing stored, or the same lineage at an older
/// serial, may be replaced; the same lineage and serial with the same
/// content needs nothing (`Ok(false)`); anything else is refused.
pub fn check_push(
    stored: Option<&State>,
    pushed: &State,
    force: bool,
    location: &str,
) -> Result<bool, TransferError> {
    let Some(stored) = stored.filter(|_| !force) else {
        return Ok(true);
    };
    let refuse = |reason: String| TransferError::PushRefused {
        location: location.to_owned(),
        reason,
    };
    if stored.lineage() != pushed.lineage() {
        return Err(refuse(format!(
            "the stored state has lineage {}, the pushed one lineage {}",
            stored.lineage(),
            pushed.lineage()
        )));
    }
    if stored.serial() > pushed.serial() {
        return Err(refuse(format!(
            "the stored state is at serial {}, newer than the pushed serial {}",
            stored.serial(),
            pushed.serial()
        )));
    }
    if stored.serial() == pushed.serial() {
        if stored == pushed {
            return Ok(false);
        }
        return Err(refuse(format!(
            "the stored state has the same serial {} with different content",
            stored.serial()
        )));
    }
    Ok(true)
}

/// The local backend: one state file per workspace beside the
/// configuration, locked with [`StateLock`].
#[derive(Debug, Clone)]
pub struct LocalBackend {
    config_dir: PathBuf,
    workspace: String,
    store: StateStore,
    /// `--state FILE`: one file, no workspaces.
    explicit: bool,
}

impl LocalBackend {
    /// The local state of `workspace` of the configuration in `config_dir`.
    pub fn new(config_dir: &Path, workspace: &str) -> Result<Self, BackendError> {
        check_workspace_name(workspace)?;
        Ok(LocalBackend {
            config_dir: config_dir.to_owned(),
            workspace: workspace.to_owned(),
            store: StateStore::new(Self::state_path(config_dir, workspace)),
            explicit: false,
        })
    }

    /// One explicit state file (`--state FILE`), outside workspaces.
    pub fn with_file(config_dir: &Path, path: &Path) -> Self {
        LocalBackend {
            config_dir: config_dir.to_owned(),
            workspace: DEFAULT_WORKSPACE.to_owned(),
            store: StateStore::new(path),
            explicit: true,
        }
    }

    /// Where `workspace`'s state file lives.
    pub fn state_path(config_dir: &Path, workspace: &str) -> PathBuf {
        let dir = config_dir.join(DEFAULT_DIR);
        if workspace == DEFAULT_WORKSPACE {
            dir.join(DEFAULT_FILE)
        } else {
            dir.join(WORKSPACES_DIR).join(workspace).join(DEFAULT_FILE)
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &StateStore {
        &self.store
    }
}

impl Backend for LocalBackend {
    fn workspace(&self) -> &str {
        &self.workspace
    }

    fn location(&self) -> String {
        self.store.path().display().to_string()
    }

    fn load(&self) -> Result<Option<State>, BackendError> {
        Ok(self.store.load()?)
    }

    fn save(&self, state: &mut State) -> Result<SaveOutcome, BackendError> {
        ensure_dir(crate::fsutil::parent_dir(self.store.path()))?;
        Ok(self.store.save(state)?)
    }

    fn save_moved_on(
        &self,
        state: &mut State,
        plan_serial: u64,
    ) -> Result<SaveOutcome, BackendError> {
        ensure_dir(crate::fsutil::parent_dir(self.store.path()))?;
        Ok(self.store.save_moved_on(state, plan_serial)?)
    }

    fn check_writable(&self, state: &State) -> Result<(), BackendError> {
        Ok(self.store.check_writable(state)?)
    }

    fn push(&self, state: &State, force: bool) -> Result<PushOutcome, BackendError> {
        let stored = self.store.load();
        // a corrupt stored file may only be replaced with --force
        let stored = match stored {
            Ok(s) => s,
            Err(_) if force => None,
            Err(e) => return Err(e.into()),
        };
        if !check_push(stored.as_ref(), state, force, &self.location())? {
            return Ok(PushOutcome::Unchanged);
        }
        let path = self.store.path();
        ensure_dir(crate::fsutil::parent_dir(path))?;
        if let Some(old) = read_optional(path)? {
            write_atomic(&self.store.backup_path(), &old)?;
        }
        write_atomic(path, &encode_state(state)?)?;
        Ok(PushOutcome::Written)
    }

    fn lock(&self, request: LockRequest) -> Result<Box<dyn HeldLock>, BackendError> {
        ensure_dir(crate::fsutil::parent_dir(self.store.path()))?;
        Ok(Box::new(self.store.lock(request)?))
    }

    fn force_unlock(&self, id: &str) -> Result<LockInfo, BackendError> {
        Ok(force_unlock(self.store.path(), id)?)
    }

    fn workspaces(&self) -> Result<Vec<String>, BackendError> {
        let mut names = vec![DEFAULT_WORKSPACE.to_owned()];
        if self.explicit {
            return Ok(names);
        }
        let dir = self.config_dir.join(DEFAULT_DIR).join(WORKSPACES_DIR);
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(|e| StateError::io("read", &dir, e))?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if e.path().is_dir() && check_workspace_name(&name).is_ok() {
                        names.push(name);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::io("read", &dir, e).into()),
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn delete_workspace(&self, name: &str) -> Result<(), BackendError> {
        check_workspace_name(name)?;
        if name == DEFAULT_WORKSPACE {
            return Err(TransferError::BadWorkspaceName {
                name: name.to_owned(),
            }
            .into());
        }
        let dir = self
            .config_dir
            .join(DEFAULT_DIR)
            .join(WORKSPACES_DIR)
            .join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| StateError::io("remove", &dir, e))?;
        Ok(())
    }

    fn select(&self, name: &str) -> Result<Box<dyn Backend>, BackendError> {
        Ok(Box::new(LocalBackend::new(&self.config_dir, name)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names() {
        for ok in ["default", "prod", "staging-2", "a_b", "9"] {
            assert!(check_workspace_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "a/b", "-x", "a b", &"x".repeat(65)] {
            assert!(check_workspace_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_workspaces_have_their_own_files() -> Result<(), BackendError> {
        let dir = tempfile::tempdir().map_err(|e| StateError::io("tempdir", "/tmp", e))?;
        let default = LocalBackend::new(dir.path(), "default")?;
        let prod = default.select("prod")?;
        let mut a = State::new();
        default.save(&mut a)?;
        assert!(prod.load()?.is_none());
        let mut b = State::new();
        prod.save(&mut b)?;
        assert_eq!(default.workspaces()?, vec!["default", "prod"]);
        assert!(dir
            .path()
            .join(".mirrorplan/workspaces/prod/state.json")
            .is_file());
        assert_eq!(
            prod.load()?.map(|s| s.lineage()),
            Some(b.lineage()),
            "prod keeps its own state"
        );
        default.delete_workspace("prod")?;
        assert_eq!(default.workspaces()?, vec!["default"]);
        Ok(())
    }

    #[test]
    fn push_rules() {
        let mut old = State::new();
        old.set_serial(3);
        let mut newer = old.clone();
        newer.set_serial(4);
        newer.set_output("x", serde_json::json!(1));
        assert!(check_push(None, &old, false, "here").is_ok_and(|w| w));
        assert!(check_push(Some(&old), &newer, false, "here").is_ok_and(|w| w));
        assert!(check_push(Some(&newer), &old, false, "here").is_err());
        assert!(check_push(Some(&newer), &old, true, "here").is_ok_and(|w| w));
        assert!(check_push(Some(&old), &old.clone(), false, "here").is_ok_and(|w| !w));
        assert!(check_push(Some(&State::new()), &old, false, "here").is_err());
    }

    #[test]
    fn next_save_is_the_store_rule() -> Result<(), StateError> {
        let mut s = State::new();
        let loc = Path::new("somewhere");
        let SaveStep::Write { serial, bytes } = next_save(None, &mut s, loc, None, |_| false)?
        else {
            panic!("a new state is written");
        };
        assert_eq!(serial, 1);
        set_saved_serial(&mut s, serial);
        let stored = (s.lineage(), 1);
        assert_eq!(
            next_save(Some(stored), &mut s, loc, None, |b| b == bytes)?,
            SaveStep::Unchanged { serial: 1 }
        );
        s.set_output("x", serde_json::json!(1));
        assert!(matches!(
            next_save(Some((s.lineage(), 5)), &mut s, loc, None, |_| false),
            Err(StateError::SerialConflict { on_disk: 5, .. })
        ));
        assert!(matches!(
            next_save(Some((uuid::Uuid::new_v4(), 1)), &mut s, loc, None, |_| {
                false
            }),
            Err(StateError::LineageMismatch { .. })
        ));
        Ok(())
    }

    #[test]
    fn next_save_moves_an_applied_plans_serial_on_and_never_wraps() -> Result<(), StateError> {
        let mut s = State::new();
        let loc = Path::new("somewhere");
        let SaveStep::Write { serial, bytes } = next_save(None, &mut s, loc, None, |_| false)?
        else {
            panic!("a new state is written");
        };
        set_saved_serial(&mut s, serial);
        let stored = (s.lineage(), serial);
        // the same content after applying the plan made at this serial
        let SaveStep::Write { serial: moved, .. } =
            next_save(Some(stored), &mut s, loc, Some(serial), |b| b == bytes)?
        else {
            panic!("an applied plan's serial moves on");
        };
        assert_eq!(moved, serial + 1);
        // the plan of an older serial changes nothing
        assert_eq!(
            next_save(Some(stored), &mut s, loc, Some(serial - 1), |b| b == bytes)?,
            SaveStep::Unchanged { serial }
        );
        s.set_serial(u64::MAX);
        assert!(matches!(
            next_save(Some((s.lineage(), u64::MAX)), &mut s, loc, None, |_| false),
            Err(StateError::SerialExhausted {
                serial: u64::MAX,
                ..
            })
        ));
        Ok(())
    }
}
