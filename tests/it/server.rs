//! Listener behaviour: TLS with HTTP/2, health, idle timeout, shutdown.

use crate::support::{Harness, Opts};

#[tokio::test]
async fn health_and_readiness() {
    let h = Harness::start().await;
    let c = h.client();
    assert_eq!(
        c.get(format!("{}/healthz", h.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let res = c.get(format!("{}/readyz", h.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["oidc"], "ok");
    assert_eq!(v["store"], "ok");
}

#[tokio::test]
async fn readiness_reports_an_unreachable_idp() {
    let extra = "[[rule]]\npolicy = \"public\"\n";
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[oidc]\nissuer = \"http://127.0.0.1:9/\"\nclient_id = \"x\"\n[session]\ncookie_secure = false\n{extra}"
    );
    let gw = crate::support::start_gateway_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        &toml,
    )
    .await;
    let base = format!("http://{}", gw.addr);
    let res = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.text().await.unwrap().contains("identity provider"));
    // A login attempt against the dead IdP: a clear 503 page, not a bare 500.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/oauth2/start?rd=/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("identity provider cannot be reached"));
}

#[tokio::test]
async fn tls_with_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let h = Harness::start_with(Opts {
        server: format!("tls_cert = {:?}\ntls_key = {:?}", cert_path, key_path),
        ..Opts::default()
    })
    .await;
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    for h2 in [true, false] {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", h.gw.addr);
        b = if h2 {
            b.http2_prior_knowledge()
        } else {
            b.http1_only()
        };
        let res = b
            .build()
            .unwrap()
            .get(format!("https://localhost:{}/healthz", h.gw.addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let want = if h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(res.version(), want);
    }
}

#[tokio::test]
async fn h2c_on_the_plain_port() {
    let h = Harness::start().await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = c.get(format!("{}/healthz", h.base)).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let h = Harness::start().await;
    let addr = h.gw.addr;
    h.gw.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Sends one keep-alive request on a raw connection and reads the answer.
async fn one_request(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    s
}

/// Reads until the server closes the connection; panics after `limit`.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: std::time::Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("unexpected bytes after the answer: {:?}", &buf[..n]),
        Err(_) => panic!("connection still open after {limit:?}"),
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let h = Harness::start_with(Opts {
        server: "idle_timeout = \"1s\"".into(),
        ..Opts::default()
    })
    .await;
    let started = std::time::Instant::now();
    let mut s = one_request(h.gw.addr).await;
    closed_within(&mut s, std::time::Duration::from_secs(5)).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "closed before the idle timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections() {
    let h = Harness::start().await;
    let mut s = one_request(h.gw.addr).await;
    let gw = h.gw;
    let done = tokio::spawn(gw.shutdown());
    closed_within(&mut s, std::time::Duration::from_secs(5)).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), done)
        .await
        .expect("drained")
        .unwrap();
}
