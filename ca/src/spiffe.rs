//! SPIFFE ids (`spiffe://<trust-domain>/<path>`) per the SPIFFE-ID specification.
//!
//! Rules enforced: scheme exactly `spiffe://`; trust domain of lowercase letters,
//! digits, `.`, `-`, `_` (1..=255 chars, so no port, userinfo or uppercase); path
//! segments of letters, digits, `.`, `-`, `_`, never empty, `.` or `..`; no trailing
//! slash, query or fragment (their characters are outside both alphabets); whole id
//! at most 2048 bytes.

use crate::error::{CaError, Result};
use std::fmt;
use std::str::FromStr;

const SCHEME: &str = "spiffe://";
const MAX_ID_LEN: usize = 2048;
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A validated SPIFFE trust domain such as `cluster.local`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates a trust domain name (not a URI).
    pub fn new(name: &str) -> Result<Self> {
        check_trust_domain(name).map_err(|reason| CaError::InvalidSpiffeId {
            input: name.to_string(),
            reason: format!("trust domain: {reason}"),
        })?;
        Ok(Self(name.to_string()))
    }

    /// The trust domain as written in ids.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated SPIFFE id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// Empty, or `/seg(/seg)*`.
    path: String,
}

impl SpiffeId {
    /// Parses and validates `spiffe://<trust-domain>[/<path>]`.
    pub fn parse(input: &str) -> Result<Self> {
        let fail = |reason: String| CaError::InvalidSpiffeId {
            input: input.to_string(),
            reason,
        };
        if input.len() > MAX_ID_LEN {
            return Err(fail(format!("longer than {MAX_ID_LEN} bytes")));
        }
        let rest = input
            .strip_prefix(SCHEME)
            .ok_or_else(|| fail("must start with \"spiffe://\"".to_string()))?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_trust_domain(td).map_err(|r| fail(format!("trust domain: {r}")))?;
        check_path(path).map_err(|r| fail(format!("path: {r}")))?;
        Ok(Self {
            trust_domain: TrustDomain(td.to_string()),
            path: path.to_string(),
        })
    }

    /// Builds an id from a trust domain and path segments (each validated).
    pub fn from_segments(trust_domain: &TrustDomain, segments: &[&str]) -> Result<Self> {
        let mut path = String::new();
        for seg in segments {
            path.push('/');
            path.push_str(seg);
        }
        let id = format!("{SCHEME}{trust_domain}{path}");
        for seg in segments {
            // Each segment alone, so a '/' inside a name cannot forge extra segments.
            check_path(&format!("/{seg}"))
                .and_then(|()| match seg.contains('/') {
                    true => Err(format!("segment {seg:?} must not contain '/'")),
                    false => Ok(()),
                })
                .map_err(|reason| CaError::InvalidSpiffeId {
                    input: id.clone(),
                    reason: format!("path: {reason}"),
                })?;
        }
        if id.len() > MAX_ID_LEN {
            return Err(CaError::InvalidSpiffeId {
                input: id,
                reason: format!("longer than {MAX_ID_LEN} bytes"),
            });
        }
        Ok(Self {
            trust_domain: trust_domain.clone(),
            path,
        })
    }

    /// The Istio-compatible workload identity
    /// `spiffe://<td>/ns/<namespace>/sa/<service-account>`.
    pub fn for_service_account(
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self> {
        Self::from_segments(trust_domain, &["ns", namespace, "sa", service_account])
    }

    /// The trust domain part.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path part: empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `(namespace, service_account)` when the path is `/ns/<ns>/sa/<sa>`.
    pub fn kubernetes_identity(&self) -> Option<(&str, &str)> {
        let mut segs = self.path.strip_prefix('/')?.split('/');
        match (
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = CaError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

fn check_trust_domain(td: &str) -> std::result::Result<(), String> {
    if td.is_empty() {
        return Err("must not be empty".into());
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(format!("longer than {MAX_TRUST_DOMAIN_LEN} characters"));
    }
    if let Some(c) = td
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "character {c:?} not allowed (lowercase letters, digits, '.', '-', '_' only; no port, userinfo, query or fragment)"
        ));
    }
    Ok(())
}

fn check_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with '/'".into());
    };
    for seg in rest.split('/') {
        match seg {
            "" => return Err("empty segment (double or trailing '/')".into()),
            "." | ".." => return Err(format!("segment {seg:?} not allowed")),
            _ => {}
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(format!(
                "character {c:?} not allowed in segment {seg:?} (letters, digits, '.', '-', '_' only)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_workload_id() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/web").unwrap();
        assert_eq!(id.trust_domain().as_str(), "cluster.local");
        assert_eq!(id.kubernetes_identity(), Some(("default", "web")));
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/web");
    }

    #[test]
    fn rejects_spec_violations() {
        for bad in [
            "",
            "http://td/x",
            "SPIFFE://td/x",
            "spiffe://",
            "spiffe:///path",
            "spiffe://TD/x",
            "spiffe://td:8080/x",
            "spiffe://user@td/x",
            "spiffe://td/x?q=1",
            "spiffe://td/x#frag",
            "spiffe://td/",
            "spiffe://td//x",
            "spiffe://td/./x",
            "spiffe://td/x/..",
            "spiffe://td/x%20y",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} should be rejected");
        }
        let long = format!("spiffe://td/{}", "a".repeat(2100));
        assert!(SpiffeId::parse(&long).is_err());
    }

    #[test]
    fn kubernetes_constructor_validates_names() {
        let td = TrustDomain::new("cluster.local").unwrap();
        assert!(SpiffeId::for_service_account(&td, "default", "web").is_ok());
        let err = SpiffeId::for_service_account(&td, "", "web").unwrap_err();
        assert!(err.to_string().contains("empty segment"), "{err}");
        assert!(SpiffeId::for_service_account(&td, "a/b", "web").is_err());
        assert!(SpiffeId::for_service_account(&td, "..", "web").is_err());
        assert_eq!(
            SpiffeId::parse("spiffe://td/ns/a/sa/b/extra")
                .unwrap()
                .kubernetes_identity(),
            None
        );
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{1,20}".prop_filter("dot segments", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip(td in "[a-z0-9._-]{1,60}", segs in proptest::collection::vec(segment(), 0..6)) {
            let trust_domain = TrustDomain::new(&td).unwrap();
            let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let id = SpiffeId::from_segments(&trust_domain, &refs).unwrap();
            let text = id.to_string();
            let parsed = SpiffeId::parse(&text).unwrap();
            prop_assert_eq!(&parsed, &id);
            prop_assert_eq!(parsed.to_string(), text);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,80}") {
            if let Ok(id) = SpiffeId::parse(&s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }

        #[test]
        fn parser_never_panics_on_spiffe_prefix(s in "spiffe://[ -~]{0,60}") {
            if let Ok(id) = SpiffeId::parse(&s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}
