//! Deterministic protobuf encodings. prost writes a `map` field in `HashMap`
//! order, and two maps with the same entries iterate differently, so the same
//! mesh could give different bytes, and so a new xDS version and a needless
//! push, on every translation. These encoders write map entries in key order.
use std::collections::HashMap;

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::Message;

/// Appends a `map<string, V>` field (number `tag`) with its entries in key order.
pub(crate) fn encode_sorted_map<V: Message>(tag: u32, map: HashMap<String, V>, buf: &mut Vec<u8>) {
    let mut entries: Vec<(String, V)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in entries {
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, &key, &mut entry);
        prost::encoding::message::encode(2, &value, &mut entry);
        prost::encoding::bytes::encode(tag, &entry, buf);
    }
}

// Field numbers of google.protobuf.Struct, Value and ListValue.
const STRUCT_FIELDS: u32 = 1;
const VALUE_STRUCT: u32 = 5;
const VALUE_LIST: u32 = 6;
const LIST_VALUES: u32 = 1;

/// Appends `s`'s fields, nested structs too, in key order (the body of a
/// `google.protobuf.Struct`, without a tag).
pub(crate) fn encode_struct_sorted(s: &Struct, buf: &mut Vec<u8>) {
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    for key in keys {
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, key, &mut entry);
        let mut value = Vec::new();
        encode_value_sorted(&s.fields[key], &mut value);
        prost::encoding::bytes::encode(2, &value, &mut entry);
        prost::encoding::bytes::encode(STRUCT_FIELDS, &entry, buf);
    }
}

/// The body of a `google.protobuf.Value`, its structs' keys in order.
fn encode_value_sorted(v: &Value, buf: &mut Vec<u8>) {
    match &v.kind {
        Some(Kind::StructValue(s)) => {
            let mut inner = Vec::new();
            encode_struct_sorted(s, &mut inner);
            prost::encoding::bytes::encode(VALUE_STRUCT, &inner, buf);
        }
        Some(Kind::ListValue(list)) => {
            let mut inner = Vec::new();
            for item in &list.values {
                let mut value = Vec::new();
                encode_value_sorted(item, &mut value);
                prost::encoding::bytes::encode(LIST_VALUES, &value, &mut inner);
            }
            prost::encoding::bytes::encode(VALUE_LIST, &inner, buf);
        }
        // Scalars hold no map.
        _ => v.encode_raw(buf),
    }
}

// Field numbers of the maps and of the messages that hold them (Envoy's
// route/v3 protos).
const ROUTE_CONFIGURATION_VIRTUAL_HOSTS: u32 = 2;
const ROUTE_CONFIGURATION_FILTER_CONFIG: u32 = 16;
const VIRTUAL_HOST_ROUTES: u32 = 3;
const VIRTUAL_HOST_FILTER_CONFIG: u32 = 15;
const ROUTE_FILTER_CONFIG: u32 = 13;

/// `message` packed as `Any`, encoded straight from the reference (packing
/// through `envoy_types::util::pack_any` needs an owned copy).
pub fn pack<M: Message + prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// `rc` packed with every per-filter config map (route configuration,
/// virtual hosts, routes) in key order. Protobuf readers accept fields in
/// any order, so the maps (and the repeated fields that hold them, in their
/// order) are appended after the rest.
fn pack_route_configuration(rc: &RouteConfiguration) -> Any {
    let many = |m: &HashMap<String, Any>| m.len() > 1;
    let unordered = many(&rc.typed_per_filter_config)
        || rc.virtual_hosts.iter().any(|vh| {
            many(&vh.typed_per_filter_config)
                || vh.routes.iter().any(|r| many(&r.typed_per_filter_config))
        });
    let value = if unordered {
        let mut rest = rc.clone();
        let virtual_hosts = std::mem::take(&mut rest.virtual_hosts);
        let filter_config = std::mem::take(&mut rest.typed_per_filter_config);
        let mut buf = rest.encode_to_vec();
        for vh in virtual_hosts {
            let bytes = virtual_host_bytes(vh);
            prost::encoding::bytes::encode(ROUTE_CONFIGURATION_VIRTUAL_HOSTS, &bytes, &mut buf);
        }
        encode_sorted_map(ROUTE_CONFIGURATION_FILTER_CONFIG, filter_config, &mut buf);
        buf
    } else {
        rc.encode_to_vec()
    };
    Any {
        type_url: <RouteConfiguration as prost::Name>::type_url(),
        value,
    }
}

/// A route configuration packed once, map entries in key order, as every
/// proxy that gets it receives it. Route configurations are most of a mesh's
/// configuration (a virtual host per service and port, in each namespace's
/// view, shared by the namespace's proxies), and decoded they take about nine
/// times their encoded size, so the translator hands them out packed.
#[derive(Clone, PartialEq)]
pub struct PackedRouteConfiguration {
    name: String,
    any: Any,
}

impl PackedRouteConfiguration {
    pub fn new(rc: &RouteConfiguration) -> Self {
        PackedRouteConfiguration {
            name: rc.name.clone(),
            any: pack_route_configuration(rc),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What goes on the wire.
    pub fn any(&self) -> &Any {
        &self.any
    }

    /// The route configuration, decoded again (tests, static bootstraps).
    pub fn decode(&self) -> RouteConfiguration {
        // Bytes this type encoded itself.
        RouteConfiguration::decode(self.any.value.as_slice())
            .expect("a packed route configuration decodes")
    }
}

impl Default for PackedRouteConfiguration {
    fn default() -> Self {
        PackedRouteConfiguration::new(&RouteConfiguration::default())
    }
}

/// Shows the decoded configuration, as a test failure should.
impl std::fmt::Debug for PackedRouteConfiguration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.decode().fmt(f)
    }
}

fn virtual_host_bytes(mut vh: VirtualHost) -> Vec<u8> {
    let routes = std::mem::take(&mut vh.routes);
    let filter_config = std::mem::take(&mut vh.typed_per_filter_config);
    let mut buf = vh.encode_to_vec();
    for route in routes {
        prost::encoding::bytes::encode(VIRTUAL_HOST_ROUTES, &route_bytes(route), &mut buf);
    }
    encode_sorted_map(VIRTUAL_HOST_FILTER_CONFIG, filter_config, &mut buf);
    buf
}

fn route_bytes(mut route: Route) -> Vec<u8> {
    let filter_config = std::mem::take(&mut route.typed_per_filter_config);
    let mut buf = route.encode_to_vec();
    encode_sorted_map(ROUTE_FILTER_CONFIG, filter_config, &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_config(names: &[&str]) -> HashMap<String, Any> {
        (names.iter())
            .map(|n| {
                let any = Any {
                    type_url: format!("type.googleapis.com/{n}"),
                    value: n.as_bytes().to_vec(),
                };
                (n.to_string(), any)
            })
            .collect()
    }

    fn config() -> RouteConfiguration {
        let names = [
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "x",
            "y",
        ];
        RouteConfiguration {
            name: "80".into(),
            virtual_hosts: vec![VirtualHost {
                name: "shop".into(),
                domains: vec!["shop".into()],
                routes: vec![
                    Route {
                        name: "a".into(),
                        typed_per_filter_config: filter_config(&names),
                        ..Default::default()
                    },
                    Route {
                        name: "b".into(),
                        ..Default::default()
                    },
                ],
                typed_per_filter_config: filter_config(&names),
                ..Default::default()
            }],
            typed_per_filter_config: filter_config(&names),
            ..Default::default()
        }
    }

    /// The same configuration, built twice (each map with its own hash
    /// seeds), packs to the same bytes, which decode to the configuration.
    #[test]
    fn route_configurations_pack_to_the_same_bytes() {
        let first = pack_route_configuration(&config());
        for _ in 0..16 {
            assert_eq!(pack_route_configuration(&config()), first);
        }
        let decoded = RouteConfiguration::decode(first.value.as_slice()).unwrap();
        assert_eq!(decoded, config());
        assert_eq!(
            decoded.virtual_hosts[0].routes[1].name, "b",
            "routes keep their order"
        );
    }

    #[test]
    fn a_packed_route_configuration_is_its_configuration_packed_once() {
        let packed = PackedRouteConfiguration::new(&config());
        assert_eq!(packed.name(), "80");
        assert_eq!(packed.any(), &pack_route_configuration(&config()));
        assert_eq!(packed.decode(), config());
        assert_eq!(packed, PackedRouteConfiguration::new(&config()));
        let other = RouteConfiguration {
            name: "8080".into(),
            ..config()
        };
        assert_ne!(packed, PackedRouteConfiguration::new(&other));
        // Test failures show the configuration, not bytes.
        assert!(format!("{packed:?}").contains("envoy.filters.http.cors"));
    }
}
