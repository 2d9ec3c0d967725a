//! Apply walk tests: ordering, parallelism, failures, interrupts, saved
//! plans (stale, damaged, configuration changed) and secrets.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirrorplan_engine::{
    render_apply_report, Action, Address, ApplyRequest, Attrs, DesiredInstance, Engine,
    EngineError, InstanceRecord, Plan, PlanRequest, PriorSnapshot, RenderOptions, SinkError,
};
use support::{
    addr, apply, desired, ident, record, snapshot, MemProvider, OnStart, Saved, LINEAGE,
};

async fn plan(engine: &Engine, desired: Vec<DesiredInstance>, prior: PriorSnapshot) -> Plan {
    engine
        .plan(PlanRequest {
            desired,
            prior,
            refresh: true,
            refresh_only: false,
            targets: vec![],
            replace: vec![],
        })
        .await
        .expect("plans")
}

fn chain() -> Vec<DesiredInstance> {
    vec![
        desired("cluster.prod", Attrs::new().with("n", 1), &[]),
        desired(
            "image.s[\"a\"]",
            Attrs::new().with("n", 2),
            &["cluster.prod"],
        ),
        desired(
            "node.prod[\"h\"]",
            Attrs::new().with("n", 3),
            &["image.s[\"a\"]"],
        ),
        desired("image.z[\"independent\"]", Attrs::new(), &[]),
    ]
}

#[tokio::test]
async fn creates_follow_dependencies_and_state_is_saved_after_each() {
    let provider = Arc::new(MemProvider::default());
    let engine = Engine::new().with_provider(provider.clone());
    let prior = snapshot(3, &[]);
    let p = plan(&engine, chain(), prior.clone()).await;
    let saved = Saved::default();
    let report = apply(&engine, &p, &provider, &prior, &saved).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.done.len(), 4);
    let pos = |e: &str| provider.position(e);
    // Each dependent starts only after its dependency ended and was saved.
    assert!(pos("saved cluster.prod") < pos("start image.s[\"a\"]"));
    assert!(pos("end cluster.prod") < pos("saved cluster.prod"));
    assert!(pos("saved image.s[\"a\"]") < pos("start node.prod[\"h\"]"));
    let saved = saved.lock().expect("lock");
    assert_eq!(saved.len(), 4);
    assert_eq!(
        saved[&addr("node.prod[\"h\"]")].dependencies,
        ["image.s[\"a\"]"]
    );
    insta::assert_snapshot!(
        "apply_complete",
        render_apply_report(&report, RenderOptions::default())
    );
}

#[tokio::test]
async fn deletes_run_in_reverse_dependency_order() {
    let world: Vec<(&str, Attrs)> = ["cluster.prod", "image.s[\"a\"]", "node.prod[\"h\"]"]
        .into_iter()
        .map(|a| (a, Attrs::new()))
        .collect();
    let provider = Arc::new(MemProvider::with_world(&world));
    let engine = Engine::new().with_provider(provider.clone());
    let prior = snapshot(
        3,
        &[
            ("cluster.prod", record(&Attrs::new(), &[])),
            ("image.s[\"a\"]", record(&Attrs::new(), &["cluster.prod"])),
            (
                "node.prod[\"h\"]",
                record(&Attrs::new(), &["image.s[\"a\"]"]),
            ),
        ],
    );
    let p = plan(&engine, vec![], prior.clone()).await;
    assert!(p.changes.iter().all(|c| c.action == Action::Delete));
    let saved = Saved::default();
    let report = apply(&engine, &p, &provider, &prior, &saved).await;
    assert!(report.is_success(), "{report:?}");
    let pos = |e: &str| provider.position(e);
    assert!(pos("saved node.prod[\"h\"]") < pos("start image.s[\"a\"]"));
    assert!(pos("saved image.s[\"a\"]") < pos("start cluster.prod"));
    assert!(provider.world.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn parallelism_is_never_exceeded() {
    let provider = Arc::new(MemProvider {
        sleep: Some(Duration::from_millis(5)),
        ..Default::default()
    });
    let engine = Engine::new()
        .with_provider(provider.clone())
        .with_parallelism(3);
    let desired: Vec<DesiredInstance> = (0..12)
        .map(|k| desired(&format!("image.s[\"{k}\"]"), Attrs::new(), &[]))
        .collect();
    let prior = snapshot(0, &[]);
    let p = plan(&engine, desired, prior.clone()).await;
    provider.max.store(0, Ordering::SeqCst);
    let report = apply(&engine, &p, &provider, &prior, &Saved::default()).await;
    assert_eq!(report.done.len(), 12);
    // All 12 are independent: the walk fills every slot, and never more.
    assert_eq!(provider.max.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn dependents_of_a_failure_are_skipped() {
    let mut provider = MemProvider::default();
    provider.fail.insert(addr("image.s[\"a\"]"));
    let provider = Arc::new(provider);
    let engine = Engine::new().with_provider(provider.clone());
    let prior = snapshot(0, &[]);
    let p = plan(&engine, chain(), prior.clone()).await;
    let saved = Saved::default();
    let report = apply(&engine, &p, &provider, &prior, &saved).await;
    assert_eq!(
        report.failed,
        [(addr("image.s[\"a\"]"), "registry said 500".to_owned())]
    );
    assert_eq!(
        report.skipped,
        [(
            addr("node.prod[\"h\"]"),
            "skipped because image.s[\"a\"] failed".to_owned()
        )]
    );
    assert!(!provider
        .events()
        .iter()
        .any(|e| e == "start node.prod[\"h\"]"));
    let mut done: Vec<Address> = report.done.iter().map(|(a, _)| a.clone()).collect();
    done.sort();
    assert_eq!(
        done,
        [addr("cluster.prod"), addr("image.z[\"independent\"]")]
    );
    assert_eq!(saved.lock().expect("lock").len(), 2);
    insta::assert_snapshot!(
        "apply_failed",
        render_apply_report(&report, RenderOptions::default())
    );
}

#[tokio::test]
async fn first_interrupt_finishes_running_work_and_starts_nothing_new() {
    let mut provider = MemProvider::default();
    provider
        .on_start
        .insert(addr("image.s[\"0\"]"), OnStart::SignalOnce);
    let provider = Arc::new(provider);
    let engine = Engine::new()
        .with_provider(provider.clone())
        .with_parallelism(1);
    let desired: Vec<DesiredInstance> = (0..3)
        .map(|k| desired(&format!("image.s[\"{k}\"]"), Attrs::new(), &[]))
        .collect();
    let prior = snapshot(0, &[]);
    let p = plan(&engine, desired, prior.clone()).await;
    let saved = Saved::default();
    let report = apply(&engine, &p, &provider, &prior, &saved).await;
    assert!(report.interrupted);
    assert_eq!(report.done, [(addr("image.s[\"0\"]"), Action::Create)]);
    assert_eq!(report.skipped.len(), 2);
    assert!(report
        .skipped
        .iter()
        .all(|(_, why)| why == "not started: interrupted"));
    assert_eq!(saved.lock().expect("lock").len(), 1);
    insta::assert_snapshot!(
        "apply_interrupted",
        render_apply_report(&report, RenderOptions::default())
    );
}

#[tokio::test]
async fn second_interrupt_abandons_running_work() {
    let mut provider = MemProvider::default();
    provider
        .on_start
        .insert(addr("image.s[\"1\"]"), OnStart::SignalTwiceAndHang);
    let provider = Arc::new(provider);
    let engine = Engine::new()
        .with_provider(provider.clone())
        .with_parallelism(1);
    let desired: Vec<DesiredInstance> = (0..3)
        .map(|k| desired(&format!("image.s[\"{k}\"]"), Attrs::new(), &[]))
        .collect();
    let prior = snapshot(0, &[]);
    let p = plan(&engine, desired, prior.clone()).await;
    let saved = Saved::default();
    let report = apply(&engine, &p, &provider, &prior, &saved).await;
    assert!(report.interrupted);
    assert_eq!(report.done, [(addr("image.s[\"0\"]"), Action::Create)]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, addr("image.s[\"1\"]"));
    assert!(report.failed[0].1.contains("aborted"));
    assert_eq!(
        report.skipped,
        [(
            addr("image.s[\"2\"]"),
            "not started: interrupted".to_owned()
        )]
    );
    // State is valid as of the last completed instance.
    let saved = saved.lock().expect("lock");
    assert_eq!(saved.keys().collect::<Vec<_>>(), [&addr("image.s[\"0\"]")]);
}

#[tokio::test]
async fn sink_failure_stops_the_walk() {
    let provider = Arc::new(MemProvider::default());
    let engine = Engine::new()
        .with_provider(provider.clone())
        .with_parallelism(1);
    let prior = snapshot(0, &[]);
    let p = plan(&engine, chain(), prior.clone()).await;
    let mut sink = |_: &Address, _: Option<&InstanceRecord>| -> Result<(), SinkError> {
        Err(SinkError {
            message: "disk full".into(),
        })
    };
    let report = engine
        .apply(
            &p,
            ApplyRequest {
                state: prior.identity.clone(),
                desired: None,
                sink: &mut sink,
                interrupt: Default::default(),
            },
        )
        .await
        .expect("apply starts");
    assert_eq!(report.state_error.as_deref(), Some("disk full"));
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.skipped.len(), 3);
    assert_eq!(
        provider
            .events()
            .iter()
            .filter(|e| e.starts_with("start"))
            .count(),
        1
    );
}

fn secret_setup() -> (Vec<DesiredInstance>, PriorSnapshot) {
    let desired = vec![desired(
        "image.s[\"a\"]",
        Attrs::new()
            .with("user", "bob")
            .with_sensitive("password", "s3cret-at-apply"),
        &[],
    )];
    (desired, snapshot(5, &[]))
}

#[tokio::test]
async fn saved_plan_applies_with_secrets_from_the_configuration() {
    let provider = Arc::new(MemProvider::default());
    let engine = Engine::new().with_provider(provider.clone());
    let (desired, prior) = secret_setup();
    let fresh = plan(&engine, desired.clone(), prior.clone()).await;
    assert!(fresh.has_secrets());
    let bytes = fresh.to_file_bytes(&ident()).expect("serialisable");
    assert!(!String::from_utf8_lossy(&bytes).contains("s3cret-at-apply"));
    let loaded = Plan::from_file_bytes(&bytes, &ident()).expect("loads");
    assert!(!loaded.has_secrets());

    let mut saved = BTreeMap::new();
    let mut sink = |a: &Address, r: Option<&InstanceRecord>| -> Result<(), SinkError> {
        if let Some(r) = r {
            saved.insert(a.clone(), r.clone());
        }
        Ok(())
    };
    // Without the configuration, the secrets are missing.
    let err = engine
        .apply(
            &loaded,
            ApplyRequest {
                state: prior.identity.clone(),
                desired: None,
                sink: &mut sink,
                interrupt: Default::default(),
            },
        )
        .await
        .expect_err("secrets needed");
    assert!(matches!(err, EngineError::MissingSecrets(_)), "{err}");

    let report = engine
        .apply(
            &loaded,
            ApplyRequest {
                state: prior.identity.clone(),
                desired: Some(desired),
                sink: &mut sink,
                interrupt: Default::default(),
            },
        )
        .await
        .expect("applies");
    assert!(report.is_success(), "{report:?}");
    let received = provider.received.lock().expect("lock");
    assert_eq!(
        received[0].get("password").and_then(|v| v.as_str()),
        Some("s3cret-at-apply")
    );
    let record = &saved[&addr("image.s[\"a\"]")];
    let text = serde_json::to_string(record).expect("serialisable");
    assert!(
        !text.contains("s3cret-at-apply") && text.contains("blake3:"),
        "{text}"
    );
}

/// Defence in depth behind the keyed checksum: even a plan value whose
/// `after` was changed in memory (as an edited file would be) is not what
/// apply uses; every attribute the configuration gives comes from the
/// configuration evaluated at apply time.
#[tokio::test]
async fn saved_plan_takes_every_configured_value_from_the_configuration() {
    let provider = Arc::new(MemProvider::default());
    let engine = Engine::new().with_provider(provider.clone());
    let (desired, prior) = secret_setup();
    let fresh = plan(&engine, desired.clone(), prior.clone()).await;
    let bytes = fresh.to_file_bytes(&ident()).expect("serialisable");
    let mut loaded = Plan::from_file_bytes(&bytes, &ident()).expect("loads");
    let after = loaded.changes[0].after.as_mut().expect("an after");
    after.insert("user".into(), "eve".into());
    let mut sink = |_: &Address, _: Option<&InstanceRecord>| -> Result<(), SinkError> { Ok(()) };
    let report = engine
        .apply(
            &loaded,
            ApplyRequest {
                state: prior.identity.clone(),
                desired: Some(desired),
                sink: &mut sink,
                interrupt: Default::default(),
            },
        )
        .await
        .expect("applies");
    assert!(report.is_success(), "{report:?}");
    let received = provider.received.lock().expect("lock");
    assert_eq!(
        received[0].get("user").and_then(|v| v.as_str()),
        Some("bob")
    );
}

#[tokio::test]
async fn saved_plan_refused_when_configuration_changed() {
    let provider = Arc::new(MemProvider::default());
    let engine = Engine::new().with_provider(provider.clone());
    let (desired, prior) = secret_setup();
    let fresh = plan(&engine, desired.clone(), prior.clone()).await;
    let loaded = Plan::from_file_bytes(
        &fresh.to_file_bytes(&ident()).expect("serialisable"),
        &ident(),
    )
    .expect("loads");
    let mut sink = |_: &Address, _: Option<&InstanceRecord>| -> Result<(), SinkError> { Ok(()) };

    let mut other_secret = desired.clone();
    other_secret[0]
        .attrs
        .insert_sensitive("password", "another");
    let mut extra = desired.clone();
    extra.push(support::desired("image.s[\"new\"]", Attrs::new(), &[]));
    let mut public_change = desired.clone();
    public_change[0].attrs.insert("user", "alice");
    for changed in [other_secret, extra, public_change] {
        let err = engine
            .apply(
                &loaded,
                ApplyRequest {
                    state: prior.identity.clone(),
                    desired: Some(changed),
                    sink: &mut sink,
                    interrupt: Default::default(),
                },
            )
            .await
            .expect_err("refused");
        assert!(matches!(err, EngineError::ConfigChanged { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("configuration changed since the plan was made"));
        assert!(!err.to_string().contains("another"));
    }
    assert!(provider.events().iter().all(|e| !e.starts_with("start")));
}

#[tokio::test]
async fn stale_plan_is_refused() {
    let provider = Arc::new(MemProvider::default());
    let engine = Engine::new().with_provider(provider.clone());
    let (desired, prior) = secret_setup();
    let p = plan(&engine, desired, prior.clone()).await;
    let mut sink = |_: &Address, _: Option<&InstanceRecord>| -> Result<(), SinkError> { Ok(()) };
    let mut moved = prior.identity.clone();
    moved.serial += 1;
    let mut other = prior.identity.clone();
    other.lineage = "another-lineage".into();
    for state in [moved, other] {
        let err = engine
            .apply(
                &p,
                ApplyRequest {
                    state,
                    desired: None,
                    sink: &mut sink,
                    interrupt: Default::default(),
                },
            )
            .await
            .expect_err("stale");
        assert!(matches!(err, EngineError::StalePlan { .. }), "{err}");
        assert!(err.to_string().contains(LINEAGE));
    }
    assert!(provider.events().iter().all(|e| !e.starts_with("start")));
}

#[tokio::test]
async fn damaged_plan_files_are_refused() {
    let provider = Arc::new(MemProvider::default());
    let engine = Engine::new().with_provider(provider);
    let (desired, prior) = secret_setup();
    let p = plan(&engine, desired, prior).await;
    let bytes = p.to_file_bytes(&ident()).expect("serialisable");
    let text = String::from_utf8(bytes.clone()).expect("UTF-8");
    // A loaded plan writes back to the same bytes.
    let loaded = Plan::from_file_bytes(&bytes, &ident()).expect("round trip");
    assert_eq!(loaded.to_file_bytes(&ident()).expect("serialisable"), bytes);

    let edited = text.replace("\"user\": \"bob\"", "\"user\": \"eve\"");
    assert_ne!(edited, text);
    let truncated = &bytes[..bytes.len() / 2];
    let future = text.replace("\"version\": 2", "\"version\": 3");
    let old = text.replace("\"version\": 2", "\"version\": 1");
    let foreign = text.replace("mirrorplan-plan", "something-else");
    for (what, bad) in [
        ("truncated", truncated),
        ("future", future.as_bytes()),
        ("old", old.as_bytes()),
        ("foreign", foreign.as_bytes()),
    ] {
        let err = Plan::from_file_bytes(bad, &ident()).expect_err(what);
        assert!(matches!(err, EngineError::PlanFile { .. }), "{what}: {err}");
    }
    let err = Plan::from_file_bytes(edited.as_bytes(), &ident()).expect_err("edited");
    assert!(matches!(err, EngineError::PlanTampered), "{err}");
}

/// The checksum is keyed with the state's salt: an edit whose unkeyed
/// checksum is recomputed (all an attacker holding only the file can do) is
/// still refused, and so is a file checked against another state's key.
#[tokio::test]
async fn edited_plan_with_recomputed_checksum_is_refused() {
    let provider = Arc::new(MemProvider::default());
    let engine = Engine::new().with_provider(provider);
    let (desired, prior) = secret_setup();
    let p = plan(&engine, desired, prior).await;
    let bytes = p.to_file_bytes(&ident()).expect("serialisable");
    let mut file: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    file["body"]["changes"][0]["after"]["user"] = "eve".into();
    for checksum in [
        format!(
            "blake3:{}",
            blake3::hash(file["body"].to_string().as_bytes()).to_hex()
        ),
        format!(
            "blake3-keyed:{}",
            blake3::keyed_hash(&[0u8; 32], file["body"].to_string().as_bytes()).to_hex()
        ),
        format!(
            "blake3-keyed:{}",
            blake3::hash(file["body"].to_string().as_bytes()).to_hex()
        ),
    ] {
        file["checksum"] = checksum.clone().into();
        let forged = serde_json::to_vec(&file).expect("JSON");
        let err = Plan::from_file_bytes(&forged, &ident()).expect_err(&checksum);
        assert!(
            matches!(
                err,
                EngineError::PlanTampered | EngineError::PlanFile { .. }
            ),
            "{checksum}: {err}"
        );
    }
    // the intact file, checked with another state's salt
    let mut other = ident();
    other.secret_salt = mirrorplan_engine::Sensitive::new("another-salt".into());
    let err = Plan::from_file_bytes(&bytes, &other).expect_err("other key");
    assert!(matches!(err, EngineError::PlanTampered), "{err}");
    // and against another lineage: stale, not tampered
    let mut other = ident();
    other.lineage = "00000000-0000-4000-8000-000000000000".into();
    let err = Plan::from_file_bytes(&bytes, &other).expect_err("other lineage");
    assert!(matches!(err, EngineError::StalePlan { .. }), "{err}");
}

#[tokio::test]
async fn refresh_only_apply_updates_state_without_provider_calls() {
    let world = [("image.s[\"a\"]", Attrs::new().with("digest", "new"))];
    let provider = Arc::new(MemProvider::with_world(&world));
    let engine = Engine::new().with_provider(provider.clone());
    let prior = snapshot(
        2,
        &[
            (
                "image.s[\"a\"]",
                record(&Attrs::new().with("digest", "old"), &[]),
            ),
            ("image.s[\"gone\"]", record(&Attrs::new(), &[])),
        ],
    );
    let p = engine
        .plan(PlanRequest {
            desired: vec![],
            prior: prior.clone(),
            refresh: true,
            refresh_only: true,
            targets: vec![],
            replace: vec![],
        })
        .await
        .expect("plans");
    assert_eq!(p.summary().read, 2);
    let saved = Saved::default();
    saved
        .lock()
        .expect("lock")
        .insert(addr("image.s[\"gone\"]"), record(&Attrs::new(), &[]));
    let report = apply(&engine, &p, &provider, &prior, &saved).await;
    assert!(report.is_success());
    assert_eq!(report.done.len(), 2);
    let saved = saved.lock().expect("lock");
    assert_eq!(saved.len(), 1);
    assert_eq!(
        saved[&addr("image.s[\"a\"]")].attributes["digest"],
        serde_json::json!("new")
    );
    assert!(provider.events().iter().all(|e| !e.starts_with("start")));
}

#[derive(Default)]
struct RecordingHooks(Mutex<Vec<String>>);

impl mirrorplan_engine::Hooks for RecordingHooks {
    fn pre_refresh(&self, address: &Address) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("pre_refresh {address}"));
    }
    fn post_refresh(&self, address: &Address, outcome: Result<bool, &str>) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("post_refresh {address} {outcome:?}"));
    }
    fn pre_apply(&self, address: &Address, action: Action) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("pre_apply {address} {action}"));
    }
    fn progress(&self, address: &Address, progress: &mirrorplan_engine::Progress) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("progress {address} {progress:?}"));
    }
    fn post_apply(&self, address: &Address, action: Action, outcome: Result<(), &str>) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("post_apply {address} {action} {outcome:?}"));
    }
}

#[tokio::test]
async fn hooks_see_refresh_and_apply_in_order() {
    let world = [("image.s[\"old\"]", Attrs::new())];
    let provider = Arc::new(MemProvider::with_world(&world));
    let hooks = Arc::new(RecordingHooks::default());
    let engine = Engine::new()
        .with_provider(provider.clone())
        .with_hooks(hooks.clone())
        .with_parallelism(1);
    let prior = snapshot(1, &[("image.s[\"old\"]", record(&Attrs::new(), &[]))]);
    let p = plan(&engine, vec![], prior.clone()).await;
    apply(&engine, &p, &provider, &prior, &Saved::default()).await;
    let seen = hooks.0.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [
            "pre_refresh image.s[\"old\"]",
            "post_refresh image.s[\"old\"] Ok(true)",
            "pre_apply image.s[\"old\"] delete",
            "progress image.s[\"old\"] Message(\"working\")",
            "post_apply image.s[\"old\"] delete Ok(())",
        ]
    );
}
