//! Server-side apply requests (`PATCH` with `application/apply-patch+yaml`): create when
//! absent, otherwise merge the applied configuration under the field manager's ownership.

use crate::apply;
use crate::error::ApiError;
use crate::http::Body;
use crate::meta;
use crate::pipeline::{crd_schema, structure};
use crate::registry::ResourceType;
use crate::schema;
use crate::server::{Ctx, Request};
use hyper::Response;
use serde_json::Value;

const ATTEMPTS: usize = 8;

pub async fn apply(
    ctx: &Ctx,
    req: &Request,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    status: bool,
) -> Result<Response<Body>, ApiError> {
    let manager = req
        .param("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            )
        })?
        .to_string();
    let force = req.param("force") == Some("true");
    let mut applied: Value = serde_yaml::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(format!(
            "the apply configuration for {} {ns}/{name} is not an object",
            rt.kind
        )));
    }
    let applied_name = meta::name_of(&applied);
    if applied_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({applied_name}) does not match the name on the URL ({name})"
        )));
    }
    for (field, want) in [("apiVersion", rt.api_version()), ("kind", rt.kind.clone())] {
        let got = applied.get(field).and_then(Value::as_str).unwrap_or("");
        if got != want {
            return Err(ApiError::bad_request(format!(
                "the {field} of the apply configuration for {ns}/{name} is {got:?}, expected {want:?}"
            )));
        }
    }
    if let Some(schema) = crd_schema(rt) {
        // Converting the apply configuration to a typed object fails on any field the schema
        // does not declare, whatever fieldValidation says: a bare 500 from structured-merge-diff.
        let unknown = schema::prune(schema, &mut applied);
        if !unknown.is_empty() {
            return Err(apply::undeclared_fields_error(&applied, &unknown));
        }
    }
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        let current = match ctx.store.get(rt, ns, name) {
            Ok(obj) => Some(obj),
            Err(e) if e.code == 404 => None,
            Err(e) => return Err(e),
        };
        let merged = apply::server_side_apply_on(
            current.as_ref(),
            &applied,
            &manager,
            if status { "status" } else { "" },
            force,
            &meta::now_rfc3339(),
            structure(rt),
        )?;
        let mut admitted = ctx
            .admit(req, rt, ns, current.as_ref(), merged, false)
            .await?;
        let result = match &current {
            None => {
                if status {
                    return Err(ApiError::not_found(&rt.group, &rt.resource, name));
                }
                ctx.store
                    .create(rt, ns, admitted, req.dry_run())
                    .map(|o| (o, 201))
            }
            Some(current) => {
                admitted["metadata"]["resourceVersion"] =
                    current["metadata"]["resourceVersion"].clone();
                ctx.store
                    .update(rt, ns, name, admitted, status, req.dry_run())
                    .map(|o| (o, 200))
            }
        };
        match result {
            Ok((obj, code)) => return Ok(ctx.render_one_code(req, rt, obj, code)),
            // Raced with another writer: apply again on the newer object.
            Err(e) if e.reason == "Conflict" || e.reason == "AlreadyExists" => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| ApiError::internal("apply retries exhausted")))
}
