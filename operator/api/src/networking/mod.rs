//! `networking.istio.io`: traffic management kinds.

mod common;
mod destination_rule;
mod gateway;
mod service_entry;
mod sidecar;
mod virtual_service;
mod workload_entry;

pub use common::*;
pub use destination_rule::*;
pub use gateway::*;
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;
pub use workload_entry::*;

/// The API group of the networking kinds.
pub const GROUP: &str = "networking.istio.io";
/// Versions users write; all share the `v1` schema (`v1` is stored).
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
