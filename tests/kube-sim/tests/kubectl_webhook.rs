//! Admission webhooks driven by the real kubectl: a mutating webhook's JSONPatch lands in the
//! stored object, and a validating webhook's denial reaches kubectl worded as the API server
//! words it.

mod common;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kube_sim::{Kubectl, TestServer};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::PrivateKeyDer;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An HTTPS AdmissionReview server on 127.0.0.1: `/mutate` adds a label, `/validate` denies
/// ConfigMaps whose name starts with `forbidden`. Runs on its own runtime, dropped with it.
struct Hooks {
    port: u16,
    ca_bundle: String,
    calls: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

fn review_response(path: &str, review: &Value) -> Value {
    let name = review["request"]["object"]["metadata"]["name"]
        .as_str()
        .unwrap_or("");
    let mut response = match path {
        "/mutate" => {
            let patch =
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]);
            json!({"allowed": true, "patchType": "JSONPatch",
                   "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string())})
        }
        _ if name.starts_with("forbidden") => json!({"allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": "names starting with forbidden are not allowed"}}),
        _ => {
            // The validating webhook sees the mutated object.
            let mutated = review["request"]["object"]["metadata"]["labels"]["mutated"] == "yes";
            json!({"allowed": mutated, "status": {"message": "not mutated first"}})
        }
    };
    response["uid"] = review["request"]["uid"].clone();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

fn start_hooks() -> Hooks {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.signed_by(&key, &issuer).expect("serving cert");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::try_from(key.serialize_der()).expect("key DER"),
    )
    .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    runtime.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await?.to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let reply = review_response(&path, &review);
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
    Hooks {
        port,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca_cert.pem()),
        calls,
        _runtime: runtime,
    }
}

fn configurations(hooks: &Hooks) -> String {
    let webhook = |name: &str, path: &str| {
        json!({
            "name": name,
            "clientConfig": {"url": format!("https://127.0.0.1:{}{path}", hooks.port), "caBundle": hooks.ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"hooked": "yes"}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        })
    };
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": "mutate"}, "webhooks": [webhook("mutate.example.com", "/mutate")]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": "deny"}, "webhooks": [webhook("deny.example.com", "/validate")]},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hooked", "labels": {"hooked": "yes"}}},
    ]});
    list.to_string()
}

const FORBIDDEN: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: forbidden-settings
  namespace: hooked
data:
  a: b
";

#[test]
fn webhooks_mutate_and_deny_creates_from_kubectl() {
    let hooks = start_hooks();
    let server = TestServer::start().expect("server starts");
    let k = Kubectl::new(server.kubeconfig_path());
    k.apply(&configurations(&hooks));

    let err = common::fails(&k, &["create", "-f", "-"], Some(FORBIDDEN));
    assert_eq!(
        err.trim_end(),
        r#"Error from server (Forbidden): error when creating "STDIN": admission webhook "deny.example.com" denied the request: names starting with forbidden are not allowed"#
    );
    let err = common::fails(
        &k,
        &["get", "cm", "forbidden-settings", "-n", "hooked"],
        None,
    );
    assert!(err.contains("not found"), "{err}");
    let called = hooks.calls.load(Ordering::SeqCst);
    assert!(called >= 2, "both webhooks were called ({called})");

    // An allowed create is mutated by the JSONPatch before the validating webhook sees it.
    k.run_stdin(
        &["create", "-f", "-"],
        &FORBIDDEN.replace("forbidden-settings", "allowed"),
    );
    assert_eq!(
        k.run(&[
            "get",
            "cm",
            "allowed",
            "-n",
            "hooked",
            "-o",
            "jsonpath={.metadata.labels.mutated}"
        ]),
        "yes"
    );

    // Outside the selected namespace no webhook is called.
    let before = hooks.calls.load(Ordering::SeqCst);
    k.run_stdin(
        &["create", "-f", "-"],
        &FORBIDDEN.replace("namespace: hooked", "namespace: default"),
    );
    assert_eq!(hooks.calls.load(Ordering::SeqCst), before);
}
