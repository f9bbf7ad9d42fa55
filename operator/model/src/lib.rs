//! The mesh index: a pure, synchronous model fed by apply/delete events.
//!
//! Watching lives elsewhere (Kubernetes reflectors, a directory watcher); this
//! crate only keeps the current state and answers the translator's questions.
//! [`MeshModel::apply`] and [`MeshModel::delete`] report a [`ChangeScope`]: the
//! proxies whose output can have changed, so a push can be scoped.
#![forbid(unsafe_code)]

mod config;
mod error;
mod index;
mod registry;
mod scope;
mod security;
mod service;
mod service_entry;
mod traffic;
mod traffic_index;
mod workload;

pub use config::{AccessLog, MeshSettings, MtlsMode, OutboundPolicy};
pub use error::ModelError;
pub use index::{Endpoint, MeshModel, Resource, ResourceKey, ResourceKind};
pub use registry::{Registry, ServiceSource, fqdn_candidates, host_matches, strip_port};
pub use scope::{ChangeScope, ProxyId};
pub use service::{
    ExportTo, MeshService, Protocol, Resolution, ServiceOrigin, ServicePort, StaticEndpoint,
    TargetPort,
};
pub use service_entry::{gateway_ref, services_of_entry};
pub use traffic::{Store, Stored, qualify};
pub use traffic_index::TrafficIndex;
pub use workload::{
    LEGACY_LOCALITY_LABEL, LOCALITY_LABEL, NODE_REGION_LABELS, NODE_SUBZONE_LABEL,
    NODE_ZONE_LABELS, SIDECAR_CONTAINER_NAMES, TLS_MODE_LABEL, Workload, labels_match,
    node_locality, pod_label_locality,
};
