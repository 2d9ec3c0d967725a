//! [`Engine`]: the registry of providers plus the plan step (validate,
//! refresh concurrently, diff through providers, collect drift).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::address::Address;
use crate::error::{EngineError, RefreshFailure};
use crate::graph::{check_acyclic, target_closure, walk_edges, DepGraph};
use crate::hooks::{Hooks, NoHooks};
use crate::plan::{
    attr_changes, config_digest, Action, Drift, InstanceRecord, Plan, ResourceChange, StateUpdate,
};
use crate::provider::{DesiredInstance, Observed, PlannedChange, PriorInstance, Provider};
use crate::value::{Attrs, Sensitive};

/// The default number of provider calls in flight.
pub const DEFAULT_PARALLELISM: usize = 10;

/// Which state a plan or apply is made against.
#[derive(Clone, PartialEq, Eq)]
pub struct StateIdentity {
    /// The state's lineage (never changes for one state).
    pub lineage: String,
    /// The state's serial (grows with every saved change).
    pub serial: u64,
    /// The state's secret salt for digests.
    pub secret_salt: Sensitive<String>,
}

impl fmt::Debug for StateIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateIdentity")
            .field("lineage", &self.lineage)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// The prior state as the engine needs it. The caller must have a real state
/// (lineage, salt) before planning: create and save an empty one if none
/// exists, so a saved plan can be matched to it later.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorSnapshot {
    /// Lineage, serial and salt.
    pub identity: StateIdentity,
    /// Recorded instances.
    pub instances: BTreeMap<Address, InstanceRecord>,
    /// Moves to make before planning (`moved` blocks): the plan shows each
    /// moved instance at its new address, and apply rewrites the state.
    pub moves: Vec<crate::moves::Move>,
}

impl PriorSnapshot {
    /// An empty snapshot of a state.
    pub fn new(lineage: &str, serial: u64, secret_salt: &str) -> Self {
        PriorSnapshot {
            identity: StateIdentity {
                lineage: lineage.to_owned(),
                serial,
                secret_salt: Sensitive::new(secret_salt.to_owned()),
            },
            instances: BTreeMap::new(),
            moves: Vec::new(),
        }
    }

    /// Builder: the moves to make before planning.
    pub fn with_moves(mut self, moves: Vec<crate::moves::Move>) -> Self {
        self.moves = moves;
        self
    }

    /// Builder: adds a recorded instance.
    pub fn with_instance(mut self, address: Address, record: InstanceRecord) -> Self {
        self.instances.insert(address, record);
        self
    }
}

/// The provider's view of a recorded instance (moved, not copied: a state
/// of 10,000 instances is big).
fn prior_instance(
    identity: &StateIdentity,
    address: &Address,
    record: InstanceRecord,
) -> PriorInstance {
    let mut p = PriorInstance::new(
        address.clone(),
        &record.provider,
        identity.secret_salt.expose(),
    );
    p.attrs = record.attributes;
    p.sensitive = record.sensitive;
    p.digests = record.digests;
    // Unparseable recorded dependencies cannot order anything; skip them.
    p.dependencies = record
        .dependencies
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    p
}

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// The expanded configuration.
    pub desired: Vec<DesiredInstance>,
    /// The prior state.
    pub prior: PriorSnapshot,
    /// Read every instance through its provider first.
    pub refresh: bool,
    /// Only refresh: record what changed outside, change no object.
    pub refresh_only: bool,
    /// Limit to these addresses (an unkeyed address selects all of its
    /// instances) and what they depend on. Empty: everything.
    pub targets: Vec<Address>,
    /// `-replace`: re-apply these instances of the configuration (an
    /// unkeyed address selects all of its instances) even where they
    /// already are as configured.
    pub replace: Vec<Address>,
}

/// Providers by kind, hooks and parallelism: everything plan and apply use.
#[derive(Clone)]
pub struct Engine {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    pub(crate) hooks: Arc<dyn Hooks>,
    pub(crate) parallelism: usize,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            providers: BTreeMap::new(),
            hooks: Arc::new(NoHooks),
            parallelism: DEFAULT_PARALLELISM,
        }
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("parallelism", &self.parallelism)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with no providers, no hooks and parallelism 10.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a provider under its [`Provider::kind`].
    pub fn with_provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.insert(provider.kind().to_owned(), provider);
        self
    }

    /// Sets the hooks that observe refresh and apply.
    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Sets how many provider calls may run at once (at least 1).
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    pub(crate) fn provider(
        &self,
        address: &Address,
        kind: &str,
    ) -> Result<&Arc<dyn Provider>, EngineError> {
        self.providers
            .get(kind)
            .ok_or_else(|| EngineError::UnknownProvider {
                address: address.clone(),
                provider: kind.to_owned(),
            })
    }

    /// Makes a plan: validates the dependency graph, refreshes (if asked)
    /// with bounded concurrency, and asks each instance's provider for its
    /// action.
    pub async fn plan(&self, request: PlanRequest) -> Result<Plan, EngineError> {
        let PlanRequest {
            desired,
            prior,
            refresh,
            refresh_only,
            targets,
            replace,
        } = request;
        let salt = prior.identity.secret_salt.expose().clone();

        // Desired instances: unique, known providers, known dependencies, acyclic.
        let mut by_addr: BTreeMap<Address, DesiredInstance> = BTreeMap::new();
        for d in desired {
            self.provider(&d.address, &d.provider)?;
            if by_addr.contains_key(&d.address) {
                return Err(EngineError::DuplicateInstance(d.address));
            }
            by_addr.insert(d.address.clone(), d);
        }
        for d in by_addr.values() {
            if let Some(missing) = d.dependencies.iter().find(|a| !by_addr.contains_key(*a)) {
                return Err(EngineError::UnknownDependency {
                    from: d.address.clone(),
                    to: Box::new(missing.clone()),
                });
            }
        }
        let desired_graph: DepGraph = by_addr
            .iter()
            .map(|(a, d)| (a.clone(), d.dependencies.clone()))
            .collect();
        check_acyclic(&desired_graph)?;
        for r in &replace {
            if !by_addr.keys().any(|a| r.matches(a)) {
                return Err(EngineError::ReplaceNotFound(
                    r.clone(),
                    crate::graph::closest_address(&r.to_string(), by_addr.keys()),
                ));
            }
        }

        let PriorSnapshot {
            identity,
            mut instances,
            moves,
        } = prior;
        let relocated = crate::moves::relocate(&mut instances, &moves)?;
        let mut moved_records: BTreeMap<Address, (Address, InstanceRecord)> = relocated
            .moved
            .iter()
            .filter_map(|(to, from)| {
                instances
                    .get(to)
                    .map(|r| (to.clone(), (from.clone(), r.clone())))
            })
            .collect();
        let mut priors: BTreeMap<Address, PriorInstance> = instances
            .into_iter()
            .map(|(a, r)| {
                let p = prior_instance(&identity, &a, r);
                (a, p)
            })
            .collect();
        for p in priors.values() {
            self.provider(&p.address, &p.provider)?;
        }

        // Everything known, and the selection by targets.
        let mut full_graph = desired_graph;
        for (a, p) in &priors {
            full_graph
                .entry(a.clone())
                .or_insert_with(|| p.dependencies.clone());
        }
        let selected: BTreeSet<Address> = if targets.is_empty() {
            full_graph.keys().cloned().collect()
        } else {
            let doomed: BTreeSet<Address> = priors
                .keys()
                .filter(|a| !by_addr.contains_key(*a))
                .cloned()
                .collect();
            target_closure(&full_graph, &targets, &doomed)?
        };

        // Refresh.
        // (instances the provider could not read but lets the plan go on
        // without: planned from their prior, with a warning)
        let (observed, mut unread): (
            BTreeMap<Address, Option<Observed>>,
            BTreeMap<Address, crate::provider::ProviderError>,
        ) = if refresh || refresh_only {
            self.refresh(&selected, &by_addr, &priors, refresh_only)
                .await?
        } else {
            (BTreeMap::new(), BTreeMap::new())
        };

        let mut drift = Vec::new();
        let mut changes = Vec::new();
        let mut secrets = BTreeMap::new();
        for address in &selected {
            // each address is visited once: take its instances out, so that
            // what is planned is freed as the plan grows
            let d_owned = by_addr.remove(address);
            let p_owned = priors.remove(address);
            let d = d_owned.as_ref();
            let p = p_owned.as_ref();
            let kind = match (d, p) {
                (Some(d), _) => d.provider.as_str(),
                (None, Some(p)) => p.provider.as_str(),
                (None, None) => continue,
            };
            let provider = self.provider(address, kind)?;
            let refreshed_flag = observed.contains_key(address);
            let obs = observed.get(address).and_then(Option::as_ref);

            // The prior as refreshed, and the drift it reveals.
            let refreshed: Option<Cow<'_, PriorInstance>> = match (p, refreshed_flag) {
                (Some(p), true) => match obs {
                    None => {
                        drift.push(Drift {
                            address: address.clone(),
                            provider: p.provider.clone(),
                            gone: true,
                            changes: Vec::new(),
                        });
                        None
                    }
                    Some(o) => {
                        let r = overlay(p, &o.attrs);
                        let mut diffs =
                            attr_changes(&p.attrs, &p.sensitive, &r.attrs, &r.sensitive);
                        // an attribute the state never recorded that is also
                        // absent in reality (e.g. a file the configuration
                        // adds but no apply wrote yet) is not drift
                        let null_digest =
                            crate::value::secret_digest(&salt, &crate::value::AttrValue::Null);
                        // attributes other tools own are theirs to change
                        diffs.retain(|c| !d.is_some_and(|d| d.ignores(&c.attribute)));
                        diffs.retain(|c| {
                            let absent = match &c.after {
                                None | Some(crate::value::AttrValue::Null) => true,
                                Some(crate::value::AttrValue::String(d)) => {
                                    c.sensitive && *d == null_digest
                                }
                                Some(_) => false,
                            };
                            !(c.before.is_none() && absent)
                        });
                        if !diffs.is_empty() {
                            drift.push(Drift {
                                address: address.clone(),
                                provider: p.provider.clone(),
                                gone: false,
                                changes: diffs,
                            });
                        }
                        Some(Cow::Owned(r))
                    }
                },
                // not refreshed: the prior as recorded, not copied
                (p, _) => p.map(Cow::Borrowed),
            };
            // (not refreshed: `refreshed` is `p` itself)
            let mut state_moved = refreshed_flag && p.is_some() && refreshed.as_deref() != p;
            if let (true, Some(d), Some(p), Some(r)) = (state_moved, d, p, refreshed.as_deref()) {
                // what only other tools changed is not worth a state update
                // (the state keeps what mirrorplan last wrote there)
                state_moved = d.ignore_changes.is_empty()
                    || attr_changes(&p.attrs, &p.sensitive, &r.attrs, &r.sensitive)
                        .iter()
                        .any(|c| !d.ignores(&c.attribute));
            }
            let state_update = state_moved.then(|| match &refreshed {
                Some(r) => StateUpdate::Set {
                    record: record_of(r),
                },
                None => StateUpdate::Remove,
            });

            if refresh_only || (d.is_none() && refreshed.is_none()) {
                // Nothing to decide: record what refresh found, if anything.
                let view = |x: Option<&PriorInstance>| x.map(PriorInstance::attrs_view);
                let planned = PlannedChange {
                    address: address.clone(),
                    provider: kind.to_owned(),
                    action: if refresh_only && state_moved {
                        Action::Read
                    } else {
                        Action::NoOp
                    },
                    before: view(p),
                    after: view(refreshed.as_deref()),
                    replace_because: Vec::new(),
                    details: Vec::new(),
                    handover: None,
                    replace_requested: false,
                };
                let deps = p.map(|p| p.dependencies.clone()).unwrap_or_default();
                let mut change =
                    to_resource_change(planned, After::View, None, deps, state_update, &salt);
                if let Some((from, record)) = moved_records.remove(address) {
                    change.previous_address = Some(from);
                    change.moved_record = Some(record);
                }
                changes.push(change);
                continue;
            }

            // lifecycle.ignore_changes: the object keeps what it has there
            let ignoring = match (d, refreshed.as_deref()) {
                (Some(d), Some(r)) if !d.ignore_changes.is_empty() => Some(keep_ignored(d, r, obs)),
                _ => None,
            };
            let d_plan = ignoring.as_ref().or(d);
            let mut planned =
                provider
                    .plan(d_plan, refreshed.as_deref(), obs)
                    .map_err(|error| EngineError::PlanFailed {
                        address: address.clone(),
                        error: Box::new(error),
                    })?;
            // adoption: what the state does not record but already exists
            // as planned is recorded, not created again
            let mut adopted = None;
            if let (Action::Create, None, Some(d), Some(o)) = (planned.action, p, d_plan, obs) {
                if let Some(a) = provider.adopt(d, &planned, o) {
                    planned.action = Action::Import;
                    planned.details = a.details;
                    adopted = Some(InstanceRecord {
                        provider: planned.provider.clone(),
                        attributes: a.state.attrs.public_values(),
                        sensitive: a.state.attrs.sensitive_digests(&salt),
                        dependencies: d.dependencies.iter().map(Address::to_string).collect(),
                        digests: a.state.digests,
                    });
                }
            }
            // -replace: re-applied even where nothing changed
            let forced = d.is_some() && replace.iter().any(|r| r.matches(address));
            if forced {
                planned.action = match planned.action {
                    Action::NoOp | Action::Update if refreshed.is_some() => Action::Replace,
                    Action::Import | Action::NoOp | Action::Update => Action::Create,
                    other => other,
                };
                adopted = None;
                planned.replace_requested = true;
                planned
                    .details
                    .push("replacement requested with -replace: re-applied even where it already is as configured".into());
            }
            let mut warnings = Vec::new();
            if let Some(e) = unread.remove(address) {
                // nobody knows what the object is like now: apply looks
                if planned.action == Action::NoOp && d.is_some() {
                    planned.action = Action::Update;
                }
                let consequence = e.plan_unread.as_deref().unwrap_or("apply will try it");
                warnings.push(format!(
                    "could not be read: {}; planned from the state, {consequence}",
                    e.message
                ));
            }
            if planned.address != *address {
                return Err(EngineError::PlanFailed {
                    address: address.clone(),
                    error: Box::new(crate::provider::ProviderError::failed(format!(
                        "the provider planned {} instead",
                        planned.address
                    ))),
                });
            }
            if let Some(after) = &planned.after {
                let mut clear = Attrs::new();
                for name in after.sensitive_names() {
                    if let Some(v) = after.get(name) {
                        clear.insert_sensitive(name, v.clone());
                    }
                }
                if !clear.is_empty() {
                    secrets.insert(address.clone(), clear);
                }
            }
            let deps = match (planned.action, d, p) {
                (Action::Delete, _, Some(p)) => p.dependencies.clone(),
                (_, Some(d), _) => d.dependencies.clone(),
                (_, None, Some(p)) => p.dependencies.clone(),
                (_, None, None) => Vec::new(),
            };
            let update = if let Some(record) = adopted {
                Some(StateUpdate::Set { record })
            } else if planned.action.needs_provider() {
                None
            } else {
                state_update
            };
            let mut change = to_resource_change(
                planned,
                After::Clear,
                d.map(|d| config_digest(d, &salt)),
                deps,
                update,
                &salt,
            );
            change.warnings = warnings;
            if let Some(w) = relocated.skipped.get(address) {
                change.warnings.push(w.clone());
            }
            if let Some((from, record)) = moved_records.remove(address) {
                change.previous_address = Some(from);
                change.moved_record = Some(record);
            }
            changes.push(change);
        }

        // a delete and a create of the same physical object: one hand-over
        let providers = &self.providers;
        crate::moves::pair_handovers(&mut changes, |c| {
            let attrs = match c.action {
                Action::Create | Action::Import => c.after.as_ref(),
                _ => c.before.as_ref(),
            }?;
            providers.get(&c.provider)?.physical_identity(attrs)
        });

        check_acyclic(&walk_edges(&changes))?;
        Ok(Plan {
            lineage: identity.lineage.clone(),
            serial: identity.serial,
            refresh_only,
            targets,
            drift,
            changes,
            secrets,
        })
    }

    async fn refresh(
        &self,
        selected: &BTreeSet<Address>,
        desired: &BTreeMap<Address, DesiredInstance>,
        priors: &BTreeMap<Address, PriorInstance>,
        refresh_only: bool,
    ) -> Result<
        (
            BTreeMap<Address, Option<Observed>>,
            BTreeMap<Address, crate::provider::ProviderError>,
        ),
        EngineError,
    > {
        let mut jobs = Vec::new();
        for address in selected {
            let d = desired.get(address);
            let p = priors.get(address);
            let kind = match (d, p) {
                (Some(d), _) => &d.provider,
                (None, Some(p)) => &p.provider,
                (None, None) => continue,
            };
            jobs.push((address, self.provider(address, kind)?, d, p));
        }
        let hooks = &self.hooks;
        let results: Vec<_> = stream::iter(jobs)
            .map(|(address, provider, d, p)| async move {
                hooks.pre_refresh(address);
                let result = provider.read(d, p).await;
                match &result {
                    Ok(o) => hooks.post_refresh(address, Ok(o.is_some())),
                    Err(e) => hooks.post_refresh(address, Err(&e.message)),
                }
                (address, result)
            })
            .buffer_unordered(self.parallelism)
            .collect()
            .await;
        let mut found = BTreeMap::new();
        let mut unread = BTreeMap::new();
        let mut failures = Vec::new();
        for (address, result) in results {
            match result {
                Ok(o) => {
                    found.insert(address.clone(), o);
                }
                // a drift check must see every failure: only a plan that
                // will act may go on without reading
                Err(error) if error.plan_unread.is_some() && !refresh_only => {
                    unread.insert(address.clone(), error);
                }
                Err(error) => failures.push(RefreshFailure {
                    address: address.clone(),
                    error,
                }),
            }
        }
        if failures.is_empty() {
            Ok((found, unread))
        } else {
            failures.sort_by(|a, b| a.address.cmp(&b.address));
            Err(EngineError::Refresh { failures })
        }
    }
}

/// `desired` with each attribute it ignores (`lifecycle.ignore_changes`)
/// as the object has it: the clear value refresh read, else the refreshed
/// public value. An ignored attribute the object lacks (absent, or `null`:
/// a file that does not exist) keeps the configuration's value, so what is
/// missing is still made; a sensitive value known only by its digest (no
/// refresh) keeps it too.
fn keep_ignored(
    desired: &DesiredInstance,
    refreshed: &PriorInstance,
    observed: Option<&Observed>,
) -> DesiredInstance {
    use crate::value::AttrValue;
    let mut d = desired.clone();
    let mut names: BTreeSet<String> = desired.attrs.names().map(str::to_owned).collect();
    names.extend(refreshed.attrs.keys().cloned());
    names.extend(refreshed.sensitive.keys().cloned());
    for name in names.into_iter().filter(|n| desired.ignores(n)) {
        let seen = observed.and_then(|o| {
            o.attrs
                .get(&name)
                .map(|v| (v.clone(), o.attrs.is_sensitive(&name)))
        });
        match seen {
            Some((AttrValue::Null, _)) => {}
            Some((v, true)) => d.attrs.insert_sensitive(&name, v),
            Some((v, false)) => d.attrs.insert(&name, v),
            None => match refreshed.attrs.get(&name) {
                None | Some(AttrValue::Null) => {}
                Some(v) => d.attrs.insert(&name, v.clone()),
            },
        }
    }
    d
}

/// What `mirrorplan import` recorded for one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The record now in the state.
    pub record: InstanceRecord,
    /// The object already was as configured: the next plan changes nothing.
    pub matches: bool,
    /// The provider's notes (when it matches).
    pub details: Vec<String>,
}

impl Engine {
    /// `mirrorplan import`: reads one instance that the state does not
    /// record and returns the record to keep for it: as an apply would have
    /// left it when the object already is as configured, else the
    /// configuration with what was read laid over it (the next plan shows
    /// the difference as a change).
    pub async fn import(
        &self,
        desired: &DesiredInstance,
        identity: &StateIdentity,
    ) -> Result<Imported, EngineError> {
        let address = &desired.address;
        let provider = self.provider(address, &desired.provider)?;
        self.hooks.pre_refresh(address);
        let observed = match provider.read(Some(desired), None).await {
            Ok(o) => {
                self.hooks.post_refresh(address, Ok(o.is_some()));
                o
            }
            Err(error) => {
                self.hooks.post_refresh(address, Err(&error.message));
                return Err(EngineError::Refresh {
                    failures: vec![RefreshFailure {
                        address: address.clone(),
                        error,
                    }],
                });
            }
        };
        let Some(observed) = observed else {
            return Err(EngineError::NothingToImport(address.clone()));
        };
        let salt = identity.secret_salt.expose();
        let planned = provider
            .plan(Some(desired), None, Some(&observed))
            .map_err(|error| EngineError::PlanFailed {
                address: address.clone(),
                error: Box::new(error),
            })?;
        let dependencies = desired
            .dependencies
            .iter()
            .map(Address::to_string)
            .collect();
        if let Some(a) = provider.adopt(desired, &planned, &observed) {
            return Ok(Imported {
                record: InstanceRecord {
                    provider: desired.provider.clone(),
                    attributes: a.state.attrs.public_values(),
                    sensitive: a.state.attrs.sensitive_digests(salt),
                    dependencies,
                    digests: a.state.digests,
                },
                matches: true,
                details: a.details,
            });
        }
        let mut as_configured = PriorInstance::new(address.clone(), &desired.provider, salt);
        as_configured.attrs = desired.attrs.public_values();
        as_configured.sensitive = desired.attrs.sensitive_digests(salt);
        as_configured.dependencies = desired.dependencies.clone();
        let mut record = record_of(&overlay(&as_configured, &observed.attrs));
        record.dependencies = dependencies;
        Ok(Imported {
            record,
            matches: false,
            details: Vec::new(),
        })
    }
}

/// `prior` with the observed attributes laid over it (sensitive observed
/// values become digests).
fn overlay(prior: &PriorInstance, observed: &Attrs) -> PriorInstance {
    let mut r = prior.clone();
    for name in observed.names() {
        let Some(value) = observed.get(name) else {
            continue;
        };
        if observed.is_sensitive(name) {
            r.attrs.remove(name);
            r.sensitive.insert(name.to_owned(), r.digest(value));
        } else {
            r.sensitive.remove(name);
            r.attrs.insert(name.to_owned(), value.clone());
        }
    }
    r
}

pub(crate) fn record_of(p: &PriorInstance) -> InstanceRecord {
    InstanceRecord {
        provider: p.provider.clone(),
        attributes: p.attrs.clone(),
        sensitive: p.sensitive.clone(),
        dependencies: p.dependencies.iter().map(Address::to_string).collect(),
        digests: p.digests.clone(),
    }
}

/// Whether a planned `after` holds sensitive values in clear or as digests.
#[derive(Clone, Copy)]
enum After {
    Clear,
    View,
}

fn to_resource_change(
    planned: PlannedChange,
    after: After,
    config_digest: Option<String>,
    dependencies: Vec<Address>,
    state_update: Option<StateUpdate>,
    salt: &str,
) -> ResourceChange {
    // Views of prior instances hold sensitive values as their digests
    // already (see PriorInstance::attrs_view); desired `after`s hold them in clear.
    let digests_of_view = |attrs: &Attrs| -> BTreeMap<String, String> {
        attrs
            .sensitive_names()
            .filter_map(|n| {
                attrs
                    .get(n)
                    .and_then(|v| v.as_str())
                    .map(|d| (n.to_owned(), d.to_owned()))
            })
            .collect()
    };
    let before_sensitive = planned
        .before
        .as_ref()
        .map(digests_of_view)
        .unwrap_or_default();
    let after_sensitive = match (&planned.after, after) {
        (None, _) => BTreeMap::new(),
        (Some(a), After::View) => digests_of_view(a),
        (Some(a), After::Clear) => a.sensitive_digests(salt),
    };
    ResourceChange {
        address: planned.address,
        provider: planned.provider,
        action: planned.action,
        before: planned.before.as_ref().map(Attrs::public_values),
        after: planned.after.as_ref().map(Attrs::public_values),
        before_sensitive,
        after_sensitive,
        replace_because: planned.replace_because,
        details: planned.details,
        dependencies,
        config_digest,
        state_update,
        warnings: Vec::new(),
        previous_address: None,
        moved_record: None,
        replaced_by: None,
        replaces: None,
        replace_requested: planned.replace_requested,
    }
}
