//! `trellis up` end to end: the real binary runs a mesh of real Envoys from a
//! directory, and the tests send real requests through the sidecars.
//!
//! - traffic flows from a client sidecar's outbound HTTP proxy port over mTLS to
//!   the server sidecars; invalid files are reported and skipped; editing a
//!   VirtualService moves traffic while a continuous client sees no failure;
//!   `trellis proxy-config` shows what was sent and ACKed, never a key;
//!   SIGTERM stops every Envoy;
//! - with a 60 s certificate TTL, certificates rotate under continuous traffic
//!   with no failed request and no Envoy restart;
//! - `trellis up` killed with SIGKILL leaves no Envoy behind, and a restart on
//!   the same state directory reuses root, addresses and ports;
//! - an update Envoy rejects (NACK) leaves the proxy on its last good config,
//!   and `trellis proxy-config` / `trellis status` show the rejection;
//! - not running as root, a Gateway on port 80 listens on 80 + the offset.
//!
//! Every process is killed by PID in a Drop guard; waits are bounded.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use trellis_e2e::{HttpRequest, Upstream};

mod up_support;
use up_support::{Up, proxy_config, signal, trellis, wait_gone};

/// A mesh on `127.<net>.0.x`: a `frontend` client workload and `cart` v1 (and
/// optionally v2) behind the `cart` service, subsets from a DestinationRule.
struct Fixture {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    net: u8,
    apps: Vec<Upstream>,
}

impl Fixture {
    fn new(net: u8, cart_versions: &[&str]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        let state = tmp.path().join("state");
        std::fs::create_dir(&config).unwrap();
        let mut apps = Vec::new();
        let frontend = Upstream::echo("frontend", Ipv4Addr::LOCALHOST);
        let mut files = vec![(
            "base.yaml".to_string(),
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: frontend, namespace: shop}\n---\n\
                 apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: cart, namespace: shop}\n---\n\
                 apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\n\
                 spec:\n  selector: {app: cart}\n  ports:\n  - {name: http, port: 8080, targetPort: 8080}\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: cart, namespace: shop}\n\
                 spec:\n  host: cart\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n".to_string(),
        )];
        files.push((
            "frontend.yaml".into(),
            workload(
                "frontend",
                "frontend",
                "frontend",
                "v1",
                net,
                10,
                frontend.port(),
            ),
        ));
        apps.push(frontend);
        for (i, v) in cart_versions.iter().enumerate() {
            let app = Upstream::echo(&format!("cart-{v}"), Ipv4Addr::LOCALHOST);
            files.push((
                format!("cart-{v}.yaml"),
                workload(
                    &format!("cart-{v}"),
                    "cart",
                    "cart",
                    v,
                    net,
                    11 + i as u8,
                    app.port(),
                ),
            ));
            apps.push(app);
        }
        for (name, text) in files {
            std::fs::write(config.join(name), text).unwrap();
        }
        Fixture {
            _tmp: tmp,
            config,
            state,
            net,
            apps,
        }
    }

    /// The frontend sidecar's outbound HTTP proxy port.
    fn proxy(&self) -> SocketAddr {
        SocketAddr::from(([127, self.net, 0, 10], 15001))
    }

    /// An ingress gateway for `shop.example.com` on 127.0.0.1:`port`, routing to `cart`.
    fn add_gateway(&self, port: u16) {
        std::fs::write(
            self.config.join("gateway.yaml"),
            format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: ingress, namespace: shop}}\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: ingress, namespace: shop}}\n\
                 spec:\n  address: 127.0.0.1\n  serviceAccount: ingress\n  labels: {{istio: ingress-{port}}}\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: web, namespace: shop}}\n\
                 spec:\n  selector: {{istio: ingress-{port}}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [shop.example.com]\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web, namespace: shop}}\n\
                 spec:\n  hosts: [shop.example.com]\n  gateways: [web]\n  http:\n  - route:\n    - destination: {{host: cart.shop.svc.cluster.local, port: {{number: 8080}}}}\n"
            ),
        )
        .unwrap();
    }

    /// A TCP service `db` (port 5432) with one workload at 127.<net>.0.20.
    fn add_tcp_service(&mut self) {
        let app = Upstream::echo("db", Ipv4Addr::LOCALHOST);
        std::fs::write(
            self.config.join("db.yaml"),
            format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: db, namespace: shop}}\n---\n\
                 apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: shop}}\n\
                 spec:\n  selector: {{app: db}}\n  ports:\n  - {{name: tcp-postgres, port: 5432, targetPort: 5432}}\n---\n{}",
                workload("db", "db", "db", "v1", self.net, 20, app.port())
            ),
        )
        .unwrap();
        self.apps.push(app);
    }

    /// The outbound port `trellis up` gave the TCP service `db:5432`.
    fn db_port(&self) -> u16 {
        let text = std::fs::read_to_string(self.state.join("outbound-ports.json")).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["ports"]["tcp/db.shop.svc.cluster.local:5432"]
            .as_u64()
            .unwrap_or_else(|| panic!("no outbound port for db: {text}")) as u16
    }

    /// Talks to `db` through the frontend sidecar's explicit TCP port.
    fn call_db(&self) -> Result<String, String> {
        let addr = SocketAddr::from(([127, self.net, 0, 10], self.db_port()));
        let r = HttpRequest::get("/query")
            .timeout(Duration::from_secs(5))
            .send(addr)
            .map_err(|e| e.to_string())?;
        Ok(r.json()["server"].as_str().unwrap_or("?").to_string())
    }

    fn wait_db(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.call_db() {
                Ok(s) if s == "db" => return,
                other => assert!(Instant::now() < deadline, "db never answered: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn route_cart_to(&self, subset: &str) {
        write_atomically(
            &self.config.join("vs.yaml"),
            &format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: cart, namespace: shop}}\n\
                 spec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {{host: cart, subset: {subset}}}\n"
            ),
        );
    }
}

/// Editors save by renaming a new file over the old one; so do the tests.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn workload(
    name: &str,
    sa: &str,
    app: &str,
    version: &str,
    net: u8,
    host: u8,
    app_port: u16,
) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: shop\n  \
         annotations: {{local.trellis.dev/app-port: \"{app_port}\"}}\nspec:\n  address: 127.{net}.0.{host}\n  \
         serviceAccount: {sa}\n  labels: {{app: {app}, version: {version}}}\n"
    )
}

/// Calls `cart` through the frontend's sidecar; the upstream that answered, or the failure.
fn call_cart(proxy: SocketAddr, host: &str) -> Result<String, String> {
    let response = HttpRequest::get("/items")
        .host(host)
        .timeout(Duration::from_secs(5))
        .send(proxy)
        .map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!(
            "status {}: {}",
            response.status,
            response.body_text()
        ));
    }
    Ok(response.json()["server"]
        .as_str()
        .unwrap_or("?")
        .to_string())
}

fn wait_serving(proxy: SocketAddr, expect: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call_cart(proxy, "cart:8080") {
            Ok(server) if server == expect => return,
            other => assert!(
                Instant::now() < deadline,
                "cart never answered from {expect} through {proxy}: last {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every request's completion time and outcome (the answering upstream, or the failure).
type CallLog = Vec<(Instant, Result<String, String>)>;

/// A client calling `cart` in a loop until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<CallLog>>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(proxy: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let r = call_cart(proxy, "cart:8080");
                l.lock().unwrap().push((Instant::now(), r));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Traffic {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> CallLog {
        self.log.lock().unwrap().clone()
    }

    fn finish(mut self) -> CallLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.snapshot()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn failures(log: &CallLog) -> Vec<String> {
    log.iter()
        .filter_map(|(_, r)| r.as_ref().err().cloned())
        .collect()
}

fn proxy_pid(status: &Value, name: &str) -> u64 {
    status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["pid"].as_u64())
        .unwrap_or_else(|| panic!("no pid for {name}: {status}"))
}

fn admin_port(status: &Value, name: &str) -> u16 {
    status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["adminPort"].as_u64())
        .unwrap_or_else(|| panic!("no admin port for {name}: {status}")) as u16
}

fn admin_get(port: u16, path: &str) -> String {
    HttpRequest::get(path)
        .timeout(Duration::from_secs(5))
        .send(SocketAddr::from(([127, 0, 0, 1], port)))
        .map(|r| r.body_text())
        .unwrap_or_else(|e| panic!("admin {port}{path}: {e}"))
}

#[test]
fn traffic_flows_over_mtls_and_a_virtualservice_edit_moves_it_without_failures() {
    let fx = Fixture::new(61, &["v1", "v2"]);
    fx.route_cart_to("v1");
    std::fs::write(
        fx.config.join("broken.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: shop}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart}\n      weight: 101\n",
    )
    .unwrap();
    let gateway_port = trellis_e2e::free_port();
    fx.add_gateway(gateway_port);
    let mut up = Up::start(&fx.config, &fx.state, &[]);
    let status = up.wait_ready(4);
    let pids: Vec<u64> = ["frontend", "cart-v1", "cart-v2", "ingress"]
        .iter()
        .map(|n| proxy_pid(&status, n))
        .collect();

    // The invalid file is reported (path, kind/name, message) and the rest runs.
    let errors = status["configErrors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["file"].as_str().unwrap().ends_with("broken.yaml")
                && e["kind"] == "VirtualService"
                && e["name"] == "bad"),
        "{errors:?}"
    );
    let log = up.log();
    assert!(
        log.contains("broken.yaml") && log.contains("VirtualService/shop/bad"),
        "stderr must name the skipped file and object:\n{log}"
    );

    // Through the outbound HTTP proxy port, by every name Istio accepts, over mTLS.
    wait_serving(fx.proxy(), "cart-v1");
    for host in [
        "cart",
        "cart:8080",
        "cart.shop",
        "cart.shop:8080",
        "cart.shop.svc.cluster.local",
        "cart.shop.svc.cluster.local:8080",
    ] {
        assert_eq!(
            call_cart(fx.proxy(), host),
            Ok("cart-v1".to_string()),
            "Host {host}"
        );
    }
    // An app with HTTP_PROXY set sends the absolute URL.
    let absolute = HttpRequest::get("http://cart:8080/items")
        .host("cart:8080")
        .send(fx.proxy())
        .unwrap();
    assert_eq!(absolute.status, 200, "{}", absolute.body_text());
    assert_eq!(absolute.json()["server"], "cart-v1");
    assert_eq!(fx.apps[0].hits(), 0, "the frontend app was never called");
    // Through the ingress gateway (its own Envoy, on 127.0.0.1 at the Gateway's port).
    let gateway = SocketAddr::from(([127, 0, 0, 1], gateway_port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call_cart(gateway, "shop.example.com") {
            Ok(server) if server == "cart-v1" => break,
            other => assert!(
                Instant::now() < deadline,
                "the gateway never reached cart-v1: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let unknown_host = HttpRequest::get("/")
        .host("other.example.com")
        .send(gateway)
        .unwrap();
    assert_eq!(unknown_host.status, 404, "{}", unknown_host.body_text());
    let stats = admin_get(
        admin_port(&status, "cart-v1"),
        "/stats?filter=ssl.handshake",
    );
    let handshakes: u64 = stats
        .lines()
        .filter(|l| l.starts_with("listener.") && l.contains("ssl.handshake"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        handshakes > 0,
        "no mTLS handshake on cart-v1's inbound listener:\n{stats}"
    );

    // Edit the VirtualService under continuous traffic.
    let traffic = Traffic::start(fx.proxy());
    std::thread::sleep(Duration::from_millis(500));
    let edited = Instant::now();
    fx.route_cart_to("v2");
    let deadline = edited + Duration::from_secs(20);
    let moved_at = loop {
        let log = traffic.snapshot();
        if let Some((at, _)) = log
            .iter()
            .find(|(at, r)| *at > edited && r.as_deref() == Ok("cart-v2"))
        {
            break *at;
        }
        assert!(
            Instant::now() < deadline,
            "traffic never moved to v2: {:?}",
            log.last()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(1000));
    let log = traffic.finish();
    eprintln!(
        "VirtualService edit -> first response from v2: {:?} ({} requests in total)",
        moved_at - edited,
        log.len()
    );
    assert_eq!(
        failures(&log),
        Vec::<String>::new(),
        "failed requests during the edit"
    );
    let tail: Vec<&str> = log
        .iter()
        .filter(|(at, _)| *at > moved_at + Duration::from_millis(200))
        .filter_map(|(_, r)| r.as_deref().ok())
        .collect();
    assert!(
        !tail.is_empty() && tail.iter().all(|s| *s == "cart-v2"),
        "{tail:?}"
    );
    assert!(
        log.iter()
            .any(|(at, r)| *at < edited && r.as_deref() == Ok("cart-v1"))
    );

    // No Envoy restarted for the edit.
    let status = up.status().unwrap();
    for (n, pid) in ["frontend", "cart-v1", "cart-v2", "ingress"]
        .iter()
        .zip(&pids)
    {
        assert_eq!(proxy_pid(&status, n), *pid, "{n} restarted");
    }

    // proxy-config: what was sent, ACKed, and never a key.
    let deadline = Instant::now() + Duration::from_secs(20);
    let routes = loop {
        let text = proxy_config(&fx.state, "shop/frontend", "routes", "json");
        let doc: Value = serde_json::from_str(&text).unwrap();
        let t = &doc["types"][0];
        if t["acked"] == true && text.contains("outbound|8080|v2|cart.shop.svc.cluster.local") {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "routes never ACKed with v2:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(routes["proxy"], "shop/frontend");
    assert_eq!(routes["types"].as_array().unwrap().len(), 1);
    assert_eq!(routes["types"][0]["type"], "routes");
    let listeners = proxy_config(&fx.state, "shop/cart-v1", "listeners", "yaml");
    assert!(listeners.contains("127.61.0.11"), "{listeners}");
    assert!(listeners.contains("8080"), "{listeners}");
    let table = proxy_config(&fx.state, "shop/cart-v1", "all", "table");
    for word in [
        "LISTENERS",
        "CLUSTERS",
        "ENDPOINTS",
        "ROUTES",
        "ACKED",
        "FILE SECRETS",
    ] {
        assert!(table.contains(word), "{word} missing:\n{table}");
    }
    // The table summarizes each resource: a listener's address, an endpoint's addresses.
    assert!(
        table.contains("127.61.0.11_8080") && table.contains("127.61.0.11:8080"),
        "{table}"
    );
    let endpoints = proxy_config(&fx.state, "shop/frontend", "endpoints", "table");
    assert!(
        endpoints.contains("outbound|8080|v2|cart.shop.svc.cluster.local")
            && endpoints.contains("127.61.0.12:8080"),
        "{endpoints}"
    );
    let secrets = proxy_config(&fx.state, "shop/cart-v1", "secrets", "json");
    assert!(
        secrets.contains("spiffe://cluster.local/ns/shop/sa/cart"),
        "{secrets}"
    );
    let all = proxy_config(&fx.state, "shop/cart-v1", "all", "json");
    for text in [&all, &secrets, &table] {
        assert!(!text.contains("PRIVATE KEY"), "key material shown:\n{text}");
    }
    let unknown = trellis(&[
        "proxy-config",
        "--proxy",
        "shop/nope",
        "--state-dir",
        fx.state.to_str().unwrap(),
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("shop/nope"));

    // SIGTERM stops every Envoy.
    let envoys = up.envoy_pids();
    assert_eq!(envoys.len(), 4);
    assert!(
        up.terminate(),
        "trellis up exited with failure:\n{}",
        up.log()
    );
    wait_gone(&envoys);
    // What was last sent stays readable, marked as no longer connected.
    let after = proxy_config(&fx.state, "shop/frontend", "routes", "table");
    assert!(
        after.contains("(not connected)") && after.contains("ACKED"),
        "{after}"
    );
}

fn cert_serials(certs: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(certs).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for c in doc["certificates"].as_array().into_iter().flatten() {
        for cert in c["cert_chain"].as_array().into_iter().flatten() {
            if let Some(s) = cert["serial_number"].as_str() {
                out.push(s.to_string());
            }
        }
    }
    out.sort();
    out
}

fn uptime(port: u16) -> u64 {
    let info: Value = serde_json::from_str(&admin_get(port, "/server_info")).unwrap();
    let text = info["uptime_current_epoch"].as_str().unwrap_or("0s");
    text.trim_end_matches('s').parse::<f64>().unwrap_or(0.0) as u64
}

#[test]
fn certificates_rotate_under_traffic_without_envoy_restarts() {
    let fx = Fixture::new(62, &["v1"]);
    let mut up = Up::start(&fx.config, &fx.state, &["--cert-ttl", "60s"]);
    let status = up.wait_ready(2);
    wait_serving(fx.proxy(), "cart-v1");
    let names = ["frontend", "cart-v1"];
    let pids: Vec<u64> = names.iter().map(|n| proxy_pid(&status, n)).collect();
    let ports: Vec<u16> = names.iter().map(|n| admin_port(&status, n)).collect();
    let before: Vec<Vec<String>> = ports
        .iter()
        .map(|p| cert_serials(&admin_get(*p, "/certs")))
        .collect();
    assert!(before.iter().all(|s| !s.is_empty()), "{before:?}");
    let uptime_before: Vec<u64> = ports.iter().map(|p| uptime(*p)).collect();
    let started = Instant::now();

    let traffic = Traffic::start(fx.proxy());
    // Renewal is due at 50-60% of 60 s; wait until both Envoys serve a new certificate.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen: Vec<std::collections::BTreeSet<Vec<String>>> = vec![Default::default(); 2];
    loop {
        let now: Vec<Vec<String>> = ports
            .iter()
            .map(|p| cert_serials(&admin_get(*p, "/certs")))
            .collect();
        for (set, serials) in seen.iter_mut().zip(&now) {
            set.insert(serials.clone());
        }
        if now
            .iter()
            .zip(&before)
            .all(|(n, b)| !n.is_empty() && n.iter().all(|s| !b.contains(s)))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "certificates did not rotate: before {before:?} now {now:?}\n{}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Keep traffic going over the new certificates for a moment.
    std::thread::sleep(Duration::from_secs(2));
    let log = traffic.finish();
    eprintln!(
        "rotation observed after {:?}; {} requests",
        started.elapsed(),
        log.len()
    );
    assert_eq!(
        failures(&log),
        Vec::<String>::new(),
        "failed requests during rotation"
    );
    assert!(
        log.len() > 100,
        "too little traffic to prove anything: {}",
        log.len()
    );
    let elapsed = started.elapsed().as_secs();
    let status = up.status().unwrap();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(proxy_pid(&status, n), pids[i], "{n}'s Envoy restarted");
        let after = uptime(ports[i]);
        assert!(
            after + 1 >= uptime_before[i] + elapsed,
            "{n}'s Envoy uptime went from {} to {after} over {elapsed}s: it restarted",
            uptime_before[i]
        );
    }
    // The xDS server's certificate was renewed too, and a proxy that connects
    // afterwards is served over the new one.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !up.log().contains("renewed the xDS server certificate") {
        assert!(
            Instant::now() < deadline,
            "xDS server certificate not renewed:\n{}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let app = Upstream::echo("cart-v2", Ipv4Addr::LOCALHOST);
    std::fs::write(
        fx.config.join("cart-v2.yaml"),
        workload("cart-v2", "cart", "cart", "v2", fx.net, 12, app.port()),
    )
    .unwrap();
    up.wait_ready(3);

    let envoys = up.envoy_pids();
    assert!(up.terminate());
    wait_gone(&envoys);
}

#[test]
fn sigkill_leaves_no_envoy_and_a_restart_reuses_the_state_directory() {
    let mut fx = Fixture::new(63, &["v1"]);
    fx.add_tcp_service();
    let mut up = Up::start(&fx.config, &fx.state, &[]);
    let first = up.wait_ready(3);
    wait_serving(fx.proxy(), "cart-v1");
    // A TCP service through its explicit outbound port, over mTLS.
    fx.wait_db();
    let db_port = fx.db_port();
    let root = std::fs::read(fx.state.join("ca/root-cert.pem")).unwrap();
    let envoys = up.envoy_pids();
    assert_eq!(envoys.len(), 3);

    up.kill();
    wait_gone(&envoys);
    drop(up);

    std::fs::remove_file(fx.state.join("status.json")).unwrap();
    let mut up = Up::start(&fx.config, &fx.state, &[]);
    let second = up.wait_ready(3);
    assert_eq!(
        std::fs::read(fx.state.join("ca/root-cert.pem")).unwrap(),
        root
    );
    assert_eq!(second["xdsAddress"], first["xdsAddress"]);
    assert_eq!(fx.db_port(), db_port, "the TCP outbound port moved");
    for n in ["frontend", "cart-v1", "db"] {
        let pick = |s: &Value| {
            s["proxies"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == n)
                .map(|p| {
                    (
                        p["address"].clone(),
                        p["adminPort"].clone(),
                        p["identity"].clone(),
                    )
                })
        };
        assert_eq!(pick(&second), pick(&first), "{n}");
    }
    // The app keeps using the same proxy address: no failed request once the proxies are back.
    wait_serving(fx.proxy(), "cart-v1");
    let traffic = Traffic::start(fx.proxy());
    std::thread::sleep(Duration::from_secs(3));
    let log = traffic.finish();
    assert!(log.len() > 20, "{}", log.len());
    assert_eq!(failures(&log), Vec::<String>::new());
    fx.wait_db();

    // Ctrl-C (SIGINT) stops every Envoy as well.
    let envoys = up.envoy_pids();
    signal(up.pid(), "INT");
    assert!(up.wait_exit(), "trellis up failed on SIGINT:\n{}", up.log());
    wait_gone(&envoys);
}

#[test]
fn a_rejected_update_keeps_the_last_good_config_and_proxy_config_shows_the_nack() {
    let fx = Fixture::new(64, &["v1", "v2"]);
    fx.route_cart_to("v1");
    let mut up = Up::start(&fx.config, &fx.state, &[]);
    up.wait_ready(3);
    wait_serving(fx.proxy(), "cart-v1");
    let routes_doc = || -> Value {
        serde_json::from_str(&proxy_config(&fx.state, "shop/frontend", "routes", "json")).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while routes_doc()["types"][0]["acked"] != true {
        assert!(Instant::now() < deadline, "routes never ACKed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let good = routes_doc()["types"][0]["ackedVersion"].clone();

    // Valid for Istio's schema and for our validation, refused by Envoy: its RE2 program
    // (38004) is over the limit even our bootstrap's runtime sets (32768). Envoy NACKs.
    let traffic = Traffic::start(fx.proxy());
    write_atomically(
        &fx.config.join("vs.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart, namespace: shop}\n\
         spec:\n  hosts: [cart]\n  http:\n  - match:\n    - uri: {regex: \"^/(abcdefghijklmnopqrstuvwxyz0123456789){1000}$\"}\n    \
         route:\n    - destination: {host: cart, subset: v1}\n  - route:\n    - destination: {host: cart, subset: v2}\n",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let rejected = loop {
        let doc = routes_doc();
        if doc["types"][0]["nack"].is_object() {
            break doc;
        }
        assert!(Instant::now() < deadline, "no NACK recorded: {doc}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let t = &rejected["types"][0];
    assert_eq!(t["acked"], false);
    assert_eq!(
        t["ackedVersion"], good,
        "the proxy stays on its last ACKed version"
    );
    assert!(
        t["nack"]["message"]
            .as_str()
            .unwrap()
            .contains("program size"),
        "{t}"
    );
    let table = proxy_config(&fx.state, "shop/frontend", "routes", "table");
    assert!(table.contains("NACKED"), "{table}");
    let status = trellis(&["status", "--state-dir", fx.state.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("NACK"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    // Meanwhile the last good routes keep serving v1, without a failure.
    std::thread::sleep(Duration::from_millis(500));
    let log = traffic.finish();
    assert_eq!(failures(&log), Vec::<String>::new());
    assert!(
        log.iter().all(|(_, r)| r.as_deref() == Ok("cart-v1")),
        "traffic left the last good config"
    );

    // Fixing the file is ACKed and applied.
    fx.route_cart_to("v2");
    wait_serving(fx.proxy(), "cart-v2");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc = routes_doc();
        if doc["types"][0]["acked"] == true && doc["types"][0]["nack"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "fix never ACKed: {doc}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let envoys = up.envoy_pids();
    assert!(up.terminate());
    wait_gone(&envoys);
}

#[test]
fn gateway_ports_below_1024_move_up_by_the_offset_when_not_root() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new(65, &["v1"]);
    fx.add_gateway(80);
    // trellis up (and its Envoys) run as nobody: the directories must be theirs to use.
    let base = fx.config.parent().unwrap();
    for dir in [base, fx.config.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let listen = trellis_e2e::free_port();
    let offset = (listen - 80).to_string();
    // As root, drop to nobody; a test run that is not root is already what this checks.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let wrapper: &[&str] = if root {
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]
    } else {
        &[]
    };
    let mut up = Up::start_via(
        wrapper,
        &fx.config,
        &fx.state,
        &["--gateway-port-offset", &offset],
    );
    up.wait_ready(3);
    let gateway = SocketAddr::from(([127, 0, 0, 1], listen));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call_cart(gateway, "shop.example.com") {
            Ok(server) if server == "cart-v1" => break,
            other => assert!(
                Instant::now() < deadline,
                "no gateway on 80 + {offset} = {listen}: {other:?}\n{}",
                up.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let listeners = proxy_config(&fx.state, "shop/ingress", "listeners", "json");
    assert!(
        listeners.contains(&format!("127.0.0.1_{listen}")),
        "{listeners}"
    );
    let envoys = up.envoy_pids();
    assert!(up.terminate(), "{}", up.log());
    wait_gone(&envoys);
}

/// The Envoy log levels an admin endpoint reports (`POST /logging` lists them).
fn log_levels(port: u16) -> String {
    HttpRequest::new("POST", "/logging")
        .timeout(Duration::from_secs(5))
        .send(SocketAddr::from(([127, 0, 0, 1], port)))
        .map(|r| r.body_text())
        .unwrap_or_else(|e| panic!("admin {port}/logging: {e}"))
}

/// A MeshConfig in the directory sets what it sets in a cluster, over the
/// flags: the workload certificates' lifetime (checked with openssl) and the
/// Envoys' log level, which a running Envoy takes without a restart.
#[test]
fn mesh_config_sets_certificate_lifetime_and_envoy_log_level() {
    let fx = Fixture::new(63, &["v1"]);
    let mesh_config = |level: &str| {
        format!(
            "apiVersion: mesh.trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: default}}\n\
             spec:\n  workloadCertTtl: 2h\n  proxy: {{logLevel: {level}}}\n"
        )
    };
    write_atomically(&fx.config.join("mesh.yaml"), &mesh_config("debug"));
    let mut up = Up::start(&fx.config, &fx.state, &[]);
    let status = up.wait_ready(2);
    let cert = fx.state.join("certs/shop/cart/cert-chain.pem");
    let valid_for = |seconds: u64| {
        Command::new("openssl")
            .args(["x509", "-noout", "-checkend", &seconds.to_string(), "-in"])
            .arg(&cert)
            .status()
            .expect("openssl")
            .success()
    };
    // The flag's 24 h would still be valid in 3 h.
    assert!(valid_for(3600) && !valid_for(3 * 3600), "{}", up.log());

    let port = admin_port(&status, "cart-v1");
    let pid = proxy_pid(&status, "cart-v1");
    assert!(log_levels(port).contains(": debug"), "{}", log_levels(port));
    write_atomically(&fx.config.join("mesh.yaml"), &mesh_config("error"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_levels(port).contains(": debug") {
        assert!(
            Instant::now() < deadline,
            "log level unchanged:\n{}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(log_levels(port).contains(": error"), "{}", log_levels(port));
    assert_eq!(
        proxy_pid(&up.status().unwrap(), "cart-v1"),
        pid,
        "Envoy restarted"
    );
}
