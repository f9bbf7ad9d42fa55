//! Offline injection of workload manifests (`trellis inject`): the pod
//! template of a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or
//! CronJob, or a Pod itself, goes through the same [`crate::inject`] as a pod
//! the webhook admits. Any other document is not a workload.

use crate::{InjectError, InjectionContext, inject};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The kinds rewritten, with their API groups and the path of the pod template.
const WORKLOADS: [(&str, &str, &[&str]); 7] = [
    ("", "Pod", &[]),
    ("apps", "Deployment", &["spec", "template"]),
    ("apps", "StatefulSet", &["spec", "template"]),
    ("apps", "DaemonSet", &["spec", "template"]),
    ("apps", "ReplicaSet", &["spec", "template"]),
    ("batch", "Job", &["spec", "template"]),
    (
        "batch",
        "CronJob",
        &["spec", "jobTemplate", "spec", "template"],
    ),
];

/// What offline injection did with one document.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkloadOutcome {
    /// Not one of the workload kinds: pass it through unchanged.
    NotAWorkload,
    /// A workload whose pods are not injected (opted out, system namespace); the reason.
    Skipped(&'static str),
    /// Already injected: unchanged.
    AlreadyInjected,
    /// The injected pod template: replace `metadata` and `spec` at `path`
    /// (empty for a Pod: the document itself) with these.
    Injected {
        path: Vec<&'static str>,
        metadata: Value,
        spec: Value,
    },
}

/// The template path of a workload kind (`apiVersion`, `kind`), if it is one.
pub fn template_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    WORKLOADS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, path)| *path)
}

fn text<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or("")
}

fn labels(meta: Option<&Value>, key: &str) -> BTreeMap<String, String> {
    meta.and_then(|m| m.get(key))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Injects the pod template of `doc` as the webhook would inject its pods.
///
/// The namespace's labels are unknown offline, so the namespace is taken as
/// selected (as `istioctl kube-inject` does); the pod's own opt-out
/// (`sidecar.istio.io/inject=false`), the system namespaces and
/// `operator_namespace` still skip injection.
pub fn inject_workload(
    doc: &Value,
    ctx: &InjectionContext,
    operator_namespace: &str,
) -> Result<WorkloadOutcome, InjectError> {
    let Some(path) = template_path(text(doc, "apiVersion"), text(doc, "kind")) else {
        return Ok(WorkloadOutcome::NotAWorkload);
    };
    let doc_meta = doc.get("metadata");
    let name = doc_meta
        .and_then(|m| m.get("name").or(m.get("generateName")))
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = doc_meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let object = format!("{}/{namespace}/{name}", text(doc, "kind"));
    let field = if path.is_empty() {
        String::new()
    } else {
        format!("{}.", path.join("."))
    };
    let mut template = doc;
    for (depth, key) in path.iter().enumerate() {
        template = template
            .get(*key)
            .ok_or_else(|| InjectError::InvalidTemplate {
                object: object.clone(),
                path: path[..=depth].join("."),
                message: "missing field".into(),
            })?;
    }
    let meta = template.get("metadata");
    let selected_namespace =
        BTreeMap::from([("istio-injection".to_string(), "enabled".to_string())]);
    let decision = ctx.decide(
        &selected_namespace,
        &labels(meta, "labels"),
        &labels(meta, "annotations"),
        if namespace.is_empty() {
            "default"
        } else {
            namespace
        },
        operator_namespace,
    );
    if let crate::InjectDecision::Skip(reason) = decision {
        return Ok(WorkloadOutcome::Skipped(reason));
    }

    let mut pod_json = Map::new();
    pod_json.insert(
        "metadata".into(),
        meta.cloned().unwrap_or(Value::Object(Map::new())),
    );
    if let Some(spec) = template.get("spec") {
        pod_json.insert("spec".into(), spec.clone());
    }
    let mut pod: Pod = serde_json::from_value(Value::Object(pod_json)).map_err(|e| {
        InjectError::InvalidTemplate {
            object: object.clone(),
            path: field.trim_end_matches('.').to_string(),
            message: format!("not a pod template: {e}"),
        }
    })?;
    // Names for messages only; restored before the template is written back.
    let (own_name, own_namespace) = (pod.metadata.name.take(), pod.metadata.namespace.take());
    pod.metadata.name = Some(name.to_string());
    pod.metadata.namespace = Some(namespace.to_string());
    let outcome = inject(&pod, ctx).map_err(|e| match e {
        InjectError::InvalidAnnotation {
            annotation,
            value,
            reason,
            ..
        } => InjectError::InvalidTemplate {
            object: object.clone(),
            path: format!("{field}metadata.annotations[\"{annotation}\"]"),
            message: format!("invalid value {value:?}: {reason}"),
        },
        InjectError::MissingSpec { .. } => InjectError::InvalidTemplate {
            object: object.clone(),
            path: format!("{field}spec"),
            message: "the pod template has no spec to inject into".into(),
        },
        other => other,
    })?;
    if outcome.already_injected {
        return Ok(WorkloadOutcome::AlreadyInjected);
    }
    let mut injected = outcome.pod;
    injected.metadata.name = own_name;
    injected.metadata.namespace = own_namespace;
    let serialize = |v: Result<Value, serde_json::Error>| {
        v.map_err(|e| InjectError::Serialize {
            object: object.clone(),
            message: e.to_string(),
        })
    };
    Ok(WorkloadOutcome::Injected {
        path: path.to_vec(),
        metadata: serialize(serde_json::to_value(&injected.metadata))?,
        spec: serialize(serde_json::to_value(&injected.spec))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> InjectionContext {
        InjectionContext::from_mesh_config(&Default::default(), "trellis:test")
    }

    #[test]
    fn kinds_and_groups() {
        assert_eq!(template_path("v1", "Pod"), Some(&[][..]));
        assert_eq!(
            template_path("apps/v1", "Deployment"),
            Some(&["spec", "template"][..])
        );
        assert_eq!(
            template_path("batch/v1", "CronJob"),
            Some(&["spec", "jobTemplate", "spec", "template"][..])
        );
        assert_eq!(template_path("v1", "Service"), None);
        assert_eq!(template_path("example.com/v1", "Deployment"), None);
    }

    #[test]
    fn opted_out_and_system_namespaces_are_skipped() {
        let d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","namespace":"shop"},
            "spec":{"template":{"metadata":{"annotations":{"sidecar.istio.io/inject":"false"}},
            "spec":{"containers":[{"name":"c"}]}}}});
        assert!(matches!(
            inject_workload(&d, &ctx(), "trellis-system").unwrap(),
            WorkloadOutcome::Skipped(_)
        ));
        let d = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"kube-system"},
            "spec":{"containers":[{"name":"c"}]}});
        assert!(matches!(
            inject_workload(&d, &ctx(), "trellis-system").unwrap(),
            WorkloadOutcome::Skipped(_)
        ));
    }

    #[test]
    fn errors_name_the_workload_and_template_field() {
        let d = json!({"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"nightly","namespace":"ops"},
            "spec":{"jobTemplate":{"spec":{"template":{"metadata":{"annotations":{
                "traffic.sidecar.istio.io/excludeOutboundPorts":"x"}},
            "spec":{"containers":[{"name":"c"}]}}}}}});
        let e = inject_workload(&d, &ctx(), "trellis-system")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("CronJob/ops/nightly: spec.jobTemplate.spec.template.metadata.annotations[\"traffic.sidecar.istio.io/excludeOutboundPorts\"]: invalid value \"x\""),
            "{e}"
        );
        let d =
            json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"},"spec":{}});
        let e = inject_workload(&d, &ctx(), "trellis-system")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "Deployment//a: spec.template: missing field");
        let d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"},
            "spec":{"template":{"spec":{"containers":"nope"}}}});
        let e = inject_workload(&d, &ctx(), "trellis-system")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Deployment//a: spec.template: not a pod template"),
            "{e}"
        );
    }

    #[test]
    fn template_keeps_its_own_metadata() {
        let d = json!({"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","namespace":"shop"},
            "spec":{"template":{"metadata":{"labels":{"app":"db"}},"spec":{"containers":[{"name":"c"}]}}}});
        let WorkloadOutcome::Injected {
            path,
            metadata,
            spec,
        } = inject_workload(&d, &ctx(), "trellis-system").unwrap()
        else {
            panic!("not injected");
        };
        assert_eq!(path, vec!["spec", "template"]);
        assert!(metadata.get("name").is_none() && metadata.get("namespace").is_none());
        assert_eq!(metadata["labels"]["app"], "db");
        assert_eq!(spec["containers"][1]["name"], "trellis-proxy");
    }

    #[test]
    fn gateway_template_of_a_deployment() {
        let d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"ingress","namespace":"edge"},
            "spec":{"template":{"metadata":{"annotations":{"inject.istio.io/templates":"gateway"}},
            "spec":{"containers":[{"name":"istio-proxy","image":"auto"}]}}}});
        let WorkloadOutcome::Injected { spec, .. } =
            inject_workload(&d, &ctx(), "trellis-system").unwrap()
        else {
            panic!("not injected");
        };
        assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
        assert_eq!(spec["containers"][0]["name"], "istio-proxy");
        assert_eq!(
            spec["containers"][0]["args"][3]
                .as_str()
                .unwrap()
                .split('~')
                .next(),
            Some("router")
        );
        assert!(spec.get("initContainers").is_none());
        let mut bad = d.clone();
        bad["spec"]["template"]["metadata"]["annotations"]["inject.istio.io/templates"] =
            json!("custom");
        let e = inject_workload(&bad, &ctx(), "trellis-system")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Deployment/edge/ingress: spec.template.metadata.annotations[\"inject.istio.io/templates\"]: invalid value \"custom\""),
            "{e}"
        );
    }
}
