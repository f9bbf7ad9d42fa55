//! A Service without a selector takes its endpoints from the EndpointSlices
//! listed for it (`Resource::ServiceEndpoints`); one with a selector from the
//! workloads it selects, whatever slices say.

use std::collections::BTreeMap;
use trellis_model::{
    ChangeScope, MeshModel, MeshSettings, Resource, ServiceSource, StaticEndpoint,
};

fn service(selector: Option<&str>) -> Resource {
    let mut spec = serde_json::json!({"ports": [{"name": "tcp-pg", "port": 5432}]});
    if let Some(app) = selector {
        spec["selector"] = serde_json::json!({"app": app});
    }
    let object = serde_json::json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": spec});
    Resource::Service(Box::new(serde_json::from_value(object).unwrap()))
}

fn listed(addresses: &[(&str, u16)]) -> Resource {
    Resource::ServiceEndpoints {
        namespace: "shop".into(),
        service: "db".into(),
        endpoints: addresses
            .iter()
            .map(|(address, port)| StaticEndpoint {
                address: address.to_string(),
                ports: BTreeMap::from([("tcp-pg".to_string(), *port)]),
                ..Default::default()
            })
            .collect(),
    }
}

/// `address:port` of the db Service's endpoints, as the translator asks for them.
fn endpoints(model: &MeshModel) -> Vec<String> {
    let source = ServiceSource::Kubernetes {
        namespace: "shop".into(),
        name: "db".into(),
    };
    let Some(db) = model.registry().defined_by(&source).first() else {
        return Vec::new();
    };
    let port = db.port(5432).unwrap();
    model
        .endpoints(db, port, None)
        .into_iter()
        .map(|e| {
            assert!(!e.has_sidecar, "listed endpoints are outside the mesh");
            format!("{}:{}", e.address, e.port)
        })
        .collect()
}

#[test]
fn a_service_without_a_selector_has_the_endpoints_its_slices_list() {
    let mut model = MeshModel::new(MeshSettings::default());
    // The slices may arrive before their Service.
    assert_eq!(
        model.apply(listed(&[("10.1.2.3", 6432)])).unwrap(),
        ChangeScope::None,
        "no Service yet: nothing to push"
    );
    model.apply(service(None)).unwrap();
    assert_eq!(endpoints(&model), ["10.1.2.3:6432"]);

    let scope = model
        .apply(listed(&[("10.1.2.3", 6432), ("10.1.2.4", 6432)]))
        .unwrap();
    assert_ne!(scope, ChangeScope::None, "a new endpoint is pushed");
    assert_eq!(endpoints(&model), ["10.1.2.3:6432", "10.1.2.4:6432"]);
    assert_eq!(
        model
            .apply(listed(&[("10.1.2.3", 6432), ("10.1.2.4", 6432)]))
            .unwrap(),
        ChangeScope::None,
        "the same list again changes nothing"
    );

    // A selector wins: the workloads it selects (none here), not the list.
    model.apply(service(Some("db"))).unwrap();
    assert!(endpoints(&model).is_empty());
    // Without it again, the list is back.
    model.apply(service(None)).unwrap();
    assert_eq!(endpoints(&model).len(), 2);

    // The slices are gone.
    model.apply(listed(&[])).unwrap();
    assert!(endpoints(&model).is_empty());
}
