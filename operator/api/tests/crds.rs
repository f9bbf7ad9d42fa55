//! The generated CRDs: committed copy up to date, structural schemas,
//! versions, subresources, printer columns and short names.

use std::collections::BTreeMap;
use std::path::Path;
use trellis_api::crd::{crds, render_files, structural};

fn committed_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds"))
}

#[test]
fn committed_crds_match_the_types() {
    let expected: BTreeMap<String, String> = render_files().unwrap().into_iter().collect();
    let mut actual = BTreeMap::new();
    for entry in std::fs::read_dir(committed_dir()).expect("crds/ exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        actual.insert(name, std::fs::read_to_string(&path).unwrap());
    }
    let stale: Vec<&String> = expected
        .keys()
        .chain(actual.keys())
        .filter(|name| expected.get(*name) != actual.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "crds/ is stale ({stale:?} differ); run `make crds` and commit the result"
    );
}

#[test]
fn every_schema_is_structural() {
    for crd in crds() {
        for version in &crd.spec.versions {
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .unwrap_or_else(|| {
                    panic!("{} {} has no schema", crd.spec.names.kind, version.name)
                });
            let value = serde_json::to_value(schema).unwrap();
            let violations = structural::violations(&value);
            assert!(
                violations.is_empty(),
                "{} {}: {violations:#?}",
                crd.spec.names.kind,
                version.name
            );
        }
    }
}

#[test]
fn the_structural_check_catches_violations() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "both": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            "junctor": {"type": "object", "oneOf": [{"type": "string", "description": "x"}]},
            "pattern": {"type": "object", "patternProperties": {"^a$": {"type": "string"}}},
            "list": {"type": "array"},
            "ios": {"x-kubernetes-int-or-string": true}
        }
    });
    let violations = structural::violations(&bad);
    for expected in [
        ".untyped: type is required",
        ".both: properties and additionalProperties are mutually exclusive",
        ".junctor.oneOf[0]: type is not allowed inside",
        ".junctor.oneOf[0]: description is not allowed inside",
        ".pattern: patternProperties is not allowed",
        ".list: arrays need items",
    ] {
        assert!(
            violations.iter().any(|v| v.starts_with(expected)),
            "missing {expected:?} in {violations:#?}"
        );
    }
    assert_eq!(violations.len(), 6, "{violations:#?}");
}

fn columns(kind: &str) -> Vec<String> {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| format!("{}={}", c.name, c.json_path))
        .collect()
}

#[test]
fn versions_scope_and_status_subresource() {
    let mut seen = Vec::new();
    for crd in crds() {
        let kind = crd.spec.names.kind.clone();
        let versions: Vec<(&str, bool, bool)> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage))
            .collect();
        let expected: Vec<(&str, bool, bool)> = match crd.spec.group.as_str() {
            "networking.istio.io" => {
                vec![
                    ("v1", true, true),
                    ("v1beta1", true, false),
                    ("v1alpha3", true, false),
                ]
            }
            "security.istio.io" => vec![("v1", true, true), ("v1beta1", true, false)],
            "mesh.trellis.dev" => vec![("v1alpha1", true, true)],
            other => panic!("unexpected group {other}"),
        };
        assert_eq!(versions, expected, "{kind}");
        for v in &crd.spec.versions {
            assert!(
                v.subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                "{kind} {} lacks the status subresource",
                v.name
            );
            assert_eq!(
                v.schema, crd.spec.versions[0].schema,
                "{kind} {} schema",
                v.name
            );
        }
        let scope = if kind == "MeshConfig" {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(crd.spec.scope, scope, "{kind}");
        seen.push(kind);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "AuthorizationPolicy",
            "DestinationRule",
            "Gateway",
            "MeshConfig",
            "MeshStatus",
            "PeerAuthentication",
            "RequestAuthentication",
            "ServiceEntry",
            "Sidecar",
            "VirtualService",
            "WorkloadEntry"
        ]
    );
}

#[test]
fn printer_columns_and_short_names() {
    let age = "Age=.metadata.creationTimestamp";
    assert_eq!(
        columns("VirtualService"),
        ["Gateways=.spec.gateways", "Hosts=.spec.hosts", age]
    );
    assert_eq!(columns("DestinationRule"), ["Host=.spec.host", age]);
    assert_eq!(columns("Gateway"), [age]);
    assert_eq!(columns("AuthorizationPolicy"), ["Action=.spec.action", age]);
    assert_eq!(columns("PeerAuthentication"), ["Mode=.spec.mtls.mode", age]);
    assert_eq!(
        columns("MeshStatus"),
        [
            "Ready=.status.ready",
            "Proxies=.status.proxies",
            "Workloads=.status.workloads",
            "Identities=.status.identities",
            "Expiring=.status.expiring",
            "Errors=.status.errors",
            age
        ]
    );
    let short: BTreeMap<String, Vec<String>> = crds()
        .into_iter()
        .map(|c| {
            (
                c.spec.names.kind,
                c.spec.names.short_names.unwrap_or_default(),
            )
        })
        .collect();
    for (kind, name) in [
        ("VirtualService", "vs"),
        ("DestinationRule", "dr"),
        ("Gateway", "gw"),
        ("ServiceEntry", "se"),
        ("PeerAuthentication", "pa"),
        ("RequestAuthentication", "ra"),
        ("AuthorizationPolicy", "ap"),
        ("MeshStatus", "ms"),
    ] {
        assert_eq!(short[kind], [name], "{kind}");
    }
}
