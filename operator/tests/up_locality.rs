//! Locality load balancing in universal mode: `trellis up` runs real Envoys
//! for WorkloadEntries with a `locality`, and each client sidecar is given
//! priorities and weights relative to its own locality.
//!
//! - failover (a DestinationRule with outlier detection, Istio's default
//!   `localityLbSetting`): each client stays in its own zone while the
//!   endpoint there is up, and fails over to the other zone when it is down;
//! - `distribute`: clients of each zone split their requests by the weights
//!   the rule gives them (counted, wide bounds);
//! - the MeshConfig's setting applies to a rule without its own;
//! - `trellis proxy-config` shows each client its endpoints' priorities.
//!
//! An endpoint ejected early (before its sidecar listens) comes back after
//! 30 s, within the 60 s the tests wait for a first answer from it.
//!
//! Every process is killed by PID in a Drop guard; waits are bounded by counts.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use trellis_e2e::{HttpRequest, Upstream};

mod up_support;
use up_support::{Up, proxy_config};

/// Two clients (`frontend` in us-east/zone-a, `backoffice` in
/// us-east/zone-b) and `cart` in both zones, on `127.<net>.0.x`.
struct Zones {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    net: u8,
    cart_a: Option<Upstream>,
    _apps: Vec<Upstream>,
}

fn workload_entry(name: &str, app: &str, host: (u8, u8), app_port: u16, locality: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: shop}}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: shop\n  \
         annotations: {{local.trellis.dev/app-port: \"{app_port}\"}}\nspec:\n  address: 127.{}.0.{}\n  \
         serviceAccount: {name}\n  labels: {{app: {app}}}\n  locality: {locality}\n",
        host.0, host.1
    )
}

impl Zones {
    fn new(net: u8, destination_rule: &str) -> Zones {
        Self::with_mesh_config(net, destination_rule, None)
    }

    /// [`Zones::new`] with a MeshConfig `default` of `spec` (YAML, indented by two).
    fn with_mesh_config(net: u8, destination_rule: &str, mesh_config: Option<&str>) -> Zones {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        let state = tmp.path().join("state");
        std::fs::create_dir(&config).unwrap();
        let mut apps = Vec::new();
        let mut docs = vec![
            "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\n\
             spec:\n  selector: {app: cart}\n  ports:\n  - {name: http, port: 8080, targetPort: 8080}\n"
                .to_string(),
            format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: cart, namespace: shop}}\n\
                 spec:\n  host: cart\n  trafficPolicy:\n{destination_rule}"
            ),
        ];
        if let Some(spec) = mesh_config {
            docs.push(format!(
                "apiVersion: mesh.trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: default}}\nspec:\n{spec}"
            ));
        }
        let clients = [
            ("frontend", 10, "us-east/zone-a"),
            ("backoffice", 20, "us-east/zone-b"),
        ];
        for (name, host, locality) in clients {
            let app = Upstream::echo(name, Ipv4Addr::LOCALHOST);
            docs.push(workload_entry(
                name,
                name,
                (net, host),
                app.port(),
                locality,
            ));
            apps.push(app);
        }
        let cart_a = Upstream::echo("cart-a", Ipv4Addr::LOCALHOST);
        docs.push(workload_entry(
            "cart-a",
            "cart",
            (net, 11),
            cart_a.port(),
            "us-east/zone-a",
        ));
        let cart_b = Upstream::echo("cart-b", Ipv4Addr::LOCALHOST);
        docs.push(workload_entry(
            "cart-b",
            "cart",
            (net, 21),
            cart_b.port(),
            "us-east/zone-b",
        ));
        apps.push(cart_b);
        std::fs::write(config.join("mesh.yaml"), docs.join("---\n")).unwrap();
        Zones {
            _tmp: tmp,
            config,
            state,
            net,
            cart_a: Some(cart_a),
            _apps: apps,
        }
    }

    /// The outbound HTTP proxy of the client at `127.<net>.0.<host>`.
    fn proxy(&self, host: u8) -> SocketAddr {
        SocketAddr::from(([127, self.net, 0, host], 15001))
    }

    fn start(&self) -> Up {
        let mut up = Up::start(&self.config, &self.state, &[]);
        up.wait_ready(4);
        up
    }
}

const FRONTEND: u8 = 10;
const BACKOFFICE: u8 = 20;

/// Calls `cart` through a client's sidecar: the upstream that answered, or the failure.
fn call_cart(proxy: SocketAddr) -> Result<String, String> {
    let r = HttpRequest::get("/items")
        .host("cart:8080")
        .timeout(Duration::from_secs(5))
        .send(proxy)
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.body_text()));
    }
    Ok(r.json()["server"].as_str().unwrap_or("?").to_string())
}

/// Calls until one is answered by `server` (bounded), failing with the answers seen.
fn until_served_by(proxy: SocketAddr, server: &str, up: &Up) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let r = call_cart(proxy);
        if r.as_deref() == Ok(server) {
            return;
        }
        seen.push(r);
        assert!(
            Instant::now() < deadline,
            "{proxy} never reached {server}; answers: {seen:?}\nlog:\n{}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Who answered `n` calls (failures counted under their message).
fn answers(proxy: SocketAddr, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for _ in 0..n {
        let who = call_cart(proxy).unwrap_or_else(|e| format!("error: {e}"));
        *out.entry(who).or_insert(0) += 1;
    }
    out
}

#[test]
fn each_client_prefers_its_own_zone_and_fails_over_when_the_endpoint_there_is_down() {
    let mut zones = Zones::new(
        71,
        "    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}\n",
    );
    let up = zones.start();
    until_served_by(zones.proxy(FRONTEND), "cart-a", &up);
    until_served_by(zones.proxy(BACKOFFICE), "cart-b", &up);
    // Each client's own zone only (without locality priorities, about half
    // would go to the other zone).
    let frontend = answers(zones.proxy(FRONTEND), 40);
    assert_eq!(frontend.get("cart-a"), Some(&40), "frontend: {frontend:?}");
    let backoffice = answers(zones.proxy(BACKOFFICE), 40);
    assert_eq!(
        backoffice.get("cart-b"),
        Some(&40),
        "backoffice: {backoffice:?}"
    );
    // `trellis proxy-config` shows each endpoint's locality and priority for that proxy.
    let table = proxy_config(&zones.state, "shop/frontend", "endpoints", "table");
    assert!(
        table.contains("127.71.0.11:8080 (us-east/zone-a p0)")
            && table.contains("127.71.0.21:8080 (us-east/zone-b p1)"),
        "{table}"
    );
    let table = proxy_config(&zones.state, "shop/backoffice", "endpoints", "table");
    assert!(
        table.contains("127.71.0.11:8080 (us-east/zone-a p1)")
            && table.contains("127.71.0.21:8080 (us-east/zone-b p0)"),
        "{table}"
    );

    // zone-a's cart stops: its sidecar answers 503, frontend's outlier
    // detection ejects it, and frontend fails over to zone-b.
    drop(zones.cart_a.take());
    until_served_by(zones.proxy(FRONTEND), "cart-b", &up);
    let after = answers(zones.proxy(FRONTEND), 20);
    assert_eq!(
        after.get("cart-b"),
        Some(&20),
        "frontend after failover: {after:?}"
    );
    let backoffice = answers(zones.proxy(BACKOFFICE), 20);
    assert_eq!(
        backoffice.get("cart-b"),
        Some(&20),
        "backoffice: {backoffice:?}"
    );
}

#[test]
fn distribute_splits_each_zones_requests_by_its_weights() {
    let zones = Zones::new(
        72,
        "    loadBalancer:\n      simple: ROUND_ROBIN\n      localityLbSetting:\n        distribute:\n\
         \x20       - from: us-east/zone-a/*\n          to: {\"us-east/zone-a/*\": 80, \"us-east/zone-b/*\": 20}\n\
         \x20       - from: us-east/zone-b/*\n          to: {\"us-east/zone-a/*\": 20, \"us-east/zone-b/*\": 80}\n",
    );
    let up = zones.start();
    until_served_by(zones.proxy(FRONTEND), "cart-a", &up);
    until_served_by(zones.proxy(BACKOFFICE), "cart-b", &up);
    let n = 200;
    // Expected 160/40 from zone-a and 40/160 from zone-b; an even split
    // (no weights) would be 100/100.
    let frontend = answers(zones.proxy(FRONTEND), n);
    let local = frontend.get("cart-a").copied().unwrap_or(0);
    let remote = frontend.get("cart-b").copied().unwrap_or(0);
    assert_eq!(local + remote, n, "frontend: {frontend:?}");
    assert!((125..=190).contains(&local), "frontend: {frontend:?}");
    let backoffice = answers(zones.proxy(BACKOFFICE), n);
    let local = backoffice.get("cart-b").copied().unwrap_or(0);
    let remote = backoffice.get("cart-a").copied().unwrap_or(0);
    assert_eq!(local + remote, n, "backoffice: {backoffice:?}");
    assert!((125..=190).contains(&local), "backoffice: {backoffice:?}");
}

#[test]
fn the_mesh_config_setting_applies_to_a_rule_without_its_own() {
    let zones = Zones::with_mesh_config(
        73,
        "    connectionPool: {tcp: {maxConnections: 100}}\n",
        Some(
            "  localityLbSetting:\n    distribute:\n    - from: us-east/zone-a/*\n      to: {\"us-east/zone-b/*\": 100}\n",
        ),
    );
    let up = zones.start();
    until_served_by(zones.proxy(FRONTEND), "cart-b", &up);
    until_served_by(zones.proxy(BACKOFFICE), "cart-b", &up);
    // zone-a's clients are sent to zone-b only; zone-b's, whom no `from`
    // names, to both zones.
    let frontend = answers(zones.proxy(FRONTEND), 30);
    assert_eq!(frontend.get("cart-b"), Some(&30), "frontend: {frontend:?}");
    until_served_by(zones.proxy(BACKOFFICE), "cart-a", &up);
}
