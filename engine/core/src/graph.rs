//! Dependency graphs over addresses: cycle detection (naming the path),
//! target closure, and the ordering edges of the apply walk.

use std::collections::{BTreeMap, BTreeSet};

use crate::address::Address;
use crate::error::EngineError;
use crate::plan::{Action, ResourceChange};

/// `node → the nodes it depends on`.
pub(crate) type DepGraph = BTreeMap<Address, Vec<Address>>;

/// Returns an error naming a cycle (`a -> b -> a`) if `graph` has one.
/// Edges to nodes outside the graph are ignored. Deterministic: the first
/// cycle found in address order.
pub(crate) fn check_acyclic(graph: &DepGraph) -> Result<(), EngineError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<&Address, Mark> = BTreeMap::new();
    for root in graph.keys() {
        if marks.contains_key(root) {
            continue;
        }
        // Iterative DFS: a stack of (node, next edge index), which is also
        // the current path.
        let mut stack: Vec<(&Address, usize)> = vec![(root, 0)];
        marks.insert(root, Mark::Visiting);
        while let Some((node, i)) = stack.last_mut() {
            let node: &Address = node;
            let edges = graph.get(node).map(Vec::as_slice).unwrap_or(&[]);
            let Some(next) = edges.get(*i) else {
                marks.insert(node, Mark::Done);
                stack.pop();
                continue;
            };
            *i += 1;
            if !graph.contains_key(next) {
                continue;
            }
            match marks.get(next) {
                Some(Mark::Done) => {}
                Some(Mark::Visiting) => {
                    let start = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut path: Vec<String> =
                        stack[start..].iter().map(|(n, _)| n.to_string()).collect();
                    path.push(next.to_string());
                    return Err(EngineError::Cycle {
                        path: path.join(" -> "),
                    });
                }
                None => {
                    marks.insert(next, Mark::Visiting);
                    stack.push((next, 0));
                }
            }
        }
    }
    Ok(())
}

/// Every address selected by `targets` plus, transitively, what they depend
/// on. Errors when a target matches nothing.
/// The known address (or block address, without its key) closest to a
/// mistyped one, if one is close enough to be what was meant.
pub(crate) fn closest_address<'a>(
    wanted: &str,
    known: impl Iterator<Item = &'a Address>,
) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for a in known {
        let full = a.to_string();
        let block = full.split('[').next().unwrap_or_default().to_string();
        for candidate in [block, full] {
            let d = strsim::levenshtein(wanted, &candidate);
            if best.as_ref().is_none_or(|(b, _)| d < *b) {
                best = Some((d, candidate));
            }
        }
    }
    best.filter(|(d, c)| *d > 0 && *d <= (c.len() / 3).max(2))
        .map(|(_, c)| c)
}

pub(crate) fn target_closure(
    graph: &DepGraph,
    targets: &[Address],
    doomed: &BTreeSet<Address>,
) -> Result<BTreeSet<Address>, EngineError> {
    let mut selected = BTreeSet::new();
    let mut queue = Vec::new();
    for target in targets {
        let matched: Vec<&Address> = graph.keys().filter(|a| target.matches(a)).collect();
        if matched.is_empty() {
            return Err(EngineError::TargetNotFound(
                target.clone(),
                closest_address(&target.to_string(), graph.keys()),
            ));
        }
        queue.extend(matched);
    }
    // reverse edges: who depends on each instance
    let mut dependents: BTreeMap<&Address, Vec<&Address>> = BTreeMap::new();
    for (a, deps) in graph {
        for d in deps {
            dependents.entry(d).or_default().push(a);
        }
    }
    while let Some(addr) = queue.pop() {
        if selected.insert(addr.clone()) {
            if doomed.contains(addr) {
                // destroying it means destroying what depends on it first
                if let Some(ds) = dependents.get(addr) {
                    queue.extend(ds.iter().copied());
                }
            } else if let Some(deps) = graph.get(addr) {
                // creating or changing it needs what it depends on
                queue.extend(deps.iter().filter(|d| graph.contains_key(*d)));
            }
        }
    }
    Ok(selected)
}

/// The apply walk's ordering: for each change that calls a provider, the
/// changes that must finish first. Creates/updates/replaces wait for their
/// (non-delete) dependencies; a delete waits for the deletes of the
/// instances that depended on it (reverse order).
pub(crate) fn walk_edges(changes: &[ResourceChange]) -> DepGraph {
    let acting: BTreeMap<&Address, Action> = changes
        .iter()
        .filter(|c| c.action.needs_provider())
        .map(|c| (&c.address, c.action))
        .collect();
    let mut graph: DepGraph = acting.keys().map(|a| ((*a).clone(), Vec::new())).collect();
    for c in changes.iter().filter(|c| c.action.needs_provider()) {
        for dep in &c.dependencies {
            let Some(dep_action) = acting.get(dep) else {
                continue;
            };
            match (c.action == Action::Delete, *dep_action == Action::Delete) {
                (false, false) => {
                    if let Some(v) = graph.get_mut(&c.address) {
                        v.push(dep.clone());
                    }
                }
                (true, true) => {
                    if let Some(v) = graph.get_mut(dep) {
                        v.push(c.address.clone());
                    }
                }
                _ => {}
            }
        }
    }
    // a hand-over: the delete of the old instance waits for the create of
    // the new one on the same physical object
    for c in changes.iter().filter(|c| c.action == Action::Delete) {
        if let Some(new) = c.replaced_by.as_ref().filter(|n| acting.contains_key(n)) {
            if let Some(v) = graph.get_mut(&c.address) {
                v.push(new.clone());
            }
        }
    }
    for v in graph.values_mut() {
        v.sort();
        v.dedup();
    }
    graph
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str) -> Address {
        Address::new("image", name).expect("valid address")
    }

    #[test]
    fn finds_and_names_a_cycle() {
        let graph: DepGraph = [
            (a("a"), vec![a("b")]),
            (a("b"), vec![a("c")]),
            (a("c"), vec![a("a")]),
            (a("d"), vec![]),
        ]
        .into_iter()
        .collect();
        let err = check_acyclic(&graph).expect_err("cycle detected");
        assert_eq!(
            err.to_string(),
            "dependency cycle: image.a -> image.b -> image.c -> image.a"
        );
    }

    #[test]
    fn accepts_a_diamond() {
        let graph: DepGraph = [
            (a("a"), vec![a("b"), a("c")]),
            (a("b"), vec![a("d")]),
            (a("c"), vec![a("d")]),
            (a("d"), vec![a("outside")]),
        ]
        .into_iter()
        .collect();
        assert!(check_acyclic(&graph).is_ok());
    }

    #[test]
    fn target_closure_follows_dependencies() {
        let graph: DepGraph = [
            (a("a").with_key("1"), vec![a("b")]),
            (a("a").with_key("2"), vec![]),
            (a("b"), vec![a("c")]),
            (a("c"), vec![]),
            (a("d"), vec![]),
        ]
        .into_iter()
        .collect();
        let none = BTreeSet::new();
        let sel = target_closure(&graph, &[a("a").with_key("1")], &none).expect("target found");
        assert_eq!(
            sel,
            [a("a").with_key("1"), a("b"), a("c")].into_iter().collect()
        );
        let all_a = target_closure(&graph, &[a("a")], &none).expect("target found");
        assert!(all_a.contains(&a("a").with_key("2")) && !all_a.contains(&a("d")));
        assert!(target_closure(&graph, &[a("zzz")], &none).is_err());
    }

    #[test]
    fn destroying_a_target_takes_its_dependents_not_its_dependencies() {
        let graph: DepGraph = [
            (a("node").with_key("2"), vec![a("node").with_key("1")]),
            (a("node").with_key("1"), vec![a("image")]),
            (a("image"), vec![]),
        ]
        .into_iter()
        .collect();
        let doomed: BTreeSet<Address> = graph.keys().cloned().collect();
        let sel =
            target_closure(&graph, &[a("node").with_key("1")], &doomed).expect("target found");
        assert_eq!(
            sel,
            [a("node").with_key("1"), a("node").with_key("2")]
                .into_iter()
                .collect()
        );
    }
}
