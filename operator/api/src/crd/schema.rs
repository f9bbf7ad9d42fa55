//! Rewrites the schemas schemars derives into what the Kubernetes API
//! server accepts as a structural schema (kube's transforms leave a few
//! constructs it rejects).

use serde_json::{Map, Value};

/// Normalizes one schema node and everything under it.
pub(crate) fn normalize(node: &mut Value) {
    let Value::Object(map) = node else { return };
    // Integer-keyed maps (`portLevelMtls`) come out as patternProperties,
    // which CRDs do not support: keys are strings on the wire anyway.
    if let Some(Value::Object(patterns)) = map.remove("patternProperties")
        && let Some((_, schema)) = patterns.into_iter().next()
    {
        map.insert("additionalProperties".into(), schema);
    }
    if map.get("additionalProperties") == Some(&Value::Bool(false)) {
        map.remove("additionalProperties");
    }
    for key in ["$schema", "title", "uniqueItems", "definitions", "$defs"] {
        map.remove(key);
    }
    if let Some(Value::String(format)) = map.get("format")
        && matches!(
            format.as_str(),
            "uint" | "uint8" | "uint16" | "uint32" | "uint64"
        )
    {
        map.insert("format".into(), Value::String("int64".into()));
    }
    for key in ["properties", "additionalProperties", "items"] {
        match map.get_mut(key) {
            Some(Value::Object(inner)) if key == "properties" => {
                inner.values_mut().for_each(normalize);
            }
            Some(inner @ Value::Object(_)) => normalize(inner),
            _ => {}
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(branches)) = map.get_mut(key) {
            branches.iter_mut().for_each(strip_junctor_branch);
        }
    }
    if let Some(not) = map.get_mut("not") {
        strip_junctor_branch(not);
    }
    infer_type(map);
}

/// Inside oneOf/anyOf/allOf/not only value validations may appear.
fn strip_junctor_branch(node: &mut Value) {
    let Value::Object(map) = node else { return };
    for key in [
        "type",
        "description",
        "default",
        "nullable",
        "title",
        "format",
    ] {
        map.remove(key);
    }
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        props.values_mut().for_each(strip_junctor_branch);
    }
}

fn infer_type(map: &mut Map<String, Value>) {
    if map.contains_key("type")
        || map.contains_key("x-kubernetes-int-or-string")
        || map.contains_key("x-kubernetes-preserve-unknown-fields")
    {
        return;
    }
    if map.contains_key("properties") || map.contains_key("additionalProperties") {
        map.insert("type".into(), Value::String("object".into()));
    } else if map.contains_key("items") {
        map.insert("type".into(), Value::String("array".into()));
    }
}
