//! A proxy's resources of one type, in name order: the part its outbound
//! scope shares with every proxy of the scope, plus its own.
//!
//! Thousands of sidecars of a namespace get the same thousands of clusters,
//! endpoints and (intercepted) outbound listeners. Holding the scope's list
//! by one `Arc` instead of copying it into every proxy's output saves a
//! vector and a reference count per resource per proxy, on translation and
//! again when the output is dropped.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use std::sync::Arc;

/// An Envoy resource with the name it is listed and asked for by.
pub trait Named {
    fn resource_name(&self) -> &str;
}

impl Named for Cluster {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

impl Named for ClusterLoadAssignment {
    fn resource_name(&self) -> &str {
        &self.cluster_name
    }
}

impl Named for Listener {
    fn resource_name(&self) -> &str {
        &self.name
    }
}

/// Resources of one type, each name once, iterated in name order.
pub struct ResourceList<T> {
    /// Sorted by name, distinct; shared with other proxies' lists.
    shared: Arc<[Arc<T>]>,
    /// Sorted by name, distinct, and no name of `shared`.
    own: Vec<Arc<T>>,
}

impl<T: Named> ResourceList<T> {
    /// A list that starts as `shared`, which must be sorted by name with
    /// each name once (as a scope builds it).
    pub fn shared(shared: Arc<[Arc<T>]>) -> Self {
        debug_assert!(
            (shared.windows(2)).all(|w| w[0].resource_name() < w[1].resource_name()),
            "a shared resource list is sorted by name, each name once"
        );
        ResourceList {
            shared,
            own: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.shared.len() + self.own.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The resource named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<T>> {
        let find = |list: &'_ [Arc<T>]| -> Option<usize> {
            list.binary_search_by(|r| r.resource_name().cmp(name)).ok()
        };
        (find(&self.shared).map(|i| &self.shared[i]))
            .or_else(|| find(&self.own).map(|i| &self.own[i]))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Adds `resource` unless a resource of its name is listed already (the
    /// one listed first stays). Returns whether it was added.
    pub fn insert(&mut self, resource: Arc<T>) -> bool {
        let name = resource.resource_name();
        if (self.shared)
            .binary_search_by(|r| r.resource_name().cmp(name))
            .is_ok()
        {
            return false;
        }
        match (self.own).binary_search_by(|r| r.resource_name().cmp(name)) {
            Ok(_) => false,
            Err(at) => {
                self.own.insert(at, resource);
                true
            }
        }
    }

    /// In name order.
    pub fn iter(&self) -> Iter<'_, T> {
        merged_by_name(&self.shared, &self.own, |r| r.resource_name())
    }

    /// The part shared with other lists (tests and caches compare it by pointer).
    pub fn shared_part(&self) -> &Arc<[Arc<T>]> {
        &self.shared
    }

    /// The rest, sorted by name: none of its names is in the shared part.
    pub fn own_part(&self) -> &[Arc<T>] {
        &self.own
    }
}

impl<T> Default for ResourceList<T> {
    fn default() -> Self {
        ResourceList {
            shared: Arc::from(Vec::new()),
            own: Vec::new(),
        }
    }
}

impl<T> Clone for ResourceList<T> {
    fn clone(&self) -> Self {
        ResourceList {
            shared: self.shared.clone(),
            own: self.own.clone(),
        }
    }
}

impl<T: Named> Extend<Arc<T>> for ResourceList<T> {
    fn extend<I: IntoIterator<Item = Arc<T>>>(&mut self, resources: I) {
        for resource in resources {
            self.insert(resource);
        }
    }
}

/// Each name once: of resources with the same name, the first stays.
impl<T: Named> FromIterator<Arc<T>> for ResourceList<T> {
    fn from_iter<I: IntoIterator<Item = Arc<T>>>(resources: I) -> Self {
        let mut own: Vec<Arc<T>> = resources.into_iter().collect();
        // Stable: the first of equal names is kept by `dedup_by`.
        own.sort_by(|a, b| a.resource_name().cmp(b.resource_name()));
        own.dedup_by(|later, first| later.resource_name() == first.resource_name());
        // `collect` may have reused the buffer of larger items (`Arc::new` over a
        // vector of resources).
        own.shrink_to_fit();
        ResourceList {
            shared: Arc::from(Vec::new()),
            own,
        }
    }
}

/// Equal when they list equal resources, however each is split.
impl<T: Named + PartialEq> PartialEq for ResourceList<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: Named + std::fmt::Debug> std::fmt::Debug for ResourceList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: Named> IntoIterator for &'a ResourceList<T> {
    type Item = &'a Arc<T>;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// A [`ResourceList`] in name order.
pub type Iter<'a, T> = Merged<'a, Arc<T>, fn(&Arc<T>) -> &str>;

/// Two lists sorted by `name`, with no name in both, merged in name order.
/// Where each of `own` goes among `shared` is found by binary search: a few
/// resources of a proxy's own among the thousands of its scope cost a few
/// name comparisons, not thousands.
fn merged_by_name<'a, T, F: Fn(&T) -> &str>(
    shared: &'a [T],
    own: &'a [T],
    name: F,
) -> Merged<'a, T, F> {
    Merged {
        shared,
        own,
        shared_before_own: None,
        name,
    }
}

/// See [`merged_by_name`].
pub struct Merged<'a, T, F> {
    shared: &'a [T],
    own: &'a [T],
    /// How many of `shared` come before `own[0]` (`None`: not searched yet).
    shared_before_own: Option<usize>,
    name: F,
}

impl<'a, T, F: Fn(&T) -> &str> Iterator for Merged<'a, T, F> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let Some((first_own, rest)) = self.own.split_first() else {
            let (first, rest) = self.shared.split_first()?;
            self.shared = rest;
            return Some(first);
        };
        let before = match self.shared_before_own {
            Some(before) => before,
            None => {
                let own_name = (self.name)(first_own);
                (self.shared).partition_point(|r| (self.name)(r) < own_name)
            }
        };
        if let Some((first, rest)) = self.shared.split_first().filter(|_| before > 0) {
            self.shared_before_own = Some(before - 1);
            self.shared = rest;
            return Some(first);
        }
        self.own = rest;
        self.shared_before_own = None;
        Some(first_own)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.shared.len() + self.own.len();
        (n, Some(n))
    }
}

impl<T, F: Fn(&T) -> &str> ExactSizeIterator for Merged<'_, T, F> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cluster(name: &str, connect_ms: i64) -> Arc<Cluster> {
        Arc::new(Cluster {
            name: name.into(),
            connect_timeout: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 0,
                nanos: (connect_ms * 1_000_000) as i32,
            }),
            ..Default::default()
        })
    }

    fn names(list: &ResourceList<Cluster>) -> Vec<String> {
        list.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn own_resources_merge_into_the_shared_in_name_order() {
        let shared: Arc<[Arc<Cluster>]> = Arc::from(vec![cluster("b", 1), cluster("d", 1)]);
        let mut list = ResourceList::shared(shared.clone());
        assert!(list.insert(cluster("e", 2)));
        assert!(list.insert(cluster("a", 2)));
        assert!(list.insert(cluster("c", 2)));
        assert_eq!(names(&list), ["a", "b", "c", "d", "e"]);
        assert_eq!(list.len(), 5);
        assert_eq!(list.iter().len(), 5);
        // The shared part is not copied.
        assert!(Arc::ptr_eq(list.shared_part(), &shared));
    }

    #[test]
    fn a_listed_name_is_not_added_again() {
        let mut list = ResourceList::shared(Arc::from(vec![cluster("b", 1)]));
        assert!(!list.insert(cluster("b", 2)), "shared name");
        assert!(list.insert(cluster("c", 2)));
        assert!(!list.insert(cluster("c", 3)), "own name");
        let timeout = |name| list.get(name).unwrap().connect_timeout.unwrap().nanos;
        assert_eq!(timeout("b"), 1_000_000);
        assert_eq!(timeout("c"), 2_000_000);
        assert!(list.get("a").is_none());
        assert!(list.contains("c") && !list.contains("d"));
    }

    #[test]
    fn collecting_sorts_and_keeps_the_first_of_a_name() {
        let list: ResourceList<Cluster> = [cluster("z", 1), cluster("a", 1), cluster("z", 2)]
            .into_iter()
            .collect();
        assert_eq!(names(&list), ["a", "z"]);
        assert_eq!(
            list.get("z").unwrap().connect_timeout.unwrap().nanos,
            1_000_000
        );
    }

    proptest! {
        /// However the names are split between shared and own, the list is
        /// every name once, in order, and equals the same names all own.
        #[test]
        fn split_lists_equal_their_whole(
            shared in proptest::collection::btree_set("[a-f]{1,3}", 0..12),
            own in proptest::collection::vec("[a-f]{1,3}", 0..12),
        ) {
            let shared_list: Vec<Arc<Cluster>> = shared.iter().map(|n| cluster(n, 1)).collect();
            let mut split = ResourceList::shared(Arc::from(shared_list.clone()));
            split.extend(own.iter().map(|n| cluster(n, 1)));
            let whole: ResourceList<Cluster> =
                shared_list.into_iter().chain(own.iter().map(|n| cluster(n, 1))).collect();
            let mut expected: Vec<String> = shared.iter().cloned().chain(own.iter().cloned()).collect();
            expected.sort();
            expected.dedup();
            prop_assert_eq!(names(&split), expected.clone());
            prop_assert_eq!(split.len(), expected.len());
            prop_assert_eq!(&split, &whole);
            for name in &expected {
                prop_assert!(split.contains(name));
            }
        }
    }
}
