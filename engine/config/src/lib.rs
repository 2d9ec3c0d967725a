//! mirrorplan's configuration language: HCL files → a checked [`Config`].
//!
//! Architecture invariant: this crate does no I/O beyond reading the
//! configuration files (and, from `plan` on, the files named by `file()` and
//! `--var-file`); it never talks to registries or nodes. Loading never stops at
//! the first problem: [`load_dir`] returns the model as far as it could be
//! built plus every [`ConfigDiagnostic`], each with a stable code, a span and a
//! help line.
//!
//! API boundary: [`load_dir`]/[`load_sources`] → [`Loaded`]; the model types in
//! [`model`]; [`graph::to_dot`]; [`fmt::format_source`].

pub mod arith;
pub mod backend;
pub mod diag;
pub mod fmt;
pub mod functions;
pub mod graph;
pub mod lifecycle;
pub mod load;
pub mod model;
pub mod moved;
pub mod ownership;
pub mod refs;
pub mod schema;
pub mod syntax;
pub mod tags;

pub use backend::{backend_of_dir, BackendBlock};
pub use diag::{ConfigDiagnostic, DiagKind, SourceFile};
pub use lifecycle::Lifecycle;
pub use load::{load_dir, load_sources, parse_var_flag, LoadOptions, Loaded, Mode};
pub use model::*;
pub use tags::TagSelection;
