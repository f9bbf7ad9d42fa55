//! The examples/istio corpus: every document loads, validates cleanly,
//! serializes back to exactly what was written, and together the documents
//! use every field of every kind's schema.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use trellis_api::crd::crds;
use trellis_api::{load, validate};

/// examples/istio, plus tests/corpus-extra: documents that cannot sit beside
/// the examples, such as a second MeshConfig (there is one per mesh) showing
/// the other form of a one-of.
fn corpus() -> Vec<(String, String)> {
    let yaml_in = |dir: &str| -> Vec<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
    };
    let examples = yaml_in("../../examples/istio");
    assert!(examples.len() >= 5, "corpus too small: {examples:?}");
    let files = examples.into_iter().chain(yaml_in("tests/corpus-extra"));
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// Integers and floats compare by value (`5` in YAML is `5.0` in an f64 field).
fn numbers_as_f64(v: &mut Value) {
    match v {
        Value::Number(n) => {
            *v = serde_json::json!(n.as_f64().unwrap());
        }
        Value::Array(items) => items.iter_mut().for_each(numbers_as_f64),
        Value::Object(map) => map.values_mut().for_each(numbers_as_f64),
        _ => {}
    }
}

#[test]
fn corpus_round_trips_and_validates() {
    let mut count = 0;
    for (name, text) in corpus() {
        let resources = load(&name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let originals = documents(&text);
        assert_eq!(resources.len(), originals.len(), "{name}");
        for (resource, mut original) in resources.iter().zip(originals) {
            let errors = validate(resource);
            assert!(
                errors.is_empty(),
                "{name}: {}: {errors:?}",
                resource.object_ref()
            );
            let mut written = resource.to_json();
            // Older versions are read into the v1 types and written back as v1.
            original["apiVersion"] = written["apiVersion"].clone();
            numbers_as_f64(&mut original);
            numbers_as_f64(&mut written);
            assert_eq!(
                written,
                original,
                "{name}: {} does not round-trip",
                resource.object_ref()
            );
            count += 1;
        }
    }
    assert!(count >= 30, "only {count} documents");
}

fn schema_field_names(schema: &Value, out: &mut BTreeSet<String>) {
    if let Some(Value::Object(props)) = schema.get("properties") {
        for (name, prop) in props {
            out.insert(name.clone());
            // Kubernetes' own ResourceRequirements is not ours to cover.
            if name != "resources" {
                schema_field_names(prop, out);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(key) {
            schema_field_names(inner, out);
        }
    }
}

fn keys_used(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys_used(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys_used(v, out)),
        _ => {}
    }
}

#[test]
fn corpus_uses_every_field_of_every_kind() {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, text) in corpus() {
        for doc in documents(&text) {
            let kind = doc["kind"].as_str().unwrap().to_owned();
            keys_used(&doc["spec"], used.entry(kind).or_default());
        }
    }
    let mut all_missing = Vec::new();
    for crd in crds() {
        let kind = &crd.spec.names.kind;
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut fields = BTreeSet::new();
        schema_field_names(&schema["properties"]["spec"], &mut fields);
        let empty = BTreeSet::new();
        let used = used.get(kind).unwrap_or(&empty);
        let missing: Vec<&String> = fields.difference(used).collect();
        if !missing.is_empty() {
            all_missing.push(format!("{kind}: {missing:?}"));
        }
    }
    assert!(
        all_missing.is_empty(),
        "examples/istio never uses these fields: {all_missing:#?}"
    );
}

/// Every object schema of a CRD (keyed by its JSON text, so a type used in several
/// places — a TrafficPolicy at the top and in subsets, a StringMatch under uri and
/// headers — is one entry) with the path of its first occurrence and its field names.
fn object_types(
    schema: &Value,
    path: &str,
    out: &mut BTreeMap<String, (String, BTreeSet<String>)>,
) {
    if let Some(Value::Object(props)) = schema.get("properties") {
        out.entry(schema.to_string())
            .or_insert_with(|| (path.to_owned(), props.keys().cloned().collect()));
        for (name, prop) in props {
            // Kubernetes' own ResourceRequirements is not ours to cover.
            if name != "resources" {
                object_types(prop, &format!("{path}.{name}"), out);
            }
        }
    }
    if let Some(items) = schema.get("items") {
        object_types(items, &format!("{path}[]"), out);
    }
    if let Some(inner) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        object_types(inner, &format!("{path}.*"), out);
    }
}

/// The field names a document sets on each object type.
fn used_by_type(value: &Value, schema: &Value, out: &mut BTreeMap<String, BTreeSet<String>>) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if props.is_some() {
                out.entry(schema.to_string())
                    .or_default()
                    .extend(map.keys().cloned());
            }
            for (k, v) in map {
                let child = props
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(child) = child {
                    used_by_type(v, child, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                items.iter().for_each(|v| used_by_type(v, item_schema, out));
            }
        }
        _ => {}
    }
}

/// Stricter than field names: every field of every object type (StringMatch, TrafficPolicy,
/// HeaderOperations, ...) is set somewhere the corpus uses that type.
#[test]
fn corpus_sets_every_field_of_every_object_type() {
    let mut all_missing = Vec::new();
    let docs: Vec<Value> = corpus()
        .into_iter()
        .flat_map(|(_, text)| documents(&text))
        .collect();
    for crd in crds() {
        let kind = crd.spec.names.kind.clone();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let spec = &schema["properties"]["spec"];
        let mut types = BTreeMap::new();
        object_types(spec, "spec", &mut types);
        let mut used = BTreeMap::new();
        for doc in docs.iter().filter(|d| d["kind"] == kind.as_str()) {
            used_by_type(&doc["spec"], spec, &mut used);
        }
        for (key, (path, fields)) in &types {
            let empty = BTreeSet::new();
            let set = used.get(key).unwrap_or(&empty);
            let missing: Vec<&String> = fields.difference(set).collect();
            if !missing.is_empty() {
                all_missing.push(format!("{kind} {path}: {missing:?}"));
            }
        }
    }
    assert!(
        all_missing.is_empty(),
        "examples/istio never sets these fields: {all_missing:#?}"
    );
}
