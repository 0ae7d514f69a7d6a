//! The admin listener's guard: the bearer token of `server.admin_token_file`
//! on `/admin/sessions` (401 with a challenge without it), open health
//! probes, and the Host check against DNS rebinding (421).

use std::net::SocketAddr;

use crate::support::{Harness, Opts};

const TOKEN: &str = "it-admin-token-0123456789abcdef";

/// A harness with an admin listener on loopback; with `token`, also
/// `admin_token_file`. Keep the returned directory alive while the gateway runs.
async fn with_admin(token: Option<&str>) -> (Harness, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = format!("admin_listen = \"127.0.0.1:{port}\"\n");
    if let Some(t) = token {
        let path = dir.path().join("admin_token");
        std::fs::write(&path, format!("{t}\n")).unwrap();
        server.push_str(&format!("admin_token_file = {path:?}\n"));
    }
    let h = Harness::start_with(Opts {
        server,
        ..Opts::default()
    })
    .await;
    let admin = h.gw.admin_addr.expect("an admin listener");
    (h, admin, dir)
}

struct Answer {
    status: u16,
    challenge: Option<String>,
    json: serde_json::Value,
}

/// `METHOD http://admin{target}` with `Host: host` and an optional `Authorization`.
async fn call(
    h: &Harness,
    admin: SocketAddr,
    method: &str,
    host: &str,
    target: &str,
    auth: Option<&str>,
) -> Answer {
    let mut req = h
        .client()
        .request(method.parse().unwrap(), format!("http://{admin}{target}"))
        .header("Host", host);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Answer {
        status,
        challenge,
        json,
    }
}

/// Whether the forward-auth check with `cookie` passes.
async fn signed_in(h: &Harness, cookie: &str) -> bool {
    let res = h
        .check("GET", "app.test", "/")
        .header("Cookie", format!("_portcullis={cookie}"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    res.status() == 200
}

#[tokio::test]
async fn admin_sessions_need_the_token() {
    let (h, admin, _dir) = with_admin(Some(TOKEN)).await;
    let cookie = h.session_cookie("alice").await;
    assert!(signed_in(&h, &cookie).await);
    let host = admin.to_string();
    let right = format!("Bearer {TOKEN}");
    let last_byte = format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]);
    let missing_last = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let cases: [(Option<&str>, &str); 5] = [
        (None, "Bearer realm=\"portcullis-admin\""),
        (
            Some("Bearer wrong"),
            "Bearer realm=\"portcullis-admin\", error=\"invalid_token\"",
        ),
        (
            Some(&last_byte),
            "Bearer realm=\"portcullis-admin\", error=\"invalid_token\"",
        ),
        (
            Some(&missing_last),
            "Bearer realm=\"portcullis-admin\", error=\"invalid_token\"",
        ),
        (
            Some(TOKEN),
            "Bearer realm=\"portcullis-admin\", error=\"invalid_token\"",
        ),
    ];
    for (auth, challenge) in cases {
        for (method, query) in [
            ("GET", ""),
            ("DELETE", "?all=true"),
            ("DELETE", "?user=alice"),
        ] {
            let a = call(
                &h,
                admin,
                method,
                &host,
                &format!("/admin/sessions{query}"),
                auth,
            )
            .await;
            assert_eq!(a.status, 401, "{method} {query} with {auth:?}: {}", a.json);
            assert_eq!(a.challenge.as_deref(), Some(challenge), "{auth:?}");
            assert_eq!(a.json["error"], "unauthorized", "{}", a.json);
        }
        assert!(signed_in(&h, &cookie).await, "revoked by {auth:?}");
    }
    // Other paths need it too (nothing tells which exist).
    let a = call(&h, admin, "GET", &host, "/admin/other", None).await;
    assert_eq!(a.status, 401);
    let a = call(&h, admin, "GET", &host, "/admin/other", Some(&right)).await;
    assert_eq!(a.status, 404);
    // The right token: listed, then revoked.
    let a = call(
        &h,
        admin,
        "GET",
        &host,
        "/admin/sessions?user=alice",
        Some(&right),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(
        a.json["sessions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        a.json
    );
    assert!(a.challenge.is_none());
    let a = call(
        &h,
        admin,
        "DELETE",
        &host,
        "/admin/sessions?user=alice",
        Some(&right),
    )
    .await;
    assert_eq!(
        (a.status, &a.json["revoked"]),
        (200, &1.into()),
        "{}",
        a.json
    );
    assert!(
        !signed_in(&h, &cookie).await,
        "the session survived its revocation"
    );
}

#[tokio::test]
async fn health_stays_open_with_a_token() {
    let (h, admin, _dir) = with_admin(Some(TOKEN)).await;
    for host in [admin.to_string(), format!("localhost:{}", admin.port())] {
        for path in ["/healthz", "/readyz"] {
            let a = call(&h, admin, "GET", &host, path, None).await;
            assert_eq!(a.status, 200, "{path} on {host}: {}", a.json);
            // A wrong token does not matter where none is needed.
            let a = call(&h, admin, "GET", &host, path, Some("Bearer wrong")).await;
            assert_eq!(a.status, 200, "{path} on {host}: {}", a.json);
        }
    }
    // Other methods on the health paths are not probes.
    let a = call(&h, admin, "POST", &admin.to_string(), "/healthz", None).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn rebinding_hosts_are_refused() {
    for token in [None, Some(TOKEN)] {
        let (h, admin, _dir) = with_admin(token).await;
        let auth = token.map(|t| format!("Bearer {t}"));
        let port = admin.port();
        // Names other than localhost: 421, health included, whatever the path.
        for host in [
            format!("rebound.example:{port}"),
            "rebound.example".to_owned(),
            format!("127.0.0.1.nip.io:{port}"),
            format!("localhost.rebound.example:{port}"),
        ] {
            for target in [
                "/admin/sessions",
                "/admin/sessions?all=true",
                "/healthz",
                "/readyz",
            ] {
                let method = if target.contains("all=") {
                    "DELETE"
                } else {
                    "GET"
                };
                let a = call(&h, admin, method, &host, target, None).await;
                assert_eq!(a.status, 421, "{method} {target} on {host}: {}", a.json);
                assert_eq!(a.json["error"], "misdirected_request", "{}", a.json);
            }
        }
        // IP literals (with or without the port) and localhost are fine.
        for host in [
            admin.to_string(),
            "127.0.0.1".to_owned(),
            format!("localhost:{port}"),
            "[::1]".to_owned(),
        ] {
            let a = call(&h, admin, "GET", &host, "/admin/sessions", auth.as_deref()).await;
            assert_eq!(a.status, 200, "{host}: {}", a.json);
        }
        // With a token, the right one passes any name.
        if let Some(auth) = &auth {
            let host = format!("portcullis-admin.internal:{port}");
            let a = call(&h, admin, "GET", &host, "/admin/sessions", Some(auth)).await;
            assert_eq!(a.status, 200, "{}", a.json);
        }
    }
}

#[tokio::test]
async fn without_a_token_loopback_admin_is_open() {
    let (h, admin, _dir) = with_admin(None).await;
    let a = call(&h, admin, "GET", "127.0.0.1", "/admin/sessions", None).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert!(a.challenge.is_none());
    let a = call(
        &h,
        admin,
        "DELETE",
        "127.0.0.1",
        "/admin/sessions?all=true",
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
}
