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
    /// Mesh namespace: pods running a sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_with_sidecar: Option<u32>,
    /// Mesh namespace: the earliest `notAfter` of its workload certificates (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_cert_expiry: Option<String>,
    /// Mesh namespace: mesh configuration objects accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_accepted: Option<u32>,
    /// Mesh namespace: mesh configuration objects rejected (`Accepted=False`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_rejected: Option<u32>,
    /// Connected proxies that have ACKed everything they were sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies_in_sync: Option<u32>,
    /// Control plane: `self-signed` or `plugged-in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_mode: Option<String>,
    /// Control plane: SHA-256 fingerprint of the root in use (hex pairs joined by colons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_fingerprint: Option<String>,
    /// Control plane: `notAfter` of the root in use (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_expiry: Option<String>,
    /// Control plane: the SPIFFE trust domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// Control plane: when the xDS server last pushed configuration (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push: Option<String>,
    /// Control plane: version of the operator that wrote this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_version: Option<String>,
    /// Control plane, during a root rotation: identities not yet reissued under the new root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_remaining: Option<u32>,
    /// Control plane: identity of the replica holding the leader Lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
