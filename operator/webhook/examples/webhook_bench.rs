//! Load client for the admission webhook (`make bench`, scripts/bench.d/webhook.sh).
//!
//! The server is the real `trellis operator` (`--trellis`, default
//! target/release/trellis) against the Kubernetes API simulator: the webhook
//! as it runs in a cluster, with its serving certificate from the mesh CA the
//! operator created. The client runs in this process on `--client-threads`
//! threads (default 2, one per core of this machine), keeps `--concurrency`
//! HTTPS keep-alive connections busy with AdmissionReviews until `--requests`
//! have been answered, for each of the two kinds below, `--rounds` times
//! (default 3), alternating. Each connection is one task that writes a
//! request prepared in advance and reads the answer, as `wrk` does: the
//! client's cost per request is kept small because it shares the machine's
//! two cores with the server.
//! - baseline: `/validate` with a Pod (not a mesh kind: allowed without work),
//!   i.e. TLS, HTTP, and an AdmissionReview read and answered;
//! - injection: `/inject` with a pod of a mesh namespace (the full sidecar patch).
//!
//! Prints a `run <kind> <round>` line per run with latency percentiles (µs),
//! throughput, the operator's CPU time per request (from /proc, so the
//! client's own work is not counted), the pauses in which no answer arrived
//! and the CPU time every other process on the machine used meanwhile (an
//! `others <kind> <round>` line names the four that used most), and
//! `key value` lines with the operator's RSS after a warm-up of 10% of the
//! first injection run and at the end.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// A pause in the answers this long (µs) is a silence: at the throughputs
/// measured an answer arrives every 10-30 µs, so 2 ms without one means the
/// client was not running or the server sent nothing.
const SILENCE_US: u64 = 2_000;

/// The operator's namespace, and the name its serving certificate is for.
const NS: &str = "trellis-system";
const SERVER_NAME: &str = "trellis-webhook.trellis-system.svc";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of `pid` in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces; fields after it are plain.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    get(11) + get(12)
}

/// CPU time each thread on the machine has run so far, in ns, by
/// (process, thread), with its process's name: the first field of
/// /proc/<pid>/task/<tid>/schedstat. Kernel threads are processes here too.
fn threads_cpu_ns() -> HashMap<(u32, u32), (String, u64)> {
    let mut out = HashMap::new();
    let ids = |dir: &str| -> Vec<u32> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for pid in ids("/proc") {
        // A process may exit between the listing and the read: skipped.
        let Ok(name) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        for tid in ids(&format!("/proc/{pid}/task")) {
            let ns = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            if let Some(ns) = ns {
                out.insert((pid, tid), (name.trim().to_string(), ns));
            }
        }
    }
    out
}

/// CPU time in ms that processes other than `ours` ran between two
/// readings of [`threads_cpu_ns`], by process name, most first. A thread
/// started in between counts whole; one that ended in between is missed.
fn others_cpu_ms(
    before: &HashMap<(u32, u32), (String, u64)>,
    after: &HashMap<(u32, u32), (String, u64)>,
    ours: &[u32],
) -> Vec<(String, f64)> {
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for (key, (name, ns)) in after {
        if ours.contains(&key.0) {
            continue;
        }
        let earlier = before.get(key).map_or(0, |(_, ns)| *ns);
        *by_name.entry(name).or_default() += ns.saturating_sub(earlier);
    }
    let mut out: Vec<(String, f64)> = by_name
        .into_iter()
        .filter(|(_, ns)| *ns > 0)
        .map(|(name, ns)| (name.to_string(), ns as f64 / 1e6))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Silences of at least `min_us` between consecutive answers (`answered_at`:
/// offsets in µs from the start, sorted), as (start, end) offsets.
fn silences(answered_at: &[u64], min_us: u64) -> Vec<(u64, u64)> {
    answered_at
        .windows(2)
        .filter(|w| w[1] - w[0] >= min_us)
        .map(|w| (w[0], w[1]))
        .collect()
}

/// How many of the requests (`(sent, answered)` offsets) were in flight
/// through a whole silence (`silences` sorted, not overlapping).
fn waited_through(requests: &[(u64, u64)], silences: &[(u64, u64)]) -> usize {
    requests
        .iter()
        .filter(|(sent, answered)| {
            // The first silence that starts at or after the request was sent.
            let i = silences.partition_point(|(start, _)| start < sent);
            silences.get(i).is_some_and(|(_, end)| end <= answered)
        })
        .count()
}

fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// An HTTP/1.1 request with its body, as bytes to write.
fn http_request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nhost: {SERVER_NAME}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn review(uid: usize) -> Vec<u8> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9f8-", "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9f8"},
            "annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"}},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "registry.example/web:1.4",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "health", "containerPort": 8081}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "health"}},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}});
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("bench-{uid}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": "shop", "object": pod}});
    serde_json::to_vec(&body).unwrap()
}

/// Kills the operator by PID when dropped.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The mesh root the operator stored in Secret `trellis-system/trellis-ca`.
async fn mesh_root(client: kube::Client) -> String {
    let secrets: Api<Secret> = Api::namespaced(client, NS);
    let started = Instant::now();
    loop {
        if let Ok(Some(secret)) = secrets.get_opt("trellis-ca").await
            && let Some(root) = secret.data.and_then(|d| d.get("root-cert.pem").cloned())
        {
            return String::from_utf8(root.0).expect("root-cert.pem is PEM text");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the operator did not store its CA in Secret {NS}/trellis-ca within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the webhook answers a health check over TLS.
async fn wait_serving(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) {
    let started = Instant::now();
    let health = http_request("GET", "/healthz", b"");
    loop {
        if let Ok(mut conn) = Connection::open(addr, tls.clone()).await
            && conn
                .exchange(&health)
                .await
                .is_ok_and(|(status, _)| status == 200)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the operator's webhook did not serve on {addr} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One HTTPS keep-alive connection and its read buffer.
struct Connection {
    tls: TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(SERVER_NAME)?;
        let tls = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        Ok(Connection {
            tls,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` and reads the response: its status and body.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, &[u8])> {
        self.tls.write_all(request).await?;
        self.tls.flush().await?;
        self.buf.clear();
        let mut head = None;
        loop {
            if let Some((status, body_start, length)) = head {
                if self.buf.len() >= body_start + length {
                    return Ok((status, &self.buf[body_start..body_start + length]));
                }
            } else {
                head = response_head(&self.buf)?;
                if head.is_some() {
                    continue;
                }
            }
            // Into the spare capacity: nothing is zeroed first.
            self.buf.reserve(16 * 1024);
            let n = self.tls.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Status, body offset and content length of a response whose head is
/// complete in `buf`; `None` while it is not.
fn response_head(buf: &[u8]) -> std::io::Result<Option<(u16, usize, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status in the response"))?;
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| bad("no content-length in the response"))?;
    Ok(Some((status, end + 4, length)))
}

struct Run {
    latencies_us: Vec<u64>,
    /// When each request was sent and answered, in µs from the start.
    exchanges_us: Vec<(u64, u64)>,
    /// CPU time of every other process on the machine during the run.
    others_cpu_ms: Vec<(String, f64)>,
    seconds: f64,
    server_cpu_ticks: u64,
    server_rss_after_warmup_kib: u64,
}

async fn load(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &'static str,
    requests: usize,
    concurrency: usize,
    server_pid: u32,
) -> Run {
    // Bodies are built before the clock starts: the client's JSON work is
    // not what is measured.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..1000)
            .map(|uid| http_request("POST", path, &review(uid)))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let warmup = requests / 10;
    let warm_rss = Arc::new(std::sync::Mutex::new(0u64));
    let mut connections = Vec::new();
    for _ in 0..concurrency {
        let conn = Connection::open(addr, tls.clone())
            .await
            .expect("connecting");
        connections.push(conn);
    }
    let cpu_start = cpu_ticks(server_pid);
    let threads_start = threads_cpu_ns();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in connections {
        let (next, bodies, warm_rss) = (next.clone(), bodies.clone(), warm_rss.clone());
        tasks.push(tokio::spawn(async move {
            let mut exchanges = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                if i == warmup {
                    *warm_rss.lock().unwrap() = rss_kib(server_pid);
                }
                let sent = started.elapsed().as_micros() as u64;
                let (status, body) = conn
                    .exchange(&bodies[i % bodies.len()])
                    .await
                    .expect("request");
                exchanges.push((sent, started.elapsed().as_micros() as u64));
                assert_eq!(status, 200);
                // Check the answer once in a while (cheap enough not to skew).
                if i % 1000 == 0 {
                    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                    assert_eq!(v["response"]["allowed"], true);
                    assert_eq!(v["response"]["patch"].is_string(), path == "/inject");
                }
            }
            exchanges
        }));
    }
    let mut exchanges_us = Vec::with_capacity(requests);
    for t in tasks {
        exchanges_us.extend(t.await.expect("client task"));
    }
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu_ticks = cpu_ticks(server_pid) - cpu_start;
    let others_cpu_ms = others_cpu_ms(
        &threads_start,
        &threads_cpu_ns(),
        &[std::process::id(), server_pid],
    );
    let mut latencies_us: Vec<u64> = exchanges_us
        .iter()
        .map(|(sent, answered)| answered - sent)
        .collect();
    latencies_us.sort_unstable();
    let server_rss_after_warmup_kib = *warm_rss.lock().unwrap();
    Run {
        latencies_us,
        exchanges_us,
        others_cpu_ms,
        seconds,
        server_cpu_ticks,
        server_rss_after_warmup_kib,
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let requests = arg("--requests", 100_000);
    let concurrency = arg("--concurrency", 200);
    let trellis = std::env::args()
        .skip_while(|a| a != "--trellis")
        .nth(1)
        .unwrap_or_else(|| "target/release/trellis".into());
    let sim = kube_sim::TestServer::start().expect("starting the API simulator");
    // The API server's Go runtime runs its webhook calls on one thread per
    // core, with work stealing. So does this client: with a single thread,
    // answers that arrive together wait for one another in the client (up to
    // 200 x its cost per answer), and that wait was counted as the webhook's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(arg("--client-threads", 2))
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async { sim.client() });
    runtime.block_on(async {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(NS.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("creating the operator's namespace");
    });
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let operator = Operator(
        Command::new(&trellis)
            .args(["operator", "--namespace", NS, "--identity", "bench"])
            .arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(["--metrics-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0"])
            .args(["--webhook-addr", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {trellis} operator: {e}")),
    );
    let pid = operator.0.id();
    let root = runtime.block_on(mesh_root(client));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root.as_bytes()) {
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
    let ticks = clock_ticks_per_second();
    let rounds = arg("--rounds", 3);
    runtime.block_on(async {
        wait_serving(addr, tls.clone()).await;
        let rss_start = rss_kib(pid);
        println!("requests {requests}");
        println!("concurrency {concurrency}");
        println!("rss_start_kib {rss_start}");
        // Baseline and injection alternate, so a slow spell of this shared
        // machine shows in both of a round rather than in one kind only.
        for round in 1..=rounds {
            let base = load(addr, tls.clone(), "/validate", requests, concurrency, pid).await;
            let inject = load(addr, tls.clone(), "/inject", requests, concurrency, pid).await;
            for (name, run) in [("baseline", &base), ("inject", &inject)] {
                let n = run.latencies_us.len() as f64;
                let mut answered: Vec<u64> = run.exchanges_us.iter().map(|e| e.1).collect();
                answered.sort_unstable();
                let silent = silences(&answered, SILENCE_US);
                let silent_us: u64 = silent.iter().map(|(start, end)| end - start).sum();
                let through = waited_through(&run.exchanges_us, &silent);
                let others: f64 = run.others_cpu_ms.iter().map(|(_, ms)| ms).sum();
                println!(
                    "run {name} {round} p50_us {} p90_us {} p99_us {} p999_us {} rps {:.0} server_cpu_us {:.1} \
                     silences {} silent_ms {:.1} through_silence_pct {:.2} others_cpu_ms {others:.1} seconds {:.2}",
                    pct(&run.latencies_us, 0.50),
                    pct(&run.latencies_us, 0.90),
                    pct(&run.latencies_us, 0.99),
                    pct(&run.latencies_us, 0.999),
                    n / run.seconds,
                    run.server_cpu_ticks as f64 / ticks * 1e6 / n,
                    silent.len(),
                    silent_us as f64 / 1e3,
                    100.0 * through as f64 / n,
                    run.seconds,
                );
                let top: Vec<String> = run
                    .others_cpu_ms
                    .iter()
                    .take(4)
                    .map(|(process, ms)| format!("{process}={ms:.1}"))
                    .collect();
                println!("others {name} {round} {}", top.join(" "));
            }
            if round == 1 {
                println!("rss_inject_warm_kib {}", inject.server_rss_after_warmup_kib);
            }
        }
        println!("rss_end_kib {}", rss_kib(pid));
    });
    drop(operator);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_are_the_long_gaps_between_answers() {
        let answered = [0, 100, 2_100, 2_200, 5_000, 5_010];
        assert_eq!(
            silences(&answered, 2_000),
            vec![(100, 2_100), (2_200, 5_000)]
        );
        assert!(silences(&answered, 3_000).is_empty());
    }

    #[test]
    fn a_request_waited_through_a_silence_only_if_in_flight_for_all_of_it() {
        let silent = [(100, 2_100), (2_200, 5_000)];
        let requests = [
            (0, 2_150),     // through the first
            (150, 2_150),   // sent during the first, answered before the second
            (2_150, 5_001), // through the second
            (2_250, 5_001), // sent during the second
            (5_000, 6_000), // after both
            (0, 6_000),     // through both: counted once
        ];
        assert_eq!(waited_through(&requests, &silent), 3);
    }
}
