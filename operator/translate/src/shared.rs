//! What a [`Translator`](crate::Translator) computes once and shares between the
//! outbound scopes of all namespaces (and so between all proxies): the traffic
//! index, and each outbound cluster with its endpoints keyed by what they depend
//! on — the service port, the subset and the DestinationRule in force. Two namespaces
//! that see the same DestinationRule for a host get the same `Arc`s. Outbound
//! listeners are shared by content: namespaces that see a service alike get the
//! same listener for it. Pure: the same model gives the same values whatever the
//! order of the queries.
use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use trellis_api::networking::DestinationRule;
use trellis_model::{
    Endpoint, MeshModel, MeshService, Resolution, ServicePort, Stored, TrafficIndex, Workload,
    labels_match,
};

use crate::cluster::{OutboundCluster, outbound_cluster};
use crate::destination_rule::cluster_policy;
use crate::endpoints::locality_load_assignment;
use crate::locality::{ClientLocality, LocalityLb, effective_setting};
use crate::names;
use crate::policy::{ClientTls, ClusterPolicy, HashKey, LoadBalancer, TcpProxyPolicy};
use crate::security::sds::SdsSource;
use crate::types::{SecretRef, TranslateError};

type Labels = std::collections::BTreeMap<String, String>;

/// (service host, port, subset, DestinationRule in force as (namespace, name),
/// the namespace its `credentialName`s are read in, where they apply).
/// The client's locality and labels are part of it: locality load balancing
/// gives each client its own priorities and weights.
type ClusterKey = (
    String,
    u16,
    Option<String>,
    Option<(String, String)>,
    Option<String>,
    ClientLocality,
);

/// One outbound cluster as built for a (port, subset, DestinationRule).
pub(crate) struct SharedCluster {
    pub cluster: Arc<Cluster>,
    /// EDS services: the cluster's endpoints.
    pub endpoints: Option<Arc<ClusterLoadAssignment>>,
    /// The subset (or service) selects no endpoints.
    pub empty: bool,
    /// Problems with the DestinationRule's policy for this port and subset.
    pub policy_errors: Vec<TranslateError>,
    /// `consistentHash.httpHeaderName` in force.
    pub hash_key: Option<HashKey>,
    /// What the TCP proxy to this cluster is given.
    pub tcp_proxy: TcpProxyPolicy,
    /// The `credentialName` Secrets its TLS references.
    pub secrets: Vec<SecretRef>,
}

/// Which outbound route forms the scopes carry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteForms {
    /// The explicit shape's HTTP proxy route configuration.
    pub http_proxy: bool,
    /// The interception shape's route configuration per port.
    pub per_port: bool,
}

pub(crate) struct Shared<'m> {
    pub index: TrafficIndex<'m>,
    pub routes: RouteForms,
    clusters: HashMap<ClusterKey, Arc<SharedCluster>>,
    /// Outbound listeners already built for some scope, by name.
    listeners: HashMap<String, Vec<Arc<Listener>>>,
    identities: HashMap<String, Arc<Vec<String>>>,
    /// Every endpoint of a service port (subsets filter these by labels).
    port_endpoints: HashMap<(String, u16), Arc<Vec<Endpoint>>>,
    /// Services with endpoints from workloads, by namespace (sorted by host).
    workload_services: HashMap<&'m str, Vec<&'m MeshService>>,
    /// Errors about the model as a whole (not per namespace), computed once.
    pub global_errors: Option<Vec<TranslateError>>,
}

impl<'m> Shared<'m> {
    /// `listener`, or the equal one some other scope built: a large mesh's
    /// namespaces mostly see its services alike, and each scope has a
    /// listener per service port.
    pub fn listener(&mut self, listener: Listener) -> Arc<Listener> {
        let same_name = self.listeners.entry(listener.name.clone()).or_default();
        if let Some(built) = same_name.iter().find(|l| ***l == listener) {
            return built.clone();
        }
        let listener = Arc::new(listener);
        same_name.push(listener.clone());
        listener
    }

    pub fn new(model: &'m MeshModel) -> Self {
        let mut workload_services: HashMap<&'m str, Vec<&'m MeshService>> = HashMap::new();
        for s in model
            .registry()
            .services()
            .filter(|s| s.resolution == Resolution::Endpoints)
        {
            workload_services
                .entry(s.namespace.as_str())
                .or_default()
                .push(s);
        }
        Shared {
            index: model.traffic_index(),
            routes: RouteForms {
                http_proxy: true,
                per_port: true,
            },
            clusters: HashMap::new(),
            listeners: HashMap::new(),
            identities: HashMap::new(),
            port_endpoints: HashMap::new(),
            workload_services,
            global_errors: None,
        }
    }

    /// The cluster of `service` port `port` (subset `subset` with `labels`) under
    /// DestinationRule `dr`, built on first use. `credentials_in`: see
    /// [`cluster_policy`].
    #[allow(clippy::too_many_arguments)]
    pub fn cluster(
        &mut self,
        model: &MeshModel,
        sds: &SdsSource,
        service: &MeshService,
        port: &ServicePort,
        subset: Option<&str>,
        labels: Option<&Labels>,
        dr: Option<&Stored<DestinationRule>>,
        credentials_in: Option<&str>,
        client: &ClientLocality,
    ) -> Arc<SharedCluster> {
        let key = (
            service.hostname.clone(),
            port.port,
            subset.map(str::to_string),
            dr.map(|d| (d.namespace.clone(), d.name.clone())),
            credentials_in.map(str::to_string),
            client.clone(),
        );
        if let Some(c) = self.clusters.get(&key) {
            return c.clone();
        }
        let identities = self
            .identities
            .entry(service.hostname.clone())
            .or_insert_with(|| Arc::new(model.service_identities(service)))
            .clone();
        let mut policy_errors = Vec::new();
        let policy = match dr {
            Some(dr) => cluster_policy(
                &dr.object,
                &dr.namespace,
                port.port,
                subset,
                credentials_in,
                &mut policy_errors,
            ),
            None => ClusterPolicy::default(),
        };
        let all = self
            .port_endpoints
            .entry((service.hostname.clone(), port.port))
            .or_insert_with(|| Arc::new(model.endpoints(service, port, None)))
            .clone();
        // the same as `model.endpoints(service, port, labels)`, from the port's endpoints
        let found: Vec<Endpoint> = all
            .iter()
            .filter(|e| labels.is_none_or(|l| labels_match(l, &e.labels)))
            .cloned()
            .collect();
        let cluster_name = names::outbound_cluster(port.port, subset, &service.hostname);
        let hash_key = match &policy.load_balancer {
            Some(LoadBalancer::ConsistentHash { key, .. }) => Some(key.clone()),
            _ => None,
        };
        let eds = service.resolution == Resolution::Endpoints;
        let empty = found.is_empty();
        let setting = effective_setting(
            model.settings().locality_lb.as_ref(),
            policy.locality_lb.as_ref(),
        );
        let locality = LocalityLb {
            client,
            setting: setting.as_ref(),
            failover: policy.outlier_detection.is_some(),
        };
        let endpoints = eds.then(|| {
            Arc::new(locality_load_assignment(
                &cluster_name,
                &found,
                Some(&locality),
                true,
            ))
        });
        let spec = OutboundCluster {
            service,
            port,
            subset,
            policy: &policy,
            identities: &identities,
            inline_endpoints: if eds { Vec::new() } else { found },
            locality: Some(locality),
        };
        let shared = Arc::new(SharedCluster {
            cluster: Arc::new(outbound_cluster(&spec, sds)),
            endpoints,
            empty,
            policy_errors,
            hash_key,
            tcp_proxy: policy.tcp_proxy(),
            secrets: match &policy.tls {
                Some(ClientTls::Origination(tls)) => tls.credential_secrets(),
                _ => Vec::new(),
            },
        });
        self.clusters.insert(key, shared.clone());
        shared
    }

    /// The services `workload` is behind: [`MeshModel::services_of`] without scanning
    /// the whole registry for every proxy.
    pub fn services_of(&self, workload: &Workload) -> Vec<&'m MeshService> {
        self.workload_services
            .get(workload.namespace.as_str())
            .map(|list| {
                list.iter()
                    .copied()
                    .filter(|s| workload.is_behind(s))
                    .collect()
            })
            .unwrap_or_default()
    }
}
