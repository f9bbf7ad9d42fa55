//! `MeshStatus`: what `kubectl get meshstatus -A` shows, computed from facts and
//! the time (pure). One object per mesh namespace and one for the control plane.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use trellis_api::mesh::MeshStatusStatus;
use trellis_api::status::Condition;

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
/// A root this close to its expiry makes the mesh degraded.
pub const ROOT_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The workload identities of one namespace, as the identity controller knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityFacts {
    /// Service accounts holding a valid certificate.
    pub issued: u32,
    pub earliest_expiry: Option<SystemTime>,
    /// Certificates due for renewal or past it.
    pub expiring: u32,
    /// Service accounts whose certificate could not be issued or renewed, with why.
    pub failed: Vec<(String, String)>,
}

/// What one mesh namespace looks like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceFacts {
    pub workloads: u32,
    pub pods_with_sidecar: u32,
    /// `None` until the identity controller reports.
    pub identities: Option<IdentityFacts>,
    pub config_accepted: u32,
    pub config_rejected: u32,
    /// `kind/namespace/name: reason` of the first rejected object.
    pub first_rejected: Option<String>,
    /// Accepted objects with translation warnings.
    pub config_warnings: u32,
    pub proxies: u32,
    pub proxies_in_sync: u32,
    pub root_not_after: Option<SystemTime>,
}

/// The CA as the control plane reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFacts {
    pub mode: String,
    pub root_fingerprint: String,
    pub root_not_after: SystemTime,
}

/// What the control plane looks like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlPlaneFacts {
    pub ca: Option<CaFacts>,
    /// Why the preferred CA source is not in use (a broken `cacerts`...).
    pub ca_problem: Option<String>,
    pub trust_domain: String,
    /// Every cache has listed once.
    pub synced: bool,
    pub proxies: u32,
    pub proxies_in_sync: u32,
    pub last_push: Option<SystemTime>,
    pub operator_version: String,
    pub leader: Option<String>,
    pub workloads: u32,
    pub identities: Option<u32>,
    pub identity_failures: u32,
    pub config_rejected: u32,
    pub config_warnings: u32,
    /// During a root rotation: identities still to reissue under the new root.
    pub rotation_remaining: Option<u32>,
}

/// RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|ts| ts.to_string())
        .unwrap_or_default()
}

fn date(t: SystemTime) -> String {
    rfc3339(t).split('T').next().unwrap_or_default().to_string()
}

fn root_expiring(root: Option<SystemTime>, now: SystemTime) -> Option<String> {
    let not_after = root?;
    (not_after <= now + ROOT_EXPIRY_WARNING).then(|| {
        if not_after <= now {
            format!("The mesh root certificate expired on {}.", date(not_after))
        } else {
            format!(
                "The mesh root certificate expires on {}, within 30 days; rotate it.",
                date(not_after)
            )
        }
    })
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The status of the `mesh` object of one namespace.
pub fn namespace_status(
    facts: &NamespaceFacts,
    now: SystemTime,
    previous: Option<&MeshStatusStatus>,
) -> MeshStatusStatus {
    let ids = facts.identities.as_ref();
    let failed = ids.map_or(&[][..], |i| i.failed.as_slice());
    let degraded = match (failed.first(), root_expiring(facts.root_not_after, now)) {
        (Some((sa, why)), _) => Some(format!(
            "{} could not be issued or renewed; first: service account {sa}: {why}.",
            plural(failed.len() as u32, "identity", "identities")
        )),
        (None, Some(root)) => Some(root),
        (None, None) => None,
    };
    let not_ready = if facts.config_rejected > 0 {
        Some(format!(
            "{} of {} mesh configuration objects rejected; first: {}.",
            facts.config_rejected,
            facts.config_rejected + facts.config_accepted,
            facts.first_rejected.as_deref().unwrap_or("unknown")
        ))
    } else if facts.proxies_in_sync < facts.proxies {
        Some(format!(
            "{} of {} connected proxies have not acknowledged their latest configuration.",
            facts.proxies - facts.proxies_in_sync,
            facts.proxies
        ))
    } else if !failed.is_empty() {
        degraded.clone()
    } else {
        None
    };
    let ready_message = not_ready.clone().unwrap_or_else(|| {
        format!(
            "{} ({} with a sidecar), {}, {} of {} proxies in sync and {} accepted.",
            plural(facts.workloads, "workload", "workloads"),
            facts.pods_with_sidecar,
            ids.map_or("identities not reported yet".to_string(), |i| {
                plural(i.issued, "identity", "identities")
            }),
            facts.proxies_in_sync,
            facts.proxies,
            plural(
                facts.config_accepted,
                "configuration object",
                "configuration objects"
            ),
        )
    });
    let conditions = vec![
        condition(
            READY,
            not_ready.is_none(),
            if not_ready.is_none() {
                "Ready"
            } else {
                "NotReady"
            },
            ready_message,
        ),
        degraded_condition(
            degraded,
            "Identities are current and the root is valid for more than 30 days.",
        ),
    ];
    let ready = not_ready.is_none();
    MeshStatusStatus {
        ready: Some(ready),
        proxies: Some(facts.proxies),
        workloads: Some(facts.workloads),
        identities: ids.map(|i| i.issued),
        expiring: ids.map(|i| i.expiring),
        errors: Some(facts.config_rejected + facts.config_warnings),
        pods_with_sidecar: Some(facts.pods_with_sidecar),
        earliest_cert_expiry: ids.and_then(|i| i.earliest_expiry).map(rfc3339),
        config_accepted: Some(facts.config_accepted),
        config_rejected: Some(facts.config_rejected),
        proxies_in_sync: Some(facts.proxies_in_sync),
        conditions: with_times(conditions, previous, now),
        ..Default::default()
    }
}

/// The status of the control plane's `mesh` object.
pub fn control_plane_status(
    facts: &ControlPlaneFacts,
    now: SystemTime,
    previous: Option<&MeshStatusStatus>,
) -> MeshStatusStatus {
    let not_ready = if facts.ca.is_none() {
        Some(match &facts.ca_problem {
            Some(p) => format!("No CA is loaded: {p}."),
            None => "No CA is loaded yet.".to_string(),
        })
    } else if !facts.synced {
        Some("The Kubernetes caches have not been listed yet.".to_string())
    } else {
        None
    };
    let degraded = if let Some(problem) = &facts.ca_problem {
        Some(format!(
            "CA problem, the last good CA stays in use: {problem}."
        ))
    } else if let Some(root) = root_expiring(facts.ca.as_ref().map(|c| c.root_not_after), now) {
        Some(root)
    } else if facts.identity_failures > 0 {
        Some(format!(
            "{} could not be issued or renewed; see the MeshStatus of their namespaces.",
            plural(facts.identity_failures, "identity", "identities")
        ))
    } else {
        None
    };
    let ready_message = not_ready.clone().unwrap_or_else(|| {
        let rotation = match facts.rotation_remaining {
            Some(n) => format!(
                "; a root rotation is under way with {} still to reissue",
                plural(n, "identity", "identities")
            ),
            None => String::new(),
        };
        format!(
            "The {} CA is loaded, caches are synced and {} connected{rotation}.",
            facts.ca.as_ref().map_or("", |c| c.mode.as_str()),
            plural(facts.proxies, "proxy is", "proxies are")
        )
    });
    let conditions = vec![
        condition(
            READY,
            not_ready.is_none(),
            if not_ready.is_none() {
                "Ready"
            } else {
                "NotReady"
            },
            ready_message,
        ),
        degraded_condition(
            degraded,
            "The CA is healthy and its root is valid for more than 30 days.",
        ),
    ];
    MeshStatusStatus {
        ready: Some(not_ready.is_none()),
        proxies: Some(facts.proxies),
        workloads: Some(facts.workloads),
        identities: facts.identities,
        errors: Some(facts.config_rejected + facts.config_warnings),
        proxies_in_sync: Some(facts.proxies_in_sync),
        ca_mode: facts.ca.as_ref().map(|c| c.mode.clone()),
        root_fingerprint: facts.ca.as_ref().map(|c| c.root_fingerprint.clone()),
        root_expiry: facts.ca.as_ref().map(|c| rfc3339(c.root_not_after)),
        trust_domain: Some(facts.trust_domain.clone()),
        last_push: facts.last_push.map(rfc3339),
        operator_version: Some(facts.operator_version.clone()),
        leader: facts.leader.clone(),
        rotation_remaining: facts.rotation_remaining,
        conditions: with_times(conditions, previous, now),
        ..Default::default()
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: None,
        observed_generation: None,
    }
}

fn degraded_condition(problem: Option<String>, healthy: &str) -> Condition {
    match problem {
        Some(message) => condition(DEGRADED, true, "Degraded", message),
        None => condition(DEGRADED, false, "Healthy", healthy.to_string()),
    }
}

fn with_times(
    mut conditions: Vec<Condition>,
    previous: Option<&MeshStatusStatus>,
    now: SystemTime,
) -> Vec<Condition> {
    for c in &mut conditions {
        let kept = previous
            .and_then(|p| p.conditions.iter().find(|o| o.type_ == c.type_))
            .filter(|o| o.status == c.status)
            .and_then(|o| o.last_transition_time.clone());
        c.last_transition_time = Some(kept.unwrap_or_else(|| rfc3339(now)));
    }
    conditions
}

#[cfg(test)]
mod tests;
