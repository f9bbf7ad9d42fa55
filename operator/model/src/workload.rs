//! Workloads: the endpoints behind services, one shape for Kubernetes Pods and
//! universal mode's WorkloadEntries.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use trellis_api::networking::WorkloadEntry;

use crate::service::{MeshService, ServicePort, TargetPort};

/// Container names that mark a pod as having a sidecar.
pub const SIDECAR_CONTAINER_NAMES: [&str; 2] = ["trellis-proxy", "istio-proxy"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    /// The workload's IP (a Pod IP, or a WorkloadEntry address such as 127.0.0.11).
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// Named ports (container ports, WorkloadEntry `ports`).
    pub ports: BTreeMap<String, u16>,
    /// `ports` are keyed by service port name and win over the service's
    /// `targetPort`, as a WorkloadEntry's are.
    pub ports_by_service_port: bool,
    pub has_sidecar: bool,
    /// Universal mode: the port the application itself listens on (on 127.0.0.1) for
    /// each target port the sidecar serves on `address`. Kubernetes: empty (the app
    /// listens on the target port and the sidecar intercepts).
    pub app_ports: BTreeMap<u16, u16>,
    /// Load-balancing weight (WorkloadEntry `weight`); 1 when unset.
    pub weight: u32,
    pub locality: Option<String>,
}

/// The label by which a WorkloadEntry says its host runs a sidecar that
/// takes the mesh's mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

impl Workload {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        Workload {
            namespace: namespace.into(),
            name: name.into(),
            address: address.into(),
            labels: BTreeMap::new(),
            service_account: "default".into(),
            ports: BTreeMap::new(),
            ports_by_service_port: false,
            has_sidecar: true,
            app_ports: BTreeMap::new(),
            weight: 1,
            locality: None,
        }
    }

    /// A running Pod as a workload. `None` until the pod has a name and an IP.
    pub fn from_pod(pod: &Pod) -> Option<Workload> {
        let name = pod.metadata.name.clone()?;
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let address = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())?;
        let spec = pod.spec.clone().unwrap_or_default();
        let mut ports = BTreeMap::new();
        let mut has_sidecar = false;
        for container in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            has_sidecar |= SIDECAR_CONTAINER_NAMES.contains(&container.name.as_str());
            for port in container.ports.iter().flatten() {
                if let (Some(name), Ok(number)) = (&port.name, u16::try_from(port.container_port)) {
                    ports.insert(name.clone(), number);
                }
            }
        }
        Some(Workload {
            namespace,
            name,
            address,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            service_account: spec
                .service_account_name
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
            ports,
            ports_by_service_port: false,
            has_sidecar,
            app_ports: BTreeMap::new(),
            weight: 1,
            locality: pod_label_locality(pod.metadata.labels.as_ref()),
        })
    }

    /// A WorkloadEntry as a workload: a VM or another host outside the
    /// cluster that services select by its labels. `None` without an address
    /// or with one that is not an IP (Istio resolves a host name only for DNS
    /// ServiceEntries). It accepts the mesh's mTLS when labelled
    /// `security.istio.io/tlsMode: istio`, and its `ports` name service ports,
    /// as Istio reads them.
    pub fn from_workload_entry(we: &WorkloadEntry) -> Option<Workload> {
        let address = we.spec.address.clone()?;
        address.parse::<std::net::IpAddr>().ok()?;
        let namespace = (we.metadata.namespace.clone()).unwrap_or_else(|| "default".into());
        let mut w = Workload::new(namespace, we.metadata.name.clone()?, address);
        w.labels = we.spec.labels.clone();
        w.service_account = (we.spec.service_account.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        w.ports = (we.spec.ports.iter())
            .filter_map(|(k, v)| u16::try_from(*v).ok().map(|p| (k.clone(), p)))
            .collect();
        w.ports_by_service_port = true;
        w.weight = we.spec.weight.unwrap_or(1).max(1);
        w.locality = we.spec.locality.clone().filter(|l| !l.is_empty());
        w.has_sidecar = we.spec.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio");
        Some(w)
    }

    /// The model name of WorkloadEntry `name` among a cluster's pods: a pod and a
    /// WorkloadEntry may share a name in one namespace, and no pod name has a `:`.
    pub fn workload_entry_name(name: &str) -> String {
        format!("WorkloadEntry:{name}")
    }

    /// The port this workload serves `port` of a service on, if it can.
    pub fn target_port(&self, port: &ServicePort) -> Option<u16> {
        if self.ports_by_service_port
            && let Some(p) = self.ports.get(&port.name)
        {
            return Some(*p);
        }
        match &port.target_port {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Name(name) => self.ports.get(name).copied(),
        }
    }

    /// The port the application listens on behind target port `target`.
    pub fn app_port(&self, target: u16) -> u16 {
        self.app_ports.get(&target).copied().unwrap_or(target)
    }

    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        labels_match(selector, &self.labels)
    }

    /// Whether `service` selects this workload.
    pub fn is_behind(&self, service: &MeshService) -> bool {
        service.namespace == self.namespace
            && service.selector.as_ref().is_some_and(|s| self.matches(s))
    }
}

/// The pod label that sets a pod's locality over its node's (Istio's), and
/// the older one read when it is absent.
pub const LOCALITY_LABEL: &str = "topology.istio.io/locality";
pub const LEGACY_LOCALITY_LABEL: &str = "istio-locality";

/// A pod's locality from its labels, as Istio reads them: a label value
/// cannot hold `/`, so `region.zone.subzone` stands for `region/zone/subzone`.
pub fn pod_label_locality(labels: Option<&BTreeMap<String, String>>) -> Option<String> {
    let labels = labels?;
    let value = labels
        .get(LOCALITY_LABEL)
        .or_else(|| labels.get(LEGACY_LOCALITY_LABEL))
        .filter(|v| !v.is_empty())?;
    Some(if value.contains('/') {
        value.clone()
    } else {
        value.replace('.', "/")
    })
}

/// Node labels Istio reads a pod's locality from, in order of preference.
pub const NODE_REGION_LABELS: [&str; 2] = [
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/region",
];
pub const NODE_ZONE_LABELS: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];
pub const NODE_SUBZONE_LABEL: &str = "topology.istio.io/subzone";

/// The locality of a node, `region/zone/subzone`, from its labels; `None`
/// when it has none of them.
pub fn node_locality(labels: &BTreeMap<String, String>) -> Option<String> {
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()))
            .cloned()
            .unwrap_or_default()
    };
    let region = first(&NODE_REGION_LABELS);
    let zone = first(&NODE_ZONE_LABELS);
    let subzone = first(&[NODE_SUBZONE_LABEL]);
    if region.is_empty() && zone.is_empty() && subzone.is_empty() {
        return None;
    }
    Some(format!("{region}/{zone}/{subzone}"))
}

/// Every selector label is present with the same value (an empty selector matches all).
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
