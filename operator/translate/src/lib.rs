//! Translation of the mesh model into the Envoy resources of one proxy.
//!
//! Pure and deterministic: the same model and proxy give byte-identical output
//! (every list sorted by name, names such as `outbound|<port>|<subset>|<host>`).
#![forbid(unsafe_code)]

pub mod cluster;
pub mod endpoints;
pub mod http_rule;
pub mod names;
pub mod policy;
pub mod route;
pub mod security;
mod types;

pub use types::{
    ErrorCode, ExplicitPorts, ListenerShape, Proxy, ProxyKind, ProxyResources, SdsSource,
    SecretRef, TRUST_BUNDLE_SECRET, TranslateError, TranslateOptions, WORKLOAD_CERT_SECRET,
};
