//! Envoy bootstraps for universal mode: ADS over mTLS to the Trellis xDS
//! server, with the workload certificate and trust bundle read through
//! file-based SDS from the proxy's certificate directory.
//!
//! Each SDS file lives outside the certificate directory and names the
//! directory as `watched_directory`; the directory is swapped atomically
//! (`..data`, see [`crate::state::write_cert_dir`]), so a renewed certificate
//! reaches Envoy without a restart.
use crate::error::{LocalError, Result};
use crate::state::write_atomic;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The SDS secret holding the workload certificate and key (Istio's name).
pub const WORKLOAD_CERT_SECRET: &str = "default";
/// The SDS secret holding the mesh trust bundle (Istio's name).
pub const ROOT_CA_SECRET: &str = "ROOTCA";
/// The static cluster that reaches the xDS server.
pub const XDS_CLUSTER: &str = "xds-grpc";

pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
pub const KEY_FILE: &str = "key.pem";
pub const ROOT_CERT_FILE: &str = "root-cert.pem";

/// How the proxy checks the xDS server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSan {
    Uri(String),
    Dns(String),
}

#[derive(Debug, Clone)]
pub struct BootstrapSpec {
    /// The node id in the xDS server's format; the server checks it against
    /// the identity in the client certificate.
    pub node_id: String,
    /// `node.cluster`, e.g. `cart.shop`.
    pub node_cluster: String,
    /// `node.metadata`, e.g. the service account under `SERVICE_ACCOUNT`.
    pub node_metadata: BTreeMap<String, String>,
    pub admin: SocketAddr,
    pub xds: SocketAddr,
    pub xds_server_san: ServerSan,
    /// The proxy's certificate directory (`cert-chain.pem`, `key.pem`, `root-cert.pem`).
    pub cert_dir: PathBuf,
    /// Where this proxy's bootstrap and SDS files are written.
    pub out_dir: PathBuf,
}

/// The SDS files of one proxy; listeners and clusters the translator emits
/// for this proxy reference them through [`sds_secret_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsFiles {
    pub workload_cert: PathBuf,
    pub root_ca: PathBuf,
}

impl SdsFiles {
    pub fn in_dir(out_dir: &Path) -> Self {
        SdsFiles {
            workload_cert: out_dir.join("sds-workload-cert.json"),
            root_ca: out_dir.join("sds-root-ca.json"),
        }
    }
}

/// An `SdsSecretConfig` (JSON form) reading `secret_name` from an SDS file.
pub fn sds_secret_config(secret_name: &str, sds_file: &Path) -> Value {
    json!({
        "name": secret_name,
        "sds_config": {
            "resource_api_version": "V3",
            "path_config_source": { "path": sds_file.to_string_lossy() }
        }
    })
}

/// The SDS file with the workload certificate and key.
pub fn workload_cert_sds(cert_dir: &Path) -> Value {
    json!({ "resources": [{
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": WORKLOAD_CERT_SECRET,
        "tls_certificate": {
            "certificate_chain": { "filename": cert_dir.join(CERT_CHAIN_FILE).to_string_lossy() },
            "private_key": { "filename": cert_dir.join(KEY_FILE).to_string_lossy() },
            "watched_directory": { "path": cert_dir.to_string_lossy() }
        }
    }]})
}

/// The SDS file with the mesh trust bundle.
pub fn root_ca_sds(cert_dir: &Path) -> Value {
    json!({ "resources": [{
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": ROOT_CA_SECRET,
        "validation_context": {
            "trusted_ca": { "filename": cert_dir.join(ROOT_CERT_FILE).to_string_lossy() },
            "watched_directory": { "path": cert_dir.to_string_lossy() }
        }
    }]})
}

/// The bootstrap document itself (JSON, which Envoy reads as YAML's subset).
pub fn bootstrap(spec: &BootstrapSpec, sds: &SdsFiles) -> Value {
    ads_bootstrap(
        &spec.node_id,
        &spec.node_cluster,
        &spec.node_metadata,
        spec.admin,
        &XdsTarget::Addr(spec.xds),
        &spec.xds_server_san,
        sds,
    )
}

/// Where the proxy reaches the xDS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdsTarget {
    /// A fixed address (a `STATIC` cluster).
    Addr(SocketAddr),
    /// A DNS name resolved by Envoy, e.g. a Kubernetes Service (a `STRICT_DNS` cluster).
    Dns { host: String, port: u16 },
}

/// Envoy's runtime: the RE2 program size limit raised (see
/// [`trellis_translate::security::matchers::RE2_MAX_PROGRAM_SIZE`]), and the
/// admin layer Envoy has when no runtime is configured.
fn runtime_layers() -> Value {
    use trellis_translate::security::matchers::{RE2_MAX_PROGRAM_SIZE, RE2_MAX_PROGRAM_SIZE_KEY};
    json!({ "layers": [
        { "name": "trellis", "static_layer": { RE2_MAX_PROGRAM_SIZE_KEY: RE2_MAX_PROGRAM_SIZE } },
        { "name": "admin", "admin_layer": {} }
    ]})
}

/// An ADS-over-mTLS bootstrap: `node_*` are what the bootstrap says (Envoy's
/// `--service-node`/`--service-cluster` flags override id and cluster).
pub fn ads_bootstrap(
    node_id: &str,
    node_cluster: &str,
    node_metadata: &BTreeMap<String, String>,
    admin: SocketAddr,
    xds: &XdsTarget,
    xds_server_san: &ServerSan,
    sds: &SdsFiles,
) -> Value {
    let (cluster_type, xds_address) = match xds {
        XdsTarget::Addr(a) => ("STATIC", socket_address(*a)),
        XdsTarget::Dns { host, port } => (
            "STRICT_DNS",
            json!({ "socket_address": { "address": host, "port_value": port } }),
        ),
    };
    let san = match xds_server_san {
        ServerSan::Uri(v) => json!({ "san_type": "URI", "matcher": { "exact": v } }),
        ServerSan::Dns(v) => json!({ "san_type": "DNS", "matcher": { "exact": v } }),
    };
    let ads_source = json!({ "ads": {}, "resource_api_version": "V3" });
    json!({
        "node": {
            "id": node_id,
            "cluster": node_cluster,
            "metadata": node_metadata
        },
        "admin": {
            "address": socket_address(admin),
            "access_log": [{
                "name": "envoy.access_loggers.stderr",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
                }
            }]
        },
        "layered_runtime": runtime_layers(),
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{ "envoy_grpc": { "cluster_name": XDS_CLUSTER } }]
            },
            "cds_config": ads_source,
            "lds_config": ads_source
        },
        "static_resources": {
            "clusters": [{
                "name": XDS_CLUSTER,
                "type": cluster_type,
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                },
                "load_assignment": {
                    "cluster_name": XDS_CLUSTER,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                        "address": xds_address
                    }}]}]
                },
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "common_tls_context": {
                            "tls_certificate_sds_secret_configs": [
                                sds_secret_config(WORKLOAD_CERT_SECRET, &sds.workload_cert)
                            ],
                            "combined_validation_context": {
                                "default_validation_context": {
                                    "match_typed_subject_alt_names": [san]
                                },
                                "validation_context_sds_secret_config":
                                    sds_secret_config(ROOT_CA_SECRET, &sds.root_ca)
                            }
                        }
                    }
                }
            }]
        }
    })
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

/// Writes the SDS files and the bootstrap into `spec.out_dir`; returns the
/// bootstrap path and the SDS files.
pub fn write_bootstrap(spec: &BootstrapSpec) -> Result<(PathBuf, SdsFiles)> {
    std::fs::create_dir_all(&spec.out_dir)
        .map_err(|e| LocalError::io("creating", &spec.out_dir, e))?;
    let sds = SdsFiles::in_dir(&spec.out_dir);
    let write_json = |path: &Path, value: &Value| {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| LocalError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomic(path, &bytes, 0o644)
    };
    write_json(&sds.workload_cert, &workload_cert_sds(&spec.cert_dir))?;
    write_json(&sds.root_ca, &root_ca_sds(&spec.cert_dir))?;
    let path = spec.out_dir.join("envoy.json");
    write_json(&path, &bootstrap(spec, &sds))?;
    Ok((path, sds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BootstrapSpec {
        BootstrapSpec {
            node_id: "sidecar~127.0.0.13~cart-v1.shop~shop.svc.cluster.local".into(),
            node_cluster: "cart.shop".into(),
            node_metadata: [("SERVICE_ACCOUNT".to_string(), "cart".to_string())].into(),
            admin: "127.0.0.1:15000".parse().unwrap(),
            xds: "127.0.0.1:15010".parse().unwrap(),
            xds_server_san: ServerSan::Uri(
                "spiffe://cluster.local/ns/trellis-system/sa/trellis".into(),
            ),
            cert_dir: "/state/certs/shop/cart".into(),
            out_dir: "/state/bootstrap/shop/cart-v1".into(),
        }
    }

    #[test]
    fn bootstrap_points_sds_at_the_cert_dir_and_ads_at_xds() {
        let s = spec();
        let sds = SdsFiles::in_dir(&s.out_dir);
        let b = bootstrap(&s, &sds);
        assert_eq!(b["node"]["id"], s.node_id);
        assert_eq!(b["node"]["metadata"]["SERVICE_ACCOUNT"], "cart");
        // Regexes past Envoy's default RE2 program size (100) are accepted.
        assert_eq!(
            b["layered_runtime"]["layers"][0]["static_layer"]["re2.max_program_size.error_level"],
            32_768
        );
        assert_eq!(b["layered_runtime"]["layers"][1]["admin_layer"], json!({}));
        assert_eq!(
            b["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
                [0]["endpoint"]["address"]["socket_address"]["port_value"],
            15010
        );
        let tls = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            tls["tls_certificate_sds_secret_configs"][0]["sds_config"]["path_config_source"]["path"],
            "/state/bootstrap/shop/cart-v1/sds-workload-cert.json"
        );
        let cert = workload_cert_sds(&s.cert_dir);
        assert_eq!(
            cert["resources"][0]["tls_certificate"]["watched_directory"]["path"],
            "/state/certs/shop/cart"
        );
        assert_eq!(
            root_ca_sds(&s.cert_dir)["resources"][0]["validation_context"]["trusted_ca"]["filename"],
            "/state/certs/shop/cart/root-cert.pem"
        );
    }
}
