//! Server-side printing: `meta.k8s.io/v1` Table responses for `Accept: ...;as=Table`.
//!
//! ```text
//! pub fn Printer::for_crd_version(version: &Value) -> Result<Printer, ApiError>  // a CRD spec.versions[] entry
//! pub fn Printer::for_kind(kind: &str) -> Printer                                // built-ins: NAME+AGE and a few extras
//! pub fn IncludeObject::parse(query: Option<&str>) -> Result<IncludeObject, ApiError>
//! pub fn to_table(printer: &Printer, objects: &[Value], include: IncludeObject, now: &str) -> Value
//! pub fn human_duration(seconds: i64) -> String       // kubectl's AGE format: 5s, 3m, 2d4h
//! pub fn parse_rfc3339(text: &str) -> Option<i64>     // seconds since the Unix epoch
//! ```
//! The caller sets the Table's `metadata.resourceVersion`/`continue`.

// ApiError is the crate's one error type and is returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::jsonpath::JsonPath;

/// `includeObject` of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    /// The API server's default is `Metadata`.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        match query {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: \"{other}\": supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// How a cell is computed.
#[derive(Debug, Clone)]
enum Cell {
    Path(JsonPath),
    Age,
    /// The age of the first timestamp present at these JSON pointers.
    AgeAt(&'static [&'static str]),
    Builtin(fn(&Value) -> Value),
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    cell: Cell,
}

impl Column {
    fn builtin(name: &str, kind: &str, cell: Cell) -> Self {
        Column {
            name: name.into(),
            kind: kind.into(),
            format: if name == "Name" {
                "name".into()
            } else {
                String::new()
            },
            description: String::new(),
            priority: 0,
            cell,
        }
    }
}

/// The columns of a resource's Table.
#[derive(Debug, Clone)]
pub struct Printer {
    columns: Vec<Column>,
}

fn name_column() -> Column {
    let mut c = Column::builtin(
        "Name",
        "string",
        Cell::Path(JsonPath::parse(".metadata.name").expect("static path")),
    );
    c.description = "Name must be unique within a namespace.".into();
    c
}

fn age_column() -> Column {
    let mut c = Column::builtin("Age", "string", Cell::Age);
    c.description = "CreationTimestamp is a timestamp representing the server time when this object was created.".into();
    c
}

impl Printer {
    /// Name, then the version's `additionalPrinterColumns` (or Age when it has none).
    pub fn for_crd_version(version: &Value) -> Result<Printer, ApiError> {
        let mut columns = vec![name_column()];
        let declared = version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if declared.is_empty() {
            columns.push(age_column());
        }
        for (i, spec) in declared.iter().enumerate() {
            let text = |k: &str| {
                spec.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let path = JsonPath::parse(&text("jsonPath")).map_err(|e| {
                ApiError::bad_request(format!(
                    "additionalPrinterColumns[{i}].jsonPath: {}",
                    e.message
                ))
            })?;
            columns.push(Column {
                name: text("name"),
                kind: text("type"),
                format: text("format"),
                description: text("description"),
                priority: spec.get("priority").and_then(Value::as_i64).unwrap_or(0),
                cell: Cell::Path(path),
            });
        }
        Ok(Printer { columns })
    }

    /// Events print as the API server prints them (core and events.k8s.io alike): no Name
    /// first, but when, what and why; the rest only with `-o wide`.
    fn for_events() -> Printer {
        let wide = |mut c: Column| {
            c.priority = 1;
            c
        };
        let mut name = wide(Column::builtin(
            "Name",
            "string",
            Cell::Builtin(|o| text_at(o, "/metadata/name")),
        ));
        name.format = "name".into();
        Printer {
            columns: vec![
                Column::builtin("Last Seen", "string", Cell::AgeAt(EVENT_LAST_SEEN)),
                Column::builtin("Type", "string", Cell::Builtin(|o| text_at(o, "/type"))),
                Column::builtin("Reason", "string", Cell::Builtin(|o| text_at(o, "/reason"))),
                Column::builtin("Object", "string", Cell::Builtin(event_object)),
                wide(Column::builtin(
                    "Subobject",
                    "string",
                    Cell::Builtin(|o| text_at(o, "/involvedObject/fieldPath")),
                )),
                wide(Column::builtin(
                    "Source",
                    "string",
                    Cell::Builtin(event_source),
                )),
                Column::builtin("Message", "string", Cell::Builtin(event_message)),
                wide(Column::builtin(
                    "First Seen",
                    "string",
                    Cell::AgeAt(EVENT_FIRST_SEEN),
                )),
                wide(Column::builtin(
                    "Count",
                    "string",
                    Cell::Builtin(event_count),
                )),
                name,
            ],
        }
    }

    /// NAME and AGE, with the usual extra columns of a few built-in kinds.
    pub fn for_kind(kind: &str) -> Printer {
        if kind == "Event" {
            return Self::for_events();
        }
        let extras: Vec<Column> = match kind {
            "Namespace" => vec![Column::builtin(
                "Status",
                "string",
                Cell::Builtin(|o| text_at(o, "/status/phase")),
            )],
            "ConfigMap" => vec![Column::builtin(
                "Data",
                "integer",
                Cell::Builtin(data_count),
            )],
            "Secret" => vec![
                Column::builtin("Type", "string", Cell::Builtin(|o| text_at(o, "/type"))),
                Column::builtin("Data", "integer", Cell::Builtin(data_count)),
            ],
            "Pod" => vec![
                Column::builtin("Ready", "string", Cell::Builtin(pod_ready)),
                Column::builtin("Status", "string", Cell::Builtin(pod_status)),
                Column::builtin("Restarts", "string", Cell::Builtin(pod_restarts)),
            ],
            "Deployment" => vec![
                Column::builtin("Ready", "string", Cell::Builtin(deployment_ready)),
                Column::builtin(
                    "Up-to-date",
                    "integer",
                    Cell::Builtin(|o| int_at(o, "/status/updatedReplicas")),
                ),
                Column::builtin(
                    "Available",
                    "integer",
                    Cell::Builtin(|o| int_at(o, "/status/availableReplicas")),
                ),
            ],
            "Service" => vec![
                Column::builtin(
                    "Type",
                    "string",
                    Cell::Builtin(|o| text_at(o, "/spec/type")),
                ),
                Column::builtin(
                    "Cluster-IP",
                    "string",
                    Cell::Builtin(|o| text_at(o, "/spec/clusterIP")),
                ),
                Column::builtin("Port(s)", "string", Cell::Builtin(service_ports)),
            ],
            _ => Vec::new(),
        };
        let mut columns = vec![name_column()];
        columns.extend(extras);
        columns.push(age_column());
        Printer { columns }
    }
}

const EVENT_LAST_SEEN: &[&str] = &[
    "/series/lastObservedTime",
    "/lastTimestamp",
    "/deprecatedLastTimestamp",
    "/eventTime",
    "/metadata/creationTimestamp",
];
const EVENT_FIRST_SEEN: &[&str] = &[
    "/firstTimestamp",
    "/deprecatedFirstTimestamp",
    "/eventTime",
    "/metadata/creationTimestamp",
];

/// `kind/name` of the object an event is about, the kind in lower case.
fn event_object(event: &Value) -> Value {
    let about = if event.get("regarding").is_some() {
        &event["regarding"]
    } else {
        &event["involvedObject"]
    };
    let kind = about["kind"].as_str().unwrap_or("").to_lowercase();
    json!(format!("{kind}/{}", about["name"].as_str().unwrap_or("")))
}

fn event_message(event: &Value) -> Value {
    let text = event["message"]
        .as_str()
        .or_else(|| event["note"].as_str())
        .unwrap_or("");
    json!(text.trim())
}

fn event_source(event: &Value) -> Value {
    let component = event["source"]["component"]
        .as_str()
        .or_else(|| event["reportingController"].as_str())
        .unwrap_or("");
    match event["source"]["host"].as_str() {
        Some(host) if !host.is_empty() => json!(format!("{component}, {host}")),
        _ => json!(component),
    }
}

fn event_count(event: &Value) -> Value {
    let count = event["series"]["count"]
        .as_i64()
        .or_else(|| event["count"].as_i64())
        .or_else(|| event["deprecatedCount"].as_i64())
        .unwrap_or(1);
    json!(count.to_string())
}

fn text_at(object: &Value, pointer: &str) -> Value {
    json!(
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    )
}

fn int_at(object: &Value, pointer: &str) -> Value {
    json!(object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0))
}

fn data_count(object: &Value) -> Value {
    let count = |k: &str| {
        object
            .get(k)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    };
    json!(count("data") + count("binaryData") + count("stringData"))
}

fn container_statuses(object: &Value) -> &[Value] {
    object
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn pod_ready(object: &Value) -> Value {
    let total = object
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = container_statuses(object)
        .iter()
        .filter(|s| s.get("ready") == Some(&Value::Bool(true)))
        .count();
    json!(format!("{ready}/{total}"))
}

fn pod_status(object: &Value) -> Value {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let reason = object.pointer("/status/reason").and_then(Value::as_str);
    let phase = object.pointer("/status/phase").and_then(Value::as_str);
    json!(reason.or(phase).unwrap_or("Pending"))
}

fn pod_restarts(object: &Value) -> Value {
    let restarts: i64 = container_statuses(object)
        .iter()
        .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
        .sum();
    json!(restarts.to_string())
}

fn deployment_ready(object: &Value) -> Value {
    let ready = object
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let desired = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    json!(format!("{ready}/{desired}"))
}

fn service_ports(object: &Value) -> Value {
    let ports: Vec<String> = object
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(node) => format!("{port}:{node}/{protocol}"),
                        None => format!("{port}/{protocol}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    json!(if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    })
}

/// The Table of `objects`; `now` is an RFC 3339 timestamp for ages.
pub fn to_table(printer: &Printer, objects: &[Value], include: IncludeObject, now: &str) -> Value {
    let now_seconds = parse_rfc3339(now);
    let column_definitions: Vec<Value> = printer
        .columns
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.kind, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = printer
                .columns
                .iter()
                .map(|c| cell(c, object, now_seconds))
                .collect();
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
                    });
                }
                IncludeObject::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

fn age_of(timestamp: Option<&Value>, now: Option<i64>) -> Value {
    match (
        timestamp.and_then(Value::as_str).and_then(parse_rfc3339),
        now,
    ) {
        (Some(then), Some(now)) => json!(human_duration(now - then)),
        _ => json!("<unknown>"),
    }
}

fn cell(column: &Column, object: &Value, now: Option<i64>) -> Value {
    match &column.cell {
        Cell::Age => age_of(object.pointer("/metadata/creationTimestamp"), now),
        Cell::AgeAt(pointers) => age_of(
            pointers
                .iter()
                .filter_map(|p| object.pointer(p))
                .find(|v| v.as_str().is_some_and(|s| !s.is_empty())),
            now,
        ),
        Cell::Builtin(f) => f(object),
        Cell::Path(path) => {
            let found = path.find(object);
            match found.as_slice() {
                [] => Value::Null,
                [single] if column.kind == "date" => age_of(Some(single), now),
                // A string column holding a list or map shows it as JSON, as the API server
                // prints it (`kubectl get vs`: `["bookinfo-gateway"]`).
                [single]
                    if column.kind == "string" && (single.is_array() || single.is_object()) =>
                {
                    Value::String(single.to_string())
                }
                [single] => (*single).clone(),
                many => json!(
                    many.iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            }
        }
    }
}

/// kubectl's age format (`duration.HumanDuration`): 45s, 2m5s, 3h10m, 2d4h, 1y30d.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        let years = hours / 24 / 365;
        return if days == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{days}d")
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Seconds since the epoch of an RFC 3339 timestamp (`2024-01-02T03:04:05Z`, fractions and
/// offsets allowed).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            if h.len() != 2
                || m.len() != 2
                || !h.bytes().chain(m.bytes()).all(|c| c.is_ascii_digit())
            {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
