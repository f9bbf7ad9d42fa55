//! Per-proxy snapshots: named resources per type, each with a content hash, shared
//! across proxies through a [`ResourceCache`].
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};

use crate::{ProxyId, ResourceType, XdsError};

/// SHA-256 of a resource or of a set of resources.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The version string sent to Envoy: the first 8 bytes in hex. Equal content gives an
    /// equal version, across proxies and restarts of the server.
    pub fn version(&self) -> String {
        hex::encode(&self.0[..8])
    }

    /// Hash of resources in order (a type's resources, or those a proxy subscribed to):
    /// of their hashes alone, since a resource's hash covers its name.
    pub fn of_resources<'a>(resources: impl IntoIterator<Item = &'a Arc<Resource>>) -> Self {
        let mut h = Sha256::new();
        for r in resources {
            h.update(r.hash.0);
        }
        ContentHash(h.finalize().into())
    }

    /// Hash of named hashes in order (used for whole snapshots).
    pub fn of_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a ContentHash)>) -> Self {
        let mut h = Sha256::new();
        for (name, hash) in entries {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update(hash.0);
        }
        ContentHash(h.finalize().into())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.version())
    }
}

/// One named resource, packed as `Any`. Held behind `Arc` and shared by every proxy
/// whose snapshot contains the identical resource.
#[derive(Debug, PartialEq)]
pub struct Resource {
    pub name: String,
    pub any: Any,
    pub hash: ContentHash,
}

impl Resource {
    pub fn new(name: String, any: Any) -> Resource {
        let mut h = Sha256::new();
        for part in [
            name.as_bytes(),
            any.type_url.as_bytes(),
            any.value.as_slice(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Resource {
            name,
            any,
            hash: ContentHash(h.finalize().into()),
        }
    }
}

/// Interns resources by content so identical ones are stored once. Entries are weak:
/// a resource no snapshot holds any more is freed.
#[derive(Default)]
pub struct ResourceCache {
    entries: Mutex<CacheEntries>,
}

#[derive(Default)]
struct CacheEntries {
    map: HashMap<ContentHash, Weak<Resource>>,
    prune_at: usize,
}

impl ResourceCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn intern(&self, resource: Resource) -> Arc<Resource> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = entries.map.get(&resource.hash).and_then(Weak::upgrade) {
            return existing;
        }
        if entries.map.len() >= entries.prune_at {
            entries.map.retain(|_, w| w.strong_count() > 0);
            entries.prune_at = (entries.map.len() * 2).max(1024);
        }
        let hash = resource.hash;
        let arc = Arc::new(resource);
        entries.map.insert(hash, Arc::downgrade(&arc));
        arc
    }

    /// Live distinct resources (for metrics and tests).
    pub fn live(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .map
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// The resources of one type in a snapshot, sorted by name.
#[derive(Debug, Default, Clone)]
pub struct TypeSnapshot {
    resources: Vec<Arc<Resource>>,
    hash: ContentHash,
}

impl TypeSnapshot {
    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        let at = self
            .resources
            .binary_search_by(|r| r.name.as_str().cmp(name));
        at.ok().map(|at| &self.resources[at])
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.resources.iter()
    }
    pub fn len(&self) -> usize {
        self.resources.len()
    }
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
    pub fn hash(&self) -> ContentHash {
        self.hash
    }
}

/// Everything one proxy is served, per type. Built by the caller (the translator's output
/// packed as `Any`) through [`SnapshotBuilder`].
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    types: [TypeSnapshot; 5],
    hash: ContentHash,
}

impl Snapshot {
    pub fn builder() -> SnapshotBuilder {
        SnapshotBuilder::default()
    }
    pub fn get(&self, ty: ResourceType) -> &TypeSnapshot {
        &self.types[ty.index()]
    }
    /// Hash over every type: equal hashes mean a push would change nothing.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }
}

/// Collects named resources; [`SnapshotBuilder::build`] interns them and computes hashes.
#[derive(Default, Debug)]
pub struct SnapshotBuilder {
    /// Per type, sorted by name. Callers mostly add in name order (the translator's
    /// output is sorted), so adding is usually a push, not a search.
    types: [Vec<Entry>; 5],
}

/// A resource as added: packed (interned at build), or already interned by a caller
/// that packs a resource shared by many proxies once.
#[derive(Debug)]
enum Entry {
    Packed(String, Any),
    Interned(Arc<Resource>),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Packed(name, _) => name,
            Entry::Interned(resource) => &resource.name,
        }
    }
}

impl SnapshotBuilder {
    /// Adds a resource; its type comes from `any.type_url`.
    pub fn add(&mut self, name: impl Into<String>, any: Any) -> Result<&mut Self, XdsError> {
        let name = name.into();
        let ty = type_of(&name, &any.type_url)?;
        self.insert(ty, Entry::Packed(name, any))
    }

    /// Room for `additional` more resources of type `ty`.
    pub fn reserve(&mut self, ty: ResourceType, additional: usize) -> &mut Self {
        self.types[ty.index()].reserve(additional);
        self
    }

    /// Adds a resource interned already (see [`ResourceCache::intern`]).
    pub fn add_interned(&mut self, resource: Arc<Resource>) -> Result<&mut Self, XdsError> {
        let ty = type_of(&resource.name, &resource.any.type_url)?;
        self.insert(ty, Entry::Interned(resource))
    }

    fn insert(&mut self, ty: ResourceType, entry: Entry) -> Result<&mut Self, XdsError> {
        let entries = &mut self.types[ty.index()];
        let name = entry.name();
        if entries.last().is_none_or(|last| last.name() < name) {
            entries.push(entry);
            return Ok(self);
        }
        match entries.binary_search_by(|e| e.name().cmp(name)) {
            Ok(_) => Err(XdsError::InvalidResource {
                resource: format!("{ty}/{name}"),
                reason: "two resources of this type have the same name".to_string(),
            }),
            Err(at) => {
                entries.insert(at, entry);
                Ok(self)
            }
        }
    }

    pub fn build(self, cache: &ResourceCache) -> Snapshot {
        let types = self.types.map(|entries| {
            // Into a vector of its own: `collect` would reuse the entries' buffer,
            // ten times the size, for as long as the snapshot is served.
            let mut resources = Vec::with_capacity(entries.len());
            resources.extend(entries.into_iter().map(|entry| match entry {
                Entry::Packed(name, any) => cache.intern(Resource::new(name, any)),
                Entry::Interned(resource) => resource,
            }));
            let hash = ContentHash::of_resources(&resources);
            TypeSnapshot { resources, hash }
        });
        let hash = ContentHash::of_entries(
            ResourceType::ALL
                .iter()
                .map(|t| (t.type_url(), &types[t.index()].hash)),
        );
        Snapshot { types, hash }
    }
}

/// The type of a resource named `name`, if it is one the server serves.
fn type_of(name: &str, type_url: &str) -> Result<ResourceType, XdsError> {
    let ty =
        ResourceType::from_type_url(type_url).ok_or_else(|| XdsError::UnsupportedResourceType {
            resource: name.to_string(),
            type_url: type_url.to_string(),
        })?;
    if name.is_empty() {
        return Err(XdsError::InvalidResource {
            resource: format!("{ty}/<empty>"),
            reason: "resource name is empty".to_string(),
        });
    }
    Ok(ty)
}

/// Where the server gets a proxy's configuration: called when a proxy connects and on
/// every push that includes it. Implemented by the binary (model -> translate -> pack).
pub trait SnapshotSource: Send + Sync + 'static {
    fn snapshot(&self, proxy: &ProxyId) -> Result<Snapshot, XdsError>;
}

impl<F> SnapshotSource for F
where
    F: Fn(&ProxyId) -> Result<Snapshot, XdsError> + Send + Sync + 'static,
{
    fn snapshot(&self, proxy: &ProxyId) -> Result<Snapshot, XdsError> {
        self(proxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(ty: ResourceType, bytes: &[u8]) -> Any {
        Any {
            type_url: ty.type_url().to_string(),
            value: bytes.to_vec(),
        }
    }

    #[test]
    fn identical_resources_are_shared_and_hashes_follow_content() {
        let cache = ResourceCache::new();
        let mut a = Snapshot::builder();
        a.add("c1", any(ResourceType::Cluster, b"x")).unwrap();
        let mut b = Snapshot::builder();
        b.add("c1", any(ResourceType::Cluster, b"x")).unwrap();
        let (a, b) = (a.build(&cache), b.build(&cache));
        assert!(Arc::ptr_eq(
            a.get(ResourceType::Cluster).get("c1").unwrap(),
            b.get(ResourceType::Cluster).get("c1").unwrap()
        ));
        assert_eq!(a.hash(), b.hash());
        assert_eq!(cache.live(), 1);

        let mut c = Snapshot::builder();
        c.add("c1", any(ResourceType::Cluster, b"y")).unwrap();
        let c = c.build(&cache);
        assert_ne!(a.hash(), c.hash());
        assert_eq!(
            a.get(ResourceType::Listener).hash(),
            c.get(ResourceType::Listener).hash()
        );
        drop((a, b));
        assert_eq!(cache.live(), 1);
    }

    #[test]
    fn an_interned_resource_is_the_same_as_one_added_packed() {
        let cache = ResourceCache::new();
        let interned = cache.intern(Resource::new("c1".into(), any(ResourceType::Cluster, b"x")));
        let mut a = Snapshot::builder();
        a.add_interned(interned.clone()).unwrap();
        let mut b = Snapshot::builder();
        b.add("c1", any(ResourceType::Cluster, b"x")).unwrap();
        let (a, b) = (a.build(&cache), b.build(&cache));
        assert_eq!(a.hash(), b.hash());
        assert!(Arc::ptr_eq(
            a.get(ResourceType::Cluster).get("c1").unwrap(),
            &interned
        ));
        assert!(Arc::ptr_eq(
            b.get(ResourceType::Cluster).get("c1").unwrap(),
            &interned
        ));
        // The same name twice is refused, however it was added.
        let mut c = Snapshot::builder();
        c.add("c1", any(ResourceType::Cluster, b"y")).unwrap();
        let err = c.add_interned(interned).unwrap_err();
        assert!(err.to_string().contains("clusters/c1"), "{err}");
    }

    #[test]
    fn resources_added_in_any_order_are_served_sorted_and_duplicates_refused() {
        let mut b = Snapshot::builder();
        for name in ["b", "d", "a", "c"] {
            b.add(name, any(ResourceType::Cluster, name.as_bytes()))
                .unwrap();
        }
        for name in ["a", "c", "d"] {
            let err = b
                .add(name, any(ResourceType::Cluster, b"again"))
                .unwrap_err();
            assert!(
                err.to_string().contains(&format!("clusters/{name}")),
                "{err}"
            );
        }
        let built = b.build(&ResourceCache::new());
        let clusters = built.get(ResourceType::Cluster);
        let names: Vec<&str> = clusters.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        for name in names {
            assert_eq!(clusters.get(name).unwrap().any.value, name.as_bytes());
        }
        assert!(clusters.get("e").is_none());
        // The order of adding does not change the content hash.
        let mut sorted = Snapshot::builder();
        for name in ["a", "b", "c", "d"] {
            sorted
                .add(name, any(ResourceType::Cluster, name.as_bytes()))
                .unwrap();
        }
        assert_eq!(sorted.build(&ResourceCache::new()).hash(), built.hash());
    }

    #[test]
    fn a_snapshot_holds_no_more_room_than_its_resources() {
        // The server holds a snapshot per proxy for as long as it serves it:
        // room left over from building would be held as long.
        let cache = ResourceCache::new();
        let mut b = Snapshot::builder();
        b.reserve(ResourceType::Cluster, 1000);
        for i in 0..777 {
            b.add(format!("c{i:04}"), any(ResourceType::Cluster, b"x"))
                .unwrap();
        }
        let built = b.build(&cache);
        let clusters = &built.get(ResourceType::Cluster).resources;
        assert_eq!(clusters.len(), 777);
        assert_eq!(clusters.capacity(), 777);
    }

    #[test]
    fn rejects_unknown_types_duplicates_and_empty_names() {
        let mut b = Snapshot::builder();
        let err = b
            .add(
                "n",
                Any {
                    type_url: "type.googleapis.com/foo.Bar".into(),
                    value: vec![],
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("foo.Bar"), "{err}");
        b.add("r", any(ResourceType::Route, b"1")).unwrap();
        let err = b.add("r", any(ResourceType::Route, b"2")).unwrap_err();
        assert!(err.to_string().contains("routes/r"), "{err}");
        assert!(b.add("", any(ResourceType::Route, b"2")).is_err());
    }
}
