//! `apps.tsv`: which demo app runs for which workload, and how.
//!
//! One line per workload, tab-separated: workload name, its address, the app
//! port on 127.0.0.1, its version, then `trellis demo-app` flags (`--call URL`,
//! `--failure-rate F`, `--failure-status N`, `--latency-ms N`, `--seed N`).
//! Blank lines and lines starting with `#` are ignored.
use crate::demo_app::{DemoAppConfig, Downstream};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The outbound HTTP proxy port of every sidecar (see `PlanOptions`).
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;

#[derive(Debug, Clone)]
pub struct AppSpec {
    pub workload: String,
    pub address: Ipv4Addr,
    pub app_port: u16,
    pub version: String,
    pub config: DemoAppConfig,
}

/// A problem in `apps.tsv`, with its line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct AppsError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// Parses `apps.tsv`; `outbound_port` is the sidecar port apps send their calls to.
pub fn parse_apps(file: &str, text: &str, outbound_port: u16) -> Result<Vec<AppSpec>, AppsError> {
    let mut apps = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |field: &str, message: String| AppsError {
            file: file.to_string(),
            line,
            field: field.to_string(),
            message,
        };
        let columns: Vec<&str> = raw.split('\t').map(str::trim).collect();
        if columns.len() < 4 {
            return Err(err(
                "columns",
                format!(
                    "expected workload, address, app port, version and flags separated by tabs, found {} column(s)",
                    columns.len()
                ),
            ));
        }
        let workload = columns[0].to_string();
        if workload.is_empty() {
            return Err(err("workload", "empty".into()));
        }
        let address: Ipv4Addr = columns[1].parse().map_err(|_| {
            err(
                "address",
                format!("{:?} is not an IPv4 address", columns[1]),
            )
        })?;
        if !address.is_loopback() {
            return Err(err(
                "address",
                format!("{address} is not a loopback address (127.0.0.0/8)"),
            ));
        }
        let app_port: u16 = columns[2].parse().ok().filter(|p| *p != 0).ok_or_else(|| {
            err(
                "app-port",
                format!("{:?} is not a port 1-65535", columns[2]),
            )
        })?;
        let version = columns[3].to_string();
        if version.is_empty() {
            return Err(err("version", "empty".into()));
        }
        let name = workload
            .strip_suffix(&format!("-{version}"))
            .unwrap_or(&workload)
            .to_string();
        let mut config = DemoAppConfig {
            name,
            version: version.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], app_port)),
            downstreams: Vec::new(),
            failure_rate: 0.0,
            failure_status: 503,
            latency: Duration::ZERO,
            seed: 1,
            http_proxy: Some(SocketAddr::from((address, outbound_port))),
        };
        let flags: Vec<&str> = columns[4..]
            .iter()
            .flat_map(|c| c.split_whitespace())
            .collect();
        let mut i = 0;
        while i < flags.len() {
            let flag = flags[i];
            let value = flags
                .get(i + 1)
                .copied()
                .ok_or_else(|| err(flag, "needs a value".into()))?;
            let number = |what: &str| err(flag, format!("{value:?} is not {what}"));
            match flag {
                "--call" => config
                    .downstreams
                    .push(Downstream::parse(value).map_err(|e| err(flag, e.to_string()))?),
                "--failure-rate" => {
                    config.failure_rate = value.parse().map_err(|_| number("a number"))?;
                }
                "--failure-status" => {
                    config.failure_status = value.parse().map_err(|_| number("a status code"))?;
                }
                "--latency-ms" => {
                    config.latency =
                        Duration::from_millis(value.parse().map_err(|_| number("a whole number"))?);
                }
                "--seed" => config.seed = value.parse().map_err(|_| number("a whole number"))?,
                other => {
                    return Err(err(
                        other,
                        "unknown flag (known: --call, --failure-rate, --failure-status, --latency-ms, --seed)"
                            .into(),
                    ));
                }
            }
            i += 2;
        }
        config.validate().map_err(|e| err("flags", e.to_string()))?;
        apps.push(AppSpec {
            workload,
            address,
            app_port,
            version,
            config,
        });
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_columns_and_flags() {
        let text = "# comment\n\nemail-v2\t127.0.0.16\t18016\tv2\t--failure-rate 0.5 --seed 7 --latency-ms 3\n\
                    checkout-v1\t127.0.0.14\t18014\tv1\t--call http://email:8080/send --call http://payment:8080/charge\n\
                    cart-v1\t127.0.0.13\t18013\tv1\n";
        let apps = parse_apps("apps.tsv", text, 15001).unwrap();
        assert_eq!(apps.len(), 3);
        let email = &apps[0];
        assert_eq!(email.config.name, "email");
        assert_eq!(email.config.version, "v2");
        assert_eq!(email.config.failure_rate, 0.5);
        assert_eq!(email.config.seed, 7);
        assert_eq!(email.config.latency, Duration::from_millis(3));
        assert_eq!(email.config.listen, "127.0.0.1:18016".parse().unwrap());
        assert_eq!(
            email.config.http_proxy,
            Some("127.0.0.16:15001".parse().unwrap())
        );
        let checkout = &apps[1];
        assert_eq!(checkout.config.downstreams.len(), 2);
        assert_eq!(checkout.config.downstreams[1].host, "payment");
        assert!(apps[2].config.downstreams.is_empty());
    }

    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            ("a\t127.0.0.1\t1\n", "columns"),
            ("a\t10.0.0.1\t1\tv1\n", "address"),
            ("a\t127.0.0.2\t0\tv1\n", "app-port"),
            ("a\t127.0.0.2\t10\tv1\t--failure-rate 2\n", "flags"),
            ("a\t127.0.0.2\t10\tv1\t--seed\n", "--seed"),
            ("a\t127.0.0.2\t10\tv1\t--bogus 1\n", "--bogus"),
            ("a\t127.0.0.2\t10\tv1\t--call ftp://x\n", "--call"),
        ];
        for (text, field) in cases {
            let e = parse_apps("apps.tsv", &format!("# h\n{text}"), 15001).unwrap_err();
            assert_eq!((e.line, e.field.as_str()), (2, field), "{text}: {e}");
            assert!(e.to_string().starts_with("apps.tsv:2: "), "{e}");
        }
    }

    #[test]
    fn the_bundled_example_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/boutique/apps.tsv"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let apps = parse_apps(path, &text, 15001).unwrap();
        assert!(apps.iter().any(|a| a.config.failure_rate > 0.0));
        assert!(apps.iter().any(|a| a.version == "v2"));
    }
}
