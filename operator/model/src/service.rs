//! Services as the mesh sees them: one shape for Kubernetes Services and
//! ServiceEntries, keyed by fully-qualified host name.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::MeshSettings;

/// The application protocol of a service port, from `appProtocol` or the
/// port name prefix (`http-`, `grpc-`, `tcp-`...), as Istio reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Https,
    Tls,
    Tcp,
    /// Nothing declared. Trellis treats it as HTTP (Istio would sniff).
    Unspecified,
}

impl Protocol {
    /// Reads `appProtocol` first, then the port name (`http`, `http-web`, `grpc-x`).
    pub fn detect(app_protocol: Option<&str>, port_name: Option<&str>) -> Protocol {
        if let Some(p) = app_protocol.and_then(Self::parse) {
            return p;
        }
        port_name
            .and_then(|n| Self::parse(n.split('-').next().unwrap_or(n)))
            .unwrap_or(Protocol::Unspecified)
    }

    pub fn parse(value: &str) -> Option<Protocol> {
        let lower = value.to_ascii_lowercase();
        // `kubernetes.io/h2c` style appProtocols name the protocol after the slash.
        let bare = lower.rsplit('/').next().unwrap_or(&lower);
        Some(match bare {
            "http" | "http1" | "http/1.1" => Protocol::Http,
            "http2" | "h2c" => Protocol::Http2,
            "grpc" | "grpc-web" => Protocol::Grpc,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" | "mongo" | "mysql" | "redis" => Protocol::Tcp,
            _ => return None,
        })
    }

    /// Whether Envoy handles this port with the HTTP connection manager.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Unspecified
        )
    }

    /// Whether upstream connections should speak HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

/// Where a service port sends traffic on each endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetPort {
    Number(u16),
    /// A named container / WorkloadEntry port.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub target_port: TargetPort,
    pub protocol: Protocol,
}

/// How the endpoints of a service are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// Workloads selected by labels (EDS).
    Endpoints,
    /// Endpoint addresses are host names resolved by Envoy, every address
    /// an endpoint (ServiceEntry DNS).
    Dns,
    /// One endpoint's host name, resolved by Envoy for each new connection,
    /// which goes to the first address (ServiceEntry DNS_ROUND_ROBIN): for
    /// hosts behind many changing addresses.
    DnsRoundRobin,
    /// Fixed IP endpoints (ServiceEntry STATIC).
    Static,
    /// Forwarded to the original destination (ServiceEntry NONE).
    Passthrough,
}

/// A fixed endpoint: declared by a ServiceEntry, or listed by an EndpointSlice of a
/// Service without a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StaticEndpoint {
    pub address: String,
    /// Port overrides by service port name.
    pub ports: BTreeMap<String, u16>,
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight (ServiceEntry `endpoints[].weight`); 0 counts as 1.
    pub weight: u32,
    /// Whose identity the endpoint's server presents (ServiceEntry
    /// `endpoints[].serviceAccount`, in the entry's namespace).
    pub service_account: Option<String>,
    /// ServiceEntry `endpoints[].locality` (`region/zone/subzone`).
    pub locality: Option<String>,
}

/// Who may see a resource (`exportTo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ExportTo {
    /// `*` or unset.
    #[default]
    All,
    /// Listed namespaces; `.` is already replaced by the owner's namespace.
    Namespaces(Vec<String>),
}

impl ExportTo {
    /// Reads an `exportTo` list as Istio does: empty or containing `*` exports everywhere,
    /// `.` is the owner's namespace, `~` exports nowhere.
    pub fn from_list(list: &[String], owner_namespace: &str) -> ExportTo {
        if list.is_empty() || list.iter().any(|n| n == "*") {
            return ExportTo::All;
        }
        let mut namespaces: Vec<String> = list
            .iter()
            .filter(|n| n.as_str() != "~")
            .map(|n| {
                if n == "." {
                    owner_namespace.to_string()
                } else {
                    n.clone()
                }
            })
            .collect();
        namespaces.sort();
        namespaces.dedup();
        ExportTo::Namespaces(namespaces)
    }

    pub fn visible_from(&self, namespace: &str) -> bool {
        match self {
            ExportTo::All => true,
            ExportTo::Namespaces(list) => list.iter().any(|n| n == namespace),
        }
    }
}

/// Where a service's definition came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceOrigin {
    Kubernetes,
    /// A ServiceEntry (`name` of the entry); `external` for `location: MESH_EXTERNAL`.
    ServiceEntry {
        name: String,
        external: bool,
    },
}

/// One host of the mesh registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeshService {
    /// Fully-qualified host, e.g. `cart.shop.svc.cluster.local` or `api.example.com`
    /// (may be a wildcard such as `*.example.com` for ServiceEntries).
    pub hostname: String,
    pub namespace: String,
    /// The owning object's name (Service or ServiceEntry).
    pub name: String,
    pub origin: ServiceOrigin,
    pub ports: Vec<ServicePort>,
    /// Labels selecting workloads in `namespace` (Endpoints resolution).
    pub selector: Option<BTreeMap<String, String>>,
    pub resolution: Resolution,
    pub static_endpoints: Vec<StaticEndpoint>,
    pub export_to: ExportTo,
    /// The ClusterIP, or a ServiceEntry's `addresses` (IPs and CIDR ranges):
    /// where clients send to reach it by address.
    pub addresses: Vec<String>,
    /// Identities its servers present besides those of its workloads
    /// (ServiceEntry `subjectAltNames`), checked when the mesh's mTLS reaches it.
    pub subject_alt_names: Vec<String>,
}

impl MeshService {
    /// The first of [`MeshService::addresses`].
    pub fn address(&self) -> Option<&str> {
        self.addresses.first().map(String::as_str)
    }

    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == number)
    }

    /// A Kubernetes Service in the registry. `None` for a Service without a name or
    /// namespace; ports outside 1..=65535 are dropped.
    pub fn from_kubernetes(service: &Service, settings: &MeshSettings) -> Option<MeshService> {
        let name = service.metadata.name.clone()?;
        let namespace = service
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let spec = service.spec.clone().unwrap_or_default();
        let mut ports: Vec<ServicePort> = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok().filter(|p| *p > 0)?;
                let target_port = match p.target_port {
                    Some(IntOrString::Int(n)) => {
                        TargetPort::Number(u16::try_from(n).ok().filter(|p| *p > 0)?)
                    }
                    Some(IntOrString::String(s)) => match s.parse::<u16>() {
                        Ok(n) if n > 0 => TargetPort::Number(n),
                        _ => TargetPort::Name(s),
                    },
                    None => TargetPort::Number(port),
                };
                let udp = p.protocol.as_deref() == Some("UDP");
                if udp {
                    return None;
                }
                let port_name = p.name.clone().unwrap_or_default();
                Some(ServicePort {
                    protocol: Protocol::detect(p.app_protocol.as_deref(), p.name.as_deref()),
                    name: port_name,
                    port,
                    target_port,
                })
            })
            .collect();
        ports.sort();
        ports.dedup_by_key(|p| p.port);
        let address = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None");
        Some(MeshService {
            hostname: settings.service_fqdn(&name, &namespace),
            namespace,
            name,
            origin: ServiceOrigin::Kubernetes,
            ports,
            selector: spec.selector.filter(|s| !s.is_empty()),
            resolution: Resolution::Endpoints,
            static_endpoints: Vec::new(),
            export_to: ExportTo::All,
            addresses: address.into_iter().collect(),
            subject_alt_names: Vec::new(),
        })
    }
}
