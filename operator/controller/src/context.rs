//! The state shared by every controller and the HTTP endpoints.

use crate::backoff::Backoffs;
use crate::ca_state::CaHandle;
use crate::config::OperatorConfig;
use crate::events::EventSink;
use crate::leader::LeaderGate;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;
use trellis_ca::Rng;
use trellis_telemetry::Telemetry;

/// A source of the current time (injected so tests can move it).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// One per process, behind an `Arc`, given to every controller.
pub struct Context {
    /// The API client (every replica reads; only the leader writes).
    pub client: kube::Client,
    /// Command-line settings.
    pub config: OperatorConfig,
    /// Whether this replica may write; writes hold a permit from it.
    pub leader: LeaderGate,
    /// The CA in use and its problems.
    pub ca: CaHandle,
    /// Metrics and readiness.
    pub telemetry: Telemetry,
    /// Kubernetes events (leader only).
    pub events: EventSink,
    /// Per-object error backoff.
    pub backoffs: Backoffs,
    /// `notAfter` of every identity Secret (kept by the identity controller from its
    /// watch): counts and earliest expiry per namespace for MeshStatus and metrics.
    pub identities: Arc<std::sync::Mutex<crate::identity::ExpiryIndex>>,
    /// Trust domain and workload certificate lifetime in force (MeshConfig over flags).
    pub identity_settings: crate::identity_settings::IdentitySettingsHandle,
    /// The spec of `MeshConfig/default` as last read (the default spec when there is
    /// none); `None` until MeshConfig has been listed. Kept by the same watch as
    /// `identity_settings`, for the other readers (the webhook's sidecar settings).
    pub mesh_config: watch::Sender<Option<Arc<trellis_api::mesh::MeshConfigSpec>>>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness for keys and serials.
    pub rng: Rng,
    shutdown: watch::Receiver<bool>,
}

impl Context {
    /// A context for `client` and `config`; `shutdown` turns true when the process stops.
    pub fn new(
        client: kube::Client,
        config: OperatorConfig,
        telemetry: Telemetry,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let leader = LeaderGate::new();
        let events = EventSink::new(client.clone(), &config.lease.identity, leader.clone());
        let backoffs = Backoffs::new(config.max_backoff);
        Self {
            client,
            config,
            leader,
            ca: CaHandle::new(),
            telemetry,
            events,
            backoffs,
            identities: Arc::default(),
            identity_settings: Default::default(),
            mesh_config: watch::Sender::new(None),
            clock: Arc::new(SystemClock),
            rng: Arc::new(trellis_ca::SystemRandom::new()),
            shutdown,
        }
    }

    /// The identity settings in force: MeshConfig over the flags; the flags
    /// alone until MeshConfig has been read.
    pub fn identity_settings_in_force(&self) -> Arc<crate::identity_settings::IdentitySettings> {
        self.identity_settings.current().unwrap_or_else(|| {
            Arc::new(crate::identity_settings::IdentitySettings::from_flags(
                &self.config,
            ))
        })
    }

    /// Resolves when the process is asked to stop.
    pub fn shutdown(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.shutdown.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Whether the process is stopping.
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver of the stop flag.
    pub fn shutdown_receiver(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}
