//! Which namespaces are in the mesh (Istio's labels, so existing namespaces work).

use std::collections::BTreeMap;

/// Istio's injection label: `enabled` puts a namespace in the mesh, any other value keeps it out.
pub const INJECTION_LABEL: &str = "istio-injection";
/// Istio's revision label: its presence puts a namespace in the mesh (unless `istio-injection` says otherwise).
pub const REVISION_LABEL: &str = "istio.io/rev";

/// Whether a namespace with these labels is in the mesh. As in Istio,
/// `istio-injection` wins over `istio.io/rev` when both are set.
pub fn in_mesh(labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(labels) = labels else {
        return false;
    };
    match labels.get(INJECTION_LABEL) {
        Some(value) => value == "enabled",
        None => labels.contains_key(REVISION_LABEL),
    }
}

/// Istio's pod label: `true` selects the pod for injection where its namespace
/// has neither namespace label.
pub const POD_INJECT_LABEL: &str = "sidecar.istio.io/inject";

/// [`in_mesh`] for a Namespace object; a namespace being deleted is not in the mesh.
pub fn namespace_in_mesh(ns: &k8s_openapi::api::core::v1::Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none() && in_mesh(ns.metadata.labels.as_ref())
}

/// Whether namespace `ns` needs the mesh's identities and ConfigMaps: it is in
/// the mesh by its labels, or it has neither label and holds a pod labelled
/// `sidecar.istio.io/inject=true` (`has_selected_pod`), which the injector
/// gives a proxy there. Never a system namespace nor the operator's own, whose
/// pods are never injected.
pub fn needs_mesh(
    ns: &k8s_openapi::api::core::v1::Namespace,
    has_selected_pod: bool,
    operator_namespace: &str,
) -> bool {
    if namespace_in_mesh(ns) {
        return true;
    }
    let name = ns.metadata.name.as_deref().unwrap_or_default();
    let labels = ns.metadata.labels.as_ref();
    let pods_decide =
        labels.is_none_or(|l| !l.contains_key(INJECTION_LABEL) && !l.contains_key(REVISION_LABEL));
    ns.metadata.deletion_timestamp.is_none()
        && pods_decide
        && has_selected_pod
        && name != operator_namespace
        && !trellis_inject::NEVER_INJECTED_NAMESPACES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn istio_labels_decide_membership() {
        assert!(!in_mesh(None));
        assert!(!in_mesh(Some(&labels(&[]))));
        assert!(in_mesh(Some(&labels(&[("istio-injection", "enabled")]))));
        assert!(!in_mesh(Some(&labels(&[("istio-injection", "disabled")]))));
        assert!(in_mesh(Some(&labels(&[("istio.io/rev", "default")]))));
        assert!(!in_mesh(Some(&labels(&[
            ("istio.io/rev", "default"),
            ("istio-injection", "disabled")
        ]))));
        assert!(!in_mesh(Some(&labels(&[("app", "istio-injection")]))));
    }

    fn namespace(name: &str, pairs: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Namespace {
        k8s_openapi::api::core::v1::Namespace {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels(pairs)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_selected_by_its_label_brings_its_namespace_in_where_the_namespace_leaves_it_to_pods() {
        let op = "trellis-system";
        let edge = namespace("edge", &[]);
        assert!(!needs_mesh(&edge, false, op));
        assert!(needs_mesh(&edge, true, op));
        // the namespace's own labels decide when set, as the injector's do
        assert!(!needs_mesh(
            &namespace("edge", &[("istio-injection", "disabled")]),
            true,
            op
        ));
        assert!(needs_mesh(
            &namespace("edge", &[("istio-injection", "enabled")]),
            false,
            op
        ));
        assert!(needs_mesh(
            &namespace("edge", &[("istio.io/rev", "canary")]),
            true,
            op
        ));
        // never the namespaces whose pods are never injected
        assert!(!needs_mesh(&namespace("kube-system", &[]), true, op));
        assert!(!needs_mesh(&namespace(op, &[]), true, op));
        let mut leaving = namespace("edge", &[]);
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(!needs_mesh(&leaving, true, op));
    }
}
