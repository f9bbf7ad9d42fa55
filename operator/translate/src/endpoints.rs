//! ClusterLoadAssignments: the endpoints of one cluster.
use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    Address, Metadata, Pipe, SocketAddress, address, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use trellis_model::Endpoint;

use crate::cluster::{TRANSPORT_SOCKET_MATCH, tls_mode_struct};

/// A TCP socket address.
pub fn socket_address(address: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// An endpoint's address: a Unix socket for `unix://<path>` (a ServiceEntry
/// endpoint), else a TCP socket.
fn endpoint_address(address: &str, port: u16) -> Address {
    match address.strip_prefix("unix://") {
        Some(path) => Address {
            address: Some(address::Address::Pipe(Pipe {
                path: path.to_string(),
                mode: 0,
            })),
        },
        None => socket_address(address, port),
    }
}

/// The assignment for `cluster_name`, endpoints sorted by address and port. Endpoints
/// with a sidecar carry `tlsMode: istio` so auto mTLS picks the mTLS socket for them.
pub fn load_assignment(cluster_name: &str, endpoints: &[Endpoint]) -> ClusterLoadAssignment {
    let mut sorted: Vec<&Endpoint> = endpoints.iter().collect();
    sorted.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
    sorted.dedup_by(|a, b| a.address == b.address && a.port == b.port);
    let lb_endpoints: Vec<LbEndpoint> = sorted
        .into_iter()
        .map(|e| LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
                address: Some(endpoint_address(&e.address, e.port)),
                ..Default::default()
            })),
            metadata: e.has_sidecar.then(|| Metadata {
                filter_metadata: HashMap::from([(
                    TRANSPORT_SOCKET_MATCH.to_string(),
                    tls_mode_struct(),
                )]),
                ..Default::default()
            }),
            load_balancing_weight: Some(UInt32Value {
                value: e.weight.max(1),
            }),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints: if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }]
        },
        ..Default::default()
    }
}
