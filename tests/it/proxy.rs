//! Reverse-proxy header hygiene: what reaches the app.

use crate::support::Harness;

#[tokio::test]
async fn spoofed_identity_headers_and_own_cookies_never_reach_the_app() {
    let h = Harness::start().await;
    let b = h.browser();
    b.login(&format!("http://app.test:{}/", h.gw.addr.port()), "bob")
        .await;
    let url = format!("http://app.test:{}/page", h.gw.addr.port());
    let res = b
        .http
        .get(&url)
        .header("Accept", "application/json")
        .header("X-Auth-User", "mallory")
        .header("x-auth-user", "mallory2")
        .header("X_Auth_User", "mallory3")
        .header("X-AUTH-GROUPS", "admins")
        .header("x_auth_email", "m@evil.com")
        .header("X-Auth-Access-Token", "forged")
        .header("X.Auth.User", "mallory4")
        .header("x.auth.groups", "admins")
        .header("X-Original-URL", "http://app.test/admin")
        .header("X-Rewrite-URL", "/admin")
        .header("X-Forwarded-Uri", "/admin")
        .header("X-Forwarded-Prefix", "/evil")
        .header("X-Forwarded-Port", "1")
        .header(
            "Cookie",
            format!(
                "theme=dark; _portcullis={}",
                b.cookie("app.test", "_portcullis").unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: serde_json::Value = res.json().await.unwrap();
    let headers = echo["headers"].as_object().unwrap();
    assert_eq!(echo["headers"]["x-auth-user"], serde_json::json!(["bob"]));
    assert_eq!(
        echo["headers"]["x-auth-groups"],
        serde_json::json!(["staff"])
    );
    assert_eq!(
        echo["headers"]["x-auth-email"],
        serde_json::json!(["bob@example.com"])
    );
    for k in headers.keys() {
        assert!(!k.contains('_'), "underscore spelling {k} reached the app");
        assert!(!k.contains('.'), "dot spelling {k} reached the app");
        assert_ne!(k, "x-auth-access-token");
        for gone in [
            "x-original-url",
            "x-rewrite-url",
            "x-forwarded-uri",
            "x-forwarded-prefix",
            "x-forwarded-port",
        ] {
            assert_ne!(k, gone, "client-sent {k} reached the app");
        }
    }
    let cookies = echo["headers"]["cookie"].to_string();
    assert!(cookies.contains("theme=dark"), "{cookies}");
    assert!(!cookies.contains("_portcullis"), "{cookies}");

    // Public path: spoofed copies are removed and replaced by empty values.
    let res = h
        .client()
        .get(format!("{}/health", h.base))
        .header("Host", "app.test")
        .header("Accept", "application/json")
        .header("X-Auth-User", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: serde_json::Value = res.json().await.unwrap();
    assert_eq!(echo["headers"]["x-auth-user"], serde_json::json!([""]));
}

#[tokio::test]
async fn unauthenticated_and_bad_paths_never_reach_the_app() {
    let h = Harness::start().await;
    let c = h.client();
    let res = c
        .get(format!("{}/admin", h.base))
        .header("Host", "app.test")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let res = c
        .get(format!("{}/admin", h.base))
        .header("Host", "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Raw request targets: an HTTP client library would normalise these itself.
    for target in ["/%2e%2e/admin", "/admin%2fx", "/a/../../admin"] {
        let answer = raw_get(h.gw.addr, target).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
    }
    // A host with no rule: 404, not an open proxy.
    let res = c
        .get(format!("{}/", h.base))
        .header("Host", "elsewhere.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn disguised_spellings_of_a_path_are_judged_as_that_path() {
    let h = Harness::start().await;
    let b = h.browser();
    b.login(&format!("http://app.test:{}/", h.gw.addr.port()), "bob")
        .await;
    let cookie = format!(
        "_portcullis={}",
        b.cookie("app.test", "_portcullis").unwrap()
    );
    // bob is not in "admins": /admin is refused him, other pages are not.
    assert!(raw_get_with(h.gw.addr, "/page", &cookie)
        .await
        .starts_with("HTTP/1.1 200"));
    for target in [
        "/admin",
        "//admin",
        "/%61dmin",
        "/admin/./x",
        "/x/../admin",
        "/%2561dmin",
    ] {
        let answer = raw_get_with(h.gw.addr, target, &cookie).await;
        let expected = if target == "/%2561dmin" {
            // Decoded once only: "/%61dmin" is another page, the app's to judge.
            "HTTP/1.1 200"
        } else {
            "HTTP/1.1 403"
        };
        assert!(answer.starts_with(expected), "{target}: {answer}");
    }
}

#[tokio::test]
async fn a_dead_upstream_gives_502() {
    let h = Harness::start_with(crate::support::Opts {
        extra: public_rule("http://127.0.0.1:9"),
        ..Default::default()
    })
    .await;
    let res = get_root(&h).await;
    assert_eq!(res.status(), 502);
    assert!(
        !res.text().await.unwrap().contains("127.0.0.1:9"),
        "the page must not name the upstream"
    );
}

/// Config for a gateway serving `app.test` publicly from `upstream`, all
/// else denied. The rule comes last, so keys appended to it are its own.
fn public_rule(upstream: &str) -> String {
    format!(
        "[access]\ndefault = \"deny\"\n[[rule]]\nhost = \"app.test\"\npolicy = \"public\"\nupstream = \"{upstream}\"\n"
    )
}

/// `GET /` for `app.test` on a fresh client.
async fn get_root(h: &Harness) -> reqwest::Response {
    h.client()
        .get(format!("{}/", h.base))
        .header("Host", "app.test")
        .send()
        .await
        .unwrap()
}

async fn raw_get(addr: std::net::SocketAddr, target: &str) -> String {
    raw_get_with(addr, target, "").await
}

/// `raw_get` with a `Cookie` header (none when empty).
async fn raw_get_with(addr: std::net::SocketAddr, target: &str, cookie: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\n{cookie}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A keep-alive HTTP/1.1 upstream on raw sockets that counts its connections.
/// `GET /close` answers and then drops the connection without saying so
/// (as an upstream's own keep-alive timeout does); `GET /chunked` answers
/// with a chunked body; anything else with `ok`.
async fn counting_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if s.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    if path == "/early" {
                        // Answers before reading the upload, then takes it in
                        // slowly, so the answer is complete long before the body.
                        let w = s
                            .get_mut()
                            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno")
                            .await;
                        let mut left = length;
                        let mut buf = vec![0u8; 64 * 1024];
                        while w.is_ok() && left > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            use tokio::io::AsyncReadExt;
                            match s.read(&mut buf[..left.min(64 * 1024)]).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => left -= n,
                            }
                        }
                        continue;
                    }
                    if length > 0 {
                        use tokio::io::AsyncReadExt;
                        let mut body = vec![0u8; length];
                        if s.read_exact(&mut body).await.is_err() {
                            return;
                        }
                    }
                    if path == "/slow" {
                        // Five chunks, 50 ms apart.
                        let mut w = s
                            .get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                            .await;
                        for _ in 0..5 {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            w = w.and(s.get_mut().write_all(b"5\r\nslow.\r\n").await);
                        }
                        if w.and(s.get_mut().write_all(b"0\r\n\r\n").await).is_err() {
                            return;
                        }
                        continue;
                    }
                    let answer: &[u8] = match path.as_str() {
                        "/close" => b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbye",
                        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nch\r\n3\r\nunk\r\n0\r\n\r\n",
                        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                    };
                    if s.get_mut().write_all(answer).await.is_err() || path == "/close" {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// `GET path` on host `app.test` at `base`: status and body.
async fn get_app(base: &str, c: &reqwest::Client, path: &str) -> (u16, String) {
    let url = format!("{base}{path}");
    let res = c.get(url).header("Host", "app.test").send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A gateway proxying every path of `app.test` to a [`counting_upstream`],
/// and that upstream's count of accepted connections.
async fn pooled_harness() -> (Harness, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (up, accepted) = counting_upstream().await;
    let h = Harness::start_with(crate::support::Opts {
        extra: public_rule(&format!("http://{up}")),
        ..Default::default()
    })
    .await;
    (h, accepted)
}

#[tokio::test]
async fn connect_is_refused_before_any_upstream_sees_it() {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (h, accepted) = pooled_harness().await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"CONNECT app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = s.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the upstream saw it");
    // A normal request still goes through.
    let (status, _) = get_app(&h.base, &h.client(), "/").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn upstream_connections_are_reused_and_replaced_when_the_upstream_closes_them() {
    use std::sync::atomic::Ordering;
    let (h, accepted) = pooled_harness().await;
    let c = h.client();
    let get = |path: &'static str| get_app(&h.base, &c, path);
    for _ in 0..5 {
        assert_eq!(get("/a").await, (200, "ok".into()));
    }
    assert_eq!(get("/chunked").await, (200, "chunk".into()));
    assert_eq!(get("/a").await, (200, "ok".into()));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "sequential requests (fixed-length and chunked bodies) share one upstream connection"
    );
    // The upstream drops the connection after answering: the next request
    // must not fail on it, whether or not the close has been seen yet.
    for _ in 0..5 {
        assert_eq!(get("/close").await, (200, "bye".into()));
        assert_eq!(get("/a").await, (200, "ok".into()));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(get("/a").await, (200, "ok".into()));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        6,
        "one new connection per close"
    );
}

#[tokio::test]
async fn streamed_bodies_share_the_pool_and_an_abandoned_one_is_not_reused() {
    use std::sync::atomic::Ordering;
    let (h, accepted) = pooled_harness().await;
    let c = h.client();
    let slow = format!("{}/slow", h.base);
    let all = (0..12).map(|_| {
        let (c, base) = (c.clone(), h.base.clone());
        tokio::spawn(async move { get_app(&base, &c, "/slow").await })
    });
    for t in all.collect::<Vec<_>>() {
        assert_eq!(t.await.unwrap(), (200, "slow.".repeat(5)));
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!(opened <= 12, "{opened} connections for 12 requests");
    // The client walks away after the first chunk: that connection is
    // mid-response and must be closed, never handed to the next request.
    let mut res = c
        .get(&slow)
        .header("Host", "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.chunk().await.unwrap().as_deref(), Some(&b"slow."[..]));
    drop(res);
    for _ in 0..20 {
        assert_eq!(get_app(&h.base, &c, "/a").await, (200, "ok".into()));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        opened,
        "sequential requests after the streams reuse their connections"
    );
}

#[tokio::test]
async fn an_answer_before_the_upload_ends_leaves_the_pool_usable() {
    let (h, _) = pooled_harness().await;
    let c = h.client();
    let res = c
        .post(format!("{}/early", h.base))
        .header("Host", "app.test")
        .body(vec![b'x'; 4 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.text().await.unwrap(), "no");
    // The same on one raw connection that goes on uploading after the
    // answer: its upload must keep moving (or the connection end), never
    // stall behind an upstream connection parked in the pool.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = h.base.trim_start_matches("http://").to_owned();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let len = 4 * 1024 * 1024;
        let head =
            format!("POST /early HTTP/1.1\r\nHost: app.test\r\ncontent-length: {len}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let upload = tokio::spawn(async move {
            let chunk = vec![b'y'; 64 * 1024];
            for _ in 0..len / chunk.len() {
                if wr.write_all(&chunk).await.is_err() {
                    return false; // closed by the gateway: acceptable
                }
            }
            true
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"no") {
            match tokio::time::timeout(std::time::Duration::from_secs(5), rd.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                other => panic!("no answer to the early POST: {other:?}"),
            }
        }
        assert!(
            got.starts_with(b"HTTP/1.1 403"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), upload).await;
        assert!(done.is_ok(), "the upload after an early answer stalled");
    }
    let t = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(get_app(&h.base, &c, "/a").await, (200, "ok".into()));
    }
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "requests after the early answer took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn connect_timeout_covers_the_tls_handshake() {
    // Accepts TCP connections and never says a word: TLS never starts.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let extra = format!(
        "[proxy]\nconnect_timeout = \"300ms\"\nresponse_header_timeout = \"20s\"\n{}upstream_insecure_skip_verify = true\n",
        public_rule(&format!("https://{up}"))
    );
    let h = Harness::start_with(crate::support::Opts {
        extra,
        ..Default::default()
    })
    .await;
    let t = std::time::Instant::now();
    let res = get_root(&h).await;
    assert_eq!(res.status(), 504);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}: the TLS handshake was not under connect_timeout",
        t.elapsed()
    );
}

/// An upstream that answers any request with `101` and then echoes bytes.
async fn upgrade_echo_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
                    .await;
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Opens an upgraded tunnel through the gateway and checks one echo.
async fn open_tunnel(gw: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(
        b"GET /tunnel HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_ne!(s.read(&mut b).await.unwrap(), 0, "closed before the 101");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    echo(&mut s, b"ping").await;
    s
}

async fn echo(s: &mut tokio::net::TcpStream, msg: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("no echo through the tunnel")
        .unwrap();
    assert_eq!(got, msg);
}

async fn tunnel_gateway(server: &str) -> Harness {
    let up = upgrade_echo_upstream().await;
    Harness::start_with(crate::support::Opts {
        server: server.into(),
        extra: public_rule(&format!("http://{up}")),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn an_open_tunnel_keeps_its_place_under_max_connections() {
    let h = tunnel_gateway("max_connections = 1").await;
    let tunnel = open_tunnel(h.gw.addr).await;
    let get = || async {
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            h.client()
                .get(format!("{}/", h.base))
                .header("Host", "app.test")
                .send(),
        )
        .await
    };
    assert!(
        get().await.is_err(),
        "a second connection was served while the tunnel held the only place"
    );
    drop(tunnel);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(Ok(res)) = get().await {
            // The upstream answers 101 to anything: to a request that
            // asked for no upgrade, that is a broken answer.
            assert_eq!(res.status(), 502, "an unasked protocol switch");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
    }
}

#[tokio::test]
async fn shutdown_drains_open_tunnels_within_the_grace_period() {
    let h = tunnel_gateway("shutdown_grace = \"20s\"").await;
    let mut tunnel = open_tunnel(h.gw.addr).await;
    let done = tokio::spawn(h.gw.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !done.is_finished(),
        "shutdown did not wait for the open tunnel"
    );
    echo(&mut tunnel, b"still here").await;
    drop(tunnel);
    tokio::time::timeout(std::time::Duration::from_secs(5), done)
        .await
        .expect("shutdown did not end once the tunnel closed")
        .unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_before_its_answer_cancels_the_upstream_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that takes the request and never answers; it reports
    // when the gateway closes the connection to it.
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = up.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = 0;
        loop {
            match s.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let _ = tx.send(());
    });
    let h = Harness::start_with(crate::support::Opts {
        extra: public_rule(&format!("http://{up_addr}")),
        ..Default::default()
    })
    .await;
    let mut c = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(c);
    tokio::time::timeout(std::time::Duration::from_secs(3), rx)
        .await
        .expect("the upstream request was not cancelled when the client left")
        .unwrap();
}
