//! A small YAML writer for JSON values, safe for Envoy's YAML 1.1 parser.
//!
//! Generic YAML 1.2 writers leave strings such as `yes`, `on` or `0x10` unquoted;
//! Envoy (YAML 1.1) reads those as booleans or numbers and rejects the config. Here
//! every string is double-quoted (JSON escapes are valid YAML), so a value always
//! round-trips, while the block layout stays readable for golden files.
use serde_json::Value;

/// YAML text of a JSON value.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => write_list(items, 0, &mut out),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) => quote(s),
        // JSON forms of numbers, booleans and null are valid YAML scalars
        other => other.to_string(),
    }
}

/// A YAML double-quoted scalar; characters YAML does not allow raw are escaped.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            c if is_yaml_printable(c) => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Printable and not a line break: YAML also breaks lines at U+2028 and
/// U+2029, so raw they would end a quoted scalar's line.
fn is_yaml_printable(c: char) -> bool {
    matches!(c as u32, 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
        && !matches!(c, '\u{FEFF}' | '\u{2028}' | '\u{2029}')
}

fn key_text(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        // YAML 1.1 reads these as booleans or null, also as keys
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "yes" | "n" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain { key.to_string() } else { quote(key) }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn write_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text(key));
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_map(m, indent + 2, out);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_list(a, indent + 2, out);
            }
            scalar => {
                out.push(' ');
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

fn write_list(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        if is_block(item) {
            // write the item one level deeper, then put the dash on its first line
            let mut nested = String::new();
            match item {
                Value::Object(m) => write_map(m, indent + 2, &mut nested),
                Value::Array(a) => write_list(a, indent + 2, &mut nested),
                _ => {}
            }
            out.push_str(&" ".repeat(indent));
            out.push_str("- ");
            out.push_str(&nested[indent + 2..]);
        } else {
            out.push_str(&" ".repeat(indent));
            out.push_str("- ");
            out.push_str(&scalar_text(item));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn quotes_yaml11_ambiguous_strings() {
        let text = to_yaml(&json!({"value": "yes", "on": "0x10", "n": 3, "b": true}));
        assert!(text.contains("value: \"yes\""), "{text}");
        assert!(text.contains("\"on\": \"0x10\""), "{text}");
        assert!(text.contains("\"n\": 3"), "{text}");
    }

    #[test]
    fn nested_lists_and_maps_round_trip() {
        let v = json!({"a": [{"x": 1, "y": [1, [2, 3], {}]}, [], "s"], "@type": "t", "e": {}});
        let back: Value = serde_yaml::from_str(&to_yaml(&v)).unwrap();
        assert_eq!(back, v);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Found by the property below: the line and paragraph separators.
    #[test]
    fn unicode_line_separators_round_trip() {
        let v = serde_json::json!({"": {"a\u{2028}b": "c\u{2029}d"}});
        let text = to_yaml(&v);
        assert!(
            text.contains("\\u2028") && text.contains("\\u2029"),
            "{text}"
        );
        let back: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    proptest! {
        #[test]
        fn any_json_round_trips_through_yaml(v in arb_json()) {
            let back: Value = serde_yaml::from_str(&to_yaml(&v)).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
