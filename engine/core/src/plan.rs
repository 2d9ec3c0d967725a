//! The plan value: per-instance actions, drift, and the state it was made
//! against.
//!
//! A [`Plan`] is data: it can be rendered, saved to a file (see
//! [`crate::planfile`]) and applied later. Its serialised form never holds a
//! secret; the clear values of a fresh plan live in a private, unserialised
//! field and are re-supplied from the configuration for a saved plan.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::provider::DesiredInstance;
use crate::value::{AttrValue, Attrs};

/// What the plan does to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Create a new object.
    Create,
    /// Change the object in place.
    Update,
    /// Delete the object and create it again.
    Replace,
    /// Delete the object.
    Delete,
    /// Nothing to do.
    NoOp,
    /// Refresh-only: record what was read in the state.
    Read,
    /// The object already exists as configured (found by refresh, unknown
    /// to the state): record it, change nothing.
    Import,
}

impl Action {
    /// The Terraform-style symbol: `+`, `~`, `-/+`, `-`, ` `, `<=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::NoOp => " ",
            Action::Read => "<=",
            Action::Import => "=",
        }
    }

    /// Whether the apply walk calls a provider for it.
    pub fn needs_provider(self) -> bool {
        matches!(
            self,
            Action::Create | Action::Update | Action::Replace | Action::Delete
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::NoOp => "no-op",
            Action::Read => "read",
            Action::Import => "import",
        })
    }
}

/// What the state remembers of one instance. The same JSON shape as
/// `mirrorplan-state`'s `InstanceRecord`, so the caller converts one to the
/// other field by field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Provider kind.
    pub provider: String,
    /// Non-sensitive attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttrValue>,
    /// Sensitive attribute name → salted digest.
    #[serde(default)]
    pub sensitive: BTreeMap<String, String>,
    /// Addresses it depended on when applied.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Content name → digest.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
}

/// A state change the apply records without calling a provider (after a
/// refresh found the object changed or gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum StateUpdate {
    /// Record this.
    Set {
        /// The refreshed record.
        record: InstanceRecord,
    },
    /// Forget the instance.
    Remove,
}

/// One attribute that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrChange {
    /// The attribute name.
    pub attribute: String,
    /// The old value (a digest when `sensitive`), `None` if absent.
    pub before: Option<AttrValue>,
    /// The new value (a digest when `sensitive`), `None` if absent.
    pub after: Option<AttrValue>,
    /// Whether the values are sensitive.
    pub sensitive: bool,
}

/// A change made outside mirrorplan, found by refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// The instance.
    pub address: Address,
    /// Its provider kind.
    pub provider: String,
    /// The object no longer exists.
    pub gone: bool,
    /// The attributes that changed (empty when `gone`).
    pub changes: Vec<AttrChange>,
}

/// The plan for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// The instance.
    pub address: Address,
    /// Its provider kind.
    pub provider: String,
    /// What to do.
    pub action: Action,
    /// Non-sensitive attributes before.
    pub before: Option<BTreeMap<String, AttrValue>>,
    /// Non-sensitive attributes after.
    pub after: Option<BTreeMap<String, AttrValue>>,
    /// Sensitive attributes before: name → salted digest.
    #[serde(default)]
    pub before_sensitive: BTreeMap<String, String>,
    /// Sensitive attributes after: name → salted digest.
    #[serde(default)]
    pub after_sensitive: BTreeMap<String, String>,
    /// Attributes forcing replacement.
    #[serde(default)]
    pub replace_because: Vec<String>,
    /// Provider notes, e.g. "3 blobs to upload (12 MiB)".
    #[serde(default)]
    pub details: Vec<String>,
    /// Walk ordering: the desired dependencies (or, for a delete, the
    /// dependencies recorded in the prior state).
    #[serde(default)]
    pub dependencies: Vec<Address>,
    /// Digest of the desired instance the change was planned from; apply of
    /// a saved plan checks the configuration still produces it.
    #[serde(default)]
    pub config_digest: Option<String>,
    /// State to record without a provider call (no-op or read after a
    /// refresh that found differences).
    #[serde(default)]
    pub state_update: Option<StateUpdate>,
    /// Warnings for the user, e.g. that the instance could not be read at
    /// refresh and is planned from its prior state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The address the instance was recorded at before a move (a `moved`
    /// block or `state mv`); apply records it at `address` first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<Address>,
    /// For a moved instance: the record moved to `address`, as the state
    /// held it at `previous_address` (apply rewrites the state with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_record: Option<InstanceRecord>,
    /// For a delete: the planned create that takes over the same physical
    /// object (same node). The delete runs after it, and leaves alone what
    /// the create wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<Address>,
    /// For a create: the planned delete of the same physical object that
    /// waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Address>,
    /// The replacement was asked for (`-replace=ADDRESS`): the provider
    /// redoes everything, even what already is as configured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_requested: bool,
}

impl ResourceChange {
    /// The attributes that differ between before and after, in name order
    /// (sensitive ones compared by digest).
    pub fn changed_attributes(&self) -> Vec<AttrChange> {
        let empty = BTreeMap::new();
        let before = self.before.as_ref().unwrap_or(&empty);
        let after = self.after.as_ref().unwrap_or(&empty);
        attr_changes(before, &self.before_sensitive, after, &self.after_sensitive)
    }
}

/// Differences between two (public, digests) attribute sets.
pub(crate) fn attr_changes(
    before: &BTreeMap<String, AttrValue>,
    before_sensitive: &BTreeMap<String, String>,
    after: &BTreeMap<String, AttrValue>,
    after_sensitive: &BTreeMap<String, String>,
) -> Vec<AttrChange> {
    let mut names: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .chain(before_sensitive.keys())
        .chain(after_sensitive.keys())
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let sensitive = before_sensitive.contains_key(name) || after_sensitive.contains_key(name);
        let pick = |public: &BTreeMap<String, AttrValue>, digests: &BTreeMap<String, String>| {
            digests
                .get(name)
                .map(|d| AttrValue::String(d.clone()))
                .or_else(|| public.get(name).cloned())
        };
        let b = pick(before, before_sensitive);
        let a = pick(after, after_sensitive);
        if a != b {
            out.push(AttrChange {
                attribute: name.clone(),
                before: b,
                after: a,
                sensitive,
            });
        }
    }
    out
}

/// Counts of a plan's actions. A replace counts as one add and one destroy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Objects to create (including replacements).
    pub add: usize,
    /// Objects to change in place.
    pub change: usize,
    /// Objects to destroy (including replacements).
    pub destroy: usize,
    /// Refresh-only state updates.
    pub read: usize,
    /// Objects that already exist as configured, to record.
    #[serde(default)]
    pub import: usize,
}

/// The plan: made against one state (lineage + serial), listing drift first
/// and then one [`ResourceChange`] per instance, in address order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Lineage of the state the plan was made against.
    pub lineage: String,
    /// Serial of that state.
    pub serial: u64,
    /// A refresh-only plan changes nothing but the state.
    pub refresh_only: bool,
    /// The `-target`s it was limited to (empty: everything).
    pub targets: Vec<Address>,
    /// Changes made outside mirrorplan.
    pub drift: Vec<Drift>,
    /// One entry per instance considered, no-ops included.
    pub changes: Vec<ResourceChange>,
    /// Clear sensitive `after` values of a fresh plan, in memory only.
    #[serde(skip)]
    pub(crate) secrets: BTreeMap<Address, Attrs>,
}

impl Plan {
    /// Every warning of the plan as `(address, message)`, in address order.
    pub fn warnings(&self) -> impl Iterator<Item = (&Address, &str)> {
        self.changes
            .iter()
            .flat_map(|c| c.warnings.iter().map(move |w| (&c.address, w.as_str())))
    }

    /// Counts of the actions.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1
                }
                Action::Delete => s.destroy += 1,
                Action::Read => s.read += 1,
                Action::Import => s.import += 1,
                Action::NoOp => {}
            }
        }
        s
    }

    /// Whether applying would change anything (objects or state).
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| {
            c.action != Action::NoOp || c.state_update.is_some() || c.previous_address.is_some()
        })
    }

    /// The instances that move to a new address: `(previous, new)`.
    pub fn moves(&self) -> impl Iterator<Item = (&Address, &Address)> {
        self.changes
            .iter()
            .filter_map(|c| c.previous_address.as_ref().map(|p| (p, &c.address)))
    }

    /// Whether the plan holds the clear secret values it needs (a fresh
    /// plan does; a plan loaded from a file does not).
    pub fn has_secrets(&self) -> bool {
        self.changes
            .iter()
            .filter(|c| c.action.needs_provider() && !c.after_sensitive.is_empty())
            .all(|c| self.secrets.contains_key(&c.address))
    }
}

/// The digest of everything the plan relied on from a desired instance:
/// provider, public attributes, sensitive digests and dependencies.
pub fn config_digest(desired: &DesiredInstance, salt: &str) -> String {
    // The canonical form is the compact JSON of
    // {"address", "attributes", "dependencies", "provider", "sensitive"}
    // (keys sorted, as a JSON object of them serialises), streamed into
    // the hasher without building it: this runs once per instance.
    struct Public<'a>(&'a crate::value::Attrs);
    impl serde::Serialize for Public<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(
                self.0
                    .names()
                    .filter(|n| !self.0.is_sensitive(n))
                    .filter_map(|n| self.0.get(n).map(|v| (n, v))),
            )
        }
    }
    struct Deps<'a>(&'a [crate::address::Address]);
    impl serde::Serialize for Deps<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|a| a.to_string()))
        }
    }
    #[derive(serde::Serialize)]
    struct Canonical<'a> {
        address: String,
        attributes: Public<'a>,
        dependencies: Deps<'a>,
        provider: &'a str,
        sensitive: BTreeMap<String, String>,
    }
    let canonical = Canonical {
        address: desired.address.to_string(),
        attributes: Public(&desired.attrs),
        dependencies: Deps(&desired.dependencies),
        provider: &desired.provider,
        sensitive: desired.attrs.sensitive_digests(salt),
    };
    let mut hasher = blake3::Hasher::new();
    if serde_json::to_writer(&mut hasher, &canonical).is_err() {
        // not reached: the values are JSON already and the hasher never
        // fails; fall back to the tree form, which gives the same bytes
        let tree = serde_json::json!({
            "address": desired.address.to_string(),
            "provider": desired.provider,
            "attributes": desired.attrs.public_values(),
            "sensitive": desired.attrs.sensitive_digests(salt),
            "dependencies": desired.dependencies.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        });
        return format!(
            "blake3:{}",
            blake3::hash(tree.to_string().as_bytes()).to_hex()
        );
    }
    format!("blake3:{}", hasher.finalize().to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest is the blake3 of the compact JSON object of the five
    /// fields: saved plans made by earlier builds must still match.
    #[test]
    fn config_digest_is_the_hash_of_the_canonical_json() {
        let Ok(address) = Address::keyed("node", "c", "h\"1") else {
            panic!("address")
        };
        let Ok(dep) = Address::keyed("image_set", "s", "") else {
            panic!("address")
        };
        let attrs = Attrs::new()
            .with("z", serde_json::json!({"b": [1, "x\ny"], "a": null}))
            .with("a", "ü\t")
            .with_sensitive("password", "hunter2");
        let mut d = DesiredInstance::new(address.clone(), "node", attrs.clone());
        d.dependencies = vec![dep.clone(), dep.without_key()];
        let tree = serde_json::json!({
            "address": address.to_string(),
            "provider": "node",
            "attributes": attrs.public_values(),
            "sensitive": attrs.sensitive_digests("salt"),
            "dependencies": [dep.to_string(), dep.without_key().to_string()],
        });
        let expected = format!(
            "blake3:{}",
            blake3::hash(tree.to_string().as_bytes()).to_hex()
        );
        assert_eq!(config_digest(&d, "salt"), expected);
        assert_ne!(config_digest(&d, "other salt"), expected);
    }
}
