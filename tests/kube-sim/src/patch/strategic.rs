//! Strategic merge patch (`application/strategic-merge-patch+json`) for built-in kinds.
//!
//! ```text
//! pub fn strategic_merge_patch(current: &Value, patch: &Value, kind: &str) -> Result<Value, ApiError>
//! pub fn unsupported_for_custom_resource() -> ApiError       // 415, as the API server answers for CRs
//! pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy
//! ```
//! Lists merge by the built-in types' `patchMergeKey` (containers/volumes/env by `name`, container
//! ports by `containerPort`, Service ports by `port`, conditions by `type`, ownerReferences by
//! `uid`, ...); other lists are replaced, as for fields without a patch strategy. Directives:
//! `$patch: replace|delete|merge`, `$retainKeys`, `$deleteFromPrimitiveList/<f>`,
//! `$setElementOrder/<f>`. The real API server rejects strategic merge for custom resources with
//! 415; the caller must do the same (see `unsupported_for_custom_resource`).

// ApiError is the crate's one error type and is returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

use serde_json::{Map, Value};

use crate::error::ApiError;

/// How a list field of a built-in kind is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Items are maps merged by this key.
    MergeByKey(&'static str),
    /// A list of scalars whose union is kept.
    MergePrimitive,
    /// The patch's list replaces the current one.
    Replace,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The patch strategy of the list at `path` (field names from the object root, no indices).
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    let Some((field, parents)) = path.split_last() else {
        return ListStrategy::Replace;
    };
    let parent = parents.last().copied().unwrap_or("");
    match *field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => ListStrategy::MergeByKey("name"),
        "env" if CONTAINER_LISTS.contains(&parent) => ListStrategy::MergeByKey("name"),
        "ports" if CONTAINER_LISTS.contains(&parent) => ListStrategy::MergeByKey("containerPort"),
        "ports" if kind == "Service" && path == ["spec", "ports"] => {
            ListStrategy::MergeByKey("port")
        }
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "conditions" if parent == "status" => ListStrategy::MergeByKey("type"),
        "ownerReferences" if parent == "metadata" => ListStrategy::MergeByKey("uid"),
        "finalizers" if parent == "metadata" => ListStrategy::MergePrimitive,
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        _ => ListStrategy::Replace,
    }
}

/// The 415 the API server returns for a strategic merge patch of a custom resource.
pub fn unsupported_for_custom_resource() -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )
}

/// Applies a strategic merge patch to an object of the built-in `kind`.
pub fn strategic_merge_patch(
    current: &Value,
    patch: &Value,
    kind: &str,
) -> Result<Value, ApiError> {
    let Value::Object(patch_map) = patch else {
        return Err(ApiError::bad_request(
            "strategic merge patch must be a JSON object".to_string(),
        ));
    };
    let empty = Map::new();
    let current_map = current.as_object().unwrap_or(&empty);
    let mut path = Vec::new();
    match merge_map(current_map, patch_map, kind, &mut path)? {
        Some(merged) => Ok(Value::Object(merged)),
        None => Err(ApiError::bad_request(
            "strategic merge patch cannot delete the whole object".to_string(),
        )),
    }
}

fn directive(map: &Map<String, Value>) -> Option<&str> {
    map.get("$patch").and_then(Value::as_str)
}

/// Merges `patch` into `current`; `None` means the map is deleted (`$patch: delete`).
fn merge_map(
    current: &Map<String, Value>,
    patch: &Map<String, Value>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match directive(patch) {
        Some("delete") => return Ok(None),
        Some("replace") => return Ok(Some(clean_map(patch, kind, path)?)),
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type \"{other}\" at {}",
                display_path(path)
            )));
        }
    }
    let mut result = current.clone();
    let mut orders: Vec<(String, &Value)> = Vec::new();
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), value));
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) =
                (result.get_mut(field), value.as_array())
            {
                list.retain(|item| !remove.contains(item));
            }
            continue;
        }
        path.push(key.clone());
        let merged = merge_value(result.get(key), value, kind, path)?;
        path.pop();
        match merged {
            Some(v) => {
                result.insert(key.clone(), v);
            }
            None => {
                result.remove(key);
            }
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(list)), Some(order)) = (result.get_mut(&field), order.as_array())
        {
            path.push(field.clone());
            let strategy = list_strategy(kind, &str_path(path));
            path.pop();
            apply_element_order(list, order, strategy);
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "$retainKeys at {} must be a list",
                    display_path(path)
                ))
            })?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        result.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(result))
}

fn merge_value(
    current: Option<&Value>,
    patch: &Value,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Option<Value>, ApiError> {
    match (current, patch) {
        (_, Value::Null) => Ok(None),
        (Some(Value::Object(c)), Value::Object(p)) => {
            Ok(merge_map(c, p, kind, path)?.map(Value::Object))
        }
        (_, Value::Object(p)) => match directive(p) {
            Some("delete") => Ok(None),
            _ => Ok(Some(Value::Object(clean_map(p, kind, path)?))),
        },
        (current, Value::Array(p)) => {
            let strategy = list_strategy(kind, &str_path(path));
            let current = match current {
                Some(Value::Array(c)) => c.as_slice(),
                _ => &[],
            };
            merge_list(current, p, strategy, kind, path).map(|l| Some(Value::Array(l)))
        }
        (_, scalar) => Ok(Some(scalar.clone())),
    }
}

fn merge_list(
    current: &[Value],
    patch: &[Value],
    strategy: ListStrategy,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, ApiError> {
    let replace_all = patch
        .iter()
        .any(|item| item.as_object().and_then(directive) == Some("replace"));
    match strategy {
        _ if replace_all => clean_items(patch, kind, path),
        // Lists without a strategy are taken verbatim, as a JSON merge patch would.
        ListStrategy::Replace => Ok(patch.to_vec()),
        ListStrategy::MergePrimitive => {
            let mut result = current.to_vec();
            for item in patch {
                if !result.contains(item) {
                    result.push(item.clone());
                }
            }
            Ok(result)
        }
        ListStrategy::MergeByKey(key) => {
            let mut result = current.to_vec();
            for item in patch {
                let Value::Object(item_map) = item else {
                    return Err(ApiError::bad_request(format!(
                        "{}: list items must be objects merged by \"{key}\"",
                        display_path(path)
                    )));
                };
                let Some(wanted) = item_map.get(key) else {
                    return Err(ApiError::bad_request(format!(
                        "{}: map {item} does not contain declared merge key: {key}",
                        display_path(path)
                    )));
                };
                let position = result.iter().position(|c| c.get(key) == Some(wanted));
                match (position, directive(item_map)) {
                    (Some(i), Some("delete")) => {
                        result.remove(i);
                    }
                    (None, Some("delete")) => {}
                    (Some(i), _) => {
                        let merged = match &result[i] {
                            Value::Object(c) => merge_map(c, item_map, kind, path)?,
                            _ => Some(clean_map(item_map, kind, path)?),
                        };
                        match merged {
                            Some(m) => result[i] = Value::Object(m),
                            None => {
                                result.remove(i);
                            }
                        }
                    }
                    (None, _) => result.push(Value::Object(clean_map(item_map, kind, path)?)),
                }
            }
            Ok(result)
        }
    }
}

/// A patch value as stored when there is nothing to merge with: directives removed.
fn clean_map(
    patch: &Map<String, Value>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for (key, value) in patch {
        if key.starts_with('$') || value.is_null() {
            continue;
        }
        path.push(key.clone());
        let merged = merge_value(None, value, kind, path)?;
        path.pop();
        if let Some(v) = merged {
            out.insert(key.clone(), v);
        }
    }
    Ok(out)
}

fn clean_items(
    items: &[Value],
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::Object(m) if directive(m).is_some() && m.len() == 1 => {}
            Value::Object(m) if directive(m) == Some("delete") => {}
            Value::Object(m) => out.push(Value::Object(clean_map(m, kind, path)?)),
            other => out.push(other.clone()),
        }
    }
    Ok(out)
}

/// Orders `list` as `$setElementOrder` says; items it does not name keep their order at the end.
fn apply_element_order(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let identity = |item: &Value| -> Value {
        match strategy {
            ListStrategy::MergeByKey(key) => item.get(key).cloned().unwrap_or(Value::Null),
            _ => item.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(&identity).collect();
    let mut ordered = Vec::with_capacity(list.len());
    for w in &wanted {
        if let Some(i) = list.iter().position(|item| identity(item) == *w) {
            ordered.push(list.remove(i));
        }
    }
    ordered.append(list);
    *list = ordered;
}

fn str_path(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

fn display_path(path: &[String]) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        path.join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::merge::{merge_patch, tests::arb_json};
    use proptest::prelude::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["a"], "ownerReferences": [{"uid": "u1", "name": "o"}]},
            "spec": {"template": {"spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "name": "http"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "args": ["x", "y"]},
                    {"name": "sidecar", "image": "proxy:1"}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }}}
        })
    }

    fn sm(current: &Value, patch: Value, kind: &str) -> Value {
        strategic_merge_patch(current, &patch, kind).unwrap()
    }

    #[test]
    fn containers_merge_by_name() {
        let d = deployment();
        let out = sm(
            &d,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}),
            "Deployment",
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2, "sidecar kept");
        assert_eq!(containers[0]["image"], "app:2");
        assert_eq!(
            containers[0]["env"][1]["value"], "2",
            "untouched fields kept"
        );
        assert_eq!(containers[1]["name"], "sidecar");
        // A merge patch would have replaced the whole list.
        let merged = merge_patch(
            &d,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}),
        );
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn env_ports_and_args() {
        let out = sm(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app",
                "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9090}],
                "args": ["z"]}]}}}}),
            "Deployment",
        );
        let app = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            app["env"],
            json!([{"name":"A","value":"1"},{"name":"B","value":"3"},{"name":"C","value":"4"}])
        );
        assert_eq!(
            app["ports"],
            json!([{"containerPort":80,"name":"http","protocol":"TCP"},{"containerPort":9090}])
        );
        assert_eq!(
            app["args"],
            json!(["z"]),
            "lists without a strategy are replaced"
        );
    }

    #[test]
    fn delete_and_replace_directives() {
        let d = deployment();
        let out = sm(
            &d,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
            "Deployment",
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let out = sm(
            &d,
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "i"}]}}}}),
            "Deployment",
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "i"}])
        );
        let out = sm(
            &d,
            json!({"spec": {"template": {"spec": {"$patch": "replace", "hostNetwork": true}}}}),
            "Deployment",
        );
        assert_eq!(
            out["spec"]["template"]["spec"],
            json!({"hostNetwork": true})
        );
        let out = sm(
            &d,
            json!({"spec": {"template": {"$patch": "delete"}}}),
            "Deployment",
        );
        assert_eq!(out["spec"], json!({}));
    }

    #[test]
    fn retain_keys_and_primitive_lists() {
        let d = deployment();
        let out = sm(
            &d,
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}}}),
            "Deployment",
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "data", "hostPath": {"path": "/x"}}])
        );
        let out = sm(
            &d,
            json!({"metadata": {"finalizers": ["b", "a"]}}),
            "Deployment",
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let out = sm(
            &out,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            "Deployment",
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = sm(
            &d,
            json!({"metadata": {"ownerReferences": [{"uid": "u2", "name": "p"}]}}),
            "Deployment",
        );
        assert_eq!(
            out["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );
    }

    #[test]
    fn set_element_order_is_tolerated_and_applied() {
        let out = sm(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "containers": [{"name": "sidecar", "image": "proxy:2"}]}}}}),
            "Deployment",
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "sidecar");
        assert_eq!(containers[0]["image"], "proxy:2");
        assert_eq!(containers[1]["name"], "app");
    }

    #[test]
    fn status_conditions_and_service_ports() {
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}]}});
        let out = sm(
            &pod,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            "Pod",
        );
        assert_eq!(out["status"]["conditions"][0]["status"], "True");
        assert_eq!(out["status"]["conditions"][1]["type"], "Scheduled");
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let out = sm(
            &svc,
            json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}),
            "Service",
        );
        assert_eq!(
            out["spec"]["ports"][1],
            json!({"port": 443, "name": "https", "targetPort": 8443})
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            "Deployment",
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("spec.template.spec.containers"),
            "{}",
            err.message
        );
        assert!(err.message.contains("merge key: name"), "{}", err.message);
        assert_eq!(unsupported_for_custom_resource().code, 415);
    }

    fn containers(names: &[(String, String)]) -> Value {
        Value::Array(
            names
                .iter()
                .map(|(n, i)| json!({"name": n, "image": i}))
                .collect(),
        )
    }

    proptest! {
        /// Keyed merge keeps one item per name: every patched name with the patch's image, every
        /// other current name untouched.
        #[test]
        fn keyed_lists_merge_by_name(
            current in prop::collection::btree_map("[a-d]", "[x-z]", 0..4),
            patch in prop::collection::btree_map("[a-d]", "[x-z]", 0..4),
        ) {
            let current_list: Vec<(String, String)> = current.clone().into_iter().collect();
            let patch_list: Vec<(String, String)> = patch.clone().into_iter().collect();
            let pod = json!({"spec": {"containers": containers(&current_list)}});
            let out = strategic_merge_patch(&pod, &json!({"spec": {"containers": containers(&patch_list)}}), "Pod").unwrap();
            let mut expected = current.clone();
            expected.extend(patch.clone());
            let got: std::collections::BTreeMap<String, String> = out["spec"]["containers"].as_array().unwrap().iter()
                .map(|c| (c["name"].as_str().unwrap().to_string(), c["image"].as_str().unwrap().to_string()))
                .collect();
            prop_assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), got.len());
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn never_panics(current in arb_json(), patch in arb_json()) {
            let _ = strategic_merge_patch(&current, &patch, "Pod");
        }

        /// Without keyed lists or directives, strategic merge is a JSON merge patch.
        #[test]
        fn equals_merge_patch_without_strategy(current in arb_json(), patch in arb_json()) {
            let object_patch = json!({"data": patch});
            let current = json!({"data": current});
            let no_directives = !object_patch.to_string().contains('$');
            prop_assume!(no_directives);
            prop_assert_eq!(
                strategic_merge_patch(&current, &object_patch, "ConfigMap").unwrap(),
                merge_patch(&current, &object_patch)
            );
        }
    }
}
