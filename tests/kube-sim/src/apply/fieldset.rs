//! Field sets in the `FieldsV1` notation of `managedFields`, and the paths they contain.
//!
//! A path is a list of elements: `f:<field>`, `k:<json of the key fields>` (an item of a
//! list-map), `v:<json value>` (an item of a set), `i:<index>` (an atomic list index). A set holds
//! the paths a manager owns: leaves and list items (written with `.` when they have children).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::patch::strategic::{ListStrategy, list_strategy};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// How lists are merged: the built-in kinds' merge keys or a CRD's structural schema.
#[derive(Debug, Clone, Copy)]
pub enum Structure<'a> {
    Builtin(&'a str),
    Schema(&'a Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    Map(Vec<String>),
    Set,
    Atomic,
}

impl Structure<'_> {
    /// The list type of the list at `path`.
    pub fn list_kind(&self, path: &[String]) -> ListKind {
        match self {
            Structure::Builtin(kind) => {
                let names: Vec<&str> = path.iter().filter_map(|e| e.strip_prefix("f:")).collect();
                match list_strategy(kind, &names) {
                    ListStrategy::MergeByKey(key) => ListKind::Map(vec![key.to_string()]),
                    ListStrategy::MergePrimitive => ListKind::Set,
                    ListStrategy::Replace => ListKind::Atomic,
                }
            }
            // Object metadata has the same shape in every kind (finalizers a set,
            // ownerReferences keyed by uid), whatever a CRD schema says about it.
            Structure::Schema(_) if path.first().is_some_and(|e| e == "f:metadata") => {
                Structure::Builtin("").list_kind(path)
            }
            Structure::Schema(root) => {
                let Some(node) = schema_node(root, path) else {
                    return ListKind::Atomic;
                };
                match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("map") => ListKind::Map(
                        node.get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|keys| {
                                keys.iter()
                                    .filter_map(|k| k.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    Some("set") => ListKind::Set,
                    _ => ListKind::Atomic,
                }
            }
        }
    }

    /// Whether the object at `path` is a map (string keys to values) rather than a struct:
    /// a newly created map is owned as a whole by an `Update`.
    pub fn is_map(&self, path: &[String]) -> bool {
        match self {
            Structure::Builtin(kind) => match path.last().and_then(|e| e.strip_prefix("f:")) {
                Some(
                    "labels" | "annotations" | "data" | "binaryData" | "stringData" | "matchLabels"
                    | "nodeSelector" | "limits" | "requests",
                ) => true,
                Some("selector") => *kind == "Service",
                _ => false,
            },
            Structure::Schema(_) if path.first().is_some_and(|e| e == "f:metadata") => {
                Structure::Builtin("").is_map(path)
            }
            Structure::Schema(root) => schema_node(root, path).is_some_and(|n| {
                n.get("additionalProperties")
                    .is_some_and(|a| a.is_object() || a == &Value::Bool(true))
            }),
        }
    }
}

/// The schema of the value at `path`.
fn schema_node<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = Some(root);
    for element in path {
        node = node.and_then(|n| match element.strip_prefix("f:") {
            Some(name) => n
                .get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| n.get("additionalProperties").filter(|a| a.is_object())),
            None => n.get("items"),
        });
    }
    node
}

/// The `k:` element of a list-map item, or `None` when it lacks a key field.
pub fn key_element(item: &Value, keys: &[String]) -> Option<String> {
    let mut key = Map::new();
    for k in keys {
        key.insert(k.clone(), item.get(k)?.clone());
    }
    Some(format!("k:{}", Value::Object(key)))
}

/// Metadata the API server manages itself; never part of a manager's fields.
const SERVER_OWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

fn is_server_owned(path: &[String]) -> bool {
    match path {
        [first] => first == "f:apiVersion" || first == "f:kind",
        [first, second, ..] if first == "f:metadata" => second
            .strip_prefix("f:")
            .is_some_and(|n| SERVER_OWNED_METADATA.contains(&n)),
        _ => false,
    }
}

/// Every path an object sets: leaves, list items and (with `maps_are_members`) maps themselves.
pub fn fields_of(object: &Value, structure: Structure) -> FieldSet {
    let mut set = FieldSet::new();
    collect(object, structure, &mut Vec::new(), &mut set);
    set
}

fn collect(value: &Value, structure: Structure, path: &mut Path, set: &mut FieldSet) {
    if is_server_owned(path) {
        return;
    }
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(format!("f:{key}"));
                collect(child, structure, path, set);
                path.pop();
            }
        }
        Value::Array(items) if !path.is_empty() => match structure.list_kind(path) {
            ListKind::Map(keys) => {
                for item in items {
                    match key_element(item, &keys) {
                        Some(element) => {
                            path.push(element);
                            set.insert(path.clone());
                            collect(item, structure, path, set);
                            path.pop();
                        }
                        // An item without its key cannot be tracked: own the list as a whole.
                        None => {
                            set.insert(path.clone());
                        }
                    }
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    set.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                set.insert(path.clone());
            }
        },
        _ if path.is_empty() => {}
        _ => {
            set.insert(path.clone());
        }
    }
}

/// Whether `path` lies under (or is) `prefix`.
pub fn is_under(path: &[String], prefix: &[String]) -> bool {
    path.len() >= prefix.len() && path[..prefix.len()] == *prefix
}

/// The `fieldsV1` object of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for element in path {
            node = node
                .entry(element.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("field set nodes are objects");
        }
        node.insert(".".into(), json!({}));
    }
    // A member with no children is written as `{}` rather than `{".": {}}`.
    fn simplify(node: &mut Map<String, Value>) {
        for child in node.values_mut() {
            if let Value::Object(m) = child {
                simplify(m);
                if m.len() == 1 && m.contains_key(".") {
                    m.clear();
                }
            }
        }
    }
    simplify(&mut root);
    root.remove(".");
    Value::Object(root)
}

/// The set written in a `fieldsV1` object; malformed parts are ignored.
pub fn from_fields_v1(fields: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, path: &mut Path, set: &mut FieldSet) {
        if !path.is_empty() && (node.is_empty() || node.contains_key(".")) {
            set.insert(path.clone());
        }
        for (key, child) in node {
            if key == "." {
                continue;
            }
            if let Value::Object(m) = child {
                path.push(key.clone());
                walk(m, path, set);
                path.pop();
            }
        }
    }
    let mut set = FieldSet::new();
    if let Value::Object(m) = fields {
        walk(m, &mut Vec::new(), &mut set);
    }
    set
}

/// The value at `path`, following `k:`/`v:`/`i:` elements into lists.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |at, element| step(at, element))
}

fn step<'a>(at: &'a Value, element: &str) -> Option<&'a Value> {
    if let Some(name) = element.strip_prefix("f:") {
        return at.get(name);
    }
    let items = at.as_array()?;
    items.get(item_index(items, element)?)
}

/// The index of the list item an element designates.
pub fn item_index(items: &[Value], element: &str) -> Option<usize> {
    if let Some(key) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        items
            .iter()
            .position(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else if let Some(value) = element.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        items.iter().position(|item| *item == value)
    } else if let Some(index) = element.strip_prefix("i:") {
        index.parse().ok().filter(|i| *i < items.len())
    } else {
        None
    }
}

/// Removes the value at `path`; returns whether something was removed.
pub fn remove_at(object: &mut Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let Some(parent) = parent.iter().try_fold(object, |at, element| {
        if let Some(name) = element.strip_prefix("f:") {
            at.get_mut(name)
        } else {
            let index = item_index(at.as_array()?, element)?;
            at.get_mut(index)
        }
    }) else {
        return false;
    };
    if let Some(name) = last.strip_prefix("f:") {
        return parent
            .as_object_mut()
            .and_then(|m| m.remove(name))
            .is_some();
    }
    match parent.as_array_mut() {
        Some(items) => match item_index(items, last) {
            Some(i) => {
                items.remove(i);
                true
            }
            None => false,
        },
        None => false,
    }
}

/// A path as the API server prints it in conflicts: `.spec.containers[name="app"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = element.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(key)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_else(|_| vec![key.to_string()]);
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}
