//! Gateway servers that terminate TLS beyond SIMPLE and MUTUAL, on real
//! Envoy configured by the translator: an ISTIO_MUTUAL HTTPS server (the
//! gateway presents its own mesh identity and admits only clients with a
//! certificate from the mesh root); TLS servers that terminate SIMPLE or
//! ISTIO_MUTUAL and carry the decrypted bytes by their `tcp` route to a
//! plaintext backend; an OPTIONAL_MUTUAL server; plus the golden bootstrap of
//! a gateway with all of them. Clients are `openssl s_client`; everything on
//! 127.0.0.0/8.
mod mesh_fixtures;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use mesh_fixtures::*;
use trellis_e2e::golden::check_golden;
use trellis_e2e::mesh::{Identity, relative_file_sds, test_ca, write_sds_file};
use trellis_e2e::openssl::{openssl, revocation_list, self_signed_ca, signed_by};
use trellis_e2e::static_bootstrap::{SecretFiles, static_bootstrap};
use trellis_e2e::{
    TlsClient, Upstream, free_ports_on, self_signed, tls_exchange, validate_bootstrap_in,
};
use trellis_model::MeshSettings;
use trellis_translate::security::sds::{trust_bundle_secret, workload_cert_secret};
use trellis_translate::{ListenerShape, Proxy, TranslateOptions, Translator};

const GW_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 170);

/// A client of `api.example.com` trusting the mesh root `ca` (the gateway's
/// mesh certificate names no host), presenting `client`.
fn as_client<'a>(ca: &'a Path, client: Option<(&'a Path, &'a Path)>) -> TlsClient<'a> {
    TlsClient {
        sni: "api.example.com",
        ca,
        verify_hostname: false,
        client,
    }
}

/// A mesh certificate of `shop/client` and its key, as `dir/client.pem` and
/// `dir/client-key.pem`.
fn write_mesh_client(ca: &trellis_ca::CertificateAuthority, dir: &Path) {
    let client = ca
        .issue_for_service_account(
            "shop",
            "client",
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    std::fs::write(dir.join("client.pem"), &client.cert_chain_pem).unwrap();
    std::fs::write(dir.join("client-key.pem"), client.key_pem.expose()).unwrap();
}

/// `GET /` for `host`, closing after the answer.
fn get(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// An ISTIO_MUTUAL HTTPS server: the gateway presents its workload
/// certificate (verified against the mesh root), a client presenting a
/// mesh-issued certificate is routed, one without a certificate or with a
/// certificate from elsewhere is refused in the handshake and reaches nothing.
#[test]
fn istio_mutual_https_server_admits_only_mesh_clients_on_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    write_mesh_client(&ca, d);
    // A certificate no mesh root signed.
    self_signed(d, "rogue-key.pem", "rogue.pem", "/CN=rogue", &[]);

    let api = Upstream::echo("api-app", Ipv4Addr::new(127, 0, 0, 171));
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let mut resources = behind_gateway("api", &api, ("http", 80), "[api.example.com]", "http");
    resources.extend([
            ingress_workload(GW_IP),
            one_server_gateway(&format!(
                "{{port: {{number: {gw_port}, name: https-mesh, protocol: HTTPS}}, hosts: [api.example.com], tls: {{mode: ISTIO_MUTUAL}}}}"
            )),
    ]);
    let envoy = start_gateway(GW_IP, d, &gw_id, resources);
    let at = SocketAddr::from((GW_IP, gw_port));
    let root = gw_id.dir.join("root-cert.pem");
    let (cert, key) = (d.join("client.pem"), d.join("client-key.pem"));
    let answer = tls_exchange(
        at,
        &as_client(&root, Some((&cert, &key))),
        &get("api.example.com"),
    )
    .unwrap_or_else(|e| panic!("mesh client refused: {e}\n{}", envoy.log()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-upstream: api-app"), "{answer}");
    assert_eq!(api.hits(), 1);
    // The backend learns the client from the gateway: its certificate's URI.
    assert!(
        answer.contains("URI=spiffe://cluster.local/ns/shop/sa/client"),
        "no x-forwarded-client-cert naming the client: {answer}"
    );

    let refused = |r: Result<String, String>| match r {
        Ok(text) | Err(text) => !text.contains("x-upstream"),
    };
    let stat = |name: &str| format!("listener.{GW_IP}_{gw_port}.ssl.{name}");
    let r = tls_exchange(at, &as_client(&root, None), &get("api.example.com"));
    assert!(refused(r.clone()), "no client certificate, answered: {r:?}");
    assert!(envoy.wait_stat(&stat("fail_verify_no_cert"), 1) >= 1);

    let (cert, key) = (d.join("rogue.pem"), d.join("rogue-key.pem"));
    let r = tls_exchange(
        at,
        &as_client(&root, Some((&cert, &key))),
        &get("api.example.com"),
    );
    assert!(
        refused(r.clone()),
        "a certificate from elsewhere, answered: {r:?}"
    );
    assert!(envoy.wait_stat(&stat("fail_verify_error"), 1) >= 1);
    assert_eq!(api.hits(), 1, "a refused client reached the backend");
}

/// A TLS server terminating SIMPLE TLS: the client checks the server's
/// certificate for the SNI name, and the plaintext backend behind the
/// gateway's `tcp` route gets the decrypted bytes (an HTTP request it parses
/// and answers). A name the server does not serve gets no connection.
#[test]
fn tls_server_terminates_simple_tls_and_carries_tcp_on_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    let issued = ca
        .issue_server_cert(
            &["ledger.example.com".to_string()],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    std::fs::write(d.join("ledger.pem"), &issued.cert_chain_pem).unwrap();
    std::fs::write(d.join("ledger-key.pem"), issued.key_pem.expose()).unwrap();
    std::fs::write(d.join("root.pem"), &issued.root_cert_pem).unwrap();

    let ledger = Upstream::echo("ledger-app", Ipv4Addr::new(127, 0, 0, 172));
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let mut resources = behind_gateway(
        "ledger",
        &ledger,
        ("tcp", 7000),
        "[ledger.example.com]",
        "tcp",
    );
    resources.extend([
            ingress_workload(GW_IP),
            one_server_gateway(&format!(
                "{{port: {{number: {gw_port}, name: tls-ledger, protocol: TLS}}, hosts: [ledger.example.com], \
                 tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}}}",
                d.join("ledger.pem").display(),
                d.join("ledger-key.pem").display()
            )),
    ]);
    let envoy = start_gateway(GW_IP, d, &gw_id, resources);
    let at = SocketAddr::from((GW_IP, gw_port));
    let root = d.join("root.pem");
    let client = |sni| TlsClient {
        sni,
        ca: &root,
        verify_hostname: true,
        client: None,
    };
    let answer = tls_exchange(
        at,
        &client("ledger.example.com"),
        &get("ledger.example.com"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-upstream: ledger-app"), "{answer}");
    assert!(
        answer.contains("\"host\":\"ledger.example.com\""),
        "the backend read the request in the clear: {answer}"
    );
    assert_eq!(ledger.hits(), 1);
    assert!(envoy.stat(&format!("listener.{GW_IP}_{gw_port}.ssl.handshake")) >= 1);

    let other = tls_exchange(at, &client("other.example.com"), &get("other.example.com"));
    assert!(other.is_err(), "a name no server serves: {other:?}");
    assert_eq!(ledger.hits(), 1);
}

/// A TLS server terminating ISTIO_MUTUAL: a client with a mesh certificate
/// gets its bytes, decrypted, to the `tcp` route's backend; a client without
/// one reaches nothing.
#[test]
fn istio_mutual_tls_server_carries_tcp_for_mesh_clients_on_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    write_mesh_client(&ca, d);

    let vault = Upstream::echo("vault-app", Ipv4Addr::new(127, 0, 0, 174));
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let mut resources =
        behind_gateway("vault", &vault, ("tcp", 7000), "[vault.example.com]", "tcp");
    resources.extend([
            ingress_workload(GW_IP),
            one_server_gateway(&format!(
                "{{port: {{number: {gw_port}, name: tls-vault, protocol: TLS}}, hosts: [vault.example.com], tls: {{mode: ISTIO_MUTUAL}}}}"
            )),
    ]);
    let envoy = start_gateway(GW_IP, d, &gw_id, resources);
    let at = SocketAddr::from((GW_IP, gw_port));
    let root = gw_id.dir.join("root-cert.pem");
    let who = |client| TlsClient {
        sni: "vault.example.com",
        ca: &root,
        verify_hostname: false,
        client,
    };
    let (cert, key) = (d.join("client.pem"), d.join("client-key.pem"));
    let answer = tls_exchange(at, &who(Some((&cert, &key))), &get("vault.example.com"))
        .unwrap_or_else(|e| panic!("mesh client refused: {e}\n{}", envoy.log()));
    assert!(answer.contains("x-upstream: vault-app"), "{answer}");
    assert_eq!(vault.hits(), 1);
    let r = tls_exchange(at, &who(None), &get("vault.example.com"));
    let answered = match &r {
        Ok(text) | Err(text) => text.contains("x-upstream"),
    };
    assert!(!answered, "no client certificate, answered: {r:?}");
    assert!(
        envoy.wait_stat(
            &format!("listener.{GW_IP}_{gw_port}.ssl.fail_verify_no_cert"),
            1
        ) >= 1
    );
    assert_eq!(vault.hits(), 1, "a refused client reached the backend");
}

/// An OPTIONAL_MUTUAL HTTPS server (certificate files, the mesh root as
/// client CA): a client without a certificate is served, so is one with a
/// certificate from that CA, and one whose certificate the CA did not sign is
/// refused in the handshake.
#[test]
fn optional_mutual_https_server_checks_only_presented_certificates_on_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    let now = SystemTime::now();
    let server = ca
        .issue_server_cert(
            &["api.example.com".to_string()],
            Duration::from_secs(3600),
            now,
        )
        .unwrap();
    std::fs::write(d.join("server.pem"), &server.cert_chain_pem).unwrap();
    std::fs::write(d.join("server-key.pem"), server.key_pem.expose()).unwrap();
    std::fs::write(d.join("root.pem"), &server.root_cert_pem).unwrap();
    write_mesh_client(&ca, d);
    self_signed(d, "rogue-key.pem", "rogue.pem", "/CN=rogue", &[]);

    let api = Upstream::echo("api-app", Ipv4Addr::new(127, 0, 0, 173));
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let file = |n: &str| d.join(n).display().to_string();
    let mut resources = behind_gateway("api", &api, ("http", 80), "[api.example.com]", "http");
    resources.extend([
            ingress_workload(GW_IP),
            one_server_gateway(&format!(
                "{{port: {{number: {gw_port}, name: https-opt, protocol: HTTPS}}, hosts: [api.example.com], \
                 tls: {{mode: OPTIONAL_MUTUAL, serverCertificate: {}, privateKey: {}, caCertificates: {}}}}}",
                file("server.pem"),
                file("server-key.pem"),
                file("root.pem")
            )),
    ]);
    let envoy = start_gateway(GW_IP, d, &gw_id, resources);
    let at = SocketAddr::from((GW_IP, gw_port));
    let root = d.join("root.pem");
    let exchange = |client: Option<(&Path, &Path)>| {
        let who = TlsClient {
            sni: "api.example.com",
            ca: &root,
            verify_hostname: true,
            client,
        };
        tls_exchange(at, &who, &get("api.example.com"))
    };
    let answer = exchange(None).unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    assert!(answer.contains("x-upstream: api-app"), "{answer}");
    let (cert, key) = (d.join("client.pem"), d.join("client-key.pem"));
    let answer = exchange(Some((&cert, &key))).unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    assert!(answer.contains("x-upstream: api-app"), "{answer}");
    assert_eq!(api.hits(), 2);
    let (cert, key) = (d.join("rogue.pem"), d.join("rogue-key.pem"));
    let r = exchange(Some((&cert, &key)));
    let answered = match &r {
        Ok(text) | Err(text) => text.contains("x-upstream"),
    };
    assert!(!answered, "an unverifiable certificate was served: {r:?}");
    assert!(
        envoy.wait_stat(
            &format!("listener.{GW_IP}_{gw_port}.ssl.fail_verify_error"),
            1
        ) >= 1
    );
    assert_eq!(api.hits(), 2);
}

/// The golden bootstrap of a gateway (Kubernetes listener shape) with an
/// ISTIO_MUTUAL and an OPTIONAL_MUTUAL HTTPS server (its client certificates
/// pinned by hash and SPKI next to the credential's CA), and TLS servers that
/// terminate SIMPLE and ISTIO_MUTUAL before their `tcp` route; Envoy
/// validates it with the gateway's identity and the credentials written
/// where the golden file names them.
#[test]
fn golden_gateway_tls_termination_bootstrap() {
    let gateway = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-mesh, protocol: HTTPS}
    hosts: [mesh.example.com]
    tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/shop/sa/client]}
  - port: {number: 443, name: https-partners, protocol: HTTPS}
    hosts: [partners.example.com]
    tls:
      mode: OPTIONAL_MUTUAL
      credentialName: partners-cert
      verifyCertificateHash: ["DF:6F:F7:2F:E9:11:65:21:26:8F:65:90:DD:4A:B9:75:5E:1D:BB:2C:9C:3F:2B:D5:FA:9C:A2:F8:A8:2B:CC:CB"]
      verifyCertificateSpki: ["2Xy+aHR1gD0mRUmcvQbbvcUx0XUcsjsV6kLPK5I4Ogo="]
  - port: {number: 9443, name: tls-ledger, protocol: TLS}
    hosts: [ledger.example.com]
    tls: {mode: SIMPLE, serverCertificate: credentials/ledger.pem, privateKey: credentials/ledger-key.pem, minProtocolVersion: TLSV1_3}
  - port: {number: 9443, name: tls-vault, protocol: TLS}
    hosts: [vault.example.com]
    tls: {mode: ISTIO_MUTUAL}
"#;
    let resources = vec![
        service("shop", "api", "api", &[("http", 80, 8080)]),
        service("shop", "ledger", "ledger", &[("tcp", 7000, 7000)]),
        workload("shop", "api-1", "10.244.0.11", &[("app", "api")], false),
        workload(
            "shop",
            "ledger-1",
            "10.244.0.12",
            &[("app", "ledger")],
            false,
        ),
        workload(
            "shop",
            "ingress-1",
            "10.244.0.10",
            &[("istio", "ingressgateway")],
            true,
        ),
        object(gateway),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [mesh.example.com, partners.example.com]
  gateways: [shop-gw]
  http:
  - route: [{destination: {host: api}}]
"#,
        ),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ledger, namespace: shop}
spec:
  hosts: [ledger.example.com, vault.example.com]
  gateways: [shop-gw]
  tcp:
  - route: [{destination: {host: ledger}}]
"#,
        ),
    ];
    let model = model_of(MeshSettings::default(), resources);
    let options = TranslateOptions {
        shape: ListenerShape::Interception,
        sds: relative_file_sds("etc/certs"),
    };
    let out = Translator::new(&model, options).translate(&Proxy::gateway("shop", "ingress-1"));
    assert!(out.errors.is_empty(), "{:?}", out.errors);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let creds = d.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    let issued = ca
        .issue_server_cert(
            &[
                "partners.example.com".to_string(),
                "ledger.example.com".to_string(),
            ],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    for name in ["partners", "ledger"] {
        std::fs::write(creds.join(format!("{name}.pem")), &issued.cert_chain_pem).unwrap();
        std::fs::write(
            creds.join(format!("{name}-key.pem")),
            issued.key_pem.expose(),
        )
        .unwrap();
    }
    std::fs::write(creds.join("root.pem"), &issued.root_cert_pem).unwrap();
    // partners-cert over SDS, named as the golden file names them (relative).
    let mut files = SecretFiles::new();
    let mut cert = workload_cert_secret(
        "credentials/partners.pem",
        "credentials/partners-key.pem",
        None,
    );
    cert.name = "kubernetes://shop/partners-cert".into();
    write_sds_file(&creds.join("partners-sds.yaml").to_string_lossy(), &cert);
    files.insert(cert.name.clone(), "credentials/partners-sds.yaml".into());
    let mut cacert = trust_bundle_secret("credentials/root.pem", None);
    cacert.name = "kubernetes://shop/partners-cert-cacert".into();
    write_sds_file(
        &creds.join("partners-sds-cacert.yaml").to_string_lossy(),
        &cacert,
    );
    files.insert(
        cacert.name.clone(),
        "credentials/partners-sds-cacert.yaml".into(),
    );

    let yaml = static_bootstrap("ingress", &out, &files);
    check_golden("gateway-tls-termination", &yaml);
    Identity::issue_with_relative_sds(&ca, d, "etc/certs", "shop", "ingress");
    validate_bootstrap_in(d, &yaml).expect("golden gateway bootstrap validates");
}

/// The SHA-256 fingerprint of certificate `cert` in `dir`, colon-separated
/// hex (as `openssl x509 -fingerprint` prints it, a form Istio accepts), and
/// the base64 SHA-256 of its SubjectPublicKeyInfo.
fn pins_of(dir: &Path, cert: &str) -> (String, String) {
    let out = openssl(
        &["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
        dir,
    );
    let hash = out.trim().rsplit('=').next().unwrap().to_string();
    let (public, der, digest) = (
        format!("{cert}.pub.pem"),
        format!("{cert}.pub.der"),
        format!("{cert}.pub.sha256"),
    );
    openssl(
        &["x509", "-in", cert, "-noout", "-pubkey", "-out", &public],
        dir,
    );
    openssl(
        &[
            "pkey", "-pubin", "-in", &public, "-outform", "DER", "-out", &der,
        ],
        dir,
    );
    openssl(&["dgst", "-sha256", "-binary", "-out", &digest, &der], dir);
    use base64::Engine;
    let spki =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join(&digest)).unwrap());
    (hash, spki)
}

/// A CA `ca.pem` (key `ca-key.pem`) in `dir`, the gateway's certificate for
/// api.example.com from it, and client certificates `<name>.pem` (keys
/// `<name>-key.pem`) for `clients`, all signed by that CA.
fn openssl_pki(dir: &Path, clients: &[&str]) {
    self_signed_ca(dir, "ca-key.pem", "ca.pem", "/CN=partners-ca");
    signed_by(
        dir,
        ("ca-key.pem", "ca.pem"),
        ("server-key.pem", "server.pem"),
        "/CN=api.example.com",
        "subjectAltName=DNS:api.example.com\nextendedKeyUsage=serverAuth\n",
    );
    for name in clients {
        signed_by(
            dir,
            ("ca-key.pem", "ca.pem"),
            (&format!("{name}-key.pem"), &format!("{name}.pem")),
            &format!("/CN={name}"),
            "extendedKeyUsage=clientAuth\n",
        );
    }
}

/// A gateway (certificates from `d`) with one MUTUAL HTTPS server `name` for
/// api.example.com in front of `api`, its `tls` settings extended by `extra`;
/// Envoy and the server's address.
fn mutual_api_gateway(
    d: &Path,
    gw_id: &Identity,
    api: &Upstream,
    name: &str,
    extra: &str,
) -> (trellis_e2e::Envoy, SocketAddr) {
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let file = |n: &str| d.join(n).display().to_string();
    let mut resources = behind_gateway("api", api, ("http", 80), "[api.example.com]", "http");
    resources.extend([
        ingress_workload(GW_IP),
        one_server_gateway(&format!(
            "{{port: {{number: {gw_port}, name: {name}, protocol: HTTPS}}, hosts: [api.example.com], \
             tls: {{mode: MUTUAL, serverCertificate: {}, privateKey: {}, caCertificates: {}, {extra}}}}}",
            file("server.pem"),
            file("server-key.pem"),
            file("ca.pem"),
        )),
    ]);
    let envoy = start_gateway(GW_IP, d, gw_id, resources);
    (envoy, SocketAddr::from((GW_IP, gw_port)))
}

/// A GET of api.example.com at `at` over TLS, presenting client `name`'s
/// certificate from `d` and trusting `d/ca.pem`.
fn exchange_as(d: &Path, at: SocketAddr, name: &str) -> Result<String, String> {
    let (cert, key) = (
        d.join(format!("{name}.pem")),
        d.join(format!("{name}-key.pem")),
    );
    let root = d.join("ca.pem");
    let who = TlsClient {
        sni: "api.example.com",
        ca: &root,
        verify_hostname: true,
        client: Some((&cert, &key)),
    };
    tls_exchange(at, &who, &get("api.example.com"))
}

/// A MUTUAL HTTPS server pinning client certificates: `verifyCertificateHash`
/// names client `pinned` (colon form), `verifyCertificateSpki` client
/// `by-key`; both are served. `other`, signed by the same client CA but
/// matching neither, is refused in the handshake (Envoy's
/// `ssl.fail_verify_cert_hash`) and reaches nothing.
#[test]
fn mutual_server_admits_only_pinned_client_certificates_on_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    openssl_pki(d, &["pinned", "by-key", "other"]);
    let (hash, _) = pins_of(d, "pinned.pem");
    let (_, spki) = pins_of(d, "by-key.pem");
    let (other_hash, other_spki) = pins_of(d, "other.pem");
    assert_ne!(hash, other_hash);
    assert_ne!(spki, other_spki);

    let api = Upstream::echo("api-app", Ipv4Addr::new(127, 0, 0, 174));
    let tls = format!("verifyCertificateHash: [\"{hash}\"], verifyCertificateSpki: [\"{spki}\"]");
    let (envoy, at) = mutual_api_gateway(d, &gw_id, &api, "https-pinned", &tls);
    let gw_port = at.port();
    let exchange = |name: &str| exchange_as(d, at, name);
    for name in ["pinned", "by-key"] {
        let answer = exchange(name).unwrap_or_else(|e| panic!("{name}: {e}\n{}", envoy.log()));
        assert!(answer.contains("x-upstream: api-app"), "{name}: {answer}");
    }
    assert_eq!(api.hits(), 2);
    let r = exchange("other");
    let answered = match &r {
        Ok(text) | Err(text) => text.contains("x-upstream"),
    };
    assert!(!answered, "a certificate matching no pin was served: {r:?}");
    assert!(
        envoy.wait_stat(
            &format!("listener.{GW_IP}_{gw_port}.ssl.fail_verify_cert_hash"),
            1
        ) >= 1
    );
    assert_eq!(api.hits(), 2);
}

/// A MUTUAL HTTPS server with `caCrl`: a client certificate the CA revoked
/// (listed in the CRL file) is refused in the handshake; another one from
/// the same CA is served.
#[test]
fn mutual_server_refuses_revoked_client_certificates_on_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    openssl_pki(d, &["good", "revoked"]);
    revocation_list(d, ("ca-key.pem", "ca.pem"), &["revoked.pem"], "ca.crl");

    let api = Upstream::echo("api-app", Ipv4Addr::new(127, 0, 0, 175));
    let tls = format!("caCrl: {}", d.join("ca.crl").display());
    let (envoy, at) = mutual_api_gateway(d, &gw_id, &api, "https-crl", &tls);
    let gw_port = at.port();
    let exchange = |name: &str| exchange_as(d, at, name);
    let answer = exchange("good").unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    assert!(answer.contains("x-upstream: api-app"), "{answer}");
    let r = exchange("revoked");
    let answered = match &r {
        Ok(text) | Err(text) => text.contains("x-upstream"),
    };
    assert!(!answered, "a revoked certificate was served: {r:?}");
    assert!(
        envoy.wait_stat(
            &format!("listener.{GW_IP}_{gw_port}.ssl.fail_verify_error"),
            1
        ) >= 1
    );
    assert_eq!(api.hits(), 1);
}
