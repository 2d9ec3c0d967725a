//! Moves (`moved` blocks) and hand-overs (a delete and a create of the
//! same physical object) through plan and apply.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use mirrorplan_engine::{
    render_plan, Action, Attrs, Engine, Move, PlanRequest, PriorSnapshot, RenderOptions,
};
use support::{addr, apply, desired, record, snapshot, MemProvider, Saved};

fn request(desired: Vec<mirrorplan_engine::DesiredInstance>, prior: PriorSnapshot) -> PlanRequest {
    PlanRequest {
        desired,
        prior,
        refresh: true,
        refresh_only: false,
        targets: vec![],
        replace: vec![],
    }
}

#[tokio::test]
async fn a_moved_instance_is_planned_at_its_new_address_and_only_the_state_changes() {
    let attrs = Attrs::new().with("n", 1);
    // the in-memory world is keyed by address: the object is read at its new one
    let provider = Arc::new(MemProvider::with_world(&[("node.b[\"h\"]", attrs.clone())]));
    let engine = Engine::new().with_provider(provider.clone());
    let prior = snapshot(1, &[("node.a[\"h\"]", record(&attrs, &[]))])
        .with_moves(vec![Move::new(addr("node.a"), addr("node.b"))]);
    let plan = engine
        .plan(request(
            vec![desired("node.b[\"h\"]", attrs, &[])],
            prior.clone(),
        ))
        .await
        .expect("plans");
    let c = &plan.changes[0];
    assert_eq!(
        (c.address.clone(), c.action),
        (addr("node.b[\"h\"]"), Action::NoOp)
    );
    assert_eq!(c.previous_address, Some(addr("node.a[\"h\"]")));
    assert!(plan.has_changes());
    let text = render_plan(&plan, RenderOptions::default());
    assert!(
        text.contains("# node.a[\"h\"] has moved to node.b[\"h\"]"),
        "{text}"
    );
    let saved = Saved::default();
    let report = apply(&engine, &plan, &provider, &prior, &saved).await;
    assert!(report.is_success(), "{report:?}");
    assert!(!provider.events().iter().any(|e| e.starts_with("start")));
    let saved = saved.lock().expect("lock");
    assert!(saved.contains_key(&addr("node.b[\"h\"]")));
    assert!(!saved.contains_key(&addr("node.a[\"h\"]")));
}

#[tokio::test]
async fn a_cycle_of_moves_is_an_error() {
    let attrs = Attrs::new();
    let engine = Engine::new().with_provider(Arc::new(MemProvider::default()));
    let prior = snapshot(1, &[("node.a[\"h\"]", record(&attrs, &[]))]).with_moves(vec![
        Move::new(addr("node.a"), addr("node.b")),
        Move::new(addr("node.b"), addr("node.a")),
    ]);
    let err = engine
        .plan(request(vec![], prior))
        .await
        .expect_err("a cycle");
    assert!(
        err.to_string()
            .contains("node.a[\"h\"] -> node.b[\"h\"] -> node.a[\"h\"]"),
        "{err}"
    );
}

#[tokio::test]
async fn a_delete_and_a_create_of_one_object_are_a_hand_over_in_that_order() {
    let old = Attrs::new().with("physical", "host-1").with("n", 1);
    let provider = Arc::new(MemProvider::with_world(&[("node.a[\"h\"]", old.clone())]));
    let engine = Engine::new().with_provider(provider.clone());
    let prior = snapshot(1, &[("node.a[\"h\"]", record(&old, &[]))]);
    let new = Attrs::new().with("physical", "host-1").with("n", 2);
    let plan = engine
        .plan(request(
            vec![desired("node.b[\"h\"]", new, &[])],
            prior.clone(),
        ))
        .await
        .expect("plans");
    let by: BTreeMap<_, _> = plan
        .changes
        .iter()
        .map(|c| (c.address.clone(), c))
        .collect();
    assert_eq!(
        by[&addr("node.a[\"h\"]")].replaced_by,
        Some(addr("node.b[\"h\"]"))
    );
    assert_eq!(
        by[&addr("node.b[\"h\"]")].replaces,
        Some(addr("node.a[\"h\"]"))
    );
    let text = render_plan(&plan, RenderOptions::default());
    assert!(
        text.contains("# node.a[\"h\"] will be replaced by node.b[\"h\"] on the same node"),
        "{text}"
    );
    let report = apply(&engine, &plan, &provider, &prior, &Saved::default()).await;
    assert!(report.is_success(), "{report:?}");
    let pos = |e: &str| provider.position(e);
    assert!(pos("saved node.b[\"h\"]") < pos("start node.a[\"h\"]"));
    assert!(provider
        .events()
        .contains(&"handover node.a[\"h\"] to node.b[\"h\"]".to_string()));

    // the create fails: the old instance is left alone
    let mut failing = MemProvider::with_world(&[("node.a[\"h\"]", old.clone())]);
    failing.fail.insert(addr("node.b[\"h\"]"));
    let failing = Arc::new(failing);
    let engine = Engine::new().with_provider(failing.clone());
    let report = apply(&engine, &plan, &failing, &prior, &Saved::default()).await;
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert!(!failing.events().iter().any(|e| e == "start node.a[\"h\"]"));
}
