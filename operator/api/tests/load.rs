//! Loader behaviour: kinds, versions, unknown fields and error locations.

use trellis_api::{Error, Resource, load, load_all};

const VS: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  ports: [{port: 9080, name: http}]
"#;

#[test]
fn loads_old_versions_and_core_kinds() {
    let resources = load("vs.yaml", VS).unwrap();
    assert_eq!(resources.len(), 2);
    let Resource::VirtualService(vs) = &resources[0] else {
        panic!("expected a VirtualService, got {:?}", resources[0].kind())
    };
    assert_eq!(vs.spec.http[0].route[1].weight, Some(10));
    assert_eq!(
        resources[0].object_ref().to_string(),
        "VirtualService/shop/reviews"
    );
    assert_eq!(resources[1].kind(), "Service");
}

#[test]
fn unknown_field_names_object_and_path() {
    let text = VS.replace("weight: 10", "weight: 10\n      mirrorz: true");
    let (ok, errors) = load_all("vs.yaml", &text);
    assert_eq!(ok.len(), 1);
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.document, 1);
    assert_eq!(e.path, "spec.http[0].route[1].mirrorz");
    assert!(
        e.message.contains("unknown field `mirrorz`"),
        "{}",
        e.message
    );
    assert!(
        e.to_string()
            .starts_with("VirtualService/shop/reviews: spec.http[0].route[1].mirrorz: ")
    );
}

#[test]
fn unknown_kind_and_version_are_errors() {
    let text = "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: a}\n---\napiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: b}\n";
    let Err(Error::Load(errors)) = load("x.yaml", text) else {
        panic!("expected load errors")
    };
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("VirtualService/default/a: apiVersion: unsupported version \"v2\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("EnvoyFilter/default/b: kind: unsupported kind"),
        "{}",
        lines[1]
    );
}
