//! What the xDS server serves each proxy in the cluster: the current model,
//! translated for that proxy and packed into a snapshot, with the Gateway
//! credentials it names (SDS).
use std::sync::{Arc, RwLock};

use envoy_types::pb::google::protobuf::Any;
use trellis_model::MeshModel;

use crate::credentials::{self, Credentials};
use trellis_translate::encode::pack_route_configuration;
use trellis_translate::{Proxy, SecretRef, TranslateOptions, Translator};
use trellis_xds::{ProxyId, ProxyKind, ResourceCache, Snapshot, SnapshotSource, XdsError};

/// The model the xDS server translates from, and the credentials gateways are
/// served; replaced after each batch of changes.
pub struct ModelSnapshots {
    current: RwLock<(Arc<MeshModel>, Arc<Credentials>)>,
    options: TranslateOptions,
    cache: ResourceCache,
}

impl ModelSnapshots {
    pub fn new(options: TranslateOptions) -> Arc<Self> {
        Arc::new(ModelSnapshots {
            current: RwLock::new(Default::default()),
            options,
            cache: ResourceCache::new(),
        })
    }

    /// Makes `model` and `credentials` what proxies are served from (call
    /// before pushing).
    pub fn set(&self, model: Arc<MeshModel>, credentials: Arc<Credentials>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = (model, credentials);
    }

    pub fn model(&self) -> Arc<MeshModel> {
        self.current().0
    }

    fn current(&self) -> (Arc<MeshModel>, Arc<Credentials>) {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn pack<M: prost::Message + prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

impl SnapshotSource for ModelSnapshots {
    fn snapshot(&self, proxy: &ProxyId) -> Result<Snapshot, XdsError> {
        let (model, credentials) = self.current();
        let fail = |reason: String| XdsError::Snapshot {
            proxy: proxy.to_string(),
            reason,
        };
        let workload = model
            .workload(&proxy.namespace, &proxy.name)
            .ok_or_else(|| fail("no running pod with this name and an IP is known".into()))?;
        // The certificate proved namespace and service account; the pod must run as it.
        if workload.service_account != proxy.service_account {
            return Err(fail(format!(
                "pod runs as service account {:?}, the proxy authenticated as {:?}",
                workload.service_account, proxy.service_account
            )));
        }
        let target = match proxy.kind {
            ProxyKind::Sidecar => Proxy::sidecar(&proxy.namespace, &proxy.name),
            ProxyKind::Gateway => Proxy::gateway(&proxy.namespace, &proxy.name),
        };
        let out = Translator::new(&model, self.options.clone()).translate(&target);
        for e in &out.errors {
            tracing::debug!(proxy = %proxy, error = %e, "translation left something out");
        }
        let mut b = Snapshot::builder();
        for l in &out.listeners {
            b.add(l.name.clone(), pack(l))?;
        }
        for r in &out.routes {
            b.add(r.name.clone(), pack_route_configuration(r))?;
        }
        for c in &out.clusters {
            b.add(c.name.clone(), pack(c.as_ref()))?;
        }
        for e in &out.endpoints {
            b.add(e.cluster_name.clone(), pack(e.as_ref()))?;
        }
        for s in &out.secrets {
            // The translator names only credentials of the proxy's own
            // namespace; a proxy is never served another namespace's Secret.
            if let SecretRef::Credential { namespace, name } = s
                && *namespace == proxy.namespace
            {
                match credentials::sds_secret(&credentials, namespace, name, &s.sds_name()) {
                    Ok(secret) => {
                        b.add(secret.name.clone(), pack(&secret))?;
                    }
                    // Envoy keeps the listener that needs it warming until it comes.
                    Err(reason) => {
                        tracing::warn!(proxy = %proxy, secret = %s.sds_name(), %reason, "credential not served")
                    }
                }
            }
        }
        Ok(b.build(&self.cache))
    }
}
