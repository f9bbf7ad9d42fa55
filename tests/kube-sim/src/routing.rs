//! URL paths and query strings of the Kubernetes API, parsed into what a handler needs.

use std::collections::HashMap;

/// A request on a resource path (`/api/v1/namespaces/ns/pods/name/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix.
    pub watch_prefix: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    Version,
    Healthz,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion(String, String),
    Resource(ResourcePath),
    /// `/openapi/v3` (None) or `/openapi/v3/api/v1`, `/openapi/v3/apis/<g>/<v>` (group, version).
    OpenApiV3(Option<(String, String)>),
    /// `/openapi/v2`, the protobuf swagger document kubectl reads for client-side validation.
    OpenApiV2,
    Unknown,
}

/// Parses a URL path (without query).
pub fn parse_path(path: &str) -> ApiPath {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => ApiPath::Version,
        ["healthz"] | ["livez"] | ["readyz"] => ApiPath::Healthz,
        ["openapi", "v2"] => ApiPath::OpenApiV2,
        ["openapi", "v3"] => ApiPath::OpenApiV3(None),
        ["openapi", "v3", "api", version] => {
            ApiPath::OpenApiV3(Some((String::new(), version.to_string())))
        }
        ["openapi", "v3", "apis", group, version] => {
            ApiPath::OpenApiV3(Some((group.to_string(), version.to_string())))
        }
        ["api"] => ApiPath::CoreVersions,
        ["apis"] => ApiPath::Groups,
        ["apis", group] => ApiPath::Group(group.to_string()),
        ["api", version] => ApiPath::GroupVersion(String::new(), version.to_string()),
        ["apis", group, version] => ApiPath::GroupVersion(group.to_string(), version.to_string()),
        ["api", version, rest @ ..] => resource_path("", version, rest),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
        _ => ApiPath::Unknown,
    }
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> ApiPath {
    let (watch_prefix, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let mut p = ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace: None,
        resource: String::new(),
        name: None,
        subresource: None,
        watch_prefix,
    };
    let owned = |s: &&str| s.to_string();
    match rest {
        // A namespace's own subresources share the shape of a namespaced collection.
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            p.resource = "namespaces".into();
            p.name = Some(name.to_string());
            p.subresource = Some(sub.to_string());
        }
        ["namespaces", ns, resource, tail @ ..] => {
            p.namespace = Some(ns.to_string());
            p.resource = resource.to_string();
            p.name = tail.first().map(owned);
            p.subresource = tail.get(1).map(owned);
            if tail.len() > 2 {
                return ApiPath::Unknown;
            }
        }
        [resource, tail @ ..] => {
            p.resource = resource.to_string();
            p.name = tail.first().map(owned);
            p.subresource = tail.get(1).map(owned);
            if tail.len() > 2 {
                return ApiPath::Unknown;
            }
        }
        [] => return ApiPath::Unknown,
    }
    ApiPath::Resource(p)
}

/// Query parameters; the last value wins for repeated keys.
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes %XX escapes; malformed escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn namespaced_object_with_subresource() {
        let ApiPath::Resource(p) = parse_path("/apis/apps/v1/namespaces/ns/deployments/web/status")
        else {
            panic!("not a resource path");
        };
        assert_eq!(p.group, "apps");
        assert_eq!(p.namespace.as_deref(), Some("ns"));
        assert_eq!(p.resource, "deployments");
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn namespace_paths_are_told_apart() {
        let ApiPath::Resource(p) = parse_path("/api/v1/namespaces/team") else {
            panic!("not a resource path");
        };
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref()),
            ("namespaces", Some("team"))
        );
        let ApiPath::Resource(p) = parse_path("/api/v1/namespaces/team/status") else {
            panic!("not a resource path");
        };
        assert_eq!(p.subresource.as_deref(), Some("status"));
        assert!(p.namespace.is_none());
        let ApiPath::Resource(p) = parse_path("/api/v1/watch/namespaces/team/configmaps") else {
            panic!("not a resource path");
        };
        assert!(p.watch_prefix);
        assert_eq!(p.resource, "configmaps");
    }

    #[test]
    fn query_decodes_selectors() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=true"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "true");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(path in ".{0,80}", query in ".{0,80}") {
            let _ = parse_path(&path);
            let _ = parse_query(Some(&query));
        }
    }
}
