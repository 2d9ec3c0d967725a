//! Crash safety of `mirrorplan apply`: a real apply of 40 `local:` nodes is
//! killed with SIGKILL at several points (early, before it locks; while it
//! saves the state instance by instance). Each time the state left behind
//! must load, the next run must report the stale lock with its id, and after
//! `force-unlock ID` a new apply must converge so that a plan finds nothing
//! to do.

mod common;
use common::*;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mirrorplan_state::StateStore;

const NODES: usize = 40;
/// Every instance of the configuration: the nodes, 3 images, their image set, 1 cluster check.
const INSTANCES: usize = NODES + 5;

/// The lock id the message tells the user to pass to `force-unlock`.
fn id_from_message(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("mirrorplan force-unlock ")?;
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    (id.len() == 36).then_some(id)
}

/// The serial of the state file, if there is one that parses.
fn serial_on_disk(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(state_path(dir)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["serial"].as_u64()
}

/// When to kill the apply.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// This long after it started (probably before it locked anything).
    After(Duration),
    /// As soon as the state file on disk has at least this serial.
    Serial(u64),
}

fn start_apply(dir: &Path) -> Child {
    bin()
        .arg("-C")
        .arg(dir)
        .args(["apply", "--auto-approve", "--parallelism", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"))
}

/// Kills `child` at `point`; `false` if it ended on its own first.
fn kill_at(child: &mut Child, dir: &Path, point: KillPoint) -> bool {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "apply failed on its own: {status}");
            return false;
        }
        let now = match point {
            KillPoint::After(d) => start.elapsed() >= d,
            KillPoint::Serial(s) => serial_on_disk(dir).is_some_and(|on_disk| on_disk >= s),
        };
        if now {
            child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
            let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
            // it may have finished between the check and the kill
            return !status.success();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn assert_converged(dir: &Path) {
    for i in 0..NODES {
        let hosts = dir.join(format!(
            "nodes/n{i}/etc/containerd/certs.d/gcr.io/hosts.toml"
        ));
        let content = std::fs::read_to_string(&hosts).unwrap_or_default();
        assert!(content.contains("https://gcr.io"), "{}", hosts.display());
    }
    let state = StateStore::new(state_path(dir))
        .load()
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no state after apply"));
    assert_eq!(state.instances().len(), INSTANCES);
}

/// One kill and the recovery from it. Returns whether a stale lock was left.
fn crash_and_recover(point: KillPoint) -> bool {
    let cfg = local_nodes_config(NODES);
    let dir = cfg.path();
    let mut child = start_apply(dir);
    let killed = kill_at(&mut child, dir, point);

    // whatever is on disk loads: the state is never torn
    let store = StateStore::new(state_path(dir));
    let state = store
        .load()
        .unwrap_or_else(|e| panic!("{point:?}: the state left behind does not load: {e}"));
    if let Some(state) = &state {
        assert!(
            state.instances().len() <= INSTANCES,
            "{point:?}: {} instances",
            state.instances().len()
        );
    }
    let left = mirrorplan_state::read_lock_info(store.path())
        .unwrap_or_else(|e| panic!("{point:?}: the lock info left behind is unreadable: {e}"));
    if !killed {
        assert!(left.is_none(), "{point:?}: a finished apply left its lock");
    }

    eprintln!(
        "{point:?}: killed={killed}, state serial {:?} with {:?} instances, lock left: {}",
        state.as_ref().map(|s| s.serial()),
        state.as_ref().map(|s| s.instances().len()),
        left.is_some()
    );
    let stale = match left {
        Some(info) => {
            assert_eq!(info.pid, child.id(), "{point:?}");
            assert_eq!(info.operation, "apply");
            let o = run_ok(dir, &["plan"], 1);
            let err = unwrapped(&text(&o.stderr));
            assert!(err.contains("stale lock"), "{point:?}: {err}");
            assert!(err.contains("no longer running"), "{point:?}: {err}");
            let id = id_from_message(&err)
                .unwrap_or_else(|| panic!("{point:?}: no force-unlock ID in: {err}"));
            assert_eq!(id, info.id, "{point:?}: the message names another lock");
            // an apply is refused the same way, and changes nothing
            let before = std::fs::read(store.path()).ok();
            let o = run_ok(dir, &["apply", "--auto-approve"], 1);
            assert!(unwrapped(&text(&o.stderr)).contains(&id));
            assert_eq!(std::fs::read(store.path()).ok(), before);
            // the wrong id is refused
            let o = run_ok(
                dir,
                &["force-unlock", "00000000-0000-4000-8000-000000000000"],
                1,
            );
            assert!(!text(&o.stderr).is_empty());
            let o = run_ok(dir, &["force-unlock", &id], 0);
            assert!(text(&o.stdout).contains(&id), "{}", text(&o.stdout));
            assert!(mirrorplan_state::read_lock_info(store.path())
                .unwrap_or_default()
                .is_none());
            true
        }
        None => false,
    };

    if killed {
        let o = run_ok(dir, &["apply", "--auto-approve"], 0);
        let stdout = text(&o.stdout);
        assert!(
            stdout.contains("Apply complete!") || stdout.contains("No changes."),
            "{point:?}: {stdout}"
        );
    }
    let o = run_ok(dir, &["plan", "--detailed-exitcode"], 0);
    assert!(text(&o.stdout).contains("No changes."), "{point:?}");
    assert_converged(dir);
    let o = run_ok(dir, &["output", "store"], 0);
    assert_eq!(text(&o.stdout).trim(), "oci:./store");
    stale
}

#[test]
fn killed_early_before_or_while_taking_the_lock() {
    for ms in [5, 20, 50] {
        crash_and_recover(KillPoint::After(Duration::from_millis(ms)));
    }
}

#[test]
fn killed_while_applying_leaves_a_stale_lock_and_a_loadable_state() {
    let mut stale = 0;
    for serial in [1, 2, 5, 12, 25, 40] {
        if crash_and_recover(KillPoint::Serial(serial)) {
            stale += 1;
        }
    }
    // killed mid-apply, the lock is left behind (the run had not finished)
    assert!(stale >= 5, "only {stale} of 6 kills left a stale lock");
}
