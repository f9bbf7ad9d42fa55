//! What the xDS server last sent each proxy, for `trellis proxy-config`.
//!
//! `trellis up` writes one document per proxy to
//! `<state>/proxy-config/<namespace>/<name>.json` (atomically, only when the
//! proxy's sync state changed): per resource type the version and nonce last
//! sent, the version the proxy ACKed, the standing NACK, and the resources as
//! proto3 JSON. Secrets never carry key material: a secret sent over ADS is
//! listed by name and kind only, and the file-based workload secrets are
//! described by their certificates' SANs and expiry.
use crate::error::{LocalError, Result};
use crate::state::{StateDir, is_safe_component, write_atomic};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use trellis_ca::CertificateInfo;
use trellis_xds::{ProxyStatus, ResourceType, TypeStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfigDump {
    pub namespace: String,
    pub name: String,
    pub node_id: String,
    /// Whether the proxy is connected to the xDS server right now.
    pub connected: bool,
    pub types: Vec<TypeDump>,
    /// The workload certificate and trust bundle Envoy reads through file SDS.
    #[serde(default)]
    pub file_secrets: Vec<SecretSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeDump {
    /// `listeners`, `routes`, `clusters`, `endpoints` or `secrets`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub type_url: String,
    #[serde(default)]
    pub sent_version: Option<String>,
    #[serde(default)]
    pub sent_nonce: Option<String>,
    #[serde(default)]
    pub acked_version: Option<String>,
    /// The proxy ACKed exactly what was last sent.
    pub acked: bool,
    #[serde(default)]
    pub nack: Option<NackDump>,
    #[serde(default)]
    pub resources: Vec<ResourceDump>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NackDump {
    pub rejected_version: String,
    pub message: String,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDump {
    pub name: String,
    /// The resource as proto3 JSON (secrets: a summary without key material).
    pub config: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSummary {
    pub name: String,
    pub source: String,
    #[serde(default)]
    pub uri_sans: Vec<String>,
    #[serde(default)]
    pub subject: String,
    /// Unix seconds.
    #[serde(default)]
    pub not_after: Option<u64>,
}

fn unix(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Where the dump of `namespace/name` lives.
pub fn dump_path(state_root: &Path, namespace: &str, name: &str) -> Result<PathBuf> {
    for part in [namespace, name] {
        if !is_safe_component(part) {
            return Err(LocalError::UnsafeName {
                what: "proxy".into(),
                value: part.to_string(),
            });
        }
    }
    Ok(state_root
        .join("proxy-config")
        .join(namespace)
        .join(format!("{name}.json")))
}

/// Summaries of the certificate files in a proxy's certificate directory.
pub fn file_secrets(cert_dir: &Path) -> Vec<SecretSummary> {
    let mut out = Vec::new();
    for (name, file) in [("default", "cert-chain.pem"), ("ROOTCA", "root-cert.pem")] {
        let path = cert_dir.join(file);
        let Ok(pem) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(certs) = CertificateInfo::all_from_pem(file, &pem) else {
            continue;
        };
        if let Some(first) = certs.first() {
            out.push(SecretSummary {
                name: name.to_string(),
                source: path.display().to_string(),
                uri_sans: first.uri_sans.clone(),
                subject: first.subject.clone(),
                not_after: unix(first.not_after),
            });
        }
    }
    out
}

fn secret_summary(name: &str, any: &envoy_types::pb::google::protobuf::Any) -> Value {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
    use prost::Message;
    let kind = match Secret::decode(any.value.as_slice())
        .ok()
        .and_then(|s| s.r#type)
    {
        Some(secret::Type::TlsCertificate(_)) => "tls_certificate",
        Some(secret::Type::ValidationContext(_)) => "validation_context",
        Some(secret::Type::SessionTicketKeys(_)) => "session_ticket_keys",
        Some(secret::Type::GenericSecret(_)) => "generic_secret",
        None => "unknown",
    };
    serde_json::json!({ "name": name, "kind": kind, "keyMaterial": "omitted" })
}

fn type_dump(ty: ResourceType, status: &TypeStatus) -> TypeDump {
    let resources = status
        .last_sent
        .as_ref()
        .map(|sent| {
            sent.resources
                .iter()
                .map(|r| {
                    let config = if ty == ResourceType::Secret {
                        secret_summary(&r.name, &r.any)
                    } else {
                        let message = r
                            .any
                            .type_url
                            .rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        trellis_envoy_json::bytes_to_json(&message, &r.any.value).unwrap_or_else(
                            |e| serde_json::json!({ "error": format!("cannot decode: {e}") }),
                        )
                    };
                    ResourceDump {
                        name: r.name.clone(),
                        config,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    TypeDump {
        type_name: ty.plural_name().to_string(),
        type_url: ty.type_url().to_string(),
        sent_version: status.last_sent.as_ref().map(|s| s.version.clone()),
        sent_nonce: status.last_sent.as_ref().map(|s| s.nonce.clone()),
        acked_version: status.acked_version.clone(),
        acked: status.in_sync(),
        nack: status
            .last_nack
            .as_ref()
            .filter(|_| status.rejected())
            .map(|n| NackDump {
                rejected_version: n.rejected_version.clone(),
                message: n.message.clone(),
                resources: n.resource_names.clone(),
            }),
        resources,
    }
}

/// A key that changes whenever the dump would: versions, nonces, ACKs, NACKs.
pub fn sync_key(status: Option<&ProxyStatus>) -> String {
    let Some(s) = status else {
        return "disconnected".into();
    };
    ResourceType::ALL
        .iter()
        .map(|t| {
            let ts = s.get(*t);
            format!(
                "{}:{:?}:{:?}:{:?}",
                t.index(),
                ts.last_sent.as_ref().map(|x| &x.nonce),
                ts.acked_version,
                ts.last_nack.as_ref().map(|n| &n.nonce)
            )
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The dump of one proxy from the xDS server's view of it.
pub fn build_dump(
    namespace: &str,
    name: &str,
    status: Option<&ProxyStatus>,
    cert_dir: Option<&Path>,
) -> ProxyConfigDump {
    ProxyConfigDump {
        namespace: namespace.to_string(),
        name: name.to_string(),
        node_id: status.map(|s| s.node_id.clone()).unwrap_or_default(),
        connected: status.is_some(),
        types: ResourceType::ALL
            .iter()
            .map(|t| {
                status.map_or_else(
                    || type_dump(*t, &TypeStatus::default()),
                    |s| type_dump(*t, s.get(*t)),
                )
            })
            .collect(),
        file_secrets: cert_dir.map(file_secrets).unwrap_or_default(),
    }
}

pub fn write_dump(state: &StateDir, dump: &ProxyConfigDump) -> Result<()> {
    let path = dump_path(state.root(), &dump.namespace, &dump.name)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LocalError::io("creating", dir, e))?;
    }
    let bytes = serde_json::to_vec_pretty(dump).map_err(|source| LocalError::Json {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, &bytes, 0o644)
}

/// Removes the dumps of proxies that no longer run.
pub fn remove_dump(state: &StateDir, namespace: &str, name: &str) {
    if let Ok(path) = dump_path(state.root(), namespace, name) {
        let _ = std::fs::remove_file(path);
    }
}

pub fn read_dump(state_root: &Path, namespace: &str, name: &str) -> Result<ProxyConfigDump> {
    let path = dump_path(state_root, namespace, name)?;
    let bytes = std::fs::read(&path).map_err(|e| LocalError::io("reading", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| LocalError::Json { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        Secret, TlsCertificate, secret,
    };
    use std::sync::Arc;
    use trellis_xds::{NackRecord, ProxyId, ProxyKind, Resource, SentResponse};

    fn inline(text: &str) -> Option<DataSource> {
        Some(DataSource {
            specifier: Some(Specifier::InlineString(text.to_string())),
            ..Default::default()
        })
    }

    fn status() -> ProxyStatus {
        let mut types: [TypeStatus; 5] = Default::default();
        let listener = Listener {
            name: "127.0.0.10_15001".into(),
            ..Default::default()
        };
        types[ResourceType::Listener.index()] = TypeStatus {
            subscribed: None,
            last_sent: Some(SentResponse {
                version: "v2".into(),
                nonce: "n2".into(),
                resources: vec![Arc::new(Resource::new(
                    listener.name.clone(),
                    envoy_types::util::pack_any(listener),
                ))],
            }),
            acked_version: Some("v1".into()),
            last_nack: Some(NackRecord {
                type_url: ResourceType::Listener.type_url().into(),
                rejected_version: "v2".into(),
                nonce: "n2".into(),
                message: "bad listener".into(),
                resource_names: vec!["127.0.0.10_15001".into()],
            }),
        };
        let secret = Secret {
            name: "kubernetes://shop/cred".into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline("-----BEGIN CERTIFICATE-----\nMIIB\n"),
                private_key: inline("-----BEGIN PRIVATE KEY-----\nsecret\n"),
                ..Default::default()
            })),
        };
        types[ResourceType::Secret.index()] = TypeStatus {
            subscribed: Some(vec!["kubernetes://shop/cred".into()]),
            last_sent: Some(SentResponse {
                version: "s1".into(),
                nonce: "n3".into(),
                resources: vec![Arc::new(Resource::new(
                    secret.name.clone(),
                    envoy_types::util::pack_any(secret),
                ))],
            }),
            acked_version: Some("s1".into()),
            last_nack: None,
        };
        ProxyStatus {
            proxy: ProxyId::new(ProxyKind::Sidecar, "shop", "frontend", "frontend"),
            node_id: "sidecar~127.0.0.10~frontend.shop~shop.svc.cluster.local".into(),
            connected_since: SystemTime::now(),
            types,
        }
    }

    #[test]
    fn dump_shows_versions_nacks_and_resources_but_never_key_material() {
        let s = status();
        let dump = build_dump("shop", "frontend", Some(&s), None);
        assert!(dump.connected);
        let listeners = &dump.types[ResourceType::Listener.index()];
        assert_eq!(listeners.type_name, "listeners");
        assert!(!listeners.acked);
        assert_eq!(listeners.acked_version.as_deref(), Some("v1"));
        let nack = listeners.nack.as_ref().unwrap();
        assert_eq!(
            (nack.rejected_version.as_str(), nack.message.as_str()),
            ("v2", "bad listener")
        );
        assert_eq!(listeners.resources[0].config["name"], "127.0.0.10_15001");
        let secrets = &dump.types[ResourceType::Secret.index()];
        assert!(secrets.acked);
        assert_eq!(secrets.resources[0].config["kind"], "tls_certificate");
        let text = serde_json::to_string(&dump).unwrap();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("secret\\n"),
            "{text}"
        );
    }

    #[test]
    fn sync_key_changes_with_acks_and_dumps_round_trip_on_disk() {
        let s = status();
        let mut acked = s.clone();
        acked.types[ResourceType::Listener.index()].acked_version = Some("v2".into());
        assert_ne!(sync_key(Some(&s)), sync_key(Some(&acked)));
        assert_eq!(sync_key(Some(&s)), sync_key(Some(&s.clone())));
        assert_eq!(sync_key(None), "disconnected");

        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let dump = build_dump("shop", "frontend", Some(&acked), None);
        write_dump(&state, &dump).unwrap();
        assert_eq!(read_dump(tmp.path(), "shop", "frontend").unwrap(), dump);
        remove_dump(&state, "shop", "frontend");
        assert!(read_dump(tmp.path(), "shop", "frontend").is_err());
        assert!(matches!(
            dump_path(tmp.path(), "..", "x"),
            Err(LocalError::UnsafeName { .. })
        ));
    }
}
