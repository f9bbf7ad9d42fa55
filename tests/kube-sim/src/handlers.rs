//! The verbs on resource paths: get, list, watch, create, update, delete, deletecollection
//! (patch lives in `patching`), with the query parameters the API server honours.

use crate::error::ApiError;
use crate::http::{self, Body};
use crate::meta;
use crate::registry::ResourceType;
use crate::routing::ResourcePath;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{Ctx, Request};
use crate::store::{DeleteOptions, Propagation};
use crate::watch::{self, WatchParams};
use base64::Engine;
use hyper::{Method, Response};
use serde_json::{Value, json};
use std::time::Duration;

type Reply = Result<Response<Body>, ApiError>;

/// Whether an object passes a request's selectors.
pub type ObjectFilter = Box<dyn Fn(&Value) -> bool + Send + Sync>;

/// Dispatches a request on a resource path.
pub async fn resource(ctx: &Ctx, req: &Request, path: &ResourcePath) -> Reply {
    let registry = ctx.store.registry();
    let rt = registry
        .find(&path.group, &path.version, &path.resource)
        .cloned()
        .ok_or_else(http::no_such_path)?;
    if path.namespace.is_some() && !rt.namespaced {
        return Err(http::no_such_path());
    }
    if path.subresource.as_deref() == Some("scale") && crate::scale::has_scale(&rt) {
        let (Some(ns), Some(name)) = (path.namespace.as_deref(), path.name.as_deref()) else {
            return Err(http::no_such_path());
        };
        return crate::scale::handle(ctx, req, &rt, ns, name);
    }
    let status = match path.subresource.as_deref() {
        None => false,
        Some("status") if rt.has_status => true,
        Some("finalize") if rt.resource == "namespaces" => false,
        Some(_) => return Err(http::no_such_path()),
    };
    let ns = path.namespace.clone().unwrap_or_default();
    if rt.namespaced && path.name.is_some() && path.namespace.is_none() {
        return Err(http::no_such_path());
    }
    if !rt.stored {
        return match req.method {
            Method::POST if path.name.is_none() => token_review(ctx, req),
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({})",
                rt.qualified()
            ))),
        };
    }
    let watching = path.watch_prefix || matches!(req.param("watch"), Some("true" | "1"));
    match (&req.method, path.name.as_deref()) {
        (&Method::GET, Some(name)) => {
            let obj = ctx.store.get(&rt, &ns, name)?;
            Ok(ctx.render_one(req, &rt, obj))
        }
        (&Method::GET, None) if watching => start_watch(ctx, req, &rt, path),
        (&Method::GET, None) => list(ctx, req, &rt, path),
        (&Method::POST, None) => create(ctx, req, &rt, &ns).await,
        (&Method::PUT, Some(name)) => update(ctx, req, &rt, &ns, name, status).await,
        (&Method::PATCH, Some(name)) => {
            crate::patching::patch(ctx, req, &rt, &ns, name, status).await
        }
        (&Method::DELETE, Some(name)) => delete(ctx, req, &rt, &ns, name).await,
        (&Method::DELETE, None) => delete_collection(ctx, req, &rt, path).await,
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            rt.qualified()
        ))),
    }
}

/// The filter of `labelSelector` and `fieldSelector`.
pub fn selector_filter(req: &Request, rt: &ResourceType) -> Result<ObjectFilter, ApiError> {
    let labels = LabelSelector::parse(req.param("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse_with(
        req.param("fieldSelector").unwrap_or(""),
        extra_field_labels(rt),
    )?;
    Ok(Box::new(move |obj: &Value| {
        labels.matches(obj) && fields.matches(obj)
    }))
}

/// Field labels beyond metadata.name/namespace that a kind supports in field selectors.
fn extra_field_labels(rt: &ResourceType) -> &'static [&'static str] {
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "pods") => &[
            "spec.nodeName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
        ],
        ("", "namespaces") => &["status.phase"],
        _ => &[],
    }
}

fn list(ctx: &Ctx, req: &Request, rt: &ResourceType, path: &ResourcePath) -> Reply {
    let limit: usize = match req.param("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let (rv, mut items) = match req.param("continue").filter(|c| !c.is_empty()) {
        Some(token) => ctx.take_continuation(token)?,
        None => {
            let keep = selector_filter(req, rt)?;
            let result = ctx.store.list(rt, path.namespace.as_deref(), &*keep);
            (result.rv, result.items)
        }
    };
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if limit > 0 && items.len() > limit {
        let rest = items.split_off(limit);
        metadata["remainingItemCount"] = json!(rest.len());
        metadata["continue"] = json!(ctx.save_continuation(rv, rest));
    }
    let list = json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(ctx.render_list(req, rt, list))
}

fn start_watch(ctx: &Ctx, req: &Request, rt: &ResourceType, path: &ResourcePath) -> Reply {
    let from = match req.param("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?,
        ),
    };
    let timeout = match req.param("timeoutSeconds") {
        Some(t) if !t.is_empty() => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        _ => Duration::from_secs(1800),
    };
    let filter = selector_filter(req, rt)?;
    watch::start(
        ctx.store.clone(),
        rt.clone(),
        WatchParams {
            from,
            namespace: path.namespace.clone(),
            filter,
            bookmarks: req.param("allowWatchBookmarks") == Some("true"),
            timeout,
            send_initial_events: req.param("sendInitialEvents") == Some("true"),
            bookmark_interval: ctx.bookmark_interval,
            table: ctx.watch_table(req, rt)?,
        },
    )
}

/// Parses a JSON body as an object of the type the path names.
pub fn body_object(req: &Request, rt: &ResourceType) -> Result<Value, ApiError> {
    let obj: Value = if req.content_type().contains("protobuf") {
        crate::protobuf::decode(&req.body)?
    } else if req.content_type().contains("yaml") {
        serde_yaml::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!(
                "error decoding body as {} ({}): {e}",
                rt.kind,
                req.content_type()
            ))
        })?
    };
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {} object",
            rt.kind
        )));
    }
    for (field, want) in [("apiVersion", rt.api_version()), ("kind", rt.kind.clone())] {
        if let Some(got) = obj.get(field).and_then(Value::as_str)
            && got != want
            && !(field == "apiVersion" && got.ends_with(&rt.version))
        {
            return Err(ApiError::bad_request(format!(
                "the {field} of the provided object ({got}) does not match the one of the request ({want})"
            )));
        }
    }
    Ok(obj)
}

fn check_body_namespace(obj: &Value, rt: &ResourceType, ns: &str) -> Result<(), ApiError> {
    let body_ns = meta::namespace_of(obj);
    if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

async fn create(ctx: &Ctx, req: &Request, rt: &ResourceType, ns: &str) -> Reply {
    let obj = body_object(req, rt)?;
    check_body_namespace(&obj, rt, ns)?;
    let obj = ctx.admit_write(req, rt, ns, None, obj).await?;
    let created = ctx.store.create(rt, ns, obj, req.dry_run())?;
    Ok(ctx.render_one_code(req, rt, created, 201))
}

async fn update(
    ctx: &Ctx,
    req: &Request,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    status: bool,
) -> Reply {
    let obj = body_object(req, rt)?;
    check_body_namespace(&obj, rt, ns)?;
    let old = ctx.store.get(rt, ns, name)?;
    let obj = ctx.admit_write(req, rt, ns, Some(&old), obj).await?;
    let updated = ctx.store.update(rt, ns, name, obj, status, req.dry_run())?;
    Ok(ctx.render_one(req, rt, updated))
}

/// DeleteOptions from the body and the query.
fn delete_options(req: &Request) -> Result<DeleteOptions, ApiError> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let policy = req
        .param("propagationPolicy")
        .map(String::from)
        .or_else(|| body["propagationPolicy"].as_str().map(String::from));
    let orphan = req
        .param("orphanDependents")
        .map(|o| o == "true")
        .or_else(|| body["orphanDependents"].as_bool());
    let propagation = match (policy.as_deref(), orphan) {
        (Some("Background"), _) => Some(Propagation::Background),
        (Some("Foreground"), _) => Some(Propagation::Foreground),
        (Some("Orphan"), _) => Some(Propagation::Orphan),
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        (None, Some(true)) => Some(Propagation::Orphan),
        (None, Some(false)) => Some(Propagation::Background),
        (None, None) => None,
    };
    Ok(DeleteOptions {
        propagation,
        precondition_uid: body["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
    })
}

async fn delete(ctx: &Ctx, req: &Request, rt: &ResourceType, ns: &str, name: &str) -> Reply {
    let opts = delete_options(req)?;
    let old = ctx.store.get(rt, ns, name)?;
    ctx.admit_delete(req, rt, ns, &old).await?;
    let deleted = ctx.store.delete(rt, ns, name, &opts, req.dry_run())?;
    Ok(ctx.render_one(req, rt, deleted))
}

async fn delete_collection(
    ctx: &Ctx,
    req: &Request,
    rt: &ResourceType,
    path: &ResourcePath,
) -> Reply {
    let opts = delete_options(req)?;
    let keep = selector_filter(req, rt)?;
    let listed = ctx.store.list(rt, path.namespace.as_deref(), &*keep);
    let mut deleted = Vec::new();
    for obj in listed.items {
        let (ns, name) = (meta::namespace_of(&obj), meta::name_of(&obj));
        ctx.admit_delete(req, rt, ns, &obj).await?;
        match ctx.store.delete(rt, ns, name, &opts, req.dry_run()) {
            Ok(d) => deleted.push(d),
            // Deleted meanwhile (by garbage collection, say): nothing left to do.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(http::json(
        200,
        &json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": ctx.store.current_rv().to_string()},
            "items": deleted,
        }),
    ))
}

/// TokenReview: a token is valid when a service-account-token Secret holds it.
fn token_review(ctx: &Ctx, req: &Request) -> Reply {
    let registry = ctx.store.registry();
    let rt = registry
        .find("authentication.k8s.io", "v1", "tokenreviews")
        .cloned()
        .ok_or_else(http::no_such_path)?;
    let mut review = body_object(req, &rt)?;
    let token = review["spec"]["token"].as_str().unwrap_or("").to_string();
    let secrets = registry
        .find("", "v1", "secrets")
        .cloned()
        .ok_or_else(http::no_such_path)?;
    let engine = base64::engine::general_purpose::STANDARD;
    let found = ctx.store.list(&secrets, None, &|s: &Value| {
        s["type"] == "kubernetes.io/service-account-token"
            && !token.is_empty()
            && s["data"]["token"]
                .as_str()
                .and_then(|t| engine.decode(t).ok())
                .is_some_and(|t| t == token.as_bytes())
    });
    review["apiVersion"] = json!("authentication.k8s.io/v1");
    review["kind"] = json!("TokenReview");
    review["status"] = match found.items.first() {
        Some(secret) => {
            let ns = meta::namespace_of(secret);
            let sa = meta::str_at(
                secret,
                &[
                    "metadata",
                    "annotations",
                    "kubernetes.io/service-account.name",
                ],
            )
            .unwrap_or("default");
            let uid = meta::str_at(
                secret,
                &[
                    "metadata",
                    "annotations",
                    "kubernetes.io/service-account.uid",
                ],
            )
            .unwrap_or("");
            json!({
                "authenticated": true,
                "user": {
                    "username": format!("system:serviceaccount:{ns}:{sa}"),
                    "uid": uid,
                    "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
                },
                "audiences": review["spec"]["audiences"].clone(),
            })
        }
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    Ok(http::json(201, &review))
}
