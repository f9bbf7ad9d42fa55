//! `make bench` for the operator: N namespaces x M ServiceAccounts in the Kubernetes API
//! simulator, the real `trellis operator` binary issuing their identities. Prints
//! `key value` lines for scripts/bench.d/operator.sh:
//!
//! - `baseline_secs`: creating the same number of Secrets directly with 32 concurrent
//!   requests (the simulator's write throughput, measured in the same run);
//! - `issue_secs`: operator start until every identity exists;
//! - `writes_per_identity`: identity-controller API writes / identities;
//! - `peak_rss_kib`: the operator's VmHWM;
//! - `rotation_secs`, `rotation_rate`: a new plugged-in CA until every identity is reissued.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

struct Args {
    trellis: String,
    namespaces: usize,
    accounts: usize,
    rotation_rate: f64,
}

fn args() -> Args {
    let mut a = Args {
        trellis: "target/release/trellis".into(),
        namespaces: 1000,
        accounts: 10,
        rotation_rate: 100.0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--trellis" => a.trellis = value,
            "--namespaces" => a.namespaces = value.parse().expect("--namespaces N"),
            "--accounts" => a.accounts = value.parse().expect("--accounts N"),
            "--rotation-rate" => a.rotation_rate = value.parse().expect("--rotation-rate R"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Kills the operator by PID when dropped.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metrics(addr: &str) -> BTreeMap<String, f64> {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return BTreeMap::new();
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn wait_metric(addr: &str, series: &str, want: f64, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if metrics(addr).get(series).copied().unwrap_or(0.0) >= want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {series} >= {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let a = args();
    let total = a.namespaces * a.accounts;
    let server = kube_sim::TestServer::start().expect("starting the simulator");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = rt.block_on(async { server.client() });
    let meta = |name: String, ns: Option<&str>, labels: &[(&str, &str)]| ObjectMeta {
        name: Some(name),
        namespace: ns.map(str::to_string),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    // Baseline: the same number of Secrets created directly.
    let baseline = rt.block_on(async {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in ["trellis-system", "baseline"] {
            namespaces
                .create(
                    &PostParams::default(),
                    &Namespace {
                        metadata: meta(ns.into(), None, &[]),
                        ..Default::default()
                    },
                )
                .await
                .expect("namespace");
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "baseline");
        let start = Instant::now();
        futures::stream::iter(0..total)
            .map(|i| {
                let secrets = secrets.clone();
                let s = Secret {
                    metadata: meta(format!("s-{i}"), Some("baseline"), &[]),
                    data: Some(BTreeMap::from([(
                        "k".to_string(),
                        k8s_openapi::ByteString(vec![b'x'; 1500]),
                    )])),
                    ..Default::default()
                };
                async move {
                    secrets
                        .create(&PostParams::default(), &s)
                        .await
                        .expect("baseline secret")
                }
            })
            .buffer_unordered(32)
            .for_each(|_| async {})
            .await;
        start.elapsed()
    });
    // The mesh: N labelled namespaces with M ServiceAccounts each.
    rt.block_on(async {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for n in 0..a.namespaces {
            namespaces
                .create(
                    &PostParams::default(),
                    &Namespace {
                        metadata: meta(format!("ns-{n}"), None, &[("istio-injection", "enabled")]),
                        ..Default::default()
                    },
                )
                .await
                .expect("namespace");
        }
        futures::stream::iter(0..total)
            .map(|i| {
                let ns = format!("ns-{}", i / a.accounts);
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
                let sa = ServiceAccount {
                    metadata: meta(format!("sa-{}", i % a.accounts), Some(&ns), &[]),
                    ..Default::default()
                };
                async move {
                    api.create(&PostParams::default(), &sa)
                        .await
                        .expect("service account")
                }
            })
            .buffer_unordered(32)
            .for_each(|_| async {})
            .await;
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let child = Command::new(&a.trellis)
        .args([
            "operator",
            "--namespace",
            "trellis-system",
            "--identity",
            "bench",
        ])
        .arg("--kubeconfig")
        .arg(server.kubeconfig_path())
        .args(["--metrics-addr", &addr, "--xds-addr", "127.0.0.1:0"])
        .args(["--rotation-rate", &a.rotation_rate.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting trellis operator");
    let guard = Guard(child);
    let limit = Duration::from_secs(1800);
    wait_metric(
        &addr,
        "trellis_identity_issued_total{reason=\"new\"}",
        total as f64,
        limit,
    );
    let issue = start.elapsed();
    let m = metrics(&addr);
    let writes = m
        .get("trellis_api_writes_total{controller=\"identity\"}")
        .copied()
        .unwrap_or(0.0);
    // Check with the API, not only the operator's word.
    let listed = rt.block_on(async {
        let secrets: Api<Secret> = Api::all(client.clone());
        secrets
            .list_metadata(&ListParams::default().labels("trellis.dev/identity=true"))
            .await
            .expect("listing identities")
            .items
            .len()
    });
    assert_eq!(listed, total, "identity Secrets in the API");

    // Root rotation: a new CA plugged in as cacerts; every identity moves to it.
    let td = trellis_ca::TrustDomain::new("cluster.local").unwrap();
    let ca = trellis_ca::CertificateAuthority::new_self_signed(
        &trellis_ca::RootOptions::new(td),
        SystemTime::now(),
        Arc::new(trellis_ca::SystemRandom::new()),
    )
    .unwrap();
    let material = ca.to_material();
    let cacerts = Secret {
        metadata: meta("cacerts".into(), Some("trellis-system"), &[]),
        data: Some(BTreeMap::from([
            (
                "ca-cert.pem".to_string(),
                k8s_openapi::ByteString(material.ca_cert_pem.into_bytes()),
            ),
            (
                "ca-key.pem".to_string(),
                k8s_openapi::ByteString(material.ca_key_pem.expose().as_bytes().to_vec()),
            ),
            (
                "cert-chain.pem".to_string(),
                k8s_openapi::ByteString(material.cert_chain_pem.into_bytes()),
            ),
            (
                "root-cert.pem".to_string(),
                k8s_openapi::ByteString(material.root_cert_pem.into_bytes()),
            ),
        ])),
        ..Default::default()
    };
    let rotation_start = Instant::now();
    rt.block_on(async {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "trellis-system");
        secrets
            .create(&PostParams::default(), &cacerts)
            .await
            .expect("cacerts");
    });
    wait_metric(
        &addr,
        "trellis_identity_renewed_total{reason=\"root\"}",
        total as f64,
        limit,
    );
    let rotation = rotation_start.elapsed();
    let rss = peak_rss_kib(guard.0.id());
    println!("identities {total}");
    println!("baseline_secs {:.3}", baseline.as_secs_f64());
    println!("issue_secs {:.3}", issue.as_secs_f64());
    println!("writes_per_identity {:.3}", writes / total as f64);
    println!("peak_rss_kib {rss}");
    println!("rotation_secs {:.3}", rotation.as_secs_f64());
    println!("rotation_rate {}", a.rotation_rate);
    drop(guard);
}
