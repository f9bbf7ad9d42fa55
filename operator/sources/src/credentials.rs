//! Credentials: the TLS material a Gateway server or a DestinationRule's TLS
//! origination names by `credentialName`, read from Kubernetes Secrets of the
//! proxy's namespace and served to that proxy over SDS as
//! `kubernetes://<namespace>/<name>`, as Istio does. Pure: Secrets in, SDS
//! resources out.
//!
//! A Secret holds a credential in Istio's two shapes: `kubernetes.io/tls`
//! (`tls.crt`, `tls.key`, optionally `ca.crt`) or generic (`cert`, `key`,
//! optionally `cacert`). For MUTUAL the client CA is `<name>-cacert`: the
//! Secret of that name (`ca.crt` or `cacert`), else the CA key of Secret
//! `<name>` itself.
//!
//! Key material never reaches logs or errors: [`Credential`]'s `Debug` names
//! the parts present, not their bytes.
use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret as SdsSecret, TlsCertificate, secret,
};
use k8s_openapi::api::core::v1::Secret;

use crate::feed::NsName;

pub use trellis_translate::credential_uses::{CA_SUFFIX, serves};

/// The field selector of the Secrets watch: neither service account tokens
/// nor Helm releases can hold a credential, and the control plane's own
/// namespace (the CA key) is never read.
pub fn watch_field_selector(control_plane_namespace: &str) -> String {
    format!(
        "type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1,\
         metadata.namespace!={control_plane_namespace}"
    )
}

/// The parts of a Secret a Gateway can use.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    cert_chain: Option<Vec<u8>>,
    private_key: Option<Vec<u8>>,
    ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("cert_chain", &self.cert_chain.is_some())
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "[redacted]"),
            )
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

/// Every credential the cluster holds, by namespace and Secret name.
pub type Credentials = BTreeMap<NsName, Arc<Credential>>;

impl Credential {
    /// The credential in `secret`, or `None` when it has none of the keys a
    /// credential is read from (most Secrets).
    pub fn from_secret(secret: &Secret) -> Option<Credential> {
        let data = secret.data.as_ref()?;
        let first = |keys: [&str; 2]| {
            keys.iter()
                .find_map(|k| data.get(*k))
                .map(|v| v.0.clone())
                .filter(|v| !v.is_empty())
        };
        let credential = Credential {
            cert_chain: first(["tls.crt", "cert"]),
            private_key: first(["tls.key", "key"]),
            ca: first(["ca.crt", "cacert"]),
        };
        (credential.cert_chain.is_some()
            || credential.private_key.is_some()
            || credential.ca.is_some())
        .then_some(credential)
    }
}

/// The SDS resource `sds_name` for the credential reference `namespace/name`
/// (`name` ends in [`CA_SUFFIX`] for the client CA), or why it cannot be served.
pub fn sds_secret(
    credentials: &Credentials,
    namespace: &str,
    name: &str,
    sds_name: &str,
) -> Result<SdsSecret, String> {
    let get = |name: &str| credentials.get(&(namespace.to_string(), name.to_string()));
    let inline = |bytes: &[u8]| DataSource {
        specifier: Some(Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    };
    let kind = if let Some(base) = name.strip_suffix(CA_SUFFIX) {
        let ca = get(name)
            .and_then(|c| c.ca.as_ref())
            .or_else(|| get(base).and_then(|c| c.ca.as_ref()))
            .ok_or_else(|| {
                format!(
                    "no client CA: neither Secret {namespace}/{name} nor Secret \
                     {namespace}/{base} has ca.crt or cacert"
                )
            })?;
        secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(inline(ca)),
            ..Default::default()
        })
    } else {
        let c = get(name).ok_or_else(|| {
            format!("Secret {namespace}/{name} does not exist or holds no credential")
        })?;
        let (Some(chain), Some(key)) = (&c.cert_chain, &c.private_key) else {
            return Err(format!(
                "Secret {namespace}/{name} needs a certificate (tls.crt or cert) and a \
                 private key (tls.key or key)"
            ));
        };
        secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(chain)),
            private_key: Some(inline(key)),
            ..Default::default()
        })
    };
    Ok(SdsSecret {
        name: sds_name.to_string(),
        r#type: Some(kind),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use proptest::prelude::*;

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn store(entries: &[(&str, &[(&str, &str)])]) -> Credentials {
        entries
            .iter()
            .filter_map(|(name, data)| {
                let c = Credential::from_secret(&secret(data))?;
                Some((("shop".to_string(), name.to_string()), Arc::new(c)))
            })
            .collect()
    }

    fn bytes(d: &Option<DataSource>) -> String {
        match d.as_ref().and_then(|d| d.specifier.as_ref()) {
            Some(Specifier::InlineBytes(b)) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("not inline bytes: {other:?}"),
        }
    }

    fn tls(s: &SdsSecret) -> (String, String) {
        match &s.r#type {
            Some(secret::Type::TlsCertificate(t)) => {
                (bytes(&t.certificate_chain), bytes(&t.private_key))
            }
            other => panic!("not a certificate: {other:?}"),
        }
    }

    fn ca(s: &SdsSecret) -> String {
        match &s.r#type {
            Some(secret::Type::ValidationContext(v)) => bytes(&v.trusted_ca),
            other => panic!("not a validation context: {other:?}"),
        }
    }

    #[test]
    fn both_secret_shapes_give_a_certificate_and_a_client_ca() {
        let creds = store(&[
            (
                "tls",
                &[("tls.crt", "C1"), ("tls.key", "K1"), ("ca.crt", "CA1")],
            ),
            ("generic", &[("cert", "C2"), ("key", "K2")]),
            ("generic-cacert", &[("cacert", "CA2")]),
            ("opaque", &[("password", "hunter2")]),
        ]);
        assert!(!creds.contains_key(&("shop".into(), "opaque".into())));
        let get =
            |name: &str| sds_secret(&creds, "shop", name, &format!("kubernetes://shop/{name}"));
        let s = get("tls").unwrap();
        assert_eq!(s.name, "kubernetes://shop/tls");
        assert_eq!(tls(&s), ("C1".into(), "K1".into()));
        assert_eq!(tls(&get("generic").unwrap()), ("C2".into(), "K2".into()));
        // the CA: from the -cacert Secret, else from the credential's own ca key
        assert_eq!(ca(&get("generic-cacert").unwrap()), "CA2");
        assert_eq!(ca(&get("tls-cacert").unwrap()), "CA1");
        assert!(get("missing").unwrap_err().contains("shop/missing"));
        assert!(get("opaque-cacert").is_err());
        let other_namespace = sds_secret(&creds, "other", "tls", "kubernetes://other/tls");
        assert!(
            other_namespace.is_err(),
            "a credential serves its own namespace only"
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_not_served_and_keys_stay_out_of_text() {
        let creds = store(&[
            ("half", &[("tls.crt", "C")]),
            ("full", &[("tls.crt", "C"), ("tls.key", "SECRETKEY")]),
        ]);
        let e = sds_secret(&creds, "shop", "half", "kubernetes://shop/half").unwrap_err();
        assert!(e.contains("private key"), "{e}");
        let debug = format!("{creds:?}");
        assert!(
            !debug.contains("SECRETKEY") && debug.contains("[redacted]"),
            "{debug}"
        );
    }

    #[test]
    fn a_credential_serves_its_name_and_its_ca_name() {
        assert!(serves("web", "web") && serves("web", "web-cacert"));
        assert!(!serves("web", "web-other") && !serves("web-cacert", "web"));
    }

    proptest! {
        /// Any Secret data: reading it never panics, and whatever is served
        /// comes from the Secret's own bytes.
        #[test]
        fn any_secret_reads_without_panic(data in proptest::collection::btree_map(
            "(tls\\.crt|tls\\.key|ca\\.crt|cert|key|cacert|other)", "[a-z]{0,8}", 0..6),
            name in "(web|web-cacert)") {
            let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let creds = store(&[("web", &data), ("web-cacert", &data)]);
            if let Ok(s) = sds_secret(&creds, "shop", &name, "n") {
                let served = match &s.r#type {
                    Some(secret::Type::TlsCertificate(t)) => bytes(&t.certificate_chain),
                    _ => ca(&s),
                };
                prop_assert!(data.iter().any(|(_, v)| *v == served));
            }
        }
    }
}
