//! Issuing benchmark for `make bench` (scripts/bench.d/ca.sh): workload certificates
//! issued per second on one thread, then peak RSS after a stream of certificates.
//! Prints `key value` lines; the script puts them next to `openssl speed`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use trellis_ca::{CertificateAuthority, RootOptions, SpiffeId, SystemRandom, TrustDomain};

/// Peak resident set size of this process, from /proc/self/status (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = arg("--seconds", 3.0);
    let stream = arg("--stream", 100_000.0) as u64;
    let td = TrustDomain::new("bench.local")?;
    let rng = Arc::new(SystemRandom::new());
    let ca = CertificateAuthority::new_self_signed(
        &RootOptions::new(td.clone()),
        SystemTime::now(),
        rng,
    )?;
    let ids: Vec<SpiffeId> = (0..64)
        .map(|i| SpiffeId::for_service_account(&td, "bench", &format!("sa-{i}")))
        .collect::<Result<_, _>>()?;
    let now = SystemTime::now();
    let ttl = Duration::from_secs(24 * 3600);

    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut issued = 0u64;
    let mut pem_bytes = 0usize;
    while start.elapsed() < budget {
        for id in &ids {
            let identity = ca.issue_workload(id, ttl, now)?;
            pem_bytes += identity.cert_chain_pem.len() + identity.key_pem.expose().len();
            issued += 1;
        }
    }
    println!(
        "certs_per_sec {:.0}",
        issued as f64 / start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    for i in 0..stream {
        let identity = ca.issue_workload(&ids[(i % 64) as usize], ttl, now)?;
        pem_bytes += identity.cert_chain_pem.len();
    }
    println!("stream_certs {stream}");
    println!("stream_secs {:.2}", start.elapsed().as_secs_f64());
    println!("pem_bytes_total {pem_bytes}");
    let rss = peak_rss_kib().ok_or("cannot read VmHWM from /proc/self/status")?;
    println!("peak_rss_kib {rss}");
    Ok(())
}
