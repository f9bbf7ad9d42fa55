//! `trellis demo`: the bundled example on a live mesh, checked.
//!
//! Runs the demo apps (in-process, one per WorkloadEntry in `apps.tsv`) and the
//! universal-mode control loop ([`crate::mesh::run`]) with real Envoys, waits
//! until every proxy has ACKed its configuration, then drives traffic through
//! the ingress gateway and reads every Envoy's admin `/stats`:
//!
//! - JWT at the frontend: a valid token 200, a tampered one 401, none 403;
//! - requests per route and version, from the callers' outbound cluster stats
//!   and the sidecars' inbound stats;
//! - mTLS on every hop: client-side handshakes with the SPIFFE SAN check on
//!   every outbound cluster that carried traffic, server-side handshakes on every
//!   sidecar, and plaintext sent straight to each sidecar refused;
//! - retries and outlier ejections (`upstream_rq_retry`,
//!   `outlier_detection.ejections_enforced_total`) caused by the flaky email v2.
//!
//! Every expectation is checked against those observations ([`report::evaluate`]).
pub mod apps;
pub mod http;
pub mod jwt;
pub mod report;
pub mod setup;
pub mod stats;

use crate::error::{LocalError, Result};
use crate::mesh::{MeshBackend, MeshOptions};
use crate::state::write_atomic;
use crate::status::{MeshStatus, ProxyKind, read_status};
use apps::AppSpec;
use report::{Observations, PlaintextProbe, Probe, ProxyObservation, Report};
use setup::DemoTargets;
use stats::Stats;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub mesh: MeshOptions,
    /// `apps.tsv` (see [`apps`]).
    pub apps_file: PathBuf,
    /// The example's demo-only RSA key (PKCS#8 PEM) matching its JWKS.
    pub jwt_key_file: PathBuf,
    /// Shop requests sent at least, and at most while waiting to see a retry and an ejection.
    pub min_requests: u32,
    pub max_requests: u32,
    /// How long to wait for every proxy to ACK and for the gateway to answer.
    pub ready_timeout: Duration,
    /// The share of shop requests that must be answered 200.
    pub min_success_ratio: f64,
}

fn demo_err(what: &str, message: impl Into<String>) -> LocalError {
    LocalError::Demo {
        what: what.to_string(),
        message: message.into(),
    }
}

/// The apps and the mesh, running.
pub struct RunningDemo {
    options: DemoOptions,
    apps: Vec<AppSpec>,
    targets: DemoTargets,
    signer: jwt::Rs256Signer,
    stop_apps: tokio::sync::watch::Sender<bool>,
    app_tasks: Vec<JoinHandle<Result<()>>>,
    stop_mesh: Option<tokio::sync::oneshot::Sender<()>>,
    mesh: Option<JoinHandle<Result<()>>>,
}

/// Starts the demo apps and the mesh (call inside a Tokio runtime).
pub async fn start(options: DemoOptions, backend: Arc<dyn MeshBackend>) -> Result<RunningDemo> {
    let apps_text = std::fs::read_to_string(&options.apps_file)
        .map_err(|e| LocalError::io("reading", &options.apps_file, e))?;
    let apps = apps::parse_apps(
        &options.apps_file.display().to_string(),
        &apps_text,
        options.mesh.plan.outbound_http_port,
    )
    .map_err(|e| demo_err("apps", e.to_string()))?;
    let resources = setup::load_dir(&options.mesh.config_dir).map_err(|e| demo_err("config", e))?;
    let targets = setup::discover(&resources, &options.mesh.plan)
        .map_err(|e| demo_err(&options.mesh.config_dir.display().to_string(), e))?;
    let pem = std::fs::read_to_string(&options.jwt_key_file)
        .map_err(|e| LocalError::io("reading", &options.jwt_key_file, e))?;
    let signer = jwt::Rs256Signer::from_pkcs8_pem(
        &options.jwt_key_file.display().to_string(),
        &pem,
        &targets.kid,
    )
    .map_err(|e| demo_err("jwt", e.to_string()))?;

    let (stop_apps, stopped) = tokio::sync::watch::channel(false);
    let mut app_tasks = Vec::new();
    for app in &apps {
        let listener = tokio::net::TcpListener::bind(app.config.listen)
            .await
            .map_err(|e| {
                demo_err(
                    &app.workload,
                    format!("listening on {}: {e}", app.config.listen),
                )
            })?;
        let mut stopped = stopped.clone();
        let config = app.config.clone();
        app_tasks.push(tokio::spawn(crate::demo_app::serve(
            config,
            listener,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )));
    }
    let (stop_mesh, mesh_stopped) = tokio::sync::oneshot::channel::<()>();
    let mesh = tokio::spawn(crate::mesh::run(options.mesh.clone(), backend, async {
        let _ = mesh_stopped.await;
    }));
    Ok(RunningDemo {
        options,
        apps,
        targets,
        signer,
        stop_apps,
        app_tasks,
        stop_mesh: Some(stop_mesh),
        mesh: Some(mesh),
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl RunningDemo {
    pub fn gateway(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.targets.gateway_port))
    }

    pub fn host(&self) -> &str {
        &self.targets.host
    }

    /// A valid token for the frontend, also written to `<state>/demo-token.jwt`.
    pub fn token(&self) -> Result<String> {
        let claims = jwt::claims(
            &self.targets.issuer,
            &self.targets.audience,
            "demo-shopper",
            unix_now(),
        );
        self.signer
            .sign(&claims)
            .map_err(|e| demo_err("jwt", e.to_string()))
    }

    /// Where [`RunningDemo::write_token`] puts the token for `curl`.
    pub fn token_path(&self) -> PathBuf {
        self.options.mesh.state_dir.join("demo-token.jwt")
    }

    pub fn write_token(&self, token: &str) -> Result<()> {
        write_atomic(&self.token_path(), token.as_bytes(), 0o600)
    }

    fn mesh_failed(&mut self) -> Option<String> {
        if self.mesh.as_ref().is_some_and(JoinHandle::is_finished) {
            return Some("the mesh control loop stopped early (see its error below)".into());
        }
        None
    }

    /// Waits until every demo workload's sidecar and a gateway have ACKed.
    async fn wait_acked(&mut self) -> Result<MeshStatus> {
        let deadline = Instant::now() + self.options.ready_timeout;
        let path = self.options.mesh.state_dir.join("status.json");
        loop {
            if let Some(why) = self.mesh_failed() {
                let error = match self.mesh.take() {
                    Some(handle) => match handle.await {
                        Ok(Err(e)) => e.to_string(),
                        Ok(Ok(())) => "it returned without an error".into(),
                        Err(e) => e.to_string(),
                    },
                    None => String::new(),
                };
                return Err(demo_err("mesh", format!("{why}: {error}")));
            }
            let status = read_status(&path).ok();
            if let Some(s) = &status {
                let acked = |name: &str| {
                    s.proxies
                        .iter()
                        .any(|p| p.name == name && p.acked_version.is_some())
                };
                let gateway = s
                    .proxies
                    .iter()
                    .any(|p| p.kind == ProxyKind::Gateway && p.acked_version.is_some());
                if gateway
                    && self.apps.iter().all(|a| acked(&a.workload))
                    && s.proxies.iter().all(|p| p.acked_version.is_some())
                {
                    return Ok(s.clone());
                }
            }
            if Instant::now() > deadline {
                let detail = status.map_or_else(
                    || "no status.json yet".to_string(),
                    |s| {
                        let rows: Vec<String> = s
                            .proxies
                            .iter()
                            .map(|p| {
                                format!(
                                    "{}: acked {:?}, last NACK {:?}",
                                    p.name, p.acked_version, p.last_nack
                                )
                            })
                            .collect();
                        format!(
                            "proxies: [{}]; config errors: {}",
                            rows.join("; "),
                            s.config_errors.len()
                        )
                    },
                );
                return Err(demo_err(
                    "readiness",
                    format!(
                        "not every proxy ACKed within {:?}: {detail}",
                        self.options.ready_timeout
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn gateway_get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> std::result::Result<u16, String> {
        let headers: Vec<(&str, String)> = token
            .map(|t| vec![("authorization", format!("Bearer {t}"))])
            .unwrap_or_default();
        http::get(
            self.gateway(),
            &self.targets.host,
            path,
            &headers,
            REQUEST_TIMEOUT,
        )
        .await
        .map(|(status, _)| status)
    }

    async fn read_stats(status: &MeshStatus) -> BTreeMap<String, Stats> {
        let mut out = BTreeMap::new();
        for p in &status.proxies {
            let admin = SocketAddr::from(([127, 0, 0, 1], p.admin_port));
            if let Ok((200, body)) =
                http::get(admin, "localhost", "/stats", &[], REQUEST_TIMEOUT).await
            {
                out.insert(
                    p.name.clone(),
                    Stats::parse(&String::from_utf8_lossy(&body)),
                );
            }
        }
        out
    }

    fn resilience_seen(stats: &BTreeMap<String, Stats>) -> (u64, u64) {
        let mut retries = 0;
        let mut ejections = 0;
        for s in stats.values() {
            for c in s.outbound_clusters() {
                retries += s.cluster(&c.name, "upstream_rq_retry");
                ejections += s.cluster(&c.name, "outlier_detection.ejections_enforced_total");
            }
        }
        (retries, ejections)
    }

    /// Drives the traffic, reads the stats and checks every expectation.
    pub async fn drive(&mut self) -> Result<Report> {
        let status = self.wait_acked().await?;
        let token = self.token()?;
        self.write_token(&token)?;

        // The gateway serves once its listener and the frontend's endpoints have warmed.
        let deadline = Instant::now() + self.options.ready_timeout;
        loop {
            let got = self.gateway_get("/healthz", Some(&token)).await;
            if got == Ok(200) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let mut auth = Vec::new();
        for (what, t, expected) in [
            ("GET /healthz, valid JWT", Some(token.clone()), 200),
            ("GET /healthz, tampered JWT", Some(jwt::tamper(&token)), 401),
            ("GET /healthz, no JWT", None, 403),
        ] {
            let got = self.gateway_get("/healthz", t.as_deref()).await;
            auth.push(Probe {
                what: what.to_string(),
                expected,
                got,
            });
        }

        // Plaintext straight to every sidecar's TLS listener must be refused.
        let before = Self::read_stats(&status).await;
        let mut plaintext = Vec::new();
        for p in status
            .proxies
            .iter()
            .filter(|p| p.kind == ProxyKind::Sidecar)
        {
            let Some(s) = before.get(&p.name) else {
                continue;
            };
            for listener in s.tls_listeners() {
                let Some(addr) = listener
                    .strip_prefix("listener.")
                    .and_then(|l| l.rsplit_once('_'))
                    .and_then(|(ip, port)| format!("{ip}:{port}").parse::<SocketAddr>().ok())
                else {
                    continue;
                };
                let (refused, detail) =
                    match http::plaintext_refused(addr, Duration::from_secs(3)).await {
                        Ok(d) => (true, d),
                        Err(d) => (false, d),
                    };
                plaintext.push(PlaintextProbe {
                    target: format!("{} ({addr})", p.name),
                    refused,
                    detail,
                });
            }
        }

        // Shop traffic until a retry and an ejection were seen (bounded).
        let mut traffic: BTreeMap<String, u32> = BTreeMap::new();
        let mut sent = 0u32;
        while sent < self.options.max_requests {
            for _ in 0..25 {
                let outcome = match self.gateway_get("/", Some(&token)).await {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("error: {e}"),
                };
                *traffic.entry(outcome).or_default() += 1;
                sent += 1;
            }
            if sent >= self.options.min_requests {
                let (retries, ejections) = Self::resilience_seen(&Self::read_stats(&status).await);
                if retries > 0 && ejections > 0 {
                    break;
                }
            }
        }

        let stats = Self::read_stats(&status).await;
        let versions: BTreeMap<&str, &AppSpec> =
            self.apps.iter().map(|a| (a.workload.as_str(), a)).collect();
        let proxies = status
            .proxies
            .iter()
            .map(|p| {
                let app = versions.get(p.name.as_str());
                ProxyObservation {
                    name: p.name.clone(),
                    gateway: p.kind == ProxyKind::Gateway,
                    service: app.map(|a| a.config.name.clone()),
                    version: app.map(|a| a.version.clone()),
                    stats: stats.get(&p.name).cloned().unwrap_or_default(),
                }
            })
            .collect();
        let observations = Observations {
            proxies_expected: status.proxies.len(),
            proxies_acked: status
                .proxies
                .iter()
                .filter(|p| p.acked_version.is_some())
                .count(),
            gateway_url: format!("http://{}", self.gateway()),
            host: self.targets.host.clone(),
            auth,
            traffic,
            plaintext,
            proxies,
            min_success_ratio: self.options.min_success_ratio,
        };
        Ok(report::evaluate(&observations))
    }

    /// Resolves when the mesh loop stops by itself (an error), with that error.
    pub async fn mesh_exited(&mut self) -> Result<()> {
        match self.mesh.as_mut() {
            Some(handle) => {
                let r = handle.await;
                self.mesh = None;
                match r {
                    Ok(r) => r,
                    Err(e) => Err(demo_err("mesh", e.to_string())),
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Stops the mesh (every Envoy) and the apps.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stop_apps.send(true);
        if let Some(stop) = self.stop_mesh.take() {
            let _ = stop.send(());
        }
        let mesh = match self.mesh.take() {
            Some(handle) => handle.await.map_err(|e| demo_err("mesh", e.to_string()))?,
            None => Ok(()),
        };
        for task in self.app_tasks.drain(..) {
            let _ = task.await;
        }
        mesh
    }
}
