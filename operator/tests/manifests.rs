//! The install manifests: `kubectl kustomize manifests/` with the real kubectl, every
//! rendered object read as its k8s-openapi type (and MeshConfig as its trellis-api
//! type) without losing a field, RBAC equal to the least privileges written down in
//! operator/controller/rbac.yaml, the Deployment's hardening and flags (checked by
//! the real `trellis operator`), the webhook wiring, the local overlay, and the base
//! accepted by the Kubernetes API simulator through `kubectl apply`.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const NS: &str = "trellis-system";
const SA: &str = "trellis-operator";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

fn kubectl_bin() -> PathBuf {
    let bin = std::env::var_os("KUBECTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/kubectl"));
    assert!(
        bin.exists(),
        "kubectl not found at {} (KUBECTL_BIN): run `make setup`",
        bin.display()
    );
    bin
}

fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl kustomize <dir>` run from the workspace root, exactly as the README says.
fn kustomize(dir: &str) -> String {
    let out = Command::new(kubectl_bin())
        .args(["kustomize", dir])
        .current_dir(workspace())
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed: {}",
        output_text(&out)
    );
    String::from_utf8(out.stdout).expect("kustomize output is UTF-8")
}

/// The rendered objects as JSON, in order.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
            serde_json::to_value(v).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn id(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Reads `obj` as `T` and checks that writing it back gives the same JSON, so no
/// field was misspelled, misplaced or of the wrong type (k8s-openapi ignores unknown
/// fields on reading; the round trip catches them).
fn typed<T: DeserializeOwned + serde::Serialize>(obj: &Value) -> T {
    let t: T = serde_json::from_value(obj.clone())
        .unwrap_or_else(|e| panic!("{} does not parse as its type: {e}", id(obj)));
    let back = serde_json::to_value(&t).unwrap();
    if let Some(path) = first_difference(obj, &back, String::new()) {
        panic!(
            "{}: reading it as its k8s-openapi type lost or changed `{path}` (misspelled, misplaced or mistyped field)",
            id(obj)
        );
    }
    t
}

/// The first path where `a` and `b` differ; numbers compare by value (a schema's
/// `minimum: 0` reads back as `0.0`).
fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then_some(path),
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .find_map(|k| {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(x), Some(y)) => first_difference(x, y, p),
                    _ => Some(p),
                }
            }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]"))),
        _ => (a != b).then_some(path),
    }
}

/// Every object of one rendering, by kind.
#[derive(Default)]
struct Rendered {
    namespaces: Vec<Namespace>,
    crds: Vec<CustomResourceDefinition>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    pdbs: Vec<PodDisruptionBudget>,
    mutating: Vec<MutatingWebhookConfiguration>,
    validating: Vec<ValidatingWebhookConfiguration>,
    mesh_configs: Vec<trellis_api::mesh::MeshConfig>,
    raw: Vec<Value>,
}

impl Rendered {
    fn parse(yaml: &str) -> Rendered {
        let mut r = Rendered::default();
        for obj in documents(yaml) {
            let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
            let kind = obj["kind"].as_str().unwrap_or("").to_string();
            match (api_version.as_str(), kind.as_str()) {
                ("v1", "Namespace") => r.namespaces.push(typed(&obj)),
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => r.crds.push(typed(&obj)),
                ("v1", "ServiceAccount") => r.service_accounts.push(typed(&obj)),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    r.cluster_roles.push(typed(&obj))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    r.cluster_role_bindings.push(typed(&obj))
                }
                ("rbac.authorization.k8s.io/v1", "Role") => r.roles.push(typed(&obj)),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                    r.role_bindings.push(typed(&obj))
                }
                ("apps/v1", "Deployment") => r.deployments.push(typed(&obj)),
                ("v1", "Service") => r.services.push(typed(&obj)),
                ("policy/v1", "PodDisruptionBudget") => r.pdbs.push(typed(&obj)),
                ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
                    r.mutating.push(typed(&obj))
                }
                ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                    r.validating.push(typed(&obj))
                }
                ("mesh.trellis.dev/v1alpha1", "MeshConfig") => {
                    let text = serde_json::to_string(&obj).unwrap();
                    let loaded = trellis_api::load("manifests (MeshConfig)", &text)
                        .unwrap_or_else(|e| panic!("MeshConfig does not load: {e}"));
                    for resource in loaded {
                        let errors = trellis_api::validate(&resource);
                        assert!(errors.is_empty(), "{} is invalid: {errors:?}", id(&obj));
                        match resource {
                            trellis_api::Resource::MeshConfig(mc) => r.mesh_configs.push(mc),
                            other => panic!("MeshConfig loaded as {}", other.kind()),
                        }
                    }
                }
                _ => panic!("unexpected object {api_version} {}", id(&obj)),
            }
            r.raw.push(obj);
        }
        r
    }

    fn deployment(&self) -> &Deployment {
        assert_eq!(self.deployments.len(), 1, "one Deployment");
        &self.deployments[0]
    }
}

/// The least privileges written down by the operator work.
fn written_rules() -> (Vec<PolicyRule>, Vec<PolicyRule>) {
    let mut cluster = Vec::new();
    let mut namespaced = Vec::new();
    for obj in documents(trellis_controller::rbac::RBAC_YAML) {
        match obj["kind"].as_str() {
            Some("ClusterRole") => {
                let role: ClusterRole = serde_json::from_value(obj).unwrap();
                assert_eq!(role.metadata.name.as_deref(), Some("trellis-operator"));
                cluster.extend(role.rules.unwrap_or_default());
            }
            Some("Role") => {
                let role: Role = serde_json::from_value(obj).unwrap();
                assert_eq!(
                    role.metadata.name.as_deref(),
                    Some("trellis-operator-leader-election")
                );
                namespaced.extend(role.rules.unwrap_or_default());
            }
            other => panic!("rbac.yaml: unexpected kind {other:?}"),
        }
    }
    (cluster, namespaced)
}

fn check_rbac(r: &Rendered) {
    let (cluster, namespaced) = written_rules();
    let roles: BTreeMap<_, _> = r
        .cluster_roles
        .iter()
        .map(|c| (c.metadata.name.clone().unwrap(), c.rules.clone().unwrap()))
        .collect();
    assert_eq!(
        roles.keys().map(String::as_str).collect::<Vec<_>>(),
        ["trellis-operator"],
        "ClusterRoles"
    );
    assert_eq!(
        roles["trellis-operator"], cluster,
        "ClusterRole trellis-operator must equal operator/controller/rbac.yaml"
    );
    // Webhook configurations: only our two, by name, and only get/patch (the CA
    // bundle and the validator's failure policy).
    let admission: Vec<_> = cluster
        .iter()
        .filter(|r| {
            r.api_groups
                .iter()
                .flatten()
                .any(|g| g == "admissionregistration.k8s.io")
        })
        .collect();
    assert!(
        !admission.is_empty(),
        "the operator may patch its webhook configurations"
    );
    for rule in admission {
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(
                &[
                    "trellis-sidecar-injector".to_string(),
                    "trellis-validator".to_string()
                ][..]
            ),
            "webhook configurations by name: {rule:?}"
        );
        assert_eq!(rule.verbs, ["get", "patch"], "{rule:?}");
    }
    assert_eq!(r.roles.len(), 1, "one Role");
    let role = &r.roles[0];
    assert_eq!(role.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(
        role.rules.as_ref().unwrap(),
        &namespaced,
        "Role must equal operator/controller/rbac.yaml"
    );
    let all_rules = roles.values().flatten().chain(role.rules.iter().flatten());
    for rule in all_rules {
        for v in [
            &rule.verbs,
            rule.api_groups.as_ref().unwrap(),
            rule.resources.as_ref().unwrap(),
        ] {
            assert!(!v.iter().any(|x| x == "*"), "no wildcard in {rule:?}");
        }
    }

    // Bindings: each role bound to the operator's ServiceAccount only.
    assert_eq!(r.service_accounts.len(), 1);
    assert_eq!(r.service_accounts[0].metadata.name.as_deref(), Some(SA));
    assert_eq!(
        r.service_accounts[0].metadata.namespace.as_deref(),
        Some(NS)
    );
    let mut bound = BTreeSet::new();
    for b in &r.cluster_role_bindings {
        assert_eq!(b.role_ref.kind, "ClusterRole");
        bound.insert(("ClusterRole", b.role_ref.name.clone()));
        check_subjects(b.subjects.as_deref());
    }
    for b in &r.role_bindings {
        assert_eq!(b.metadata.namespace.as_deref(), Some(NS));
        assert_eq!(b.role_ref.kind, "Role");
        bound.insert(("Role", b.role_ref.name.clone()));
        check_subjects(b.subjects.as_deref());
    }
    let expected: BTreeSet<_> = [
        ("ClusterRole", "trellis-operator".to_string()),
        ("Role", "trellis-operator-leader-election".to_string()),
    ]
    .into();
    assert_eq!(bound, expected, "every role bound once");
    assert_eq!(
        r.cluster_role_bindings.len() + r.role_bindings.len(),
        2,
        "no extra bindings"
    );
}

fn check_subjects(subjects: Option<&[k8s_openapi::api::rbac::v1::Subject]>) {
    let subjects = subjects.expect("binding has subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, SA);
    assert_eq!(subjects[0].namespace.as_deref(), Some(NS));
}

fn check_deployment(r: &Rendered) {
    let d = r.deployment();
    assert_eq!(d.metadata.namespace.as_deref(), Some(NS));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2), "two replicas");
    let selector = spec.selector.match_labels.clone().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for (k, v) in &selector {
        assert_eq!(labels.get(k), Some(v), "pod template carries selector {k}");
    }
    assert_eq!(
        labels.get("sidecar.istio.io/inject").map(String::as_str),
        Some("false"),
        "the control plane is never injected"
    );
    assert_eq!(pod.service_account_name.as_deref(), Some(SA));

    // Anti-affinity on the pod's own labels, spread by node.
    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .expect("pod anti-affinity");
    let terms = anti
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
        .expect("preferred anti-affinity");
    assert!(terms.iter().any(|t| {
        t.pod_affinity_term.topology_key == "kubernetes.io/hostname"
            && t.pod_affinity_term
                .label_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                == Some(&selector)
    }));

    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some(trellis_inject::DEFAULT_INIT_IMAGE),
        "the operator runs the image the injector uses for proxy-init"
    );
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert!(sc.run_as_user.is_some_and(|u| u != 0), "non-root UID");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(caps.add.is_none(), "no capability added");

    let resources = c.resources.as_ref().expect("resources");
    for key in ["cpu", "memory"] {
        assert!(
            resources.requests.as_ref().unwrap().contains_key(key),
            "requests.{key}"
        );
    }
    assert!(resources.limits.as_ref().unwrap().contains_key("memory"));

    // Probes on the metrics port (the telemetry server's /healthz and /readyz).
    let ports: BTreeMap<_, _> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([
            ("grpc-xds".to_string(), 15012),
            ("http-metrics".to_string(), 15014),
            ("https-webhook".to_string(), 15017),
        ])
    );
    let probe_port = |p: &k8s_openapi::api::core::v1::Probe| {
        let get = p.http_get.as_ref().expect("httpGet probe");
        let port = match &get.port {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => ports[name],
        };
        (get.path.clone().unwrap(), port)
    };
    assert_eq!(
        probe_port(c.liveness_probe.as_ref().expect("liveness")),
        ("/healthz".to_string(), 15014)
    );
    assert_eq!(
        probe_port(c.readiness_probe.as_ref().expect("readiness")),
        ("/readyz".to_string(), 15014)
    );
}

/// The Deployment's command line is accepted by the real binary: clap parses every
/// flag and the operator's own checks pass, so the run only stops at the kubeconfig
/// we point at a missing file.
fn check_command_line(d: &Deployment) {
    let c = &d
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let command = c.command.clone().expect("command");
    assert_eq!(command, ["/usr/local/bin/trellis", "operator"]);
    let args = c.args.clone().unwrap_or_default();
    let env: BTreeMap<_, _> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value_from.is_some()))
        .collect();
    assert_eq!(
        env.get("POD_NAMESPACE"),
        Some(&true),
        "POD_NAMESPACE from the downward API"
    );
    assert_eq!(
        env.get("POD_NAME"),
        Some(&true),
        "POD_NAME from the downward API"
    );
    // The image injected init containers run proxy-init from is the operator's own.
    let init_image = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TRELLIS_IMAGE")
        .and_then(|e| e.value.clone());
    assert_eq!(
        init_image, c.image,
        "TRELLIS_IMAGE (--init-image) must name the container's image"
    );
    // The listen flags match the declared container ports.
    let ports: BTreeMap<_, _> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    for (flag, port) in [
        ("--xds-addr", "grpc-xds"),
        ("--metrics-addr", "http-metrics"),
        ("--webhook-addr", "https-webhook"),
    ] {
        let value = args
            .iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("{flag} is set"));
        let addr: std::net::SocketAddr = value.parse().expect("socket address");
        assert_eq!(
            i32::from(addr.port()),
            ports[port],
            "{flag} listens on port {port}"
        );
    }
    let missing = tempfile::tempdir().unwrap();
    let kubeconfig = missing.path().join("no-such-kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(&command[1..])
        .args(&args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .envs(
            c.env
                .iter()
                .flatten()
                .filter_map(|e| Some((e.name.clone(), e.value.clone()?))),
        )
        .env("POD_NAMESPACE", NS)
        .env("POD_NAME", "trellis-operator-0")
        .env_remove("KUBECONFIG")
        .output()
        .expect("running trellis");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_ne!(
        out.status.code(),
        Some(2),
        "clap refused the Deployment's flags: {}",
        output_text(&out)
    );
    assert!(
        stderr.contains(&format!("--kubeconfig {}", kubeconfig.display())),
        "the flags passed validation and only the kubeconfig failed: {}",
        output_text(&out)
    );
}

fn check_services(r: &Rendered) {
    let pod_labels = r
        .deployment()
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let mut ports = BTreeMap::new();
    for s in &r.services {
        assert_eq!(s.metadata.namespace.as_deref(), Some(NS));
        let spec = s.spec.as_ref().unwrap();
        for (k, v) in spec.selector.as_ref().expect("selector") {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "Service selects the operator pods"
            );
        }
        for p in spec.ports.iter().flatten() {
            let target = match p.target_port.as_ref().expect("targetPort") {
                IntOrString::Int(n) => *n,
                IntOrString::String(name) => match name.as_str() {
                    "grpc-xds" => 15012,
                    "http-metrics" => 15014,
                    "https-webhook" => 15017,
                    other => panic!("unknown named port {other}"),
                },
            };
            ports.insert(s.metadata.name.clone().unwrap(), (p.port, target));
        }
    }
    assert_eq!(
        ports,
        BTreeMap::from([
            ("trellis-xds".to_string(), (15012, 15012)),
            ("trellis-webhook".to_string(), (443, 15017)),
            ("trellis-metrics".to_string(), (15014, 15014)),
        ])
    );
}

fn check_webhooks(r: &Rendered) {
    assert_eq!(r.mutating.len(), 1);
    let m = &r.mutating[0];
    assert_eq!(m.metadata.name.as_deref(), Some("trellis-sidecar-injector"));
    let hooks = m.webhooks.as_ref().unwrap();
    assert_eq!(hooks.len(), 3);
    let excluded = [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "trellis-system",
    ];
    for h in hooks {
        assert_eq!(h.failure_policy.as_deref(), Some("Fail"), "{}", h.name);
        assert_eq!(h.side_effects, "None");
        let svc = h.client_config.service.as_ref().expect("service client");
        assert_eq!(
            (
                svc.namespace.as_str(),
                svc.name.as_str(),
                svc.port,
                svc.path.as_deref()
            ),
            (NS, "trellis-webhook", Some(443), Some("/inject"))
        );
        assert!(
            h.client_config.ca_bundle.is_none(),
            "the operator writes caBundle"
        );
        let rules = h.rules.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].operations.as_deref(),
            Some(&["CREATE".to_string()][..])
        );
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["pods".to_string()][..])
        );
        let exprs = h
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_expressions.clone())
            .expect("namespaceSelector");
        assert!(
            exprs.iter().any(|e| e.key == "kubernetes.io/metadata.name"
                && e.operator == "NotIn"
                && excluded
                    .iter()
                    .all(|n| e.values.iter().flatten().any(|v| v == n))),
            "{}: system namespaces and trellis-system excluded",
            h.name
        );
    }
    let selects = |key: &str, op: &str| {
        hooks.iter().any(|h| {
            h.namespace_selector
                .as_ref()
                .and_then(|s| s.match_expressions.as_ref())
                .is_some_and(|e| e.iter().any(|e| e.key == key && e.operator == op))
        })
    };
    assert!(
        selects("istio-injection", "In"),
        "istio-injection=enabled selected"
    );
    assert!(selects("istio.io/rev", "Exists"), "istio.io/rev selected");

    assert_eq!(r.validating.len(), 1);
    let v = &r.validating[0];
    assert_eq!(v.metadata.name.as_deref(), Some("trellis-validator"));
    let hooks = v.webhooks.as_ref().unwrap();
    assert_eq!(hooks.len(), 1);
    let h = &hooks[0];
    assert_eq!(
        h.failure_policy.as_deref(),
        Some("Ignore"),
        "validation starts Ignore; the operator switches it to Fail once it serves"
    );
    let svc = h.client_config.service.as_ref().unwrap();
    assert_eq!(
        (
            svc.namespace.as_str(),
            svc.name.as_str(),
            svc.port,
            svc.path.as_deref()
        ),
        (NS, "trellis-webhook", Some(443), Some("/validate"))
    );
    let groups: BTreeSet<_> = h
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.api_groups.clone().unwrap())
        .collect();
    let mesh_groups: BTreeSet<_> = r.crds.iter().map(|c| c.spec.group.clone()).collect();
    assert_eq!(groups, mesh_groups, "every mesh API group is validated");
    let ops: BTreeSet<_> = h
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.operations.clone().unwrap())
        .collect();
    assert_eq!(
        ops,
        BTreeSet::from(["CREATE".to_string(), "UPDATE".to_string()])
    );
}

fn check_crds_and_rest(r: &Rendered) {
    // Every generated CRD, unchanged apart from the part-of label.
    let generated =
        documents(&std::fs::read_to_string(workspace().join("crds/kustomization.yaml")).unwrap());
    let files = generated[0]["resources"].as_array().unwrap().clone();
    assert_eq!(r.crds.len(), files.len(), "every CRD of crds/");
    for file in files {
        let path = workspace().join("crds").join(file.as_str().unwrap());
        let mut want = documents(&std::fs::read_to_string(&path).unwrap()).remove(0);
        let name = want["metadata"]["name"].as_str().unwrap().to_string();
        let mut got = r
            .raw
            .iter()
            .find(|o| {
                o["kind"] == "CustomResourceDefinition" && o["metadata"]["name"] == name.as_str()
            })
            .unwrap_or_else(|| panic!("CRD {name} rendered"))
            .clone();
        got["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app.kubernetes.io/part-of");
        if got["metadata"]["labels"].as_object().unwrap().is_empty() {
            got["metadata"].as_object_mut().unwrap().remove("labels");
        }
        if want["metadata"]["labels"]
            .as_object()
            .is_some_and(|l| l.is_empty())
        {
            want["metadata"].as_object_mut().unwrap().remove("labels");
        }
        if let Some(path) = first_difference(&want, &got, String::new()) {
            panic!("CRD {name} rendered differs from crds/ at `{path}`");
        }
    }
    assert_eq!(r.namespaces.len(), 1);
    assert_eq!(r.namespaces[0].metadata.name.as_deref(), Some(NS));
    assert_eq!(r.pdbs.len(), 1);
    let pdb = r.pdbs[0].spec.as_ref().unwrap();
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb.selector.as_ref().unwrap().match_labels,
        r.deployment().spec.as_ref().unwrap().selector.match_labels
    );
    // The default MeshConfig: the one name the operator reads, the built-in defaults.
    assert_eq!(r.mesh_configs.len(), 1);
    let mc = &r.mesh_configs[0];
    assert_eq!(
        mc.metadata.name.as_deref(),
        Some(trellis_api::mesh::MESH_CONFIG_NAME)
    );
    assert!(
        mc.metadata.namespace.is_none(),
        "MeshConfig is cluster-scoped"
    );
    assert_eq!(
        mc.spec.trust_domain.as_deref(),
        Some(trellis_api::mesh::DEFAULT_TRUST_DOMAIN)
    );
    assert_eq!(
        mc.spec.proxy.as_ref().and_then(|p| p.image.as_deref()),
        Some(trellis_inject::DEFAULT_PROXY_IMAGE)
    );
    // Every object is labelled as part of trellis.
    for obj in &r.raw {
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "trellis",
            "{} labelled part-of trellis",
            id(obj)
        );
    }
}

#[test]
fn kubectl_kustomize_manifests_renders_the_install_as_typed_objects() {
    let rendered = Rendered::parse(&kustomize("manifests/"));
    check_rbac(&rendered);
    check_deployment(&rendered);
    check_command_line(rendered.deployment());
    check_services(&rendered);
    check_webhooks(&rendered);
    check_crds_and_rest(&rendered);
    // manifests/ is the base.
    assert_eq!(kustomize("manifests/"), kustomize("manifests/base"));
}

#[test]
fn the_local_overlay_pulls_the_local_registry_image_and_keeps_the_base() {
    let base = Rendered::parse(&kustomize("manifests/"));
    let local = Rendered::parse(&kustomize("manifests/overlays/local"));
    let c = &local
        .deployment()
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("localhost:5001/trellis:dev"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    check_command_line(local.deployment());
    check_rbac(&local);
    check_services(&local);
    check_webhooks(&local);
    // Apart from the Deployment, the overlay is the base.
    let others = |r: &Rendered| {
        r.raw
            .iter()
            .filter(|o| o["kind"] != "Deployment")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&local), others(&base));
}

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
