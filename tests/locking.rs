//! State locking seen from the `mirrorplan` binary: a run refuses a state
//! whose lock another process holds (naming the holder and the lock id),
//! `--lock-timeout` waits for the holder to release it, `--lock=false` reads
//! without locking, and two real concurrent applies never both run.

mod common;
use common::*;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mirrorplan_state::{LockInfo, LockRequest, StateLock, StateStore};

/// Takes the state lock of `dir` from this (test) process.
fn hold(dir: &Path, operation: &str) -> StateLock {
    StateStore::new(state_path(dir))
        .lock(LockRequest::new(operation, Duration::ZERO))
        .unwrap_or_else(|e| panic!("cannot take the lock: {e}"))
}

fn lock_info(dir: &Path) -> Option<LockInfo> {
    mirrorplan_state::read_lock_info(&state_path(dir)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_held_lock_is_refused_naming_the_holder_and_id() {
    let cfg = local_nodes_config(2);
    let dir = cfg.path();
    let lock = hold(dir, "apply");
    let info = lock.info().clone();

    for args in [
        &["plan"][..],
        &["apply", "--auto-approve"],
        &["destroy", "--auto-approve"],
        &["state", "rm", r#"node.big["local:./nodes/n0"]"#],
    ] {
        let o = run_ok(dir, args, 1);
        let err = unwrapped(&text(&o.stderr));
        assert!(err.contains("is locked"), "{args:?}: {err}");
        assert!(
            err.contains(&info.id),
            "{args:?} does not name the id: {err}"
        );
        assert!(err.contains("`apply`"), "{args:?}: {err}");
        assert!(err.contains(&info.who), "{args:?} does not name who: {err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{args:?}: {err}"
        );
        // nothing was done
        assert!(!dir.join("nodes").exists());
    }
    // a live holder's lock cannot be forced
    let o = run_ok(dir, &["force-unlock", &info.id], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(err.contains("held by a running process"), "{err}");
    assert!(err.contains(&info.id), "{err}");
    // the refused runs left the holder's lock alone
    assert_eq!(lock_info(dir), Some(info));
    drop(lock);
    assert_eq!(lock_info(dir), None);
    run_ok(dir, &["plan", "--detailed-exitcode"], 2);
}

#[test]
fn lock_timeout_waits_for_the_holder_to_release() {
    let cfg = local_nodes_config(2);
    let dir = cfg.path();
    let lock = hold(dir, "apply");
    let released = Arc::new(AtomicBool::new(false));
    let releaser = {
        let released = released.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            released.store(true, Ordering::SeqCst);
            drop(lock);
        })
    };
    let o = run_ok(dir, &["apply", "--auto-approve", "--lock-timeout", "5s"], 0);
    // it can only have succeeded after the release
    assert!(released.load(Ordering::SeqCst));
    assert!(text(&o.stdout).contains("Apply complete!"));
    releaser
        .join()
        .unwrap_or_else(|_| panic!("releaser panicked"));
    assert_eq!(lock_info(dir), None);
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn lock_timeout_gives_up_while_the_holder_keeps_the_lock() {
    let cfg = local_nodes_config(2);
    let dir = cfg.path();
    let lock = hold(dir, "plan");
    let o = run_ok(dir, &["plan", "--lock-timeout", "300ms"], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(err.contains("is locked"), "{err}");
    assert!(err.contains(&lock.info().id), "{err}");
    // a usage error: exit 1, like every error (2 means "changes")
    let o = run_ok(dir, &["plan", "--lock-timeout", "soon"], 1);
    assert!(text(&o.stderr).contains("duration"), "{}", text(&o.stderr));
    drop(lock);
}

#[test]
fn lock_false_reads_without_blocking() {
    let cfg = local_nodes_config(2);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let lock = hold(dir, "apply");
    let info = lock.info().clone();
    let o = run_ok(dir, &["plan", "--lock=false", "--detailed-exitcode"], 0);
    assert!(text(&o.stdout).contains("No changes."));
    // read-only commands never lock (and take no lock flags)
    run_ok(dir, &["state", "list"], 0);
    // the holder's lock is untouched
    assert_eq!(lock_info(dir), Some(info));
    drop(lock);
}

fn wait_for_lock_of(dir: &Path, child: &mut Child) -> LockInfo {
    loop {
        if let Ok(Some(info)) = mirrorplan_state::read_lock_info(&state_path(dir)) {
            if info.pid == child.id() {
                return info;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the first apply ended ({status}) before it was seen holding the lock");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_concurrent_applies_do_not_both_run() {
    // enough nodes that the first apply is still running when the second starts
    let cfg = local_nodes_config(60);
    let dir = cfg.path();
    let mut first = bin()
        .arg("-C")
        .arg(dir)
        .args(["apply", "--auto-approve", "--parallelism", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let info = wait_for_lock_of(dir, &mut first);
    assert_eq!(info.operation, "apply");

    let second = run(dir, &["apply", "--auto-approve"]);
    let still_running = first.try_wait().ok().flatten().is_none();
    assert!(
        still_running,
        "the first apply finished too early for this test"
    );
    assert_eq!(second.status.code(), Some(1), "{}", text(&second.stderr));
    let err = unwrapped(&text(&second.stderr));
    assert!(err.contains("is locked"), "{err}");
    assert!(err.contains(&info.id), "{err}");
    assert!(err.contains(&format!("pid {}", info.pid)), "{err}");

    // the second run waits for the first with a lock timeout, then has nothing to do
    let third = run_ok(
        dir,
        &["plan", "--lock-timeout", "10m", "--detailed-exitcode"],
        0,
    );
    assert!(text(&third.stdout).contains("No changes."));
    let status = first.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(status.success(), "first apply: {status}");
    assert_eq!(lock_info(dir), None);
}
