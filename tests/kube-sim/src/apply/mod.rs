//! Server-side apply (`application/apply-patch+yaml`) and the `managedFields` of every write.
//!
//! ```text
//! pub fn server_side_apply(current: Option<&Value>, applied: &Value, manager: &str, force: bool,
//!                          now: &str, structure: Structure) -> Result<Value, ApiError>
//! pub fn record_update(old: Option<&Value>, new: &Value, manager: &str, now: &str,
//!                      structure: Structure) -> Value
//! Structure::Builtin(kind) | Structure::Schema(&openapi_v3_schema)   // how lists merge
//! ```
//! Both return the object to store, with `metadata.managedFields` updated. `server_side_apply`
//! fails with 409 Conflict (one `FieldManagerConflict` cause per field, worded as the API server
//! does) when the applied config changes a value another manager owns, unless `force`. Fields the
//! manager applied before and no longer applies are removed unless another manager owns them.
//! `record_update` is for create/update/patch: the manager (operation `Update`) takes ownership
//! of what it changed, other managers lose it. The caller handles apiVersion/kind/name checks,
//! status-subresource rules and resourceVersion.
//! `undeclared_fields_error(applied, unknown)` is the error for apply configs with unknown fields.

// ApiError is the crate's one error type and is returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

pub mod fieldset;

use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
pub use fieldset::Structure;
use fieldset::{
    FieldSet, ListKind, display_path, fields_of, from_fields_v1, is_under, item_index, key_element,
    remove_at, to_fields_v1, value_at,
};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: String,
    fields: FieldSet,
}

impl Entry {
    fn parse(value: &Value) -> Option<Entry> {
        let text = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(Entry {
            manager: value.get("manager")?.as_str()?.to_string(),
            operation: text("operation"),
            api_version: text("apiVersion"),
            time: text("time"),
            subresource: text("subresource"),
            fields: from_fields_v1(value.get("fieldsV1").unwrap_or(&Value::Null)),
        })
    }

    fn to_value(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.fields),
        });
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        v
    }

    fn is(&self, manager: &str, operation: &str) -> bool {
        self.is_on(manager, operation, "")
    }

    /// The entry of `manager`'s `operation` on `subresource` ("" for the main resource).
    fn is_on(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How the API server names a manager in conflict messages.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

fn entries_of(object: Option<&Value>) -> Vec<Entry> {
    object
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Entry::parse).collect())
        .unwrap_or_default()
}

fn api_version_of(object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn store_entries(mut object: Value, entries: Vec<Entry>) -> Value {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_value)
        .collect();
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    if list.is_empty() {
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(list);
    }
    object
}

/// Applies `applied` for `manager`; see the module documentation.
pub fn server_side_apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
    structure: Structure,
) -> Result<Value, ApiError> {
    server_side_apply_on(current, applied, manager, "", force, now, structure)
}

/// [`server_side_apply`] on a subresource (`status`): the manager's entry for that
/// subresource is its own, as the API server keys entries by manager, operation and
/// subresource, so applying status never drops what the same manager applied to the
/// main resource.
pub fn server_side_apply_on(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
    now: &str,
    structure: Structure,
) -> Result<Value, ApiError> {
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "apply patch must be an object".to_string(),
        ));
    }
    let mut entries = entries_of(current);
    let applied_set = fields_of(applied, structure);
    let empty = json!({});
    let base = current.unwrap_or(&empty);

    // A conflict is a change: compare against what applying would produce, so an empty map
    // merged into a populated one changes (and conflicts) nothing.
    let mut would_be = base.clone();
    merge_into(&mut would_be, applied, structure, &mut Vec::new());
    let mut conflicts: Vec<(usize, Vec<String>)> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.is_on(manager, "Apply", subresource) {
            continue;
        }
        // List items are compared through their fields; an item itself never conflicts.
        let leaves = applied_set.intersection(&entry.fields).filter(|p| {
            !p.last()
                .is_some_and(|e| e.starts_with("k:") || e.starts_with("v:"))
        });
        for path in leaves {
            if value_at(base, path) != value_at(&would_be, path) {
                conflicts.push((index, path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&entries, &conflicts, applied, current));
    }
    for (index, path) in &conflicts {
        entries[*index].fields.remove(path);
    }

    let previous: FieldSet = entries
        .iter()
        .find(|e| e.is_on(manager, "Apply", subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut object = base.clone();
    for path in previous.difference(&applied_set) {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !e.is_on(manager, "Apply", subresource))
            .any(|e| e.fields.iter().any(|p| is_under(p, path)));
        let still_applied = applied_set.iter().any(|p| is_under(p, path));
        if !owned_elsewhere && !still_applied {
            remove_at(&mut object, path);
        }
    }
    merge_into(&mut object, applied, structure, &mut Vec::new());

    let entry = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version_of(applied),
        time: now.to_string(),
        subresource: subresource.to_string(),
        fields: applied_set,
    };
    match entries
        .iter_mut()
        .find(|e| e.is_on(manager, "Apply", subresource))
    {
        Some(existing) => *existing = entry,
        None => entries.push(entry),
    }
    prune_missing(&mut entries, &object);
    Ok(store_entries(object, entries))
}

fn conflict_error(
    entries: &[Entry],
    conflicts: &[(usize, Vec<String>)],
    applied: &Value,
    current: Option<&Value>,
) -> ApiError {
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(i, path)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {}", entries[*i].describe()),
            field: display_path(path),
        })
        .collect();
    let message = if let [(i, path)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            entries[*i].describe(),
            display_path(path)
        )
    } else {
        let mut managers: Vec<String> = conflicts
            .iter()
            .map(|(i, _)| entries[*i].describe())
            .collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for manager in &managers {
            lines.push(format!("conflicts with {manager}:"));
            for (i, path) in conflicts {
                if entries[*i].describe() == *manager {
                    lines.push(format!("- {}", display_path(path)));
                }
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let object = current.unwrap_or(applied);
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let group = text("/apiVersion")
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    let mut err = ApiError::new(409, "Conflict", message).with_details(
        &text("/metadata/name"),
        &group,
        &text("/kind"),
    );
    err.causes = causes;
    err
}

/// Merges an applied config into the object: maps recursively, list-maps by key, sets by value,
/// everything else replaced.
fn merge_into(target: &mut Value, applied: &Value, structure: Structure, path: &mut Vec<String>) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (key, value) in a {
                path.push(format!("f:{key}"));
                match t.get_mut(key) {
                    Some(existing) if !value.is_null() => {
                        merge_into(existing, value, structure, path)
                    }
                    _ => {
                        t.insert(key.clone(), value.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(t), Value::Array(a)) => match structure.list_kind(path) {
            ListKind::Map(keys) if a.iter().all(|i| key_element(i, &keys).is_some()) => {
                for item in a {
                    let element = key_element(item, &keys).expect("checked above");
                    match item_index(t, &element) {
                        Some(i) => {
                            path.push(element);
                            merge_into(&mut t[i], item, structure, path);
                            path.pop();
                        }
                        None => t.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                for item in a {
                    if !t.contains(item) {
                        t.push(item.clone());
                    }
                }
            }
            _ => *t = a.clone(),
        },
        (target, applied) => *target = applied.clone(),
    }
}

/// Drops owned paths that no longer exist in the object.
fn prune_missing(entries: &mut [Entry], object: &Value) {
    for entry in entries.iter_mut() {
        entry.fields.retain(|p| value_at(object, p).is_some());
    }
}

/// Records a non-apply write by `manager` (operation `Update`); returns `new` with managedFields.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    now: &str,
    structure: Structure,
) -> Value {
    // A client may send managedFields back unchanged; the server's bookkeeping wins.
    let mut entries = entries_of(old);
    let new_set = fields_of(new, structure);
    let mut changed: FieldSet = new_set
        .iter()
        .filter(|p| old.is_none_or(|old| value_at(old, p) != value_at(new, p)))
        .cloned()
        .collect();
    // Maps (not structs) that did not exist before become owned as a whole, as the API server does.
    for path in &new_set {
        for len in 1..path.len() {
            let prefix = &path[..len];
            if structure.is_map(prefix)
                && old.is_none_or(|old| value_at(old, prefix).is_none())
                && value_at(new, prefix).is_some_and(Value::is_object)
            {
                changed.insert(prefix.to_vec());
            }
        }
    }
    if !changed.is_empty() {
        for entry in entries.iter_mut() {
            entry.fields.retain(|p| !changed.contains(p));
        }
        match entries.iter_mut().find(|e| e.is(manager, "Update")) {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.time = now.to_string();
                entry.api_version = api_version_of(new);
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version_of(new),
                time: now.to_string(),
                subresource: String::new(),
                fields: changed,
            }),
        }
    }
    let mut new = new.clone();
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    prune_missing(&mut entries, &new);
    store_entries(new, entries)
}

/// The error of an apply config with fields its schema does not declare (`unknown` as
/// `schema::prune` reports them, e.g. `spec.foo`). The API server answers this with a bare 500
/// Status whose message comes from structured-merge-diff; kubectl prints it verbatim.
pub fn undeclared_fields_error(applied: &Value, unknown: &[String]) -> ApiError {
    let text = |p: &str| {
        applied
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let api_version = text("/apiVersion");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!(".{f}: field not declared in schema"))
        .collect();
    // structured-merge-diff's ValidationErrors: one error alone, else an indented list.
    let detail = if fields.len() == 1 {
        fields.join("")
    } else {
        let mut lines = vec!["errors:".to_string()];
        lines.extend(fields.iter().map(|f| format!("  {f}")));
        lines.join("\n")
    };
    ApiError::new(
        500,
        "",
        format!(
            "failed to create typed patch object ({}/{}; {group}/{version}, Kind={}): {}",
            text("/metadata/namespace"),
            text("/metadata/name"),
            text("/kind"),
            detail
        ),
    )
}

/// The `managedFields` entries of `object` for `manager`, as (operation, fieldsV1) pairs.
pub fn managed_fields_of(object: &Value, manager: &str) -> Vec<(String, Value)> {
    entries_of(Some(object))
        .into_iter()
        .filter(|e| e.manager == manager)
        .map(|e| (e.operation.clone(), to_fields_v1(&e.fields)))
        .collect()
}

#[cfg(test)]
mod tests;
