//! Content digests (`sha256:<64 hex>`) and a reader that verifies a blob's
//! digest and size while it streams.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::ReferenceError;

/// A validated `sha256:` content digest. Only sha256 is supported: it is what
/// every registry and containerd use for image content.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parse and validate `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::InvalidDigest {
            digest: s.to_string(),
            reason: reason.to_string(),
        };
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid("missing `algorithm:` prefix"))?;
        if alg != "sha256" {
            return Err(invalid("only sha256 digests are supported"));
        }
        Self::from_hex(hex)
            .map_err(|_| invalid("expected 64 lowercase hex characters after `sha256:`"))
    }

    /// Build from the 64 hex characters of a sha256 digest (as found in
    /// `blobs/sha256/<hex>` paths).
    pub fn from_hex(hex: &str) -> Result<Self, ReferenceError> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest(format!("sha256:{hex}")))
        } else {
            Err(ReferenceError::InvalidDigest {
                digest: hex.to_string(),
                reason: "expected 64 lowercase hex characters".to_string(),
            })
        }
    }

    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        let out = hasher.finalize();
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in out {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }

    /// The full `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part (file name under `blobs/sha256/`).
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// A short form for messages: `sha256:0123456789ab`.
    pub fn short(&self) -> &str {
        &self.0[..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a streamed blob failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyFailure {
    /// The stream ended before `expected` bytes (only `actual` arrived).
    Truncated { expected: u64, actual: u64 },
    /// More bytes than the declared size arrived.
    TooLong { expected: u64 },
    /// All bytes arrived but they hash to `actual`.
    DigestMismatch { actual: Digest },
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyFailure::Truncated { expected, actual } => {
                write!(f, "truncated: {actual} of {expected} bytes")
            }
            VerifyFailure::TooLong { expected } => {
                write!(f, "longer than its declared {expected} bytes")
            }
            VerifyFailure::DigestMismatch { actual } => {
                write!(f, "content hashes to {actual}")
            }
        }
    }
}

/// Wraps a reader, hashing and counting the bytes as they pass. At end of
/// stream it checks size and digest and, on mismatch, returns an
/// `InvalidData` error from `read` instead of `Ok(0)`, so a consumer that
/// reads to the end (a file writer, an HTTP body) fails rather than commits
/// bad bytes.
pub struct VerifyingReader<R> {
    inner: R,
    expected_digest: Digest,
    expected_size: u64,
    hasher: Sha256,
    count: u64,
    outcome: Option<Result<(), VerifyFailure>>,
}

impl<R: Read> VerifyingReader<R> {
    /// Verify `inner` against `digest` and `size`.
    pub fn new(inner: R, digest: &Digest, size: u64) -> Self {
        VerifyingReader {
            inner,
            expected_digest: digest.clone(),
            expected_size: size,
            hasher: Sha256::new(),
            count: 0,
            outcome: None,
        }
    }

    /// The verification failure, once one happened.
    pub fn failure(&self) -> Option<&VerifyFailure> {
        self.outcome.as_ref().and_then(|o| o.as_ref().err())
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.count
    }

    /// Read whatever the consumer left unread, then return the verdict.
    pub fn finish(mut self) -> Result<Result<(), VerifyFailure>, io::Error> {
        if self.outcome.is_none() {
            let mut buf = [0u8; 64 * 1024];
            loop {
                match self.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if self.outcome.is_some() {
                            break;
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(self.outcome.unwrap_or(Ok(())))
    }

    fn conclude(&mut self) -> Result<(), VerifyFailure> {
        if let Some(o) = &self.outcome {
            return o.clone();
        }
        let result = if self.count < self.expected_size {
            Err(VerifyFailure::Truncated {
                expected: self.expected_size,
                actual: self.count,
            })
        } else {
            let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
            if actual == self.expected_digest {
                Ok(())
            } else {
                Err(VerifyFailure::DigestMismatch { actual })
            }
        };
        self.outcome = Some(result.clone());
        result
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(o) = &self.outcome {
            return match o {
                Ok(()) => Ok(0),
                Err(f) => Err(io::Error::new(io::ErrorKind::InvalidData, f.to_string())),
            };
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return match self.conclude() {
                Ok(()) => Ok(0),
                Err(f) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {}: {f}", self.expected_digest),
                )),
            };
        }
        self.count += n as u64;
        if self.count > self.expected_size {
            let f = VerifyFailure::TooLong {
                expected: self.expected_size,
            };
            self.outcome = Some(Err(f.clone()));
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {}: {f}", self.expected_digest),
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()).ok(), Some(d.clone()));
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse("sha256:ABCD").is_err());
        assert!(Digest::parse("2cf24dba").is_err());
        assert_eq!(d.short(), "sha256:2cf24dba5fb0");
    }

    #[test]
    fn verifying_reader_accepts_good_and_rejects_bad() {
        let d = Digest::of(b"hello");
        let mut out = Vec::new();
        let mut r = VerifyingReader::new(&b"hello"[..], &d, 5);
        assert!(r.read_to_end(&mut out).is_ok());
        assert_eq!(r.finish().ok(), Some(Ok(())));

        let mut r = VerifyingReader::new(&b"hellO"[..], &d, 5);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert!(matches!(
            r.finish(),
            Ok(Err(VerifyFailure::DigestMismatch { .. }))
        ));

        let r = VerifyingReader::new(&b"hel"[..], &d, 5);
        assert_eq!(
            r.finish().ok(),
            Some(Err(VerifyFailure::Truncated {
                expected: 5,
                actual: 3
            }))
        );

        let mut r = VerifyingReader::new(&b"hello!"[..], &d, 5);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert_eq!(
            r.finish().ok(),
            Some(Err(VerifyFailure::TooLong { expected: 5 }))
        );
    }
}
