//! The pg backend through the binary, against a real PostgreSQL started by
//! the harness on loopback: concurrent applies from two checkouts, a
//! holder killed with SIGKILL, a stale writer, workspaces, migration from
//! the local backend, and the password kept out of every output.
//!
//! Configurations use `local:` nodes and an `oci:` store, so only
//! PostgreSQL is needed.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use mirrorplan_harness::{Postgres, PostgresOptions};

const BACKEND: &str =
    "mirrorplan {\n  backend \"pg\" {\n    schema_name = \"mirrorplan\"\n  }\n}\n";

fn start(tls: bool) -> Postgres {
    Postgres::start(PostgresOptions { tls }).unwrap_or_else(|e| panic!("postgres: {e}"))
}

/// `mirrorplan -C DIR ARGS` with the server's URL in `PG_CONN_STR`.
fn pg_cmd(pg: &Postgres, dir: &Path, args: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.env("PG_CONN_STR", pg.conn_str())
        .env_remove("MIRRORPLAN_WORKSPACE")
        .arg("-C")
        .arg(dir)
        .args(args);
    c
}

fn pg_run(pg: &Postgres, dir: &Path, args: &[&str], code: i32) -> Output {
    let o = pg_cmd(pg, dir, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mirrorplan: {e}"));
    assert_eq!(
        o.status.code(),
        Some(code),
        "mirrorplan {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

fn sql(pg: &Postgres, q: &str) -> String {
    pg.psql(q).unwrap_or_else(|e| panic!("psql: {e}"))
}

/// A checkout: `main.hcl` naming the bundle, store and `nodes` local nodes
/// under `shared` by absolute path (outside every checkout, so that two
/// checkouts act on the same store and nodes), plus the pg backend.
fn checkout(shared: &Path, nodes: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let bundles = shared.join("bundles");
    if !bundles.exists() {
        std::fs::create_dir_all(&bundles).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/quickstart/bundles/quickstart.tar.gz"),
            bundles.join("quickstart.tar.gz"),
        )
        .unwrap_or_else(|e| panic!("copy bundle: {e}"));
    }
    let s = shared.display().to_string();
    let hcl = local_nodes_hcl(
        &s,
        &format!("{s}/bundles"),
        nodes,
        ("site", "mirrorplan.workspace"),
    );
    std::fs::write(dir.path().join("main.hcl"), hcl).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("backend.hcl"), BACKEND).unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// Waits until the lock row of `workspace` names process `pid`.
fn wait_for_lock_of(pg: &Postgres, workspace: &str, child: &mut Child) -> serde_json::Value {
    let started = Instant::now();
    loop {
        // the tables may not exist yet: the apply creates them
        let info = pg
            .psql(&format!(
                "SELECT info FROM mirrorplan.locks WHERE name = '{workspace}'"
            ))
            .unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&info) {
            if v["pid"] == serde_json::json!(child.id()) {
                return v;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the apply ended ({status}) before it was seen holding the lock");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the apply never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stored(pg: &Postgres, workspace: &str) -> (String, u64) {
    let row = sql(
        pg,
        &format!("SELECT lineage, serial FROM mirrorplan.states WHERE name = '{workspace}'"),
    );
    let (lineage, serial) = row
        .split_once('|')
        .unwrap_or_else(|| panic!("no state row for {workspace}: {row:?}"));
    (
        lineage.to_owned(),
        serial
            .parse()
            .unwrap_or_else(|e| panic!("serial {serial}: {e}")),
    )
}

#[test]
fn two_checkouts_apply_at_once_and_only_one_applies() {
    let pg = start(false);
    let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let a = checkout(shared.path(), 60);
    let b = checkout(shared.path(), 60);
    pg_run(&pg, a.path(), &["init"], 0);
    let mut first = pg_cmd(
        &pg,
        a.path(),
        &["apply", "--auto-approve", "--parallelism", "1"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap_or_else(|e| panic!("spawn: {e}"));
    let holder = wait_for_lock_of(&pg, "default", &mut first);
    assert_eq!(holder["operation"], "apply");

    // no waiting: refused, naming the holder
    let refused = pg_run(&pg, b.path(), &["apply", "--auto-approve"], 1);
    assert!(
        first.try_wait().ok().flatten().is_none(),
        "the first apply finished too early for this test"
    );
    let err = unwrapped(&text(&refused.stderr));
    assert!(err.contains("is locked"), "{err}");
    assert!(err.contains("`apply`"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(err.contains(holder["who"].as_str().unwrap_or("?")), "{err}");

    // waiting: it runs after the first, and finds nothing to do
    let waited = pg_run(
        &pg,
        b.path(),
        &["apply", "--auto-approve", "--lock-timeout", "10m"],
        0,
    );
    let status = first.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(status.success(), "first apply: {status}");
    let out = text(&waited.stdout);
    assert!(out.contains("No changes."), "{out}");
    assert!(!out.contains("Apply complete"), "{out}");
    let (_, serial) = stored(&pg, "default");
    pg_run(&pg, b.path(), &["plan", "--detailed-exitcode"], 0);
    pg_run(&pg, a.path(), &["plan", "--detailed-exitcode"], 0);
    assert_eq!(
        stored(&pg, "default").1,
        serial,
        "a no-op wrote a new serial"
    );
    assert_eq!(sql(&pg, "SELECT count(*) FROM mirrorplan.locks"), "0");
}

#[test]
fn a_holder_killed_with_sigkill_releases_the_lock_and_the_next_apply_converges() {
    let pg = start(false);
    let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = checkout(shared.path(), 60);
    let mut child = pg_cmd(
        &pg,
        dir.path(),
        &["apply", "--auto-approve", "--parallelism", "1"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap_or_else(|e| panic!("spawn: {e}"));
    wait_for_lock_of(&pg, "default", &mut child);
    // mid-apply: some nodes written, and their state saved
    let nodes = shared.path().join("nodes");
    let started = Instant::now();
    while std::fs::read_dir(&nodes).map_or(0, |d| d.count()) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no node written"
        );
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the apply finished too early for this test"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    // the dead holder's row is still there, its advisory lock is not
    assert_eq!(
        sql(&pg, "SELECT count(*) FROM mirrorplan.locks"),
        "1",
        "the killed run left its lock record"
    );
    let o = pg_run(
        &pg,
        dir.path(),
        &["apply", "--auto-approve", "--lock-timeout", "60s"],
        0,
    );
    assert!(
        text(&o.stdout).contains("Apply complete!"),
        "{}",
        text(&o.stdout)
    );
    let o = pg_run(&pg, dir.path(), &["plan", "--detailed-exitcode"], 0);
    assert!(text(&o.stdout).contains("No changes."));
    assert_eq!(sql(&pg, "SELECT count(*) FROM mirrorplan.locks"), "0");
}

#[test]
fn a_stale_writer_fails_and_writes_nothing() {
    let pg = start(false);
    let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = checkout(shared.path(), 80);
    pg_run(&pg, dir.path(), &["init"], 0);
    // a first, small state to push over later
    let pulled = dir.path().join("pushed.json");
    let mut writer = pg_cmd(
        &pg,
        dir.path(),
        &["apply", "--auto-approve", "--parallelism", "1"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap_or_else(|e| panic!("spawn: {e}"));
    wait_for_lock_of(&pg, "default", &mut writer);
    // wait for a few saves, then, as a writer that bypasses the lock
    // (mirrorplan's own writers all take it: `--lock=false` is refused for
    // them), move the stored state 100 serials on straight in the table.
    // The row is held for 2 s first, so the apply's next save waits for
    // this change and must see it.
    let started = Instant::now();
    while stored_serial(&pg) < 3 {
        assert!(started.elapsed() < Duration::from_secs(120), "no save seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    sql(
        &pg,
        "BEGIN; \
         SELECT serial FROM mirrorplan.states WHERE name = 'default' FOR UPDATE; \
         SELECT pg_sleep(2); \
         UPDATE mirrorplan.states SET serial = serial + 100, \
           data = regexp_replace(data, '\"serial\": [0-9]+', '\"serial\": ' || (serial + 100)) \
           WHERE name = 'default'; \
         COMMIT;",
    );
    let serial = stored_serial(&pg);
    let o = pg_run(&pg, dir.path(), &["state", "pull"], 0);
    let state: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(state["serial"], serde_json::json!(serial), "{state:#}");
    let out = writer.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = unwrapped(&text(&out.stderr));
    assert!(
        err.contains(&format!("at serial {serial}")) && err.contains("refusing to overwrite"),
        "{err}"
    );
    // exactly what the other writer stored is still there
    assert_eq!(stored_serial(&pg), serial);
    let o = pg_run(&pg, dir.path(), &["state", "pull"], 0);
    let now: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(now, state);
    // an older state is refused without --force, and nothing changes
    let mut older = state.clone();
    older["serial"] = serde_json::json!(serial - 1);
    std::fs::write(
        &pulled,
        serde_json::to_vec_pretty(&older).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = pg_run(
        &pg,
        dir.path(),
        &["state", "push", pulled.to_str().unwrap_or("")],
        1,
    );
    let err = unwrapped(&text(&o.stderr));
    assert!(err.contains("newer than the pushed serial"), "{err}");
    assert_eq!(stored_serial(&pg), serial);
}

fn stored_serial(pg: &Postgres) -> u64 {
    let s = sql(
        pg,
        "SELECT serial FROM mirrorplan.states WHERE name = 'default'",
    );
    s.parse().unwrap_or(0)
}

#[test]
fn migration_keeps_lineage_and_serial_and_workspaces_are_independent() {
    // over TLS, verify-full against the harness's private CA
    let pg = start(true);
    assert!(pg.conn_str().contains("sslmode=verify-full"));
    let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = checkout(shared.path(), 2);
    let backend = dir.path().join("backend.hcl");
    std::fs::remove_file(&backend).unwrap_or_else(|e| panic!("{e}"));
    // local first
    run_ok(dir.path(), &["apply", "--auto-approve"], 0);
    let local: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_path(dir.path())).unwrap_or_default())
            .unwrap_or_else(|e| panic!("local state: {e}"));
    // then the pg backend, and the migration
    std::fs::write(&backend, BACKEND).unwrap_or_else(|e| panic!("{e}"));
    let o = pg_run(&pg, dir.path(), &["init"], 0);
    assert!(
        text(&o.stderr).contains("--migrate-state"),
        "{}",
        text(&o.stderr)
    );
    let o = pg_run(&pg, dir.path(), &["init", "--migrate-state"], 0);
    assert!(
        text(&o.stdout).contains("Copied workspace \"default\""),
        "{}",
        text(&o.stdout)
    );
    let (lineage, serial) = stored(&pg, "default");
    assert_eq!(serde_json::json!(lineage), local["lineage"]);
    assert_eq!(serde_json::json!(serial), local["serial"]);
    let o = pg_run(&pg, dir.path(), &["state", "pull"], 0);
    let pulled: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(
        pulled, local,
        "state pull gives the migrated state, salt included"
    );
    assert!(pulled["secret_salt"].is_string());
    // a second migration is a no-op
    let o = pg_run(&pg, dir.path(), &["init", "--migrate-state"], 0);
    assert!(
        text(&o.stdout).contains("already in the pg backend"),
        "{}",
        text(&o.stdout)
    );
    pg_run(&pg, dir.path(), &["plan", "--detailed-exitcode"], 0);

    // workspaces
    let o = pg_run(&pg, dir.path(), &["workspace", "new", "staging"], 0);
    assert!(text(&o.stdout).contains("staging"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".mirrorplan/environment"))
            .unwrap_or_default()
            .trim(),
        "staging"
    );
    let o = pg_run(&pg, dir.path(), &["workspace", "show"], 0);
    assert_eq!(text(&o.stdout).trim(), "staging");
    // staging's state is empty: everything is to add there
    pg_run(&pg, dir.path(), &["plan", "--detailed-exitcode"], 2);
    let o = pg_run(&pg, dir.path(), &["apply", "--auto-approve"], 0);
    assert!(
        text(&o.stdout).contains("site = \"staging\""),
        "{}",
        text(&o.stdout)
    );
    let (staging_lineage, _) = stored(&pg, "staging");
    assert_ne!(staging_lineage, lineage);
    // default is untouched
    assert_eq!(stored(&pg, "default"), (lineage.clone(), serial));
    let o = pg_cmd(&pg, dir.path(), &["output", "site"])
        .env("MIRRORPLAN_WORKSPACE", "default")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text(&o.stdout).trim(), "default", "{}", text(&o.stderr));
    let o = pg_run(&pg, dir.path(), &["workspace", "list"], 0);
    assert_eq!(text(&o.stdout), "  default\n* staging\n");
    // delete: not the selected one, not a non-empty one without --force
    let o = pg_run(&pg, dir.path(), &["workspace", "delete", "staging"], 1);
    assert!(text(&o.stderr).contains("selected"), "{}", text(&o.stderr));
    pg_run(&pg, dir.path(), &["workspace", "select", "default"], 0);
    let o = pg_run(&pg, dir.path(), &["workspace", "select", "nope"], 1);
    assert!(
        text(&o.stderr).contains("does not exist"),
        "{}",
        text(&o.stderr)
    );
    let o = pg_run(&pg, dir.path(), &["workspace", "delete", "staging"], 1);
    assert!(text(&o.stderr).contains("not empty"), "{}", text(&o.stderr));
    pg_run(
        &pg,
        dir.path(),
        &["workspace", "delete", "staging", "--force"],
        0,
    );
    let o = pg_run(&pg, dir.path(), &["workspace", "list"], 0);
    assert_eq!(text(&o.stdout), "* default\n");
    assert_eq!(
        sql(&pg, "SELECT string_agg(name, ',') FROM mirrorplan.states"),
        "default"
    );
    pg_run(&pg, dir.path(), &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn local_workspaces_keep_one_state_file_each() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let o = run_ok(dir, &["workspace", "new", "prod"], 0);
    assert!(text(&o.stdout).contains("prod"));
    assert!(dir.join(".mirrorplan/workspaces/prod/state.json").is_file());
    run_ok(dir, &["plan", "--detailed-exitcode"], 2);
    let o = run_ok(dir, &["workspace", "list"], 0);
    assert_eq!(text(&o.stdout), "  default\n* prod\n");
    run_ok(dir, &["workspace", "select", "default"], 0);
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);
    let o = run_ok(dir, &["workspace", "new", "Bad/name"], 1);
    assert!(text(&o.stderr).contains("not a valid workspace name"));
    let o = bin()
        .env("MIRRORPLAN_WORKSPACE", "prod")
        .arg("-C")
        .arg(dir)
        .args(["workspace", "show"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text(&o.stdout).trim(), "prod");
    run_ok(dir, &["workspace", "delete", "prod"], 0);
    assert!(!dir.join(".mirrorplan/workspaces/prod").exists());
    let o = run_ok(dir, &["workspace", "delete", "default"], 1);
    assert!(text(&o.stderr).contains("cannot delete the default workspace"));
}

#[test]
fn local_state_pull_and_push_check_lineage_and_serial() {
    let cfg = local_nodes_config(1);
    let dir = cfg.path();
    run_ok(dir, &["apply", "--auto-approve"], 0);
    let o = run_ok(dir, &["state", "pull"], 0);
    assert_eq!(
        o.stdout,
        std::fs::read(state_path(dir)).unwrap_or_default(),
        "pull prints the state file as stored, salt included"
    );
    let file = dir.join("backup.json");
    std::fs::write(&file, &o.stdout).unwrap_or_else(|e| panic!("{e}"));
    let mut state: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("pull: {e}"));
    assert!(state["secret_salt"].is_string());
    let serial = state["serial"].as_u64().unwrap_or(0);
    let o = run_ok(dir, &["state", "push", "backup.json"], 0);
    assert!(
        text(&o.stdout).contains("nothing was written"),
        "{}",
        text(&o.stdout)
    );
    // another lineage is refused, and nothing is written
    let before = std::fs::read(state_path(dir)).unwrap_or_default();
    state["lineage"] = serde_json::json!("00000000-0000-4000-8000-000000000000");
    std::fs::write(&file, serde_json::to_vec(&state).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(dir, &["state", "push", "backup.json"], 1);
    let err = unwrapped(&text(&o.stderr));
    assert!(
        err.contains("push_refused") && err.contains("lineage"),
        "{err}"
    );
    assert_eq!(std::fs::read(state_path(dir)).unwrap_or_default(), before);
    // --force replaces it, lineage and serial as pushed
    run_ok(dir, &["state", "push", "--force", "backup.json"], 0);
    let now: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_path(dir)).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(now, state);
    assert_eq!(now["serial"].as_u64(), Some(serial));
    // a file that is not a state is refused with its name
    std::fs::write(&file, "{}").unwrap_or_else(|e| panic!("{e}"));
    let o = run_ok(dir, &["state", "push", "backup.json"], 1);
    assert!(
        text(&o.stderr).contains("backup.json"),
        "{}",
        text(&o.stderr)
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_password_appears_in_no_output_error_or_state() {
    let pg = start(false);
    let password = pg.password().to_owned();
    let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = checkout(shared.path(), 2);
    let mut outputs = vec![
        pg_run(&pg, dir.path(), &["init"], 0),
        pg_run(&pg, dir.path(), &["apply", "--auto-approve"], 0),
        pg_run(&pg, dir.path(), &["plan"], 0),
        pg_run(&pg, dir.path(), &["show", "--json"], 0),
        pg_run(&pg, dir.path(), &["state", "pull"], 0),
        pg_run(&pg, dir.path(), &["workspace", "list"], 0),
        pg_run(&pg, dir.path(), &["force-unlock", "no-such-id"], 1),
    ];
    // errors: a server that is not there, a wrong password, a bad setting
    let url = pg.conn_str();
    let wrong_port = url.replace(&format!(":{}/", pg.port()), ":1/");
    for (conn, extra) in [
        (wrong_port.as_str(), vec![]),
        (
            url.as_str(),
            vec!["--backend-config", "password=Other-Secret-42"],
        ),
        (url.as_str(), vec!["--backend-config", "sslmode=sometimes"]),
        (url.as_str(), vec!["--backend-config", "nonsense"]),
        (
            "postgres://mirrorplan:Other-Secret-42@127.0.0.1:1/x?frobnicate=1",
            vec![],
        ),
    ] {
        let mut args = vec!["plan"];
        args.extend(extra);
        let o = bin()
            .env("PG_CONN_STR", conn)
            .arg("-C")
            .arg(dir.path())
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert!(err.contains("pg") || err.contains("PostgreSQL"), "{err}");
        assert!(!err.contains("Other-Secret-42"), "{err}");
        outputs.push(o);
    }
    let wrong = outputs[outputs.len() - 4].stderr.clone();
    assert!(
        text(&wrong).contains("password authentication failed"),
        "{}",
        text(&wrong)
    );
    for o in &outputs {
        for stream in [&o.stdout, &o.stderr] {
            assert!(
                !text(stream).contains(&password),
                "the password was printed: {}",
                text(stream)
            );
        }
    }
    assert_eq!(
        sql(
            &pg,
            &format!("SELECT count(*) FROM mirrorplan.states WHERE data LIKE '%{password}%'")
        ),
        "0"
    );
    for f in files_under(dir.path()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !text(&bytes).contains(&password),
            "{} holds the password",
            f.display()
        );
    }
}

#[test]
fn state_mv_re_addresses_the_pg_state_and_refuses_a_taken_destination() {
    let pg = start(false);
    let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let a = checkout(shared.path(), 2);
    pg_run(&pg, a.path(), &["apply", "--auto-approve"], 0);
    let (lineage, serial) = stored(&pg, "default");
    let n =
        |c: &str, i: usize| format!("node.{c}[\"local:{}/nodes/n{i}\"]", shared.path().display());
    let o = pg_run(
        &pg,
        a.path(),
        &["state", "mv", &n("big", 0), &n("big", 1)],
        1,
    );
    assert!(
        text(&o.stderr).contains("mirrorplan::state::destination_exists"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(stored(&pg, "default"), (lineage.clone(), serial));
    pg_run(
        &pg,
        a.path(),
        &["state", "mv", "--lock=false", "cluster.big", "cluster.edge"],
        1,
    );

    let o = pg_run(
        &pg,
        a.path(),
        &["state", "mv", "cluster.big", "cluster.edge"],
        0,
    );
    assert!(
        text(&o.stdout).contains("3 instance(s) moved"),
        "{}",
        text(&o.stdout)
    );
    let (l2, s2) = stored(&pg, "default");
    assert_eq!(l2, lineage);
    assert!(s2 > serial);
    let listed = text(&pg_run(&pg, a.path(), &["state", "list"], 0).stdout);
    assert!(
        listed.contains(&n("edge", 0)) && listed.contains(&n("edge", 1)),
        "{listed}"
    );
    assert!(!listed.contains("big"), "{listed}");
    let main = a.path().join("main.hcl");
    let hcl = std::fs::read_to_string(&main).unwrap_or_default();
    std::fs::write(&main, hcl.replace("cluster \"big\"", "cluster \"edge\""))
        .unwrap_or_else(|e| panic!("{e}"));
    pg_run(&pg, a.path(), &["plan", "--detailed-exitcode"], 0);
}

/// Issue 14: `mirrorplan import` records through the configured backend
/// (under its lock, compare-and-swap save), like every state writer.
#[test]
fn import_records_through_the_pg_backend() {
    let pg = start(false);
    let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let a = checkout(shared.path(), 2);
    pg_run(&pg, a.path(), &["init"], 0);
    pg_run(&pg, a.path(), &["apply", "--auto-approve"], 0);
    let node = format!("node.big[\"local:{}/nodes/n1\"]", shared.path().display());
    pg_run(&pg, a.path(), &["state", "rm", &node], 0);
    let (lineage, serial) = stored(&pg, "default");
    let o = pg_run(&pg, a.path(), &["import", &node], 0);
    assert!(
        text(&o.stdout).contains("It already is as configured"),
        "{}",
        text(&o.stdout)
    );
    let (lineage_after, serial_after) = stored(&pg, "default");
    assert_eq!(lineage_after, lineage);
    assert_eq!(serial_after, serial + 1);
    let o = pg_run(&pg, a.path(), &["state", "list"], 0);
    assert!(
        text(&o.stdout).lines().any(|l| l == node),
        "{}",
        text(&o.stdout)
    );
    pg_run(&pg, a.path(), &["plan", "--detailed-exitcode"], 0);
    pg_run(&pg, a.path(), &["import", &node], 1);
    assert_eq!(sql(&pg, "SELECT count(*) FROM mirrorplan.locks"), "0");
}
