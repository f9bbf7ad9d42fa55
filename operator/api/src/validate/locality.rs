//! `localityLbSetting` rules (DestinationRule `loadBalancer`, MeshConfig), as
//! Istio validates them.

use super::Errors;
use crate::networking::LocalityLoadBalancerSetting;
use std::collections::BTreeMap;

/// The topology labels `failoverPriority` may not name when `failover` is set.
const TOPOLOGY_LABELS: [&str; 3] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

/// Validates a `localityLbSetting` at `path`.
pub(crate) fn locality_lb_setting(
    errors: &mut Errors,
    path: &str,
    lb: &LocalityLoadBalancerSetting,
) {
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        errors.add(
            path.to_owned(),
            "can not simultaneously specify 'distribute' and 'failover'",
        );
    }
    for (i, label) in lb.failover_priority.iter().enumerate() {
        let fpath = format!("{path}.failoverPriority[{i}]");
        let key = label.split('=').next().unwrap_or_default();
        if key.is_empty() {
            errors.add(fpath, format!("{label:?} names no label"));
        } else if !lb.failover.is_empty() && TOPOLOGY_LABELS.contains(&key) {
            errors.add(
                fpath,
                format!("can not simultaneously set 'failover' and topology label {key:?} in 'failoverPriority'"),
            );
        }
    }
    let mut sources = Localities::default();
    for (i, d) in lb.distribute.iter().enumerate() {
        let dpath = format!("{path}.distribute[{i}]");
        if let Err(e) = sources.add(&d.from) {
            errors.add(format!("{dpath}.from"), e);
        }
        let mut targets = Localities::default();
        let mut total: u64 = 0;
        for (locality, weight) in &d.to {
            let tpath = format!("{dpath}.to[{locality:?}]");
            if !(1..=100).contains(weight) {
                errors.add(tpath.clone(), "locality weight must be in range [1, 100]");
            }
            total += u64::from(*weight);
            if let Err(e) = targets.add(locality) {
                errors.add(tpath, e);
            }
        }
        if total != 100 {
            errors.add(
                format!("{dpath}.to"),
                format!("total locality weight {total} != 100"),
            );
        }
    }
    for (i, f) in lb.failover.iter().enumerate() {
        let fpath = format!("{path}.failover[{i}]");
        if f.from == f.to {
            errors.add(
                fpath.clone(),
                "locality lb failover settings must specify different regions",
            );
        }
        for (field, region) in [("from", &f.from), ("to", &f.to)] {
            let at = format!("{fpath}.{field}");
            if region.is_empty() {
                errors.add(at, "a region is required");
            } else if region.contains('/') {
                errors.add(at, "locality lb failover only specify region");
            } else if region.contains('*') {
                errors.add(
                    at,
                    "locality lb failover region should not contain '*' wildcard",
                );
            }
        }
    }
}

/// The localities of one list, to find overlaps (Istio's `validateLocalities`).
#[derive(Default)]
struct Localities {
    /// region -> zone -> subzones; `*` marks a whole level.
    seen: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Localities {
    fn add(&mut self, locality: &str) -> Result<(), String> {
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Err(format!(
                "locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        let overlap = || {
            Err(format!(
                "locality {locality} overlap with previous specified ones"
            ))
        };
        if self.seen.contains_key("*") {
            return overlap();
        }
        let items: Vec<&str> = locality.splitn(3, '/').collect();
        if items.iter().any(|i| i.is_empty()) {
            return Err(format!(
                "locality {locality} must not contain empty region/zone/subzone info"
            ));
        }
        let region = items[0].to_string();
        match items.len() {
            1 => {
                if self.seen.contains_key(&region) {
                    return overlap();
                }
                self.seen.insert(
                    region,
                    BTreeMap::from([("*".to_string(), vec!["*".into()])]),
                );
            }
            2 => {
                let zones = self.seen.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(items[1]) {
                    return overlap();
                }
                zones.insert(items[1].to_string(), vec!["*".into()]);
            }
            _ => {
                let zones = self.seen.entry(region).or_default();
                if zones.contains_key("*") {
                    return overlap();
                }
                let subzones = zones.entry(items[1].to_string()).or_default();
                if subzones.iter().any(|s| s == "*" || s == items[2]) {
                    return overlap();
                }
                subzones.push(items[2].to_string());
            }
        }
        Ok(())
    }
}
