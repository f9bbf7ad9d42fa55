//! The `trellis up` control loop with real Envoys: proxies start from the
//! directory, connect over mTLS and ACK; adding a workload file starts one more
//! Envoy without restarting the first; removing it stops it; shutdown stops
//! all; a restart reuses the state directory (root, xDS port, admin ports).
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trellis_local::config_set::ResourceChange;
use trellis_local::mesh::{MeshBackend, MeshOptions, run};
use trellis_local::plan::PlanOptions;
use trellis_local::status::{MeshStatus, read_status};
use trellis_xds::{ProxyId, PushScope, ResourceCache, Snapshot, SnapshotSource, XdsError};

/// A backend with no routing: every proxy gets an empty snapshot. It records
/// the object changes the loop hands it.
struct RecordingBackend {
    changes: Mutex<Vec<String>>,
}

struct Empty(ResourceCache);

impl SnapshotSource for Empty {
    fn snapshot(&self, _: &ProxyId) -> Result<Snapshot, XdsError> {
        Ok(Snapshot::builder().build(&self.0))
    }
}

impl MeshBackend for RecordingBackend {
    fn apply(&self, changes: &[ResourceChange]) -> PushScope {
        let mut seen = self.changes.lock().unwrap();
        for c in changes {
            seen.push(match c {
                ResourceChange::Apply(r) => format!("apply {}/{}", r.kind(), r.name()),
                ResourceChange::Delete(o) => format!("delete {}/{}", o.kind, o.name),
            });
        }
        PushScope::All
    }
    fn snapshot_source(&self) -> Arc<dyn SnapshotSource> {
        Arc::new(Empty(ResourceCache::new()))
    }
}

fn envoy_bin() -> PathBuf {
    let bin = std::env::var("ENVOY_BIN")
        .expect("ENVOY_BIN is not set: run `make setup` and export ENVOY_BIN=.venv/bin/envoy-real");
    assert!(
        Path::new(&bin).exists(),
        "ENVOY_BIN={bin} does not exist: run `make setup`"
    );
    PathBuf::from(bin)
}

fn workload(name: &str, ip: u8) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: shop\n  annotations: {{local.trellis.dev/app-port: \"180{ip}\"}}\nspec:\n  address: 127.0.0.{ip}\n  serviceAccount: cart\n  labels: {{app: cart}}\n"
    )
}

fn wait_status(state: &Path, what: &str, cond: impl Fn(&MeshStatus) -> bool) -> MeshStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = read_status(&state.join("status.json"))
            && cond(&s)
        {
            return s;
        }
        let last = std::fs::read_to_string(state.join("status.json")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status.json:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Mesh {
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<trellis_local::error::Result<()>>>,
}

impl Mesh {
    fn start(options: MeshOptions, backend: Arc<RecordingBackend>) -> Mesh {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = runtime.spawn(run(options, backend, async {
            let _ = stopped.await;
        }));
        Mesh {
            runtime,
            stop: Some(stop),
            done: Some(done),
        }
    }

    fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let done = self.done.take().unwrap();
        self.runtime.block_on(done).unwrap().unwrap();
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // On a failed assertion: stopping the loop stops every Envoy it started.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            if let Some(done) = self.done.take() {
                let _ = self.runtime.block_on(done);
            }
        }
    }
}

#[test]
fn loop_runs_envoys_follows_the_directory_and_reuses_state() {
    let envoy = envoy_bin();
    let tmp = tempfile::tempdir().unwrap();
    let config_dir = tmp.path().join("config");
    let state_dir = tmp.path().join("state");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("sa.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: cart, namespace: shop}\n",
    )
    .unwrap();
    std::fs::write(config_dir.join("cart-v1.yaml"), workload("cart-v1", 13)).unwrap();
    std::fs::write(
        config_dir.join("broken.yaml"),
        "kind: VirtualService\nmetadata: {name: x}\n",
    )
    .unwrap();
    let options = MeshOptions {
        config_dir: config_dir.clone(),
        state_dir: state_dir.clone(),
        envoy_bin: envoy,
        trust_domain: "cluster.local".into(),
        dns_domain: "cluster.local".into(),
        xds_listen: "127.0.0.1:0".parse().unwrap(),
        cert_ttl: Duration::from_secs(3600),
        plan: PlanOptions::default(),
        envoy_log_level: "warn".into(),
        watch_interval: Duration::from_millis(100),
    };
    let backend = Arc::new(RecordingBackend {
        changes: Mutex::new(Vec::new()),
    });
    let mesh = Mesh::start(options.clone(), backend.clone());

    let s = wait_status(&state_dir, "cart-v1 to ACK", |s| {
        s.proxies.len() == 1 && s.proxies[0].acked_version.is_some()
    });
    let first = s.proxies[0].clone();
    assert_eq!(first.identity, "spiffe://cluster.local/ns/shop/sa/cart");
    assert!(first.cert_expires_at.is_some());
    assert_eq!(s.config_errors.len(), 1, "{:?}", s.config_errors);
    assert!(s.config_errors[0].file.ends_with("broken.yaml"));
    let pid1 = first.pid.unwrap();

    std::fs::write(config_dir.join("cart-v2.yaml"), workload("cart-v2", 14)).unwrap();
    let s = wait_status(&state_dir, "cart-v2 to ACK", |s| {
        s.proxies.len() == 2 && s.proxies.iter().all(|p| p.acked_version.is_some())
    });
    let v1 = s.proxies.iter().find(|p| p.name == "cart-v1").unwrap();
    assert_eq!(
        (v1.pid, v1.restarts),
        (Some(pid1), 0),
        "cart-v1 must not restart"
    );
    let pid2 = s
        .proxies
        .iter()
        .find(|p| p.name == "cart-v2")
        .unwrap()
        .pid
        .unwrap();

    std::fs::remove_file(config_dir.join("cart-v2.yaml")).unwrap();
    wait_status(&state_dir, "cart-v2 to stop", |s| s.proxies.len() == 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while trellis_e2e::process_running(pid2) {
        assert!(Instant::now() < deadline, "cart-v2's Envoy still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = backend.changes.lock().unwrap().clone();
    assert!(
        seen.contains(&"apply WorkloadEntry/cart-v2".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"delete WorkloadEntry/cart-v2".to_string()),
        "{seen:?}"
    );

    let root_before = std::fs::read(state_dir.join("ca/root-cert.pem")).unwrap();
    mesh.stop();
    assert!(
        !trellis_e2e::process_running(pid1),
        "Envoy survived shutdown"
    );

    // Restart on the same state directory: same root, same xDS and admin ports.
    std::fs::remove_file(state_dir.join("status.json")).unwrap();
    let mesh = Mesh::start(options, backend);
    let s2 = wait_status(&state_dir, "cart-v1 to ACK after restart", |s| {
        s.proxies.len() == 1 && s.proxies[0].acked_version.is_some()
    });
    assert_eq!(s2.xds_address, s.xds_address);
    assert_eq!(s2.proxies[0].admin_port, first.admin_port);
    assert_eq!(
        std::fs::read(state_dir.join("ca/root-cert.pem")).unwrap(),
        root_before
    );
    mesh.stop();
}
