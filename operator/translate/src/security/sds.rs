//! SDS references for the workload certificate and the trust bundle.
//!
//! Secrets are referenced by name, as Istio names them: the workload
//! certificate `default` and the trust bundle `ROOTCA`. Where they come from is
//! the caller's choice: file-based SDS (Kubernetes secret volume or the
//! universal-mode state directory, one Secret per file) or ADS.
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, PathConfigSource,
    WatchedDirectory, config_source::ConfigSourceSpecifier, data_source::Specifier,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, SdsSecretConfig, Secret, TlsCertificate, secret,
};

/// Secret name of the workload certificate and key.
pub const WORKLOAD_CERT_SECRET: &str = "default";
/// Secret name of the trust bundle (root certificates).
pub const TRUST_BUNDLE_SECRET: &str = "ROOTCA";

/// Where a proxy gets its two secrets from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdsSource {
    /// File-based SDS: each secret is its own SDS file (Envoy accepts one Secret
    /// per file); `watched_directory` makes Envoy reload when a mounted volume swaps.
    Files {
        workload_cert_file: String,
        trust_bundle_file: String,
        watched_directory: Option<String>,
    },
    /// Secrets over the aggregated xDS stream.
    Ads,
}

impl SdsSource {
    fn config_source(&self, file: impl FnOnce(&str, &str) -> String) -> ConfigSource {
        let specifier = match self {
            SdsSource::Files {
                workload_cert_file,
                trust_bundle_file,
                watched_directory,
            } => ConfigSourceSpecifier::PathConfigSource(PathConfigSource {
                path: file(workload_cert_file, trust_bundle_file),
                watched_directory: watched_directory.as_ref().map(|path| WatchedDirectory {
                    path: path.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            SdsSource::Ads => ConfigSourceSpecifier::Ads(AggregatedConfigSource {}),
        };
        ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(specifier),
            ..Default::default()
        }
    }

    /// Reference to the workload certificate secret.
    pub fn workload_cert(&self) -> SdsSecretConfig {
        SdsSecretConfig {
            name: WORKLOAD_CERT_SECRET.to_string(),
            sds_config: Some(self.config_source(|cert, _| cert.to_string())),
        }
    }

    /// Reference to the trust bundle secret.
    pub fn trust_bundle(&self) -> SdsSecretConfig {
        SdsSecretConfig {
            name: TRUST_BUNDLE_SECRET.to_string(),
            sds_config: Some(self.config_source(|_, bundle| bundle.to_string())),
        }
    }
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

/// The `default` Secret that a file-SDS file holds: certificate chain and key by path.
pub fn workload_cert_secret(
    cert_chain_path: &str,
    key_path: &str,
    watched_directory: Option<&str>,
) -> Secret {
    Secret {
        name: WORKLOAD_CERT_SECRET.to_string(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(file(cert_chain_path)),
            private_key: Some(file(key_path)),
            watched_directory: watched_directory.map(|p| WatchedDirectory {
                path: p.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// The `ROOTCA` Secret that a file-SDS file holds: the trust bundle by path.
pub fn trust_bundle_secret(root_cert_path: &str, watched_directory: Option<&str>) -> Secret {
    Secret {
        name: TRUST_BUNDLE_SECRET.to_string(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(file(root_cert_path)),
                watched_directory: watched_directory.map(|p| WatchedDirectory {
                    path: p.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_source_points_each_secret_at_its_own_file() {
        let source = SdsSource::Files {
            workload_cert_file: "/etc/sds/cert.yaml".into(),
            trust_bundle_file: "/etc/sds/root.yaml".into(),
            watched_directory: Some("/etc/certs".into()),
        };
        let cert = source.workload_cert();
        assert_eq!(cert.name, "default");
        let Some(ConfigSourceSpecifier::PathConfigSource(p)) =
            cert.sds_config.unwrap().config_source_specifier
        else {
            panic!("expected a path config source");
        };
        assert_eq!(p.path, "/etc/sds/cert.yaml");
        assert_eq!(p.watched_directory.unwrap().path, "/etc/certs");
        let bundle = source.trust_bundle();
        assert_eq!(bundle.name, "ROOTCA");
        let Some(ConfigSourceSpecifier::PathConfigSource(p)) =
            bundle.sds_config.unwrap().config_source_specifier
        else {
            panic!("expected a path config source");
        };
        assert_eq!(p.path, "/etc/sds/root.yaml");
    }

    #[test]
    fn ads_source_uses_ads() {
        let cfg = SdsSource::Ads.workload_cert().sds_config.unwrap();
        assert_eq!(cfg.resource_api_version, ApiVersion::V3 as i32);
        assert!(matches!(
            cfg.config_source_specifier,
            Some(ConfigSourceSpecifier::Ads(_))
        ));
    }

    #[test]
    fn secrets_reference_files() {
        let s = workload_cert_secret("/c/cert-chain.pem", "/c/key.pem", Some("/c"));
        let Some(secret::Type::TlsCertificate(t)) = s.r#type else {
            panic!("tls certificate expected");
        };
        assert_eq!(
            t.private_key.unwrap().specifier,
            Some(Specifier::Filename("/c/key.pem".into()))
        );
        let b = trust_bundle_secret("/c/root-cert.pem", None);
        assert_eq!(b.name, "ROOTCA");
    }
}
