//! `trellis proxy-init`: installs the traffic-capture iptables rules in the
//! pod's network namespace (the injected init container runs this).
//!
//! The rules are trellis-inject's capture rule set, applied in one
//! `iptables-restore` call that replaces the nat table: atomic, and applying
//! it twice (a restarted init container) gives the same table.

use anyhow::{Context, bail};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use trellis_inject::capture::{self, CaptureOptions};

/// The restore programs tried in order: the distribution's default, then the
/// explicit nft and legacy backends (images may ship only one of them).
const RESTORE_PROGRAMS: [&str; 3] = [
    "iptables-restore",
    "iptables-nft-restore",
    "iptables-legacy-restore",
];

#[derive(Args)]
pub struct ProxyInitArgs {
    /// UID of the proxy: its traffic is never captured.
    #[arg(long, default_value_t = capture::PROXY_UID)]
    proxy_uid: u32,
    /// GID of the proxy: its traffic is never captured.
    #[arg(long, default_value_t = capture::PROXY_UID)]
    proxy_gid: u32,
    /// Envoy's outbound capture port.
    #[arg(long, default_value_t = capture::OUTBOUND_CAPTURE_PORT)]
    outbound_port: u16,
    /// Envoy's inbound capture port.
    #[arg(long, default_value_t = capture::INBOUND_CAPTURE_PORT)]
    inbound_port: u16,
    /// Inbound ports to capture, comma-separated, or `*` for all.
    #[arg(long, default_value = "*")]
    include_inbound_ports: String,
    /// Inbound ports never captured (15021 and 15090 are always added).
    #[arg(long, default_value = "")]
    exclude_inbound_ports: String,
    /// Outbound ports never captured.
    #[arg(long, default_value = "")]
    exclude_outbound_ports: String,
    /// Outbound IPv4 CIDRs to capture, comma-separated, or `*` for all.
    #[arg(long, default_value = "*")]
    include_outbound_ip_ranges: String,
    /// Outbound IPv4 CIDRs never captured.
    #[arg(long, default_value = "")]
    exclude_outbound_ip_ranges: String,
    /// Print the iptables-restore input instead of applying it.
    #[arg(long)]
    dry_run: bool,
}

/// Names the flag in a parse error.
fn field<T>(flag: &str, r: Result<T, String>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

fn options(a: &ProxyInitArgs) -> anyhow::Result<CaptureOptions> {
    let mut o = CaptureOptions {
        proxy_uid: a.proxy_uid,
        proxy_gid: a.proxy_gid,
        outbound_port: a.outbound_port,
        inbound_port: a.inbound_port,
        include_inbound_ports: field(
            "include-inbound-ports",
            capture::parse_port_selection(&a.include_inbound_ports),
        )?,
        exclude_outbound_ports: field(
            "exclude-outbound-ports",
            capture::parse_port_list(&a.exclude_outbound_ports),
        )?,
        include_outbound_ip_ranges: field(
            "include-outbound-ip-ranges",
            capture::parse_cidr_selection(&a.include_outbound_ip_ranges),
        )?,
        exclude_outbound_ip_ranges: field(
            "exclude-outbound-ip-ranges",
            capture::parse_cidr_list(&a.exclude_outbound_ip_ranges),
        )?,
        ..CaptureOptions::default()
    };
    o.exclude_inbound_ports.extend(field(
        "exclude-inbound-ports",
        capture::parse_port_list(&a.exclude_inbound_ports),
    )?);
    o.exclude_inbound_ports.sort_unstable();
    o.exclude_inbound_ports.dedup();
    if let capture::Selection::Only(ports) = &mut o.include_inbound_ports {
        ports.retain(|p| !o.exclude_inbound_ports.contains(p));
    }
    Ok(o)
}

/// The first restore program found on PATH.
fn find_restore_program() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for program in RESTORE_PROGRAMS {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(program);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "iptables is not installed: none of {} was found on PATH; install iptables \
         (Debian: `apt-get install iptables`; in the Trellis repository: `make setup`)",
        RESTORE_PROGRAMS.join(", ")
    )
}

fn apply(rules: &str) -> anyhow::Result<()> {
    let program = find_restore_program()?;
    let shown = program.display().to_string();
    let mut child = Command::new(&program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let mut stdin = child
        .stdin
        .take()
        .context("the stdin of iptables-restore")?;
    let written = stdin.write_all(rules.as_bytes());
    drop(stdin);
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {} (the init container needs NET_ADMIN and NET_RAW)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.with_context(|| format!("writing the rules to {shown}"))?;
    Ok(())
}

pub fn run(args: ProxyInitArgs) -> ExitCode {
    let result = options(&args).and_then(|o| {
        let rules = o.iptables_restore_input();
        if args.dry_run {
            print!("{rules}");
            Ok(())
        } else {
            apply(&rules)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trellis proxy-init: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use trellis_inject::capture;
    use trellis_translate::interception;

    /// proxy-init's iptables and the translator's listeners agree on the
    /// capture ports and on the source the inbound passthrough connects from.
    #[test]
    fn capture_and_translation_share_one_contract() {
        assert_eq!(capture::OUTBOUND_CAPTURE_PORT, interception::OUTBOUND_PORT);
        assert_eq!(capture::INBOUND_CAPTURE_PORT, interception::INBOUND_PORT);
        assert_eq!(
            capture::INBOUND_PASSTHROUGH_SOURCE.to_string(),
            interception::INBOUND_PASSTHROUGH_SOURCE
        );
    }
}
