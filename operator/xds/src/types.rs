//! The resource types served over ADS and their type URLs.
use std::fmt;

/// One xDS resource type. The declaration order is the warming order used when a
/// snapshot change touches several types: clusters before endpoints, listeners before
/// routes, secrets last (Envoy asks for secrets while it warms clusters and listeners).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    Secret,
}

impl ResourceType {
    /// Every type, in warming order.
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::Secret,
    ];

    pub const fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Listeners and clusters are requested as "everything for me" (wildcard); the
    /// other types are requested by name.
    pub const fn is_wildcard_type(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }

    /// Position in [`ResourceType::ALL`] (used to index per-type arrays).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The word `trellis proxy-config` uses for this type.
    pub const fn plural_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "clusters",
            ResourceType::Endpoint => "endpoints",
            ResourceType::Listener => "listeners",
            ResourceType::Route => "routes",
            ResourceType::Secret => "secrets",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_round_trip_and_unknown_is_none() {
        for t in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(t.type_url()), Some(t));
            assert_eq!(ResourceType::ALL[t.index()], t);
        }
        assert_eq!(
            ResourceType::from_type_url("type.googleapis.com/envoy.config.core.v3.Node"),
            None
        );
    }

    #[test]
    fn warming_order_puts_clusters_before_endpoints_and_listeners_before_routes() {
        assert!(ResourceType::Cluster < ResourceType::Endpoint);
        assert!(ResourceType::Listener < ResourceType::Route);
    }
}
