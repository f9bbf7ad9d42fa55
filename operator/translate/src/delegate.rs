//! VirtualService delegation, as Istio merges it. A rule with `delegate` is
//! replaced, where it stands, by the `http` rules of the delegate (a
//! VirtualService without hosts): each is narrowed to the delegating rule's
//! matches and takes from it what it leaves unset (timeout, retries, headers...).
//! A delegate rule whose matches fall outside the delegating rule's is not served
//! there, and is reported.
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use trellis_api::networking::{HTTPMatchRequest, HTTPRoute, StringMatch, VirtualService};
use trellis_model::{MeshModel, Stored, gateway_ref};

use crate::types::{ErrorCode, TranslateError};

/// One `http` rule as a proxy serves it, with the VirtualService that wrote
/// it: errors name that one, and its namespace resolves the rule's short names.
#[derive(Debug, Clone)]
pub struct ServedRoute<'m> {
    pub route: Cow<'m, HTTPRoute>,
    pub owner: &'m Stored<VirtualService>,
    /// The rule's index in its owner's `spec.http`.
    pub index: usize,
}

/// The `http` rules `vs` serves, in order, its delegating rules replaced by
/// the merged rules of their delegates. Delegates that cannot be used and
/// delegate rules outside the delegating rule's matches are reported.
pub fn served_routes<'m>(
    model: &'m MeshModel,
    vs: &'m Stored<VirtualService>,
    errors: &mut Vec<TranslateError>,
) -> Vec<ServedRoute<'m>> {
    let mut out = Vec::new();
    for (i, root) in vs.object.spec.http.iter().enumerate() {
        let Some(d) = &root.delegate else {
            out.push(ServedRoute {
                route: Cow::Borrowed(root),
                owner: vs,
                index: i,
            });
            continue;
        };
        let namespace = d.namespace.as_deref().unwrap_or(&vs.namespace);
        let delegate = match find_delegate(model, vs, namespace, &d.name) {
            Ok(delegate) => delegate,
            Err(message) => {
                errors.push(TranslateError {
                    kind: "VirtualService".into(),
                    namespace: vs.namespace.clone(),
                    name: vs.name.clone(),
                    path: format!("spec.http[{i}].delegate"),
                    message: format!(
                        "{message}; the requests this rule matches go on to the next rule"
                    ),
                    code: ErrorCode::UnknownDelegate,
                });
                continue;
            }
        };
        for (j, leaf) in delegate.object.spec.http.iter().enumerate() {
            match merge_route(model, (root, &vs.namespace), (leaf, &delegate.namespace)) {
                Some(route) => out.push(ServedRoute {
                    route: Cow::Owned(route),
                    owner: delegate,
                    index: j,
                }),
                None => errors.push(TranslateError {
                    kind: "VirtualService".into(),
                    namespace: delegate.namespace.clone(),
                    name: delegate.name.clone(),
                    path: format!("spec.http[{j}].match"),
                    message: format!(
                        "a match falls outside every match of the rule that delegates here \
                         (VirtualService {}/{} spec.http[{i}]); this rule is not served there",
                        vs.namespace, vs.name
                    ),
                    code: ErrorCode::DelegateConflict,
                }),
            }
        }
    }
    out
}

/// VirtualServices without hosts that no rule delegates to: they serve
/// nothing (a VirtualService whose hosts were forgotten looks the same).
pub fn unused_delegates(model: &MeshModel) -> Vec<TranslateError> {
    let named: BTreeSet<(&str, &str)> = model
        .virtual_services()
        .flat_map(|vs| {
            vs.object.spec.http.iter().filter_map(|r| {
                let d = r.delegate.as_ref()?;
                let namespace = d.namespace.as_deref().unwrap_or(&vs.namespace);
                Some((namespace, d.name.as_str()))
            })
        })
        .collect();
    model
        .virtual_services()
        .filter(|vs| vs.object.spec.hosts.is_empty())
        .filter(|vs| !named.contains(&(vs.namespace.as_str(), vs.name.as_str())))
        .map(|vs| TranslateError {
            kind: "VirtualService".into(),
            namespace: vs.namespace.clone(),
            name: vs.name.clone(),
            path: "spec.hosts".into(),
            message: "no hosts and no rule delegates to it, so it serves nothing \
                      (a VirtualService without hosts is a delegate)"
                .into(),
            code: ErrorCode::UnusedDelegate,
        })
        .collect()
}

/// The delegate `namespace/name` of `root`, or why it cannot serve: it must
/// exist, have no hosts, and be exported to the root's namespace.
fn find_delegate<'m>(
    model: &'m MeshModel,
    root: &Stored<VirtualService>,
    namespace: &str,
    name: &str,
) -> Result<&'m Stored<VirtualService>, String> {
    let Some(delegate) = model.virtual_service(namespace, name) else {
        return Err(format!("VirtualService {namespace}/{name} does not exist"));
    };
    if !delegate.object.spec.hosts.is_empty() {
        return Err(format!(
            "VirtualService {namespace}/{name} has hosts, so it is not a delegate \
             (a delegate is a VirtualService without hosts)"
        ));
    }
    if delegate.namespace != root.namespace && !delegate.export_to.visible_from(&root.namespace) {
        return Err(format!(
            "VirtualService {namespace}/{name} is not exported to namespace {}",
            root.namespace
        ));
    }
    Ok(delegate)
}

/// Delegate rule `leaf` (of a VirtualService in namespace `leaf.1`) within
/// delegating rule `root` (namespace `root.1`): matches narrowed to the
/// root's, and the root's settings where the leaf has none. `None` when a
/// match of the leaf falls outside every match of the root.
fn merge_route(
    model: &MeshModel,
    (root, root_ns): (&HTTPRoute, &str),
    (leaf, leaf_ns): (&HTTPRoute, &str),
) -> Option<HTTPRoute> {
    let mut out = leaf.clone();
    out.match_ = merge_matches((&root.match_, root_ns), (&leaf.match_, leaf_ns))?;
    out.name = joined(&root.name, &leaf.name);
    fill(&mut out.rewrite, &root.rewrite);
    fill(&mut out.timeout, &root.timeout);
    fill(&mut out.retries, &root.retries);
    fill(&mut out.fault, &root.fault);
    fill(&mut out.cors_policy, &root.cors_policy);
    fill(&mut out.headers, &root.headers);
    // The mirror fields are one setting: the leaf's when it has any of them.
    let leaf_mirrors = leaf.mirror.is_some() || !leaf.mirrors.is_empty();
    if !leaf_mirrors {
        out.mirror = root.mirror.clone();
        out.mirror_percent = root.mirror_percent;
        out.mirror_percentage = root.mirror_percentage.clone();
        out.mirrors = root.mirrors.clone();
        // The leaf's short names resolve in its namespace; the root's
        // mirrors keep the root's meaning.
        let qualify = |host: &mut String| {
            if let Some(service) = model.resolve_host(host, root_ns) {
                *host = service.hostname.clone();
            }
        };
        if let Some(m) = &mut out.mirror {
            qualify(&mut m.host);
        }
        for m in &mut out.mirrors {
            qualify(&mut m.destination.host);
        }
    }
    Some(out)
}

fn fill<T: Clone>(leaf: &mut Option<T>, root: &Option<T>) {
    if leaf.is_none() {
        leaf.clone_from(root);
    }
}

/// Istio's merged rule and match names: `root-leaf`, or the one that is set.
fn joined(root: &Option<String>, leaf: &Option<String>) -> Option<String> {
    match (root, leaf) {
        (Some(r), Some(l)) => Some(format!("{r}-{l}")),
        _ => leaf.clone().or_else(|| root.clone()),
    }
}

/// Every leaf match merged with each root match it falls within; `None`
/// when a leaf match falls within none (or nothing is left). No matches on
/// one side: the other side's.
fn merge_matches(
    (root, root_ns): (&[HTTPMatchRequest], &str),
    (leaf, leaf_ns): (&[HTTPMatchRequest], &str),
) -> Option<Vec<HTTPMatchRequest>> {
    let qualified = |matches: &[HTTPMatchRequest], ns: &str| -> Vec<HTTPMatchRequest> {
        let mut matches = matches.to_vec();
        for m in &mut matches {
            qualify_gateways(&mut m.gateways, ns);
        }
        matches
    };
    let (root, leaf) = (qualified(root, root_ns), qualified(leaf, leaf_ns));
    if root.is_empty() {
        return Some(leaf);
    }
    if leaf.is_empty() {
        return Some(root);
    }
    let mut out = Vec::new();
    for l in &leaf {
        let before = out.len();
        out.extend(root.iter().filter_map(|r| merge_match(r, l)));
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// Gateway names written as `name` mean the gateway in the VirtualService's
/// own namespace: once rules of two namespaces meet, they must say which.
fn qualify_gateways(gateways: &mut [String], namespace: &str) {
    for g in gateways.iter_mut() {
        if let Some((ns, name)) = gateway_ref(g, namespace) {
            *g = format!("{ns}/{name}");
        }
    }
}

/// `leaf` within `root`: the requests both admit, or `None` when `leaf` is
/// not a narrowing of `root`.
fn merge_match(root: &HTTPMatchRequest, leaf: &HTTPMatchRequest) -> Option<HTTPMatchRequest> {
    let strings_within = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ]
    .into_iter()
    .all(|(r, l)| within(r.as_ref(), l.as_ref()));
    let maps_within = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ]
    .into_iter()
    .all(|(r, l)| l.iter().all(|(k, v)| within(r.get(k), Some(v))));
    let ports_agree = match (root.port, leaf.port) {
        (Some(r), Some(l)) => r == l,
        _ => true,
    };
    let namespaces_agree = match (&root.source_namespace, &leaf.source_namespace) {
        (Some(r), Some(l)) => r == l,
        _ => true,
    };
    let labels_agree = leaf
        .source_labels
        .iter()
        .all(|(k, v)| root.source_labels.get(k).is_none_or(|r| r == v));
    let gateways_within = root.gateways.is_empty()
        || leaf.gateways.is_empty()
        || leaf.gateways.iter().all(|g| root.gateways.contains(g));
    let same_case = root.ignore_uri_case.unwrap_or(false) == leaf.ignore_uri_case.unwrap_or(false);
    if !(strings_within
        && maps_within
        && ports_agree
        && namespaces_agree
        && labels_agree
        && gateways_within
        && same_case)
    {
        return None;
    }
    let mut out = leaf.clone();
    out.name = joined(&root.name, &leaf.name);
    fill(&mut out.uri, &root.uri);
    fill(&mut out.scheme, &root.scheme);
    fill(&mut out.method, &root.method);
    fill(&mut out.authority, &root.authority);
    fill(&mut out.port, &root.port);
    fill(&mut out.source_namespace, &root.source_namespace);
    fill(&mut out.stat_prefix, &root.stat_prefix);
    union(&mut out.headers, &root.headers);
    union(&mut out.without_headers, &root.without_headers);
    union(&mut out.query_params, &root.query_params);
    union(&mut out.source_labels, &root.source_labels);
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    Some(out)
}

/// Adds `root`'s entries for keys `leaf` does not name.
fn union<V: Clone>(leaf: &mut BTreeMap<String, V>, root: &BTreeMap<String, V>) {
    for (k, v) in root {
        leaf.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// Whether every value `leaf` admits, `root` admits too (either unset: the
/// other one decides). A regex cannot be compared with another condition, so
/// as in Istio it only stands alone. `{}` (any value) admits every value.
fn within(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    use StringMatch::{Any, Exact, Prefix, Regex};
    match (root, leaf) {
        (None, _) | (_, None) => true,
        (Some(Any), Some(_)) => true,
        (Some(Regex(_)), Some(_)) | (Some(_), Some(Regex(_))) => false,
        (Some(Exact(r)), Some(Exact(l))) => r == l,
        (Some(Prefix(p)), Some(Exact(l) | Prefix(l))) => l.starts_with(p.as_str()),
        (Some(Exact(_) | Prefix(_)), Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(s: &str) -> Option<StringMatch> {
        Some(StringMatch::Exact(s.into()))
    }
    fn prefix(s: &str) -> Option<StringMatch> {
        Some(StringMatch::Prefix(s.into()))
    }
    fn regex(s: &str) -> Option<StringMatch> {
        Some(StringMatch::Regex(s.into()))
    }

    #[test]
    fn a_leaf_string_match_must_narrow_the_root() {
        let w = |r: Option<StringMatch>, l: Option<StringMatch>| within(r.as_ref(), l.as_ref());
        assert!(w(prefix("/a"), prefix("/a/b")));
        assert!(w(prefix("/a"), exact("/a/c")));
        assert!(!w(prefix("/a/b"), prefix("/a")));
        assert!(!w(prefix("/a"), exact("/b")));
        assert!(w(exact("/x"), exact("/x")));
        assert!(!w(exact("/x"), exact("/y")));
        assert!(!w(exact("/x"), prefix("/x")));
        assert!(!w(prefix("/"), regex(".*")));
        assert!(!w(regex(".*"), exact("/a")));
        assert!(!w(prefix("/"), Some(StringMatch::Any)));
        assert!(w(Some(StringMatch::Any), exact("/a")));
        assert!(w(None, regex(".*")));
        assert!(w(regex(".*"), None));
    }

    fn m(yaml: &str) -> HTTPMatchRequest {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn merged_matches_take_the_root_conditions_the_leaf_leaves_unset() {
        let root = m("{uri: {prefix: /shop}, headers: {x-team: {exact: a}}, port: 80, name: r}");
        let leaf = m("{uri: {prefix: /shop/cart}, headers: {x-v: {exact: '2'}}, name: l}");
        let out = merge_match(&root, &leaf).expect("leaf narrows root");
        assert_eq!(out.uri, prefix("/shop/cart"));
        assert_eq!(out.port, Some(80));
        assert_eq!(out.name.as_deref(), Some("r-l"));
        assert_eq!(
            out.headers.keys().collect::<Vec<_>>(),
            vec!["x-team", "x-v"]
        );
        // A leaf naming the root's header with another value is outside it.
        let other = m("{headers: {x-team: {exact: b}}}");
        assert!(merge_match(&root, &other).is_none());
        let port = m("{port: 81}");
        assert!(merge_match(&root, &port).is_none());
        let case = m("{ignoreUriCase: true}");
        assert!(merge_match(&root, &case).is_none());
    }

    #[test]
    fn each_leaf_match_needs_a_root_match_it_falls_within() {
        let root = [m("{uri: {prefix: /a}}"), m("{uri: {prefix: /b}}")];
        let leaf = [m("{uri: {prefix: /b/1}}")];
        let out = merge_matches((&root, "shop"), (&leaf, "team")).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].uri, prefix("/b/1"));
        let stray = [m("{uri: {prefix: /b/1}}"), m("{uri: {prefix: /c}}")];
        assert!(merge_matches((&root, "shop"), (&stray, "team")).is_none());
        // No matches on one side: the other side's.
        let all = merge_matches((&root, "shop"), (&[], "team")).unwrap();
        assert_eq!(all.len(), 2);
        // A leaf match without conditions falls within every root match.
        let any = merge_matches((&root, "shop"), (&[m("{name: any}")], "team")).unwrap();
        assert_eq!(any.len(), 2);
    }

    #[test]
    fn gateway_names_are_read_in_their_own_namespace() {
        let root = [m("{gateways: [edge, mesh]}")];
        let inside = [m("{gateways: [shop/edge]}")];
        let out = merge_matches((&root, "shop"), (&inside, "team")).unwrap();
        assert_eq!(out[0].gateways, vec!["shop/edge"]);
        // `edge` written in the delegate's namespace is another gateway.
        let elsewhere = [m("{gateways: [edge]}")];
        assert!(merge_matches((&root, "shop"), (&elsewhere, "team")).is_none());
    }
}
