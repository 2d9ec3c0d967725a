//! `moved` blocks: a cluster or image set (or one `for_each` instance of
//! one) renamed in the configuration, as Terraform's `moved` blocks:
//!
//! ```hcl
//! moved {
//!   from = cluster.local
//!   to   = cluster.edge
//! }
//! ```
//!
//! The addresses are configuration addresses: `KIND.NAME` or
//! `KIND.NAME["KEY"]` with KIND `cluster` or `image_set`. A cluster's move
//! carries its nodes, an image set's its images (the binary maps them onto
//! the engine's instance addresses). Checked here, without I/O: the syntax,
//! the kinds, a `from` that still exists in the configuration, two blocks
//! moving the same address, and cycles. Chains (`a -> b`, `b -> c`) are
//! followed, as Terraform does.

use std::fmt;
use std::ops::Range;

use hcl_edit::structure::{Block, Structure};
use hcl_edit::Span;
use serde::Serialize;

use crate::diag::{ConfigDiagnostic, DiagKind, SourceFile};

/// The kinds of block a `moved` block can move.
pub const MOVABLE: &[&str] = &["cluster", "image_set"];

/// A configuration address in a `moved` block: `cluster.edge` or
/// `cluster.edge["a"]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct BlockAddr {
    /// `cluster` or `image_set`.
    pub kind: String,
    /// The block's name.
    pub name: String,
    /// The `for_each` key, for one instance of a `for_each` block.
    pub key: Option<String>,
}

impl BlockAddr {
    /// Whether `self` (a `from`) selects `other`: equal, or `self` is a
    /// whole block and `other` one of its instances.
    pub fn selects(&self, other: &BlockAddr) -> bool {
        self.kind == other.kind
            && self.name == other.name
            && (self.key.is_none() || self.key == other.key)
    }
}

impl fmt::Display for BlockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.name)?;
        if let Some(k) = &self.key {
            write!(f, "[{}]", crate::model::quote(k))?;
        }
        Ok(())
    }
}

/// Parses `KIND.NAME` or `KIND.NAME["KEY"]` (spaces around the parts
/// allowed). The error says what is wrong.
pub fn parse_block_addr(text: &str) -> Result<BlockAddr, String> {
    let text = text.trim();
    let (head, rest) = match text.find('[') {
        Some(i) => (text[..i].trim_end(), Some(text[i..].trim())),
        None => (text, None),
    };
    let Some((kind, name)) = head.split_once('.') else {
        return Err("expected `KIND.NAME`, e.g. `cluster.edge`".into());
    };
    let (kind, name) = (kind.trim(), name.trim());
    if !MOVABLE.contains(&kind) {
        return Err(format!(
            "`{kind}` cannot be moved: `moved` blocks move `cluster` and `image_set` blocks"
        ));
    }
    if !crate::load::is_identifier_pub(name) {
        return Err(format!("`{name}` is not a block name"));
    }
    let key = match rest {
        None => None,
        Some(r) => {
            let inner = r
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .map(str::trim)
                .and_then(|r| r.strip_prefix('"'))
                .and_then(|r| r.strip_suffix('"'))
                .ok_or("an instance key is a quoted string in brackets, like [\"a\"]")?;
            let mut key = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('"') => key.push('"'),
                        Some('\\') => key.push('\\'),
                        Some('n') => key.push('\n'),
                        _ => return Err("unknown escape in the key (use \\\" or \\\\)".into()),
                    },
                    '"' => return Err("unescaped `\"` inside the key".into()),
                    c => key.push(c),
                }
            }
            Some(key)
        }
    };
    Ok(BlockAddr {
        kind: kind.to_string(),
        name: name.to_string(),
        key,
    })
}

/// One `moved` block.
#[derive(Debug, Clone, Serialize)]
pub struct MovedBlock {
    /// The old address.
    pub from: BlockAddr,
    /// The new address.
    pub to: BlockAddr,
    /// `file:line:column` of the block.
    pub location: String,
    #[serde(skip)]
    pub(crate) file: usize,
    #[serde(skip)]
    pub(crate) block_span: Option<Range<usize>>,
    #[serde(skip)]
    pub(crate) from_span: Option<Range<usize>>,
}

/// Decodes one top-level `moved` block of file number `file_no`.
pub(crate) fn decode(
    file: &SourceFile,
    file_no: usize,
    block: &Block,
) -> (Option<MovedBlock>, Vec<ConfigDiagnostic>) {
    let mut diags = Vec::new();
    let at = |span: Option<Range<usize>>, kind: DiagKind, msg: String, label: &str| {
        ConfigDiagnostic::new(kind, msg).at(file, span, label)
    };
    if let Some(l) = block.labels.first() {
        diags.push(at(
            l.span(),
            DiagKind::InvalidValue,
            "`moved` blocks take no name".into(),
            "block labels",
        ));
    }
    let mut from = None;
    let mut to = None;
    for s in block.body.iter() {
        match s {
            Structure::Attribute(a) if matches!(a.key.as_str(), "from" | "to") => {
                let span = a.value.span();
                let text = span
                    .clone()
                    .and_then(|r| file.text.get(r))
                    .unwrap_or_default();
                match parse_block_addr(text) {
                    Ok(addr) => {
                        let slot = if a.key.as_str() == "from" {
                            &mut from
                        } else {
                            &mut to
                        };
                        *slot = Some((addr, span));
                    }
                    Err(reason) => diags.push(
                        at(
                            span,
                            DiagKind::InvalidValue,
                            format!("`{}` in a moved block is not an address: {reason}", a.key.as_str()),
                            "not an address",
                        )
                        .help("write a block address without quotes, e.g. `from = cluster.local` or `to = cluster.edge[\"a\"]`"),
                    ),
                }
            }
            Structure::Attribute(a) => diags.push(
                at(
                    a.key.span(),
                    DiagKind::UnknownAttribute,
                    format!("unexpected attribute `{}` in a moved block", a.key.as_str()),
                    "unknown attribute",
                )
                .help("a moved block has exactly `from` and `to`"),
            ),
            Structure::Block(b) => diags.push(
                at(
                    b.ident.span(),
                    DiagKind::UnknownBlock,
                    format!("unexpected block `{}` in a moved block", b.ident.as_str()),
                    "unknown block",
                )
                .help("a moved block has exactly `from` and `to`"),
            ),
        }
    }
    let block_span = block.ident.span();
    for (name, slot) in [("from", &from), ("to", &to)] {
        if slot.is_none()
            && !diags
                .iter()
                .any(|d| d.message.contains(&format!("`{name}`")))
        {
            diags.push(at(
                block_span.clone(),
                DiagKind::MissingRequired,
                format!("the moved block has no `{name}`"),
                "moved block",
            ));
        }
    }
    let (Some((from, from_span)), Some((to, _))) = (from, to) else {
        return (None, diags);
    };
    if from.kind != to.kind {
        diags.push(
            at(
                block_span.clone(),
                DiagKind::Moved,
                format!("cannot move {from} to {to}: a {} is not a {}", from.kind, to.kind),
                "moves between kinds",
            )
            .help("a moved block renames a block of one kind; a cluster stays a cluster, an image set an image set"),
        );
        return (None, diags);
    }
    if from == to {
        diags.push(at(
            block_span.clone(),
            DiagKind::Moved,
            format!("the moved block moves {from} to itself"),
            "moves nowhere",
        ));
        return (None, diags);
    }
    let (line, col) = file.line_col(block_span.as_ref().map_or(0, |s| s.start));
    (
        Some(MovedBlock {
            from,
            to,
            location: format!("{}:{line}:{col}", file.name),
            file: file_no,
            block_span,
            from_span,
        }),
        diags,
    )
}

/// What the configuration declares, for the checks.
pub(crate) struct Declared {
    /// `(kind, name, uses for_each)` of every cluster and image_set block.
    pub blocks: Vec<(String, String, bool)>,
    /// `(kind, name, key)` of every instance known (`for_each` values may
    /// be unknown during `validate`).
    pub instances: Vec<(String, String, Option<String>)>,
}

/// The checks across blocks: `from` still declared, the same address moved
/// twice, cycles.
pub(crate) fn check(
    moved: &[MovedBlock],
    files: &[SourceFile],
    declared: &Declared,
) -> Vec<ConfigDiagnostic> {
    let mut diags = Vec::new();
    let at =
        |m: &MovedBlock, span: Option<Range<usize>>, kind: DiagKind, msg: String, label: &str| {
            ConfigDiagnostic::new(kind, msg).at(&files[m.file], span, label)
        };
    for (i, m) in moved.iter().enumerate() {
        let f = &m.from;
        let block = declared
            .blocks
            .iter()
            .find(|(k, n, _)| *k == f.kind && *n == f.name);
        let exists = match (block, &f.key) {
            (None, _) => false,
            // the whole block moves (both unkeyed) or, into a key, the
            // single instance of a block without for_each
            (Some((_, _, for_each)), None) => m.to.key.is_none() || !for_each,
            (Some(_), Some(k)) => declared
                .instances
                .iter()
                .any(|(ik, n, key)| *ik == f.kind && *n == f.name && key.as_deref() == Some(k)),
        };
        if exists {
            diags.push(
                at(
                    m,
                    m.from_span.clone(),
                    DiagKind::Moved,
                    format!(
                        "{} still exists in the configuration, so it cannot have moved to {}",
                        f, m.to
                    ),
                    "still declared",
                )
                .help(format!(
                    "remove or rename the `{}` block, or remove this moved block",
                    f.kind
                )),
            );
        }
        if let Some(first) = moved[..i].iter().find(|o| o.from == m.from) {
            diags.push(
                at(
                    m,
                    m.from_span.clone(),
                    DiagKind::Moved,
                    format!("{} is moved twice (to {} and to {})", f, first.to, m.to),
                    "second move of the same address",
                )
                .help(format!(
                    "the first is at {}; keep one of them",
                    first.location
                )),
            );
        }
    }
    // cycles: follow each block's `to` through the others' `from`
    let mut reported: Vec<usize> = Vec::new();
    for (start, m) in moved.iter().enumerate() {
        if reported.contains(&start) {
            continue;
        }
        let mut path = vec![start];
        let mut current = m.to.clone();
        while path.len() <= moved.len() {
            // an unkeyed `from` moved into a key names the single instance only
            let follows = |o: &MovedBlock| {
                if o.from.key.is_none() && o.to.key.is_some() {
                    o.from == current
                } else {
                    o.from.selects(&current)
                }
            };
            let Some(next) = moved.iter().position(follows) else {
                break;
            };
            if next == start {
                let names: Vec<String> = path
                    .iter()
                    .map(|i| moved[*i].from.to_string())
                    .chain(std::iter::once(m.from.to_string()))
                    .collect();
                diags.push(
                    at(
                        m,
                        m.block_span.clone(),
                        DiagKind::Cycle,
                        format!("the moved blocks form a cycle: {}", names.join(" -> ")),
                        "moved in a cycle",
                    )
                    .help(
                        "a chain of moves must end at an address; remove one of these moved blocks",
                    ),
                );
                reported.extend(path.iter().copied());
                break;
            }
            if path.contains(&next) {
                break;
            }
            path.push(next);
            current = moved[next].to.clone();
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_block_addresses() {
        let a = parse_block_addr(" cluster.edge [ \"a\\\"b\" ] ").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.key.as_deref(), Some("a\"b"));
        assert_eq!(a.to_string(), "cluster.edge[\"a\\\"b\"]");
        assert!(parse_block_addr("node.x").is_err());
        assert!(parse_block_addr("\"cluster.x\"").is_err());
        assert!(parse_block_addr("cluster.x[a]").is_err());
        assert!(parse_block_addr("cluster").is_err());
    }
}
