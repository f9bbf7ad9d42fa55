//! RFC 7386 JSON merge patch (`application/merge-patch+json`).
//!
//! ```text
//! pub fn merge_patch(target: &Value, patch: &Value) -> Value
//! pub fn create_merge_patch(from: &Value, to: &Value) -> Value
//! ```

use serde_json::{Map, Value};

/// Applies `patch` to `target`: objects merge recursively, `null` removes a member, anything
/// else (arrays included) replaces the target value.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(patch_members) => {
            let mut result = match target {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            };
            for (key, value) in patch_members {
                if value.is_null() {
                    result.remove(key);
                } else {
                    let merged = merge_patch(result.get(key).unwrap_or(&Value::Null), value);
                    result.insert(key.clone(), merged);
                }
            }
            Value::Object(result)
        }
        other => other.clone(),
    }
}

/// The merge patch that turns `from` into `to`. Values that are `null` inside `to` objects cannot
/// be expressed by a merge patch (RFC 7386 §2) and are treated as absent.
pub fn create_merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut patch = Map::new();
            for key in f.keys() {
                if !t.contains_key(key) || t[key].is_null() {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            for (key, to_value) in t {
                if to_value.is_null() {
                    continue;
                }
                match f.get(key) {
                    Some(from_value) if from_value == to_value => {}
                    Some(from_value) => {
                        patch.insert(key.clone(), create_merge_patch(from_value, to_value));
                    }
                    None => {
                        patch.insert(key.clone(), strip_nulls(to_value));
                    }
                }
            }
            Value::Object(patch)
        }
        (_, t) => strip_nulls(t),
    }
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Arbitrary JSON documents of bounded size.
    pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1000i64..1000).prop_map(|n| json!(n)),
            "[a-z~/]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c~/]{1,2}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn rfc7386_appendix_a_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(merge_patch(&target, &patch), expected, "{target} + {patch}");
        }
    }

    #[test]
    fn labels_can_be_added_and_removed() {
        let pod = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}});
        let patched = merge_patch(
            &pod,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
        );
        assert_eq!(patched["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(patched["metadata"]["name"], "p");
    }

    proptest! {
        #[test]
        fn diff_generated_patch_yields_target(from in arb_json(), to in arb_json()) {
            let to = strip_nulls(&to);
            let patch = create_merge_patch(&from, &to);
            prop_assert_eq!(merge_patch(&from, &patch), to);
        }

        #[test]
        fn merge_patch_is_idempotent(target in arb_json(), patch in arb_json()) {
            let once = merge_patch(&target, &patch);
            prop_assert_eq!(merge_patch(&once, &patch), once.clone());
        }
    }
}
