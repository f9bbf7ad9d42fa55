//! Configuration of `trellis demo-app` and parsing of downstream URLs.
use crate::error::{LocalError, Result};
use std::net::SocketAddr;
use std::time::Duration;

/// A service this app calls on every request, e.g. `http://cart:8080/items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downstream {
    /// `host` or `host:port`, sent as Host and used by the sidecar to route.
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Downstream {
    /// Parses `http://host[:port][/path]`; only plain HTTP (the sidecar does mTLS).
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |message: &str| LocalError::DemoConfig {
            field: "--call",
            message: format!("{url:?}: {message}"),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with http:// (the sidecar adds mTLS)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad("port is not a number 0-65535"))?,
            ),
            None => (authority, 80),
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid_host {
            return Err(bad("host must be a DNS name or IPv4 address"));
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("path must not contain spaces or control characters"));
        }
        Ok(Downstream {
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

#[derive(Debug, Clone)]
pub struct DemoAppConfig {
    pub name: String,
    pub version: String,
    pub listen: SocketAddr,
    pub downstreams: Vec<Downstream>,
    /// Fraction of requests answered with `failure_status`, 0.0..=1.0.
    pub failure_rate: f64,
    pub failure_status: u16,
    /// Added before answering every request.
    pub latency: Duration,
    pub seed: u64,
    /// The sidecar's outbound HTTP proxy; downstreams are called directly when unset.
    pub http_proxy: Option<SocketAddr>,
}

impl DemoAppConfig {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(LocalError::DemoConfig {
                field: "--failure-rate",
                message: format!("{} is not between 0 and 1", self.failure_rate),
            });
        }
        if !(100..=599).contains(&self.failure_status) {
            return Err(LocalError::DemoConfig {
                field: "--failure-status",
                message: format!("{} is not an HTTP status", self.failure_status),
            });
        }
        Ok(())
    }
}

/// Reads `HTTP_PROXY`/`http_proxy` the way curl does (`http://host:port` or `host:port`).
pub fn parse_http_proxy(value: &str) -> Result<SocketAddr> {
    let trimmed = value
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    trimmed.parse().map_err(|_| LocalError::DemoConfig {
        field: "HTTP_PROXY",
        message: format!("{value:?} is not http://IP:PORT"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_host_port_path() {
        let d = Downstream::parse("http://cart.shop:8080/items").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.path.as_str()),
            ("cart.shop", 8080, "/items")
        );
        assert_eq!(d.authority, "cart.shop:8080");
        let d = Downstream::parse("http://email").unwrap();
        assert_eq!(
            (d.port, d.path.as_str(), d.url().as_str()),
            (80, "/", "http://email/")
        );
    }

    #[test]
    fn rejects_bad_urls_naming_the_flag() {
        for bad in [
            "https://x",
            "http://",
            "http://a:99999/",
            "http://a b/",
            "http://x/\n",
        ] {
            let err = Downstream::parse(bad).unwrap_err().to_string();
            assert!(err.contains("--call"), "{bad}: {err}");
        }
    }

    #[test]
    fn http_proxy_forms() {
        assert_eq!(
            parse_http_proxy("http://127.0.0.11:15001/").unwrap(),
            "127.0.0.11:15001".parse().unwrap()
        );
        assert!(parse_http_proxy("proxy.local:3128").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(url in "http://[a-z0-9.:/-]{0,30}") {
            if let Ok(d) = Downstream::parse(&url) {
                prop_assert_eq!(Downstream::parse(&d.url()).unwrap(), d);
            }
        }
    }
}
