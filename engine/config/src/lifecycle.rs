//! `lifecycle { ... }` inside `image_set` and `cluster` blocks, as in
//! Terraform: `prevent_destroy = true` makes every plan that would delete an
//! instance of the block fail, and `ignore_changes = [...]` names attributes
//! that other tools own (their drift is not planned as a change).
//!
//! Both settings must be literal values, as in Terraform: they are read
//! before anything is evaluated, so `validate` checks them completely.

use std::ops::Range;

use hcl_edit::expr::Expression;
use hcl_edit::structure::Body;
use hcl_edit::Span;
use serde::Serialize;

use crate::diag::{did_you_mean, ConfigDiagnostic, DiagKind, SourceFile};
use crate::model::Origin;

/// The lifecycle settings of one block (the same for each of its
/// `for_each` instances).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// Where `prevent_destroy = true` is written; `None` when the block
    /// does not prevent its destruction.
    pub prevent_destroy: Option<Origin>,
    /// The names given in `ignore_changes`, each one of
    /// [`ignorable`]`(kind)`, in the order written.
    pub ignore_changes: Vec<String>,
}

/// The attributes `ignore_changes` accepts in a block of `kind`
/// (`image_set` or `cluster`), with what each covers.
pub fn ignorable(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "image_set" => &[(
            "digest",
            "the digest the mirror's tag points at (another tool re-tags the image)",
        )],
        "cluster" => &[
            (
                "hosts_toml",
                "every hosts.toml file the cluster's nodes get (another tool rewrites them)",
            ),
            (
                "ca_cert",
                "the CA certificate files the cluster's nodes get (another tool rotates them)",
            ),
        ],
        _ => &[],
    }
}

/// Reads the `lifecycle` block of a block of `kind` (shape already checked
/// against the schema), with a diagnostic for each value that is not a
/// literal of the right type and each unknown attribute name.
pub(crate) fn decode(
    file: &SourceFile,
    kind: &str,
    body: &Body,
) -> (Lifecycle, Vec<ConfigDiagnostic>) {
    let mut out = Lifecycle::default();
    let mut diags = Vec::new();
    let Some(block) = body.get_blocks("lifecycle").next() else {
        return (out, diags);
    };
    let literal = |span: Option<Range<usize>>, what: &str, example: &str| {
        ConfigDiagnostic::new(
            DiagKind::WrongType,
            format!("`lifecycle.{what}` must be a literal value"),
        )
        .at(file, span, "not a literal")
        .help(format!(
            "lifecycle settings are read before anything is evaluated: write e.g. `{example}`"
        ))
    };
    if let Some(attr) = block.body.get_attribute("prevent_destroy") {
        match &attr.value {
            Expression::Bool(b) => {
                if *b.value() {
                    let span = attr.span().unwrap_or_default();
                    let (line, _) = file.line_col(span.start);
                    out.prevent_destroy = Some(Origin {
                        file: file.name.clone(),
                        span,
                        line,
                    });
                }
            }
            other => diags.push(literal(
                other.span(),
                "prevent_destroy",
                "prevent_destroy = true",
            )),
        }
    }
    if let Some(attr) = block.body.get_attribute("ignore_changes") {
        let allowed = ignorable(kind);
        let names = || {
            allowed
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Expression::Array(items) = &attr.value else {
            diags.push(literal(
                attr.value.span(),
                "ignore_changes",
                &format!("ignore_changes = [{}]", allowed[0].0),
            ));
            return (out, diags);
        };
        for item in items.iter() {
            // `[digest]` as in Terraform, or `["digest"]`
            let name = match item {
                Expression::Variable(v) => Some(v.value().as_str().to_string()),
                Expression::String(s) => Some(s.value().to_string()),
                _ => None,
            };
            let Some(name) = name else {
                diags.push(literal(
                    item.span(),
                    "ignore_changes",
                    &format!("ignore_changes = [{}]", allowed[0].0),
                ));
                continue;
            };
            if !allowed.iter().any(|(n, _)| *n == name) {
                let help = did_you_mean(&name, allowed.iter().map(|(n, _)| *n))
                    .unwrap_or_else(|| format!("`{kind}` can ignore changes to: {}", names()));
                diags.push(
                    ConfigDiagnostic::new(
                        DiagKind::UnknownAttribute,
                        format!("`ignore_changes` of a `{kind}` has no attribute `{name}`"),
                    )
                    .at(file, item.span(), "unknown attribute")
                    .help(help),
                );
                continue;
            }
            if !out.ignore_changes.contains(&name) {
                out.ignore_changes.push(name);
            }
        }
    }
    (out, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle(kind: &str, text: &str) -> (Lifecycle, Vec<ConfigDiagnostic>) {
        let file = SourceFile::new("main.hcl", text);
        let Ok(body) = hcl_edit::parser::parse_body(text) else {
            panic!("parses")
        };
        let Some(block) = body.get_blocks(kind).next() else {
            panic!("block")
        };
        decode(&file, kind, &block.body)
    }

    #[test]
    fn reads_literal_settings_and_names_unknown_attributes() {
        let (l, d) = lifecycle(
            "cluster",
            "cluster \"c\" {\n  lifecycle {\n    prevent_destroy = true\n    ignore_changes = [hosts_toml, \"ca_cert\", hosts_tom]\n  }\n}\n",
        );
        assert_eq!(l.ignore_changes, ["hosts_toml", "ca_cert"]);
        assert_eq!(l.prevent_destroy.as_ref().map(|o| o.line), Some(3));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].help.as_deref(), Some("did you mean `hosts_toml`?"));
        assert_eq!(d[0].location().as_deref(), Some("main.hcl:4:46"));

        let (l, d) = lifecycle(
            "image_set",
            "image_set \"s\" {\n  lifecycle {\n    prevent_destroy = var.x\n    ignore_changes = digest\n  }\n}\n",
        );
        assert_eq!(l, Lifecycle::default());
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().all(|d| d.kind == DiagKind::WrongType));
    }
}
