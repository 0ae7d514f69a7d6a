//! Health endpoints: where they answer, and what `/readyz` tells whom.

use crate::support::{start_gateway_on, Harness, Opts};

/// `GET target` with `Host: host` on the gateway's main listener.
async fn get(h: &Harness, host: &str, target: &str) -> (u16, String) {
    let res = h
        .client()
        .get(format!("{}{target}", h.base))
        .header("Host", host)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn a_proxied_hosts_own_healthz_reaches_the_app() {
    let h = Harness::start_with(Opts {
        extra: "[[rule]]\nname = \"app\"\nhost = \"app.test\"\npolicy = \"public\"\nupstream = \"http://{app}\"\n".into(),
        ..Opts::default()
    })
    .await;
    for target in ["/healthz", "/readyz"] {
        // The app answers (its page shows the request), not the gateway.
        let (status, body) = get(&h, "app.test", target).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("portcullis demo app") && body.contains(&format!("GET {target}<")),
            "{target} on app.test: {body}"
        );
        // On a host no rule proxies, the gateway answers.
        let (status, body) = get(&h, "127.0.0.1", target).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body == "ok\n" || body.contains("\"ready\":true"),
            "{target} on 127.0.0.1: {body}"
        );
    }
}

/// A gateway whose Redis is unreachable (a port nothing listens on), with
/// an admin listener when `admin` is set.
async fn with_dead_redis(admin: bool) -> (portcullis::server::Running, u16) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_line = if admin {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("admin_listen = \"127.0.0.1:{port}\"\n")
    } else {
        String::new()
    };
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{admin_line}[oidc]\nissuer = \"http://127.0.0.1:9/\"\nclient_id = \"x\"\n[session]\ncookie_secure = false\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:{dead}/0\"\n[[rule]]\npolicy = \"public\"\n"
    );
    let gw = start_gateway_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        &toml,
    )
    .await;
    (gw, dead)
}

#[tokio::test]
async fn readyz_names_errors_only_on_the_admin_listener() {
    // No admin listener: the public answer says what is not ready, not why.
    let (gw, dead) = with_dead_redis(false).await;
    let res = reqwest::get(format!("http://{}/readyz", gw.addr))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false, "{body}");
    assert_eq!(v["store"], "session store unavailable", "{body}");
    assert!(!body.contains(&dead.to_string()), "{body}");
    assert!(!body.contains("refused"), "{body}");
    assert!(!body.contains("unreachable"), "{body}");

    // With an admin listener, the admin answer names the cause.
    let (gw, dead) = with_dead_redis(true).await;
    let admin = gw.admin_addr.unwrap();
    let res = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let store = v["store"].as_str().unwrap_or_default();
    assert!(
        store.starts_with("session store unreachable: ") && store.len() > 30,
        "{body}"
    );
    // And the main listener serves no health at all.
    let res = reqwest::get(format!("http://{}/readyz", gw.addr))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let _ = dead;
}
