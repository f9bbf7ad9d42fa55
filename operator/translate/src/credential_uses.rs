//! Which mesh objects make a proxy reference a `credentialName` Secret: the
//! servers of its Gateways, and the DestinationRules whose credentials apply
//! to it (as in Istio: at gateways, and at the sidecars a rule's
//! `workloadSelector` picks). Status and universal mode report through these
//! the fields a Secret that cannot be served comes from. Pure.
use trellis_api::networking::DestinationRule;
use trellis_model::{MeshModel, Stored, Workload, labels_match};

use crate::destination_rule::credential_names;
use crate::types::{ErrorCode, TranslateError};

/// The suffix of the Secret holding a credential's CA (Istio's `-cacert`).
pub const CA_SUFFIX: &str = "-cacert";

/// Whether Secret `name` is one that `credentialName: credential` reads
/// (itself, or its CA Secret).
pub fn serves(credential: &str, name: &str) -> bool {
    name == credential || name.strip_suffix(CA_SUFFIX) == Some(credential)
}

/// Whether DestinationRule `dr`'s `credentialName`s apply to workload `w` (a
/// gateway when `gateway`): a rule selecting it, or at a gateway any rule
/// without selector its namespace sees.
pub fn destination_rule_applies(dr: &Stored<DestinationRule>, w: &Workload, gateway: bool) -> bool {
    match &dr.object.spec.workload_selector {
        Some(s) => dr.namespace == w.namespace && labels_match(&s.match_labels, &w.labels),
        None => gateway && (dr.namespace == w.namespace || dr.export_to.visible_from(&w.namespace)),
    }
}

/// One finding per field that makes proxy `w` (a gateway when `gateway`)
/// reference Secret `secret` of its namespace, saying `why` it cannot be
/// served.
pub fn credential_findings(
    model: &MeshModel,
    w: &Workload,
    gateway: bool,
    secret: &str,
    why: &str,
) -> Vec<TranslateError> {
    let proxy = format!(
        "{} {}/{}",
        if gateway { "gateway" } else { "sidecar" },
        w.namespace,
        w.name
    );
    let finding = |kind: &str, namespace: &str, name: &str, path: String| TranslateError {
        kind: kind.into(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        path,
        message: format!("{proxy} cannot be served it: {why}"),
        code: ErrorCode::MissingCredential,
    };
    let mut out = Vec::new();
    if gateway {
        for gw in model.gateways_for(w) {
            for (i, server) in gw.object.spec.servers.iter().enumerate() {
                let named = (server.tls.as_ref())
                    .and_then(|t| t.credential_name.as_deref())
                    .is_some_and(|c| serves(c, secret));
                if named {
                    let path = format!("spec.servers[{i}].tls.credentialName");
                    out.push(finding("Gateway", &gw.namespace, &gw.name, path));
                }
            }
        }
    }
    let rules = (model.destination_rules()).filter(|dr| destination_rule_applies(dr, w, gateway));
    for dr in rules {
        for (path, c) in credential_names(&dr.object) {
            if serves(c, secret) {
                out.push(finding("DestinationRule", &dr.namespace, &dr.name, path));
            }
        }
    }
    out
}
