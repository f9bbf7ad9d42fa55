//! Load client for the admission webhook (`make bench`, scripts/bench.d/webhook.sh).
//!
//! Starts the webhook in-process on 127.0.0.1 with a serving certificate from
//! a fresh mesh CA, then keeps `--concurrency` HTTPS keep-alive connections
//! busy with AdmissionReviews until `--requests` have been answered, twice:
//! - baseline: `/validate` with a Pod (not a mesh kind: allowed without work),
//!   i.e. TLS, HTTP, and JSON in and out;
//! - injection: `/inject` with a pod of a mesh namespace (the full sidecar patch).
//!
//! Prints `key value` lines: latency percentiles (µs) of each, and the
//! process RSS after a warm-up of 10% of the requests and at the end.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};
use trellis_webhook::{Webhook, WebhookConfig, issue_serving_cert};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn review(kind: &str, uid: usize) -> Bytes {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9f8-", "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9f8"},
            "annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"}},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "registry.example/web:1.4",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "health", "containerPort": 8081}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "health"}},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}});
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("bench-{uid}"), "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": "shop", "object": pod}});
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

struct Run {
    latencies_us: Vec<u64>,
    rss_after_warmup_kib: u64,
    seconds: f64,
}

async fn load(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &'static str,
    requests: usize,
    concurrency: usize,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let warmup = requests / 10;
    let warm_rss = Arc::new(std::sync::Mutex::new(0u64));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, tls, warm_rss) = (next.clone(), tls.clone(), warm_rss.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            tcp.set_nodelay(true).unwrap();
            let name = ServerName::try_from("trellis-webhook.trellis-system.svc").unwrap();
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("HTTP handshake");
            tokio::spawn(conn);
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                if i == warmup {
                    *warm_rss.lock().unwrap() = rss_kib();
                }
                let body = review("Pod", i);
                let req = hyper::Request::post(path)
                    .header("content-type", "application/json")
                    .header("host", "trellis-webhook.trellis-system.svc")
                    .body(Full::new(body))
                    .unwrap();
                let t = Instant::now();
                let resp = sender.send_request(req).await.expect("request");
                assert_eq!(resp.status(), 200);
                let bytes = resp.into_body().collect().await.expect("body").to_bytes();
                mine.push(t.elapsed().as_micros() as u64);
                // Check the answer once in a while (cheap enough not to skew).
                if i % 1000 == 0 {
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(v["response"]["allowed"], true);
                    assert_eq!(v["response"]["patch"].is_string(), path == "/inject");
                }
            }
            mine
        }));
    }
    let mut latencies_us = Vec::with_capacity(requests);
    for t in tasks {
        latencies_us.extend(t.await.expect("client task"));
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let rss_after_warmup_kib = *warm_rss.lock().unwrap();
    Run {
        latencies_us,
        rss_after_warmup_kib,
        seconds,
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let requests = arg("--requests", 100_000);
    let concurrency = arg("--concurrency", 200);
    let threads = arg("--threads", 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let td = trellis_ca::TrustDomain::new("cluster.local").unwrap();
    let ca = trellis_ca::CertificateAuthority::new_self_signed(
        &trellis_ca::RootOptions::new(td),
        SystemTime::now(),
        Arc::new(trellis_ca::SystemRandom::new()),
    )
    .unwrap();
    let cert = issue_serving_cert(&ca, "trellis-system", SystemTime::now()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert.ca_bundle_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let config = WebhookConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert,
        injection: trellis_inject::InjectionContext::from_mesh_config(
            &Default::default(),
            trellis_inject::DEFAULT_INIT_IMAGE,
        ),
        operator_namespace: "trellis-system".into(),
    };
    let webhook = Webhook::new(&config).unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(webhook.serve(listener));
        let rss_start = rss_kib();
        let base = load(addr, tls.clone(), "/validate", requests, concurrency).await;
        let inject = load(addr, tls, "/inject", requests, concurrency).await;
        let rss_end = rss_kib();
        server.abort();
        println!("requests {requests}");
        println!("concurrency {concurrency}");
        for (name, run) in [("baseline", &base), ("inject", &inject)] {
            println!("{name}_p50_us {}", pct(&run.latencies_us, 0.50));
            println!("{name}_p99_us {}", pct(&run.latencies_us, 0.99));
            println!(
                "{name}_rps {:.0}",
                run.latencies_us.len() as f64 / run.seconds
            );
        }
        println!("rss_start_kib {rss_start}");
        println!("rss_inject_warm_kib {}", inject.rss_after_warmup_kib);
        println!("rss_end_kib {rss_end}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    });
}
