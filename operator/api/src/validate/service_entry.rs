//! ServiceEntry rules.

use super::fields::{cidr, export_to, host, labels, port};
use super::gateway::PROTOCOLS;
use super::workloads::workload_entry_spec;
use super::{Errors, FieldError};
use crate::networking::{ServiceEntry, ServiceEntryResolution};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Protocols a service port may declare, beyond the gateway ones.
const SERVICE_PROTOCOLS: &[&str] = &["UDP"];

/// Validates a ServiceEntry.
pub fn service_entry(se: &ServiceEntry) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &se.spec;
    if spec.hosts.is_empty() {
        errors.add("spec.hosts", "at least one host is required");
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        if h == "*" {
            errors.add(
                format!("spec.hosts[{i}]"),
                "\"*\" is not allowed in a ServiceEntry",
            );
        } else {
            errors.check(format!("spec.hosts[{i}]"), host(h));
        }
    }
    for (i, a) in spec.addresses.iter().enumerate() {
        errors.check(format!("spec.addresses[{i}]"), cidr(a));
    }
    export_to(&spec.export_to, &mut errors);
    if spec.ports.is_empty() {
        errors.add("spec.ports", "at least one port is required");
    }
    let mut numbers = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        errors.check(format!("{path}.number"), port(p.number));
        if !numbers.insert(p.number) {
            errors.add(
                format!("{path}.number"),
                format!("duplicate port {}", p.number),
            );
        }
        match &p.name {
            None => errors.add(format!("{path}.name"), "required"),
            Some(name) => {
                if !names.insert(name.as_str()) {
                    errors.add(
                        format!("{path}.name"),
                        format!("duplicate port name {name:?}"),
                    );
                }
            }
        }
        if let Some(protocol) = &p.protocol {
            let upper = protocol.to_ascii_uppercase();
            if !PROTOCOLS.contains(&upper.as_str()) && !SERVICE_PROTOCOLS.contains(&upper.as_str())
            {
                errors.add(
                    format!("{path}.protocol"),
                    format!("unsupported protocol {protocol:?}"),
                );
            }
        }
        if let Some(t) = p.target_port {
            errors.check(format!("{path}.targetPort"), port(t));
        }
    }
    if !spec.endpoints.is_empty() && spec.workload_selector.is_some() {
        errors.add(
            "spec.workloadSelector",
            "endpoints and workloadSelector cannot both be set",
        );
    }
    if let Some(ws) = &spec.workload_selector {
        labels(&mut errors, "spec.workloadSelector.labels", &ws.labels);
    }
    let resolution = spec.resolution.unwrap_or(ServiceEntryResolution::None);
    if resolution == ServiceEntryResolution::Static
        && spec.endpoints.is_empty()
        && spec.workload_selector.is_none()
    {
        errors.add(
            "spec.endpoints",
            "STATIC resolution requires endpoints or a workloadSelector",
        );
    }
    if resolution == ServiceEntryResolution::DnsRoundRobin && spec.endpoints.len() > 1 {
        errors.add(
            "spec.endpoints",
            "DNS_ROUND_ROBIN resolution takes at most one endpoint (Envoy connects to one host name)",
        );
    }
    if resolution == ServiceEntryResolution::None && !spec.endpoints.is_empty() {
        errors.add(
            "spec.endpoints",
            "endpoints require STATIC or DNS resolution",
        );
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let path = format!("spec.endpoints[{i}]");
        errors.0.extend(workload_entry_spec(&path, ep));
        if resolution == ServiceEntryResolution::Static
            && let Some(address) = &ep.address
            && address.parse::<IpAddr>().is_err()
            && !address.starts_with("unix://")
        {
            errors.add(
                format!("{path}.address"),
                format!("STATIC resolution needs IP addresses, got {address:?}"),
            );
        }
        if resolution != ServiceEntryResolution::Static
            && ep
                .address
                .as_deref()
                .is_some_and(|a| a.starts_with("unix://"))
        {
            errors.add(
                format!("{path}.address"),
                "a unix:// endpoint needs STATIC resolution (there is no name to resolve)",
            );
        }
        for name in ep.ports.keys() {
            if !names.contains(name.as_str()) {
                errors.add(
                    format!("{path}.ports[{name}]"),
                    format!("no port of the ServiceEntry is named {name:?}"),
                );
            }
        }
    }
    errors.0
}
