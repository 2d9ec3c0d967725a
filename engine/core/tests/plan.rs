//! Data-driven plan tests: (desired + prior state + what refresh finds) →
//! the rendered human plan and JSON plan, as insta snapshots.

mod support;

use std::sync::Arc;

use mirrorplan_engine::{
    plan_json, render_plan, render_plan_json, Action, Attrs, DesiredInstance, Engine, EngineError,
    InstanceRecord, Plan, PlanRequest, RenderOptions,
};
use support::{addr, desired, ident, record, redact_digests, snapshot, MemProvider};

const SECRET: &str = "hunter2-super-secret";

struct Case {
    name: &'static str,
    desired: Vec<DesiredInstance>,
    prior: Vec<(&'static str, InstanceRecord)>,
    world: Vec<(&'static str, Attrs)>,
    refresh: bool,
    refresh_only: bool,
    targets: Vec<&'static str>,
}

impl Case {
    fn new(name: &'static str) -> Self {
        Case {
            name,
            desired: Vec::new(),
            prior: Vec::new(),
            world: Vec::new(),
            refresh: true,
            refresh_only: false,
            targets: Vec::new(),
        }
    }
}

fn node(port: u64, hosts_toml: &str) -> Attrs {
    Attrs::new()
        .with("host", "cp1.example")
        .with("port", port)
        .with("hosts_toml", hosts_toml)
}

const HOSTS_V1: &str = "server = \"https://gcr.io\"\n\n[host.\"https://mirror:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"/etc/containerd/certs.d/mirror/ca.crt\"\n";
const HOSTS_V2: &str = "server = \"https://gcr.io\"\n\n[host.\"https://mirror:5443\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"/etc/containerd/certs.d/mirror/ca.crt\"\n";

fn image(digest: &str) -> Attrs {
    Attrs::new()
        .with("source", "gcr.io/a/b:t")
        .with("digest", digest)
        .with_sensitive("password", SECRET)
}

fn cases() -> Vec<Case> {
    let n = "node.prod[\"cp1.example\"]";
    let i = "image.anthos[\"gcr.io/a/b:t\"]";
    let c = "cluster.prod";
    let mut out = Vec::new();

    let mut case = Case::new("create");
    case.desired = vec![
        desired(c, Attrs::new().with("name", "prod"), &[]),
        desired(i, image("sha256:aaa").with("blobs", 3), &[c]),
        desired(n, node(22, HOSTS_V1), &[c]),
    ];
    out.push(case);

    let mut case = Case::new("update");
    case.desired = vec![desired(n, node(2222, HOSTS_V2), &[])];
    case.prior = vec![(n, record(&node(22, HOSTS_V1), &[]))];
    case.world = vec![(n, node(22, HOSTS_V1))];
    out.push(case);

    let mut case = Case::new("replace");
    case.desired = vec![desired(
        n,
        node(22, HOSTS_V1).with("host", "cp2.example"),
        &[],
    )];
    case.prior = vec![(n, record(&node(22, HOSTS_V1), &[]))];
    case.world = vec![(n, node(22, HOSTS_V1))];
    out.push(case);

    let mut case = Case::new("delete");
    case.prior = vec![
        (c, record(&Attrs::new().with("name", "prod"), &[])),
        (i, record(&image("sha256:aaa"), &[c])),
    ];
    case.world = vec![
        (c, Attrs::new().with("name", "prod")),
        (i, image("sha256:aaa")),
    ];
    out.push(case);

    let mut case = Case::new("no_op");
    case.desired = vec![desired(i, image("sha256:aaa"), &[])];
    case.prior = vec![(i, record(&image("sha256:aaa"), &[]))];
    case.world = vec![(i, image("sha256:aaa"))];
    out.push(case);

    let mut case = Case::new("no_refresh_trusts_state");
    case.refresh = false;
    case.desired = vec![desired(i, image("sha256:aaa"), &[])];
    case.prior = vec![(i, record(&image("sha256:aaa"), &[]))];
    case.world = vec![];
    out.push(case);

    let mut case = Case::new("drift");
    case.desired = vec![
        desired(i, image("sha256:aaa"), &[]),
        desired(n, node(22, HOSTS_V1), &[]),
    ];
    case.prior = vec![
        (i, record(&image("sha256:aaa"), &[])),
        (n, record(&node(22, HOSTS_V1), &[])),
    ];
    case.world = vec![(
        n,
        node(22, HOSTS_V2).with_sensitive("token", "changed-outside"),
    )];
    out.push(case);

    let mut case = Case::new("refresh_only");
    case.refresh_only = true;
    case.desired = vec![
        desired(i, image("sha256:aaa"), &[]),
        desired(n, node(2222, HOSTS_V1), &[]),
    ];
    case.prior = vec![
        (i, record(&image("sha256:aaa"), &[])),
        (n, record(&node(22, HOSTS_V1), &[])),
    ];
    case.world = vec![(n, node(23, HOSTS_V1))];
    out.push(case);

    let mut case = Case::new("targets");
    case.targets = vec!["image.anthos"];
    case.desired = vec![
        desired(c, Attrs::new().with("name", "prod"), &[]),
        desired(i, image("sha256:aaa"), &[c]),
        desired(n, node(22, HOSTS_V1), &[]),
    ];
    out.push(case);

    let mut case = Case::new("sensitive_change");
    case.desired = vec![desired(
        i,
        image("sha256:aaa").with_sensitive("password", "a-new-secret-value"),
        &[],
    )];
    case.prior = vec![(i, record(&image("sha256:aaa"), &[]))];
    case.world = vec![(i, image("sha256:aaa"))];
    out.push(case);

    out
}

async fn plan_case(case: &Case) -> Result<Plan, EngineError> {
    let world: Vec<(&str, Attrs)> = case.world.iter().map(|(a, w)| (*a, w.clone())).collect();
    let provider = Arc::new(MemProvider::with_world(&world));
    let engine = Engine::new().with_provider(provider);
    engine
        .plan(PlanRequest {
            desired: case.desired.clone(),
            prior: snapshot(7, &case.prior),
            refresh: case.refresh,
            refresh_only: case.refresh_only,
            targets: case.targets.iter().map(|t| addr(t)).collect(),
            replace: vec![],
        })
        .await
}

#[tokio::test]
async fn plans_match_snapshots() {
    for case in cases() {
        let plan = plan_case(&case)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let human = render_plan(&plan, RenderOptions::default());
        let json = render_plan_json(&plan);
        let file = String::from_utf8(plan.to_file_bytes(&ident()).expect("serialisable"))
            .expect("plan files are UTF-8");
        for (what, text) in [("human", &human), ("json", &json), ("plan file", &file)] {
            assert!(
                !text.contains(SECRET)
                    && !text.contains("a-new-secret-value")
                    && !text.contains("changed-outside"),
                "{}: a secret leaked into the {what} output:\n{text}",
                case.name
            );
        }
        let debug = format!("{plan:?}");
        assert!(!debug.contains(SECRET), "{}: secret in Debug", case.name);
        insta::assert_snapshot!(format!("{}_human", case.name), human);
        insta::assert_snapshot!(format!("{}_json", case.name), json);
    }
}

#[tokio::test]
async fn plan_file_of_a_sensitive_plan_holds_digests_only() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "sensitive_change")
        .expect("case exists");
    let plan = plan_case(&case).await.expect("plans");
    let file =
        String::from_utf8(plan.to_file_bytes(&ident()).expect("serialisable")).expect("UTF-8");
    assert!(file.contains("blake3-keyed:"));
    insta::assert_snapshot!("sensitive_change_plan_file", redact_digests(&file));
}

#[tokio::test]
async fn summary_counts_replace_as_add_and_destroy() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "replace")
        .expect("case exists");
    let plan = plan_case(&case).await.expect("plans");
    let s = plan.summary();
    assert_eq!((s.add, s.change, s.destroy), (1, 0, 1));
    assert_eq!(plan.changes[0].action, Action::Replace);
    assert_eq!(plan.changes[0].replace_because, ["host"]);
    assert_eq!(plan_json(&plan)["summary"]["destroy"], 1);
}

#[tokio::test]
async fn colour_only_when_asked() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "update")
        .expect("case exists");
    let plan = plan_case(&case).await.expect("plans");
    assert!(!render_plan(
        &plan,
        RenderOptions {
            color: false,
            ..Default::default()
        }
    )
    .contains('\x1b'));
    assert!(render_plan(
        &plan,
        RenderOptions {
            color: true,
            ..Default::default()
        }
    )
    .contains("\x1b[33m~\x1b[0m"));
}

#[tokio::test]
async fn dependency_cycle_is_named() {
    let mut case = Case::new("cycle");
    case.desired = vec![
        desired("image.s[\"a\"]", Attrs::new(), &["image.s[\"b\"]"]),
        desired("image.s[\"b\"]", Attrs::new(), &["cluster.c"]),
        desired("cluster.c", Attrs::new(), &["image.s[\"a\"]"]),
    ];
    let err = plan_case(&case).await.expect_err("a cycle is refused");
    assert_eq!(
        err.to_string(),
        r#"dependency cycle: cluster.c -> image.s["a"] -> image.s["b"] -> cluster.c"#
    );
}

#[tokio::test]
async fn unknown_dependency_duplicate_and_unknown_target_are_refused() {
    let mut case = Case::new("unknown");
    case.desired = vec![desired("image.s[\"a\"]", Attrs::new(), &["cluster.nope"])];
    assert!(matches!(
        plan_case(&case).await,
        Err(EngineError::UnknownDependency { .. })
    ));
    case.desired = vec![
        desired("image.s[\"a\"]", Attrs::new(), &[]),
        desired("image.s[\"a\"]", Attrs::new(), &[]),
    ];
    assert!(matches!(
        plan_case(&case).await,
        Err(EngineError::DuplicateInstance(_))
    ));
    case.desired.pop();
    case.targets = vec!["node.x"];
    assert!(matches!(
        plan_case(&case).await,
        Err(EngineError::TargetNotFound(..))
    ));
}

#[tokio::test]
async fn unreachable_refresh_is_distinguished_from_drift() {
    let i = "image.s[\"a\"]";
    let mut provider = MemProvider::with_world(&[]);
    provider.unreachable.insert(addr(i));
    let engine = Engine::new().with_provider(Arc::new(provider));
    let err = engine
        .plan(PlanRequest {
            desired: vec![desired(i, Attrs::new(), &[])],
            prior: snapshot(1, &[(i, record(&Attrs::new(), &[]))]),
            refresh: true,
            refresh_only: false,
            targets: vec![],
            replace: vec![],
        })
        .await
        .expect_err("refresh fails");
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn an_unread_instance_the_provider_tolerates_is_planned_with_a_warning() {
    let down = "node.c[\"down\"]";
    let up = "node.c[\"up\"]";
    let attrs = node(22, HOSTS_V1);
    let changed = node(22, HOSTS_V2);
    let plan_with = |refresh_only: bool, tolerate: bool| {
        let mut provider = MemProvider::with_world(&[(down, attrs.clone()), (up, attrs.clone())]);
        provider.unreachable.insert(addr(down));
        provider.plan_unread = tolerate;
        let engine = Engine::new().with_provider(Arc::new(provider));
        let prior = snapshot(1, &[(down, record(&attrs, &[])), (up, record(&attrs, &[]))]);
        let desired = vec![
            desired(down, attrs.clone(), &[]),
            desired(up, changed.clone(), &[]),
        ];
        async move {
            engine
                .plan(PlanRequest {
                    desired,
                    prior,
                    refresh: true,
                    refresh_only,
                    targets: vec![],
                    replace: vec![],
                })
                .await
        }
    };
    // tolerated: the plan goes on; the unread instance is tried by apply
    let plan = plan_with(false, true).await.expect("plans");
    let actions: Vec<(String, Action)> = plan
        .changes
        .iter()
        .map(|c| (c.address.to_string(), c.action))
        .collect();
    assert_eq!(
        actions,
        [
            (down.to_string(), Action::Update),
            (up.to_string(), Action::Update)
        ]
    );
    let warnings: Vec<(String, String)> = plan
        .warnings()
        .map(|(a, w)| (a.to_string(), w.to_string()))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].0, down);
    assert!(warnings[0].1.contains("connection refused"), "{warnings:?}");
    assert!(warnings[0].1.contains("apply will try it"), "{warnings:?}");
    assert!(plan.drift.is_empty());
    let human = render_plan(&plan, RenderOptions::default());
    assert!(
        human.contains(&format!("Warning: {down} could not be read")),
        "{human}"
    );
    let json = plan_json(&plan);
    assert_eq!(json["warnings"][0]["address"], down);
    assert_eq!(json["format_version"], "1.2");
    let md = mirrorplan_engine::render_plan_markdown(&plan);
    assert!(md.contains("could not be read"), "{md}");
    // the warning survives a plan file
    let file = plan.to_file_bytes(&ident()).expect("serialisable");
    let back = Plan::from_file_bytes(&file, &ident()).expect("reads back");
    assert_eq!(back.warnings().count(), 1);
    // not tolerated, or a drift check: the plan stops
    let err = plan_with(false, false).await.expect_err("refused");
    assert!(err.is_unreachable(), "{err}");
    let err = plan_with(true, true).await.expect_err("refused");
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test]
async fn refresh_respects_parallelism() {
    let mut provider = MemProvider::with_world(&[]);
    provider.sleep = Some(std::time::Duration::from_millis(5));
    let provider = Arc::new(provider);
    let engine = Engine::new()
        .with_provider(provider.clone())
        .with_parallelism(4);
    let prior: Vec<(String, InstanceRecord)> = (0..16)
        .map(|k| (format!("image.s[\"{k}\"]"), record(&Attrs::new(), &[])))
        .collect();
    let prior_refs: Vec<(&str, InstanceRecord)> =
        prior.iter().map(|(a, r)| (a.as_str(), r.clone())).collect();
    let plan = engine
        .plan(PlanRequest {
            desired: vec![],
            prior: snapshot(1, &prior_refs),
            refresh: true,
            refresh_only: false,
            targets: vec![],
            replace: vec![],
        })
        .await
        .expect("plans");
    assert_eq!(
        provider
            .events()
            .iter()
            .filter(|e| e.starts_with("read"))
            .count(),
        16
    );
    assert_eq!(provider.max.load(std::sync::atomic::Ordering::SeqCst), 4);
    // Everything was found gone: drift, and the state forgets them.
    assert_eq!(plan.drift.len(), 16);
    assert!(plan
        .changes
        .iter()
        .all(|c| c.action == Action::NoOp && c.state_update.is_some()));
}
