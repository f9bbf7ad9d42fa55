use super::*;
use crate::config_set::ConfigSet;
use crate::watcher::{FileEvent, scan_dir};
use std::path::Path;

fn load(text: &str) -> Vec<Resource> {
    trellis_api::load("test.yaml", text).unwrap()
}

fn counter() -> impl FnMut() -> Result<u16> {
    let mut next = 20000;
    move || {
        next += 1;
        Ok(next)
    }
}

#[test]
fn boutique_plan_has_seven_sidecars_and_one_gateway() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/boutique");
    let mut set = ConfigSet::default();
    set.apply_events(
        scan_dir(&dir)
            .unwrap()
            .into_iter()
            .map(|(path, b)| FileEvent::Apply {
                path,
                contents: String::from_utf8(b).unwrap(),
            })
            .collect(),
    );
    let mut assignments = Assignments::default();
    let (proxies, errors) = plan(
        &set.resources(),
        &mut assignments,
        &PlanOptions::default(),
        counter(),
    )
    .unwrap();
    assert_eq!(errors, vec![]);
    let sidecars: Vec<_> = proxies
        .iter()
        .filter(|p| p.kind == ProxyKind::Sidecar)
        .collect();
    assert_eq!(sidecars.len(), 7);
    let cart = sidecars.iter().find(|p| p.name == "cart-v1").unwrap();
    assert_eq!(cart.address, Ipv4Addr::new(127, 0, 0, 13));
    assert_eq!(
        (cart.app_port, cart.outbound_http_port),
        (Some(18013), Some(15001))
    );
    assert_eq!(cart.service_account, "cart");
    let gw: Vec<_> = proxies
        .iter()
        .filter(|p| p.kind == ProxyKind::Gateway)
        .collect();
    assert_eq!(gw.len(), 1);
    assert_eq!(gw[0].gateway_ports, vec![8080]);
    assert_eq!(gw[0].address, Ipv4Addr::LOCALHOST);

    // A second plan (a restart) keeps every admin port.
    let before: Vec<u16> = proxies.iter().map(|p| p.admin_port).collect();
    let (again, _) = plan(
        &set.resources(),
        &mut assignments,
        &PlanOptions::default(),
        || panic!("must reuse assigned ports"),
    )
    .unwrap();
    assert_eq!(
        before,
        again.iter().map(|p| p.admin_port).collect::<Vec<_>>()
    );
}

#[test]
fn unrunnable_workloads_are_reported_by_name_and_field() {
    let resources = load(
        r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: remote, namespace: shop, annotations: {local.trellis.dev/app-port: "18080"}}
spec: {address: 10.0.0.5}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: noport, namespace: shop}
spec: {address: 127.0.0.20}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a, namespace: shop, annotations: {local.trellis.dev/app-port: "18080"}}
spec: {address: 127.0.0.21}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b, namespace: shop, annotations: {local.trellis.dev/app-port: "18081"}}
spec: {address: 127.0.0.21}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: c, namespace: shop, annotations: {local.trellis.dev/app-port: "18080"}}
spec: {address: 127.0.0.22}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: nobody}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"#,
    );
    let (proxies, errors) = plan(
        &resources,
        &mut Assignments::default(),
        &PlanOptions::default(),
        counter(),
    )
    .unwrap();
    assert_eq!(
        proxies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec!["a"]
    );
    let described: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{}/{}: {}",
                e.kind.as_deref().unwrap(),
                e.name.as_deref().unwrap(),
                e.field.as_deref().unwrap()
            )
        })
        .collect();
    assert_eq!(
        described,
        vec![
            "WorkloadEntry/remote: spec.address",
            "WorkloadEntry/noport: metadata.annotations[local.trellis.dev/app-port]",
            "WorkloadEntry/b: spec.address",
            "WorkloadEntry/c: metadata.annotations[local.trellis.dev/app-port]",
            "Gateway/gw: spec.selector",
        ]
    );
    assert!(errors[2].message.contains("shop/a"));
}

#[test]
fn gateway_ports_respect_root() {
    let resources = load(
        r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ingress, namespace: shop}
spec: {address: 127.0.0.1, labels: {istio: ingress}, serviceAccount: ingress}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: ingress}
  servers:
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}
  - {port: {number: 8443, name: https, protocol: HTTP}, hosts: ["*"]}
"#,
    );
    let root = PlanOptions {
        running_as_root: true,
        ..PlanOptions::default()
    };
    let (p, _) = plan(&resources, &mut Assignments::default(), &root, counter()).unwrap();
    assert_eq!(p[0].gateway_ports, vec![80, 8443]);
    let (p, _) = plan(
        &resources,
        &mut Assignments::default(),
        &PlanOptions::default(),
        counter(),
    )
    .unwrap();
    assert_eq!(p[0].gateway_ports, vec![8080, 8443]);
    assert_eq!(p[0].process_name(), "gateway/shop/ingress");
}

/// A Gateway without a selector applies to every gateway workload (its ports
/// open on each) but makes no WorkloadEntry a gateway; alone it is reported.
#[test]
fn a_gateway_without_a_selector_joins_the_gateway_workloads() {
    let entries = r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ingress, namespace: shop}
spec: {address: 127.0.0.1, labels: {istio: ingress}, serviceAccount: ingress}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: shop, annotations: {local.trellis.dev/app-port: "18080"}}
spec: {address: 127.0.0.21, labels: {app: web}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: any, namespace: shop}
spec:
  servers: [{port: {number: 9090, name: http, protocol: HTTP}, hosts: ["*"]}]
"#;
    let selecting = r#"---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: ingress}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"#;
    let plan_of = |text: &str| {
        plan(
            &load(text),
            &mut Assignments::default(),
            &PlanOptions::default(),
            counter(),
        )
        .unwrap()
    };
    let (proxies, errors) = plan_of(&format!("{entries}{selecting}"));
    let kinds: Vec<(&str, ProxyKind)> = proxies.iter().map(|p| (p.name.as_str(), p.kind)).collect();
    assert_eq!(
        kinds,
        [("ingress", ProxyKind::Gateway), ("web", ProxyKind::Sidecar)]
    );
    assert_eq!(proxies[0].gateway_ports, [8080, 9090]);
    assert!(errors.is_empty(), "{errors:?}");

    let (proxies, errors) = plan_of(entries);
    assert!(proxies.iter().all(|p| p.kind == ProxyKind::Sidecar));
    let gateway = errors
        .iter()
        .find(|e| e.kind.as_deref() == Some("Gateway"))
        .expect("the Gateway is reported");
    assert_eq!(gateway.field.as_deref(), Some("spec.selector"));
    assert!(
        gateway.message.contains("without a selector"),
        "{}",
        gateway.message
    );
}
