//! The in-memory state: [`State`], [`InstanceRecord`], [`OutputRecord`] and
//! the salted [`secret_digest`].
//!
//! These types serialise to the on-disk JSON format (version
//! [`FORMAT_VERSION`]) one to one. Maps are `BTreeMap`s so the same state
//! always serialises to the same bytes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The on-disk format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Context string for deriving the digest key from a state's salt; changing
/// it changes every digest, so it is versioned.
const DIGEST_CONTEXT: &str = "mirrorplan 2025 state secret digest v1";

/// A salted, keyed digest of a secret: `"blake3:" + 64 hex digits`.
///
/// The key is derived from `salt` (a state's `secret_salt`), so digests of the
/// same secret differ between states and cannot be looked up in a table
/// computed elsewhere. A digest is only good for noticing that a secret
/// changed; it never contains the secret.
pub fn secret_digest(salt: &str, value: &[u8]) -> String {
    let key = blake3::derive_key(DIGEST_CONTEXT, salt.as_bytes());
    format!("blake3:{}", blake3::keyed_hash(&key, value).to_hex())
}

/// The whole state of one configuration.
///
/// Invariants: `lineage` never changes after [`State::new`]; `serial` is only
/// changed by [`crate::StateStore::save`]; `secret_salt` is random and private
/// to this state.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    version: u32,
    serial: u64,
    lineage: Uuid,
    secret_salt: String,
    #[serde(default)]
    instances: BTreeMap<String, InstanceRecord>,
    #[serde(default)]
    outputs: BTreeMap<String, OutputRecord>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("version", &self.version)
            .field("serial", &self.serial)
            .field("lineage", &self.lineage)
            .field("secret_salt", &"(hidden)")
            .field("instances", &self.instances)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// A fresh, empty state: new random lineage and salt, serial 0.
    pub fn new() -> Self {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let mut salt = String::with_capacity(64);
        for byte in a.as_bytes().iter().chain(b.as_bytes()) {
            salt.push_str(&format!("{byte:02x}"));
        }
        State {
            version: FORMAT_VERSION,
            serial: 0,
            lineage: Uuid::new_v4(),
            secret_salt: salt,
            instances: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// The format version (always [`FORMAT_VERSION`] once loaded).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// How many times this lineage has been saved with changed content.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub(crate) fn set_serial(&mut self, serial: u64) {
        self.serial = serial;
    }

    /// The identity of this state, fixed at creation.
    pub fn lineage(&self) -> Uuid {
        self.lineage
    }

    /// The salt for [`secret_digest`]; do not print it.
    pub fn secret_salt(&self) -> &str {
        &self.secret_salt
    }

    /// [`secret_digest`] with this state's salt.
    pub fn digest_secret(&self, value: &[u8]) -> String {
        secret_digest(&self.secret_salt, value)
    }

    /// The record of one resource instance, by address.
    pub fn instance(&self, addr: &str) -> Option<&InstanceRecord> {
        self.instances.get(addr)
    }

    /// Mutable access to the record of one resource instance.
    pub fn instance_mut(&mut self, addr: &str) -> Option<&mut InstanceRecord> {
        self.instances.get_mut(addr)
    }

    /// Records (or replaces) an instance; returns the previous record.
    pub fn set_instance(
        &mut self,
        addr: impl Into<String>,
        record: InstanceRecord,
    ) -> Option<InstanceRecord> {
        self.instances.insert(addr.into(), record)
    }

    /// Forgets an instance; returns its record.
    pub fn remove_instance(&mut self, addr: &str) -> Option<InstanceRecord> {
        self.instances.remove(addr)
    }

    /// All instance addresses, sorted.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.instances.keys().map(String::as_str)
    }

    /// Every instance record, by address, taking them out of the state.
    pub fn into_instances(self) -> BTreeMap<String, InstanceRecord> {
        self.instances
    }

    /// All instances, sorted by address.
    pub fn instances(&self) -> &BTreeMap<String, InstanceRecord> {
        &self.instances
    }

    /// One output.
    pub fn output(&self, name: &str) -> Option<&OutputRecord> {
        self.outputs.get(name)
    }

    /// All outputs, sorted by name.
    pub fn outputs(&self) -> &BTreeMap<String, OutputRecord> {
        &self.outputs
    }

    /// Records a non-sensitive output value.
    pub fn set_output(&mut self, name: impl Into<String>, value: serde_json::Value) {
        self.outputs.insert(
            name.into(),
            OutputRecord {
                value,
                sensitive: false,
            },
        );
    }

    /// Records a sensitive output: only its salted digest is kept.
    pub fn set_sensitive_output(&mut self, name: impl Into<String>, secret: &[u8]) {
        let digest = self.digest_secret(secret);
        self.outputs.insert(
            name.into(),
            OutputRecord {
                value: serde_json::Value::String(digest),
                sensitive: true,
            },
        );
    }

    /// Forgets an output.
    pub fn remove_output(&mut self, name: &str) -> Option<OutputRecord> {
        self.outputs.remove(name)
    }
}

/// What the state remembers of one resource instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceRecord {
    /// The provider kind that manages it, e.g. `"registry"` or `"node"`.
    pub provider: String,
    /// Non-secret attributes as last applied or read.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Sensitive attribute name → [`secret_digest`] of its value.
    #[serde(default)]
    pub sensitive: BTreeMap<String, String>,
    /// Addresses this instance depended on when it was applied.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Content name → blake3 hex digest (e.g. a rendered file's bytes).
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
}

impl InstanceRecord {
    /// An empty record managed by `provider`.
    pub fn new(provider: impl Into<String>) -> Self {
        InstanceRecord {
            provider: provider.into(),
            attributes: serde_json::Map::new(),
            sensitive: BTreeMap::new(),
            dependencies: Vec::new(),
            digests: BTreeMap::new(),
        }
    }

    /// Records the salted digest of a sensitive attribute (never its value).
    /// `salt` is [`State::secret_salt`].
    pub fn set_sensitive(&mut self, salt: &str, name: impl Into<String>, secret: &[u8]) {
        self.sensitive
            .insert(name.into(), secret_digest(salt, secret));
    }

    /// Records the blake3 digest of some content, e.g. a rendered file.
    pub fn set_content_digest(&mut self, name: impl Into<String>, content: &[u8]) {
        self.digests
            .insert(name.into(), blake3::hash(content).to_hex().to_string());
    }
}

/// One output value. A sensitive output stores its digest as `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRecord {
    /// The value, or for sensitive outputs the [`secret_digest`] string.
    pub value: serde_json::Value,
    /// Whether `value` is a digest of a secret.
    #[serde(default)]
    pub sensitive: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_salt_and_value_and_hides_value() {
        let a = secret_digest("salt-a", b"hunter2");
        let b = secret_digest("salt-b", b"hunter2");
        let c = secret_digest("salt-a", b"hunter3");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, secret_digest("salt-a", b"hunter2"));
        assert!(a.starts_with("blake3:"));
        assert_eq!(a.len(), "blake3:".len() + 64);
        assert!(!a.contains("hunter2"));
        assert_ne!(a, "hunter2");
        // Not the plain, unsalted hash either.
        assert_ne!(a, format!("blake3:{}", blake3::hash(b"hunter2").to_hex()));
    }

    #[test]
    fn new_states_differ_in_lineage_and_salt() {
        let s1 = State::new();
        let s2 = State::new();
        assert_ne!(s1.lineage(), s2.lineage());
        assert_ne!(s1.secret_salt(), s2.secret_salt());
        assert_eq!(s1.secret_salt().len(), 64);
        assert_eq!(s1.serial(), 0);
        assert_eq!(s1.lineage().get_version_num(), 4);
        assert_ne!(s1.digest_secret(b"x"), s2.digest_secret(b"x"));
    }

    #[test]
    fn debug_hides_salt_and_sensitive_output_keeps_only_digest() {
        let mut s = State::new();
        s.set_sensitive_output("token", b"s3cr3t-token");
        let mut rec = InstanceRecord::new("registry");
        let salt = s.secret_salt().to_owned();
        rec.set_sensitive(&salt, "password", b"pa55word");
        s.set_instance("image.a[\"x\"]", rec);
        let debug = format!("{s:?}");
        assert!(!debug.contains(&salt));
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert!(!json.contains("s3cr3t-token"));
        assert!(!json.contains("pa55word"));
        let out = s.output("token").map(|o| (o.sensitive, o.value.clone()));
        assert_eq!(
            out,
            Some((
                true,
                serde_json::Value::String(s.digest_secret(b"s3cr3t-token"))
            ))
        );
    }

    #[test]
    fn instances_are_sorted_by_address() {
        let mut s = State::new();
        s.set_instance("node.b[\"h\"]", InstanceRecord::new("node"));
        s.set_instance("cluster.a", InstanceRecord::new("node"));
        s.set_instance("image.z[\"r/x:1\"]", InstanceRecord::new("registry"));
        let addrs: Vec<_> = s.addresses().collect();
        assert_eq!(addrs, ["cluster.a", "image.z[\"r/x:1\"]", "node.b[\"h\"]"]);
        assert!(s.remove_instance("cluster.a").is_some());
        assert!(s.instance("cluster.a").is_none());
        assert!(s.instance("node.b[\"h\"]").is_some());
    }
}
