//! Security translation: mTLS transport sockets with SDS references,
//! PeerAuthentication modes, AuthorizationPolicy -> RBAC, RequestAuthentication -> jwt_authn.
//!
//! The builders take small input structs that mirror the Istio fields they use,
//! so they stay independent of how the model stores resources; the model maps
//! its objects into them. Every error names the object and the field path.

pub mod authz;
mod authz_match;
pub mod error;
pub mod jwt;
pub mod matchers;
pub mod origination;
pub mod peer_authn;
pub mod sds;
pub mod tls;
pub mod workload;

pub use error::{ObjectRef, SecurityError};

use envoy_types::pb::google::protobuf::Any;

/// Packs a message into `Any` with its type URL.
pub(crate) fn pack<M: prost::Message + prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}
