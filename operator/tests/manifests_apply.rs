//! The rendered base goes through `kubectl apply` into the Kubernetes API simulator:
//! the kinds it serves are accepted (the default MeshConfig under the CRD's schema),
//! and the validator's initial `failurePolicy: Ignore` is what lets the MeshConfig in
//! before the webhook serves.

mod manifests_support;

use manifests_support::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

struct Sim {
    server: kube_sim::TestServer,
    cache: tempfile::TempDir,
}

impl Sim {
    fn kubectl(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=20s")
            .args(args)
            .env("HOME", self.cache.path())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kubectl");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().expect("kubectl")
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

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
    let sim = Sim {
        server: kube_sim::TestServer::start().expect("kube-sim"),
        cache: tempfile::tempdir().unwrap(),
    };
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
    let applied = sim.ok(&["apply", "-f", "-"], &yaml_stream(&first));
    assert_eq!(applied.lines().count(), first.len(), "{applied}");
    let mesh_config: Vec<&Value> = rendered
        .raw
        .iter()
        .filter(|o| o["kind"] == "MeshConfig")
        .collect();
    sim.ok(&["apply", "-f", "-"], &yaml_stream(&mesh_config));
    let stored: Value =
        serde_json::from_str(&sim.ok(&["get", "meshconfig", "default", "-o", "json"], "")).unwrap();
    assert_eq!(stored["spec"], mesh_config[0]["spec"]);
    let deployment: Value = serde_json::from_str(&sim.ok(
        &[
            "get",
            "deployment",
            "-n",
            NS,
            "trellis-operator",
            "-o",
            "json",
        ],
        "",
    ))
    .unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);

    // With Fail, no mesh object gets in while the webhook is not serving.
    sim.ok(
        &[
            "patch",
            "validatingwebhookconfiguration",
            "trellis-validator",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Fail"}]"#,
        ],
        "",
    );
    let mut changed = mesh_config[0].clone();
    changed["spec"]["proxy"]["logLevel"] = "info".into();
    let refused = sim.kubectl(&["apply", "-f", "-"], &yaml_stream(&[&changed]));
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
