//! VirtualServices and DestinationRules: storage and "which one applies" queries.
use std::collections::BTreeMap;
use std::sync::Arc;

use trellis_api::networking::{DestinationRule, VirtualService};

use crate::config::MeshSettings;
use crate::registry::{fqdn_candidates, host_matches};
use crate::service::ExportTo;

/// A stored mesh object with what precedence rules need.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub namespace: String,
    pub name: String,
    /// RFC 3339 creation time when known (sorts chronologically), for "oldest wins".
    pub created: Option<String>,
    /// Arrival order, the tie breaker when creation times are unknown or equal.
    pub seq: u64,
    pub export_to: ExportTo,
    pub object: Arc<T>,
}

impl<T> Stored<T> {
    /// Older first.
    pub fn age_key(&self) -> (Option<&str>, u64) {
        (self.created.as_deref(), self.seq)
    }
}

/// Objects of one kind by (namespace, name).
pub type Store<T> = BTreeMap<(String, String), Stored<T>>;

/// The hosts of a VirtualService in fully-qualified form (short names resolved
/// against the VirtualService's namespace).
pub fn vs_hosts(vs: &Stored<VirtualService>, settings: &MeshSettings) -> Vec<String> {
    vs.object
        .spec
        .hosts
        .iter()
        .flat_map(|h| qualify(h, &vs.namespace, settings))
        .collect()
}

/// The hosts a host written in a resource of `namespace` may name, fully
/// qualified: `cart` and `cart.shop` name a Kubernetes service, and a name
/// with a dot also names itself (`example.com`, `vault.internal`: a
/// ServiceEntry's host), as Istio reads it.
pub fn qualify(host: &str, namespace: &str, settings: &MeshSettings) -> Vec<String> {
    if host.starts_with('*') {
        return vec![host.to_ascii_lowercase()];
    }
    fqdn_candidates(&host.to_ascii_lowercase(), namespace, settings)
}

/// VirtualServices for sidecars (`gateways` empty or containing `mesh`) that apply to
/// `host` (an FQDN) as seen from `namespace`: visible by exportTo, namespace-local
/// first, then other namespaces, the root namespace last; oldest first within a group.
pub fn virtual_services_for<'a>(
    store: &'a Store<VirtualService>,
    host: &str,
    namespace: &str,
    settings: &MeshSettings,
) -> Vec<&'a Stored<VirtualService>> {
    let mut found: Vec<&Stored<VirtualService>> = store
        .values()
        .filter(|vs| vs.export_to.visible_from(namespace) || vs.namespace == namespace)
        .filter(|vs| {
            let g = &vs.object.spec.gateways;
            g.is_empty() || g.iter().any(|g| g == "mesh")
        })
        .filter(|vs| vs_hosts(vs, settings).iter().any(|h| host_matches(h, host)))
        .collect();
    found.sort_by_key(|vs| (precedence(&vs.namespace, namespace, settings), vs.age_key()));
    found
}

/// The DestinationRule for `host` as seen by a client in `namespace` with
/// `client_labels` (exact host over wildcard, a rule whose `workloadSelector`
/// selects the client over one without, namespace-local first, the root namespace
/// last, oldest wins).
pub fn destination_rule_for<'a>(
    store: &'a Store<DestinationRule>,
    host: &str,
    namespace: &str,
    client_labels: &BTreeMap<String, String>,
    settings: &MeshSettings,
) -> Option<&'a Stored<DestinationRule>> {
    store
        .values()
        .filter_map(|dr| {
            let selects = destination_rule_selects(dr, namespace, client_labels)?;
            let forms = qualify(&dr.object.spec.host, &dr.namespace, settings);
            let h = forms.into_iter().find(|h| host_matches(h, host))?;
            Some((h.starts_with('*'), selects, dr))
        })
        .min_by_key(|(wild, selects, dr)| {
            destination_rule_rank(*wild, *selects, dr, namespace, settings)
        })
        .map(|(_, _, dr)| dr)
}

/// Whether `dr` applies to a client in `namespace` with `client_labels`: `None`
/// when it does not, `Some(true)` when its `workloadSelector` selects the client.
/// As in Istio, a selector applies only in the rule's own namespace.
pub(crate) fn destination_rule_selects(
    dr: &Stored<DestinationRule>,
    namespace: &str,
    client_labels: &BTreeMap<String, String>,
) -> Option<bool> {
    match &dr.object.spec.workload_selector {
        Some(selector) => (dr.namespace == namespace
            && crate::labels_match(&selector.match_labels, client_labels))
        .then_some(true),
        None => {
            (dr.export_to.visible_from(namespace) || dr.namespace == namespace).then_some(false)
        }
    }
}

/// Orders the DestinationRules that apply to a client: the least is in force.
pub(crate) fn destination_rule_rank(
    wild: bool,
    selects: bool,
    dr: &Stored<DestinationRule>,
    namespace: &str,
    settings: &MeshSettings,
) -> impl Ord {
    (
        wild,
        !selects,
        precedence(&dr.namespace, namespace, settings),
        dr.age_key(),
    )
}

pub(crate) fn precedence(owner: &str, client: &str, settings: &MeshSettings) -> u8 {
    if owner == client {
        0
    } else if owner == settings.root_namespace {
        2
    } else {
        1
    }
}
