//! The install manifests: `kubectl kustomize manifests/` with the real kubectl, every
//! rendered object read as its k8s-openapi type (and MeshConfig as its trellis-api
//! type) without losing a field, RBAC equal to the least privileges written down in
//! operator/controller/rbac.yaml, the Deployment's hardening and flags (checked by
//! the real `trellis operator`), the webhook wiring (equal to what trellis-webhook
//! generates, minus the CA bundle the operator writes), and the local overlay.

mod manifests_support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use manifests_support::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

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
    // Nodes: read only, for their topology labels (the locality of their pods).
    let nodes: Vec<_> = (cluster.iter())
        .filter(|r| r.resources.iter().flatten().any(|x| x == "nodes"))
        .collect();
    assert_eq!(nodes.len(), 1, "one rule names nodes: {nodes:?}");
    assert_eq!(nodes[0].verbs, ["list", "watch"], "{:?}", nodes[0]);
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
    // What the namespace's `restricted` Pod Security level demands beyond the checks below.
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.volumes.is_none());
    let ns_labels = r.namespaces[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        ns_labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
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
    // After SIGTERM: the shutdown delay, then up to 5 s for the reviews in
    // progress, then the Lease release; all of it before the kubelet's SIGKILL.
    let delay: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--shutdown-delay=")?.strip_suffix('s'))
        .expect("--shutdown-delay=<n>s is set")
        .parse()
        .expect("whole seconds");
    let grace = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let grace = grace
        .termination_grace_period_seconds
        .expect("terminationGracePeriodSeconds");
    assert!(
        (delay + 5 + 10) as i64 <= grace,
        "--shutdown-delay={delay}s leaves too little of terminationGracePeriodSeconds {grace}"
    );
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

/// The webhook configurations are the ones trellis-webhook generates (which the
/// operator patches), apart from the CA bundle the operator writes at start and the
/// Flux annotation of the validator.
fn check_webhooks_match_trellis_webhook(r: &Rendered) {
    let client = trellis_webhook::WebhookClient::Service {
        namespace: NS.into(),
        port: 443,
    };
    let strip = |mut config: Value| {
        for webhook in config["webhooks"].as_array_mut().expect("webhooks") {
            webhook["clientConfig"]
                .as_object_mut()
                .expect("clientConfig")
                .remove("caBundle");
        }
        config["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        config
    };
    let rendered = |kind: &str| {
        strip(
            r.raw
                .iter()
                .find(|o| o["kind"] == kind)
                .unwrap_or_else(|| panic!("{kind} rendered"))
                .clone(),
        )
    };
    for (kind, generated) in [
        (
            "MutatingWebhookConfiguration",
            trellis_webhook::mutating_webhook_configuration(NS, &client, ""),
        ),
        (
            "ValidatingWebhookConfiguration",
            trellis_webhook::validating_webhook_configuration(&client, "", "Ignore"),
        ),
    ] {
        if let Some(path) = first_difference(&strip(generated), &rendered(kind), String::new()) {
            panic!("{kind}: manifests/base/webhooks.yaml differs from trellis-webhook at `{path}`");
        }
    }
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
    check_webhooks_match_trellis_webhook(&rendered);
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

/// The YAML of the README's Argo CD and Flux sections parses and names what the
/// manifests really contain.
#[test]
fn the_readme_gitops_snippets_match_the_manifests() {
    let rendered = Rendered::parse(&kustomize("manifests/"));
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    // Only our sections: from "## Argo CD" to the next section after "## Flux".
    let start = readme
        .find("\n## Argo CD\n")
        .expect("README has ## Argo CD");
    let flux = start
        + readme[start..]
            .find("\n## Flux\n")
            .expect("README has ## Flux");
    let end = readme[flux + 1..]
        .find("\n## ")
        .map_or(readme.len(), |i| flux + 1 + i);
    let blocks: Vec<Value> = readme[start..end]
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .flat_map(documents)
        .collect();
    let find = |kind: &str| {
        blocks
            .iter()
            .find(|b| b["kind"] == kind)
            .unwrap_or_else(|| panic!("README has a {kind}"))
    };

    // Argo CD: the Application renders manifests/ and ignores exactly the fields the
    // operator writes, on objects that exist.
    let app = find("Application");
    assert_eq!(app["spec"]["source"]["path"], "manifests");
    let ignored = app["spec"]["ignoreDifferences"].as_array().unwrap();
    for entry in ignored {
        let kind = entry["kind"].as_str().unwrap();
        let name = entry["name"].as_str().unwrap();
        assert!(
            rendered
                .raw
                .iter()
                .any(|o| o["kind"] == kind && o["metadata"]["name"] == name),
            "ignoreDifferences names {kind}/{name}, which the manifests do not have"
        );
    }
    let validator = ignored
        .iter()
        .find(|e| e["kind"] == "ValidatingWebhookConfiguration")
        .expect("the validator's operator-written fields are ignored");
    let paths: Vec<&str> = validator["jqPathExpressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(paths.contains(&".webhooks[]?.failurePolicy"), "{paths:?}");
    assert!(
        paths.contains(&".webhooks[]?.clientConfig.caBundle"),
        "{paths:?}"
    );
    let options: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert!(options.contains(&"RespectIgnoreDifferences=true"));

    // Health checks for every kind that gets an Accepted condition, and MeshStatus.
    let health = blocks
        .iter()
        .find(|b| b["data"].is_object())
        .expect("README has the argocd-cm data");
    for kind in [
        "networking.istio.io_VirtualService",
        "networking.istio.io_DestinationRule",
        "networking.istio.io_Gateway",
        "networking.istio.io_ServiceEntry",
        "networking.istio.io_Sidecar",
        "security.istio.io_PeerAuthentication",
        "security.istio.io_RequestAuthentication",
        "security.istio.io_AuthorizationPolicy",
        "mesh.trellis.dev_MeshStatus",
    ] {
        let script = health["data"][format!("resource.customizations.health.{kind}")]
            .as_str()
            .unwrap_or_else(|| panic!("a health check for {kind}"));
        let condition = if kind.ends_with("MeshStatus") {
            "\"Ready\""
        } else {
            "\"Accepted\""
        };
        assert!(script.contains(condition), "{kind} looks at {condition}");
    }

    // Flux: the Kustomization renders ./manifests and waits for the real Deployment;
    // the validator carries the annotation the README relies on.
    let flux = find("Kustomization");
    assert_eq!(flux["spec"]["path"], "./manifests");
    let check = &flux["spec"]["healthChecks"][0];
    let d = rendered.deployment();
    assert_eq!(
        (
            check["kind"].as_str(),
            check["name"].as_str(),
            check["namespace"].as_str()
        ),
        (
            Some("Deployment"),
            d.metadata.name.as_deref(),
            d.metadata.namespace.as_deref()
        )
    );
    let annotations = rendered.validating[0]
        .metadata
        .annotations
        .clone()
        .unwrap_or_default();
    assert_eq!(
        annotations
            .get("kustomize.toolkit.fluxcd.io/ssa")
            .map(String::as_str),
        Some("IfNotPresent")
    );
}

/// The real-cluster script at least parses, and installs what this test renders.
#[test]
fn the_real_cluster_smoke_script_parses() {
    let script = workspace().join("tests/real-cluster/smoke.sh");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("running bash -n");
    assert!(
        out.status.success(),
        "bash -n smoke.sh: {}",
        output_text(&out)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("MANIFESTS=${MANIFESTS:-manifests/}"));
    assert!(text.contains("rollout status deployment/trellis-operator"));
    let d = Rendered::parse(&kustomize("manifests/"));
    assert_eq!(
        d.deployment().metadata.name.as_deref(),
        Some("trellis-operator")
    );
}
