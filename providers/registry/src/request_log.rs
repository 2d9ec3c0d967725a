//! The debug log of registry requests (`MIRRORPLAN_LOG=debug`): one event
//! per attempt of each request, with its method, URL, status, bytes and
//! duration, under the target `mirrorplan_registry::request`.
//!
//! Nothing secret is ever logged: no header is (so no `Authorization`,
//! which the event only describes as `basic`, `bearer` or `none`), URLs
//! lose their `user:password@` and every query value except those known to
//! be harmless (`digest`, `mount`, `from`, `scope`, `service`, `n`,
//! `last`), and error texts pass through [`scrub`] with the client's
//! secrets.

use std::time::Duration;

use reqwest::{Request, Url};

/// The target of the request events.
pub(crate) const TARGET: &str = "mirrorplan_registry::request";

/// Query parameters whose values are shown (the others are redacted: an
/// upload session's `_state`, signed storage URLs, tokens).
const SHOWN_QUERY: &[&str] = &["digest", "mount", "from", "scope", "service", "n", "last"];

/// Whether request events are wanted (so that nothing is formatted
/// otherwise).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

/// `url` as logged: no credentials, query values redacted except
/// [`SHOWN_QUERY`].
pub(crate) fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SHOWN_QUERY.contains(&k.as_ref()) {
                    v.into_owned()
                } else {
                    "(redacted)".to_string()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.set_query(None);
        if !pairs.is_empty() {
            u.query_pairs_mut().extend_pairs(pairs);
        }
    }
    u.to_string()
}

/// `text` with each of `secrets` (at least 4 characters long) replaced by
/// `(redacted)`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "(redacted)");
    }
    out
}

/// What a request is, as logged.
pub(crate) struct RequestLine {
    pub method: String,
    pub url: String,
    /// Bytes of the body, when known in advance.
    pub sent: Option<u64>,
}

impl RequestLine {
    /// The line of a built request.
    pub(crate) fn of(req: &Request) -> Self {
        let sent = req
            .body()
            .and_then(|b| b.as_bytes())
            .map(|b| b.len() as u64)
            .or_else(|| {
                req.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
            });
        RequestLine {
            method: req.method().to_string(),
            url: shown_url(req.url()),
            sent,
        }
    }

    /// One answered attempt.
    pub(crate) fn answered(
        &self,
        registry: &str,
        attempt: u32,
        auth: &str,
        status: u16,
        received: Option<u64>,
        took: Duration,
    ) {
        tracing::debug!(
            target: TARGET,
            registry = %registry,
            method = %self.method,
            url = %self.url,
            status,
            sent = self.sent.unwrap_or(0),
            received = received.unwrap_or(0),
            ms = took.as_millis() as u64,
            attempt,
            auth = %auth,
            "request"
        );
    }

    /// One attempt that got no answer (`error` already scrubbed).
    pub(crate) fn failed(
        &self,
        registry: &str,
        attempt: u32,
        auth: &str,
        error: &str,
        took: Duration,
    ) {
        tracing::debug!(
            target: TARGET,
            registry = %registry,
            method = %self.method,
            url = %self.url,
            error = %error,
            sent = self.sent.unwrap_or(0),
            ms = took.as_millis() as u64,
            attempt,
            auth = %auth,
            "request failed"
        );
    }
}

/// How a request was authenticated, from the `Authorization` value sent
/// (the value itself is never logged).
pub(crate) fn auth_kind(header: Option<&str>) -> &'static str {
    match header {
        None => "none",
        Some(h) if h.starts_with("Bearer ") => "bearer",
        Some(h) if h.starts_with("Basic ") => "basic",
        Some(_) => "other",
    }
}

/// A wait before the next attempt.
pub(crate) fn retry_wait(registry: &str, what: &str, attempt: u32, wait: Duration, why: &str) {
    tracing::debug!(
        target: TARGET,
        registry = %registry,
        what = %what,
        attempt,
        wait_ms = wait.as_millis() as u64,
        why = %why,
        "retrying"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_unknown_query_values() {
        let u = Url::parse(
            "https://bob:hunter22@r.lab:5000/v2/a/blobs/uploads/x?_state=SECRETSTATE&digest=sha256%3Aab",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = shown_url(&u);
        assert!(!s.contains("hunter22") && !s.contains("bob"), "{s}");
        assert!(!s.contains("SECRETSTATE"), "{s}");
        assert!(s.contains("_state=%28redacted%29"), "{s}");
        assert!(s.contains("digest=sha256%3Aab"), "{s}");
        assert!(
            s.starts_with("https://r.lab:5000/v2/a/blobs/uploads/x?"),
            "{s}"
        );
    }

    #[test]
    fn scrub_replaces_secrets() {
        let s = scrub(
            "proxy http://u:pa55word@p: refused",
            &["pa55word".to_string(), "ab".to_string()],
        );
        assert_eq!(s, "proxy http://u:(redacted)@p: refused");
    }
}
