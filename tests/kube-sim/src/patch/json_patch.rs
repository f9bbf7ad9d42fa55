//! RFC 6902 JSON patch (`application/json-patch+json`) with RFC 6901 JSON pointers.
//!
//! ```text
//! pub fn apply_json_patch(doc: &Value, patch: &Value) -> Result<Value, ApiError>
//! pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, ApiError>
//! pub fn format_pointer(tokens: &[String]) -> String
//! ```
//! A malformed patch document is 400 BadRequest; an operation that cannot be applied (missing
//! path, failed `test`) is 422 as the API server reports it.

// ApiError is the crate's one error type and is returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

use serde_json::Value;

use crate::error::ApiError;

/// Splits a JSON pointer into its unescaped reference tokens (`~1` is `/`, `~0` is `~`).
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, ApiError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(ApiError::bad_request(format!(
            "invalid JSON pointer \"{pointer}\": must be empty or start with '/'"
        )));
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::new();
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "invalid JSON pointer \"{pointer}\": '~' must be followed by '0' or '1'"
                            )));
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// The pointer text of `tokens`, escaping `~` and `/`.
pub fn format_pointer(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(422, "Invalid", message)
}

/// Applies every operation in order; the document is unchanged when any operation fails.
pub fn apply_json_patch(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch.as_array().ok_or_else(|| {
        ApiError::bad_request("json patch must be a JSON array of operations".to_string())
    })?;
    let mut result = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_operation(&mut result, op).map_err(|mut e| {
            e.message = format!("json patch operation {index}: {}", e.message);
            e
        })?;
    }
    Ok(result)
}

fn member<'a>(op: &'a Value, name: &str) -> Result<&'a Value, ApiError> {
    op.get(name).ok_or_else(|| {
        ApiError::bad_request(format!("operation {op} is missing the \"{name}\" member"))
    })
}

fn pointer_member(op: &Value, name: &str) -> Result<(String, Vec<String>), ApiError> {
    let text = member(op, name)?.as_str().ok_or_else(|| {
        ApiError::bad_request(format!("operation {op}: \"{name}\" must be a string"))
    })?;
    Ok((text.to_string(), parse_pointer(text)?))
}

fn apply_operation(doc: &mut Value, op: &Value) -> Result<(), ApiError> {
    let kind = member(op, "op")?
        .as_str()
        .ok_or_else(|| ApiError::bad_request(format!("operation {op}: \"op\" must be a string")))?;
    let (path_text, path) = pointer_member(op, "path")?;
    match kind {
        "add" => add(doc, &path, member(op, "value")?.clone(), &path_text),
        "remove" => remove(doc, &path, &path_text).map(drop),
        "replace" => {
            let value = member(op, "value")?.clone();
            let target = get_mut(doc, &path).ok_or_else(|| {
                unprocessable(format!(
                    "replace operation does not apply: doc is missing key: {path_text}"
                ))
            })?;
            *target = value;
            Ok(())
        }
        "move" => {
            let (from_text, from) = pointer_member(op, "from")?;
            if path.len() > from.len() && path.starts_with(&from) {
                return Err(unprocessable(format!(
                    "move operation cannot move \"{from_text}\" into its own child \"{path_text}\""
                )));
            }
            let value = remove(doc, &from, &from_text)?;
            add(doc, &path, value, &path_text)
        }
        "copy" => {
            let (from_text, from) = pointer_member(op, "from")?;
            let value = get(doc, &from)
                .ok_or_else(|| {
                    unprocessable(format!(
                        "copy operation does not apply: doc is missing from path: {from_text}"
                    ))
                })?
                .clone();
            add(doc, &path, value, &path_text)
        }
        "test" => {
            let expected = member(op, "value")?;
            match get(doc, &path) {
                Some(actual) if actual == expected => Ok(()),
                _ => Err(unprocessable(format!(
                    "testing value {path_text} failed: test failed"
                ))),
            }
        }
        other => Err(ApiError::bad_request(format!(
            "unexpected kind of operation \"{other}\" in json patch"
        ))),
    }
}

/// An array index token: decimal digits without leading zeros.
fn array_index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |at, token| match at {
        Value::Object(m) => m.get(token),
        Value::Array(a) => array_index(token).and_then(|i| a.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |at, token| match at {
        Value::Object(m) => m.get_mut(token),
        Value::Array(a) => array_index(token).and_then(move |i| a.get_mut(i)),
        _ => None,
    })
}

fn add(doc: &mut Value, path: &[String], value: Value, path_text: &str) -> Result<(), ApiError> {
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    let missing = || {
        unprocessable(format!(
            "add operation does not apply: doc is missing path: \"{path_text}\""
        ))
    };
    match get_mut(doc, parent_path).ok_or_else(missing)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let index = if last == "-" {
                a.len()
            } else {
                array_index(last).filter(|i| *i <= a.len()).ok_or_else(|| {
                    unprocessable(format!(
                        "add operation does not apply: index out of bounds in \"{path_text}\""
                    ))
                })?
            };
            a.insert(index, value);
            Ok(())
        }
        _ => Err(missing()),
    }
}

fn remove(doc: &mut Value, path: &[String], path_text: &str) -> Result<Value, ApiError> {
    let missing = || {
        unprocessable(format!(
            "remove operation does not apply: doc is missing path: \"{path_text}\""
        ))
    };
    let Some((last, parent_path)) = path.split_last() else {
        return Ok(std::mem::take(doc));
    };
    match get_mut(doc, parent_path).ok_or_else(missing)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let index = array_index(last)
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(index))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::merge::tests::arb_json;
    use proptest::prelude::*;
    use serde_json::json;

    fn apply(doc: Value, patch: Value) -> Result<Value, ApiError> {
        apply_json_patch(&doc, &patch)
    }

    #[test]
    fn pointer_escaping() {
        assert_eq!(parse_pointer("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_pointer("/a~1b/m~0n/").unwrap(),
            vec!["a/b", "m~n", ""]
        );
        assert_eq!(parse_pointer("/~01").unwrap(), vec!["~1"]);
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("/~2").is_err());
        assert!(parse_pointer("/a~").is_err());
        let doc = json!({"metadata": {"annotations": {"example.com/x~y": "1"}}});
        let patched = apply(
            doc,
            json!([{"op": "replace", "path": "/metadata/annotations/example.com~1x~0y", "value": "2"}]),
        )
        .unwrap();
        assert_eq!(patched["metadata"]["annotations"]["example.com/x~y"], "2");
    }

    #[test]
    fn rfc6902_operations() {
        let doc = json!({"foo": ["bar", "baz"], "o": {"k": 1}});
        assert_eq!(
            apply(
                doc.clone(),
                json!([{"op":"add","path":"/foo/1","value":"qux"}])
            )
            .unwrap()["foo"],
            json!(["bar", "qux", "baz"])
        );
        assert_eq!(
            apply(
                doc.clone(),
                json!([{"op":"add","path":"/foo/-","value":"end"}])
            )
            .unwrap()["foo"],
            json!(["bar", "baz", "end"])
        );
        assert_eq!(
            apply(doc.clone(), json!([{"op":"remove","path":"/foo/0"}])).unwrap()["foo"],
            json!(["baz"])
        );
        assert_eq!(
            apply(
                doc.clone(),
                json!([{"op":"replace","path":"/o/k","value":2}])
            )
            .unwrap()["o"],
            json!({"k": 2})
        );
        let moved = apply(
            doc.clone(),
            json!([{"op":"move","from":"/o/k","path":"/o/m"}]),
        )
        .unwrap();
        assert_eq!(moved["o"], json!({"m": 1}));
        let copied = apply(
            doc.clone(),
            json!([{"op":"copy","from":"/foo/0","path":"/c"}]),
        )
        .unwrap();
        assert_eq!(copied["c"], "bar");
        assert!(apply(doc.clone(), json!([{"op":"test","path":"/o/k","value":1}])).is_ok());
        let failed =
            apply(doc.clone(), json!([{"op":"test","path":"/o/k","value":2}])).unwrap_err();
        assert_eq!(failed.code, 422);
        assert!(
            failed.message.contains("testing value /o/k failed"),
            "{}",
            failed.message
        );
        assert_eq!(
            apply(doc.clone(), json!([{"op":"add","path":"","value":3}])).unwrap(),
            json!(3)
        );
    }

    #[test]
    fn failures() {
        let doc = json!({"a": {"b": [1]}});
        let cases = [
            (json!([{"op":"remove","path":"/x"}]), 422),
            (json!([{"op":"replace","path":"/a/x","value":1}]), 422),
            (json!([{"op":"add","path":"/x/y","value":1}]), 422),
            (json!([{"op":"add","path":"/a/b/5","value":1}]), 422),
            (json!([{"op":"add","path":"/a/b/01","value":1}]), 422),
            (json!([{"op":"move","from":"/a","path":"/a/c"}]), 422),
            (json!([{"op":"copy","from":"/nope","path":"/c"}]), 422),
            (json!([{"op":"frobnicate","path":"/a"}]), 400),
            (json!([{"path":"/a"}]), 400),
            (json!([{"op":"add","path":"/a"}]), 400),
            (json!({"op":"add"}), 400),
        ];
        for (patch, code) in cases {
            let err = apply(doc.clone(), patch.clone()).expect_err(&patch.to_string());
            assert_eq!(err.code, code, "{patch}: {}", err.message);
        }
    }

    #[test]
    fn failed_patch_leaves_nothing_half_applied() {
        let doc = json!({"a": 1});
        let patch = json!([{"op":"add","path":"/b","value":2},{"op":"remove","path":"/zzz"}]);
        assert!(apply_json_patch(&doc, &patch).is_err());
        assert_eq!(doc, json!({"a": 1}));
    }

    proptest! {
        #[test]
        fn pointer_round_trips(tokens in prop::collection::vec("[a-z~/0-9]{0,5}", 0..5)) {
            let text = format_pointer(&tokens);
            prop_assert_eq!(parse_pointer(&text).unwrap(), tokens);
        }

        #[test]
        fn pointer_parser_never_panics(s in "\\PC{0,20}") {
            let _ = parse_pointer(&s);
        }

        #[test]
        fn no_panic_on_random_patches(doc in arb_json(), ops in prop::collection::vec(
            ("(add|remove|replace|move|copy|test|x)", "(/[a-c0-9~/-]{0,2}){0,3}", "(/[a-c0-9-]{0,2}){0,3}", arb_json()),
            0..5,
        )) {
            let patch: Vec<Value> = ops.into_iter()
                .map(|(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}))
                .collect();
            let _ = apply_json_patch(&doc, &Value::Array(patch));
        }

        #[test]
        fn add_then_test_succeeds(doc in arb_json(), key in "[a-z~/]{1,4}", value in arb_json()) {
            let doc = json!({"root": doc});
            let path = format_pointer(&["root2".to_string(), key]);
            let patch = json!([
                {"op": "add", "path": "/root2", "value": {}},
                {"op": "add", "path": path, "value": value},
                {"op": "test", "path": path, "value": value},
            ]);
            let patched = apply_json_patch(&doc, &patch).unwrap();
            prop_assert_eq!(&patched["root"], &doc["root"]);
        }
    }
}
