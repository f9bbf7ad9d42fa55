//! Envoy v3 protobuf messages as proto3 JSON or YAML.
//!
//! `envoy-types` generates prost structs without serde. This crate carries a
//! descriptor set of the Envoy API (compiled at build time from the `.proto`
//! files shipped in `envoy-types`) and transcodes encoded messages with
//! `prost-reflect`, including `google.protobuf.Any` fields (written with their
//! `@type`). Pure: no I/O at run time.
//!
//! Used for golden files, static bootstraps and `trellis proxy-config -o json|yaml`.
#![forbid(unsafe_code)]

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(DESCRIPTORS).map_err(|e| format!("embedded Envoy descriptors: {e}"))
});

/// Why a message could not be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum EnvoyJsonError {
    #[error("the embedded Envoy descriptor set is unusable: {0}")]
    Descriptors(String),
    #[error("message type {0} is not in the embedded Envoy descriptor set")]
    UnknownType(String),
    #[error("message {type_name} does not decode: {reason}")]
    Decode { type_name: String, reason: String },
    #[error("message {type_name} cannot be written as JSON: {reason}")]
    Serialize { type_name: String, reason: String },
}

/// The descriptor pool of the Envoy API messages this crate knows.
pub fn descriptor_pool() -> Result<&'static DescriptorPool, EnvoyJsonError> {
    POOL.as_ref()
        .map_err(|e| EnvoyJsonError::Descriptors(e.clone()))
}

/// Transcodes an encoded message of the fully-qualified `type_name` (a type URL
/// such as `type.googleapis.com/envoy.config.cluster.v3.Cluster` is accepted too).
pub fn bytes_to_json(type_name: &str, bytes: &[u8]) -> Result<serde_json::Value, EnvoyJsonError> {
    let type_name = type_name.rsplit('/').next().unwrap_or(type_name);
    let descriptor = descriptor_pool()?
        .get_message_by_name(type_name)
        .ok_or_else(|| EnvoyJsonError::UnknownType(type_name.to_string()))?;
    let message =
        DynamicMessage::decode(descriptor, bytes).map_err(|e| EnvoyJsonError::Decode {
            type_name: type_name.to_string(),
            reason: e.to_string(),
        })?;
    // Proto3 JSON as Envoy's own config_dump prints it: camel case is optional for
    // Envoy's parser, snake case matches the docs and ENVOY-NOTES, so keep field names.
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| EnvoyJsonError::Serialize {
            type_name: type_name.to_string(),
            reason: e.to_string(),
        })
}

/// Transcodes a prost message of the Envoy API (anything implementing `prost::Name`).
pub fn to_json<M: Message + prost::Name>(message: &M) -> Result<serde_json::Value, EnvoyJsonError> {
    bytes_to_json(&M::full_name(), &message.encode_to_vec())
}

/// Pretty JSON text of a message.
pub fn to_json_string<M: Message + prost::Name>(message: &M) -> Result<String, EnvoyJsonError> {
    let value = to_json(message)?;
    serde_json::to_string_pretty(&value).map_err(|e| EnvoyJsonError::Serialize {
        type_name: M::full_name(),
        reason: e.to_string(),
    })
}

/// YAML text of a message (the form used for golden files and static bootstraps).
pub fn to_yaml_string<M: Message + prost::Name>(message: &M) -> Result<String, EnvoyJsonError> {
    json_to_yaml(&to_json(message)?)
}

/// YAML text of any JSON value (e.g. a list of transcoded resources). Strings are
/// always quoted, so Envoy's YAML 1.1 parser never reads `yes` or `on` as a boolean.
pub fn json_to_yaml(value: &serde_json::Value) -> Result<String, EnvoyJsonError> {
    Ok(yaml::to_yaml(value))
}

mod yaml;

#[cfg(test)]
mod tests;
