//! Which pods get a sidecar: Istio's selection rules.

use std::collections::BTreeMap;

/// Namespaces that never get sidecars, whatever their labels.
pub const NEVER_INJECTED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

const NAMESPACE_LABEL: &str = "istio-injection";
const REVISION_LABEL: &str = "istio.io/rev";
const POD_INJECT: &str = "sidecar.istio.io/inject";

/// The selection result, with the rule that decided it (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectDecision {
    Inject(&'static str),
    Skip(&'static str),
}

impl InjectDecision {
    pub fn injects(self) -> bool {
        matches!(self, InjectDecision::Inject(_))
    }
}

/// Istio's rules: never the system namespaces nor the operator's own; a pod
/// label or annotation `sidecar.istio.io/inject=false` opts out; otherwise the
/// namespace label `istio-injection=enabled`, else any `istio.io/rev` label
/// (unless `istio-injection` says otherwise), else the pod label
/// `sidecar.istio.io/inject=true` selects the pod.
pub fn should_inject(
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
    pod_annotations: &BTreeMap<String, String>,
    namespace: &str,
    operator_namespace: &str,
) -> InjectDecision {
    if NEVER_INJECTED_NAMESPACES.contains(&namespace) {
        return InjectDecision::Skip("system namespace");
    }
    if namespace == operator_namespace {
        return InjectDecision::Skip("operator namespace");
    }
    let opted_out = |m: &BTreeMap<String, String>| m.get(POD_INJECT).is_some_and(|v| v == "false");
    if opted_out(pod_labels) || opted_out(pod_annotations) {
        return InjectDecision::Skip("pod opted out");
    }
    match namespace_labels.get(NAMESPACE_LABEL).map(String::as_str) {
        Some("enabled") => {
            return InjectDecision::Inject("namespace label istio-injection=enabled");
        }
        Some(_) => return InjectDecision::Skip("namespace label istio-injection is not enabled"),
        None => {}
    }
    if namespace_labels.contains_key(REVISION_LABEL) {
        return InjectDecision::Inject("namespace label istio.io/rev");
    }
    if pod_labels.get(POD_INJECT).is_some_and(|v| v == "true") {
        return InjectDecision::Inject("pod label sidecar.istio.io/inject=true");
    }
    InjectDecision::Skip("neither namespace nor pod selects injection")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn decide(
        ns: &[(&str, &str)],
        labels: &[(&str, &str)],
        ann: &[(&str, &str)],
        name: &str,
    ) -> bool {
        should_inject(&m(ns), &m(labels), &m(ann), name, "trellis-system").injects()
    }

    #[test]
    fn namespace_label_selects() {
        assert!(decide(&[("istio-injection", "enabled")], &[], &[], "shop"));
        assert!(!decide(
            &[("istio-injection", "disabled")],
            &[],
            &[],
            "shop"
        ));
        assert!(!decide(
            &[("istio-injection", "disabled"), ("istio.io/rev", "x")],
            &[],
            &[],
            "shop"
        ));
    }

    #[test]
    fn revision_label_selects() {
        assert!(decide(&[("istio.io/rev", "canary")], &[], &[], "shop"));
    }

    #[test]
    fn pod_label_selects_only_true() {
        assert!(decide(
            &[],
            &[("sidecar.istio.io/inject", "true")],
            &[],
            "shop"
        ));
        assert!(!decide(
            &[],
            &[("sidecar.istio.io/inject", "yes")],
            &[],
            "shop"
        ));
        assert!(!decide(&[], &[], &[], "shop"));
        // Istio reads the opt-in from the label only.
        assert!(!decide(
            &[],
            &[],
            &[("sidecar.istio.io/inject", "true")],
            "shop"
        ));
    }

    #[test]
    fn opt_out_by_label_or_annotation_wins() {
        let ns = [("istio-injection", "enabled")];
        assert!(!decide(
            &ns,
            &[("sidecar.istio.io/inject", "false")],
            &[],
            "shop"
        ));
        assert!(!decide(
            &ns,
            &[],
            &[("sidecar.istio.io/inject", "false")],
            "shop"
        ));
    }

    #[test]
    fn system_and_operator_namespaces_never() {
        let ns = [("istio-injection", "enabled")];
        let pod = [("sidecar.istio.io/inject", "true")];
        for name in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "trellis-system",
        ] {
            assert!(!decide(&ns, &pod, &[], name), "{name}");
        }
    }
}
