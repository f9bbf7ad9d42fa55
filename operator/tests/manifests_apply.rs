//! The rendered base goes through `kubectl apply` into the Kubernetes API simulator:
//! the kinds it serves are accepted (the default MeshConfig under the CRD's schema),
//! and the validator's initial `failurePolicy: Ignore` is what lets the MeshConfig in
//! before the webhook serves.

mod manifests_support;

use manifests_support::*;
use serde_json::Value;

fn yaml_stream(objs: &[&Value]) -> String {
    objs.iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The simulator stores the kinds it serves (it has no RBAC or policy API); the
/// rest of the base goes through `kubectl apply` as a cluster receives it, CRDs
/// first. The default MeshConfig is admitted while the webhook does not serve yet
/// because validation starts `Ignore`; under `Fail` the same write is refused —
/// the reason the manifests start with `Ignore`.
#[test]
fn the_base_is_accepted_by_the_api_simulator_through_kubectl_apply() {
    let rendered = Rendered::parse(&kustomize("manifests/"));
    let server = kube_sim::TestServer::start().expect("kube-sim");
    let kubectl = kube_sim::Kubectl::new(server.kubeconfig_path());
    let served = [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "Service",
        "Deployment",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    let first: Vec<&Value> = rendered
        .raw
        .iter()
        .filter(|o| served.contains(&o["kind"].as_str().unwrap()))
        .collect();
    let applied = kubectl.apply(&yaml_stream(&first));
    assert_eq!(applied.lines().count(), first.len(), "{applied}");
    let mesh_config: Vec<&Value> = rendered
        .raw
        .iter()
        .filter(|o| o["kind"] == "MeshConfig")
        .collect();
    kubectl.apply(&yaml_stream(&mesh_config));
    let stored = kubectl
        .get_json(&["meshconfig", "default"])
        .expect("MeshConfig default");
    assert_eq!(stored["spec"], mesh_config[0]["spec"]);
    let deployment = kubectl
        .get_json(&["deployment", "-n", NS, "trellis-operator"])
        .expect("Deployment trellis-operator");
    assert_eq!(deployment["spec"]["replicas"], 2);

    // With Fail, no mesh object gets in while the webhook is not serving.
    kubectl.run(&[
        "patch",
        "validatingwebhookconfiguration",
        "trellis-validator",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Fail"}]"#,
    ]);
    let mut changed = mesh_config[0].clone();
    changed["spec"]["proxy"]["logLevel"] = "info".into();
    let refused = kubectl.output(&["apply", "-f", "-"], Some(&yaml_stream(&[&changed])));
    assert!(
        !refused.status.success(),
        "under failurePolicy Fail the write must be refused while the webhook is down: {}",
        output_text(&refused)
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("validation.trellis.dev"),
        "{}",
        output_text(&refused)
    );
}
