//! Which Envoys `trellis up` runs, derived from the loaded resources: one
//! sidecar per WorkloadEntry, and one gateway Envoy per WorkloadEntry whose
//! labels match a Gateway's selector (the gateway is a workload too, as in
//! Istio, so it has an identity and an address).
//!
//! Addresses come from the WorkloadEntry (127.0.0.0/8, one per workload);
//! the app port (on 127.0.0.1, unique) from the annotation [`APP_PORT_ANNOTATION`]; admin ports are
//! handed out once and kept in [`Assignments`], so a restart reuses them.
use crate::assignments::{Assignments, gateway_port};
use crate::error::Result;
use crate::status::{ConfigError, ProxyKind};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use trellis_api::Resource;
use trellis_api::networking::{Gateway, WorkloadEntry};

/// Where the app of a workload listens (on 127.0.0.1).
pub const APP_PORT_ANNOTATION: &str = "local.trellis.dev/app-port";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// The outbound HTTP proxy port every sidecar offers on its workload address.
    pub outbound_http_port: u16,
    /// Added to Gateway ports below 1024 when not running as root.
    pub gateway_port_offset: u16,
    pub running_as_root: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            outbound_http_port: 15001,
            gateway_port_offset: 8000,
            running_as_root: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedProxy {
    pub kind: ProxyKind,
    pub namespace: String,
    /// The WorkloadEntry's name.
    pub name: String,
    pub service_account: String,
    pub address: Ipv4Addr,
    /// Sidecars: where the app listens on 127.0.0.1.
    pub app_port: Option<u16>,
    pub admin_port: u16,
    /// Sidecars: the outbound HTTP proxy port on `address`.
    pub outbound_http_port: Option<u16>,
    /// Gateways: the ports actually listened on (after the offset).
    pub gateway_ports: Vec<u16>,
}

impl PlannedProxy {
    /// `sidecar/shop/cart-v1`: the supervisor's and the log file's name.
    pub fn process_name(&self) -> String {
        let kind = match self.kind {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Gateway => "gateway",
        };
        format!("{kind}/{}/{}", self.namespace, self.name)
    }

    /// Its key in [`Assignments`]; all admin keys start with `admin/`.
    pub fn admin_key(&self) -> String {
        format!("admin/{}/{}", self.namespace, self.name)
    }
}

/// Plans the proxies; workloads that cannot run are reported and left out.
pub fn plan(
    resources: &[Resource],
    assignments: &mut Assignments,
    options: &PlanOptions,
    mut allocate_port: impl FnMut() -> Result<u16>,
) -> Result<(Vec<PlannedProxy>, Vec<ConfigError>)> {
    let gateways: Vec<&Gateway> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::Gateway(g) => Some(g),
            _ => None,
        })
        .collect();
    let mut proxies = Vec::new();
    let mut errors = Vec::new();
    let mut used_addresses: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut gateways_served: BTreeSet<usize> = BTreeSet::new();
    let mut used_app_ports: BTreeMap<u16, String> = BTreeMap::new();
    for resource in resources {
        let Resource::WorkloadEntry(we) = resource else {
            continue;
        };
        let namespace = we
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = we.metadata.name.clone().unwrap_or_default();
        let error = |field: &str, message: String| ConfigError {
            file: String::new(),
            kind: Some("WorkloadEntry".into()),
            namespace: Some(namespace.clone()),
            name: Some(name.clone()),
            field: Some(field.to_string()),
            message,
        };
        let address = match we.spec.address.as_deref().map(str::parse::<Ipv4Addr>) {
            Some(Ok(ip)) if ip.is_loopback() => ip,
            Some(_) => {
                errors.push(error(
                    "spec.address",
                    "universal mode needs an IPv4 loopback address (127.0.0.0/8) per workload"
                        .into(),
                ));
                continue;
            }
            None => {
                errors.push(error("spec.address", "required in universal mode".into()));
                continue;
            }
        };
        // A WorkloadEntry is a gateway when some Gateway's selector picks it;
        // then the Gateways without a selector apply to it too, as in Istio.
        let is_gateway = gateways.iter().any(|g| selects(&g.spec.selector, we));
        let matched: Vec<usize> = gateways
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                is_gateway && (g.spec.selector.is_empty() || selects(&g.spec.selector, we))
            })
            .map(|(i, _)| i)
            .collect();
        let kind = if matched.is_empty() {
            ProxyKind::Sidecar
        } else {
            ProxyKind::Gateway
        };
        // Gateways all listen on 127.0.0.1 by design; only sidecars need their own address.
        if kind == ProxyKind::Sidecar {
            if let Some(owner) = used_addresses.get(&address) {
                errors.push(error(
                    "spec.address",
                    format!("{address} is already used by {owner}"),
                ));
                continue;
            }
            used_addresses.insert(address, format!("{namespace}/{name}"));
        }
        let app_port = match we
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(APP_PORT_ANNOTATION))
        {
            Some(value) => match value.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    errors.push(error(
                        &format!("metadata.annotations[{APP_PORT_ANNOTATION}]"),
                        format!("{value:?} is not a port number 1-65535"),
                    ));
                    continue;
                }
            },
            None if kind == ProxyKind::Sidecar => {
                errors.push(error(
                    &format!("metadata.annotations[{APP_PORT_ANNOTATION}]"),
                    "required: the port the app listens on at the workload address".into(),
                ));
                continue;
            }
            None => None,
        };
        // The translator forwards inbound traffic to the app on 127.0.0.1, so
        // app ports are shared by every workload and must not collide.
        if let Some(port) = app_port {
            if let Some(owner) = used_app_ports.get(&port) {
                errors.push(error(
                    &format!("metadata.annotations[{APP_PORT_ANNOTATION}]"),
                    format!("app port {port} is already used by {owner}"),
                ));
                continue;
            }
            used_app_ports.insert(port, format!("{namespace}/{name}"));
        }
        let gateway_ports: Vec<u16> = matched
            .iter()
            .flat_map(|i| gateways[*i].spec.servers.iter())
            .filter_map(|s| u16::try_from(s.port.number).ok())
            .map(|p| gateway_port(p, options.running_as_root, options.gateway_port_offset))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        gateways_served.extend(matched);
        let mut proxy = PlannedProxy {
            kind,
            namespace: namespace.clone(),
            name: name.clone(),
            service_account: we
                .spec
                .service_account
                .clone()
                .unwrap_or_else(|| "default".into()),
            address: if kind == ProxyKind::Gateway {
                Ipv4Addr::LOCALHOST
            } else {
                address
            },
            app_port: if kind == ProxyKind::Sidecar {
                app_port
            } else {
                None
            },
            admin_port: 0,
            outbound_http_port: (kind == ProxyKind::Sidecar).then_some(options.outbound_http_port),
            gateway_ports,
        };
        proxy.admin_port = assignments.port_for(&proxy.admin_key(), &mut allocate_port)?;
        proxies.push(proxy);
    }
    for (i, g) in gateways.iter().enumerate() {
        if !gateways_served.contains(&i) {
            errors.push(ConfigError {
                file: String::new(),
                kind: Some("Gateway".into()),
                namespace: g.metadata.namespace.clone(),
                name: g.metadata.name.clone(),
                field: Some("spec.selector".into()),
                message: if g.spec.selector.is_empty() {
                    "without a selector this Gateway applies to every gateway workload, and none \
                     runs: a WorkloadEntry is a gateway here when a Gateway's selector picks it"
                } else {
                    "no WorkloadEntry has labels matching the selector, so no gateway Envoy runs; \
                     add one (address 127.0.0.1) with these labels"
                }
                .into(),
            });
        }
    }
    let in_use: BTreeSet<String> = proxies.iter().map(PlannedProxy::admin_key).collect();
    assignments.retain_prefixed("admin/", &in_use);
    Ok((proxies, errors))
}

fn selects(selector: &BTreeMap<String, String>, we: &WorkloadEntry) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| we.spec.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests;
