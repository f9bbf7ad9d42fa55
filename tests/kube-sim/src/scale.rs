//! The `scale` subresource of Deployments (`autoscaling/v1` Scale), which `kubectl scale`
//! reads and patches: `spec.replicas` of the Deployment, its `status.replicas` and its label
//! selector as a string.

use crate::error::ApiError;
use crate::http::{self, Body};
use crate::meta;
use crate::patch::{json_patch, merge, strategic};
use crate::registry::ResourceType;
use crate::server::{Ctx, Request};
use hyper::{Method, Response};
use serde_json::{Value, json};

const ATTEMPTS: usize = 8;

/// Whether a type has the scale subresource here.
pub fn has_scale(rt: &ResourceType) -> bool {
    rt.group == "apps" && rt.resource == "deployments"
}

/// The Scale view of a Deployment.
pub fn scale_of(deployment: &Value) -> Value {
    let mut selector: Vec<String> = deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    selector.sort();
    let m = &deployment["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": deployment["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": deployment["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector.join(","),
        },
    })
}

fn replicas_of(scale: &Value) -> Result<i64, ApiError> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            meta::name_of(scale),
            vec![crate::error::Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                field: "spec.replicas".into(),
            }],
        ));
    }
    Ok(replicas)
}

fn patched_scale(req: &Request, current: &Value) -> Result<Value, ApiError> {
    let media = req
        .content_type()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    match media.as_str() {
        "application/merge-patch+json" => Ok(merge::merge_patch(current, &body)),
        "application/json-patch+json" => json_patch::apply_json_patch(current, &body),
        "application/strategic-merge-patch+json" => {
            strategic::strategic_merge_patch(current, &body, "Scale")
        }
        _ => Err(ApiError::unsupported_media_type(req.content_type())),
    }
}

/// GET, PUT and PATCH on `deployments/<name>/scale`.
pub fn handle(
    ctx: &Ctx,
    req: &Request,
    rt: &ResourceType,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    if req.method == Method::GET {
        return Ok(http::json(200, &scale_of(&ctx.store.get(rt, ns, name)?)));
    }
    if req.method != Method::PUT && req.method != Method::PATCH {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({}/scale)",
            rt.qualified()
        )));
    }
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        let current = ctx.store.get(rt, ns, name)?;
        let current_scale = scale_of(&current);
        let wanted = if req.method == Method::PUT {
            serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding Scale: {e}")))?
        } else {
            patched_scale(req, &current_scale)?
        };
        let replicas = replicas_of(&wanted)?;
        let pinned = wanted["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty());
        let mut updated = current.clone();
        updated["spec"]["replicas"] = json!(replicas);
        if let Some(rv) = pinned {
            updated["metadata"]["resourceVersion"] = json!(rv);
        }
        match ctx
            .store
            .update(rt, ns, name, updated, false, req.dry_run())
        {
            Ok(obj) => return Ok(http::json(200, &scale_of(&obj))),
            Err(e) if e.reason == "Conflict" && pinned.is_none() => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| ApiError::internal("scale retries exhausted")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_view_of_a_deployment() {
        let d = json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "7"},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "front", "app": "web"}}},
                       "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(
            s["status"],
            json!({"replicas": 2, "selector": "app=web,tier=front"})
        );
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        let err = replicas_of(&json!({"metadata": {"name": "web"}, "spec": {"replicas": -1}}))
            .unwrap_err();
        assert_eq!(err.code, 422);
    }
}
