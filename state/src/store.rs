//! [`StateStore`]: where a state file lives, and how it is loaded and saved.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::StateError;
use crate::fsutil::{read_optional, write_atomic};
use crate::lock::{LockRequest, StateLock};
use crate::model::{State, FORMAT_VERSION};

/// Directory, beside the configuration, that holds mirrorplan's local files.
pub const DEFAULT_DIR: &str = ".mirrorplan";
/// File name of the state inside [`DEFAULT_DIR`].
pub const DEFAULT_FILE: &str = "state.json";

/// What [`StateStore::save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// There was no state file; it now exists at `serial`.
    Created {
        /// The serial written.
        serial: u64,
    },
    /// The content changed; the previous file was kept as the backup.
    Updated {
        /// The serial of the previous file, now in the backup.
        previous_serial: u64,
        /// The serial written.
        serial: u64,
    },
    /// The content was identical; nothing was written.
    Unchanged {
        /// The serial on disk (unchanged).
        serial: u64,
    },
}

impl SaveOutcome {
    /// The serial now on disk.
    pub fn serial(self) -> u64 {
        match self {
            SaveOutcome::Created { serial }
            | SaveOutcome::Updated { serial, .. }
            | SaveOutcome::Unchanged { serial } => serial,
        }
    }

    /// Whether the state file was (re)written.
    pub fn written(self) -> bool {
        !matches!(self, SaveOutcome::Unchanged { .. })
    }
}

/// The location of one state file and the files kept beside it.
///
/// Loading never locks (that is the `--lock=false` read-only mode); writers
/// take a [`StateLock`] with [`StateStore::lock`] before loading and hold it
/// until their last save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// A store for the state file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateStore { path: path.into() }
    }

    /// The default store of a configuration: `<config_dir>/.mirrorplan/state.json`.
    pub fn beside_config(config_dir: &Path) -> Self {
        Self::new(config_dir.join(DEFAULT_DIR).join(DEFAULT_FILE))
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The copy of the previous state, rewritten on every changing save.
    pub fn backup_path(&self) -> PathBuf {
        sibling(&self.path, ".backup")
    }

    /// The file that carries the OS advisory lock. It is never deleted.
    pub fn lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }

    /// The JSON description of the current lock holder.
    pub fn lock_info_path(&self) -> PathBuf {
        sibling(&self.path, ".lock.info")
    }

    /// Takes the state lock (see [`StateLock::acquire`]).
    pub fn lock(&self, request: LockRequest) -> Result<StateLock, StateError> {
        StateLock::acquire(&self.path, request)
    }

    /// Loads the state; `Ok(None)` if there is no state file yet.
    ///
    /// A file that exists but is not a valid state is an error, never an
    /// empty state. Temporary files left by an interrupted save are ignored.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        match read_optional(&self.path)? {
            None => Ok(None),
            Some(bytes) => self.parse(&bytes).map(Some),
        }
    }

    /// Loads the state, or creates a new (unsaved) one if there is none.
    pub fn load_or_new(&self) -> Result<State, StateError> {
        Ok(self.load()?.unwrap_or_default())
    }

    /// Saves `state` if its content differs from the file on disk.
    ///
    /// On change: the serial becomes one more than the one on disk (and is
    /// stored in `state`), the previous file is copied to
    /// [`backup_path`](Self::backup_path), and the new file replaces the old
    /// atomically. Identical content (ignoring the serial) writes nothing.
    ///
    /// Refuses to overwrite a corrupt file, a state of another lineage, or a
    /// newer serial than `state` was loaded at.
    pub fn save(&self, state: &mut State) -> Result<SaveOutcome, StateError> {
        let previous = match read_optional(&self.path)? {
            None => None,
            Some(bytes) => {
                let parsed = self.parse(&bytes)?;
                Some((bytes, parsed))
            }
        };
        let new_serial = match &previous {
            None => state.serial() + 1,
            Some((_, disk)) => {
                if disk.lineage() != state.lineage() {
                    return Err(StateError::LineageMismatch {
                        path: self.path.clone(),
                        on_disk: disk.lineage().to_string(),
                        ours: state.lineage().to_string(),
                    });
                }
                if content_bytes(disk)? == content_bytes(state)? {
                    state.set_serial(disk.serial());
                    return Ok(SaveOutcome::Unchanged {
                        serial: disk.serial(),
                    });
                }
                if disk.serial() > state.serial() {
                    return Err(StateError::SerialConflict {
                        path: self.path.clone(),
                        on_disk: disk.serial(),
                        ours: state.serial(),
                    });
                }
                state.serial().max(disk.serial()) + 1
            }
        };

        let mut next = state.clone();
        next.set_serial(new_serial);
        let bytes = to_file_bytes(&next)?;
        if let Some((old_bytes, _)) = &previous {
            write_atomic(&self.backup_path(), old_bytes)?;
        }
        write_atomic(&self.path, &bytes)?;
        state.set_serial(new_serial);
        Ok(match previous {
            None => SaveOutcome::Created { serial: new_serial },
            Some((_, disk)) => SaveOutcome::Updated {
                previous_serial: disk.serial(),
                serial: new_serial,
            },
        })
    }

    fn corrupt(&self, detail: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            detail,
            backup: self.backup_path(),
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<State, StateError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| self.corrupt(format!("invalid JSON: {e}")))?;
        let Some(object) = value.as_object() else {
            return Err(self.corrupt("the top level is not a JSON object".to_owned()));
        };
        match object.get("version") {
            None => return Err(self.corrupt("the `version` field is missing".to_owned())),
            Some(v) => match v.as_u64() {
                None => {
                    return Err(self.corrupt(format!(
                        "the `version` field is {v}, not a positive integer"
                    )))
                }
                Some(found) if found != u64::from(FORMAT_VERSION) => {
                    return Err(StateError::UnsupportedVersion {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                        backup: self.backup_path(),
                    })
                }
                Some(_) => {}
            },
        }
        // Parse again from the bytes so shape errors carry line and column.
        let state: State = serde_json::from_slice(bytes)
            .map_err(|e| self.corrupt(format!("unexpected content: {e}")))?;
        self.validate(&state)?;
        Ok(state)
    }

    fn validate(&self, state: &State) -> Result<(), StateError> {
        if state.secret_salt().len() < 32 {
            return Err(self.corrupt("`secret_salt` is missing or too short".to_owned()));
        }
        for (addr, record) in state.instances() {
            for (name, digest) in &record.sensitive {
                if !is_secret_digest(digest) {
                    return Err(self.corrupt(format!(
                        "instance {addr}: sensitive attribute `{name}` is not a blake3 digest"
                    )));
                }
            }
        }
        for (name, output) in state.outputs() {
            if output.sensitive && !output.value.as_str().is_some_and(is_secret_digest) {
                return Err(
                    self.corrupt(format!("sensitive output `{name}` is not a blake3 digest"))
                );
            }
        }
        Ok(())
    }
}

/// Whether `s` looks like a [`crate::secret_digest`] result.
fn is_secret_digest(s: &str) -> bool {
    s.strip_prefix("blake3:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The serialised state as written to disk: pretty JSON and a final newline.
fn to_file_bytes(state: &State) -> Result<Vec<u8>, StateError> {
    let mut bytes = serde_json::to_vec_pretty(state).map_err(StateError::Serialize)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The serialised state without its serial, for change detection.
fn content_bytes(state: &State) -> Result<Vec<u8>, StateError> {
    let mut copy = state.clone();
    copy.set_serial(0);
    serde_json::to_vec(&copy).map_err(StateError::Serialize)
}
