//! What the xDS server serves each proxy in the cluster: the current model,
//! translated for that proxy and packed into a snapshot, with the Gateway
//! credentials it names (SDS).
//!
//! One translator serves every proxy while its model is current: a namespace's
//! outbound view and the clusters it shares with other namespaces are computed once,
//! and each shared resource is packed (encoded and hashed) once, not once per proxy.
//! What a namespace gives all its proxies (its clusters, endpoints and outbound
//! listeners) goes into each of their snapshots as one shared part.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use envoy_types::pb::google::protobuf::Any;
use trellis_model::MeshModel;

use crate::credentials::{self, Credentials};
use trellis_translate::encode::pack;
use trellis_translate::resource_list::Named;
use trellis_translate::{
    Proxy, ProxyResources, ResourceList, SecretRef, TranslateOptions, Translator,
};
use trellis_xds::{
    ProxyId, ProxyKind, Resource, ResourceCache, ResourceType, SharedResources, Snapshot,
    SnapshotBuilder, SnapshotSource, XdsError,
};

/// The model the xDS server translates from, and the credentials gateways are
/// served; replaced after each batch of changes.
pub struct ModelSnapshots {
    current: RwLock<(Arc<MeshModel>, Arc<Credentials>)>,
    options: TranslateOptions,
    cache: ResourceCache,
    /// The translator of the current model, made by the first snapshot after a change.
    translated: Mutex<Option<Translated>>,
}

type BorrowedTranslator<'m> = Translator<'m>;

self_cell::self_cell!(
    /// A translator with the model it reads.
    struct ModelTranslator {
        owner: Arc<MeshModel>,
        #[not_covariant]
        dependent: BorrowedTranslator,
    }
);

struct Translated {
    translator: ModelTranslator,
    /// Resources the translator shares between proxies, packed once.
    packed: ByAddress<Arc<Resource>>,
    /// The parts of resource lists that proxies of a scope share (its clusters,
    /// endpoints, outbound listeners), packed once.
    packed_parts: ByAddress<Arc<SharedResources>>,
}

/// What was made from objects the translator shares, by each object's address.
/// The object is kept with its entry, so no other object can take its address.
struct ByAddress<V> {
    entries: HashMap<usize, (Box<dyn std::any::Any + Send + Sync>, V)>,
}

impl<V: Clone> ByAddress<V> {
    fn new() -> Self {
        ByAddress {
            entries: HashMap::new(),
        }
    }

    fn get<K: ?Sized>(&self, object: &Arc<K>) -> Option<V> {
        let address = Arc::as_ptr(object) as *const () as usize;
        self.entries.get(&address).map(|(_, v)| v.clone())
    }

    fn insert<K: ?Sized + Send + Sync + 'static>(&mut self, object: &Arc<K>, value: V) {
        let address = Arc::as_ptr(object) as *const () as usize;
        self.entries
            .insert(address, (Box::new(object.clone()), value));
    }
}

impl Translated {
    fn new(model: Arc<MeshModel>, options: TranslateOptions) -> Self {
        Translated {
            translator: ModelTranslator::new(model, |model| Translator::new(model, options)),
            packed: ByAddress::new(),
            packed_parts: ByAddress::new(),
        }
    }

    fn translate(&mut self, proxy: &Proxy) -> ProxyResources {
        (self.translator).with_dependent_mut(|_, translator| translator.translate(proxy))
    }

    /// `shared` packed by `pack`, interned in `cache`: once for a resource the
    /// translator holds (it comes back for other proxies), every time for one made
    /// for this proxy alone (holding it would only keep it alive).
    fn packed<T: Send + Sync + 'static>(
        &mut self,
        shared: &Arc<T>,
        name: &str,
        pack: impl FnOnce(&T) -> Any,
        cache: &ResourceCache,
    ) -> Arc<Resource> {
        let intern = || cache.intern(Resource::new(name.to_string(), pack(shared)));
        if Arc::strong_count(shared) == 1 {
            return intern();
        }
        if let Some(resource) = self.packed.get(shared) {
            return resource;
        }
        let resource = intern();
        self.packed.insert(shared, resource.clone());
        resource
    }

    /// Adds `list` to `b`, its shared part packed once for every list that shares it.
    fn add_list<T: Named + prost::Message + prost::Name + Send + Sync + 'static>(
        &mut self,
        b: &mut SnapshotBuilder,
        ty: ResourceType,
        list: &ResourceList<T>,
        cache: &ResourceCache,
    ) -> Result<(), XdsError> {
        let part = list.shared_part();
        if !part.is_empty() {
            let shared = match self.packed_parts.get(part) {
                Some(packed) => packed,
                None => {
                    let resources = (part.iter())
                        .map(|r| self.packed(r, r.resource_name(), pack, cache))
                        .collect();
                    let packed = SharedResources::new(ty, resources)?;
                    self.packed_parts.insert(part, packed.clone());
                    packed
                }
            };
            b.add_shared(shared)?;
        }
        let own = list.own_part();
        b.reserve(ty, own.len());
        for r in own {
            b.add_interned(self.packed(r, r.resource_name(), pack, cache))?;
        }
        Ok(())
    }
}

impl ModelSnapshots {
    pub fn new(options: TranslateOptions) -> Arc<Self> {
        Arc::new(ModelSnapshots {
            current: RwLock::new(Default::default()),
            options,
            cache: ResourceCache::new(),
            translated: Mutex::new(None),
        })
    }

    /// Makes `model` and `credentials` what proxies are served from (call
    /// before pushing).
    pub fn set(&self, model: Arc<MeshModel>, credentials: Arc<Credentials>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = (model, credentials);
        drop(current);
        // The old model's translator and packed resources are not needed any more.
        *self.lock_translated() = None;
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

    fn lock_translated(&self) -> std::sync::MutexGuard<'_, Option<Translated>> {
        self.translated.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `proxy` translated from `model`, its shared resources packed once.
    fn translate_and_pack(
        &self,
        model: &Arc<MeshModel>,
        proxy: &Proxy,
    ) -> Result<(SnapshotBuilder, ProxyResources), XdsError> {
        let mut slot = self.lock_translated();
        let translated = match slot.take() {
            Some(t) if Arc::ptr_eq(t.translator.borrow_owner(), model) => t,
            _ => Translated::new(model.clone(), self.options.clone()),
        };
        let translated = slot.insert(translated);
        let out = translated.translate(proxy);
        let cache = &self.cache;
        let mut b = Snapshot::builder();
        translated.add_list(&mut b, ResourceType::Listener, &out.listeners, cache)?;
        for r in &out.routes {
            b.add_interned(translated.packed(r, r.name(), |r| r.any().clone(), cache))?;
        }
        translated.add_list(&mut b, ResourceType::Cluster, &out.clusters, cache)?;
        translated.add_list(&mut b, ResourceType::Endpoint, &out.endpoints, cache)?;
        Ok((b, out))
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
        let (mut b, out) = self.translate_and_pack(&model, &target)?;
        for e in &out.errors {
            tracing::debug!(proxy = %proxy, error = %e, "translation left something out");
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use trellis_model::{MeshSettings, Resource as MeshResource, Workload};
    use trellis_xds::ResourceType;

    fn service(name: &str, ip: &str) -> MeshResource {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "selector": {"app": name},
                "clusterIP": ip,
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            }
        }))
        .unwrap();
        MeshResource::Service(Box::new(service))
    }

    fn workload(app: &str, name: &str, ip: &str) -> MeshResource {
        let mut w = Workload::new("shop", name, ip);
        w.labels = [("app".to_string(), app.to_string())].into();
        w.service_account = app.into();
        MeshResource::Workload(Box::new(w))
    }

    fn model(resources: Vec<MeshResource>) -> Arc<MeshModel> {
        let mut model = MeshModel::new(MeshSettings::default());
        for r in resources {
            model.apply(r).unwrap();
        }
        Arc::new(model)
    }

    fn shop() -> Vec<MeshResource> {
        vec![
            service("web", "10.0.0.1"),
            service("cart", "10.0.0.2"),
            workload("web", "web-1", "10.1.0.1"),
            workload("web", "web-2", "10.1.0.2"),
            workload("cart", "cart-1", "10.1.0.3"),
        ]
    }

    fn sidecar(name: &str, account: &str) -> ProxyId {
        ProxyId::new(ProxyKind::Sidecar, "shop", name, account)
    }

    fn served(snapshots: &ModelSnapshots, proxy: &ProxyId) -> Snapshot {
        snapshots.snapshot(proxy).unwrap()
    }

    fn names(snapshot: &Snapshot, ty: ResourceType) -> Vec<String> {
        snapshot.get(ty).iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn proxies_share_packed_resources_and_get_what_a_fresh_translation_gives() {
        let snapshots = ModelSnapshots::new(TranslateOptions::default());
        snapshots.set(model(shop()), Default::default());
        let (web1, web2, cart1) = (
            sidecar("web-1", "web"),
            sidecar("web-2", "web"),
            sidecar("cart-1", "cart"),
        );
        let first = served(&snapshots, &web1);
        let second = served(&snapshots, &web2);
        let cart = served(&snapshots, &cart1);
        let outbound = "outbound|80||cart.shop.svc.cluster.local";
        let shared = |s: &Snapshot| s.get(ResourceType::Cluster).get(outbound).unwrap().clone();
        assert!(Arc::ptr_eq(&shared(&first), &shared(&second)));
        assert!(Arc::ptr_eq(&shared(&first), &shared(&cart)));
        // Each is what a source that never served another proxy gives.
        for (proxy, snapshot) in [(&web1, &first), (&web2, &second), (&cart1, &cart)] {
            let fresh = ModelSnapshots::new(TranslateOptions::default());
            fresh.set(snapshots.model(), Default::default());
            assert_eq!(served(&fresh, proxy).hash(), snapshot.hash(), "{proxy}");
        }
        // The same proxy again gives the same snapshot.
        assert_eq!(served(&snapshots, &web1).hash(), first.hash());
    }

    #[test]
    fn a_new_model_is_translated_afresh() {
        let snapshots = ModelSnapshots::new(TranslateOptions::default());
        snapshots.set(model(shop()), Default::default());
        let web1 = sidecar("web-1", "web");
        let before = served(&snapshots, &web1);
        let mut grown = shop();
        grown.push(service("pay", "10.0.0.3"));
        grown.push(workload("pay", "pay-1", "10.1.0.4"));
        snapshots.set(model(grown), Default::default());
        let after = served(&snapshots, &web1);
        let pay = "outbound|80||pay.shop.svc.cluster.local".to_string();
        assert!(!names(&before, ResourceType::Cluster).contains(&pay));
        assert!(names(&after, ResourceType::Cluster).contains(&pay));
        assert!(names(&after, ResourceType::Endpoint).contains(&pay));
        // And back: nothing of the bigger model stays.
        snapshots.set(model(shop()), Default::default());
        assert_eq!(served(&snapshots, &web1).hash(), before.hash());
    }
}
