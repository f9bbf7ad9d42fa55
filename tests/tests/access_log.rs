//! MeshConfig's access log on real Envoy: with `accessLogFile` set, the sidecar
//! writes a line per HTTP request and per TCP connection to the file, in the
//! default text line, a custom text line, or JSON.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use trellis_api::mesh::AccessLogEncoding;
use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{plain_workload, service, start_client_with_tcp, tcp_service};
use trellis_e2e::{HttpRequest, Upstream};
use trellis_model::{AccessLog, MeshSettings, Resource};

const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 226);
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 227);

/// Service `logged` (HTTP) and `ledger` (TCP 7000), both served by `a`, with
/// the access log `log`.
fn scenario(a: SocketAddr, log: AccessLog) -> Vec<Resource> {
    vec![
        service("logged", "logged"),
        tcp_service("ledger", "logged", 7000),
        plain_workload("a", "logged", a, &[]),
        Resource::MeshSettings(MeshSettings {
            access_log: Some(log),
            ..MeshSettings::default()
        }),
    ]
}

/// The lines of `path` once one contains `needle` (Envoy flushes access logs
/// about once a second), waiting at most 20 s.
fn lines_with(path: &Path, needle: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text.lines().map(str::to_string).collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no access log line with {needle:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_sidecar_logs_requests_and_tcp_connections_in_the_default_line() {
    let upstream = Upstream::echo("a", UPSTREAM);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog {
        path: path.to_str().unwrap().to_string(),
        encoding: AccessLogEncoding::Text,
        format: None,
    };
    let client = start_client_with_tcp(
        &test_ca(),
        scenario(upstream.addr(), log),
        CLIENT,
        &[("ledger", 7000)],
    );
    let r = HttpRequest::get("/hello?x=1")
        .host("logged")
        .header("x-request-id", "req-logged-1")
        .send(client.listen)
        .expect("request");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let lines = lines_with(&path, "req-logged-1");
    let line = lines.iter().find(|l| l.contains("req-logged-1")).unwrap();
    assert!(line.contains("\"GET /hello?x=1 HTTP/1.1\" 200"), "{line}");
    assert!(
        line.contains("outbound|80||logged.shop.svc.cluster.local"),
        "{line}"
    );
    assert!(line.contains("\"logged\""), "the authority: {line}");

    // A TCP connection through the local TCP port: one line for it, after it closes.
    let r = HttpRequest::get("/over-tcp")
        .host("ledger")
        .send(client.tcp[0])
        .expect("request over TCP");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let cluster = "outbound|7000||ledger.shop.svc.cluster.local";
    let lines = lines_with(&path, cluster);
    let tcp = lines.iter().find(|l| l.contains(cluster)).unwrap();
    // No HTTP fields on a TCP connection: Envoy writes "-".
    assert!(tcp.contains("\"- - -\""), "{tcp}");
    assert!(!tcp.contains("over-tcp"), "{tcp}");
}

#[test]
fn custom_text_and_json_lines() {
    let upstream = Upstream::echo("a", UPSTREAM);
    let dir = tempfile::tempdir().unwrap();

    let text_path = dir.path().join("text.log");
    let text = AccessLog {
        path: text_path.to_str().unwrap().to_string(),
        encoding: AccessLogEncoding::Text,
        format: Some("custom %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%".into()),
    };
    let client = start_client_with_tcp(&test_ca(), scenario(upstream.addr(), text), CLIENT, &[]);
    let r = HttpRequest::get("/text").host("logged").send(client.listen);
    assert_eq!(r.expect("request").status, 200);
    let lines = lines_with(&text_path, "/text");
    assert!(
        lines.contains(&"custom GET /text 200".to_string()),
        "{lines:?}"
    );
    drop(client);

    let json_path = dir.path().join("json.log");
    let json = AccessLog {
        path: json_path.to_str().unwrap().to_string(),
        encoding: AccessLogEncoding::Json,
        format: Some(
            r#"{"path": "%REQ(:PATH)%", "code": "%RESPONSE_CODE%", "cluster": "%UPSTREAM_CLUSTER%", "mesh": {"team": "shop"}}"#
                .into(),
        ),
    };
    let client = start_client_with_tcp(&test_ca(), scenario(upstream.addr(), json), CLIENT, &[]);
    let r = HttpRequest::get("/json").host("logged").send(client.listen);
    assert_eq!(r.expect("request").status, 200);
    let lines = lines_with(&json_path, "/json");
    let entry: serde_json::Value = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .find(|v| v["path"] == "/json")
        .unwrap();
    assert!(entry["code"] == 200 || entry["code"] == "200", "{entry}");
    assert_eq!(
        entry["cluster"],
        "outbound|80||logged.shop.svc.cluster.local"
    );
    assert_eq!(entry["mesh"]["team"], "shop", "{entry}");
}
