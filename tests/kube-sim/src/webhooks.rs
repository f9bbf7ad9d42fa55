//! Building admission requests from a write and running the configured webhooks.

use crate::admission::{self, AdmissionRequest, Operation, ServiceResolver, UserInfo};
use crate::error::ApiError;
use crate::meta;
use crate::registry::ResourceType;
use crate::selectors::labels_of;
use crate::server::{Ctx, Request};
use serde_json::Value;
use std::sync::Arc;

/// No cluster DNS: a webhook given as a Service reference is reachable only if the test
/// registered an address for it.
pub fn no_services() -> ServiceResolver {
    Arc::new(|_, _, _| None)
}

fn admin_user() -> UserInfo {
    UserInfo {
        username: "kube-sim-admin".into(),
        uid: String::new(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}

impl Ctx {
    fn webhook_configurations(&self, resource: &str) -> Vec<Value> {
        let registry = self.store.registry();
        match registry.find("admissionregistration.k8s.io", "v1", resource) {
            Some(rt) => self.store.list(rt, None, &|_| true).items,
            None => Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_admission(
        &self,
        req: &Request,
        rt: &ResourceType,
        ns: &str,
        operation: Operation,
        name: &str,
        old: Option<&Value>,
        obj: Option<Value>,
    ) -> Result<Option<Value>, ApiError> {
        // The API server never calls webhooks about webhook configurations themselves.
        if rt.group == "admissionregistration.k8s.io" {
            return Ok(obj);
        }
        let mutating = self.webhook_configurations("mutatingwebhookconfigurations");
        let validating = self.webhook_configurations("validatingwebhookconfigurations");
        if mutating.is_empty() && validating.is_empty() {
            return Ok(obj);
        }
        let namespace_labels = if rt.namespaced {
            let registry = self.store.registry();
            registry
                .find("", "v1", "namespaces")
                .and_then(|nst| self.store.get(nst, "", ns).ok())
                .map(|n| labels_of(&n))
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let request = AdmissionRequest {
            operation,
            group: rt.group.clone(),
            version: rt.version.clone(),
            resource: rt.resource.clone(),
            subresource: String::new(),
            kind: rt.kind.clone(),
            name: name.to_string(),
            namespace: if rt.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            namespace_labels,
            object: obj,
            old_object: old.cloned(),
            user: admin_user(),
            dry_run: req.dry_run(),
        };
        admission::admit(&mutating, &validating, &request, &self.service_resolver).await
    }

    pub async fn call_webhooks(
        &self,
        req: &Request,
        rt: &ResourceType,
        ns: &str,
        operation: Operation,
        old: Option<&Value>,
        obj: Option<Value>,
    ) -> Result<Option<Value>, ApiError> {
        let name = obj
            .as_ref()
            .map(|o| meta::name_of(o).to_string())
            .unwrap_or_default();
        self.run_admission(req, rt, ns, operation, &name, old, obj)
            .await
    }

    pub async fn call_delete_webhooks(
        &self,
        req: &Request,
        rt: &ResourceType,
        ns: &str,
        old: &Value,
    ) -> Result<(), ApiError> {
        self.run_admission(
            req,
            rt,
            ns,
            Operation::Delete,
            meta::name_of(old),
            Some(old),
            None,
        )
        .await
        .map(|_| ())
    }
}
