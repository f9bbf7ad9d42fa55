//! Locality load balancing, as Istio does it: endpoints grouped by locality
//! (`region/zone/subzone`), and, relative to the client proxy's own locality,
//! `distribute` weights per locality or failover priorities (same subzone 0,
//! same zone 1, same region 2, then the `failover` region, then the rest; or
//! by `failoverPriority` labels). The result depends on the client, so
//! whatever caches it keys it by [`ClientLocality`].
use std::collections::{BTreeMap, BTreeSet};

use trellis_api::networking::{LocalityDistribute, LocalityLoadBalancerSetting};
use trellis_model::{
    MeshModel, NODE_REGION_LABELS, NODE_SUBZONE_LABEL, NODE_ZONE_LABELS, Workload,
};

/// A locality split into its three levels (empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// `region/zone/subzone` (fewer levels allowed); empty for none.
    pub fn parse(s: &str) -> Locality {
        let mut parts = s.splitn(3, '/');
        Locality {
            region: parts.next().unwrap_or_default().to_string(),
            zone: parts.next().unwrap_or_default().to_string(),
            subzone: parts.next().unwrap_or_default().to_string(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }

    /// Whether a rule's locality (`region[/zone[/subzone]]`, `*` for any value
    /// at a level, a missing level matching all) names this one.
    pub fn matches(&self, rule: &str) -> bool {
        let r = Locality::parse(rule);
        let level = |rule: &str, mine: &str, optional: bool| {
            rule == "*" || (optional && rule.is_empty()) || rule == mine
        };
        level(&r.region, &self.region, false)
            && level(&r.zone, &self.zone, true)
            && level(&r.subzone, &self.subzone, true)
    }

    /// Istio's priority of endpoints in `other` for a client here: 0 same
    /// subzone, 1 same zone, 2 same region, 3 elsewhere.
    fn priority_of(&self, other: &Locality) -> u32 {
        if self.region != other.region {
            3
        } else if self.zone != other.zone {
            2
        } else if self.subzone != other.subzone {
            1
        } else {
            0
        }
    }

    /// The topology labels Istio adds to a proxy's and an endpoint's labels.
    fn topology_labels(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            (NODE_REGION_LABELS[0], &self.region),
            (NODE_ZONE_LABELS[0], &self.zone),
            (NODE_SUBZONE_LABEL, &self.subzone),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
    }
}

/// What the endpoints a client proxy is given depend on about it: its
/// locality, and its values of the labels some `failoverPriority` names.
/// Two proxies with equal values get equal endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientLocality {
    pub locality: Locality,
    /// The proxy's labels (with the topology labels of its locality) that
    /// some `failoverPriority` names.
    pub labels: BTreeMap<String, String>,
    /// The proxy has labels at all (Istio orders by `failoverPriority` only then).
    pub has_labels: bool,
}

impl ClientLocality {
    /// `workload`'s locality, with its values of `priority_keys`.
    pub fn of(workload: &Workload, priority_keys: &BTreeSet<String>) -> ClientLocality {
        let locality = Locality::parse(workload.locality.as_deref().unwrap_or_default());
        let labels = with_topology(&workload.labels, &locality);
        ClientLocality {
            has_labels: !labels.is_empty(),
            labels: labels
                .into_iter()
                .filter(|(k, _)| priority_keys.contains(k))
                .collect(),
            locality,
        }
    }
}

/// The label keys (without `=value`) that any `failoverPriority` of the
/// model names: the labels of a proxy that its endpoints can depend on.
pub fn failover_priority_keys(model: &MeshModel) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut add = |s: Option<&LocalityLoadBalancerSetting>| {
        for p in s.into_iter().flat_map(|s| &s.failover_priority) {
            keys.insert(p.split('=').next().unwrap_or_default().to_string());
        }
    };
    add(model.settings().locality_lb.as_ref());
    for dr in model.destination_rules() {
        let spec = &dr.object.spec;
        let policies = (spec.traffic_policy.iter()).chain(
            spec.subsets
                .iter()
                .filter_map(|s| s.traffic_policy.as_ref()),
        );
        for tp in policies {
            add(tp
                .load_balancer
                .as_ref()
                .and_then(|lb| lb.locality_lb_setting.as_ref()));
            for p in &tp.port_level_settings {
                add(p
                    .load_balancer
                    .as_ref()
                    .and_then(|lb| lb.locality_lb_setting.as_ref()));
            }
        }
    }
    keys
}

/// The setting in force (Istio's `GetLocalityLbSetting`): the rule's when it
/// has one, else the mesh's (unset: on, without distribute or failover);
/// `enabled: false` on the one chosen turns it off.
pub fn effective_setting(
    mesh: Option<&LocalityLoadBalancerSetting>,
    rule: Option<&LocalityLoadBalancerSetting>,
) -> Option<LocalityLoadBalancerSetting> {
    let chosen = match rule.or(mesh) {
        Some(s) => s.clone(),
        None => LocalityLoadBalancerSetting::default(),
    };
    (chosen.enabled != Some(false)).then_some(chosen)
}

/// Locality load balancing for one cluster and one client.
#[derive(Debug, Clone, Copy)]
pub struct LocalityLb<'a> {
    pub client: &'a ClientLocality,
    /// The setting in force; `None` when off.
    pub setting: Option<&'a LocalityLoadBalancerSetting>,
    /// The cluster has outlier detection: failover applies only then (Envoy
    /// would never see an endpoint fail otherwise).
    pub failover: bool,
}

impl LocalityLb<'_> {
    /// Whether the cluster needs Envoy's locality weighted load balancing
    /// (Istio sets it for `distribute`, and for failover that is configured).
    pub fn weighted_config(&self) -> bool {
        self.setting.is_some_and(|s| {
            !s.distribute.is_empty()
                || (self.failover && (!s.failover.is_empty() || !s.failover_priority.is_empty()))
        })
    }
}

/// A group of endpoints (indexes into the caller's list) sharing a locality
/// and a priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub locality: Locality,
    pub priority: u32,
    /// The locality's load-balancing weight (the sum of its endpoints' weights,
    /// or the `distribute` share).
    pub weight: u32,
    pub members: Vec<usize>,
}

/// What [`groups`] needs to know of an endpoint.
pub struct Member<'a> {
    pub locality: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
    pub weight: u32,
}

/// The endpoints grouped by locality (sorted), with the priorities and
/// weights `lb` gives them. `by_labels`: `failoverPriority` applies (Istio
/// applies it to EDS endpoints, not to DNS and static clusters).
pub fn groups(members: &[Member<'_>], lb: Option<&LocalityLb<'_>>, by_labels: bool) -> Vec<Group> {
    // By the parsed locality: `a/b` and `a/b/` (a node without a subzone) are one.
    let mut by_locality: BTreeMap<Locality, Vec<usize>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        let locality = Locality::parse(m.locality.unwrap_or_default());
        by_locality.entry(locality).or_default().push(i);
    }
    let mut out: Vec<Group> = (by_locality.into_iter())
        .map(|(locality, members_here)| Group {
            locality,
            priority: 0,
            weight: weight_sum(members, &members_here),
            members: members_here,
        })
        .collect();
    let Some((lb, setting)) = lb.and_then(|lb| Some((lb, lb.setting?))) else {
        return out;
    };
    if !setting.distribute.is_empty() {
        distribute(&mut out, &lb.client.locality, &setting.distribute);
    } else if lb.failover {
        if !setting.failover_priority.is_empty() {
            if by_labels && lb.client.has_labels {
                out = by_priority_labels(out, members, lb.client, &setting.failover_priority);
            }
            if !setting.failover.is_empty() {
                by_region(&mut out, lb.client, setting);
            }
        } else {
            by_region(&mut out, lb.client, setting);
        }
    }
    out
}

fn weight_sum(members: &[Member<'_>], indexes: &[usize]) -> u32 {
    (indexes.iter())
        .map(|i| members[*i].weight.max(1))
        .fold(0u32, u32::saturating_add)
}

/// `distribute`: the first entry whose `from` names the client's locality
/// shares its weights among the localities each `to` names (in proportion to
/// their own weights); localities no `to` names get no traffic.
fn distribute(groups: &mut Vec<Group>, client: &Locality, rules: &[LocalityDistribute]) {
    let Some(rule) = rules.iter().find(|r| client.matches(&r.from)) else {
        return;
    };
    let mut unclaimed: BTreeSet<usize> = (0..groups.len()).collect();
    for (to, share) in &rule.to {
        let claimed: Vec<usize> = (unclaimed.iter().copied())
            .filter(|i| groups[*i].locality.matches(to))
            .collect();
        let total: u64 = claimed.iter().map(|i| u64::from(groups[*i].weight)).sum();
        for i in &claimed {
            unclaimed.remove(i);
            let scaled = (u64::from(groups[*i].weight) * u64::from(*share)).div_ceil(total.max(1));
            if scaled > 0 {
                groups[*i].weight = u32::try_from(scaled).unwrap_or(u32::MAX);
            }
        }
    }
    *groups = (std::mem::take(groups).into_iter().enumerate())
        .filter(|(i, _)| !unclaimed.contains(i))
        .map(|(_, g)| g)
        .collect();
}

/// `failoverPriority`: each locality is split by how many of the labels, in
/// order, an endpoint shares with the client (all: priority 0; differing at
/// the first: the lowest).
fn by_priority_labels(
    groups: Vec<Group>,
    members: &[Member<'_>],
    client: &ClientLocality,
    priority_labels: &[String],
) -> Vec<Group> {
    let lowest = u32::try_from(priority_labels.len()).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    for g in groups {
        let mut split: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for i in &g.members {
            let m = &members[*i];
            let labels = with_topology(m.labels, &Locality::parse(m.locality.unwrap_or_default()));
            let mut priority = 0;
            for (j, entry) in priority_labels.iter().enumerate() {
                let (key, fixed) = match entry.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (entry.as_str(), None),
                };
                let want = fixed
                    .or(client.labels.get(key).map(String::as_str))
                    .unwrap_or_default();
                let have = labels.get(key).map(String::as_str).unwrap_or_default();
                if want != have {
                    priority = lowest - u32::try_from(j).unwrap_or(0);
                    break;
                }
            }
            split.entry(priority).or_default().push(*i);
        }
        for (priority, members_here) in split {
            out.push(Group {
                locality: g.locality.clone(),
                priority,
                weight: weight_sum(members, &members_here),
                members: members_here,
            });
        }
    }
    compact(&mut out);
    out
}

/// Region/zone/subzone failover: the priority relative to the client (below
/// any `failoverPriority` order already given), the `failover` target region
/// before other regions.
fn by_region(groups: &mut [Group], client: &ClientLocality, setting: &LocalityLoadBalancerSetting) {
    for g in groups.iter_mut() {
        let mut p = client.locality.priority_of(&g.locality);
        if p == 3
            && let Some(f) = (setting.failover.iter()).find(|f| f.from == client.locality.region)
            && g.locality.region != f.to
        {
            p = 4;
        }
        g.priority = g.priority.saturating_mul(5).saturating_add(p);
    }
    compact(groups);
}

/// Priorities renumbered 0..N in order, without gaps (Envoy's rule).
fn compact(groups: &mut [Group]) {
    let used: BTreeSet<u32> = groups.iter().map(|g| g.priority).collect();
    let rank: BTreeMap<u32, u32> = (used.into_iter())
        .enumerate()
        .map(|(i, p)| (p, u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    for g in groups.iter_mut() {
        g.priority = rank[&g.priority];
    }
}

/// `labels` with the topology labels of `locality` (Istio's augmented labels).
fn with_topology(
    labels: &BTreeMap<String, String>,
    locality: &Locality,
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    for (k, v) in locality.topology_labels() {
        out.insert(k.to_string(), v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_localities_match_by_level_with_wildcards_and_missing_levels() {
        let l = Locality::parse("us-east/a/1");
        for rule in [
            "*",
            "us-east",
            "us-east/*",
            "us-east/a",
            "us-east/a/*",
            "us-east/a/1",
        ] {
            assert!(l.matches(rule), "{rule}");
        }
        for rule in ["eu", "eu/*", "us-east/b", "us-east/a/2", "us-east/*/2"] {
            assert!(!l.matches(rule), "{rule}");
        }
        assert!(Locality::default().matches("*"));
        assert!(!Locality::default().matches("us-east/*"));
    }

    #[test]
    fn priorities_are_relative_to_the_client_and_compacted() {
        let client = ClientLocality {
            locality: Locality::parse("r1/z1/s1"),
            ..Default::default()
        };
        let labels = BTreeMap::new();
        let member = |l: &'static str| Member {
            locality: Some(l),
            labels: &labels,
            weight: 1,
        };
        // No same-subzone endpoint: the nearest (same zone) is priority 0.
        let members = [member("r1/z1/s2"), member("r2/z9"), member("r1/z2")];
        let setting = LocalityLoadBalancerSetting::default();
        let lb = LocalityLb {
            client: &client,
            setting: Some(&setting),
            failover: true,
        };
        let got: Vec<(String, u32)> = groups(&members, Some(&lb), true)
            .into_iter()
            .map(|g| {
                (
                    format!("{}/{}", g.locality.region, g.locality.zone),
                    g.priority,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("r1/z1".to_string(), 0),
                ("r1/z2".to_string(), 1),
                ("r2/z9".to_string(), 2)
            ]
        );
    }
}
