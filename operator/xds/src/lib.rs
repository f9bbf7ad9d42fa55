//! The xDS server: aggregated discovery (State-of-the-World ADS) over gRPC for sidecars
//! and gateways, authenticated by mTLS with the mesh CA.
//!
//! - [`protocol`]: the per-stream ADS state machine (no I/O).
//! - [`snapshot`]: per-proxy snapshots, content hashes, shared resources, [`SnapshotSource`].
//! - [`identity`]: [`ProxyId`], the node id format, SPIFFE ids and the authorization rule.
//! - [`debounce`]: push coalescing (quiet period, maximum delay) and push scopes.
//! - [`server`]: the tonic service, the connection registry, pushes, status and metrics.
//! - [`tls`]: the reloadable mTLS acceptor that hands the peer's SPIFFE id to the service.
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
    ContentHash, Resource, ResourceCache, Snapshot, SnapshotBuilder, SnapshotSource,
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
