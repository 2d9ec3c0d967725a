//! The provider contract: the only thing the engine knows about registries,
//! nodes or clusters.
//!
//! A provider manages one kind of resource instance through three steps,
//! like OpenTofu's providers: [`Provider::read`] (refresh: what really
//! exists), [`Provider::plan`] (decide an [`Action`], with a generic default
//! diff in [`diff`]) and [`Provider::apply`] (make it so, for one instance).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use miette::Diagnostic;
use thiserror::Error;

use crate::address::Address;
use crate::hooks::ApplyContext;
use crate::plan::Action;
use crate::value::{secret_digest, AttrValue, Attrs};

/// One resource instance as the configuration wants it, already expanded
/// (for_each, variables) by the caller. Sensitive values are in clear, in
/// memory only; `Debug` masks them.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredInstance {
    /// Its address.
    pub address: Address,
    /// The provider kind that manages it, e.g. `"registry"` or `"node"`.
    pub provider: String,
    /// Desired attributes.
    pub attrs: Attrs,
    /// Instances that must be applied before this one.
    pub dependencies: Vec<Address>,
    /// Attributes other tools own (`lifecycle.ignore_changes`): a name, or
    /// a pattern with one `*` (`file:*/hosts.toml`). When the object
    /// exists, the plan keeps their values as refresh found them: neither
    /// their drift nor a change in the configuration is planned.
    pub ignore_changes: Vec<String>,
}

impl DesiredInstance {
    /// A desired instance with no dependencies.
    pub fn new(address: Address, provider: &str, attrs: Attrs) -> Self {
        DesiredInstance {
            address,
            provider: provider.to_owned(),
            attrs,
            dependencies: Vec::new(),
            ignore_changes: Vec::new(),
        }
    }

    /// Whether the attribute `name` is one of [`DesiredInstance::ignore_changes`].
    pub fn ignores(&self, name: &str) -> bool {
        self.ignore_changes
            .iter()
            .any(|pattern| match pattern.split_once('*') {
                Some((prefix, suffix)) => {
                    name.len() >= prefix.len() + suffix.len()
                        && name.starts_with(prefix)
                        && name.ends_with(suffix)
                }
                None => pattern == name,
            })
    }

    /// Builder: adds a dependency.
    pub fn depends_on(mut self, address: Address) -> Self {
        self.dependencies.push(address);
        self
    }
}

/// One resource instance as the prior state records it (possibly updated by
/// a refresh). Sensitive attributes are known only by their salted digest.
#[derive(Clone, PartialEq)]
pub struct PriorInstance {
    /// Its address.
    pub address: Address,
    /// The provider kind that manages it.
    pub provider: String,
    /// Non-sensitive attributes as last applied or read.
    pub attrs: BTreeMap<String, AttrValue>,
    /// Sensitive attribute name → salted digest.
    pub sensitive: BTreeMap<String, String>,
    /// Instances it depended on when applied (orders deletions).
    pub dependencies: Vec<Address>,
    /// Content name → digest (e.g. a rendered file), as the provider left it.
    pub digests: BTreeMap<String, String>,
    salt: Arc<str>,
}

impl PriorInstance {
    /// A prior instance whose sensitive digests were made with `salt` (the
    /// state's secret salt).
    pub fn new(address: Address, provider: &str, salt: &str) -> Self {
        PriorInstance {
            address,
            provider: provider.to_owned(),
            attrs: BTreeMap::new(),
            sensitive: BTreeMap::new(),
            dependencies: Vec::new(),
            digests: BTreeMap::new(),
            salt: Arc::from(salt),
        }
    }

    /// Whether the sensitive attribute `name` recorded a digest equal to the
    /// digest of `value`.
    pub fn secret_matches(&self, name: &str, value: &AttrValue) -> bool {
        self.sensitive
            .get(name)
            .is_some_and(|d| *d == secret_digest(&self.salt, value))
    }

    /// The salted digest of `value`, comparable with [`PriorInstance::sensitive`].
    pub fn digest(&self, value: &AttrValue) -> String {
        secret_digest(&self.salt, value)
    }

    /// Attributes for display: public values, and sensitive ones as their
    /// digest strings (marked sensitive).
    pub fn attrs_view(&self) -> Attrs {
        let mut attrs = Attrs::new();
        for (k, v) in &self.attrs {
            attrs.insert(k, v.clone());
        }
        for (k, d) in &self.sensitive {
            attrs.insert_sensitive(k, d.clone());
        }
        attrs
    }
}

impl fmt::Debug for PriorInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriorInstance")
            .field("address", &self.address)
            .field("provider", &self.provider)
            .field("attrs", &self.attrs)
            .field("sensitive", &self.sensitive.keys().collect::<Vec<_>>())
            .field("dependencies", &self.dependencies)
            .finish_non_exhaustive()
    }
}

/// What a refresh found for one instance. Sensitive values read back (if a
/// provider can read them at all) stay in memory; only digests are kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The attributes that could be read. Attributes not listed here keep
    /// their prior value.
    pub attrs: Attrs,
}

/// What a provider's apply leaves behind, to be recorded in state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewInstanceState {
    /// Attributes of the object now (sensitive ones are digested by the
    /// engine before they reach the state).
    pub attrs: Attrs,
    /// Content name → digest, e.g. of a rendered file.
    pub digests: BTreeMap<String, String>,
}

/// A decision for one instance: the provider's answer to
/// [`Provider::plan`] and the input of [`Provider::apply`].
///
/// `after` holds sensitive values in clear (in memory only). `before` holds
/// sensitive attributes as their digest strings: the state never knew more.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChange {
    /// The instance.
    pub address: Address,
    /// Its provider kind.
    pub provider: String,
    /// What to do.
    pub action: Action,
    /// The object before (prior state, refreshed), if any.
    pub before: Option<Attrs>,
    /// The object after, if it will exist.
    pub after: Option<Attrs>,
    /// Attributes whose change forces replacement (for `Replace`).
    pub replace_because: Vec<String>,
    /// Extra lines for the plan, e.g. "3 blobs to upload (12 MiB), 2 to mount".
    pub details: Vec<String>,
    /// For a delete whose physical object a create in the same plan takes
    /// over (see [`Provider::physical_identity`]): that instance, applied
    /// already, and the names of its attributes. Set by the apply walk.
    pub handover: Option<Handover>,
    /// The replacement was asked for (`-replace`): redo everything, even
    /// what already is as planned (upload every blob again, write every
    /// file again and restart).
    pub replace_requested: bool,
}

/// The instance that took over a deleted instance's physical object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// Its address.
    pub address: Address,
    /// The names of its attributes (public and sensitive): what it owns now.
    pub attributes: std::collections::BTreeSet<String>,
}

/// What [`Provider::adopt`] found: the object already is as planned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adoption {
    /// The state to record, as an apply would have left it.
    pub state: NewInstanceState,
    /// Lines for the plan, e.g. "the tag already points at sha256:…".
    pub details: Vec<String>,
}

/// Whether every attribute refresh `observed` has the value `after` plans
/// for it (sensitive ones compared in clear, in memory): the generic test
/// of [`Provider::adopt`]. An empty observation matches nothing.
pub fn observed_matches(after: &Attrs, observed: &Observed) -> bool {
    let mut any = false;
    for name in observed.attrs.names() {
        any = true;
        if observed.attrs.get(name) != after.get(name) {
            return false;
        }
    }
    any
}

/// How a provider call failed; drift checks distinguish "could not look"
/// from "looked and it differs".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// The node or registry could not be reached.
    Unreachable,
    /// The operation was attempted and failed.
    Failed,
    /// The instance's attributes are not acceptable to the provider.
    InvalidInput,
}

/// An error from a provider.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct ProviderError {
    /// Its kind.
    pub kind: ProviderErrorKind,
    /// What went wrong (must not contain secrets).
    pub message: String,
    /// What the user can do about it.
    pub help: Option<String>,
    /// Set by a refresh ([`Provider::read`]) that could not read the
    /// instance but whose provider accepts planning it anyway: the plan goes
    /// on, the instance is planned from its prior state (at least an update,
    /// so that apply tries it), and the plan carries a warning ending with
    /// this text, which says what apply will do (e.g. "apply will try it and
    /// count a failure against max_failures"). Refresh-only plans still
    /// fail. `None`: a failed read stops the plan.
    pub plan_unread: Option<String>,
}

impl ProviderError {
    /// An error of `kind`.
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            help: None,
            plan_unread: None,
        }
    }

    /// Could not reach the node or registry.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Unreachable, message)
    }

    /// The operation failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Failed, message)
    }

    /// The input is not acceptable.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::InvalidInput, message)
    }

    /// Builder: adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Builder: a refresh error that need not stop the plan (see the field
    /// `plan_unread`); `consequence` says what apply will do.
    pub fn allow_plan_unread(mut self, consequence: impl Into<String>) -> Self {
        self.plan_unread = Some(consequence.into());
        self
    }

    /// Whether this is an "unreachable" error.
    pub fn is_unreachable(&self) -> bool {
        self.kind == ProviderErrorKind::Unreachable
    }
}

impl Diagnostic for ProviderError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let code = match self.kind {
            ProviderErrorKind::Unreachable => "mirrorplan::engine::provider_unreachable",
            ProviderErrorKind::Failed => "mirrorplan::engine::provider_failed",
            ProviderErrorKind::InvalidInput => "mirrorplan::engine::provider_invalid_input",
        };
        Some(Box::new(code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }
}

/// The lifecycle of one kind of resource instance. Object-safe; the engine
/// holds providers as `Arc<dyn Provider>`.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider kind, matching [`DesiredInstance::provider`].
    fn kind(&self) -> &str;

    /// Attributes whose change cannot be applied in place (used by the
    /// default [`Provider::plan`] to choose `Replace`).
    fn force_new(&self) -> &[&str] {
        &[]
    }

    /// The physical object that an instance with these (public) attributes
    /// is, when instances at different addresses can be the same object
    /// (e.g. a node's SSH host and port). A planned delete and a planned
    /// create with equal identities are one hand-over: the delete runs after
    /// the create succeeded and gets [`PlannedChange::handover`]. The
    /// default: `None`, no hand-overs.
    fn physical_identity(&self, _attrs: &BTreeMap<String, AttrValue>) -> Option<String> {
        None
    }

    /// Refresh: what really exists now. `None` means the object is gone.
    async fn read(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
    ) -> Result<Option<Observed>, ProviderError>;

    /// Decides the action. `prior` is the prior state as refreshed (`None`
    /// when there is none or a refresh found the object gone); `observed` is
    /// the raw refresh result when a refresh ran. The default is [`diff`].
    fn plan(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
        _observed: Option<&Observed>,
    ) -> Result<PlannedChange, ProviderError> {
        diff(self.force_new(), desired, prior)
    }

    /// Adoption: `planned` creates an object that the state does not
    /// record but that refresh found (`observed`). When it already is as
    /// planned, the state to record without any change (the plan shows it
    /// as "already present, will be recorded"); `None` (the default) to
    /// create it as planned. Also used by `mirrorplan import`.
    fn adopt(
        &self,
        _desired: &DesiredInstance,
        _planned: &PlannedChange,
        _observed: &Observed,
    ) -> Option<Adoption> {
        None
    }

    /// Creates, updates, replaces or deletes one instance. Returns the new
    /// state of the object, or `None` when it no longer exists.
    ///
    /// `Replace` is one call: the provider removes the old object and creates
    /// the new one. Secrets are in `change.after` in clear. Long operations
    /// should report progress through `ctx` and stop early when
    /// [`ApplyContext::is_cancelled`]; the engine drops the future on a second
    /// interrupt anyway. Error messages must not contain secrets.
    async fn apply(
        &self,
        change: &PlannedChange,
        ctx: &ApplyContext,
    ) -> Result<Option<NewInstanceState>, ProviderError>;
}

/// The names of the attributes that differ between `desired` and `prior`
/// (sensitive ones are compared by digest), in name order.
pub fn changed_attributes(desired: &DesiredInstance, prior: &PriorInstance) -> Vec<String> {
    let mut changed = Vec::new();
    for name in desired.attrs.names() {
        let Some(value) = desired.attrs.get(name) else {
            continue;
        };
        let same = if desired.attrs.is_sensitive(name) {
            prior.secret_matches(name, value)
        } else {
            prior.attrs.get(name) == Some(value)
        };
        if !same {
            changed.push(name.to_owned());
        }
    }
    for name in prior.attrs.keys().chain(prior.sensitive.keys()) {
        if desired.attrs.get(name).is_none() {
            changed.push(name.clone());
        }
    }
    changed.sort();
    changed.dedup();
    changed
}

/// The generic diff: create when there is no prior object, delete when
/// nothing is desired, replace when a `force_new` attribute changes, update
/// when anything else changes, no-op otherwise.
pub fn diff(
    force_new: &[&str],
    desired: Option<&DesiredInstance>,
    prior: Option<&PriorInstance>,
) -> Result<PlannedChange, ProviderError> {
    let (address, provider) = match (desired, prior) {
        (Some(d), _) => (d.address.clone(), d.provider.clone()),
        (None, Some(p)) => (p.address.clone(), p.provider.clone()),
        (None, None) => {
            return Err(ProviderError::invalid_input(
                "nothing to plan: neither a desired nor a prior instance",
            ))
        }
    };
    let mut change = PlannedChange {
        address,
        provider,
        action: Action::NoOp,
        before: prior.map(PriorInstance::attrs_view),
        after: desired.map(|d| d.attrs.clone()),
        replace_because: Vec::new(),
        details: Vec::new(),
        handover: None,
        replace_requested: false,
    };
    change.action = match (desired, prior) {
        (Some(_), None) => Action::Create,
        (None, _) => Action::Delete,
        (Some(d), Some(p)) => {
            let changed = changed_attributes(d, p);
            change.replace_because = changed
                .iter()
                .filter(|c| force_new.contains(&c.as_str()))
                .cloned()
                .collect();
            if !change.replace_because.is_empty() {
                Action::Replace
            } else if changed.is_empty() {
                Action::NoOp
            } else {
                Action::Update
            }
        }
    };
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Address {
        Address::keyed("node", "c", "h").expect("valid address")
    }

    fn prior(attrs: &Attrs) -> PriorInstance {
        let mut p = PriorInstance::new(addr(), "node", "salt");
        p.attrs = attrs.public_values();
        p.sensitive = attrs.sensitive_digests("salt");
        p
    }

    #[test]
    fn diff_chooses_each_action() {
        let base = Attrs::new().with("port", 22).with_sensitive("pw", "a");
        let d = |attrs: Attrs| DesiredInstance::new(addr(), "node", attrs);
        let p = prior(&base);
        let plan = |desired: Option<&DesiredInstance>, prior: Option<&PriorInstance>| {
            diff(&["host"], desired, prior).expect("diff succeeds")
        };
        assert_eq!(plan(Some(&d(base.clone())), None).action, Action::Create);
        assert_eq!(plan(None, Some(&p)).action, Action::Delete);
        assert_eq!(plan(Some(&d(base.clone())), Some(&p)).action, Action::NoOp);
        let secret_changed = d(base.clone().with_sensitive("pw", "b"));
        assert_eq!(plan(Some(&secret_changed), Some(&p)).action, Action::Update);
        let replaced = plan(Some(&d(base.clone().with("host", "x"))), Some(&p));
        assert_eq!(replaced.action, Action::Replace);
        assert_eq!(replaced.replace_because, ["host"]);
        let mut removed = base.clone();
        removed.remove("port");
        assert_eq!(plan(Some(&d(removed)), Some(&p)).action, Action::Update);
        assert!(diff(&[], None, None).is_err());
    }
}
