//! Istio's string-value semantics as Envoy matchers.
//!
//! Istio values accept one wildcard: `*` alone (any non-empty value), `prefix*`,
//! or `*suffix`; anything else is an exact match.
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    SubjectAltNameMatcher, subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};

/// The shape of an Istio string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstioValue<'a> {
    Any,
    Prefix(&'a str),
    Suffix(&'a str),
    Exact(&'a str),
}

pub fn classify(value: &str) -> IstioValue<'_> {
    if value == "*" {
        IstioValue::Any
    } else if let Some(prefix) = value.strip_suffix('*') {
        IstioValue::Prefix(prefix)
    } else if let Some(suffix) = value.strip_prefix('*') {
        IstioValue::Suffix(suffix)
    } else {
        IstioValue::Exact(value)
    }
}

/// `value` as a StringMatcher; `*` means "present and non-empty".
pub fn string_matcher(value: &str, ignore_case: bool) -> StringMatcher {
    string_matcher_with_prefix("", value, ignore_case)
}

/// Like [`string_matcher`], for values compared after a fixed prefix (e.g. `spiffe://`).
pub fn string_matcher_with_prefix(fixed: &str, value: &str, ignore_case: bool) -> StringMatcher {
    let pattern = match classify(value) {
        IstioValue::Any if fixed.is_empty() => MatchPattern::SafeRegex(regex(".+")),
        IstioValue::Any => MatchPattern::Prefix(fixed.to_string()),
        IstioValue::Prefix(p) => MatchPattern::Prefix(format!("{fixed}{p}")),
        IstioValue::Suffix(s) if fixed.is_empty() => MatchPattern::Suffix(s.to_string()),
        IstioValue::Suffix(s) => MatchPattern::SafeRegex(regex(&format!(
            "^{}.*{}$",
            regex_escape(fixed),
            regex_escape(s)
        ))),
        IstioValue::Exact(e) => MatchPattern::Exact(format!("{fixed}{e}")),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    }
}

pub fn exact(value: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(value.to_string())),
        ignore_case: false,
    }
}

/// A certificate SAN of `san_type` equal to `name`.
pub fn san(san_type: SanType, name: &str) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: san_type as i32,
        matcher: Some(exact(name)),
        oid: String::new(),
    }
}

/// A certificate SAN of any type (DNS, URI, email, IP) equal to `name`: how
/// Istio reads the `subjectAltNames` a user lists.
pub fn san_any_type(name: &str) -> [SubjectAltNameMatcher; 4] {
    [
        SanType::Dns,
        SanType::Uri,
        SanType::Email,
        SanType::IpAddress,
    ]
    .map(|san_type| san(san_type, name))
}

pub fn regex_matcher(re: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::SafeRegex(regex(re))),
        ignore_case: false,
    }
}

/// The Envoy runtime key that bounds the RE2 program size of a regex: over
/// it, Envoy refuses the whole resource. Its default, 100, is exceeded by
/// everyday patterns (`^/users/[a-z0-9-]{1,64}$` compiles to 268), so every
/// bootstrap Trellis writes raises it to [`RE2_MAX_PROGRAM_SIZE`], as Istio's
/// does: a regex Istio's proxies accept is accepted here too.
pub const RE2_MAX_PROGRAM_SIZE_KEY: &str = "re2.max_program_size.error_level";
pub const RE2_MAX_PROGRAM_SIZE: u32 = 32_768;

pub fn regex(re: &str) -> RegexMatcher {
    RegexMatcher {
        regex: re.to_string(),
        ..Default::default()
    }
}

/// Escapes RE2 metacharacters so text matches literally.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(m: StringMatcher) -> MatchPattern {
        m.match_pattern.unwrap()
    }

    #[test]
    fn istio_wildcards_map_to_prefix_suffix_presence() {
        assert_eq!(
            pattern(string_matcher("/api*", false)),
            MatchPattern::Prefix("/api".into())
        );
        assert_eq!(
            pattern(string_matcher("*.svc", false)),
            MatchPattern::Suffix(".svc".into())
        );
        assert_eq!(
            pattern(string_matcher("GET", false)),
            MatchPattern::Exact("GET".into())
        );
        assert_eq!(
            pattern(string_matcher("*", false)),
            MatchPattern::SafeRegex(regex(".+"))
        );
    }

    #[test]
    fn fixed_prefix_applies_to_every_form() {
        let f = "spiffe://";
        assert_eq!(
            pattern(string_matcher_with_prefix(f, "td/ns/a/sa/b", false)),
            MatchPattern::Exact("spiffe://td/ns/a/sa/b".into())
        );
        assert_eq!(
            pattern(string_matcher_with_prefix(f, "*", false)),
            MatchPattern::Prefix("spiffe://".into())
        );
        assert_eq!(
            pattern(string_matcher_with_prefix(f, "*/sa/b", false)),
            MatchPattern::SafeRegex(regex("^spiffe://.*/sa/b$"))
        );
    }

    #[test]
    fn escapes_regex_metacharacters() {
        assert_eq!(regex_escape("a.b*c(d)"), r"a\.b\*c\(d\)");
    }
}
