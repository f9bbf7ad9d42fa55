//! ClusterLoadAssignments: the endpoints of one cluster.
use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    Address, Locality as EnvoyLocality, Metadata, Pipe, SocketAddress, address,
    socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use trellis_model::Endpoint;

use crate::cluster::{TRANSPORT_SOCKET_MATCH, tls_mode_struct};
use crate::locality::{LocalityLb, Member, groups};

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
    locality_load_assignment(cluster_name, endpoints, None, false)
}

/// [`load_assignment`] with the endpoints grouped by locality, with the
/// priorities and weights locality load balancing `lb` gives them for its
/// client; `eds`: the assignment goes over EDS (`failoverPriority` applies).
pub fn locality_load_assignment(
    cluster_name: &str,
    endpoints: &[Endpoint],
    lb: Option<&LocalityLb<'_>>,
    eds: bool,
) -> ClusterLoadAssignment {
    let mut sorted: Vec<&Endpoint> = endpoints.iter().collect();
    sorted.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
    sorted.dedup_by(|a, b| a.address == b.address && a.port == b.port);
    let members: Vec<Member<'_>> = (sorted.iter())
        .map(|e| Member {
            locality: e.locality.as_deref(),
            labels: &e.labels,
            weight: e.weight,
        })
        .collect();
    let endpoints = groups(&members, lb, eds)
        .into_iter()
        .map(|g| LocalityLbEndpoints {
            locality: (!g.locality.is_empty()).then(|| EnvoyLocality {
                region: g.locality.region.clone(),
                zone: g.locality.zone.clone(),
                sub_zone: g.locality.subzone.clone(),
            }),
            lb_endpoints: g.members.iter().map(|i| lb_endpoint(sorted[*i])).collect(),
            load_balancing_weight: Some(UInt32Value {
                value: g.weight.max(1),
            }),
            priority: g.priority,
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints,
        ..Default::default()
    }
}

fn lb_endpoint(e: &Endpoint) -> LbEndpoint {
    LbEndpoint {
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
    }
}
