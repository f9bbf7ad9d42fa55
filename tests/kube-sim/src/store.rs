//! The object store: every object as JSON, one resourceVersion counter across the whole
//! store, a bounded history of change events for watches, and the broadcast that feeds them.
//! Writes happen under one lock and publish their event under it, so every watcher sees
//! events in resourceVersion order.

use crate::error::ApiError;
use crate::meta;
use crate::registry::{Registry, ResourceType};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// Where an object lives: objects are stored once per group/resource, whatever version served them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjKey {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(rt: &ResourceType, namespace: &str, name: &str) -> Self {
        ObjKey {
            group: rt.group.clone(),
            resource: rt.resource.clone(),
            namespace: if rt.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    fn namespace_key(name: &str) -> Self {
        ObjKey {
            group: String::new(),
            resource: "namespaces".into(),
            namespace: String::new(),
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub event_type: EventType,
    pub key: ObjKey,
    pub object: Value,
    /// The event as a watch stream line, serialized once for every watcher.
    pub line: bytes::Bytes,
}

/// One watch event as the newline-terminated JSON a watch stream carries.
pub fn watch_line(event_type: &str, object: &Value) -> bytes::Bytes {
    let mut text =
        serde_json::to_string(&json!({"type": event_type, "object": object})).unwrap_or_default();
    text.push('\n');
    bytes::Bytes::from(text)
}

/// What the broadcast carries to open watches.
#[derive(Debug, Clone)]
pub enum Broadcast {
    Event(Arc<WatchEvent>),
    /// Every open watch ends with a 410 Expired error, as when the watch cache drops watchers.
    Expire,
}

/// How a delete treats dependants (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// `DeleteOptions` the store acts on.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

struct Inner {
    rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    /// The uids of `objects`, so the garbage collector's "is this owner still there?" does not
    /// scan the store on every write of an owned object (that made writes O(n)).
    uids: HashSet<String>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Events at or below this resourceVersion are no longer in the history.
    floor: u64,
    history_limit: usize,
    registry: Registry,
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Broadcast>,
}

/// The result of starting a watch: the events to replay first, then the live feed.
pub struct WatchStart {
    pub replay: Vec<Arc<WatchEvent>>,
    pub feed: broadcast::Receiver<Broadcast>,
    pub current_rv: u64,
}

/// A page of a list.
pub struct ListResult {
    pub rv: u64,
    pub items: Vec<Value>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(1024);
        let store = Store {
            inner: Mutex::new(Inner {
                rv: 0,
                objects: BTreeMap::new(),
                uids: HashSet::new(),
                history: VecDeque::new(),
                floor: 0,
                history_limit: history_limit.max(1),
                registry: Registry::new(),
            }),
            tx,
        };
        let ns_type = store
            .registry()
            .find("", "v1", "namespaces")
            .cloned()
            .expect("namespaces is a built-in type");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            // The built-in namespaces are valid and new, so creating them cannot fail.
            let _ = store.create(&ns_type, "", obj, false);
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (writes are single inserts),
        // so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .objects
            .get(&ObjKey::new(rt, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.resource, name))
    }

    /// All objects of a type (in one namespace, or all when `namespace` is None) that pass
    /// `keep`, sorted by namespace and name, with the store's resourceVersion.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        keep: &dyn Fn(&Value) -> bool,
    ) -> ListResult {
        let inner = self.lock();
        let items = inner
            .of_type(rt, namespace)
            .map(|(_, v)| v)
            .filter(|v| keep(v))
            .cloned()
            .collect();
        ListResult {
            rv: inner.rv,
            items,
        }
    }

    /// Creates an object; sets uid, creationTimestamp, generation and resourceVersion.
    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let mut name = meta::name_of(&obj).to_string();
        if name.is_empty()
            && let Some(prefix) = meta::str_at(&obj, &["metadata", "generateName"])
        {
            let prefix = prefix.to_string();
            // Retry on the rare collision; the API server returns AlreadyExists instead,
            // which only makes tests flaky.
            loop {
                name = meta::generate_name(&prefix);
                if !inner
                    .objects
                    .contains_key(&ObjKey::new(rt, namespace, &name))
                {
                    break;
                }
            }
        }
        validate_name(rt, &name)?;
        if rt.namespaced {
            check_namespace_open(&inner, namespace)?;
        }
        let key = ObjKey::new(rt, namespace, &name);
        if inner.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&rt.group, &rt.resource, &name));
        }
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        if rt.namespaced {
            m["namespace"] = json!(namespace);
        } else if let Some(map) = m.as_object_mut() {
            map.remove("namespace");
        }
        m["uid"] = json!(meta::new_uid());
        m["creationTimestamp"] = json!(meta::now_rfc3339());
        if crate::pipeline::tracks_generation(rt) {
            m["generation"] = json!(1);
        }
        if let Some(map) = m.as_object_mut() {
            map.remove("deletionTimestamp");
            map.remove("deletionGracePeriodSeconds");
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        if rt.has_status
            && rt.is_custom()
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        defaults_on_create(rt, &mut obj);
        if dry_run {
            obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            return Ok(obj);
        }
        let obj = inner.write(&self.tx, key.clone(), obj, EventType::Added);
        inner.collect_if_owners_gone(&self.tx, &key);
        Ok(obj)
    }

    /// Replaces an object. `status_only` is the status subresource: only status changes.
    /// A resourceVersion in `obj` must match the stored one (409 otherwise).
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut obj: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = ObjKey::new(rt, namespace, name);
        let old = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.resource, name))?;
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let body_name = meta::name_of(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        match meta::str_at(&obj, &["metadata", "resourceVersion"]) {
            Some(rv) if !rv.is_empty() => {
                if Some(rv) == meta::str_at(&old, &["metadata", "resourceVersion"]) {
                    // The precondition holds.
                } else {
                    return Err(ApiError::conflict(
                        &rt.group,
                        &rt.resource,
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
            }
            _ if rt.is_custom() => {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    vec![crate::error::Cause {
                        reason: "FieldValueInvalid".into(),
                        message: "Invalid value: 0x0: must be specified for an update".into(),
                        field: "metadata.resourceVersion".into(),
                    }],
                ));
            }
            _ => {}
        }
        let mut new = if status_only {
            let mut merged = old.clone();
            merged["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            // The write's own bookkeeping (a status apply's managedFields entry).
            if let Some(mf) = obj["metadata"].get("managedFields") {
                merged["metadata"]["managedFields"] = mf.clone();
            }
            if merged["status"].is_null()
                && let Some(map) = merged.as_object_mut()
            {
                map.remove("status");
            }
            merged
        } else {
            if rt.has_status {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        if let Some(map) = obj.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            obj
        };
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        // Fields only the server sets keep their stored values.
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(map) = new["metadata"].as_object_mut() {
                        map.remove(field);
                    }
                }
            }
        }
        if new["metadata"].get("managedFields").is_none()
            && let Some(mf) = old["metadata"].get("managedFields")
        {
            new["metadata"]["managedFields"] = mf.clone();
        }
        if meta::is_deleting(&old) {
            let old_f = meta::finalizers_of(&old);
            if let Some(added) = meta::finalizers_of(&new)
                .into_iter()
                .find(|f| !old_f.contains(f))
            {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]",
                        rt.qualified()
                    ),
                )
                .with_details(name, &rt.group, &rt.kind));
            }
        }
        if new == old {
            // A no-op update writes nothing and bumps no resourceVersion.
            return Ok(old);
        }
        if crate::pipeline::tracks_generation(rt) && spec_changed(&old, &new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        if dry_run {
            return Ok(new);
        }
        if meta::is_deleting(&new) && meta::finalizers_of(&new).is_empty() {
            let removed = inner.remove(&self.tx, &key, Some(new));
            inner.after_removal(&self.tx);
            return Ok(removed);
        }
        let written = inner.write(&self.tx, key.clone(), new, EventType::Modified);
        inner.collect_if_owners_gone(&self.tx, &key);
        Ok(written)
    }

    /// Deletes an object: at once without finalizers, else marks it with deletionTimestamp.
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = ObjKey::new(rt, namespace, name);
        let obj = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.resource, name))?;
        if let Some(uid) = &opts.precondition_uid
            && uid != meta::uid_of(&obj)
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid_of(&obj)
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv {
            let current = meta::str_at(&obj, &["metadata", "resourceVersion"]).unwrap_or("");
            if rv != current {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.resource,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {current}"
                    ),
                ));
            }
        }
        if dry_run {
            return Ok(obj);
        }
        Ok(inner.delete_key(&self.tx, &key, opts.propagation))
    }

    /// Starts a watch of one type: `from` None replays the current objects as ADDED first,
    /// `Some(rv)` replays the history after rv, or fails with 410 when it is no longer kept.
    pub fn watch(&self, rt: &ResourceType, from: Option<u64>) -> Result<WatchStart, ApiError> {
        let inner = self.lock();
        let feed = self.tx.subscribe();
        let replay = match from {
            None => inner
                .of_type(rt, None)
                .map(|(k, v)| {
                    Arc::new(WatchEvent {
                        rv: inner.rv,
                        event_type: EventType::Added,
                        key: k.clone(),
                        object: v.clone(),
                        line: watch_line("ADDED", v),
                    })
                })
                .collect(),
            Some(rv) => inner.events_after(rv)?,
        };
        Ok(WatchStart {
            replay,
            feed,
            current_rv: inner.rv,
        })
    }

    /// The history after `rv`, to catch up a watcher that fell behind the broadcast.
    pub fn events_after(&self, rv: u64) -> Result<Vec<Arc<WatchEvent>>, ApiError> {
        self.lock().events_after(rv)
    }

    /// Ends every open watch with 410 Expired, and forgets the history, as a watch cache
    /// that dropped its watchers does; clients must relist.
    pub fn expire_watches(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.floor = inner.rv;
        let _ = self.tx.send(Broadcast::Expire);
    }
}

fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid(
            &rt.group,
            &rt.kind,
            "",
            vec![crate::error::Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: name or generateName is required".into(),
                field: "metadata.name".into(),
            }],
        ));
    }
    if !meta::is_dns1123_subdomain(name) {
        return Err(ApiError::invalid(
            &rt.group,
            &rt.kind,
            name,
            vec![crate::error::Cause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
                field: "metadata.name".into(),
            }],
        ));
    }
    Ok(())
}

fn check_namespace_open(inner: &Inner, namespace: &str) -> Result<(), ApiError> {
    match inner.objects.get(&ObjKey::namespace_key(namespace)) {
        None => Err(ApiError::not_found("", "namespaces", namespace)),
        Some(ns) if meta::is_deleting(ns) => Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Server-side defaults the tests depend on.
fn defaults_on_create(rt: &ResourceType, obj: &mut Value) {
    if rt.group.is_empty() && rt.resource == "namespaces" {
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
        obj["status"] = json!({"phase": "Active"});
        let name = meta::name_of(obj).to_string();
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    }
    if rt.group == "apiextensions.k8s.io" && rt.resource == "customresourcedefinitions" {
        let names = obj["spec"]["names"].clone();
        let now = meta::now_rfc3339();
        obj["status"] = json!({
            "acceptedNames": names,
            "storedVersions": obj["spec"]["versions"].as_array().map(|vs| vs.iter()
                .filter(|v| v["storage"].as_bool().unwrap_or(false))
                .map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now},
            ]
        });
    }
}

/// Whether anything outside metadata and status changed: what bumps `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

impl Inner {
    /// The objects of one type (in one namespace when given), in key order: a range of the
    /// map, not a scan of the whole store, since the store sorts by group and resource first.
    fn of_type<'a>(
        &'a self,
        rt: &'a ResourceType,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Value)> + 'a {
        let namespace = namespace.filter(|_| rt.namespaced);
        let first = ObjKey {
            group: rt.group.clone(),
            resource: rt.resource.clone(),
            namespace: namespace.unwrap_or("").to_string(),
            name: String::new(),
        };
        self.objects.range(first..).take_while(move |(k, _)| {
            k.group == rt.group
                && k.resource == rt.resource
                && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    /// Stores `obj` under a new resourceVersion and publishes the event.
    fn write(
        &mut self,
        tx: &broadcast::Sender<Broadcast>,
        key: ObjKey,
        mut obj: Value,
        event_type: EventType,
    ) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let is_crd = is_crd_key(&key);
        self.uids.insert(meta::uid_of(&obj).to_string());
        if let Some(old) = self.objects.insert(key.clone(), obj.clone())
            && meta::uid_of(&old) != meta::uid_of(&obj)
        {
            self.uids.remove(meta::uid_of(&old));
        }
        self.publish(tx, key, obj.clone(), event_type);
        if is_crd {
            self.refresh_crds();
        }
        obj
    }

    /// Removes an object (the final form `last` when given) and publishes DELETED.
    fn remove(
        &mut self,
        tx: &broadcast::Sender<Broadcast>,
        key: &ObjKey,
        last: Option<Value>,
    ) -> Value {
        let stored = self.objects.remove(key);
        if let Some(old) = &stored {
            self.uids.remove(meta::uid_of(old));
        }
        let mut obj = last.or(stored).unwrap_or(Value::Null);
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.publish(tx, key.clone(), obj.clone(), EventType::Deleted);
        if is_crd_key(key) {
            self.remove_custom_objects(tx, &obj);
            self.refresh_crds();
        }
        obj
    }

    fn publish(
        &mut self,
        tx: &broadcast::Sender<Broadcast>,
        key: ObjKey,
        object: Value,
        event_type: EventType,
    ) {
        let event = Arc::new(WatchEvent {
            rv: self.rv,
            event_type,
            key,
            line: watch_line(event_type.as_str(), &object),
            object,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        let _ = tx.send(Broadcast::Event(event));
    }

    fn events_after(&self, rv: u64) -> Result<Vec<Arc<WatchEvent>>, ApiError> {
        if rv < self.floor {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                self.floor + 1
            )));
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    fn refresh_crds(&mut self) {
        let crds: Vec<Value> = self
            .objects
            .iter()
            .filter(|(k, _)| is_crd_key(k))
            .map(|(_, v)| v.clone())
            .collect();
        self.registry.set_crds(crds.iter());
    }

    /// Deleting a CRD deletes all its custom objects.
    fn remove_custom_objects(&mut self, tx: &broadcast::Sender<Broadcast>, crd: &Value) {
        let group = meta::str_at(crd, &["spec", "group"]).unwrap_or("");
        let plural = meta::str_at(crd, &["spec", "names", "plural"]).unwrap_or("");
        let keys: Vec<ObjKey> = self
            .objects
            .keys()
            .filter(|k| k.group == group && k.resource == plural)
            .cloned()
            .collect();
        for key in keys {
            self.remove(tx, &key, None);
        }
    }

    /// The delete verb on a stored object, with finalizers and dependants.
    fn delete_key(
        &mut self,
        tx: &broadcast::Sender<Broadcast>,
        key: &ObjKey,
        propagation: Option<Propagation>,
    ) -> Value {
        let Some(mut obj) = self.objects.get(key).cloned() else {
            return Value::Null;
        };
        let uid = meta::uid_of(&obj).to_string();
        let is_namespace = key.group.is_empty() && key.resource == "namespaces";
        let policy = propagation.unwrap_or(Propagation::Background);
        if policy == Propagation::Orphan {
            self.orphan_dependants(tx, &uid);
        }
        let has_dependants = self.has_dependants(&uid);
        if policy == Propagation::Foreground && has_dependants && !meta::is_deleting(&obj) {
            let mut fin = meta::finalizers_of(&obj);
            fin.push("foregroundDeletion".into());
            obj["metadata"]["finalizers"] = json!(fin);
        }
        let blocked = !meta::finalizers_of(&obj).is_empty() || is_namespace;
        if !blocked {
            let removed = self.remove(tx, key, None);
            self.collect_dependants(tx, &uid);
            self.after_removal(tx);
            return removed;
        }
        if !meta::is_deleting(&obj) {
            obj["metadata"]["deletionTimestamp"] = json!(meta::now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if is_namespace {
                obj["status"]["phase"] = json!("Terminating");
            }
            obj = self.write(tx, key.clone(), obj, EventType::Modified);
        }
        if is_namespace {
            let contents: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace == key.name)
                .cloned()
                .collect();
            for k in contents {
                if self.objects.get(&k).is_some_and(|o| !meta::is_deleting(o)) {
                    self.delete_key(tx, &k, None);
                }
            }
        }
        if policy == Propagation::Foreground {
            for dep in self.dependants(&uid) {
                if self
                    .objects
                    .get(&dep)
                    .is_some_and(|o| !meta::is_deleting(o))
                {
                    self.delete_key(tx, &dep, Some(Propagation::Foreground));
                }
            }
        }
        self.after_removal(tx);
        self.objects.get(key).cloned().unwrap_or(obj)
    }

    fn dependants(&self, owner_uid: &str) -> Vec<ObjKey> {
        self.objects
            .iter()
            .filter(|(_, o)| meta::owner_uids(o).iter().any(|u| u == owner_uid))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn has_dependants(&self, owner_uid: &str) -> bool {
        !owner_uid.is_empty() && !self.dependants(owner_uid).is_empty()
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.uids.contains(uid)
    }

    /// Drops the owner reference to `owner_uid` from every dependant.
    fn orphan_dependants(&mut self, tx: &broadcast::Sender<Broadcast>, owner_uid: &str) {
        for dep in self.dependants(owner_uid) {
            if let Some(mut obj) = self.objects.get(&dep).cloned() {
                drop_owner_ref(&mut obj, owner_uid);
                self.write(tx, dep, obj, EventType::Modified);
            }
        }
    }

    /// Garbage collection after `owner_uid` is gone: dependants with no remaining owner are
    /// deleted (in the background), the others lose the dangling reference.
    fn collect_dependants(&mut self, tx: &broadcast::Sender<Broadcast>, owner_uid: &str) {
        if owner_uid.is_empty() {
            return;
        }
        for dep in self.dependants(owner_uid) {
            let Some(mut obj) = self.objects.get(&dep).cloned() else {
                continue;
            };
            let others_alive = meta::owner_uids(&obj)
                .iter()
                .any(|u| u != owner_uid && self.uid_exists(u));
            if others_alive {
                drop_owner_ref(&mut obj, owner_uid);
                self.write(tx, dep, obj, EventType::Modified);
            } else if !meta::is_deleting(&obj) {
                self.delete_key(tx, &dep, Some(Propagation::Background));
            }
        }
    }

    /// The collector's view of an object just written: when every owner it
    /// references is gone (written from a stale cache after the owner was
    /// deleted, say), it is garbage and is deleted in the background, as the
    /// API server's garbage collector deletes it.
    fn collect_if_owners_gone(&mut self, tx: &broadcast::Sender<Broadcast>, key: &ObjKey) {
        let Some(obj) = self.objects.get(key) else {
            return;
        };
        let owners = meta::owner_uids(obj);
        if owners.is_empty() || meta::is_deleting(obj) || owners.iter().any(|u| self.uid_exists(u))
        {
            return;
        }
        self.delete_key(tx, key, Some(Propagation::Background));
    }

    /// Completes deletions that were waiting: foreground owners whose dependants are gone,
    /// and terminating namespaces that are empty.
    fn after_removal(&mut self, tx: &broadcast::Sender<Broadcast>) {
        loop {
            let waiting_owner = self.objects.iter().find(|(_, o)| {
                meta::is_deleting(o)
                    && meta::finalizers_of(o)
                        .iter()
                        .any(|f| f == "foregroundDeletion")
                    && !self.has_dependants(meta::uid_of(o))
            });
            if let Some((key, obj)) = waiting_owner {
                let key = key.clone();
                let mut obj = obj.clone();
                let rest: Vec<String> = meta::finalizers_of(&obj)
                    .into_iter()
                    .filter(|f| f != "foregroundDeletion")
                    .collect();
                obj["metadata"]["finalizers"] = json!(rest);
                let uid = meta::uid_of(&obj).to_string();
                if rest.is_empty() {
                    self.remove(tx, &key, Some(obj));
                    self.collect_dependants(tx, &uid);
                } else {
                    self.write(tx, key, obj, EventType::Modified);
                }
                continue;
            }
            let empty_ns = self.objects.iter().find(|(k, o)| {
                k.group.is_empty()
                    && k.resource == "namespaces"
                    && meta::is_deleting(o)
                    && meta::finalizers_of(o).is_empty()
                    && !self.objects.keys().any(|c| c.namespace == k.name)
            });
            if let Some((key, _)) = empty_ns {
                let key = key.clone();
                self.remove(tx, &key, None);
                continue;
            }
            break;
        }
    }
}

fn drop_owner_ref(obj: &mut Value, owner_uid: &str) {
    if let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() {
        refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
    }
}

fn is_crd_key(key: &ObjKey) -> bool {
    key.group == "apiextensions.k8s.io" && key.resource == "customresourcedefinitions"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(store: &Store) -> (ResourceType, ResourceType) {
        let registry = store.registry();
        let config_maps = registry.find("", "v1", "configmaps").cloned().unwrap();
        let secrets = registry.find("", "v1", "secrets").cloned().unwrap();
        (config_maps, secrets)
    }

    fn object(name: &str, owner_uids: &[&str]) -> Value {
        let refs: Vec<Value> = owner_uids
            .iter()
            .map(|uid| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": uid}))
            .collect();
        json!({"metadata": {"name": name, "ownerReferences": refs}})
    }

    fn create_owner(store: &Store, rt: &ResourceType, name: &str) -> String {
        let created = store
            .create(rt, "default", object(name, &[]), false)
            .unwrap();
        meta::uid_of(&created).to_string()
    }

    fn delete(store: &Store, rt: &ResourceType, name: &str) {
        store
            .delete(rt, "default", name, &DeleteOptions::default(), false)
            .unwrap();
    }

    #[test]
    fn a_dependant_written_after_its_owner_is_gone_is_collected() {
        let store = Store::new(100);
        let (config_maps, secrets) = types(&store);
        let uid = create_owner(&store, &config_maps, "owner");
        store
            .create(&secrets, "default", object("kept", &[&uid]), false)
            .unwrap();
        delete(&store, &config_maps, "owner");
        assert!(store.get(&secrets, "default", "kept").is_err());
        // Written from a stale cache after the owner went away.
        store
            .create(&secrets, "default", object("late", &[&uid]), false)
            .unwrap();
        assert!(store.get(&secrets, "default", "late").is_err());
    }

    #[test]
    fn an_owner_recreated_under_its_name_is_a_different_owner() {
        let store = Store::new(100);
        let (config_maps, secrets) = types(&store);
        let old = create_owner(&store, &config_maps, "owner");
        delete(&store, &config_maps, "owner");
        let new = create_owner(&store, &config_maps, "owner");
        assert_ne!(old, new);
        store
            .create(&secrets, "default", object("to-new", &[&new]), false)
            .unwrap();
        store
            .create(&secrets, "default", object("to-old", &[&old]), false)
            .unwrap();
        assert!(store.get(&secrets, "default", "to-new").is_ok());
        assert!(store.get(&secrets, "default", "to-old").is_err());
    }

    #[test]
    fn a_dependant_with_a_live_owner_left_loses_only_the_gone_reference() {
        let store = Store::new(100);
        let (config_maps, secrets) = types(&store);
        let first = create_owner(&store, &config_maps, "first");
        let second = create_owner(&store, &config_maps, "second");
        store
            .create(
                &secrets,
                "default",
                object("shared", &[&first, &second]),
                false,
            )
            .unwrap();
        delete(&store, &config_maps, "first");
        let shared = store.get(&secrets, "default", "shared").unwrap();
        assert_eq!(meta::owner_uids(&shared), vec![second.clone()]);
        delete(&store, &config_maps, "second");
        assert!(store.get(&secrets, "default", "shared").is_err());
    }

    #[test]
    fn list_and_watch_see_only_their_type_and_namespace() {
        let store = Store::new(100);
        let (config_maps, secrets) = types(&store);
        let namespaces = store
            .registry()
            .find("", "v1", "namespaces")
            .cloned()
            .unwrap();
        store
            .create(
                &namespaces,
                "",
                json!({"metadata": {"name": "other"}}),
                false,
            )
            .unwrap();
        for (ns, name) in [("default", "a"), ("other", "b"), ("default", "c")] {
            store
                .create(&secrets, ns, object(name, &[]), false)
                .unwrap();
            store
                .create(&config_maps, ns, object(name, &[]), false)
                .unwrap();
        }
        let names = |items: &[Value]| -> Vec<String> {
            items.iter().map(|o| meta::name_of(o).to_string()).collect()
        };
        let all = store.list(&secrets, None, &|_| true);
        assert_eq!(names(&all.items), ["a", "c", "b"]);
        let default = store.list(&secrets, Some("default"), &|_| true);
        assert_eq!(names(&default.items), ["a", "c"]);
        let other = store.list(&secrets, Some("other"), &|_| true);
        assert_eq!(names(&other.items), ["b"]);
        // Namespaces are cluster-scoped: a namespace in the request does not narrow them.
        let ns_list = store.list(&namespaces, Some("default"), &|_| true);
        assert_eq!(ns_list.items.len(), 5);
        let replay = store.watch(&secrets, None).unwrap().replay;
        assert_eq!(replay.len(), 3);
        assert!(replay.iter().all(|e| e.key.resource == "secrets"));
    }
}
