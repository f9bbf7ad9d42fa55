//! The universal-mode control loop: state directory, CA and workload
//! certificates, the xDS server, the directory watcher and the Envoy fleet,
//! wired together. What the resources *mean* (model and translation) comes
//! from a [`MeshBackend`], so this loop owns only processes, files and time.
use crate::assignments::{Assignments, free_local_port};
use crate::bootstrap::ServerSan;
use crate::config_set::{ConfigSet, ResourceChange};
use crate::error::{LocalError, Result};
use crate::fleet::{Fleet, FleetConfig, proxy_id, set_envoy_log_level};
use crate::identities::{Identity, IdentityKeeper, load_or_create_ca};
use crate::mesh_config::{ProxyDefaults, proxy_defaults};
use crate::plan::{PlanOptions, PlannedProxy, plan};
use crate::proxy_config::{build_dump, read_dump, remove_dump, sync_key, write_dump};
use crate::state::StateDir;
use crate::status::{ConfigError, MeshStatus, write_status};
use crate::supervisor::{BackoffPolicy, Supervisor};
use crate::watcher::{FileEvent, watch};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trellis_ca::{RenewalPolicy, SystemRandom, TrustDomain};
use trellis_xds::{PushScope, SnapshotSource, TlsSettings, XdsConfig, XdsServer};

/// The DNS name in the xDS server's certificate; bootstraps check it.
pub const XDS_SERVER_NAME: &str = "trellis-xds.trellis-system.svc";

/// The meaning of the resources: the model and the translator behind it.
pub trait MeshBackend: Send + Sync + 'static {
    /// Applies object changes; returns the proxies whose configuration may have changed.
    fn apply(&self, changes: &[ResourceChange]) -> PushScope;
    /// What the xDS server serves each proxy.
    fn snapshot_source(&self) -> Arc<dyn SnapshotSource>;
    /// Problems found while building the model or translating (shown in status).
    fn config_errors(&self) -> Vec<ConfigError> {
        Vec::new()
    }
}

#[derive(Debug, Clone)]
pub struct MeshOptions {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub envoy_bin: PathBuf,
    pub trust_domain: String,
    pub dns_domain: String,
    /// Port 0: a port chosen on the first run and kept in the state directory.
    pub xds_listen: SocketAddr,
    pub cert_ttl: Duration,
    pub plan: PlanOptions,
    pub envoy_log_level: String,
    pub watch_interval: Duration,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn xds_err(source: trellis_xds::XdsError) -> LocalError {
    LocalError::Xds { source }
}

/// Writes `proxy-config/<ns>/<name>.json` for proxies whose sync state or
/// certificate changed, and removes the dumps of proxies that left the plan.
fn write_dumps(
    state: &StateDir,
    planned: &[PlannedProxy],
    xds: &XdsServer,
    keeper: &IdentityKeeper,
    dumped: &mut BTreeMap<(String, String), String>,
) -> Result<()> {
    let mut live = BTreeSet::new();
    for p in planned {
        let key = (p.namespace.clone(), p.name.clone());
        live.insert(key.clone());
        let status = xds.proxy_status(&proxy_id(p));
        let expiry = keeper.expiry(&(p.namespace.clone(), p.service_account.clone()));
        let signature = format!("{}|{expiry:?}", sync_key(status.as_ref()));
        if dumped.get(&key) == Some(&signature) {
            continue;
        }
        let cert_dir = state.cert_dir(&p.namespace, &p.service_account)?;
        let dump = build_dump(&p.namespace, &p.name, status.as_ref(), Some(&cert_dir));
        write_dump(state, &dump)?;
        dumped.insert(key, signature);
    }
    dumped.retain(|(ns, name), _| {
        let keep = live.contains(&(ns.clone(), name.clone()));
        if !keep {
            remove_dump(state, ns, name);
        }
        keep
    });
    Ok(())
}

/// Runs the mesh until `shutdown` completes; every Envoy is stopped on return.
pub async fn run(
    options: MeshOptions,
    backend: Arc<dyn MeshBackend>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let state = StateDir::open(&options.state_dir)?;
    let mut assignments = Assignments::load(&state.assignments_path())?;
    let xds_addr = if options.xds_listen.port() == 0 {
        let port = assignments.port_for("xds", free_local_port)?;
        SocketAddr::new(options.xds_listen.ip(), port)
    } else {
        options.xds_listen
    };
    assignments.save(&state.assignments_path())?;
    let td = TrustDomain::new(&options.trust_domain).map_err(|source| LocalError::Ca {
        object: format!("trust domain {:?}", options.trust_domain),
        source,
    })?;
    let ca = load_or_create_ca(
        &state,
        &td,
        SystemTime::now(),
        Arc::new(SystemRandom::new()),
    )?;
    // The xDS server's own certificate, renewed at half its lifetime like the
    // workload certificates (open streams keep their connection).
    let server_ttl = options.cert_ttl;
    let issue_server_cert = |now: SystemTime| {
        let cert = ca
            .issue_server_cert(&[XDS_SERVER_NAME.to_string()], server_ttl, now)
            .map_err(|source| LocalError::Ca {
                object: "xDS server certificate".into(),
                source,
            })?;
        Ok::<_, LocalError>((cert, now + server_ttl / 2))
    };
    let (server_cert, mut server_renew_at) = issue_server_cert(SystemTime::now())?;
    let tls = TlsSettings::from_pem(
        &server_cert.cert_chain_pem,
        server_cert.key_pem.expose(),
        &server_cert.root_cert_pem,
    )
    .map_err(xds_err)?;
    let xds = XdsServer::new(
        XdsConfig::new(&options.trust_domain),
        backend.snapshot_source(),
    );
    let listener = tokio::net::TcpListener::bind(xds_addr)
        .await
        .map_err(|e| LocalError::io("listening for xDS on", xds_addr.to_string(), e))?;
    let (stop_xds, xds_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = xds.clone();
    let server_tls = tls.clone();
    tokio::spawn(async move {
        let stopped = async {
            let _ = xds_stopped.await;
        };
        if let Err(e) = server.serve(listener, server_tls, stopped).await {
            tracing::error!(error = %e, "xDS server stopped");
        }
    });

    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<FileEvent>>();
    let _watcher = watch(
        options.config_dir.clone(),
        options.watch_interval,
        move |events| {
            let _ = events_tx.send(events);
        },
        |e| tracing::warn!(error = %e, "scanning the config directory"),
    )?;

    let supervisor = Supervisor::start(BackoffPolicy::default())?;
    let mut fleet = Fleet::new(FleetConfig {
        envoy_bin: options.envoy_bin.clone(),
        xds: xds_addr,
        xds_server_san: ServerSan::Dns(XDS_SERVER_NAME.into()),
        trust_domain: options.trust_domain.clone(),
        dns_domain: options.dns_domain.clone(),
        log_level: options.envoy_log_level.clone(),
    });
    let flag_defaults = ProxyDefaults {
        cert_ttl: options.cert_ttl,
        renewal: RenewalPolicy::default(),
        log_level: options.envoy_log_level.clone(),
    };
    let mut keeper = IdentityKeeper::new(options.cert_ttl, RenewalPolicy::default());
    let mut settings_errors: Vec<ConfigError> = Vec::new();
    let mut config = ConfigSet::default();
    let mut plan_errors: Vec<ConfigError> = Vec::new();
    let mut identities: BTreeSet<Identity> = BTreeSet::new();
    let mut current_plan: Vec<PlannedProxy> = Vec::new();
    let mut dumped: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut reported: Vec<ConfigError> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);

    let result: Result<()> = async {
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                Some(events) = events_rx.recv() => {
                    let changes = config.apply_events(events);
                    if changes.is_empty() {
                        continue;
                    }
                    let scope = backend.apply(&changes);
                    let resources = config.resources();
                    // Certificates issued or renewed from now on take the new
                    // lifetime; running Envoys take the new log level at once.
                    let (defaults, errors) = proxy_defaults(&resources, &flag_defaults);
                    settings_errors = errors;
                    (keeper.ttl, keeper.policy) = (defaults.cert_ttl, defaults.renewal);
                    if defaults.log_level != fleet.log_level() {
                        // Each Envoy on its own task: a slow admin endpoint
                        // must not hold up the loop.
                        for admin in fleet.set_log_level(&defaults.log_level) {
                            let level = defaults.log_level.clone();
                            tokio::spawn(async move {
                                if let Err(e) = set_envoy_log_level(admin, &level).await {
                                    tracing::warn!(%admin, error = %e, "setting an Envoy's log level");
                                }
                            });
                        }
                    }
                    let (planned, errors) =
                        plan(&resources, &mut assignments, &options.plan, free_local_port)?;
                    assignments.save(&state.assignments_path())?;
                    plan_errors = errors;
                    identities = planned
                        .iter()
                        .map(|p| (p.namespace.clone(), p.service_account.clone()))
                        .collect();
                    keeper.reconcile(&state, &ca, &identities, SystemTime::now())?;
                    for change in fleet.reconcile(&state, &supervisor, &planned)? {
                        tracing::info!(?change, "fleet");
                    }
                    current_plan = planned;
                    xds.push(scope);
                }
                _ = tick.tick() => {
                    // Renewals rewrite the certificate directories; Envoy picks them up itself.
                    keeper.reconcile(&state, &ca, &identities, SystemTime::now())?;
                    let now = SystemTime::now();
                    if now >= server_renew_at {
                        let (cert, renew_at) = issue_server_cert(now)?;
                        tls.reload(
                            &cert.cert_chain_pem,
                            cert.key_pem.expose(),
                            &cert.root_cert_pem,
                        )
                        .map_err(xds_err)?;
                        server_renew_at = renew_at;
                        tracing::info!("renewed the xDS server certificate");
                    }
                }
            }
            let mut config_errors = config.errors();
            config_errors.extend(plan_errors.iter().cloned());
            config_errors.extend(backend.config_errors());
            config_errors.extend(settings_errors.iter().cloned());
            for e in &config_errors {
                if !reported.contains(e) {
                    tracing::warn!("skipped: {e}");
                }
            }
            reported.clone_from(&config_errors);
            let status = MeshStatus {
                written_at: unix_now(),
                config_dir: options.config_dir.display().to_string(),
                xds_address: xds_addr.to_string(),
                proxies: fleet.reports(
                    &supervisor.states(),
                    |ns, sa| keeper.expiry(&(ns.to_string(), sa.to_string())),
                    |id| xds.proxy_status(id),
                ),
                config_errors,
            };
            // Dumps first: once status.json shows a proxy ACKed, its dump is as new.
            write_dumps(&state, &current_plan, &xds, &keeper, &mut dumped)?;
            write_status(&state.status_path(), &status)?;
        }
    }
    .await;
    supervisor.shutdown();
    let _ = stop_xds.send(());
    // The dumps stay for `trellis proxy-config`, marked as no longer connected.
    for (ns, name) in dumped.keys() {
        if let Ok(mut dump) = read_dump(state.root(), ns, name) {
            dump.connected = false;
            let _ = write_dump(&state, &dump);
        }
    }
    result
}
