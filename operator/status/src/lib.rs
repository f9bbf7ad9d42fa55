//! What the operator tells users about their mesh configuration and the mesh:
//!
//! - [`conditions`]: `Accepted` / `Warning` of every mesh object (pure).
//! - [`analysis`]: the translation's findings per object (pure).
//! - [`mesh_status`]: the `MeshStatus` objects (pure).
//! - [`writer`]: the leader-only loop that writes them with server-side apply on the
//!   status subresource (field manager `trellis`), skips unchanged ones and
//!   publishes events for rejected configuration.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod conditions;
pub mod mesh_status;
pub mod runtime;
pub mod writer;
pub mod xds_metrics;

/// Every error of the status writers.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("writing the status of {object}: {source}")]
    Write {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    NotLeader(#[from] trellis_controller::Error),
}
