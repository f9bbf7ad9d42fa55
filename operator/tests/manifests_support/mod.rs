//! Shared by the manifest tests: `kubectl kustomize` with the real kubectl, and the
//! rendered objects read as their k8s-openapi / trellis-api types.
#![allow(dead_code)]

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const NS: &str = "trellis-system";
pub const SA: &str = "trellis-operator";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

pub use kube_sim::kubectl_bin;

pub fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl kustomize <dir>` run from the workspace root, exactly as the README says.
pub fn kustomize(dir: &str) -> String {
    let out = Command::new(kubectl_bin())
        .args(["kustomize", dir])
        .current_dir(workspace())
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed: {}",
        output_text(&out)
    );
    String::from_utf8(out.stdout).expect("kustomize output is UTF-8")
}

/// The rendered objects as JSON, in order.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
            serde_json::to_value(v).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

pub fn id(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Reads `obj` as `T` and checks that writing it back gives the same JSON, so no
/// field was misspelled, misplaced or of the wrong type (k8s-openapi ignores unknown
/// fields on reading; the round trip catches them).
pub fn typed<T: DeserializeOwned + serde::Serialize>(obj: &Value) -> T {
    let t: T = serde_json::from_value(obj.clone())
        .unwrap_or_else(|e| panic!("{} does not parse as its type: {e}", id(obj)));
    let back = serde_json::to_value(&t).unwrap();
    if let Some(path) = first_difference(obj, &back, String::new()) {
        panic!(
            "{}: reading it as its k8s-openapi type lost or changed `{path}` (misspelled, misplaced or mistyped field)",
            id(obj)
        );
    }
    t
}

/// The first path where `a` and `b` differ; numbers compare by value (a schema's
/// `minimum: 0` reads back as `0.0`).
pub fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then_some(path),
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .find_map(|k| {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(x), Some(y)) => first_difference(x, y, p),
                    _ => Some(p),
                }
            }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]"))),
        _ => (a != b).then_some(path),
    }
}

/// Every object of one rendering, by kind.
#[derive(Default)]
pub struct Rendered {
    pub namespaces: Vec<Namespace>,
    pub crds: Vec<CustomResourceDefinition>,
    pub service_accounts: Vec<ServiceAccount>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub mutating: Vec<MutatingWebhookConfiguration>,
    pub validating: Vec<ValidatingWebhookConfiguration>,
    pub mesh_configs: Vec<trellis_api::mesh::MeshConfig>,
    pub raw: Vec<Value>,
}

impl Rendered {
    pub fn parse(yaml: &str) -> Rendered {
        let mut r = Rendered::default();
        for obj in documents(yaml) {
            let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
            let kind = obj["kind"].as_str().unwrap_or("").to_string();
            match (api_version.as_str(), kind.as_str()) {
                ("v1", "Namespace") => r.namespaces.push(typed(&obj)),
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => r.crds.push(typed(&obj)),
                ("v1", "ServiceAccount") => r.service_accounts.push(typed(&obj)),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    r.cluster_roles.push(typed(&obj))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    r.cluster_role_bindings.push(typed(&obj))
                }
                ("rbac.authorization.k8s.io/v1", "Role") => r.roles.push(typed(&obj)),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                    r.role_bindings.push(typed(&obj))
                }
                ("apps/v1", "Deployment") => r.deployments.push(typed(&obj)),
                ("v1", "Service") => r.services.push(typed(&obj)),
                ("policy/v1", "PodDisruptionBudget") => r.pdbs.push(typed(&obj)),
                ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
                    r.mutating.push(typed(&obj))
                }
                ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                    r.validating.push(typed(&obj))
                }
                ("mesh.trellis.dev/v1alpha1", "MeshConfig") => {
                    let text = serde_json::to_string(&obj).unwrap();
                    let loaded = trellis_api::load("manifests (MeshConfig)", &text)
                        .unwrap_or_else(|e| panic!("MeshConfig does not load: {e}"));
                    for resource in loaded {
                        let errors = trellis_api::validate(&resource);
                        assert!(errors.is_empty(), "{} is invalid: {errors:?}", id(&obj));
                        match resource {
                            trellis_api::Resource::MeshConfig(mc) => r.mesh_configs.push(mc),
                            other => panic!("MeshConfig loaded as {}", other.kind()),
                        }
                    }
                }
                _ => panic!("unexpected object {api_version} {}", id(&obj)),
            }
            r.raw.push(obj);
        }
        r
    }

    pub fn deployment(&self) -> &Deployment {
        assert_eq!(self.deployments.len(), 1, "one Deployment");
        &self.deployments[0]
    }
}
