//! Which RequestAuthentication and AuthorizationPolicy objects apply to a
//! workload, as Istio decides it: a policy in the mesh root namespace applies
//! to every namespace, one elsewhere to its own namespace; a policy with a
//! selector applies only to workloads whose labels match it.
use trellis_api::security::{AuthorizationPolicy, RequestAuthentication, WorkloadSelector};

use crate::traffic::{Store, Stored};
use crate::workload::{Workload, labels_match};

fn applies(
    namespace: &str,
    selector: Option<&WorkloadSelector>,
    workload: &Workload,
    root_namespace: &str,
) -> bool {
    let in_scope = namespace == workload.namespace || namespace == root_namespace;
    in_scope
        && selector.is_none_or(|s| {
            s.match_labels.is_empty() || labels_match(&s.match_labels, &workload.labels)
        })
}

/// Oldest first (creation time, then the order the model saw them), so the
/// translator's output is stable.
fn sorted<T>(mut found: Vec<&Stored<T>>) -> Vec<&Stored<T>> {
    found.sort_by(|a, b| {
        a.age_key()
            .cmp(&b.age_key())
            .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    found
}

pub(crate) fn request_authentications_for<'a>(
    store: &'a Store<RequestAuthentication>,
    workload: &Workload,
    root_namespace: &str,
) -> Vec<&'a Stored<RequestAuthentication>> {
    sorted(
        store
            .values()
            .filter(|ra| {
                applies(
                    &ra.namespace,
                    ra.object.spec.selector.as_ref(),
                    workload,
                    root_namespace,
                )
            })
            .collect(),
    )
}

pub(crate) fn authorization_policies_for<'a>(
    store: &'a Store<AuthorizationPolicy>,
    workload: &Workload,
    root_namespace: &str,
) -> Vec<&'a Stored<AuthorizationPolicy>> {
    sorted(
        store
            .values()
            .filter(|ap| {
                applies(
                    &ap.namespace,
                    ap.object.spec.selector.as_ref(),
                    workload,
                    root_namespace,
                )
            })
            .collect(),
    )
}
