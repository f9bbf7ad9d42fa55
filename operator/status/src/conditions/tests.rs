use super::*;
use serde_json::json;
use trellis_sources::{Input, MeshFeed, SourceKind, input_from_json};
use trellis_translate::ErrorCode;

const T0: &str = "2026-11-29T10:00:00Z";
const T1: &str = "2026-11-29T11:00:00Z";

fn object(kind: SourceKind, spec: serde_json::Value, generation: i64) -> ConfigObject {
    let (group, _) = kind.group_version();
    let input = input_from_json(
        kind,
        json!({"apiVersion": format!("{group}/v1"), "kind": kind.as_str(),
               "metadata": {"name": "r", "namespace": "shop", "generation": generation},
               "spec": spec}),
    );
    let key = input.key();
    let mut feed = MeshFeed::new(Default::default());
    feed.apply(trellis_sources::Change::Apply(input));
    let view = feed.view(true);
    view.config[&key].clone()
}

fn weights(a: i32, b: i32) -> serde_json::Value {
    json!({"hosts": ["cart"], "http": [{"route": [
        {"destination": {"host": "cart", "subset": "v1"}, "weight": a},
        {"destination": {"host": "cart", "subset": "v2"}, "weight": b}]}]})
}

fn get<'a>(s: &'a ResourceStatus, t: &str) -> Option<&'a Condition> {
    s.conditions.iter().find(|c| c.type_ == t)
}

#[test]
fn an_invalid_object_is_not_accepted_and_the_message_names_the_field() {
    let o = object(SourceKind::VirtualService, weights(60, 30), 4);
    let s = resource_status(&o, &[], None, T0);
    let accepted = get(&s, ACCEPTED).unwrap();
    assert_eq!(accepted.status, "False");
    assert_eq!(accepted.reason.as_deref(), Some("Invalid"));
    let message = accepted.message.as_deref().unwrap();
    assert!(message.starts_with("spec.http[0].route: "), "{message}");
    assert!(message.contains("sum to 90"), "{message}");
    assert_eq!(accepted.observed_generation, Some(4));
    assert_eq!(s.observed_generation, Some(4));
    assert_eq!(accepted.last_transition_time.as_deref(), Some(T0));
    assert!(!is_accepted(&s));
    assert!(get(&s, WARNING).is_none());
}

#[test]
fn an_unreadable_object_says_which_field_could_not_be_read() {
    let o = object(
        SourceKind::DestinationRule,
        json!({"host": "cart", "trafficPolicy": {"bogus": true}}),
        1,
    );
    let s = resource_status(&o, &[], None, T0);
    let accepted = get(&s, ACCEPTED).unwrap();
    assert_eq!(accepted.reason.as_deref(), Some("Unreadable"));
    let message = accepted.message.as_deref().unwrap();
    assert!(message.starts_with("spec.trafficPolicy"), "{message}");
    assert!(message.contains("bogus"), "{message}");
}

#[test]
fn a_valid_object_is_accepted_with_translation_findings_as_a_warning() {
    let o = object(SourceKind::VirtualService, weights(90, 10), 2);
    let finding = TranslateError {
        kind: "VirtualService".into(),
        namespace: "shop".into(),
        name: "r".into(),
        path: "spec.http[0].route[1].destination.subset".into(),
        message: "subset \"v2\" is not defined by any DestinationRule".into(),
        code: ErrorCode::UnknownSubset,
    };
    let s = resource_status(&o, &[finding.clone(), finding], None, T0);
    let accepted = get(&s, ACCEPTED).unwrap();
    assert_eq!(accepted.status, "True");
    assert_eq!(accepted.observed_generation, Some(2));
    let warning = get(&s, WARNING).unwrap();
    assert_eq!(warning.status, "True");
    assert_eq!(warning.reason.as_deref(), Some("UnknownSubset"));
    assert_eq!(
        warning.message.as_deref(),
        Some(
            "spec.http[0].route[1].destination.subset: subset \"v2\" is not defined by any DestinationRule"
        ),
        "duplicates are reported once"
    );
    assert!(is_accepted(&s));
}

#[test]
fn namespace_peer_authentications_are_programmed() {
    let o = object(
        SourceKind::PeerAuthentication,
        json!({"mtls": {"mode": "STRICT"}}),
        1,
    );
    let s = resource_status(&o, &[], None, T0);
    assert_eq!(get(&s, ACCEPTED).unwrap().status, "True");
    assert!(
        get(&s, WARNING).is_none_or(|w| w.reason.as_deref() != Some("NotImplemented")),
        "{s:?}"
    );
}

#[test]
fn transition_times_move_only_when_the_status_value_changes() {
    let valid = object(SourceKind::VirtualService, weights(90, 10), 1);
    let first = resource_status(&valid, &[], None, T0);
    let again = resource_status(&valid, &[], Some(&first), T1);
    assert_eq!(
        first, again,
        "nothing changed: identical status, so no write"
    );

    let invalid = object(SourceKind::VirtualService, weights(50, 10), 2);
    let broken = resource_status(&invalid, &[], Some(&first), T1);
    assert_eq!(
        get(&broken, ACCEPTED)
            .unwrap()
            .last_transition_time
            .as_deref(),
        Some(T1)
    );
    assert_ne!(broken, first);
}

#[test]
fn long_lists_are_cut() {
    let findings: Vec<Finding> = (0..200)
        .map(|i| Finding {
            path: format!("spec.hosts[{i}]"),
            message: "is not a valid host name".into(),
        })
        .collect();
    let s = summarize(&findings);
    assert!(s.len() <= MAX_MESSAGE + 20, "{}", s.len());
    assert!(s.ends_with("more"), "{s}");
    assert!(s.starts_with("spec.hosts[0]: is not a valid host name; spec.hosts[1]"));
}

#[test]
fn inputs_of_any_kind_have_keys() {
    // Guard for the feed helper above: an unreadable input still has its object key.
    let i = input_from_json(
        SourceKind::Gateway,
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "g", "namespace": "shop"}, "spec": {"nope": 1}}),
    );
    assert!(matches!(i, Input::Unreadable(_)));
    assert_eq!(i.key().to_string(), "Gateway/shop/g");
}
