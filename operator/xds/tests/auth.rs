//! A proxy gets only its own configuration: mTLS with a mesh certificate is required and
//! the node's namespace and service account must match the certificate's SPIFFE id.
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use envoy_types::pb::google::protobuf::Any;
use support::*;
use tonic::Code;
use trellis_xds::{
    ProxyId, ProxyKind, PushScope, ResourceCache, ResourceType, Snapshot, XdsConfig, XdsError,
};

/// Each proxy's listener and secret carry its own service account, so a leak is visible.
fn per_identity_source(
    generation: Arc<AtomicU64>,
) -> impl Fn(&ProxyId) -> Result<Snapshot, XdsError> + Send + Sync {
    let cache = Arc::new(ResourceCache::new());
    move |proxy: &ProxyId| {
        let g = generation.load(Ordering::SeqCst);
        let sa = &proxy.service_account;
        let mut b = Snapshot::builder();
        let raw = |ty: ResourceType, content: String| Any {
            type_url: ty.type_url().to_string(),
            value: content.into_bytes(),
        };
        b.add(
            format!("listener-{sa}"),
            raw(ResourceType::Listener, format!("{sa}-listener-g{g}")),
        )?;
        b.add(
            format!("secret-{sa}"),
            raw(ResourceType::Secret, format!("{sa}-private-key")),
        )?;
        Ok(b.build(&cache))
    }
}

fn contents(r: &envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| String::from_utf8(a.value.clone()).unwrap())
        .collect()
}

fn proxy(ns: &str, name: &str, sa: &str) -> ProxyId {
    ProxyId::new(ProxyKind::Sidecar, ns, name, sa)
}

const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

fn first_request(
    p: &ProxyId,
    type_url: &str,
    names: &[&str],
) -> envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
    let mut r = request(type_url, names);
    r.node = Some(node_for(p));
    r
}

/// A server for `ca`'s trust domain, serving each proxy a snapshot of its own identity.
async fn start_per_identity(ca: &TestCa) -> Running {
    start(
        ca,
        XdsConfig::new(TRUST_DOMAIN),
        Arc::new(per_identity_source(Arc::new(AtomicU64::new(1)))),
    )
    .await
}

#[tokio::test]
async fn a_proxy_gets_its_own_config_and_secrets_and_never_another_identitys() {
    let ca = TestCa::new("mesh root");
    let generation = Arc::new(AtomicU64::new(1));
    let running = start(
        &ca,
        XdsConfig::new(TRUST_DOMAIN),
        Arc::new(per_identity_source(generation)),
    )
    .await;
    let a = proxy("shop", "web-1", "web");
    let a_cert = ca.workload("shop", "web");

    // A with its own identity: its listener, and of the secrets it asks for only its own.
    let mut client = connect(running.addr, &ca.root_pem, Some(&a_cert))
        .await
        .unwrap();
    let mut ads = AdsClient::open(&mut client, first_request(&a, LDS, &[]))
        .await
        .unwrap();
    let lds = ads.recv().await.unwrap();
    assert_eq!(contents(&lds), ["web-listener-g1"]);
    ads.ack(&lds, &[]).await;
    ads.send(request(SDS, &["secret-web", "secret-cart"])).await;
    let sds = ads.recv().await.unwrap();
    assert_eq!(
        contents(&sds),
        ["web-private-key"],
        "secret of another identity leaked"
    );

    // A's certificate claiming B's service account, or B's namespace: refused.
    let refused_before = running.server.metrics().refused_total;
    for claim in [
        proxy("shop", "cart-1", "cart"),
        proxy("bank", "web-1", "web"),
    ] {
        let mut client = connect(running.addr, &ca.root_pem, Some(&a_cert))
            .await
            .unwrap();
        let err = match AdsClient::open(&mut client, first_request(&claim, SDS, &["secret-cart"]))
            .await
        {
            Ok(mut ads) => ads.recv().await.unwrap_err(),
            Err(status) => status,
        };
        assert_eq!(err.code(), Code::PermissionDenied, "{claim}: {err}");
        assert!(
            err.message()
                .contains("spiffe://cluster.local/ns/shop/sa/web"),
            "{err}"
        );
    }
    assert_eq!(running.server.metrics().refused_total, refused_before + 2);

    // Switching node mid-stream is refused too.
    let mut client = connect(running.addr, &ca.root_pem, Some(&a_cert))
        .await
        .unwrap();
    let mut ads = AdsClient::open(&mut client, first_request(&a, LDS, &[]))
        .await
        .unwrap();
    let lds = ads.recv().await.unwrap();
    let mut switch = first_request(&proxy("shop", "cart-1", "cart"), SDS, &["secret-cart"]);
    switch.version_info = lds.version_info.clone();
    ads.send(switch).await;
    let err = ads.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
}

#[tokio::test]
async fn connections_without_a_mesh_client_certificate_get_nothing() {
    let ca = TestCa::new("mesh root");
    let running = start_per_identity(&ca).await;
    let a = proxy("shop", "web-1", "web");
    let other_ca = TestCa::new("some other root");
    let foreign = other_ca.workload("shop", "web");
    let no_spiffe = ca.leaf("https://example.com/web", &[]);
    let cases: [(&str, Option<&Pem>); 3] = [
        ("no client certificate", None),
        ("certificate from another CA", Some(&foreign)),
        ("certificate without a SPIFFE id", Some(&no_spiffe)),
    ];
    for (what, cert) in cases {
        let outcome = match connect(running.addr, &ca.root_pem, cert).await {
            Err(e) => Err(e.to_string()),
            Ok(mut client) => match AdsClient::open(&mut client, first_request(&a, LDS, &[])).await
            {
                Err(status) => Err(status.to_string()),
                Ok(mut ads) => ads.recv().await.map_err(|s| s.to_string()),
            },
        };
        assert!(outcome.is_err(), "{what}: got config {outcome:?}");
    }
    assert!(running.server.metrics().refused_total >= 3);
    assert!(running.server.proxy_statuses().is_empty());
}

#[tokio::test]
async fn pushes_are_scoped_and_skipped_when_output_is_unchanged() {
    let ca = TestCa::new("mesh root");
    let generation = Arc::new(AtomicU64::new(1));
    let running = start(
        &ca,
        XdsConfig::new(TRUST_DOMAIN),
        Arc::new(per_identity_source(generation.clone())),
    )
    .await;
    let web = proxy("shop", "web-1", "web");
    let cart = proxy("shop", "cart-1", "cart");
    let mut streams = Vec::new();
    for (p, cert) in [
        (&web, ca.workload("shop", "web")),
        (&cart, ca.workload("shop", "cart")),
    ] {
        let mut client = connect(running.addr, &ca.root_pem, Some(&cert))
            .await
            .unwrap();
        let mut ads = AdsClient::open(&mut client, first_request(p, LDS, &[]))
            .await
            .unwrap();
        let lds = ads.recv().await.unwrap();
        ads.ack(&lds, &[]).await;
        streams.push((client, ads));
    }
    // wait until both ACKs are processed
    for p in [&web, &cart] {
        wait_until("initial ACK", || {
            running
                .server
                .proxy_status(p)
                .is_some_and(|s| s.get(ResourceType::Listener).in_sync())
        })
        .await;
    }

    // Nothing changed: a push to everyone sends nothing.
    let before = running.server.metrics();
    running.server.push_now(&PushScope::All);
    let after = running.server.metrics();
    assert_eq!(after.pushes_total, before.pushes_total);
    assert_eq!(after.pushes_skipped_total, before.pushes_skipped_total + 2);

    // A change pushed to web only reaches web.
    generation.store(2, Ordering::SeqCst);
    running
        .server
        .push(PushScope::Proxies([web.clone()].into()));
    let (_, web_ads) = &mut streams[0];
    let lds = web_ads.recv().await.unwrap();
    assert_eq!(contents(&lds), ["web-listener-g2"]);
    web_ads.ack(&lds, &[]).await;
    let m = running.server.metrics();
    assert_eq!(m.pushes_total, after.pushes_total + 1);
    let cart_status = running.server.proxy_status(&cart).unwrap();
    let cart_lds = cart_status.get(ResourceType::Listener);
    assert_eq!(
        cart_lds.last_sent.as_ref().unwrap().resource_names(),
        ["listener-cart"]
    );
    assert_eq!(
        contents_of(&cart_lds.last_sent.as_ref().unwrap().resources[0].any),
        "cart-listener-g1",
        "cart was outside the push scope"
    );
    wait_until("web in sync", || {
        running.server.proxy_status(&web).unwrap().in_sync()
    })
    .await;
    let web_status = running.server.proxy_status(&web).unwrap();
    assert_eq!(
        web_status
            .get(ResourceType::Listener)
            .acked_version
            .as_deref(),
        Some(lds.version_info.as_str())
    );
    assert_eq!(m.connected_proxies, 2);

    // Closing a stream removes the proxy from status and the connected gauge.
    drop(streams.remove(1));
    wait_until("cart's stream closed", || {
        running.server.proxy_status(&cart).is_none()
    })
    .await;
    assert_eq!(running.server.metrics().connected_proxies, 1);
    assert_eq!(running.server.proxy_statuses().len(), 1);
}

fn contents_of(any: &Any) -> String {
    String::from_utf8(any.value.clone()).unwrap()
}

#[tokio::test]
async fn a_rotated_trust_bundle_and_server_certificate_apply_to_new_connections() {
    let old_ca = TestCa::new("old root");
    let new_ca = TestCa::new("new root");
    let running = start_per_identity(&old_ca).await;
    let web = proxy("shop", "web-1", "web");
    let fetch = |root: String, cert: Pem| {
        let web = web.clone();
        let addr = running.addr;
        async move {
            let mut client = connect(addr, &root, Some(&cert))
                .await
                .map_err(|e| e.to_string())?;
            let mut ads = AdsClient::open(&mut client, first_request(&web, LDS, &[]))
                .await
                .map_err(|e| e.to_string())?;
            ads.recv()
                .await
                .map(|r| contents(&r))
                .map_err(|e| e.to_string())
        }
    };
    let old_cert = old_ca.workload("shop", "web");
    assert_eq!(
        fetch(old_ca.root_pem.clone(), old_cert.clone())
            .await
            .unwrap(),
        ["web-listener-g1"]
    );

    // Rotate: the server now presents a certificate of the new root and trusts only it.
    let server_pem = new_ca.server();
    running
        .tls
        .reload(&server_pem.cert, &server_pem.key, &new_ca.root_pem)
        .unwrap();
    let new_cert = new_ca.workload("shop", "web");
    assert_eq!(
        fetch(new_ca.root_pem.clone(), new_cert).await.unwrap(),
        ["web-listener-g1"]
    );
    assert!(
        fetch(new_ca.root_pem.clone(), old_cert).await.is_err(),
        "old root still trusted"
    );

    // A broken bundle is refused and the current settings stay.
    let err = running
        .tls
        .reload(&server_pem.cert, &server_pem.key, "not pem")
        .err()
        .unwrap();
    assert!(err.to_string().contains("trust_bundle"), "{err}");
    let err = running
        .tls
        .reload(&server_pem.cert, "garbage", &new_ca.root_pem)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("private_key") && !err.to_string().contains("garbage"),
        "{err}"
    );
    let again = new_ca.workload("shop", "web");
    assert!(fetch(new_ca.root_pem.clone(), again).await.is_ok());
}

/// Waits for a condition the server reaches asynchronously; fails after a generous bound.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(20), wait)
        .await
        .is_err()
    {
        panic!("gave up waiting for {what}");
    }
}

#[tokio::test]
async fn a_new_trust_domain_is_accepted_with_the_previous_one_until_dropped() {
    let ca = TestCa::new("mesh root");
    let running = start_per_identity(&ca).await;
    let a = proxy("shop", "web-1", "web");
    let old = ca.workload("shop", "web");
    let new = ca.leaf("spiffe://corp.example/ns/shop/sa/web", &[]);
    let outcome = |cert: Pem| {
        let addr = running.addr;
        let root = ca.root_pem.clone();
        let first = first_request(&a, LDS, &[]);
        async move {
            let mut client = connect(addr, &root, Some(&cert)).await.unwrap();
            match AdsClient::open(&mut client, first).await {
                Err(status) => Err(status),
                Ok(mut ads) => ads.recv().await.map(|r| contents(&r)),
            }
        }
    };
    let err = outcome(new.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("corp.example"), "{err}");

    // The mesh moves to corp.example: both accepted while identities are reissued.
    running
        .server
        .set_trust_domains(vec!["corp.example".into(), TRUST_DOMAIN.into()]);
    assert_eq!(outcome(new.clone()).await.unwrap(), ["web-listener-g1"]);
    assert_eq!(outcome(old.clone()).await.unwrap(), ["web-listener-g1"]);

    // The old one dropped: refused again.
    running
        .server
        .set_trust_domains(vec!["corp.example".into()]);
    let err = outcome(old).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert_eq!(outcome(new).await.unwrap(), ["web-listener-g1"]);
}
