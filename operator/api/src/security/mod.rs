//! `security.istio.io`: authentication and authorization kinds.

mod authorization_policy;
mod common;
mod peer_authentication;
mod request_authentication;

pub use authorization_policy::*;
pub use common::*;
pub use peer_authentication::*;
pub use request_authentication::*;

/// The API group of the security kinds.
pub const GROUP: &str = "security.istio.io";
/// Versions users write; both share the `v1` schema (`v1` is stored).
pub const VERSIONS: [&str; 2] = ["v1", "v1beta1"];
