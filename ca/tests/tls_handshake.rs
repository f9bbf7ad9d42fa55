//! Real TLS 1.3 mutual authentication with rustls between identities issued by the
//! CA (in memory, no sockets). Chains are validated by webpki, then the peer's SPIFFE
//! id is checked against the expected trust domain: the handshake succeeds between
//! two workloads of one mesh, and fails for another trust domain, an expired
//! certificate, or a root the peer does not trust.

mod common;

use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    ClientConnection, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConnection,
    SignatureScheme,
};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::SystemTime;
use trellis_ca::{CertificateInfo, IssuedIdentity, KeyAlgorithm, TrustBundle};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(bundle_pem: &str) -> Arc<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        store.add(cert.unwrap()).unwrap();
    }
    Arc::new(store)
}

fn chain(identity: &IssuedIdentity) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(identity.cert_chain_pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

fn key(identity: &IssuedIdentity) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(identity.key_pem.expose().as_bytes()).unwrap()
}

/// The SPIFFE check both sides run after webpki accepted the chain.
fn check_peer_spiffe_id(
    leaf: &CertificateDer<'_>,
    trust_domain: &str,
) -> Result<(), rustls::Error> {
    let info = CertificateInfo::from_der("peer", leaf)
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let id = info
        .spiffe_id()
        .ok_or_else(|| rustls::Error::General("peer has no SPIFFE id".into()))?;
    if id.trust_domain().as_str() != trust_domain {
        return Err(rustls::Error::General(format!(
            "peer {id} is not in trust domain {trust_domain}"
        )));
    }
    Ok(())
}

#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    trust_domain: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        check_peer_spiffe_id(end_entity, &self.trust_domain)?;
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_peer_spiffe_id(end_entity, &self.trust_domain)?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Runs an mTLS handshake plus one request/response; `Err` names the side that refused.
fn mtls(
    client_id: &IssuedIdentity,
    server_id: &IssuedIdentity,
    trust_domain: &str,
) -> Result<String, String> {
    let provider = provider();
    let server_roots = roots(&server_id.root_cert_pem);
    let inner = WebPkiClientVerifier::builder_with_provider(server_roots, provider.clone())
        .build()
        .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier {
            inner,
            trust_domain: trust_domain.to_string(),
        }))
        .with_single_cert(chain(server_id), key(server_id))
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
            roots: roots(&client_id.root_cert_pem),
            trust_domain: trust_domain.to_string(),
            algorithms: provider.signature_verification_algorithms,
        }))
        .with_client_auth_cert(chain(client_id), key(client_id))
        .unwrap();
    let mut client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("workload").unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    client.writer().write_all(b"ping").unwrap();
    let mut received = Vec::new();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server
                .process_new_packets()
                .map_err(|e| format!("server refused: {e}"))?;
            let _ = server.reader().read_to_end(&mut received);
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client
                .process_new_packets()
                .map_err(|e| format!("client refused: {e}"))?;
        }
        if !received.is_empty() {
            let peer = server.peer_certificates().unwrap()[0].clone();
            let id = CertificateInfo::from_der("client", &peer)
                .unwrap()
                .spiffe_id()
                .unwrap();
            assert_eq!(received, b"ping");
            return Ok(id.to_string());
        }
    }
    Err("handshake did not complete".into())
}

#[test]
fn two_workloads_of_one_mesh_authenticate_each_other() {
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let web = ca
        .issue_for_service_account("shop", "web", DAY, now())
        .unwrap();
    let cart = ca
        .issue_for_service_account("shop", "cart", DAY, now())
        .unwrap();
    assert_eq!(
        mtls(&web, &cart, "cluster.local").unwrap(),
        "spiffe://cluster.local/ns/shop/sa/web"
    );
}

#[test]
fn plugged_in_rsa_intermediate_chain_works_in_tls() {
    let dir = tempfile::tempdir().unwrap();
    openssl_cacerts(dir.path(), "rsa");
    let (cert, key_pem, chain_pem, root) = (
        read(dir.path(), "ca-cert.pem"),
        read(dir.path(), "ca-key.pem"),
        read(dir.path(), "cert-chain.pem"),
        read(dir.path(), "root-cert.pem"),
    );
    let files = trellis_ca::CaFiles {
        ca_cert: &cert,
        ca_key: &key_pem,
        cert_chain: &chain_pem,
        root_cert: &root,
    };
    let ca =
        trellis_ca::CertificateAuthority::from_cacerts(td("cluster.local"), files, now(), rng())
            .unwrap();
    let a = ca.issue_for_service_account("a", "a", DAY, now()).unwrap();
    let b = ca.issue_for_service_account("b", "b", DAY, now()).unwrap();
    assert_eq!(
        mtls(&a, &b, "cluster.local").unwrap(),
        "spiffe://cluster.local/ns/a/sa/a"
    );
}

#[test]
fn peer_from_another_trust_domain_is_refused() {
    let ours = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let theirs = self_signed("other.org", KeyAlgorithm::EcdsaP256, now());
    // Both roots trusted, so only the SPIFFE trust-domain check can refuse.
    let both = TrustBundle::new(
        ours.own_roots()
            .roots()
            .iter()
            .chain(theirs.own_roots().roots())
            .cloned(),
    );
    let mut local = ours
        .issue_for_service_account("shop", "web", DAY, now())
        .unwrap();
    let mut foreign = theirs
        .issue_for_service_account("shop", "web", DAY, now())
        .unwrap();
    local.root_cert_pem = both.to_pem();
    foreign.root_cert_pem = both.to_pem();
    let err = mtls(&foreign, &local, "cluster.local").unwrap_err();
    assert!(
        err.starts_with("server refused") && err.contains("not in trust domain cluster.local"),
        "{err}"
    );
    let err = mtls(&local, &foreign, "cluster.local").unwrap_err();
    assert!(
        err.starts_with("client refused") && err.contains("not in trust domain cluster.local"),
        "{err}"
    );
}

#[test]
fn expired_certificate_is_refused() {
    let long_ago = SystemTime::now() - 10 * DAY;
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, long_ago);
    let expired = ca
        .issue_for_service_account("shop", "web", DAY, SystemTime::now() - 3 * DAY)
        .unwrap();
    let fresh = ca
        .issue_for_service_account("shop", "cart", DAY, now())
        .unwrap();
    let err = mtls(&expired, &fresh, "cluster.local").unwrap_err();
    assert!(
        err.starts_with("server refused") && err.to_lowercase().contains("expired"),
        "{err}"
    );
    let err = mtls(&fresh, &expired, "cluster.local").unwrap_err();
    assert!(
        err.starts_with("client refused") && err.to_lowercase().contains("expired"),
        "{err}"
    );
}

#[test]
fn certificate_from_an_untrusted_root_is_refused() {
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let impostor_ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let good = ca
        .issue_for_service_account("shop", "web", DAY, now())
        .unwrap();
    let mut impostor = impostor_ca
        .issue_for_service_account("shop", "cart", DAY, now())
        .unwrap();
    // The impostor trusts our root, so the refusal comes from our server.
    impostor.root_cert_pem.push_str(&good.root_cert_pem);
    let err = mtls(&impostor, &good, "cluster.local").unwrap_err();
    assert!(
        err.starts_with("server refused") && err.contains("UnknownIssuer"),
        "{err}"
    );
    let err = mtls(&good, &impostor, "cluster.local").unwrap_err();
    assert!(
        err.starts_with("client refused") && err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[test]
fn old_root_and_new_root_workloads_talk_during_rotation_overlap() {
    let old_ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let mut new_ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let rotation = trellis_ca::RootRotation::new(old_ca.root().clone())
        .begin(new_ca.root().clone(), now())
        .unwrap();
    new_ca.set_distributed_roots(&rotation.trust_bundle());
    let mut old = old_ca
        .issue_for_service_account("shop", "old", DAY, now())
        .unwrap();
    let new = new_ca
        .issue_for_service_account("shop", "new", DAY, now())
        .unwrap();
    // Before the overlap bundle reaches the old workload, it refuses the new one.
    assert!(mtls(&old, &new, "cluster.local").is_err());
    // Old workloads receive the overlap bundle (root-cert.pem update) while keeping their cert.
    old.root_cert_pem = rotation.trust_bundle().to_pem();
    assert_eq!(
        mtls(&old, &new, "cluster.local").unwrap(),
        "spiffe://cluster.local/ns/shop/sa/old"
    );
    assert_eq!(
        mtls(&new, &old, "cluster.local").unwrap(),
        "spiffe://cluster.local/ns/shop/sa/new"
    );
    // After the rotation finishes, the old root is gone from the bundle: old certs are refused.
    let done = rotation
        .observe(&[], now())
        .finish(now() + DAY, DAY)
        .unwrap();
    let mut fresh = new_ca
        .issue_for_service_account("shop", "fresh", DAY, now())
        .unwrap();
    fresh.root_cert_pem = done.trust_bundle().to_pem();
    assert!(
        mtls(&old, &fresh, "cluster.local")
            .unwrap_err()
            .starts_with("server refused")
    );
}
