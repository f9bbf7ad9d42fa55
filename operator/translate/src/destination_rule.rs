//! DestinationRule (API) -> [`ClusterPolicy`] per port and subset.
use trellis_api::networking::{
    ClientTLSMode, ClientTLSSettings, ConnectionPoolSettings, DestinationRule, H2UpgradePolicy,
    LoadBalancerSettings, ProxyProtocolVersion, SimpleLB, TrafficPolicy,
};

use crate::policy::{
    ClientTls, ClusterPolicy, ConnectionPool, HashAlgorithm, HashKey, Keepalive, LoadBalancer,
    OutlierDetection, ProxyProtocol, Tunnel,
};
use crate::security::origination::{ClientTls as Origination, CredentialName, OriginationSettings};
use crate::types::{ErrorCode, TranslateError};

/// The policy for `port` (and `subset`), with errors for values that cannot be used.
/// `credentials_in` is the namespace of the proxy when the rule's `credentialName`s
/// apply to it (gateways, and sidecars the rule's `workloadSelector` selects),
/// as in Istio; `None` elsewhere: there, TLS with a `credentialName` verifies
/// the server against the system roots and presents no client certificate.
pub fn cluster_policy(
    dr: &DestinationRule,
    namespace: &str,
    port: u16,
    subset: Option<&str>,
    credentials_in: Option<&str>,
    errors: &mut Vec<TranslateError>,
) -> ClusterPolicy {
    let name = dr.metadata.name.clone().unwrap_or_default();
    let mut err = |path: String, message: String| {
        errors.push(TranslateError {
            kind: "DestinationRule".into(),
            namespace: namespace.to_string(),
            name: name.clone(),
            path,
            message,
            code: ErrorCode::InvalidValue,
        })
    };
    let mut policy = match &dr.spec.traffic_policy {
        Some(tp) => with_ports(tp, port, "spec.trafficPolicy", credentials_in, &mut err),
        None => ClusterPolicy::default(),
    };
    let subset_entry = subset.and_then(|name| {
        dr.spec
            .subsets
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    });
    if let Some((i, tp)) = subset_entry.and_then(|(i, s)| Some((i, s.traffic_policy.as_ref()?))) {
        let over = with_ports(
            tp,
            port,
            &format!("spec.subsets[{i}].trafficPolicy"),
            credentials_in,
            &mut err,
        );
        policy = policy.overlay(&over);
    }
    // As Istio: a subset's cluster tunnels by the subset's own setting only.
    if subset.is_some() {
        policy.tunnel = (subset_entry.and_then(|(_, s)| s.traffic_policy.as_ref()))
            .and_then(|tp| tp.tunnel.as_ref())
            .map(tunnel);
    }
    policy
}

fn tunnel(t: &trellis_api::networking::TunnelSettings) -> Tunnel {
    let host = match t.target_host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{}]", t.target_host),
        Err(_) => t.target_host.clone(),
    };
    Tunnel {
        authority: format!("{host}:{}", t.target_port),
        use_post: t.protocol.as_deref() == Some("POST"),
    }
}

fn with_ports(
    tp: &TrafficPolicy,
    port: u16,
    path: &str,
    credentials_in: Option<&str>,
    err: &mut impl FnMut(String, String),
) -> ClusterPolicy {
    let base = ClusterPolicy {
        load_balancer: tp
            .load_balancer
            .as_ref()
            .map(|lb| load_balancer(lb, &format!("{path}.loadBalancer"), err)),
        warmup: tp.load_balancer.as_ref().and_then(|lb| {
            let path = format!("{path}.loadBalancer.warmupDurationSecs");
            dur(lb.warmup_duration_secs.as_ref(), &path, err)
        }),
        locality_lb: (tp.load_balancer.as_ref()).and_then(|lb| lb.locality_lb_setting.clone()),
        connection_pool: tp
            .connection_pool
            .as_ref()
            .map(|c| connection_pool(c, &format!("{path}.connectionPool"), err)),
        outlier_detection: tp
            .outlier_detection
            .as_ref()
            .map(|o| outlier_detection(o, &format!("{path}.outlierDetection"), err)),
        tls: tp
            .tls
            .as_ref()
            .and_then(|t| client_tls(t, &format!("{path}.tls"), credentials_in, err)),
        tunnel: tp.tunnel.as_ref().map(tunnel),
        proxy_protocol: tp.proxy_protocol.as_ref().map(|p| match p.version {
            None | Some(ProxyProtocolVersion::V1) => ProxyProtocol::V1,
            Some(ProxyProtocolVersion::V2) => ProxyProtocol::V2,
        }),
    };
    failover_without_outlier(
        tp.load_balancer.as_ref(),
        tp.outlier_detection.is_some(),
        path,
        err,
    );
    let Some((i, pl)) = tp
        .port_level_settings
        .iter()
        .enumerate()
        .find(|(_, p)| p.port.as_ref().and_then(|s| s.number) == Some(u32::from(port)))
    else {
        return base;
    };
    let ppath = format!("{path}.portLevelSettings[{i}]");
    failover_without_outlier(
        pl.load_balancer.as_ref(),
        pl.outlier_detection.is_some(),
        &ppath,
        err,
    );
    let over = ClusterPolicy {
        load_balancer: pl
            .load_balancer
            .as_ref()
            .map(|lb| load_balancer(lb, &format!("{ppath}.loadBalancer"), err)),
        warmup: pl.load_balancer.as_ref().and_then(|lb| {
            let path = format!("{ppath}.loadBalancer.warmupDurationSecs");
            dur(lb.warmup_duration_secs.as_ref(), &path, err)
        }),
        locality_lb: (pl.load_balancer.as_ref()).and_then(|lb| lb.locality_lb_setting.clone()),
        connection_pool: pl
            .connection_pool
            .as_ref()
            .map(|c| connection_pool(c, &format!("{ppath}.connectionPool"), err)),
        outlier_detection: pl
            .outlier_detection
            .as_ref()
            .map(|o| outlier_detection(o, &format!("{ppath}.outlierDetection"), err)),
        tls: pl
            .tls
            .as_ref()
            .and_then(|t| client_tls(t, &format!("{ppath}.tls"), credentials_in, err)),
        proxy_protocol: None,
        tunnel: None,
    };
    base.overlay(&over)
}

/// Istio's warning: failover (by region or by labels) takes effect only with
/// outlier detection at the same level, else Envoy never sees an endpoint fail.
fn failover_without_outlier(
    lb: Option<&LoadBalancerSettings>,
    outlier: bool,
    path: &str,
    err: &mut impl FnMut(String, String),
) {
    let Some(l) = lb.and_then(|lb| lb.locality_lb_setting.as_ref()) else {
        return;
    };
    if !outlier && (!l.failover.is_empty() || !l.failover_priority.is_empty()) {
        err(
            format!("{path}.loadBalancer.localityLbSetting"),
            "outlier detection policy must be provided for failover (without outlierDetection \
             failover and failoverPriority have no effect)"
                .into(),
        );
    }
}

fn outlier_detection(
    o: &trellis_api::networking::OutlierDetection,
    path: &str,
    err: &mut impl FnMut(String, String),
) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx_errors: o.consecutive_5xx_errors,
        consecutive_gateway_errors: o.consecutive_gateway_errors,
        consecutive_errors: (o.consecutive_errors)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0),
        consecutive_local_origin_failures: o.consecutive_local_origin_failures,
        split_external_local_origin_errors: o.split_external_local_origin_errors == Some(true),
        min_health_percent: o.min_health_percent.and_then(|p| u32::try_from(p).ok()),
        interval: dur(o.interval.as_ref(), &format!("{path}.interval"), err),
        base_ejection_time: dur(
            o.base_ejection_time.as_ref(),
            &format!("{path}.baseEjectionTime"),
            err,
        ),
        max_ejection_percent: o.max_ejection_percent.and_then(|p| u32::try_from(p).ok()),
    }
}

/// `tls` settings -> [`ClientTls`]. Certificates come from files on the proxy,
/// or from a `credentialName` Secret where it applies (`credentials_in`).
fn client_tls(
    t: &ClientTLSSettings,
    path: &str,
    credentials_in: Option<&str>,
    err: &mut impl FnMut(String, String),
) -> Option<ClientTls> {
    let settings = OriginationSettings {
        ca_certificates: t.ca_certificates.clone(),
        ca_crl: t.ca_crl.clone().filter(|p| !p.is_empty()),
        subject_alt_names: t.subject_alt_names.clone(),
        sni: t.sni.clone(),
        insecure_skip_verify: t.insecure_skip_verify == Some(true),
    };
    let credential = t.credential_name.as_ref().filter(|c| !c.is_empty());
    let mode = t.mode?;
    if let (Some(name), Some(namespace), ClientTLSMode::Simple | ClientTLSMode::Mutual) =
        (credential, credentials_in, mode)
    {
        return Some(ClientTls::Origination(Origination::Credential {
            settings,
            credential: CredentialName {
                namespace: namespace.to_string(),
                name: name.clone(),
            },
            mutual: mode == ClientTLSMode::Mutual,
        }));
    }
    Some(match mode {
        ClientTLSMode::Disable => ClientTls::Disable,
        ClientTLSMode::Simple => ClientTls::Origination(Origination::Simple(settings)),
        ClientTLSMode::Mutual => match (&t.client_certificate, &t.private_key) {
            (Some(cert), Some(key)) => ClientTls::Origination(Origination::Mutual {
                settings,
                client_certificate: cert.clone(),
                private_key: key.clone(),
            }),
            // Validation admits MUTUAL without files only with a credentialName,
            // which does not apply to this proxy.
            _ => {
                if credential.is_none() {
                    err(
                        format!("{path}.clientCertificate"),
                        "MUTUAL needs credentialName, or clientCertificate and privateKey".into(),
                    );
                }
                ClientTls::Origination(Origination::Simple(settings))
            }
        },
        ClientTLSMode::IstioMutual => ClientTls::IstioMutual {
            sni: t.sni.clone(),
            subject_alt_names: t.subject_alt_names.clone(),
        },
    })
}

/// The TLS settings of `tp` (at `path`) and of its ports, with their paths.
fn tls_settings(tp: &TrafficPolicy, path: String) -> Vec<(String, &ClientTLSSettings)> {
    let top = tp.tls.as_ref().map(|t| (format!("{path}.tls"), t));
    let ports = (tp.port_level_settings.iter().enumerate()).filter_map(|(i, p)| {
        Some((
            format!("{path}.portLevelSettings[{i}].tls"),
            p.tls.as_ref()?,
        ))
    });
    top.into_iter().chain(ports).collect()
}

/// Every `credentialName` of `dr`'s TLS settings, with its field path.
pub fn credential_names(dr: &DestinationRule) -> Vec<(String, &str)> {
    let mut all = Vec::new();
    if let Some(tp) = &dr.spec.traffic_policy {
        all.extend(tls_settings(tp, "spec.trafficPolicy".into()));
    }
    for (i, subset) in dr.spec.subsets.iter().enumerate() {
        if let Some(tp) = &subset.traffic_policy {
            all.extend(tls_settings(tp, format!("spec.subsets[{i}].trafficPolicy")));
        }
    }
    all.into_iter()
        .filter_map(|(path, t)| {
            let name = t.credential_name.as_deref().filter(|c| !c.is_empty())?;
            Some((format!("{path}.credentialName"), name))
        })
        .collect()
}

fn load_balancer(
    lb: &LoadBalancerSettings,
    path: &str,
    err: &mut impl FnMut(String, String),
) -> LoadBalancer {
    if let Some(c) = &lb.consistent_hash {
        // Validation admits exactly one key.
        let key = if let Some(header) = &c.http_header_name {
            Some(HashKey::Header(header.clone()))
        } else if let Some(cookie) = &c.http_cookie {
            Some(HashKey::Cookie {
                name: cookie.name.clone(),
                path: cookie.path.clone(),
                ttl: dur(
                    cookie.ttl.as_ref(),
                    &format!("{path}.consistentHash.httpCookie.ttl"),
                    err,
                ),
            })
        } else if c.use_source_ip == Some(true) {
            Some(HashKey::SourceIp)
        } else {
            c.http_query_parameter_name
                .clone()
                .map(HashKey::QueryParameter)
        };
        if let Some(key) = key {
            // As Istio: maglev, else ringHash, else the deprecated
            // minimumRingSize on a ring.
            let algorithm = match (&c.maglev, &c.ring_hash) {
                (Some(m), _) => HashAlgorithm::Maglev {
                    table_size: m.table_size.filter(|s| *s > 0),
                },
                (None, Some(r)) => HashAlgorithm::RingHash {
                    minimum_ring_size: r.minimum_ring_size.filter(|s| *s > 0),
                },
                (None, None) => HashAlgorithm::RingHash {
                    minimum_ring_size: c.minimum_ring_size,
                },
            };
            return LoadBalancer::ConsistentHash { key, algorithm };
        }
    }
    match lb.simple {
        Some(SimpleLB::RoundRobin) => LoadBalancer::RoundRobin,
        Some(SimpleLB::LeastConn) | Some(SimpleLB::LeastRequest) => LoadBalancer::LeastRequest,
        Some(SimpleLB::Random) => LoadBalancer::Random,
        Some(SimpleLB::Passthrough) => {
            err(
                format!("{path}.simple"),
                "PASSTHROUGH (to the original destination) is not supported; \
                 the default, LEAST_REQUEST, applies"
                    .into(),
            );
            LoadBalancer::default()
        }
        Some(SimpleLB::Unspecified) | None => LoadBalancer::default(),
    }
}

pub(crate) fn connection_pool(
    c: &ConnectionPoolSettings,
    path: &str,
    err: &mut impl FnMut(String, String),
) -> ConnectionPool {
    let pos = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
    let tcp = c.tcp.as_ref();
    let http = c.http.as_ref();
    ConnectionPool {
        max_connections: pos(tcp.and_then(|t| t.max_connections)),
        connect_timeout: dur(
            tcp.and_then(|t| t.connect_timeout.as_ref()),
            &format!("{path}.tcp.connectTimeout"),
            err,
        ),
        http1_max_pending_requests: pos(http.and_then(|h| h.http1_max_pending_requests)),
        http2_max_requests: pos(http.and_then(|h| h.http2_max_requests)),
        max_requests_per_connection: pos(http.and_then(|h| h.max_requests_per_connection)),
        max_retries: pos(http.and_then(|h| h.max_retries)),
        keepalive: tcp
            .and_then(|t| t.tcp_keepalive.as_ref())
            .map(|k| Keepalive {
                probes: k.probes,
                time: dur(
                    k.time.as_ref(),
                    &format!("{path}.tcp.tcpKeepalive.time"),
                    err,
                ),
                interval: dur(
                    k.interval.as_ref(),
                    &format!("{path}.tcp.tcpKeepalive.interval"),
                    err,
                ),
            }),
        tcp_idle_timeout: dur(
            tcp.and_then(|t| t.idle_timeout.as_ref()),
            &format!("{path}.tcp.idleTimeout"),
            err,
        ),
        max_connection_duration: dur(
            tcp.and_then(|t| t.max_connection_duration.as_ref()),
            &format!("{path}.tcp.maxConnectionDuration"),
            err,
        ),
        idle_timeout: dur(
            http.and_then(|h| h.idle_timeout.as_ref()),
            &format!("{path}.http.idleTimeout"),
            err,
        ),
        h2_upgrade: http.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade),
        use_client_protocol: http.and_then(|h| h.use_client_protocol) == Some(true),
        max_concurrent_streams: pos(http.and_then(|h| h.max_concurrent_streams)),
    }
}

pub(crate) fn dur(
    d: Option<&trellis_api::Duration>,
    path: &str,
    err: &mut impl FnMut(String, String),
) -> Option<std::time::Duration> {
    match d?.parse() {
        Ok(v) => Some(v),
        Err(e) => {
            err(path.to_string(), e.to_string());
            None
        }
    }
}
