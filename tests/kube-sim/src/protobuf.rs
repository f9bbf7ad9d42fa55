//! Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which kubectl's imperative commands (`kubectl create namespace|configmap|secret|
//! serviceaccount`) send through client-go's typed clients. Decoded into the JSON the rest of
//! the server works on, for the kinds those commands create; any other kind is a 415 naming
//! the encodings the simulator reads.
//!
//! The envelope is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message
//! (`typeMeta` = 1 {apiVersion = 1, kind = 2}, `raw` = 2 holding the object's own message).

use crate::error::ApiError;
use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// One field of a protobuf message: its number and its payload.
#[derive(Debug, Clone, PartialEq)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn decode_error(what: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding the protobuf request body: {what}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf
            .get(*pos)
            .ok_or_else(|| decode_error("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(decode_error("varint longer than 10 bytes"))
}

/// The fields of a message, in wire order (repeated fields appear once per element).
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                if pos + width > buf.len() {
                    return Err(decode_error("truncated fixed-width field"));
                }
                pos += width;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)
                    .map_err(|_| decode_error("length out of range"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|end| *end <= buf.len())
                    .ok_or_else(|| decode_error("truncated length-delimited field"))?;
                let bytes = &buf[pos..end];
                pos = end;
                Field::Bytes(bytes)
            }
            other => return Err(decode_error(&format!("unsupported wire type {other}"))),
        };
        out.push((number, field));
    }
    Ok(out)
}

fn text(field: &Field) -> Result<String, ApiError> {
    match field {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| decode_error("invalid UTF-8")),
        _ => Err(decode_error("expected a string")),
    }
}

fn bytes_b64(field: &Field) -> Result<String, ApiError> {
    match field {
        Field::Bytes(b) => Ok(base64::engine::general_purpose::STANDARD.encode(b)),
        _ => Err(decode_error("expected bytes")),
    }
}

fn message<'a>(field: &Field<'a>) -> Result<&'a [u8], ApiError> {
    match field {
        Field::Bytes(b) => Ok(b),
        _ => Err(decode_error("expected a message")),
    }
}

fn boolean(field: &Field) -> Result<bool, ApiError> {
    match field {
        Field::Varint(v) => Ok(*v != 0),
        _ => Err(decode_error("expected a bool")),
    }
}

/// A `map<string, V>` entry (key = 1, value = 2) into `map`.
fn map_entry(
    field: &Field,
    map: &mut Map<String, Value>,
    value: fn(&Field) -> Result<String, ApiError>,
) -> Result<(), ApiError> {
    let mut key = String::new();
    let mut val = String::new();
    for (n, f) in fields(message(field)?)? {
        match n {
            1 => key = text(&f)?,
            2 => val = value(&f)?,
            _ => {}
        }
    }
    map.insert(key, Value::String(val));
    Ok(())
}

fn string_map_entry(field: &Field, map: &mut Map<String, Value>) -> Result<(), ApiError> {
    map_entry(field, map, text)
}

fn bytes_map_entry(field: &Field, map: &mut Map<String, Value>) -> Result<(), ApiError> {
    map_entry(field, map, bytes_b64)
}

/// A message whose fields are all strings or bools, by field number.
fn flat(buf: &[u8], names: &[(u64, &str)], bools: &[(u64, &str)]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for (n, f) in fields(buf)? {
        if let Some((_, name)) = names.iter().find(|(k, _)| *k == n) {
            out.insert((*name).to_string(), Value::String(text(&f)?));
        } else if let Some((_, name)) = bools.iter().find(|(k, _)| *k == n) {
            out.insert((*name).to_string(), Value::Bool(boolean(&f)?));
        }
    }
    Ok(Value::Object(out))
}

/// `ObjectMeta`: the fields a client sets (the server-managed ones are ignored on create).
fn object_meta(buf: &[u8]) -> Result<Value, ApiError> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut owners = Vec::new();
    let mut finalizers = Vec::new();
    for (n, f) in fields(buf)? {
        match n {
            1 => drop(meta.insert("name".into(), Value::String(text(&f)?))),
            2 => drop(meta.insert("generateName".into(), Value::String(text(&f)?))),
            3 => drop(meta.insert("namespace".into(), Value::String(text(&f)?))),
            5 => drop(meta.insert("uid".into(), Value::String(text(&f)?))),
            6 => drop(meta.insert("resourceVersion".into(), Value::String(text(&f)?))),
            11 => string_map_entry(&f, &mut labels)?,
            12 => string_map_entry(&f, &mut annotations)?,
            13 => owners.push(flat(
                message(&f)?,
                &[(1, "kind"), (3, "name"), (4, "uid"), (5, "apiVersion")],
                &[(6, "controller"), (7, "blockOwnerDeletion")],
            )?),
            14 => finalizers.push(Value::String(text(&f)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !owners.is_empty() {
        meta.insert("ownerReferences".into(), Value::Array(owners));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(meta))
}

fn namespace(buf: &[u8]) -> Result<Value, ApiError> {
    let mut obj = json!({});
    for (n, f) in fields(buf)? {
        match n {
            1 => obj["metadata"] = object_meta(message(&f)?)?,
            2 => {
                let mut finalizers = Vec::new();
                for (m, g) in fields(message(&f)?)? {
                    if m == 1 {
                        finalizers.push(Value::String(text(&g)?));
                    }
                }
                obj["spec"] = json!({"finalizers": finalizers});
            }
            _ => {}
        }
    }
    Ok(obj)
}

fn config_map(buf: &[u8]) -> Result<Value, ApiError> {
    let mut obj = json!({});
    let (mut data, mut binary) = (Map::new(), Map::new());
    for (n, f) in fields(buf)? {
        match n {
            1 => obj["metadata"] = object_meta(message(&f)?)?,
            2 => string_map_entry(&f, &mut data)?,
            3 => bytes_map_entry(&f, &mut binary)?,
            4 => obj["immutable"] = Value::Bool(boolean(&f)?),
            _ => {}
        }
    }
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        obj["binaryData"] = Value::Object(binary);
    }
    Ok(obj)
}

fn secret(buf: &[u8]) -> Result<Value, ApiError> {
    let mut obj = json!({});
    let (mut data, mut string_data) = (Map::new(), Map::new());
    for (n, f) in fields(buf)? {
        match n {
            1 => obj["metadata"] = object_meta(message(&f)?)?,
            2 => bytes_map_entry(&f, &mut data)?,
            3 => obj["type"] = Value::String(text(&f)?),
            4 => string_map_entry(&f, &mut string_data)?,
            5 => obj["immutable"] = Value::Bool(boolean(&f)?),
            _ => {}
        }
    }
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    if !string_data.is_empty() {
        obj["stringData"] = Value::Object(string_data);
    }
    Ok(obj)
}

fn service_account(buf: &[u8]) -> Result<Value, ApiError> {
    let mut obj = json!({});
    let (mut secrets, mut pull) = (Vec::new(), Vec::new());
    for (n, f) in fields(buf)? {
        match n {
            1 => obj["metadata"] = object_meta(message(&f)?)?,
            2 => secrets.push(flat(
                message(&f)?,
                &[
                    (1, "kind"),
                    (2, "namespace"),
                    (3, "name"),
                    (4, "uid"),
                    (5, "apiVersion"),
                ],
                &[],
            )?),
            3 => pull.push(flat(message(&f)?, &[(1, "name")], &[])?),
            4 => obj["automountServiceAccountToken"] = Value::Bool(boolean(&f)?),
            _ => {}
        }
    }
    if !secrets.is_empty() {
        obj["secrets"] = Value::Array(secrets);
    }
    if !pull.is_empty() {
        obj["imagePullSecrets"] = Value::Array(pull);
    }
    Ok(obj)
}

/// The 415 for a protobuf body of a kind the simulator cannot decode.
pub fn unsupported(kind: &str) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (kube-sim decodes application/vnd.kubernetes.protobuf only for Namespace, ConfigMap, Secret and ServiceAccount, not {kind})"
        ),
    )
}

/// Decodes a protobuf request body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| decode_error("missing the k8s protobuf prefix"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (n, f) in fields(rest)? {
        match n {
            1 => {
                for (m, g) in fields(message(&f)?)? {
                    match m {
                        1 => api_version = text(&g)?,
                        2 => kind = text(&g)?,
                        _ => {}
                    }
                }
            }
            2 => raw = Some(message(&f)?),
            _ => {}
        }
    }
    let raw = raw.unwrap_or_default();
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(raw)?,
        ("v1", "ConfigMap") => config_map(raw)?,
        ("v1", "Secret") => secret(raw)?,
        ("v1", "ServiceAccount") => service_account(raw)?,
        _ => return Err(unsupported(&format!("{api_version}/{kind}"))),
    };
    obj["apiVersion"] = Value::String(api_version);
    obj["kind"] = Value::String(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(n: u64, wire: u64) -> Vec<u8> {
        encode_varint((n << 3) | wire)
    }

    fn encode_varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = tag(n, 2);
        out.extend(encode_varint(payload.len() as u64));
        out.extend(payload);
        out
    }

    fn entry(n: u64, key: &str, value: &[u8]) -> Vec<u8> {
        bytes(n, &[bytes(1, key.as_bytes()), bytes(2, value)].concat())
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [bytes(1, api_version.as_bytes()), bytes(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), bytes(1, &type_meta), bytes(2, raw)].concat()
    }

    #[test]
    fn secret_with_metadata_data_and_type() {
        let meta = [
            bytes(1, b"creds"),
            bytes(3, b"shop"),
            entry(11, "app", b"web"),
            bytes(14, b"example.com/hold"),
        ]
        .concat();
        let raw = [
            bytes(1, &meta),
            entry(2, "token", b"\x00\xffsecret"),
            bytes(3, b"Opaque"),
            tag(5, 0),
            vec![1],
        ]
        .concat();
        let obj = decode(&envelope("v1", "Secret", &raw)).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "creds", "namespace": "shop", "labels": {"app": "web"},
                                "finalizers": ["example.com/hold"]},
                   "data": {"token": "AP9zZWNyZXQ="}, "type": "Opaque", "immutable": true})
        );
    }

    #[test]
    fn other_kinds_are_415_and_garbage_is_400() {
        let err = decode(&envelope("apps/v1", "Deployment", &[])).unwrap_err();
        assert_eq!(err.code, 415);
        assert!(
            err.message.contains("apps/v1/Deployment"),
            "{}",
            err.message
        );
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(
            decode(&[MAGIC, &[0x0a, 0x05, 0x01]].concat())
                .unwrap_err()
                .code,
            400
        );
    }

    proptest! {
        #[test]
        fn never_panics(body in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&[MAGIC, body.as_slice()].concat());
            let _ = decode(&body);
        }
    }
}
