//! Finding the references in an expression, with their spans.
//!
//! A reference is a traversal rooted at a name: `var.x`, `local.y`,
//! `registry.mirror`, `image_set.anthos["k"]`, `each.key`. Names bound by
//! `for` expressions and template `for` directives are not references.

use std::collections::HashSet;
use std::ops::Range;

use hcl_edit::expr::{Expression, TraversalOperator};
use hcl_edit::template::ForTemplateExpr;
use hcl_edit::visit::{self, Visit};
use hcl_edit::Span;

/// One use of a name in an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUse {
    /// The root name (`var`, `local`, `registry`, ...).
    pub root: String,
    /// The attribute after the root (`var.NAME`), when present.
    pub attr: Option<String>,
    /// A literal string index after the attribute (`image_set.x["k"]`).
    pub key: Option<String>,
    /// The span of the whole `root.attr[key]` part.
    pub span: Option<Range<usize>>,
}

#[derive(Default)]
struct Collector {
    refs: Vec<RefUse>,
    bound: HashSet<String>,
}

fn join_span(a: Option<Range<usize>>, b: Option<Range<usize>>) -> Option<Range<usize>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.start.min(b.start)..a.end.max(b.end)),
        (a, b) => a.or(b),
    }
}

impl Visit for Collector {
    fn visit_expr(&mut self, node: &Expression) {
        if let Expression::Variable(ident) = node {
            self.refs.push(RefUse {
                root: ident.as_str().to_string(),
                attr: None,
                key: None,
                span: ident.span(),
            });
            return;
        }
        visit::visit_expr(self, node);
    }

    fn visit_traversal(&mut self, node: &hcl_edit::expr::Traversal) {
        if let Expression::Variable(root) = &node.expr {
            let mut span = root.span();
            let mut attr = None;
            let mut key = None;
            if let Some(first) = node.operators.first() {
                if let TraversalOperator::GetAttr(id) = first.value() {
                    attr = Some(id.as_str().to_string());
                    span = join_span(span, first.span().or(id.span()));
                    if let Some(second) = node.operators.get(1) {
                        if let TraversalOperator::Index(Expression::String(s)) = second.value() {
                            key = Some(s.value().to_string());
                            span = join_span(span, second.span().or(s.span()));
                        }
                    }
                }
            }
            self.refs.push(RefUse {
                root: root.as_str().to_string(),
                attr,
                key,
                span,
            });
        } else {
            self.visit_expr(&node.expr);
        }
        for op in &node.operators {
            if let TraversalOperator::Index(e) = op.value() {
                self.visit_expr(e);
            }
        }
    }

    fn visit_for_intro(&mut self, node: &hcl_edit::expr::ForIntro) {
        if let Some(k) = &node.key_var {
            self.bound.insert(k.as_str().to_string());
        }
        self.bound.insert(node.value_var.as_str().to_string());
        visit::visit_for_intro(self, node);
    }

    fn visit_for_template_expr(&mut self, node: &ForTemplateExpr) {
        if let Some(k) = &node.key_var {
            self.bound.insert(k.as_str().to_string());
        }
        self.bound.insert(node.value_var.as_str().to_string());
        visit::visit_for_template_expr(self, node);
    }
}

/// Every reference in `expr`, minus names bound by `for` inside it.
pub fn references(expr: &Expression) -> Vec<RefUse> {
    let mut c = Collector::default();
    c.visit_expr(expr);
    let bound = c.bound;
    c.refs
        .into_iter()
        .filter(|r| !bound.contains(&r.root))
        .collect()
}

/// A block reference written as `KIND.NAME` or `KIND.NAME["KEY"]`, nothing more.
pub fn as_block_ref(expr: &Expression) -> Option<RefUse> {
    match expr {
        Expression::Traversal(t) if t.operators.len() <= 2 => {
            let refs = references(expr);
            match refs.as_slice() {
                [r] if r.attr.is_some() && (t.operators.len() == 1 || r.key.is_some()) => {
                    Some(r.clone())
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(src: &str) -> Vec<(String, Option<String>, Option<String>)> {
        let e = hcl_edit::parser::parse_expr(src);
        let Ok(e) = e else { return vec![] };
        references(&e)
            .into_iter()
            .map(|r| (r.root, r.attr, r.key))
            .collect()
    }

    #[test]
    fn finds_roots_and_attributes() {
        assert_eq!(
            refs(r#""${var.a}-${local.b}""#),
            vec![
                ("var".into(), Some("a".into()), None),
                ("local".into(), Some("b".into()), None)
            ]
        );
        assert_eq!(
            refs(r#"image_set.x["k"].registry"#),
            vec![("image_set".into(), Some("x".into()), Some("k".into()))]
        );
        assert_eq!(refs("each"), vec![("each".into(), None, None)]);
    }

    #[test]
    fn for_bound_names_are_not_references() {
        assert_eq!(
            refs("[for h in var.hosts : upper(h)]"),
            vec![("var".into(), Some("hosts".into()), None)]
        );
    }

    #[test]
    fn block_refs() {
        let Ok(e) = hcl_edit::parser::parse_expr("registry.mirror") else {
            panic!("parse")
        };
        assert_eq!(
            as_block_ref(&e).map(|r| (r.root, r.attr)),
            Some(("registry".into(), Some("mirror".into())))
        );
        let Ok(e) = hcl_edit::parser::parse_expr("registry.mirror.endpoint") else {
            panic!("parse")
        };
        assert_eq!(as_block_ref(&e), None);
        let Ok(e) = hcl_edit::parser::parse_expr(r#""mirror""#) else {
            panic!("parse")
        };
        assert_eq!(as_block_ref(&e), None);
    }
}
