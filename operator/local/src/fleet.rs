//! Keeps the running Envoys equal to the plan: writes each proxy's bootstrap
//! and starts it, stops proxies that left the plan, and restarts one only when
//! what its bootstrap holds (address, admin port, identity) changed. Routing
//! changes never restart an Envoy: they travel over xDS.
//!
//! Also builds the proxy rows of `status.json` from the plan, the supervisor,
//! the certificates and the xDS server's view of each proxy.
use crate::bootstrap::{BootstrapSpec, ServerSan, write_bootstrap};
use crate::error::Result;
use crate::plan::PlannedProxy;
use crate::state::StateDir;
use crate::status::{ProxyKind, ProxyReport};
use crate::supervisor::{ProcessSpec, ProcessState, Supervisor, envoy_args};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use trellis_xds::identity::SERVICE_ACCOUNT_METADATA_KEY;
use trellis_xds::{ProxyId, ProxyStatus, ResourceType};

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub envoy_bin: PathBuf,
    pub xds: SocketAddr,
    pub xds_server_san: ServerSan,
    pub trust_domain: String,
    pub dns_domain: String,
    pub log_level: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetChange {
    Started(String),
    Restarted(String),
    Stopped(String),
}

#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    running: BTreeMap<String, PlannedProxy>,
}

/// The xDS identity of a planned proxy.
pub fn proxy_id(p: &PlannedProxy) -> ProxyId {
    let kind = match p.kind {
        ProxyKind::Sidecar => trellis_xds::ProxyKind::Sidecar,
        ProxyKind::Gateway => trellis_xds::ProxyKind::Gateway,
    };
    ProxyId::new(kind, &p.namespace, &p.name, &p.service_account)
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Self {
        Fleet {
            config,
            running: BTreeMap::new(),
        }
    }

    pub fn bootstrap_spec(&self, state: &StateDir, p: &PlannedProxy) -> Result<BootstrapSpec> {
        Ok(BootstrapSpec {
            node_id: proxy_id(p).node_id(&p.address.to_string(), &self.config.dns_domain),
            node_cluster: format!("{}.{}", p.service_account, p.namespace),
            node_metadata: [(
                SERVICE_ACCOUNT_METADATA_KEY.to_string(),
                p.service_account.clone(),
            )]
            .into(),
            admin: ([127, 0, 0, 1], p.admin_port).into(),
            xds: self.config.xds,
            xds_server_san: self.config.xds_server_san.clone(),
            cert_dir: state.cert_dir(&p.namespace, &p.service_account)?,
            out_dir: state.bootstrap_dir().join(&p.namespace).join(&p.name),
        })
    }

    /// The log level Envoys start with.
    pub fn log_level(&self) -> &str {
        &self.config.log_level
    }

    /// Envoys start with `level` from now on; the admin endpoints of those
    /// running already, to set it there too.
    pub fn set_log_level(&mut self, level: &str) -> Vec<SocketAddr> {
        self.config.log_level = level.to_string();
        (self.running.values())
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p.admin_port)))
            .collect()
    }

    /// Brings the running Envoys in line with `planned`. The certificate of
    /// every planned identity must already be on disk.
    pub fn reconcile(
        &mut self,
        state: &StateDir,
        supervisor: &Supervisor,
        planned: &[PlannedProxy],
    ) -> Result<Vec<FleetChange>> {
        let wanted: BTreeMap<String, &PlannedProxy> =
            planned.iter().map(|p| (p.process_name(), p)).collect();
        let mut changes = Vec::new();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            supervisor.stop(&name)?;
            self.running.remove(&name);
            changes.push(FleetChange::Stopped(name));
        }
        for (name, p) in wanted {
            let restart = match self.running.get(&name) {
                Some(current) if current == p => continue,
                Some(_) => {
                    supervisor.stop(&name)?;
                    true
                }
                None => false,
            };
            let (bootstrap, _) = write_bootstrap(&self.bootstrap_spec(state, p)?)?;
            let log_path = state
                .logs_dir()
                .join(format!("{}.log", name.replace('/', "_")));
            supervisor.spawn(ProcessSpec {
                name: name.clone(),
                program: self.config.envoy_bin.clone(),
                args: envoy_args(&bootstrap, &self.config.log_level),
                log_path,
            })?;
            self.running.insert(name.clone(), p.clone());
            changes.push(if restart {
                FleetChange::Restarted(name)
            } else {
                FleetChange::Started(name)
            });
        }
        Ok(changes)
    }

    /// One `status.json` row per running proxy.
    pub fn reports(
        &self,
        processes: &BTreeMap<String, ProcessState>,
        cert_expiry: impl Fn(&str, &str) -> Option<SystemTime>,
        xds_status: impl Fn(&ProxyId) -> Option<ProxyStatus>,
    ) -> Vec<ProxyReport> {
        self.running
            .iter()
            .map(|(name, p)| {
                let process = processes.get(name).cloned().unwrap_or_default();
                let xds = xds_status(&proxy_id(p));
                let acked_version = xds.as_ref().and_then(|s| {
                    s.get(ResourceType::Listener)
                        .acked_version
                        .clone()
                        .or_else(|| s.get(ResourceType::Cluster).acked_version.clone())
                });
                let last_nack = xds.as_ref().and_then(|s| {
                    s.nacks()
                        .first()
                        .map(|n| format!("{} v{}: {}", n.type_url, n.rejected_version, n.message))
                });
                let listeners = xds
                    .as_ref()
                    .and_then(|s| s.get(ResourceType::Listener).last_sent.as_ref())
                    .map(|sent| sent.resource_names())
                    .unwrap_or_default();
                ProxyReport {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    kind: p.kind,
                    identity: format!(
                        "spiffe://{}/ns/{}/sa/{}",
                        self.config.trust_domain, p.namespace, p.service_account
                    ),
                    address: p.address.to_string(),
                    admin_port: p.admin_port,
                    pid: process.pid,
                    restarts: process.restarts,
                    acked_version,
                    last_nack,
                    cert_expires_at: cert_expiry(&p.namespace, &p.service_account)
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    listeners,
                }
            })
            .collect()
    }
}

/// Sets the log level of a running Envoy through its admin endpoint, as `-l`
/// sets it at start, so a change needs no restart.
pub async fn set_envoy_log_level(admin: SocketAddr, level: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(admin).await?;
        let request = format!(
            "POST /logging?level={level} HTTP/1.1\r\nhost: {admin}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await?;
        let head = String::from_utf8_lossy(&answer);
        match head.split(' ').nth(1) {
            Some("200") => Ok(()),
            _ => Err(std::io::Error::other(format!(
                "POST /logging?level={level}: {}",
                head.lines().next().unwrap_or("no answer")
            ))),
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "Envoy admin"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::BackoffPolicy;
    use std::net::Ipv4Addr;

    fn proxy(name: &str, ip: u8, admin: u16) -> PlannedProxy {
        PlannedProxy {
            kind: ProxyKind::Sidecar,
            namespace: "shop".into(),
            name: name.into(),
            service_account: "cart".into(),
            address: Ipv4Addr::new(127, 0, 0, ip),
            app_port: Some(18080),
            admin_port: admin,
            outbound_http_port: Some(15001),
            gateway_ports: vec![],
        }
    }

    /// `/bin/sh` stands in for Envoy: the fleet only starts, stops and restarts processes.
    #[test]
    fn reconcile_starts_stops_and_restarts_only_on_bootstrap_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let script = tmp.path().join("fake-envoy");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let supervisor = Supervisor::start(BackoffPolicy::default()).unwrap();
        let mut fleet = Fleet::new(FleetConfig {
            envoy_bin: script,
            xds: "127.0.0.1:15010".parse().unwrap(),
            xds_server_san: ServerSan::Dns("trellis-xds".into()),
            trust_domain: "cluster.local".into(),
            dns_domain: "cluster.local".into(),
            log_level: "warn".into(),
        });
        let a = proxy("cart-v1", 13, 21001);
        let b = proxy("cart-v2", 14, 21002);
        let changes = fleet
            .reconcile(&state, &supervisor, &[a.clone(), b.clone()])
            .unwrap();
        assert_eq!(changes.len(), 2);
        let boot = state.bootstrap_dir().join("shop/cart-v1/envoy.json");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&boot).unwrap()).unwrap();
        assert_eq!(
            json["node"]["id"],
            "sidecar~127.0.0.13~cart-v1.shop~shop.svc.cluster.local"
        );
        assert_eq!(json["node"]["metadata"]["SERVICE_ACCOUNT"], "cart");

        assert!(
            fleet
                .reconcile(&state, &supervisor, &[a.clone(), b.clone()])
                .unwrap()
                .is_empty()
        );
        let moved = proxy("cart-v1", 13, 21003);
        let changes = fleet.reconcile(&state, &supervisor, &[moved]).unwrap();
        assert_eq!(
            changes,
            vec![
                FleetChange::Stopped("sidecar/shop/cart-v2".into()),
                FleetChange::Restarted("sidecar/shop/cart-v1".into()),
            ]
        );
        let states = supervisor.states();
        assert_eq!(states.len(), 1);
        let reports = fleet.reports(&states, |_, _| Some(UNIX_EPOCH), |_| None);
        assert_eq!(
            reports[0].identity,
            "spiffe://cluster.local/ns/shop/sa/cart"
        );
        assert_eq!(reports[0].admin_port, 21003);
        assert!(reports[0].pid.is_some());
        assert_eq!(reports[0].acked_version, None);
        supervisor.shutdown();
    }
}
