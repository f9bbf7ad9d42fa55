//! Checks of single values shared by the kinds: names, hosts, ports,
//! durations, regexes, CIDRs, principals, labels.

use super::Errors;
use crate::duration::{Duration, parse_duration};
use crate::networking::{Percent, StringMatch};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub(crate) type Check = Result<(), String>;

/// A port number in 1–65535.
pub(crate) fn port(number: u32) -> Check {
    if (1..=65535).contains(&number) {
        Ok(())
    } else {
        Err(format!("port {number} must be between 1 and 65535"))
    }
}

/// A duration in Istio syntax of at least 1ms.
pub(crate) fn duration(value: &Duration) -> Check {
    let parsed = parse_duration(&value.0).map_err(|e| e.to_string())?;
    if parsed < std::time::Duration::from_millis(1) {
        return Err(format!("duration {:?} must be at least 1ms", value.0));
    }
    Ok(())
}

/// A percentage in 0–100.
pub(crate) fn percent(value: &Percent) -> Check {
    if (0.0..=100.0).contains(&value.value) {
        Ok(())
    } else {
        Err(format!(
            "percentage {} must be between 0 and 100",
            value.value
        ))
    }
}

/// A regular expression as Envoy's RE2 accepts it, read the way RE2 reads it.
///
/// The syntax is checked by parsing, not compiling: compiling with Rust's
/// Unicode `\w`/`\d` (ASCII in RE2) made everyday patterns such as
/// `^/u/\w{1,64}$` exceed any sane size limit although RE2 takes them. Then
/// RE2's own rules ([`re2_rules`]). RE2's program size limit (32768 in our
/// bootstraps) is not computed here: a pattern over it is refused by Envoy.
pub(crate) fn regex(pattern: &str) -> Check {
    let invalid = |detail: String| {
        let last = detail.lines().last().unwrap_or("").trim().to_owned();
        format!("invalid regex {pattern:?}: {last}")
    };
    let readable = unquote(pattern);
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(&readable)
        .map_err(|e| invalid(e.to_string()))?;
    regex_syntax::hir::translate::Translator::new()
        .translate(&readable, &ast)
        .map_err(|e| invalid(e.to_string()))?;
    re2_rules(&ast).map_err(|rule| format!("invalid regex {pattern:?}: {rule}"))
}

/// `pattern` with RE2's quoted text, `\Q...\E` (to the end when `\E` is
/// missing), written as escaped literals for Rust's parser, which has no
/// `\Q`. Inside a character class RE2 refuses `\Q`, and so does Rust's
/// parser: classes are copied as they are.
fn unquote(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains("\\Q") {
        return pattern.into();
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    let mut in_class = false;
    // Just past `[` or `[^`, where `]` is a literal member.
    let mut class_start = false;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        let at_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(next) = rest.chars().next() else {
                    out.push(c);
                    break;
                };
                rest = &rest[next.len_utf8()..];
                if next == 'Q' && !in_class {
                    let (quoted, after) = match rest.find("\\E") {
                        Some(end) => (&rest[..end], &rest[end + 2..]),
                        None => (rest, ""),
                    };
                    out.push_str(&regex_syntax::escape(quoted));
                    rest = after;
                } else {
                    out.push(c);
                    out.push(next);
                }
            }
            '[' if !in_class => {
                out.push(c);
                in_class = true;
                class_start = true;
                if let Some(negated) = rest.strip_prefix('^') {
                    out.push('^');
                    rest = negated;
                }
            }
            // A named class such as `[:alpha:]` inside a class.
            '[' if rest.starts_with(':') && rest.contains(":]") => {
                let end = rest.find(":]").map_or(0, |i| i + 2);
                out.push(c);
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            ']' if in_class && !at_start => {
                out.push(c);
                in_class = false;
            }
            _ => out.push(c),
        }
    }
    out.into()
}

/// What RE2 refuses, or reads differently, in a pattern Rust's parser accepts:
/// - counted repetitions beyond 1000, nested ones multiplied: each `{n,m}`
///   divides a budget of 1000 by its bound (`m`, or `n` when open) and the
///   pattern is refused where it reaches 0 (`(a{10}){100}` passes,
///   `(a{10}){101}` does not);
/// - the flags `x`, `u` and `R` (RE2 knows `i`, `m`, `s`, `U`);
/// - class set operations (`&&`, `--`, `~~`), nested classes and the word
///   boundaries `\<`, `\>`, `\b{start}`..., which RE2 takes as literal text:
///   the route would silently match something else.
fn re2_rules(ast: &regex_syntax::ast::Ast) -> Result<(), String> {
    use regex_syntax::ast::{
        AssertionKind, Ast, ClassSet, ClassSetItem, Flag, Flags, FlagsItemKind, GroupKind,
        RepetitionKind, RepetitionRange,
    };
    fn flags(f: &Flags) -> Result<(), String> {
        for item in &f.items {
            let name = match item.kind {
                FlagsItemKind::Flag(Flag::IgnoreWhitespace) => 'x',
                FlagsItemKind::Flag(Flag::Unicode) => 'u',
                FlagsItemKind::Flag(Flag::CRLF) => 'R',
                _ => continue,
            };
            return Err(format!("RE2 has no flag {name:?} (it knows i, m, s and U)"));
        }
        Ok(())
    }
    fn class(set: &ClassSet) -> Result<(), String> {
        let items = match set {
            ClassSet::BinaryOp(_) => {
                return Err("RE2 has no class set operations (&&, --, ~~)".to_string());
            }
            ClassSet::Item(ClassSetItem::Union(union)) => &union.items[..],
            ClassSet::Item(item) => std::slice::from_ref(item),
        };
        if items
            .iter()
            .any(|item| matches!(item, ClassSetItem::Bracketed(_)))
        {
            return Err("RE2 has no nested classes".to_string());
        }
        Ok(())
    }
    fn walk(ast: &Ast, budget: u32) -> Result<u32, String> {
        match ast {
            Ast::Repetition(rep) => {
                let bound = match &rep.op.kind {
                    RepetitionKind::Range(
                        RepetitionRange::Exactly(n) | RepetitionRange::AtLeast(n),
                    ) => *n,
                    RepetitionKind::Range(RepetitionRange::Bounded(_, m)) => *m,
                    _ => 0,
                };
                walk(&rep.ast, budget.checked_div(bound).unwrap_or(budget))
            }
            Ast::Group(group) => {
                if let GroupKind::NonCapturing(f) = &group.kind {
                    flags(f)?;
                }
                walk(&group.ast, budget)
            }
            Ast::Flags(set) => flags(&set.flags).map(|()| budget),
            Ast::ClassBracketed(c) => class(&c.kind).map(|()| budget),
            Ast::Assertion(assertion)
                if !matches!(
                    assertion.kind,
                    AssertionKind::StartLine
                        | AssertionKind::EndLine
                        | AssertionKind::StartText
                        | AssertionKind::EndText
                        | AssertionKind::WordBoundary
                        | AssertionKind::NotWordBoundary
                ) =>
            {
                Err("RE2 has no \\<, \\> or \\b{...} word boundaries".to_string())
            }
            Ast::Alternation(alt) => fold(&alt.asts, budget),
            Ast::Concat(concat) => fold(&concat.asts, budget),
            _ => Ok(budget),
        }
    }
    fn fold(asts: &[Ast], budget: u32) -> Result<u32, String> {
        asts.iter()
            .try_fold(budget, |least, a| walk(a, budget).map(|b| least.min(b)))
    }
    if walk(ast, 1000)? == 0 {
        return Err("RE2 allows at most 1000 repetitions, nested counts multiplied".into());
    }
    Ok(())
}

/// A string matcher: regexes must compile, exact/prefix may be empty only for prefix.
pub(crate) fn string_match(errors: &mut Errors, path: &str, value: &StringMatch) {
    match value {
        StringMatch::Regex(r) => errors.check(format!("{path}.regex"), regex(r)),
        StringMatch::Exact(_) | StringMatch::Prefix(_) | StringMatch::Any => {}
    }
}

/// A DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
pub(crate) fn dns_label(value: &str) -> Check {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
        ))
    }
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn dns_subdomain(value: &str) -> Check {
    if value.len() > 253 || value.split('.').any(|l| dns_label(l).is_err()) {
        return Err(format!("{value:?} is not a valid DNS-1123 subdomain"));
    }
    Ok(())
}

/// A host as Istio allows it: a FQDN or short name, optionally with a
/// leading `*` wildcard (`*`, `*.example.com`). IP addresses are not hosts.
pub(crate) fn host(value: &str) -> Check {
    if value.is_empty() {
        return Err("host must not be empty".into());
    }
    if value == "*" {
        return Ok(());
    }
    let rest = value.strip_prefix("*.").unwrap_or(value);
    if rest.contains('*') {
        return Err(format!(
            "host {value:?}: a wildcard is only allowed as the leftmost label (\"*.example.com\")"
        ));
    }
    if rest.parse::<IpAddr>().is_ok() {
        return Err(format!("host {value:?}: an IP address is not a host name"));
    }
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if rest.len() > 253 || !rest.split('.').all(label_ok) {
        return Err(format!("host {value:?} is not a valid host name"));
    }
    Ok(())
}

/// A host without wildcard (a destination).
pub(crate) fn exact_host(value: &str) -> Check {
    if value.contains('*') {
        return Err(format!("host {value:?}: wildcards are not allowed here"));
    }
    host(value)
}

/// `namespace/host` as gateways and sidecars write hosts (`./x`, `*/x`, `~/x`
/// in sidecars); a bare host means `*/host` for gateways.
pub(crate) fn namespaced_host(value: &str, require_namespace: bool) -> Check {
    match value.split_once('/') {
        Some((ns, h)) => {
            if !matches!(ns, "." | "*" | "~") {
                dns_label(ns).map_err(|e| format!("namespace of {value:?}: {e}"))?;
            }
            host(h)
        }
        None if require_namespace => Err(format!(
            "host {value:?} must be written as namespace/host (e.g. \"./*\" or \"istio-system/*\")"
        )),
        None => host(value),
    }
}

/// An `exportTo` entry: `.`, `*` or a namespace.
pub(crate) fn export_to(values: &[String], errors: &mut Errors) {
    for (i, v) in values.iter().enumerate() {
        if v != "." && v != "*" {
            errors.check(format!("spec.exportTo[{i}]"), dns_label(v));
        }
    }
}

/// An IP address or CIDR block.
pub(crate) fn cidr(value: &str) -> Check {
    let (address, prefix) = match value.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (value, None),
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{value:?} is not an IP address or CIDR block"))?;
    if let Some(prefix) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(p) if p <= max => {}
            _ => {
                return Err(format!(
                    "{value:?}: prefix length must be between 0 and {max}"
                ));
            }
        }
    }
    Ok(())
}

/// A Kubernetes label key: `[prefix/]name`.
pub(crate) fn label_key(key: &str) -> Check {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns_subdomain(prefix).map_err(|_| format!("label key {key:?}: invalid prefix"))?;
    }
    if !label_name_ok(name) || name.is_empty() {
        return Err(format!("label key {key:?} is not a valid label name"));
    }
    Ok(())
}

/// A Kubernetes label value (may be empty).
pub(crate) fn label_value(value: &str) -> Check {
    if value.is_empty() || label_name_ok(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is not valid (alphanumerics, '-', '_', '.', at most 63 characters)"
        ))
    }
}

fn label_name_ok(name: &str) -> bool {
    name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A label map (selector or workload labels).
pub(crate) fn labels(errors: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        errors.check(format!("{path}[{k}]"), label_key(k));
        errors.check(format!("{path}[{k}]"), label_value(v));
    }
}

/// Wildcards in authorization values: only `*`, `prefix*` or `*suffix`.
pub(crate) fn wildcard_placement(value: &str) -> Check {
    if value.is_empty() {
        return Err("value must not be empty".into());
    }
    let inner = value
        .strip_prefix('*')
        .or_else(|| value.strip_suffix('*'))
        .unwrap_or(value);
    if inner.contains('*') {
        return Err(format!(
            "{value:?}: '*' is only allowed alone, as a prefix or as a suffix"
        ));
    }
    Ok(())
}

/// A peer principal: `<trust-domain>/ns/<namespace>/sa/<service-account>`,
/// or a `*` form (`*`, `prefix*`, `*suffix`).
pub(crate) fn principal(value: &str) -> Check {
    wildcard_placement(value)?;
    if value.starts_with("spiffe://") {
        return Err(format!(
            "principal {value:?}: write it without the \"spiffe://\" scheme"
        ));
    }
    if value.contains('*') {
        return Ok(());
    }
    let parts: Vec<&str> = value.split('/').collect();
    let shape_ok = parts.len() == 5
        && parts[1] == "ns"
        && parts[3] == "sa"
        && !parts[0].is_empty()
        && dns_label(parts[2]).is_ok()
        && !parts[4].is_empty();
    if shape_ok {
        Ok(())
    } else {
        Err(format!(
            "principal {value:?} must have the form <trust-domain>/ns/<namespace>/sa/<service-account>"
        ))
    }
}

/// An HTTP header name.
pub(crate) fn header_name(value: &str) -> Check {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid header name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case was checked against Envoy's RE2 (`envoy --mode validate`).
    #[test]
    fn regexes_as_re2_reads_them() {
        for ok in [
            "^/api/v[0-9]+/users/[a-z0-9-]{1,64}$",
            "^/u/\\w{1,64}$",
            "^/orders/\\d{1,20}/items/[\\w.-]{1,253}$",
            "(a{10}){100}",
            "a{1000}",
            "a{2,}b*",
            "(x|y{0}){1000}",
            "^/(?<id>[0-9]+)(?P<rest>/.*)?$",
            "^/[[:alpha:]]+\\pL*$",
            "(?i)cart(?s:.)(?U)a+\\z",
            // Quoted text, with and without its \E.
            "^/\\Qa.b\\E$",
            "^/\\Qa.b",
            "^/\\Qa\\E\\Qb\\E+$",
            "^/\\Q[x\\E]",
            "^/\\Qa\\\\E$",
            "\\Q\\E",
            "^/[[:alpha:]\\]]\\Q(\\E$",
        ] {
            assert!(regex(ok).is_ok(), "{ok}: {:?}", regex(ok));
        }
        // Refused by Envoy.
        for bad in [
            "(a{10}){101}",
            "a{1001}",
            "(x{1,300}y{1,300}){1,20}",
            "((a){2,}){501}",
        ] {
            let e = regex(bad).unwrap_err();
            assert!(e.contains("at most 1000 repetitions"), "{bad}: {e}");
        }
        for (bad, why) in [("(?x) a b", "flag 'x'"), ("(?u:cart)", "flag 'u'")] {
            let e = regex(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // Taken by Envoy, as literal text: the route would match something else.
        for bad in [
            "^/[a-z&&[^aeiou]]+$",
            "^/[a[b]]$",
            "^/\\<cart\\>",
            "^/\\b{start}cart",
        ] {
            let e = regex(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid regex {bad:?}: RE2 has no")),
                "{bad}: {e}"
            );
        }
        // RE2 has no \Q inside a class, and no \E without \Q.
        for bad in ["^/[\\Q]", "^/a\\E"] {
            let e = regex(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid regex {bad:?}: ")),
                "{bad}: {e}"
            );
        }
        assert!(regex("a(").unwrap_err().starts_with("invalid regex \"a(\""));
    }

    proptest::proptest! {
        /// Any pattern gets an answer, and a refusal names the pattern.
        #[test]
        fn any_pattern_is_judged_without_panic(p in "[a-z0-9(){},?*+|\\[\\]^$.:<>&~\\-\\\\PLwbdsxiuURQE=!]{0,24}") {
            if let Err(e) = regex(&p) {
                proptest::prop_assert!(e.starts_with(&format!("invalid regex {p:?}: ")), "{e}");
            }
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "*",
            "*.example.com",
            "reviews",
            "reviews.shop.svc.cluster.local",
            "a-b.c",
        ] {
            assert!(host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "foo.*.com",
            "*foo.com",
            "1.2.3.4",
            "-a.com",
            "a..b",
            "a_b.com",
        ] {
            assert!(host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn principals() {
        assert!(principal("cluster.local/ns/shop/sa/web").is_ok());
        assert!(principal("*").is_ok());
        assert!(principal("cluster.local/ns/shop/*").is_ok());
        assert!(principal("*/sa/web").is_ok());
        assert!(principal("cluster.local/ns/*/sa/web").is_err());
        assert!(principal("spiffe://cluster.local/ns/a/sa/b").is_err());
        assert!(principal("web").is_err());
    }

    #[test]
    fn cidrs() {
        assert!(cidr("10.0.0.0/8").is_ok());
        assert!(cidr("fd00::/64").is_ok());
        assert!(cidr("1.2.3.4").is_ok());
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("10.0.0/8").is_err());
    }

    #[test]
    fn label_keys() {
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("app").is_ok());
        assert!(label_key("-app").is_err());
        assert!(label_key("a/b/c").is_err());
    }
}
