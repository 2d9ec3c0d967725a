//! The apply walk: executes a [`Plan`] through providers in dependency
//! order, with bounded parallelism, saving state after every instance.
//!
//! Apply never re-decides from configuration: it checks that the state has
//! not moved (lineage + serial) and, for a saved plan, that the configuration
//! evaluated now still yields exactly the planned instances (it is only the
//! source of the secret values the plan file does not hold).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use futures::stream::{FuturesUnordered, StreamExt};
use miette::Diagnostic;
use thiserror::Error;

use crate::address::Address;
use crate::engine::{Engine, StateIdentity};
use crate::error::EngineError;
use crate::graph::walk_edges;
use crate::hooks::{ApplyContext, Interrupt};
use crate::plan::{config_digest, Action, InstanceRecord, Plan, ResourceChange, StateUpdate};
use crate::provider::{DesiredInstance, NewInstanceState, PlannedChange, ProviderError};
use crate::value::Attrs;

/// The state could not be saved.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("could not save the state: {message}")]
#[diagnostic(
    code(mirrorplan::engine::state_not_saved),
    help("fix the state file's location or permissions; objects applied after the last save are not recorded")
)]
pub struct SinkError {
    /// What went wrong.
    pub message: String,
}

/// Where the apply walk persists each completed instance, immediately (so a
/// crash loses nothing already done). `None` removes the instance.
pub trait StateSink: Send {
    /// Records (or, with `None`, forgets) one instance.
    fn record(
        &mut self,
        address: &Address,
        record: Option<&InstanceRecord>,
    ) -> Result<(), SinkError>;
}

impl<F> StateSink for F
where
    F: FnMut(&Address, Option<&InstanceRecord>) -> Result<(), SinkError> + Send,
{
    fn record(
        &mut self,
        address: &Address,
        record: Option<&InstanceRecord>,
    ) -> Result<(), SinkError> {
        self(address, record)
    }
}

/// What to apply against.
pub struct ApplyRequest<'a> {
    /// The state as it is now (checked against the plan's lineage/serial).
    pub state: StateIdentity,
    /// For a plan loaded from a file: the configuration evaluated now, which
    /// must match the plan exactly and supplies the secret values. `None`
    /// uses the secrets a fresh plan still holds in memory.
    pub desired: Option<Vec<DesiredInstance>>,
    /// Receives each completed instance.
    pub sink: &'a mut dyn StateSink,
    /// First signal: start nothing new; second: abort running work.
    pub interrupt: Interrupt,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Completed instances and their actions, in completion order.
    pub done: Vec<(Address, Action)>,
    /// Failed instances with the reason.
    pub failed: Vec<(Address, String)>,
    /// Instances not attempted, with the reason.
    pub skipped: Vec<(Address, String)>,
    /// The walk stopped early because of an interrupt.
    pub interrupted: bool,
    /// Saving state failed; the walk stopped.
    pub state_error: Option<String>,
}

impl ApplyReport {
    /// Whether everything planned was done.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
            && self.skipped.is_empty()
            && !self.interrupted
            && self.state_error.is_none()
    }
}

type Running<'a> = Pin<
    Box<
        dyn Future<Output = (Address, Result<Option<NewInstanceState>, ProviderError>)> + Send + 'a,
    >,
>;

impl Engine {
    /// Applies `plan`. Errors before the walk (stale plan, changed
    /// configuration, missing secrets); everything after is in the report.
    pub async fn apply(
        &self,
        plan: &Plan,
        request: ApplyRequest<'_>,
    ) -> Result<ApplyReport, EngineError> {
        let ApplyRequest {
            state,
            desired,
            sink,
            interrupt,
        } = request;
        if state.lineage != plan.lineage || state.serial != plan.serial {
            return Err(EngineError::StalePlan {
                plan_lineage: plan.lineage.clone(),
                plan_serial: plan.serial,
                state_lineage: state.lineage,
                state_serial: state.serial,
            });
        }
        let salt = state.secret_salt.expose().as_str();
        // Values laid over each planned `after`: for a saved plan every
        // attribute the configuration gives now (checked equal to what was
        // planned), so nothing the file says about them is used; for a fresh
        // plan the secrets it holds in memory.
        let secrets = match &desired {
            Some(desired) => values_from_config(plan, desired, salt)?,
            None => {
                if let Some(c) = plan.changes.iter().find(|c| {
                    c.action.needs_provider()
                        && !c.after_sensitive.is_empty()
                        && !plan.secrets.contains_key(&c.address)
                }) {
                    return Err(EngineError::MissingSecrets(c.address.clone()));
                }
                plan.secrets.clone()
            }
        };

        let by_address: BTreeMap<&Address, &ResourceChange> =
            plan.changes.iter().map(|c| (&c.address, c)).collect();
        let mut planned: BTreeMap<Address, (PlannedChange, &ResourceChange)> = BTreeMap::new();
        for c in plan.changes.iter().filter(|c| c.action.needs_provider()) {
            self.provider(&c.address, &c.provider)?;
            let mut change = planned_change(c, secrets.get(&c.address));
            if let Some(new) = c.replaced_by.as_ref().and_then(|a| by_address.get(a)) {
                change.handover = Some(crate::provider::Handover {
                    address: new.address.clone(),
                    attributes: new
                        .after
                        .iter()
                        .flat_map(|a| a.keys())
                        .chain(new.after_sensitive.keys())
                        .cloned()
                        .collect(),
                });
            }
            planned.insert(c.address.clone(), (change, c));
        }

        let mut report = ApplyReport::default();

        // Moves first: the state records each moved instance at its new
        // address before anything else happens to it.
        for c in &plan.changes {
            let (Some(from), Some(record)) = (&c.previous_address, &c.moved_record) else {
                continue;
            };
            let moved = sink
                .record(&c.address, Some(record))
                .and_then(|()| sink.record(from, None));
            if let Err(e) = moved {
                state_not_saved(&mut report, &c.address, &e, planned.keys());
                return Ok(report);
            }
        }

        // State-only updates from refresh: no provider, no ordering.
        for c in &plan.changes {
            let Some(update) = &c.state_update else {
                continue;
            };
            if c.action.needs_provider() {
                continue;
            }
            let record = match update {
                StateUpdate::Set { record } => Some(record),
                StateUpdate::Remove => None,
            };
            if let Err(e) = sink.record(&c.address, record) {
                state_not_saved(&mut report, &c.address, &e, planned.keys());
                return Ok(report);
            }
            if matches!(c.action, Action::Read | Action::Import) {
                report.done.push((c.address.clone(), c.action));
            }
        }

        // The walk.
        let must_wait = walk_edges(&plan.changes);
        let mut waiting: BTreeMap<Address, usize> = BTreeMap::new();
        let mut successors: BTreeMap<Address, Vec<Address>> = BTreeMap::new();
        for (node, deps) in &must_wait {
            waiting.insert(node.clone(), deps.len());
            for d in deps {
                successors.entry(d.clone()).or_default().push(node.clone());
            }
        }
        let mut ready: BTreeSet<Address> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(a, _)| a.clone())
            .collect();
        let mut finished: BTreeSet<Address> = BTreeSet::new();
        let mut in_flight: BTreeSet<Address> = BTreeSet::new();
        let mut running: FuturesUnordered<Running<'_>> = FuturesUnordered::new();
        let mut stopping = false;

        loop {
            if interrupt.is_stopping() {
                stopping = true;
            }
            while !stopping && running.len() < self.parallelism {
                let Some(address) = ready.pop_first() else {
                    break;
                };
                let Some((change, _)) = planned.get(&address) else {
                    continue;
                };
                let provider = self.provider(&change.address, &change.provider)?.clone();
                let ctx = ApplyContext::new(address.clone(), self.hooks.clone(), interrupt.clone());
                let hooks = self.hooks.clone();
                in_flight.insert(address.clone());
                running.push(Box::pin(async move {
                    hooks.pre_apply(&change.address, change.action);
                    let result = provider.apply(change, &ctx).await;
                    (change.address.clone(), result)
                }));
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = interrupt.reached(2) => {
                    drop(running);
                    for address in std::mem::take(&mut in_flight) {
                        report.failed.push((
                            address.clone(),
                            "aborted while running; its real state is unknown until the next refresh".into(),
                        ));
                        finished.insert(address);
                    }
                    break;
                }
                Some((address, result)) = running.next() => {
                    in_flight.remove(&address);
                    finished.insert(address.clone());
                    let Some((change, resource)) = planned.get(&address) else {
                        continue;
                    };
                    match result {
                        Ok(new) => {
                            let record = new.map(|n| InstanceRecord {
                                provider: change.provider.clone(),
                                attributes: n.attrs.public_values(),
                                sensitive: n.attrs.sensitive_digests(salt),
                                dependencies: resource
                                    .dependencies
                                    .iter()
                                    .map(Address::to_string)
                                    .collect(),
                                digests: n.digests,
                            });
                            if let Err(e) = sink.record(&address, record.as_ref()) {
                                let message = format!("applied, but {e}");
                                self.hooks.post_apply(&address, change.action, Err(&message));
                                report.failed.push((address, message));
                                report.state_error = Some(e.message);
                                stopping = true;
                                continue;
                            }
                            self.hooks.post_apply(&address, change.action, Ok(()));
                            report.done.push((address.clone(), change.action));
                            for s in successors.get(&address).into_iter().flatten() {
                                if let Some(n) = waiting.get_mut(s) {
                                    *n = n.saturating_sub(1);
                                    if *n == 0 && !finished.contains(s) {
                                        ready.insert(s.clone());
                                    }
                                }
                            }
                        }
                        Err(error) => {
                            self.hooks.post_apply(&address, change.action, Err(&error.message));
                            report.failed.push((address.clone(), error.message));
                            // Everything downstream is skipped.
                            let mut queue: Vec<Address> =
                                successors.get(&address).cloned().unwrap_or_default();
                            while let Some(s) = queue.pop() {
                                if finished.insert(s.clone()) {
                                    ready.remove(&s);
                                    report.skipped.push((
                                        s.clone(),
                                        format!("skipped because {address} failed"),
                                    ));
                                    queue.extend(successors.get(&s).cloned().unwrap_or_default());
                                }
                            }
                        }
                    }
                }
                () = interrupt.reached(1), if !stopping => {
                    stopping = true;
                }
            }
        }

        report.interrupted = interrupt.is_stopping();
        let reason = if report.state_error.is_some() {
            "not started: the state could not be saved"
        } else {
            "not started: interrupted"
        };
        for address in planned.keys() {
            if !finished.contains(address) {
                report.skipped.push((address.clone(), reason.into()));
            }
        }
        Ok(report)
    }
}

/// The provider's view of a planned change: `before` with sensitive
/// attributes as digests, `after` with secrets in clear.
fn planned_change(c: &ResourceChange, secrets: Option<&Attrs>) -> PlannedChange {
    let before = c.before.as_ref().map(|b| {
        let mut attrs = Attrs::new();
        for (k, v) in b {
            attrs.insert(k, v.clone());
        }
        for (k, d) in &c.before_sensitive {
            attrs.insert_sensitive(k, d.clone());
        }
        attrs
    });
    let after = c.after.as_ref().map(|a| {
        let mut attrs = Attrs::new();
        for (k, v) in a {
            attrs.insert(k, v.clone());
        }
        if let Some(s) = secrets {
            attrs.overlay(s);
        }
        attrs
    });
    PlannedChange {
        address: c.address.clone(),
        provider: c.provider.clone(),
        action: c.action,
        before,
        after,
        replace_because: c.replace_because.clone(),
        details: c.details.clone(),
        handover: None,
        replace_requested: c.replace_requested,
    }
}

/// Checks the configuration evaluated at apply time against the plan and
/// takes from it every attribute it gives, secrets in clear included: for a
/// saved plan, apply uses the file only for what the providers derived at
/// plan time (and the file's keyed checksum protects that).
fn values_from_config(
    plan: &Plan,
    desired: &[DesiredInstance],
    salt: &str,
) -> Result<BTreeMap<Address, Attrs>, EngineError> {
    let mut by_addr: BTreeMap<&Address, &DesiredInstance> = BTreeMap::new();
    for d in desired {
        if by_addr.insert(&d.address, d).is_some() {
            return Err(EngineError::DuplicateInstance(d.address.clone()));
        }
    }
    let mut mismatched = BTreeSet::new();
    let mut secrets = BTreeMap::new();
    if !plan.refresh_only {
        for c in &plan.changes {
            let now = by_addr.get(&c.address);
            let same = match (&c.config_digest, now) {
                (Some(planned), Some(d)) => config_digest(d, salt) == *planned,
                (None, None) => true,
                _ => false,
            };
            if !same {
                mismatched.insert(c.address.clone());
                continue;
            }
            let (Some(d), true) = (now, c.action.needs_provider()) else {
                continue;
            };
            for (name, digest) in &c.after_sensitive {
                match d.attrs.get(name) {
                    Some(v)
                        if d.attrs.is_sensitive(name)
                            && crate::value::secret_digest(salt, v) == *digest => {}
                    // derived by the provider's plan from other attributes (and
                    // from what it read): it derives it again when applying
                    None => {}
                    _ => return Err(EngineError::MissingSecrets(c.address.clone())),
                }
            }
            if c.action != Action::Delete {
                // what another tool owns stays as the plan found it (a
                // sensitive one was checked equal above)
                let mut attrs = d.attrs.clone();
                let ignored: Vec<String> = attrs
                    .names()
                    .filter(|n| d.ignores(n) && !attrs.is_sensitive(n))
                    .map(str::to_owned)
                    .collect();
                for n in &ignored {
                    attrs.remove(n);
                }
                secrets.insert(c.address.clone(), attrs);
            }
        }
        if plan.targets.is_empty() {
            let planned: BTreeSet<&Address> = plan.changes.iter().map(|c| &c.address).collect();
            for a in by_addr.keys() {
                if !planned.contains(*a) {
                    mismatched.insert((*a).clone());
                }
            }
        }
    }
    if mismatched.is_empty() {
        Ok(secrets)
    } else {
        Err(EngineError::ConfigChanged {
            addresses: mismatched.into_iter().collect(),
        })
    }
}

/// The state could not record `address` before the walk: that is the
/// failure, and nothing of the walk starts.
fn state_not_saved<'a>(
    report: &mut ApplyReport,
    address: &Address,
    e: &SinkError,
    planned: impl Iterator<Item = &'a Address>,
) {
    report.state_error = Some(e.message.clone());
    report.failed.push((address.clone(), e.to_string()));
    for a in planned {
        report.skipped.push((
            a.clone(),
            "not started: the state could not be saved".into(),
        ));
    }
}
