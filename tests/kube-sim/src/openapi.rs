//! A minimal OpenAPI v3 publication: the root index of group-versions and, per group-version,
//! the operations on each object path with their GroupVersionKind and query parameters.
//! kubectl reads it to learn that the server validates fields itself (`fieldValidation`),
//! which decides whether it validates client-side.

use crate::registry::{Registry, ResourceType};
use serde_json::{Map, Value, json};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: every served group-version with the URL of its document.
pub fn root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in reg.groups() {
        for version in versions {
            let key = gv_key(&group, &version);
            let hash = document_hash(&group_version(reg, &group, &version));
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

fn document_hash(doc: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    doc.to_string().hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(rt: &ResourceType, action: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params.iter().map(|p| parameter(p)).collect();
    json!({
        "operationId": format!("{action}{}", rt.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
    })
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/<g>/<v>`; None when nothing is served there.
pub fn group_version(reg: &Registry, group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let write_params = ["dryRun", "fieldManager", "fieldValidation"];
    for rt in reg.in_group_version(group, version) {
        let prefix = format!("/{}", gv_key(group, version));
        let collection = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", rt.resource)
        } else {
            format!("{prefix}/{}", rt.resource)
        };
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(rt, "list", &["labelSelector", "fieldSelector", "limit", "continue", "watch"]),
                "post": operation(rt, "post", &write_params),
            }),
        );
        if rt.stored {
            let mut patch_params = write_params.to_vec();
            patch_params.push("force");
            paths.insert(
                format!("{collection}/{{name}}"),
                json!({
                    "get": operation(rt, "get", &[]),
                    "put": operation(rt, "put", &write_params),
                    "patch": operation(rt, "patch", &patch_params),
                    "delete": operation(rt, "delete", &["dryRun", "propagationPolicy"]),
                }),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::SERVER_MINOR)},
        "paths": paths,
        "components": {"schemas": crd_schemas(reg, group, version)},
    })
}

/// The component name the API server gives a custom resource's schema: the group reversed,
/// then version and kind (`io.istio.networking.v1.VirtualService`).
fn definition_name(rt: &ResourceType) -> String {
    let mut parts: Vec<&str> = rt.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), rt.version, rt.kind)
}

/// Each custom resource's structural schema, tagged with its GroupVersionKind, so that
/// `kubectl explain` finds it.
fn crd_schemas(reg: &Registry, group: &str, version: &str) -> Map<String, Value> {
    let mut schemas = Map::new();
    for rt in reg.in_group_version(group, version) {
        let Some(schema) = rt
            .crd_version
            .as_ref()
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
        else {
            continue;
        };
        let mut schema = schema.clone();
        if let Some(map) = schema.as_object_mut() {
            map.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]),
            );
        }
        schemas.insert(definition_name(rt), schema);
    }
    schemas
}

/// `/openapi/v2`: a swagger 2.0 document without definitions, in the protobuf encoding clients
/// ask for. kubectl validates client-side against it where it cannot defer to the server (a
/// `kind: List`, whose items then go to the server one by one); with no definitions it skips
/// that step and the server's own field validation decides, as it does for every other object.
pub fn v2_document() -> hyper::Response<crate::http::Body> {
    // openapi.v2.Document { swagger (field 1, string) = "2.0" }
    let body: &'static [u8] = &[0x0a, 0x03, b'2', b'.', b'0'];
    hyper::Response::builder()
        .status(200)
        // As kube-openapi labels the protobuf form.
        .header("content-type", "application/octet-stream")
        .body(crate::http::full(body))
        .unwrap_or_else(|_| hyper::Response::new(crate::http::full(bytes::Bytes::new())))
}
