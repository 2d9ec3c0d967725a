//! Attribute values: [`Attrs`], [`AttrValue`], the [`Sensitive`] wrapper and
//! the salted [`secret_digest`].
//!
//! Invariant: a sensitive value is only ever held in memory. Everything that
//! leaves the process (Debug/Display, plan files, JSON, state records) carries
//! either the mask `(sensitive value)` or a salted digest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One attribute value: any JSON value.
pub type AttrValue = serde_json::Value;

/// The text printed in place of every sensitive value.
pub const SENSITIVE_MASK: &str = "(sensitive value)";

/// A value that must never be printed. `Debug` and `Display` show
/// `(sensitive value)`; use [`Sensitive::expose`] at the one place that needs
/// the real value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The secret itself; do not log or format it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SENSITIVE_MASK)
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SENSITIVE_MASK)
    }
}

/// Context string for deriving the digest key from a state's salt. It is the
/// same derivation as `mirrorplan-state`'s `secret_digest`, so digests made
/// here and there agree.
const DIGEST_CONTEXT: &str = "mirrorplan 2025 state secret digest v1";

/// The salted digest of a sensitive value: `"blake3:" + 64 hex digits`.
/// Strings are digested as their UTF-8 bytes, other values as compact JSON.
pub fn secret_digest(salt: &str, value: &AttrValue) -> String {
    let key = blake3::derive_key(DIGEST_CONTEXT, salt.as_bytes());
    let bytes = match value {
        AttrValue::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    };
    format!("blake3:{}", blake3::keyed_hash(&key, &bytes).to_hex())
}

/// The attributes of one resource instance: name → value, in name order,
/// plus the set of names whose values are sensitive.
///
/// `Debug` masks sensitive values. There is deliberately no `Serialize`:
/// use [`Attrs::public_values`] and [`Attrs::sensitive_digests`].
#[derive(Clone, Default, PartialEq)]
pub struct Attrs {
    values: BTreeMap<String, AttrValue>,
    sensitive: BTreeSet<String>,
}

impl Attrs {
    /// No attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`Attrs::insert`].
    pub fn with(mut self, name: &str, value: impl Into<AttrValue>) -> Self {
        self.insert(name, value);
        self
    }

    /// Builder form of [`Attrs::insert_sensitive`].
    pub fn with_sensitive(mut self, name: &str, value: impl Into<AttrValue>) -> Self {
        self.insert_sensitive(name, value);
        self
    }

    /// Sets a non-sensitive attribute.
    pub fn insert(&mut self, name: &str, value: impl Into<AttrValue>) {
        self.sensitive.remove(name);
        self.values.insert(name.to_owned(), value.into());
    }

    /// Sets a sensitive attribute.
    pub fn insert_sensitive(&mut self, name: &str, value: impl Into<AttrValue>) {
        self.sensitive.insert(name.to_owned());
        self.values.insert(name.to_owned(), value.into());
    }

    /// Removes an attribute, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<AttrValue> {
        self.sensitive.remove(name);
        self.values.remove(name)
    }

    /// The value of an attribute (sensitive or not).
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.values.get(name)
    }

    /// Whether the attribute is sensitive.
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.sensitive.contains(name)
    }

    /// Every attribute name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The names of the sensitive attributes.
    pub fn sensitive_names(&self) -> impl Iterator<Item = &str> {
        self.sensitive.iter().map(String::as_str)
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The non-sensitive attributes only.
    pub fn public_values(&self) -> BTreeMap<String, AttrValue> {
        self.values
            .iter()
            .filter(|(k, _)| !self.sensitive.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sensitive attribute name → [`secret_digest`] of its value.
    pub fn sensitive_digests(&self, salt: &str) -> BTreeMap<String, String> {
        self.sensitive
            .iter()
            .filter_map(|k| {
                self.values
                    .get(k)
                    .map(|v| (k.clone(), secret_digest(salt, v)))
            })
            .collect()
    }

    /// Overlays `other` on `self`: every attribute of `other` replaces the one
    /// of the same name (and its sensitivity).
    pub fn overlay(&mut self, other: &Attrs) {
        for (k, v) in &other.values {
            if other.sensitive.contains(k) {
                self.insert_sensitive(k, v.clone());
            } else {
                self.insert(k, v.clone());
            }
        }
    }
}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.values {
            if self.sensitive.contains(k) {
                map.entry(k, &Sensitive::new(()));
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

/// Whether a value is shown as a multi-line text (a unified diff on change).
pub fn is_multiline(value: &AttrValue) -> bool {
    matches!(value, AttrValue::String(s) if s.contains('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_never_formats_its_value() {
        let s = Sensitive::new("hunter2".to_owned());
        assert_eq!(format!("{s}"), SENSITIVE_MASK);
        assert_eq!(format!("{s:?}"), SENSITIVE_MASK);
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn attrs_debug_masks_sensitive_values() {
        let attrs = Attrs::new()
            .with("user", "bob")
            .with_sensitive("password", "hunter2");
        let debug = format!("{attrs:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("bob") && debug.contains(SENSITIVE_MASK),
            "{debug}"
        );
        assert_eq!(attrs.public_values().len(), 1);
        let digests = attrs.sensitive_digests("salt");
        let digest = &digests["password"];
        assert!(digest.starts_with("blake3:") && !digest.contains("hunter2"));
    }

    #[test]
    fn digests_depend_on_salt_and_value() {
        let v = AttrValue::from("secret");
        assert_eq!(secret_digest("a", &v), secret_digest("a", &v));
        assert_ne!(secret_digest("a", &v), secret_digest("b", &v));
        assert_ne!(
            secret_digest("a", &v),
            secret_digest("a", &AttrValue::from("other"))
        );
    }

    #[test]
    fn overlay_replaces_values_and_sensitivity() {
        let mut base = Attrs::new().with("a", 1).with_sensitive("b", "x");
        base.overlay(&Attrs::new().with("b", "y").with("c", true));
        assert_eq!(base.get("b"), Some(&AttrValue::from("y")));
        assert!(!base.is_sensitive("b"));
        assert_eq!(base.names().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
