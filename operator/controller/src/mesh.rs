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

/// [`in_mesh`] for a Namespace object; a namespace being deleted is not in the mesh.
pub fn namespace_in_mesh(ns: &k8s_openapi::api::core::v1::Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none() && in_mesh(ns.metadata.labels.as_ref())
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
}
