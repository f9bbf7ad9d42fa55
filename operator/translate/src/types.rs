//! The public shapes of a translation: what goes in besides the model
//! ([`Proxy`], [`TranslateOptions`]) and what comes out ([`ProxyResources`]).
use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;

use crate::encode::PackedRouteConfiguration;
use crate::resource_list::ResourceList;
pub use crate::security::sds::{SdsSource, TRUST_BUNDLE_SECRET, WORKLOAD_CERT_SECRET};

/// Which proxy the resources are for. The workload `namespace/name` must be in
/// the model (a sidecar's own workload, or the pod/WorkloadEntry running a gateway).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub namespace: String,
    pub name: String,
}

impl Proxy {
    pub fn sidecar(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Proxy {
            kind: ProxyKind::Sidecar,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn gateway(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Proxy {
            kind: ProxyKind::Gateway,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyKind {
    /// The sidecar of one workload: inbound for its services, outbound to the mesh.
    Sidecar,
    /// An ingress gateway: listeners from the Gateways whose selector matches the workload.
    Gateway,
}

/// How traffic reaches a sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerShape {
    /// Kubernetes: iptables interception as Istio does it (outbound 15001 with
    /// original destination, inbound 15006, health 15021, stats 15090).
    Interception,
    /// Universal mode: inbound mTLS listeners on the workload's own address at the
    /// services' target ports, an outbound HTTP proxy port routing by Host, and
    /// explicit outbound ports for TCP services; all bound to the workload address.
    Explicit(ExplicitPorts),
}

/// The ports of the explicit (universal mode) shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExplicitPorts {
    /// The outbound HTTP proxy port (apps set `HTTP_PROXY` to it).
    pub outbound_http_port: u16,
    /// Outbound listener port per TCP service port, keyed by (service FQDN, service port).
    /// A TCP service port without an entry gets no outbound listener.
    pub tcp_outbound_ports: BTreeMap<(String, u16), u16>,
    /// Gateway listener ports are `declared + offset` when the declared port is below 1024.
    pub privileged_port_offset: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateOptions {
    pub shape: ListenerShape,
    /// Where the proxy's workload certificate and trust bundle come from.
    pub sds: SdsSource,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            shape: ListenerShape::Interception,
            sds: SdsSource::Ads,
        }
    }
}

/// A secret the proxy's resources reference by SDS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretRef {
    /// The proxy's own workload certificate ([`WORKLOAD_CERT_SECRET`]).
    WorkloadCertificate,
    /// The mesh trust bundle ([`TRUST_BUNDLE_SECRET`]).
    TrustBundle,
    /// A Secret named by `credentialName` (a Gateway server's, or a
    /// DestinationRule's TLS origination), in the proxy's own namespace.
    Credential { namespace: String, name: String },
}

impl SecretRef {
    /// The SDS resource name Envoy asks for.
    pub fn sds_name(&self) -> String {
        match self {
            SecretRef::WorkloadCertificate => WORKLOAD_CERT_SECRET.to_string(),
            SecretRef::TrustBundle => TRUST_BUNDLE_SECRET.to_string(),
            SecretRef::Credential { namespace, name } => {
                format!("kubernetes://{namespace}/{name}")
            }
        }
    }
}

/// Everything one proxy gets. Every list is sorted by resource name. Resources
/// are shared (`Arc`) between proxies that get the same; the lists of clusters,
/// endpoints and listeners share, as one part, what the proxy's outbound scope
/// gives every proxy of the scope. Route configurations come packed, as they
/// are sent ([`PackedRouteConfiguration::decode`] reads one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyResources {
    pub listeners: ResourceList<Listener>,
    pub routes: Vec<Arc<PackedRouteConfiguration>>,
    pub clusters: ResourceList<Cluster>,
    pub endpoints: ResourceList<ClusterLoadAssignment>,
    pub secrets: Vec<SecretRef>,
    /// Mesh resources (or parts of them) that were left out, with the reason.
    pub errors: Vec<TranslateError>,
}

/// What went wrong with one mesh resource; the resource (or the offending part)
/// was left out and everything else still applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TranslateError {
    /// The mesh resource's kind, e.g. `VirtualService`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Field path inside the resource, e.g. `spec.http[0].route[1].destination.subset`.
    pub path: String,
    pub message: String,
    /// The class of problem, for analyzers and status reasons.
    pub code: ErrorCode,
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}: {}: {}",
            self.kind, self.namespace, self.name, self.path, self.message
        )
    }
}

impl std::error::Error for TranslateError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// A VirtualService names a Gateway that does not exist.
    MissingGateway,
    /// A VirtualService host is not among the hosts of the Gateway it binds to.
    HostNotServedByGateway,
    /// A subset is not defined by any DestinationRule, or selects no endpoints.
    UnknownSubset,
    /// A subset selects no endpoints.
    EmptySubset,
    /// A DestinationRule's host matches no service.
    UnknownHost,
    /// Two VirtualServices claim the same host; the younger one is left out.
    ConflictingHost,
    /// A destination host of a route matches no service.
    UnknownDestination,
    /// A value the translator cannot express in Envoy (bad regex, bad duration...).
    InvalidValue,
    /// The proxy's own workload is not in the model.
    UnknownProxy,
    /// A Gateway server's `credentialName` names no Secret of the gateway's
    /// namespace that holds a certificate and key (found outside translation,
    /// where the Secrets are).
    MissingCredential,
    /// A rule's `delegate` names no VirtualService without hosts exported to
    /// the delegating one's namespace.
    UnknownDelegate,
    /// A delegate's rule matches requests outside the rule that delegates to it.
    DelegateConflict,
    /// A VirtualService without hosts (a delegate) that no rule delegates to.
    UnusedDelegate,
    /// A DestinationRule's `tunnel` on a host whose every port is served as
    /// HTTP: a tunnel carries TCP connections only, so it is never used.
    UnusedTunnel,
}
