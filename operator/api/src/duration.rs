//! Istio durations: kept in their string form (`"1.5s"`, `"1h30m"`) so a
//! round trip is lossless, parsed on demand with Go's `time.ParseDuration`
//! syntax, which is what Istio's protobuf-JSON accepts in practice.

use crate::Error;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A duration as written in Istio YAML, e.g. `"5s"`, `"100ms"`, `"1h30m"`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Duration(pub String);

impl Duration {
    /// Parses the string form; see [`parse_duration`].
    pub fn parse(&self) -> Result<std::time::Duration, Error> {
        parse_duration(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(s: &str) -> Self {
        Duration(s.to_owned())
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

/// Parses Istio/Go duration syntax: one or more `<decimal><unit>` terms with
/// units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`; `"0"` alone is zero.
pub fn parse_duration(input: &str) -> Result<std::time::Duration, Error> {
    let s = input.trim();
    if s.is_empty() {
        return Err(Error::EmptyDuration);
    }
    let s = match s.strip_prefix('+') {
        Some(rest) => rest,
        None if s.starts_with('-') => return Err(Error::NegativeDuration),
        None => s,
    };
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let syntax = || Error::DurationSyntax(input.to_owned());
    let overflow = || Error::DurationOverflow(input.to_owned());
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return Err(syntax()),
        };
        total_nanos = total_nanos
            .checked_add(decimal_times(number, unit_nanos).ok_or_else(syntax)?)
            .ok_or_else(overflow)?;
        rest = after_unit;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| overflow())?;
    // Go caps durations at ~292 years; anything beyond is certainly a typo.
    if secs > 290 * 365 * 24 * 3600 {
        return Err(overflow());
    }
    Ok(std::time::Duration::new(
        secs,
        (total_nanos % 1_000_000_000) as u32,
    ))
}

/// `number` (digits with at most one '.') times `unit_nanos`, truncating
/// fractional nanoseconds as Go does.
fn decimal_times(number: &str, unit_nanos: u128) -> Option<u128> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    let int_value: u128 = if int_part.is_empty() {
        0
    } else {
        if int_part.len() > 20 {
            return None;
        }
        int_part.parse().ok()?
    };
    let mut value = int_value.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in frac_part.chars().take(30) {
        scale /= 10;
        value = value.checked_add(u128::from(digit.to_digit(10)?) * scale)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn parses_istio_forms() {
        assert_eq!(parse_duration("1h").unwrap(), Std::from_secs(3600));
        assert_eq!(parse_duration("30m").unwrap(), Std::from_secs(1800));
        assert_eq!(parse_duration("5s").unwrap(), Std::from_secs(5));
        assert_eq!(parse_duration("100ms").unwrap(), Std::from_millis(100));
        assert_eq!(parse_duration("1.5s").unwrap(), Std::from_millis(1500));
        assert_eq!(parse_duration("1h30m").unwrap(), Std::from_secs(5400));
        assert_eq!(parse_duration(".5s").unwrap(), Std::from_millis(500));
        assert_eq!(parse_duration("10us").unwrap(), Std::from_micros(10));
        assert_eq!(parse_duration("0").unwrap(), Std::ZERO);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in ["", "5", "s", "5x", "-5s", "1..5s", "5 s", "1h-30m", "."] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(Error::DurationOverflow(_) | Error::DurationSyntax(_))
        ));
    }
}
