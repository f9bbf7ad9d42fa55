//! Where the mesh comes from in a cluster: kube-runtime reflectors for
//! Namespaces, Services, ServiceAccounts, Pods, EndpointSlices, MeshConfig and
//! every mesh kind, feeding the model that the in-operator xDS server serves.
//!
//! - [`input`]: Kubernetes objects → [`Input`] (mesh kinds as
//!   [`trellis_api::Resource`], the type universal mode loads from files) — pure.
//! - [`feed`]: the synchronous index (apply / delete / reset) over the model,
//!   with the configuration objects, namespaces and pods status needs — pure.
//! - [`credentials`]: `credentialName` Secrets (Gateways, DestinationRules) → SDS resources — pure.
//! - [`snapshot`]: the xDS [`SnapshotSource`](trellis_xds::SnapshotSource) over
//!   the current model.
//! - [`reflect`]: the watchers and the batching loop (the only I/O).
#![forbid(unsafe_code)]

pub mod credentials;
pub mod feed;
pub mod input;
pub mod reflect;
pub mod snapshot;

pub use feed::{
    ConfigContent, ConfigObject, MeshFeed, MeshView, NsName, is_mesh_wide_peer_authentication,
    programmed, push_scope,
};
pub use input::{Change, Input, SourceKind, Unreadable, input_from_json, secret_input};
pub use reflect::{Sources, api_resource};
pub use snapshot::ModelSnapshots;

/// Every error of the sources.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("watching {kind}: {source}")]
    Watch {
        kind: &'static str,
        #[source]
        source: kube::runtime::watcher::Error,
    },
}
