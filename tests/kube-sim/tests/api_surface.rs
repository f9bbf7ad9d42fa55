//! What the simulator serves, through `kube::Client`: start-up, TLS with client certificates,
//! discovery (plain and aggregated, following CRDs), every built-in kind the operator uses,
//! Table responses, custom-resource pruning and server-side apply with managedFields.

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::client::Body;
use kube_sim::TestServer;
use serde_json::{Value, json};
use std::time::Instant;

async fn get(client: &kube::Client, path: &str, accept: Option<&str>) -> (String, Value) {
    let mut req = http::Request::get(path);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let res = client
        .send(req.body(Body::from(Vec::new())).expect("request"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(res.status().is_success(), "GET {path}: {}", res.status());
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = res.into_body().collect_bytes().await.expect("body");
    (
        content_type,
        serde_json::from_slice(&bytes).expect("JSON body"),
    )
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn starts_ready_at_once_and_requires_client_certificates() {
    let began = Instant::now();
    let server = TestServer::start().expect("server starts");
    let startup = began.elapsed();
    // A report, not a timing assertion (the issue's target is under 100 ms).
    println!("kube-sim start-up (HTTPS, fresh CA and certificates): {startup:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Ready the moment start() returns: no sleep, no retry.
        let (_, version) = get(&server.client(), "/version", None).await;
        assert_eq!(version["major"], "1");
        assert!(
            version["gitVersion"]
                .as_str()
                .unwrap_or("")
                .starts_with("v1.")
        );

        // The kubeconfig it wrote works for a client built from the file.
        let kubeconfig =
            kube::config::Kubeconfig::read_from(server.kubeconfig_path()).expect("kubeconfig file");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("config");
        assert!(
            config
                .cluster_url
                .to_string()
                .starts_with("https://127.0.0.1:")
        );
        let client = kube::Client::try_from(config.clone()).expect("client");
        let (_, api) = get(&client, "/api", None).await;
        assert_eq!(api["versions"], json!(["v1"]));

        // Without the client certificate the client is anonymous: 401, as from an API server
        // with anonymous auth disabled.
        let mut anonymous = config;
        anonymous.auth_info.client_certificate_data = None;
        anonymous.auth_info.client_key_data = None;
        let client = kube::Client::try_from(anonymous).expect("client");
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        match api.list(&Default::default()).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(
                    (s.code, s.reason.as_str(), s.message.as_str()),
                    (401, "Unauthorized", "Unauthorized")
                );
            }
            other => panic!("expected a 401 Status, got {other:?}"),
        }
    });
}

const AGGREGATED: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "gadgets.example.com"},
  "spec": {
    "group": "example.com", "scope": "Cluster",
    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["gd"]},
    "versions": [{
      "name": "v1", "served": true, "storage": true,
      "subresources": {"status": {}},
      "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
          "size": {"type": "integer", "minimum": 1},
          "mode": {"type": "string", "enum": ["a", "b"]},
          "tags": {"type": "array", "items": {"type": "string"}}
        }},
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
      }}}
    }]
  }
}"#;

fn crd_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    );
    Api::all_with(client.clone(), &ar)
}

fn gadgets(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Gadget"),
        "gadgets",
    );
    Api::all_with(client.clone(), &ar)
}

fn dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("object")
}

#[tokio::test]
async fn discovery_follows_crds() {
    let server = TestServer::start().expect("server starts");
    let client = server.client();
    let (_, core) = get(&client, "/api/v1", None).await;
    let core_names = names(&core, "resources");
    for r in [
        "namespaces",
        "serviceaccounts",
        "secrets",
        "configmaps",
        "services",
        "endpoints",
        "pods",
        "events",
        "pods/status",
        "namespaces/status",
    ] {
        assert!(core_names.contains(&r.to_string()), "{r} in {core_names:?}");
    }
    let (_, groups) = get(&client, "/apis", None).await;
    let group_names = names(&groups, "groups");
    for g in [
        "apps",
        "events.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "authentication.k8s.io",
    ] {
        assert!(
            group_names.contains(&g.to_string()),
            "{g} in {group_names:?}"
        );
    }
    assert!(!group_names.contains(&"example.com".to_string()));
    let (_, apps) = get(&client, "/apis/apps/v1", None).await;
    assert!(names(&apps, "resources").contains(&"deployments".to_string()));
    assert!(names(&apps, "resources").contains(&"deployments/status".to_string()));

    let (content_type, aggregated) = get(&client, "/apis", Some(AGGREGATED)).await;
    assert_eq!(
        content_type,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(aggregated["kind"], "APIGroupDiscoveryList");
    let has_group = |doc: &Value, group: &str| {
        doc["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["metadata"]["name"] == group))
    };
    assert!(has_group(&aggregated, "apps"));
    assert!(!has_group(&aggregated, "example.com"));

    // A CRD's kind is discoverable as soon as it is created, and gone once deleted.
    crd_api(&client)
        .create(
            &PostParams::default(),
            &dynamic(serde_json::from_str(CRD).expect("CRD")),
        )
        .await
        .expect("create CRD");
    let (_, aggregated) = get(&client, "/apis", Some(AGGREGATED)).await;
    let group = aggregated["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|i| i["metadata"]["name"] == "example.com")
        })
        .cloned()
        .expect("example.com in aggregated discovery");
    let resource = &group["versions"][0]["resources"][0];
    assert_eq!(resource["resource"], "gadgets");
    assert_eq!(resource["scope"], "Cluster");
    assert_eq!(resource["responseKind"]["kind"], "Gadget");
    assert_eq!(resource["shortNames"], json!(["gd"]));
    let (_, list) = get(&client, "/apis/example.com/v1", None).await;
    assert!(names(&list, "resources").contains(&"gadgets".to_string()));
    assert!(names(&list, "resources").contains(&"gadgets/status".to_string()));

    crd_api(&client)
        .delete("gadgets.example.com", &Default::default())
        .await
        .expect("delete CRD");
    let (_, aggregated) = get(&client, "/apis", Some(AGGREGATED)).await;
    assert!(!has_group(&aggregated, "example.com"));
    let (_, groups) = get(&client, "/apis", None).await;
    assert!(!names(&groups, "groups").contains(&"example.com".to_string()));
}

#[tokio::test]
async fn every_builtin_kind_the_operator_uses_is_served() {
    let server = TestServer::start().expect("server starts");
    let client = server.client();
    let kinds: &[(&str, &str, &str, &str, bool, Value)] = &[
        ("", "v1", "Namespace", "namespaces", false, json!({})),
        (
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            json!({}),
        ),
        (
            "",
            "v1",
            "Secret",
            "secrets",
            true,
            json!({"type": "kubernetes.io/service-account-token",
            "metadata": {"annotations": {"kubernetes.io/service-account.name": "thing"}},
            "data": {"token": "c2VjcmV0LXRva2Vu"}}),
        ),
        (
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            json!({"data": {"a": "b"}}),
        ),
        (
            "",
            "v1",
            "Service",
            "services",
            true,
            json!({"spec": {"ports": [{"port": 80}]}}),
        ),
        (
            "",
            "v1",
            "Endpoints",
            "endpoints",
            true,
            json!({"subsets": []}),
        ),
        (
            "",
            "v1",
            "Pod",
            "pods",
            true,
            json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
        ),
        (
            "",
            "v1",
            "Event",
            "events",
            true,
            json!({"involvedObject": {"kind": "Pod", "name": "thing"}, "reason": "Test", "message": "m"}),
        ),
        (
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ),
        (
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            json!({"reason": "Test", "note": "n", "action": "A",
            "reportingController": "t", "reportingInstance": "t", "eventTime": "2025-01-01T00:00:00.000000Z"}),
        ),
        (
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            json!({"spec": {"holderIdentity": "me"}}),
        ),
        (
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            json!({"addressType": "IPv4", "endpoints": []}),
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
            json!({"webhooks": []}),
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
            json!({"webhooks": []}),
        ),
    ];
    for (group, version, kind, plural, namespaced, body) in kinds {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = if *namespaced {
            Api::namespaced_with(client.clone(), "default", &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let mut obj = body.clone();
        obj["apiVersion"] = json!(ar.api_version);
        obj["kind"] = json!(kind);
        obj["metadata"]["name"] = json!("thing");
        let created = api
            .create(&PostParams::default(), &dynamic(obj))
            .await
            .unwrap_or_else(|e| panic!("create {kind} ({group}): {e}"));
        assert!(created.metadata.uid.is_some(), "{kind}");
        let listed = api.list(&Default::default()).await.expect("list");
        assert!(
            listed
                .items
                .iter()
                .any(|o| o.metadata.name.as_deref() == Some("thing")),
            "{kind} ({group}) listed"
        );
    }

    // TokenReview authenticates a token held by a service-account-token Secret.
    let review = |token: &str| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": {"token": token, "audiences": ["trellis"]}})
    };
    let post = |body: Value| {
        http::Request::post("/apis/authentication.k8s.io/v1/tokenreviews")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).expect("json"))
            .expect("request")
    };
    let ok: Value = client
        .request(post(review("secret-token")))
        .await
        .expect("review");
    assert_eq!(ok["status"]["authenticated"], true, "{ok}");
    assert_eq!(
        ok["status"]["user"]["username"],
        "system:serviceaccount:default:thing"
    );
    let bad: Value = client.request(post(review("wrong"))).await.expect("review");
    assert_eq!(bad["status"]["authenticated"], false, "{bad}");
}

#[tokio::test]
async fn tables_for_builtin_kinds_and_crd_columns() {
    let server = TestServer::start().expect("server starts");
    let client = server.client();
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (_, t) = get(&client, "/api/v1/namespaces", Some(table)).await;
    assert_eq!(t["kind"], "Table");
    let columns: Vec<String> = names(&t, "columnDefinitions");
    assert_eq!(columns.first().map(String::as_str), Some("Name"));
    assert_eq!(columns.last().map(String::as_str), Some("Age"));
    let rows = t["rows"].as_array().expect("rows");
    assert!(rows.iter().any(|r| r["cells"][0] == "default"), "{t}");

    crd_api(&client)
        .create(
            &PostParams::default(),
            &dynamic(serde_json::from_str(CRD).expect("CRD")),
        )
        .await
        .expect("create CRD");
    gadgets(&client)
        .create(
            &PostParams::default(),
            &dynamic(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                "metadata": {"name": "g1"}, "spec": {"size": 4}})),
        )
        .await
        .expect("create gadget");
    let (_, t) = get(&client, "/apis/example.com/v1/gadgets", Some(table)).await;
    // As the API server does, Age is added only to CRDs declaring no columns at all.
    assert_eq!(names(&t, "columnDefinitions"), ["Name", "Size"]);
    assert_eq!(t["rows"][0]["cells"][0], "g1");
    assert_eq!(t["rows"][0]["cells"][1], 4);

    // A watch asking for Tables (`kubectl get -w`) gets each event's object as a one-row Table.
    let req = http::Request::get("/apis/example.com/v1/gadgets?watch=true&timeoutSeconds=1")
        .header("Accept", table)
        .body(Body::from(Vec::new()))
        .expect("request");
    let res = client.send(req).await.expect("watch");
    let body = res.into_body().collect_bytes().await.expect("watch body");
    let events: Vec<Value> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| serde_json::from_str(l).expect("event line"))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ADDED");
    let object = &events[0]["object"];
    assert_eq!(object["kind"], "Table");
    assert_eq!(names(object, "columnDefinitions"), ["Name", "Size"]);
    assert_eq!(object["rows"][0]["cells"], json!(["g1", 4]));
}

#[tokio::test]
async fn custom_resources_are_pruned_validated_and_server_side_applied() {
    let server = TestServer::start().expect("server starts");
    let client = server.client();
    crd_api(&client)
        .create(
            &PostParams::default(),
            &dynamic(serde_json::from_str(CRD).expect("CRD")),
        )
        .await
        .expect("create CRD");
    let api = gadgets(&client);

    // Without fieldValidation=Strict unknown fields are pruned, not stored.
    let created = api
        .create(
            &PostParams::default(),
            &dynamic(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                "metadata": {"name": "pruned"}, "spec": {"size": 1, "colour": "red"}})),
        )
        .await
        .expect("create");
    assert_eq!(created.data["spec"], json!({"size": 1}));
    let err = api
        .create(
            &PostParams::default(),
            &dynamic(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                "metadata": {"name": "bad"}, "spec": {"size": 0, "mode": "c"}})),
        )
        .await
        .expect_err("schema violations");
    let kube::Error::Api(s) = err else {
        panic!("expected a Status: {err:?}")
    };
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = s
        .details
        .expect("details")
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert!(fields.contains(&"spec.size".to_string()), "{fields:?}");
    assert!(fields.contains(&"spec.mode".to_string()), "{fields:?}");

    // Patch::Apply creates, records the manager's fields, and owns what it set.
    let config = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "applied"}, "spec": {"size": 2, "tags": ["x"]}});
    let applied = api
        .patch(
            "applied",
            &PatchParams::apply("alpha"),
            &Patch::Apply(&config),
        )
        .await
        .expect("apply creates");
    assert_eq!(applied.data["spec"], json!({"size": 2, "tags": ["x"]}));
    let managed = applied
        .metadata
        .managed_fields
        .clone()
        .expect("managedFields");
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].manager.as_deref(), Some("alpha"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));
    assert_eq!(managed[0].fields_type.as_deref(), Some("FieldsV1"));
    let fields = serde_json::to_value(&managed[0].fields_v1).expect("fieldsV1");
    assert!(fields["f:spec"]["f:size"].is_object(), "{fields}");

    // A second manager setting the same field conflicts unless it forces.
    let other = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "applied"}, "spec": {"size": 5}});
    let err = api
        .patch(
            "applied",
            &PatchParams::apply("beta"),
            &Patch::Apply(&other),
        )
        .await
        .expect_err("conflict");
    let kube::Error::Api(s) = err else {
        panic!("expected a Status: {err:?}")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains(r#"conflict with "alpha""#),
        "{}",
        s.message
    );
    let forced = api
        .patch(
            "applied",
            &PatchParams::apply("beta").force(),
            &Patch::Apply(&other),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data["spec"]["size"], 5);
    assert_eq!(
        forced.data["spec"]["tags"],
        json!(["x"]),
        "alpha still owns tags"
    );

    // alpha drops tags from its configuration (and gave up size): tags are removed.
    let fewer = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "applied"}, "spec": {}});
    let after = api
        .patch(
            "applied",
            &PatchParams::apply("alpha"),
            &Patch::Apply(&fewer),
        )
        .await
        .expect("apply with fewer fields");
    assert_eq!(after.data["spec"], json!({"size": 5}));

    // Patch::Merge on the same object behaves as on a cluster and is recorded as Update.
    let merged = api
        .patch(
            "applied",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "a"}})),
        )
        .await
        .expect("merge");
    assert_eq!(merged.data["spec"], json!({"size": 5, "mode": "a"}));
    assert!(
        merged
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.operation.as_deref() == Some("Update"))
    );

    // Applying a field the schema does not declare fails as the API server fails: a bare 500
    // from structured-merge-diff, whatever fieldValidation says.
    let undeclared = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "applied"}, "spec": {"size": 5, "colour": "red"}});
    for params in [
        PatchParams::apply("alpha"),
        PatchParams::apply("alpha").validation_strict(),
        PatchParams::apply("alpha").validation_ignore(),
    ] {
        let err = api
            .patch("applied", &params, &Patch::Apply(&undeclared))
            .await
            .expect_err("undeclared field");
        let kube::Error::Api(s) = err else {
            panic!("expected a Status: {err:?}")
        };
        assert_eq!(s.code, 500);
        assert_eq!(s.reason, "");
        assert_eq!(
            s.message,
            "failed to create typed patch object (/applied; example.com/v1, Kind=Gadget): .spec.colour: field not declared in schema"
        );
    }
    let unchanged = api.get("applied").await.expect("get");
    assert_eq!(unchanged.data["spec"], json!({"size": 5, "mode": "a"}));
}
