use super::*;
use crate::watcher::scan_dir;
use proptest::prelude::*;

fn boutique() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/boutique")
}

fn initial(dir: &Path) -> (ConfigSet, Vec<ResourceChange>) {
    let mut set = ConfigSet::default();
    let events = scan_dir(dir)
        .unwrap()
        .into_iter()
        .map(|(path, bytes)| FileEvent::Apply {
            path,
            contents: String::from_utf8(bytes).unwrap(),
        })
        .collect();
    let changes = set.apply_events(events);
    (set, changes)
}

#[test]
fn boutique_example_loads_and_validates_without_errors() {
    let (set, changes) = initial(&boutique());
    assert_eq!(set.errors(), vec![], "the example must be valid");
    let count = |kind: &str| set.resources().iter().filter(|r| r.kind() == kind).count();
    assert_eq!(count("WorkloadEntry"), 8);
    assert_eq!(count("Service"), 6);
    assert_eq!(count("ServiceAccount"), 7);
    assert_eq!(count("Gateway"), 1);
    assert_eq!(count("VirtualService"), 2);
    assert_eq!(count("DestinationRule"), 6);
    assert_eq!(count("PeerAuthentication"), 1);
    assert_eq!(count("RequestAuthentication"), 1);
    assert_eq!(count("AuthorizationPolicy"), 1);
    assert_eq!(changes.len(), set.resources().len());
}

#[test]
fn invalid_documents_are_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("mixed.yaml"),
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: cart, namespace: shop}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - route:
    - destination: {host: cart}
      weight: -5
"#,
    )
    .unwrap();
    let (set, _) = initial(tmp.path());
    assert_eq!(set.resources().len(), 1, "the good document still applies");
    let errors = set.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.file.ends_with("mixed.yaml"));
    assert_eq!(e.kind.as_deref(), Some("VirtualService"));
    assert_eq!(e.namespace.as_deref(), Some("shop"));
    assert_eq!(e.name.as_deref(), Some("cart"));
    assert!(e.field.as_deref().unwrap_or("").contains("weight"), "{e:?}");
}

#[test]
fn edits_and_deletes_become_object_changes() {
    let mut set = ConfigSet::default();
    let sa = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: shop}}\n"
        )
    };
    let apply = |path: &str, contents: String| FileEvent::Apply {
        path: path.into(),
        contents,
    };
    assert_eq!(set.apply_events(vec![apply("a.yaml", sa("x"))]).len(), 1);
    // Same content again: nothing changes.
    assert!(set.apply_events(vec![apply("a.yaml", sa("x"))]).is_empty());
    // Rename inside the file: one delete, one apply.
    let changes = set.apply_events(vec![apply("a.yaml", sa("y"))]);
    assert!(matches!(&changes[0], ResourceChange::Delete(r) if r.name == "x"));
    assert!(matches!(&changes[1], ResourceChange::Apply(r) if r.name() == "y"));
    // A duplicate in another file is reported, not applied.
    assert!(set.apply_events(vec![apply("b.yaml", sa("y"))]).is_empty());
    assert!(set.errors()[0].message.contains("a.yaml"));
    // Deleting the winner hands the object to the other file (content equal: no change).
    assert!(
        set.apply_events(vec![FileEvent::Delete {
            path: "a.yaml".into()
        }])
        .is_empty()
    );
    let changes = set.apply_events(vec![FileEvent::Delete {
        path: "b.yaml".into(),
    }]);
    assert!(matches!(&changes[..], [ResourceChange::Delete(r)] if r.name == "y"));
}

proptest! {
    #[test]
    fn arbitrary_file_contents_never_panic(contents in ".{0,200}") {
        let mut set = ConfigSet::default();
        set.apply_events(vec![FileEvent::Apply { path: "x.yaml".into(), contents }]);
        let _ = set.errors();
    }
}
