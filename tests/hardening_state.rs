//! Hardening of the state, locks, signals, node removals and file modes,
//! seen from the `mirrorplan` binary (issue 11): a serial that cannot rise,
//! `--lock=false` on writing commands, SIGINT / SIGTERM while the lock is
//! held, paths to remove that the state lists outside what mirrorplan
//! manages, and the modes of plan files and `.mirrorplan/`.

mod common;
use common::*;

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mirrorplan_state::{LockRequest, State, StateStore};

const NODE: &str = r#"node.big["local:./nodes/n0"]"#;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The state file as JSON, edited by `edit`, written back by hand.
fn edit_state(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = state_path(dir);
    let mut v: serde_json::Value =
        serde_json::from_slice(&read(&path)).unwrap_or_else(|e| panic!("state: {e}"));
    edit(&mut v);
    let bytes = serde_json::to_vec_pretty(&v).unwrap_or_else(|e| panic!("{e}"));
    write(&path, bytes);
}

/// Asserts that the state lock is free and not stale: this process can
/// take it at once.
fn assert_lock_free(dir: &Path) {
    assert_eq!(
        mirrorplan_state::read_lock_info(&state_path(dir)).unwrap_or_else(|e| panic!("{e}")),
        None,
        "lock info left behind"
    );
    let lock = StateStore::new(state_path(dir))
        .lock(LockRequest::new("test", Duration::ZERO))
        .unwrap_or_else(|e| panic!("the lock is not free: {e}"));
    drop(lock);
}

#[test]
fn serial_at_u64_max_is_an_error() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    edit_state(dir, |v| v["serial"] = serde_json::json!(u64::MAX));
    let before = read(&state_path(dir));
    // a node file gone: an apply that ran would write it again
    let hosts = dir.join("nodes/n0/etc/containerd/certs.d/quay.io/hosts.toml");
    std::fs::remove_file(&hosts).unwrap_or_else(|e| panic!("{e}"));

    for args in [
        &["plan"][..],
        &["apply", "--auto-approve"],
        &["destroy", "--auto-approve"],
        &["state", "rm", NODE],
    ] {
        let o = run_ok(dir, args, 1);
        let err = unwrapped(&text(&o.stderr));
        assert!(err.contains("serial_exhausted"), "{args:?}: {err}");
        assert!(
            err.contains(&format!("at serial {}", u64::MAX)),
            "{args:?}: {err}"
        );
        assert!(err.contains("no further change can be saved"), "{err}");
        assert!(err.contains("state.json.backup"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(read(&state_path(dir)), before, "{args:?} changed the state");
        assert!(!hosts.exists(), "{args:?} wrote on the node");
        assert_lock_free(dir);
    }
    // reading it still works
    let o = run_ok(dir, &["state", "list"], 0);
    assert!(text(&o.stdout).contains(NODE), "{}", text(&o.stdout));
    run_ok(dir, &["show"], 0);
    run_ok(dir, &["plan", "--lock=false", "--refresh-only"], 0);
    assert_eq!(read(&state_path(dir)), before);
}

#[test]
fn apply_lock_false_is_refused() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    for args in [
        &["apply", "--auto-approve", "--lock=false"][..],
        &["destroy", "--auto-approve", "--lock=false"],
        &["state", "rm", NODE, "--lock=false"],
        &["state", "push", "--lock=false", "pulled.json"],
        &["init", "--migrate-state", "--lock=false"],
        // no state yet: a saved plan would create it
        &["plan", "--lock=false", "--out", "plan.bin"],
    ] {
        let o = run_ok(dir, args, 1);
        let err = unwrapped(&text(&o.stderr));
        assert!(err.contains("lock_required"), "{args:?}: {err}");
        assert!(err.contains("--lock=false is refused"), "{args:?}: {err}");
        assert!(
            err.contains(
                "--lock=false is only for read-only commands such as `plan --refresh-only`"
            ),
            "{args:?}: {err}"
        );
        // refused before anything happened
        assert!(!dir.join(".mirrorplan").exists(), "{args:?}");
        assert!(!dir.join("nodes").exists(), "{args:?}");
        assert!(!dir.join("store").exists(), "{args:?}");
        assert!(!dir.join("plan.bin").exists(), "{args:?}");
    }

    // with a state, while another run holds the lock, the writing commands
    // are still refused and the read-only ones still read
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let state = read(&state_path(dir));
    let lock = StateStore::new(state_path(dir))
        .lock(LockRequest::new("apply", Duration::ZERO))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(dir.join("nodes")).unwrap_or_else(|e| panic!("{e}"));
    for args in [
        &["apply", "--auto-approve", "--lock=false"][..],
        &["destroy", "--auto-approve", "--lock=false"],
        &["state", "rm", NODE, "--lock=false"],
    ] {
        let o = run_ok(dir, args, 1);
        assert!(
            unwrapped(&text(&o.stderr)).contains("--lock=false is refused"),
            "{args:?}: {}",
            text(&o.stderr)
        );
        assert!(!dir.join("nodes").exists(), "{args:?} wrote on the node");
        assert_eq!(read(&state_path(dir)), state, "{args:?} changed the state");
    }
    run_ok(
        dir,
        &[
            "plan",
            "--lock=false",
            "--refresh-only",
            "--out",
            "drift.bin",
        ],
        0,
    );
    run_ok(dir, &["plan", "--lock=false"], 0);
    // the commands that only read never lock (and take no lock flags)
    run_ok(dir, &["state", "list"], 0);
    run_ok(dir, &["show"], 0);
    run_ok(dir, &["output"], 0);
    assert_eq!(read(&state_path(dir)), state);
    drop(lock);
}

/// A "registry" on loopback that accepts connections and never answers.
/// Each accepted connection is announced on the channel and held open.
fn silent_registry() -> (u16, mpsc::Receiver<()>) {
    let listener =
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

/// A configuration that pushes the quickstart bundle to the silent
/// registry at `port`: `plan` hangs in its refresh, holding the lock.
fn silent_registry_config(port: u16) -> tempfile::TempDir {
    let cfg = local_nodes_config(0);
    let hcl = format!(
        r#"registry "mirror" {{
  endpoint  = "http://127.0.0.1:{port}"
  namespace = "mirror"
}}

image_set "bundle" {{
  registry = registry.mirror
  bundle   = "bundles/quickstart.tar.gz"
}}
"#
    );
    write(&cfg.path().join("main.hcl"), hcl);
    cfg
}

/// `mirrorplan` running in the background; its stderr goes to a file
/// (a pipe nobody reads would fill and stop it), read by [`finish`].
struct Run {
    child: Child,
    stderr: tempfile::NamedTempFile,
}

fn spawn(dir: &Path, args: &[&str]) -> Run {
    let stderr = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    let file = stderr.reopen().unwrap_or_else(|e| panic!("{e}"));
    let child = bin()
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn mirrorplan: {e}"));
    Run { child, stderr }
}

fn kill(run: &Run, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(run.child.id().to_string())
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success(), "kill -{signal} failed");
}

/// Waits for the run to end (a run that ignores the signal fails the test
/// instead of hanging it), returning its exit code and stderr.
fn finish(mut run: Run) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap_or_else(|e| panic!("wait: {e}")) {
            break status;
        }
        if Instant::now() > deadline {
            let _ = run.child.kill();
            let _ = run.child.wait();
            panic!("mirrorplan did not end after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(run.stderr.path()).unwrap_or_else(|e| panic!("{e}"));
    (status.code(), err)
}

/// `args` (a plan, or an apply still refreshing) against the silent
/// registry, stopped by `signal` while it waits for the registry: the lock
/// is released, the exit code is the shell's, and the state is as it was.
fn signal_while_refreshing(args: &[&str], signal: &str, code: i32) {
    let (port, accepted) = silent_registry();
    let cfg = silent_registry_config(port);
    let dir = cfg.path();
    let store = StateStore::new(state_path(dir));
    let mut state = State::new();
    store.save(&mut state).unwrap_or_else(|e| panic!("{e}"));
    let before = read(&state_path(dir));

    let child = spawn(dir, args);
    // the refresh is waiting for the registry, with the lock held
    accepted
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("plan never reached the registry: {e}"));
    let info = mirrorplan_state::read_lock_info(&state_path(dir))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("plan does not hold the lock"));
    assert_eq!(info.pid, child.child.id());
    kill(&child, signal);
    let (status, err) = finish(child);
    assert_eq!(status, Some(code), "{err}");
    assert!(
        err.contains(&format!(
            "stopped by SIG{signal}; the state lock was released"
        )),
        "{err}"
    );
    assert_lock_free(dir);
    let loaded = store
        .load()
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the state is gone"));
    assert_eq!(loaded.lineage(), state.lineage());
    assert_eq!(read(&state_path(dir)), before);
    // a following run takes the lock at once (and waits for the registry
    // again, until it too is stopped)
    let child = spawn(dir, &["plan", "--lock-timeout", "0s"]);
    kill_when_locked(dir, child);
}

/// Waits until `child` holds the lock of `dir`, then stops it.
fn kill_when_locked(dir: &Path, mut child: Run) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(info)) = mirrorplan_state::read_lock_info(&state_path(dir)) {
            if info.pid == child.child.id() {
                break;
            }
        }
        if let Some(status) = child.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            let (_, err) = finish(child);
            panic!("the following plan ended ({status}) without taking the lock: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "the following plan never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(&child, "TERM");
    let (status, err) = finish(child);
    assert_eq!(status, Some(143), "{err}");
    assert_lock_free(dir);
}

#[test]
fn sigint_during_plan_releases_lock() {
    signal_while_refreshing(&["plan"], "INT", 130);
}

#[test]
fn sigterm_during_plan_releases_lock() {
    signal_while_refreshing(&["plan"], "TERM", 143);
}

#[test]
fn sigterm_during_apply_refresh_releases_lock() {
    // before the walk nothing has changed: the run just ends
    signal_while_refreshing(&["apply", "--auto-approve"], "TERM", 143);
}

#[test]
fn sigterm_during_apply_stops_new_work_and_releases_lock() {
    // enough nodes, one at a time, that the apply is still walking
    let cfg = local_nodes_config(60);
    let dir = cfg.path();
    let mut child = spawn(dir, &["apply", "--auto-approve", "--parallelism", "1"]);
    let nodes = dir.join("nodes");
    let deadline = Instant::now() + Duration::from_secs(300);
    // the walk has started once the first node has files
    while std::fs::read_dir(&nodes).map_or(true, |mut d| d.next().is_none()) {
        if child
            .child
            .try_wait()
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
        {
            let (status, err) = finish(child);
            panic!("the apply ended ({status:?}) before any node was written: {err}");
        }
        assert!(Instant::now() < deadline, "the apply never wrote a node");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child
            .child
            .try_wait()
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "the apply finished too early for this test"
    );
    kill(&child, "TERM");
    let (status, err) = finish(child);
    // like the first Ctrl-C: no new work, the state saved, exit 1
    assert_eq!(status, Some(1), "{err}");
    assert!(
        err.contains("SIGTERM received: no new work starts"),
        "{err}"
    );
    assert_lock_free(dir);
    let state = StateStore::new(state_path(dir))
        .load()
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no state"));
    let written = state.addresses().filter(|a| a.starts_with("node.")).count();
    assert!(
        written < 60,
        "every node was applied: the signal stopped nothing"
    );
    // the state records what was done: the rest is still to do
    run_ok(dir, &["plan", "--detailed-exitcode"], 2);
    run_ok(dir, &["apply", "--auto-approve"], 0);
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn state_path_outside_config_path_is_not_removed() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let root = dir.join("nodes/n0");
    let hosts = root.join("etc/containerd/certs.d/quay.io/hosts.toml");
    let config = root.join("etc/containerd/config.toml");
    assert!(hosts.exists() && config.exists());
    // files of the node's filesystem that mirrorplan never wrote
    let passwd = root.join("etc/passwd");
    write(&passwd, "root:x:0:0:the node's own:/root:/bin/sh\n");
    let outside = dir.join("outside");
    write(&outside, "the node's own, outside\n");

    for listed in [
        "/etc/passwd",
        "../../outside",
        "/etc/containerd/certs.d/../../passwd",
    ] {
        edit_state(dir, |v| {
            v["instances"][NODE]["attributes"][format!("file:{listed}")] =
                serde_json::json!("root:x:0:0:root:/root:/bin/sh\n");
        });
        for args in [
            &["apply", "--auto-approve"][..],
            &["destroy", "--auto-approve"],
        ] {
            let o = run_ok(dir, args, 1);
            let err = unwrapped(&text(&o.stderr));
            assert!(
                err.contains(&format!("refusing to remove {listed:?}")),
                "{listed} {args:?}: {err}"
            );
            assert!(err.contains("local:./nodes/n0"), "names the node: {err}");
            assert!(
                err.contains("under /etc/containerd/certs.d/"),
                "{listed} {args:?}: {err}"
            );
            assert!(err.contains("nothing was changed on this node"), "{err}");
            // nothing of the node was removed, nothing outside either
            assert!(passwd.exists(), "{listed} {args:?}");
            assert!(outside.exists(), "{listed} {args:?}");
            assert!(hosts.exists(), "{listed} {args:?} removed the node's files");
            assert!(config.exists(), "{listed} {args:?}");
            assert_lock_free(dir);
        }
        // the plan never read the file (its content would show as drift)
        // and says that apply will refuse
        let o = run_ok(dir, &["plan"], 0);
        let plan = text(&o.stdout);
        assert!(!plan.contains("the node's own"), "{plan}");
        assert!(
            unwrapped(&plan).contains(&format!("refusing to remove {listed:?}")),
            "{plan}"
        );
        edit_state(dir, |v| {
            if let Some(a) = v["instances"][NODE]["attributes"].as_object_mut() {
                a.remove(&format!("file:{listed}"));
            }
        });
    }
    // the node's own files are still removed by destroy
    run_ok(dir, &["destroy", "--auto-approve"], 0);
    assert!(!hosts.exists());
    assert!(passwd.exists() && outside.exists());
}

#[test]
fn plan_out_over_0644_file_becomes_0600() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    let plan = dir.join("plan.bin");
    write(&plan, "an older file\n");
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    run_ok(dir, &["plan", "--out", "plan.bin"], 0);
    assert_eq!(mode(&plan), 0o600);
    // it is the plan, whole, and no temporary file is left beside it
    let o = run_ok(dir, &["show", "plan.bin"], 0);
    assert!(text(&o.stdout).contains("to add"), "{}", text(&o.stdout));
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("plan.bin"))
        .collect();
    assert_eq!(names, ["plan.bin"]);
    run_ok(dir, &["apply", "plan.bin"], 0);
}

#[test]
fn mirrorplan_dir_is_0700() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    let private = [
        ".mirrorplan",
        ".mirrorplan/cache",
        ".mirrorplan/cache/bundles",
    ];
    run_ok(dir, &["plan"], 0);
    for d in private {
        assert_eq!(mode(&dir.join(d)), 0o700, "{d}");
    }
    // the cache was filled
    let cached = std::fs::read_dir(dir.join(".mirrorplan/cache/bundles"))
        .unwrap_or_else(|e| panic!("{e}"))
        .count();
    assert!(cached > 0);

    // directories left open by an older mirrorplan are made private
    for d in private {
        std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    run_ok(dir, &["apply", "--auto-approve"], 0);
    for d in private {
        assert_eq!(mode(&dir.join(d)), 0o700, "{d}");
    }
}

#[test]
fn escape_sequences_in_the_state_do_not_reach_the_terminal() {
    // a state's values come from nodes, registries and bundles (or a hand
    // edit): `state show` and `state list` print them escaped
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let path = state_path(dir);
    let mut v: serde_json::Value =
        serde_json::from_slice(&read(&path)).unwrap_or_else(|e| panic!("{e}"));
    let rec = &mut v["instances"][NODE]["attributes"];
    assert!(rec.is_object(), "{v:#}");
    // a multi-line value is shown as a heredoc, not as JSON
    rec["config_path"] = serde_json::json!("/etc\n\u{1b}[31mred\u{7}\n");
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(dir, &["state", "show", NODE], 0);
    let out = text(&o.stdout);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(
        out.contains("<<EOT\n/etc\n\\u{1b}[31mred\\u{7}\nEOT"),
        "{out}"
    );
}
