//! Translation of the mesh model into the Envoy resources of one proxy.
//!
//! Pure and deterministic: the same model and proxy give byte-identical output
//! (every list sorted by name, names such as `outbound|<port>|<subset>|<host>`).
#![forbid(unsafe_code)]

pub mod access_log;
pub mod cluster;
pub mod credential_uses;
pub mod delegate;
pub mod destination_rule;
pub mod encode;
pub mod endpoints;
pub mod forward_proxy;
pub mod gateway;
pub mod http_rule;
pub mod interception;
pub mod listener;
pub mod locality;
pub mod names;
pub mod outbound;
pub mod policy;
pub mod resource_list;
pub mod route;
pub mod security;
mod shared;
mod sidecar;
mod types;
pub mod virtual_service;

pub use encode::PackedRouteConfiguration;
pub use resource_list::ResourceList;
pub use sidecar::{Translator, translate};
pub use types::{
    ErrorCode, ExplicitPorts, ListenerShape, Proxy, ProxyKind, ProxyResources, SdsSource,
    SecretRef, TRUST_BUNDLE_SECRET, TranslateError, TranslateOptions, WORKLOAD_CERT_SECRET,
};
