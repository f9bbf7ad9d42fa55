//! The operator's RBAC rules ([`RBAC_YAML`], `operator/controller/rbac.yaml`) and a
//! checker that maps an HTTP request of the Kubernetes API to the RBAC request it is
//! (verb, group, resource, subresource, namespace) and tells whether the rules allow
//! it. The RBAC test records every request the real operator makes and checks each.

use serde::Deserialize;

/// The rules, as written for the manifests.
pub const RBAC_YAML: &str = include_str!("../rbac.yaml");

/// One RBAC request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    /// `None` for cluster-scoped requests and requests across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl std::fmt::Display for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resource = match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        };
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(
            f,
            "{} {group}/{resource} in {} name {}",
            self.verb,
            self.namespace.as_deref().unwrap_or("<all namespaces>"),
            self.name.as_deref().unwrap_or("<none>")
        )
    }
}

/// Maps an API request to its RBAC verb and resource; `None` for non-resource paths
/// (discovery `/api`, `/apis`, `/version`, `/openapi`), which every user may read.
pub fn classify(method: &str, path: &str, query: &str) -> Option<ApiRequest> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (resource.to_string(), None, None),
        [resource, name] => (resource.to_string(), Some(name.to_string()), None),
        [resource, name, sub] => (
            resource.to_string(),
            Some(name.to_string()),
            Some(sub.to_string()),
        ),
        _ => return None,
    };
    let watching = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(ApiRequest {
        verb: verb.into(),
        group,
        resource,
        subresource,
        namespace,
        name,
    })
}

#[derive(Deserialize)]
struct Document {
    kind: String,
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

/// ClusterRole rules (anywhere) and Role rules (their namespace only).
#[derive(Debug)]
pub struct Rules {
    cluster: Vec<Rule>,
    namespaced: Vec<(String, Rule)>,
}

impl Rules {
    /// Parses [`RBAC_YAML`]-shaped text; a Role in `trellis-system` is moved to
    /// `operator_namespace` (the manifests set the namespace the same way).
    pub fn parse(yaml: &str, operator_namespace: &str) -> Result<Self, String> {
        let mut cluster = Vec::new();
        let mut namespaced = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let doc = Document::deserialize(doc).map_err(|e| format!("rbac.yaml: {e}"))?;
            match doc.kind.as_str() {
                "ClusterRole" => cluster.extend(doc.rules),
                "Role" => {
                    let ns = match doc.metadata.namespace.as_deref() {
                        None | Some("trellis-system") => operator_namespace.to_string(),
                        Some(other) => other.to_string(),
                    };
                    namespaced.extend(doc.rules.into_iter().map(|r| (ns.clone(), r)));
                }
                other => return Err(format!("rbac.yaml: unexpected kind {other}")),
            }
        }
        Ok(Self {
            cluster,
            namespaced,
        })
    }

    /// The operator's own rules.
    pub fn operator(operator_namespace: &str) -> Result<Self, String> {
        Self::parse(RBAC_YAML, operator_namespace)
    }

    /// Whether some rule allows `req`.
    pub fn allows(&self, req: &ApiRequest) -> bool {
        let resource = match &req.subresource {
            Some(sub) => format!("{}/{sub}", req.resource),
            None => req.resource.clone(),
        };
        let matches = |rule: &Rule| {
            let any = |list: &[String], want: &str| list.iter().any(|v| v == "*" || v == want);
            any(&rule.api_groups, &req.group)
                && any(&rule.resources, &resource)
                && any(&rule.verbs, &req.verb)
                && (rule.resource_names.is_empty()
                    || req
                        .name
                        .as_ref()
                        .is_some_and(|n| rule.resource_names.contains(n)))
        };
        self.cluster.iter().any(matches)
            || self
                .namespaced
                .iter()
                .any(|(ns, rule)| req.namespace.as_deref() == Some(ns.as_str()) && matches(rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_like_the_api_server() {
        let r = classify("GET", "/api/v1/secrets", "labelSelector=x&watch=true").unwrap();
        assert_eq!(
            (r.verb.as_str(), r.resource.as_str(), r.namespace),
            ("watch", "secrets", None)
        );
        let r = classify(
            "PATCH",
            "/api/v1/namespaces/shop/secrets/trellis-identity-web",
            "fieldManager=trellis",
        )
        .unwrap();
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_deref(), r.name.as_deref()),
            ("patch", Some("shop"), Some("trellis-identity-web"))
        );
        let r = classify(
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/trellis-system/leases/l",
            "",
        )
        .unwrap();
        assert_eq!(
            (r.verb.as_str(), r.group.as_str()),
            ("update", "coordination.k8s.io")
        );
        let r = classify("GET", "/api/v1/namespaces/shop", "").unwrap();
        assert_eq!(
            (r.verb.as_str(), r.resource.as_str(), r.name.as_deref()),
            ("get", "namespaces", Some("shop"))
        );
        let r = classify(
            "PATCH",
            "/apis/networking.istio.io/v1/namespaces/a/virtualservices/v/status",
            "",
        )
        .unwrap();
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert!(classify("GET", "/apis", "").is_none());
        assert!(classify("GET", "/version", "").is_none());
    }

    #[test]
    fn rules_allow_exactly_what_they_say() {
        let rules = Rules::operator("mesh-system").unwrap();
        let allowed = |m: &str, p: &str| rules.allows(&classify(m, p, "").unwrap());
        assert!(allowed(
            "PATCH",
            "/api/v1/namespaces/shop/secrets/trellis-identity-web"
        ));
        assert!(allowed(
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/mesh-system/leases/l"
        ));
        // The Lease role is namespaced: nowhere else.
        assert!(!allowed(
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/shop/leases/l"
        ));
        // Never update (replace) a Secret, never touch ServiceAccounts or Pods.
        assert!(!allowed("PUT", "/api/v1/namespaces/shop/secrets/x"));
        assert!(!allowed(
            "PATCH",
            "/api/v1/namespaces/shop/serviceaccounts/web"
        ));
        assert!(!allowed("DELETE", "/api/v1/namespaces/shop/pods/p"));
        // Status of a user's VirtualService, never its spec.
        assert!(allowed(
            "PATCH",
            "/apis/networking.istio.io/v1/namespaces/a/virtualservices/v/status"
        ));
        assert!(!allowed(
            "PATCH",
            "/apis/networking.istio.io/v1/namespaces/a/virtualservices/v"
        ));
    }
}
