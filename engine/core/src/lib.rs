//! mirrorplan's engine: addresses, values, the provider contract, plans and
//! the apply walk (OpenTofu's `providers`, `plans` and `tofu` packages).
//!
//! # Boundary
//! The engine receives an already expanded list of [`DesiredInstance`]s and
//! a [`PriorSnapshot`] of the state; it never sees HCL, HTTP or SSH. The only
//! thing it knows about registries and nodes is the [`Provider`] trait
//! (read → plan → apply for one instance). It never prints: progress goes
//! through [`Hooks`], output is produced by the pure functions in
//! [`render`], and persisting state is the caller's [`StateSink`].
//!
//! # Invariants
//! - A plan is a value ([`Plan`]): rendered, saved ([`planfile`]) and applied
//!   later. Apply never re-decides from configuration: it executes the plan
//!   after checking the state's lineage and serial are those the plan was
//!   made against. For a saved plan the configuration re-evaluated at apply
//!   time must yield exactly the planned instances; it only supplies the
//!   secret values a plan file does not hold.
//! - Secrets exist in clear only in memory ([`Sensitive`], [`Attrs`] with its
//!   masking `Debug`). Renderings show `(sensitive value)`; plan files and
//!   state records hold salted digests ([`secret_digest`]).
//! - State is handed to the [`StateSink`] after every completed instance, so
//!   an interrupted or crashed apply loses nothing already done.
//! - The apply walk starts an instance only after everything it depends on
//!   succeeded; deletions run in reverse dependency order; dependents of a
//!   failure are skipped and reported; at most `parallelism` provider calls
//!   run at once, for refresh and apply alike.
//! - Instances are listed in address order everywhere, so output is stable.

pub mod address;
pub mod apply;
pub mod engine;
pub mod error;
mod graph;
pub mod hooks;
pub mod markdown;
pub mod moves;
pub mod plan;
pub mod planfile;
pub mod provider;
pub mod render;
pub mod term;
pub mod value;

pub use address::{Address, AddressError};
pub use apply::{ApplyReport, ApplyRequest, SinkError, StateSink};
pub use engine::{
    Engine, Imported, PlanRequest, PriorSnapshot, StateIdentity, DEFAULT_PARALLELISM,
};
pub use error::{EngineError, RefreshFailure};
pub use hooks::{ApplyContext, Hooks, Interrupt, NoHooks, Progress};
pub use markdown::{human_bytes, render_plan_markdown};
pub use moves::{final_address, Move};
pub use plan::{
    config_digest, Action, AttrChange, Drift, InstanceRecord, Plan, ResourceChange, StateUpdate,
    Summary,
};
pub use provider::{
    changed_attributes, diff, observed_matches, Adoption, DesiredInstance, Handover,
    NewInstanceState, Observed, PlannedChange, PriorInstance, Provider, ProviderError,
    ProviderErrorKind,
};
pub use render::{plan_json, render_apply_report, render_plan, render_plan_json, RenderOptions};
pub use term::escape_controls;
pub use value::{secret_digest, AttrValue, Attrs, Sensitive, SENSITIVE_MASK};
