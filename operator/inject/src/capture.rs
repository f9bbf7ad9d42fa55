//! Traffic capture: the options `trellis proxy-init` takes, and the iptables
//! rule set (nat table) they stand for. Pure: the command runs the rules.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Envoy's outbound capture listener.
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
/// Envoy's inbound capture listener.
pub const INBOUND_CAPTURE_PORT: u16 = 15006;
/// The proxy's uid and gid: its own traffic is never captured.
pub const PROXY_UID: u32 = 1337;
/// Sidecar health (readiness) port, never captured.
pub const HEALTH_PORT: u16 = 15021;
/// Sidecar Prometheus metrics port, never captured.
pub const METRICS_PORT: u16 = 15090;
/// The source address of the proxy's inbound passthrough connections to the
/// app (the translator binds its passthrough cluster there, as Istio does).
pub const INBOUND_PASSTHROUGH_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// Which ports or ranges a rule applies to: all, or a list (possibly empty: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<T> {
    All,
    Only(Vec<T>),
}

/// An IPv4 CIDR (`10.0.0.0/8`; a bare address is a /32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Everything `trellis proxy-init` needs to build the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub include_inbound_ports: Selection<u16>,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub include_outbound_ip_ranges: Selection<Ipv4Cidr>,
    pub exclude_outbound_ip_ranges: Vec<Ipv4Cidr>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            proxy_uid: PROXY_UID,
            proxy_gid: PROXY_UID,
            outbound_port: OUTBOUND_CAPTURE_PORT,
            inbound_port: INBOUND_CAPTURE_PORT,
            include_inbound_ports: Selection::All,
            exclude_inbound_ports: vec![HEALTH_PORT, METRICS_PORT],
            exclude_outbound_ports: Vec::new(),
            include_outbound_ip_ranges: Selection::All,
            exclude_outbound_ip_ranges: Vec::new(),
        }
    }
}

/// Parses a comma-separated port list (`"8080, 9090"`); `"*"` means all.
pub fn parse_port_selection(value: &str) -> Result<Selection<u16>, String> {
    if value.trim() == "*" {
        return Ok(Selection::All);
    }
    parse_port_list(value).map(Selection::Only)
}

/// Parses a comma-separated port list; empty items are ignored.
pub fn parse_port_list(value: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<u16>() {
            Ok(p) if p != 0 => ports.push(p),
            _ => return Err(format!("{item:?} is not a port (1-65535)")),
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// Parses a comma-separated CIDR list; `"*"` means all. IPv6 ranges are
/// skipped: capture is IPv4 only, so IPv6 traffic is never redirected anyway.
pub fn parse_cidr_selection(value: &str) -> Result<Selection<Ipv4Cidr>, String> {
    if value.trim() == "*" {
        return Ok(Selection::All);
    }
    parse_cidr_list(value).map(Selection::Only)
}

/// Parses a comma-separated IPv4 CIDR list (IPv6 entries skipped, see above).
pub fn parse_cidr_list(value: &str) -> Result<Vec<Ipv4Cidr>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (addr, prefix) = item.split_once('/').unwrap_or((item, "32"));
        if addr.contains(':') {
            if addr.parse::<std::net::Ipv6Addr>().is_ok()
                && prefix.parse::<u8>().is_ok_and(|p| p <= 128)
            {
                continue;
            }
            return Err(format!("{item:?} is not a CIDR"));
        }
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{item:?} is not a CIDR"))?;
        let prefix: u8 = match prefix.parse() {
            Ok(p) if p <= 32 => p,
            _ => return Err(format!("{item:?} has a prefix length outside 0-32")),
        };
        out.push(Ipv4Cidr { addr, prefix });
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

impl CaptureOptions {
    /// The `trellis proxy-init` arguments that reproduce these options.
    pub fn to_args(&self) -> Vec<String> {
        let sel_ports = |s: &Selection<u16>| match s {
            Selection::All => "*".to_string(),
            Selection::Only(p) => join(p),
        };
        let sel_cidrs = |s: &Selection<Ipv4Cidr>| match s {
            Selection::All => "*".to_string(),
            Selection::Only(c) => join(c),
        };
        let mut args = vec![
            "proxy-init".to_string(),
            format!("--proxy-uid={}", self.proxy_uid),
            format!("--proxy-gid={}", self.proxy_gid),
            format!("--outbound-port={}", self.outbound_port),
            format!("--inbound-port={}", self.inbound_port),
            format!(
                "--include-inbound-ports={}",
                sel_ports(&self.include_inbound_ports)
            ),
            format!(
                "--exclude-inbound-ports={}",
                join(&self.exclude_inbound_ports)
            ),
            format!(
                "--exclude-outbound-ports={}",
                join(&self.exclude_outbound_ports)
            ),
            format!(
                "--include-outbound-ip-ranges={}",
                sel_cidrs(&self.include_outbound_ip_ranges)
            ),
            format!(
                "--exclude-outbound-ip-ranges={}",
                join(&self.exclude_outbound_ip_ranges)
            ),
        ];
        args.retain(|a| !a.ends_with('='));
        args
    }

    /// The nat table rules as `iptables` argument lists (each without the
    /// `iptables` program name), in order. Chains are declared first.
    ///
    /// Inbound (PREROUTING): excluded ports return, the rest (or the included
    /// ports) go to the inbound listener. Outbound (OUTPUT): excluded ports
    /// return; the proxy's traffic to a non-loopback local address is inbound
    /// traffic of this pod (redirected to the inbound listener); other local
    /// traffic of the app and all other traffic of the proxy return, so the
    /// proxy never loops; then excluded ranges return and the rest (or the
    /// included ranges) go to the outbound listener.
    pub fn iptables_commands(&self) -> Vec<Vec<String>> {
        let mut rules: Vec<String> = vec![
            "-t nat -N TRELLIS_INBOUND".into(),
            "-t nat -N TRELLIS_IN_REDIRECT".into(),
            "-t nat -N TRELLIS_OUTPUT".into(),
            "-t nat -N TRELLIS_REDIRECT".into(),
            format!(
                "-t nat -A TRELLIS_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
                self.inbound_port
            ),
            format!(
                "-t nat -A TRELLIS_REDIRECT -p tcp -j REDIRECT --to-ports {}",
                self.outbound_port
            ),
            "-t nat -A PREROUTING -p tcp -j TRELLIS_INBOUND".into(),
        ];
        match &self.include_inbound_ports {
            Selection::All => {
                for p in &self.exclude_inbound_ports {
                    rules.push(format!(
                        "-t nat -A TRELLIS_INBOUND -p tcp --dport {p} -j RETURN"
                    ));
                }
                rules.push("-t nat -A TRELLIS_INBOUND -p tcp -j TRELLIS_IN_REDIRECT".into());
            }
            Selection::Only(ports) => {
                for p in ports
                    .iter()
                    .filter(|p| !self.exclude_inbound_ports.contains(p))
                {
                    rules.push(format!(
                        "-t nat -A TRELLIS_INBOUND -p tcp --dport {p} -j TRELLIS_IN_REDIRECT"
                    ));
                }
            }
        }
        rules.push("-t nat -A OUTPUT -p tcp -j TRELLIS_OUTPUT".into());
        // The proxy's inbound passthrough (ports no service declares) connects
        // to the app from this address: delivered, not captured again (a loop).
        rules.push(format!(
            "-t nat -A TRELLIS_OUTPUT -s {INBOUND_PASSTHROUGH_SOURCE}/32 -o lo -j RETURN"
        ));
        for p in &self.exclude_outbound_ports {
            rules.push(format!(
                "-t nat -A TRELLIS_OUTPUT -p tcp --dport {p} -j RETURN"
            ));
        }
        let (uid, gid) = (self.proxy_uid, self.proxy_gid);
        rules.extend([
            format!("-t nat -A TRELLIS_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner {uid} -j TRELLIS_IN_REDIRECT"),
            format!("-t nat -A TRELLIS_OUTPUT -o lo -m owner ! --uid-owner {uid} -j RETURN"),
            format!("-t nat -A TRELLIS_OUTPUT -m owner --uid-owner {uid} -j RETURN"),
            format!("-t nat -A TRELLIS_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner {gid} -j TRELLIS_IN_REDIRECT"),
            format!("-t nat -A TRELLIS_OUTPUT -o lo -m owner ! --gid-owner {gid} -j RETURN"),
            format!("-t nat -A TRELLIS_OUTPUT -m owner --gid-owner {gid} -j RETURN"),
            "-t nat -A TRELLIS_OUTPUT -d 127.0.0.1/32 -j RETURN".into(),
        ]);
        for c in &self.exclude_outbound_ip_ranges {
            rules.push(format!("-t nat -A TRELLIS_OUTPUT -d {c} -j RETURN"));
        }
        match &self.include_outbound_ip_ranges {
            Selection::All => rules.push("-t nat -A TRELLIS_OUTPUT -j TRELLIS_REDIRECT".into()),
            Selection::Only(ranges) => {
                for c in ranges {
                    rules.push(format!(
                        "-t nat -A TRELLIS_OUTPUT -d {c} -j TRELLIS_REDIRECT"
                    ));
                }
            }
        }
        rules
            .into_iter()
            .map(|r| r.split(' ').map(str::to_string).collect())
            .collect()
    }

    /// The same rules as `iptables-restore` input replacing the whole nat
    /// table of the pod's network namespace: applying it twice (an init
    /// container restarted in the same sandbox) gives the same table.
    pub fn iptables_restore_input(&self) -> String {
        let mut out = String::from(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
        );
        for cmd in self.iptables_commands() {
            // Every command starts with `-t nat`; restore input omits it.
            let rest = &cmd[2..];
            if rest[0] == "-N" {
                let _ = writeln!(out, ":{} - [0:0]", rest[1]);
            } else {
                let _ = writeln!(out, "{}", rest.join(" "));
            }
        }
        out.push_str("COMMIT\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(o: &CaptureOptions) -> Vec<String> {
        o.iptables_commands().iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn default_rules_redirect_everything_except_proxy_and_health() {
        let l = lines(&CaptureOptions::default());
        assert!(
            l.contains(&"-t nat -A TRELLIS_REDIRECT -p tcp -j REDIRECT --to-ports 15001".into())
        );
        assert!(
            l.contains(&"-t nat -A TRELLIS_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006".into())
        );
        assert!(l.contains(&"-t nat -A TRELLIS_INBOUND -p tcp --dport 15021 -j RETURN".into()));
        assert!(l.contains(&"-t nat -A TRELLIS_INBOUND -p tcp --dport 15090 -j RETURN".into()));
        assert!(l.contains(&"-t nat -A TRELLIS_OUTPUT -m owner --uid-owner 1337 -j RETURN".into()));
        // The catch-all redirect comes after every RETURN of the proxy's traffic.
        let uid = l
            .iter()
            .position(|r| r.ends_with("--uid-owner 1337 -j RETURN"))
            .unwrap();
        let all = l
            .iter()
            .position(|r| r == "-t nat -A TRELLIS_OUTPUT -j TRELLIS_REDIRECT")
            .unwrap();
        assert!(uid < all);
    }

    #[test]
    fn included_ports_and_ranges_restrict_capture() {
        let o = CaptureOptions {
            include_inbound_ports: Selection::Only(vec![8080, 15021]),
            include_outbound_ip_ranges: Selection::Only(parse_cidr_list("10.0.0.0/8").unwrap()),
            exclude_outbound_ip_ranges: parse_cidr_list("10.1.0.0/16").unwrap(),
            exclude_outbound_ports: vec![5432],
            ..CaptureOptions::default()
        };
        let l = lines(&o);
        assert!(l.contains(
            &"-t nat -A TRELLIS_INBOUND -p tcp --dport 8080 -j TRELLIS_IN_REDIRECT".into()
        ));
        assert!(
            !l.iter()
                .any(|r| r.contains("--dport 15021 -j TRELLIS_IN_REDIRECT"))
        );
        assert!(!l.contains(&"-t nat -A TRELLIS_OUTPUT -j TRELLIS_REDIRECT".into()));
        assert!(l.contains(&"-t nat -A TRELLIS_OUTPUT -d 10.0.0.0/8 -j TRELLIS_REDIRECT".into()));
        assert!(l.contains(&"-t nat -A TRELLIS_OUTPUT -d 10.1.0.0/16 -j RETURN".into()));
        assert!(l.contains(&"-t nat -A TRELLIS_OUTPUT -p tcp --dport 5432 -j RETURN".into()));
    }

    #[test]
    fn restore_input_declares_chains_and_commits() {
        let s = CaptureOptions::default().iptables_restore_input();
        assert!(s.starts_with("*nat\n"));
        assert!(s.contains(":TRELLIS_OUTPUT - [0:0]\n"));
        assert!(s.contains("-A OUTPUT -p tcp -j TRELLIS_OUTPUT\n"));
        assert!(s.ends_with("COMMIT\n"));
    }

    #[test]
    fn parsers_reject_garbage_and_accept_lists() {
        assert_eq!(parse_port_list(" 80, 443,80 ").unwrap(), vec![80, 443]);
        assert!(parse_port_list("80,x").is_err());
        assert!(parse_port_list("0").is_err());
        assert!(parse_port_list("70000").is_err());
        assert_eq!(parse_port_selection("*").unwrap(), Selection::All);
        assert_eq!(parse_port_selection("").unwrap(), Selection::Only(vec![]));
        assert_eq!(
            parse_cidr_list("10.0.0.1,fd00::/8").unwrap(),
            vec![Ipv4Cidr {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix: 32
            }]
        );
        assert!(parse_cidr_list("10.0.0.0/33").is_err());
        assert!(parse_cidr_list("nope").is_err());
    }

    #[test]
    fn args_round_trip_through_parsers() {
        let o = CaptureOptions {
            include_outbound_ip_ranges: Selection::Only(
                parse_cidr_list("10.0.0.0/8,192.168.0.0/16").unwrap(),
            ),
            exclude_outbound_ports: vec![22, 5432],
            ..CaptureOptions::default()
        };
        let args = o.to_args();
        assert!(
            args.contains(&"--include-outbound-ip-ranges=10.0.0.0/8,192.168.0.0/16".to_string())
        );
        assert!(args.contains(&"--exclude-outbound-ports=22,5432".to_string()));
        assert!(args.contains(&"--exclude-inbound-ports=15021,15090".to_string()));
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--exclude-outbound-ip-ranges"))
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = parse_port_selection(&s);
            let _ = parse_cidr_selection(&s);
        }
    }
}
