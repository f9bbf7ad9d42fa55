//! Sidecar and WorkloadEntry rules.

use super::destination_rule::connection_pool;
use super::fields::{dns_label, host, labels, namespaced_host, port};
use super::{Errors, FieldError};
use crate::networking::{OutboundTrafficPolicyMode, Sidecar, WorkloadEntry, WorkloadEntrySpec};
use std::net::IpAddr;

/// Validates a Sidecar.
pub fn sidecar(sc: &Sidecar) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &sc.spec;
    if let Some(ws) = &spec.workload_selector {
        if ws.labels.is_empty() {
            errors.add(
                "spec.workloadSelector.labels",
                "must not be empty when workloadSelector is set",
            );
        }
        labels(&mut errors, "spec.workloadSelector.labels", &ws.labels);
    }
    let mut ingress_ports = std::collections::BTreeMap::new();
    for (i, listener) in spec.ingress.iter().enumerate() {
        let path = format!("spec.ingress[{i}]");
        errors.check(format!("{path}.port.number"), port(listener.port.number));
        if let Some(j) = ingress_ports.insert(listener.port.number, i) {
            errors.add(
                format!("{path}.port.number"),
                format!(
                    "port {} is already used by spec.ingress[{j}]",
                    listener.port.number
                ),
            );
        }
        if let Some(bind) = &listener.bind
            && bind.parse::<IpAddr>().is_err()
        {
            errors.add(
                format!("{path}.bind"),
                format!("{bind:?} is not an IP address"),
            );
        }
        if let Some(endpoint) = &listener.default_endpoint
            && let Err(e) = default_endpoint(endpoint)
        {
            errors.add(format!("{path}.defaultEndpoint"), e);
        }
        if let Some(cp) = &listener.connection_pool {
            connection_pool(&mut errors, &format!("{path}.connectionPool"), cp);
        }
    }
    if let Some(cp) = &spec.inbound_connection_pool {
        connection_pool(&mut errors, "spec.inboundConnectionPool", cp);
    }
    if let Some(policy) = &spec.outbound_traffic_policy
        && let Some(proxy) = &policy.egress_proxy
    {
        // As Istio: only with ALLOW_ANY set here, and with a port.
        let path = "spec.outboundTrafficPolicy.egressProxy";
        if policy.mode != Some(OutboundTrafficPolicyMode::AllowAny) {
            errors.add(path, "requires mode: ALLOW_ANY");
        }
        if proxy.port.is_none() {
            errors.add(format!("{path}.port"), "required");
        }
        super::virtual_service::destination(&mut errors, path, proxy);
    }
    for (i, listener) in spec.egress.iter().enumerate() {
        let path = format!("spec.egress[{i}]");
        if listener.hosts.is_empty() {
            errors.add(format!("{path}.hosts"), "at least one host is required");
        }
        for (j, h) in listener.hosts.iter().enumerate() {
            errors.check(format!("{path}.hosts[{j}]"), namespaced_host(h, true));
        }
        if let Some(p) = &listener.port {
            errors.check(format!("{path}.port.number"), port(p.number));
        }
        if let Some(bind) = &listener.bind
            && bind.parse::<IpAddr>().is_err()
            && !bind.starts_with("unix://")
        {
            errors.add(
                format!("{path}.bind"),
                format!("{bind:?} is not an IP address"),
            );
        }
    }
    errors.0
}

/// Istio's forms of an ingress listener's `defaultEndpoint`: loopback or
/// any-address with a port, or a Unix domain socket.
fn default_endpoint(endpoint: &str) -> Result<(), String> {
    if let Some(path) = endpoint.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(())
        } else {
            Err(format!("{endpoint:?}: a Unix socket path must be absolute"))
        };
    }
    let addr: std::net::SocketAddr = endpoint.parse().map_err(|_| {
        format!("{endpoint:?} is not 127.0.0.1:PORT, [::1]:PORT, 0.0.0.0:PORT, [::]:PORT or unix:///path")
    })?;
    if !(addr.ip().is_loopback() || addr.ip().is_unspecified()) {
        return Err(format!(
            "{endpoint:?}: only loopback or 0.0.0.0 (the workload's address) may be named"
        ));
    }
    if addr.port() == 0 {
        return Err(format!("{endpoint:?}: the port must not be 0"));
    }
    Ok(())
}

/// Validates a WorkloadEntry.
pub fn workload_entry(we: &WorkloadEntry) -> Vec<FieldError> {
    let mut errors = workload_entry_spec("spec", &we.spec);
    if we.spec.address.is_none() && we.spec.network.is_none() {
        errors.push(FieldError {
            path: "spec.address".into(),
            message: "required (unless network is set)".into(),
        });
    }
    errors
}

/// Checks shared by WorkloadEntry and ServiceEntry endpoints.
pub(crate) fn workload_entry_spec(path: &str, spec: &WorkloadEntrySpec) -> Vec<FieldError> {
    let mut errors = Errors::default();
    if let Some(address) = &spec.address {
        let ok = address.parse::<IpAddr>().is_ok()
            || address
                .strip_prefix("unix://")
                .is_some_and(|p| p.starts_with('/'))
            || host(address).is_ok_and(|_| !address.contains('*'));
        if !ok {
            errors.add(
                format!("{path}.address"),
                format!("{address:?} is not an IP address, host name or unix:// path"),
            );
        }
    }
    for (name, number) in &spec.ports {
        errors.check(format!("{path}.ports[{name}]"), port(*number));
    }
    labels(&mut errors, &format!("{path}.labels"), &spec.labels);
    if let Some(sa) = &spec.service_account {
        errors.check(format!("{path}.serviceAccount"), dns_label(sa));
    }
    if let Some(w) = spec.weight
        && w > 1_000_000
    {
        errors.add(format!("{path}.weight"), "must be at most 1000000");
    }
    errors.0
}
