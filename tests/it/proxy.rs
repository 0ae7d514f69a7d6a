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
        assert_ne!(k, "x-auth-access-token");
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
async fn a_dead_upstream_gives_502() {
    let extra = r#"
[access]
default = "deny"
[[rule]]
host = "app.test"
policy = "public"
upstream = "http://127.0.0.1:9"
"#;
    let h = Harness::start_with(crate::support::Opts {
        extra: extra.into(),
        ..Default::default()
    })
    .await;
    let res = h
        .client()
        .get(format!("{}/", h.base))
        .header("Host", "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert!(
        !res.text().await.unwrap().contains("127.0.0.1:9"),
        "the page must not name the upstream"
    );
}

async fn raw_get(addr: std::net::SocketAddr, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
