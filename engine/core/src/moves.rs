//! Moves: recorded instances given a new address (Terraform's `moved`
//! blocks and `state mv`), and hand-overs: a planned delete and a planned
//! create that address the same physical object.
//!
//! A [`Move`] re-addresses prior state before planning, so that the plan
//! compares the configuration at the new address with what was recorded at
//! the old one: a pure rename plans no action on any node or registry, and
//! the apply only rewrites the state. Chains are followed (`A -> B` and
//! `B -> C` put what was recorded at `A` at `C`), as Terraform does; a
//! cycle is an error. A move whose destination is already taken (in the
//! state, or by an earlier move) is not made, with a warning on the plan.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::error::EngineError;
use crate::plan::InstanceRecord;

/// One move statement: what is recorded at `from` is recorded at `to`.
///
/// An unkeyed `from` (`node.local`) selects every instance of its block,
/// which keep their keys (`node.local["h"]` → `node.edge["h"]` for
/// `to = node.edge`); a keyed one selects one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The old address.
    pub from: Address,
    /// The new address.
    pub to: Address,
}

impl Move {
    /// A move from `from` to `to`.
    pub fn new(from: Address, to: Address) -> Self {
        Move { from, to }
    }

    /// Where `address` goes under this move, if the move selects it.
    pub fn destination(&self, address: &Address) -> Option<Address> {
        if !self.from.matches(address) {
            return None;
        }
        if self.from.key().is_some() || self.to.key().is_some() {
            if self.from.key().is_none() && address.key().is_some() {
                // `node.a` → `node.b["k"]` selects only the unkeyed instance
                return None;
            }
            return Some(self.to.clone());
        }
        let base = Address::new(self.to.kind(), self.to.name()).ok()?;
        Some(match address.key() {
            Some(k) => base.with_key(k),
            None => base,
        })
    }
}

/// The outcome of [`relocate`].
#[derive(Debug, Default)]
pub(crate) struct Relocated {
    /// New address → old address, for every instance that moved.
    pub moved: BTreeMap<Address, Address>,
    /// Old address → why its move was not made.
    pub skipped: BTreeMap<Address, String>,
}

/// The address `address` ends at under `moves`, following chains; errors on
/// a cycle.
pub fn final_address(moves: &[Move], address: &Address) -> Result<Address, EngineError> {
    let mut current = address.clone();
    let mut path = vec![address.to_string()];
    for _ in 0..=moves.len() {
        let Some(next) = moves
            .iter()
            .filter_map(|m| m.destination(&current))
            .find(|n| *n != current)
        else {
            return Ok(current);
        };
        path.push(next.to_string());
        current = next;
    }
    Err(EngineError::Cycle {
        path: format!("moves {}", path.join(" -> ")),
    })
}

/// Applies `moves` to the recorded instances.
pub(crate) fn relocate(
    instances: &mut BTreeMap<Address, InstanceRecord>,
    moves: &[Move],
) -> Result<Relocated, EngineError> {
    let mut out = Relocated::default();
    if moves.is_empty() {
        return Ok(out);
    }
    let mut plans: Vec<(Address, Address)> = Vec::new();
    for a in instances.keys() {
        let to = final_address(moves, a)?;
        if to != *a {
            plans.push((a.clone(), to));
        }
    }
    let leaving: BTreeSet<&Address> = plans.iter().map(|(from, _)| from).collect();
    let mut taken: BTreeSet<Address> = BTreeSet::new();
    let mut accepted = Vec::new();
    for (from, to) in &plans {
        let occupied = instances.contains_key(to) && !leaving.contains(to);
        if occupied || taken.contains(to) {
            out.skipped.insert(
                from.clone(),
                format!(
                    "not moved to {to}: the state already records an instance there; \
                     remove the `moved` block or `mirrorplan state rm` one of them"
                ),
            );
            continue;
        }
        taken.insert(to.clone());
        accepted.push((from.clone(), to.clone()));
    }
    let mut records = Vec::new();
    for (from, to) in accepted {
        if let Some(r) = instances.remove(&from) {
            records.push((from, to, r));
        }
    }
    for (from, to, r) in records {
        instances.insert(to.clone(), r);
        out.moved.insert(to, from);
    }
    Ok(out)
}

/// A planned delete and a planned create whose provider says they are the
/// same physical object (see [`crate::Provider::physical_identity`]). An
/// adopted instance (`Import`: the object already is as the new instance
/// plans it, e.g. the files the old instance wrote) takes over the same
/// way, so the delete leaves alone what it now owns.
pub(crate) fn pair_handovers(
    changes: &mut [crate::plan::ResourceChange],
    identity: impl Fn(&crate::plan::ResourceChange) -> Option<String>,
) {
    use crate::plan::Action;
    let mut creates: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        if matches!(c.action, Action::Create | Action::Import) {
            if let Some(id) = identity(c) {
                creates.entry((c.provider.clone(), id)).or_insert(i);
            }
        }
    }
    let mut pairs = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        if c.action == Action::Delete {
            if let Some(id) = identity(c) {
                if let Some(j) = creates.remove(&(c.provider.clone(), id)) {
                    pairs.push((i, j));
                }
            }
        }
    }
    for (i, j) in pairs {
        let (old, new) = (changes[i].address.clone(), changes[j].address.clone());
        changes[i].replaced_by = Some(new);
        changes[j].replaces = Some(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn block_moves_keep_keys_and_chains_are_followed() {
        let moves = vec![
            Move::new(a("node.a"), a("node.b")),
            Move::new(a("node.b"), a("node.c")),
        ];
        assert_eq!(
            final_address(&moves, &a("node.a[\"h\"]")).ok(),
            Some(a("node.c[\"h\"]"))
        );
        let single = Move::new(a("cluster.x"), a("cluster.y[\"k\"]"));
        assert_eq!(
            single.destination(&a("cluster.x")),
            Some(a("cluster.y[\"k\"]"))
        );
        assert_eq!(single.destination(&a("cluster.x[\"j\"]")), None);
    }

    #[test]
    fn cycles_are_errors_and_taken_destinations_are_skipped() {
        let cyc = vec![
            Move::new(a("node.a"), a("node.b")),
            Move::new(a("node.b"), a("node.a")),
        ];
        assert!(final_address(&cyc, &a("node.a[\"h\"]")).is_err());
        let mut inst: BTreeMap<Address, InstanceRecord> = BTreeMap::new();
        inst.insert(a("node.a[\"h\"]"), InstanceRecord::default());
        inst.insert(a("node.b[\"h\"]"), InstanceRecord::default());
        let r = relocate(&mut inst, &[Move::new(a("node.a"), a("node.b"))])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.moved.is_empty());
        assert!(r.skipped.contains_key(&a("node.a[\"h\"]")));
    }
}
