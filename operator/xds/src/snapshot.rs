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

/// Resources of one type that the snapshots of many proxies hold as one part
/// (a namespace's clusters, say), sorted by name: held once, hashed once.
#[derive(Debug)]
pub struct SharedResources {
    ty: ResourceType,
    resources: Vec<Arc<Resource>>,
    hash: ContentHash,
}

impl SharedResources {
    /// `resources`, all of type `ty`, sorted by name with each name once.
    pub fn new(ty: ResourceType, resources: Vec<Arc<Resource>>) -> Result<Arc<Self>, XdsError> {
        for r in &resources {
            if type_of(&r.name, &r.any.type_url)? != ty {
                return Err(XdsError::InvalidResource {
                    resource: format!("{ty}/{}", r.name),
                    reason: format!("a shared part of type {ty} holds a {}", r.any.type_url),
                });
            }
        }
        if let Some(w) = resources.windows(2).find(|w| w[0].name >= w[1].name) {
            return Err(XdsError::InvalidResource {
                resource: format!("{ty}/{}", w[1].name),
                reason: "a shared part is sorted by name, each name once".to_string(),
            });
        }
        let hash = ContentHash::of_resources(&resources);
        Ok(Arc::new(SharedResources {
            ty,
            resources,
            hash,
        }))
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        get_by_name(&self.resources, name)
    }
}

fn get_by_name<'a>(sorted: &'a [Arc<Resource>], name: &str) -> Option<&'a Arc<Resource>> {
    let at = sorted.binary_search_by(|r| r.name.as_str().cmp(name));
    at.ok().map(|at| &sorted[at])
}

/// The resources of one type in a snapshot: a part shared with other snapshots
/// (if any), then the proxy's own, each sorted by name, no name in both.
#[derive(Debug, Default, Clone)]
pub struct TypeSnapshot {
    shared: Option<Arc<SharedResources>>,
    own: Vec<Arc<Resource>>,
    hash: ContentHash,
}

impl TypeSnapshot {
    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        (self.shared.as_ref().and_then(|s| s.get(name))).or_else(|| get_by_name(&self.own, name))
    }
    /// The shared part first, then the proxy's own.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Resource>> {
        (self.shared.iter().flat_map(|s| s.resources.iter())).chain(self.own.iter())
    }
    pub fn len(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.len()) + self.own.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Equal for equal resources split alike into shared and own.
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
    /// Per type, the part shared with other snapshots.
    shared: [Option<Arc<SharedResources>>; 5],
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

    /// Adds the part of type `part.ty` this snapshot shares with others (one per type).
    pub fn add_shared(&mut self, part: Arc<SharedResources>) -> Result<&mut Self, XdsError> {
        let ty = part.ty;
        let slot = &mut self.shared[ty.index()];
        if slot.is_some() {
            return Err(XdsError::InvalidResource {
                resource: format!("{ty}/*"),
                reason: "a snapshot shares one part of each type".to_string(),
            });
        }
        if let Some(own) = (self.types[ty.index()].iter()).find(|e| part.get(e.name()).is_some()) {
            return Err(duplicate(ty, own.name()));
        }
        *slot = Some(part);
        Ok(self)
    }

    /// Adds a resource interned already (see [`ResourceCache::intern`]).
    pub fn add_interned(&mut self, resource: Arc<Resource>) -> Result<&mut Self, XdsError> {
        let ty = type_of(&resource.name, &resource.any.type_url)?;
        self.insert(ty, Entry::Interned(resource))
    }

    fn insert(&mut self, ty: ResourceType, entry: Entry) -> Result<&mut Self, XdsError> {
        let entries = &mut self.types[ty.index()];
        let name = entry.name();
        if let Some(shared) = &self.shared[ty.index()]
            && shared.get(name).is_some()
        {
            return Err(duplicate(ty, name));
        }
        if entries.last().is_none_or(|last| last.name() < name) {
            entries.push(entry);
            return Ok(self);
        }
        match entries.binary_search_by(|e| e.name().cmp(name)) {
            Ok(_) => Err(duplicate(ty, name)),
            Err(at) => {
                entries.insert(at, entry);
                Ok(self)
            }
        }
    }

    pub fn build(mut self, cache: &ResourceCache) -> Snapshot {
        let types: [TypeSnapshot; 5] = std::array::from_fn(|ty| {
            let entries = std::mem::take(&mut self.types[ty]);
            let shared = self.shared[ty].take();
            // Into a vector of its own: `collect` would reuse the entries' buffer,
            // nine times the size, for as long as the snapshot is served.
            let mut resources = Vec::with_capacity(entries.len());
            resources.extend(entries.into_iter().map(|entry| match entry {
                Entry::Packed(name, any) => cache.intern(Resource::new(name, any)),
                Entry::Interned(resource) => resource,
            }));
            let hash = match &shared {
                None => ContentHash::of_resources(&resources),
                // The shared part's hash stands for its resources (once per
                // part, not once per snapshot); marked, so no list of own
                // resources hashes alike.
                Some(part) => {
                    let mut h = Sha256::new();
                    h.update(b"shared part");
                    h.update(part.hash.0);
                    for r in &resources {
                        h.update(r.hash.0);
                    }
                    ContentHash(h.finalize().into())
                }
            };
            TypeSnapshot {
                shared,
                own: resources,
                hash,
            }
        });
        let hash = ContentHash::of_entries(
            ResourceType::ALL
                .iter()
                .map(|t| (t.type_url(), &types[t.index()].hash)),
        );
        Snapshot { types, hash }
    }
}

fn duplicate(ty: ResourceType, name: &str) -> XdsError {
    XdsError::InvalidResource {
        resource: format!("{ty}/{name}"),
        reason: "two resources of this type have the same name".to_string(),
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

    fn interned(cache: &ResourceCache, ty: ResourceType, name: &str) -> Arc<Resource> {
        cache.intern(Resource::new(name.into(), any(ty, name.as_bytes())))
    }

    #[test]
    fn snapshots_hold_a_shared_part_once_beside_their_own_resources() {
        let cache = ResourceCache::new();
        let c = |name: &str| interned(&cache, ResourceType::Cluster, name);
        let part = SharedResources::new(ResourceType::Cluster, vec![c("b"), c("d")]).unwrap();
        let build = |own: &[&str]| {
            let mut b = Snapshot::builder();
            b.add_shared(part.clone()).unwrap();
            for name in own {
                b.add_interned(c(name)).unwrap();
            }
            b.build(&cache)
        };
        let (one, two, other) = (build(&["a", "c"]), build(&["a", "c"]), build(&["e"]));
        let clusters = one.get(ResourceType::Cluster);
        assert_eq!(clusters.len(), 4);
        let names: Vec<&str> = clusters.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "d", "a", "c"], "the shared part, then the own");
        for name in ["a", "b", "c", "d"] {
            assert_eq!(clusters.get(name).unwrap().any.value, name.as_bytes());
        }
        assert!(clusters.get("e").is_none());
        assert!(Arc::ptr_eq(
            one.get(ResourceType::Cluster).shared.as_ref().unwrap(),
            two.get(ResourceType::Cluster).shared.as_ref().unwrap()
        ));
        assert_eq!(one.hash(), two.hash());
        assert_ne!(one.hash(), other.hash());
        // The same resources all own are another list: another version, not a clash.
        let mut all_own = Snapshot::builder();
        for name in ["a", "b", "c", "d"] {
            all_own.add_interned(c(name)).unwrap();
        }
        assert_ne!(all_own.build(&cache).hash(), one.hash());
    }

    #[test]
    fn a_name_in_the_shared_part_and_the_own_is_refused() {
        let cache = ResourceCache::new();
        let c = |name: &str| interned(&cache, ResourceType::Cluster, name);
        let part = SharedResources::new(ResourceType::Cluster, vec![c("b")]).unwrap();
        let mut shared_first = Snapshot::builder();
        shared_first.add_shared(part.clone()).unwrap();
        let err = shared_first.add_interned(c("b")).unwrap_err().to_string();
        assert!(err.contains("same name"), "{err}");
        let mut own_first = Snapshot::builder();
        own_first.add_interned(c("b")).unwrap();
        let err = own_first.add_shared(part.clone()).unwrap_err().to_string();
        assert!(err.contains("same name"), "{err}");
        own_first.add_interned(c("a")).unwrap();
        let mut twice = Snapshot::builder();
        twice.add_shared(part.clone()).unwrap();
        assert!(twice.add_shared(part).is_err(), "one shared part per type");
    }

    #[test]
    fn a_shared_part_is_sorted_distinct_and_of_its_type() {
        let cache = ResourceCache::new();
        let c = |name: &str| interned(&cache, ResourceType::Cluster, name);
        let unsorted = SharedResources::new(ResourceType::Cluster, vec![c("b"), c("a")]);
        assert!(unsorted.unwrap_err().to_string().contains("sorted"));
        let twice = SharedResources::new(ResourceType::Cluster, vec![c("a"), c("a")]);
        assert!(twice.is_err());
        let listener = interned(&cache, ResourceType::Listener, "l");
        let mixed = SharedResources::new(ResourceType::Cluster, vec![c("a"), listener]);
        assert!(mixed.unwrap_err().to_string().contains("Listener"));
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
        let clusters = &built.get(ResourceType::Cluster).own;
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
