//! `trellis ca`: the certificate authority on the command line. All certificate
//! logic lives in `trellis-ca`; this module reads and writes files, reads the
//! clock and the system RNG, and turns errors into one line and exit code 1.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use trellis_ca::{
    CaFiles, CertificateAuthority, CertificateInfo, KeyAlgorithm, RenewalPolicy, RootOptions,
    SpiffeId, SystemRandom, TrustBundle, TrustDomain, format_time, renewal_time,
};

/// File (beside Istio's four `cacerts` files) recording the CA's trust domain.
const TRUST_DOMAIN_FILE: &str = "trust-domain";

#[derive(Args, Debug)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create a self-signed root CA in DIR (Istio `cacerts` layout: ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem).
    Init {
        /// Directory to write the CA into (created if missing; existing CA files are never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// SPIFFE trust domain of the mesh.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// Root key type: ecdsa-p256, rsa-2048 or rsa-3072.
        #[arg(long, default_value = "ecdsa-p256")]
        key: String,
        /// Root lifetime, e.g. 87600h (ten years).
        #[arg(long, default_value = "87600h")]
        ttl: String,
    },
    /// Issue a workload identity (cert-chain.pem, key.pem, root-cert.pem) for a service account.
    Issue {
        /// CA directory (self-signed from `ca init`, or Istio plugged-in `cacerts`).
        #[arg(long)]
        ca_dir: PathBuf,
        /// Kubernetes namespace of the workload.
        #[arg(long)]
        namespace: String,
        /// Service account of the workload.
        #[arg(long)]
        service_account: String,
        /// Certificate lifetime, e.g. 24h, 90m, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// Trust domain; defaults to the CA directory's `trust-domain` file, else cluster.local.
        #[arg(long)]
        trust_domain: Option<String>,
        /// Directory to write the identity files into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print subject, SPIFFE id, issuer, serial, validity, renewal time and fingerprint of certificates.
    Inspect {
        /// PEM or DER certificate files; a PEM file's first certificate is the leaf, the rest its chain.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Trust bundle (root-cert.pem) to verify each file's chain against.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
}

pub fn run(args: CaArgs) -> ExitCode {
    let result = match args.command {
        CaCommand::Init {
            out,
            trust_domain,
            key,
            ttl,
        } => init(&out, &trust_domain, &key, &ttl),
        CaCommand::Issue {
            ca_dir,
            namespace,
            service_account,
            ttl,
            trust_domain,
            out,
        } => issue(
            &ca_dir,
            &namespace,
            &service_account,
            &ttl,
            trust_domain.as_deref(),
            &out,
        ),
        CaCommand::Inspect { files, bundle } => inspect(&files, bundle.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("trellis ca: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn rng() -> trellis_ca::Rng {
    Arc::new(SystemRandom::new())
}

/// Parses `90s`, `30m`, `24h`, `7d`, or combinations such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let mut total = 0u64;
    let mut digits = String::new();
    let mut saw_unit = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => bail!("duration {text:?}: unexpected {c:?} (use s, m, h or d, e.g. 24h)"),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| anyhow!("duration {text:?}: a number must come before {c:?}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| anyhow!("duration {text:?}: too large"))?;
        digits.clear();
        saw_unit = true;
    }
    if !digits.is_empty() || !saw_unit {
        bail!("duration {text:?}: needs a unit (s, m, h or d), e.g. 24h");
    }
    if total == 0 {
        bail!("duration {text:?}: must be greater than zero");
    }
    Ok(Duration::from_secs(total))
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    #[cfg(unix)]
    if secret {
        // The mode above only applies to new files; an existing key file is tightened too.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}: cannot set mode 0600", path.display()))?;
    }
    f.write_all(contents.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow!("{}: not a text (PEM) file", path.display()))
}

fn init(out: &Path, trust_domain: &str, key: &str, ttl: &str) -> Result<ExitCode> {
    let mut options = RootOptions::new(TrustDomain::new(trust_domain)?);
    options.key = key
        .parse::<KeyAlgorithm>()
        .map_err(|e| anyhow!("--key: {e}"))?;
    options.ttl = parse_duration(ttl).context("--ttl")?;
    if out.join("ca-key.pem").exists() {
        bail!(
            "{}: already holds a CA (ca-key.pem); refusing to overwrite it",
            out.display()
        );
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create directory", out.display()))?;
    let ca = CertificateAuthority::new_self_signed(&options, SystemTime::now(), rng())?;
    let m = ca.to_material();
    write_file(&out.join("ca-key.pem"), m.ca_key_pem.expose(), true)?;
    write_file(&out.join("ca-cert.pem"), &m.ca_cert_pem, false)?;
    write_file(&out.join("cert-chain.pem"), &m.cert_chain_pem, false)?;
    write_file(&out.join("root-cert.pem"), &m.root_cert_pem, false)?;
    write_file(
        &out.join(TRUST_DOMAIN_FILE),
        &format!("{trust_domain}\n"),
        false,
    )?;
    let root = ca.root();
    println!(
        "created {} root CA for trust domain {trust_domain} in {} (valid until {}, sha256 {})",
        options.key,
        out.display(),
        format_time(root.not_after),
        root.fingerprint_hex()
    );
    Ok(ExitCode::SUCCESS)
}

fn load_ca(dir: &Path, trust_domain: Option<&str>) -> Result<CertificateAuthority> {
    let td = match trust_domain {
        Some(td) => td.to_string(),
        None => match std::fs::read_to_string(dir.join(TRUST_DOMAIN_FILE)) {
            Ok(s) => s.trim().to_string(),
            Err(_) => "cluster.local".to_string(),
        },
    };
    let td = TrustDomain::new(&td)?;
    let ca_cert = read_text(&dir.join("ca-cert.pem"))?;
    let ca_key = read_text(&dir.join("ca-key.pem"))?;
    let root_cert = read_text(&dir.join("root-cert.pem"))?;
    let chain_path = dir.join("cert-chain.pem");
    let cert_chain = if chain_path.exists() {
        read_text(&chain_path)?
    } else {
        String::new()
    };
    let files = CaFiles {
        ca_cert: &ca_cert,
        ca_key: &ca_key,
        cert_chain: &cert_chain,
        root_cert: &root_cert,
    };
    CertificateAuthority::from_cacerts(td, files, SystemTime::now(), rng())
        .map_err(|e| anyhow!("{}/{e}", dir.display()))
}

fn issue(
    ca_dir: &Path,
    namespace: &str,
    service_account: &str,
    ttl: &str,
    trust_domain: Option<&str>,
    out: &Path,
) -> Result<ExitCode> {
    let ttl = parse_duration(ttl).context("--ttl")?;
    let ca = load_ca(ca_dir, trust_domain)?;
    let id = SpiffeId::for_service_account(ca.trust_domain(), namespace, service_account)?;
    let issued = ca.issue_workload(&id, ttl, SystemTime::now())?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create directory", out.display()))?;
    write_file(&out.join("key.pem"), issued.key_pem.expose(), true)?;
    write_file(&out.join("cert-chain.pem"), &issued.cert_chain_pem, false)?;
    write_file(&out.join("root-cert.pem"), &issued.root_cert_pem, false)?;
    println!(
        "issued {id} valid until {} into {}",
        format_time(issued.not_after),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateInfo>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let name = path.display().to_string();
    let looks_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if looks_pem {
        let text =
            String::from_utf8(bytes).map_err(|_| anyhow!("{name}: PEM file is not valid UTF-8"))?;
        Ok(CertificateInfo::all_from_pem(&name, &text)?)
    } else {
        Ok(vec![CertificateInfo::from_der(&name, &bytes)?])
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn inspect(files: &[PathBuf], bundle: Option<&Path>) -> Result<ExitCode> {
    let bundle = match bundle {
        Some(p) => {
            let name = p.display().to_string();
            Some(TrustBundle::from_pem(&name, &read_text(p)?)?)
        }
        None => None,
    };
    // Parse everything first: a malformed file gives one error line and no partial output.
    let parsed: Vec<(String, Vec<CertificateInfo>)> = files
        .iter()
        .map(|f| read_certificates(f).map(|c| (f.display().to_string(), c)))
        .collect::<Result<_>>()?;
    let now = SystemTime::now();
    let policy = RenewalPolicy::default();
    let mut all_verified = true;
    for (name, chain) in &parsed {
        for (i, cert) in chain.iter().enumerate() {
            println!("{name} [{}/{}]", i + 1, chain.len());
            println!(
                "  subject:     {}",
                if cert.subject.is_empty() {
                    "(empty)"
                } else {
                    &cert.subject
                }
            );
            match cert.spiffe_id() {
                Some(id) => println!("  spiffe id:   {id}"),
                None => println!("  spiffe id:   (none)"),
            }
            if !cert.dns_sans.is_empty() {
                println!("  dns names:   {}", cert.dns_sans.join(", "));
            }
            println!("  issuer:      {}", cert.issuer);
            println!("  serial:      {}", cert.serial);
            println!("  not before:  {}", format_time(cert.not_before));
            println!("  not after:   {}", format_time(cert.not_after));
            if cert.is_ca {
                println!("  ca:          yes");
            } else {
                let at = renewal_time(cert, &policy);
                match at.duration_since(now) {
                    Ok(left) => println!(
                        "  renewal in:  {} (at {})",
                        human_duration(left),
                        format_time(at)
                    ),
                    Err(_) => println!("  renewal in:  due since {}", format_time(at)),
                }
            }
            println!("  sha256:      {}", cert.fingerprint_hex());
        }
        if let Some(bundle) = &bundle {
            match bundle.verify_chain(chain, now) {
                Ok(root) => println!("  verified:    yes, by root {}", root.display_name()),
                Err(e) => {
                    all_verified = false;
                    println!("  verified:    NO: {e}");
                }
            }
        }
    }
    Ok(if all_verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["", "24", "h", "0s", "3w", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
