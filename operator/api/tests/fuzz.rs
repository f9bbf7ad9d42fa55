//! No input makes the loader or the validator panic: random text, random
//! JSON under every kind, and random mutations of the valid corpus.

use proptest::prelude::*;
use serde_json::{Value, json};
use trellis_api::load::load_value;
use trellis_api::validate::check_source;
use trellis_api::{Resource, validate};

const KINDS: &[(&str, &str)] = &[
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1beta1", "DestinationRule"),
    ("networking.istio.io/v1alpha3", "Gateway"),
    ("networking.istio.io/v1", "ServiceEntry"),
    ("networking.istio.io/v1", "Sidecar"),
    ("networking.istio.io/v1", "WorkloadEntry"),
    ("security.istio.io/v1", "PeerAuthentication"),
    ("security.istio.io/v1beta1", "RequestAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("mesh.trellis.dev/v1alpha1", "MeshConfig"),
    ("mesh.trellis.dev/v1alpha1", "MeshStatus"),
    ("v1", "Service"),
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        "[a-zA-Z0-9*./:_ -]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "5s",
            "1h30m",
            "0",
            "-1s",
            "1.5.5s",
            "*",
            "*.a.com",
            "10.0.0.0/8",
            "a/ns/b/sa/c",
            "(",
            "ISTIO_MUTUAL",
            "STRICT",
            "65536",
            "",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop::sample::select(vec![
            "hosts",
            "http",
            "route",
            "destination",
            "host",
            "weight",
            "match",
            "uri",
            "exact",
            "regex",
            "timeout",
            "retries",
            "perTryTimeout",
            "subsets",
            "name",
            "labels",
            "trafficPolicy",
            "tls",
            "mode",
            "servers",
            "port",
            "number",
            "selector",
            "matchLabels",
            "portLevelMtls",
            "jwtRules",
            "issuer",
            "rules",
            "from",
            "source",
            "principals",
            "when",
            "key",
            "values",
            "ports",
            "endpoints",
            "address",
            "egress",
            "mtls",
            "action",
            "spec",
            "metadata",
            "unknownField",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.prop_map(str::to_owned), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn corpus_documents() -> Vec<Value> {
    use serde::Deserialize;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/istio");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(d).unwrap();
            if !v.is_null() {
                docs.push(serde_json::to_value(v).unwrap());
            }
        }
    }
    docs
}

/// Replaces the node reached by following `steps` (indices into keys or
/// elements, taken modulo their count) with `replacement`.
fn mutate(doc: &mut Value, steps: &[usize], replacement: Value) {
    let Some((step, rest)) = steps.split_first() else {
        *doc = replacement;
        return;
    };
    match doc {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).unwrap().clone();
            mutate(map.get_mut(&key).unwrap(), rest, replacement);
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[step % len], rest, replacement);
        }
        _ => *doc = replacement,
    }
}

fn exercise(value: Value) {
    if let Ok(resource) = load_value(value) {
        let _ = validate(&resource);
        let _ = resource.to_json();
        let _: &Resource = &resource;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "(?s)[ -~\n\t\u{b5}\u{3bc}]{0,200}") {
        let _ = check_source("fuzz.yaml", &text);
    }

    #[test]
    fn yaml_shaped_text_never_panics(
        lines in prop::collection::vec(
            "(apiVersion: networking.istio.io/v1|kind: VirtualService|---|spec:|  hosts: \\[a\\]|  http:|  - route: \\[\\{destination: \\{host: a\\}, weight: [0-9]{1,4}\\}\\]|metadata: \\{name: [a-z]{1,5}\\}|  timeout: [0-9.]{1,4}[a-z]{0,2}|[ a-z:\\[\\]{},-]{0,20})",
            0..20,
        )
    ) {
        let _ = check_source("fuzz.yaml", &lines.join("\n"));
    }

    #[test]
    fn random_json_under_every_kind_never_panics(
        kind in prop::sample::select(KINDS.to_vec()),
        spec in json_value(),
        metadata in json_value(),
    ) {
        exercise(json!({"apiVersion": kind.0, "kind": kind.1, "metadata": metadata, "spec": spec}));
        exercise(json!({"apiVersion": kind.0, "kind": kind.1, "metadata": {"name": "x"}, "spec": spec}));
    }

    #[test]
    fn mutated_corpus_documents_never_panic(
        index in any::<usize>(),
        steps in prop::collection::vec(any::<usize>(), 1..8),
        replacement in json_value(),
    ) {
        let docs = corpus_documents();
        let mut doc = docs[index % docs.len()].clone();
        mutate(&mut doc, &steps, replacement);
        exercise(doc);
    }
}
