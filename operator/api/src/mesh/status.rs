//! `MeshStatus`: the mesh's health as `kubectl get meshstatus` shows it.

use crate::status::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `MeshStatus` has no desired state: the operator only writes its status.
#[derive(
    CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq,
)]
#[kube(
    group = "mesh.trellis.dev",
    version = "v1alpha1",
    kind = "MeshStatus",
    plural = "meshstatuses",
    namespaced,
    status = "MeshStatusStatus",
    shortname = "ms",
    category = "trellis",
    printcolumn = r#"{"name":"Ready","type":"boolean","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Proxies","type":"integer","jsonPath":".status.proxies"}"#,
    printcolumn = r#"{"name":"Workloads","type":"integer","jsonPath":".status.workloads"}"#,
    printcolumn = r#"{"name":"Identities","type":"integer","jsonPath":".status.identities"}"#,
    printcolumn = r#"{"name":"Expiring","type":"integer","jsonPath":".status.expiring"}"#,
    printcolumn = r#"{"name":"Errors","type":"integer","jsonPath":".status.errors"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshStatusSpec {}

/// What the operator observed about the mesh.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MeshStatusStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Proxies connected to the xDS server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies: Option<u32>,
    /// Workloads in the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<u32>,
    /// Workload identities (service accounts) with a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<u32>,
    /// Certificates due for renewal or past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring: Option<u32>,
    /// Mesh resources with validation or translation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
