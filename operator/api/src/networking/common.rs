//! Types shared by several networking kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A string matcher, serialized as Istio's `{exact: ".."}`, `{prefix: ".."}`,
/// `{regex: ".."}` (RE2 syntax) or `{}`: any value (for a header or a query
/// parameter, that it is present).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(try_from = "StringMatchFields", into = "StringMatchFields")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
    Any,
}

/// A string matcher: one of `exact`, `prefix` or `regex` (RE2), or `{}` for
/// any value (a header or query parameter: present).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "StringMatch")]
struct StringMatchFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

impl TryFrom<StringMatchFields> for StringMatch {
    type Error = &'static str;

    fn try_from(f: StringMatchFields) -> Result<Self, Self::Error> {
        match (f.exact, f.prefix, f.regex) {
            (None, None, None) => Ok(StringMatch::Any),
            (Some(v), None, None) => Ok(StringMatch::Exact(v)),
            (None, Some(v), None) => Ok(StringMatch::Prefix(v)),
            (None, None, Some(v)) => Ok(StringMatch::Regex(v)),
            _ => Err("set only one of exact, prefix and regex"),
        }
    }
}

impl From<StringMatch> for StringMatchFields {
    fn from(m: StringMatch) -> Self {
        let mut f = StringMatchFields::default();
        match m {
            StringMatch::Exact(v) => f.exact = Some(v),
            StringMatch::Prefix(v) => f.prefix = Some(v),
            StringMatch::Regex(v) => f.regex = Some(v),
            StringMatch::Any => {}
        }
        f
    }
}

impl JsonSchema for StringMatch {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        StringMatchFields::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        StringMatchFields::json_schema(generator)
    }
}

/// A destination service (and optionally subset and port) traffic goes to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// Selects a port of a service by number.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

/// A percentage in 0.0–100.0.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

/// Selects workloads by their labels (networking kinds spell it `labels`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Header manipulation for requests and responses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Set, append or remove headers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A port a service or gateway server listens on.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    pub number: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}
