//! The translation's findings about mesh objects (unknown subsets, unknown
//! hosts, conflicting hosts, gateway bindings...), found by building the outbound
//! view of every namespace that has workloads or configuration and translating
//! every gateway workload, plus the `credentialName`s those gateways cannot be
//! served. Pure.
use std::collections::{BTreeMap, BTreeSet};

use trellis_api::ObjectRef;
use trellis_model::{MeshModel, Workload};
use trellis_sources::credentials::{self, Credentials};
use trellis_translate::credential_uses::{credential_findings, destination_rule_applies};
use trellis_translate::destination_rule::credential_names;
use trellis_translate::{Proxy, SecretRef, TranslateError, TranslateOptions, Translator};

/// Findings per mesh object, each reported once.
pub fn analyze(
    model: &MeshModel,
    credentials: &Credentials,
    config_namespaces: impl IntoIterator<Item = String>,
) -> BTreeMap<ObjectRef, Vec<TranslateError>> {
    let mut namespaces: BTreeSet<String> = config_namespaces.into_iter().collect();
    namespaces.extend(model.workloads().map(|w| w.namespace.clone()));
    let mut translator = Translator::new(model, TranslateOptions::default());
    let mut found: BTreeSet<TranslateError> = BTreeSet::new();
    for ns in &namespaces {
        found.extend(translator.scope(ns).errors.iter().cloned());
    }
    // Gateway bindings are checked by translating the workloads that run a
    // gateway; credentials and Sidecar listeners by translating the proxies
    // that use them.
    for w in model.workloads() {
        if !model.gateways_for(w).is_empty() {
            let proxy = Proxy::gateway(&w.namespace, &w.name);
            let out = translator.translate(&proxy);
            found.extend(out.errors);
            found.extend(missing_credentials(
                model,
                w,
                true,
                &out.secrets,
                credentials,
            ));
        }
        let selected = model.destination_rules().any(|dr| {
            destination_rule_applies(dr, w, false) && !credential_names(&dr.object).is_empty()
        });
        // A Sidecar resource's listeners are read per workload it selects.
        let listeners = model.sidecar_for(w).is_some_and(|sc| {
            let spec = &sc.object.spec;
            !spec.ingress.is_empty() || spec.egress.iter().any(|e| e.capture_mode.is_some())
        });
        if selected || listeners {
            let out = translator.translate(&Proxy::sidecar(&w.namespace, &w.name));
            found.extend(missing_credentials(
                model,
                w,
                false,
                &out.secrets,
                credentials,
            ));
            found.extend(out.errors.into_iter().filter(|e| e.kind == "Sidecar"));
        }
    }
    let mut out: BTreeMap<ObjectRef, Vec<TranslateError>> = BTreeMap::new();
    for e in found {
        let key = ObjectRef {
            kind: e.kind.clone(),
            namespace: Some(e.namespace.clone()),
            name: e.name.clone(),
        };
        out.entry(key).or_default().push(e);
    }
    out
}

/// A finding on every Gateway server and DestinationRule that names a
/// `credentialName` proxy `w` (a gateway when `gateway`) references and its
/// namespace cannot serve (no such Secret, or not what the use needs): the
/// listener or cluster that needs it would wait for it.
fn missing_credentials(
    model: &MeshModel,
    w: &Workload,
    gateway: bool,
    secrets: &[SecretRef],
    credentials: &Credentials,
) -> Vec<TranslateError> {
    let mut out = Vec::new();
    for secret in secrets {
        let SecretRef::Credential { namespace, name } = secret else {
            continue;
        };
        if let Err(reason) = credentials::sds_secret(credentials, namespace, name, "") {
            out.extend(credential_findings(model, w, gateway, name, &reason));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use trellis_sources::{Change, Input, MeshFeed, SourceKind, input_from_json};

    /// Gateway workload `edge/ingress-1` (label `istio: ingressgateway`) and
    /// Gateway `edge/public` selecting it, with `servers`.
    fn edge_gateway(feed: &mut MeshFeed, servers: serde_json::Value) {
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "ingress-1", "namespace": "edge", "labels": {"istio": "ingressgateway"}},
            "spec": {"containers": [{"name": "istio-proxy"}]},
            "status": {"podIP": "10.0.0.20"}
        }))
        .unwrap();
        feed.apply(Change::Apply(Input::Pod(Box::new(pod))));
        feed.apply(Change::Apply(input_from_json(
            SourceKind::Gateway,
            json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                   "metadata": {"name": "public", "namespace": "edge"},
                   "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers}}),
        )));
    }

    /// Service `shop/cart`, HTTP port 8080.
    fn cart_service(feed: &mut MeshFeed) {
        let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 8080}]}
        }))
        .unwrap();
        feed.apply(Change::Apply(Input::Resource(Box::new(
            trellis_api::Resource::Service(service),
        ))));
    }

    #[test]
    fn an_unknown_subset_is_found_once_and_attributed_to_its_virtual_service() {
        let mut feed = MeshFeed::new(Default::default());
        cart_service(&mut feed);
        for ns in ["shop", "web"] {
            let pod = serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": ns, "labels": {"app": "cart"}},
                "spec": {"containers": [{"name": "app"}]},
                "status": {"podIP": "10.0.0.9"}
            }))
            .unwrap();
            feed.apply(Change::Apply(Input::Pod(Box::new(pod))));
        }
        feed.apply(Change::Apply(input_from_json(
            SourceKind::VirtualService,
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "r", "namespace": "shop"},
                   "spec": {"hosts": ["cart"], "http": [{"route": [
                       {"destination": {"host": "cart", "subset": "v2"}}]}]}}),
        )));
        let found = analyze(feed.model(), &Default::default(), ["shop".to_string()]);
        let key = ObjectRef {
            kind: "VirtualService".into(),
            namespace: Some("shop".into()),
            name: "r".into(),
        };
        let errors = found.get(&key).expect("finding for the VirtualService");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].code, trellis_translate::ErrorCode::UnknownSubset);
        assert_eq!(errors[0].path, "spec.http[0].route[0].destination");
    }

    /// Delegation findings reach the objects they concern: the delegate
    /// rule outside the root's match, and a delegate nothing names.
    #[test]
    fn delegation_findings_are_attributed_to_the_delegates() {
        let mut feed = MeshFeed::new(Default::default());
        cart_service(&mut feed);
        let vs = |value: serde_json::Value| {
            Change::Apply(input_from_json(SourceKind::VirtualService, value))
        };
        feed.apply(vs(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "root", "namespace": "shop"},
            "spec": {"hosts": ["cart"], "http": [
                {"match": [{"uri": {"prefix": "/team"}}], "delegate": {"name": "team", "namespace": "team"}},
                {"route": [{"destination": {"host": "cart"}}]}]}})));
        feed.apply(vs(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "team", "namespace": "team"},
            "spec": {"http": [
                {"match": [{"uri": {"prefix": "/other"}}],
                 "route": [{"destination": {"host": "cart.shop.svc.cluster.local"}}]}]}}),
        ));
        feed.apply(vs(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "orphan", "namespace": "team"},
            "spec": {"http": [{"route": [{"destination": {"host": "cart.shop.svc.cluster.local"}}]}]}})));
        let found = analyze(
            feed.model(),
            &Default::default(),
            ["shop".into(), "team".into()],
        );
        let codes = |name: &str| -> Vec<(trellis_translate::ErrorCode, String)> {
            let key = ObjectRef {
                kind: "VirtualService".into(),
                namespace: Some("team".into()),
                name: name.into(),
            };
            let errors = found.get(&key).map(Vec::as_slice).unwrap_or_default();
            errors.iter().map(|e| (e.code, e.path.clone())).collect()
        };
        use trellis_translate::ErrorCode::{DelegateConflict, UnusedDelegate};
        assert_eq!(
            codes("team"),
            vec![(DelegateConflict, "spec.http[0].match".into())]
        );
        assert_eq!(codes("orphan"), vec![(UnusedDelegate, "spec.hosts".into())]);
    }

    #[test]
    fn a_virtual_service_binding_a_missing_gateway_is_found_through_the_gateway_workload() {
        let mut feed = MeshFeed::new(Default::default());
        edge_gateway(
            &mut feed,
            json!([{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["shop.example.com"]}]),
        );
        feed.apply(Change::Apply(input_from_json(
            SourceKind::VirtualService,
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "web", "namespace": "edge"},
                   "spec": {"hosts": ["other.example.com"], "gateways": ["public"],
                            "http": [{"route": [{"destination": {"host": "web.shop.svc.cluster.local"}}]}]}}),
        )));
        let found = analyze(feed.model(), &Default::default(), ["edge".to_string()]);
        let key = ObjectRef {
            kind: "VirtualService".into(),
            namespace: Some("edge".into()),
            name: "web".into(),
        };
        let errors = found.get(&key).expect("a finding for the VirtualService");
        assert!(
            errors
                .iter()
                .any(|e| e.code == trellis_translate::ErrorCode::HostNotServedByGateway),
            "{errors:?}"
        );
    }

    /// A `credentialName` the gateway's namespace cannot serve is found on the
    /// Gateway server naming it, until a Secret with a certificate and key comes.
    #[test]
    fn a_credential_the_gateway_cannot_be_served_is_found_on_its_server() {
        let mut feed = MeshFeed::new(Default::default());
        edge_gateway(
            &mut feed,
            json!([
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
                {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
                 "tls": {"mode": "SIMPLE", "credentialName": "web-tls"}}]),
        );
        let key = ObjectRef {
            kind: "Gateway".into(),
            namespace: Some("edge".into()),
            name: "public".into(),
        };
        let findings = |feed: &MeshFeed| {
            let view = feed.view(true);
            analyze(&view.model, &view.credentials, ["edge".to_string()])
                .remove(&key)
                .unwrap_or_default()
        };
        let errors = findings(&feed);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].code,
            trellis_translate::ErrorCode::MissingCredential
        );
        assert_eq!(errors[0].path, "spec.servers[1].tls.credentialName");
        assert!(
            errors[0].message.contains("edge/web-tls"),
            "{}",
            errors[0].message
        );
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": "web-tls", "namespace": "edge"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Q0VSVA==", "tls.key": "S0VZ"}
        }))
        .unwrap();
        feed.apply(Change::Apply(trellis_sources::secret_input(&secret)));
        assert!(findings(&feed).is_empty());
    }

    /// A DestinationRule's `credentialName` is found on the rule when a proxy
    /// it applies to cannot be served it: the gateway for a rule without
    /// selector (needing the client certificate and the CA), the sidecars a
    /// selector picks; never the sidecars it does not apply to.
    #[test]
    fn a_credential_a_destination_rule_names_is_found_on_the_rule() {
        let mut feed = MeshFeed::new(Default::default());
        edge_gateway(
            &mut feed,
            json!([{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]),
        );
        let entry = json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "api", "namespace": "edge"},
            "spec": {"hosts": ["api.example.com"], "resolution": "DNS",
                     "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}});
        feed.apply(Change::Apply(input_from_json(
            SourceKind::ServiceEntry,
            entry,
        )));
        let rule = |name: &str, selector: Option<serde_json::Value>| {
            let mut spec = json!({"host": "api.example.com",
                "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": name}}});
            if let Some(s) = selector {
                spec["workloadSelector"] = json!({"matchLabels": s});
            }
            input_from_json(
                SourceKind::DestinationRule,
                json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                       "metadata": {"name": name, "namespace": "edge"}, "spec": spec}),
            )
        };
        feed.apply(Change::Apply(rule("api-client", None)));
        let findings = |feed: &MeshFeed, name: &str| {
            let view = feed.view(true);
            let key = ObjectRef {
                kind: "DestinationRule".into(),
                namespace: Some("edge".into()),
                name: name.into(),
            };
            analyze(&view.model, &view.credentials, ["edge".to_string()])
                .remove(&key)
                .unwrap_or_default()
        };
        let errors = findings(&feed, "api-client");
        let found: Vec<(&str, bool)> = (errors.iter())
            .map(|e| {
                (
                    e.path.as_str(),
                    e.message.starts_with("gateway edge/ingress-1 "),
                )
            })
            .collect();
        // the certificate and the CA, both missing
        assert_eq!(
            found,
            [("spec.trafficPolicy.tls.credentialName", true); 2],
            "{errors:?}"
        );
        let secret = |name: &str, data: serde_json::Value| {
            let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "edge"}, "data": data}),
            )
            .unwrap();
            Change::Apply(trellis_sources::secret_input(&secret))
        };
        feed.apply(secret(
            "api-client",
            json!({"cert": "Q0VSVA==", "key": "S0VZ"}),
        ));
        let errors = findings(&feed, "api-client");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("no client CA"), "{errors:?}");
        feed.apply(secret("api-client-cacert", json!({"cacert": "Q0E="})));
        assert!(findings(&feed, "api-client").is_empty());

        // a sidecar the selector picks; the gateway is not picked
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "edge", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"podIP": "10.0.0.21"}
        }))
        .unwrap();
        feed.apply(Change::Apply(Input::Pod(Box::new(pod))));
        feed.apply(Change::Apply(rule(
            "web-client",
            Some(json!({"app": "web"})),
        )));
        let errors = findings(&feed, "web-client");
        assert!(!errors.is_empty());
        assert!(
            errors
                .iter()
                .all(|e| e.message.starts_with("sidecar edge/web-1 ")),
            "{errors:?}"
        );
    }

    /// What a Sidecar resource's listeners ask for and Trellis does not do is
    /// found on the Sidecar, through a workload it selects.
    #[test]
    fn unsupported_sidecar_listener_fields_are_found_on_the_sidecar() {
        let mut feed = MeshFeed::new(Default::default());
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "pay-1", "namespace": "shop", "labels": {"app": "pay"}},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"podIP": "10.0.0.31"}
        }))
        .unwrap();
        feed.apply(Change::Apply(Input::Pod(Box::new(pod))));
        feed.apply(Change::Apply(input_from_json(
            SourceKind::Sidecar,
            json!({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
                   "metadata": {"name": "pay", "namespace": "shop"},
                   "spec": {"workloadSelector": {"labels": {"app": "pay"}},
                            "ingress": [{"port": {"number": 8443, "protocol": "HTTPS", "name": "https"},
                                         "tls": {"mode": "SIMPLE", "credentialName": "pay-cert"}}]}}),
        )));
        let found = analyze(feed.model(), &Default::default(), ["shop".to_string()]);
        let key = ObjectRef {
            kind: "Sidecar".into(),
            namespace: Some("shop".into()),
            name: "pay".into(),
        };
        let errors = found.get(&key).expect("a finding for the Sidecar");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.ingress[0].tls"]);
    }
}
