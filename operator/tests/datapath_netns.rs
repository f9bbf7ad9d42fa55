//! The data path as it is in a cluster: two network namespaces stand for two
//! pods `shop/a-1` (service account `a`) and `shop/b-1` (service account `b`,
//! behind Service `b` with a ClusterIP the test picks), joined by a veth pair.
//! In each: the real `trellis proxy-init` rules, the app (`trellis demo-app`;
//! a's calls b by its ClusterIP on every request it gets), and a real Envoy
//! sidecar running as uid 1337 in the Kubernetes interception shape
//! (outbound 15001, inbound 15006), configured over ADS by the trellis xDS
//! server (`trellis-xds` serving `trellis-sources`' `ModelSnapshots`, the source
//! the Kubernetes reflectors feed and push through) with SPIFFE identities from
//! `trellis-ca`. The model is built in the test, as the reflectors would build it.
//!
//! Addresses: the pods' 10.252.<n>.1/.2 on the veth pair, the ClusterIP
//! 10.96.<n>.10 routed (in pod `a` only) onto that pair, and loopback. The xDS
//! server listens on 127.0.0.1 of the test's own namespace; the Envoys reach it
//! through a Unix socket the test bridges to it (a filesystem socket crosses
//! network namespaces without any route out of them).
//!
//! Certificates: every pod has `etc/certs/` under its own directory and its
//! Envoy runs there, so the same file-SDS paths the operator serves every proxy
//! (relative `etc/certs/sds-*.yaml`, standing for the mounted identity Secret)
//! resolve to each pod's own identity.
//!
//! Helper processes (requests to a's app and a plain client in pod a, Envoy admin
//! queries on the pods' loopback) are this test
//! executable re-run inside a namespace (`ip netns exec`), as in `proxy_init.rs`.
//! Every process is started with `setpriv --pdeathsig KILL` and killed by PID
//! in a guard; the namespaces are deleted in `Drop`, also when the test fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use trellis_e2e::HttpRequest;
use trellis_e2e::mesh::{Identity, test_ca};
use trellis_local::bootstrap::{BootstrapSpec, SdsFiles, ServerSan, bootstrap};
use trellis_model::{MeshModel, MeshSettings, MtlsMode, Resource, Workload};
use trellis_sources::ModelSnapshots;
use trellis_translate::{ListenerShape, SdsSource, TranslateOptions};
use trellis_xds::{ProxyId, ProxyKind, PushScope, TlsSettings, XdsConfig, XdsServer};

const ROLE_ENV: &str = "TRELLIS_DATAPATH_ROLE";
const ARG_ENV: &str = "TRELLIS_DATAPATH_ARG";
const NS: &str = "shop";
const APP_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;
/// A port pod b's app also serves that no Service declares.
const UNDECLARED_PORT: u16 = 8090;
/// Another undeclared port of pod b, PERMISSIVE by its PeerAuthentication's
/// `portLevelMtls` while the mesh is STRICT.
const PERMISSIVE_PORT: u16 = 8092;
const ADMIN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 15000);
const XDS_SERVER_NAME: &str = "trellis-xds.trellis-system.svc";
const CERT_DIR: &str = "etc/certs";
const A_ID: &str = "spiffe://cluster.local/ns/shop/sa/a";
const B_ID: &str = "spiffe://cluster.local/ns/shop/sa/b";
const WAIT: Duration = Duration::from_secs(60);

mod netns_support;
use netns_support::{Netns, require, run, trellis};

fn require_root() {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("running id -u");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        uid, "0",
        "this test creates network namespaces and iptables rules: it must run as root"
    );
}

impl Netns {
    /// `ip netns exec <ns> setpriv --pdeathsig KILL [as uid] <program> <args>`.
    fn spawn_guarded(&self, uid: Option<u32>, program: &str, args: &[&str]) -> Command {
        let mut full = vec!["--pdeathsig".to_string(), "KILL".to_string()];
        if let Some(uid) = uid {
            full.extend([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
            ]);
        }
        full.push(program.to_string());
        full.extend(args.iter().map(|a| a.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.exec("setpriv", &full)
    }
}

/// A long-running process (app, Envoy), killed by PID on drop.
struct Proc {
    what: String,
    child: Child,
    log: Option<PathBuf>,
}

impl Proc {
    fn start(what: &str, mut cmd: Command, log: Option<PathBuf>) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what} ({cmd:?}): {e}"));
        Proc {
            what: what.to_string(),
            child,
            log,
        }
    }

    fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}); log:\n{}", self.what, self.log_text());
        }
    }

    fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n")
            })
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One pod: its namespace, address, directory (Envoy's working directory) and identity.
struct Pod {
    ns: Netns,
    name: String,
    sa: String,
    ip: Ipv4Addr,
    dir: PathBuf,
}

impl Pod {
    fn proxy(&self) -> ProxyId {
        ProxyId::new(ProxyKind::Sidecar, NS, &self.name, &self.sa)
    }

    /// Writes the pod's identity (file SDS under `etc/certs`) and its Envoy bootstrap.
    fn write_files(&self, ca: &trellis_ca::CertificateAuthority, xds_socket: &Path) -> PathBuf {
        std::fs::create_dir_all(&self.dir).unwrap();
        // Envoy runs as uid 1337 and writes its log here.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        Identity::issue_with_relative_sds(ca, &self.dir, CERT_DIR, NS, &self.sa);
        let spec = BootstrapSpec {
            node_id: self.proxy().node_id(&self.ip.to_string(), "cluster.local"),
            node_cluster: format!("{}.{NS}", self.sa),
            node_metadata: BTreeMap::from([("SERVICE_ACCOUNT".to_string(), self.sa.clone())]),
            admin: SocketAddr::V4(ADMIN),
            // replaced by the Unix socket below
            xds: SocketAddr::from((Ipv4Addr::LOCALHOST, 15012)),
            xds_server_san: ServerSan::Dns(XDS_SERVER_NAME.into()),
            cert_dir: PathBuf::from(CERT_DIR),
            out_dir: self.dir.clone(),
        };
        let sds = SdsFiles {
            workload_cert: Path::new(CERT_DIR).join("sds-cert.yaml"),
            root_ca: Path::new(CERT_DIR).join("sds-root.yaml"),
        };
        let mut doc = bootstrap(&spec, &sds);
        let endpoint = &mut doc["static_resources"]["clusters"][0]["load_assignment"]["endpoints"]
            [0]["lb_endpoints"][0]["endpoint"];
        assert!(endpoint["address"]["socket_address"].is_object(), "{doc}");
        endpoint["address"] = serde_json::json!({"pipe": {"path": xds_socket.to_string_lossy()}});
        let path = self.dir.join("envoy.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        path
    }

    fn start_envoy(&self, bootstrap: &Path) -> Proc {
        let log = self.dir.join("envoy.log");
        let envoy = trellis_e2e::envoy_bin();
        let (bootstrap, log_s) = (bootstrap.to_string_lossy(), log.to_string_lossy());
        let mut cmd = self.ns.spawn_guarded(
            Some(1337),
            &envoy.to_string_lossy(),
            &[
                "-c",
                &bootstrap,
                "--disable-hot-restart",
                "--log-path",
                &log_s,
                "-l",
                "info",
                "--concurrency",
                "1",
            ],
        );
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Proc::start(&format!("envoy of {}", self.name), cmd, Some(log))
    }

    /// The app: `trellis demo-app` listening on the app port, calling `calls` (URLs)
    /// on every request, directly as an app in a pod does (no `HTTP_PROXY`).
    fn start_app(&self, calls: &[String]) -> Proc {
        self.start_app_on(APP_PORT, calls)
    }

    /// [`Pod::start_app`] listening on `port`.
    fn start_app_on(&self, port: u16, calls: &[String]) -> Proc {
        let listen = format!("0.0.0.0:{port}");
        let mut args = vec!["demo-app", "--name", &self.name, "--listen", &listen];
        for call in calls {
            args.extend(["--call", call.as_str()]);
        }
        let mut cmd = self.ns.spawn_guarded(None, trellis(), &args);
        cmd.env_remove("HTTP_PROXY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Proc::start(&format!("app of {}", self.name), cmd, None)
    }

    /// One HTTP GET from inside the pod (optionally as `uid`): (status, body); status 0
    /// when no response came.
    fn get(&self, uid: Option<u32>, to: SocketAddrV4, host: &str, path: &str) -> (u16, String) {
        let exe = std::env::current_exe().expect("the test executable");
        let args = ["--exact", "netns_helper", "--nocapture", "--test-threads=1"];
        let mut cmd = self.ns.spawn_guarded(uid, &exe.to_string_lossy(), &args);
        cmd.env(ROLE_ENV, "get")
            .env(ARG_ENV, format!("{to} {host} {path}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = Proc::start("http helper", cmd, None);
        let stdout = child.child.stdout.take().expect("piped stdout");
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("reading the helper");
            if let Some(at) = line.find("RESULT ") {
                let rest = &line[at + "RESULT ".len()..];
                let (status, body) = rest.split_once(' ').expect("status and body");
                let body: String = serde_json::from_str(body).expect("a JSON string");
                return (status.parse().expect("a status"), body);
            }
        }
        panic!("the helper in {} ended without a result", self.ns.name);
    }

    fn admin(&self, path: &str) -> String {
        let (status, body) = self.get(None, ADMIN, "admin", path);
        assert_eq!(status, 200, "admin {path} of {}: {body}", self.name);
        body
    }

    fn stats(&self) -> BTreeMap<String, u64> {
        self.admin("/stats")
            .lines()
            .filter_map(|l| l.rsplit_once(": "))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect()
    }
}

/// Waits (bounded) until `probe` returns something, checking that `procs` still run.
fn wait_for<T>(what: &str, procs: &mut [&mut Proc], mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        for p in procs.iter_mut() {
            p.check_running();
        }
        if let Some(v) = probe() {
            return v;
        }
        if start.elapsed() > WAIT {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| format!("--- {} ---\n{}", p.what, p.log_text()))
                .collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sum_matching(stats: &BTreeMap<String, u64>, prefix: &str, suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
        .map(|(_, v)| v)
        .sum()
}

fn authorization_policy(principal: &str) -> Resource {
    let ap: trellis_api::security::AuthorizationPolicy =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "b-allow-a", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "b"}},
                "action": "ALLOW",
                "rules": [{
                    "from": [{"source": {"principals": [principal]}}],
                    "to": [{"operation": {"paths": ["/hello"]}}]
                }, {
                    "from": [{"source": {"principals": [principal]}}],
                    "to": [{"operation": {"ports": [RANGE_APP_PORT.to_string()]}}]
                }, {
                    "to": [{"operation": {"ports": [PERMISSIVE_PORT.to_string()]}}]
                }]
            }
        }))
        .expect("AuthorizationPolicy");
    Resource::AuthorizationPolicy(Box::new(ap))
}

/// The port of ServiceEntry `b-range`, whose address is a CIDR range, and
/// the (TCP) port of pod b's app behind it.
const RANGE_PORT: u16 = 9000;
const RANGE_APP_PORT: u16 = 8091;

/// The CIDR range ServiceEntry `b-range` claims for pod b (nothing else answers there).
fn b_range(n: u8) -> String {
    format!("10.97.{n}.0/24")
}

fn model(a: &Pod, b: &Pod, cluster_ip: Ipv4Addr, principal: &str) -> MeshModel {
    let mut m = MeshModel::new(MeshSettings {
        default_mtls: MtlsMode::Strict,
        ..Default::default()
    });
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "b", "namespace": NS},
        "spec": {
            "selector": {"app": "b"},
            "clusterIP": cluster_ip.to_string(),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": APP_PORT}]
        }
    }))
    .expect("Service");
    m.apply(Resource::Service(Box::new(svc))).unwrap();
    for pod in [a, b] {
        let mut w = Workload::new(NS, &pod.name, pod.ip.to_string());
        w.labels = BTreeMap::from([("app".to_string(), pod.sa.clone())]);
        w.service_account = pod.sa.clone();
        w.has_sidecar = true;
        m.apply(Resource::Workload(Box::new(w))).unwrap();
    }
    m.apply(authorization_policy(principal)).unwrap();
    let ports: trellis_api::security::PeerAuthentication =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "b-ports", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "b"}},
                "portLevelMtls": {PERMISSIVE_PORT.to_string(): {"mode": "PERMISSIVE"}}
            }
        }))
        .expect("PeerAuthentication");
    m.apply(Resource::PeerAuthentication(Box::new(ports)))
        .unwrap();
    // Pod b again, as a ServiceEntry claiming a whole CIDR range on RANGE_PORT.
    let range: trellis_api::networking::ServiceEntry =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "b-range", "namespace": NS},
            "spec": {
                "hosts": ["b-range.internal"],
                "addresses": [b_range(cluster_ip.octets()[2])],
                "ports": [{"number": RANGE_PORT, "name": "tcp", "protocol": "TCP", "targetPort": RANGE_APP_PORT}],
                "resolution": "STATIC",
                "workloadSelector": {"labels": {"app": "b"}}
            }
        }))
        .expect("ServiceEntry");
    m.apply(Resource::ServiceEntry(Box::new(range))).unwrap();
    // Another TCP service on that port, without an address: only the range
    // tells b-range's connections apart from its.
    let other: trellis_api::networking::ServiceEntry = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "elsewhere", "namespace": NS},
        "spec": {
            "hosts": ["elsewhere.internal"],
            "ports": [{"number": RANGE_PORT, "name": "tcp", "protocol": "TCP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1"}]
        }
    }))
    .expect("ServiceEntry");
    m.apply(Resource::ServiceEntry(Box::new(other))).unwrap();
    m
}

/// The xDS server on 127.0.0.1 (in the test's namespace) and the Unix socket bridged to it.
struct ControlPlane {
    runtime: tokio::runtime::Runtime,
    server: XdsServer,
    snapshots: Arc<ModelSnapshots>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ControlPlane {
    fn start(ca: &trellis_ca::CertificateAuthority, socket: &Path) -> ControlPlane {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _enter = runtime.enter();
        let snapshots = ModelSnapshots::new(TranslateOptions {
            shape: ListenerShape::Interception,
            sds: SdsSource::Files {
                workload_cert_file: format!("{CERT_DIR}/sds-cert.yaml"),
                trust_bundle_file: format!("{CERT_DIR}/sds-root.yaml"),
                watched_directory: None,
            },
        });
        let server = XdsServer::new(XdsConfig::new("cluster.local"), snapshots.clone());
        let cert = ca
            .issue_server_cert(
                &[XDS_SERVER_NAME.to_string()],
                Duration::from_secs(3600),
                SystemTime::now(),
            )
            .unwrap();
        let tls = TlsSettings::from_pem(
            &cert.cert_chain_pem,
            cert.key_pem.expose(),
            &cert.root_cert_pem,
        )
        .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = server.clone();
        runtime.spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = serving.serve(listener, tls, shutdown).await {
                eprintln!("xDS server: {e}");
            }
        });
        let unix = tokio::net::UnixListener::bind(socket).unwrap();
        // Envoy runs as uid 1337: connecting needs write permission on the socket.
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o777)).unwrap();
        runtime.spawn(async move {
            while let Ok((mut from, _)) = unix.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut to) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
                    }
                });
            }
        });
        ControlPlane {
            runtime,
            server,
            snapshots,
            stop: Some(stop),
        }
    }

    fn serve_model(&self, model: MeshModel) {
        let _enter = self.runtime.enter();
        self.snapshots.set(Arc::new(model), Default::default());
        self.server.push(PushScope::All);
    }

    fn in_sync(&self, proxy: &ProxyId) -> bool {
        self.server
            .proxy_status(proxy)
            .is_some_and(|s| s.in_sync() && s.nacks().is_empty())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[test]
fn sidecars_over_xds_carry_mtls_between_pods_and_authorization_denies_with_403() {
    require_root();
    require("ip");
    require("setpriv");
    require("iptables-restore");
    // Panics with "run make setup" when Envoy is missing.
    trellis_e2e::envoy_bin();

    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let n = 10 + (std::process::id() % 200) as u8;
    let base = format!("trellis-dp-{}", std::process::id());
    let pod = |name: &str, sa: &str, host: u8| Pod {
        ns: Netns::create(format!("{base}-{sa}")),
        name: name.to_string(),
        sa: sa.to_string(),
        ip: Ipv4Addr::new(10, 252, n, host),
        dir: tmp.path().join(sa),
    };
    let a = pod("a-1", "a", 1);
    let b = pod("b-1", "b", 2);
    let cluster_ip = Ipv4Addr::new(10, 96, n, 10);
    // The veth pair is created inside `a`, so its names cannot clash with the host's.
    a.ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.ns.name,
    ]);
    for p in [&a, &b] {
        p.ns.ip(&["addr", "add", &format!("{}/24", p.ip), "dev", "eth0"]);
        p.ns.ip(&["link", "set", "eth0", "up"]);
    }
    // Like a node's service routing: the ClusterIP leaves pod a on its interface
    // (the sidecar catches it first).
    a.ns.ip(&["route", "add", &format!("{cluster_ip}/32"), "dev", "eth0"]);
    a.ns.ip(&["route", "add", &b_range(n), "dev", "eth0"]);

    let ca = test_ca();
    let socket = tmp.path().join("xds.sock");
    let cp = ControlPlane::start(&ca, &socket);
    cp.serve_model(model(
        &a,
        &b,
        cluster_ip,
        A_ID.trim_start_matches("spiffe://"),
    ));

    for p in [&a, &b] {
        run(&mut p.ns.exec(trellis(), &["proxy-init"]));
    }
    // The app in pod a calls service b by its ClusterIP on every request it gets:
    // a path b's policy allows for a's identity, and one it does not.
    let service = SocketAddrV4::new(cluster_ip, SERVICE_PORT);
    let calls = [
        format!("http://{service}/hello"),
        format!("http://{service}/admin"),
    ];
    let mut app_a = a.start_app(&calls);
    let mut app_b = b.start_app(&[]);
    let mut undeclared_app_b = b.start_app_on(UNDECLARED_PORT, &[]);
    let mut range_app_b = b.start_app_on(RANGE_APP_PORT, &[]);
    let mut permissive_app_b = b.start_app_on(PERMISSIVE_PORT, &[]);
    let mut envoys: Vec<Proc> = [&a, &b]
        .iter()
        .map(|p| {
            let bootstrap = p.write_files(&ca, &socket);
            p.start_envoy(&bootstrap)
        })
        .collect();
    let (envoy_a, rest) = envoys.split_first_mut().unwrap();
    let envoy_b = &mut rest[0];

    for p in [&a, &b] {
        let proxy = p.proxy();
        wait_for(
            &format!("{} ACKing its configuration", p.name),
            &mut [&mut *envoy_a, &mut *envoy_b, &mut app_a, &mut app_b],
            || cp.in_sync(&proxy).then_some(()),
        );
        wait_for(
            &format!("envoy of {} LIVE", p.name),
            &mut [&mut *envoy_a, &mut *envoy_b],
            || {
                let (status, body) = p.get(None, ADMIN, "admin", "/ready");
                (status == 200 && body.trim() == "LIVE").then_some(())
            },
        );
    }

    // Ask pod a's app (on its loopback, which is not captured) to make its calls.
    let app_a_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, APP_PORT);
    let app_calls = |wanted: u16| {
        let (status, body) = a.get(None, app_a_addr, "a", "/");
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        (answer["calls"][0]["status"] == wanted).then_some((status, answer))
    };
    let (_, answer) = wait_for(
        "pod a's app reaching service b",
        &mut [&mut *envoy_a, &mut *envoy_b, &mut app_a, &mut app_b],
        || app_calls(200),
    );
    let hello = &answer["calls"][0];
    assert_eq!(hello["body"]["service"], "b-1", "{answer}");
    assert_eq!(hello["body"]["path"], "/hello", "{answer}");
    // The path the policy does not allow: RBAC denies it with 403.
    let admin = &answer["calls"][1];
    assert_eq!(admin["status"], 403, "{answer}");
    assert_eq!(admin["body"], "RBAC: access denied", "{answer}");

    // The hop was mTLS: a's sidecar handshook with b and checked b's SPIFFE id ...
    let stats_a = a.stats();
    let to_b = format!("cluster.outbound|{SERVICE_PORT}||b.shop.svc.cluster.local.");
    assert!(
        sum_matching(&stats_a, &to_b, "ssl.handshake") >= 1,
        "no TLS handshake from a to b: {:?}",
        stats_a
            .iter()
            .filter(|(k, _)| k.contains("ssl"))
            .collect::<Vec<_>>()
    );
    assert_eq!(sum_matching(&stats_a, &to_b, "ssl.fail_verify_san"), 0);
    let clusters_a = a.admin("/config_dump?resource=dynamic_active_clusters");
    assert!(
        clusters_a.contains(B_ID),
        "a's cluster for b does not check b's SPIFFE id {B_ID}"
    );
    // ... b's sidecar required and verified a client certificate on its inbound port ...
    let stats_b = b.stats();
    assert!(
        sum_matching(&stats_b, "listener.0.0.0.0_15006.", "ssl.handshake") >= 1,
        "no TLS handshake on b's inbound 15006"
    );
    assert_eq!(
        sum_matching(
            &stats_b,
            "listener.0.0.0.0_15006.",
            "ssl.fail_verify_no_cert"
        ),
        0
    );
    assert!(sum_matching(&stats_b, "http.", "rbac.allowed") >= 1);
    assert!(sum_matching(&stats_b, "http.", "rbac.denied") >= 1);

    // ... and b's sidecar refuses plaintext: pod a's proxy uid bypasses capture and
    // talks HTTP straight to b's pod IP, which b captures into its STRICT inbound.
    let (status, body) = a.get(
        Some(1337),
        SocketAddrV4::new(b.ip, APP_PORT),
        &b.ip.to_string(),
        "/hello",
    );
    assert_eq!(
        status, 0,
        "plaintext got an HTTP answer through b's STRICT inbound: {body}"
    );
    // STRICT holds on ports no Service declares too: they pass through only
    // over mTLS (the app answers a direct call on its loopback).
    undeclared_app_b.check_running();
    let (status, _) = b.get(
        None,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, UNDECLARED_PORT),
        "b",
        "/",
    );
    assert_eq!(status, 200, "b's app on the undeclared port");
    let (status, body) = a.get(
        Some(1337),
        SocketAddrV4::new(b.ip, UNDECLARED_PORT),
        &b.ip.to_string(),
        "/hello",
    );
    assert_eq!(
        status, 0,
        "plaintext got through b's STRICT inbound on an undeclared port: {body}"
    );
    // ... except on the undeclared port b's PeerAuthentication makes PERMISSIVE.
    permissive_app_b.check_running();
    let (status, body) = a.get(
        Some(1337),
        SocketAddrV4::new(b.ip, PERMISSIVE_PORT),
        &b.ip.to_string(),
        "/hello",
    );
    assert_eq!(status, 200, "plaintext to b's PERMISSIVE port: {body}");

    // Any address in ServiceEntry b-range's CIDR range reaches pod b, over
    // mTLS, through the range's chain on a's 0.0.0.0_<port> listener.
    range_app_b.check_running();
    let in_range = SocketAddrV4::new(Ipv4Addr::new(10, 97, n, 77), RANGE_PORT);
    let (status, body) = a.get(None, in_range, "b-range.internal", "/hello");
    assert_eq!(status, 200, "{in_range}: {body}");
    assert!(body.contains("b-1"), "{body}");
    let stats_a = a.stats();
    let to_range = format!("cluster.outbound|{RANGE_PORT}||b-range.internal.");
    assert!(sum_matching(&stats_a, &to_range, "ssl.handshake") >= 1);

    // The allowed principal is a's SPIFFE id and nothing else: once the policy
    // names another service account, the same request from a is denied.
    cp.serve_model(model(&a, &b, cluster_ip, "cluster.local/ns/shop/sa/other"));
    let (_, answer) = wait_for(
        "the new policy denying a",
        &mut [&mut *envoy_a, &mut *envoy_b, &mut app_a, &mut app_b],
        || app_calls(403),
    );
    assert_eq!(
        answer["calls"][0]["body"], "RBAC: access denied",
        "{answer}"
    );
    // The client side is unchanged: a plain client in pod a gets the same 403.
    let (status, body) = a.get(None, service, &cluster_ip.to_string(), "/hello");
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
}

/// Not a test on its own: the body of the helper processes (see the module docs).
#[test]
fn netns_helper() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let arg = std::env::var(ARG_ENV).unwrap_or_default();
    match role.as_str() {
        "get" => {
            let mut parts = arg.splitn(3, ' ');
            let to: SocketAddr = parts.next().unwrap().parse().expect("an address");
            let host = parts.next().expect("a host");
            let path = parts.next().expect("a path");
            let (status, body) = match HttpRequest::get(path)
                .host(host)
                .timeout(Duration::from_secs(5))
                .send(to)
            {
                Ok(r) => (r.status, r.body_text()),
                Err(e) => (0, e.to_string()),
            };
            println!(
                "RESULT {status} {}",
                serde_json::to_string(&body).expect("JSON string")
            );
        }
        other => panic!("unknown helper role {other}"),
    }
}
