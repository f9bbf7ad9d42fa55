//! The xDS server: aggregated discovery (State-of-the-World ADS) over gRPC for sidecars
//! and gateways, authenticated by mTLS with the mesh CA.
//!
//! - [`protocol`]: the per-stream ADS state machine (no I/O).
//! - [`snapshot`]: per-proxy snapshots, content hashes, shared resources, [`SnapshotSource`].
//! - [`identity`]: [`ProxyId`], the node id format, SPIFFE ids and the authorization rule.
//! - [`debounce`]: push coalescing (quiet period, maximum delay) and push scopes.
//! - [`server`]: the tonic service, the connection registry, pushes, status and metrics.
//! - [`tls`]: the reloadable mTLS acceptor that hands the peer's SPIFFE id to the service.
//!
//! # Wiring (done by the binary; this crate knows nothing of the translator)
//!
//! 1. Keep one [`ResourceCache`] and implement [`SnapshotSource`]: for a [`ProxyId`],
//!    translate, pack each resource with `envoy_types::util::pack_any`, add it to a
//!    [`SnapshotBuilder`] under its name and `build(&cache)`.
//! 2. `XdsServer::new(XdsConfig::new(trust_domain), Arc::new(source))` inside Tokio, and
//!    `server.serve(listener, TlsSettings::from_pem(cert, key, bundle)?, shutdown)`; call
//!    `TlsSettings::reload` when the CA rotates the server certificate or the bundle.
//! 3. After each model change, `server.push(PushScope::Proxies(affected))` (or `All`):
//!    debounced, re-snapshotted per proxy, sent only when the proxy's hash changed.
//! 4. Bootstraps: `node.id` from [`ProxyId::node_id`], node metadata
//!    `SERVICE_ACCOUNT: <sa>`, an ADS cluster over mTLS with the workload certificate
//!    (see `tests/envoy_e2e.rs` for a bootstrap Envoy 1.40 accepts).
//! 5. `server.proxy_statuses()` / `proxy_status(id)` feed `trellis status` and
//!    `trellis proxy-config` (last sent resources per type, ACKed version, last NACK);
//!    `server.metrics()` feeds `/metrics`.
#![forbid(unsafe_code)]

pub mod debounce;
pub mod identity;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod tls;
pub mod types;

pub use debounce::{DebounceConfig, PushScope};
pub use identity::{ProxyId, ProxyKind, SpiffeId};
pub use metrics::MetricsSnapshot;
pub use protocol::AdsStream;
pub use server::{XdsConfig, XdsServer};
pub use snapshot::{
    ContentHash, Resource, ResourceCache, SharedResources, Snapshot, SnapshotBuilder,
    SnapshotSource,
};
pub use status::{NackRecord, ProxyStatus, SentResponse, TypeStatus};
pub use tls::TlsSettings;
pub use types::ResourceType;

/// Every error of the xDS server.
#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("proxy node `{node_id}`: field {field}: {reason}")]
    InvalidNode {
        node_id: String,
        field: String,
        reason: String,
    },
    #[error("SPIFFE id `{uri}`: {reason}")]
    InvalidSpiffeId { uri: String, reason: String },
    #[error("proxy {proxy}: identity refused: {reason}")]
    IdentityMismatch { proxy: String, reason: String },
    #[error("resource `{resource}`: unsupported type URL `{type_url}`")]
    UnsupportedResourceType { resource: String, type_url: String },
    #[error("resource {resource}: {reason}")]
    InvalidResource { resource: String, reason: String },
    #[error("snapshot for proxy {proxy}: {reason}")]
    Snapshot { proxy: String, reason: String },
    #[error("TLS settings: field {field}: {reason}")]
    Tls { field: String, reason: String },
    #[error("xDS listener {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("xDS gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}
