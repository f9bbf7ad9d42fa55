//! `trellis inject` on the real binary: golden files (input + expected
//! output under tests/golden/inject), stdin, directories, idempotence, errors.
//! `TRELLIS_UPDATE_GOLDEN=1` rewrites the expected files.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inject")
}

const INIT_IMAGE: &str = "registry.example/trellis:test";

fn inject(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("inject")
        .args(args)
        .args(["--init-image", INIT_IMAGE])
        .current_dir(golden_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "trellis inject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("TRELLIS_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (TRELLIS_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {} (TRELLIS_UPDATE_GOLDEN=1 rewrites it after review)",
        path.display()
    );
}

fn documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn golden_every_workload_kind_with_mesh_config() {
    let out = ok(&inject(
        &["-f", "workloads.yaml", "--mesh-config", "meshconfig.yaml"],
        None,
    ));
    check_golden("workloads.golden.yaml", &out);
}

#[test]
fn golden_directory_recursive_with_list() {
    let out = ok(&inject(&["-f", "dir"], None));
    check_golden("dir.golden.yaml", &out);
}

#[test]
fn stdin_gives_the_same_output_and_injection_is_idempotent() {
    let input = std::fs::read_to_string(golden_dir().join("workloads.yaml")).unwrap();
    let from_file = ok(&inject(
        &["-f", "workloads.yaml", "--mesh-config", "meshconfig.yaml"],
        None,
    ));
    let from_stdin = ok(&inject(
        &["-f", "-", "--mesh-config", "meshconfig.yaml"],
        Some(&input),
    ));
    assert_eq!(from_file, from_stdin);
    let again = ok(&inject(
        &["-f", "-", "--mesh-config", "meshconfig.yaml"],
        Some(&from_file),
    ));
    assert_eq!(again, from_file, "injecting injected output changes it");
}

fn pod_spec_of(doc: &serde_json::Value) -> Option<PodSpec> {
    let v = doc.clone();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let spec = |t: Option<k8s_openapi::api::core::v1::PodTemplateSpec>| t.and_then(|t| t.spec);
    match kind {
        "Pod" => serde_json::from_value::<Pod>(v).unwrap().spec,
        "Deployment" => spec(
            serde_json::from_value::<Deployment>(v)
                .unwrap()
                .spec
                .map(|s| s.template),
        ),
        "StatefulSet" => spec(
            serde_json::from_value::<StatefulSet>(v)
                .unwrap()
                .spec
                .map(|s| s.template),
        ),
        "DaemonSet" => spec(
            serde_json::from_value::<DaemonSet>(v)
                .unwrap()
                .spec
                .map(|s| s.template),
        ),
        "ReplicaSet" => spec(
            serde_json::from_value::<ReplicaSet>(v)
                .unwrap()
                .spec
                .and_then(|s| s.template),
        ),
        "Job" => spec(
            serde_json::from_value::<Job>(v)
                .unwrap()
                .spec
                .map(|s| s.template),
        ),
        "CronJob" => spec(
            serde_json::from_value::<CronJob>(v)
                .unwrap()
                .spec
                .and_then(|s| s.job_template.spec)
                .map(|s| s.template),
        ),
        _ => None,
    }
}

#[test]
fn workloads_parse_as_their_types_and_other_documents_are_untouched() {
    let input_text = std::fs::read_to_string(golden_dir().join("workloads.yaml")).unwrap();
    let out = ok(&inject(
        &["-f", "workloads.yaml", "--mesh-config", "meshconfig.yaml"],
        None,
    ));
    let (input, output) = (documents(&input_text), documents(&out));
    assert_eq!(input.len(), output.len());
    let mut injected = Vec::new();
    for (before, after) in input.iter().zip(&output) {
        let name = format!("{}/{}", after["kind"], after["metadata"]["name"]);
        match pod_spec_of(after) {
            Some(spec) => {
                let has_proxy = spec.containers.iter().any(|c| c.name == "trellis-proxy");
                let opted_out =
                    ["legacy", "dns"].contains(&after["metadata"]["name"].as_str().unwrap());
                assert_eq!(has_proxy, !opted_out, "{name}");
                if has_proxy {
                    let proxy = spec
                        .containers
                        .iter()
                        .find(|c| c.name == "trellis-proxy")
                        .unwrap();
                    assert_eq!(
                        proxy.image.as_deref(),
                        Some("registry.example/envoy:v1.40.0"),
                        "{name}"
                    );
                    let init = &spec.init_containers.as_ref().unwrap()[0];
                    assert_eq!(init.image.as_deref(), Some(INIT_IMAGE), "{name}");
                    injected.push(after["kind"].as_str().unwrap().to_string());
                } else {
                    assert_eq!(before, after, "{name}");
                }
            }
            None => assert_eq!(before, after, "{name} must pass through unchanged"),
        }
    }
    assert_eq!(
        injected,
        [
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
            "Pod"
        ]
    );
    // Untouched documents keep their text (YAML 1.1 readers see "no" and "on" as strings).
    assert!(
        out.contains("data:\n  yes: \"no\"\n  mode: \"on\"\n"),
        "{out}"
    );
    assert!(out.starts_with("# Every workload kind"), "{out}");
}

#[test]
fn errors_name_object_and_field_and_print_nothing() {
    let out = inject(&["-f", "invalid.yaml"], None);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "partial output on error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(
        lines[0],
        "invalid.yaml (document 2): CronJob/ops/nightly: spec.jobTemplate.spec.template.metadata.annotations[\"traffic.sidecar.istio.io/excludeOutboundIPRanges\"]: invalid value \"10.0.0.0/99\": \"10.0.0.0/99\" has a prefix length outside 0-32"
    );
    assert!(
        lines[1].starts_with(
            "invalid.yaml (document 3): Deployment/ops/broken: spec.template: not a pod template:"
        ),
        "{stderr}"
    );

    let out = inject(&["-f", "missing.yaml"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("missing.yaml: "));
}

#[test]
fn golden_gateway_deployments() {
    let out = ok(&inject(&["-f", "gateway.yaml"], None));
    check_golden("gateway.golden.yaml", &out);
    let docs = documents(&out);
    assert_eq!(docs.len(), 3);
    for (doc, containers) in [
        (&docs[0], &["istio-proxy"][..]),
        (&docs[2], &["log-shipper", "istio-proxy"][..]),
    ] {
        let spec = pod_spec_of(doc).unwrap();
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, containers);
        assert!(spec.init_containers.is_none());
        let proxy = spec
            .containers
            .iter()
            .find(|c| c.name == "istio-proxy")
            .unwrap();
        assert_eq!(
            proxy.image.as_deref(),
            Some(trellis_inject::DEFAULT_PROXY_IMAGE)
        );
        assert!(
            proxy
                .args
                .as_ref()
                .unwrap()
                .contains(&trellis_inject::GATEWAY_SERVICE_NODE_ARG.to_string())
        );
        let template = &doc["spec"]["template"]["metadata"];
        assert!(
            template["labels"]
                .get("security.istio.io/tlsMode")
                .is_none()
        );
        assert!(template["annotations"]["sidecar.istio.io/status"].is_string());
    }
    let ingress = pod_spec_of(&docs[0]).unwrap();
    let ports: Vec<i32> = ingress.containers[0]
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [15090, 80, 443, 15021]);
    let sysctl = |spec: &PodSpec| {
        let s = &spec
            .security_context
            .as_ref()
            .unwrap()
            .sysctls
            .as_ref()
            .unwrap()[0];
        (s.name.clone(), s.value.clone())
    };
    assert_eq!(
        sysctl(&ingress),
        ("net.ipv4.ip_unprivileged_port_start".into(), "0".into())
    );
    assert_eq!(
        sysctl(&pod_spec_of(&docs[2]).unwrap()),
        ("net.ipv4.ip_unprivileged_port_start".into(), "80".into())
    );
    // Injected once.
    assert_eq!(ok(&inject(&["-f", "-"], Some(&out))), out);

    // A template Trellis does not have: the error names the workload and the annotation.
    let input = std::fs::read_to_string(golden_dir().join("gateway.yaml"))
        .unwrap()
        .replacen(
            "  inject.istio.io/templates: gateway",
            "  inject.istio.io/templates: custom",
            1,
        );
    let out = inject(&["-f", "-"], Some(&input));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "<stdin> (document 1): Deployment/edge/ingressgateway: spec.template.metadata.annotations[\"inject.istio.io/templates\"]: invalid value \"custom\": Trellis injects only the templates \"sidecar\" and \"gateway\""
    );
}
