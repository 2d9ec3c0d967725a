//! The pg backend against a real PostgreSQL (the harness's, on loopback).

use std::collections::BTreeMap;
use std::time::Duration;

use mirrorplan_harness::{Postgres, PostgresOptions};
use mirrorplan_state::{Backend, LockRequest, PushOutcome, SaveOutcome, State};
use mirrorplan_state_pg::{PgBackend, PgSettings};

fn settings(conn_str: &str, overrides: &[(&str, &str)]) -> PgSettings {
    let block = BTreeMap::from([("conn_str".to_owned(), conn_str.to_owned())]);
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    PgSettings::resolve(&block, &|_| None, &overrides).unwrap_or_else(|e| panic!("{e}"))
}

fn backend(pg: &Postgres, workspace: &str) -> PgBackend {
    PgBackend::connect(settings(&pg.conn_str(), &[]), workspace)
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn start(tls: bool) -> Postgres {
    Postgres::start(PostgresOptions { tls }).unwrap_or_else(|e| panic!("postgres: {e}"))
}

#[test]
fn saves_are_compare_and_swap_and_workspaces_are_separate() {
    let pg = start(false);
    let a = backend(&pg, "default");
    let b = backend(&pg, "default");
    assert!(a.load().unwrap_or_else(|e| panic!("{e}")).is_none());
    let mut s = State::new();
    assert_eq!(
        a.save(&mut s).unwrap_or_else(|e| panic!("{e}")),
        SaveOutcome::Created { serial: 1 }
    );
    assert_eq!(
        a.save(&mut s).unwrap_or_else(|e| panic!("{e}")),
        SaveOutcome::Unchanged { serial: 1 }
    );
    // b loads serial 1; a moves on to 2; b's save must fail and write nothing
    let mut stale = b.load().unwrap_or_else(|e| panic!("{e}")).expect("stored");
    s.set_output("x", serde_json::json!("from a"));
    assert_eq!(
        a.save(&mut s).unwrap_or_else(|e| panic!("{e}")),
        SaveOutcome::Updated {
            previous_serial: 1,
            serial: 2
        }
    );
    stale.set_output("x", serde_json::json!("from b"));
    let err = b
        .save(&mut stale)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("serial 2") && err.contains("serial 1"),
        "{err}"
    );
    let row = pg
        .psql("SELECT serial, data LIKE '%from a%' FROM mirrorplan.states WHERE name = 'default'")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row, "2|t");
    // the table layout of the documentation
    let cols = pg
        .psql(
            "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_schema = 'mirrorplan' AND table_name = 'states'",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cols,
        "id:bigint,name:text,lineage:text,serial:bigint,data:text"
    );
    // another workspace is another row
    let prod = a.select("prod").unwrap_or_else(|e| panic!("{e}"));
    assert!(prod.load().unwrap_or_else(|e| panic!("{e}")).is_none());
    let mut p = State::new();
    prod.save(&mut p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        a.workspaces().unwrap_or_else(|e| panic!("{e}")),
        vec!["default", "prod"]
    );
    assert_eq!(
        a.load()
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|s| s.lineage()),
        Some(s.lineage())
    );
    // push: an older serial is refused, --force overrides, serial kept
    let mut older = s.clone();
    older.set_output("x", serde_json::json!("older"));
    let older = State::clone(&older);
    let refused = a
        .push(&older, false)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("same serial"), "{refused}");
    assert_eq!(
        a.push(&older, true).unwrap_or_else(|e| panic!("{e}")),
        PushOutcome::Written
    );
    a.delete_workspace("prod").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        a.workspaces().unwrap_or_else(|e| panic!("{e}")),
        vec!["default"]
    );
}

#[test]
fn the_lock_is_per_workspace_names_its_holder_and_dies_with_its_session() {
    let pg = start(false);
    let a = backend(&pg, "default");
    let b = backend(&pg, "default");
    let held = a
        .lock(LockRequest::new("apply", Duration::ZERO))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = b
        .lock(LockRequest::new("plan", Duration::from_millis(500)))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("is locked") && err.contains("for `apply`") && err.contains(&held.info().who),
        "{err}"
    );
    // another workspace is not blocked
    let other = b.select("staging").unwrap_or_else(|e| panic!("{e}"));
    drop(
        other
            .lock(LockRequest::new("apply", Duration::ZERO))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    drop(held);
    let again = b
        .lock(LockRequest::new("apply", Duration::ZERO))
        .unwrap_or_else(|e| panic!("after release: {e}"));
    // a session that ends (a killed holder) frees the lock: terminate it
    pg.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut waited = 0;
    let third = loop {
        match a.lock(LockRequest::new("apply", Duration::from_secs(5))) {
            Ok(l) => break l,
            Err(e) if waited < 3 => {
                waited += 1;
                eprintln!("retrying: {e}");
            }
            Err(e) => panic!("the terminated session still holds the lock: {e}"),
        }
    };
    // the stale row of the dead holder was overwritten
    let info = pg
        .psql("SELECT info FROM mirrorplan.locks WHERE name = 'default'")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(info.contains(&third.info().id), "{info}");
    drop(again);
}

#[test]
fn tls_verify_full_with_a_private_ca_and_no_password_in_errors() {
    let pg = start(true);
    let ok = PgBackend::connect(settings(&pg.conn_str(), &[]), "default");
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
    // verify-full without the private CA fails (Mozilla roots only)
    let no_ca = pg
        .conn_str()
        .split('&')
        .next()
        .unwrap_or_default()
        .to_owned();
    let err = PgBackend::connect(settings(&no_ca, &[]), "default")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains(pg.password()), "{err}");
    // a wrong password: the server says so, the password given is not shown
    let err = PgBackend::connect(
        settings(&pg.conn_str(), &[("password", "wrong-secret-123")]),
        "default",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-secret-123"), "{err}");
}
