//! ServiceEntries as registry services, and the Gateway / Sidecar queries.
use std::collections::BTreeMap;

use trellis_api::networking::{
    Gateway, ServiceEntry, ServiceEntryLocation, ServiceEntryResolution, Sidecar,
};

use crate::error::ModelError;
use crate::service::{
    ExportTo, MeshService, Protocol, Resolution, ServiceOrigin, ServicePort, StaticEndpoint,
    TargetPort,
};
use crate::traffic::{Store, Stored};
use crate::workload::{Workload, labels_match};

/// One registry service per host of a ServiceEntry. Hosts are lowercased; a DNS
/// entry without endpoints resolves its (non-wildcard) host itself, as Istio does.
pub fn services_of_entry(
    se: &ServiceEntry,
    namespace: &str,
    name: &str,
) -> Result<Vec<MeshService>, ModelError> {
    let invalid = |path: String, message: String| ModelError::Invalid {
        kind: "ServiceEntry".into(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        path,
        message,
    };
    let spec = &se.spec;
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let number = u16::try_from(p.number)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                invalid(
                    format!("spec.ports[{i}].number"),
                    format!("{} is not a port number", p.number),
                )
            })?;
        let target = match p.target_port {
            Some(t) => u16::try_from(t).ok().filter(|n| *n > 0).ok_or_else(|| {
                invalid(
                    format!("spec.ports[{i}].targetPort"),
                    format!("{t} is not a port number"),
                )
            })?,
            None => number,
        };
        let port_name = p.name.clone().unwrap_or_default();
        ports.push(ServicePort {
            protocol: Protocol::detect(p.protocol.as_deref(), Some(&port_name)),
            name: port_name,
            port: number,
            target_port: TargetPort::Number(target),
        });
    }
    ports.sort();
    ports.dedup_by_key(|p| p.port);
    let resolution = match spec.resolution {
        None | Some(ServiceEntryResolution::None) => Resolution::Passthrough,
        Some(ServiceEntryResolution::Static) => Resolution::Static,
        Some(ServiceEntryResolution::Dns) => Resolution::Dns,
        Some(ServiceEntryResolution::DnsRoundRobin) => Resolution::DnsRoundRobin,
    };
    let selector = spec.workload_selector.as_ref().map(|s| s.labels.clone());
    let resolution = if selector.is_some() {
        Resolution::Endpoints
    } else {
        resolution
    };
    let mut endpoints = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let Some(address) = e.address.clone().filter(|a| !a.is_empty()) else {
            return Err(invalid(
                format!("spec.endpoints[{i}].address"),
                "an endpoint needs an address".into(),
            ));
        };
        let mut eports = BTreeMap::new();
        for (pname, n) in &e.ports {
            let n = u16::try_from(*n).ok().filter(|n| *n > 0).ok_or_else(|| {
                invalid(
                    format!("spec.endpoints[{i}].ports.{pname}"),
                    format!("{n} is not a port number"),
                )
            })?;
            eports.insert(pname.clone(), n);
        }
        endpoints.push(StaticEndpoint {
            address,
            ports: eports,
            labels: e.labels.clone(),
            weight: e.weight.unwrap_or(1),
            service_account: e.service_account.clone(),
            locality: e.locality.clone().filter(|l| !l.is_empty()),
        });
    }
    let external = spec.location != Some(ServiceEntryLocation::MeshInternal);
    let mut out = Vec::new();
    for (i, host) in spec.hosts.iter().enumerate() {
        let hostname = host.trim_end_matches('.').to_ascii_lowercase();
        if hostname.is_empty() {
            return Err(invalid(format!("spec.hosts[{i}]"), "empty host".into()));
        }
        let mut static_endpoints = endpoints.clone();
        let dns = matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin);
        if dns && static_endpoints.is_empty() {
            if hostname.starts_with('*') {
                return Err(invalid(
                    format!("spec.hosts[{i}]"),
                    format!("DNS resolution of wildcard host {hostname} needs endpoints"),
                ));
            }
            static_endpoints.push(StaticEndpoint {
                address: hostname.clone(),
                ..Default::default()
            });
        }
        out.push(MeshService {
            hostname,
            namespace: namespace.to_string(),
            name: name.to_string(),
            origin: ServiceOrigin::ServiceEntry {
                name: name.to_string(),
                external,
            },
            ports: ports.clone(),
            selector: selector.clone(),
            resolution,
            static_endpoints,
            export_to: ExportTo::from_list(&spec.export_to, namespace),
            addresses: spec.addresses.clone(),
            subject_alt_names: spec.subject_alt_names.clone(),
        });
    }
    Ok(out)
}

/// The Gateways whose selector matches the gateway workload `workload` (any
/// namespace), by namespace/name. A Gateway without a selector applies to
/// every gateway workload, as in Istio; callers ask only for gateway proxies.
pub fn gateways_for<'a>(
    store: &'a Store<Gateway>,
    workload: &Workload,
) -> Vec<&'a Stored<Gateway>> {
    store
        .values()
        .filter(|g| labels_match(&g.object.spec.selector, &workload.labels))
        .collect()
}

/// Reads a VirtualService's `gateways` entry as Istio does: `ns/name`, or a short
/// name in the VirtualService's namespace. `mesh` is not a gateway reference.
pub fn gateway_ref(reference: &str, vs_namespace: &str) -> Option<(String, String)> {
    if reference == "mesh" {
        return None;
    }
    match reference.split_once('/') {
        Some((ns, name)) => Some((ns.to_string(), name.to_string())),
        None => Some((vs_namespace.to_string(), reference.to_string())),
    }
}

/// The Sidecar resource that applies to `workload`: one in its namespace whose
/// selector matches, else its namespace's selector-less one, else the root
/// namespace's selector-less one; the oldest wins among equals.
pub fn sidecar_for<'a>(
    store: &'a Store<Sidecar>,
    workload: &Workload,
    root_namespace: &str,
) -> Option<&'a Stored<Sidecar>> {
    let selected = |s: &&Stored<Sidecar>| {
        s.object
            .spec
            .workload_selector
            .as_ref()
            .is_some_and(|sel| labels_match(&sel.labels, &workload.labels))
    };
    let bare = |s: &&Stored<Sidecar>| s.object.spec.workload_selector.is_none();
    let oldest = |ns: &str, keep: &dyn Fn(&&Stored<Sidecar>) -> bool| {
        store
            .values()
            .filter(|s| s.namespace == ns)
            .filter(|s| keep(s))
            .min_by_key(|s| s.age_key())
    };
    oldest(&workload.namespace, &selected)
        .or_else(|| oldest(&workload.namespace, &bare))
        .or_else(|| oldest(root_namespace, &bare))
}
