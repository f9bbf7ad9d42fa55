//! What happens to an object between decoding and storing, in the API server's order:
//! custom-resource schema handling (unknown fields pruned or rejected, defaults), mutating
//! admission, validation, validating admission, and the managedFields bookkeeping.

use crate::admission::Operation;
use crate::apply::{self, Structure};
use crate::error::ApiError;
use crate::meta;
use crate::registry::ResourceType;
use crate::schema::{self, CustomResourceRef};
use crate::server::{Ctx, Request};
use serde_json::Value;

/// The field manager of a request: `fieldManager`, else the user agent's product name.
pub fn field_manager(req: &Request) -> String {
    if let Some(m) = req.param("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let agent = req.header("user-agent");
    let product = agent.split('/').next().unwrap_or("").trim();
    if product.is_empty() {
        "unknown".to_string()
    } else {
        product.to_string()
    }
}

/// The CRD version's structural schema, when the type is a custom resource with one.
pub fn crd_schema(rt: &ResourceType) -> Option<&Value> {
    rt.crd_version
        .as_ref()
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
}

/// How lists of this type merge, for managedFields and apply.
pub fn structure(rt: &ResourceType) -> Structure<'_> {
    match crd_schema(rt) {
        Some(schema) => Structure::Schema(schema),
        None => Structure::Builtin(&rt.kind),
    }
}

pub fn resource_ref(rt: &ResourceType, name: &str) -> CustomResourceRef {
    CustomResourceRef {
        group: rt.group.clone(),
        version: rt.version.clone(),
        kind: rt.kind.clone(),
        name: name.to_string(),
    }
}

/// Only `fieldValidation=Strict` turns unknown fields into an error (the default is Warn).
pub fn strict(req: &Request) -> bool {
    req.param("fieldValidation") == Some("Strict")
}

/// Built-in kinds whose strategy maintains `metadata.generation`; custom resources always do.
pub fn tracks_generation(rt: &ResourceType) -> bool {
    rt.is_custom()
        || matches!(
            rt.resource.as_str(),
            "deployments"
                | "pods"
                | "customresourcedefinitions"
                | "mutatingwebhookconfigurations"
                | "validatingwebhookconfigurations"
        )
}

impl Ctx {
    /// Admission of a create/update/patch; records the change for the request's field manager.
    pub async fn admit_write(
        &self,
        req: &Request,
        rt: &ResourceType,
        ns: &str,
        old: Option<&Value>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let admitted = self.admit(req, rt, ns, old, obj, strict(req)).await?;
        Ok(apply::record_update(
            old,
            &admitted,
            &field_manager(req),
            &meta::now_rfc3339(),
            structure(rt),
        ))
    }

    /// Schema handling and admission webhooks, without managedFields bookkeeping.
    pub async fn admit(
        &self,
        req: &Request,
        rt: &ResourceType,
        ns: &str,
        old: Option<&Value>,
        obj: Value,
        strict: bool,
    ) -> Result<Value, ApiError> {
        let name = meta::name_of(&obj).to_string();
        let obj = match crd_schema(rt) {
            Some(schema) => {
                schema::admit_custom_resource(schema, &obj, &resource_ref(rt, &name), strict)?
            }
            None => obj,
        };
        let operation = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        let obj = self
            .call_webhooks(req, rt, ns, operation, old, Some(obj))
            .await?
            .unwrap_or(Value::Null);
        // Mutating webhooks may have produced something the schema rejects.
        match crd_schema(rt) {
            Some(schema) => {
                schema::admit_custom_resource(schema, &obj, &resource_ref(rt, &name), false)
            }
            None => Ok(obj),
        }
    }

    pub async fn admit_delete(
        &self,
        req: &Request,
        rt: &ResourceType,
        ns: &str,
        old: &Value,
    ) -> Result<(), ApiError> {
        self.call_delete_webhooks(req, rt, ns, old).await
    }
}
