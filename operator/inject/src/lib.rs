//! Sidecar injection, as pure functions (no I/O), shared by the mutating
//! webhook and the offline `trellis inject`:
//!
//! - [`should_inject`]: Istio's selection rules (namespace label, revision
//!   label, pod label, opt-out) and the namespaces that are never injected.
//! - [`plan`]: what injection adds to a pod ([`PodFacts`] in, [`Additions`]
//!   out), the one decision behind the webhook's patch and [`inject_pod`].
//! - [`inject`]: the pod with the `trellis proxy-init` init container, the
//!   Envoy sidecar, their volumes and the `sidecar.istio.io/status`
//!   annotation, plus the RFC 6902 JSONPatch from the input to the output.
//! - [`capture`]: the traffic-capture options (derived from the pod's
//!   annotations and probes) and the iptables rule set they stand for.
//! - [`inject_workload`]: the same injection applied to the pod template of a
//!   workload manifest (`trellis inject`).
//!
//! # Gateways
//!
//! A pod annotated `inject.istio.io/templates: gateway` ([`Template::Gateway`])
//! is a gateway, as with Istio's gateway injection: its container named
//! `istio-proxy` (Istio's placeholder, `image: auto`) is replaced by Envoy
//! running as a router (node id `router~…`, [`GATEWAY_SERVICE_NODE_ARG`]),
//! keeping that container's name, ports and resources; with no such container
//! the proxy is appended under that name. No init container, no traffic
//! capture, no `security.istio.io/tlsMode` label; the same volumes and status
//! annotation as a sidecar; and sysctl [`UNPRIVILEGED_PORT_SYSCTL`] `=0` so the
//! non-root proxy can listen on ports 80 and 443. See [`GatewayAdditions`].
//!
//! # What the injected pod needs from the operator
//!
//! Three objects in the pod's namespace, all created by the operator:
//! - Secret `trellis-identity-<service account>` ([`identity_secret_name`]) with
//!   `cert-chain.pem`, `key.pem`, `root-cert.pem`, mounted at [`CERTS_DIR`];
//! - ConfigMap `trellis-ca-root-cert` (key `root-cert.pem`), mounted at [`ROOT_CERT_DIR`];
//! - ConfigMap `trellis-sidecar-bootstrap` ([`BOOTSTRAP_CONFIG_MAP`]), mounted at
//!   [`BOOTSTRAP_DIR`]: the Envoy bootstrap `envoy.json` and its file-based SDS
//!   files. The bootstrap is the same for every pod of a namespace: the
//!   per-pod node id and cluster come from Envoy's `--service-node` and
//!   `--service-cluster` flags, filled by the downward API. It must serve
//!   readiness on `:15021/healthz/ready` and metrics on `:15090/stats/prometheus`.
//!
//! # Application probes under STRICT mTLS
//!
//! The kubelet probes the pod from the node without a mesh certificate, so a
//! probe redirected into a STRICT sidecar would fail. We keep them working by
//! **excluding the probe ports from inbound capture**: every port an app
//! container's `httpGet`, `tcpSocket` or `grpc` probe targets (named ports
//! resolved against the container's ports) is added to the excluded inbound
//! ports. Istio instead rewrites probes to a path of its agent on 15020; we
//! have no agent in the pod, and a shared bootstrap cannot route per-pod
//! probe paths. The cost: traffic to such a port bypasses the sidecar (no
//! mTLS, no authorization) for every client, so serve health checks on a
//! dedicated port rather than on the application port.
#![forbid(unsafe_code)]

pub mod capture;
mod containers;
mod error;
mod inject;
mod select;
mod workload;

pub use containers::{
    BOOTSTRAP_CONFIG_MAP, BOOTSTRAP_DIR, BOOTSTRAP_FILE, CERTS_DIR, DEFAULT_INIT_IMAGE,
    DEFAULT_PROXY_IMAGE, GATEWAY_CONTAINER_NAME, GATEWAY_SERVICE_NODE_ARG, INIT_CONTAINER_NAME,
    PROXY_CONTAINER_NAME, ROOT_CERT_CONFIG_MAP, ROOT_CERT_DIR, SERVICE_CLUSTER_ARG,
    SERVICE_NODE_ARG, identity_secret_name, identity_volume, shared_volumes,
};
pub use error::InjectError;
pub use inject::{
    Additions, GatewayAdditions, InjectOutcome, InjectionContext, NATIVE_SIDECAR_ANNOTATION, Plan,
    PodFacts, ProxyPlacement, STATUS_ANNOTATION, TEMPLATES_ANNOTATION, TLS_MODE_LABEL, Template,
    UNPRIVILEGED_PORT_SYSCTL, inject, inject_pod, plan, template,
};
pub use select::{InjectDecision, NEVER_INJECTED_NAMESPACES, should_inject};
pub use workload::{WorkloadOutcome, inject_workload, template_path};
