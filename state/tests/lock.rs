//! State locking: contention between threads and processes, waiting, stale
//! locks left by killed runs, and force-unlock.
//!
//! Cross-process tests re-run this test binary with `child_lock_holder` as the
//! only test and `MIRRORPLAN_STATE_TEST_HOLD` set; that child takes the lock,
//! reports its id in a file and holds the lock until told to release it or
//! killed.

use std::error::Error;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use miette::Diagnostic;
use mirrorplan_state::{
    force_unlock, read_lock_info, LockInfo, LockRequest, StateError, StateLock, StateStore,
};

type TestResult = Result<(), Box<dyn Error>>;

const CHILD_ENV: &str = "MIRRORPLAN_STATE_TEST_HOLD";

/// The tests of this file run one at a time. flock belongs to an open file
/// description, which a child process shares from fork until exec: a test
/// spawning a child while another test's lock file is open would make that
/// file's lock look held for a moment (seen as a flaky `lock_held`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn request(operation: &str, timeout: Duration) -> LockRequest {
    LockRequest::new(operation, timeout)
}

fn code(err: &StateError) -> String {
    err.code().map(|c| c.to_string()).unwrap_or_default()
}

fn state_path(dir: &Path) -> PathBuf {
    StateStore::beside_config(dir).path().to_owned()
}

#[test]
fn acquire_writes_info_and_drop_removes_it() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let store = StateStore::beside_config(dir.path());
    let lock = store.lock(request("apply", Duration::ZERO))?;
    let info = read_lock_info(store.path())?.ok_or("no lock info")?;
    assert_eq!(&info, lock.info());
    assert_eq!(info.operation, "apply");
    assert_eq!(info.pid, std::process::id());
    assert!(info.who.contains('@'), "{}", info.who);
    assert!(uuid::Uuid::parse_str(&info.id).is_ok(), "{}", info.id);
    assert!(info.created.ends_with('Z') && info.created.contains('T'));
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    let mode = fs::metadata(store.lock_info_path())?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    drop(lock);
    assert!(!store.lock_info_path().exists());
    assert!(store.lock_path().exists(), "the flock file must stay");
    let again = store.lock(request("plan", Duration::ZERO))?;
    assert_ne!(again.info().id, info.id);
    again.release()?;
    assert!(!store.lock_info_path().exists());
    Ok(())
}

#[test]
fn second_locker_fails_naming_the_holder() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    let held = StateLock::acquire(&path, request("apply", Duration::ZERO))?;
    let other = {
        let path = path.clone();
        thread::spawn(move || StateLock::acquire(&path, request("plan", Duration::ZERO)))
            .join()
            .map_err(|_| "thread panicked")?
    };
    let err = other.err().ok_or("second lock succeeded")?;
    assert_eq!(code(&err), "mirrorplan::state::locked");
    let msg = err.to_string();
    let holder = held.info();
    assert!(msg.contains(&holder.id), "{msg}");
    assert!(msg.contains(&holder.who), "{msg}");
    assert!(msg.contains("`apply`"), "{msg}");
    assert!(msg.contains(&holder.created), "{msg}");
    // The loser must not have touched the holder's info.
    assert_eq!(read_lock_info(&path)?.as_ref(), Some(holder));
    Ok(())
}

#[test]
fn directory_and_file_paths_share_one_lock() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    let _held = StateLock::acquire(&path, request("apply", Duration::ZERO))?;
    let state_dir = dir.path().join(".mirrorplan");
    let err = StateLock::acquire(&state_dir, request("plan", Duration::ZERO))
        .err()
        .ok_or("locked twice")?;
    assert_eq!(code(&err), "mirrorplan::state::locked");
    Ok(())
}

#[test]
fn exactly_one_of_many_concurrent_lockers_wins() -> TestResult {
    let _serial = serial();
    const N: usize = 8;
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    let start = Arc::new(Barrier::new(N));
    let done = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let (path, start, done) = (path.clone(), start.clone(), done.clone());
            thread::spawn(move || {
                start.wait();
                let result = StateLock::acquire(&path, request("apply", Duration::ZERO));
                // Keep any winner's lock until everyone has tried.
                done.wait();
                result
                    .map(|lock| lock.info().id.clone())
                    .map_err(|e| code(&e))
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for handle in handles {
        match handle.join().map_err(|_| "thread panicked")? {
            Ok(id) => winners.push(id),
            Err(code) => losers.push(code),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}, losers: {losers:?}");
    assert!(
        losers.iter().all(|c| c == "mirrorplan::state::locked"),
        "{losers:?}"
    );
    assert!(!dir.path().join(".mirrorplan/state.json.lock.info").exists());
    Ok(())
}

#[test]
fn waiting_locker_gets_the_lock_after_release() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    let held = StateLock::acquire(&path, request("apply", Duration::ZERO))?;
    let first_id = held.info().id.clone();
    let waiter = {
        let path = path.clone();
        thread::spawn(move || {
            StateLock::acquire(&path, request("plan", Duration::from_secs(600)))
                .map(|lock| lock.info().clone())
        })
    };
    // Whether the waiter is already polling or not, it must end up with the lock.
    thread::sleep(Duration::from_millis(250));
    drop(held);
    let info = waiter.join().map_err(|_| "thread panicked")??;
    assert_ne!(info.id, first_id);
    assert_eq!(info.operation, "plan");
    assert!(
        read_lock_info(&path)?.is_none(),
        "winner dropped, info must be gone"
    );
    Ok(())
}

fn write_info(path: &Path, info: &LockInfo) -> TestResult {
    let store = StateStore::new(path);
    if let Some(parent) = store.lock_info_path().parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(store.lock_info_path(), serde_json::to_vec(info)?)?;
    Ok(())
}

fn dead_info() -> LockInfo {
    LockInfo {
        id: "6b1d1f4e-4a36-4c1b-9a51-3f1c5b6f0e42".into(),
        operation: "apply".into(),
        who: "ops@elsewhere.invalid".into(),
        pid: 4_000_000,
        created: "2025-01-02T03:04:05Z".into(),
        version: "0.0.1".into(),
    }
}

#[test]
fn info_without_flock_is_a_stale_lock() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    let info = dead_info();
    write_info(&path, &info)?;

    let err = StateLock::acquire(&path, request("apply", Duration::from_secs(600)))
        .err()
        .ok_or("stale lock ignored")?;
    assert_eq!(code(&err), "mirrorplan::state::stale_lock");
    let msg = err.to_string();
    assert!(msg.contains(&info.id) && msg.contains("killed"), "{msg}");
    let help = err.help().map(|h| h.to_string()).unwrap_or_default();
    assert!(
        help.contains(&format!("mirrorplan force-unlock {}", info.id)),
        "{help}"
    );
    // Still there: stale locks are never cleared automatically.
    assert_eq!(read_lock_info(&path)?, Some(info.clone()));

    let err = force_unlock(&path, "0000")
        .err()
        .ok_or("wrong id accepted")?;
    assert_eq!(code(&err), "mirrorplan::state::lock_id_mismatch");
    assert_eq!(read_lock_info(&path)?, Some(info.clone()));

    assert_eq!(force_unlock(&path, &info.id)?, info);
    assert!(read_lock_info(&path)?.is_none());
    StateLock::acquire(&path, request("apply", Duration::ZERO))?.release()?;
    Ok(())
}

#[test]
fn force_unlock_refuses_a_live_lock() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    let held = StateLock::acquire(&path, request("apply", Duration::ZERO))?;
    let err = force_unlock(&path, &held.info().id)
        .err()
        .ok_or("live lock force-unlocked")?;
    assert_eq!(code(&err), "mirrorplan::state::lock_held");
    assert!(err.to_string().contains(&held.info().who), "{err}");
    assert!(read_lock_info(&path)?.is_some());
    Ok(())
}

#[test]
fn force_unlock_without_lock_says_so() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    let err = force_unlock(&path, "x").err().ok_or("unlocked nothing")?;
    assert_eq!(code(&err), "mirrorplan::state::not_locked");
    fs::create_dir_all(dir.path().join(".mirrorplan"))?;
    let err = force_unlock(&path, "x").err().ok_or("unlocked nothing")?;
    assert_eq!(code(&err), "mirrorplan::state::not_locked");
    Ok(())
}

#[test]
fn unreadable_info_is_reported() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let store = StateStore::beside_config(dir.path());
    fs::create_dir_all(dir.path().join(".mirrorplan"))?;
    fs::write(store.lock_info_path(), "{\"id\": ")?;
    let err = store
        .lock(request("apply", Duration::ZERO))
        .err()
        .ok_or("corrupt info ignored")?;
    assert_eq!(code(&err), "mirrorplan::state::lock_info_corrupt");
    assert!(err
        .to_string()
        .contains(&store.lock_info_path().display().to_string()));
    Ok(())
}

/// Not a test on its own: the body of the child process used below.
#[test]
fn child_lock_holder() -> TestResult {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let path = PathBuf::from(path);
    let lock = StateLock::acquire(&path, request("apply", Duration::ZERO))?;
    let marker = path.with_extension("held");
    fs::write(marker.with_extension("tmp"), &lock.info().id)?;
    fs::rename(marker.with_extension("tmp"), &marker)?;
    while !path.with_extension("release").exists() {
        thread::sleep(Duration::from_millis(20));
    }
    lock.release()?;
    Ok(())
}

/// A child process that is killed if a test returns early.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts a child process holding the lock; returns it and its lock id.
fn spawn_holder(path: &Path) -> Result<(Holder, String), Box<dyn Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "child_lock_holder",
            "--exact",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::null())
        .spawn()?;
    let marker = path.with_extension("held");
    loop {
        if let Ok(id) = fs::read_to_string(&marker) {
            return Ok((Holder(child), id));
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("lock holder exited early: {status}").into());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lock_held_by_another_process_then_killed_is_stale() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    fs::create_dir_all(dir.path().join(".mirrorplan"))?;
    let (mut child, child_id) = spawn_holder(&path)?;

    let err = StateLock::acquire(&path, request("plan", Duration::ZERO))
        .err()
        .ok_or("lock taken from a live process")?;
    assert_eq!(code(&err), "mirrorplan::state::locked");
    let msg = err.to_string();
    assert!(msg.contains(&child_id), "{msg}");
    assert!(msg.contains(&format!("pid {}", child.0.id())), "{msg}");

    child.0.kill()?;
    child.0.wait()?;

    let err = StateLock::acquire(&path, request("plan", Duration::ZERO))
        .err()
        .ok_or("stale lock ignored")?;
    assert_eq!(code(&err), "mirrorplan::state::stale_lock");
    let msg = err.to_string();
    assert!(msg.contains(&child_id), "{msg}");
    assert!(msg.contains("no longer running"), "{msg}");

    assert_eq!(force_unlock(&path, &child_id)?.id, child_id);
    StateLock::acquire(&path, request("plan", Duration::ZERO))?.release()?;
    Ok(())
}

#[test]
fn lock_released_by_another_process_is_taken_by_a_waiter() -> TestResult {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let path = state_path(dir.path());
    fs::create_dir_all(dir.path().join(".mirrorplan"))?;
    let (mut child, child_id) = spawn_holder(&path)?;

    let waiter = {
        let path = path.clone();
        thread::spawn(move || {
            StateLock::acquire(&path, request("apply", Duration::from_secs(600)))
                .map(|lock| lock.info().clone())
        })
    };
    fs::write(path.with_extension("release"), "")?;
    let info = waiter.join().map_err(|_| "thread panicked")??;
    assert_ne!(info.id, child_id);
    assert_eq!(info.pid, std::process::id());
    assert!(child.0.wait()?.success());
    Ok(())
}
