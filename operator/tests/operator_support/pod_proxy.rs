//! A pod's injected proxy run for real: the container `trellis inject` gives a
//! Pod of the simulator (its downward-API variables filled in from that Pod),
//! started as a real Envoy with the namespace's bootstrap ConfigMap, the
//! identity Secret and the root ConfigMap laid out at the pod's mount paths —
//! in a private mount namespace over an overlay of /etc, so the host's /etc is
//! untouched. Envoy is killed by PID on drop (and by the kernel if the test
//! dies: pdeathsig).

use super::{Cluster, secret_field, wait_for};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn envoy_bin() -> PathBuf {
    let bin = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy-real")
        });
    assert!(
        bin.exists(),
        "envoy not found at {} (ENVOY_BIN): run `make setup`",
        bin.display()
    );
    bin
}

/// The data of ConfigMap `trellis-sidecar-bootstrap` in `ns`, once it exists.
pub fn bootstrap_config_map(cluster: &Cluster, ns: &str) -> Option<BTreeMap<String, String>> {
    let cm = cluster
        .kubectl
        .get_json(&["configmap", "-n", ns, "trellis-sidecar-bootstrap"])?;
    serde_json::from_value(cm["data"].clone()).ok()
}

/// The data of ConfigMap `trellis-sidecar-bootstrap` in `ns`, waited for up
/// to 60 s (the operator writes it once the namespace is in the mesh).
pub fn wait_bootstrap(cluster: &Cluster, ns: &str) -> BTreeMap<String, String> {
    wait_for(
        &format!("ConfigMap {ns}/trellis-sidecar-bootstrap"),
        Duration::from_secs(60),
        || bootstrap_config_map(cluster, ns),
    )
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `trellis operator`'s default arguments with its xDS server on a free
/// loopback port, advertised there to the proxies (the bootstrap names it).
pub fn operator_args_with_xds() -> Vec<String> {
    let xds_port = free_port();
    let mut args = super::default_args();
    args.extend([
        "--xds-addr".to_string(),
        format!("127.0.0.1:{xds_port}"),
        "--xds-advertise-addr".to_string(),
        format!("127.0.0.1:{xds_port}"),
    ]);
    args
}

/// GET from Envoy's admin with curl (responses are chunked); the body on 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "-f", "-m", "10", &format!("http://{addr}{path}")])
        .output()
        .expect("curl (run `make setup`)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The container named `container` of `pod_yaml` as `trellis inject` gives it.
pub fn injected_container(pod_yaml: &str, container: &str) -> Value {
    let mut inject = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["inject", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("trellis inject");
    inject
        .stdin
        .take()
        .unwrap()
        .write_all(pod_yaml.as_bytes())
        .unwrap();
    let out = inject.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "trellis inject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let injected: Value = serde_yaml::from_slice(&out.stdout).expect("injected YAML");
    injected["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == container)
        .unwrap_or_else(|| panic!("no container {container}: {injected}"))
        .clone()
}

/// The container's args with its downward-API variables filled in from `pod`
/// (the Pod as the simulator holds it).
pub fn proxy_args(container: &Value, pod: &Value) -> Vec<String> {
    let mut env = BTreeMap::new();
    for e in container["env"].as_array().unwrap() {
        let field = e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap();
        let value = match field {
            "metadata.name" => pod["metadata"]["name"].clone(),
            "metadata.namespace" => pod["metadata"]["namespace"].clone(),
            "spec.serviceAccountName" => pod["spec"]["serviceAccountName"].clone(),
            "status.podIP" => pod["status"]["podIP"].clone(),
            other => panic!("unexpected downward-API field {other}"),
        };
        env.insert(
            e["name"].as_str().unwrap().to_string(),
            value.as_str().unwrap().to_string(),
        );
    }
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| expand(a.as_str().unwrap(), &env))
        .collect()
}

/// `$(VAR)` references of the injected args, filled from the container's downward-API env.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    assert!(
        !out.contains("$("),
        "unexpanded variable in {arg:?} -> {out}"
    );
    out
}

fn write_files(dir: &Path, files: &BTreeMap<String, String>) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

/// The proxy of one pod, running.
pub struct PodProxy {
    child: Child,
    log: PathBuf,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl PodProxy {
    /// Starts Envoy with `args` and the pod volumes of namespace `ns` (whose
    /// bootstrap is `bootstrap`) for service account `sa`. Only the admin port
    /// is moved off 15000, so the test does not depend on it being free.
    pub fn start(
        cluster: &Cluster,
        ns: &str,
        sa: &str,
        bootstrap: &BTreeMap<String, String>,
        args: &[String],
    ) -> PodProxy {
        let dir = tempfile::tempdir().unwrap();
        let admin_port = free_port();
        let mut files = bootstrap.clone();
        let mut b: Value = serde_json::from_str(&files["envoy.json"]).unwrap();
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 15000);
        b["admin"]["address"]["socket_address"]["port_value"] = admin_port.into();
        files.insert("envoy.json".into(), serde_json::to_string(&b).unwrap());
        write_files(&dir.path().join("bootstrap"), &files);
        let identity = cluster.wait_identity(ns, sa);
        let certs: BTreeMap<String, String> = ["cert-chain.pem", "key.pem", "root-cert.pem"]
            .into_iter()
            .map(|k| (k.to_string(), secret_field(&identity, k)))
            .collect();
        write_files(&dir.path().join("certs"), &certs);
        let root = wait_for("root ConfigMap", Duration::from_secs(60), || {
            cluster
                .kubectl
                .get_json(&["configmap", "-n", ns, "trellis-ca-root-cert"])
                .and_then(|cm| cm["data"]["root-cert.pem"].as_str().map(str::to_string))
        });
        write_files(
            &dir.path().join("root"),
            &BTreeMap::from([("root-cert.pem".to_string(), root)]),
        );
        for d in ["upper", "work"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        // A private mount namespace: an overlay over /etc (writes land in the temp dir),
        // the three volumes bind-mounted where the injector mounts them, then Envoy.
        let d = dir.path().display();
        let script = format!(
            "set -e; mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/upper,workdir={d}/work /etc; \
             mkdir -p /etc/certs /etc/trellis/root /etc/trellis/bootstrap; \
             mount --bind {d}/certs /etc/certs; mount --bind {d}/root /etc/trellis/root; \
             mount --bind {d}/bootstrap /etc/trellis/bootstrap; \
             exec \"$0\" \"$@\""
        );
        let log = dir.path().join("envoy.log");
        let child = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "KILL",
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .arg(envoy_bin())
            .args(args)
            .args(["--log-path"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting envoy");
        PodProxy {
            child,
            log,
            admin: ([127, 0, 0, 1], admin_port).into(),
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` from the admin endpoint; the body on 200.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        http_get(self.admin, path)
    }
}

impl Drop for PodProxy {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
