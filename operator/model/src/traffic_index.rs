//! VirtualServices and DestinationRules indexed by qualified host: the same answers
//! as [`MeshModel::virtual_services_for`](crate::MeshModel::virtual_services_for) and
//! [`MeshModel::destination_rule_for`](crate::MeshModel::destination_rule_for), without
//! re-qualifying every object's hosts on every query. Build one per translation round.
use std::collections::{BTreeMap, HashMap};

use trellis_api::networking::{DestinationRule, VirtualService};

use crate::config::MeshSettings;
use crate::registry::host_matches;
use crate::traffic::{
    Store, Stored, destination_rule_rank, destination_rule_selects, precedence, qualify,
};

/// Objects by the exact hosts they name, plus those naming wildcards.
struct ByHost<'a, T> {
    exact: HashMap<String, Vec<&'a Stored<T>>>,
    wildcard: Vec<(String, &'a Stored<T>)>,
}

impl<'a, T> ByHost<'a, T> {
    fn new(entries: impl Iterator<Item = (String, &'a Stored<T>)>) -> Self {
        let mut by = ByHost {
            exact: HashMap::new(),
            wildcard: Vec::new(),
        };
        for (host, object) in entries {
            if host.starts_with('*') {
                by.wildcard.push((host, object));
            } else {
                let list = by.exact.entry(host).or_default();
                // an object naming the same host twice counts once
                if !list.iter().any(|o| std::ptr::eq(*o, object)) {
                    list.push(object);
                }
            }
        }
        by
    }

    /// (names the host by wildcard, object) for every object whose hosts match `host`.
    fn matching(&self, host: &str) -> Vec<(bool, &'a Stored<T>)> {
        let lower = host.to_ascii_lowercase();
        let mut out: Vec<(bool, &'a Stored<T>)> = self
            .exact
            .get(&lower)
            .into_iter()
            .flatten()
            .map(|o| (false, *o))
            .collect();
        for (pattern, object) in &self.wildcard {
            if host_matches(pattern, host) && !out.iter().any(|(_, o)| std::ptr::eq(*o, *object)) {
                out.push((true, *object));
            }
        }
        out
    }
}

/// See the module documentation.
pub struct TrafficIndex<'a> {
    settings: &'a MeshSettings,
    virtual_services: ByHost<'a, VirtualService>,
    destination_rules: ByHost<'a, DestinationRule>,
}

impl<'a> TrafficIndex<'a> {
    pub(crate) fn new(
        virtual_services: &'a Store<VirtualService>,
        destination_rules: &'a Store<DestinationRule>,
        settings: &'a MeshSettings,
    ) -> Self {
        let vs = virtual_services
            .values()
            .filter(|vs| {
                let g = &vs.object.spec.gateways;
                g.is_empty() || g.iter().any(|g| g == "mesh")
            })
            .flat_map(|vs| {
                vs.object
                    .spec
                    .hosts
                    .iter()
                    .flat_map(move |h| qualify(h, &vs.namespace, settings))
                    .map(move |h| (h, vs))
            });
        let dr = destination_rules.values().flat_map(|dr| {
            qualify(&dr.object.spec.host, &dr.namespace, settings)
                .into_iter()
                .map(move |h| (h, dr))
        });
        TrafficIndex {
            settings,
            virtual_services: ByHost::new(vs),
            destination_rules: ByHost::new(dr),
        }
    }

    /// The mesh VirtualServices for `host` seen from `namespace`, the one in force first.
    pub fn virtual_services_for(
        &self,
        host: &str,
        namespace: &str,
    ) -> Vec<&'a Stored<VirtualService>> {
        let mut found: Vec<&Stored<VirtualService>> = self
            .virtual_services
            .matching(host)
            .into_iter()
            .map(|(_, vs)| vs)
            .filter(|vs| vs.export_to.visible_from(namespace) || vs.namespace == namespace)
            .collect();
        found.sort_by_key(|vs| {
            (
                precedence(&vs.namespace, namespace, self.settings),
                vs.age_key(),
            )
        });
        // One VirtualService can name a host in two of its forms.
        found.dedup_by(|a, b| std::ptr::eq(*a, *b));
        found
    }

    /// The DestinationRule in force for `host` seen by a client in `namespace`
    /// with `client_labels`.
    pub fn destination_rule_for(
        &self,
        host: &str,
        namespace: &str,
        client_labels: &BTreeMap<String, String>,
    ) -> Option<&'a Stored<DestinationRule>> {
        self.destination_rules
            .matching(host)
            .into_iter()
            .filter_map(|(wild, dr)| {
                Some((
                    wild,
                    destination_rule_selects(dr, namespace, client_labels)?,
                    dr,
                ))
            })
            .min_by_key(|(wild, selects, dr)| {
                destination_rule_rank(*wild, *selects, dr, namespace, self.settings)
            })
            .map(|(_, _, dr)| dr)
    }
}
