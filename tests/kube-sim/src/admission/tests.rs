use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::matching::{label_selector_matches, webhook_matches};
use super::*;
use crate::patch::merge::tests::arb_json;

/// A CA and a serving certificate for 127.0.0.1 and `hook.default.svc`.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["hook.default.svc".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    }
}

type Handler = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A webhook server on 127.0.0.1; aborted when dropped.
struct Hook {
    address: SocketAddr,
    calls: Arc<AtomicUsize>,
    ca_bundle: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_hook(handler: Handler, delay: Duration) -> Hook {
    let pki = pki();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.cert], pki.key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, handler, counter) = (acceptor.clone(), handler.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (handler, counter) = (handler.clone(), counter.clone());
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = req.into_body().collect().await?.to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        tokio::time::sleep(delay).await;
                        let mut response = handler(&review);
                        response["uid"] = review["request"]["uid"].clone();
                        let reply = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                            reply.to_string(),
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Hook {
        address,
        calls,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(pki.ca_pem),
        task,
    }
}

fn no_services() -> ServiceResolver {
    Arc::new(|_: &str, _: &str, _: u16| None)
}

fn config(kind: &str, name: &str, webhooks: Vec<Value>) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "webhooks": webhooks})
}

fn webhook(name: &str, hook: &Hook, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {"url": format!("https://127.0.0.1:{}/hook", hook.address.port()), "caBundle": hook.ca_bundle},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None", "admissionReviewVersions": ["v1"],
    });
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

fn create_configmap(labels: Value) -> AdmissionRequest {
    AdmissionRequest {
        operation: Operation::Create,
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
        subresource: String::new(),
        kind: "ConfigMap".into(),
        name: "c".into(),
        namespace: "default".into(),
        namespace_labels: BTreeMap::from([("env".to_string(), "test".to_string())]),
        object: Some(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default", "labels": labels}}),
        ),
        old_object: None,
        user: UserInfo {
            username: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        },
        dry_run: false,
    }
}

#[tokio::test]
async fn denial_is_worded_like_the_api_server() {
    let hook = start_hook(
        Arc::new(|review: &Value| {
            assert_eq!(review["request"]["operation"], "CREATE");
            assert_eq!(review["request"]["userInfo"]["username"], "admin");
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "configmaps are frozen"}})
        }),
        Duration::ZERO,
    )
    .await;
    let validating = [config(
        "ValidatingWebhookConfiguration",
        "deny",
        vec![webhook("deny.example.com", &hook, json!({}))],
    )];
    let err = admit(
        &[],
        &validating,
        &create_configmap(json!({})),
        &no_services(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "admission webhook \"deny.example.com\" denied the request: configmaps are frozen"
    );
    assert_eq!(hook.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn mutations_apply_in_order_before_validation() {
    let patch = base64::engine::general_purpose::STANDARD.encode(
        json!([{"op": "add", "path": "/metadata/labels/injected", "value": "yes"}]).to_string(),
    );
    let mutator = start_hook(
        Arc::new(
            move |_: &Value| json!({"allowed": true, "patchType": "JSONPatch", "patch": patch}),
        ),
        Duration::ZERO,
    )
    .await;
    let validator = start_hook(
        Arc::new(|review: &Value| {
            let injected = review["request"]["object"]["metadata"]["labels"]["injected"] == "yes";
            json!({"allowed": injected, "status": {"message": "not injected"}})
        }),
        Duration::ZERO,
    )
    .await;
    let mutating = [config(
        "MutatingWebhookConfiguration",
        "inject",
        vec![webhook("inject.example.com", &mutator, json!({}))],
    )];
    let validating = [config(
        "ValidatingWebhookConfiguration",
        "check",
        vec![webhook("check.example.com", &validator, json!({}))],
    )];
    let admitted = admit(
        &mutating,
        &validating,
        &create_configmap(json!({"app": "web"})),
        &no_services(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        admitted["metadata"]["labels"],
        json!({"app": "web", "injected": "yes"})
    );
    // Without the mutator the validator denies, without a message code: 400.
    let err = admit(
        &[],
        &validating,
        &create_configmap(json!({})),
        &no_services(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "admission webhook \"check.example.com\" denied the request: not injected"
    );
}

#[tokio::test]
async fn untrusted_server_fails_closed_or_is_ignored() {
    let hook = start_hook(
        Arc::new(|_: &Value| json!({"allowed": true})),
        Duration::ZERO,
    )
    .await;
    let other_ca = base64::engine::general_purpose::STANDARD.encode(pki().ca_pem);
    let mut w = webhook("strict.example.com", &hook, json!({}));
    w["clientConfig"]["caBundle"] = json!(other_ca);
    let err = admit(
        &[],
        &[config(
            "ValidatingWebhookConfiguration",
            "v",
            vec![w.clone()],
        )],
        &create_configmap(json!({})),
        &no_services(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 500);
    assert!(err.message.starts_with("Internal error occurred: failed calling webhook \"strict.example.com\": failed to call webhook: Post \"https://127.0.0.1:"), "{}", err.message);
    w["failurePolicy"] = json!("Ignore");
    let admitted = admit(
        &[],
        &[config("ValidatingWebhookConfiguration", "v", vec![w])],
        &create_configmap(json!({"a": "b"})),
        &no_services(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(admitted["metadata"]["labels"]["a"], "b");
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        0,
        "the TLS handshake failed before any request"
    );
}

#[tokio::test]
async fn service_reference_goes_through_the_resolver_and_times_out() {
    let hook = start_hook(
        Arc::new(|_: &Value| json!({"allowed": true})),
        Duration::from_secs(3),
    )
    .await;
    let address = hook.address;
    let resolver: ServiceResolver = Arc::new(move |ns: &str, name: &str, port: u16| {
        (ns == "default" && name == "hook" && port == 8443).then_some(address)
    });
    let w = webhook(
        "slow.example.com",
        &hook,
        json!({
            "clientConfig": {"service": {"namespace": "default", "name": "hook", "port": 8443, "path": "/v"}, "caBundle": hook.ca_bundle},
            "timeoutSeconds": 1,
        }),
    );
    let err = admit(
        &[],
        &[config("ValidatingWebhookConfiguration", "v", vec![w])],
        &create_configmap(json!({})),
        &resolver,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.message,
        "Internal error occurred: failed calling webhook \"slow.example.com\": failed to call webhook: Post \"https://hook.default.svc:8443/v?timeout=1s\": context deadline exceeded"
    );
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        1,
        "the service name verified against the cert"
    );
}

#[tokio::test]
async fn non_matching_webhooks_are_not_called() {
    let hook = start_hook(
        Arc::new(|_: &Value| json!({"allowed": false})),
        Duration::ZERO,
    )
    .await;
    let webhooks = vec![
        webhook(
            "other-resource",
            &hook,
            json!({"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["secrets"]}]}),
        ),
        webhook(
            "delete-only",
            &hook,
            json!({"rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"]}]}),
        ),
        webhook(
            "cluster-scope",
            &hook,
            json!({"rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}]}),
        ),
        webhook(
            "ns-selector",
            &hook,
            json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["test"]}]}}),
        ),
        webhook(
            "obj-selector",
            &hook,
            json!({"objectSelector": {"matchLabels": {"app": "db"}}}),
        ),
    ];
    let admitted = admit(
        &[],
        &[config("ValidatingWebhookConfiguration", "v", webhooks)],
        &create_configmap(json!({"app": "web"})),
        &no_services(),
    )
    .await;
    assert!(admitted.is_ok(), "{admitted:?}");
    assert_eq!(hook.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn rule_and_selector_matching() {
    let request = create_configmap(json!({"app": "web"}));
    let rule = |resources: Value, scope: &str| json!({"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": resources, "scope": scope}]});
    assert!(webhook_matches(&rule(json!(["*"]), "*"), &request));
    assert!(webhook_matches(
        &rule(json!(["configmaps"]), "Namespaced"),
        &request
    ));
    assert!(!webhook_matches(
        &rule(json!(["configmaps"]), "Cluster"),
        &request
    ));
    assert!(!webhook_matches(&rule(json!(["*/status"]), "*"), &request));
    let mut status = request.clone();
    status.subresource = "status".into();
    assert!(webhook_matches(&rule(json!(["*/*"]), "*"), &status));
    assert!(webhook_matches(
        &rule(json!(["configmaps/status"]), "*"),
        &status
    ));
    assert!(!webhook_matches(&rule(json!(["configmaps"]), "*"), &status));
    let labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    assert!(label_selector_matches(
        Some(&json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]})),
        &labels
    ));
    assert!(label_selector_matches(
        Some(&json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]})),
        &labels
    ));
    assert!(!label_selector_matches(
        Some(&json!({"matchExpressions": [{"key": "env", "operator": "Bogus"}]})),
        &labels
    ));
    assert!(label_selector_matches(Some(&json!({})), &labels));
    // A Namespace is matched by namespaceSelector against its own labels.
    let mut ns = request.clone();
    ns.resource = "namespaces".into();
    ns.namespace = String::new();
    ns.object = Some(json!({"metadata": {"name": "prod", "labels": {"env": "prod"}}}));
    let mut w = rule(json!(["namespaces"]), "*");
    w["namespaceSelector"] = json!({"matchLabels": {"env": "prod"}});
    assert!(webhook_matches(&w, &ns));
    w["namespaceSelector"] = json!({"matchLabels": {"env": "dev"}});
    assert!(!webhook_matches(&w, &ns));
}

#[test]
fn endpoints_from_client_config() {
    let e = client::endpoint(
        &json!({"url": "https://localhost:9443/a/b"}),
        &no_services(),
    )
    .unwrap();
    assert_eq!(
        (e.address.port(), e.server_name.as_str(), e.path.as_str()),
        (9443, "localhost", "/a/b")
    );
    let e = client::endpoint(&json!({"url": "https://[::1]/x"}), &no_services()).unwrap();
    assert_eq!(e.address.port(), 443);
    assert!(client::endpoint(&json!({"url": "http://127.0.0.1/"}), &no_services()).is_err());
    assert!(
        client::endpoint(&json!({"url": "https://hook.example.com/"}), &no_services()).is_err()
    );
    assert!(
        client::endpoint(
            &json!({"service": {"namespace": "a", "name": "b"}}),
            &no_services()
        )
        .is_err()
    );
}

proptest! {
    #[test]
    fn matching_never_panics(selector in arb_json(), rules in arb_json(), url in "\\PC{0,30}") {
        let request = create_configmap(json!({"a": "b"}));
        let _ = label_selector_matches(Some(&selector), &request.namespace_labels);
        let _ = webhook_matches(&json!({"rules": [rules], "namespaceSelector": selector, "objectSelector": selector}), &request);
        let _ = client::endpoint(&json!({"url": url}), &no_services());
    }
}
