//! `make bench` for the xDS server: time from a snapshot change until N simulated proxies
//! (tonic ADS clients over mTLS that ACK like Envoy, in a child process) have ACKed, and
//! the server's RSS, against a baseline measured in the same run: the time to merely
//! protobuf-encode the same N responses.
//!
//! Run: `cargo run --release -p trellis-xds --example xds_bench [N...]` (default 100 1000).
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use support::*;
use trellis_xds::{
    ProxyId, ProxyKind, PushScope, ResourceCache, ResourceType, Snapshot, XdsConfig, XdsError,
};

const CLUSTERS: usize = 50;
const LISTENERS: usize = 5;

fn proxy(i: usize) -> ProxyId {
    ProxyId::new(
        ProxyKind::Sidecar,
        "bench",
        &format!("p{i}"),
        &format!("sa{i}"),
    )
}

fn raw(ty: ResourceType, size: usize, seed: &str) -> Any {
    let mut value = seed.as_bytes().to_vec();
    value.resize(size, b'x');
    Any {
        type_url: ty.type_url().to_string(),
        value,
    }
}

/// The same mesh for every proxy (so resources are shared), with a generation in the
/// endpoints of cluster 0 that the bench bumps.
fn mesh_snapshot(generation: u64, cache: &ResourceCache) -> Result<Snapshot, XdsError> {
    let mut b = Snapshot::builder();
    for c in 0..CLUSTERS {
        let name = format!("outbound|8080||svc{c}.bench.svc.cluster.local");
        b.add(name.clone(), raw(ResourceType::Cluster, 400, &name))?;
        let g = if c == 0 { generation } else { 0 };
        b.add(
            name.clone(),
            raw(ResourceType::Endpoint, 300, &format!("{name}/{g}")),
        )?;
    }
    for l in 0..LISTENERS {
        let name = format!("listener{l}");
        b.add(name.clone(), raw(ResourceType::Listener, 2000, &name))?;
        b.add(format!("route{l}"), raw(ResourceType::Route, 5000, &name))?;
    }
    Ok(b.build(cache))
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("clients") {
        return clients_main(&args[1..]);
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![100, 1000]
    } else {
        args.iter().map(|a| a.parse().expect("N")).collect()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in sizes {
        runtime.block_on(server_run(n));
    }
}

async fn server_run(n: usize) {
    let rss_start = rss_kib("VmRSS:");
    let ca = TestCa::new("bench root");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), &ca.root_pem).unwrap();
    for i in 0..n {
        let p = proxy(i);
        let pem = ca.workload(&p.namespace, &p.service_account);
        std::fs::write(
            dir.path().join(format!("{i}.pem")),
            format!("{}\n{}", pem.cert, pem.key),
        )
        .unwrap();
    }
    let generation = Arc::new(AtomicU64::new(1));
    let cache = Arc::new(ResourceCache::new());
    let source = {
        let (generation, cache) = (generation.clone(), cache.clone());
        move |_: &ProxyId| mesh_snapshot(generation.load(Ordering::SeqCst), &cache)
    };
    let running = start(&ca, XdsConfig::new(TRUST_DOMAIN), Arc::new(source)).await;

    let connect_start = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("clients")
        .arg(running.addr.to_string())
        .arg(dir.path())
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bench clients");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let line = lines.next();
        (line, lines)
    });
    let (line, _lines) = ready.await.unwrap();
    assert_eq!(
        line.and_then(Result::ok).as_deref(),
        Some("synced"),
        "clients failed"
    );
    let connect_time = connect_start.elapsed();
    while running.server.metrics().connected_proxies < n as i64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // The change: cluster 0's endpoints for every proxy; measured until N ACKs arrived.
    let acks_before = running.server.metrics().acks_total;
    let eds_before: std::collections::HashMap<String, Option<String>> = (running.server)
        .proxy_statuses()
        .into_iter()
        .map(|s| {
            let acked = s.types[ResourceType::Endpoint.index()]
                .acked_version
                .clone();
            (s.node_id, acked)
        })
        .collect();
    generation.store(2, Ordering::SeqCst);
    let push_start = Instant::now();
    let server = running.server.clone();
    tokio::task::spawn_blocking(move || server.push_now(&PushScope::All))
        .await
        .unwrap();
    // N more ACKs can include late ones of the initial sync: done when every
    // proxy has also ACKed endpoints other than those it had before the change.
    let all_acked_the_change = || {
        let statuses = running.server.proxy_statuses();
        statuses.len() == n
            && statuses.iter().all(|s| {
                let acked = &s.types[ResourceType::Endpoint.index()].acked_version;
                s.in_sync() && acked.is_some() && eds_before.get(&s.node_id) != Some(acked)
            })
    };
    while running.server.metrics().acks_total < acks_before + n as u64 || !all_acked_the_change() {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let push_to_ack = push_start.elapsed();
    let rss_now = rss_kib("VmRSS:");
    let statuses = running.server.proxy_statuses();
    let in_sync = statuses.iter().filter(|s| s.in_sync()).count();

    // Baseline: encode the same N EDS responses (no network, no protocol).
    let snap = mesh_snapshot(2, &cache).unwrap();
    let eds = snap.get(ResourceType::Endpoint);
    let encode_start = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        let response = DiscoveryResponse {
            version_info: snap.hash().version(),
            resources: eds.iter().map(|r| r.any.clone()).collect(),
            type_url: ResourceType::Endpoint.type_url().to_string(),
            nonce: i.to_string(),
            ..Default::default()
        };
        bytes += response.encode_to_vec().len();
    }
    let encode = encode_start.elapsed();

    let _ = child.stdin.take().map(|mut s| s.write_all(b"stop\n"));
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "xds N={n}: change->all ACKed {:.1} ms (goal <= 1000 ms at N=1000); encode-only baseline {:.2} ms ({} KiB); ratio {:.1}x; connect+initial sync of N {:.0} ms",
        push_to_ack.as_secs_f64() * 1e3,
        encode.as_secs_f64() * 1e3,
        bytes / 1024,
        push_to_ack.as_secs_f64() / encode.as_secs_f64().max(1e-9),
        connect_time.as_secs_f64() * 1e3,
    );
    println!(
        "xds N={n}: server RSS {} MiB (peak {} MiB, {} MiB before setup; goal <= 200 MiB at N=1000); in sync {in_sync}/{n}; shared resources live {}",
        rss_now / 1024,
        rss_kib("VmHWM:") / 1024,
        rss_start / 1024,
        cache.live(),
    );
}

/// Child process: N ADS clients that subscribe to everything and ACK every response.
fn clients_main(args: &[String]) {
    let addr: std::net::SocketAddr = args[0].parse().unwrap();
    let dir = std::path::PathBuf::from(&args[1]);
    let n: usize = args[2].parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let root = std::fs::read_to_string(dir.join("root.pem")).unwrap();
        let synced = Arc::new(AtomicUsize::new(0));
        let all_synced = Arc::new(tokio::sync::Notify::new());
        // Connect in bounded parallel batches so the TLS handshakes don't all time out.
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        for i in 0..n {
            let text = std::fs::read_to_string(dir.join(format!("{i}.pem"))).unwrap();
            let split = text.find("-----BEGIN PRIVATE KEY").unwrap();
            let pem = Pem {
                cert: text[..split].to_string(),
                key: text[split..].to_string(),
            };
            let (root, synced, all_synced, gate) = (
                root.clone(),
                synced.clone(),
                all_synced.clone(),
                gate.clone(),
            );
            tokio::spawn(async move {
                let mut permit = Some(gate.acquire_owned().await.unwrap());
                let mut client = connect(addr, &root, Some(&pem)).await.expect("connect");
                let mut first = request(ResourceType::Cluster.type_url(), &[]);
                first.node = Some(node_for(&proxy(i)));
                let mut ads = AdsClient::open(&mut client, first).await.expect("open ADS");
                let cluster_names: Vec<String> = (0..CLUSTERS)
                    .map(|c| format!("outbound|8080||svc{c}.bench.svc.cluster.local"))
                    .collect();
                let route_names: Vec<String> =
                    (0..LISTENERS).map(|l| format!("route{l}")).collect();
                let names_for = |type_url: &str| -> Vec<String> {
                    match ResourceType::from_type_url(type_url) {
                        Some(ResourceType::Endpoint) => cluster_names.clone(),
                        Some(ResourceType::Route) => route_names.clone(),
                        _ => Vec::new(),
                    }
                };
                let mut seen = 0;
                loop {
                    let Ok(r) = ads.recv().await else { return };
                    let names = names_for(&r.type_url);
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    ads.ack(&r, &refs).await;
                    // Like Envoy: after clusters, ask for their endpoints; after listeners, routes.
                    seen += 1;
                    match (seen, ResourceType::from_type_url(&r.type_url)) {
                        (1, Some(ResourceType::Cluster)) => {
                            let eds: Vec<&str> = cluster_names.iter().map(String::as_str).collect();
                            ads.send(request(ResourceType::Endpoint.type_url(), &eds))
                                .await;
                        }
                        (2, Some(ResourceType::Endpoint)) => {
                            ads.send(request(ResourceType::Listener.type_url(), &[]))
                                .await;
                        }
                        (3, Some(ResourceType::Listener)) => {
                            let rds: Vec<&str> = route_names.iter().map(String::as_str).collect();
                            ads.send(request(ResourceType::Route.type_url(), &rds))
                                .await;
                        }
                        (4, Some(ResourceType::Route)) => {
                            // the connect permit is held until synced (keeps the storm bounded)
                            permit.take();
                            if synced.fetch_add(1, Ordering::SeqCst) + 1 == n {
                                all_synced.notify_one();
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
        all_synced.notified().await;
        println!("synced");
        // Keep the streams open until the parent stops us.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await
        .unwrap();
    });
}
