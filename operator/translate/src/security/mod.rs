//! Security translation: mTLS transport sockets with SDS references,
//! PeerAuthentication modes, AuthorizationPolicy -> RBAC, RequestAuthentication -> jwt_authn.
//!
//! The builders take small input structs that mirror the Istio fields they use,
//! so they stay independent of how the model stores resources; the model maps
//! its objects into them. Every error names the object and the field path.

pub mod authz;
mod authz_match;
pub mod error;
pub mod ext_authz;
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

/// Packs an HTTP RBAC filter config with its policies in name order (see [`crate::encode`]).
pub(crate) fn pack_http_rbac(
    filter: &envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac,
) -> Any {
    let mut rest = filter.clone();
    let (rules, shadow) = (rest.rules.take(), rest.shadow_rules.take());
    pack_rbac_filter(&rest, rules, shadow)
}

/// Packs a network RBAC filter config with its policies in name order (see [`crate::encode`]).
pub(crate) fn pack_network_rbac(
    filter: &envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac,
) -> Any {
    let mut rest = filter.clone();
    let (rules, shadow) = (rest.rules.take(), rest.shadow_rules.take());
    pack_rbac_filter(&rest, rules, shadow)
}

/// An RBAC filter config (`rest`, its rule sets taken out) packed with its
/// `rules` and `shadow_rules` appended in name order.
fn pack_rbac_filter<F: prost::Message + prost::Name>(
    rest: &F,
    rules: Option<envoy_types::pb::envoy::config::rbac::v3::Rbac>,
    shadow: Option<envoy_types::pb::envoy::config::rbac::v3::Rbac>,
) -> Any {
    Any {
        type_url: F::type_url(),
        value: with_rbacs(rest.encode_to_vec(), rules, shadow),
    }
}

/// Both RBAC filters carry `rules` as field 1 and `shadow_rules` as field 2;
/// protobuf readers accept fields in any order, so they are appended.
fn with_rbacs(
    mut buf: Vec<u8>,
    rules: Option<envoy_types::pb::envoy::config::rbac::v3::Rbac>,
    shadow: Option<envoy_types::pb::envoy::config::rbac::v3::Rbac>,
) -> Vec<u8> {
    for (tag, rbac) in [(1, rules), (2, shadow)] {
        if let Some(rbac) = rbac {
            prost::encoding::bytes::encode(tag, &rbac_bytes(&rbac), &mut buf);
        }
    }
    buf
}

/// An RBAC message with its `policies` (field 2) in name order.
fn rbac_bytes(rbac: &envoy_types::pb::envoy::config::rbac::v3::Rbac) -> Vec<u8> {
    let mut rest = rbac.clone();
    let policies = std::mem::take(&mut rest.policies);
    let mut buf = prost::Message::encode_to_vec(&rest);
    crate::encode::encode_sorted_map(2, policies, &mut buf);
    buf
}

#[cfg(test)]
mod pack_tests {
    use super::*;
    use envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac};
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
    use prost::Message;

    #[test]
    fn rbac_packing_is_deterministic_and_decodes_to_the_same_config() {
        let rbac = |n: usize| Rbac {
            action: 1,
            policies: (0..n)
                .map(|i| (format!("policy-{i}"), Policy::default()))
                .collect(),
            ..Default::default()
        };
        let filter = HttpRbac {
            rules: Some(rbac(20)),
            shadow_rules: Some(rbac(7)),
            shadow_rules_stat_prefix: "p_".into(),
            ..Default::default()
        };
        let a = pack_http_rbac(&filter);
        // a clone gets a new HashMap (new iteration order), same bytes out
        let b = pack_http_rbac(&HttpRbac {
            rules: Some(rbac(20)),
            ..filter.clone()
        });
        assert_eq!(a, b);
        assert_eq!(HttpRbac::decode(a.value.as_slice()).unwrap(), filter);
    }
}
