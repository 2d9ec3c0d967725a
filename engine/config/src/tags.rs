//! Tag selections: `image_set { repository { name = "gcr.io/x/y" ... } }`
//! picks tags of an upstream repository by regular expressions, a semver
//! range and "the newest N". The configuration checks each part when it is
//! loaded ([`TagSelection::check`]); the binary lists the repository's
//! tags at plan time and calls [`TagSelection::select`].

use serde::Serialize;

/// One `repository { }` block of an image set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagSelection {
    /// The upstream repository, `HOST/PATH` (no tag, no digest).
    pub repository: String,
    /// Regular expressions: a tag is kept when it matches one of them
    /// (none: every tag).
    pub include: Vec<String>,
    /// Regular expressions: a tag matching one of them is dropped.
    pub exclude: Vec<String>,
    /// A semver range (`">=1.28, <1.30"`): only tags that read as versions
    /// in it are kept.
    pub semver: Option<String>,
    /// Keep only the newest N (by semver; tags that do not read as a
    /// version are dropped).
    pub newest: Option<u64>,
}

/// A tag read as a version: a leading `v` is dropped, and `1.28` reads as
/// `1.28.0` (build metadata and pre-releases as semver says).
pub fn tag_version(tag: &str) -> Option<semver::Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    // `1.28` / `1` → `1.28.0` / `1.0.0` (only plain numbers)
    let parts: Vec<&str> = t.split('.').collect();
    if parts.len() < 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        let mut s = parts.join(".");
        for _ in parts.len()..3 {
            s.push_str(".0");
        }
        return semver::Version::parse(&s).ok();
    }
    None
}

/// Why a part of a selection is invalid.
pub fn check_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| e.to_string())
}

/// Why a semver range is invalid.
pub fn check_range(range: &str) -> Result<semver::VersionReq, String> {
    semver::VersionReq::parse(range).map_err(|e| e.to_string())
}

impl TagSelection {
    /// The tags of `tags` this selection picks, oldest first by version
    /// (tags that are not versions after them, by name). An invalid part
    /// (loading reports it first) is an error.
    pub fn select(&self, tags: &[String]) -> Result<Vec<String>, String> {
        let include = self
            .include
            .iter()
            .map(|p| check_regex(p).map_err(|e| format!("include `{p}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let exclude = self
            .exclude
            .iter()
            .map(|p| check_regex(p).map_err(|e| format!("exclude `{p}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let range = match &self.semver {
            Some(r) => Some(check_range(r).map_err(|e| format!("semver `{r}`: {e}"))?),
            None => None,
        };
        if self.newest == Some(0) {
            return Err("newest must be at least 1".into());
        }
        let mut kept: Vec<(Option<semver::Version>, &String)> = tags
            .iter()
            .filter(|t| include.is_empty() || include.iter().any(|r| r.is_match(t)))
            .filter(|t| !exclude.iter().any(|r| r.is_match(t)))
            .map(|t| (tag_version(t), t))
            .filter(|(v, _)| match (&range, v) {
                (None, _) => true,
                (Some(r), Some(v)) => r.matches(v),
                (Some(_), None) => false,
            })
            .collect();
        if self.newest.is_some() {
            kept.retain(|(v, _)| v.is_some());
        }
        // versions in order (equal versions, e.g. `1.2` and `v1.2.0`, by name), then the rest by name
        kept.sort_by(|(va, a), (vb, b)| match (va, vb) {
            (Some(x), Some(y)) => x.cmp(y).then_with(|| a.cmp(b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(b),
        });
        if let Some(n) = self.newest {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let skip = kept.len().saturating_sub(n);
            kept.drain(..skip);
        }
        Ok(kept.into_iter().map(|(_, t)| t.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(
        include: &[&str],
        exclude: &[&str],
        semver: Option<&str>,
        newest: Option<u64>,
    ) -> TagSelection {
        TagSelection {
            repository: "gcr.io/x/y".into(),
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            semver: semver.map(str::to_string),
            newest,
        }
    }

    fn tags() -> Vec<String> {
        [
            "latest",
            "v1.27.3",
            "v1.28.0",
            "v1.28.1",
            "v1.29.0-rc.1",
            "v1.29.0",
            "1.29",
            "v1.30.0",
            "sha256-abc.sig",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn selections() {
        let all = sel(&[], &[], None, None).select(&tags());
        assert_eq!(all.map(|v| v.len()), Ok(9));
        let r = sel(&["^v1\\.2[89]\\."], &["-rc"], None, None).select(&tags());
        assert_eq!(
            r,
            Ok(vec!["v1.28.0".into(), "v1.28.1".into(), "v1.29.0".into()])
        );
        let r = sel(&[], &[], Some(">=1.28, <1.30"), None).select(&tags());
        assert_eq!(
            r,
            Ok(vec![
                "v1.28.0".into(),
                "v1.28.1".into(),
                "1.29".into(),
                "v1.29.0".into()
            ])
        );
        let r = sel(&[], &[], None, Some(2)).select(&tags());
        assert_eq!(r, Ok(vec!["v1.29.0".into(), "v1.30.0".into()]));
        assert!(sel(&["("], &[], None, None).select(&tags()).is_err());
        assert!(sel(&[], &[], Some(">=x"), None).select(&tags()).is_err());
        assert!(sel(&[], &[], None, Some(0)).select(&tags()).is_err());
    }
}
