//! CA persistence. On first start the leader creates a self-signed root and stores it
//! (with its key) in Secret `trellis-ca` of the operator's namespace, with `create`, so
//! it is never overwritten. A `cacerts` Secret there (Istio's plugged-in layout:
//! `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`) takes precedence.
//! A broken `cacerts` (or `trellis-ca`) is logged, reported as an event on the Secret
//! and in [`crate::CaStatus::problem`], and the last good CA stays in use.

use crate::ca_rotation::{self, ROTATION_SECRET, RotationRecord};
use crate::ca_state::{CaMode, CaSnapshot};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::reference;
use crate::runtime::cache_synced;
use crate::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::WatchStream;
use trellis_ca::{CaFiles, CertificateAuthority, RootOptions};

/// Controller name (metrics, logs).
pub const NAME: &str = "ca";
/// The Secret holding the operator's own root and key.
pub const CA_SECRET: &str = "trellis-ca";
/// Istio's plugged-in CA Secret.
pub const CACERTS_SECRET: &str = "cacerts";
/// The four files of the `cacerts` layout.
pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const ROOT_CERT: &str = "root-cert.pem";

fn text<'a>(secret: &'a Secret, key: &str, object: &str) -> Result<&'a str> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| Error::Invalid {
            object: object.to_string(),
            field: format!("data[{key}]"),
            reason: "missing".into(),
        })?;
    std::str::from_utf8(&bytes.0).map_err(|_| Error::Invalid {
        object: object.to_string(),
        field: format!("data[{key}]"),
        reason: "not UTF-8 PEM text".into(),
    })
}

/// Loads a CA from a Secret in `cacerts` layout (`cert-chain.pem` optional), signing
/// for the trust domain in force.
pub fn load(ctx: &Context, secret: &Secret) -> Result<CertificateAuthority> {
    let object = format!(
        "Secret {}/{}",
        secret.metadata.namespace.as_deref().unwrap_or(""),
        secret.metadata.name.as_deref().unwrap_or("")
    );
    let chain = match secret.data.as_ref().and_then(|d| d.get(CERT_CHAIN)) {
        Some(_) => text(secret, CERT_CHAIN, &object)?,
        None => "",
    };
    let files = CaFiles {
        ca_cert: text(secret, CA_CERT, &object)?,
        ca_key: text(secret, CA_KEY, &object)?,
        cert_chain: chain,
        root_cert: text(secret, ROOT_CERT, &object)?,
    };
    CertificateAuthority::from_cacerts(
        ctx.identity_settings_in_force().trust_domain.clone(),
        files,
        ctx.clock.now(),
        ctx.rng.clone(),
    )
    .map_err(|source| Error::Ca { object, source })
}

/// The Secret storing `ca` in `cacerts` layout (the key included: the Secret is the CA).
pub fn to_secret(namespace: &str, ca: &CertificateAuthority) -> Secret {
    let material = ca.to_material();
    let data = BTreeMap::from([
        (
            CA_CERT.to_string(),
            ByteString(material.ca_cert_pem.into_bytes()),
        ),
        (
            CA_KEY.to_string(),
            ByteString(material.ca_key_pem.expose().as_bytes().to_vec()),
        ),
        (
            CERT_CHAIN.to_string(),
            ByteString(material.cert_chain_pem.into_bytes()),
        ),
        (
            ROOT_CERT.to_string(),
            ByteString(material.root_cert_pem.into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// What the leader last wrote to Secret `trellis-ca-rotation`, until its cache shows it
/// (so one change costs one write, and a deleted record in a lagging cache is not
/// taken for a live one).
#[derive(Default)]
pub(crate) struct RecordSync {
    last: std::sync::Mutex<Option<Written>>,
}

struct Written {
    /// resourceVersion written (or, for a delete, of the object deleted).
    rv: u64,
    deleted: bool,
    data: Option<BTreeMap<String, ByteString>>,
}

fn rv_number(s: &Secret) -> Option<u64> {
    s.metadata.resource_version.as_deref()?.parse().ok()
}

impl RecordSync {
    /// The record's data as it stands: the cache, or our own last write when newer.
    fn known(&self, cached: Option<&Secret>) -> Option<BTreeMap<String, ByteString>> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = last.as_ref() {
            let caught_up = match (w.deleted, cached.and_then(rv_number)) {
                (true, None) => true,
                (true, Some(r)) => r > w.rv,
                (false, Some(r)) => r >= w.rv,
                (false, None) => false,
            };
            if !caught_up {
                return w.data.clone();
            }
            *last = None;
        }
        cached.and_then(|c| c.data.clone())
    }

    fn wrote(&self, rv: Option<u64>, deleted: bool, data: Option<BTreeMap<String, ByteString>>) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            rv.map(|rv| Written { rv, deleted, data });
    }
}

/// The persisted rotation, if any and readable (a broken one is logged and ignored: the
/// leader writes the state it holds over it); one this process ended is ignored.
fn read_record(ctx: &Context, secrets: &Store<Secret>) -> Option<RotationRecord> {
    let secret = secrets.get(&ObjectRef::new(ROTATION_SECRET).within(&ctx.config.namespace))?;
    match RotationRecord::from_secret(&secret) {
        Ok(r) if ctx.ca.finished(r.key()) => None,
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "root rotation record unreadable; ignored");
            None
        }
    }
}

/// Makes Secret `trellis-ca-rotation` say `desired` (`None`: no rotation, deleted).
/// Leader only.
async fn persist(
    ctx: &Context,
    secrets: &Store<Secret>,
    sync: &RecordSync,
    desired: Option<&RotationRecord>,
) -> Result<()> {
    let ns = &ctx.config.namespace;
    let cached = secrets.get(&ObjectRef::new(ROTATION_SECRET).within(ns));
    let want = desired.map(RotationRecord::data);
    if sync.known(cached.as_deref()) == want {
        return Ok(());
    }
    let object = format!("Secret {ns}/{ROTATION_SECRET}");
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match desired {
        Some(record) => {
            let _permit = ctx.leader.permit()?;
            ctx.telemetry.metrics.api_write(NAME);
            let written = api
                .patch(
                    ROTATION_SECRET,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(record.to_secret(ns)),
                )
                .await
                .map_err(Error::kube("applying", object.clone()))?;
            sync.wrote(rv_number(&written), false, want);
            tracing::info!(secret = %object, previous_roots = record.previous.len(), all_moved = record.all_moved_at.is_some(), "root rotation state stored");
        }
        None => {
            let ours = |c: &Secret| {
                c.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(MANAGED_BY_LABEL))
                    .is_some_and(|v| v == MANAGED_BY)
            };
            if cached.as_deref().is_some_and(|c| !ours(c)) {
                // Not ours: leave it alone.
                return Ok(());
            }
            let _permit = ctx.leader.permit()?;
            ctx.telemetry.metrics.api_write(NAME);
            match api.delete(ROTATION_SECRET, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::kube("deleting", object)(e)),
            }
            sync.wrote(
                cached.as_deref().and_then(rv_number).or(Some(0)),
                true,
                None,
            );
            tracing::info!(secret = %object, "root rotation ended; its state removed");
        }
    }
    Ok(())
}

/// Makes `ca` the CA in use unless it is the one already in use. A new root keeps the
/// roots trusted so far in the distributed bundle, so workloads with old certificates
/// keep talking while they are reissued; the identity controller ends the rotation.
/// The roots of a persisted rotation are trusted too (a restart resumes it). The leader
/// stores the rotation before it installs the CA: a crash in between loses nothing.
async fn install(
    ctx: &Context,
    secrets: &Store<Secret>,
    sync: &RecordSync,
    ca: CertificateAuthority,
    mode: CaMode,
    source: String,
) -> Result<()> {
    let current = ctx.ca.current();
    let record = read_record(ctx, secrets);
    let resumed = ca_rotation::resume(&ca, current.as_deref(), record.as_ref(), ctx.clock.now());
    let same = current.as_ref().filter(|cur| {
        cur.ca.signing_certificate().sha256_fingerprint
            == ca.signing_certificate().sha256_fingerprint
            && cur.mode == mode
            && cur.ca.trust_domain() == ca.trust_domain()
    });
    let ca = match same {
        Some(cur) => {
            let fps = |roots: &[trellis_ca::CertificateInfo]| {
                roots
                    .iter()
                    .map(|r| r.sha256_fingerprint)
                    .collect::<Vec<_>>()
            };
            if fps(&resumed.previous) == fps(&cur.previous_roots) {
                return Ok(());
            }
            // A persisted rotation names roots this replica did not know (it started
            // between the CA change and the record): trust them too.
            cur.ca.clone()
        }
        None => Arc::new(ca),
    };
    let mut snapshot = CaSnapshot::new(
        ca,
        mode,
        source.clone(),
        ctx.ca.next_generation(),
        resumed.previous,
    );
    snapshot.rotation_started = resumed.started;
    snapshot.all_moved_at = resumed.all_moved_at;
    if ctx.leader.is_leader() {
        match persist(ctx, secrets, sync, RotationRecord::of(&snapshot).as_ref()).await {
            Ok(()) | Err(Error::NotLeader) => {}
            Err(e) => return Err(e),
        }
    }
    tracing::info!(
        mode = mode.as_str(),
        source = %source,
        root = %snapshot.root_fingerprint,
        root_expires = %trellis_ca::format_time(snapshot.root_not_after),
        replaced = current.is_some(),
        trust_domain = %snapshot.ca.trust_domain().as_str(),
        rotating = snapshot.rotating(),
        resumed = record.is_some() && snapshot.rotating(),
        "CA loaded"
    );
    ctx.ca.install(snapshot);
    Ok(())
}

/// Keeps the persisted rotation in step with the one in memory (all moved, ended, or a
/// record deleted by hand). Leader only; nothing before a CA is loaded.
async fn sync_record(ctx: &Context, secrets: &Store<Secret>, sync: &RecordSync) -> Result<()> {
    if !ctx.leader.is_leader() {
        return Ok(());
    }
    let Some(current) = ctx.ca.current() else {
        return Ok(());
    };
    persist(ctx, secrets, sync, RotationRecord::of(&current).as_ref()).await
}

async fn report(ctx: &Context, secret: &Secret, problem: &str, already: bool) {
    if already {
        return;
    }
    tracing::error!(problem, "CA Secret rejected; keeping the CA in use");
    let r = reference(
        "Secret",
        &ctx.config.namespace,
        secret.metadata.name.as_deref().unwrap_or(""),
        secret.metadata.uid.as_deref(),
    );
    ctx.events
        .publish(&r, true, "CARejected", "LoadCA", problem.to_string())
        .await;
}

/// One pass: decides the CA from the cached Secrets, creating `trellis-ca` when needed.
async fn evaluate(ctx: &Context, secrets: &Store<Secret>, sync: &RecordSync) -> Result<()> {
    let ns = &ctx.config.namespace;
    let previous_problem = ctx.ca.status().problem;
    let mut problem: Option<(Arc<Secret>, String)> = None;
    if let Some(cacerts) = secrets.get(&ObjectRef::new(CACERTS_SECRET).within(ns)) {
        match load(ctx, &cacerts) {
            Ok(ca) => {
                return install(
                    ctx,
                    secrets,
                    sync,
                    ca,
                    CaMode::PluggedIn,
                    format!("{ns}/{CACERTS_SECRET}"),
                )
                .await;
            }
            Err(e) => problem = Some((cacerts, e.to_string())),
        }
    }
    let finish = |problem: Option<(Arc<Secret>, String)>| async move {
        let text = problem.as_ref().map(|(_, p)| p.clone());
        if let Some((secret, p)) = &problem {
            report(ctx, secret, p, previous_problem.as_ref() == Some(p)).await;
        }
        ctx.ca.report_problem(text);
    };
    if problem.is_some() && ctx.ca.current().is_some() {
        // Keep the last good CA (plugged-in or our own).
        finish(problem).await;
        return Ok(());
    }
    let own = format!("{ns}/{CA_SECRET}");
    match secrets.get(&ObjectRef::new(CA_SECRET).within(ns)) {
        Some(secret) => match load(ctx, &secret) {
            Ok(ca) => {
                let installed = install(ctx, secrets, sync, ca, CaMode::SelfSigned, own).await;
                finish(problem).await;
                installed?;
            }
            Err(e) => {
                // Never overwritten: a hand-broken trellis-ca needs a human.
                finish(problem.or(Some((secret, e.to_string())))).await;
            }
        },
        None => {
            finish(problem).await;
            if !ctx.leader.is_leader() {
                // The leader creates it; followers see it through the watch.
                return Ok(());
            }
            // The Secret vanished (or the API server came back empty) while our own root
            // is in use: store that root again rather than rotating to a new one.
            let in_use = ctx.ca.current().filter(|c| c.mode == CaMode::SelfSigned);
            if let Some(current) = in_use {
                if store_root(ctx, &current.ca).await? {
                    tracing::warn!(secret = %own, "Secret was missing; stored the root in use again");
                }
                return Ok(());
            }
            let settings = ctx.identity_settings_in_force();
            let mut options = RootOptions::new(settings.trust_domain.clone());
            options.key = ctx.config.root_key;
            options.ttl = settings.root_ttl;
            let ca =
                CertificateAuthority::new_self_signed(&options, ctx.clock.now(), ctx.rng.clone())
                    .map_err(|source| Error::Ca {
                    object: format!("Secret {own}"),
                    source,
                })?;
            // Someone else created it first: the watch brings it.
            if !store_root(ctx, &ca).await? {
                return Ok(());
            }
            tracing::info!(secret = %own, "created a self-signed root CA");
            let r = reference("Secret", ns, CA_SECRET, None);
            ctx.events
                .publish(
                    &r,
                    false,
                    "RootCreated",
                    "CreateCA",
                    format!("self-signed root {} created", ca.root().fingerprint_hex()),
                )
                .await;
            if ctx.ca.current().is_none()
                || secrets
                    .get(&ObjectRef::new(CACERTS_SECRET).within(ns))
                    .is_none()
            {
                install(ctx, secrets, sync, ca, CaMode::SelfSigned, own).await?;
            }
        }
    }
    Ok(())
}

/// Creates Secret `trellis-ca` holding `ca` (leader only): `false` when it
/// already exists.
async fn store_root(ctx: &Context, ca: &CertificateAuthority) -> Result<bool> {
    let ns = &ctx.config.namespace;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let _permit = ctx.leader.permit()?;
    ctx.telemetry.metrics.api_write(NAME);
    match api.create(&PostParams::default(), &to_secret(ns, ca)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(Error::kube("creating", format!("Secret {ns}/{CA_SECRET}"))(
            e,
        )),
    }
}

/// Runs the CA loader until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let gate = ctx.telemetry.readiness.gate("ca");
    let cache_gate = ctx.telemetry.readiness.gate("cache/ca-secrets");
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let (reader, writer) = reflector::store();
    let events = cache_synced(
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff(),
        cache_gate,
    )
    .filter_map(|event| async move {
        match event {
            // `true`: the cache holds a full list.
            Ok(watcher::Event::InitDone) => Some(true),
            Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s))
                if matches!(
                    s.metadata.name.as_deref(),
                    Some(CA_SECRET | CACERTS_SECRET | ROTATION_SECRET)
                ) =>
            {
                Some(false)
            }
            _ => None,
        }
    });
    // CA changes too: the rotation record follows the state in memory (all moved, ended).
    let ca_changes = WatchStream::from_changes(ctx.ca.subscribe()).map(|_| false);
    let triggers = futures::stream::select(
        futures::stream::select(events, ctx.leader.on_elected().map(|()| false)),
        ca_changes,
    )
    .boxed();
    // The trust domain in force: nothing is loaded before MeshConfig has been read.
    let settings = WatchStream::from_changes(ctx.identity_settings.subscribe()).map(|_| false);
    let mut triggers = futures::stream::select(triggers, settings).boxed();
    let sync = RecordSync::default();
    let mut shutdown = std::pin::pin!(ctx.shutdown());
    let mut synced = false;
    let mut retry: Option<Duration> = None;
    loop {
        let wait = retry.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => break,
            next = triggers.next() => match next {
                Some(full_list) => synced |= full_list,
                None => break,
            },
            _ = tokio::time::sleep(wait), if retry.is_some() => {}
        }
        if !synced || ctx.identity_settings.current().is_none() {
            continue;
        }
        let _timer = ctx.telemetry.metrics.reconcile_started(NAME);
        let result = match evaluate(&ctx, &reader, &sync).await {
            Ok(()) => sync_record(&ctx, &reader, &sync).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                retry = None;
                ctx.backoffs.succeeded(NAME);
            }
            Err(Error::NotLeader) => retry = None,
            Err(e) => {
                ctx.telemetry.metrics.reconcile_failed(NAME);
                let wait = ctx.backoffs.failed(NAME);
                tracing::warn!(error = %e, retry_in = ?wait, "CA reconcile failed");
                retry = Some(wait);
            }
        }
        if let Some(ca) = ctx.ca.current() {
            gate.set(true);
            if let Ok(left) = ca.root_not_after.duration_since(ctx.clock.now()) {
                ctx.telemetry.metrics.root_expiry.set(left.as_secs_f64());
            } else {
                ctx.telemetry.metrics.root_expiry.set(0.0);
            }
        }
    }
}
