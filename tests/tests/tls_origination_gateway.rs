//! Gateway server TLS (SIMPLE, MUTUAL) and DestinationRule TLS origination
//! (SIMPLE, MUTUAL, a CRL) through real Envoy: an egress Envoy originates TLS to a
//! gateway Envoy that terminates it; certificates from trellis-ca.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::listener::v3::FilterChain;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
use trellis_e2e::mesh::{
    bootstrap_yaml, http_connection_manager, listener, route_to, static_cluster, test_ca, vhost,
    write_sds_file,
};
use trellis_e2e::{Envoy, HttpRequest, Upstream, free_ports_on, validate_bootstrap};
use trellis_translate::security::origination::{
    ClientTls, GatewayTlsMode, OriginationSettings, ServerCredential, client_tls_context,
    gateway_server_tls,
};
use trellis_translate::security::sds::{SdsSource, trust_bundle_secret, workload_cert_secret};
use trellis_translate::security::tls::{downstream_transport_socket, upstream_transport_socket};

const HOST: &str = "shop.example.com";

fn file_sds_ref(name: &str, path: &Path) -> SdsSecretConfig {
    // SdsSource::Files gives a path config source; reuse it for a secret of any name
    let source = SdsSource::Files {
        workload_cert_file: path.to_string_lossy().into_owned(),
        trust_bundle_file: path.to_string_lossy().into_owned(),
        watched_directory: None,
    };
    SdsSecretConfig {
        name: name.to_string(),
        ..source.workload_cert()
    }
}

#[test]
fn gateway_simple_and_mutual_with_tls_origination() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = |n: &str| d.join(n).to_string_lossy().into_owned();
    let ca = test_ca();
    let now = SystemTime::now();
    let server = ca
        .issue_server_cert(&[HOST.to_string()], Duration::from_secs(3600), now)
        .unwrap();
    std::fs::write(path("server.pem"), &server.cert_chain_pem).unwrap();
    std::fs::write(path("server-key.pem"), server.key_pem.expose()).unwrap();
    std::fs::write(path("root.pem"), &server.root_cert_pem).unwrap();
    let client = ca
        .issue_for_service_account("shop", "egress", Duration::from_secs(3600), now)
        .unwrap();
    std::fs::write(path("client.pem"), &client.cert_chain_pem).unwrap();
    std::fs::write(path("client-key.pem"), client.key_pem.expose()).unwrap();

    // gateway credentials as Istio names them, served by file SDS
    let credential = |name: &str| {
        trellis_translate::SecretRef::Credential {
            namespace: "shop".into(),
            name: name.into(),
        }
        .sds_name()
    };
    let (cred_name, ca_name) = (credential("shop-cert"), credential("shop-cert-cacert"));
    let mut cred = workload_cert_secret(&path("server.pem"), &path("server-key.pem"), None);
    cred.name = cred_name.clone();
    let mut cacert = trust_bundle_secret(&path("root.pem"), None);
    cacert.name = ca_name.clone();
    write_sds_file(&path("sds-cred.yaml"), &cred);
    write_sds_file(&path("sds-cacert.yaml"), &cacert);
    let cred_ref = file_sds_ref(&cred_name, &d.join("sds-cred.yaml"));
    let ca_ref = file_sds_ref(&ca_name, &d.join("sds-cacert.yaml"));

    let app = Upstream::echo("shop-app", Ipv4Addr::new(127, 0, 0, 52));
    let gw_ip = Ipv4Addr::new(127, 0, 0, 51);
    let ports = free_ports_on(gw_ip, 2);
    let (simple_port, mutual_port) = (ports[0], ports[1]);
    let routes = || vec![vhost("shop", &[HOST], vec![route_to("shop-app")])];
    let gw_listener = |name: &str, port: u16, mode| {
        let credential = ServerCredential::Sds {
            certificate: &cred_ref,
            client_ca: Some(&ca_ref),
        };
        let tls = gateway_server_tls(mode, credential, &["h2", "http/1.1"]);
        let chain = FilterChain {
            filters: vec![http_connection_manager(name, routes(), vec![], false)],
            transport_socket: Some(downstream_transport_socket(&tls)),
            ..Default::default()
        };
        listener(name, SocketAddr::from((gw_ip, port)), vec![chain], vec![])
    };
    let gateway_yaml = bootstrap_yaml(
        "gateway",
        vec![
            gw_listener("https-simple", simple_port, GatewayTlsMode::Simple),
            gw_listener("https-mutual", mutual_port, GatewayTlsMode::Mutual),
        ],
        vec![static_cluster("shop-app", &[app.addr()], None)],
    );

    // egress: one cluster per DestinationRule tls setting
    let verified = OriginationSettings {
        ca_certificates: Some(path("root.pem")),
        ..Default::default()
    };
    let cases = [
        ("simple", simple_port, ClientTls::Simple(verified.clone())),
        (
            "simple-wrong-san",
            simple_port,
            ClientTls::Simple(OriginationSettings {
                subject_alt_names: vec!["other.example.com".into()],
                ..verified.clone()
            }),
        ),
        (
            "mutual",
            mutual_port,
            ClientTls::Mutual {
                settings: verified.clone(),
                client_certificate: path("client.pem"),
                private_key: path("client-key.pem"),
            },
        ),
        (
            "mutual-without-cert",
            mutual_port,
            ClientTls::Simple(verified.clone()),
        ),
    ];
    let (egress_yaml, egress_listen) =
        egress_to_gateway(&cases, gw_ip, Ipv4Addr::new(127, 0, 0, 53));
    validate_bootstrap(&gateway_yaml).expect("gateway bootstrap validates");
    validate_bootstrap(&egress_yaml).expect("egress bootstrap validates");
    let egress_thread = std::thread::spawn(move || Envoy::start(&egress_yaml));
    let gateway = Envoy::start(&gateway_yaml);
    let egress = egress_thread.join().expect("egress envoy");

    let get = |case: &str| {
        HttpRequest::get("/checkout")
            .host(case)
            .send(egress_listen)
            .unwrap_or_else(|e| panic!("{case}: {e}"))
    };
    let r = get("simple");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.json()["headers"]["host"], HOST);
    assert_eq!(get("simple-wrong-san").status, 503);
    assert!(egress.stat("cluster.simple-wrong-san.ssl.fail_verify_san") >= 1);
    assert_eq!(get("mutual").status, 200);
    assert_eq!(get("mutual-without-cert").status, 503);
    assert!(
        gateway.wait_stat(
            &format!("listener.{gw_ip}_{mutual_port}.ssl.fail_verify_no_cert"),
            1
        ) >= 1
    );
    assert!(gateway.stat(&format!("listener.{gw_ip}_{simple_port}.ssl.handshake")) >= 1);
}

/// DestinationRule `tls.caCrl` on origination: two gateway listeners present
/// certificates from one CA, one of them revoked in the CRL. An egress
/// cluster with the CRL reaches the good one and is refused by the revoked
/// one (`ssl.fail_verify_error`); without the CRL the revoked one is reached,
/// so the refusal is the CRL's.
#[test]
fn origination_checks_the_server_against_the_ca_crl() {
    use trellis_e2e::openssl::{revocation_list, self_signed_ca, signed_by};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = |n: &str| d.join(n).to_string_lossy().into_owned();
    self_signed_ca(d, "ca-key.pem", "ca.pem", "/CN=shop-ca");
    let ext = format!("subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n");
    for name in ["good", "revoked"] {
        signed_by(
            d,
            ("ca-key.pem", "ca.pem"),
            (&format!("{name}-key.pem"), &format!("{name}.pem")),
            &format!("/CN={HOST}"),
            &ext,
        );
    }
    revocation_list(d, ("ca-key.pem", "ca.pem"), &["revoked.pem"], "ca.crl");

    let app = Upstream::echo("shop-app", Ipv4Addr::new(127, 0, 0, 57));
    let gw_ip = Ipv4Addr::new(127, 0, 0, 56);
    let ports = free_ports_on(gw_ip, 2);
    let routes = || vec![vhost("shop", &[HOST], vec![route_to("shop-app")])];
    let (cert_files, key_files) = (
        [path("good.pem"), path("revoked.pem")],
        [path("good-key.pem"), path("revoked-key.pem")],
    );
    let gw_listeners = (0..2)
        .map(|i| {
            let credential = ServerCredential::Files {
                cert: &cert_files[i],
                key: &key_files[i],
                client_ca: None,
            };
            let tls = gateway_server_tls(GatewayTlsMode::Simple, credential, &["http/1.1"]);
            let name = format!("https-{i}");
            let chain = FilterChain {
                filters: vec![http_connection_manager(&name, routes(), vec![], false)],
                transport_socket: Some(downstream_transport_socket(&tls)),
                ..Default::default()
            };
            listener(
                &name,
                SocketAddr::from((gw_ip, ports[i])),
                vec![chain],
                vec![],
            )
        })
        .collect();
    let gateway_yaml = bootstrap_yaml(
        "gateway",
        gw_listeners,
        vec![static_cluster("shop-app", &[app.addr()], None)],
    );
    let with_crl = OriginationSettings {
        ca_certificates: Some(path("ca.pem")),
        ca_crl: Some(path("ca.crl")),
        ..Default::default()
    };
    let without_crl = OriginationSettings {
        ca_crl: None,
        ..with_crl.clone()
    };
    let cases = [
        ("good", ports[0], with_crl.clone()),
        ("revoked", ports[1], with_crl),
        ("revoked-unchecked", ports[1], without_crl),
    ];
    let cases = cases.map(|(name, port, settings)| (name, port, ClientTls::Simple(settings)));
    let (egress_yaml, egress_listen) =
        egress_to_gateway(&cases, gw_ip, Ipv4Addr::new(127, 0, 0, 58));
    validate_bootstrap(&gateway_yaml).expect("gateway bootstrap validates");
    validate_bootstrap(&egress_yaml).expect("egress bootstrap validates");
    let _gateway = Envoy::start(&gateway_yaml);
    let egress = Envoy::start(&egress_yaml);
    let get = |case: &str| {
        HttpRequest::get("/")
            .host(case)
            .send(egress_listen)
            .unwrap_or_else(|e| panic!("{case}: {e}"))
    };
    assert_eq!(get("good").status, 200);
    assert_eq!(get("revoked").status, 503);
    assert!(egress.stat("cluster.revoked.ssl.fail_verify_error") >= 1);
    assert_eq!(get("revoked-unchecked").status, 200);
    assert_eq!(app.hits(), 2);
}

/// The egress Envoy of these tests, listening on `egress_ip`: per case (name,
/// gateway port, client TLS) a cluster to the gateway at `gw_ip` with that
/// TLS, and a virtual host named after the case that routes to it and sends
/// the gateway the original host. Its bootstrap and listen address.
fn egress_to_gateway(
    cases: &[(&str, u16, ClientTls)],
    gw_ip: Ipv4Addr,
    egress_ip: Ipv4Addr,
) -> (String, SocketAddr) {
    let clusters = cases
        .iter()
        .map(|(name, port, tls)| {
            let ctx = client_tls_context(tls, HOST, &SdsSource::Ads, &[]).expect("tls context");
            static_cluster(
                name,
                &[SocketAddr::from((gw_ip, *port))],
                Some(upstream_transport_socket(&ctx)),
            )
        })
        .collect();
    let vhosts = cases
        .iter()
        .map(|(name, _, _)| {
            let mut route = route_to(name);
            // the gateway routes by the original host
            if let Some(envoy_types::pb::envoy::config::route::v3::route::Action::Route(action)) =
                route.action.as_mut()
            {
                action.host_rewrite_specifier = Some(
                    envoy_types::pb::envoy::config::route::v3::route_action::HostRewriteSpecifier::HostRewriteLiteral(
                        HOST.into(),
                    ),
                );
            }
            vhost(name, &[name], vec![route])
        })
        .collect();
    let egress_listen = SocketAddr::from((egress_ip, free_ports_on(egress_ip, 1)[0]));
    let egress_yaml = bootstrap_yaml(
        "egress",
        vec![listener(
            "egress",
            egress_listen,
            vec![FilterChain {
                filters: vec![http_connection_manager("egress", vhosts, vec![], false)],
                ..Default::default()
            }],
            vec![],
        )],
        clusters,
    );
    (egress_yaml, egress_listen)
}
