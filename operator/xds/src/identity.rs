//! Who a proxy is: the node id it claims and the SPIFFE id its certificate proves.
//!
//! Node id format (Istio's, so proxies look familiar in Envoy's admin and in tools):
//! `<kind>~<ip>~<name>.<namespace>~<namespace>.svc.<domain>` where `<kind>` is `sidecar`
//! or `router` (a gateway, Istio's word). The namespace is read from the last field
//! (namespaces are DNS labels, so it holds no dot) and the name is the third field minus
//! `.<namespace>`, so names containing dots still parse. The service account is not part
//! of Istio's node id; it travels in the node metadata under `SERVICE_ACCOUNT` (Istio's
//! key), or, when that is absent, in `node.cluster` as `<service-account>.<namespace>`
//! (what an injected sidecar sets with `--service-cluster`, since its bootstrap is shared
//! by the whole namespace and carries no per-pod metadata). Both the namespace and the service account must equal those of the client
//! certificate's SPIFFE id, so the claim is only a name, never a credential.
use std::fmt;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;

use crate::XdsError;

/// Node metadata key carrying the proxy's service account.
pub const SERVICE_ACCOUNT_METADATA_KEY: &str = "SERVICE_ACCOUNT";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyKind {
    Sidecar,
    Gateway,
}

impl ProxyKind {
    /// The first field of the node id.
    pub const fn node_id_word(self) -> &'static str {
        match self {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Gateway => "router",
        }
    }
}

/// A proxy as the server knows it: what it is, where it lives and which identity it runs as.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyId {
    pub kind: ProxyKind,
    pub namespace: String,
    pub name: String,
    pub service_account: String,
}

impl ProxyId {
    pub fn new(kind: ProxyKind, namespace: &str, name: &str, service_account: &str) -> Self {
        ProxyId {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            service_account: service_account.to_string(),
        }
    }

    /// The node id Envoy must send (put it in the bootstrap's `node.id`).
    pub fn node_id(&self, ip: &str, dns_domain: &str) -> String {
        format!(
            "{}~{ip}~{}.{}~{}.svc.{dns_domain}",
            self.kind.node_id_word(),
            self.name,
            self.namespace,
            self.namespace
        )
    }

    /// Reads the proxy identity a node claims: the node id plus the service account from
    /// the `SERVICE_ACCOUNT` metadata, else from `node.cluster` `<service-account>.<namespace>`.
    pub fn from_node(node: &Node) -> Result<ProxyId, XdsError> {
        let (kind, namespace, name) = parse_node_id(&node.id)?;
        let from_metadata = node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get(SERVICE_ACCOUNT_METADATA_KEY));
        let service_account = match from_metadata {
            Some(v) => match &v.kind {
                Some(Kind::StringValue(s)) if !s.is_empty() => s.clone(),
                _ => {
                    return Err(XdsError::InvalidNode {
                        node_id: node.id.clone(),
                        field: format!("node.metadata.{SERVICE_ACCOUNT_METADATA_KEY}"),
                        reason: "not a non-empty string".to_string(),
                    });
                }
            },
            None => node
                .cluster
                .strip_suffix(namespace.as_str())
                .and_then(|sa| sa.strip_suffix('.'))
                .filter(|sa| !sa.is_empty())
                .map(str::to_string)
                .ok_or_else(|| XdsError::InvalidNode {
                    node_id: node.id.clone(),
                    field: format!("node.metadata.{SERVICE_ACCOUNT_METADATA_KEY}"),
                    reason: format!(
                        "missing, and node.cluster `{}` is not `<service-account>.{namespace}`",
                        node.cluster
                    ),
                })?,
        };
        Ok(ProxyId {
            kind,
            namespace,
            name,
            service_account,
        })
    }
}

impl fmt::Display for ProxyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Parses `<kind>~<ip>~<name>.<namespace>~<namespace>.svc.<domain>` into (kind, namespace, name).
pub fn parse_node_id(node_id: &str) -> Result<(ProxyKind, String, String), XdsError> {
    let invalid = |reason: &str| XdsError::InvalidNode {
        node_id: node_id.to_string(),
        field: "node.id".to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = node_id.split('~').collect();
    let [kind, _ip, name_dot_ns, domain] = parts.as_slice() else {
        return Err(invalid(
            "expected 4 fields `<kind>~<ip>~<name>.<namespace>~<namespace>.svc.<domain>`",
        ));
    };
    let kind = match *kind {
        "sidecar" => ProxyKind::Sidecar,
        "router" => ProxyKind::Gateway,
        _ => return Err(invalid("kind must be `sidecar` or `router`")),
    };
    let (namespace, rest) = domain
        .split_once('.')
        .ok_or_else(|| invalid("last field must be `<namespace>.svc.<domain>`"))?;
    if !rest.starts_with("svc.") && rest != "svc" {
        return Err(invalid("last field must be `<namespace>.svc.<domain>`"));
    }
    if !is_dns_label(namespace) {
        return Err(invalid("namespace is not a DNS label"));
    }
    let name = name_dot_ns
        .strip_suffix(namespace)
        .and_then(|n| n.strip_suffix('.'))
        .ok_or_else(|| invalid("third field must be `<name>.<namespace>`"))?;
    if name.is_empty() {
        return Err(invalid("proxy name is empty"));
    }
    Ok((kind, namespace.to_string(), name.to_string()))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A workload identity `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl SpiffeId {
    pub fn parse(uri: &str) -> Result<SpiffeId, XdsError> {
        let invalid = |reason: &str| XdsError::InvalidSpiffeId {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| invalid("scheme must be spiffe://"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [td, "ns", ns, "sa", sa] = parts.as_slice() else {
            return Err(invalid("path must be /ns/<namespace>/sa/<service-account>"));
        };
        if td.is_empty() || ns.is_empty() || sa.is_empty() {
            return Err(invalid("empty trust domain, namespace or service account"));
        }
        Ok(SpiffeId {
            trust_domain: td.to_string(),
            namespace: ns.to_string(),
            service_account: sa.to_string(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// Refuses a proxy whose claimed namespace/service account is not the one its
/// certificate proves, or whose certificate is from another trust domain.
pub fn authorize(proxy: &ProxyId, peer: &SpiffeId, trust_domain: &str) -> Result<(), XdsError> {
    if peer.trust_domain != trust_domain {
        return Err(XdsError::IdentityMismatch {
            proxy: proxy.to_string(),
            reason: format!(
                "certificate trust domain `{}` is not the mesh trust domain `{trust_domain}`",
                peer.trust_domain
            ),
        });
    }
    if peer.namespace != proxy.namespace || peer.service_account != proxy.service_account {
        return Err(XdsError::IdentityMismatch {
            proxy: proxy.to_string(),
            reason: format!(
                "node claims namespace `{}` service account `{}` but the certificate is {peer}",
                proxy.namespace, proxy.service_account
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{Struct, Value};
    use proptest::prelude::*;

    fn node(id: &str, sa: Option<&str>) -> Node {
        let mut metadata = Struct::default();
        if let Some(sa) = sa {
            metadata.fields.insert(
                SERVICE_ACCOUNT_METADATA_KEY.to_string(),
                Value {
                    kind: Some(Kind::StringValue(sa.to_string())),
                },
            );
        }
        Node {
            id: id.to_string(),
            metadata: Some(metadata),
            ..Default::default()
        }
    }

    #[test]
    fn parses_istio_style_node_ids_with_dotted_names() {
        let p = ProxyId::from_node(&node(
            "sidecar~10.0.0.1~web-1.v2.shop~shop.svc.cluster.local",
            Some("web"),
        ))
        .unwrap();
        assert_eq!(
            p,
            ProxyId::new(ProxyKind::Sidecar, "shop", "web-1.v2", "web")
        );
        let g = ProxyId::from_node(&node(
            "router~127.0.0.1~ingress.istio-system~istio-system.svc.cluster.local",
            Some("ingress"),
        ))
        .unwrap();
        assert_eq!(g.kind, ProxyKind::Gateway);
    }

    #[test]
    fn rejects_bad_node_ids_and_missing_service_account_with_the_field() {
        for bad in [
            "",
            "sidecar~1.2.3.4~web.shop",
            "pod~1~web.shop~shop.svc.cluster.local",
            "sidecar~1~web.other~shop.svc.cluster.local",
            "sidecar~1~.shop~shop.svc.cluster.local",
            "sidecar~1~web.shop~shop.cluster.local",
        ] {
            let err = ProxyId::from_node(&node(bad, Some("sa"))).unwrap_err();
            assert!(err.to_string().contains("node.id"), "{bad}: {err}");
        }
        let err = ProxyId::from_node(&node("sidecar~1~web.shop~shop.svc.cluster.local", None))
            .unwrap_err();
        assert!(err.to_string().contains("SERVICE_ACCOUNT"), "{err}");
    }

    #[test]
    fn service_account_comes_from_node_cluster_when_metadata_has_none() {
        let id = "sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local";
        let mut n = node(id, None);
        n.cluster = "web.shop".into();
        let p = ProxyId::from_node(&n).unwrap();
        assert_eq!(p, ProxyId::new(ProxyKind::Sidecar, "shop", "web-1", "web"));
        // Metadata wins over node.cluster.
        let mut n = node(id, Some("cart"));
        n.cluster = "web.shop".into();
        assert_eq!(ProxyId::from_node(&n).unwrap().service_account, "cart");
        // A cluster in another namespace, or with no service account, is refused.
        for bad in ["web.bank", ".shop", "shop", "", "webshop"] {
            let mut n = node(id, None);
            n.cluster = bad.into();
            let err = ProxyId::from_node(&n).unwrap_err();
            assert!(err.to_string().contains("SERVICE_ACCOUNT"), "{bad}: {err}");
        }
        // A dotted service account name in the cluster still parses.
        let mut n = node(id, None);
        n.cluster = "web.v2.shop".into();
        assert_eq!(ProxyId::from_node(&n).unwrap().service_account, "web.v2");
    }

    #[test]
    fn spiffe_ids_parse_and_authorize_only_the_matching_identity() {
        let id = SpiffeId::parse("spiffe://td/ns/shop/sa/web").unwrap();
        assert_eq!(id.to_string(), "spiffe://td/ns/shop/sa/web");
        let me = ProxyId::new(ProxyKind::Sidecar, "shop", "web-1", "web");
        assert!(authorize(&me, &id, "td").is_ok());
        assert!(authorize(&me, &id, "other.td").is_err());
        let other_sa = ProxyId::new(ProxyKind::Sidecar, "shop", "web-1", "cart");
        assert!(authorize(&other_sa, &id, "td").is_err());
        let other_ns = ProxyId::new(ProxyKind::Sidecar, "bank", "web-1", "web");
        assert!(authorize(&other_ns, &id, "td").is_err());
        for bad in [
            "http://td/ns/a/sa/b",
            "spiffe://td/ns/a",
            "spiffe:///ns/a/sa/b",
            "spiffe://td/sa/a/ns/b",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn node_id_parser_never_panics(s in ".{0,80}") {
            let _ = parse_node_id(&s);
            let _ = SpiffeId::parse(&s);
        }

        #[test]
        fn node_id_round_trips(
            ns in "[a-z][a-z0-9-]{0,10}[a-z0-9]",
            name in "[a-z][a-z0-9.-]{0,20}",
            gateway in any::<bool>(),
        ) {
            let kind = if gateway { ProxyKind::Gateway } else { ProxyKind::Sidecar };
            let id = ProxyId::new(kind, &ns, &name, "sa");
            let (k, n, m) = parse_node_id(&id.node_id("127.0.0.1", "cluster.local")).unwrap();
            prop_assert_eq!((k, n, m), (kind, ns, name));
        }
    }
}
