//! `trellis proxy-init` for real: the binary installs its rules in network
//! namespaces this test creates, and real sockets show where connections land.
//!
//! Two namespaces joined by a veth pair stand for two pods: `pod`
//! (10.251.<n>.1, where proxy-init runs) and `peer` (10.251.<n>.2). Every
//! address used is one the test assigned to its own namespaces. Helper
//! processes (listeners, clients) are this test executable re-run inside a
//! namespace (`ip netns exec`) in the role named by `TRELLIS_NETNS_ROLE`; they
//! are started with `setpriv --pdeathsig KILL` and killed by PID in a guard.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const ROLE_ENV: &str = "TRELLIS_NETNS_ROLE";
const TAG_ENV: &str = "TRELLIS_NETNS_TAG";
const ARG_ENV: &str = "TRELLIS_NETNS_ARG";
const APP_PORT: u16 = 8080;

mod netns_support;
use netns_support::{Netns, require, run, trellis};

/// A helper process killed by PID on drop.
struct Helper {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The two pods of a test and their addresses.
struct Pods {
    pod: Netns,
    peer: Netns,
    pod_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
}

fn two_pods() -> Pods {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let base = format!("trellis-pi-{}-{n}", std::process::id());
    let pod = Netns::create(format!("{base}-pod"));
    let peer = Netns::create(format!("{base}-peer"));
    // The veth pair is created inside `pod`, so its names cannot clash with the host's.
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
    ]);
    let subnet = 10 + (std::process::id() % 200) as u8 + n as u8;
    let pod_ip = Ipv4Addr::new(10, 251, subnet, 1);
    let peer_ip = Ipv4Addr::new(10, 251, subnet, 2);
    for (ns, ip) in [(&pod, pod_ip), (&peer, peer_ip)] {
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
    }
    Pods {
        pod,
        peer,
        pod_ip,
        peer_ip,
    }
}

/// Starts this executable as a helper in `ns` (optionally as `uid`).
fn helper(ns: &Netns, uid: Option<u32>, role: &str, tag: &str, arg: &str) -> Helper {
    let exe = std::env::current_exe().expect("the test executable");
    let exe = exe.to_str().expect("a UTF-8 path");
    let mut args = vec!["--pdeathsig".to_string(), "KILL".to_string()];
    if let Some(uid) = uid {
        args.extend([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ]);
    }
    args.extend(
        [
            exe,
            "--exact",
            "netns_helper",
            "--nocapture",
            "--test-threads=1",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = ns.exec("setpriv", &args);
    cmd.env(ROLE_ENV, role)
        .env(TAG_ENV, tag)
        .env(ARG_ENV, arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    Helper {
        child,
        lines: BufReader::new(stdout),
    }
}

impl Helper {
    /// The next line the helper printed with the `RESULT ` prefix (libtest prints its own lines too).
    fn result(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.lines.read_line(&mut line).expect("reading a helper");
            assert!(n > 0, "the helper ended without a result");
            // libtest may print `test netns_helper ... ` on the same line first.
            if let Some(at) = line.find("RESULT ") {
                return line[at + "RESULT ".len()..].trim_end().to_string();
            }
        }
    }
}

/// Listeners on `ports` in `ns`, each answering every connection with
/// `<tag>:<listening port> orig=<SO_ORIGINAL_DST or none>`.
fn listeners(ns: &Netns, tag: &str, ports: &[u16]) -> Helper {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut h = helper(ns, None, "listen", tag, &ports.join(","));
    assert_eq!(h.result(), "ready", "listeners in {}", ns.name);
    h
}

/// Connects from `ns` (as `uid`) to `to` and returns what the listener answered.
fn connect(ns: &Netns, uid: Option<u32>, to: SocketAddrV4) -> String {
    let mut h = helper(ns, uid, "connect", "", &to.to_string());
    h.result()
}

fn proxy_init(ns: &Netns, extra: &[&str]) {
    let mut args = vec!["proxy-init"];
    args.extend_from_slice(extra);
    run(&mut ns.exec(trellis(), &args));
}

#[test]
fn outbound_goes_to_15001_inbound_to_15006_and_the_proxy_uid_is_not_captured() {
    require("ip");
    require("setpriv");
    require("iptables-restore");
    let pods = two_pods();
    let _pod_side = listeners(&pods.pod, "pod", &[15001, 15006, APP_PORT, 15021]);
    let _peer_side = listeners(&pods.peer, "peer", &[APP_PORT]);
    let peer_app = SocketAddrV4::new(pods.peer_ip, APP_PORT);
    let pod_app = SocketAddrV4::new(pods.pod_ip, APP_PORT);

    // Before proxy-init, connections reach their destination.
    assert_eq!(
        connect(&pods.pod, None, peer_app),
        "peer:8080 orig=none",
        "control: no capture yet"
    );
    assert_eq!(connect(&pods.peer, None, pod_app), "pod:8080 orig=none");

    proxy_init(&pods.pod, &[]);
    // Applying it again (a restarted init container) gives the same table.
    let table = run(&mut pods.pod.exec("iptables-save", &["-t", "nat"]));
    proxy_init(&pods.pod, &[]);
    let again = run(&mut pods.pod.exec("iptables-save", &["-t", "nat"]));
    let rules = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with('-'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(rules(&table), rules(&again));
    assert!(
        rules(&table).contains(&"-A TRELLIS_REDIRECT -p tcp -j REDIRECT --to-ports 15001".into()),
        "{table}"
    );

    // The app's outbound connection lands on Envoy's outbound port, and the
    // original destination is recoverable there.
    assert_eq!(
        connect(&pods.pod, None, peer_app),
        format!("pod:15001 orig={peer_app}")
    );
    // Inbound connections to the app port land on the inbound port.
    assert_eq!(
        connect(&pods.peer, None, pod_app),
        format!("pod:15006 orig={pod_app}")
    );
    // The proxy (uid 1337) reaches the real destination: no loop.
    assert_eq!(
        connect(&pods.pod, Some(1337), peer_app),
        "peer:8080 orig=none"
    );
    // The proxy calling its own pod's address goes to the inbound listener (the
    // inbound policy applies); the app calling itself is not captured.
    assert_eq!(
        connect(&pods.pod, Some(1337), pod_app),
        format!("pod:15006 orig={pod_app}")
    );
    assert_eq!(connect(&pods.pod, None, pod_app), "pod:8080 orig=none");
    // The proxy's inbound passthrough (from 127.0.0.6) is delivered to the app,
    // not captured into the inbound listener again (a loop).
    let mut h = helper(
        &pods.pod,
        Some(1337),
        "connect-from",
        "",
        &format!("127.0.0.6 {pod_app}"),
    );
    assert_eq!(h.result(), "pod:8080 orig=none");
    // Another non-root uid is captured like the app.
    assert_eq!(
        connect(&pods.pod, Some(1000), peer_app),
        format!("pod:15001 orig={peer_app}")
    );
    // The health port is never captured.
    let health = SocketAddrV4::new(pods.pod_ip, 15021);
    assert_eq!(connect(&pods.peer, None, health), "pod:15021 orig=none");
}

#[test]
fn excluded_ports_and_ranges_from_flags_are_not_captured() {
    require("ip");
    require("setpriv");
    require("iptables-restore");
    let pods = two_pods();
    let _pod_side = listeners(&pods.pod, "pod", &[15001, 15006, APP_PORT, 9000]);
    let _peer_side = listeners(&pods.peer, "peer", &[APP_PORT, 5432]);
    proxy_init(
        &pods.pod,
        &[
            "--exclude-outbound-ports=5432",
            "--exclude-inbound-ports=9000",
        ],
    );
    let to_peer = |port| SocketAddrV4::new(pods.peer_ip, port);
    let to_pod = |port| SocketAddrV4::new(pods.pod_ip, port);
    assert_eq!(
        connect(&pods.pod, None, to_peer(5432)),
        "peer:5432 orig=none"
    );
    assert_eq!(
        connect(&pods.pod, None, to_peer(APP_PORT)),
        format!("pod:15001 orig={}", to_peer(APP_PORT))
    );
    assert_eq!(
        connect(&pods.peer, None, to_pod(9000)),
        "pod:9000 orig=none"
    );
    assert_eq!(
        connect(&pods.peer, None, to_pod(APP_PORT)),
        format!("pod:15006 orig={}", to_pod(APP_PORT))
    );

    // Excluding the peer's range: nothing to it is captured any more.
    let range = format!("--exclude-outbound-ip-ranges={}/32", pods.peer_ip);
    proxy_init(&pods.pod, &[&range]);
    assert_eq!(
        connect(&pods.pod, None, to_peer(APP_PORT)),
        "peer:8080 orig=none"
    );
}

#[test]
fn missing_iptables_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(trellis())
        .arg("proxy-init")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("iptables is not installed")
            && stderr.contains("iptables-restore")
            && stderr.contains("make setup"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_name_the_flag() {
    let out = Command::new(trellis())
        .args([
            "proxy-init",
            "--dry-run",
            "--exclude-outbound-ip-ranges=10.0.0.0/40",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--exclude-outbound-ip-ranges") && stderr.contains("10.0.0.0/40"),
        "{stderr}"
    );
    let out = Command::new(trellis())
        .args(["proxy-init", "--dry-run", "--exclude-inbound-ports=8081"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rules = String::from_utf8_lossy(&out.stdout);
    assert!(
        rules.contains("-A TRELLIS_INBOUND -p tcp --dport 8081 -j RETURN"),
        "{rules}"
    );
}

/// Not a test on its own: the body of the helper processes (see the module docs).
#[test]
fn netns_helper() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let tag = std::env::var(TAG_ENV).unwrap_or_default();
    let arg = std::env::var(ARG_ENV).unwrap_or_default();
    match role.as_str() {
        "listen" => listen(&tag, &arg),
        "connect" => {
            let to: SocketAddr = arg.parse().expect("an address");
            let answer = connect_once(to);
            println!("RESULT {answer}");
        }
        "connect-from" => {
            let (from, to) = arg.split_once(' ').expect("source and destination");
            let answer = connect_from(
                from.parse().expect("a source"),
                to.parse().expect("an address"),
            );
            println!("RESULT {answer}");
        }
        other => panic!("unknown helper role {other}"),
    }
}

fn listen(tag: &str, ports: &str) {
    let mut handles = Vec::new();
    for port in ports.split(',') {
        let port: u16 = port.parse().expect("a port");
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .unwrap_or_else(|e| panic!("binding port {port}: {e}"));
        let tag = tag.to_string();
        handles.push(std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let orig = socket2::SockRef::from(&stream)
                    .original_dst_v4()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .filter(|a| a.port() != port)
                    .map_or("none".to_string(), |a| a.to_string());
                let _ = writeln!(stream, "{tag}:{port} orig={orig}");
            }
        }));
    }
    println!("RESULT ready");
    std::io::stdout().flush().unwrap();
    for h in handles {
        let _ = h.join();
    }
}

/// One connection from source address `from` (bound first, as Envoy binds a
/// cluster's upstream connections) to `to`: what the listener there answered.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        let connecting = tokio::time::timeout(Duration::from_secs(5), socket.connect(to));
        let mut stream = match connecting.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return format!("error: {e}"),
            Err(_) => return "error: timed out".to_string(),
        };
        let mut answer = String::new();
        let reading = stream.read_to_string(&mut answer);
        let _ = tokio::time::timeout(Duration::from_secs(5), reading).await;
        answer.trim().to_string()
    })
}

fn connect_once(to: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                return answer.trim().to_string();
            }
            Err(e) if Instant::now() > deadline => return format!("error: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
