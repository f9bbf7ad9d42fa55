//! Turns what the demo observed (answers at the gateway, plaintext probes and
//! every Envoy's stats) into the report a person reads, and the list of
//! expectations that did not hold. Pure: no I/O.
use super::stats::{OutboundCluster, Stats};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One Envoy and what it reported.
#[derive(Debug, Clone)]
pub struct ProxyObservation {
    /// The WorkloadEntry name, e.g. `email-v2` or `boutique-ingressgateway`.
    pub name: String,
    pub gateway: bool,
    /// The app's service and version (sidecars of demo apps).
    pub service: Option<String>,
    pub version: Option<String>,
    pub stats: Stats,
}

/// A request whose status is known in advance (the JWT checks).
#[derive(Debug, Clone)]
pub struct Probe {
    pub what: String,
    pub expected: u16,
    /// The status, or why there was none.
    pub got: Result<u16, String>,
}

/// A plaintext HTTP request sent straight to a sidecar's mesh-facing port.
#[derive(Debug, Clone)]
pub struct PlaintextProbe {
    pub target: String,
    /// Whether the sidecar refused it (no HTTP answer).
    pub refused: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub proxies_expected: usize,
    pub proxies_acked: usize,
    pub gateway_url: String,
    pub host: String,
    pub auth: Vec<Probe>,
    /// Shop requests with a valid JWT: answer status (or error text) -> count.
    pub traffic: BTreeMap<String, u32>,
    pub plaintext: Vec<PlaintextProbe>,
    pub proxies: Vec<ProxyObservation>,
    /// The share of shop requests that must be answered 200.
    pub min_success_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub text: String,
    /// Expectations that did not hold, each with what was seen instead.
    pub failures: Vec<String>,
    pub checked: usize,
}

/// One caller -> destination cluster with traffic.
#[derive(Debug, Clone)]
struct Route {
    caller: String,
    cluster: OutboundCluster,
    version: String,
    attempts: u64,
    ok: u64,
    errors: u64,
    retries: u64,
    ejections: u64,
    handshakes: u64,
    san_failures: u64,
}

const EJECTIONS: &str = "outlier_detection.ejections_enforced_total";

fn routes(obs: &Observations) -> Vec<Route> {
    let mut out = Vec::new();
    for p in &obs.proxies {
        for cluster in p.stats.outbound_clusters() {
            let stat = |s: &str| p.stats.cluster(&cluster.name, s);
            let attempts = stat("upstream_rq_total");
            if attempts == 0 {
                continue;
            }
            let version = if cluster.subset.is_empty() {
                let mut versions: Vec<&str> = obs
                    .proxies
                    .iter()
                    .filter(|d| d.service.as_deref() == Some(cluster.service()))
                    .filter_map(|d| d.version.as_deref())
                    .collect();
                versions.sort_unstable();
                versions.dedup();
                versions.join(",")
            } else {
                cluster.subset.clone()
            };
            out.push(Route {
                caller: p.name.clone(),
                version,
                attempts,
                ok: stat("upstream_rq_2xx"),
                errors: stat("upstream_rq_5xx"),
                retries: stat("upstream_rq_retry"),
                ejections: stat(EJECTIONS),
                handshakes: stat("ssl.handshake"),
                san_failures: stat("ssl.fail_verify_san"),
                cluster,
            });
        }
    }
    out
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
}

/// Builds the report and checks every expectation against the observations.
pub fn evaluate(obs: &Observations) -> Report {
    let mut out = String::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut expect = |ok: bool, failure: String| {
        checked += 1;
        if !ok {
            failures.push(failure);
        }
    };

    let _ = writeln!(
        out,
        "Trellis demo: Online Boutique on a live mesh of {} Envoys ({} ACKed their configuration)",
        obs.proxies_expected, obs.proxies_acked
    );
    expect(
        obs.proxies_expected > 0 && obs.proxies_acked == obs.proxies_expected,
        format!(
            "proxies: {} of {} ACKed their configuration",
            obs.proxies_acked, obs.proxies_expected
        ),
    );

    let _ = writeln!(
        out,
        "\nJWT at the frontend (through the gateway {} with Host {}):",
        obs.gateway_url, obs.host
    );
    for probe in &obs.auth {
        let (got, ok) = match &probe.got {
            Ok(s) => (s.to_string(), *s == probe.expected),
            Err(e) => (format!("no answer ({e})"), false),
        };
        let mark = if ok { "ok" } else { "FAILED" };
        let _ = writeln!(
            out,
            "  {:<28} -> {got} (expected {})  {mark}",
            probe.what, probe.expected
        );
        expect(
            ok,
            format!("{}: expected {}, got {got}", probe.what, probe.expected),
        );
    }

    let sent: u32 = obs.traffic.values().sum();
    let ok = obs.traffic.get("200").copied().unwrap_or(0);
    let spread: Vec<String> = obs
        .traffic
        .iter()
        .map(|(k, v)| format!("{v} x {k}"))
        .collect();
    let _ = writeln!(
        out,
        "\nShop traffic: {sent} requests with a valid JWT through the gateway: {}",
        if spread.is_empty() {
            "none".to_string()
        } else {
            spread.join(", ")
        }
    );
    let ratio = if sent == 0 {
        0.0
    } else {
        f64::from(ok) / f64::from(sent)
    };
    expect(
        sent > 0 && ratio >= obs.min_success_ratio,
        format!(
            "shop traffic: {ok} of {sent} requests answered 200 (at least {:.0}% expected)",
            obs.min_success_ratio * 100.0
        ),
    );

    let routes = routes(obs);
    let _ = writeln!(
        out,
        "\nRequests per route and version (caller's Envoy; attempts include retries):"
    );
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                format!("{} -> {}", r.caller, r.cluster.service()),
                if r.version.is_empty() {
                    "-".into()
                } else {
                    r.version.clone()
                },
                r.attempts.to_string(),
                r.ok.to_string(),
                r.errors.to_string(),
                r.retries.to_string(),
                r.ejections.to_string(),
                if r.handshakes > 0 && r.san_failures == 0 {
                    format!("yes, {} handshakes", r.handshakes)
                } else {
                    format!(
                        "NO ({} handshakes, {} SAN failures)",
                        r.handshakes, r.san_failures
                    )
                },
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "ROUTE",
            "VERSION",
            "ATTEMPTS",
            "2XX",
            "5XX",
            "RETRIES",
            "EJECTIONS",
            "MTLS",
        ],
        &rows,
    );
    expect(
        !routes.is_empty(),
        "routes: no Envoy sent any request to an outbound cluster".into(),
    );

    let _ = writeln!(out, "\nServed per workload (the sidecar's inbound side):");
    let mut rows = Vec::new();
    let mut tls_listeners_total = 0u64;
    for p in obs.proxies.iter().filter(|p| !p.gateway) {
        let served: u64 = p
            .stats
            .inbound_clusters()
            .iter()
            .map(|c| p.stats.cluster(c, "upstream_rq_total"))
            .sum();
        let listeners = p.stats.tls_listeners();
        let handshakes: u64 = listeners
            .iter()
            .map(|l| p.stats.get(&format!("{l}.ssl.handshake")))
            .sum();
        let no_cert: u64 = listeners
            .iter()
            .map(|l| p.stats.get(&format!("{l}.ssl.fail_verify_no_cert")))
            .sum();
        tls_listeners_total += listeners.len() as u64;
        rows.push(vec![
            p.name.clone(),
            p.version.clone().unwrap_or_else(|| "-".into()),
            served.to_string(),
            handshakes.to_string(),
        ]);
        expect(
            served > 0,
            format!("{}: its sidecar forwarded no request to the app", p.name),
        );
        expect(
            listeners.is_empty() || handshakes > 0 && no_cert == 0 || served == 0,
            format!(
                "{}: inbound mTLS: {handshakes} handshakes, {no_cert} clients without a certificate",
                p.name
            ),
        );
        expect(
            !listeners.is_empty(),
            format!(
                "{}: its sidecar has no inbound listener terminating TLS",
                p.name
            ),
        );
    }
    table(
        &mut out,
        &["WORKLOAD", "VERSION", "REQUESTS", "MTLS HANDSHAKES"],
        &rows,
    );

    let hops_ok = routes
        .iter()
        .filter(|r| r.handshakes > 0 && r.san_failures == 0)
        .count();
    for r in routes
        .iter()
        .filter(|r| !(r.handshakes > 0 && r.san_failures == 0))
    {
        expect(
            false,
            format!(
                "mTLS {} -> {}: {} handshakes, {} SAN verification failures",
                r.caller, r.cluster.name, r.handshakes, r.san_failures
            ),
        );
    }
    let refused = obs.plaintext.iter().filter(|p| p.refused).count();
    for p in obs.plaintext.iter().filter(|p| !p.refused) {
        expect(
            false,
            format!("plaintext to {} was not refused: {}", p.target, p.detail),
        );
    }
    expect(
        !obs.plaintext.is_empty(),
        "plaintext probes: none were sent".into(),
    );
    let _ = writeln!(
        out,
        "\nmTLS: verified on {hops_ok} of {} hops (client certificate and SPIFFE SAN checked on every connection, {} TLS listeners); plaintext to a sidecar refused {refused} of {} times",
        routes.len(),
        tls_listeners_total,
        obs.plaintext.len()
    );

    let retries: u64 = routes.iter().map(|r| r.retries).sum();
    let ejections: u64 = routes.iter().map(|r| r.ejections).sum();
    let where_ = |pick: fn(&Route) -> u64| -> String {
        let names: Vec<String> = routes
            .iter()
            .filter(|r| pick(r) > 0)
            .map(|r| format!("{} -> {} {}", r.caller, r.cluster.service(), r.version))
            .collect();
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join("; "))
        }
    };
    let _ = writeln!(
        out,
        "Resilience: {retries} retries{}, {ejections} outlier ejections{}",
        where_(|r| r.retries),
        where_(|r| r.ejections)
    );
    expect(
        retries > 0,
        "retries: no Envoy retried a request (upstream_rq_retry is 0 everywhere)".into(),
    );
    expect(
        ejections > 0,
        format!("outlier detection: no host was ejected ({EJECTIONS} is 0 everywhere)"),
    );

    if failures.is_empty() {
        let _ = writeln!(out, "\nAll {checked} expectations held.");
    } else {
        let _ = writeln!(
            out,
            "\n{} of {checked} expectations FAILED:",
            failures.len()
        );
        for f in &failures {
            let _ = writeln!(out, "  - {f}");
        }
    }
    Report {
        text: out,
        failures,
        checked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(
        name: &str,
        gateway: bool,
        service: &str,
        version: &str,
        stats: &str,
    ) -> ProxyObservation {
        ProxyObservation {
            name: name.into(),
            gateway,
            service: (!service.is_empty()).then(|| service.into()),
            version: (!version.is_empty()).then(|| version.into()),
            stats: Stats::parse(stats),
        }
    }

    fn healthy() -> Observations {
        let gw = "cluster.outbound|8080||frontend.shop.svc.cluster.local.upstream_rq_total: 10\n\
                  cluster.outbound|8080||frontend.shop.svc.cluster.local.upstream_rq_2xx: 10\n\
                  cluster.outbound|8080||frontend.shop.svc.cluster.local.ssl.handshake: 1\n";
        let fe = "cluster.inbound|8080||.upstream_rq_total: 10\n\
                  listener.127.0.0.11_8080.ssl.handshake: 1\n\
                  cluster.outbound|8080|v2|email.shop.svc.cluster.local.upstream_rq_total: 5\n\
                  cluster.outbound|8080|v2|email.shop.svc.cluster.local.upstream_rq_retry: 2\n\
                  cluster.outbound|8080|v2|email.shop.svc.cluster.local.outlier_detection.ejections_enforced_total: 1\n\
                  cluster.outbound|8080|v2|email.shop.svc.cluster.local.ssl.handshake: 2\n";
        let em = "cluster.inbound|8080||.upstream_rq_total: 5\n\
                  listener.127.0.0.16_8080.ssl.handshake: 2\n";
        Observations {
            proxies_expected: 3,
            proxies_acked: 3,
            gateway_url: "http://127.0.0.1:8080".into(),
            host: "onlineboutique.com".into(),
            auth: vec![
                Probe {
                    what: "valid JWT".into(),
                    expected: 200,
                    got: Ok(200),
                },
                Probe {
                    what: "no JWT".into(),
                    expected: 403,
                    got: Ok(403),
                },
            ],
            traffic: [("200".to_string(), 10)].into(),
            plaintext: vec![PlaintextProbe {
                target: "127.0.0.11:8080".into(),
                refused: true,
                detail: String::new(),
            }],
            proxies: vec![
                proxy("gw", true, "", "", gw),
                proxy("frontend-v1", false, "frontend", "v1", fe),
                proxy("email-v2", false, "email", "v2", em),
            ],
            min_success_ratio: 0.9,
        }
    }

    #[test]
    fn a_healthy_run_holds_every_expectation() {
        let r = evaluate(&healthy());
        assert!(r.failures.is_empty(), "{:?}\n{}", r.failures, r.text);
        assert!(r.text.contains("gw -> frontend"), "{}", r.text);
        assert!(r.text.contains("frontend-v1 -> email"), "{}", r.text);
        assert!(
            r.text.contains("mTLS: verified on 2 of 2 hops"),
            "{}",
            r.text
        );
        assert!(r.text.contains("Resilience: 2 retries"), "{}", r.text);
        assert!(
            r.text
                .contains(&format!("All {} expectations held.", r.checked))
        );
    }

    #[test]
    fn each_broken_observation_is_a_named_failure() {
        let mut o = healthy();
        o.auth[1].got = Ok(200);
        let r = evaluate(&o);
        assert_eq!(
            r.failures,
            vec!["no JWT: expected 403, got 200".to_string()]
        );

        let mut o = healthy();
        o.proxies[0].stats = Stats::parse(
            "cluster.outbound|8080||frontend.shop.svc.cluster.local.upstream_rq_total: 10\n",
        );
        let r = evaluate(&o);
        assert!(
            r.failures.iter().any(|f| f.starts_with("mTLS gw -> ")),
            "{:?}",
            r.failures
        );

        let mut o = healthy();
        o.proxies[1].stats = Stats::parse(
            "cluster.inbound|8080||.upstream_rq_total: 10\nlistener.127.0.0.11_8080.ssl.handshake: 1\n",
        );
        let r = evaluate(&o);
        assert!(
            r.failures.iter().any(|f| f.starts_with("retries:")),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures
                .iter()
                .any(|f| f.starts_with("outlier detection:")),
            "{:?}",
            r.failures
        );

        let mut o = healthy();
        o.traffic = [("200".to_string(), 5), ("502".to_string(), 5)].into();
        o.plaintext[0].refused = false;
        o.proxies_acked = 2;
        let r = evaluate(&o);
        assert_eq!(r.failures.len(), 3, "{:?}", r.failures);
        assert!(r.text.contains("3 of"), "{}", r.text);
    }
}
