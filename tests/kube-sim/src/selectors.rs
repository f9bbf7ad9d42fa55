//! Label and field selectors as the API server parses them from `?labelSelector=` and
//! `?fieldSelector=`.
//!
//! ```text
//! LabelSelector::parse(s: &str) -> Result<LabelSelector, ApiError>   // 400 BadRequest on bad input
//! LabelSelector::matches(&self, object: &Value) -> bool               // reads metadata.labels
//! LabelSelector::matches_labels(&self, labels: &BTreeMap<String, String>) -> bool
//! FieldSelector::parse(s: &str) -> Result<FieldSelector, ApiError>    // metadata.name / metadata.namespace
//! FieldSelector::parse_with(s, extra_fields: &[&str])                 // plus kind-specific fields, e.g. "spec.nodeName"
//! FieldSelector::matches(&self, object: &Value) -> bool
//! ```
//!
//! Semantics follow k8s.io/apimachinery `labels.Parse` / `fields.ParseSelector`: `!=` and `notin`
//! also match objects without the label; an empty selector matches everything.

// ApiError is the crate's one error type and is returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::ApiError;

/// One operator of a label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

/// One comma-separated term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub op: LabelOp,
}

/// A parsed label selector: all requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<LabelRequirement>,
}

impl LabelRequirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            LabelOp::Equals(v) => value == Some(v),
            LabelOp::NotEquals(v) => value != Some(v),
            LabelOp::In(vs) => value.is_some_and(|x| vs.contains(x)),
            LabelOp::NotIn(vs) => !value.is_some_and(|x| vs.contains(x)),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::GreaterThan(n) => value
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelOp::LessThan(n) => value
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        }
    }
}

/// The `metadata.labels` of an object as a map (non-string values are ignored).
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl LabelSelector {
    /// Parses the query-string form, e.g. `app=web,tier in (a,b),!legacy`.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut lexer = Lexer::new(input);
        let mut requirements = Vec::new();
        lexer.skip_ws();
        if lexer.at_end() {
            return Ok(LabelSelector::default());
        }
        loop {
            requirements.push(parse_requirement(&mut lexer)?);
            lexer.skip_ws();
            if lexer.at_end() {
                break;
            }
            if !lexer.eat(",") {
                return Err(parse_error(
                    input,
                    &format!("found '{}', expected: ',' or 'end of string'", lexer.word()),
                ));
            }
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.matches_labels(&labels_of(object))
    }

    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

fn parse_error(input: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: {why} (labelSelector \"{input}\")"
    ))
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Self {
        Lexer { input, pos: 0 }
    }
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }
    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }
    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }
    /// A run of characters that are not whitespace, operators or separators.
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || "=!,()<>".contains(c))
            .unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }
    /// Eats a keyword such as `in` only when a non-identifier character follows.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if let Some(after) = self.rest().strip_prefix(keyword) {
            let after = after.chars().next();
            if after.is_none_or(|c| c.is_whitespace() || c == '(') {
                self.pos += keyword.len();
                return true;
            }
        }
        false
    }
}

fn parse_requirement(lx: &mut Lexer) -> Result<LabelRequirement, ApiError> {
    let input = lx.input;
    lx.skip_ws();
    if lx.eat("!") {
        lx.skip_ws();
        let key = lx.word();
        validate_label_key(input, key)?;
        return Ok(LabelRequirement {
            key: key.to_string(),
            op: LabelOp::DoesNotExist,
        });
    }
    let key = lx.word();
    validate_label_key(input, key)?;
    lx.skip_ws();
    let key = key.to_string();
    if lx.at_end() || lx.rest().starts_with(',') {
        return Ok(LabelRequirement {
            key,
            op: LabelOp::Exists,
        });
    }
    let op = if lx.eat("==") || lx.eat("=") {
        LabelOp::Equals(single_value(lx)?)
    } else if lx.eat("!=") {
        LabelOp::NotEquals(single_value(lx)?)
    } else if lx.eat(">") {
        LabelOp::GreaterThan(integer_value(lx)?)
    } else if lx.eat("<") {
        LabelOp::LessThan(integer_value(lx)?)
    } else if lx.eat_keyword("notin") {
        LabelOp::NotIn(value_set(lx)?)
    } else if lx.eat_keyword("in") {
        LabelOp::In(value_set(lx)?)
    } else {
        return Err(parse_error(
            input,
            &format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                lx.word()
            ),
        ));
    };
    Ok(LabelRequirement { key, op })
}

fn single_value(lx: &mut Lexer) -> Result<String, ApiError> {
    lx.skip_ws();
    let value = lx.word();
    validate_label_value(lx.input, value)?;
    Ok(value.to_string())
}

fn integer_value(lx: &mut Lexer) -> Result<i64, ApiError> {
    lx.skip_ws();
    let value = lx.word();
    value.parse::<i64>().map_err(|_| {
        parse_error(
            lx.input,
            &format!("for 'Gt', 'Lt' operators, the value must be an integer, got \"{value}\""),
        )
    })
}

fn value_set(lx: &mut Lexer) -> Result<Vec<String>, ApiError> {
    lx.skip_ws();
    if !lx.eat("(") {
        return Err(parse_error(
            lx.input,
            &format!("found '{}', expected: '('", lx.word()),
        ));
    }
    let mut values = Vec::new();
    loop {
        lx.skip_ws();
        if lx.eat(")") {
            break;
        }
        let value = lx.word();
        validate_label_value(lx.input, value)?;
        values.push(value.to_string());
        lx.skip_ws();
        if lx.eat(")") {
            break;
        }
        if !lx.eat(",") {
            return Err(parse_error(
                lx.input,
                &format!("found '{}', expected: ',' or ')'", lx.word()),
            ));
        }
    }
    Ok(values)
}

/// A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn validate_label_key(input: &str, key: &str) -> Result<(), ApiError> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    if key.is_empty() || !prefix_ok || !is_qualified_name_part(name) {
        return Err(parse_error(
            input,
            &format!(
                "invalid label key \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            ),
        ));
    }
    Ok(())
}

fn is_qualified_name_part(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn validate_label_value(input: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(parse_error(
            input,
            &format!(
                "invalid label value: \"{value}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            ),
        ))
    }
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub equal: bool,
}

/// A parsed field selector: all requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Fields every resource supports in a field selector.
pub const GENERIC_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y`; other fields are rejected.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        Self::parse_with(input, &[])
    }

    /// As `parse`, also accepting the kind-specific `extra_fields` (dotted paths into the object).
    pub fn parse_with(input: &str, extra_fields: &[&str]) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let (field, value, equal) = split_term(&term).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                ))
            })?;
            let field = field.trim().to_string();
            if !GENERIC_FIELDS.contains(&field.as_str()) && !extra_fields.contains(&field.as_str())
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            requirements.push(FieldRequirement {
                field,
                value: unescape(value),
                equal,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(object, &r.field);
            (actual == r.value) == r.equal
        })
    }
}

/// The string form of a dotted field; absent fields read as "" as in the API server's field sets.
fn field_value(object: &Value, field: &str) -> String {
    let mut at = object;
    for part in field.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return String::new(),
        }
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Splits on `sep` not preceded by a backslash (escapes are kept for `unescape`).
fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            if let Some(n) = chars.next() {
                current.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

/// Finds the first unescaped `!=`, `==` or `=` and returns (field, raw value, is-equality).
fn split_term(term: &str) -> Option<(&str, &str, bool)> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], &term[i + 2..], false));
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], &term[i + 2..], true));
            }
            b'=' => return Some((&term[..i], &term[i + 1..], true)),
            _ => i += 1,
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(name: &str, ns: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": ns, "labels": labels}})
    }

    #[test]
    fn equality_and_inequality() {
        let o = obj("a", "default", json!({"app": "web", "tier": "fe"}));
        assert!(LabelSelector::parse("app=web").unwrap().matches(&o));
        assert!(LabelSelector::parse("app==web").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app=db").unwrap().matches(&o));
        assert!(LabelSelector::parse("app!=db").unwrap().matches(&o));
        assert!(
            LabelSelector::parse("missing!=x").unwrap().matches(&o),
            "!= matches when the label is absent"
        );
        assert!(
            LabelSelector::parse("app=web, tier=fe")
                .unwrap()
                .matches(&o)
        );
        assert!(!LabelSelector::parse("app=web,tier=be").unwrap().matches(&o));
    }

    #[test]
    fn set_based_and_existence() {
        let o = obj("a", "default", json!({"app": "web", "v": "3"}));
        let s = LabelSelector::parse("app in (web, db),!legacy,v").unwrap();
        assert_eq!(s.requirements.len(), 3);
        assert!(s.matches(&o));
        assert!(!LabelSelector::parse("app notin (web)").unwrap().matches(&o));
        assert!(LabelSelector::parse("x notin (web)").unwrap().matches(&o));
        assert!(!LabelSelector::parse("x in (web)").unwrap().matches(&o));
        assert!(!LabelSelector::parse("!app").unwrap().matches(&o));
        assert!(LabelSelector::parse("v>2,v<4").unwrap().matches(&o));
        assert!(!LabelSelector::parse("v>3").unwrap().matches(&o));
        assert!(LabelSelector::parse("example.com/key in ()").is_ok());
        assert!(LabelSelector::parse("").unwrap().matches(&o));
        assert!(
            LabelSelector::parse("app=").unwrap().requirements[0].op == LabelOp::Equals("".into())
        );
    }

    #[test]
    fn keys_may_have_dns_prefix_and_keyword_like_names() {
        let o = obj(
            "a",
            "x",
            json!({"app.kubernetes.io/name": "web", "index": "1"}),
        );
        assert!(
            LabelSelector::parse("app.kubernetes.io/name=web")
                .unwrap()
                .matches(&o)
        );
        // `index` starts with `in` but is a key, not the operator.
        assert!(LabelSelector::parse("index").unwrap().matches(&o));
        assert!(LabelSelector::parse("index in (1)").unwrap().matches(&o));
    }

    #[test]
    fn bad_label_selectors_are_bad_requests() {
        for bad in [
            "app=web=x",
            "app in web",
            "app in (a b)",
            "=x",
            "-app=x",
            "app=-x-",
            "app web",
            "a,,b",
            "app>x",
            "Upper.Case/x=y",
        ] {
            let err = LabelSelector::parse(bad).expect_err(bad);
            assert_eq!(err.code, 400, "{bad}");
            assert!(
                err.message.contains("unable to parse requirement"),
                "{bad}: {}",
                err.message
            );
        }
    }

    #[test]
    fn field_selectors() {
        let o = obj("web-1", "prod", json!({}));
        assert!(
            FieldSelector::parse("metadata.name=web-1")
                .unwrap()
                .matches(&o)
        );
        assert!(
            FieldSelector::parse("metadata.name==web-1,metadata.namespace=prod")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=prod")
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("").unwrap().matches(&o));
        let err = FieldSelector::parse("spec.nodeName=n1").unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(err.message, "field label not supported: spec.nodeName");
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        assert!(
            FieldSelector::parse_with("spec.nodeName=n1", &["spec.nodeName"])
                .unwrap()
                .matches(&pod)
        );
        assert!(FieldSelector::parse("metadata.name").is_err());
    }

    #[test]
    fn field_selector_escapes() {
        let o = json!({"metadata": {"name": "a,b=c"}});
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap();
        assert_eq!(s.requirements.len(), 1);
        assert!(s.matches(&o));
    }

    proptest! {
        #[test]
        fn label_parser_never_panics(s in "\\PC{0,40}") {
            let _ = LabelSelector::parse(&s);
        }

        #[test]
        fn label_parser_never_panics_on_selector_alphabet(s in "[a-z!=(), /.<>-]{0,30}") {
            if let Ok(sel) = LabelSelector::parse(&s) {
                let _ = sel.matches(&json!({"metadata": {"labels": {"a": "b"}}}));
            }
        }

        #[test]
        fn field_parser_never_panics(s in "\\PC{0,40}") {
            let _ = FieldSelector::parse(&s);
        }

        #[test]
        fn equality_selector_matches_exactly_its_label(
            key in "[a-z][a-z0-9]{0,8}", value in "[a-z0-9]{1,8}", other in "[a-z0-9]{1,8}"
        ) {
            let sel = LabelSelector::parse(&format!("{key}={value}")).unwrap();
            let mut labels = BTreeMap::new();
            labels.insert(key.clone(), other.clone());
            prop_assert_eq!(sel.matches_labels(&labels), value == other);
            let neg = LabelSelector::parse(&format!("{key} != {value}")).unwrap();
            prop_assert_eq!(neg.matches_labels(&labels), value != other);
        }

        #[test]
        fn field_values_round_trip_through_escaping(value in "[a-z,=\\\\!]{0,12}") {
            let escaped: String = value.chars().flat_map(|c| {
                if ",=\\".contains(c) { vec!['\\', c] } else { vec![c] }
            }).collect();
            let sel = FieldSelector::parse(&format!("metadata.name={escaped}")).unwrap();
            prop_assert_eq!(sel.requirements.len(), 1);
            let object = json!({"metadata": {"name": value}});
            prop_assert!(sel.matches(&object));
        }
    }
}
