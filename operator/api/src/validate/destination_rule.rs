//! DestinationRule rules.

use super::fields::{dns_label, duration, export_to, header_name, host, labels, port};
use super::{Errors, FieldError};
use crate::networking::{
    ClientTLSMode, ClientTLSSettings, ConnectionPoolSettings, ConsistentHashLB, DestinationRule,
    LoadBalancerSettings, OutlierDetection, SimpleLB, TrafficPolicy,
};
use std::collections::BTreeSet;

/// Validates a DestinationRule.
pub fn destination_rule(dr: &DestinationRule) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &dr.spec;
    errors.check("spec.host", host(&spec.host));
    export_to(&spec.export_to, &mut errors);
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(&mut errors, "spec.trafficPolicy", tp);
    }
    let mut names = BTreeSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let path = format!("spec.subsets[{i}]");
        errors.check(format!("{path}.name"), dns_label(&subset.name));
        if !names.insert(subset.name.as_str()) {
            errors.add(
                format!("{path}.name"),
                format!("duplicate subset name {:?}", subset.name),
            );
        }
        labels(&mut errors, &format!("{path}.labels"), &subset.labels);
        if let Some(tp) = &subset.traffic_policy {
            traffic_policy(&mut errors, &format!("{path}.trafficPolicy"), tp);
        }
    }
    if let Some(ws) = &spec.workload_selector {
        labels(
            &mut errors,
            "spec.workloadSelector.matchLabels",
            &ws.match_labels,
        );
    }
    errors.0
}

fn traffic_policy(errors: &mut Errors, path: &str, tp: &TrafficPolicy) {
    if let Some(lb) = &tp.load_balancer {
        load_balancer(errors, &format!("{path}.loadBalancer"), lb);
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(errors, &format!("{path}.connectionPool"), cp);
    }
    if let Some(od) = &tp.outlier_detection {
        outlier_detection(errors, &format!("{path}.outlierDetection"), od);
    }
    if let Some(tls) = &tp.tls {
        client_tls(errors, &format!("{path}.tls"), tls);
    }
    if let Some(tunnel) = &tp.tunnel {
        let tpath = format!("{path}.tunnel");
        match tunnel.protocol.as_deref() {
            None | Some("CONNECT") => {}
            // Istio's other protocol; refused, not ignored.
            Some("POST") => errors.add(
                format!("{tpath}.protocol"),
                "POST is not supported (Envoy 1.40 crashes when the tunnelling proxy ends a POST tunnel); use CONNECT",
            ),
            Some(p) => errors.add(
                format!("{tpath}.protocol"),
                format!("protocol {p:?} must be CONNECT or POST"),
            ),
        }
        if tunnel.target_host.parse::<std::net::IpAddr>().is_err() {
            errors.check(
                format!("{tpath}.targetHost"),
                super::fields::exact_host(&tunnel.target_host),
            );
        }
        errors.check(format!("{tpath}.targetPort"), port(tunnel.target_port));
    }
    let mut ports = BTreeSet::new();
    for (i, pls) in tp.port_level_settings.iter().enumerate() {
        let ppath = format!("{path}.portLevelSettings[{i}]");
        match pls.port.as_ref().and_then(|p| p.number) {
            Some(n) => {
                errors.check(format!("{ppath}.port.number"), port(n));
                if !ports.insert(n) {
                    errors.add(
                        format!("{ppath}.port.number"),
                        format!("duplicate port {n}"),
                    );
                }
            }
            None => errors.add(format!("{ppath}.port.number"), "required"),
        }
        if let Some(lb) = &pls.load_balancer {
            load_balancer(errors, &format!("{ppath}.loadBalancer"), lb);
        }
        if let Some(cp) = &pls.connection_pool {
            connection_pool(errors, &format!("{ppath}.connectionPool"), cp);
        }
        if let Some(od) = &pls.outlier_detection {
            outlier_detection(errors, &format!("{ppath}.outlierDetection"), od);
        }
        if let Some(tls) = &pls.tls {
            client_tls(errors, &format!("{ppath}.tls"), tls);
        }
    }
}

fn load_balancer(errors: &mut Errors, path: &str, lb: &LoadBalancerSettings) {
    match (&lb.simple, &lb.consistent_hash) {
        (Some(_), Some(_)) => {
            errors.add(path.to_owned(), "set only one of simple and consistentHash")
        }
        (None, None) if lb.warmup_duration_secs.is_none() && lb.locality_lb_setting.is_none() => {
            errors.add(
                path.to_owned(),
                "one of simple, consistentHash or localityLbSetting is required",
            )
        }
        _ => {}
    }
    if let Some(w) = &lb.warmup_duration_secs {
        let wpath = format!("{path}.warmupDurationSecs");
        errors.check(wpath.clone(), duration(w));
        let slow_start = lb.consistent_hash.is_none()
            && !matches!(
                lb.simple,
                Some(SimpleLB::Random) | Some(SimpleLB::Passthrough)
            );
        if !slow_start {
            errors.add(
                wpath,
                "applies only to ROUND_ROBIN and LEAST_REQUEST (the default)",
            );
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        super::locality::locality_lb_setting(errors, &format!("{path}.localityLbSetting"), l);
    }
    if let Some(ch) = &lb.consistent_hash {
        let chpath = format!("{path}.consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip == Some(true),
            ch.http_query_parameter_name.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if keys != 1 {
            errors.add(
                chpath.clone(),
                "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required",
            );
        }
        if let Some(name) = &ch.http_header_name {
            errors.check(format!("{chpath}.httpHeaderName"), header_name(name));
        }
        hash_algorithm(errors, &chpath, ch);
        if let Some(cookie) = &ch.http_cookie {
            if cookie.name.is_empty() {
                errors.add(format!("{chpath}.httpCookie.name"), "required");
            }
            if let Some(ttl) = &cookie.ttl {
                // A zero TTL asks Envoy for a session cookie.
                if ttl.0 != "0s" && ttl.0 != "0" {
                    errors.check(format!("{chpath}.httpCookie.ttl"), duration(ttl));
                }
            }
        }
    }
}

/// Envoy's largest `minimum_ring_size`.
const MAX_RING_SIZE: u64 = 8_388_608;

/// `ringHash` or `maglev` (one of them, not with the deprecated
/// `minimumRingSize`), with the sizes Envoy takes: as Istio, a Maglev table
/// size is a prime below 5000011.
fn hash_algorithm(errors: &mut Errors, chpath: &str, ch: &ConsistentHashLB) {
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        errors.add(
            chpath.to_owned(),
            "only one of ringHash and maglev may be set",
        );
    }
    if ch.minimum_ring_size.is_some() && (ch.ring_hash.is_some() || ch.maglev.is_some()) {
        errors.add(
            format!("{chpath}.minimumRingSize"),
            "only one of minimumRingSize (deprecated) or maglev/ringHash can be specified",
        );
    }
    let ring_sizes = [
        ("minimumRingSize", ch.minimum_ring_size),
        (
            "ringHash.minimumRingSize",
            ch.ring_hash.as_ref().and_then(|r| r.minimum_ring_size),
        ),
    ];
    for (field, size) in ring_sizes {
        if let Some(size) = size
            && size > MAX_RING_SIZE
        {
            errors.add(
                format!("{chpath}.{field}"),
                format!("{size} is above Envoy's largest ring ({MAX_RING_SIZE})"),
            );
        }
    }
    if let Some(maglev) = &ch.maglev {
        let path = format!("{chpath}.maglev.tableSize");
        match maglev.table_size {
            None | Some(0) => errors.add(path, "required for maglev"),
            Some(size) if size >= 5_000_011 => errors.add(path, "must be less than 5000011"),
            Some(size) if !is_prime(size) => {
                errors.add(path, format!("{size} is not a prime number"))
            }
            Some(_) => {}
        }
    }
}

/// Whether `n` is prime (trial division; callers bound `n`).
fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| *d <= n / d)
            .all(|d| !n.is_multiple_of(d))
}

pub(crate) fn connection_pool(errors: &mut Errors, path: &str, cp: &ConnectionPoolSettings) {
    let mut non_negative = |field: &str, value: Option<i32>| {
        if let Some(v) = value
            && v < 0
        {
            errors.add(format!("{path}.{field}"), "must not be negative");
        }
    };
    if let Some(tcp) = &cp.tcp {
        non_negative("tcp.maxConnections", tcp.max_connections);
    }
    if let Some(http) = &cp.http {
        non_negative(
            "http.http1MaxPendingRequests",
            http.http1_max_pending_requests,
        );
        non_negative("http.http2MaxRequests", http.http2_max_requests);
        non_negative(
            "http.maxRequestsPerConnection",
            http.max_requests_per_connection,
        );
        non_negative("http.maxRetries", http.max_retries);
        non_negative("http.maxConcurrentStreams", http.max_concurrent_streams);
    }
    if let Some(tcp) = &cp.tcp {
        for (field, d) in [
            ("connectTimeout", &tcp.connect_timeout),
            ("maxConnectionDuration", &tcp.max_connection_duration),
            ("idleTimeout", &tcp.idle_timeout),
        ] {
            if let Some(d) = d {
                errors.check(format!("{path}.tcp.{field}"), duration(d));
            }
        }
        if let Some(ka) = &tcp.tcp_keepalive {
            for (field, d) in [("time", &ka.time), ("interval", &ka.interval)] {
                if let Some(d) = d {
                    errors.check(format!("{path}.tcp.tcpKeepalive.{field}"), duration(d));
                }
            }
        }
    }
    if let Some(http) = &cp.http
        && let Some(d) = &http.idle_timeout
    {
        errors.check(format!("{path}.http.idleTimeout"), duration(d));
    }
}

fn outlier_detection(errors: &mut Errors, path: &str, od: &OutlierDetection) {
    for (field, d) in [
        ("interval", &od.interval),
        ("baseEjectionTime", &od.base_ejection_time),
    ] {
        if let Some(d) = d {
            errors.check(format!("{path}.{field}"), duration(d));
        }
    }
    if let Some(n) = od.consecutive_errors
        && n < 0
    {
        errors.add(format!("{path}.consecutiveErrors"), "must not be negative");
    }
    for (field, v) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = v
            && !(0..=100).contains(&v)
        {
            errors.add(format!("{path}.{field}"), "must be between 0 and 100");
        }
    }
}

/// Client TLS: certificates only where the mode uses them.
pub(crate) fn client_tls(errors: &mut Errors, path: &str, tls: &ClientTLSSettings) {
    let mode = tls.mode.unwrap_or(ClientTLSMode::Disable);
    let has_files = tls.client_certificate.is_some() || tls.private_key.is_some();
    match mode {
        ClientTLSMode::Mutual => {
            let complete_files = tls.client_certificate.is_some() && tls.private_key.is_some();
            if tls.credential_name.is_none() && !complete_files {
                errors.add(
                    path.to_owned(),
                    "MUTUAL requires credentialName, or clientCertificate and privateKey",
                );
            }
        }
        ClientTLSMode::Simple => {
            if has_files {
                errors.add(
                    path.to_owned(),
                    "clientCertificate and privateKey are only used with MUTUAL",
                );
            }
        }
        ClientTLSMode::Disable | ClientTLSMode::IstioMutual => {
            let any = has_files
                || tls.ca_certificates.is_some()
                || tls.ca_crl.is_some()
                || tls.credential_name.is_some()
                || (mode == ClientTLSMode::Disable && !tls.subject_alt_names.is_empty());
            if any {
                errors.add(
                    path.to_owned(),
                    format!(
                        "{} takes no certificates (clientCertificate, privateKey, caCertificates, caCrl, credentialName)",
                        if mode == ClientTLSMode::Disable { "DISABLE" } else { "ISTIO_MUTUAL (the mesh provides them)" }
                    ),
                );
            }
        }
    }
    // As in Istio: the Secret holds the certificates, so none come from files too.
    let credential = tls.credential_name.as_ref().is_some_and(|c| !c.is_empty());
    let with_files = has_files || tls.ca_certificates.is_some() || tls.ca_crl.is_some();
    if matches!(mode, ClientTLSMode::Simple | ClientTLSMode::Mutual) && credential && with_files {
        errors.add(
            format!("{path}.credentialName"),
            "credentialName cannot be set with clientCertificate, privateKey, caCertificates or caCrl \
             (the Secret carries its CA and CRL)",
        );
    }
    if let Some(sni) = &tls.sni
        && host(sni).is_err()
    {
        errors.add(
            format!("{path}.sni"),
            format!("{sni:?} is not a valid server name"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::is_prime;

    #[test]
    fn primes_by_trial_division() {
        let primes: Vec<u64> = (0..30).filter(|n| is_prime(*n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537) && is_prime(1031) && is_prime(5_000_011));
        assert!(!is_prime(65536) && !is_prime(5_000_013 * 3));
        // No overflow near the top of the range.
        assert!(!is_prime(u64::MAX));
    }
}
