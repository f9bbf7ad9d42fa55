use super::*;
use crate::snapshot::{ResourceCache, Snapshot};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;

use ResourceType::*;

fn snap(cache: &ResourceCache, items: &[(ResourceType, &str, &str)]) -> Arc<Snapshot> {
    let mut b = Snapshot::builder();
    for (ty, name, content) in items {
        b.add(
            *name,
            Any {
                type_url: ty.type_url().to_string(),
                value: content.as_bytes().to_vec(),
            },
        )
        .unwrap();
    }
    Arc::new(b.build(cache))
}

fn req(ty: ResourceType, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

fn ack(ty: ResourceType, names: &[&str], r: &DiscoveryResponse) -> DiscoveryRequest {
    req(ty, names, &r.version_info, &r.nonce)
}

fn nack(
    ty: ResourceType,
    names: &[&str],
    prev_version: &str,
    r: &DiscoveryResponse,
) -> DiscoveryRequest {
    let mut q = req(ty, names, prev_version, &r.nonce);
    q.error_detail = Some(Status {
        code: 3,
        message: "bad listener l1".to_string(),
        details: vec![],
    });
    q
}

fn names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| String::from_utf8(a.value.clone()).unwrap())
        .collect()
}

fn base(cache: &ResourceCache) -> Arc<Snapshot> {
    snap(
        cache,
        &[
            (Cluster, "c1", "c1v1"),
            (Cluster, "c2", "c2v1"),
            (Endpoint, "c1", "e1v1"),
            (Endpoint, "c2", "e2v1"),
            (Listener, "l1", "l1v1"),
            (Route, "r1", "r1v1"),
            (Secret, "s1", "s1v1"),
        ],
    )
}

#[test]
fn wildcard_types_get_everything_on_the_first_request() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    assert!(
        s.on_snapshot(base(&cache)).is_empty(),
        "nothing subscribed yet"
    );
    let out = s.handle_request(req(Cluster, &[], "", ""));
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["c1v1", "c2v1"]);
    assert_eq!(out[0].type_url, Cluster.type_url());
    assert!(!out[0].version_info.is_empty());
    let out = s.handle_request(req(Listener, &["*"], "", ""));
    assert_eq!(names(&out[0]), ["l1v1"]);
}

#[test]
fn named_types_get_only_the_names_asked_for_that_exist() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    let out = s.handle_request(req(Endpoint, &["c2", "missing"], "", ""));
    assert_eq!(names(&out[0]), ["e2v1"]);
    // no names at all for a named type is an empty answer, not everything
    let out = s.handle_request(req(Secret, &[], "", ""));
    assert!(out[0].resources.is_empty());
}

#[test]
fn first_request_before_any_snapshot_is_answered_when_the_snapshot_arrives() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    assert!(s.handle_request(req(Cluster, &[], "", "")).is_empty());
    let out = s.on_snapshot(base(&cache));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].type_url, Cluster.type_url());
}

#[test]
fn ack_records_the_version_and_sends_nothing_more() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    let first = s.handle_request(req(Cluster, &[], "", "")).remove(0);
    assert!(!s.type_status(Cluster).in_sync());
    let out = s.handle_request(ack(Cluster, &[], &first));
    assert!(out.is_empty());
    let st = s.type_status(Cluster);
    assert_eq!(
        st.acked_version.as_deref(),
        Some(first.version_info.as_str())
    );
    assert!(st.in_sync());
}

#[test]
fn nonces_are_unique_across_types_and_versions_are_per_type() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    let c = s.handle_request(req(Cluster, &[], "", "")).remove(0);
    let l = s.handle_request(req(Listener, &[], "", "")).remove(0);
    assert_ne!(c.nonce, l.nonce);
    assert_ne!(c.version_info, l.version_info);
    // an ACK carrying the listener nonce on the cluster type is stale for clusters
    let (kind, out) = s.handle_request_classified(req(Cluster, &[], &l.version_info, &l.nonce));
    assert_eq!(kind, RequestKind::Stale);
    assert!(out.is_empty());
    assert!(s.type_status(Cluster).acked_version.is_none());
}

#[test]
fn nack_keeps_last_good_version_records_the_error_and_is_not_resent() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    let v1 = s.handle_request(req(Listener, &[], "", "")).remove(0);
    s.handle_request(ack(Listener, &[], &v1));
    let bad = snap(&cache, &[(Listener, "l1", "broken")]);
    let v2 = s.on_snapshot(bad).remove(0);
    assert_eq!(v2.type_url, Listener.type_url());
    let (kind, out) = s.handle_request_classified(nack(Listener, &[], &v1.version_info, &v2));
    assert!(
        out.is_empty(),
        "the rejected version must not be sent again"
    );
    let RequestKind::Nack(record) = kind else {
        panic!("expected a NACK")
    };
    assert_eq!(record.rejected_version, v2.version_info);
    assert_eq!(record.message, "bad listener l1");
    assert_eq!(record.resource_names, ["l1"]);
    assert_eq!(record.type_url, Listener.type_url());
    let st = s.type_status(Listener);
    assert_eq!(st.acked_version.as_deref(), Some(v1.version_info.as_str()));
    assert!(st.rejected() && !st.in_sync());
    // a fixed snapshot is sent and its ACK clears the rejection
    let fixed = snap(&cache, &[(Listener, "l1", "l1v3")]);
    let v3 = s.on_snapshot(fixed).remove(0);
    s.handle_request(ack(Listener, &[], &v3));
    assert!(s.type_status(Listener).in_sync());
    assert!(!s.type_status(Listener).rejected());
}

#[test]
fn stale_nonces_are_ignored_even_with_an_error() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    let v1 = s.handle_request(req(Listener, &[], "", "")).remove(0);
    let _v2 = s
        .on_snapshot(snap(&cache, &[(Listener, "l1", "l1v2")]))
        .remove(0);
    // a NACK for v1 arriving after v2 went out is about an outdated response
    let (kind, out) = s.handle_request_classified(nack(Listener, &[], "", &v1));
    assert_eq!(kind, RequestKind::Stale);
    assert!(out.is_empty());
    assert!(s.type_status(Listener).last_nack.is_none());
    // an unknown nonce is stale too
    let (kind, _) = s.handle_request_classified(req(Listener, &[], "", "999"));
    assert_eq!(kind, RequestKind::Stale);
}

#[test]
fn a_changed_subscription_is_answered_even_when_piggybacked_on_an_ack() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    let e = s.handle_request(req(Endpoint, &["c1"], "", "")).remove(0);
    assert_eq!(names(&e), ["e1v1"]);
    let out = s.handle_request(ack(Endpoint, &["c1", "c2"], &e));
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0]), ["e1v1", "e2v1"]);
    assert_eq!(
        s.type_status(Endpoint).acked_version.as_deref(),
        Some(e.version_info.as_str())
    );
}

#[test]
fn reconnect_style_initial_request_with_a_version_is_answered() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    let out = s.handle_request(req(Cluster, &[], "some-old-version", ""));
    assert_eq!(out.len(), 1);
}

#[test]
fn a_snapshot_change_sends_only_changed_types_in_warming_order() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    for (ty, n) in [
        (Route, vec!["r1"]),
        (Listener, vec![]),
        (Endpoint, vec!["c1", "c2"]),
        (Cluster, vec![]),
        (Secret, vec!["s1"]),
    ] {
        let r = s.handle_request(req(ty, &n, "", "")).remove(0);
        s.handle_request(ack(ty, &n, &r));
    }
    let changed = snap(
        &cache,
        &[
            (Cluster, "c1", "c1v2"),
            (Cluster, "c2", "c2v1"),
            (Endpoint, "c1", "e1v2"),
            (Endpoint, "c2", "e2v1"),
            (Listener, "l1", "l1v2"),
            (Route, "r1", "r1v2"),
            (Secret, "s1", "s1v1"),
        ],
    );
    let out = s.on_snapshot(changed);
    let order: Vec<ResourceType> = out
        .iter()
        .map(|r| ResourceType::from_type_url(&r.type_url).unwrap())
        .collect();
    assert_eq!(
        order,
        [Cluster, Endpoint, Listener, Route],
        "secret unchanged, not sent"
    );
}

#[test]
fn an_identical_snapshot_sends_nothing() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    for ty in ResourceType::ALL {
        let r = s
            .handle_request(req(ty, &["c1", "r1", "s1"], "", ""))
            .remove(0);
        s.handle_request(ack(ty, &["c1", "r1", "s1"], &r));
    }
    assert!(s.on_snapshot(base(&cache)).is_empty());
    // a change to a resource nobody subscribed to sends nothing either
    let mut other = vec![
        (Cluster, "c1", "c1v1"),
        (Cluster, "c2", "c2v1"),
        (Endpoint, "c1", "e1v1"),
        (Endpoint, "c2", "CHANGED"),
        (Listener, "l1", "l1v1"),
        (Route, "r1", "r1v1"),
        (Secret, "s1", "s1v1"),
    ];
    assert!(s.on_snapshot(snap(&cache, &other)).is_empty());
    other.push((Secret, "s2", "new"));
    assert!(s.on_snapshot(snap(&cache, &other)).is_empty());
}

#[test]
fn unknown_type_urls_are_ignored() {
    let mut s = AdsStream::new("cp");
    let mut r = req(Cluster, &[], "", "");
    r.type_url = "type.googleapis.com/envoy.service.runtime.v3.Runtime".into();
    let (kind, out) = s.handle_request_classified(r);
    assert_eq!(kind, RequestKind::UnknownType);
    assert!(out.is_empty());
}

#[test]
fn status_reports_subscriptions_and_sent_resources() {
    let cache = ResourceCache::new();
    let mut s = AdsStream::new("cp");
    s.on_snapshot(base(&cache));
    s.handle_request(req(Route, &["r1"], "", ""));
    s.handle_request(req(Cluster, &[], "", ""));
    let st = s.status();
    assert_eq!(
        st[Route.index()].subscribed.as_deref(),
        Some(&["r1".to_string()][..])
    );
    assert_eq!(st[Cluster.index()].subscribed, None);
    assert_eq!(
        st[Cluster.index()]
            .last_sent
            .as_ref()
            .unwrap()
            .resource_names(),
        ["c1", "c2"]
    );
    assert!(st[Listener.index()].last_sent.is_none());
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[derive(Debug, Clone)]
    enum Step {
        Request {
            ty: usize,
            names: Vec<u8>,
            nonce: Option<usize>,
            error: bool,
        },
        Snapshot(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (
                0usize..6,
                proptest::collection::vec(0u8..4, 0..4),
                proptest::option::of(0usize..8),
                any::<bool>()
            )
                .prop_map(|(ty, names, nonce, error)| Step::Request {
                    ty,
                    names,
                    nonce,
                    error
                }),
            (0u8..4).prop_map(Step::Snapshot),
        ]
    }

    fn generation(cache: &ResourceCache, g: u8) -> Arc<Snapshot> {
        let content = format!("g{g}");
        snap(
            cache,
            &[
                (Cluster, "n0", &content),
                (Endpoint, "n1", &content),
                (Listener, "n2", "fixed"),
                (Route, "n0", &content),
                (Secret, "n3", &content),
            ],
        )
    }

    proptest! {
        /// Any sequence of requests (current, stale, unknown nonces, errors, unknown types)
        /// and snapshots: no panic, unique nonces, ACKed versions are versions that were sent,
        /// and a response never carries a resource the subscription did not ask for.
        #[test]
        fn protocol_invariants_hold_for_any_sequence(steps in proptest::collection::vec(step(), 1..40)) {
            let cache = ResourceCache::new();
            let mut s = AdsStream::new("cp");
            let mut sent: Vec<DiscoveryResponse> = Vec::new();
            let mut nonces = HashSet::new();
            let mut versions_sent: HashSet<(String, String)> = HashSet::new();
            for st in steps {
                let out = match st {
                    Step::Snapshot(g) => s.on_snapshot(generation(&cache, g)),
                    Step::Request { ty, names, nonce, error } => {
                        let type_url = ResourceType::ALL
                            .get(ty)
                            .map(|t| t.type_url().to_string())
                            .unwrap_or_else(|| "type.googleapis.com/unknown".to_string());
                        let names: Vec<String> = names.iter().map(|n| format!("n{n}")).collect();
                        let prior = nonce.and_then(|i| sent.get(i));
                        let mut q = DiscoveryRequest {
                            type_url: type_url.clone(),
                            resource_names: names.clone(),
                            response_nonce: prior.map(|r| r.nonce.clone()).unwrap_or_default(),
                            version_info: prior.map(|r| r.version_info.clone()).unwrap_or_default(),
                            ..Default::default()
                        };
                        if error {
                            q.error_detail = Some(Status { code: 3, message: "x".into(), details: vec![] });
                        }
                        let out = s.handle_request(q);
                        let explicit_names = ResourceType::from_type_url(&type_url)
                            .is_some_and(|ty| !ty.is_wildcard_type() || !names.is_empty())
                            && !names.iter().any(|n| n == "*");
                        if explicit_names {
                            for r in &out {
                                prop_assert!(r.resources.len() <= names.len());
                            }
                        }
                        out
                    }
                };
                for r in out {
                    prop_assert!(ResourceType::from_type_url(&r.type_url).is_some());
                    prop_assert!(nonces.insert(r.nonce.clone()), "nonce reused");
                    versions_sent.insert((r.type_url.clone(), r.version_info.clone()));
                    sent.push(r);
                }
            }
            for ty in ResourceType::ALL {
                if let Some(v) = &s.type_status(ty).acked_version {
                    prop_assert!(versions_sent.contains(&(ty.type_url().to_string(), v.clone())));
                }
            }
        }
    }
}
