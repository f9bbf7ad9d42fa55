//! The JSONPath subset of `additionalPrinterColumns[].jsonPath`.
//!
//! ```text
//! pub fn JsonPath::parse(text: &str) -> Result<JsonPath, ApiError>   // `.a.b`, `.a[0].b`, `.a[*].b`,
//!                                                                   // `.a['x.y']`, `.a[?(@.type=="Ready")].status`
//! pub fn JsonPath::find<'a>(&self, object: &'a Value) -> Vec<&'a Value>
//! ```
//! Surrounding `{...}` (kubectl's template form) is accepted.

// ApiError is the crate's one error type and is returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter {
        path: Vec<String>,
        equal: bool,
        literal: Value,
    },
}

/// A parsed JSONPath expression.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

fn error(text: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("invalid JSONPath \"{text}\": {why}"))
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let trimmed = text.trim();
        let body = match trimmed.strip_prefix('{') {
            Some(inner) => inner
                .strip_suffix('}')
                .ok_or_else(|| error(text, "unterminated '{'"))?,
            None => trimmed,
        };
        let body = body.strip_prefix('$').unwrap_or(body);
        let chars: Vec<char> = body.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
                        end += 1;
                    }
                    let name: String = chars[start..end].iter().collect();
                    if name.is_empty() {
                        return Err(error(text, "empty field name"));
                    }
                    steps.push(if name == "*" {
                        Step::Wildcard
                    } else {
                        Step::Field(name)
                    });
                    i = end;
                }
                '[' => {
                    let close =
                        find_close(&chars, i).ok_or_else(|| error(text, "unterminated '['"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(parse_bracket(text, inner.trim())?);
                    i = close + 1;
                }
                c => return Err(error(text, &format!("unexpected character '{c}'"))),
            }
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path selects, in document order.
    pub fn find<'a>(&self, object: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![object];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in current {
                match step {
                    Step::Field(name) => next.extend(value.get(name)),
                    Step::Index(i) => {
                        if let Some(items) = value.as_array() {
                            let len = items.len() as i64;
                            let at = if *i < 0 { len + i } else { *i };
                            if (0..len).contains(&at) {
                                next.push(&items[at as usize]);
                            }
                        }
                    }
                    Step::Wildcard => match value {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => {}
                    },
                    Step::Filter {
                        path,
                        equal,
                        literal,
                    } => {
                        if let Some(items) = value.as_array() {
                            next.extend(items.iter().filter(|item| {
                                let actual = path.iter().try_fold(*item, |at, key| at.get(key));
                                actual.is_some_and(|a| (a == literal) == *equal)
                            }));
                        }
                    }
                }
            }
            current = next;
        }
        current
    }
}

/// The index of the `]` closing the `[` at `open`, skipping quoted text.
fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open + 1) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ']' => return Some(i),
            None => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return Some(inner);
        }
    }
    None
}

fn parse_bracket(text: &str, inner: &str) -> Result<Step, ApiError> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Ok(Step::Index(i));
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name.to_string()));
    }
    let filter = inner
        .strip_prefix("?(")
        .and_then(|f| f.strip_suffix(')'))
        .ok_or_else(|| error(text, &format!("unsupported expression '[{inner}]'")))?;
    let (lhs, rhs, equal) = if let Some((l, r)) = filter.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = filter.split_once("!=") {
        (l, r, false)
    } else {
        return Err(error(text, "filters must compare with == or !="));
    };
    let path_text = lhs
        .trim()
        .strip_prefix("@.")
        .ok_or_else(|| error(text, "filters must start with '@.'"))?;
    let path: Vec<String> = path_text.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(error(text, "empty field name in filter"));
    }
    let rhs = rhs.trim();
    let literal = match unquote(rhs) {
        Some(s) => Value::String(s.to_string()),
        None => serde_json::from_str(rhs)
            .map_err(|_| error(text, &format!("cannot compare with '{rhs}'")))?,
    };
    Ok(Step::Filter {
        path,
        equal,
        literal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::merge::tests::arb_json;
    use proptest::prelude::*;
    use serde_json::json;

    fn find(path: &str, object: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap()
            .find(object)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn printer_column_paths() {
        let obj = json!({
            "spec": {"hosts": ["a", "b"], "routes": [{"dest": {"host": "x"}}]},
            "metadata": {"annotations": {"example.com/v": "1"}},
            "status": {"conditions": [
                {"type": "Synced", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "NoBackends"}
            ]}
        });
        assert_eq!(find(".spec.hosts", &obj), vec![json!(["a", "b"])]);
        assert_eq!(find(".spec.hosts[1]", &obj), vec![json!("b")]);
        assert_eq!(find(".spec.hosts[-1]", &obj), vec![json!("b")]);
        assert_eq!(find("{.spec.routes[0].dest.host}", &obj), vec![json!("x")]);
        assert_eq!(find("$.spec.hosts[*]", &obj), vec![json!("a"), json!("b")]);
        assert_eq!(
            find(".metadata.annotations['example.com/v']", &obj),
            vec![json!("1")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type==\"Ready\")].status", &obj),
            vec![json!("False")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type == 'Ready')].reason", &obj),
            vec![json!("NoBackends")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type!=\"Ready\")].type", &obj),
            vec![json!("Synced")]
        );
        assert!(find(".spec.missing.deeper", &obj).is_empty());
        assert!(find(".spec.hosts[5]", &obj).is_empty());
    }

    #[test]
    fn bad_paths_are_rejected() {
        for bad in [
            "spec",
            ".a..b",
            ".a[0",
            ".a[?(@.x>1)]",
            ".a[?(x==1)]",
            "{.a",
            ".a[foo]",
        ] {
            let err = JsonPath::parse(bad).expect_err(bad);
            assert_eq!(err.code, 400);
            assert!(err.message.contains(bad), "{}", err.message);
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,30}") {
            let _ = JsonPath::parse(&s);
        }

        #[test]
        fn parser_never_panics_on_path_alphabet(s in "[.a-c0-9\\[\\]?@=!'\"*(){}$ -]{0,30}", doc in arb_json()) {
            if let Ok(path) = JsonPath::parse(&s) {
                let _ = path.find(&doc);
            }
        }

        #[test]
        fn dotted_paths_find_what_was_put_there(keys in prop::collection::vec("[a-z]{1,5}", 1..5), leaf in arb_json()) {
            let mut doc = leaf.clone();
            for key in keys.iter().rev() {
                doc = json!({ key.clone(): doc });
            }
            let path = format!(".{}", keys.join("."));
            prop_assert_eq!(JsonPath::parse(&path).unwrap().find(&doc), vec![&leaf]);
        }
    }
}
