//! Structural-schema handling of custom resources, from a CRD version's `openAPIV3Schema`:
//! unknown-field pruning (or Strict rejection), `default`s and validation.
//!
//! ```text
//! pub fn admit_custom_resource(schema: &Value, object: &Value, target: &CustomResourceRef,
//!                              strict: bool) -> Result<Value, ApiError>
//! pub fn prune(schema: &Value, object: &mut Value) -> Vec<String>        // removed field paths
//! pub fn apply_defaults(schema: &Value, object: &mut Value)
//! pub fn validate(schema: &Value, object: &Value) -> Vec<Cause>
//! pub fn strict_decoding_error(target: &CustomResourceRef, unknown: &[String]) -> ApiError
//! ```
//! The order is the API server's: unknown fields (pruned, or a 400 `strict decoding error` under
//! `fieldValidation=Strict`), nulls of non-nullable fields dropped, defaults, then validation
//! (422 Invalid with one cause per field). `apiVersion`, `kind` and `metadata` are implicit at the
//! root and in `x-kubernetes-embedded-resource` objects.

// ApiError is the crate's one error type and is returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

use serde_json::{Map, Value};

use crate::error::{ApiError, Cause};

/// The custom resource being written, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomResourceRef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
}

/// Prunes or rejects unknown fields, applies defaults and validates; returns the object to store.
pub fn admit_custom_resource(
    schema: &Value,
    object: &Value,
    target: &CustomResourceRef,
    strict: bool,
) -> Result<Value, ApiError> {
    let mut object = object.clone();
    let unknown = prune(schema, &mut object);
    if strict && !unknown.is_empty() {
        return Err(strict_decoding_error(target, &unknown));
    }
    apply_defaults(schema, &mut object);
    let causes = validate(schema, &object);
    if causes.is_empty() {
        Ok(object)
    } else {
        Err(ApiError::invalid(
            &target.group,
            &target.kind,
            &target.name,
            causes,
        ))
    }
}

/// The 400 the API server returns for unknown fields under `fieldValidation=Strict`.
pub fn strict_decoding_error(target: &CustomResourceRef, unknown: &[String]) -> ApiError {
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = target.kind,
        version = target.version,
    ))
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Removes fields the schema does not declare and nulls of non-nullable fields; returns the
/// paths of the removed unknown fields (e.g. `spec.foo`, `spec.items[0].bar`).
pub fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune_at(schema, object, "", true, &mut removed);
    removed
}

fn prune_at(schema: &Value, value: &mut Value, path: &str, root: bool, removed: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields")
                || schema.get("additionalProperties") == Some(&Value::Bool(true));
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let field_path = child_path(path, &key);
                let implicit =
                    embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
                let field_schema = properties.and_then(|p| p.get(&key)).or(additional);
                match field_schema {
                    Some(s) => {
                        if map[&key].is_null() && !flag(s, "nullable") {
                            map.remove(&key);
                        } else if let Some(child) = map.get_mut(&key) {
                            prune_at(s, child, &field_path, false, removed);
                        }
                    }
                    // metadata is validated by the API machinery, not by the CRD schema.
                    None if implicit => {}
                    None if preserve => {}
                    None => {
                        map.remove(&key);
                        removed.push(field_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(item_schema, item, &format!("{path}[{i}]"), false, removed);
                }
            }
        }
        _ => {}
    }
}

/// Fills absent properties that declare a `default`, recursively (defaults of defaults too).
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, property) in properties {
                    if !map.contains_key(key)
                        && let Some(default) = property.get("default")
                    {
                        map.insert(key.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(key) {
                        apply_defaults(property, child);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Every violation of `schema` by `object`, with Kubernetes field paths.
pub fn validate(schema: &Value, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_at(schema, object, "", &mut causes);
    causes
}

/// How the API server renders a value in `Invalid value: ...`.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

fn invalid(path: &str, value: &Value, detail: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {}: {detail}", render(value)),
        field: path.to_string(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match (expected, value) {
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        ("number", Value::Number(_)) => true,
        ("string", Value::String(_))
        | ("boolean", Value::Bool(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_)) => true,
        _ => false,
    }
}

fn validate_at(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let shown = if path.is_empty() { "body" } else { path };
    if value.is_null() {
        if !flag(schema, "nullable") && !path.is_empty() {
            causes.push(invalid(
                path,
                value,
                format!(
                    "{shown} in body must be of type {}: \"null\"",
                    schema
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("object")
                ),
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !matches!(value, Value::String(_)) && !type_matches("integer", value) {
            causes.push(invalid(
                path,
                value,
                format!(
                    "{shown} in body must be of type integer,string: \"{}\"",
                    type_name(value)
                ),
            ));
            return;
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !type_matches(expected, value)
    {
        causes.push(invalid(
            path,
            value,
            format!(
                "{shown} in body must be of type {expected}: \"{}\"",
                type_name(value)
            ),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(render).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render(value),
                listed.join(", ")
            ),
            field: path.to_string(),
        });
    }
    match value {
        Value::String(s) => validate_string(schema, value, s, path, causes),
        Value::Number(_) => validate_number(schema, value, path, causes),
        Value::Array(items) => validate_array(schema, value, items, path, causes),
        Value::Object(map) => validate_object(schema, map, path, causes),
        _ => {}
    }
    validate_combinators(schema, value, path, causes);
}

/// `allOf`, `anyOf`, `oneOf` and `not`: value validations a structural schema may carry (Istio's
/// CRDs express mutually exclusive fields with them).
fn validate_combinators(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let shown = if path.is_empty() { "body" } else { path };
    let branches = |key: &str| -> Vec<Vec<Cause>> {
        schema
            .get(key)
            .and_then(Value::as_array)
            .map(|subs| {
                subs.iter()
                    .map(|sub| {
                        let mut found = Vec::new();
                        validate_at(sub, value, path, &mut found);
                        found
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for found in branches("allOf") {
        causes.extend(found);
    }
    let any = branches("anyOf");
    if !any.is_empty() && any.iter().all(|f| !f.is_empty()) {
        causes.push(invalid(
            path,
            value,
            format!("{shown} in body must validate at least one schema (anyOf)"),
        ));
    }
    let one = branches("oneOf");
    if !one.is_empty() {
        let valid = one.iter().filter(|f| f.is_empty()).count();
        if valid != 1 {
            let detail = if valid == 0 {
                format!("{shown} in body must validate one and only one schema (oneOf)")
            } else {
                format!(
                    "{shown} in body must validate one and only one schema (oneOf). Found {valid} valid alternatives"
                )
            };
            causes.push(invalid(path, value, detail));
        }
    }
    if let Some(not) = schema.get("not") {
        let mut found = Vec::new();
        validate_at(not, value, path, &mut found);
        if found.is_empty() {
            causes.push(invalid(
                path,
                value,
                format!("{shown} in body must not validate the schema (not)"),
            ));
        }
    }
    if let Value::Object(map) = value {
        let count = map.len() as u64;
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && count < min
        {
            causes.push(invalid(
                path,
                value,
                format!("{shown} in body should have at least {min} properties"),
            ));
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && count > max
        {
            causes.push(Cause {
                reason: "FieldValueTooMany".into(),
                message: format!("Too many: {count}: must have at most {max} items"),
                field: path.to_string(),
            });
        }
    }
}

fn validate_string(schema: &Value, value: &Value, s: &str, path: &str, causes: &mut Vec<Cause>) {
    let length = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        causes.push(invalid(
            path,
            value,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        causes.push(Cause {
            reason: "FieldValueTooLong".into(),
            message: format!("Too long: may not be more than {max} bytes"),
            field: path.to_string(),
        });
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        // An uncompilable pattern is a CRD error the CRD's own validation should have caught.
        if let Ok(re) = regex::Regex::new(pattern)
            && !re.is_match(s)
        {
            causes.push(invalid(
                path,
                value,
                format!("{path} in body should match '{pattern}'"),
            ));
        }
    }
}

fn validate_number(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(n) = value.as_f64() else { return };
    let exclusive_min = flag(schema, "exclusiveMinimum");
    let exclusive_max = flag(schema, "exclusiveMaximum");
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && (n < min || (exclusive_min && n == min))
    {
        let op = if exclusive_min {
            "greater than"
        } else {
            "greater than or equal to"
        };
        causes.push(invalid(
            path,
            value,
            format!("{path} in body should be {op} {}", schema["minimum"]),
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && (n > max || (exclusive_max && n == max))
    {
        let op = if exclusive_max {
            "less than"
        } else {
            "less than or equal to"
        };
        causes.push(invalid(
            path,
            value,
            format!("{path} in body should be {op} {}", schema["maximum"]),
        ));
    }
    let out_of_range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => value.as_i64().is_none_or(|i| i32::try_from(i).is_err()),
        Some("int64") => value.as_i64().is_none() && type_matches("integer", value),
        _ => false,
    };
    if out_of_range {
        causes.push(invalid(
            path,
            value,
            format!(
                "{path} in body must be of type {}",
                schema["format"].as_str().unwrap_or_default()
            ),
        ));
    }
}

fn validate_array(
    schema: &Value,
    value: &Value,
    items: &[Value],
    path: &str,
    causes: &mut Vec<Cause>,
) {
    let count = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && count < min
    {
        causes.push(invalid(
            path,
            value,
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && count > max
    {
        causes.push(Cause {
            reason: "FieldValueTooMany".into(),
            message: format!("Too many: {count}: must have at most {max} items"),
            field: path.to_string(),
        });
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate_at(item_schema, item, &format!("{path}[{i}]"), causes);
        }
    }
    validate_list_type(schema, items, path, causes);
}

/// `x-kubernetes-list-type: set` items and `map` keys must be unique.
fn validate_list_type(schema: &Value, items: &[Value], path: &str, causes: &mut Vec<Cause>) {
    let identity = |item: &Value| -> Option<Value> {
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => Some(item.clone()),
            Some("map") => {
                let keys = schema.get("x-kubernetes-list-map-keys")?.as_array()?;
                let key: Map<String, Value> = keys
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|k| item.get(k).map(|v| (k.to_string(), v.clone())))
                    .collect();
                Some(Value::Object(key))
            }
            _ => None,
        }
    };
    let mut seen: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(id) = identity(item) else { return };
        if seen.contains(&id) {
            let shown = match &id {
                Value::Object(m) => {
                    format!("map[string]interface {{}}{}", Value::Object(m.clone()))
                }
                other => render(other),
            };
            causes.push(Cause {
                reason: "FieldValueDuplicate".into(),
                message: format!("Duplicate value: {shown}"),
                field: format!("{path}[{i}]"),
            });
        } else {
            seen.push(id);
        }
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                causes.push(Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: child_path(path, name),
                });
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, child) in map {
        if let Some(child_schema) = properties.and_then(|p| p.get(key)).or(additional) {
            validate_at(child_schema, child, &child_path(path, key), causes);
        }
    }
}

#[cfg(test)]
mod tests;
