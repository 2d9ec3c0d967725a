//! `plan`, `apply` and `destroy`: configuration → instances → engine plan →
//! rendering → (apply) walk with state saved after every instance.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use miette::{miette, IntoDiagnostic, WrapErr};
use mirrorplan_config::Mode;
use mirrorplan_engine::{
    render_apply_report, render_plan, render_plan_json, render_plan_markdown, Action, Address,
    DesiredInstance, Engine, Hooks, InstanceRecord, Interrupt, Plan, PlanRequest, PriorSnapshot,
    Progress, RenderOptions, SinkError, StateIdentity,
};
use mirrorplan_node::cluster::ClusterProvider;
use mirrorplan_node::provider::{Connections, NodeProvider};
use mirrorplan_registry::provider::ImageProvider;
use mirrorplan_state::{LockRequest, State};

use crate::cli::{Format, PlanArgs, StateArgs};
use crate::commands::backend::{Lock, Store};
use crate::commands::config::{load_checked, load_options};
use crate::expand;
use crate::output::{Output, ProgressView};

/// The state store for these flags: the configured backend (local or
/// pg) and the selected workspace.
pub fn store(dir: &Path, state: &StateArgs) -> Store {
    Store::new(dir, state, None)
}

/// Takes the state lock unless `--lock=false`.
pub fn lock(store: &Store, state: &StateArgs, operation: &str) -> miette::Result<Option<Lock>> {
    if !state.lock {
        return Ok(None);
    }
    if state.state.is_none() {
        // the default `.mirrorplan/` is mirrorplan's own: kept private (a
        // directory named by --state is created 0700 but never changed)
        private_dirs(std::iter::once(
            store.dir().join(mirrorplan_state::DEFAULT_DIR).as_path(),
        ))?;
    }
    let request = LockRequest {
        operation: operation.to_string(),
        timeout: state.lock_timeout,
    };
    store.lock(request).map(Some).map_err(miette::Report::new)
}

/// The identity (lineage, serial, salt) the engine and plan files check.
pub fn identity(state: &State) -> StateIdentity {
    StateIdentity {
        lineage: state.lineage().to_string(),
        serial: state.serial(),
        secret_salt: mirrorplan_engine::Sensitive::new(state.secret_salt().to_string()),
    }
}

fn to_engine_record(r: &mirrorplan_state::InstanceRecord) -> InstanceRecord {
    InstanceRecord {
        provider: r.provider.clone(),
        attributes: r.attributes.clone().into_iter().collect(),
        sensitive: r.sensitive.clone(),
        dependencies: r.dependencies.clone(),
        digests: r.digests.clone(),
    }
}

pub fn to_state_record(r: &InstanceRecord) -> mirrorplan_state::InstanceRecord {
    let mut out = mirrorplan_state::InstanceRecord::new(r.provider.clone());
    out.attributes = r.attributes.clone().into_iter().collect();
    out.sensitive = r.sensitive.clone();
    out.dependencies = r.dependencies.clone();
    out.digests = r.digests.clone();
    out
}

/// States written before paths were recorded relative to the configuration
/// directory hold absolute paths under it (`/ckout/nodes/n1`,
/// `oci:/ckout/./store`, `bundle:/ckout/b.tar`): read them as the relative
/// paths this version records, so that upgrading plans no change. The rule
/// is the configuration's own ([`mirrorplan_config::syntax::config_relative`]),
/// with the directory resolved once.
struct LegacyPaths(Option<PathBuf>);

impl LegacyPaths {
    fn here() -> Self {
        LegacyPaths(std::fs::canonicalize(".").ok())
    }

    fn relocate(&self, value: &mut serde_json::Value) {
        let Some(dir) = &self.0 else {
            return;
        };
        match value {
            serde_json::Value::String(s) => {
                for scheme in ["", "oci:", "bundle:"] {
                    if let Some(rest) = s.strip_prefix(scheme).filter(|r| r.starts_with('/')) {
                        let rel = mirrorplan_config::syntax::config_relative_within(
                            Path::new("."),
                            Some(dir),
                            Path::new(rest),
                        );
                        if rel.is_relative() {
                            *s = format!("{scheme}{}", rel.display());
                        }
                        return;
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.relocate(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.relocate(v)),
            _ => {}
        }
    }

    fn record(&self, mut r: InstanceRecord) -> InstanceRecord {
        r.attributes.values_mut().for_each(|v| self.relocate(v));
        r
    }
}

/// The prior snapshot the engine plans against.
pub fn snapshot(state: &State) -> miette::Result<PriorSnapshot> {
    let legacy = LegacyPaths::here();
    let mut snap = PriorSnapshot::new(
        &state.lineage().to_string(),
        state.serial(),
        state.secret_salt(),
    );
    for (addr, rec) in state.instances() {
        let a: Address = addr.parse().map_err(|e| {
            miette!(
                code = "mirrorplan::state::bad_address",
                help = "remove the entry with `mirrorplan state rm`",
                "the state holds an invalid address {addr:?}: {e}"
            )
        })?;
        snap = snap.with_instance(a, legacy.record(to_engine_record(rec)));
    }
    Ok(snap)
}

/// [`snapshot`], consuming the state (nothing is copied).
pub fn snapshot_owned(state: State) -> miette::Result<PriorSnapshot> {
    let legacy = LegacyPaths::here();
    let mut snap = PriorSnapshot::new(
        &state.lineage().to_string(),
        state.serial(),
        state.secret_salt(),
    );
    for (addr, rec) in state.into_instances() {
        let a: Address = addr.parse().map_err(|e| {
            miette!(
                code = "mirrorplan::state::bad_address",
                help = "remove the entry with `mirrorplan state rm`",
                "the state holds an invalid address {addr:?}: {e}"
            )
        })?;
        snap.instances.insert(
            a,
            legacy.record(InstanceRecord {
                provider: rec.provider,
                attributes: rec.attributes.into_iter().collect(),
                sensitive: rec.sensitive,
                dependencies: rec.dependencies,
                digests: rec.digests,
            }),
        );
    }
    Ok(snap)
}

/// Progress on stderr, Terraform style: one line as each instance starts
/// and ends (with the bytes it pushed and their rate), byte progress as
/// bars on a terminal or an occasional line otherwise (see
/// [`ProgressView`]).
pub struct StderrHooks {
    started: Mutex<std::collections::HashMap<Address, Instant>>,
    quiet: bool,
    view: ProgressView,
}

impl StderrHooks {
    fn new(quiet: bool, bars: bool) -> Self {
        StderrHooks {
            started: Mutex::new(Default::default()),
            quiet,
            view: ProgressView::new(bars),
        }
    }

    /// Prints a line on stderr without tearing the bars.
    pub fn line(&self, text: &str) {
        self.view.line(text);
    }

    /// Clears the bars (after the walk, whatever its outcome).
    pub fn finish(&self) {
        self.view.finish();
    }
}

fn verb(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("Creating...", "Creation complete"),
        Action::Update => ("Modifying...", "Modifications complete"),
        Action::Replace => ("Replacing...", "Replacement complete"),
        Action::Delete => ("Destroying...", "Destruction complete"),
        Action::NoOp | Action::Read => ("Reading...", "Read complete"),
        Action::Import => ("Importing...", "Import complete"),
    }
}

impl Hooks for StderrHooks {
    fn pre_refresh(&self, address: &Address) {
        if !self.quiet {
            self.line(&format!("{address}: Refreshing state..."));
        }
    }
    fn pre_apply(&self, address: &Address, action: Action) {
        if let Ok(mut s) = self.started.lock() {
            s.insert(address.clone(), Instant::now());
        }
        self.line(&format!("{address}: {}", verb(action).0));
    }
    fn progress(&self, address: &Address, progress: &Progress) {
        match progress {
            Progress::Message(m) => self.line(&format!("{address}: {m}")),
            Progress::Bytes { done, total } => self.view.bytes(&address.to_string(), *done, *total),
        }
    }
    fn post_apply(&self, address: &Address, action: Action, outcome: Result<(), &str>) {
        let elapsed = self
            .started
            .lock()
            .ok()
            .and_then(|s| s.get(address).map(|t| t.elapsed()))
            .unwrap_or_default();
        let moved = self
            .view
            .done(&address.to_string())
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        match outcome {
            Ok(()) => self.line(&format!(
                "{address}: {} after {:.1}s{moved}",
                verb(action).1,
                elapsed.as_secs_f64()
            )),
            Err(e) => self.line(&format!(
                "{address}: failed after {:.1}s{moved}: {e}",
                elapsed.as_secs_f64()
            )),
        }
    }
}

/// Everything a plan or apply run needs.
pub struct Context {
    pub rt: tokio::runtime::Runtime,
    pub engine: Engine,
    pub images: Arc<ImageProvider>,
    /// The engine's hooks: other stderr lines during apply go through them.
    pub hooks: Arc<StderrHooks>,
    pub desired: Vec<DesiredInstance>,
    /// Images reported as unpushable (see `Expanded::image_errors`): the run exits 1.
    pub failed_images: Vec<String>,
    pub outputs: Vec<(String, serde_json::Value, bool)>,
    /// Plan warnings from the configuration (`expand::clear_text_warnings`).
    pub warnings: Vec<(Address, String)>,
    /// The configuration's backend block.
    pub backend: Option<mirrorplan_config::BackendBlock>,
    /// The `moved` blocks as engine moves.
    pub moves: Vec<mirrorplan_engine::Move>,
    /// The configuration's lifecycle rules (`prevent_destroy` is checked
    /// on every plan).
    pub lifecycle: crate::lifecycle::Rules,
}

/// Creates each directory mode 0700, or makes an existing one of ours
/// private (see [`mirrorplan_state::ensure_private_dir`]).
fn private_dirs<'a>(dirs: impl Iterator<Item = &'a Path>) -> miette::Result<()> {
    for d in dirs {
        mirrorplan_state::ensure_private_dir(d).map_err(miette::Report::new)?;
    }
    Ok(())
}

/// Loads the configuration and expands it; `Ok(None)` after printing problems.
pub fn prepare(dir: &Path, args: &PlanArgs, out: &Output) -> miette::Result<Option<Context>> {
    let mut opts = load_options(&args.vars, Mode::Plan)?;
    opts.workspace = Some(
        mirrorplan_state::current_workspace(dir)
            .map_err(|e| miette::Report::new(crate::commands::backend::StoreError::from(e)))?,
    );
    let Some(loaded) = load_checked(dir, &opts, out) else {
        return Ok(None);
    };
    let linked = crate::ownership::linked_nodes(&loaded.config, &loaded.files);
    if !linked.is_empty() {
        out.diagnostics(&linked);
        return Ok(None);
    }
    // `.mirrorplan/` and its bundle cache hold the state, the lock and what
    // the bundles contain: private. Made (or made private) before expansion
    // fills the cache, when a bundle will be cached; existing ones always.
    let cache = expand::bundle_cache_dir(dir);
    let mut ours: Vec<&Path> = cache.ancestors().take(3).collect();
    ours.reverse();
    let bundles = loaded.config.image_sets.iter().any(|s| s.bundle.is_some());
    private_dirs(ours.into_iter().filter(|d| bundles || d.is_dir()))?;
    let images = Arc::new(ImageProvider::new());
    let rt = runtime()?;
    let mut expanded = rt.block_on(expand::expand(&loaded.config, &images));
    let lifecycle = crate::lifecycle::Rules::of(&loaded.config, &loaded.files);
    lifecycle.ignore_changes(&mut expanded.desired);
    if !args.destroy {
        for (_, e) in &expanded.image_errors {
            let report = miette!(
                code = "mirrorplan::plan::image",
                help = e.help.clone(),
                "{}: {}",
                e.address,
                e.message
            );
            out.report(&report);
        }
    }
    if !expanded.errors.is_empty() {
        for e in &expanded.errors {
            let report = miette!(
                code = "mirrorplan::plan::expand",
                help = e.help.clone(),
                "{}: {}",
                e.address,
                e.message
            );
            out.report(&report);
        }
        return Ok(None);
    }
    // destroy and removed images are read and deleted with the
    // configuration's registry credentials (the state has only digests)
    images.remember_connections(&expanded.desired);
    images.set_parallelism(args.parallelism.max(1));
    let connections = Arc::new(Connections::default());
    let nodes = Arc::new(NodeProvider::new(connections.clone()));
    let clusters = Arc::new(ClusterProvider::new(connections));
    let hooks = Arc::new(StderrHooks::new(!args.verbose, out.bars));
    let engine = Engine::new()
        .with_provider(images.clone())
        .with_provider(nodes)
        .with_provider(clusters)
        .with_provider(Arc::new(
            mirrorplan_node::cluster_config::ClusterConfigProvider,
        ))
        .with_provider(Arc::new(mirrorplan_registry::set::ImageSetProvider))
        .with_parallelism(args.parallelism.max(1))
        .with_hooks(hooks.clone());
    let outputs = loaded
        .config
        .outputs
        .values()
        .map(|o| (o.name.clone(), o.value.clone(), o.sensitive))
        .collect();
    Ok(Some(Context {
        rt,
        engine,
        images,
        hooks,
        desired: expanded.desired,
        failed_images: if args.destroy {
            Vec::new()
        } else {
            expanded.image_errors.into_iter().map(|(a, _)| a).collect()
        },
        outputs,
        warnings: expanded.warnings,
        backend: loaded.config.backend.clone(),
        moves: crate::moves::config_moves(&loaded.config),
        lifecycle,
    }))
}

fn targets(args: &PlanArgs) -> miette::Result<Vec<Address>> {
    addresses(&args.targets, "target")
}

/// Addresses given with `--FLAG` (`--target`, `--replace`).
pub fn addresses(given: &[String], flag: &str) -> miette::Result<Vec<Address>> {
    given
        .iter()
        .map(|t| {
            t.parse::<Address>().map_err(|e| {
                miette!(
                    code = format!("mirrorplan::cli::bad_{flag}"),
                    help = format!("write e.g. --{flag} 'image.anthos[\"gcr.io/a/b:1\"]' or --{flag} 'node.admin1[\"cp1\"]'"),
                    "invalid --{flag} {t:?}: {e}"
                )
            })
        })
        .collect()
}

/// `lifecycle.prevent_destroy`: a plan deleting a protected instance is
/// reported (every such block) and refused.
fn prevented(plan: &Plan, ctx: &Context, out: &Output) -> bool {
    let diags = ctx.lifecycle.prevent_destroy(plan);
    if diags.is_empty() {
        return false;
    }
    out.diagnostics(&diags);
    true
}

fn runtime() -> miette::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()
        .wrap_err("cannot start the async runtime")
}

/// `mirrorplan plan`
pub fn plan(
    dir: &Path,
    args: &PlanArgs,
    plan_out: Option<&Path>,
    detailed_exitcode: bool,
    out: &Output,
) -> miette::Result<ExitCode> {
    let Some(mut ctx) = prepare(dir, args, out)? else {
        return Ok(ExitCode::from(1));
    };
    let store = Store::new(dir, &args.state, Some(ctx.backend.clone()));
    let _lock = lock(&store, &args.state, "plan")?;
    let mut state = store.load_or_new().map_err(miette::Report::new)?;
    if args.state.lock {
        // a plan whose apply could not record anything is refused now
        store.check_writable(&state).map_err(miette::Report::new)?;
    }
    if plan_out.is_some() && store.load().map_err(miette::Report::new)?.is_none() {
        // a saved plan must name a lineage that exists on disk
        store.save(&mut state).map_err(miette::Report::new)?;
    }
    // the configuration's instances and the state move into the plan
    // rather than being copied (10,000 instances)
    let desired = if args.destroy {
        Vec::new()
    } else {
        std::mem::take(&mut ctx.desired)
    };
    let identity = identity(&state);
    let prior = snapshot_owned(state)?.with_moves(ctx.moves.clone());
    let plan = ctx
        .rt
        .block_on(ctx.engine.plan(PlanRequest {
            desired,
            prior,
            refresh: args.refresh,
            refresh_only: args.refresh_only,
            targets: targets(args)?,
            replace: addresses(&args.replace, "replace")?,
        }))
        .map_err(plan_error)?;
    let mut plan = keep_failed_images(plan, &ctx.failed_images);
    expand::attach_warnings(&mut plan, &ctx.warnings);
    if prevented(&plan, &ctx, out) {
        return Ok(ExitCode::from(1));
    }
    print_plan(&plan, args, out);
    if let Some(path) = plan_out {
        let bytes = plan.to_file_bytes(&identity).map_err(miette::Report::new)?;
        write_private(path, &bytes)?;
        if args.format() == Format::Human {
            println!("\nSaved the plan to: {}\nTo perform exactly these actions, run: mirrorplan apply {}", path.display(), path.display());
        }
    }
    // a drift check (refresh-only) answers "did reality move away from the
    // state?"; a normal plan "would apply change anything?"
    let changes = if args.refresh_only {
        !plan.drift.is_empty()
    } else {
        plan.has_changes()
    };
    let failed = !ctx.failed_images.is_empty();
    if failed {
        report_failed_images(&ctx.failed_images);
    }
    // The process ends now: freeing the plan entry by entry would take a
    // sizeable share of a large plan's time. (Only memory is left to the
    // exit: the lock guard, connections and runtime are still dropped.)
    std::mem::forget(plan);
    if failed {
        return Ok(ExitCode::from(1));
    }
    Ok(if detailed_exitcode && changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes a plan file as the state is written: a new 0600 file beside
/// `path`, renamed over it, so an existing file of another mode (or a
/// reader) never sees a partial plan, and the result is always 0600.
fn write_private(path: &Path, bytes: &[u8]) -> miette::Result<()> {
    mirrorplan_state::write_atomic(path, bytes)
        .map_err(miette::Report::new)
        .wrap_err_with(|| format!("cannot write the plan file {}", path.display()))
}

fn print_plan(plan: &Plan, args: &PlanArgs, out: &Output) {
    print_plan_as(plan, args.format(), out);
}

/// Prints a plan on stdout in the chosen format.
pub fn print_plan_as(plan: &Plan, format: Format, out: &Output) {
    match format {
        Format::Json => crate::output::print_document(&render_plan_json(plan)),
        Format::Markdown => print!("{}", render_plan_markdown(plan)),
        Format::Human => print!(
            "{}",
            render_plan(
                plan,
                RenderOptions {
                    color: out.color_stdout,
                    ..RenderOptions::default()
                }
            )
        ),
    }
}

/// A refresh that could not reach a node or registry: a distinct error,
/// so that a drift check never mistakes "unreachable" for "no drift".
fn plan_error(e: mirrorplan_engine::EngineError) -> miette::Report {
    if e.is_unreachable() {
        let what = match &e {
            mirrorplan_engine::EngineError::Refresh { failures } => failures
                .iter()
                .map(|f| format!("{}: {}", f.address, f.error))
                .collect::<Vec<_>>()
                .join("\n  "),
            other => other.to_string(),
        };
        return miette!(
            code = "mirrorplan::refresh::unreachable",
            help = "this is not drift: nothing was compared. Check the network path, SSH and registry credentials, then run the check again",
            "could not reach every node and registry, so drift is unknown:\n  {what}"
        );
    }
    miette::Report::new(e)
}

/// `mirrorplan apply [PLANFILE]` and `mirrorplan destroy`.
pub fn apply(
    dir: &Path,
    args: &PlanArgs,
    plan_file: Option<&Path>,
    auto_approve: bool,
    out: &Output,
) -> miette::Result<ExitCode> {
    let Some(ctx) = prepare(dir, args, out)? else {
        return Ok(ExitCode::from(1));
    };
    let store = Store::new(dir, &args.state, Some(ctx.backend.clone()));
    let _lock = lock(
        &store,
        &args.state,
        if args.destroy { "destroy" } else { "apply" },
    )?;
    let mut state = match store.load().map_err(miette::Report::new)? {
        Some(s) => s,
        None => {
            let mut s = State::new();
            store.save(&mut s).map_err(miette::Report::new)?;
            s
        }
    };
    // before anything changes on a node or registry
    store.check_writable(&state).map_err(miette::Report::new)?;
    let rt = &ctx.rt;
    let desired_now = if args.destroy {
        Vec::new()
    } else {
        ctx.desired.clone()
    };
    let (plan, resupply) = match plan_file {
        Some(path) => {
            let bytes = std::fs::read(path)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read the plan file {}", path.display()))?;
            let plan =
                Plan::from_file_bytes(&bytes, &identity(&state)).map_err(miette::Report::new)?;
            if prevented(&plan, &ctx, out) {
                return Ok(ExitCode::from(1));
            }
            (plan, Some(desired_now))
        }
        None => {
            let plan = rt
                .block_on(ctx.engine.plan(PlanRequest {
                    desired: desired_now,
                    prior: snapshot(&state)?.with_moves(ctx.moves.clone()),
                    refresh: args.refresh,
                    refresh_only: args.refresh_only,
                    targets: targets(args)?,
                    replace: addresses(&args.replace, "replace")?,
                }))
                .map_err(plan_error)?;
            let mut plan = keep_failed_images(plan, &ctx.failed_images);
            expand::attach_warnings(&mut plan, &ctx.warnings);
            if prevented(&plan, &ctx, out) {
                return Ok(ExitCode::from(1));
            }
            print_plan(&plan, args, out);
            if !plan.has_changes() && plan.drift.is_empty() {
                save_outputs(&store, &mut state, &ctx.outputs)?;
                if !ctx.failed_images.is_empty() {
                    report_failed_images(&ctx.failed_images);
                    return Ok(ExitCode::from(1));
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !auto_approve {
                if !std::io::stdin().is_terminal() {
                    return Err(miette!(
                        code = "mirrorplan::cli::approval_needed",
                        help = "run `mirrorplan plan --out FILE` then `mirrorplan apply FILE`, or pass --auto-approve",
                        "standard input is not a terminal, so mirrorplan cannot ask for approval"
                    ));
                }
                eprint!("\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ");
                let mut answer = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut answer)
                    .into_diagnostic()?;
                if answer.trim() != "yes" {
                    eprintln!("\nApply cancelled.");
                    return Ok(ExitCode::from(1));
                }
            }
            (plan, None)
        }
    };
    ctx.images.prepare(&plan.changes);
    let interrupt = Interrupt::new();
    let state_cell = Arc::new(Mutex::new(state));
    // SIGINT and SIGTERM now interrupt the walk instead of ending the
    // process (until apply returns): the walk stops, the state is saved and
    // the lock released
    let _diverted = {
        let interrupt = interrupt.clone();
        let hooks = ctx.hooks.clone();
        crate::signals::divert(move |sig| {
            if interrupt.level() > 0 {
                hooks.line("\nSecond interrupt: stopping now. State is saved as of the last finished instance.");
            } else if sig == crate::signals::Signal::Terminate {
                hooks.line("\nSIGTERM received: no new work starts; waiting for running operations (send it again, or press Ctrl-C, to stop at once).");
            } else {
                hooks.line("\nInterrupt received: no new work starts; waiting for running operations (press Ctrl-C again to stop at once).");
            }
            interrupt.signal();
        })
    };
    let result = rt.block_on(async {
        let identity = match state_cell.lock() {
            Ok(s) => identity(&s),
            Err(_) => return Err(miette!("internal error: state lock poisoned")),
        };
        let cell = state_cell.clone();
        let store2 = store.clone();
        let mut last_save = Instant::now();
        let mut save_gap = SAVE_INTERVAL;
        let mut sink =
            move |addr: &Address, rec: Option<&InstanceRecord>| -> Result<(), SinkError> {
                let mut st = cell.lock().map_err(|_| SinkError {
                    message: "state lock poisoned".into(),
                })?;
                match rec {
                    Some(r) => {
                        st.set_instance(addr.to_string(), to_state_record(r));
                    }
                    None => {
                        st.remove_instance(&addr.to_string());
                    }
                }
                // Every completed instance is saved at once, except in very large
                // states: there the next save waits SAVE_INTERVAL, or four times
                // as long as the last save took, after the end of the last save,
                // so saving (each rewrites the whole file) takes at most a fifth
                // of the walk and the total stays linear. The final save below
                // catches the rest, so only a SIGKILL can lose finished work
                // (at most one interval), which the next apply redoes.
                if st.instances().len() >= LARGE_STATE && last_save.elapsed() < save_gap {
                    return Ok(());
                }
                let started = Instant::now();
                let saved = store2.save(&mut st).map(|_| ()).map_err(|e| SinkError {
                    message: e.to_string(),
                });
                save_gap = SAVE_INTERVAL.max(started.elapsed() * 4);
                last_save = Instant::now();
                saved
            };
        let report = ctx
            .engine
            .apply(
                &plan,
                mirrorplan_engine::ApplyRequest {
                    state: identity,
                    desired: resupply,
                    sink: &mut sink,
                    interrupt: interrupt.clone(),
                },
            )
            .await
            .map_err(miette::Report::new);
        report
    });
    // the bars go away whatever the outcome (done, failed, interrupted)
    ctx.hooks.finish();
    let result = result?;
    eprintln!();
    print!(
        "{}",
        render_apply_report(
            &result,
            RenderOptions {
                color: out.color_stdout,
                destroy: args.destroy,
            }
        )
    );
    if let Ok(mut st) = state_cell.lock() {
        // whatever a throttled save left pending; and the state moves on
        // even when nothing it records changed, so that this plan (saved or
        // not) is stale from now on
        if let Err(e) = store.save_moved_on(&mut st, plan.serial) {
            out.report(&miette::Report::new(e));
            return Ok(ExitCode::from(1));
        }
        if result.is_success() && args.destroy {
            // nothing is left to output, as after `terraform destroy`
            save_outputs(&store, &mut st, &[])?;
        } else if result.is_success() {
            save_outputs(&store, &mut st, &ctx.outputs)?;
            print_outputs(&st);
        }
    }
    if !ctx.failed_images.is_empty() {
        report_failed_images(&ctx.failed_images);
        return Ok(ExitCode::from(1));
    }
    Ok(if result.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Images that cannot be pushed keep their recorded state: a damaged
/// bundle must never make a plan forget (or prune) what the mirror has.
fn keep_failed_images(mut plan: Plan, failed: &[String]) -> Plan {
    let hit = |a: &Address| {
        let a = a.to_string();
        failed
            .iter()
            .any(|f| a == *f || a.starts_with(&format!("{f}[")))
    };
    plan.changes
        .retain(|c| !(c.action == Action::Delete && hit(&c.address)));
    plan
}

fn report_failed_images(failed: &[String]) {
    eprintln!(
        "\nError: {} image(s) could not be planned and were not pushed (see the errors above):",
        failed.len()
    );
    for a in failed {
        eprintln!("  {a}");
    }
}

fn save_outputs(
    store: &Store,
    state: &mut State,
    outputs: &[(String, serde_json::Value, bool)],
) -> miette::Result<()> {
    let names: Vec<String> = state.outputs().keys().cloned().collect();
    for n in names {
        if !outputs.iter().any(|(o, _, _)| *o == n) {
            state.remove_output(&n);
        }
    }
    for (name, value, sensitive) in outputs {
        if *sensitive {
            state.set_sensitive_output(name.clone(), value.to_string().as_bytes());
        } else {
            state.set_output(name.clone(), value.clone());
        }
    }
    store.save(state).map(|_| ()).map_err(miette::Report::new)
}

fn print_outputs(state: &State) {
    if state.outputs().is_empty() {
        return;
    }
    println!("\nOutputs:\n");
    for (name, o) in state.outputs() {
        if o.sensitive {
            println!("{name} = (sensitive value)");
        } else {
            println!("{name} = {}", o.value);
        }
    }
}

/// From this many instances on, state saves during apply are spaced by [`SAVE_INTERVAL`].
const LARGE_STATE: usize = 1000;
/// The least time between the end of a state save and the next one, in a
/// large state.
const SAVE_INTERVAL: Duration = Duration::from_millis(250);

/// Parses `--lock-timeout` values like `0s`, `30s`, `5m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    mirrorplan_config::syntax::parse_duration(s)
}
