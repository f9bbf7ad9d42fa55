use super::fieldset::{fields_of, from_fields_v1, to_fields_v1};
use super::*;
use crate::patch::merge::tests::arb_json;
use proptest::prelude::*;

const T1: &str = "2024-05-10T12:00:00Z";
const T2: &str = "2024-05-10T12:05:00Z";

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "namespace": "default", "labels": {"app": "web"}},
           "data": data})
}

fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    server_side_apply(
        current,
        applied,
        manager,
        force,
        T1,
        Structure::Builtin("ConfigMap"),
    )
}

#[test]
fn first_apply_records_an_apply_entry() {
    let out = apply(None, &cm(json!({"a": "1"})), "kubectl", false).unwrap();
    let entries = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0],
        json!({"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T1,
               "fieldsType": "FieldsV1",
               "fieldsV1": {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}})
    );
    assert_eq!(out["data"]["a"], "1");
    assert_eq!(out["metadata"]["name"], "c");
}

#[test]
fn conflicting_value_is_409_unless_forced() {
    let first = apply(None, &cm(json!({"a": "1", "b": "2"})), "alice", false).unwrap();
    // The same value is shared without conflict.
    let shared = apply(Some(&first), &cm(json!({"a": "1"})), "bob", false).unwrap();
    assert_eq!(managed_fields_of(&shared, "bob").len(), 1);
    let err = apply(Some(&shared), &cm(json!({"a": "9"})), "bob", false).unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"alice\": .data.a"
    );
    assert_eq!(err.causes[0].reason, "FieldManagerConflict");
    assert_eq!(err.causes[0].field, ".data.a");
    assert_eq!(err.causes[0].message, "conflict with \"alice\"");
    assert_eq!(err.kind.as_deref(), Some("ConfigMap"));
    let err = apply(
        Some(&shared),
        &cm(json!({"a": "9", "b": "8"})),
        "bob",
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .data.a\n- .data.b"
    );
    let forced = apply(Some(&shared), &cm(json!({"a": "9"})), "bob", true).unwrap();
    assert_eq!(forced["data"]["a"], "9");
    let alice = managed_fields_of(&forced, "alice");
    assert_eq!(
        alice[0].1["f:data"],
        json!({"f:b": {}}),
        "alice lost .data.a"
    );
}

#[test]
fn fields_dropped_from_config_are_removed_unless_owned_elsewhere() {
    let first = apply(None, &cm(json!({"a": "1", "b": "2"})), "alice", false).unwrap();
    let out = apply(Some(&first), &cm(json!({"a": "1"})), "alice", false).unwrap();
    assert_eq!(out["data"], json!({"a": "1"}));
    let shared = apply(Some(&first), &cm(json!({"b": "2"})), "bob", false).unwrap();
    let out = apply(Some(&shared), &cm(json!({"a": "1"})), "alice", false).unwrap();
    assert_eq!(out["data"], json!({"a": "1", "b": "2"}), "bob still owns b");
}

fn deployment(containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 2, "template": {"spec": {"containers": containers}}}})
}

#[test]
fn containers_merge_by_name_and_have_key_paths() {
    let structure = Structure::Builtin("Deployment");
    let a = deployment(json!([{"name": "app", "image": "app:1"}]));
    let first = server_side_apply(None, &a, "alice", false, T1, structure).unwrap();
    let fields = &first["metadata"]["managedFields"][0]["fieldsV1"];
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"],
        json!({"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}})
    );
    let b = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy"}]}}}});
    let both = server_side_apply(Some(&first), &b, "bob", false, T2, structure).unwrap();
    let names: Vec<&str> = both["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "sidecar"]);
    let again = server_side_apply(Some(&both), &a, "alice", false, T2, structure).unwrap();
    assert_eq!(
        again["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let err = server_side_apply(
        Some(&both),
        &deployment(json!([{"name": "sidecar", "image": "other"}])),
        "alice",
        false,
        T2,
        structure,
    )
    .unwrap_err();
    assert_eq!(
        err.causes[0].field,
        ".spec.template.spec.containers[name=\"sidecar\"].image"
    );
    let without_app = deployment(json!([]));
    let out = server_side_apply(Some(&both), &without_app, "alice", false, T2, structure).unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["sidecar"],
        "alice's container is removed, bob's kept"
    );
}

#[test]
fn updates_take_ownership_and_conflict_with_apply() {
    let created = record_update(
        None,
        &cm(json!({"a": "1"})),
        "kubectl-client-side-apply",
        T1,
        Structure::Builtin("ConfigMap"),
    );
    let entry = &created["metadata"]["managedFields"][0];
    assert_eq!(entry["operation"], "Update");
    assert_eq!(
        entry["fieldsV1"]["f:data"],
        json!({".": {}, "f:a": {}}),
        "new maps are owned whole"
    );
    let err = apply(Some(&created), &cm(json!({"a": "2"})), "kubectl", false).unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.a"
    );
    let applied = apply(Some(&created), &cm(json!({"b": "2"})), "kubectl", false).unwrap();
    let mut edited = applied.clone();
    edited["data"]["b"] = json!("3");
    let updated = record_update(
        Some(&applied),
        &edited,
        "kubectl-edit",
        T2,
        Structure::Builtin("ConfigMap"),
    );
    assert_eq!(
        managed_fields_of(&updated, "kubectl-edit")[0].1,
        json!({"f:data": {"f:b": {}}})
    );
    let kubectl = managed_fields_of(&updated, "kubectl");
    assert!(
        kubectl[0].1.get("f:data").is_none(),
        "the editor took .data.b: {:?}",
        kubectl
    );
}

#[test]
fn schema_list_types_drive_custom_resources() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                  "items": {"type": "object"}},
        "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}}
    }}}});
    let obj = |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec});
    let structure = Structure::Schema(&schema);
    let first = server_side_apply(None, &obj(json!({"ports": [{"port": 80, "protocol": "TCP", "name": "a"}], "hosts": ["x"], "args": ["1"]})), "alice", false, T1, structure).unwrap();
    let f = &first["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    assert!(
        f["f:ports"]
            .get("k:{\"port\":80,\"protocol\":\"TCP\"}")
            .is_some(),
        "{f}"
    );
    assert!(f["f:hosts"].get("v:\"x\"").is_some(), "{f}");
    assert_eq!(f["f:args"], json!({}));
    let out = server_side_apply(
        Some(&first),
        &obj(json!({"ports": [{"port": 81, "protocol": "TCP"}], "hosts": ["y"]})),
        "bob",
        false,
        T1,
        structure,
    )
    .unwrap();
    assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
    assert_eq!(out["spec"]["hosts"], json!(["x", "y"]));
    assert_eq!(out["spec"]["args"], json!(["1"]));
    // Metadata lists follow ObjectMeta, not the CRD schema: finalizers are a set.
    let with_finalizer = |f: &str| {
        let mut o = obj(json!({}));
        o["metadata"]["finalizers"] = json!([f]);
        o
    };
    let first = server_side_apply(
        Some(&out),
        &with_finalizer("a.example.com/x"),
        "alice",
        false,
        T1,
        structure,
    )
    .unwrap();
    let both = server_side_apply(
        Some(&first),
        &with_finalizer("b.example.com/y"),
        "bob",
        false,
        T1,
        structure,
    )
    .unwrap();
    assert_eq!(
        both["metadata"]["finalizers"],
        json!(["a.example.com/x", "b.example.com/y"])
    );
    let created = record_update(None, &with_finalizer("x"), "m", T1, structure);
    let labels_map = json!({"metadata": {"labels": {"k": "v"}}});
    let labeled = record_update(
        Some(&created),
        &merge_labels(&created, &labels_map),
        "m",
        T1,
        structure,
    );
    assert!(
        managed_fields_of(&labeled, "m")[0].1["f:metadata"]["f:labels"]
            .get(".")
            .is_some()
    );
}

fn merge_labels(object: &Value, patch: &Value) -> Value {
    crate::patch::merge::merge_patch(object, patch)
}

#[test]
fn undeclared_fields_are_reported_like_structured_merge_diff() {
    let applied = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "default"}});
    let err = undeclared_fields_error(&applied, &["spec.foo".to_string()]);
    assert_eq!(err.code, 500);
    assert_eq!(
        err.message,
        "failed to create typed patch object (default/w1; example.com/v1, Kind=Widget): .spec.foo: field not declared in schema"
    );
    let two = undeclared_fields_error(&applied, &["spec.a".to_string(), "spec.b".to_string()]);
    assert_eq!(
        two.message,
        "failed to create typed patch object (default/w1; example.com/v1, Kind=Widget): errors:\n  .spec.a: field not declared in schema\n  .spec.b: field not declared in schema"
    );
    assert_eq!(two.reason, "", "a bare error, not a typed Status reason");
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}});
    assert!(
        undeclared_fields_error(&pv, &["spec.x".to_string()])
            .message
            .starts_with("failed to create typed patch object (/pv; /v1, Kind=PersistentVolume)")
    );
}

proptest! {
    #[test]
    fn fields_v1_round_trips(doc in arb_json()) {
        let set = fields_of(&json!({"spec": doc}), Structure::Builtin("Pod"));
        prop_assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn never_panics(current in arb_json(), applied in arb_json(), force in any::<bool>()) {
        let current = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": current});
        let applied = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": applied});
        if let Ok(out) = server_side_apply(Some(&current), &applied, "m", force, T1, Structure::Builtin("Pod")) {
            let _ = server_side_apply(Some(&out), &applied, "n", force, T1, Structure::Builtin("Pod"));
            let _ = record_update(Some(&out), &current, "u", T2, Structure::Builtin("Pod"));
        }
    }

    /// A lone applier always gets exactly its config back for map-only documents.
    #[test]
    fn sole_applier_gets_its_config(first in prop::collection::btree_map("[a-d]", "[a-z]{0,3}", 0..5),
                                    second in prop::collection::btree_map("[a-d]", "[a-z]{0,3}", 0..5)) {
        let one = apply(None, &cm(json!(first)), "m", false).unwrap();
        let two = apply(Some(&one), &cm(json!(second)), "m", false).unwrap();
        prop_assert_eq!(&two["data"], &json!(second));
    }
}

#[test]
fn a_status_apply_has_its_own_entry_and_keeps_the_main_resource_apply() {
    let main = json!({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "s", "namespace": "default", "labels": {"app": "web"}},
                      "spec": {"type": "ClusterIP"}});
    let out =
        server_side_apply(None, &main, "op", false, T1, Structure::Builtin("Service")).unwrap();
    let status = json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "s", "namespace": "default"},
                        "status": {"loadBalancer": {}}});
    let out = server_side_apply_on(
        Some(&out),
        &status,
        "op",
        "status",
        false,
        T2,
        Structure::Builtin("Service"),
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["labels"]["app"], "web",
        "main-resource fields stay"
    );
    assert_eq!(out["spec"]["type"], "ClusterIP");
    let entries = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[1]["subresource"], "status");
    assert_eq!(
        entries[1]["fieldsV1"],
        json!({"f:status": {"f:loadBalancer": {}}})
    );
    assert!(entries[0].get("subresource").is_none());
}
