//! Rule `networks` through forward auth: the client address is the nearest
//! untrusted hop of a trusted peer's `X-Forwarded-For` (a spoofed leftmost
//! entry never counts), the peer itself otherwise, and an unreadable entry
//! matches no network rule. Also proxy mode, where the peer is the client.

use reqwest::StatusCode;

use crate::support::{Harness, Opts};

/// `/lan` public from 192.168.0.0/16, `/local` public from loopback,
/// everything else (and those paths from elsewhere) for signed-in users.
const RULES: &str = r#"
[access]
default = "deny"
allowed_redirect_domains = ["app.test"]

[access.networks]
lan = ["192.168.0.0/16", "fd00::/8"]

[[rule]]
name = "lan"
path = "/lan"
networks = ["lan"]
policy = "public"

[[rule]]
name = "local"
path = "/local"
networks = ["127.0.0.0/8", "::1"]
policy = "public"
upstream = "http://{app}"

[[rule]]
name = "signed-in"
upstream = "http://{app}"
"#;

async fn status(h: &Harness, uri: &str, xff: &[&str]) -> StatusCode {
    let mut req = h
        .check("GET", "app.test", uri)
        .header("Accept", "application/json");
    for v in xff {
        req = req.header("X-Forwarded-For", *v);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn forward_auth_from_a_trusted_proxy_uses_x_forwarded_for() {
    let h = Harness::start_with(Opts {
        extra: RULES.into(),
        ..Opts::default()
    })
    .await;
    let ok = StatusCode::OK;
    let login = StatusCode::UNAUTHORIZED;
    // The proxy appended the client's address.
    assert_eq!(status(&h, "/lan/x", &["192.168.4.2"]).await, ok);
    assert_eq!(status(&h, "/lan/x", &["fd00::17"]).await, ok);
    assert_eq!(status(&h, "/lan/x", &["::ffff:192.168.4.2"]).await, ok);
    assert_eq!(status(&h, "/lan/x", &["203.0.113.9"]).await, login);
    // A client-sent entry left of the proxy's own never counts.
    assert_eq!(
        status(&h, "/lan/x", &["192.168.1.1, 203.0.113.9"]).await,
        login
    );
    assert_eq!(
        status(&h, "/lan/x", &["192.168.1.1", "203.0.113.9"]).await,
        login
    );
    // Trusted hops (loopback by default) are skipped.
    assert_eq!(
        status(&h, "/lan/x", &["203.0.113.9, 192.168.1.1, 127.0.0.1"]).await,
        ok
    );
    // Unreadable: no client address, no network rule.
    assert_eq!(status(&h, "/lan/x", &["192.168.1.1, unknown"]).await, login);
    assert_eq!(status(&h, "/local", &["unknown"]).await, login);
    // No header: the proxy itself is the client.
    assert_eq!(status(&h, "/local", &[]).await, ok);
    assert_eq!(status(&h, "/lan/x", &[]).await, login);
    // Other paths are not opened by the network rules.
    assert_eq!(status(&h, "/other", &["192.168.4.2"]).await, login);
}

#[tokio::test]
async fn untrusted_peers_are_judged_by_their_own_address() {
    let h = Harness::start_with(Opts {
        extra: RULES.into(),
        server: "trusted_proxies = [\"10.9.9.9/32\"]".into(),
        ..Opts::default()
    })
    .await;
    // Proxy mode: the peer (127.0.0.1) is the client; its X-Forwarded-For is ignored.
    let get = |path: &str, xff: &str| {
        h.client()
            .get(format!("{}{path}", h.base))
            .header("Host", "app.test")
            .header("Accept", "application/json")
            .header("X-Forwarded-For", xff.to_owned())
            .send()
    };
    let r = get("/local", "203.0.113.9").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = get("/other", "127.0.0.1").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
