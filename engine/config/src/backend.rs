//! The `mirrorplan { backend "pg" { ... } }` block: where the state lives.
//!
//! Like Terraform's backend blocks, its settings are literal strings: they
//! are needed before variables can be evaluated (and by commands that
//! evaluate nothing, such as `workspace list`), so references and function
//! calls are refused with a hint to use `PG_CONN_STR` or `--backend-config`
//! for values that differ between runs. [`backend_of_dir`] reads only this
//! block, without loading the rest of the configuration.

use std::collections::BTreeMap;
use std::path::Path;

use hcl::eval::{Context, Evaluate};
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Structure};
use hcl_edit::Span;
use serde::Serialize;

use crate::diag::{did_you_mean, ConfigDiagnostic, DiagKind, SourceFile};

/// The backends a configuration may name, with their attributes.
pub const BACKENDS: &[(&str, &[&str])] = &[("local", &[]), ("pg", &["conn_str", "schema_name"])];

/// A configured backend. Its settings may hold a password (in `conn_str`):
/// they are neither serialised nor shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct BackendBlock {
    /// `pg` or `local`.
    pub kind: String,
    /// Its attributes (literal strings).
    #[serde(skip)]
    pub settings: BTreeMap<String, String>,
    /// `file:line:column` of the block, for messages.
    pub location: String,
}

impl std::fmt::Debug for BackendBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendBlock")
            .field("kind", &self.kind)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("location", &self.location)
            .finish()
    }
}

/// Decodes one top-level `mirrorplan` block; every problem is returned as
/// a diagnostic (the block is then `None`).
pub fn decode(file: &SourceFile, block: &Block) -> (Option<BackendBlock>, Vec<ConfigDiagnostic>) {
    let mut diags = Vec::new();
    let at = |span: Option<std::ops::Range<usize>>, kind: DiagKind, msg: String, label: &str| {
        ConfigDiagnostic::new(kind, msg).at(file, span, label)
    };
    if !block.labels.is_empty() {
        diags.push(at(
            block.labels[0].span(),
            DiagKind::InvalidValue,
            "`mirrorplan` blocks take no name".into(),
            "block labels",
        ));
        return (None, diags);
    }
    let mut found: Option<BackendBlock> = None;
    for st in block.body.iter() {
        let inner = match st {
            Structure::Attribute(a) => {
                diags.push(
                    at(
                        a.key.span(),
                        DiagKind::UnknownAttribute,
                        format!(
                            "unexpected attribute `{}` in the mirrorplan block",
                            a.key.as_str()
                        ),
                        "not a mirrorplan setting",
                    )
                    .help("the mirrorplan block holds one `backend \"pg\" { ... }` block"),
                );
                continue;
            }
            Structure::Block(b) => b,
        };
        if inner.ident.as_str() != "backend" {
            let help = did_you_mean(inner.ident.as_str(), ["backend"]).unwrap_or_else(|| {
                "the mirrorplan block holds one `backend \"pg\" { ... }` block".into()
            });
            diags.push(
                at(
                    inner.ident.span(),
                    DiagKind::UnknownBlock,
                    format!(
                        "unknown block `{}` in the mirrorplan block",
                        inner.ident.as_str()
                    ),
                    "not a mirrorplan setting",
                )
                .help(help),
            );
            continue;
        }
        if found.is_some() {
            diags.push(
                at(
                    inner.ident.span(),
                    DiagKind::Duplicate,
                    "the mirrorplan block has a second backend".into(),
                    "second backend",
                )
                .help("a configuration keeps its state in one backend; remove one"),
            );
            continue;
        }
        let kind = match inner.labels.as_slice() {
            [one] => one.as_str().to_owned(),
            _ => {
                diags.push(
                    at(
                        inner.ident.span(),
                        DiagKind::InvalidValue,
                        "a backend block takes exactly one name: its type, e.g. `backend \"pg\" { ... }`".into(),
                        "backend type",
                    ),
                );
                continue;
            }
        };
        let Some((_, attrs)) = BACKENDS.iter().find(|(k, _)| *k == kind) else {
            let help = did_you_mean(&kind, BACKENDS.iter().map(|(k, _)| *k))
                .unwrap_or_else(|| "the backends are \"local\" (the default) and \"pg\"".into());
            diags.push(
                at(
                    inner.labels[0].span(),
                    DiagKind::InvalidValue,
                    format!("unknown backend type `{kind}`"),
                    "backend type",
                )
                .help(help),
            );
            continue;
        };
        let mut settings = BTreeMap::new();
        for st in inner.body.iter() {
            match st {
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    if !attrs.contains(&key) {
                        let help = did_you_mean(key, attrs.iter().copied()).unwrap_or_else(|| {
                            format!(
                                "backend \"{kind}\" takes {}",
                                if attrs.is_empty() {
                                    "no attributes".to_owned()
                                } else {
                                    attrs.join(" and ")
                                }
                            )
                        });
                        diags.push(
                            at(
                                a.key.span(),
                                DiagKind::UnknownAttribute,
                                format!("backend \"{kind}\" has no attribute `{key}`"),
                                "unknown attribute",
                            )
                            .help(help),
                        );
                        continue;
                    }
                    match literal_string(&a.value) {
                        Some(v) => {
                            settings.insert(key.to_owned(), v);
                        }
                        None => diags.push(
                            at(
                                a.value.span(),
                                DiagKind::WrongType,
                                format!("`{key}` must be a literal string"),
                                "not a literal string",
                            )
                            .help(
                                "backend settings are read before variables: variables and functions \
                                 may not be used here; set values that differ between runs with \
                                 PG_CONN_STR, the PG* variables or --backend-config KEY=VALUE",
                            ),
                        ),
                    }
                }
                Structure::Block(b) => diags.push(at(
                    b.ident.span(),
                    DiagKind::UnknownBlock,
                    format!(
                        "unexpected block `{}` in backend \"{kind}\"",
                        b.ident.as_str()
                    ),
                    "not a backend setting",
                )),
            }
        }
        let (line, col) = file.line_col(inner.ident.span().map_or(0, |s| s.start));
        found = Some(BackendBlock {
            kind,
            settings,
            location: format!("{}:{line}:{col}", file.name),
        });
    }
    if !diags.is_empty() {
        return (None, diags);
    }
    (found, diags)
}

/// The value of a string literal or of a template without interpolation.
fn literal_string(expr: &Expression) -> Option<String> {
    match expr {
        Expression::String(_) | Expression::StringTemplate(_) => {
            let e: hcl::Expression = expr.clone().into();
            match e.evaluate(&Context::new()) {
                Ok(hcl::Value::String(s)) => Some(s),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The backend block of the configuration in `dir`, reading only that
/// block: `Ok(None)` when there is none (or no `*.hcl` file at all), every
/// problem of the block (or a file that does not parse) as diagnostics.
pub fn backend_of_dir(dir: &Path) -> Result<Option<BackendBlock>, Vec<ConfigDiagnostic>> {
    let mut paths: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "hcl") && p.is_file())
            .collect(),
        Err(_) => return Ok(None),
    };
    paths.sort();
    let mut diags = Vec::new();
    let mut found: Option<BackendBlock> = None;
    for p in paths {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        // cheap pre-check: most files (and every large one) have no such block
        if !text.contains("mirrorplan") {
            continue;
        }
        let file = SourceFile::new(name, text);
        let body = match hcl_edit::parser::parse_body(&file.text) {
            Ok(b) => b,
            Err(e) => {
                diags.push(
                    ConfigDiagnostic::new(
                        DiagKind::Syntax,
                        format!("invalid HCL: {}", e.message()),
                    )
                    .at(&file, None, "here")
                    .help("run `mirrorplan validate` to see the problem"),
                );
                continue;
            }
        };
        for st in body.iter() {
            if let Structure::Block(b) = st {
                if b.ident.as_str() == "mirrorplan" {
                    let (block, mut d) = decode(&file, b);
                    diags.append(&mut d);
                    if let Some(block) = block {
                        if let Some(first) = &found {
                            diags.push(
                                ConfigDiagnostic::new(
                                    DiagKind::Duplicate,
                                    "the backend is configured twice",
                                )
                                .at(&file, b.ident.span(), "second mirrorplan block")
                                .help(format!("the first is at {}; remove one", first.location)),
                            );
                        } else {
                            found = Some(block);
                        }
                    }
                }
            }
        }
    }
    if diags.is_empty() {
        Ok(found)
    } else {
        Err(diags)
    }
}
