//! Which webhooks of a configuration apply to a request: rules, scope, namespaceSelector and
//! objectSelector, as the API server matches them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::selectors::{LabelOp, LabelRequirement, LabelSelector, labels_of};

use super::AdmissionRequest;

fn strings(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn contains_or_star(list: &[&str], wanted: &str) -> bool {
    list.iter().any(|item| *item == "*" || *item == wanted)
}

/// `resources` entries: `pods`, `pods/status`, `pods/*`, `*`, `*/status`, `*/*`.
fn resource_matches(patterns: &[&str], resource: &str, subresource: &str) -> bool {
    patterns.iter().any(|pattern| {
        let (res, sub) = pattern.split_once('/').unwrap_or((pattern, ""));
        let res_ok = res == "*" || res == resource;
        let sub_ok = if subresource.is_empty() {
            sub.is_empty()
        } else {
            sub == "*" || sub == subresource
        };
        res_ok && sub_ok
    })
}

fn rule_matches(rule: &Value, request: &AdmissionRequest) -> bool {
    let operations = strings(rule.get("operations"));
    let scope = rule.get("scope").and_then(Value::as_str).unwrap_or("*");
    let scope_ok = match scope {
        "Cluster" => request.namespace.is_empty(),
        "Namespaced" => !request.namespace.is_empty(),
        _ => true,
    };
    contains_or_star(&operations, request.operation.as_str())
        && contains_or_star(&strings(rule.get("apiGroups")), &request.group)
        && contains_or_star(&strings(rule.get("apiVersions")), &request.version)
        && resource_matches(
            &strings(rule.get("resources")),
            &request.resource,
            &request.subresource,
        )
        && scope_ok
}

/// A `metav1.LabelSelector` (matchLabels and matchExpressions); absent or empty matches all.
/// A malformed selector matches nothing, so a broken configuration never admits by accident.
pub fn label_selector_matches(selector: Option<&Value>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return true;
    };
    let mut requirements = Vec::new();
    if let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in match_labels {
            let Some(value) = value.as_str() else {
                return false;
            };
            requirements.push(LabelRequirement {
                key: key.clone(),
                op: LabelOp::Equals(value.to_string()),
            });
        }
    }
    for expression in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expression
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let values: Vec<String> = strings(expression.get("values"))
            .into_iter()
            .map(String::from)
            .collect();
        let op = match expression.get("operator").and_then(Value::as_str) {
            Some("In") => LabelOp::In(values),
            Some("NotIn") => LabelOp::NotIn(values),
            Some("Exists") => LabelOp::Exists,
            Some("DoesNotExist") => LabelOp::DoesNotExist,
            _ => return false,
        };
        requirements.push(LabelRequirement { key, op });
    }
    LabelSelector { requirements }.matches_labels(labels)
}

/// Whether `webhook` (one entry of `webhooks[]`) is called for `request`.
pub fn webhook_matches(webhook: &Value, request: &AdmissionRequest) -> bool {
    let rules = webhook.get("rules").and_then(Value::as_array);
    if !rules.is_some_and(|rules| rules.iter().any(|r| rule_matches(r, request))) {
        return false;
    }
    // Namespaces are matched on their own labels; other cluster-scoped objects always match.
    let namespace_selector = webhook.get("namespaceSelector");
    let namespace_ok = if request.group.is_empty() && request.resource == "namespaces" {
        let object = request.object.as_ref().or(request.old_object.as_ref());
        label_selector_matches(
            namespace_selector,
            &object.map(labels_of).unwrap_or_default(),
        )
    } else if request.namespace.is_empty() {
        true
    } else {
        label_selector_matches(namespace_selector, &request.namespace_labels)
    };
    let object_selector = webhook.get("objectSelector");
    let object_ok = [request.object.as_ref(), request.old_object.as_ref()]
        .into_iter()
        .flatten()
        .any(|o| label_selector_matches(object_selector, &labels_of(o)))
        || (request.object.is_none() && request.old_object.is_none());
    namespace_ok && object_ok
}
