//! The containers and volumes the injector adds.

use crate::capture::{HEALTH_PORT, METRICS_PORT, PROXY_UID};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, Probe, ResourceRequirements, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const INIT_CONTAINER_NAME: &str = "trellis-init";
pub const PROXY_CONTAINER_NAME: &str = "trellis-proxy";
/// Envoy image when MeshConfig names none.
pub const DEFAULT_PROXY_IMAGE: &str = "docker.io/envoyproxy/envoy:v1.40.0";
/// Image of the `trellis` binary (run as `trellis proxy-init`) when none is configured:
/// the webhook and `trellis inject` use the same default.
pub const DEFAULT_INIT_IMAGE: &str =
    concat!("ghcr.io/trellis-mesh/trellis:", env!("CARGO_PKG_VERSION"));
pub const ROOT_CERT_CONFIG_MAP: &str = "trellis-ca-root-cert";
pub const BOOTSTRAP_CONFIG_MAP: &str = "trellis-sidecar-bootstrap";
pub const CERTS_DIR: &str = "/etc/certs";
pub const ROOT_CERT_DIR: &str = "/etc/trellis/root";
pub const BOOTSTRAP_DIR: &str = "/etc/trellis/bootstrap";

/// `--service-node`: the xDS server's node id (Istio's format), filled in by Kubernetes
/// from the downward-API environment of the proxy container. The DNS domain in the last
/// field is informational (the server reads only the namespace there), as in Istio.
pub const SERVICE_NODE_ARG: &str =
    "sidecar~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local";
/// `--service-node` of a gateway proxy: the same as [`SERVICE_NODE_ARG`] but
/// for its kind, `router` (Istio's word for a gateway), which makes the xDS
/// server send it the configuration of the Gateways that select it.
pub const GATEWAY_SERVICE_NODE_ARG: &str =
    "router~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local";
/// The proxy container of a gateway pod: the name of the placeholder
/// container Istio's gateway manifests carry (`image: auto`), kept so that
/// `kubectl logs -c istio-proxy` and the users' manifests keep working.
pub const GATEWAY_CONTAINER_NAME: &str = "istio-proxy";
/// `--service-cluster`: `<service-account>.<namespace>`; the xDS server takes the
/// service account from it (the shared bootstrap carries no per-pod metadata).
pub const SERVICE_CLUSTER_ARG: &str = "$(SERVICE_ACCOUNT).$(POD_NAMESPACE)";
/// Envoy's bootstrap file, a key of ConfigMap [`BOOTSTRAP_CONFIG_MAP`].
pub const BOOTSTRAP_FILE: &str = "envoy.json";

pub(crate) const IDENTITY_VOLUME: &str = "trellis-identity";
pub(crate) const ROOT_VOLUME: &str = "trellis-ca-root";
pub(crate) const BOOTSTRAP_VOLUME: &str = "trellis-bootstrap";
/// The injected volumes: [`identity_volume`], then [`shared_volumes`].
pub(crate) const VOLUME_NAMES: [&str; 3] = [IDENTITY_VOLUME, ROOT_VOLUME, BOOTSTRAP_VOLUME];

/// The Secret holding the identity of a service account, created by the operator.
pub fn identity_secret_name(service_account: &str) -> String {
    format!("trellis-identity-{service_account}")
}

/// `trellis-init` running `trellis proxy-init` with `args` (the pod's capture options).
pub(crate) fn init_container(image: &str, args: Vec<String>) -> Container {
    Container {
        name: INIT_CONTAINER_NAME.into(),
        image: Some(image.into()),
        args: Some(args),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), q("10m")),
                    ("memory".to_string(), q("16Mi")),
                ]
                .into(),
            ),
            limits: Some(
                [
                    ("cpu".to_string(), q("100m")),
                    ("memory".to_string(), q("64Mi")),
                ]
                .into(),
            ),
            ..Default::default()
        }),
        // Only this short-lived container holds NET_ADMIN/NET_RAW: it must run
        // as root to change the pod's nat table.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn q(s: &str) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.into())
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The sidecar proxy: Envoy with the pod's node id of kind `sidecar`.
pub(crate) fn proxy_container(
    image: &str,
    resources: Option<ResourceRequirements>,
    log_level: &str,
) -> Container {
    envoy_container(image, resources, log_level, SERVICE_NODE_ARG)
}

/// The gateway proxy: the sidecar proxy's container (image, resources, log
/// level, security context, mounts, readiness and metrics ports) with the node
/// id of kind `router`, named [`GATEWAY_CONTAINER_NAME`]. From `user`, the
/// `istio-proxy` container it replaces, it keeps the `ports` (ours are added
/// unless the user declared the same port number) and the `resources` when
/// set (non-empty); nothing else of it.
pub(crate) fn gateway_container(
    image: &str,
    resources: Option<ResourceRequirements>,
    log_level: &str,
    user: Option<&Container>,
) -> Container {
    let mut proxy = envoy_container(image, resources, log_level, GATEWAY_SERVICE_NODE_ARG);
    proxy.name = GATEWAY_CONTAINER_NAME.into();
    let Some(user) = user else {
        return proxy;
    };
    if let Some(r) = user
        .resources
        .as_ref()
        .filter(|r| **r != ResourceRequirements::default())
    {
        proxy.resources = Some(r.clone());
    }
    let mut ports = user.ports.clone().unwrap_or_default();
    for ours in proxy.ports.take().unwrap_or_default() {
        let protocol = |p: &ContainerPort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
        if ports
            .iter()
            .any(|p| p.container_port == ours.container_port && protocol(p) == protocol(&ours))
        {
            continue;
        }
        // Port names are unique in a container: a name the user took is left off.
        let name_taken = ports
            .iter()
            .any(|p| p.name.is_some() && p.name == ours.name);
        ports.push(ContainerPort {
            name: if name_taken { None } else { ours.name },
            ..ours
        });
    }
    proxy.ports = Some(ports);
    proxy
}

fn envoy_container(
    image: &str,
    resources: Option<ResourceRequirements>,
    log_level: &str,
    service_node: &str,
) -> Container {
    let port = |name: &str, p: u16| ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(p),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Container {
        name: PROXY_CONTAINER_NAME.into(),
        image: Some(image.into()),
        args: Some(vec![
            "-c".into(),
            format!("{BOOTSTRAP_DIR}/{BOOTSTRAP_FILE}"),
            "--service-node".into(),
            service_node.into(),
            "--service-cluster".into(),
            SERVICE_CLUSTER_ARG.into(),
            "--disable-hot-restart".into(),
            "--log-level".into(),
            log_level.into(),
        ]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            field_env("INSTANCE_IP", "status.podIP"),
        ]),
        ports: Some(vec![
            port("http-envoy-prom", METRICS_PORT),
            port("health", HEALTH_PORT),
        ]),
        readiness_probe: Some(envoy_ready_probe(2, 30)),
        resources,
        security_context: Some(SecurityContext {
            run_as_user: Some(i64::from(PROXY_UID)),
            run_as_group: Some(i64::from(PROXY_UID)),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount(IDENTITY_VOLUME, CERTS_DIR),
            mount(ROOT_VOLUME, ROOT_CERT_DIR),
            mount(BOOTSTRAP_VOLUME, BOOTSTRAP_DIR),
        ]),
        ..Default::default()
    }
}

/// `proxy` as a Kubernetes native sidecar: an init container that keeps
/// running (`restartPolicy: Always`); the kubelet starts the next containers
/// once its startup probe passes, and stops it after the app containers exit.
pub(crate) fn as_native_sidecar(mut proxy: Container) -> Container {
    proxy.restart_policy = Some("Always".into());
    // Up to ten minutes for the first configuration from the control plane.
    proxy.startup_probe = Some(envoy_ready_probe(1, 600));
    proxy
}

/// A probe of Envoy's readiness on the health port.
fn envoy_ready_probe(period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz/ready".into()),
            port: IntOrString::Int(i32::from(HEALTH_PORT)),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

/// The volume of the pod's identity: the Secret of its service account.
pub fn identity_volume(service_account: &str) -> Volume {
    Volume {
        name: IDENTITY_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(identity_secret_name(service_account)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The volumes after the identity volume, the same for every pod: the mesh
/// root and the proxy bootstrap.
pub fn shared_volumes() -> [Volume; 2] {
    let config_map = |name: &str, cm: &str| Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: cm.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    [
        config_map(ROOT_VOLUME, ROOT_CERT_CONFIG_MAP),
        config_map(BOOTSTRAP_VOLUME, BOOTSTRAP_CONFIG_MAP),
    ]
}
