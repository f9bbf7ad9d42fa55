//! Shared harness of the `operator_*` tests: the real `trellis operator` binary against
//! the Kubernetes API simulator, checked with the real kubectl and openssl. Every
//! process started here is killed by PID when its guard drops, even on failure.
#![allow(dead_code)]

pub mod pod_proxy;
pub mod proxy;

use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use kube_sim::{Kubectl, Options, TestServer};
pub use trellis_e2e::{openssl, openssl_bin};

/// The operator's namespace in every test.
pub const OPERATOR_NS: &str = "trellis-system";

/// Polls `check` every 200 ms until it returns `Some` or `timeout` passes; then fails with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A simulator with the operator's namespace, and kubectl for it.
pub struct Cluster {
    pub server: TestServer,
    pub kubectl: Kubectl,
}

impl Cluster {
    /// Applies MeshConfig `default` with `spec` (its YAML lines, indented by two).
    pub fn apply_mesh_config(&self, spec: &str) {
        self.kubectl.apply(&format!(
            "apiVersion: mesh.trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: default\nspec:\n{spec}"
        ));
    }

    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let server =
            TestServer::start_with(options).expect("starting the Kubernetes API simulator");
        let kubectl = Kubectl::new(server.kubeconfig_path());
        kubectl.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {OPERATOR_NS}\n"
        ));
        // The mesh CRDs, as `trellis crds` prints them (the operator watches the mesh kinds).
        let crds = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .arg("crds")
            .output()
            .expect("running trellis crds");
        assert!(
            crds.status.success(),
            "trellis crds: {}",
            String::from_utf8_lossy(&crds.stderr)
        );
        kubectl.apply(&String::from_utf8(crds.stdout).expect("CRD YAML"));
        Self { server, kubectl }
    }

    /// Creates namespace `ns` with `labels` (`k=v` pairs) and ServiceAccounts `sas`.
    pub fn namespace(&self, ns: &str, labels: &[&str], sas: &[&str]) {
        let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        if !labels.is_empty() {
            yaml.push_str("  labels:\n");
            for l in labels {
                let (k, v) = l.split_once('=').expect("label k=v");
                yaml.push_str(&format!("    {k}: \"{v}\"\n"));
            }
        }
        for sa in sas {
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {sa}\n  namespace: {ns}\n"
            ));
        }
        self.kubectl.apply(&yaml);
    }

    /// The identity Secret of `sa`, if present.
    pub fn identity(&self, ns: &str, sa: &str) -> Option<Value> {
        self.kubectl
            .get_json(&["secret", "-n", ns, &format!("trellis-identity-{sa}")])
    }

    /// Waits for Secret `trellis-ca`: the root the operator created and stored.
    pub fn wait_own_ca(&self) -> Value {
        wait_for("Secret trellis-ca", Duration::from_secs(30), || {
            self.kubectl
                .get_json(&["secret", "-n", OPERATOR_NS, "trellis-ca"])
        })
    }

    /// Waits for the identity Secret of `sa`.
    pub fn wait_identity(&self, ns: &str, sa: &str) -> Value {
        wait_for(
            &format!("identity Secret of {ns}/{sa}"),
            Duration::from_secs(60),
            || self.identity(ns, sa),
        )
    }
}

/// A decoded `data` field of a Secret.
pub fn secret_field(secret: &Value, key: &str) -> String {
    use base64::Engine;
    let b64 = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("Secret has no data[{key}]: {secret}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 Secret data");
    String::from_utf8(bytes).expect("PEM text")
}

/// The first certificate of an identity Secret's `cert-chain.pem`, as PEM.
pub fn leaf_pem(secret: &Value) -> String {
    let chain = secret_field(secret, "cert-chain.pem");
    let leaf = chain
        .split_inclusive("-----END CERTIFICATE-----")
        .next()
        .unwrap_or_default()
        .trim();
    assert!(leaf.contains("BEGIN CERTIFICATE"), "empty cert-chain.pem");
    format!("{leaf}\n")
}

/// `openssl x509 -checkend <secs>`: whether the certificate `pem` is still
/// valid `secs` from now.
pub fn valid_for(pem: &str, secs: u64) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cert.pem"), pem).unwrap();
    Command::new(openssl_bin())
        .args(["x509", "-noout", "-in", "cert.pem", "-checkend"])
        .arg(secs.to_string())
        .current_dir(dir.path())
        .output()
        .expect("running openssl")
        .status
        .success()
}

/// `metadata.resourceVersion`.
pub fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What openssl says about an identity Secret.
pub struct Verified {
    /// The URI SAN, e.g. `spiffe://cluster.local/ns/shop/sa/web`.
    pub uri: String,
    pub serial: String,
}

/// Writes the identity's leaf, chain and key and `root_pem` into `dir` and runs
/// `openssl verify` (the leaf, its intermediates as untrusted): whether it
/// verified, and what openssl said.
pub fn openssl_verify(secret: &Value, root_pem: &str, dir: &Path) -> (bool, String) {
    std::fs::write(dir.join("leaf.pem"), leaf_pem(secret)).unwrap();
    std::fs::write(
        dir.join("chain.pem"),
        secret_field(secret, "cert-chain.pem"),
    )
    .unwrap();
    std::fs::write(dir.join("root.pem"), root_pem).unwrap();
    std::fs::write(dir.join("key.pem"), secret_field(secret, "key.pem")).unwrap();
    let out = Command::new(openssl_bin())
        .args([
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "leaf.pem",
        ])
        .current_dir(dir)
        .output()
        .expect("running openssl");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// Verifies `cert-chain.pem` against `root_pem` with openssl (see
/// [`openssl_verify`]), checks that `key.pem` matches the leaf, and returns the URI SAN.
pub fn verify_identity(secret: &Value, root_pem: &str) -> Verified {
    let dir = tempfile::tempdir().expect("temp dir");
    let (verified, verdict) = openssl_verify(secret, root_pem, dir.path());
    assert!(
        verified && verdict.trim().ends_with("OK"),
        "openssl verify: {verdict}"
    );
    let san = openssl(
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            "leaf.pem",
        ],
        dir.path(),
    );
    let uri = san
        .split([',', '\n'])
        .map(str::trim)
        .find_map(|s| s.strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("no URI SAN in {san}"))
        .to_string();
    let serial = openssl(
        &["x509", "-noout", "-serial", "-in", "leaf.pem"],
        dir.path(),
    );
    let cert_pub = openssl(
        &["x509", "-noout", "-pubkey", "-in", "leaf.pem"],
        dir.path(),
    );
    let key_pub = openssl(&["pkey", "-pubout", "-in", "key.pem"], dir.path());
    assert_eq!(cert_pub, key_pub, "key.pem does not match the certificate");
    Verified {
        uri,
        serial: serial.trim().to_string(),
    }
}

/// A running `trellis operator`; killed by PID on drop.
pub struct Operator {
    child: Option<Child>,
    pub identity: String,
    pub log: PathBuf,
    pub metrics: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Flags of a test operator: fast leader election, everything on 127.0.0.1.
pub fn default_args() -> Vec<String> {
    [
        "--lease-duration",
        "4s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "1s",
        "--max-backoff",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Operator {
    /// Starts the operator with `identity` and extra flags; waits until it serves telemetry.
    pub fn start(kubeconfig: &Path, identity: &str, extra: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("operator.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trellis"));
        cmd.args(["operator", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--namespace", OPERATOR_NS])
            .args(["--identity", identity])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--webhook-addr", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        // An ephemeral xDS port unless the test chose one.
        if !extra.iter().any(|a| a == "--xds-addr") {
            cmd.args(["--xds-addr", "127.0.0.1:0"]);
        }
        let child = cmd.spawn().expect("starting trellis operator");
        let mut op = Self {
            child: Some(child),
            identity: identity.to_string(),
            log,
            metrics: "127.0.0.1:1".parse().unwrap(),
            _dir: dir,
        };
        op.metrics = wait_for(
            &format!(
                "operator {identity} to serve telemetry (log: {})",
                op.log.display()
            ),
            Duration::from_secs(30),
            || {
                if let Some(status) = op.try_status() {
                    panic!(
                        "operator {identity} exited with {status}: {}",
                        op.log_text()
                    );
                }
                op.log_lines().into_iter().find_map(|line| {
                    (line["fields"]["message"] == "telemetry listening")
                        .then(|| line["fields"]["metrics"].as_str()?.parse().ok())
                        .flatten()
                })
            },
        );
        op
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("operator running")
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_lines(&self) -> Vec<Value> {
        let Ok(file) = std::fs::File::open(&self.log) else {
            return Vec::new();
        };
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// GET on the telemetry endpoint: (status code, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self) {
        let id = self.identity.clone();
        wait_for(
            &format!("operator {id} ready"),
            Duration::from_secs(60),
            || {
                if let Some(status) = self.try_status() {
                    panic!("operator {id} exited with {status}: {}", self.log_text());
                }
                self.http_get("/readyz").filter(|(code, _)| *code == 200)
            },
        );
    }

    /// The value of a metric line `name{labels} value` (exact text before the value).
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().get(series).copied()
    }

    /// Every series of one scrape, by `name{labels}`.
    pub fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let Some((_, body)) = self.http_get("/metrics") else {
            return Default::default();
        };
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
    }

    /// Waits (bounded) for the exit status after a signal.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let id = self.identity.clone();
        let status = wait_for(
            &format!("operator {id} to exit after SIGTERM"),
            Duration::from_secs(30),
            || self.try_status(),
        );
        self.child = None;
        status
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.wait_exit()
    }

    /// Kills the process at once (SIGKILL: no Lease release).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- log of operator {} ---\n{}",
                self.identity,
                self.log_text()
            );
        }
        self.kill();
    }
}

/// The Lease's holder, if any.
pub fn lease_holder(kubectl: &Kubectl) -> Option<String> {
    kubectl
        .get_json(&["lease", "-n", OPERATOR_NS, "trellis-operator-leader"])
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .filter(|h| !h.is_empty())
}
