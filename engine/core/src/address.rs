//! Resource instance addresses: `kind.name` or `kind.name["key"]`.
//!
//! Addresses are how state, plans and the command line name one resource
//! instance, so they must be stable across runs and survive a round trip
//! through their text form (`Display` then `FromStr` gives the same value).
//! Keys are quoted like HCL strings: `"` and `\` are escaped with a
//! backslash, and `\n`, `\r`, `\t` stand for the control characters.

use std::fmt;
use std::str::FromStr;

use miette::Diagnostic;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The address of one resource instance, e.g. `image.anthos["gcr.io/a/b:t"]`,
/// `node.prod["cp1.example"]`, `cluster.prod`.
///
/// Ordered by kind, then name, then key (an unkeyed address sorts before the
/// keyed ones of the same kind and name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    kind: String,
    name: String,
    key: Option<String>,
}

/// Why a text is not an [`Address`], or a part of one is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("invalid address `{input}`: {reason}")]
#[diagnostic(
    code(mirrorplan::engine::address_syntax),
    help("addresses look like `image.SET[\"gcr.io/a/b:t\"]`, `node.CLUSTER[\"host\"]` or `cluster.NAME`")
)]
pub struct AddressError {
    /// The text that was rejected.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Address {
    /// An unkeyed address `kind.name`. Both parts must be identifiers
    /// (a letter or `_`, then letters, digits, `_` or `-`).
    pub fn new(kind: &str, name: &str) -> Result<Self, AddressError> {
        for (part, what) in [(kind, "kind"), (name, "name")] {
            if !is_identifier(part) {
                return Err(AddressError {
                    input: format!("{kind}.{name}"),
                    reason: format!("the {what} `{part}` is not an identifier"),
                });
            }
        }
        Ok(Address {
            kind: kind.to_owned(),
            name: name.to_owned(),
            key: None,
        })
    }

    /// A keyed address `kind.name["key"]`; the key may be any string.
    pub fn keyed(kind: &str, name: &str, key: &str) -> Result<Self, AddressError> {
        Ok(Self::new(kind, name)?.with_key(key))
    }

    /// This address with `key` as its instance key.
    pub fn with_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    /// This address without its key: the whole `kind.name` block.
    pub fn without_key(&self) -> Self {
        Address {
            kind: self.kind.clone(),
            name: self.name.clone(),
            key: None,
        }
    }

    /// The resource kind, e.g. `image`, `node`, `cluster`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The block name, e.g. the image set or cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instance key, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Whether `self`, used as a target, selects `other`: equal addresses
    /// match, and an unkeyed target matches every instance of its block.
    pub fn matches(&self, other: &Address) -> bool {
        self.kind == other.kind
            && self.name == other.name
            && (self.key.is_none() || self.key == other.key)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.name)?;
        if let Some(key) = &self.key {
            f.write_str("[\"")?;
            for c in key.chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c if crate::term::is_unsafe_char(c) => {
                        let mut e = String::new();
                        crate::term::write_escaped(&mut e, c);
                        f.write_str(&e)?
                    }
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"]")?;
        }
        Ok(())
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| AddressError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (head, rest) = match input.find('[') {
            Some(i) => (&input[..i], Some(&input[i..])),
            None => (input, None),
        };
        let (kind, name) = head
            .split_once('.')
            .ok_or_else(|| err("expected `kind.name`"))?;
        let base = Address::new(kind, name).map_err(|e| err(&e.reason))?;
        let Some(rest) = rest else {
            return Ok(base);
        };
        let inner = rest
            .strip_prefix("[\"")
            .and_then(|r| r.strip_suffix("\"]"))
            .ok_or_else(|| err("a key must be a quoted string in brackets, like [\"key\"]"))?;
        let mut key = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('"') => key.push('"'),
                    Some('\\') => key.push('\\'),
                    Some('n') => key.push('\n'),
                    Some('r') => key.push('\r'),
                    Some('t') => key.push('\t'),
                    Some('u') => {
                        // `\u{1b}`: a control character, as Display shows it
                        let rest: String = chars.by_ref().take_while(|c| *c != '}').collect();
                        let c = rest
                            .strip_prefix('{')
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32)
                            .ok_or_else(|| err("a `\\u` escape in a key must look like \\u{1b}"))?;
                        key.push(c);
                    }
                    _ => {
                        return Err(err(
                            "unknown escape in key (use \\\", \\\\, \\n, \\r, \\t or \\u{1b})",
                        ))
                    }
                },
                '"' => return Err(err("unescaped `\"` inside the key")),
                c => key.push(c),
            }
        }
        Ok(base.with_key(&key))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Address {
        let addr: Address = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(addr.to_string(), text);
        addr
    }

    #[test]
    fn parses_and_prints_the_three_shapes() {
        let a = round_trip("image.SET[\"gcr.io/a/b:t\"]");
        assert_eq!(
            (a.kind(), a.name(), a.key()),
            ("image", "SET", Some("gcr.io/a/b:t"))
        );
        let n = round_trip("node.prod[\"cp1.example\"]");
        assert_eq!(n.key(), Some("cp1.example"));
        let c = round_trip("cluster.prod");
        assert_eq!(c.key(), None);
        round_trip("image_set.anthos-1[\"x\"]");
    }

    #[test]
    fn control_characters_are_shown_escaped_and_parsed_back() {
        let addr = Address::keyed("image", "s", "gcr.io/a\x1b[31m:1\u{9b}")
            .unwrap_or_else(|e| panic!("{e}"));
        let text = addr.to_string();
        assert_eq!(text, r#"image.s["gcr.io/a\u{1b}[31m:1\u{9b}"]"#);
        assert_eq!(text.parse::<Address>(), Ok(addr));
        assert!(r#"image.s["a\u{zz}"]"#.parse::<Address>().is_err());
    }

    #[test]
    fn escapes_round_trip() {
        let addr = Address::keyed("image", "s", "we\"ird\\key\nwith\ttabs[]")
            .unwrap_or_else(|e| panic!("{e}"));
        let text = addr.to_string();
        assert_eq!(text, r#"image.s["we\"ird\\key\nwith\ttabs[]"]"#);
        assert_eq!(text.parse::<Address>(), Ok(addr));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "image",
            "image.",
            ".x",
            "1mage.x",
            "image.x[key]",
            "image.x[\"k\"",
            "image.x[\"a\"b\"]",
            "image.x[\"\\q\"]",
            "image.x[\"k\"]trailing",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn orders_and_matches_targets() {
        let block: Address = "image.s".parse().unwrap_or_else(|e| panic!("{e}"));
        let a = block.clone().with_key("a");
        let b = block.clone().with_key("b");
        assert!(block < a && a < b);
        assert!(block.matches(&a) && block.matches(&b));
        assert!(a.matches(&a) && !a.matches(&b) && !a.matches(&block));
        assert!(!block.matches(&Address::keyed("node", "s", "a").unwrap_or_else(|e| panic!("{e}"))));
    }

    #[test]
    fn serde_uses_the_text_form() {
        let addr = Address::keyed("node", "c", "h\"1").unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_string(&addr).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json, r#""node.c[\"h\\\"1\"]""#);
        let back: Address = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, addr);
        assert!(serde_json::from_str::<Address>("\"nope\"").is_err());
    }
}
