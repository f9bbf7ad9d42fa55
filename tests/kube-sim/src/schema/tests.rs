use super::*;
use crate::patch::merge::tests::arb_json;
use proptest::prelude::*;
use serde_json::json;

fn widget_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10, "format": "int32"},
                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                    "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 5},
                    "port": {"x-kubernetes-int-or-string": true},
                    "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
                    "routes": {"type": "array", "items": {"type": "object", "properties": {
                        "host": {"type": "string"},
                        "weight": {"type": "integer", "default": 100}
                    }}},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "note": {"type": "string", "nullable": true},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                 "properties": {"spec": {"type": "object"}}}
                }
            },
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }
    })
}

fn target() -> CustomResourceRef {
    CustomResourceRef {
        group: "example.com".into(),
        version: "v1".into(),
        kind: "Widget".into(),
        name: "w1".into(),
    }
}

fn widget(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": "w1", "labels": {"a": "b"}}, "spec": spec})
}

#[test]
fn valid_object_is_defaulted_and_kept() {
    let out = admit_custom_resource(
        &widget_schema(),
        &widget(json!({"size": 3, "port": "http", "routes": [{"host": "a"}],
                       "extra": {"anything": {"goes": 1}}, "labels": {"x": "y"}, "note": null,
                       "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}})),
        &target(),
        true,
    )
    .unwrap();
    assert_eq!(out["spec"]["color"], "red");
    assert_eq!(out["spec"]["routes"][0]["weight"], 100);
    assert_eq!(out["spec"]["extra"]["anything"]["goes"], 1);
    assert_eq!(out["metadata"]["labels"]["a"], "b");
    assert_eq!(out["spec"]["template"]["kind"], "Pod");
    assert!(out["spec"]["note"].is_null() && out["spec"].get("note").is_some());
}

#[test]
fn unknown_fields_are_pruned_or_rejected_when_strict() {
    let obj = widget(json!({"size": 3, "foo": 1, "routes": [{"host": "a", "bar": true}]}));
    let out = admit_custom_resource(&widget_schema(), &obj, &target(), false).unwrap();
    assert!(out["spec"].get("foo").is_none());
    assert!(out["spec"]["routes"][0].get("bar").is_none());
    let err = admit_custom_resource(&widget_schema(), &obj, &target(), true).unwrap_err();
    assert_eq!(err.code, 400);
    assert_eq!(err.reason, "BadRequest");
    assert_eq!(
        err.message,
        "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.foo\", unknown field \"spec.routes[0].bar\""
    );
}

#[test]
fn validation_errors_have_field_paths() {
    let obj = widget(json!({"color": "green", "name": "Bad1", "tags": [], "port": true}));
    let err = admit_custom_resource(&widget_schema(), &obj, &target(), true).unwrap_err();
    assert_eq!(err.code, 422);
    let fields: Vec<(&str, &str)> = err
        .causes
        .iter()
        .map(|c| (c.field.as_str(), c.reason.as_str()))
        .collect();
    assert!(
        fields.contains(&("spec.size", "FieldValueRequired")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("spec.color", "FieldValueNotSupported")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("spec.tags", "FieldValueInvalid")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("spec.port", "FieldValueInvalid")),
        "{fields:?}"
    );
    assert_eq!(
        fields.iter().filter(|(f, _)| *f == "spec.name").count(),
        1,
        "pattern only: length is fine"
    );
    assert!(
        err.message
            .starts_with("Widget.example.com \"w1\" is invalid: ["),
        "{}",
        err.message
    );
    let color = err.causes.iter().find(|c| c.field == "spec.color").unwrap();
    assert_eq!(
        color.message,
        "Unsupported value: \"green\": supported values: \"red\", \"blue\""
    );
}

#[test]
fn numeric_and_length_bounds() {
    let schema = widget_schema();
    let check = |spec: Value| -> Vec<String> {
        validate(&schema, &widget(spec))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    };
    assert_eq!(
        check(json!({"size": 0})),
        vec!["spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"]
    );
    assert_eq!(
        check(json!({"size": 11})),
        vec!["spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"]
    );
    assert_eq!(
        check(json!({"size": "3"})),
        vec![
            "spec.size: Invalid value: \"3\": spec.size in body must be of type integer: \"string\""
        ]
    );
    assert_eq!(
        check(json!({"size": 2, "name": "a"})),
        vec!["spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long"]
    );
    assert_eq!(
        check(json!({"size": 2, "name": "abcdef"})),
        vec!["spec.name: Too long: may not be more than 5 bytes"]
    );
    assert_eq!(
        check(json!({"size": 2, "tags": ["a", "b", "c"]})),
        vec!["spec.tags: Too many: 3: must have at most 2 items"]
    );
    assert_eq!(check(json!({"size": 2, "tags": ["a", 1]})).len(), 1);
    assert_eq!(check(json!({"size": 2, "labels": {"k": 1}})).len(), 1);
    let int32 = json!({"type": "integer", "format": "int32"});
    assert_eq!(validate(&int32, &json!(3_000_000_000u64)).len(), 1);
    assert!(validate(&int32, &json!(-5)).is_empty());
}

#[test]
fn nulls_of_non_nullable_fields_are_dropped_then_defaulted() {
    let out = admit_custom_resource(
        &widget_schema(),
        &widget(json!({"size": 1, "color": null})),
        &target(),
        true,
    )
    .unwrap();
    assert_eq!(out["spec"]["color"], "red");
}

#[test]
fn combinators_express_exclusive_fields() {
    // Istio-style: exactly one of `exact` / `prefix`, and never both.
    let schema = json!({"type": "object", "properties": {"match": {
        "type": "object",
        "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}},
        "oneOf": [{"required": ["exact"]}, {"required": ["prefix"]}],
        "maxProperties": 1
    }, "port": {"type": "object", "properties": {"number": {"type": "integer"}, "name": {"type": "string"}},
        "anyOf": [{"required": ["number"]}, {"required": ["name"]}],
        "not": {"required": ["number", "name"]}}}});
    assert!(
        validate(
            &schema,
            &json!({"match": {"exact": "/a"}, "port": {"name": "http"}})
        )
        .is_empty()
    );
    let both = validate(&schema, &json!({"match": {"exact": "/a", "prefix": "/"}}));
    let messages: Vec<&str> = both.iter().map(|c| c.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.ends_with("match in body must validate one and only one schema (oneOf). Found 2 valid alternatives")), "{messages:?}");
    assert!(
        messages.iter().any(|m| m.starts_with("Too many: 2")),
        "{messages:?}"
    );
    let neither = validate(&schema, &json!({"match": {}, "port": {}}));
    assert_eq!(neither.len(), 2, "{neither:?}");
    assert!(
        neither[1]
            .message
            .ends_with("port in body must validate at least one schema (anyOf)")
    );
    let clash = validate(&schema, &json!({"port": {"number": 80, "name": "http"}}));
    assert_eq!(clash.len(), 1);
    assert!(
        clash[0]
            .message
            .ends_with("port in body must not validate the schema (not)")
    );
}

#[test]
fn list_types_reject_duplicates() {
    let set =
        json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}});
    let causes = validate(
        &json!({"type": "object", "properties": {"hosts": set}}),
        &json!({"hosts": ["a", "b", "a"]}),
    );
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "hosts[2]");
    assert_eq!(causes[0].message, "Duplicate value: \"a\"");
    let map = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                     "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}});
    let causes = validate(
        &map,
        &json!([{"name": "x", "v": 1}, {"name": "y"}, {"name": "x", "v": 2}]),
    );
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "[2]");
    assert_eq!(
        causes[0].message,
        "Duplicate value: map[string]interface {}{\"name\":\"x\"}"
    );
    assert!(validate(&map, &json!([{"name": "x"}, {"name": "y"}])).is_empty());
}

proptest! {
    #[test]
    fn never_panics_and_pruned_objects_have_no_unknown_fields(spec in arb_json(), schema in arb_json()) {
        let obj = widget(spec);
        let _ = admit_custom_resource(&schema, &obj, &target(), false);
        let mut pruned = obj.clone();
        prune(&widget_schema(), &mut pruned);
        let mut again = pruned.clone();
        prop_assert!(prune(&widget_schema(), &mut again).is_empty());
        prop_assert_eq!(again, pruned);
    }
}
