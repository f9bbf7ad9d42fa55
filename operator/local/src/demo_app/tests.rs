use super::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(name: &str, downstreams: Vec<Downstream>) -> DemoAppConfig {
    DemoAppConfig {
        name: name.into(),
        version: "v1".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        downstreams,
        failure_rate: 0.0,
        failure_status: 503,
        latency: Duration::ZERO,
        seed: 1,
        http_proxy: None,
    }
}

async fn start(config: DemoAppConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(config, listener, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

fn downstream(addr: SocketAddr) -> Downstream {
    Downstream::parse(&format!("http://{addr}/")).unwrap()
}

#[tokio::test]
async fn aggregates_downstream_answers() {
    let (email, _e) = start(config("email", vec![])).await;
    let (checkout, _c) = start(config("checkout", vec![downstream(email)])).await;
    let (status, body) = client::call(&downstream(checkout), None, Some("r1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"], "checkout");
    assert_eq!(body["calls"][0]["status"], 200);
    assert_eq!(body["calls"][0]["body"]["service"], "email");
    assert_eq!(body["calls"][0]["body"]["version"], "v1");
}

#[tokio::test]
async fn failure_rate_is_deterministic_and_propagates_as_502() {
    let mut failing = config("payment", vec![]);
    failing.failure_rate = 0.5;
    failing.seed = 42;
    let expected: Vec<bool> = (0..20).map(|i| rng::roll(42, i) < 0.5).collect();
    let (payment, _p) = start(failing).await;
    let mut seen = Vec::new();
    for _ in 0..20 {
        let (status, _) = client::call(&downstream(payment), None, None)
            .await
            .unwrap();
        assert!(status == 200 || status == 503, "{status}");
        seen.push(status == 503);
    }
    assert_eq!(seen, expected);
    assert!(seen.contains(&true) && seen.contains(&false));

    let mut always = config("payment", vec![]);
    always.failure_rate = 1.0;
    let (dead, _d) = start(always).await;
    let (checkout, _c) = start(config("checkout", vec![downstream(dead)])).await;
    let (status, body) = client::call(&downstream(checkout), None, None)
        .await
        .unwrap();
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["calls"][0]["status"], 503);
}

#[tokio::test]
async fn unreachable_downstream_is_reported_not_fatal() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (front, _f) = start(config("frontend", vec![downstream(closed)])).await;
    let (status, body) = client::call(&downstream(front), None, None).await.unwrap();
    assert_eq!(status, 502);
    assert!(
        body["calls"][0]["error"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{body}"
    );
}

/// Through a proxy the app sends an absolute-form request line and the
/// service's name as Host, which is what the sidecar routes on.
#[tokio::test]
async fn calls_through_http_proxy_with_absolute_url_and_host() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let captured = tokio::spawn(async move {
        let (mut s, _) = proxy.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"service":"cart","version":"v2"}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        String::from_utf8(head).unwrap()
    });
    let mut front = config(
        "frontend",
        vec![Downstream::parse("http://cart:8080/items").unwrap()],
    );
    front.http_proxy = Some(proxy_addr);
    let (addr, _f) = start(front).await;
    let (status, body) = client::call(&downstream(addr), None, None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["calls"][0]["body"]["version"], "v2");
    let head = captured.await.unwrap().to_lowercase();
    assert!(
        head.starts_with("get http://cart:8080/items http/1.1"),
        "{head}"
    );
    assert!(head.contains("host: cart:8080"), "{head}");
}

#[test]
fn invalid_failure_rate_is_refused() {
    let mut c = config("x", vec![]);
    c.failure_rate = 1.5;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("--failure-rate")
    );
}
