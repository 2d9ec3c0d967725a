//! State locking: an OS advisory lock plus a JSON note saying who holds it.
//!
//! Two files sit beside `state.json`:
//! - `state.json.lock` carries the `flock(2)` exclusive lock. It is created
//!   once and never deleted (deleting a lock file lets two processes lock two
//!   different inodes). The kernel drops the lock when its holder exits, even
//!   when killed.
//! - `state.json.lock.info` is a [`LockInfo`] written (atomically) right after
//!   the flock is taken and removed right before it is released.
//!
//! Hence: flock held → a live run holds the lock; flock free but info present
//! → the run that wrote the info died without releasing ([`StateError::StaleLock`]).
//! A stale lock is never cleared automatically: the user checks that nothing
//! else runs and calls `mirrorplan force-unlock <ID>` ([`force_unlock`]).
//!
//! A process that is told to stop (SIGINT, SIGTERM) and exits without
//! unwinding calls [`release_held_locks_before_exit`] first, so that its
//! locks are not left behind as stale ones.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::fsutil::{ensure_dir, parent_dir, read_optional, sync_dir, write_atomic, FILE_MODE};
use crate::store::{StateStore, DEFAULT_FILE};
use crate::time::now_rfc3339;

/// How often a waiting [`StateLock::acquire`] tries again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The lock info files of the locks this process holds. Writing an info
/// file and recording it here (and removing it and forgetting it) happen
/// under this mutex, so [`release_held_locks_before_exit`] sees every info
/// file this process wrote.
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn held() -> MutexGuard<'static, Vec<PathBuf>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the lock info of every [`StateLock`] this process holds, for a
/// process about to exit without running destructors (on SIGINT or
/// SIGTERM); the kernel then frees the flocks at exit. Returns how many
/// locks were released.
///
/// Call it only right before `std::process::exit`: from then on, taking or
/// releasing a lock in any thread of this process blocks until the exit.
pub fn release_held_locks_before_exit() -> usize {
    let mut held = held();
    let count = held.len();
    for info_path in held.drain(..) {
        let _ = fs::remove_file(&info_path);
        let _ = sync_dir(parent_dir(&info_path));
    }
    // never unlocked: no thread writes a new info file before the exit
    std::mem::forget(held);
    count
}

/// What a caller asks for when taking the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// The command taking the lock, e.g. `"plan"` or `"apply"`.
    pub operation: String,
    /// How long to keep trying while another run holds the lock; zero tries once.
    pub timeout: Duration,
}

impl LockRequest {
    /// A request for `operation` that waits up to `timeout`.
    pub fn new(operation: impl Into<String>, timeout: Duration) -> Self {
        LockRequest {
            operation: operation.into(),
            timeout,
        }
    }
}

/// Who holds (or held) the lock, as stored in `state.json.lock.info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random id (UUID v4) naming this lock, for `force-unlock`.
    pub id: String,
    /// The command that took it.
    pub operation: String,
    /// `user@host`.
    pub who: String,
    /// Process id of the holder on its host.
    pub pid: u32,
    /// When it was taken, RFC 3339 UTC.
    pub created: String,
    /// The mirrorplan version of the holder.
    pub version: String,
}

impl LockInfo {
    /// The info of a lock taken now by this process for `operation`.
    pub fn for_this_process(operation: &str) -> Self {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_owned(),
            who: format!("{}@{}", current_user(), current_host()),
            pid: std::process::id(),
            created: now_rfc3339(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The host part of [`who`](Self::who).
    pub fn host(&self) -> &str {
        self.who.rsplit_once('@').map_or("", |(_, host)| host)
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock {} held by {} (pid {}) for `{}` since {}, mirrorplan {}",
            self.id, self.who, self.pid, self.operation, self.created, self.version
        )
    }
}

/// A held state lock. Dropping it releases the lock (info file first).
#[derive(Debug)]
pub struct StateLock {
    file: File,
    lock_path: PathBuf,
    info_path: PathBuf,
    info: LockInfo,
    released: bool,
}

impl StateLock {
    /// Takes the lock of the state at `path` (the state file, or a directory
    /// holding `state.json`).
    ///
    /// While another live process holds it, retries every 100 ms until
    /// `request.timeout` has passed, then fails with
    /// [`StateError::Locked`] naming the holder. Fails at once with
    /// [`StateError::StaleLock`] if a previous run died holding it.
    pub fn acquire(path: &Path, request: LockRequest) -> Result<StateLock, StateError> {
        let store = store_for(path);
        let lock_path = store.lock_path();
        let info_path = store.lock_info_path();
        ensure_dir(parent_dir(&lock_path))?;
        let file = open_lock_file(&lock_path)?;
        let deadline = Instant::now().checked_add(request.timeout);
        loop {
            if try_lock(&file, &lock_path)? {
                if let Some(holder) = read_info(&info_path)? {
                    let note = stale_note(&holder);
                    return Err(StateError::StaleLock {
                        path: store.path().to_owned(),
                        holder: Box::new(holder),
                        note,
                    });
                }
                let info = LockInfo::for_this_process(&request.operation);
                let bytes = serde_json::to_vec_pretty(&info).map_err(StateError::Serialize)?;
                let mut held = held();
                write_atomic(&info_path, &bytes)?;
                held.push(info_path.clone());
                drop(held);
                return Ok(StateLock {
                    file,
                    lock_path,
                    info_path,
                    info,
                    released: false,
                });
            }
            let now = Instant::now();
            let remaining = deadline.map(|d| d.saturating_duration_since(now));
            if remaining.is_some_and(|r| r.is_zero()) {
                return Err(StateError::Locked {
                    path: store.path().to_owned(),
                    holder: read_info(&info_path).ok().flatten().map(Box::new),
                });
            }
            std::thread::sleep(remaining.map_or(POLL_INTERVAL, |r| r.min(POLL_INTERVAL)));
        }
    }

    /// What this lock recorded about its holder (its id is for `force-unlock`).
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Releases the lock now, reporting errors that `Drop` would ignore.
    pub fn release(mut self) -> Result<(), StateError> {
        self.released = true;
        let (removed, synced) = self.remove_info();
        let removed = removed.map_err(|e| StateError::io("remove lock info", &self.info_path, e));
        let unlocked = flock(&self.file, FlockOperation::Unlock)
            .map_err(|e| StateError::io("unlock", &self.lock_path, e.into()));
        removed.and(synced).and(unlocked)
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        if !self.released {
            // Info first, then the flock (closed with `self.file`), so a free
            // flock with info present always means a dead holder.
            let _ = self.remove_info();
        }
    }
}

impl StateLock {
    /// Removes the info file and forgets it in [`HELD`].
    fn remove_info(&self) -> (io::Result<()>, Result<(), StateError>) {
        let mut held = held();
        held.retain(|p| *p != self.info_path);
        let removed = fs::remove_file(&self.info_path);
        let synced = sync_dir(parent_dir(&self.info_path));
        (removed, synced)
    }
}

/// Clears a stale lock left by a dead run, if `id` is its id.
///
/// Refuses when the lock is held by a live process ([`StateError::LockHeld`]),
/// when `id` is not the recorded id ([`StateError::LockIdMismatch`]) and when
/// there is no lock ([`StateError::NotLocked`]). Returns the removed info.
pub fn force_unlock(path: &Path, id: &str) -> Result<LockInfo, StateError> {
    let store = store_for(path);
    let lock_path = store.lock_path();
    let info_path = store.lock_info_path();
    if !parent_dir(&lock_path).is_dir() {
        return Err(StateError::NotLocked {
            path: store.path().to_owned(),
        });
    }
    let file = open_lock_file(&lock_path)?;
    if !try_lock(&file, &lock_path)? {
        return Err(StateError::LockHeld {
            path: store.path().to_owned(),
            holder: read_info(&info_path).ok().flatten().map(Box::new),
        });
    }
    let Some(info) = read_info(&info_path)? else {
        return Err(StateError::NotLocked {
            path: store.path().to_owned(),
        });
    };
    if info.id != id.trim() {
        return Err(StateError::LockIdMismatch {
            path: store.path().to_owned(),
            given: id.to_owned(),
            holder: Box::new(info),
        });
    }
    fs::remove_file(&info_path).map_err(|e| StateError::io("remove lock info", &info_path, e))?;
    sync_dir(parent_dir(&info_path))?;
    drop(file);
    Ok(info)
}

/// Reads the lock info without locking; `Ok(None)` when there is none.
/// Useful to show who holds a lock.
pub fn read_lock_info(path: &Path) -> Result<Option<LockInfo>, StateError> {
    read_info(&store_for(path).lock_info_path())
}

fn store_for(path: &Path) -> StateStore {
    if path.is_dir() {
        StateStore::new(path.join(DEFAULT_FILE))
    } else {
        StateStore::new(path)
    }
}

fn open_lock_file(lock_path: &Path) -> Result<File, StateError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(lock_path)
        .map_err(|e| StateError::io("open lock file", lock_path, e))
}

/// `Ok(true)` if the exclusive flock was taken, `Ok(false)` if someone holds it.
fn try_lock(file: &File, lock_path: &Path) -> Result<bool, StateError> {
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => Ok(false),
        Err(e) => Err(StateError::io("lock", lock_path, io::Error::from(e))),
    }
}

fn read_info(info_path: &Path) -> Result<Option<LockInfo>, StateError> {
    let Some(bytes) = read_optional(info_path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::LockInfoCorrupt {
            path: info_path.to_owned(),
            detail: e.to_string(),
        })
}

fn stale_note(holder: &LockInfo) -> String {
    let host = holder.host();
    if host != current_host() {
        return format!(" (it was taken on host {host})");
    }
    if pid_alive(holder.pid) {
        format!(
            " (a process {} runs on {host} but does not hold the lock; its pid was probably reused)",
            holder.pid
        )
    } else {
        format!(" (process {} on {host} is no longer running)", holder.pid)
    }
}

fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

fn current_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()))
}

fn current_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
