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
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    health_on(&mut s).await;
    s
}

/// Asks `/healthz` on an open connection and expects a 200.
async fn health_on(s: &mut tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
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

/// A gateway whose header-read timeout is 1 s and idle timeout `idle`.
async fn with_head_timeout(idle: &str) -> Harness {
    Harness::start_with(Opts {
        server: format!("header_read_timeout = \"1s\"\nidle_timeout = \"{idle}\""),
        ..Opts::default()
    })
    .await
}

#[tokio::test]
async fn a_request_head_trickled_byte_by_byte_is_cut_at_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let h = with_head_timeout("60s").await;
    let s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let started = std::time::Instant::now();
    // Slowloris: a new header line every 200 ms keeps the connection busy
    // (never idle) but the head never completes.
    let trickle = tokio::spawn(async move {
        wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .ok();
        for i in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-Pad-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(4),
        tokio::io::AsyncReadExt::read(&mut rd, &mut buf),
    )
    .await
    .expect("connection still open 4 s into a head that never completes");
    // Closed without an answer (or reset), after the timeout and not before.
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?} {:?}", &buf);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    trickle.abort();
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_cut_at_the_header_read_timeout() {
    let h = with_head_timeout("60s").await;
    let started = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    closed_within(&mut s, std::time::Duration::from_secs(4)).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}

#[tokio::test]
async fn keep_alive_waits_between_requests_fall_under_the_idle_timeout_not_the_head_timeout() {
    let h = with_head_timeout("3s").await;
    let mut s = one_request(h.gw.addr).await;
    // Longer than the header-read timeout, shorter than the idle timeout.
    tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
    health_on(&mut s).await;
    closed_within(&mut s, std::time::Duration::from_secs(6)).await;
}

#[tokio::test]
async fn a_slow_request_body_is_not_a_slow_head() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = with_head_timeout("60s").await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let body = b"logout_token=not-a-jwt";
    s.write_all(
        format!(
            "POST /oauth2/backchannel_logout HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The body takes twice the header-read timeout to arrive.
    for chunk in body.chunks(4) {
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        s.write_all(chunk).await.unwrap();
    }
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn an_http2_connection_quiet_between_requests_is_not_a_slow_head() {
    use http_body_util::{BodyExt, Empty};
    let h = with_head_timeout("60s").await;
    let tcp = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let get = || {
        http::Request::get(format!("http://{}/healthz", h.gw.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let res = send.send_request(get()).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
    // Quiet for longer than the header-read timeout: HTTP/2 is exempt.
    tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
    assert!(
        !driver.is_finished(),
        "the gateway closed the HTTP/2 connection"
    );
    let res = send.send_request(get()).await.unwrap();
    assert_eq!(res.status(), 200);
}

/// Issue 14: keep-alive PINGs are not activity. An HTTP/2 connection with no
/// open request is closed at the idle timeout even while the client pings.
#[tokio::test]
async fn an_http2_connection_that_only_pings_is_closed_at_the_idle_timeout() {
    use http_body_util::{BodyExt, Empty};
    let h = Harness::start_with(Opts {
        server: "idle_timeout = \"1s\"".into(),
        ..Opts::default()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(std::time::Duration::from_millis(200))
            .keep_alive_timeout(std::time::Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let started = std::time::Instant::now();
    let driver = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/healthz", h.gw.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
    // The client keeps pinging every 200 ms; the gateway still closes.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(6), driver).await;
    assert!(
        ended.is_ok(),
        "an HTTP/2 connection kept open by PINGs alone, {:?} after its last request",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "closed before the idle timeout: {:?}",
        started.elapsed()
    );
}

/// An HTTP/2 request that takes longer than the idle timeout is not cut.
#[tokio::test]
async fn an_http2_request_open_longer_than_the_idle_timeout_is_not_cut() {
    use http_body_util::{BodyExt, StreamBody};
    let h = Harness::start_with(Opts {
        server: "idle_timeout = \"1s\"".into(),
        ..Opts::default()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    // A back-channel logout whose body trickles in for 2.5 s: the request is
    // open (nothing moves for 500 ms at a time) for longer than the idle timeout.
    let chunks = futures_util::stream::unfold(0u8, |i| async move {
        if i == 5 {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let frame = hyper::body::Frame::data(bytes::Bytes::from_static(b"x"));
        Some((Ok::<_, std::convert::Infallible>(frame), i + 1))
    });
    let req = http::Request::post(format!("http://{}/oauth2/backchannel_logout", h.gw.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(StreamBody::new(Box::pin(chunks)))
        .unwrap();
    let started = std::time::Instant::now();
    let res = send.send_request(req).await.expect("an answer");
    assert_eq!(res.status(), 400);
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    res.into_body().collect().await.unwrap();
    assert!(!driver.is_finished());
}

/// A gateway allowing two connections per client, that trusts `trusted`.
async fn two_per_client(trusted: &str) -> Harness {
    Harness::start_with(Opts {
        server: format!("max_connections_per_client = 2\ntrusted_proxies = {trusted}"),
        ..Opts::default()
    })
    .await
}

/// Issue 14: one client address cannot hold more than
/// `server.max_connections_per_client` connections; the one over is closed
/// at accept, and its place comes back when one of the others closes.
#[tokio::test]
async fn connections_over_the_per_client_cap_are_closed_at_accept() {
    let h = two_per_client("[]").await;
    let first = one_request(h.gw.addr).await;
    let mut second = one_request(h.gw.addr).await;
    let mut third = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    closed_within(&mut third, std::time::Duration::from_secs(3)).await;
    // The connections it holds still work.
    health_on(&mut second).await;
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf).await {
            if buf[..n].starts_with(b"HTTP/1.1 200") {
                again = Some(s);
                break;
            }
        }
    }
    assert!(
        again.is_some(),
        "a closed connection's place under the per-client cap never came back"
    );
}

/// Peers in `trusted_proxies` (a front proxy's every request comes from its
/// one address) are exempt from the per-client cap.
#[tokio::test]
async fn trusted_proxies_are_exempt_from_the_per_client_cap() {
    let h = two_per_client("[\"127.0.0.1\"]").await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(one_request(h.gw.addr).await);
    }
    for s in &mut held {
        health_on(s).await;
    }
}

/// Reads one answer from `s` (its head, then a `content-length` body);
/// returns the head and the body. `rest` keeps bytes read past it.
async fn read_answer(s: &mut tokio::net::TcpStream, rest: &mut Vec<u8>) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(rest[..end + 4].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            while rest.len() < end + 4 + len {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed mid-body");
                rest.extend_from_slice(&buf[..n]);
            }
            let body = rest[end + 4..end + 4 + len].to_vec();
            rest.drain(..end + 4 + len);
            return (head, body);
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(rest)
        );
        rest.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    // Three requests in one write, then a fourth cut in two writes.
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /nowhere/oauth2/x HTTP/1.1\r\nHost: a\r\n\r\n\
          HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /hea",
    )
    .await
    .unwrap();
    let mut rest = Vec::new();
    let (first, body) = read_answer(&mut s, &mut rest).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(!body.is_empty());
    let (second, _) = read_answer(&mut s, &mut rest).await;
    assert!(!second.starts_with("HTTP/1.1 200"), "{second}");
    // A HEAD answer has no body, whatever length it announces.
    let (third, _) = {
        let end = loop {
            if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut buf = [0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
                .await
                .unwrap();
            rest.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(rest[..end + 4].to_vec()).unwrap();
        rest.drain(..end + 4);
        (head, ())
    };
    assert!(third.starts_with("HTTP/1.1 200 OK\r\n"), "{third}");
    s.write_all(b"lthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (fourth, _) = read_answer(&mut s, &mut rest).await;
    assert!(fourth.starts_with("HTTP/1.1 200 OK\r\n"), "{fourth}");
    assert!(fourth.contains("\r\ndate: "), "{fourth}");
}

#[tokio::test]
async fn a_request_with_a_body_mid_connection_is_served_and_framed_as_before() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let mut rest = Vec::new();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (first, _) = read_answer(&mut s, &mut rest).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // A body whose bytes look like a request: read as a body, never as
    // the next request.
    let smuggled = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let post = format!(
        "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    );
    // In one write: the server may close once it has answered the POST.
    let mut bytes = post.into_bytes();
    bytes.extend_from_slice(smuggled);
    bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    s.write_all(&bytes).await.unwrap();
    let (second, _) = read_answer(&mut s, &mut rest).await;
    assert!(second.starts_with("HTTP/1.1 "), "{second}");
    // Then the last request's answer, or the close (hyper ends a
    // connection whose request body went unread); never an answer to the
    // bytes of the body.
    let mut tail = std::mem::take(&mut rest);
    // A reset instead of a close is fine: only the answers read count.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut tail),
    )
    .await
    .expect("closed after the last answer");
    let tail = String::from_utf8_lossy(&tail);
    match tail.matches("HTTP/1.1 ").count() {
        0 => {}
        1 => assert!(tail.contains("connection: close"), "{tail}"),
        _ => panic!("the body was answered as a request: {tail}"),
    }
}

#[tokio::test]
async fn a_malformed_head_mid_connection_gets_a_400_and_the_connection_ends() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let mut rest = Vec::new();
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n",
    )
    .await
    .unwrap();
    let (first, _) = read_answer(&mut s, &mut rest).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let (second, _) = read_answer(&mut s, &mut rest).await;
    assert!(second.starts_with("HTTP/1.1 400"), "{second}");
    closed_within(&mut s, std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_client_asking_to_close_gets_its_answer_then_the_close() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let (first, _) = read_answer(&mut s, &mut rest).await;
    assert!(first.contains("\r\nconnection: close\r\n"), "{first}");
    assert!(rest.is_empty(), "answered past the close");
    closed_within(&mut s, std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_lone_first_byte_of_the_http2_preface_is_cut_at_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let h = with_head_timeout("60s").await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    s.write_all(b"P").await.unwrap();
    closed_within(&mut s, std::time::Duration::from_secs(4)).await;
}

#[tokio::test]
async fn a_head_started_behind_a_pipelined_request_is_cut_at_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let h = with_head_timeout("60s").await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nX: ")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let (first, _) = read_answer(&mut s, &mut rest).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    closed_within(&mut s, std::time::Duration::from_secs(4)).await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_half_sent_head() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start_with(Opts {
        server: "shutdown_grace = \"20s\"".into(),
        ..Opts::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nX: ")
        .await
        .unwrap();
    let mut rest = Vec::new();
    read_answer(&mut s, &mut rest).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), h.gw.shutdown())
        .await
        .expect("the drain waited for the half-sent head");
    closed_within(&mut s, std::time::Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_http2_preface_after_an_http1_request_does_not_switch_protocols() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    read_answer(&mut s, &mut rest).await;
    // The preface, then an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut after = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(3), s.read_to_end(&mut after)).await;
    // An HTTP/1.1 refusal or nothing; never an HTTP/2 SETTINGS frame.
    assert!(
        after.is_empty() || after.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&after)
    );
}
