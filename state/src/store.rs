//! [`StateStore`]: where a state file lives, and how it is loaded and saved.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
///
/// A store remembers the file it last loaded or wrote (identified by device,
/// inode, size and modification time; every save replaces the file by
/// rename, so a new version is a new inode). While the file on disk is still
/// that one, a save neither parses nor validates it again: in a state of
/// 10,000 instances that is most of a save's cost. Any other file (another
/// writer, a hand edit) goes through the full checks.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
    known: Arc<Mutex<Option<KnownFile>>>,
}

impl PartialEq for StateStore {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for StateStore {}

/// The state file as this store last loaded or wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KnownFile {
    stamp: FileStamp,
    lineage: uuid::Uuid,
    serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            device: m.dev(),
            inode: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

impl StateStore {
    /// A store for the state file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateStore {
            path: path.into(),
            known: Arc::new(Mutex::new(None)),
        }
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
        let before = FileStamp::of(&self.path);
        match read_optional(&self.path)? {
            None => Ok(None),
            Some(bytes) => {
                let state = self.parse(&bytes)?;
                if before.is_some() && before == FileStamp::of(&self.path) {
                    self.remember(before, &state);
                }
                Ok(Some(state))
            }
        }
    }

    fn remember(&self, stamp: Option<FileStamp>, state: &State) {
        if let Ok(mut known) = self.known.lock() {
            *known = stamp.map(|stamp| KnownFile {
                stamp,
                lineage: state.lineage(),
                serial: state.serial(),
            });
        }
    }

    /// What is known of the file on disk without parsing it: its lineage and
    /// serial, when it is the file this store last loaded or wrote.
    fn known_now(&self) -> Option<KnownFile> {
        let known = self.known.lock().ok()?.clone()?;
        (FileStamp::of(&self.path).as_ref() == Some(&known.stamp)).then_some(known)
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
        self.save_step(state, None)
    }

    /// [`save`](Self::save), then, if the serial on disk is still
    /// `plan_serial` (the apply changed nothing the state records, e.g. it
    /// repaired drift back to what was recorded), the same content again at
    /// the next serial: every apply that ran moves the state on, so the plan
    /// it applied is stale from then on and a saved plan applies at most
    /// once.
    pub fn save_moved_on(
        &self,
        state: &mut State,
        plan_serial: u64,
    ) -> Result<SaveOutcome, StateError> {
        self.save_step(state, Some(plan_serial))
    }

    /// The save of [`save`](Self::save) and
    /// [`save_moved_on`](Self::save_moved_on), deciding with the rule every
    /// backend shares ([`crate::backend::next_save`]). When the file on disk
    /// is the one this store last loaded or wrote, its lineage and serial are
    /// known and its bytes are in the format this version writes, so
    /// "unchanged" is a byte comparison and nothing is parsed; otherwise the
    /// file is parsed and the contents compared.
    fn save_step(
        &self,
        state: &mut State,
        plan_serial: Option<u64>,
    ) -> Result<SaveOutcome, StateError> {
        use crate::backend::{next_save, SaveStep};
        let known = self.known_now();
        let old = read_optional(&self.path)?;
        // the file on disk: its lineage, serial, and whether `state` has
        // its content (a byte comparison when it is the file this store
        // knows, in this version's format; else parsed and compared)
        let stored = match (&old, known) {
            (None, _) => None,
            (Some(_), Some(known)) => Some((known.lineage, known.serial, None)),
            (Some(old_bytes), None) => {
                let disk = self.parse(old_bytes)?;
                let same = content_bytes(&disk)? == content_bytes(state)?;
                Some((disk.lineage(), disk.serial(), Some(same)))
            }
        };
        let step = next_save(
            stored.map(|(lineage, serial, _)| (lineage, serial)),
            state,
            &self.path,
            plan_serial,
            |bytes| match stored {
                Some((_, _, Some(same))) => same,
                _ => old.as_deref() == Some(bytes),
            },
        );
        let stored_serial = stored.map(|(_, serial, _)| serial);
        let step = step.map_err(|e| match e {
            StateError::SerialExhausted { path, serial, .. } => StateError::SerialExhausted {
                path,
                serial,
                backup: self.backup_path(),
            },
            other => other,
        })?;
        match step {
            SaveStep::Unchanged { serial } => Ok(SaveOutcome::Unchanged { serial }),
            SaveStep::Write { serial, bytes } => {
                if let Some(old_bytes) = &old {
                    write_atomic(&self.backup_path(), old_bytes)?;
                }
                self.write_state(state, serial, &bytes)?;
                Ok(match stored_serial {
                    None => SaveOutcome::Created { serial },
                    Some(previous_serial) => SaveOutcome::Updated {
                        previous_serial,
                        serial,
                    },
                })
            }
        }
    }

    /// Replaces the state file with `bytes` (`state` at `serial`) and
    /// remembers the new file.
    fn write_state(&self, state: &mut State, serial: u64, bytes: &[u8]) -> Result<(), StateError> {
        write_atomic(&self.path, bytes)?;
        state.set_serial(serial);
        self.remember(FileStamp::of(&self.path), state);
        Ok(())
    }

    /// Fails with [`StateError::SerialExhausted`] when `state` could not be
    /// saved with a changed content because its serial cannot rise. Writers
    /// call it right after loading, before they change anything outside the
    /// state; reading such a state is fine.
    pub fn check_writable(&self, state: &State) -> Result<(), StateError> {
        self.next_serial(state.serial()).map(|_| ())
    }

    /// The serial after `serial`, never wrapping.
    fn next_serial(&self, serial: u64) -> Result<u64, StateError> {
        serial
            .checked_add(1)
            .ok_or_else(|| StateError::SerialExhausted {
                path: self.path.clone(),
                serial,
                backup: self.backup_path(),
            })
    }

    fn corrupt(&self, detail: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            detail,
            backup: self.backup_path(),
        }
    }

    pub(crate) fn parse(&self, bytes: &[u8]) -> Result<State, StateError> {
        // One typed parse in the common case; only a file that does not
        // parse is looked at again as a plain JSON value, to say precisely
        // what is wrong with it.
        let state: State = match serde_json::from_slice(bytes) {
            Ok(state) => state,
            Err(typed) => return Err(self.diagnose(bytes, typed)),
        };
        if state.version() != FORMAT_VERSION {
            return Err(StateError::UnsupportedVersion {
                path: self.path.clone(),
                found: u64::from(state.version()),
                supported: FORMAT_VERSION,
                backup: self.backup_path(),
            });
        }
        self.validate(&state)?;
        Ok(state)
    }

    /// Why `bytes` is not a state file of this version.
    fn diagnose(&self, bytes: &[u8], typed: serde_json::Error) -> StateError {
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => return self.corrupt(format!("invalid JSON: {e}")),
        };
        let Some(object) = value.as_object() else {
            return self.corrupt("the top level is not a JSON object".to_owned());
        };
        match object.get("version") {
            None => self.corrupt("the `version` field is missing".to_owned()),
            Some(v) => match v.as_u64() {
                None => self.corrupt(format!(
                    "the `version` field is {v}, not a positive integer"
                )),
                Some(found) if found != u64::from(FORMAT_VERSION) => {
                    StateError::UnsupportedVersion {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                        backup: self.backup_path(),
                    }
                }
                // shape errors carry line and column
                Some(_) => self.corrupt(format!("unexpected content: {typed}")),
            },
        }
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

/// The serialised state as written to disk, with `serial` in place of its
/// own: pretty JSON and a final newline. `state` is left as it was.
pub(crate) fn file_bytes_at(state: &mut State, serial: u64) -> Result<Vec<u8>, StateError> {
    let own = state.serial();
    state.set_serial(serial);
    let bytes = serde_json::to_vec_pretty(&*state).map_err(StateError::Serialize);
    state.set_serial(own);
    let mut bytes = bytes?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The serialised state without its serial, for change detection.
fn content_bytes(state: &State) -> Result<Vec<u8>, StateError> {
    let mut copy = state.clone();
    copy.set_serial(0);
    serde_json::to_vec(&copy).map_err(StateError::Serialize)
}
