//! kubectl's imperative `create` commands, which send the protobuf encoding through
//! client-go's typed clients: namespace, configmap, secret, serviceaccount.

mod common;

use kube_sim::{Kubectl, TestServer};

#[test]
fn imperative_creates_in_protobuf_are_stored_as_sent() {
    let server = TestServer::start().expect("server starts");
    let k = Kubectl::new(server.kubeconfig_path());

    let out = k.run(&["create", "namespace", "team-a"]);
    assert_eq!(out.trim(), "namespace/team-a created");
    assert_eq!(
        k.run(&[
            "get",
            "ns",
            "team-a",
            "-o",
            "jsonpath={.spec.finalizers} {.status.phase}"
        ]),
        r#"["kubernetes"] Active"#
    );

    let out = k.run(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team-a",
        "--from-literal=mode=blue",
        "--from-literal=size=3",
    ]);
    assert_eq!(out.trim(), "configmap/settings created");
    assert_eq!(
        k.run(&[
            "get",
            "cm",
            "settings",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.mode} {.data.size}"
        ]),
        "blue 3"
    );

    let out = k.run(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team-a",
        "--from-literal=token=s3cr3t",
        "--type=example.com/token",
    ]);
    assert_eq!(out.trim(), "secret/creds created");
    assert_eq!(
        k.run(&[
            "get",
            "secret",
            "creds",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.type} {.data.token}"
        ]),
        "example.com/token czNjcjN0"
    );

    let out = k.run(&["create", "serviceaccount", "robot", "-n", "team-a"]);
    assert_eq!(out.trim(), "serviceaccount/robot created");
    assert!(
        k.run(&[
            "get",
            "sa",
            "robot",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.metadata.uid}"
        ])
        .len()
            == 36
    );

    // `get all` lists the kinds in the `all` category (Services, Deployments), not ConfigMaps.
    k.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: team-a}\nspec:\n  ports: [{port: 80}]\n");

    // `kubectl scale` goes through the Deployment's scale subresource.
    k.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team-a}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: web:1}]}\n");
    let out = k.run(&["scale", "deployment", "web", "-n", "team-a", "--replicas=3"]);
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    assert_eq!(
        k.run(&[
            "get",
            "deploy",
            "web",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}"
        ]),
        "3 2"
    );
    let all = k.run(&["get", "all", "-n", "team-a", "-o", "name"]);
    assert_eq!(all.trim(), "service/web\ndeployment.apps/web");
    let scale = k.run(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/team-a/deployments/web/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("Scale JSON");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");

    // Creating it again is the API server's AlreadyExists.
    let err = common::fails(
        &k,
        &["create", "serviceaccount", "robot", "-n", "team-a"],
        None,
    );
    assert_eq!(
        err.trim(),
        r#"error: failed to create serviceaccount: serviceaccounts "robot" already exists"#
    );
}
