//! What the operator is told on its command line.

use std::time::Duration;
use trellis_ca::{KeyAlgorithm, RenewalPolicy, TrustDomain};

/// Leader election settings (as client-go's: lease duration > renew deadline > retry period).
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Name of the Lease in the operator's namespace.
    pub name: String,
    /// This replica's identity (`holderIdentity`), unique per process.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// The leader gives up leadership when it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or tried.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Defaults of client-go: 15 s, 10 s, 2 s.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The operator's settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The operator's namespace: CA Secrets, Lease, control-plane MeshStatus.
    pub namespace: String,
    /// Trust domain of every identity.
    pub trust_domain: TrustDomain,
    /// Lifetime of workload certificates.
    pub workload_ttl: Duration,
    /// Key type of a new self-signed root (workload keys are ECDSA P-256, as the CA issues them).
    pub root_key: KeyAlgorithm,
    /// When certificates are renewed.
    pub renewal: RenewalPolicy,
    /// Lifetime of a new self-signed root.
    pub root_ttl: Duration,
    /// Identities reissued per second after a root change.
    pub rotation_rate: f64,
    /// How long previous roots stay trusted after the last identity moved to the new root.
    pub rotation_grace: Duration,
    /// Leader election.
    pub lease: LeaseConfig,
    /// Where `/metrics`, `/healthz`, `/readyz` are served.
    pub metrics_addr: std::net::SocketAddr,
    /// Where the xDS server listens (started by the xDS controller).
    pub xds_addr: std::net::SocketAddr,
    /// The longest wait between two tries of a failing object.
    pub max_backoff: Duration,
    /// How long the operator keeps serving after it is told to stop, with `/readyz`
    /// failing, before it stops (see [`crate::run`]).
    pub shutdown_delay: Duration,
    /// Data of ConfigMap `trellis-sidecar-bootstrap` kept in every mesh namespace (the
    /// Envoy bootstrap of injected sidecars and its SDS files, file name → content);
    /// empty: that ConfigMap is not managed.
    pub sidecar_bootstrap: std::collections::BTreeMap<String, String>,
}

impl OperatorConfig {
    /// Defaults for everything but the namespace and the Lease.
    pub fn new(namespace: impl Into<String>, lease: LeaseConfig) -> Self {
        Self {
            namespace: namespace.into(),
            trust_domain: TrustDomain::new("cluster.local").expect("valid default trust domain"),
            workload_ttl: trellis_ca::DEFAULT_WORKLOAD_TTL,
            root_key: KeyAlgorithm::EcdsaP256,
            renewal: RenewalPolicy::default(),
            root_ttl: trellis_ca::DEFAULT_ROOT_TTL,
            rotation_rate: 100.0,
            rotation_grace: Duration::from_secs(60),
            lease,
            metrics_addr: ([0, 0, 0, 0], 15014).into(),
            xds_addr: ([0, 0, 0, 0], 15012).into(),
            max_backoff: Duration::from_secs(300),
            shutdown_delay: Duration::ZERO,
            sidecar_bootstrap: Default::default(),
        }
    }
}
