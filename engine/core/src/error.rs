//! The engine's errors: one enum, each variant a diagnostic with a stable
//! code and a help line. None of them ever contains a secret value.

use miette::Diagnostic;
use thiserror::Error;

use crate::address::Address;
use crate::provider::ProviderError;

/// One instance whose refresh failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFailure {
    /// The instance.
    pub address: Address,
    /// The provider's error.
    pub error: ProviderError,
}

/// Everything that can stop a plan or an apply before the walk.
#[derive(Debug, Error, Diagnostic)]
#[non_exhaustive]
pub enum EngineError {
    /// Two desired instances share one address.
    #[error("the instance {0} is declared twice")]
    #[diagnostic(
        code(mirrorplan::engine::duplicate_instance),
        help("every expanded instance needs its own address; check for_each keys")
    )]
    DuplicateInstance(Address),

    /// No provider is registered for a kind.
    #[error("no provider `{provider}` is available for {address}")]
    #[diagnostic(
        code(mirrorplan::engine::unknown_provider),
        help("this is a bug in mirrorplan's provider registration, or the state was written by a newer version")
    )]
    UnknownProvider {
        /// The instance.
        address: Address,
        /// The provider kind it names.
        provider: String,
    },

    /// A desired instance depends on an address that is not desired.
    #[error("{from} depends on {to}, which is not part of the configuration")]
    #[diagnostic(
        code(mirrorplan::engine::unknown_dependency),
        help("declare {to} or remove the reference to it")
    )]
    UnknownDependency {
        /// The dependent instance.
        from: Address,
        /// The missing dependency.
        to: Box<Address>,
    },

    /// The dependencies form a cycle.
    #[error("dependency cycle: {path}")]
    #[diagnostic(
        code(mirrorplan::engine::dependency_cycle),
        help("break the cycle by removing one of the references or depends_on entries")
    )]
    Cycle {
        /// The cycle, e.g. `a -> b -> a`.
        path: String,
    },

    /// A `-target` matches nothing.
    #[error("the target {0} matches no instance in the configuration or the state")]
    #[diagnostic(code(mirrorplan::engine::target_not_found), help("{}", target_help(.1)))]
    TargetNotFound(Address, Option<String>),

    /// A `-replace` matches no instance of the configuration.
    #[error("the -replace address {0} matches no instance in the configuration")]
    #[diagnostic(code(mirrorplan::engine::replace_not_found), help("{}", target_help(.1)))]
    ReplaceNotFound(Address, Option<String>),

    /// `mirrorplan import`: the object does not exist.
    #[error("{0} does not exist, so there is nothing to import")]
    #[diagnostic(
        code(mirrorplan::engine::nothing_to_import),
        help("`mirrorplan apply` creates it; import records only what already exists (an image's tag in the mirror, a node's files)")
    )]
    NothingToImport(Address),

    /// Some refresh reads failed.
    #[error("could not refresh {} instance(s): {}", .failures.len(), summarize(.failures))]
    #[diagnostic(
        code(mirrorplan::engine::refresh_failed),
        help("check that the nodes and registries are reachable, or plan with refresh disabled")
    )]
    Refresh {
        /// Every failure, in address order.
        failures: Vec<RefreshFailure>,
    },

    /// A provider could not plan an instance.
    #[error("could not plan {address}: {error}")]
    #[diagnostic(
        code(mirrorplan::engine::plan_failed),
        help("fix the instance's attributes in the configuration")
    )]
    PlanFailed {
        /// The instance.
        address: Address,
        /// The provider's error.
        error: Box<ProviderError>,
    },

    /// The state moved since the plan was made.
    #[error("the saved plan is stale: it was made for state {plan_lineage} serial {plan_serial}, but the state is now {state_lineage} serial {state_serial}")]
    #[diagnostic(
        code(mirrorplan::engine::stale_plan),
        help("the state changed after the plan was made; run `mirrorplan plan` again")
    )]
    StalePlan {
        /// Lineage recorded in the plan.
        plan_lineage: String,
        /// Serial recorded in the plan.
        plan_serial: u64,
        /// Current lineage.
        state_lineage: String,
        /// Current serial.
        state_serial: u64,
    },

    /// The configuration evaluated at apply time differs from the plan.
    #[error("the configuration changed since the plan was made: {}", join(.addresses))]
    #[diagnostic(
        code(mirrorplan::engine::config_changed),
        help("run `mirrorplan plan` again to see the current changes")
    )]
    ConfigChanged {
        /// The instances that differ.
        addresses: Vec<Address>,
    },

    /// A change needs secret values that nobody supplied.
    #[error("the sensitive values for {0} are not available")]
    #[diagnostic(
        code(mirrorplan::engine::missing_secrets),
        help("a saved plan holds only digests of secrets: apply it with the configuration that produced it")
    )]
    MissingSecrets(Address),

    /// A plan file is damaged or of an unknown format.
    #[error("the plan file cannot be used: {reason}")]
    #[diagnostic(
        code(mirrorplan::engine::plan_file),
        help("the file is damaged or was written by another version; run `mirrorplan plan --out FILE` again")
    )]
    PlanFile {
        /// What is wrong.
        reason: String,
    },

    /// A plan file whose keyed checksum does not match: edited after
    /// `plan` wrote it, or written against another state.
    #[error("the plan file cannot be used: it was modified after `mirrorplan plan` wrote it (its keyed checksum does not match)")]
    #[diagnostic(
        code(mirrorplan::engine::plan_tampered),
        help("a plan file is checked with a key derived from the state's private salt, which the file does not hold; never edit a plan file: run `mirrorplan plan --out FILE` again")
    )]
    PlanTampered,
}

fn target_help(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("did you mean `{s}`?"),
        None => "list instances with `mirrorplan state list`; quote keys like image.SET[\"gcr.io/a/b:t\"]".into(),
    }
}

fn summarize(failures: &[RefreshFailure]) -> String {
    failures
        .iter()
        .map(|f| match &f.error.help {
            // the provider's advice is specific (e.g. "set `ca_cert`"): keep it
            Some(h) => format!("{}: {} (help: {h})", f.address, f.error),
            None => format!("{}: {}", f.address, f.error),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn join(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(Address::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl EngineError {
    /// Whether this is a refresh failure where every failing instance was
    /// unreachable (drift checks report "unreachable" instead of "drift").
    pub fn is_unreachable(&self) -> bool {
        match self {
            EngineError::Refresh { failures } => {
                !failures.is_empty() && failures.iter().all(|f| f.error.is_unreachable())
            }
            _ => false,
        }
    }
}
