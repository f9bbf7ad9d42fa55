//! The admission webhooks inside `trellis operator` (an extra task of the
//! controller runtime): once the CA is loaded, serve trellis-webhook with a
//! serving certificate from it, and keep the CA bundle of both webhook
//! configurations equal to the CA's root (at start and whenever the CA
//! changes), switching validation to `failurePolicy: Fail` once serving.
//! The injection settings follow `MeshConfig/default` as the controller
//! runtime's MeshConfig watch sees it ([`Context::mesh_config`]). Every
//! replica serves; only the leader writes the configurations.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use trellis_controller::Context;
use trellis_controller::runtime::ExtraTask;
use trellis_inject::InjectionContext;
use trellis_webhook::{
    MUTATING_CONFIGURATION_NAME, ServingCert, VALIDATING_CONFIGURATION_NAME, Webhook,
    WebhookConfig, issue_serving_cert,
};

/// How often the configurations are checked again (someone may have reset the bundle).
const RECHECK: Duration = Duration::from_secs(30);
/// How long a stopping operator waits for reviews in progress (well inside
/// the Deployment's terminationGracePeriodSeconds of 30).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The task `trellis operator` adds to the runtime; `init_image` is the
/// image injected init containers run `trellis proxy-init` from.
pub fn task(listen: SocketAddr, init_image: String) -> ExtraTask {
    Box::new(
        move |ctx: Arc<Context>| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(run(ctx, listen, init_image))
        },
    )
}

/// Injection settings from `MeshConfig/default` as last read (built-in
/// defaults without one, or before it has been listed).
fn injection_settings(ctx: &Context, init_image: &str) -> InjectionContext {
    let spec = ctx.mesh_config.borrow().clone().unwrap_or_default();
    InjectionContext::from_mesh_config(&spec, init_image)
}

fn issue(ctx: &Context, ca: &trellis_ca::CertificateAuthority) -> Option<ServingCert> {
    match issue_serving_cert(ca, &ctx.config.namespace, SystemTime::now()) {
        Ok(cert) => Some(cert),
        Err(e) => {
            tracing::error!(error = %e, "cannot issue the webhook serving certificate");
            None
        }
    }
}

async fn run(ctx: Arc<Context>, listen: SocketAddr, init_image: String) {
    // Not ready until the webhook serves: the Service only sends admission
    // reviews (failurePolicy Fail for injection) to replicas that answer them.
    let ready = ctx.telemetry.readiness.gate("webhook");
    let shutdown = ctx.shutdown();
    tokio::pin!(shutdown);
    let mut ca_changes = ctx.ca.subscribe();
    // Wait for the CA the serving certificate comes from.
    let (mut generation, mut cert) = loop {
        if let Some(snapshot) = ctx.ca.current()
            && let Some(cert) = issue(&ctx, &snapshot.ca)
        {
            break (snapshot.generation, cert);
        }
        tokio::select! {
            _ = &mut shutdown => return,
            changed = ca_changes.changed() => if changed.is_err() { return },
        }
    };
    let mut mesh_changes = ctx.mesh_config.subscribe();
    let mut injection = injection_settings(&ctx, &init_image);
    let config = WebhookConfig {
        cert: cert.clone(),
        injection: injection.clone(),
        operator_namespace: ctx.config.namespace.clone(),
    };
    let webhook = match Webhook::new(&config) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the webhook");
            return;
        }
    };
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%listen, error = %e, "cannot listen for the webhook");
            return;
        }
    };
    let local = listener.local_addr().unwrap_or(listen);
    let server = match webhook.clone().serve_on_own_runtime(listener) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the webhook");
            return;
        }
    };
    tracing::info!(address = %local, "admission webhook serving");
    ready.set(true);
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        if !ctx.stopping()
            && ctx.leader.is_leader()
            && let Err(e) = write_bundles(&ctx, &cert.ca_bundle_pem).await
        {
            tracing::warn!(error = %e, "cannot write the CA bundle of the webhook configurations");
        }
        let renew_at = cert.not_after - trellis_webhook::SERVING_CERT_TTL / 2;
        tokio::select! {
            _ = &mut shutdown => break,
            changed = ca_changes.changed() => if changed.is_err() { break },
            changed = mesh_changes.changed() => if changed.is_err() { break },
            _ = recheck.tick() => {}
        }
        let latest = injection_settings(&ctx, &init_image);
        if latest != injection {
            tracing::info!(image = %latest.proxy_image, "sidecar settings from MeshConfig changed");
            webhook.set_injection(latest.clone());
            injection = latest;
        }
        let Some(snapshot) = ctx.ca.current() else {
            continue;
        };
        if (snapshot.generation != generation || SystemTime::now() >= renew_at)
            && let Some(new) = issue(&ctx, &snapshot.ca)
        {
            match webhook.set_certificate(&new) {
                Ok(()) => {
                    tracing::info!("webhook serving certificate renewed");
                    generation = snapshot.generation;
                    cert = new;
                }
                Err(e) => tracing::error!(error = %e, "cannot use the new serving certificate"),
            }
        }
    }
    ready.set(false);
    server.shutdown(SHUTDOWN_GRACE).await;
}

/// `webhooks` of `config` with every caBundle set to `bundle` (and
/// `failurePolicy` set when given); `None` when nothing changes.
fn updated_webhooks(config: &Value, bundle: &str, failure_policy: Option<&str>) -> Option<Value> {
    let mut webhooks = config.get("webhooks")?.as_array()?.clone();
    let mut changed = false;
    for webhook in &mut webhooks {
        if webhook
            .pointer("/clientConfig/caBundle")
            .and_then(Value::as_str)
            != Some(bundle)
        {
            webhook["clientConfig"]["caBundle"] = json!(bundle);
            changed = true;
        }
        if let Some(policy) = failure_policy
            && webhook.get("failurePolicy").and_then(Value::as_str) != Some(policy)
        {
            webhook["failurePolicy"] = json!(policy);
            changed = true;
        }
    }
    changed.then_some(Value::Array(webhooks))
}

/// Writes `ca_bundle_pem` into both webhook configurations (merge patch of
/// their `webhooks` with a resourceVersion precondition). A missing
/// configuration is left alone: the manifests own them.
async fn write_bundles(ctx: &Context, ca_bundle_pem: &str) -> anyhow::Result<()> {
    use base64::Engine as _;
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_bundle_pem);
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(ctx.client.clone());
    patch_one(ctx, &mutating, MUTATING_CONFIGURATION_NAME, &bundle, None).await?;
    patch_one(
        ctx,
        &validating,
        VALIDATING_CONFIGURATION_NAME,
        &bundle,
        Some("Fail"),
    )
    .await
}

async fn patch_one<K>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    bundle: &str,
    failure_policy: Option<&str>,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let Some(current) = api.get_opt(name).await? else {
        tracing::warn!(
            configuration = name,
            "webhook configuration not found (install the manifests); will check again"
        );
        return Ok(());
    };
    let current = serde_json::to_value(&current)?;
    let Some(webhooks) = updated_webhooks(&current, bundle, failure_policy) else {
        return Ok(());
    };
    let patch = json!({
        "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
        "webhooks": webhooks,
    });
    let _permit = ctx.leader.permit()?;
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(configuration = name, "webhook CA bundle written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::updated_webhooks;
    use serde_json::json;

    #[test]
    fn bundles_and_policy_are_set_on_every_webhook_once() {
        let config = json!({"webhooks": [
            {"name": "a", "clientConfig": {"caBundle": "old"}, "failurePolicy": "Ignore"},
            {"name": "b", "clientConfig": {}},
        ]});
        let new = updated_webhooks(&config, "B", Some("Fail")).unwrap();
        assert_eq!(new[0]["clientConfig"]["caBundle"], "B");
        assert_eq!(new[1]["clientConfig"]["caBundle"], "B");
        assert_eq!(new[0]["failurePolicy"], "Fail");
        assert_eq!(new[0]["name"], "a");
        let done = json!({"webhooks": new});
        assert_eq!(updated_webhooks(&done, "B", Some("Fail")), None);
        assert!(updated_webhooks(&done, "C", None).is_some());
    }
}
