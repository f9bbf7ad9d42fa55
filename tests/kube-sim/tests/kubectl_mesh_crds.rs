//! Trellis' generated CRDs (`crds/`, installed with kustomize) and the realistic Istio corpus
//! (`examples/istio/`) through the real kubectl: every example passes the API server's strict
//! field validation, printer columns and short names are as listed, older versions are served,
//! status is a subresource, and an unsupported field is rejected.

mod common;

use kube_sim::{Kubectl, TestServer};
use std::path::PathBuf;

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect()
}

const NAMESPACES: &str = "apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
- {apiVersion: v1, kind: Namespace, metadata: {name: istio-system}}
- {apiVersion: v1, kind: Namespace, metadata: {name: trellis-system}}
- {apiVersion: v1, kind: Namespace, metadata: {name: vault}}
";

const UNSUPPORTED: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: shop}
spec:
  hosts: [legacy]
  http:
  - match: [{uri: {prefix: /reviews}}]
    timeoutMs: 500
    route: [{destination: {host: reviews}}]
";

#[test]
fn generated_crds_accept_the_corpus_and_reject_unsupported_fields() {
    let server = TestServer::start().expect("server starts");
    let k = Kubectl::new(server.kubeconfig_path());

    let out = k.run(&["apply", "-k", &repo("crds")]);
    assert_eq!(
        out.matches("customresourcedefinition.apiextensions.k8s.io/")
            .count(),
        11,
        "{out}"
    );
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=10s",
    ]);
    k.apply(NAMESPACES);

    // Every example, under kubectl's default strict field validation.
    let out = k.run(&["apply", "-f", &repo("examples/istio")]);
    assert!(
        out.contains("virtualservice.networking.istio.io/reviews created"),
        "{out}"
    );
    assert!(
        out.contains("meshconfig.mesh.trellis.dev/default created"),
        "{out}"
    );

    // Short names and printer columns.
    let names = k.run(&["get", "vs,dr,gw,se,pa,ra,ap", "-n", "shop", "-o", "name"]);
    for kind in [
        "virtualservice.networking.istio.io/",
        "destinationrule.networking.istio.io/",
        "gateway.networking.istio.io/",
        "serviceentry.networking.istio.io/",
        "peerauthentication.security.istio.io/",
        "requestauthentication.security.istio.io/",
        "authorizationpolicy.security.istio.io/",
    ] {
        assert!(names.contains(kind), "{kind} in {names}");
    }
    let vs = k.run(&["get", "vs", "-n", "shop"]);
    assert_eq!(header(&vs), ["NAME", "GATEWAYS", "HOSTS", "AGE"], "{vs}");
    let reviews = vs
        .lines()
        .find(|l| l.starts_with("reviews "))
        .unwrap_or_else(|| panic!("{vs}"));
    assert!(
        reviews.contains(r#"["mesh","shop/shop-gateway"]"#)
            && reviews.contains(r#"["reviews","reviews.shop.svc.cluster.local"]"#),
        "{reviews}"
    );
    assert_eq!(
        header(&k.run(&["get", "dr", "-n", "shop"])),
        ["NAME", "HOST", "AGE"]
    );
    assert_eq!(header(&k.run(&["get", "gw", "-A"]))[1..], ["NAME", "AGE"]);
    assert_eq!(
        header(&k.run(&["get", "ap", "-n", "shop"])),
        ["NAME", "ACTION", "AGE"]
    );
    assert_eq!(
        header(&k.run(&["get", "pa", "-A"]))[1..],
        ["NAME", "MODE", "AGE"]
    );
    assert_eq!(
        header(&k.run(&["get", "ms", "-A"]))[1..],
        [
            "NAME",
            "READY",
            "PROXIES",
            "WORKLOADS",
            "IDENTITIES",
            "EXPIRING",
            "ERRORS",
            "AGE"
        ]
    );

    // The schema is published in OpenAPI v3, so kubectl explain reads it.
    let explained = k.run(&["explain", "virtualservice.spec.http.retries.attempts"]);
    assert!(
        explained.contains("KIND:       VirtualService")
            && explained.contains("FIELD: attempts <integer>"),
        "{explained}"
    );

    // The older versions are served with the same schema; v1 is what is stored.
    let old = k.run(&[
        "get",
        "virtualservices.v1alpha3.networking.istio.io",
        "ratings",
        "-n",
        "shop",
        "-o",
        "jsonpath={.apiVersion} {.spec.hosts[0]}",
    ]);
    assert_eq!(old, "networking.istio.io/v1alpha3 ratings");
    let stored = k.run(&[
        "get",
        "crd",
        "virtualservices.networking.istio.io",
        "-o",
        "jsonpath={.status.storedVersions}",
    ]);
    assert_eq!(stored, r#"["v1"]"#);

    // Status is a subresource: written there, ignored on the main resource.
    k.run(&[
        "patch",
        "vs",
        "reviews",
        "-n",
        "shop",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"observedGeneration":1}}"#,
    ]);
    assert_eq!(
        k.run(&[
            "get",
            "vs",
            "reviews",
            "-n",
            "shop",
            "-o",
            "jsonpath={.status.observedGeneration}"
        ]),
        "1"
    );

    // A field outside the supported set is rejected by strict validation, not dropped.
    let err = common::fails(&k, &["apply", "-f", "-"], Some(UNSUPPORTED));
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.http[0].timeoutMs""#),
        "{err}"
    );
}
