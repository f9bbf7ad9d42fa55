//! The pieces of universal mode together with a real Envoy: the state
//! directory's CA issues the workload certificate, the generated bootstrap
//! connects Envoy to the Trellis xDS server over mTLS (the server checks the
//! identity in the certificate against the node id), Envoy ACKs, and a renewed
//! certificate (60 s TTL) reaches Envoy through the watched directory with no
//! restart.
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use trellis_ca::{CertificateInfo, RenewalPolicy, SystemRandom, TrustDomain};
use trellis_local::bootstrap::{BootstrapSpec, ServerSan, write_bootstrap};
use trellis_local::identities::{IdentityKeeper, load_or_create_ca};
use trellis_local::state::StateDir;
use trellis_local::supervisor::{BackoffPolicy, ProcessSpec, Supervisor, envoy_args};
use trellis_xds::{ProxyId, ProxyKind, ResourceCache, Snapshot, TlsSettings, XdsConfig, XdsServer};

const XDS_NAME: &str = "trellis-xds.trellis-system.svc";

fn envoy_bin() -> PathBuf {
    let bin = std::env::var("ENVOY_BIN")
        .expect("ENVOY_BIN is not set: run `make setup` and export ENVOY_BIN=.venv/bin/envoy-real");
    assert!(
        Path::new(&bin).exists(),
        "ENVOY_BIN={bin} does not exist: run `make setup`"
    );
    PathBuf::from(bin)
}

fn admin_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let Some((head, body)) = out.split_once("\r\n\r\n") else {
        return String::new();
    };
    if head.to_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn wait_for(what: &str, log: &Path, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; Envoy log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leaf_serial(chain_pem: &str) -> String {
    CertificateInfo::all_from_pem("cert-chain.pem", chain_pem).unwrap()[0]
        .serial
        .replace(':', "")
        .trim_start_matches('0')
        .to_string()
}

fn envoy_serials(admin_port: u16) -> Vec<String> {
    let body = admin_get(admin_port, "/certs");
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for cert in json["certificates"].as_array().into_iter().flatten() {
        for c in cert["cert_chain"].as_array().into_iter().flatten() {
            if let Some(s) = c["serial_number"].as_str() {
                out.push(s.trim_start_matches('0').to_lowercase());
            }
        }
    }
    out
}

#[test]
fn envoy_connects_over_mtls_and_rotates_without_restart() {
    let envoy = envoy_bin();
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::open(tmp.path().join("state")).unwrap();
    let td = TrustDomain::new("cluster.local").unwrap();
    let now = SystemTime::now();
    let ca = load_or_create_ca(&state, &td, now, Arc::new(SystemRandom::new())).unwrap();
    let cart = ("shop".to_string(), "cart".to_string());
    let wanted: BTreeSet<_> = [cart.clone()].into();
    let mut keeper = IdentityKeeper::new(Duration::from_secs(60), RenewalPolicy::default());
    keeper.reconcile(&state, &ca, &wanted, now).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server_cert = ca
        .issue_server_cert(&[XDS_NAME.to_string()], Duration::from_secs(3600), now)
        .unwrap();
    let tls = TlsSettings::from_pem(
        &server_cert.cert_chain_pem,
        server_cert.key_pem.expose(),
        &server_cert.root_cert_pem,
    )
    .unwrap();
    let cache = ResourceCache::new();
    let (xds, xds_addr, stop) = runtime.block_on(async {
        let source = move |_: &ProxyId| Ok(Snapshot::builder().build(&cache));
        let xds = XdsServer::new(XdsConfig::new("cluster.local"), Arc::new(source));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = xds.clone();
        tokio::spawn(async move {
            let _ = server
                .serve(listener, tls, async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        (xds, addr, stop_tx)
    });

    let proxy = ProxyId::new(ProxyKind::Sidecar, "shop", "cart-v1", "cart");
    let admin_port = trellis_local::assignments::free_local_port().unwrap();
    let spec = BootstrapSpec {
        node_id: proxy.node_id("127.0.0.13", "cluster.local"),
        node_cluster: "cart.shop".into(),
        node_metadata: [("SERVICE_ACCOUNT".to_string(), "cart".to_string())].into(),
        admin: ([127, 0, 0, 1], admin_port).into(),
        xds: xds_addr,
        xds_server_san: ServerSan::Dns(XDS_NAME.into()),
        cert_dir: state.cert_dir("shop", "cart").unwrap(),
        out_dir: state.bootstrap_dir().join("shop").join("cart-v1"),
    };
    let (bootstrap, _) = write_bootstrap(&spec).unwrap();
    let supervisor = Supervisor::start(BackoffPolicy::default()).unwrap();
    let log = state.logs_dir().join("cart-v1.log");
    let pid = supervisor
        .spawn(ProcessSpec {
            name: "sidecar/shop/cart-v1".into(),
            program: envoy,
            args: envoy_args(&bootstrap, "info"),
            log_path: log.clone(),
        })
        .unwrap();

    // Connected with the right identity and ACKed the (empty) CDS and LDS.
    wait_for("the xDS server to see ACKs from shop/cart-v1", &log, || {
        xds.proxy_status(&proxy)
            .is_some_and(|s| s.types.iter().filter(|t| t.acked_version.is_some()).count() >= 2)
    });
    let first = std::fs::read_to_string(spec.cert_dir.join("cert-chain.pem")).unwrap();
    let first_serial = leaf_serial(&first);
    wait_for("Envoy to load the workload certificate", &log, || {
        envoy_serials(admin_port).contains(&first_serial)
    });
    let uptime = |body: String| -> u64 {
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["uptime_current_epoch"]
            .as_str()
            .unwrap()
            .trim_end_matches('s')
            .parse()
            .unwrap()
    };
    let uptime_before = uptime(admin_get(admin_port, "/server_info"));

    // Renewal time of a 60 s certificate: the keeper reissues into the same directory.
    let renew_at = keeper.next_renewal().unwrap();
    let changed = keeper.reconcile(&state, &ca, &wanted, renew_at).unwrap();
    assert_eq!(changed, vec![cart]);
    let second = std::fs::read_to_string(spec.cert_dir.join("cert-chain.pem")).unwrap();
    let second_serial = leaf_serial(&second);
    assert_ne!(first_serial, second_serial);
    wait_for("Envoy to load the renewed certificate", &log, || {
        envoy_serials(admin_port).contains(&second_serial)
    });

    // Same process, uptime still counting, supervisor saw no restart.
    assert_eq!(supervisor.states()["sidecar/shop/cart-v1"].restarts, 0);
    assert_eq!(supervisor.states()["sidecar/shop/cart-v1"].pid, Some(pid));
    let uptime_after = uptime(admin_get(admin_port, "/server_info"));
    assert!(
        uptime_after >= uptime_before,
        "{uptime_after} < {uptime_before}"
    );

    supervisor.shutdown();
    let _ = stop.send(());
    runtime.shutdown_timeout(Duration::from_secs(2));
}
