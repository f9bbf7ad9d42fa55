//! The patch verb: read the object, apply the patch engine the content type names, admit,
//! and write back; retried on a write conflict unless the patch itself pinned a
//! resourceVersion, as the API server's guaranteed update does.

use crate::error::ApiError;
use crate::http::Body;
use crate::meta;
use crate::patch::{json_patch, merge, strategic};
use crate::registry::ResourceType;
use crate::server::{Ctx, Request};
use hyper::Response;
use serde_json::{Value, json};

const ATTEMPTS: usize = 8;

pub async fn patch(
    ctx: &Ctx,
    req: &Request,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    status: bool,
) -> Result<Response<Body>, ApiError> {
    let content_type = req.content_type().to_string();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if media == "application/apply-patch+yaml" {
        return crate::applying::apply(ctx, req, rt, ns, name, status).await;
    }
    let patch: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        let current = ctx.store.get(rt, ns, name)?;
        let current_rv = meta::str_at(&current, &["metadata", "resourceVersion"])
            .unwrap_or("")
            .to_string();
        let mut patched = match media.as_str() {
            "application/merge-patch+json" => merge::merge_patch(&current, &patch),
            "application/json-patch+json" => json_patch::apply_json_patch(&current, &patch)?,
            "application/strategic-merge-patch+json" => {
                if rt.is_custom() {
                    return Err(strategic::unsupported_for_custom_resource());
                }
                strategic::strategic_merge_patch(&current, &patch, &rt.kind)?
            }
            _ => return Err(ApiError::unsupported_media_type(&content_type)),
        };
        if !patched.is_object() {
            return Err(ApiError::bad_request(format!(
                "the patch turned {} {ns}/{name} into a non-object",
                rt.kind
            )));
        }
        let pinned = meta::str_at(&patched, &["metadata", "resourceVersion"])
            .is_some_and(|rv| rv != current_rv);
        if !pinned {
            patched["metadata"]["resourceVersion"] = json!(current_rv);
        }
        let admitted = ctx
            .admit_write(req, rt, ns, Some(&current), patched)
            .await?;
        match ctx
            .store
            .update(rt, ns, name, admitted, status, req.dry_run())
        {
            Err(e) if e.reason == "Conflict" && !pinned => last_err = Some(e),
            Err(e) => return Err(e),
            Ok(updated) => return Ok(ctx.render_one(req, rt, updated)),
        }
    }
    Err(last_err.unwrap_or_else(|| ApiError::internal("patch retries exhausted")))
}
