//! MeshConfig's access log: every HTTP connection manager and TCP proxy of a
//! proxy's listeners writes a line per request or connection to the file, as
//! `meshConfig.accessLogFile` does in Istio. Added in one pass over the
//! finished listeners, so the builders stay unaware of it. The agent's health
//! and stats listeners are not logged: the kubelet and Prometheus would fill
//! the log.
use envoy_types::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter::ConfigType};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log::AccessLogFormat,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::google::protobuf::{Any, ListValue, NullValue, Struct, Value, value::Kind};
use envoy_types::util::pack_any;
use prost::{Message, Name};
use trellis_api::mesh::AccessLogEncoding;
use trellis_model::AccessLog as AccessLogSettings;

use crate::interception::{HEALTH_PORT, STATS_PORT};
use crate::listener::{HCM, TCP_PROXY};
use crate::names;

const FILE_ACCESS_LOG: &str = "envoy.access_loggers.file";

/// The default line: Envoy's own default format, then what a mesh adds to it:
/// the upstream cluster (service, port and subset), the peer's SPIFFE id on
/// mTLS connections, and the route's name.
const DEFAULT_TEXT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% \
%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \
\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% \
\"%DOWNSTREAM_PEER_URI_SAN%\" %ROUTE_NAME%\n";

/// The default JSON line: the same fields, named.
const DEFAULT_JSON: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("downstream_peer_uri_san", "%DOWNSTREAM_PEER_URI_SAN%"),
    ("route_name", "%ROUTE_NAME%"),
];

/// Adds the access log to every HTTP connection manager and TCP proxy of
/// `listeners` but the agent's.
pub fn add_access_logs(listeners: &mut [Listener], settings: &AccessLogSettings) {
    let log = access_log(settings);
    let agent = [HEALTH_PORT, STATS_PORT].map(|p| names::listener_name("0.0.0.0", p));
    for l in listeners.iter_mut().filter(|l| !agent.contains(&l.name)) {
        let chains = l
            .filter_chains
            .iter_mut()
            .chain(&mut l.default_filter_chain);
        for filter in chains.flat_map(|c| c.filters.iter_mut()) {
            add_to_filter(filter, &log);
        }
    }
}

fn add_to_filter(filter: &mut Filter, log: &AccessLog) {
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        return;
    };
    // Our own filters: they decode, so a failure here is not expected; such a
    // filter is left as it is rather than dropped.
    let packed = match filter.name.as_str() {
        HCM => HttpConnectionManager::decode(any.value.as_slice())
            .ok()
            .map(|mut hcm| {
                hcm.access_log.push(log.clone());
                pack_any(hcm)
            }),
        TCP_PROXY => TcpProxy::decode(any.value.as_slice()).ok().map(|mut tcp| {
            tcp.access_log.push(log.clone());
            pack_any(tcp)
        }),
        _ => None,
    };
    if let Some(packed) = packed {
        filter.config_type = Some(ConfigType::TypedConfig(packed));
    }
}

/// Envoy's file access logger for `settings`.
pub fn access_log(settings: &AccessLogSettings) -> AccessLog {
    let format = match settings.encoding {
        AccessLogEncoding::Text => {
            let mut text = settings
                .format
                .clone()
                .unwrap_or_else(|| DEFAULT_TEXT.into());
            // One line per entry, whether or not the format ends its line.
            if !text.ends_with('\n') {
                text.push('\n');
            }
            substitution_format_string::Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(text)),
                ..Default::default()
            })
        }
        AccessLogEncoding::Json => {
            let fields = settings
                .format
                .as_deref()
                .and_then(|f| serde_json::from_str::<serde_json::Value>(f).ok())
                .and_then(|v| match v {
                    serde_json::Value::Object(map) => Some(map),
                    _ => None,
                });
            let fields = match fields {
                Some(map) => map.into_iter().map(|(k, v)| (k, json_value(v))).collect(),
                // Validation refuses a format that is not an object.
                None => DEFAULT_JSON
                    .iter()
                    .map(|(k, v)| (k.to_string(), string_value(v)))
                    .collect(),
            };
            substitution_format_string::Format::JsonFormat(Struct { fields })
        }
    };
    AccessLog {
        name: FILE_ACCESS_LOG.into(),
        config_type: Some(access_log::ConfigType::TypedConfig(pack_file_log(
            &settings.path,
            format,
        ))),
        ..Default::default()
    }
}

// Field numbers of FileAccessLog.log_format and SubstitutionFormatString.json_format.
const FILE_ACCESS_LOG_LOG_FORMAT: u32 = 5;
const SUBSTITUTION_JSON_FORMAT: u32 = 2;

/// The file logger packed with a JSON format's fields in key order (prost
/// writes a Struct's map in HashMap order: the same mesh would give other
/// bytes, and a needless push, each time).
fn pack_file_log(path: &str, format: substitution_format_string::Format) -> Any {
    let substitution_format_string::Format::JsonFormat(fields) = format else {
        return pack_any(FileAccessLog {
            path: path.to_string(),
            access_log_format: Some(AccessLogFormat::LogFormat(SubstitutionFormatString {
                format: Some(format),
                ..Default::default()
            })),
        });
    };
    let mut buf = FileAccessLog {
        path: path.to_string(),
        access_log_format: None,
    }
    .encode_to_vec();
    let mut json = Vec::new();
    crate::encode::encode_struct_sorted(&fields, &mut json);
    let mut substitution = Vec::new();
    prost::encoding::bytes::encode(SUBSTITUTION_JSON_FORMAT, &json, &mut substitution);
    prost::encoding::bytes::encode(FILE_ACCESS_LOG_LOG_FORMAT, &substitution, &mut buf);
    Any {
        type_url: format!("type.googleapis.com/{}", FileAccessLog::full_name()),
        value: buf,
    }
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

/// A JSON value as a protobuf `Value`.
fn json_value(v: serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(NullValue::NullValue as i32),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map.into_iter().map(|(k, v)| (k, json_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::FilterChain;

    fn file_log(log: &AccessLog) -> FileAccessLog {
        let Some(access_log::ConfigType::TypedConfig(any)) = &log.config_type else {
            panic!("typed config")
        };
        FileAccessLog::decode(any.value.as_slice()).unwrap()
    }

    fn format(log: &AccessLog) -> substitution_format_string::Format {
        let Some(AccessLogFormat::LogFormat(f)) = file_log(log).access_log_format else {
            panic!("log format")
        };
        f.format.unwrap()
    }

    fn settings(encoding: AccessLogEncoding, format: Option<&str>) -> AccessLogSettings {
        AccessLogSettings {
            path: "/dev/stdout".into(),
            encoding,
            format: format.map(str::to_string),
        }
    }

    #[test]
    fn a_text_format_ends_its_line_and_defaults_to_the_mesh_line() {
        let log = access_log(&settings(AccessLogEncoding::Text, Some("%RESPONSE_CODE%")));
        assert_eq!(file_log(&log).path, "/dev/stdout");
        let substitution_format_string::Format::TextFormatSource(source) = format(&log) else {
            panic!("text")
        };
        assert_eq!(
            source.specifier,
            Some(data_source::Specifier::InlineString(
                "%RESPONSE_CODE%\n".into()
            ))
        );
        let default = access_log(&settings(AccessLogEncoding::Text, None));
        let substitution_format_string::Format::TextFormatSource(source) = format(&default) else {
            panic!("text")
        };
        let Some(data_source::Specifier::InlineString(text)) = source.specifier else {
            panic!("inline")
        };
        assert!(
            text.contains("%UPSTREAM_CLUSTER%") && text.ends_with('\n'),
            "{text}"
        );
    }

    /// Equal formats give equal bytes however the maps iterate (each
    /// translation builds new HashMaps), and the bytes decode to the format.
    #[test]
    fn a_json_format_packs_to_the_same_bytes_each_time() {
        let json =
            r#"{"a": "%A%", "b": "%B%", "c": {"x": 1, "y": [{"k": "v", "l": "w"}]}, "d": "%D%"}"#;
        let log = settings(AccessLogEncoding::Json, Some(json));
        let bytes = |l: &AccessLog| {
            let Some(access_log::ConfigType::TypedConfig(any)) = &l.config_type else {
                panic!("typed config")
            };
            any.clone()
        };
        let first = bytes(&access_log(&log));
        assert_eq!(first.type_url, pack_any(FileAccessLog::default()).type_url);
        for _ in 0..16 {
            assert_eq!(bytes(&access_log(&log)), first);
        }
        let substitution_format_string::Format::JsonFormat(s) = format(&access_log(&log)) else {
            panic!("json")
        };
        let expected: serde_json::Value = serde_json::from_str(json).unwrap();
        let serde_json::Value::Object(map) = expected else {
            unreachable!()
        };
        let expected: Struct = Struct {
            fields: map.into_iter().map(|(k, v)| (k, json_value(v))).collect(),
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn a_json_format_keeps_its_fields_and_their_types() {
        let log = access_log(&settings(
            AccessLogEncoding::Json,
            Some(r#"{"code": "%RESPONSE_CODE%", "mesh": true, "tags": {"team": "shop"}}"#),
        ));
        let substitution_format_string::Format::JsonFormat(s) = format(&log) else {
            panic!("json")
        };
        assert_eq!(s.fields["code"], string_value("%RESPONSE_CODE%"));
        assert_eq!(s.fields["mesh"].kind, Some(Kind::BoolValue(true)));
        assert!(matches!(s.fields["tags"].kind, Some(Kind::StructValue(_))));
        let default = access_log(&settings(AccessLogEncoding::Json, None));
        let substitution_format_string::Format::JsonFormat(s) = format(&default) else {
            panic!("json")
        };
        assert_eq!(s.fields.len(), DEFAULT_JSON.len());
    }

    fn decoded<M: Message + Default>(filter: &Filter) -> M {
        let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
            panic!("typed config")
        };
        M::decode(any.value.as_slice()).unwrap()
    }

    #[test]
    fn every_connection_manager_and_tcp_proxy_logs_but_the_agents() {
        use crate::listener::{Routes, http_connection_manager, listener, tcp_proxy};
        let hcm = http_connection_manager("http", Routes::Rds("8080".into()), Vec::new());
        let tcp = tcp_proxy("tcp", "outbound|5432||db.shop.svc.cluster.local");
        let chain = FilterChain {
            filters: vec![hcm.clone(), tcp.clone()],
            ..Default::default()
        };
        let health = names::listener_name("0.0.0.0", HEALTH_PORT);
        let mut listeners = vec![
            listener(
                "app".into(),
                "0.0.0.0",
                8080,
                vec![chain.clone()],
                Vec::new(),
            ),
            listener(health, "0.0.0.0", HEALTH_PORT, vec![chain], Vec::new()),
        ];
        let settings = settings(AccessLogEncoding::Json, None);
        add_access_logs(&mut listeners, &settings);
        let log = access_log(&settings);

        let filters = &listeners[0].filter_chains[0].filters;
        let mut expected_hcm: HttpConnectionManager = decoded(&hcm);
        expected_hcm.access_log.push(log.clone());
        assert_eq!(decoded::<HttpConnectionManager>(&filters[0]), expected_hcm);
        let mut expected_tcp: TcpProxy = decoded(&tcp);
        expected_tcp.access_log.push(log);
        assert_eq!(decoded::<TcpProxy>(&filters[1]), expected_tcp);

        let agent = &listeners[1].filter_chains[0].filters;
        assert_eq!(agent, &vec![hcm, tcp]);
    }
}
