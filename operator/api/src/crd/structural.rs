//! Kubernetes' structural schema rules, checked over a CRD schema, so a
//! generated CRD the API server would refuse fails a test instead.

use serde_json::Value;

/// Every violation of the structural rules in `schema`, each with its path.
pub fn violations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, "", false, &mut out);
    out
}

const KNOWN_TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$schema",
    "definitions",
    "patternProperties",
    "dependencies",
    "additionalItems",
    "uniqueItems",
    "id",
];

fn walk(node: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let here = if path.is_empty() { "<root>" } else { path };
    let Value::Object(map) = node else {
        out.push(format!("{here}: schema must be an object"));
        return;
    };
    for key in FORBIDDEN {
        if map.contains_key(*key) {
            out.push(format!("{here}: {key} is not allowed in a CRD schema"));
        }
    }
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_junctor {
        for key in [
            "type",
            "description",
            "default",
            "nullable",
            "additionalProperties",
        ] {
            if map.contains_key(key) {
                out.push(format!(
                    "{here}: {key} is not allowed inside allOf/anyOf/oneOf/not"
                ));
            }
        }
    } else {
        match map.get("type").and_then(Value::as_str) {
            Some(t) if KNOWN_TYPES.contains(&t) => {}
            Some(t) => out.push(format!("{here}: unknown type {t:?}")),
            None if int_or_string || preserve => {}
            None => out.push(format!(
                "{here}: type is required (or x-kubernetes-int-or-string / x-kubernetes-preserve-unknown-fields)"
            )),
        }
        if map.get("type").is_some_and(|t| !t.is_string()) {
            out.push(format!("{here}: type must be a single string"));
        }
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        out.push(format!(
            "{here}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if map
        .get("additionalProperties")
        .is_some_and(Value::is_boolean)
    {
        out.push(format!(
            "{here}: additionalProperties must be a schema, not a boolean"
        ));
    }
    if map.contains_key("items") && map.contains_key("properties") {
        out.push(format!("{here}: properties and items cannot both be set"));
    }
    let node_type = map.get("type").and_then(Value::as_str);
    if node_type == Some("array") && !in_junctor && !map.contains_key("items") {
        out.push(format!("{here}: arrays need items"));
    }
    if node_type == Some("object") && map.contains_key("items") {
        out.push(format!("{here}: items on an object"));
    }
    if int_or_string && node_type.is_some() {
        out.push(format!(
            "{here}: x-kubernetes-int-or-string must not have a type"
        ));
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, prop) in props {
            walk(prop, &format!("{path}.{name}"), in_junctor, out);
        }
    }
    if let Some(additional @ Value::Object(_)) = map.get("additionalProperties") {
        walk(additional, &format!("{path}[*]"), in_junctor, out);
    }
    if let Some(items) = map.get("items") {
        if items.is_array() {
            out.push(format!("{here}: items must be a single schema"));
        } else {
            walk(items, &format!("{path}[]"), in_junctor, out);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(branches) = map.get(key) {
            let Some(branches) = branches.as_array() else {
                out.push(format!("{here}: {key} must be a list"));
                continue;
            };
            for (i, branch) in branches.iter().enumerate() {
                walk_junctor(branch, &format!("{path}.{key}[{i}]"), out);
            }
        }
    }
    if let Some(not) = map.get("not") {
        walk_junctor(not, &format!("{path}.not"), out);
    }
}

fn walk_junctor(node: &Value, path: &str, out: &mut Vec<String>) {
    walk(node, path, true, out);
}
