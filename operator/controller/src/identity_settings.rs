//! The trust domain, workload certificate lifetime and renewal ratio in force:
//! `spec.trustDomain`, `spec.workloadCertTtl` and `spec.workloadCertRenewalRatio` of
//! `MeshConfig/default` when set (what Istio users configure as the mesh's
//! `trustDomain`), the command-line flags otherwise. The CA loader signs
//! with the trust domain in force, so a change gives a new CA generation and every
//! identity is reissued for its new SPIFFE id (rate limited like a root rotation); a
//! lifetime change applies to the certificates issued from then on, a ratio change to
//! the next renewal of each.
//!
//! A MeshConfig that cannot be used (unparsable, bad trust domain, a lifetime too short)
//! is logged and reported as an event on it; the settings in force stay. At start, with
//! no settings in force yet, its trust domain is still used when that field is valid
//! ([`salvage`]).

use crate::config::OperatorConfig;
use crate::context::Context;
use crate::events::reference;
use crate::runtime::cache_synced;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use trellis_api::mesh::{MESH_CONFIG_NAME, MeshConfig, MeshConfigSpec};
use trellis_ca::{RenewalPolicy, TrustDomain};

/// Controller name (metrics, logs).
pub const NAME: &str = "mesh-config";

/// Identity settings in force.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentitySettings {
    /// Trust domain of every SPIFFE id.
    pub trust_domain: TrustDomain,
    /// Lifetime of new workload certificates.
    pub workload_ttl: Duration,
    /// When certificates are renewed (the ratio from MeshConfig, the jitter from the flag).
    pub renewal: RenewalPolicy,
    /// Where the trust domain comes from (`MeshConfig default` or `--trust-domain`).
    pub trust_domain_source: &'static str,
    /// Lifetime of a self-signed root created from now on (an existing root keeps its own).
    pub root_ttl: Duration,
}

impl IdentitySettings {
    /// The flags' settings.
    pub fn from_flags(config: &OperatorConfig) -> Self {
        Self {
            trust_domain: config.trust_domain.clone(),
            workload_ttl: config.workload_ttl,
            renewal: config.renewal,
            trust_domain_source: "--trust-domain",
            root_ttl: config.root_ttl,
        }
    }
}

/// The settings `spec` (MeshConfig `default`, if any) gives over the flags; an error
/// names the MeshConfig field and why.
pub fn decide(
    spec: Option<&MeshConfigSpec>,
    config: &OperatorConfig,
) -> Result<IdentitySettings, String> {
    let mut settings = IdentitySettings::from_flags(config);
    let Some(spec) = spec else {
        return Ok(settings);
    };
    let object = format!("MeshConfig {MESH_CONFIG_NAME}");
    if let Some(td) = spec.trust_domain.as_deref() {
        settings.trust_domain =
            TrustDomain::new(td).map_err(|e| format!("{object}: spec.trustDomain: {e}"))?;
        settings.trust_domain_source = "MeshConfig default";
    }
    if let Some(ratio) = spec.workload_cert_renewal_ratio {
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(format!(
                "{object}: spec.workloadCertRenewalRatio: {ratio} must be between 0 and 1 (exclusive)"
            ));
        }
        settings.renewal.ratio = ratio;
    }
    if let Some(ttl) = &spec.workload_cert_ttl {
        settings.workload_ttl = ttl
            .parse()
            .map_err(|e| format!("{object}: spec.workloadCertTtl: {e}"))?;
    }
    if let Some(ttl) = &spec.root_cert_ttl {
        settings.root_ttl = ttl
            .parse()
            .map_err(|e| format!("{object}: spec.rootCertTtl: {e}"))?;
    }
    if spec.workload_cert_ttl.is_some() || spec.workload_cert_renewal_ratio.is_some() {
        // As for the flags: the renewal time must come after issuance.
        let (ttl, ratio) = (settings.workload_ttl, settings.renewal.ratio);
        if !settings.renewal.renews_after_issuance(ttl) {
            return Err(format!(
                "{object}: spec.workloadCertTtl {ttl:?} with renewal ratio {ratio} is too short: certificates would be due for renewal as soon as issued"
            ));
        }
    }
    Ok(settings)
}

/// The settings to start with when MeshConfig `default` cannot be used as a
/// whole: its trust domain if that field alone is valid, the flags for the
/// rest. A mistake in another field must not move every identity to the
/// flags' trust domain when the operator restarts (a reissue of the whole
/// mesh); lifetimes only shape the certificates issued from then on.
pub fn salvage(object: Option<&DynamicObject>, config: &OperatorConfig) -> IdentitySettings {
    let mut settings = IdentitySettings::from_flags(config);
    let trust_domain = object
        .and_then(|o| o.data.get("spec"))
        .and_then(|spec| spec.get("trustDomain"))
        .and_then(serde_json::Value::as_str)
        .and_then(|td| TrustDomain::new(td).ok());
    if let Some(td) = trust_domain {
        settings.trust_domain = td;
        settings.trust_domain_source = "MeshConfig default";
    }
    settings
}

/// Shared handle: `None` until MeshConfig has been listed once (the CA loader waits for
/// it, so a restart never signs with the flags' trust domain first).
#[derive(Clone)]
pub struct IdentitySettingsHandle {
    tx: watch::Sender<Option<Arc<IdentitySettings>>>,
}

impl Default for IdentitySettingsHandle {
    fn default() -> Self {
        Self {
            tx: watch::Sender::new(None),
        }
    }
}

impl IdentitySettingsHandle {
    /// The settings in force, once known.
    pub fn current(&self) -> Option<Arc<IdentitySettings>> {
        self.tx.borrow().clone()
    }

    /// A receiver notified on every change.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<IdentitySettings>>> {
        self.tx.subscribe()
    }

    /// Sets the settings (no notification when unchanged).
    pub fn set(&self, settings: IdentitySettings) {
        replace_if_changed(&self.tx, settings);
    }
}

/// Makes `value` what `tx`'s readers see, waking them only on a change.
fn replace_if_changed<T: PartialEq>(tx: &watch::Sender<Option<Arc<T>>>, value: T) {
    tx.send_if_modified(|current| {
        if current.as_deref() == Some(&value) {
            return false;
        }
        *current = Some(Arc::new(value));
        true
    });
}

fn spec_of(obj: &DynamicObject) -> Result<MeshConfigSpec, String> {
    let spec = obj
        .data
        .get("spec")
        .cloned()
        .unwrap_or(serde_json::Value::Object(Default::default()));
    serde_json::from_value(spec).map_err(|e| format!("MeshConfig {MESH_CONFIG_NAME}: spec: {e}"))
}

/// Watches MeshConfig `default` and keeps [`Context::identity_settings`] current.
pub async fn run(ctx: Arc<Context>) {
    let resource = ApiResource::erase::<MeshConfig>(&());
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &resource);
    let mut events = cache_synced(
        watcher(api, watcher::Config::default()).default_backoff(),
        ctx.telemetry.readiness.gate("cache/meshconfig"),
    )
    .boxed();
    let mut shutdown = std::pin::pin!(ctx.shutdown());
    let mut listed = false;
    let mut last_problem: Option<String> = None;
    // MeshConfig `default` as last seen (and during a re-list, as listed so far).
    let mut object: Option<DynamicObject> = None;
    let mut listing: Option<DynamicObject> = None;
    let is_default = |o: &DynamicObject| o.metadata.name.as_deref() == Some(MESH_CONFIG_NAME);
    let mut elected = ctx.leader.on_elected().boxed();
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = elected.next() => {
                // Only the leader writes events: a replica that saw the problem as a
                // follower reports it once it leads.
                if let (Some(problem), Some(obj)) = (&last_problem, &object) {
                    publish_rejection(&ctx, obj, problem.clone()).await;
                }
                continue;
            }
            e = events.next() => match e { Some(e) => e, None => break },
        };
        match event {
            Ok(watcher::Event::Init) => {
                listing = None;
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                if is_default(&o) {
                    listing = Some(o);
                }
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                listed = true;
                object = listing.take();
            }
            Ok(watcher::Event::Apply(o)) if is_default(&o) => object = Some(o),
            Ok(watcher::Event::Delete(o)) if is_default(&o) => object = None,
            Ok(_) => continue,
            Err(e) => {
                // No MeshConfig kind (CRDs not installed): the flags hold meanwhile.
                let missing = matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404);
                if missing && ctx.identity_settings.current().is_none() {
                    publish_spec(&ctx, MeshConfigSpec::default());
                    tracing::warn!(error = %e, "MeshConfig kind not served; trust domain and certificate lifetime from the flags");
                    ctx.identity_settings
                        .set(IdentitySettings::from_flags(&ctx.config));
                }
                continue;
            }
        }
        if !listed {
            continue;
        }
        let spec = match &object {
            None => Ok(None),
            Some(obj) => spec_of(obj).map(Some),
        };
        if let Ok(spec) = &spec {
            publish_spec(&ctx, spec.clone().unwrap_or_default());
        }
        let decided = spec.and_then(|spec| decide(spec.as_ref(), &ctx.config));
        match decided {
            Ok(settings) => {
                last_problem = None;
                if ctx.identity_settings.current().as_deref() != Some(&settings) {
                    tracing::info!(trust_domain = %settings.trust_domain.as_str(), source = settings.trust_domain_source, workload_cert_ttl = ?settings.workload_ttl, renewal_ratio = settings.renewal.ratio, "identity settings in force");
                }
                ctx.identity_settings.set(settings);
            }
            Err(problem) => {
                if last_problem.as_ref() != Some(&problem) {
                    tracing::error!(%problem, "MeshConfig rejected; keeping the identity settings in force");
                    if let Some(obj) = &object {
                        publish_rejection(&ctx, obj, problem.clone()).await;
                    }
                    last_problem = Some(problem);
                }
                if ctx.identity_settings.current().is_none() {
                    let settings = salvage(object.as_ref(), &ctx.config);
                    tracing::warn!(trust_domain = %settings.trust_domain.as_str(), source = settings.trust_domain_source, "starting with the trust domain below; other identity settings from the flags until MeshConfig is mended");
                    ctx.identity_settings.set(settings);
                }
            }
        }
    }
}

/// The `MeshConfigRejected` event on MeshConfig `default` (leader only).
async fn publish_rejection(ctx: &Context, obj: &DynamicObject, problem: String) {
    let r = reference_for(obj);
    ctx.events
        .publish(&r, true, "MeshConfigRejected", "ReadSettings", problem)
        .await;
}

/// Makes `spec` the MeshConfig other readers see.
fn publish_spec(ctx: &Context, spec: MeshConfigSpec) {
    replace_if_changed(&ctx.mesh_config, spec);
}

fn reference_for(obj: &DynamicObject) -> k8s_openapi::api::core::v1::ObjectReference {
    let mut r = reference(
        "MeshConfig",
        "",
        obj.metadata.name.as_deref().unwrap_or(MESH_CONFIG_NAME),
        obj.metadata.uid.as_deref(),
    );
    r.api_version = Some(format!(
        "{}/{}",
        trellis_api::mesh::GROUP,
        trellis_api::mesh::VERSION
    ));
    r.namespace = None;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LeaseConfig;

    fn config() -> OperatorConfig {
        let mut c = OperatorConfig::new("trellis-system", LeaseConfig::new("l", "me"));
        c.trust_domain = TrustDomain::new("flags.example").unwrap();
        c.workload_ttl = Duration::from_secs(3600);
        c
    }

    #[test]
    fn flags_without_a_mesh_config_or_its_fields() {
        let c = config();
        let flags = decide(None, &c).unwrap();
        assert_eq!(flags.trust_domain.as_str(), "flags.example");
        assert_eq!(flags.workload_ttl, Duration::from_secs(3600));
        assert_eq!(decide(Some(&MeshConfigSpec::default()), &c).unwrap(), flags);
    }

    #[test]
    fn mesh_config_fields_win_over_flags() {
        let spec = MeshConfigSpec {
            trust_domain: Some("corp.example".into()),
            workload_cert_ttl: Some("2h".into()),
            workload_cert_renewal_ratio: Some(0.8),
            root_cert_ttl: Some("87600h".into()),
            ..Default::default()
        };
        let c = config();
        let s = decide(Some(&spec), &c).unwrap();
        assert_eq!(s.root_ttl, Duration::from_secs(87_600 * 3600));
        assert_eq!(s.trust_domain.as_str(), "corp.example");
        assert_eq!(s.trust_domain_source, "MeshConfig default");
        assert_eq!(s.workload_ttl, Duration::from_secs(7200));
        assert_eq!(s.renewal.ratio, 0.8);
        assert_eq!(s.renewal.jitter_ratio, c.renewal.jitter_ratio);
    }

    #[test]
    fn bad_fields_are_named() {
        let spec = MeshConfigSpec {
            trust_domain: Some("Not A Domain/".into()),
            ..Default::default()
        };
        let e = decide(Some(&spec), &config()).unwrap_err();
        assert!(
            e.starts_with("MeshConfig default: spec.trustDomain:"),
            "{e}"
        );
        let spec = MeshConfigSpec {
            workload_cert_ttl: Some("1s".into()),
            ..Default::default()
        };
        let e = decide(Some(&spec), &config()).unwrap_err();
        assert!(
            e.contains("spec.workloadCertTtl") && e.contains("too short"),
            "{e}"
        );
        let spec = MeshConfigSpec {
            workload_cert_ttl: Some("soon".into()),
            ..Default::default()
        };
        assert!(
            decide(Some(&spec), &config())
                .unwrap_err()
                .contains("spec.workloadCertTtl")
        );
        let spec = MeshConfigSpec {
            workload_cert_renewal_ratio: Some(1.5),
            ..Default::default()
        };
        let e = decide(Some(&spec), &config()).unwrap_err();
        assert!(e.contains("spec.workloadCertRenewalRatio: 1.5"), "{e}");
        // A tiny ratio makes the flag's lifetime too short too.
        let spec = MeshConfigSpec {
            workload_cert_renewal_ratio: Some(0.0001),
            ..Default::default()
        };
        assert!(
            decide(Some(&spec), &config())
                .unwrap_err()
                .contains("too short")
        );
    }

    fn object(spec: serde_json::Value) -> DynamicObject {
        let mut o = DynamicObject::new(MESH_CONFIG_NAME, &ApiResource::erase::<MeshConfig>(&()));
        o.data = serde_json::json!({ "spec": spec });
        o
    }

    #[test]
    fn a_rejected_mesh_config_still_gives_its_valid_trust_domain_at_start() {
        let c = config();
        // Another field is wrong: its trust domain, the flags' lifetime.
        let bad_ttl =
            object(serde_json::json!({"trustDomain": "corp.example", "workloadCertTtl": "soon"}));
        let spec: MeshConfigSpec = serde_json::from_value(bad_ttl.data["spec"].clone()).unwrap();
        assert!(decide(Some(&spec), &c).is_err());
        let s = salvage(Some(&bad_ttl), &c);
        assert_eq!(s.trust_domain.as_str(), "corp.example");
        assert_eq!(s.trust_domain_source, "MeshConfig default");
        assert_eq!(s.workload_ttl, c.workload_ttl);
        // Unparsable elsewhere (not a MeshConfigSpec at all): the trust domain still reads.
        let unparsable = object(
            serde_json::json!({"trustDomain": "corp.example", "workloadCertRenewalRatio": "half"}),
        );
        assert!(spec_of(&unparsable).is_err());
        assert_eq!(
            salvage(Some(&unparsable), &c).trust_domain.as_str(),
            "corp.example"
        );
        // The trust domain itself is wrong, or absent: the flags.
        let flags = IdentitySettings::from_flags(&c);
        assert_eq!(
            salvage(
                Some(&object(serde_json::json!({"trustDomain": "Not A Domain/"}))),
                &c
            ),
            flags
        );
        assert_eq!(
            salvage(Some(&object(serde_json::json!({"trustDomain": 7}))), &c),
            flags
        );
        assert_eq!(salvage(None, &c), flags);
    }
}
