//! Adoption (`Action::Import`, `Engine::import`), `ignore_changes` and
//! `-replace` in the engine, with the in-memory provider.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use mirrorplan_engine::{
    Action, Address, ApplyRequest, Attrs, DesiredInstance, Engine, EngineError, InstanceRecord,
    Plan, PlanRequest, PriorSnapshot, SinkError, StateUpdate,
};
use support::{addr, desired, ident, record, snapshot, MemProvider};

fn request(desired: Vec<DesiredInstance>, prior: PriorSnapshot, replace: &[&str]) -> PlanRequest {
    PlanRequest {
        desired,
        prior,
        refresh: true,
        refresh_only: false,
        targets: vec![],
        replace: replace.iter().map(|a| addr(a)).collect(),
    }
}

fn change<'a>(plan: &'a Plan, a: &str) -> &'a mirrorplan_engine::ResourceChange {
    plan.changes
        .iter()
        .find(|c| c.address == addr(a))
        .unwrap_or_else(|| panic!("no change for {a}"))
}

#[tokio::test]
async fn what_exists_as_planned_is_recorded_without_a_provider_call() {
    let attrs = Attrs::new().with("host", "h1").with("port", 22);
    let mut p = MemProvider::with_world(&[("node.c[\"a\"]", attrs.clone())]);
    p.adopt = true;
    let p = Arc::new(p);
    let engine = Engine::new().with_provider(p.clone());
    let d = vec![
        desired("node.c[\"a\"]", attrs.clone(), &[]),
        desired("node.c[\"b\"]", attrs.clone(), &[]),
    ];
    let prior = snapshot(1, &[]);
    let plan = engine
        .plan(request(d, prior.clone(), &[]))
        .await
        .expect("plans");
    let a = change(&plan, "node.c[\"a\"]");
    assert_eq!(a.action, Action::Import);
    assert_eq!(a.details, ["already there"]);
    assert!(matches!(a.state_update, Some(StateUpdate::Set { .. })));
    assert_eq!(change(&plan, "node.c[\"b\"]").action, Action::Create);
    assert_eq!(plan.summary().import, 1);
    assert!(plan.has_changes());

    let mut saved: BTreeMap<Address, InstanceRecord> = BTreeMap::new();
    let mut sink = |a: &Address, r: Option<&InstanceRecord>| -> Result<(), SinkError> {
        if let Some(r) = r {
            saved.insert(a.clone(), r.clone());
        }
        Ok(())
    };
    let report = engine
        .apply(
            &plan,
            ApplyRequest {
                state: prior.identity.clone(),
                desired: None,
                sink: &mut sink,
                interrupt: p.interrupt.clone(),
            },
        )
        .await
        .expect("applies");
    assert!(report.is_success());
    assert!(report
        .done
        .contains(&(addr("node.c[\"a\"]"), Action::Import)));
    let events = p.events();
    assert!(
        !events.contains(&"start node.c[\"a\"]".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"start node.c[\"b\"]".to_string()),
        "{events:?}"
    );
    assert_eq!(
        saved.get(&addr("node.c[\"a\"]")),
        Some(&record(&attrs, &[]))
    );
}

#[tokio::test]
async fn import_reads_one_instance_and_records_what_it_found() {
    let attrs = Attrs::new().with("host", "h1").with("port", 22);
    let mut p = MemProvider::with_world(&[
        ("node.c[\"same\"]", attrs.clone()),
        ("node.c[\"other\"]", attrs.clone().with("port", 2222)),
    ]);
    p.adopt = true;
    let engine = Engine::new().with_provider(Arc::new(p));
    let same = engine
        .import(&desired("node.c[\"same\"]", attrs.clone(), &[]), &ident())
        .await
        .expect("imports");
    assert!(same.matches);
    assert_eq!(same.record, record(&attrs, &[]));
    let other = engine
        .import(&desired("node.c[\"other\"]", attrs.clone(), &[]), &ident())
        .await
        .expect("imports");
    assert!(!other.matches);
    assert_eq!(
        other.record.attributes.get("port"),
        Some(&serde_json::json!(2222))
    );
    let missing = engine
        .import(&desired("node.c[\"gone\"]", attrs, &[]), &ident())
        .await;
    assert!(matches!(missing, Err(EngineError::NothingToImport(_))));
}

#[tokio::test]
async fn ignored_attributes_keep_what_the_object_has() {
    let recorded = Attrs::new().with("host", "h1").with("owned", "ours");
    let now = recorded.clone().with("owned", "theirs");
    let p = Arc::new(MemProvider::with_world(&[("node.c[\"a\"]", now)]));
    let engine = Engine::new().with_provider(p.clone());
    let mut d = desired("node.c[\"a\"]", recorded.clone(), &[]);
    d.ignore_changes = vec!["own*".into()];
    let prior = snapshot(1, &[("node.c[\"a\"]", record(&recorded, &[]))]);
    let plan = engine
        .plan(request(vec![d.clone()], prior.clone(), &[]))
        .await
        .expect("plans");
    assert!(plan.drift.is_empty(), "{:?}", plan.drift);
    assert_eq!(change(&plan, "node.c[\"a\"]").action, Action::NoOp);
    assert!(!plan.has_changes());

    // without the rule: drift and an update
    d.ignore_changes.clear();
    let plan = engine
        .plan(request(vec![d], prior, &[]))
        .await
        .expect("plans");
    assert_eq!(plan.drift.len(), 1);
    assert_eq!(change(&plan, "node.c[\"a\"]").action, Action::Update);
}

#[tokio::test]
async fn replace_re_applies_one_instance_and_names_unknown_addresses() {
    let attrs = Attrs::new().with("host", "h1");
    let p = Arc::new(MemProvider::with_world(&[
        ("node.c[\"a\"]", attrs.clone()),
        ("node.c[\"b\"]", attrs.clone()),
    ]));
    let engine = Engine::new().with_provider(p);
    let d = vec![
        desired("node.c[\"a\"]", attrs.clone(), &[]),
        desired("node.c[\"b\"]", attrs.clone(), &[]),
    ];
    let prior = snapshot(
        1,
        &[
            ("node.c[\"a\"]", record(&attrs, &[])),
            ("node.c[\"b\"]", record(&attrs, &[])),
        ],
    );
    let plan = engine
        .plan(request(d.clone(), prior.clone(), &["node.c[\"a\"]"]))
        .await
        .expect("plans");
    let a = change(&plan, "node.c[\"a\"]");
    assert_eq!(a.action, Action::Replace);
    assert!(a.replace_requested);
    assert_eq!(change(&plan, "node.c[\"b\"]").action, Action::NoOp);
    let text = mirrorplan_engine::render_plan(&plan, Default::default());
    assert!(
        text.contains("# node.c[\"a\"] must be replaced, as requested: it will be re-applied"),
        "{text}"
    );

    let err = engine
        .plan(request(d, prior, &["node.c[\"c\"]"]))
        .await
        .expect_err("unknown address");
    assert!(
        matches!(
            &err,
            EngineError::ReplaceNotFound(a, Some(s)) if *a == addr("node.c[\"c\"]") && s.starts_with("node.c[")
        ),
        "{err:?}"
    );
}
