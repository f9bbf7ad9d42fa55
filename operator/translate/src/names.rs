//! Stable resource names, as Istio spells them.

/// `outbound|<port>|<subset>|<host>` (subset empty when none).
pub fn outbound_cluster(port: u16, subset: Option<&str>, host: &str) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// `inbound|<port>||` for the workload's target port.
pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The route configuration of the outbound HTTP listener for `port` (Istio names it by port).
pub fn outbound_route(port: u16) -> String {
    port.to_string()
}

/// The route configuration of an inbound HTTP listener.
pub fn inbound_route(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The explicit-shape HTTP proxy route configuration (every HTTP service, every port).
pub const OUTBOUND_HTTP_PROXY_ROUTE: &str = "outbound_http_proxy";

/// Istio's catch-all clusters.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughClusterIpv4";

/// Listener names of the interception shape.
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub const VIRTUAL_INBOUND: &str = "virtualInbound";

/// `<address>_<port>` as Istio names a listener.
pub fn listener_name(address: &str, port: u16) -> String {
    format!("{address}_{port}")
}

/// A gateway's route configuration for one server port (Istio: `http.<port>`, `https.<port>.<server>`).
pub fn gateway_route(port: u16) -> String {
    format!("http.{port}")
}
