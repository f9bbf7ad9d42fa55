//! `status.json`: written by `trellis up`, printed by `trellis status`.
use crate::error::{LocalError, Result};
use crate::state::write_atomic;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshStatus {
    /// Unix seconds when `trellis up` wrote this document.
    pub written_at: u64,
    pub config_dir: String,
    pub xds_address: String,
    #[serde(default)]
    pub proxies: Vec<ProxyReport>,
    #[serde(default)]
    pub config_errors: Vec<ConfigError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProxyKind {
    Sidecar,
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyReport {
    pub namespace: String,
    pub name: String,
    pub kind: ProxyKind,
    /// The SPIFFE id the proxy's certificate carries.
    pub identity: String,
    pub address: String,
    pub admin_port: u16,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default)]
    pub acked_version: Option<String>,
    #[serde(default)]
    pub last_nack: Option<String>,
    /// Unix seconds when the workload certificate expires.
    #[serde(default)]
    pub cert_expires_at: Option<u64>,
    #[serde(default)]
    pub listeners: Vec<String>,
}

impl std::fmt::Display for ConfigError {
    /// `file: Kind/namespace/name: field: message`, leaving out what is unknown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}: ", self.file)?;
        }
        if let Some(kind) = &self.kind {
            write!(f, "{kind}/")?;
            if let Some(ns) = &self.namespace {
                write!(f, "{ns}/")?;
            }
            write!(f, "{}: ", self.name.as_deref().unwrap_or("<unnamed>"))?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A configuration problem against one resource (or one file that did not parse).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigError {
    pub file: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
    pub message: String,
}

pub fn write_status(path: &Path, status: &MeshStatus) -> Result<()> {
    let json = serde_json::to_vec_pretty(status).map_err(|source| LocalError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &json, 0o644)
}

pub fn read_status(path: &Path) -> Result<MeshStatus> {
    let bytes = std::fs::read(path).map_err(|e| LocalError::io("reading", path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| LocalError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The human table `trellis status` prints; `now` is unix seconds.
pub fn render(status: &MeshStatus, now: u64) -> String {
    let mut out = String::new();
    let age = now.saturating_sub(status.written_at);
    let _ = writeln!(
        out,
        "mesh from {} (xDS {}), status written {}s ago",
        status.config_dir, status.xds_address, age
    );
    let _ = writeln!(out);
    let header = [
        "PROXY",
        "KIND",
        "IDENTITY",
        "ADDRESS",
        "ADMIN",
        "PID",
        "RESTARTS",
        "XDS",
        "CERT",
        "LISTENERS",
    ];
    let rows: Vec<[String; 10]> = status
        .proxies
        .iter()
        .map(|p| {
            [
                format!("{}/{}", p.namespace, p.name),
                format!("{:?}", p.kind).to_lowercase(),
                p.identity.clone(),
                p.address.clone(),
                p.admin_port.to_string(),
                p.pid.map_or_else(|| "-".into(), |pid| pid.to_string()),
                p.restarts.to_string(),
                sync_state(p),
                p.cert_expires_at
                    .map_or_else(|| "-".into(), |at| expiry(at, now)),
                if p.listeners.is_empty() {
                    "-".into()
                } else {
                    p.listeners.join(",")
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let header_cells = header.map(String::from);
    for row in std::iter::once(&header_cells).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let _ = writeln!(out);
    if status.config_errors.is_empty() {
        let _ = writeln!(out, "config errors: none");
    } else {
        let _ = writeln!(out, "config errors:");
        for e in &status.config_errors {
            let object = match (&e.kind, &e.namespace, &e.name) {
                (Some(k), Some(ns), Some(n)) => format!("{k} {ns}/{n}"),
                (Some(k), None, Some(n)) => format!("{k} {n}"),
                _ => "(unparsed)".to_string(),
            };
            let field = e
                .field
                .as_deref()
                .map(|f| format!(" {f}:"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {}: {object}:{field} {}", e.file, e.message);
        }
    }
    out
}

fn sync_state(p: &ProxyReport) -> String {
    match (&p.acked_version, &p.last_nack) {
        (_, Some(nack)) => format!("NACK: {nack}"),
        (Some(v), None) => format!("ACKed {v}"),
        (None, None) => "not connected".to_string(),
    }
}

fn expiry(at: u64, now: u64) -> String {
    if at <= now {
        return "EXPIRED".to_string();
    }
    let left = at - now;
    format!("in {}h{:02}m", left / 3600, (left % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MeshStatus {
        MeshStatus {
            written_at: 1000,
            config_dir: "examples/boutique".into(),
            xds_address: "127.0.0.1:15010".into(),
            proxies: vec![ProxyReport {
                namespace: "shop".into(),
                name: "cart-v1".into(),
                kind: ProxyKind::Sidecar,
                identity: "spiffe://cluster.local/ns/shop/sa/cart".into(),
                address: "127.0.0.13".into(),
                admin_port: 15123,
                pid: Some(42),
                restarts: 1,
                acked_version: None,
                last_nack: Some("listener inbound: bad port".into()),
                cert_expires_at: Some(1000 + 3600 + 120),
                listeners: vec!["inbound|8080".into()],
            }],
            config_errors: vec![ConfigError {
                file: "examples/boutique/bad.yaml".into(),
                kind: Some("VirtualService".into()),
                namespace: Some("shop".into()),
                name: Some("cart".into()),
                field: Some("spec.http[0].route".into()),
                message: "must not be empty".into(),
            }],
        }
    }

    #[test]
    fn status_round_trips_through_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("status.json");
        write_status(&path, &sample()).unwrap();
        assert_eq!(read_status(&path).unwrap(), sample());
    }

    #[test]
    fn render_shows_identity_sync_expiry_and_errors() {
        let text = render(&sample(), 1000);
        for needle in [
            "shop/cart-v1",
            "spiffe://cluster.local/ns/shop/sa/cart",
            "15123",
            "NACK: listener inbound: bad port",
            "in 1h02m",
            "VirtualService shop/cart: spec.http[0].route: must not be empty",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn missing_status_file_names_the_path() {
        let err = read_status(Path::new("/nonexistent/status.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/status.json"));
    }
}
